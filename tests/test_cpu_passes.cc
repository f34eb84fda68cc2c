// The CPU output pass's vectorized accuracy rule (bp_cpu_example_correct)
// against the scalar rule of elementwise.cuh (bp_example_correct) that the
// CUDA kernel and evaluation use: the same answer on fresh random columns of
// every width from 1 to 300, on columns full of ties, on columns of -inf,
// and with NaN anywhere, first position included.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/cpu_model.h"
#include "elementwise.cuh"
#include "support/test_util.h"

namespace {

TEST(CpuPasses, VectorAccuracyRuleIsTheScalarOne) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> few(0, 3); // small range: many ties
  long right = 0, cases = 0;
  for (int w = 1; w <= 300; ++w) {
    for (int rep = 0; rep < 12; ++rep) {
      std::vector<float> a(w), y(w);
      const int kind = rep % 4;
      for (int j = 0; j < w; ++j) {
        a[j] = kind == 1 ? (float)few(rng) : u(rng);
        y[j] = kind == 1 ? (float)few(rng) : u(rng);
      }
      if (kind == 1 && rep >= 8) { // all -inf but a NaN: the answer is the first -inf
        for (float &v : a) v = -INFINITY;
        a[rng() % w] = NAN;
      }
      if (kind == 2) a[rng() % w] = NAN;
      if (kind == 3) {
        a[0] = (rep & 4) ? NAN : a[0];
        y[rng() % w] = NAN;
      }
      // Half of the plain cases put the target's best index where the
      // output's is, so that both answers occur.
      if (kind == 0 && (rep & 4) && w > 1) {
        int ia = 0;
        for (int j = 1; j < w; ++j) ia = a[j] > a[ia] ? j : ia;
        y[ia] = 2.0f;
      }
      const int want = bp_example_correct(a.data(), y.data(), w, 1);
      const int got = bp_cpu_example_correct(a.data(), y.data(), w);
      EXPECT_EQ(got, want) << "width " << w << " case " << rep;
      right += want;
      ++cases;
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(right, cases / 10);
  EXPECT_LT(right, cases - cases / 10);
}

}  // namespace
