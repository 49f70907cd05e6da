// The parts of the C interface that are plain C: names of status codes. The rest is implemented in Swift
// (Sources/LatentWatchC) with @c functions whose signatures this target's header declares.
#include "latentwatch.h"

const char *lw_status_name(int status) {
    switch (status) {
    case LW_OK: return "LW_OK";
    case LW_ERR_INVALID_ARGUMENT: return "LW_ERR_INVALID_ARGUMENT";
    case LW_ERR_INVALID_HANDLE: return "LW_ERR_INVALID_HANDLE";
    case LW_ERR_IO: return "LW_ERR_IO";
    case LW_ERR_MALFORMED_FILE: return "LW_ERR_MALFORMED_FILE";
    case LW_ERR_UNSUPPORTED: return "LW_ERR_UNSUPPORTED";
    case LW_ERR_SHAPE_MISMATCH: return "LW_ERR_SHAPE_MISMATCH";
    case LW_ERR_NON_FINITE: return "LW_ERR_NON_FINITE";
    case LW_ERR_QUEUE_FULL: return "LW_ERR_QUEUE_FULL";
    case LW_ERR_SHUT_DOWN: return "LW_ERR_SHUT_DOWN";
    case LW_ERR_INVALID_CONFIGURATION: return "LW_ERR_INVALID_CONFIGURATION";
    case LW_ERR_FIT_FAILED: return "LW_ERR_FIT_FAILED";
    case LW_ERR_BUFFER_TOO_SMALL: return "LW_ERR_BUFFER_TOO_SMALL";
    case LW_ERR_WRONG_STATE: return "LW_ERR_WRONG_STATE";
    case LW_ERR_INTERNAL: return "LW_ERR_INTERNAL";
    default: return "LW_ERR_UNKNOWN";
    }
}
