/* network.c - network objects: creation from a description, shape,
 * parameters and gradients. The calls that train are the engine's
 * (src/engine/). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void bp_network_desc_init(bp_network_desc *desc, int n_sizes, const int *sizes, uint64_t seed) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->struct_size = (uint32_t)sizeof *desc;
  desc->version = BP_NETWORK_DESC_VERSION;
  desc->n_sizes = n_sizes;
  desc->sizes = sizes;
  desc->seed = seed;
  desc->activations = NULL;
  desc->cost = BP_COST_QUADRATIC;
  desc->optimizer = BP_OPTIMIZER_SGD;
  desc->math = BP_MATH_FP32;
  desc->deterministic = 1;
  desc->cuda_graphs = 0;
  desc->kernels = bp_default_kernel_path();
  desc->products = BP_PRODUCTS_CUBLAS;
}

static void network_free_host(bp_network *net) {
  free(net->acts);
  free(net->sizes);
  free(net->w_offset);
  free(net->b_offset);
  free(net);
}

/* W ~ Normal(0, 1/fan_in), b = 0; see bp_network_create in backprop.h. */
static bp_status initialize_parameters(bp_network *net, uint64_t seed) {
  enum { CHUNK = 1 << 20 };
  float *buf = malloc(sizeof(float) * CHUNK);
  if (!buf) return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY, "bp_network_create: out of host memory");
  bp_rng rng;
  bp_rng_seed(&rng, seed);
  bp_status st = BP_OK;
  for (int i = 0; i < net->n_layers && st == BP_OK; ++i) {
    const double scale = 1.0 / sqrt((double)net->sizes[i]);
    const size_t nw = (size_t)net->sizes[i] * (size_t)net->sizes[i + 1];
    for (size_t done = 0; done < nw && st == BP_OK; done += CHUNK) {
      const size_t count = nw - done < CHUNK ? nw - done : CHUNK;
      for (size_t k = 0; k < count; ++k) buf[k] = (float)(bp_rng_normal(&rng) * scale);
      st = net->ctx->ops->write_params(net, net->w_offset[i] + done, count, buf);
    }
    const size_t nb = (size_t)net->sizes[i + 1];
    memset(buf, 0, sizeof(float) * (nb < CHUNK ? nb : CHUNK));
    for (size_t done = 0; done < nb && st == BP_OK; done += CHUNK) {
      const size_t count = nb - done < CHUNK ? nb - done : CHUNK;
      st = net->ctx->ops->write_params(net, net->b_offset[i] + done, count, buf);
    }
  }
  free(buf);
  return st;
}

bp_status bp_network_create_ex(bp_context *ctx, const bp_network_desc *desc, bp_network **out) {
  if (out) *out = NULL;
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (!out || !desc)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_create: out or desc is NULL");
  /* Version 1 ended at optimizer; version 2 appended the execution options,
   * version 3 the kernel and product paths. Each version's struct_size must
   * cover its members. */
  static const size_t version_end[] = {0, offsetof(bp_network_desc, math),
                                       offsetof(bp_network_desc, kernels),
                                       sizeof(bp_network_desc)};
  const uint32_t v = desc->version;
  if (v < 1 || v > BP_NETWORK_DESC_VERSION || desc->struct_size < version_end[v])
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "bp_network_create_ex: desc version %u (size %u) is not supported by "
                    "library %s (knows versions 1 to %d); initialize it with "
                    "bp_network_desc_init",
                    desc->version, desc->struct_size, BP_VERSION_STRING, BP_NETWORK_DESC_VERSION);
  const bp_math_mode math = v >= 2 ? desc->math : BP_MATH_FP32;
  const int deterministic = v >= 2 ? desc->deterministic != 0 : 1;
  const int cuda_graphs = v >= 2 ? desc->cuda_graphs != 0 : 0;
  const bp_kernel_path kernels = v >= 3 ? desc->kernels : BP_KERNELS_REFERENCE;
  const bp_product_path products = v >= 3 ? desc->products : BP_PRODUCTS_CUBLAS;
  if (math != BP_MATH_FP32 && math != BP_MATH_TF32 && math != BP_MATH_BF16)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_create: unknown math mode %d",
                    (int)math);
  if (kernels != BP_KERNELS_REFERENCE && kernels != BP_KERNELS_FUSED)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: unknown kernel path %d (reference = 0, fused = 1)",
                    (int)kernels);
  if (products != BP_PRODUCTS_CUBLAS && products != BP_PRODUCTS_CUBLASLT)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: unknown product path %d (cublas = 0, cublaslt = 1)",
                    (int)products);
  const int n_sizes = desc->n_sizes;
  const int *sizes = desc->sizes;
  if (!sizes) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_create: sizes is NULL");
  if (n_sizes < 2)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: need at least 2 sizes (input and output), got %d",
                    n_sizes);
  if (n_sizes > 4096)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_create: %d sizes is too deep",
                    n_sizes);
  for (int i = 0; i < n_sizes; ++i) {
    if (sizes[i] <= 0 || sizes[i] > BP_MAX_DIM)
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "bp_network_create: sizes[%d] = %d is out of range (1 .. %d)", i, sizes[i],
                      BP_MAX_DIM);
  }
  /* The model: activations, cost and optimizer (backprop.h). */
  const int n_layers = n_sizes - 1;
  for (int i = 0; desc->activations && i < n_layers; ++i) {
    const bp_activation a = desc->activations[i];
    if ((int)a < (int)BP_ACTIVATION_SIGMOID || (int)a > (int)BP_ACTIVATION_SOFTMAX)
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "bp_network_create: layer %d: unknown activation %d (sigmoid = 0, tanh = 1, "
                      "relu = 2, identity = 3, softmax = 4)",
                      i, (int)a);
    if (a == BP_ACTIVATION_SOFTMAX && i != n_layers - 1)
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "bp_network_create: layer %d: softmax is only allowed on the output layer "
                      "(layer %d)",
                      i, n_layers - 1);
  }
  const bp_activation out_act =
      desc->activations ? desc->activations[n_layers - 1] : BP_ACTIVATION_SIGMOID;
  if (desc->cost != BP_COST_QUADRATIC && desc->cost != BP_COST_CROSS_ENTROPY)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: unknown cost %d (quadratic = 0, cross-entropy = 1)",
                    (int)desc->cost);
  if (desc->cost == BP_COST_CROSS_ENTROPY && out_act != BP_ACTIVATION_SOFTMAX &&
      out_act != BP_ACTIVATION_SIGMOID)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: the cross-entropy cost needs a softmax or sigmoid output "
                    "layer, not %s",
                    bp_activation_name(out_act));
  if ((int)desc->optimizer < (int)BP_OPTIMIZER_SGD || (int)desc->optimizer > (int)BP_OPTIMIZER_RPROP)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_create: unknown optimizer %d (sgd = 0, adam = 1, adamw = 2, "
                    "rprop = 3)",
                    (int)desc->optimizer);

  /* Count parameters with overflow checks before allocating anything. */
  size_t n_params = 0;
  const size_t limit = (size_t)1 << 40; /* 4 TiB of floats: far past any device */
  for (int i = 0; i + 1 < n_sizes; ++i) {
    size_t w = (size_t)sizes[i] * (size_t)sizes[i + 1]; /* each <= 2^28: fits in 2^56 */
    if (w > limit || n_params > limit - w - (size_t)sizes[i + 1])
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "bp_network_create: the network has too many parameters (layer %d)", i);
    n_params += w + (size_t)sizes[i + 1];
  }

  bp_network *net = calloc(1, sizeof *net);
  if (!net) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "bp_network_create: out of host memory");
  net->ctx = ctx;
  net->math = BP_MATH_FP32; /* set through the backend's check below */
  net->deterministic = deterministic;
  net->cuda_graphs = cuda_graphs;
  net->kernels = kernels;
  net->products = products;
  net->n_layers = n_sizes - 1;
  net->n_params = n_params;
  net->sizes = malloc(sizeof(int) * (size_t)n_sizes);
  net->w_offset = malloc(sizeof(size_t) * (size_t)net->n_layers);
  net->b_offset = malloc(sizeof(size_t) * (size_t)net->n_layers);
  net->acts = malloc(sizeof(bp_activation) * (size_t)net->n_layers);
  if (!net->sizes || !net->w_offset || !net->b_offset || !net->acts) {
    network_free_host(net);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "bp_network_create: out of host memory");
  }
  memcpy(net->sizes, sizes, sizeof(int) * (size_t)n_sizes);
  size_t off = 0;
  for (int i = 0; i < net->n_layers; ++i) {
    net->w_offset[i] = off;
    off += (size_t)sizes[i] * (size_t)sizes[i + 1];
    net->b_offset[i] = off;
    off += (size_t)sizes[i + 1];
  }
  for (int i = 0; i < n_sizes; ++i)
    if (sizes[i] > net->max_width) net->max_width = sizes[i];
  net->cost = desc->cost;
  net->seed_model = desc->cost == BP_COST_QUADRATIC;
  for (int i = 0; i < net->n_layers; ++i) {
    net->acts[i] = desc->activations ? desc->activations[i] : BP_ACTIVATION_SIGMOID;
    if (net->acts[i] != BP_ACTIVATION_SIGMOID) net->seed_model = 0;
  }
  bp_optimizer_config_init(&net->opt, desc->optimizer);

  /* The backend allocates first, so a network too large for the device fails
   * before any host work. Then initialize in a fixed order (layer by layer, W
   * row-major then b), in bounded host chunks, so every backend starts from
   * identical weights. */
  st = ctx->ops->network_init(net);
  if (st != BP_OK) {
    network_free_host(net);
    return st;
  }
  st = initialize_parameters(net, desc->seed);
  if (st == BP_OK) {
    net->opt_state_count = (size_t)bp_optimizer_slots(&net->opt) * net->n_params;
    st = ctx->ops->opt_reset(net, net->opt_state_count);
  }
  if (st == BP_OK && math != BP_MATH_FP32) st = bp_network_set_math_mode(net, math);
  if (st != BP_OK) {
    bp_network_destroy(net);
    return st;
  }
  *out = net;
  return BP_OK;
}

bp_status bp_network_create(bp_context *ctx, int n_sizes, const int *sizes, uint64_t seed,
                            bp_network **out) {
  bp_network_desc desc;
  bp_network_desc_init(&desc, n_sizes, sizes, seed);
  return bp_network_create_ex(ctx, &desc, out);
}

void bp_network_destroy(bp_network *net) {
  if (!net) return;
  bp_engine_exchange_free(net);
  net->ctx->ops->network_free(net);
  network_free_host(net);
}

int bp_network_n_layers(const bp_network *net) { return net ? net->n_layers : -1; }

int bp_network_size(const bp_network *net, int i) {
  if (!net || i < 0 || i > net->n_layers) return -1;
  return net->sizes[i];
}

size_t bp_network_parameter_count(const bp_network *net) { return net ? net->n_params : 0; }

bp_context *bp_network_context(const bp_network *net) { return net ? net->ctx : NULL; }

bp_activation bp_network_get_activation(const bp_network *net, int layer) {
  if (!net || layer < 0 || layer >= net->n_layers) return BP_ACTIVATION_SIGMOID;
  return net->acts[layer];
}

bp_cost bp_network_get_cost(const bp_network *net) {
  return net ? net->cost : BP_COST_QUADRATIC;
}

static bp_status check_layer(const bp_network *net, int layer, const char *fn) {
  if (layer < 0 || layer >= net->n_layers)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: layer %d is out of range (the network has layers 0 .. %d)", fn, layer,
                    net->n_layers - 1);
  return BP_OK;
}

bp_status bp_network_get_layer(const bp_network *net, int layer, float *W, float *b) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st == BP_OK) st = check_layer(net, layer, "bp_network_get_layer");
  if (st != BP_OK) return st;
  const size_t nw = (size_t)net->sizes[layer] * (size_t)net->sizes[layer + 1];
  if (W) st = net->ctx->ops->read_params(net, net->w_offset[layer], nw, W);
  if (st == BP_OK && b)
    st = net->ctx->ops->read_params(net, net->b_offset[layer], (size_t)net->sizes[layer + 1], b);
  return st;
}

bp_status bp_network_set_layer(bp_network *net, int layer, const float *W, const float *b) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st == BP_OK) st = check_layer(net, layer, "bp_network_set_layer");
  if (st != BP_OK) return st;
  const size_t nw = (size_t)net->sizes[layer] * (size_t)net->sizes[layer + 1];
  const size_t nb = (size_t)net->sizes[layer + 1];
  if ((W && !bp_all_finite(W, nw)) || (b && !bp_all_finite(b, nb)))
    return bp_error(net->ctx, BP_ERR_NUMERIC,
                    "bp_network_set_layer: layer %d: W or b holds NaN or Inf; nothing changed",
                    layer);
  if (W) st = net->ctx->ops->write_params(net, net->w_offset[layer], nw, W);
  if (st == BP_OK && b) st = net->ctx->ops->write_params(net, net->b_offset[layer], nb, b);
  return st;
}

bp_status bp_network_get_gradient(const bp_network *net, int layer, float *dW, float *db) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st == BP_OK) st = check_layer(net, layer, "bp_network_get_gradient");
  if (st != BP_OK) return st;
  const size_t nw = (size_t)net->sizes[layer] * (size_t)net->sizes[layer + 1];
  if (dW) st = net->ctx->ops->read_grads(net, net->w_offset[layer], nw, dW);
  if (st == BP_OK && db)
    st = net->ctx->ops->read_grads(net, net->b_offset[layer], (size_t)net->sizes[layer + 1], db);
  return st;
}
