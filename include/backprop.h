/*
 * backprop.h - train fully-connected sigmoid networks by backpropagation,
 * on an NVIDIA GPU (CUDA + cuBLAS) or on the CPU (BLAS), behind one C API.
 *
 * The math every backend implements (the contract):
 *   sizes s[0] .. s[L]; weight layer i (0-based, i = 0 .. L-1) maps s[i] inputs
 *   to s[i+1] outputs with W_i (s[i+1] x s[i], row-major on the host: W[j*s[i]+k]
 *   is the weight from input neuron k to output neuron j) and bias b_i (s[i+1]).
 *     forward:   z = W a_prev + b,  a = sigmoid(z),  a_0 = x
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
 *     contexts are fully independent and may be used concurrently.
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
#define BP_VERSION_MINOR 2
#define BP_VERSION_PATCH 0
#define BP_VERSION_NUMBER (BP_VERSION_MAJOR * 10000 + BP_VERSION_MINOR * 100 + BP_VERSION_PATCH)
#define BP_VERSION_STRING "0.2.0"

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
  BP_ERR_UNSUPPORTED = 8       /* valid request this build or version does not implement */
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
/* Detail of the last failure on ctx ("" if none). Valid until the next call
 * on ctx or on an object made from it. NULL ctx gives a fixed message. */
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

/* Activation per layer and cost. Only the sigmoid and the quadratic cost exist
 * today; the enums (and bp_network_desc) leave room for tanh, ReLU, softmax,
 * cross-entropy and other optimizers without renaming any call. */
typedef enum bp_activation { BP_ACTIVATION_SIGMOID = 0 } bp_activation;
typedef enum bp_cost { BP_COST_QUADRATIC = 0 } bp_cost;
typedef enum bp_optimizer { BP_OPTIMIZER_SGD = 0 } bp_optimizer;

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
 * accepts and ignores it). Values are stable. Both give the same weights bit
 * for bit; see "Execution options" below. */
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
/* Same from a description; BP_ERR_UNSUPPORTED for an activation, cost or
 * optimizer this version does not implement, or a newer desc version. */
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
 * accesses where the widths allow; it keeps no pre-activations, so it needs
 * less device memory. The weights are bit-identical to the reference path;
 * the batch cost agrees to double rounding. Takes effect at the next call
 * (a CUDA workspace of the other kind is reallocated then). An unknown value
 * is BP_ERR_INVALID_ARGUMENT. */
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
/* W -= lr * dW, b -= lr * db with the stored gradients. lr must be finite.
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

/* ---- Data sets in backend memory ----------------------------------------- */
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

/* One epoch of mini-batch SGD: examples are shuffled with a permutation drawn
 * from shuffle_seed (Fisher-Yates, deterministic), cut into batches of
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
} bp_epoch_stats;
/* Copies the statistics of the last epoch call into *stats; all zero before
 * the first. stats_size is sizeof(bp_epoch_stats) as the caller was
 * compiled: a program built against an older, shorter struct gets only the
 * fields it knows. Statistics of a call that failed are those of the work it
 * did. */
BP_API bp_status bp_network_last_epoch_stats(const bp_network *net, bp_epoch_stats *stats,
                                             size_t stats_size);

/* ---- Model files (safetensors) -------------------------------------------
 * Format: 8-byte little-endian header length N, N bytes of JSON, raw
 * little-endian data. Tensors "layers.{i}.weight" ([s[i+1], s[i]], F32) and
 * "layers.{i}.bias" ([s[i+1]], F32): the names and shapes of a PyTorch
 * nn.Linear stack. "__metadata__" holds string pairs: "format"="backprop",
 * "backprop_version", "activation"="sigmoid", "cost"="quadratic", "sizes"
 * ("784,100,10"), plus any pairs the caller adds. */

/* Saves atomically: writes a temporary file in the same directory, flushes,
 * fsyncs, renames it over path and fsyncs the directory. On any failure
 * (BP_ERR_IO) the old file at path is intact and no temporary file remains.
 * meta_keys/meta_values: n_meta extra metadata strings (may be 0/NULL). */
BP_API bp_status bp_network_save(const bp_network *net, const char *path);
BP_API bp_status bp_network_save_ex(const bp_network *net, const char *path, int n_meta,
                                    const char *const *meta_keys, const char *const *meta_values);
/* Reads a model file and creates a network from it in ctx. Every inconsistency
 * (truncation, header length, JSON, dtypes, shapes, offsets) is BP_ERR_FORMAT
 * with the file and byte offset in the message; nothing is read out of bounds. */
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
  float *Y;
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
 * is not a number). n_targets == 0: the label column (label_column, negative
 * counts from the end: -1 = last) holds integer class ids, one-hot encoded.
 * n_targets > 0: the last n_targets columns are real-valued targets. */
typedef struct bp_csv_options {
  int label_column; /* default -1 */
  int n_targets;    /* default 0 */
  int n_classes;    /* 0: max label + 1, at most 65536 (set it for more) */
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
