#ifndef LATENTWATCH_COPENBLAS_SHIM_H
#define LATENTWATCH_COPENBLAS_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
