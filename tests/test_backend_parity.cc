// CPU and CUDA agree: forward outputs, cost, gradients, a few training steps,
// an epoch and an evaluation, on fresh random data, from identical weights.
// The CUDA side uses pedantic float32 cuBLAS math; the differences are
// summation order and, since the CPU's forward fuses the sigmoid and tanh
// into oneDNN's product (src/cpu/matmul.c), the activations' last bits
// (oneDNN's logistic is within 3.4 ulp of float64, the shared expf formula
// within 2.5): tolerances are a few float32 ulps scaled by the sums' lengths,
// written down per quantity below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

struct Pair {
  tu::Ctx cpu, cuda;
};

// max |a - b| / max(max |b|, floor)
double max_rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  double scale = 1e-6, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, (double)std::fabs(b[i]));
    diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
  }
  return diff / scale;
}

std::vector<float> all_grads(const bp_network *net) {
  std::vector<float> out;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    std::vector<float> dW((size_t)bp_network_size(net, i) * bp_network_size(net, i + 1), NAN);
    std::vector<float> db(bp_network_size(net, i + 1), NAN);
    EXPECT_EQ(bp_network_get_gradient(net, i, dW.data(), db.data()), BP_OK);
    out.insert(out.end(), dW.begin(), dW.end());
    out.insert(out.end(), db.begin(), db.end());
  }
  return out;
}

class Parity : public testing::Test {
 protected:
  void SetUp() override {
    if (bp_cuda_device_count() == 0)
      GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");
    ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &p.cpu.ctx), BP_OK);
    ASSERT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &p.cuda.ctx), BP_OK);
  }
  Pair p;
};

TEST_F(Parity, ForwardCostGradientsAndStepsAgree) {
  struct Shape {
    std::vector<int> sizes;
    int n;
  };
  const std::vector<Shape> shapes = {{{1, 1, 1}, 1},         {{3, 5, 2}, 7},
                                     {{37, 33, 65, 10}, 1000}, {{784, 100, 10}, 513},
                                     {{256, 1024, 1024, 1}, 300}};
  for (const Shape &s : shapes) {
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << "shape " << s.sizes[0] << "->" << s.sizes.back() << " ("
                                    << s.sizes.size() << " sizes), n " << s.n << ", seed "
                                    << seed);
    const int L = (int)s.sizes.size();
    tu::Net a, b;
    ASSERT_EQ(bp_network_create(p.cpu, L, s.sizes.data(), seed, &a.net), BP_OK);
    ASSERT_EQ(bp_network_create(p.cuda, L, s.sizes.data(), seed, &b.net), BP_OK)
        << bp_context_last_error(p.cuda);
    ASSERT_EQ(tu::all_params(a), tu::all_params(b)) << "initialization differs by backend";
    const int sL = s.sizes.back();
    auto X = ref::random_vector((size_t)s.n * s.sizes[0], seed + 1);
    auto Y = ref::random_vector((size_t)s.n * sL, seed + 2, 0.0f, 1.0f);

    std::vector<float> oa((size_t)s.n * sL, NAN), ob((size_t)s.n * sL, NAN);
    ASSERT_EQ(bp_forward(a, X.data(), s.n, oa.data()), BP_OK);
    ASSERT_EQ(bp_forward(b, X.data(), s.n, ob.data()), BP_OK) << bp_context_last_error(p.cuda);
    EXPECT_LT(max_rel_diff(ob, oa), 1e-5) << "forward outputs";

    float ca = NAN, cb = NAN;
    ASSERT_EQ(bp_backward(a, X.data(), Y.data(), s.n, &ca), BP_OK);
    ASSERT_EQ(bp_backward(b, X.data(), Y.data(), s.n, &cb), BP_OK)
        << bp_context_last_error(p.cuda);
    // A sum of (a - y)^2: relative to the sum, or, for a nearly fitted
    // output (the 1-1-1 net's one example: cost 8.8e-5, seed 138), to the
    // one-ulp difference of a that (a - y)^2 turns into 1.3e-5 of itself.
    EXPECT_NEAR(cb, ca, 1e-5 * std::fabs(ca) + 1e-7) << "cost " << cb << " vs " << ca;
    auto ga = all_grads(a), gb = all_grads(b);
    EXPECT_LT(max_rel_diff(gb, ga), 1e-4) << "gradients";

    for (int step = 0; step < 5; ++step) {
      ASSERT_EQ(bp_train_batch(a, X.data(), Y.data(), s.n, 0.5f, &ca), BP_OK);
      ASSERT_EQ(bp_train_batch(b, X.data(), Y.data(), s.n, 0.5f, &cb), BP_OK)
          << bp_context_last_error(p.cuda);
    }
    // Five steps at learning rate 0.5 carry the two sigmoids' last-bit
    // differences through 1024-wide layers: up to 4.6e-5 relative in the
    // weights over 40 seeds at 256-1024-1024-1 (1e-7 when both backends ran
    // the one formula; a wrong step is off by percents). The cost of the
    // 1-1-1 net on one example is (a - y)^2 of a nearly fitted output, so
    // its relative error is that of a small difference: an absolute floor.
    EXPECT_NEAR(cb, ca, 1e-4 * std::fabs(ca) + 1e-6) << "cost after 5 steps";
    EXPECT_LT(max_rel_diff(tu::all_params(b), tu::all_params(a)), 2e-4) << "weights after 5 steps";
  }
}

TEST_F(Parity, EpochAndEvaluationAgree) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int n = 5000, sizes[] = {20, 64, 32, 4};
  auto X = ref::random_vector((size_t)n * 20, seed);
  std::vector<float> Y((size_t)n * 4, 0.0f);
  // Targets from a fixed rule of the inputs, so the task is learnable.
  for (int e = 0; e < n; ++e) {
    int cls = (X[(size_t)e * 20] > 0) + 2 * (X[(size_t)e * 20 + 1] > 0);
    Y[(size_t)e * 4 + cls] = 1.0f;
  }
  tu::Net a, b;
  tu::Data da, db;
  ASSERT_EQ(bp_network_create(p.cpu, 4, sizes, seed, &a.net), BP_OK);
  ASSERT_EQ(bp_network_create(p.cuda, 4, sizes, seed, &b.net), BP_OK);
  ASSERT_EQ(bp_dataset_create(p.cpu, n, 20, 4, X.data(), Y.data(), &da.data), BP_OK);
  ASSERT_EQ(bp_dataset_create(p.cuda, n, 20, 4, X.data(), Y.data(), &db.data), BP_OK);
  // 155 steps at learning rate 2 carry the backends' different rounding
  // (their products sum in different orders: oneDNN's or OpenBLAS's blocks
  // against cuBLAS's) forward and amplify it: up to 3.3e-4 relative after
  // the third epoch (seed 14231232055082852224; most seeds stay under 1e-4).
  // One step is compared at 1e-5 above; a wrong epoch (another shuffle, a
  // lost batch, a wrong divisor) is off by percents.
  const double trajectory_tol = 2e-3;
  for (int epoch = 0; epoch < 3; ++epoch) {
    float ca = NAN, cb = NAN;
    ASSERT_EQ(bp_train_epoch(a, da, 97, 2.0f, seed + epoch, &ca), BP_OK);
    ASSERT_EQ(bp_train_epoch(b, db, 97, 2.0f, seed + epoch, &cb), BP_OK)
        << bp_context_last_error(p.cuda);
    EXPECT_LT(ref::rel_err(cb, ca), trajectory_tol) << "epoch " << epoch;
  }
  EXPECT_LT(max_rel_diff(tu::all_params(b), tu::all_params(a)), trajectory_tol);
  float costa, costb, acca, accb;
  ASSERT_EQ(bp_evaluate(a, da, &costa, &acca), BP_OK);
  ASSERT_EQ(bp_evaluate(b, db, &costb, &accb), BP_OK) << bp_context_last_error(p.cuda);
  EXPECT_LT(ref::rel_err(costb, costa), trajectory_tol);
  // Outputs within 1e-4 may flip an argmax on a near tie: allow 0.1%.
  EXPECT_NEAR(accb, acca, 1e-3);
  EXPECT_GT(acca, 0.5f) << "the network learned nothing: the comparison would be weak";
}

TEST_F(Parity, CudaReductionsAreDeterministic) {
  const uint64_t seed = tu::fresh_seed();
  const int n = 4099, sizes[] = {300, 257, 10};
  auto X = ref::random_vector((size_t)n * 300, seed);
  auto Y = ref::random_vector((size_t)n * 10, seed + 1, 0, 1);
  std::vector<float> first;
  float cost_first = 0;
  for (int run = 0; run < 3; ++run) {
    tu::Net net;
    ASSERT_EQ(bp_network_create(p.cuda, 3, sizes, seed, &net.net), BP_OK);
    float cost = 0;
    ASSERT_EQ(bp_backward(net, X.data(), Y.data(), n, &cost), BP_OK);
    auto g = all_grads(net);
    if (run == 0) {
      first = g;
      cost_first = cost;
    } else {
      EXPECT_EQ(0, memcmp(first.data(), g.data(), g.size() * sizeof(float))) << "run " << run;
      EXPECT_EQ(cost, cost_first);
    }
  }
}

}  // namespace
