/* options.c - the per-network execution options (math mode, determinism,
 * CUDA graphs, kernel and product paths): validation here, the effect in the backends, which read the
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

bp_math_mode bp_network_get_math_mode(const bp_network *net) {
  return net ? net->math : BP_MATH_FP32;
}
bp_math_mode bp_network_math_mode(const bp_network *net) { return bp_network_get_math_mode(net); }

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

int bp_network_get_deterministic(const bp_network *net) { return net ? net->deterministic : 1; }
int bp_network_deterministic(const bp_network *net) { return bp_network_get_deterministic(net); }

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

int bp_network_get_cuda_graphs(const bp_network *net) { return net ? net->cuda_graphs : 0; }
int bp_network_cuda_graphs(const bp_network *net) { return bp_network_get_cuda_graphs(net); }

/* The backends read the fields at their next use; captured graphs and
 * plans are keyed on options_serial. */
static bp_status changed(bp_network *net) {
  ++net->options_serial;
  return BP_OK;
}

bp_status bp_network_set_kernel_path(bp_network *net, bp_kernel_path path) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (path != BP_KERNELS_REFERENCE && path != BP_KERNELS_FUSED)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_set_kernel_path: unknown kernel path %d (reference = 0, "
                    "fused = 1)",
                    (int)path);
  if (path == net->kernels) return BP_OK;
  net->kernels = path;
  return changed(net);
}

bp_kernel_path bp_network_get_kernel_path(const bp_network *net) {
  return net ? net->kernels : BP_KERNELS_REFERENCE;
}

bp_status bp_network_set_product_path(bp_network *net, bp_product_path path) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (path != BP_PRODUCTS_CUBLAS && path != BP_PRODUCTS_CUBLASLT)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_set_product_path: unknown product path %d (cublas = 0, "
                    "cublaslt = 1)",
                    (int)path);
  if (path == net->products) return BP_OK;
  net->products = path;
  return changed(net);
}

bp_product_path bp_network_get_product_path(const bp_network *net) {
  return net ? net->products : BP_PRODUCTS_CUBLAS;
}

/* Tests only (internal.h): the kernel path bp_network_desc_init gives. */
static bp_kernel_path default_kernels = BP_KERNELS_REFERENCE;
void bp_testing_set_default_kernel_path(bp_kernel_path path) { default_kernels = path; }
bp_kernel_path bp_default_kernel_path(void) { return default_kernels; }
