/* options.c - the per-network execution options (math mode, determinism,
 * CUDA graphs): validation here, the effect in the backends, which read the
 * fields of bp_network and key their caches on options_serial. */
#include <string.h>

#include "internal.h"

const char *bp_math_mode_name(bp_math_mode mode) {
  switch (mode) {
    case BP_MATH_FP32: return "fp32";
    case BP_MATH_TF32: return "tf32";
    case BP_MATH_BF16: return "bf16";
  }
  return "unknown";
}

bp_status bp_math_mode_parse(const char *name, bp_math_mode *mode) {
  if (!name || !mode) return BP_ERR_INVALID_ARGUMENT;
  static const bp_math_mode all[] = {BP_MATH_FP32, BP_MATH_TF32, BP_MATH_BF16};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    if (strcmp(name, bp_math_mode_name(all[i])) == 0) {
      *mode = all[i];
      return BP_OK;
    }
  return BP_ERR_INVALID_ARGUMENT;
}

bp_status bp_network_set_math_mode(bp_network *net, bp_math_mode mode) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (mode != BP_MATH_FP32 && mode != BP_MATH_TF32 && mode != BP_MATH_BF16)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_set_math_mode: unknown math mode %d (fp32 = 0, tf32 = 1, "
                    "bf16 = 2)",
                    (int)mode);
  if (mode == net->math) return BP_OK;
  if (net->ctx->ops->check_math_mode) {
    st = net->ctx->ops->check_math_mode(net, mode);
    if (st != BP_OK) return st;
  }
  net->math = mode;
  ++net->options_serial;
  return BP_OK;
}

bp_math_mode bp_network_math_mode(const bp_network *net) {
  return net ? net->math : BP_MATH_FP32;
}

bp_status bp_network_set_deterministic(bp_network *net, int on) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if ((on != 0) != net->deterministic) {
    net->deterministic = on != 0;
    ++net->options_serial;
  }
  return BP_OK;
}

int bp_network_deterministic(const bp_network *net) { return net ? net->deterministic : 1; }

bp_status bp_network_set_cuda_graphs(bp_network *net, int on) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if ((on != 0) != net->cuda_graphs) {
    net->cuda_graphs = on != 0;
    ++net->options_serial;
  }
  return BP_OK;
}

int bp_network_cuda_graphs(const bp_network *net) { return net ? net->cuda_graphs : 0; }
