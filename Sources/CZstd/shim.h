#ifndef LATENTWATCH_CZSTD_SHIM_H
#define LATENTWATCH_CZSTD_SHIM_H
#include <zstd.h>
#include <zstd_errors.h>
#endif
