// The model beyond the seed: every activation x cost pair against the float64
// reference (itself checked against central differences), the rules of the
// description, every optimizer against a float64 transcription of its
// torch.optim formula, the optimizer state round trip, learning-rate
// schedules, and the CUDA fused path against the reference path for such networks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

class Models : public testing::TestWithParam<bp_backend> {};

struct Pair {
  bp_activation hidden, output;
  bp_cost cost;
};

std::vector<Pair> every_pair() {
  const bp_activation all[] = {BP_ACTIVATION_SIGMOID, BP_ACTIVATION_TANH, BP_ACTIVATION_RELU,
                               BP_ACTIVATION_IDENTITY};
  std::vector<Pair> out;
  for (bp_activation h : all) {
    for (bp_activation o : all) out.push_back({h, o, BP_COST_QUADRATIC});
    out.push_back({h, BP_ACTIVATION_SOFTMAX, BP_COST_QUADRATIC});
    out.push_back({h, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY});
    out.push_back({h, BP_ACTIVATION_SIGMOID, BP_COST_CROSS_ENTROPY});
  }
  return out;
}

bp_status make_net(bp_context *ctx, const std::vector<int> &sizes, const Pair &p, uint64_t seed,
                   bp_network **out, bp_optimizer opt = BP_OPTIMIZER_SGD,
                   bp_kernel_path kernels = BP_KERNELS_REFERENCE) {
  std::vector<bp_activation> acts(sizes.size() - 1, p.hidden);
  acts.back() = p.output;
  bp_network_desc desc;
  bp_network_desc_init(&desc, (int)sizes.size(), sizes.data(), seed);
  desc.activations = acts.data();
  desc.cost = p.cost;
  desc.optimizer = opt;
  desc.kernels = kernels;
  return bp_network_create_ex(ctx, &desc, out);
}

// Targets fit for the pair: probability rows (one of them one-hot) for a
// softmax, values in [0, 1] otherwise.
std::vector<float> targets(const Pair &p, int n, int width, uint64_t seed) {
  auto Y = ref::random_vector((size_t)n * width, seed, 0.05f, 1.0f);
  if (p.output == BP_ACTIVATION_SOFTMAX) {
    for (int e = 0; e < n; ++e) {
      float s = 0;
      for (int j = 0; j < width; ++j) s += Y[(size_t)e * width + j];
      for (int j = 0; j < width; ++j) Y[(size_t)e * width + j] /= s;
    }
    for (int j = 0; j < width; ++j) Y[j] = j == 1 ? 1.0f : 0.0f;  // one one-hot row
  }
  return Y;
}

double max_abs(const ref::Grads &g) {
  double m = 0;
  for (auto &v : g.dW)
    for (double x : v) m = std::max(m, std::fabs(x));
  for (auto &v : g.db)
    for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Each element within tol, relative to itself or 1% of the largest.
int count_far(const ref::Grads &got, const ref::Grads &want, double tol) {
  const double scale = max_abs(want);
  int bad = 0;
  auto check = [&](const std::vector<double> &a, const std::vector<double> &b) {
    for (size_t k = 0; k < a.size(); ++k)
      if (!(std::fabs(a[k] - b[k]) / (std::fabs(b[k]) + 1e-2 * scale) <= tol)) ++bad;
  };
  for (size_t i = 0; i < want.dW.size(); ++i) {
    check(got.dW[i], want.dW[i]);
    check(got.db[i], want.db[i]);
  }
  return bad;
}

TEST_P(Models, EveryActivationAndCostMatchesTheDoubleReference) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  // Softmax outputs also at width 19: the CPU's softmax sums run in 8 lanes
  // from width 8 on (cpu_activations.c), with a tail. (Only those: every
  // pair again would double the chance of a ReLU kink under the central
  // differences, seed 10181185091715750236 at width 19.) On CUDA both kernel
  // paths: the fused kernels against the same float64 chain rule.
  auto runs_of = [&](const std::vector<int> &sizes) {
    std::vector<std::pair<bp_kernel_path, Pair>> runs;
    for (const Pair &p : every_pair()) {
      if (sizes.back() != 4 && p.output != BP_ACTIVATION_SOFTMAX) continue;
      runs.push_back({BP_KERNELS_REFERENCE, p});
      if (GetParam() == BP_BACKEND_CUDA) runs.push_back({BP_KERNELS_FUSED, p});
    }
    return runs;
  };
  for (const std::vector<int> &sizes : {std::vector<int>{5, 7, 6, 4}, std::vector<int>{5, 7, 6, 19}})
  for (const auto &run : runs_of(sizes)) {
    const bp_kernel_path path = run.first;
    const Pair &p = run.second;
    const int n = 9;
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << "output width " << sizes.back() << ", "
                                    << bp_activation_name(p.hidden) << " hidden, "
                                    << bp_activation_name(p.output) << " output, "
                                    << bp_cost_name(p.cost) << ", "
                                    << (path == BP_KERNELS_FUSED ? "fused" : "reference")
                                    << " kernels, seed " << seed);
    tu::Net net;
    ASSERT_EQ(make_net(ctx, sizes, p, seed, &net.net, BP_OPTIMIZER_SGD, path), BP_OK)
        << bp_context_last_error(ctx);
    // Non-zero biases: with b = 0, an example whose ReLU layer is all zero
    // gives z = 0 exactly in the next layer, a kink central differences
    // cannot step over.
    // A ReLU output layer gets positive biases: with a few examples all of
    // its units can start dead (seed 12527483387719216282 did, after a
    // sigmoid layer), and then every gradient is 0 and the check vacuous.
    const int last = (int)sizes.size() - 2;
    for (int i = 0; i + 1 < (int)sizes.size(); ++i) {
      const bool live = i == last && p.output == BP_ACTIVATION_RELU;
      auto b = ref::random_vector(sizes[i + 1], seed + 10 + i, live ? 0.2f : -0.5f, 0.5f);
      ASSERT_EQ(bp_network_set_layer(net, i, nullptr, b.data()), BP_OK);
    }
    auto X = ref::random_vector((size_t)n * sizes[0], seed + 1, -1.5f, 1.5f);
    auto Y = targets(p, n, sizes.back(), seed + 2);
    float cost = NAN;
    ref::Grads got = ref::library_grads(net, X, Y, n, &cost);
    ref::Net r = ref::from_network(net);
    auto Xd = ref::to_double(X), Yd = ref::to_double(Y);
    const double want_cost = ref::cost(r, Xd, Yd, n);
    EXPECT_LT(ref::rel_err(cost, want_cost), 1e-5) << cost << " vs " << want_cost;
    ref::Grads analytic = ref::gradients(r, Xd, Yd, n);
    ASSERT_GT(max_abs(analytic), 1e-6) << "gradients all near zero: the check would be vacuous";
    EXPECT_EQ(count_far(got, analytic, 1e-4), 0) << "float32 vs double chain rule";
    // The reference itself against central differences.
    EXPECT_EQ(count_far(analytic, ref::finite_differences(r, Xd, Yd, n), 1e-5), 0)
        << "chain rule vs finite differences";
    // Forward outputs too (softmax columns sum to 1).
    std::vector<float> out((size_t)n * sizes.back());
    ASSERT_EQ(bp_forward(net, X.data(), n, out.data()), BP_OK);
    auto want = ref::forward(r, Xd, n);
    for (size_t k = 0; k < out.size(); ++k) EXPECT_NEAR(out[k], want[k], 1e-5) << k;
    // bp_evaluate's cost is the same mean cost.
    tu::Data data;
    ASSERT_EQ(bp_dataset_create(ctx, n, sizes[0], sizes.back(), X.data(), Y.data(), &data.data),
              BP_OK);
    float eval_cost = NAN;
    ASSERT_EQ(bp_evaluate(net, data, &eval_cost, nullptr), BP_OK);
    EXPECT_LT(ref::rel_err(eval_cost, want_cost), 1e-5);
  }
}

TEST_P(Models, CrossEntropyIsStableWhereTheProbabilityRoundsToZero) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {1, 3};
  for (bp_activation out_act : {BP_ACTIVATION_SOFTMAX, BP_ACTIVATION_SIGMOID}) {
    tu::Net net;
    ASSERT_EQ(make_net(ctx, sizes, {BP_ACTIVATION_RELU, out_act, BP_COST_CROSS_ENTROPY}, 1,
                       &net.net),
              BP_OK);
    // z = (0, -200, 200): a_1 is 0 in float, yet the cost is finite and exact.
    const float W[] = {0, 0, 0}, b[] = {0, -200, 200};
    ASSERT_EQ(bp_network_set_layer(net, 0, W, b), BP_OK);
    const float x = 1, y[] = {0, 1, 0};
    float cost = NAN;
    ASSERT_EQ(bp_backward(net, &x, y, 1, &cost), BP_OK);
    // softmax: lse = 200 + log(1 + e^-200 + e^-400) ~ 200; C0 = lse + 200 = 400.
    // sigmoid: softplus(0) + softplus(-200) - (-200) + softplus(200) ~ log 2 + 400.
    const double want = out_act == BP_ACTIVATION_SOFTMAX ? 400.0 : std::log(2.0) + 400.0;
    EXPECT_NEAR(cost, want, 1e-3) << bp_activation_name(out_act);
    float db[3];
    ASSERT_EQ(bp_network_get_gradient(net, 0, nullptr, db), BP_OK);
    EXPECT_NEAR(db[1], -1.0, 1e-6);  // a - y with a = 0, y = 1
  }
}

TEST_P(Models, TheDescriptionIsChecked) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {3, 4, 2};
  bp_network *none = nullptr;
  // Softmax only on the output layer.
  EXPECT_EQ(make_net(ctx, sizes, {BP_ACTIVATION_SOFTMAX, BP_ACTIVATION_SIGMOID, BP_COST_QUADRATIC},
                     1, &none),
            BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("softmax"), std::string::npos);
  // Cross-entropy only with a softmax or sigmoid output.
  for (bp_activation a : {BP_ACTIVATION_TANH, BP_ACTIVATION_RELU, BP_ACTIVATION_IDENTITY})
    EXPECT_EQ(make_net(ctx, sizes, {BP_ACTIVATION_RELU, a, BP_COST_CROSS_ENTROPY}, 1, &none),
              BP_ERR_INVALID_ARGUMENT)
        << bp_activation_name(a);
  EXPECT_EQ(none, nullptr);
  tu::Net net;
  ASSERT_EQ(make_net(ctx, sizes, {BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY},
                     1, &net.net, BP_OPTIMIZER_ADAMW),
            BP_OK);
  EXPECT_EQ(bp_network_get_activation(net, 0), BP_ACTIVATION_TANH);
  EXPECT_EQ(bp_network_get_activation(net, 1), BP_ACTIVATION_SOFTMAX);
  EXPECT_EQ(bp_network_get_cost(net), BP_COST_CROSS_ENTROPY);
  bp_optimizer_config cfg;
  cfg.struct_size = sizeof cfg;
  ASSERT_EQ(bp_network_get_optimizer(net, &cfg), BP_OK);
  EXPECT_EQ(cfg.kind, BP_OPTIMIZER_ADAMW);
  EXPECT_EQ(cfg.weight_decay, 0.01);  // torch.optim.AdamW's default
  EXPECT_EQ(cfg.beta2, 0.999);
  // Names round-trip; values are pinned (model files and the ABI).
  EXPECT_EQ((int)BP_ACTIVATION_SOFTMAX, 4);
  EXPECT_EQ((int)BP_COST_CROSS_ENTROPY, 1);
  EXPECT_EQ((int)BP_OPTIMIZER_RPROP, 3);
  for (int i = 0; i <= 4; ++i) {
    bp_activation a;
    ASSERT_EQ(bp_activation_parse(bp_activation_name((bp_activation)i), &a), BP_OK);
    EXPECT_EQ((int)a, i);
  }
  for (int i = 0; i <= 3; ++i) {
    bp_optimizer o;
    ASSERT_EQ(bp_optimizer_parse(bp_optimizer_name((bp_optimizer)i), &o), BP_OK);
    EXPECT_EQ((int)o, i);
  }
  bp_cost c;
  EXPECT_EQ(bp_cost_parse("cross-entropy", &c), BP_OK);
  EXPECT_EQ(c, BP_COST_CROSS_ENTROPY);
  EXPECT_EQ(bp_cost_parse("mse", &c), BP_ERR_INVALID_ARGUMENT);
  // Out-of-range hyperparameters change nothing.
  bp_optimizer_config bad;
  bp_optimizer_config_init(&bad, BP_OPTIMIZER_ADAM);
  bad.beta1 = 1.0;
  EXPECT_EQ(bp_network_set_optimizer(net, &bad), BP_ERR_INVALID_ARGUMENT);
  bp_optimizer_config_init(&bad, BP_OPTIMIZER_SGD);
  bad.nesterov = 1;  // without momentum
  EXPECT_EQ(bp_network_set_optimizer(net, &bad), BP_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(bp_network_get_optimizer(net, &cfg), BP_OK);
  EXPECT_EQ(cfg.kind, BP_OPTIMIZER_ADAMW);
}

// ---- Optimizers against torch.optim's formulas, in double ----------------------

struct RefOpt {
  bp_optimizer_config c;
  std::vector<double> s0, s1;
  long long t = 0;
  // One update of p (double) with g, the pseudocode of torch.optim's docs.
  void step(std::vector<double> &p, const std::vector<double> &g, double lr) {
    if (s0.empty()) s0.assign(p.size(), 0.0), s1.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      double gi = g[i];
      switch (c.kind) {
        case BP_OPTIMIZER_SGD:
          if (c.weight_decay != 0) gi += c.weight_decay * p[i];
          if (c.momentum != 0) {
            s0[i] = t == 1 ? gi : c.momentum * s0[i] + gi;  // dampening 0
            gi = c.nesterov ? gi + c.momentum * s0[i] : s0[i];
          }
          p[i] -= lr * gi;
          break;
        case BP_OPTIMIZER_ADAM:
        case BP_OPTIMIZER_ADAMW: {
          if (c.kind == BP_OPTIMIZER_ADAMW)
            p[i] *= 1 - lr * c.weight_decay;
          else
            gi += c.weight_decay * p[i];
          s0[i] = c.beta1 * s0[i] + (1 - c.beta1) * gi;
          s1[i] = c.beta2 * s1[i] + (1 - c.beta2) * gi * gi;
          const double mhat = s0[i] / (1 - std::pow(c.beta1, (double)t));
          const double vhat = s1[i] / (1 - std::pow(c.beta2, (double)t));
          p[i] -= lr * mhat / (std::sqrt(vhat) + c.eps);
          break;
        }
        case BP_OPTIMIZER_RPROP: {
          if (t == 1) s1[i] = lr;
          const double prod = gi * s0[i];
          if (prod > 0) s1[i] = std::min(s1[i] * c.eta_plus, c.step_max);
          if (prod < 0) {
            s1[i] = std::max(s1[i] * c.eta_minus, c.step_min);
            gi = 0;
          }
          p[i] -= (gi > 0 ? 1 : gi < 0 ? -1 : 0) * s1[i];
          s0[i] = gi;
          break;
        }
      }
    }
  }
};

std::vector<bp_optimizer_config> optimizer_cases() {
  std::vector<bp_optimizer_config> out;
  bp_optimizer_config c;
  bp_optimizer_config_init(&c, BP_OPTIMIZER_SGD);
  c.momentum = 0.9;
  out.push_back(c);
  c.nesterov = 1;
  c.weight_decay = 1e-2;
  out.push_back(c);
  bp_optimizer_config_init(&c, BP_OPTIMIZER_SGD);
  c.weight_decay = 5e-2;
  out.push_back(c);
  bp_optimizer_config_init(&c, BP_OPTIMIZER_ADAM);
  out.push_back(c);
  c.weight_decay = 1e-2;
  c.beta1 = 0.8;
  out.push_back(c);
  bp_optimizer_config_init(&c, BP_OPTIMIZER_ADAMW);
  out.push_back(c);
  bp_optimizer_config_init(&c, BP_OPTIMIZER_RPROP);
  out.push_back(c);
  return out;
}

std::vector<double> all_grads(const bp_network *net) {
  std::vector<double> out;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    std::vector<float> dW((size_t)bp_network_size(net, i) * bp_network_size(net, i + 1));
    std::vector<float> db(bp_network_size(net, i + 1));
    EXPECT_EQ(bp_network_get_gradient(net, i, dW.data(), db.data()), BP_OK);
    out.insert(out.end(), dW.begin(), dW.end());
    out.insert(out.end(), db.begin(), db.end());
  }
  return out;
}

TEST_P(Models, EveryOptimizerFollowsItsTorchFormula) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {4, 6, 3};
  const int n = 8, steps = 6;
  const float lr = 0.05f;
  for (const bp_optimizer_config &cfg : optimizer_cases()) {
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << bp_optimizer_name(cfg.kind) << " momentum "
                                    << cfg.momentum << " nesterov " << cfg.nesterov << " wd "
                                    << cfg.weight_decay << ", seed " << seed);
    tu::Net net;
    ASSERT_EQ(make_net(ctx, sizes,
                       {BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY}, seed,
                       &net.net),
              BP_OK);
    ASSERT_EQ(bp_network_set_optimizer(net, &cfg), BP_OK) << bp_context_last_error(ctx);
    RefOpt ref_opt{cfg, {}, {}, 0};
    auto X = ref::random_vector((size_t)n * sizes[0], seed + 1);
    auto Y = targets({BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY}, n,
                     sizes.back(), seed + 2);
    // The reference carries its own parameters; each step takes the
    // library's gradient (so the comparison is of the update alone).
    std::vector<float> p0 = tu::all_params(net);
    std::vector<double> p(p0.begin(), p0.end());
    for (int s = 0; s < steps; ++s) {
      float cost;
      ASSERT_EQ(bp_train_batch(net, X.data(), Y.data(), n, lr, &cost), BP_OK);
      ref_opt.step(p, all_grads(net), lr);
      std::vector<float> got = tu::all_params(net);
      int bad = 0;
      for (size_t i = 0; i < p.size(); ++i)
        if (!(std::fabs(got[i] - p[i]) <= 2e-6 + 1e-5 * std::fabs(p[i])) && bad++ < 3)
          ADD_FAILURE() << "step " << s << " parameter " << i << ": " << got[i] << " vs "
                        << p[i];
      // Continue from the library's parameters so float rounding does not pile up.
      p.assign(got.begin(), got.end());
    }
    // The state: the slots and t.
    const int slots = bp_network_optimizer_state_slots(net);
    EXPECT_EQ(slots, cfg.kind == BP_OPTIMIZER_SGD ? (cfg.momentum != 0 ? 1 : 0) : 2);
    std::vector<float> state((size_t)slots * bp_network_parameter_count(net));
    int64_t t = -1;
    ASSERT_EQ(bp_network_get_optimizer_state(net, state.data(), state.size(), &t), BP_OK);
    EXPECT_EQ(t, steps);
    const size_t np = bp_network_parameter_count(net);
    for (size_t i = 0; i < state.size(); ++i) {
      const double want = i < np ? ref_opt.s0[i] : ref_opt.s1[i - np];
      EXPECT_LE(std::fabs(state[i] - want), 1e-6 + 1e-4 * std::fabs(want)) << "state " << i;
    }
  }
}

TEST_P(Models, OptimizerStateRestoresTrainingExactly) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {4, 6, 3};
  const int n = 8;
  const Pair p = {BP_ACTIVATION_RELU, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY};
  for (bp_optimizer kind : {BP_OPTIMIZER_ADAM, BP_OPTIMIZER_RPROP}) {
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << bp_optimizer_name(kind) << ", seed " << seed);
    auto X = ref::random_vector((size_t)n * sizes[0], seed + 1);
    auto Y = targets(p, n, sizes.back(), seed + 2);
    tu::Net a, b;
    ASSERT_EQ(make_net(ctx, sizes, p, seed, &a.net, kind), BP_OK);
    ASSERT_EQ(make_net(ctx, sizes, p, seed + 7, &b.net, kind), BP_OK);
    for (int s = 0; s < 3; ++s) ASSERT_EQ(bp_train_batch(a, X.data(), Y.data(), n, 0.01f, nullptr), BP_OK);
    // Copy weights and state from a to b, then both take the same steps.
    for (int i = 0; i < 2; ++i) {
      std::vector<float> W((size_t)sizes[i] * sizes[i + 1]), bias(sizes[i + 1]);
      ASSERT_EQ(bp_network_get_layer(a, i, W.data(), bias.data()), BP_OK);
      ASSERT_EQ(bp_network_set_layer(b, i, W.data(), bias.data()), BP_OK);
    }
    std::vector<float> state(2 * bp_network_parameter_count(a));
    int64_t t = 0;
    ASSERT_EQ(bp_network_get_optimizer_state(a, state.data(), state.size(), &t), BP_OK);
    EXPECT_EQ(t, 3);
    EXPECT_EQ(bp_network_set_optimizer_state(b, state.data(), state.size() - 1, t),
              BP_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(bp_network_set_optimizer_state(b, state.data(), state.size(), t), BP_OK);
    for (int s = 0; s < 3; ++s) {
      ASSERT_EQ(bp_train_batch(a, X.data(), Y.data(), n, 0.01f, nullptr), BP_OK);
      ASSERT_EQ(bp_train_batch(b, X.data(), Y.data(), n, 0.01f, nullptr), BP_OK);
    }
    EXPECT_EQ(tu::all_params(a), tu::all_params(b));
  }
}

TEST_P(Models, AnUpdateThatWouldOverflowIsNotAppliedForAnyOptimizer) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {3, 4, 2};
  const int n = 5;
  for (const bp_optimizer_config &cfg : optimizer_cases()) {
    SCOPED_TRACE(bp_optimizer_name(cfg.kind));
    tu::Net net;
    ASSERT_EQ(make_net(ctx, sizes, {BP_ACTIVATION_RELU, BP_ACTIVATION_IDENTITY, BP_COST_QUADRATIC},
                       3, &net.net),
              BP_OK);
    ASSERT_EQ(bp_network_set_optimizer(net, &cfg), BP_OK);
    // Targets far from the outputs: gradients near 2000, so 3e38 x g overflows.
    auto X = ref::random_vector((size_t)n * 3, 4);
    auto Y = ref::random_vector((size_t)n * 2, 5, 900.0f, 1000.0f);
    ASSERT_EQ(bp_train_batch(net, X.data(), Y.data(), n, 0.01f, nullptr), BP_OK);
    const auto before = tu::all_params(net);
    std::vector<float> s_before((size_t)bp_network_optimizer_state_slots(net) *
                                bp_network_parameter_count(net));
    int64_t t_before = 0;
    ASSERT_EQ(bp_network_get_optimizer_state(net, s_before.data(), s_before.size(), &t_before),
              BP_OK);
    // Rprop ignores lr after the first step: a huge first step is its case.
    if (cfg.kind == BP_OPTIMIZER_RPROP) continue;
    EXPECT_EQ(bp_train_batch(net, X.data(), Y.data(), n, 3e38f, nullptr), BP_ERR_NUMERIC);
    EXPECT_EQ(tu::all_params(net), before);
    std::vector<float> s_after(s_before.size());
    int64_t t_after = 0;
    ASSERT_EQ(bp_network_get_optimizer_state(net, s_after.data(), s_after.size(), &t_after),
              BP_OK);
    EXPECT_EQ(s_after, s_before);
    EXPECT_EQ(t_after, t_before);
    // The epoch counts the skip and keeps the weights.
    tu::Data data;
    ASSERT_EQ(bp_dataset_create(ctx, n, 3, 2, X.data(), Y.data(), &data.data), BP_OK);
    EXPECT_EQ(bp_train_epoch(net, data, n, 3e38f, 1, nullptr), BP_ERR_NUMERIC);
    EXPECT_EQ(tu::all_params(net), before);
  }
}

TEST_P(Models, SoftmaxCrossEntropyWithAdamLearnsThreeClasses) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int n = 300;
  std::vector<float> X((size_t)n * 2), Y((size_t)n * 3, 0.0f);
  std::mt19937_64 gen(11);
  std::normal_distribution<float> noise(0.0f, 0.35f);
  const float cx[] = {0, 2, -2}, cy[] = {2, -1, -1};
  for (int e = 0; e < n; ++e) {
    const int k = e % 3;
    X[(size_t)e * 2] = cx[k] + noise(gen);
    X[(size_t)e * 2 + 1] = cy[k] + noise(gen);
    Y[(size_t)e * 3 + k] = 1.0f;
  }
  tu::Net net;
  ASSERT_EQ(make_net(ctx, {2, 16, 3}, {BP_ACTIVATION_RELU, BP_ACTIVATION_SOFTMAX,
                                       BP_COST_CROSS_ENTROPY},
                     5, &net.net, BP_OPTIMIZER_ADAM),
            BP_OK);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, 2, 3, X.data(), Y.data(), &data.data), BP_OK);
  float first = NAN, last = NAN, acc = 0;
  for (int e = 0; e < 20; ++e) {
    ASSERT_EQ(bp_train_epoch(net, data, 16, 0.01f, (uint64_t)e, &last), BP_OK);
    if (e == 0) first = last;
  }
  ASSERT_EQ(bp_evaluate(net, data, nullptr, &acc), BP_OK);
  EXPECT_LT(last, first * 0.5f);
  EXPECT_GE(acc, 0.95f);
}

// On CUDA the fused kernels (fused.cu) cover every model: a few epochs on
// the fused path against the reference path, from the same weights on the
// same batches. Where every layer is elementwise the two compute the same
// floats (the batch cost, summed in another order, only gates the update),
// so weights and optimizer state must be equal bit for bit. A softmax
// output's column sums go over 32 lanes in the fused kernels, so its a,
// delta and db differ from the reference's by rounding (~1e-7 relative),
// which the steps carry into the weights: there the tolerance is 1e-5 of
// the largest weight (and of the largest state value), far below one
// step's change (lr 0.01) and far above what 15 steps of 1e-7 add.
TEST_P(Models, TheFusedPathMatchesTheReferencePath) {
  if (GetParam() != BP_BACKEND_CUDA) GTEST_SKIP() << "the kernel path is the CUDA backend's";
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  struct Case {
    Pair p;
    bp_optimizer opt;
    bool exact;  // every layer elementwise: bit for bit
  };
  const Case cases[] = {
      {{BP_ACTIVATION_RELU, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY}, BP_OPTIMIZER_ADAM,
       false},
      {{BP_ACTIVATION_TANH, BP_ACTIVATION_IDENTITY, BP_COST_QUADRATIC}, BP_OPTIMIZER_SGD, true},
      {{BP_ACTIVATION_SIGMOID, BP_ACTIVATION_SIGMOID, BP_COST_CROSS_ENTROPY}, BP_OPTIMIZER_RPROP,
       true},
      {{BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX, BP_COST_QUADRATIC}, BP_OPTIMIZER_ADAMW, false},
  };
  // Widths that are multiples of 4 (the kernels' float4 path) and not.
  const std::vector<int> sizes = {5, 8, 12, 4};
  const int n = 37;
  for (const Case &c : cases) {
    const uint64_t seed = tu::fresh_seed();
    SCOPED_TRACE(testing::Message() << bp_activation_name(c.p.hidden) << " hidden, "
                                    << bp_activation_name(c.p.output) << " output, "
                                    << bp_cost_name(c.p.cost) << ", "
                                    << bp_optimizer_name(c.opt) << ", seed " << seed);
    bp_optimizer_config cfg;
    bp_optimizer_config_init(&cfg, c.opt);
    if (c.opt == BP_OPTIMIZER_SGD) {
      cfg.momentum = 0.9;
      cfg.nesterov = 1;
      cfg.weight_decay = 1e-2;
    }
    auto X = ref::random_vector((size_t)n * sizes[0], seed + 1, -1.5f, 1.5f);
    auto Y = targets(c.p, n, sizes.back(), seed + 2);
    tu::Data data;
    ASSERT_EQ(bp_dataset_create(ctx, n, sizes[0], sizes.back(), X.data(), Y.data(), &data.data),
              BP_OK);
    tu::Net nets[2];
    const bp_kernel_path paths[2] = {BP_KERNELS_REFERENCE, BP_KERNELS_FUSED};
    float cost[2] = {NAN, NAN};
    for (int k = 0; k < 2; ++k) {
      ASSERT_EQ(make_net(ctx, sizes, c.p, seed, &nets[k].net, c.opt, paths[k]), BP_OK);
      ASSERT_EQ(bp_network_set_optimizer(nets[k], &cfg), BP_OK);
      for (int e = 0; e < 3; ++e)
        ASSERT_EQ(bp_train_epoch(nets[k], data, 8, 0.01f, seed + (uint64_t)e, &cost[k]), BP_OK)
            << bp_context_last_error(ctx);
    }
    ASSERT_EQ(bp_network_get_kernel_path(nets[1]), BP_KERNELS_FUSED);
    // The fused kernels ran (fewer launches per step), not a fallback.
    bp_epoch_stats st[2];
    for (int k = 0; k < 2; ++k)
      ASSERT_EQ(bp_network_last_epoch_stats(nets[k], &st[k], sizeof st[k]), BP_OK);
    EXPECT_LT(st[1].launches, st[0].launches);
    const auto ref_p = tu::all_params(nets[0]), fused_p = tu::all_params(nets[1]);
    const auto init_p = [&] {
      tu::Net fresh;
      EXPECT_EQ(make_net(ctx, sizes, c.p, seed, &fresh.net, c.opt), BP_OK);
      return tu::all_params(fresh);
    }();
    ASSERT_NE(ref_p, init_p) << "training must move the weights, or the comparison is vacuous";
    const size_t slots = (size_t)bp_network_optimizer_state_slots(nets[0]);
    std::vector<float> s[2];
    int64_t t[2] = {-1, -1};
    for (int k = 0; k < 2; ++k) {
      s[k].resize(slots * ref_p.size());
      ASSERT_EQ(bp_network_get_optimizer_state(nets[k], s[k].data(), s[k].size(), &t[k]), BP_OK);
    }
    EXPECT_EQ(t[0], t[1]) << "applied updates";
    EXPECT_EQ(t[0], 3 * ((n + 7) / 8)) << "every step applied";
    if (c.exact) {
      EXPECT_EQ(fused_p, ref_p);
      EXPECT_EQ(s[1], s[0]);
    } else {
      double scale = 0, state_scale = 0;
      for (float v : ref_p) scale = std::max(scale, (double)std::fabs(v));
      for (float v : s[0]) state_scale = std::max(state_scale, (double)std::fabs(v));
      int far = 0, state_far = 0;
      for (size_t i = 0; i < ref_p.size(); ++i)
        far += !(std::fabs(fused_p[i] - ref_p[i]) <= 1e-5 * scale);
      for (size_t i = 0; i < s[0].size(); ++i)
        state_far += !(std::fabs(s[1][i] - s[0][i]) <= 1e-5 * state_scale);
      EXPECT_EQ(far, 0) << "weights beyond 1e-5 of the largest (" << scale << ")";
      EXPECT_EQ(state_far, 0) << "optimizer state beyond 1e-5 of the largest";
    }
    // The last batch's cost: the same mean to float rounding (and rounding
    // of the softmax sums).
    EXPECT_LE(std::fabs(cost[1] - cost[0]), 1e-5 * std::fabs(cost[0]))
        << cost[1] << " vs " << cost[0];
    // Evaluation on the fused path: the quadratic cost from a (no z kept),
    // cross-entropy from the output layer's kept z.
    float eval[2] = {NAN, NAN}, acc[2] = {NAN, NAN};
    for (int k = 0; k < 2; ++k) ASSERT_EQ(bp_evaluate(nets[k], data, &eval[k], &acc[k]), BP_OK);
    EXPECT_LE(std::fabs(eval[1] - eval[0]), 1e-5 * std::fabs(eval[0]));
    if (c.exact) {
      EXPECT_EQ(acc[1], acc[0]);
    }
  }
}

// A softmax output wider than the fused output kernel takes
// (BP_FUSED_SOFTMAX_MAX_WIDTH, 1024) runs the reference kernels on the fused
// path too: the same weights bit for bit and the same launches.
TEST_P(Models, AWideSoftmaxOutputRunsTheReferenceKernelsOnBothPaths) {
  if (GetParam() != BP_BACKEND_CUDA) GTEST_SKIP() << "the kernel path is the CUDA backend's";
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<int> sizes = {3, 4, 1025};
  const Pair p = {BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY};
  const int n = 6;
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  auto X = ref::random_vector((size_t)n * 3, seed + 1);
  auto Y = targets(p, n, 1025, seed + 2);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, 3, 1025, X.data(), Y.data(), &data.data), BP_OK);
  tu::Net nets[2];
  bp_epoch_stats st[2];
  const bp_kernel_path paths[2] = {BP_KERNELS_REFERENCE, BP_KERNELS_FUSED};
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(make_net(ctx, sizes, p, seed, &nets[k].net, BP_OPTIMIZER_ADAM, paths[k]), BP_OK);
    ASSERT_EQ(bp_train_epoch(nets[k], data, 3, 0.01f, seed, nullptr), BP_OK);
    ASSERT_EQ(bp_network_last_epoch_stats(nets[k], &st[k], sizeof st[k]), BP_OK);
  }
  EXPECT_EQ(tu::all_params(nets[1]), tu::all_params(nets[0]));
  EXPECT_EQ(st[1].launches, st[0].launches);
}

TEST(LrSchedule, ConstantStepCosineAndWarmup) {
  bp_lr_schedule s;
  bp_lr_schedule_init(&s, 0.1);
  EXPECT_EQ(bp_lr_schedule_at(&s, 0), 0.1);
  EXPECT_EQ(bp_lr_schedule_at(&s, 99), 0.1);
  ASSERT_EQ(bp_lr_schedule_parse("step:10:0.5", &s), BP_OK);
  EXPECT_EQ(s.kind, BP_LR_STEP);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 9), 0.1);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 10), 0.05);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 25), 0.025);
  ASSERT_EQ(bp_lr_schedule_parse("cosine", &s), BP_OK);
  s.total_epochs = 10;
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 0), 0.1);
  EXPECT_NEAR(bp_lr_schedule_at(&s, 5), 0.05, 1e-15);
  EXPECT_NEAR(bp_lr_schedule_at(&s, 10), 0.0, 1e-15);
  EXPECT_NEAR(bp_lr_schedule_at(&s, 12), 0.0, 1e-15);
  s.warmup_epochs = 2;  // 0.05, 0.1, then cosine over the remaining 8
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 0), 0.05);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 1), 0.1);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 2), 0.1);
  EXPECT_NEAR(bp_lr_schedule_at(&s, 6), 0.05, 1e-15);
  ASSERT_EQ(bp_lr_schedule_parse("constant", &s), BP_OK);
  EXPECT_DOUBLE_EQ(bp_lr_schedule_at(&s, 0), 0.05);  // warmup still applies
  for (const char *bad : {"", "step", "step:0:0.5", "step:3:", "step:3:-1", "cos", "step:3:0.5x"})
    EXPECT_EQ(bp_lr_schedule_parse(bad, &s), BP_ERR_INVALID_ARGUMENT) << bad;
  EXPECT_TRUE(std::isnan(bp_lr_schedule_at(&s, -1)));
}

INSTANTIATE_TEST_SUITE_P(Backends, Models, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace
