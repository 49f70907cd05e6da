#ifndef LATENTWATCH_CZLIB_SHIM_H
#define LATENTWATCH_CZLIB_SHIM_H
#include <zlib.h>

/// inflateInit2 is a macro; this is the same call as a function Swift can see.
static inline int lw_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -15);
}
#endif
