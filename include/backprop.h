/*
 * backprop.h - train fully-connected networks by backpropagation,
 * on NVIDIA GPUs (CUDA + cuBLAS) or on the CPU (BLAS), behind one C API, on one
 * device or data-parallel across ranks.
 *
 * The math every backend implements (the contract):
 *   sizes s[0] .. s[L]; weight layer i (0-based, i = 0 .. L-1) maps s[i] inputs
 *   to s[i+1] outputs with W_i (s[i+1] x s[i], row-major on the host: W[j*s[i]+k]
 *   is the weight from input neuron k to output neuron j) and bias b_i (s[i+1]).
 *     forward:   z = W a_prev + b,  a = sigmoid(z),  a_0 = x
 *                (the seed's default; the activation of each layer, the cost
 *                and the optimizer can be chosen: see bp_activation, bp_cost
 *                and "Optimizers" below)
 *     cost:      C0 = sum_j (a_j - y_j)^2 per example; a batch's cost is the mean of C0
 *     backward:  delta_L = 2 (a_L - y) * sigmoid'(z_L)
 *                delta_i = (W_{i+1}^T delta_{i+1}) * sigmoid'(z_i)
 *                dW_i = (1/n) sum_k delta_i^k (a_i^k)^T,  db_i = (1/n) sum_k delta_i^k
 *     SGD:       W -= lr * dW,  b -= lr * db
 *
 * General rules (they hold for every declaration below unless it says otherwise):
 *   - Every fallible call returns a bp_status; BP_OK is 0. On failure, a
 *     human-readable detail is available from bp_context_last_error() of the
 *     context involved. The library never prints and never exits.
 *   - Functions that create an object write it to *out on success and set
 *     *out to NULL on failure (when out itself is not NULL).
 *   - Every destroy function accepts NULL and then does nothing.
 *   - Host arrays passed in are only read during the call and never retained;
 *     host arrays passed out are written during the call only.
 *   - Threads: a context and everything created from it (networks, data sets)
 *     belong to one thread at a time. Use one context per thread; different
 *     contexts are fully independent and may be used concurrently. The
 *     detail of a failure is recorded per thread (bp_context_last_error
 *     gives the calling thread's), so threads that share a context never
 *     overwrite each other's messages; the readers (bp_data_read_* and
 *     bp_data_parse_*) and bp_model_info_read touch nothing else of a
 *     context, and may run on one context in several threads at once.
 *   - Status values below are stable: new ones are appended, never renumbered.
 */
#ifndef BACKPROP_H
#define BACKPROP_H

#include <stddef.h>
#include <stdint.h>

/* BP_API marks what the shared library exports: exactly the declarations of
 * this header (the library is built with hidden visibility, so nothing else
 * leaves it). */
#if defined(_WIN32)
#define BP_API
#elif defined(__GNUC__) || defined(__clang__)
#define BP_API __attribute__((visibility("default")))
#else
#define BP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ------------------------------------------------------------ */
#define BP_VERSION_MAJOR 0
#define BP_VERSION_MINOR 4
#define BP_VERSION_PATCH 0
#define BP_VERSION_NUMBER (BP_VERSION_MAJOR * 10000 + BP_VERSION_MINOR * 100 + BP_VERSION_PATCH)
#define BP_VERSION_STRING "0.4.0"

/* Version of the library actually linked, as BP_VERSION_NUMBER computes it.
 * Compare with BP_VERSION_NUMBER to detect a header/library mismatch. */
BP_API unsigned bp_version(void);
/* The same as a string, e.g. "0.1.0". Static storage; never NULL. */
BP_API const char *bp_version_string(void);

/* ---- Status ------------------------------------------------------------- */
typedef enum bp_status {
  BP_OK = 0,
  BP_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, bad size, index out of range, shape mismatch */
  BP_ERR_OUT_OF_MEMORY = 2,    /* host or device allocation failed; recoverable */
  BP_ERR_NO_DEVICE = 3,        /* CUDA asked for but no usable device (or built without CUDA) */
  BP_ERR_DEVICE = 4,           /* CUDA or cuBLAS failure; see bp_context_last_error */
  BP_ERR_IO = 5,               /* a file could not be opened, read, written or renamed */
  BP_ERR_FORMAT = 6,           /* a file or buffer is malformed */
  BP_ERR_NUMERIC = 7,          /* NaN/Inf in inputs or a non-finite cost; weights untouched */
  BP_ERR_UNSUPPORTED = 8,      /* valid request this build or version does not implement */
  BP_ERR_COMM = 9              /* data-parallel: a collective failed or passed its deadline (a
                                  rank died or stopped responding); see "Data-parallel training" */
} bp_status;

/* Name and meaning of a status, e.g. "BP_ERR_FORMAT: malformed file or buffer".
 * Static storage; never NULL (unknown values give "unknown bp_status"). */
BP_API const char *bp_status_string(bp_status status);

/* ---- Context ------------------------------------------------------------ */
typedef enum bp_backend {
  BP_BACKEND_AUTO = 0, /* CUDA when a device is usable, else CPU */
  BP_BACKEND_CPU = 1,
  BP_BACKEND_CUDA = 2
} bp_backend;

/* A context holds the backend, the device, its stream, the BLAS handle and
 * scratch memory, and the last error message. */
typedef struct bp_context bp_context;

/* Creates a context. device is the CUDA device ordinal (ignored by the CPU
 * backend; must be >= 0). BP_BACKEND_CUDA without a usable device, or in a
 * build without CUDA, returns BP_ERR_NO_DEVICE. The caller owns *out and
 * releases it with bp_context_destroy after every network and data set made
 * from it has been destroyed. */
BP_API bp_status bp_context_create(bp_backend backend, int device, bp_context **out);
/* Releases the context. NULL is a no-op. */
BP_API void bp_context_destroy(bp_context *ctx);
/* The backend actually in use (never BP_BACKEND_AUTO). */
BP_API bp_backend bp_context_backend(const bp_context *ctx);
/* Detail of the calling thread's last failure on ctx ("" if none). Valid
 * until this thread's next call on ctx or on
 * an object made from it; another thread's calls never change it. A thread
 * keeps the details of its 8 contexts most recently failed. NULL ctx gives
 * a fixed message. */
BP_API const char *bp_context_last_error(const bp_context *ctx);
/* Name of a backend: "auto", "cpu" or "cuda". Static storage. */
BP_API const char *bp_backend_name(bp_backend backend);

/* Number of usable CUDA devices (0 in a build without CUDA or without a
 * driver). Never touches CUDA before it is called. */
BP_API int bp_cuda_device_count(void);
/* 1 if this build contains the CUDA backend, else 0. */
BP_API int bp_has_cuda(void);

/* Threads of a CPU context: its matrix products and elementwise loops share
 * one pool of n threads (OpenMP's; the BLAS is an OpenMP build). n >= 1 sets
 * the count; 0, the default, follows OpenMP's default (OMP_NUM_THREADS,
 * else one thread per core). The count applies to the calls on ctx and its
 * networks made after this one, on whichever thread makes them; the caller's
 * own OpenMP setting is put back after each call. A CUDA context accepts any
 * n >= 0 and ignores it. Results are deterministic for a given count (see
 * README "CPU backend: threads and speed"). Not to be called while another
 * thread uses ctx or an object made from it. Returns BP_ERR_INVALID_ARGUMENT
 * for a NULL ctx or n < 0. */
BP_API bp_status bp_context_set_threads(bp_context *ctx, int n);
/* The thread count a CPU context's calls use now: the count set, else
 * OpenMP's default for the calling thread (1 in a build without OpenMP).
 * 0 for a CUDA context or NULL. */
BP_API int bp_context_get_threads(const bp_context *ctx);

/* ---- Network ------------------------------------------------------------ */
typedef struct bp_network bp_network;

/* Activation per weight layer (bp_network_desc.activations). Values are
 * stable (they are in model files and the ABI). With a = f(z):
 *   sigmoid   a = 1 / (1 + e^-z)                  f' = a (1 - a)
 *   tanh      a = tanh z                          f' = 1 - a^2
 *   relu      a = max(z, 0)                       f' = 1 where a > 0, else 0 (0 at z = 0, as
 *                                                  PyTorch)
 *   identity  a = z                               f' = 1
 *   softmax   a_j = e^(z_j - m) / sum_i e^(z_i - m), m = max_i z_i, over each example's
 *             outputs; only on the output layer.
 * Every derivative is taken from the stored a, which is exact for all four
 * elementwise activations. */
typedef enum bp_activation {
  BP_ACTIVATION_SIGMOID = 0,
  BP_ACTIVATION_TANH = 1,
  BP_ACTIVATION_RELU = 2,
  BP_ACTIVATION_IDENTITY = 3,
  BP_ACTIVATION_SOFTMAX = 4
} bp_activation;
/* Cost per example (a batch's cost is the mean over its examples):
 *   quadratic       C0 = sum_j (a_j - y_j)^2  (no 1/2; PyTorch: MSELoss(reduction='sum') / n)
 *   cross_entropy   softmax output: C0 = -sum_j y_j ln a_j, with ln a_j = z_j - logsumexp(z)
 *                   (PyTorch: CrossEntropyLoss(reduction='sum')(z, y) / n with
 *                   probability targets y);
 *                   sigmoid output: C0 = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)], computed
 *                   as sum_j softplus(z_j) - y_j z_j (BCEWithLogitsLoss(reduction='sum') / n).
 *                   The output error dC0/dz is then a_j (sum_i y_i) - y_j (softmax: a - y for
 *                   targets that sum to 1) and a - y (sigmoid). Cross-entropy with any other
 *                   output activation is BP_ERR_INVALID_ARGUMENT.
 * Values are stable. */
typedef enum bp_cost { BP_COST_QUADRATIC = 0, BP_COST_CROSS_ENTROPY = 1 } bp_cost;
/* The update rule (bp_optimizer_config below has each one's formula and
 * hyperparameters). Values are stable. */
typedef enum bp_optimizer {
  BP_OPTIMIZER_SGD = 0,
  BP_OPTIMIZER_ADAM = 1,
  BP_OPTIMIZER_ADAMW = 2,
  BP_OPTIMIZER_RPROP = 3
} bp_optimizer;

/* Names as model files and the command spell them ("sigmoid", "tanh",
 * "relu", "identity", "softmax"; "quadratic", "cross-entropy"; "sgd",
 * "adam", "adamw", "rprop"); "unknown" for other values. Static storage. */
BP_API const char *bp_activation_name(bp_activation act);
BP_API const char *bp_cost_name(bp_cost cost);
BP_API const char *bp_optimizer_name(bp_optimizer opt);
/* Parse those names (exact, lower case; "cross_entropy" is also accepted).
 * BP_ERR_INVALID_ARGUMENT for anything else; then *out is unchanged. */
BP_API bp_status bp_activation_parse(const char *name, bp_activation *out);
BP_API bp_status bp_cost_parse(const char *name, bp_cost *out);
BP_API bp_status bp_optimizer_parse(const char *name, bp_optimizer *out);

/* Precision of the three matrix products per layer (forward, error
 * propagation, weight gradient). Everything else (weights, biases,
 * activations, errors, gradients, the update, the reductions) is float32 in
 * every mode. Values are stable. See "Execution options" below. */
typedef enum bp_math_mode {
  BP_MATH_FP32 = 0, /* exact float32 products (cuBLAS pedantic math); the default */
  BP_MATH_TF32 = 1, /* inputs rounded to TF32 (8-bit exponent, 10-bit mantissa), float32
                       accumulation: tensor cores on Ampere and later */
  BP_MATH_BF16 = 2  /* inputs rounded to bfloat16 (7-bit mantissa), float32 accumulation;
                       float32 master weights */
} bp_math_mode;

/* Which kernels run the elementwise work of a CUDA step (the CPU backend
 * accepts and ignores it). Values are stable. Both give the same weights,
 * bit for bit where every layer is elementwise (a softmax output: to
 * rounding); see "Execution options" below. */
typedef enum bp_kernel_path {
  BP_KERNELS_REFERENCE = 0, /* one kernel per formula, pre-activations kept; the default */
  BP_KERNELS_FUSED = 1      /* bias + activation in place, error + cost + bias gradient in one
                               kernel per layer, float4 accesses */
} bp_kernel_path;

/* Which library computes the CUDA products (the CPU backend accepts and
 * ignores it). Values are stable. */
typedef enum bp_product_path {
  BP_PRODUCTS_CUBLAS = 0,  /* the context's cuBLAS handle; the default */
  BP_PRODUCTS_CUBLASLT = 1 /* cuBLASLt with a plan per product shape and a 32 MiB workspace;
                              a product it has no algorithm for runs on cuBLAS */
} bp_product_path;

/* Version 2 appended math, deterministic and cuda_graphs; version 3
 * appended kernels and products. An older desc (struct_size covering its
 * version's members) is still accepted and gets the later members'
 * defaults. */
#define BP_NETWORK_DESC_VERSION 3
/* Versioned description for bp_network_create_ex: set struct_size to
 * sizeof(bp_network_desc) and version to BP_NETWORK_DESC_VERSION; fields are
 * only ever appended. Initialize with bp_network_desc_init. */
typedef struct bp_network_desc {
  uint32_t struct_size;
  uint32_t version;
  int n_sizes;                      /* number of layer sizes, >= 2 */
  const int *sizes;                 /* n_sizes widths, each >= 1 */
  uint64_t seed;                    /* initialization seed */
  const bp_activation *activations; /* n_sizes-1 entries, or NULL for sigmoid everywhere */
  bp_cost cost;
  bp_optimizer optimizer;
  /* version 2 */
  bp_math_mode math;                /* default BP_MATH_FP32 */
  int deterministic;                /* default 1; see bp_network_set_deterministic */
  int cuda_graphs;                  /* default 0; see bp_network_set_cuda_graphs */
  /* version 3 */
  bp_kernel_path kernels;           /* default BP_KERNELS_REFERENCE */
  bp_product_path products;         /* default BP_PRODUCTS_CUBLAS */
} bp_network_desc;

/* Fills desc with defaults (sigmoid, quadratic cost, SGD, float32 math,
 * deterministic, no CUDA graphs, reference kernels, cuBLAS products) and sets struct_size/version. sizes are
 * borrowed and must outlive the create call. */
BP_API void bp_network_desc_init(bp_network_desc *desc, int n_sizes, const int *sizes, uint64_t seed);

/* Creates a network with n_sizes layer widths, sigmoid on every layer and the
 * quadratic cost, initialized deterministically from seed:
 *   W[j,k] ~ Normal(0, 1/s[i]) (standard deviation 1/sqrt(fan_in)), b = 0,
 * drawn in a fixed order from a SplitMix64-seeded xoshiro256** generator, so
 * the same seed gives the same weights on every backend and machine. The
 * 1/sqrt(fan_in) scale keeps |z| near 1 at the start, where sigmoid' is large,
 * instead of saturating wide layers (Nielsen, "Neural Networks and Deep
 * Learning", ch. 3). Device memory for parameters and gradients is allocated
 * here; activation buffers when a batch first needs them. The network keeps
 * a reference to ctx (which must outlive it). The caller owns *out. */
BP_API bp_status bp_network_create(bp_context *ctx, int n_sizes, const int *sizes, uint64_t seed,
                                   bp_network **out);
/* Same from a description. activations (n_sizes - 1 entries, or NULL for
 * sigmoid everywhere), cost and optimizer are checked: an unknown value,
 * softmax on a layer other than the last, or cross-entropy with an output
 * activation other than softmax or sigmoid is BP_ERR_INVALID_ARGUMENT; a
 * newer desc version is BP_ERR_UNSUPPORTED. desc.optimizer selects the
 * update with torch.optim's default hyperparameters
 * (bp_optimizer_config_init); bp_network_set_optimizer changes them. */
BP_API bp_status bp_network_create_ex(bp_context *ctx, const bp_network_desc *desc, bp_network **out);
/* Releases the network. NULL is a no-op. */
BP_API void bp_network_destroy(bp_network *net);

/* Shape queries. n_layers is the number of weight layers (n_sizes - 1). */
BP_API int bp_network_n_layers(const bp_network *net);
/* Width s[i] for i in 0..n_layers, or -1 if out of range / NULL. */
BP_API int bp_network_size(const bp_network *net, int i);
/* Total number of weights and biases. */
BP_API size_t bp_network_parameter_count(const bp_network *net);
BP_API bp_context *bp_network_context(const bp_network *net);

/* Copies layer `layer`'s weights (s[layer+1] x s[layer], row-major) and bias
 * (s[layer+1]) out. Either W or b may be NULL to skip it. */
BP_API bp_status bp_network_get_layer(const bp_network *net, int layer, float *W, float *b);
/* Replaces layer `layer`'s weights and bias. Either may be NULL to keep it.
 * Non-finite values are BP_ERR_NUMERIC and change nothing. */
BP_API bp_status bp_network_set_layer(bp_network *net, int layer, const float *W, const float *b);

/* The activation of weight layer `layer` (0 .. n_layers-1), and the cost.
 * For NULL or a layer out of range: BP_ACTIVATION_SIGMOID. */
BP_API bp_activation bp_network_get_activation(const bp_network *net, int layer);
BP_API bp_cost bp_network_get_cost(const bp_network *net);

/* ---- Optimizers ------------------------------------------------------------
 * Each update is torch.optim's, term for term, with g the gradient of the
 * batch's mean cost, p a parameter, lr the learning rate of the call that
 * trains (bp_train_epoch's learning_rate, ...) and t the number of updates
 * applied so far, plus one:
 *   SGD     g += weight_decay p;  if momentum != 0: buf = momentum buf + g (buf starts at 0,
 *           which is torch's "buf = g" on the first step: dampening 0), then
 *           g = nesterov ? g + momentum buf : buf;  p -= lr g
 *           (momentum 0 and weight_decay 0 is the seed's p -= lr g, bit for bit.)
 *   Adam    g += weight_decay p;  m += (1 - beta1)(g - m);  v = beta2 v + (1 - beta2) g^2;
 *           p -= (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   AdamW   p *= 1 - lr weight_decay (decoupled), then Adam without the g += term
 *   Rprop   iRPROP-: s = g prev;  step = clamp(step * (s > 0 ? eta_plus : s < 0 ? eta_minus
 *           : 1), step_min, step_max), where step starts at lr on the first update; where
 *           s < 0, g = 0; p -= sign(g) step; prev = g. lr matters only on the first
 *           update. It is meant for full batches (batch_size = the training set size).
 * The bias corrections of Adam are computed in double from t, as PyTorch does.
 *
 * The guarded-update rule holds for every optimizer: an update that would
 * make any parameter or state value non-finite is not applied at all (the
 * state does not change and t does not advance), nor is an update after a
 * batch whose cost is not finite. */

#define BP_OPTIMIZER_CONFIG_VERSION 1
/* Hyperparameters; fields are only ever appended. Initialize with
 * bp_optimizer_config_init, which writes torch.optim's defaults for `kind`:
 * SGD momentum 0, nesterov 0, weight_decay 0; Adam betas 0.9/0.999, eps
 * 1e-8, weight_decay 0; AdamW the same but weight_decay 0.01; Rprop etas
 * 0.5/1.2, step sizes 1e-6 .. 50. Fields that do not belong to `kind` are
 * ignored. */
typedef struct bp_optimizer_config {
  uint32_t struct_size;  /* sizeof(bp_optimizer_config) */
  uint32_t version;      /* BP_OPTIMIZER_CONFIG_VERSION */
  bp_optimizer kind;
  double momentum;       /* SGD, >= 0 */
  int nesterov;          /* SGD; needs momentum > 0 */
  double weight_decay;   /* SGD, Adam (added to g), AdamW (decoupled); >= 0 */
  double beta1, beta2;   /* Adam, AdamW; each in [0, 1) */
  double eps;            /* Adam, AdamW; > 0 */
  double eta_minus, eta_plus; /* Rprop; 0 < eta_minus < 1 < eta_plus */
  double step_min, step_max;  /* Rprop; 0 <= step_min <= step_max */
} bp_optimizer_config;

/* Fills cfg with the defaults of kind (see above) and sets struct_size and
 * version. */
BP_API void bp_optimizer_config_init(bp_optimizer_config *cfg, bp_optimizer kind);
/* Selects the optimizer and its hyperparameters. A value out of range is
 * BP_ERR_INVALID_ARGUMENT and changes nothing. Changing the kind, or
 * momentum between zero and non-zero, resets the optimizer state to zeros
 * and t to 0; otherwise the state is kept (a new learning rate or decay
 * continues the same run). cfg is only read during the call. */
BP_API bp_status bp_network_set_optimizer(bp_network *net, const bp_optimizer_config *cfg);
/* Copies the network's optimizer configuration into *cfg; cfg->struct_size
 * must be set (a shorter, older struct gets the fields it has). */
BP_API bp_status bp_network_get_optimizer(const bp_network *net, bp_optimizer_config *cfg);

/* The optimizer state, kept in backend memory (device memory on CUDA) next
 * to the parameters: bp_network_optimizer_state_slots(net) buffers of
 * bp_network_parameter_count(net) floats each, one after another, each in
 * the parameters' layout (layer i's W_i row-major, then b_i, layer after
 * layer), named by bp_optimizer_state_slot_name:
 *   SGD with momentum: "momentum_buffer";  SGD without: no state;
 *   Adam, AdamW: "exp_avg", "exp_avg_sq";  Rprop: "prev", "step_size"
 * (torch.optim's state names), plus the step count t (updates applied).
 * Saving a model with these and restoring them with
 * bp_network_set_optimizer_state resumes training exactly. */
BP_API int bp_network_optimizer_state_slots(const bp_network *net);
/* Name of slot `slot` of optimizer kind, or NULL when it has no such slot.
 * For SGD, slot 0 is "momentum_buffer" (present only with momentum). */
BP_API const char *bp_optimizer_state_slot_name(bp_optimizer kind, int slot);
/* Copies the whole state out: count must be slots x parameter count (state
 * may be NULL when count is 0); *step (may be NULL) receives t. */
BP_API bp_status bp_network_get_optimizer_state(const bp_network *net, float *state, size_t count,
                                                int64_t *step);
/* Replaces the whole state (count as above) and t (>= 0). Non-finite values
 * are BP_ERR_NUMERIC and change nothing. */
BP_API bp_status bp_network_set_optimizer_state(bp_network *net, const float *state, size_t count,
                                                int64_t step);

/* ---- Learning-rate schedules -------------------------------------------------
 * A pure function of the epoch, for a program that trains epoch by epoch
 * and passes the rate to bp_train_epoch. With e the epoch (0-based), W the
 * warmup epochs and e' = e - W:
 *   e < W            lr = base_lr (e + 1) / W          (linear warmup)
 *   constant         lr = base_lr
 *   step             lr = base_lr factor^floor(e' / step_epochs)   (torch StepLR)
 *   cosine           lr = min_lr + (base_lr - min_lr) (1 + cos(pi e' / T)) / 2,
 *                    T = total_epochs - W, e' clamped to T    (torch CosineAnnealingLR)
 */
typedef enum bp_lr_schedule_kind {
  BP_LR_CONSTANT = 0,
  BP_LR_STEP = 1,
  BP_LR_COSINE = 2
} bp_lr_schedule_kind;
typedef struct bp_lr_schedule {
  bp_lr_schedule_kind kind;
  double base_lr;
  int step_epochs;     /* step: >= 1 */
  double step_factor;  /* step: > 0 */
  int total_epochs;    /* cosine: the run's epochs */
  double min_lr;       /* cosine: default 0 */
  int warmup_epochs;   /* >= 0; default 0 */
} bp_lr_schedule;
/* Constant schedule at base_lr, no warmup. */
BP_API void bp_lr_schedule_init(bp_lr_schedule *s, double base_lr);
/* Parses "constant", "step:EPOCHS:FACTOR" or "cosine" into the kind and
 * its fields (the other fields of *s stay; set base_lr, total_epochs and
 * warmup_epochs yourself). BP_ERR_INVALID_ARGUMENT for anything else. */
BP_API bp_status bp_lr_schedule_parse(const char *text, bp_lr_schedule *s);
/* The learning rate of epoch `epoch` (>= 0). An invalid schedule gives NaN. */
BP_API double bp_lr_schedule_at(const bp_lr_schedule *s, int epoch);

/* ---- Execution options ----------------------------------------------------
 * Per network; they change how the work is done, never the math of the
 * contract above. They may be changed between any two calls. */

/* Name of a math mode: "fp32", "tf32" or "bf16"; "unknown" otherwise.
 * Static storage. */
BP_API const char *bp_math_mode_name(bp_math_mode mode);
/* Parses "fp32", "tf32" or "bf16" (as bp_math_mode_name prints them) into
 * *mode. BP_ERR_INVALID_ARGUMENT for anything else (then *mode is unchanged). */
BP_API bp_status bp_math_mode_parse(const char *name, bp_math_mode *mode);

/* Selects the precision of the products (bp_math_mode). On CUDA, TF32 and
 * BF16 use tensor cores (TF32 needs compute capability 8.0 or later; on an
 * older device the call returns BP_ERR_UNSUPPORTED and the mode stays). On
 * the CPU backend TF32 and BF16 are emulated: the products' inputs are
 * rounded to nearest-even to the reduced precision and the products run in
 * float32, so the accuracy of a mode can be studied without a GPU (it is
 * slower than FP32 there, never faster). An unknown mode is
 * BP_ERR_INVALID_ARGUMENT. The accuracy of each mode against FP32 is
 * documented in the README ("Math modes"). */
BP_API bp_status bp_network_set_math_mode(bp_network *net, bp_math_mode mode);
/* The current math mode (BP_MATH_FP32 for NULL). bp_network_math_mode is
 * the older name of the same call. */
BP_API bp_math_mode bp_network_get_math_mode(const bp_network *net);
BP_API bp_math_mode bp_network_math_mode(const bp_network *net);

/* Deterministic mode (on = 1, the default): two runs from the same seed on
 * the same device and library version give bit-identical weights and costs.
 * Every reduction of the library is deterministic in any mode (fixed grids,
 * fixed order, no floating-point atomics), and so is the default product
 * path (cuBLAS on one stream, atomics never enabled). The switch matters for
 * the optional cuBLASLt path (BP_PRODUCTS_CUBLASLT): on, it
 * admits only algorithms without split-K; off, it lets cuBLASLt pick
 * split-K algorithms, whose partial sums may be combined differently from
 * run to run, which can be faster for products with a long inner dimension
 * (the weight gradient at large batches). The CPU backend is deterministic
 * either way. */
BP_API bp_status bp_network_set_deterministic(bp_network *net, int on);
/* The current setting (1 for NULL); bp_network_deterministic is the older
 * name of the same call. */
BP_API int bp_network_get_deterministic(const bp_network *net);
BP_API int bp_network_deterministic(const bp_network *net);

/* CUDA graphs (on = 1; default 0): the CUDA backend captures the device
 * work of a training step (bp_train_epoch, bp_train_epoch_host) and of a
 * forward pass (bp_forward) once per batch shape and replays it, so a step
 * costs one launch on the host instead of one per kernel. A captured graph
 * is kept per key (batch size, learning rate, data and workspace buffers,
 * execution options; a few keys per network) and the first run of a key is
 * not captured. Results are bit-identical either way. The CPU backend
 * accepts and ignores the switch. */
BP_API bp_status bp_network_set_cuda_graphs(bp_network *net, int on);
/* The current setting (0 for NULL); bp_network_cuda_graphs is the older
 * name of the same call. */
BP_API int bp_network_get_cuda_graphs(const bp_network *net);
BP_API int bp_network_cuda_graphs(const bp_network *net);

/* The kernel path (bp_kernel_path): BP_KERNELS_FUSED runs the forward pass
 * as one in-place bias + activation kernel per layer and the backward pass
 * as one error + cost + bias-gradient kernel per layer, with 16-byte
 * accesses where the widths allow, and the update of an optimizer with
 * state in two launches instead of three; it keeps no pre-activations (but
 * the output layer's with the cross-entropy cost), so it needs less device
 * memory. It covers every activation, cost and optimizer; a softmax output
 * wider than 1024 runs the reference kernels whatever the path. The weights
 * are bit-identical to the reference path where every layer is elementwise;
 * with a softmax output they agree to rounding (its column sums are added
 * in another order). The batch cost agrees to double rounding. Takes effect
 * at the next call (a CUDA workspace of the other kind is reallocated
 * then). An unknown value is BP_ERR_INVALID_ARGUMENT. */
BP_API bp_status bp_network_set_kernel_path(bp_network *net, bp_kernel_path path);
/* The current kernel path (BP_KERNELS_REFERENCE for NULL). */
BP_API bp_kernel_path bp_network_get_kernel_path(const bp_network *net);

/* The product path (bp_product_path). Takes effect at the next product. An
 * unknown value is BP_ERR_INVALID_ARGUMENT. */
BP_API bp_status bp_network_set_product_path(bp_network *net, bp_product_path path);
/* The current product path (BP_PRODUCTS_CUBLAS for NULL). */
BP_API bp_product_path bp_network_get_product_path(const bp_network *net);

/* ---- Training on host arrays ---------------------------------------------
 * Host arrays, row-major: X is n x s[0], Y and out are n x s[L]. NaN or Inf
 * in X or Y returns BP_ERR_NUMERIC before anything is computed. */

/* Forward pass; writes the output activations to out. */
BP_API bp_status bp_forward(bp_network *net, const float *X, int n, float *out);
/* Forward and backward pass: computes the gradients of the batch's mean cost
 * (kept in the network, see bp_network_get_gradient) and, if cost is not
 * NULL, the mean cost. Weights are not changed. */
BP_API bp_status bp_backward(bp_network *net, const float *X, const float *Y, int n, float *cost);
/* Copies the gradient of layer `layer` from the last bp_backward (or training
 * step). Shapes as bp_network_get_layer. Before any backward: zeros. */
BP_API bp_status bp_network_get_gradient(const bp_network *net, int layer, float *dW, float *db);
/* W -= lr * dW, b -= lr * db with the stored gradients (the seed's SGD; with
 * another optimizer configured, that optimizer's update: one step of it, see
 * "Optimizers"). lr must be finite.
 * An update that would make any weight non-finite (lr so large that it
 * overflows) is not applied at all: BP_ERR_NUMERIC, weights unchanged. */
BP_API bp_status bp_sgd_step(bp_network *net, float learning_rate);
/* bp_backward then bp_sgd_step. If the cost is not finite, or the update
 * would make a weight non-finite, the update is skipped, the weights stay as
 * they were, and BP_ERR_NUMERIC is returned. */
BP_API bp_status bp_train_batch(bp_network *net, const float *X, const float *Y, int n,
                                float learning_rate, float *cost);

/* ---- Data already on the GPU -----------------------------------------------
 * For host applications whose data lives in device memory. X, Y and out are
 * device pointers (on the context's device) with the layout of the host
 * calls (row-major: X is n x s[0], Y and out n x s[L]); cost, when not NULL,
 * is a device pointer to one float that receives the batch's mean cost.
 * stream is a cudaStream_t the caller owns (NULL: the legacy default
 * stream); the declaration below needs no CUDA header, and a cudaStream_t
 * converts to it as is.
 *
 * Ordering: the work starts after everything queued on `stream` before the
 * call, and everything queued on `stream` after the call starts after the
 * work (the library joins its own stream to the caller's with events). The
 * call returns once the work is queued, without waiting for it: X and Y must
 * stay valid, and out/cost unread, until `stream` reaches that point.
 * Errors in the arguments and launch errors are returned at once; a device
 * fault surfaces in a later call. Device inputs are not scanned for NaN: a
 * non-finite cost skips the update on the device (as in bp_train_epoch), and
 * the cost written says so.
 *
 * One host wait remains: the first call with a larger n than the network has
 * seen allocates a larger workspace and first waits for the library's own
 * earlier work on this network (never for the caller's stream). A caller
 * that must not block can make one call with its largest n up front.
 *
 * Refused at once with BP_ERR_INVALID_ARGUMENT (they would make the device
 * fault, which poisons every CUDA context of the process): a pointer the
 * device cannot read (plain host memory, unless the device reads pageable
 * memory, as with HMM or ATS), or device memory of another device. Refused
 * with BP_ERR_UNSUPPORTED: a stream being captured into a CUDA graph (and
 * the legacy default stream while another stream captures). The sizes of the
 * buffers cannot be checked: X must hold n * s[0] floats, Y and out
 * n * s[L].
 *
 * These calls need the CUDA backend: the CPU backend and builds without CUDA
 * return BP_ERR_UNSUPPORTED. Threads: as for every call on the network. */
typedef struct CUstream_st *bp_cuda_stream;

/* Forward pass of n examples; out receives the output activations. */
BP_API bp_status bp_forward_device(bp_network *net, const float *X, int n, float *out,
                                   bp_cuda_stream stream);
/* Forward and backward pass; the gradients stay in the network as after
 * bp_backward. cost may be NULL. */
BP_API bp_status bp_backward_device(bp_network *net, const float *X, const float *Y, int n, float *cost,
                                    bp_cuda_stream stream);
/* bp_backward_device then the SGD update, decided on the device: a batch
 * whose cost is not finite, or whose update would make a weight non-finite,
 * leaves the weights unchanged. lr must be finite. cost may be NULL. */
BP_API bp_status bp_train_batch_device(bp_network *net, const float *X, const float *Y, int n,
                                       float learning_rate, float *cost, bp_cuda_stream stream);

/* ---- Data sets in backend memory -----------------------------------------
 * Two nouns, one per place the examples live: a bp_data holds them in host
 * memory (the readers below fill one; its arrays are yours to read), a
 * bp_dataset is the backend's copy (device memory on CUDA), made from host
 * arrays once and read by every epoch and evaluation. */
typedef struct bp_dataset bp_dataset;

/* Copies n examples (X: n x n_in, Y: n x n_out, row-major host arrays) into
 * the backend's memory (device memory for CUDA) once. NaN/Inf is
 * BP_ERR_NUMERIC. The data set keeps a reference to ctx. Caller owns *out. */
BP_API bp_status bp_dataset_create(bp_context *ctx, int n, int n_in, int n_out, const float *X,
                                   const float *Y, bp_dataset **out);
/* Releases the data set. NULL is a no-op. */
BP_API void bp_dataset_destroy(bp_dataset *data);
BP_API int bp_dataset_size(const bp_dataset *data);
BP_API int bp_dataset_n_in(const bp_dataset *data);
BP_API int bp_dataset_n_out(const bp_dataset *data);

/* The shuffle_seed of the epoch calls below that keeps the examples in
 * their order (no shuffle): the batches are the data set's examples 0 ..
 * batch_size-1, then the next batch_size, and so on. Every other value
 * shuffles. */
#define BP_SHUFFLE_NONE UINT64_MAX

/* One epoch of mini-batch SGD: examples are shuffled with a permutation drawn
 * from shuffle_seed (Fisher-Yates, deterministic; BP_SHUFFLE_NONE: in order), cut into batches of
 * batch_size (the last one may be smaller), and each batch takes one step.
 * On CUDA the batches are gathered on the device: no host round trip per
 * batch. mean_cost (may be NULL) receives the mean over the epoch's examples
 * of the cost each batch had before its step (a batch whose cost is not
 * finite adds nothing to the sum but counts its examples). A batch whose cost is not finite, or whose update would make a
 * weight non-finite, is skipped (its update is not applied; decided on the
 * device, without a host round trip) and the epoch returns BP_ERR_NUMERIC
 * after finishing; weights always stay finite. The network
 * and data set must share the context and agree on widths. */
BP_API bp_status bp_train_epoch(bp_network *net, const bp_dataset *data, int batch_size,
                                float learning_rate, uint64_t shuffle_seed, float *mean_cost);
/* Progress inside an epoch, for bp_train_epoch_ex: examples_done of
 * examples_total have taken their step so far in this epoch, and
 * running_cost is the mean cost of those examples (before their steps).
 * Called on the calling thread, from inside bp_train_epoch_ex; it must not
 * call into the library with the same context. Return 0 to go on, nonzero
 * to stop the epoch after the batches done so far (they stay applied). */
typedef int (*bp_progress_fn)(void *user, int examples_done, int examples_total,
                              float running_cost);
/* bp_train_epoch, reporting progress every `every` batches (>= 1) and after
 * the last one. On CUDA each report waits for the device once (one host
 * round trip per `every` batches, none in between). progress may be NULL
 * (then it is exactly bp_train_epoch). Stopped early by the callback, it
 * returns BP_OK and *mean_cost covers the examples done. */
BP_API bp_status bp_train_epoch_ex(bp_network *net, const bp_dataset *data, int batch_size,
                                   float learning_rate, uint64_t shuffle_seed, float *mean_cost,
                                   bp_progress_fn progress, void *user, int every);
/* One epoch, exactly as bp_train_epoch (the same permutation from
 * shuffle_seed, the same batches, the same skipping rules, bit-identical
 * results), but reading the examples from host arrays (X: n x n_in, Y:
 * n x n_out, row-major) batch by batch instead of from a bp_dataset: for data
 * sets too large for device memory, or that change between epochs. On CUDA
 * each batch is gathered on the host into pinned memory and copied on a
 * second stream while the previous batch computes (double buffering), so the
 * copies hide behind the compute when the network is large enough. X and Y
 * are scanned for NaN/Inf first (BP_ERR_NUMERIC, nothing trained). n is the
 * number of examples (1 .. 2^28); a batch_size above n is clamped to n, as
 * in bp_train_epoch. On CUDA the pinned and device staging buffers (two
 * batches of inputs and targets each) belong to the network: allocated by
 * the first such epoch, grown for a larger batch, freed with the network.
 * The call returns when the epoch is done (it reads the epoch's cost). */
BP_API bp_status bp_train_epoch_host(bp_network *net, const float *X, const float *Y, int n,
                                     int batch_size, float learning_rate, uint64_t shuffle_seed,
                                     float *mean_cost);
/* Mean cost and accuracy over the data set. Accuracy is the fraction of
 * examples whose largest output is at the index of the largest target (first
 * index on ties); with one output, both on the same side of 0.5. Either out
 * pointer may be NULL. */
BP_API bp_status bp_evaluate(bp_network *net, const bp_dataset *data, float *mean_cost, float *accuracy);

/* ---- Statistics -----------------------------------------------------------
 * What the last epoch call (bp_train_epoch, bp_train_epoch_ex,
 * bp_train_epoch_host) on a network cost the host, for measuring launch
 * overhead (e.g. with and without CUDA graphs). Fields are only appended. */
typedef struct bp_epoch_stats {
  int steps;            /* batches the call ran */
  int graph_replays;    /* of those, steps replayed from a captured CUDA graph */
  double wall_us;       /* the whole call, microseconds */
  double queue_us;      /* host time spent issuing the steps' work: on CUDA from the first
                           batch until the last is queued, before the final wait (the
                           device runs behind; the queue blocks only when it is full; the
                           waits of progress reports and bp_train_epoch_host's host-side
                           gathers count too); on the CPU the steps themselves */
  long long launches;   /* device work the host issued: kernel launches, library products and
                           graph launches (a replayed step counts 1); 0 on the CPU */
  /* Data-parallel training (a network with a communicator of 2 or more ranks; all 0 otherwise).
   * Per call, summed over its steps; divide by steps for a step's share. */
  int world_size;       /* ranks the gradients were exchanged over (0: no exchange) */
  double comm_bytes;    /* gradient bytes this rank all-reduced */
  double comm_us;       /* exchange time: per step, from the first bucket's all-reduce start to
                           the last one's completion (steps replayed from a CUDA graph: not
                           seen by the host, not counted) */
  double comm_wait_us;  /* of comm_us, the time the host waited after backward had ended (the
                           exposed part); comm_us - comm_wait_us was hidden behind backward */
  /* The running training accuracy (added in 0.4; over all ranks): of the `examples` the
   * epoch trained on, `correct` were classified right (the largest output is the target's
   * largest, the rule of bp_evaluate) by the forward pass of their own step, before its
   * update, as the epoch's mean cost is the batches' costs before their updates. It costs
   * no extra pass over the data; bp_evaluate gives the accuracy of the final weights. */
  long long examples;
  long long correct;
} bp_epoch_stats;
/* Copies the statistics of the last epoch call into *stats; all zero before
 * the first. stats_size is sizeof(bp_epoch_stats) as the caller was
 * compiled: a program built against an older, shorter struct gets only the
 * fields it knows. Statistics of a call that failed are those of the work it
 * did. */
BP_API bp_status bp_network_last_epoch_stats(const bp_network *net, bp_epoch_stats *stats,
                                             size_t stats_size);

/* ---- Data-parallel training ------------------------------------------------
 * Several processes (ranks), each with a copy of the network, train it on one
 * global batch at a time: every rank reads its own slice of each global batch
 * (the epoch's shuffle comes from the shared seed, so all ranks agree on the
 * batches), computes the gradient of its slice, and the ranks all-reduce
 * (sum) the gradients weighted by their example counts, so every rank applies
 * the same update: the mean gradient over the global batch, also when the
 * batch does not divide evenly. The ranks' weights stay bit-identical, and the
 * result equals a single-process run on the same global batches up to the
 * order of float sums. The batch cost (and so the non-finite rule), the
 * epoch's cost and bp_evaluate's cost and accuracy are reduced over the ranks:
 * every rank gets the same values.
 *
 * Transports: the CPU backend all-reduces host memory with MPI. The CUDA
 * backend uses NCCL on a communication stream (each bucket of layers as soon
 * as backward has produced it, the last layer first), or MPI with host staging
 * (the gradients copied to host memory, all-reduced, copied back) when NCCL
 * is not built or two ranks share a GPU, which NCCL refuses.
 * The CPU path starts each bucket's non-blocking MPI all-reduce as backward
 * produces it, so it overlaps the rest of backward.
 *
 * Every collective is collective: all ranks must make the same calls on their
 * networks in the same order (bp_network_set_comm, the epoch calls,
 * bp_train_batch, bp_evaluate), with the same arguments except the data of
 * bp_train_batch. A rank that stops responding makes the others' next
 * collective fail with BP_ERR_COMM after the communicator's timeout (never a
 * silent hang); a rank that dies is ended by the launcher (mpirun, srun).
 * After BP_ERR_COMM the communicator is broken: call bp_comm_abort, which
 * ends the whole job.
 */
typedef struct bp_comm bp_comm;

/* How a communicator found its ranks. Values are stable. */
typedef enum bp_comm_bootstrap {
  BP_COMM_SINGLE = 0, /* no launcher: one rank */
  BP_COMM_MPI = 1,    /* MPI_COMM_WORLD: mpirun, mpiexec, srun (any MPI launcher) */
  BP_COMM_FILE = 2    /* no MPI: BP_RANK, BP_WORLD_SIZE and a rendezvous for NCCL's unique
                         id, a shared file (BP_RENDEZVOUS=file:PATH) or rank 0's TCP socket
                         (BP_RENDEZVOUS=tcp:HOST:PORT); NCCL transport on the CUDA backend
                         only (see bp_comm_create_from_env) */
} bp_comm_bootstrap;

/* Which transport moves the gradients. Values are stable. */
typedef enum bp_comm_transport {
  BP_COMM_TRANSPORT_AUTO = 0, /* CPU: MPI; CUDA: NCCL when built in, else MPI staged */
  BP_COMM_TRANSPORT_MPI = 1,  /* MPI on host memory (CUDA: staged through host memory) */
  BP_COMM_TRANSPORT_NCCL = 2  /* NCCL on device memory (CUDA backend, NCCL build) */
} bp_comm_transport;

#define BP_COMM_DESC_VERSION 1
/* Versioned options for bp_comm_create_from_env (fields only appended).
 * Initialize with bp_comm_desc_init. */
typedef struct bp_comm_desc {
  uint32_t struct_size;
  uint32_t version;
  double timeout_s;          /* deadline of every collective, seconds (> 0); default 300 */
  size_t bucket_bytes;       /* gradients are all-reduced in buckets of whole layers of at least
                                this many bytes, the last layer first; default 1 MiB. A bucket
                                of at least bucket_bytes / 16 closes earlier when backward has
                                as many weights' products left to run as it holds (so a small
                                network's buckets can start during backward) */
  bp_comm_transport transport; /* default BP_COMM_TRANSPORT_AUTO */
} bp_comm_desc;
BP_API void bp_comm_desc_init(bp_comm_desc *desc);

/* 1 if this build can train data-parallel over MPI (resp. NCCL), else 0. */
BP_API int bp_has_mpi(void);
BP_API int bp_has_nccl(void);

/* Creates this process's communicator from the launcher's environment: the
 * one call of the library that reads environment variables. Under an MPI
 * launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or SLURM_NTASKS with
 * SLURM_PROCID is set, or MPI is already initialized) it initializes MPI
 * unless the program already has (MPI_Init_thread, MPI_THREAD_SERIALIZED), and
 * the ranks are MPI_COMM_WORLD's (BP_COMM_MPI); its local rank (for the
 * device) is the rank among the processes of the same machine. When MPI
 * grants MPI_THREAD_SERIALIZED or more, a thread of the communicator
 * (started by the first gradient exchange, joined by bp_comm_destroy) makes
 * the MPI calls that move the gradients while backward runs; the program
 * must not call MPI from another thread while a training call (bp_train_*)
 * of a network using the communicator runs. With less (a program that initialized MPI with MPI_THREAD_FUNNELED),
 * or BP_COMM_PROGRESS=poll in the environment, the calling thread polls the
 * exchange at each layer boundary instead. Without a
 * launcher it is one rank (BP_COMM_SINGLE): training with it is training
 * without it. A launcher seen in a build without MPI is BP_ERR_UNSUPPORTED.
 *
 * Without an MPI launcher, as torchrun and llm.c start ranks, the ranks come
 * from the environment when BP_RENDEZVOUS is set (BP_COMM_FILE):
 *   BP_RANK=r             this process's rank, 0 .. BP_WORLD_SIZE-1 (required)
 *   BP_WORLD_SIZE=n       the number of ranks, >= 1 (required)
 *   BP_LOCAL_RANK=l       the rank on this machine, its CUDA device (default: BP_RANK)
 *   BP_RENDEZVOUS=file:PATH  a file every rank can reach (a shared file system
 *                         for several machines): rank 0 writes NCCL's unique id
 *                         there atomically (a temporary file renamed), the
 *                         others poll for it against the communicator's
 *                         deadline. PATH must be new for each job (put the
 *                         job's id in it): a file left by an earlier job would
 *                         be read as this one's. Rank 0 removes it in
 *                         bp_comm_destroy.
 *   BP_RENDEZVOUS=tcp:HOST:PORT  rank 0's address as every rank can reach it
 *                         (a name, an IPv4 address, or an IPv6 one in brackets:
 *                         tcp:[fe80::1]:29500) and a free port 1 .. 65535: rank 0
 *                         listens there, the others connect (retrying until
 *                         rank 0 listens) and receive the unique id; every
 *                         message carries the world size and the rank, so a rank
 *                         started for another world size, a rank number given
 *                         twice, or a program on the port that is not rank 0 is
 *                         BP_ERR_COMM naming the address (a connection that is
 *                         not a backprop rank's is closed and the job goes on).
 *                         A rank that never comes is BP_ERR_COMM on the others
 *                         at the deadline. Nothing is left behind.
 *                         A malformed value is BP_ERR_INVALID_ARGUMENT here.
 * There is no host collective then: such a communicator serves the NCCL
 * transport of the CUDA backend only, whose NCCL communicator also carries
 * the few host reductions (the cost, the weights' broadcast);
 * bp_network_set_comm on a CPU network, or with BP_COMM_TRANSPORT_MPI, is
 * BP_ERR_UNSUPPORTED. An MPI launcher's variables take precedence.
 * desc may be NULL (defaults). On failure *out is NULL and the reason is
 * bp_comm_last_error(NULL) (this thread's last failed create). Collective
 * under a launcher: every rank calls it. The caller owns *out. */
BP_API bp_status bp_comm_create_from_env(const bp_comm_desc *desc, bp_comm **out);
/* Releases the communicator (after every network using it has been destroyed
 * or detached); finalizes MPI if bp_comm_create_from_env initialized it and no
 * collective failed. Collective. NULL is a no-op. */
BP_API void bp_comm_destroy(bp_comm *comm);
BP_API int bp_comm_size(const bp_comm *comm);       /* ranks (world size) */
BP_API int bp_comm_rank(const bp_comm *comm);       /* 0 .. size-1 */
BP_API int bp_comm_local_rank(const bp_comm *comm); /* rank on this machine: its CUDA device */
BP_API bp_comm_bootstrap bp_comm_get_bootstrap(const bp_comm *comm);
/* Name of a bootstrap: "single", "mpi" or "file". Static storage. */
BP_API const char *bp_comm_bootstrap_name(bp_comm_bootstrap bootstrap);
/* Changes the deadline of the collectives (seconds, finite and > 0). */
BP_API bp_status bp_comm_set_timeout(bp_comm *comm, double seconds);
BP_API double bp_comm_get_timeout(const bp_comm *comm);
/* Detail of the last failure on comm (the same text also goes to the
 * context of the network involved). NULL: this thread's last failed
 * bp_comm_create_from_env. Never NULL. */
BP_API const char *bp_comm_last_error(const bp_comm *comm);
/* Sums count doubles over the ranks, in place, against the deadline: for a
 * program's own agreements (e.g. every rank stops when any was interrupted).
 * Collective; BP_OK at once with one rank. */
BP_API bp_status bp_comm_allreduce_sum(bp_comm *comm, double *values, int count);
/* Ends every rank of the job (MPI_Abort on MPI_COMM_WORLD with exit code
 * `code`, after aborting the NCCL communicators): for a program whose
 * collective failed with BP_ERR_COMM, which cannot finalize. The one call of
 * the library that ends the process; it returns only with one rank and no
 * MPI (then it does nothing).
 * With BP_COMM_FILE there is no launcher to end the others: it aborts the
 * NCCL communicator and ends this process (exit status `code`); the other
 * ranks' next collective fails at their deadline. */
BP_API void bp_comm_abort(bp_comm *comm, int code);

/* Attaches comm to net: from now on net's epochs, bp_train_batch and
 * bp_evaluate are data-parallel over comm's ranks (see the section's
 * introduction); rank 0's weights are broadcast to every rank first, so the
 * ranks start bit-identical. NULL detaches. comm must outlive the network or
 * be detached first. BP_ERR_UNSUPPORTED for a transport that the build or the
 * backend lacks. Collective. On CUDA with several ranks and CUDA graphs on,
 * the step with its NCCL exchange is captured and replayed as one graph
 * (the deadline's wait stays outside it; a replayed step adds no comm_us);
 * over the MPI-staged transport, which waits on the host mid-step, it runs
 * as its primitives (forward, backward, exchange, update). */
BP_API bp_status bp_network_set_comm(bp_network *net, bp_comm *comm);
BP_API bp_comm *bp_network_get_comm(const bp_network *net);

/* ---- Model files (safetensors) -------------------------------------------
 * Format: 8-byte little-endian header length N, N bytes of JSON, raw
 * little-endian data. Tensors "layers.{i}.weight" ([s[i+1], s[i]], F32) and
 * "layers.{i}.bias" ([s[i+1]], F32): the names and shapes of a PyTorch
 * nn.Linear stack. "__metadata__" holds string pairs: "format"="backprop",
 * "backprop_version", "activation", "cost" ("quadratic" or "cross-entropy"),
 * "sizes" ("784,100,10"), plus any pairs the caller adds. "activation" is
 * one name when every layer has it ("sigmoid") or one per weight layer,
 * comma-separated ("relu,relu,softmax"); names as bp_activation_name.
 *
 * bp_network_save_with_state also writes the optimizer: metadata
 * "optimizer" (its name), "optimizer.step" (t) and the hyperparameters of
 * its kind ("optimizer.momentum", ".nesterov", ".weight_decay", ".beta1",
 * ".beta2", ".eps", ".eta_minus", ".eta_plus", ".step_min", ".step_max"),
 * and per state slot one tensor per parameter tensor, in its shape:
 * "optimizer.<slot name>.layers.{i}.weight" / ".bias" (slot names as
 * bp_optimizer_state_slot_name, e.g. "optimizer.exp_avg.layers.0.weight").
 * The keys "optimizer" and "optimizer.*" are reserved for this. */

/* Saves atomically: writes a temporary file in the same directory, flushes,
 * fsyncs, renames it over path and fsyncs the directory. On any failure
 * (BP_ERR_IO) the old file at path is intact and no temporary file remains.
 * meta_keys/meta_values: n_meta extra metadata strings (may be 0/NULL). */
BP_API bp_status bp_network_save(const bp_network *net, const char *path);
BP_API bp_status bp_network_save_ex(const bp_network *net, const char *path, int n_meta,
                                    const char *const *meta_keys, const char *const *meta_values);
/* bp_network_save_ex plus the optimizer: its configuration, step count and
 * state (see above), so that bp_network_load gives a network that resumes
 * training exactly where this one is. */
BP_API bp_status bp_network_save_with_state(const bp_network *net, const char *path, int n_meta,
                                            const char *const *meta_keys,
                                            const char *const *meta_values);
/* Reads a model file and creates a network from it in ctx: the widths,
 * weights, activation of each layer and cost it records (a file without
 * "activation" / "cost", as the seed wrote for sigmoid, is sigmoid and
 * quadratic) and, when the file has them (bp_network_save_with_state), the
 * optimizer, its state and step count; otherwise the optimizer is SGD.
 * Every inconsistency (truncation, header length, JSON, dtypes, shapes,
 * offsets, an unknown activation, cost or optimizer, softmax on a hidden
 * layer, missing state tensors) is BP_ERR_FORMAT with the file and byte
 * offset in the message; nothing is read out of bounds. */
BP_API bp_status bp_network_load(bp_context *ctx, const char *path, bp_network **out);
/* The same from a buffer in memory (len bytes); name is used in messages. */
BP_API bp_status bp_network_load_buffer(bp_context *ctx, const void *data, size_t len, const char *name,
                                        bp_network **out);
/* Loads weights into an existing network; a file of another shape is
 * BP_ERR_FORMAT and overwrites nothing. */
BP_API bp_status bp_network_load_weights(bp_network *net, const char *path);

/* Metadata of a model file, without creating a network. The caller frees
 * the result with bp_model_info_free (NULL is a no-op). */
typedef struct bp_model_info {
  int n_sizes;
  int *sizes;
  size_t n_params;
  int n_meta;
  char **meta_keys;
  char **meta_values;
} bp_model_info;
BP_API bp_status bp_model_info_read(bp_context *ctx, const char *path, bp_model_info **out);
BP_API void bp_model_info_free(bp_model_info *info);

/* ---- Reading data sets (host memory) -------------------------------------
 * A bp_data holds n examples in row-major host arrays X (n x n_in) and Y
 * (n x n_out), owned by the bp_data and released by bp_data_free (which
 * accepts NULL). Readers report malformed input as BP_ERR_FORMAT (or
 * BP_ERR_IO when the file cannot be read) on ctx, with the file name and the
 * line or byte offset. Each reader has a (pointer, length) entry point. */
typedef struct bp_data {
  int n, n_in, n_out;
  float *X;
  float *Y;          /* NULL when n_out is 0 (a CSV read with inputs_only) */
  /* Appended in 0.2: n_out class names in id order when the labels were
   * names (CSV), else NULL. Owned by the bp_data. */
  char **class_names;
} bp_data;
BP_API void bp_data_free(bp_data *data);

/* IDX images + labels (MNIST, Fashion-MNIST), plain or gzip-compressed
 * (detected by magic). Pixels scaled to [0,1]; labels one-hot over 10
 * classes (or max label + 1 if larger). */
BP_API bp_status bp_data_read_idx(bp_context *ctx, const char *images_path, const char *labels_path,
                                  bp_data **out);
BP_API bp_status bp_data_parse_idx(bp_context *ctx, const void *images, size_t images_len,
                                   const void *labels, size_t labels_len, const char *name, bp_data **out);
/* A directory with the four MNIST-style files (train-images-idx3-ubyte[.gz],
 * train-labels-idx1-ubyte[.gz], t10k-images..., t10k-labels...). */
BP_API bp_status bp_data_read_idx_dir(bp_context *ctx, const char *dir, bp_data **train, bp_data **test);

/* CSV: numeric columns, optional header line (detected when its first field
 * is not a number), fields separated by ',', ';' or tab (detected from the
 * first line unless delimiter says). n_targets == 0: the label column
 * (label_column, negative counts from the end: -1 = last) holds integer
 * class ids, one-hot encoded, or class names (when the first data row's
 * label is not a number): ids in the order of class_names, then of first
 * appearance, and bp_data.class_names lists them. n_targets > 0: the last
 * n_targets columns are real-valued targets. inputs_only: every column is
 * an input (no labels, no targets: n_out = 0, Y = NULL), e.g. to predict.
 * The members after n_classes were appended in 0.2: a program compiled
 * against an older header must be rebuilt. */
typedef struct bp_csv_options {
  int label_column;        /* default -1 */
  int n_targets;           /* default 0 */
  int n_classes;           /* 0: max label + 1, at most 65536 (set it for more) */
  int delimiter;           /* 0 (default): detect; or ',', ';' or '\t' */
  int inputs_only;         /* default 0 */
  const char *class_names; /* NULL (default), or names separated by '\n' that get ids
                              0, 1, ... in that order (a model's map); makes the labels names */
} bp_csv_options;
BP_API void bp_csv_options_init(bp_csv_options *opt);
BP_API bp_status bp_data_read_csv(bp_context *ctx, const char *path, const bp_csv_options *opt,
                                  bp_data **out);
BP_API bp_status bp_data_parse_csv(bp_context *ctx, const char *text, size_t len, const char *name,
                                   const bp_csv_options *opt, bp_data **out);

/* FANN training data: first line "n_examples n_inputs n_outputs", then for
 * each example a line of inputs and a line of outputs. */
BP_API bp_status bp_data_read_fann(bp_context *ctx, const char *path, bp_data **out);
BP_API bp_status bp_data_parse_fann(bp_context *ctx, const char *text, size_t len, const char *name,
                                    bp_data **out);

/* ---- Test hooks ----------------------------------------------------------
 * For tests of failure paths only. After this call the nth backend memory
 * allocation on ctx (1 = the next) fails as if memory were exhausted; 0
 * disarms. */
BP_API bp_status bp_debug_fail_allocation(bp_context *ctx, long nth);
/* Makes the device fault for real (an illegal address in a kernel), as a bug
 * would: the call returns BP_ERR_DEVICE and ctx is poisoned, as is every
 * CUDA context of the process. Only for tests that run in their own process.
 * BP_ERR_UNSUPPORTED on the CPU backend. */
BP_API bp_status bp_debug_inject_device_fault(bp_context *ctx);

#ifdef __cplusplus
}
#endif
#endif /* BACKPROP_H */
