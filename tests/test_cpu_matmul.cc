// The CPU backend's forward product with its epilogue (src/cpu/matmul.c:
// oneDNN's matmul primitive with the bias and the activation fused): every
// epilogue and transposition against a float64 reference on fresh random
// data, padded leading dimensions left untouched, the primitive cache (a
// shape made once, eviction harmless), NaN kept NaN by the activations it
// fuses, and the backend's forward really taking this path in FP32 and not
// in the TF32/BF16 emulation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cpu/matmul.h"
#include "support/reference.h"
#include "support/test_util.h"

namespace {

struct Cache {
  bp_cpu_matmuls *mm = bp_cpu_matmuls_create();
  ~Cache() { bp_cpu_matmuls_destroy(mm); }
};

#define SKIP_WITHOUT_ONEDNN(cache)                                                   \
  if (!(cache).mm)                                                                   \
  GTEST_SKIP() << "this build has no oneDNN (BP_ONEDNN=OFF or libdnnl-dev missing): " \
                  "the forward keeps its product + pass path"

struct Shape {
  int ta, tb, m, n, k, pad; // pad: extra rows in every leading dimension
};

// Column-major element (r, c) of op(X).
double at(const std::vector<float> &X, int ld, int trans, int r, int c) {
  return trans ? X[(size_t)r * ld + c] : X[(size_t)c * ld + r];
}

// Checks one call of bp_cpu_matmul against float64; returns whether it ran.
bool check(bp_cpu_matmuls *mm, int epi, const Shape &s, uint64_t seed) {
  const int lda = (s.ta ? s.k : s.m) + s.pad, ldb = (s.tb ? s.n : s.k) + s.pad,
            ldc = s.m + s.pad;
  auto A = ref::random_vector((size_t)lda * (s.ta ? s.m : s.k), seed);
  auto B = ref::random_vector((size_t)ldb * (s.tb ? s.k : s.n), seed + 1);
  auto bias = ref::random_vector((size_t)s.m, seed + 2);
  const float sentinel = 12345.0f;
  std::vector<float> C((size_t)ldc * s.n, sentinel);
  const int ran = bp_cpu_matmul(mm, epi, s.ta, s.tb, s.m, s.n, s.k, A.data(), lda, B.data(), ldb,
                                epi == BP_MM_PLAIN ? nullptr : bias.data(), C.data(), ldc);
  EXPECT_EQ(ran, 1) << "no primitive for " << s.m << "x" << s.n << "x" << s.k;
  if (!ran) return false;
  int bad = 0;
  for (int j = 0; j < s.n; ++j) {
    for (int i = 0; i < ldc; ++i) {
      const float got = C[(size_t)j * ldc + i];
      if (i >= s.m) { // padding: never written
        if (got != sentinel && bad++ < 5) ADD_FAILURE() << "padding row " << i << " written";
        continue;
      }
      double z = epi == BP_MM_PLAIN ? 0.0 : bias[i], mag = std::fabs(z);
      for (int p = 0; p < s.k; ++p) {
        const double t = at(A, lda, s.ta, i, p) * at(B, ldb, s.tb, p, j);
        z += t;
        mag += std::fabs(t);
      }
      double want = z;
      if (epi == BP_MM_BIAS_SIGMOID) want = 1.0 / (1.0 + std::exp(-z));
      if (epi == BP_MM_BIAS_TANH) want = std::tanh(z);
      // float32 sums of k terms (relative 1e-6 of their magnitude), then an
      // activation of slope at most 1 evaluated to a few ulps.
      const double tol = 1e-6 * (mag + 1.0) + 1e-6;
      if (!(std::fabs(got - want) <= tol) && bad++ < 5)
        ADD_FAILURE() << "epilogue " << epi << " ta " << s.ta << " tb " << s.tb << " " << s.m
                      << "x" << s.n << "x" << s.k << " C(" << i << "," << j << ") = " << got
                      << ", float64 " << want;
    }
  }
  return bad == 0;
}

TEST(CpuMatmul, EveryEpilogueAndTranspositionMatchesFloat64) {
  Cache cache;
  SKIP_WITHOUT_ONEDNN(cache);
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  // One column (a single example), odd sizes, the main job's first layer at
  // batch 32, one above the one-thread threshold (4096 x 64 x 64 > 2^22 /
  // 64: threaded where the build has OpenMP), and padded leading dimensions.
  const Shape shapes[] = {{1, 0, 5, 1, 3, 0},     {1, 0, 17, 7, 9, 3},   {1, 0, 100, 32, 784, 0},
                          {1, 0, 256, 300, 64, 0}, {0, 0, 33, 20, 11, 2}, {0, 1, 19, 13, 40, 1},
                          {1, 1, 8, 64, 24, 5}};
  const int epilogues[] = {BP_MM_PLAIN, BP_MM_BIAS, BP_MM_BIAS_SIGMOID, BP_MM_BIAS_TANH};
  uint64_t s = seed;
  for (const Shape &sh : shapes)
    for (int epi : epilogues) check(cache.mm, epi, sh, s += 3);
}

TEST(CpuMatmul, AShapeIsMadeOnceAndEvictionKeepsResultsRight) {
  Cache cache;
  SKIP_WITHOUT_ONEDNN(cache);
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const Shape first = {1, 0, 30, 16, 20, 0};
  EXPECT_TRUE(check(cache.mm, BP_MM_BIAS_SIGMOID, first, seed));
  EXPECT_EQ(bp_cpu_matmuls_made(cache.mm), 1);
  EXPECT_TRUE(check(cache.mm, BP_MM_BIAS_SIGMOID, first, seed + 10));
  EXPECT_EQ(bp_cpu_matmuls_made(cache.mm), 1) << "the second call of a shape made a primitive";
  // Another epilogue is another primitive.
  EXPECT_TRUE(check(cache.mm, BP_MM_BIAS_TANH, first, seed + 20));
  EXPECT_EQ(bp_cpu_matmuls_made(cache.mm), 2);
  // More shapes than the cache holds: every result stays right, and the
  // first shape, evicted, is made again.
  for (int b = 1; b <= 40; ++b) check(cache.mm, BP_MM_BIAS, {1, 0, 6, b, 5, 0}, seed + 30 + b);
  EXPECT_EQ(bp_cpu_matmuls_made(cache.mm), 42);
  EXPECT_TRUE(check(cache.mm, BP_MM_BIAS_SIGMOID, first, seed + 100));
  EXPECT_EQ(bp_cpu_matmuls_made(cache.mm), 43);
}

TEST(CpuMatmul, FusedActivationsKeepNaN) {
  Cache cache;
  SKIP_WITHOUT_ONEDNN(cache);
  const int m = 12, n = 4, k = 5;
  auto A = ref::random_vector((size_t)k * m, 7); // W stored k x m (transposed)
  auto B = ref::random_vector((size_t)k * n, 8);
  auto bias = ref::random_vector((size_t)m, 9);
  B[(size_t)2 * k + 1] = NAN; // column 2 of the inputs
  for (int epi : {BP_MM_BIAS_SIGMOID, BP_MM_BIAS_TANH, BP_MM_BIAS}) {
    std::vector<float> C((size_t)m * n, 0.0f);
    ASSERT_EQ(1, bp_cpu_matmul(cache.mm, epi, 1, 0, m, n, k, A.data(), k, B.data(), k,
                               bias.data(), C.data(), m));
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i)
        EXPECT_EQ(j == 2, std::isnan(C[(size_t)j * m + i]))
            << "epilogue " << epi << " C(" << i << "," << j << ") = " << C[(size_t)j * m + i];
  }
  // ReLU is not offered: oneDNN's makes NaN 0, the library's keeps it.
  EXPECT_EQ(bp_cpu_matmul_epilogue(2 /* BP_EW_RELU */), -1);
}

TEST(CpuMatmul, TheBackendsForwardTakesItInFp32Only) {
  Cache probe;
  SKIP_WITHOUT_ONEDNN(probe);
  tu::Ctx ctx;
  tu::Net net;
  ASSERT_EQ(BP_OK, bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx));
  const int sizes[] = {6, 9, 4};
  ASSERT_EQ(BP_OK, bp_network_create(ctx, 3, sizes, tu::fresh_seed(), &net.net));
  const int n = 7;
  auto X = ref::random_vector((size_t)n * 6, 3);
  std::vector<float> out((size_t)n * 4);
  long before = bp_cpu_matmul_runs();
  ASSERT_EQ(BP_OK, bp_forward(net, X.data(), n, out.data()));
  EXPECT_EQ(bp_cpu_matmul_runs() - before, 2) << "FP32: one primitive per layer";
  ASSERT_EQ(BP_OK, bp_network_set_math_mode(net, BP_MATH_TF32));
  before = bp_cpu_matmul_runs();
  ASSERT_EQ(BP_OK, bp_forward(net, X.data(), n, out.data()));
  EXPECT_EQ(bp_cpu_matmul_runs() - before, 0) << "TF32 emulation: the rounded sgemm path";
}

}  // namespace
