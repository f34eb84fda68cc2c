/* cpu_threads.h - the CPU backend's one thread pool.
 *
 * The pool is OpenMP's (libgomp). The elementwise loops of cpu_backend.c are
 * OpenMP loops, and the BLAS the build links is an OpenMP build (Debian's
 * libopenblas0-openmp, or BLIS's OpenMP build), which runs its products on
 * the same libgomp threads and takes its thread count from the calling
 * thread's omp_get_max_threads() at every call. So products and elementwise
 * work take turns on one set of threads instead of two pools spinning
 * against each other (bench/NOTES.md section 7).
 *
 * BP_CPU_OPENMP is defined when the build compiles the loops with OpenMP,
 * which CMake does only with an OpenMP BLAS or the builtin sgemm. Without
 * it every loop below runs on the calling thread and the macros expand to
 * nothing. */
#ifndef BP_CPU_THREADS_H
#define BP_CPU_THREADS_H

#include "../internal.h"

#ifdef BP_CPU_OPENMP
#include <omp.h>
#define BP_OMP(directive) _Pragma(directive)
#else
#define BP_OMP(directive)
#endif

/* The thread count ctx asks for: n >= 1 from bp_context_set_threads, or 0
 * (follow OpenMP's default: OMP_NUM_THREADS, else the cores). */
int bp_cpu_context_threads(const bp_context *ctx);

/* Makes the calling thread's OpenMP thread count the one ctx asks for and
 * returns what it was (0: unchanged), for bp_cpu_threads_leave. Every
 * primitive that computes runs between the two, so one context's setting
 * never leaks into the caller's own OpenMP code. */
int bp_cpu_threads_enter(const bp_context *ctx);
void bp_cpu_threads_leave(int saved);

/* Threads a loop of this call may use (1 without OpenMP). */
int bp_cpu_max_threads(void);

/* Frees what bp_context_set_threads allocated (the CPU context's impl). */
void bp_cpu_context_free(bp_context *ctx);

#endif
