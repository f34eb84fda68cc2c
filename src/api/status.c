/* status.c - the names the API hands out: version, status and backend
 * strings (static storage, never NULL). */
#include "internal.h"

unsigned bp_version(void) { return BP_VERSION_NUMBER; }
const char *bp_version_string(void) { return BP_VERSION_STRING; }

const char *bp_status_string(bp_status status) {
  switch (status) {
    case BP_OK: return "BP_OK: success";
    case BP_ERR_INVALID_ARGUMENT: return "BP_ERR_INVALID_ARGUMENT: invalid argument";
    case BP_ERR_OUT_OF_MEMORY: return "BP_ERR_OUT_OF_MEMORY: out of memory";
    case BP_ERR_NO_DEVICE: return "BP_ERR_NO_DEVICE: no usable CUDA device";
    case BP_ERR_DEVICE: return "BP_ERR_DEVICE: CUDA or cuBLAS failure";
    case BP_ERR_IO: return "BP_ERR_IO: file could not be read or written";
    case BP_ERR_FORMAT: return "BP_ERR_FORMAT: malformed file or buffer";
    case BP_ERR_NUMERIC: return "BP_ERR_NUMERIC: NaN or Inf in inputs or cost";
    case BP_ERR_UNSUPPORTED: return "BP_ERR_UNSUPPORTED: not supported by this build";
    case BP_ERR_COMM: return "BP_ERR_COMM: a data-parallel collective failed or timed out";
  }
  return "unknown bp_status";
}

const char *bp_backend_name(bp_backend backend) {
  switch (backend) {
    case BP_BACKEND_AUTO: return "auto";
    case BP_BACKEND_CPU: return "cpu";
    case BP_BACKEND_CUDA: return "cuda";
  }
  return "unknown";
}
