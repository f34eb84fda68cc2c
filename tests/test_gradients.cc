// Gradients of every layer against the chain rule: the one-neuron chain of
// the design notes literally, a double-precision analytic reference that is
// itself checked against central finite differences, and the batch mean.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

class Gradients : public testing::TestWithParam<bp_backend> {};

struct Shape {
  std::vector<int> sizes;
  int n;
  bool full_fd;  // finite differences over every parameter (else a sample)
};


double max_abs(const ref::Grads &g) {
  double m = 0;
  for (auto &v : g.dW)
    for (double x : v) m = std::max(m, std::fabs(x));
  for (auto &v : g.db)
    for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Each element within tol of the reference, relative to the element or, for
// tiny elements, to floor times the largest gradient (1%: float32 against
// double).
void expect_close(const ref::Grads &got, const ref::Grads &want, double tol, const char *what,
                  double floor = 1e-2) {
  const double scale = max_abs(want);
  ASSERT_GT(scale, 1e-6) << what << ": gradients are all near zero; the check would be vacuous";
  auto check = [&](const std::vector<double> &a, const std::vector<double> &b, int layer,
                   const char *name) {
    ASSERT_EQ(a.size(), b.size());
    int bad = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      const double err = std::fabs(a[k] - b[k]) / (std::fabs(b[k]) + floor * scale);
      if (!(err <= tol) && bad++ < 5)
        ADD_FAILURE() << what << ": layer " << layer << " " << name << "[" << k << "] = " << a[k]
                      << ", reference " << b[k] << " (error " << err << ")";
    }
  };
  for (size_t i = 0; i < want.dW.size(); ++i) {
    check(got.dW[i], want.dW[i], (int)i, "dW");
    check(got.db[i], want.db[i], (int)i, "db");
  }
}

TEST_P(Gradients, OneNeuronChainMatchesTheDesignNotes) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {1, 1, 1};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  auto v = ref::random_vector(6, seed, -1.5f, 1.5f);
  float w1 = v[0], b1 = v[1], w2 = v[2], b2 = v[3];
  float x = v[4], y = 0.5f + 0.4f * v[5] / 1.5f;
  ASSERT_EQ(bp_network_set_layer(net, 0, &w1, &b1), BP_OK);
  ASSERT_EQ(bp_network_set_layer(net, 1, &w2, &b2), BP_OK);
  float cost = 0;
  ASSERT_EQ(bp_backward(net, &x, &y, 1, &cost), BP_OK);
  float dw[2], db[2];
  ASSERT_EQ(bp_network_get_gradient(net, 0, &dw[0], &db[0]), BP_OK);
  ASSERT_EQ(bp_network_get_gradient(net, 1, &dw[1], &db[1]), BP_OK);

  // a^(L-1) = sigma(w1 x + b1); z^(L) = w2 a^(L-1) + b2; a^(L) = sigma(z^(L)).
  auto sig = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
  auto dsig = [&](double z) { return sig(z) * (1.0 - sig(z)); };
  const double z1 = (double)w1 * x + b1, a1 = sig(z1);
  const double zL = (double)w2 * a1 + b2, aL = sig(zL);
  EXPECT_NEAR(cost, (aL - y) * (aL - y), 1e-6);
  const double dC_dw = 2 * (aL - y) * dsig(zL) * a1;     // dC0/dw^(L)
  const double dC_db = 2 * (aL - y) * dsig(zL);          // dC0/db^(L)
  const double dC_daprev = 2 * (aL - y) * dsig(zL) * w2;  // dC0/da^(L-1)
  ASSERT_GT(std::fabs(dC_db), 1e-6) << "degenerate draw: the check would be vacuous";
  EXPECT_LT(ref::rel_err(dw[1], dC_dw), 1e-4) << dw[1] << " vs " << dC_dw;
  EXPECT_LT(ref::rel_err(db[1], dC_db), 1e-4) << db[1] << " vs " << dC_db;
  // One layer down, the chain continues through a^(L-1): dC0/db^(L-1) =
  // dC0/da^(L-1) * sigma'(z^(L-1)), and dC0/dw^(L-1) = that * x.
  EXPECT_LT(ref::rel_err(db[0], dC_daprev * dsig(z1)), 1e-4);
  EXPECT_LT(ref::rel_err(dw[0], dC_daprev * dsig(z1) * x), 1e-4);
}

TEST_P(Gradients, MatchDoublePrecisionChainRuleAndFiniteDifferences) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<Shape> shapes = {
      {{3, 4, 2}, 1, true},          {{5, 7, 3}, 7, true},
      {{4, 6, 6, 6, 6, 3}, 7, true},  // deep
      {{2, 3, 1}, 1000, true},        {{120, 64, 10}, 1000, false},  // wide, large batch
      {{33, 17, 65, 9}, 7, false},
  };
  for (const Shape &s : shapes) {
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << "shape of " << s.sizes.size() << " sizes, first "
                                    << s.sizes[0] << ", n " << s.n << ", seed " << seed);
    tu::Net net;
    ASSERT_EQ(bp_network_create(ctx, (int)s.sizes.size(), s.sizes.data(), seed, &net.net), BP_OK);
    const int sL = s.sizes.back();
    auto X = ref::random_vector((size_t)s.n * s.sizes[0], seed + 1);
    auto Y = ref::random_vector((size_t)s.n * sL, seed + 2, 0.0f, 1.0f);
    float cost = NAN;
    ref::Grads got = ref::library_grads(net, X, Y, s.n, &cost);
    ref::Net r = ref::from_network(net);
    auto Xd = ref::to_double(X), Yd = ref::to_double(Y);
    EXPECT_LT(ref::rel_err(cost, ref::cost(r, Xd, Yd, s.n)), 1e-5);
    ref::Grads analytic = ref::gradients(r, Xd, Yd, s.n);
    expect_close(got, analytic, 1e-4, "float32 vs double chain rule");

    // The double reference against central differences: every parameter on
    // small nets, a random sample of 60 on the large ones.
    ref::Grads fd;
    if (s.full_fd) {
      fd = ref::finite_differences(r, Xd, Yd, s.n);
      expect_close(analytic, fd, 1e-5, "chain rule vs finite differences");
    } else {
      std::mt19937_64 pick(seed);
      const double h = 1e-6;
      for (int t = 0; t < 60; ++t) {
        const int i = (int)(pick() % r.layers());
        const bool bias = pick() % 4 == 0;
        std::vector<double> &param = bias ? r.b[i] : r.W[i];
        const size_t k = pick() % param.size();
        const double keep = param[k];
        param[k] = keep + h;
        const double up = ref::cost(r, Xd, Yd, s.n);
        param[k] = keep - h;
        const double down = ref::cost(r, Xd, Yd, s.n);
        param[k] = keep;
        const double numeric = (up - down) / (2 * h);
        const double exact = bias ? analytic.db[i][k] : analytic.dW[i][k];
        EXPECT_LT(std::fabs(numeric - exact), 1e-6 + 1e-5 * std::fabs(exact))
            << "layer " << i << (bias ? " b[" : " W[") << k << "]";
      }
    }
  }
}

TEST_P(Gradients, BatchGradientIsTheMeanOfPerExampleGradients) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {6, 9, 4};
  const int n = 7;
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  auto X = ref::random_vector(n * 6, seed + 1);
  auto Y = ref::random_vector(n * 4, seed + 2, 0.0f, 1.0f);
  float batch_cost = 0;
  ref::Grads batch = ref::library_grads(net, X, Y, n, &batch_cost);
  ref::Grads mean = batch;
  for (auto &v : mean.dW) std::fill(v.begin(), v.end(), 0.0);
  for (auto &v : mean.db) std::fill(v.begin(), v.end(), 0.0);
  double cost_mean = 0;
  for (int e = 0; e < n; ++e) {
    std::vector<float> x(X.begin() + e * 6, X.begin() + (e + 1) * 6);
    std::vector<float> y(Y.begin() + e * 4, Y.begin() + (e + 1) * 4);
    float c = 0;
    ref::Grads one = ref::library_grads(net, x, y, 1, &c);
    cost_mean += (double)c / n;
    for (size_t i = 0; i < one.dW.size(); ++i) {
      for (size_t k = 0; k < one.dW[i].size(); ++k) mean.dW[i][k] += one.dW[i][k] / n;
      for (size_t k = 0; k < one.db[i].size(); ++k) mean.db[i][k] += one.db[i][k] / n;
    }
  }
  EXPECT_LT(ref::rel_err(batch_cost, cost_mean), 1e-5);
  // Both sides are float32 sums of per-example terms as large as the largest
  // gradient, added in two orders: they differ by a few units in the last
  // place of those terms (6e-8 x scale each), which for an element that
  // cancels to near zero is more than 1e-5 of a 1% floor (seed
  // 6469868835314671797 in the emulation build: 1.5e-8 apart, 2 ulps of the
  // terms). So the floor here is 10% of the scale: 1e-6 x scale absolute.
  expect_close(batch, mean, 1e-5, "batch vs mean of examples", 1e-1);
}

INSTANTIATE_TEST_SUITE_P(Backends, Gradients, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace
