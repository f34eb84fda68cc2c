/* matmul.h - the forward product with its bias and activation in one call,
 * through oneDNN's matmul primitive (a JIT-compiled kernel per shape, with
 * the bias and the activation applied to each tile of the product while it
 * is still in cache), and a cache of those primitives.
 *
 * Why: a hidden layer's forward was a product, then a pass reading and
 * writing its whole output again for a = f(z + b). At widths of 256 that
 * pass was a fifth of the step's time outside its products (bench/NOTES.md
 * section 14). The primitive's kernel is also oneDNN's newer "brgemm" one,
 * faster than dnnl_sgemm at the main job's batch-32 forward product.
 *
 * Ownership and threads: a cache belongs to one network (or one benchmark)
 * and is used by one thread at a time, the network's own rule. Primitives
 * are made on first use of a shape and kept (at most BP_CPU_MATMULS, least
 * recently used replaced); making one takes about half a millisecond, so a
 * step of a shape seen before makes none. */
#ifndef BP_CPU_MATMUL_H
#define BP_CPU_MATMUL_H

#ifdef __cplusplus
extern "C" { /* tests/test_cpu_matmul.cc */
#endif

typedef struct bp_cpu_matmuls bp_cpu_matmuls;

/* The epilogues: none (a plain product), the bias alone, the bias then an
 * activation. Only the activations whose oneDNN version keeps NaN a NaN are
 * offered: oneDNN's ReLU makes NaN 0, where the library's keeps it, so a
 * ReLU layer runs its product here and its activation in the pass. */
enum { BP_MM_PLAIN = 0, BP_MM_BIAS, BP_MM_BIAS_SIGMOID, BP_MM_BIAS_TANH };

/* A cache, or NULL when the build has no oneDNN or it could not start
 * (every caller then keeps its product + pass path). */
bp_cpu_matmuls *bp_cpu_matmuls_create(void);
void bp_cpu_matmuls_destroy(bp_cpu_matmuls *mm);

/* The epilogue that computes activation act (BP_EW_*) after the bias, or -1
 * when the primitive cannot (ReLU, softmax). */
int bp_cpu_matmul_epilogue(int act);

/* C = op(A) op(B) (+ b[i] on row i, then the activation, per epilogue), all
 * column-major as bp_cpu_sgemm; C is overwritten (beta 0). Returns 1 when
 * done; 0 when this shape has no primitive (none could be made) or it failed
 * to run: then C holds nothing of use and the caller computes it its own
 * way. Products below
 * bp_cpu_sgemm's threading threshold run on one thread, as there. */
int bp_cpu_matmul(bp_cpu_matmuls *mm, int epilogue, int trans_a, int trans_b, int m, int n, int k,
                  const float *A, int lda, const float *B, int ldb, const float *bias, float *C,
                  int ldc);

/* Primitives this cache made so far (for tests: a second call of a shape
 * makes none). */
long bp_cpu_matmuls_made(const bp_cpu_matmuls *mm);

/* Products run through a primitive in this process, all caches together
 * (for tests: the backend's forward really takes this path). */
long bp_cpu_matmul_runs(void);

#ifdef __cplusplus
}
#endif

#endif
