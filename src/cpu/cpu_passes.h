/* cpu_passes.h - what the CPU backend's fused passes share: the vector math,
 * the per-instruction-set clones, and how a pass is split across the one
 * OpenMP pool (cpu_threads.h). cpu_backend.c, cpu_activations.c and
 * cpu_optimizers.c include it, so every model's passes follow one rule for
 * when to thread and how to split, and so give the same sums for any
 * thread count. */
#ifndef BP_CPU_PASSES_H
#define BP_CPU_PASSES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_threads.h"

/* The vectorized exp and tanh: glibc's libmvec has SIMD versions of expf
 * (SSE, AVX2, AVX-512; tanhf since 2.35), which GCC calls from a vectorized
 * loop once the function is declared with the simd attribute (glibc's header
 * does so only under -ffast-math). libm.so pulls libmvec in as needed. They
 * agree with the scalar functions to a few units in the last place, not
 * always to the bit (README "CPU backend: threads and speed"). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define BP_CPU_VECTOR_EXP 1
extern float expf(float) __attribute__((simd("notinbranch")));
#if defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
extern float tanhf(float) __attribute__((simd("notinbranch")));
#endif
#endif
/* Each pass that evaluates the formulas is built twice, for AVX2 and for the
 * baseline, and the loader picks one for the machine (GNU ifunc). "avx2"
 * does not enable FMA, so no multiply-add is contracted and both copies
 * round every operation as the formula is written. Not under
 * ThreadSanitizer: the loader runs ifunc resolvers before its runtime is
 * up, and the process crashes before main. */
#if !defined(__SANITIZE_THREAD__)
#define BP_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BP_VECTOR_CLONES
#endif
#else
#define BP_VECTOR_CLONES
#endif
/* omp simd where the build compiles with -fopenmp-simd and expf has a
 * vector version (GCC + glibc); clang would warn that it cannot vectorize
 * the expf loop. */
#if defined(BP_CPU_SIMD) && defined(BP_CPU_VECTOR_EXP)
#define BP_SIMD(directive) _Pragma(directive)
#else
#define BP_SIMD(directive)
#endif

/* Below these many elements a pass runs on the calling thread: waking the
 * pool costs more than the work, and on a loaded machine far more (a region
 * waits for a thread the OS has not scheduled; bench/NOTES.md section 11).
 * PAR_MIN for the passes that compute (an activation, a product of errors),
 * PAR_MIN_COPY for those that mostly move memory (gather, the updates,
 * rounding). At the main job's batch 32 every pass stays on one thread (its
 * 79,510-parameter update too). PAR_MIN_COPY was 262144 until 256x4's
 * 197,376-parameter update, alone on one thread, was measured: threaded,
 * the 256x4@256 step took 0.965x the time (medians of 10 interleaved runs,
 * 2 threads; bench/NOTES.md section 14). */
enum { PAR_MIN = 65536, PAR_MIN_COPY = 131072 };

static inline int bp_cpu_thread_index(void) {
#ifdef BP_CPU_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

static inline int bp_cpu_team_size(void) {
#ifdef BP_CPU_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

/* The bias gradients' sums run over blocks of this many examples (columns):
 * each block's sums in double in example order, then the blocks in order.
 * The grouping depends on the batch alone, so the sums are the same for any
 * thread count; a block is the unit a thread takes. Up to one block (the
 * main job's batch 32) it is the plain sum in order. 64 rather than 256:
 * a batch of 256 then splits across the threads, 0.96x the step at
 * 256x4@256 and 256x6@256, the same elsewhere (bench/NOTES.md section 14). */
enum { BP_CPU_SUM_BLOCK = 64 };

static inline int bp_cpu_sum_blocks(int n) {
  return (n + BP_CPU_SUM_BLOCK - 1) / BP_CPU_SUM_BLOCK;
}

#endif /* BP_CPU_PASSES_H */
