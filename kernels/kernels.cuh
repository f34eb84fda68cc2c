/*
 * kernels.cuh - host-callable launchers of the CUDA kernels, one family per
 * .cu file. The backend (src/cuda/cuda_step.cu, cuda_stage.cu,
 * cuda_gemm.cu), the kernel tests and the kernel benchmark call these; none
 * of them sees a kernel directly.
 *
 * Plain C++ (no CUDA syntax), so g++ can compile a test that includes it.
 *
 * Conventions, for every launcher:
 *   - All pointers are device pointers unless the comment says otherwise.
 *   - A matrix "width x n" is stored column-major with leading dimension
 *     width: element (j, k) at j + k*width; column k is example k.
 *   - The work is queued on `stream` and the launcher returns at once with
 *     cudaGetLastError() after its last launch (a launch-configuration error);
 *     faults inside a kernel surface at the next synchronizing call.
 *   - Bad arguments (negative sizes, NULL where a buffer is needed) return
 *     cudaErrorInvalidValue without launching. An empty problem (count 0)
 *     launches nothing and returns cudaSuccess, except for the reductions
 *     (bias gradient, cost, the fused error kernels), whose means need
 *     n >= 1 and width >= 1: they return cudaErrorInvalidValue.
 *   - Reductions are deterministic: a fixed grid that depends only on the
 *     problem size (never on the device), fixed summation order, no float
 *     atomics. Same inputs give bit-identical outputs on every run.
 */
#ifndef BP_KERNELS_CUH
#define BP_KERNELS_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "elementwise.cuh" /* bp_opt_hyper */

#ifdef __cplusplus
extern "C" {
#endif

/* Threads per block of the 1-D kernels, and the most blocks a grid-stride
 * kernel launches (beyond that each thread takes more elements). */
#define BP_BLOCK 256
#define BP_MAX_BLOCKS 8192

/* Blocks for `count` elements, one per thread, capped at BP_MAX_BLOCKS.
 * count must be > 0. */
static inline unsigned bp_grid_1d(size_t count) {
  size_t blocks = (count + BP_BLOCK - 1) / BP_BLOCK;
  return (unsigned)(blocks < BP_MAX_BLOCKS ? blocks : BP_MAX_BLOCKS);
}

/* ---- activation.cu ----------------------------------------------------- */

/* After the forward GEMM: z (width x n) holds W*A. For every (j, k):
 *   z(j,k) += b[j]  (in place),  a(j,k) = bp_sigmoid(z(j,k)).
 * b has width entries. z and a must not overlap. */
cudaError_t bp_launch_bias_sigmoid(float *z, float *a, const float *b, int width, int n,
                                   cudaStream_t stream);

/* ---- errors.cu ---------------------------------------------------------- */

/* Output layer: delta[i] = bp_output_error(a[i], y[i], z[i]) for i < count.
 * delta must not overlap a, y or z. */
cudaError_t bp_launch_output_error(const float *a, const float *y, const float *z, float *delta,
                                   size_t count, cudaStream_t stream);

/* Hidden layer: delta[i] = bp_hidden_error(g[i], z[i]) for i < count, where
 * g = W^T delta_next. delta == g (in place) is allowed; other overlaps not. */
cudaError_t bp_launch_hidden_error(const float *g, const float *z, float *delta, size_t count,
                                   cudaStream_t stream);

/* ---- reduce.cu ---------------------------------------------------------- */

/* Number of floats of scratch bp_launch_bias_grad needs for (width, n);
 * nondecreasing in n, so scratch sized for the largest n serves every smaller
 * one. 0 if width or n is < 1. */
size_t bp_bias_grad_partials_count(int width, int n);

/* Bias gradient: db[j] = (1/n) sum_k delta(j, k), delta width x n. Two
 * stages: per-block partial sums of a fixed chunk of columns into `partials`
 * (bp_bias_grad_partials_count(width, n) floats), then one thread per row
 * adds its partials in chunk order (in double) and scales by 1/n. */
cudaError_t bp_launch_bias_grad(const float *delta, int width, int n, float *partials, float *db,
                                cudaStream_t stream);

/* Number of doubles of scratch bp_launch_cost needs for (width, n);
 * nondecreasing in n. 0 if width or n is < 1. */
size_t bp_cost_partials_count(int width, int n);

/* Batch cost: *cost = (1/n) sum_{j,k} bp_cost_term(a(j,k), y(j,k)) over the
 * width x n block (sums in double; the mean is rounded to float once).
 * partials: bp_cost_partials_count(width, n) doubles of scratch.
 * Optional accumulation, done by the kernel (no host round trip), of the
 * batch's total cost T (the double sum, = *cost * n before rounding):
 *   - skipped == NULL: if cost_acc != NULL, *cost_acc += T whatever its
 *     value (evaluation: a non-finite cost propagates).
 *   - skipped != NULL (training): if *cost (the float) is finite,
 *     *cost_acc += T (when cost_acc != NULL); otherwise *skipped += 1 and
 *     cost_acc is left alone.
 * cost, cost_acc and skipped are single device scalars. */
cudaError_t bp_launch_cost(const float *a, const float *y, int width, int n, double *partials,
                           float *cost, double *cost_acc, int *skipped, cudaStream_t stream);

/* Accuracy: adds to *correct the number of columns k (examples) classified
 * right, with the rule of bp_example_correct (elementwise.cuh): width 1: both
 * a and y on the same side of 0.5 (x >= 0.5f); else argmax of column k of a
 * == argmax of column k of y, the first index on ties. Integer atomics only. */
cudaError_t bp_launch_accuracy(const float *a, const float *y, int width, int n,
                               unsigned long long *correct, cudaStream_t stream);

/* ---- sgd.cu ------------------------------------------------------------- */

/* Sets *bad = 1 (device int, cleared by the caller) if any
 * bp_sgd_update(params[i], grads[i], lr) is not finite: the learning rate
 * would overflow a weight. Never writes 0. */
cudaError_t bp_launch_sgd_check(const float *params, const float *grads, size_t count, float lr,
                                int *bad, cudaStream_t stream);
/* params[i] = bp_sgd_update(params[i], grads[i], lr) for i < count, unless
 * skipped, decided on the device for the whole grid:
 *   batch_cost: NULL, or a device float; not finite: skip (the cost kernel
 *     has counted that batch already);
 *   bad: NULL, or the device int of bp_launch_sgd_check; non-zero: skip, and
 *     add 1 to *skipped (when skipped is not NULL). */
cudaError_t bp_launch_sgd(float *params, const float *grads, size_t count, float lr,
                          const float *batch_cost, const int *bad, int *skipped,
                          cudaStream_t stream);

/* Batch cost from n per-example costs terms[k] (doubles): *cost = (1/n)
 * sum_k terms[k], with the partials, accumulation and skip rules of
 * bp_launch_cost; partials: bp_cost_partials_count(1, n) doubles. */
cudaError_t bp_launch_cost_sum(const double *terms, int n, double *partials, float *cost,
                               double *cost_acc, int *skipped, cudaStream_t stream);

/* ---- model.cu: the model beyond the seed (reference kernels) -------------
 * act and cost are bp_activation and bp_cost values (elementwise.cuh's
 * BP_EW_*). */

/* z (width x n) holds W*A: z += b per row (kept), a = f(z); softmax per
 * column (one thread per example). z and a must not overlap. */
cudaError_t bp_launch_bias_activation(int act, float *z, float *a, const float *b, int width,
                                      int n, cudaStream_t stream);
/* Output layer: per example k, delta's column k and col_cost[k] (double)
 * from bp_output_column(act, cost, ...). */
cudaError_t bp_launch_output_error_model(int act, int cost, const float *z, const float *a,
                                         const float *y, float *delta, int width, int n,
                                         double *col_cost, cudaStream_t stream);
/* Hidden layer: delta[i] = bp_hidden_error_act(act, g[i], z[i], a[i]);
 * delta == g allowed. */
cudaError_t bp_launch_hidden_error_act(int act, const float *g, const float *z, const float *a,
                                       float *delta, size_t count, cudaStream_t stream);

/* ---- optimizers.cu ---------------------------------------------------------
 * Every optimizer but the seed's SGD: state holds `slots` buffers of count
 * floats (slot s of parameter i at state[s * count + i]); *step (a device
 * long long) is the number of updates applied. */

/* Sets *bad = 1 (cleared by the caller) if bp_opt_update would make any
 * parameter or state value non-finite. Never writes 0. */
cudaError_t bp_launch_opt_check(bp_opt_hyper h, float lr, const float *params,
                                const float *grads, const float *state, size_t count, int slots,
                                const long long *step, int *bad, cudaStream_t stream);
/* The update with bp_opt_update, all or nothing under the rules of
 * bp_launch_sgd (batch_cost, bad, skipped), then *step += 1 when applied. */
cudaError_t bp_launch_opt_update(bp_opt_hyper h, float lr, float *params, const float *grads,
                                 float *state, size_t count, int slots, long long *step,
                                 const float *batch_cost, const int *bad, int *skipped,
                                 cudaStream_t stream);

/* ---- gather.cu ---------------------------------------------------------- */

/* Mini-batch gather for bp_train_epoch. X is n_in x n_total and Y is
 * n_out x n_total (column-major = the row-major host arrays); perm holds
 * n_total indices. For k < bn: column k of x (n_in x bn) = column
 * perm[start + k] of X, and column k of y (n_out x bn) = column
 * perm[start + k] of Y. Indices are trusted (a permutation made by the API). */
cudaError_t bp_launch_gather(const float *X, const float *Y, int n_in, int n_out,
                             const int32_t *perm, int start, int bn, float *x, float *y,
                             cudaStream_t stream);

/* ---- fused.cu ------------------------------------------------------------
 * The fast path's kernels, tested against the reference kernels above. Their
 * reductions finish in the same launch: the last block to finish (an integer
 * ticket in *counter, a device unsigned that must be 0 before the first
 * launch; the kernel leaves it 0 again) adds the partials in a fixed order.
 * Deterministic; launches that share a counter must be ordered (one stream). */

/* za (width x n) holds W*A; za(j,k) = bp_sigmoid(za(j,k) + b[j]) in place. */
cudaError_t bp_launch_bias_sigmoid_inplace(float *za, const float *b, int width, int n,
                                           cudaStream_t stream);

/* Doubles of cost scratch bp_launch_output_error_fused needs for (width, n);
 * nondecreasing in n. Its bias scratch is bp_bias_grad_partials_count floats. */
size_t bp_output_fused_cost_partials_count(int width, int n);

/* Output layer, a and y width x n: delta = bp_output_error_of_a(a, y); db =
 * the bias gradient of delta, bit-identical to bp_launch_bias_grad; the batch
 * cost into *cost with the accumulation rules of bp_launch_cost (cost_acc,
 * skipped). delta must not overlap a or y. */
cudaError_t bp_launch_output_error_fused(const float *a, const float *y, float *delta, int width,
                                         int n, float *bias_partials, float *db,
                                         double *cost_partials, float *cost, double *cost_acc,
                                         int *skipped, unsigned *counter, cudaStream_t stream);

/* Hidden layer, g = W^T delta_next and a width x n: delta =
 * bp_hidden_error_of_a(g, a) (delta == g allowed) and db as above. */
cudaError_t bp_launch_hidden_error_fused(const float *g, const float *a, float *delta, int width,
                                         int n, float *bias_partials, float *db,
                                         unsigned *counter, cudaStream_t stream);

/* Every activation and cost (act, cost: the BP_EW_* values).
 * The widest softmax output the fused output kernel takes (its per-row sums
 * live in shared memory); a wider one is cudaErrorInvalidValue. */
#define BP_FUSED_SOFTMAX_MAX_WIDTH 1024

/* z (width x n) holds W*A. a = f(z + b) per element; softmax per column
 * (bp_softmax_column's steps, the column's sums over 32 lanes). a == z: in
 * place, no z kept; else z += b is kept in z, as bp_launch_bias_activation
 * does. Elementwise a is bit-identical to bp_launch_bias_activation's. */
cudaError_t bp_launch_bias_activation_fused(int act, float *z, float *a, const float *b,
                                            int width, int n, cudaStream_t stream);

/* Output layer of any valid (act, cost) pair (cross-entropy: softmax or
 * sigmoid), a, y, delta width x n: delta as bp_output_column gives it, db
 * and the batch cost as bp_launch_output_error_fused. z (z + b of the
 * forward pass) is read by cross-entropy only and may be NULL otherwise.
 * Softmax: width <= BP_FUSED_SOFTMAX_MAX_WIDTH. delta must not overlap z, a
 * or y. bp_launch_output_error_fused is the (sigmoid, quadratic) instance. */
cudaError_t bp_launch_output_error_fused_act(int act, int cost_kind, const float *z,
                                             const float *a, const float *y, float *delta,
                                             int width, int n, float *bias_partials, float *db,
                                             double *cost_partials, float *cost,
                                             double *cost_acc, int *skipped, unsigned *counter,
                                             cudaStream_t stream);

/* Hidden layer of an elementwise act (not softmax): delta = g *
 * bp_activation_prime_of_a(act, a) (delta == g allowed) and db, as
 * bp_launch_hidden_error_fused (its sigmoid instance). */
cudaError_t bp_launch_hidden_error_fused_act(int act, const float *g, const float *a,
                                             float *delta, int width, int n, float *bias_partials,
                                             float *db, unsigned *counter, cudaStream_t stream);

/* The optimizers but the seed's SGD, in two launches (bp_launch_opt_check
 * and bp_launch_opt_update take three). The check: *bad = 1 (cleared by the
 * caller) if an update would make a parameter or state value non-finite;
 * its last block stores the step's scalars in *step_out and adds 1 to
 * *step when the update will be applied (batch_cost NULL or finite, *bad
 * 0). The update, after it on the same stream: the update of
 * bp_launch_opt_update with *step_in, all or nothing under the same gates
 * (batch_cost, *bad, skipped). Parameters and state as bp_launch_opt_update
 * leaves them, bit for bit. */
cudaError_t bp_launch_opt_check_fused(bp_opt_hyper h, float lr, const float *params,
                                      const float *grads, const float *state, size_t count,
                                      int slots, long long *step, const float *batch_cost, int *bad,
                                      bp_opt_step *step_out, unsigned *counter,
                                      cudaStream_t stream);
cudaError_t bp_launch_opt_update_fused(bp_opt_hyper h, float *params, const float *grads,
                                       float *state, size_t count, int slots,
                                       const bp_opt_step *step_in, const float *batch_cost,
                                       const int *bad, int *skipped, cudaStream_t stream);

/* ---- convert.cu --------------------------------------------------------- */

/* bfloat16 operands of the BF16 products: dst[i] = the bfloat16 bit pattern
 * of src[i] rounded to nearest-even, for i < count (bp_bf16_bits of
 * elementwise.cuh: NaN stays NaN, +-Inf stay infinite, values beyond the
 * largest bfloat16 round to infinity). dst holds count 16-bit values and
 * must not overlap src. Any alignment; 16-byte aligned src with 8-byte
 * aligned dst takes four elements per load. */
cudaError_t bp_launch_float_to_bf16(const float *src, uint16_t *dst, size_t count,
                                    cudaStream_t stream);

/* Tests only: faults on purpose (illegal address). See debug_fault.cu. */
cudaError_t bp_launch_debug_fault(cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* BP_KERNELS_CUH */
