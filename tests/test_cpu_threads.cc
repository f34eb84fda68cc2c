// The CPU backend's one thread pool (bp_context_set_threads): the thread
// count changes how the work is split, never the result beyond the BLAS's
// own summation order. The same seed and the same thread count give the same
// bits; one and two threads agree to float tolerance. The shapes are large
// enough that the threaded passes run on several threads (hidden passes over
// PAR_MIN elements, the update over PAR_MIN_COPY parameters), with widths
// that are not multiples of the 16-row chunks. The models beyond the seed
// (every activation, cost and optimizer) go through the same passes and are
// held to the same rules, and the one-pass optimizer update is held to the
// scalar formula of elementwise.cuh bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "elementwise.cuh"
#include "support/reference.h"
#include "support/test_util.h"

namespace {

struct Trained {
  std::vector<float> params, grads, costs, out;
  float eval_cost = 0, accuracy = 0;
};

// Trains 3 epochs and evaluates, on a CPU context with `threads` threads.
Trained train(int threads) {
  Trained r;
  tu::Ctx ctx;
  tu::Net net;
  tu::Data data;
  const int n = 900, sizes[] = {37, 530, 460, 7};
  auto X = ref::random_vector((size_t)n * 37, 11);
  auto Y = ref::random_vector((size_t)n * 7, 12, 0, 1);
  EXPECT_EQ(BP_OK, bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx));
  EXPECT_EQ(BP_OK, bp_context_set_threads(ctx, threads));
  EXPECT_EQ(threads, bp_context_get_threads(ctx));
  EXPECT_EQ(BP_OK, bp_network_create(ctx, 4, sizes, 5, &net.net));
  EXPECT_EQ(BP_OK, bp_dataset_create(ctx, n, 37, 7, X.data(), Y.data(), &data.data));
  for (int e = 0; e < 3; ++e) {
    float c = 0;
    EXPECT_EQ(BP_OK, bp_train_epoch(net, data, 300, 2.0f, 100 + e, &c));
    r.costs.push_back(c);
  }
  EXPECT_EQ(BP_OK, bp_evaluate(net, data, &r.eval_cost, &r.accuracy));
  // One more backward on 600 examples: the gradients themselves.
  float cost = 0;
  EXPECT_EQ(BP_OK, bp_backward(net, X.data(), Y.data(), 600, &cost));
  r.costs.push_back(cost);
  for (int l = 0; l < 3; ++l) {
    std::vector<float> dW((size_t)sizes[l] * sizes[l + 1]), db(sizes[l + 1]);
    EXPECT_EQ(BP_OK, bp_network_get_gradient(net, l, dW.data(), db.data()));
    r.grads.insert(r.grads.end(), dW.begin(), dW.end());
    r.grads.insert(r.grads.end(), db.begin(), db.end());
  }
  r.out.resize((size_t)600 * 7);
  EXPECT_EQ(BP_OK, bp_forward(net, X.data(), 600, r.out.data()));
  r.params = tu::all_params(net);
  return r;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  // Empty vectors (an optimizer without state) may have no data pointer, and
  // memcmp must not be given NULL even for 0 bytes.
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Relative to the largest magnitude of the two vectors, so near-zero entries
// do not dominate.
void expect_close(const std::vector<float> &a, const std::vector<float> &b, float tol,
                  const char *what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float scale = 1e-12f;
  for (float x : a) scale = std::fmax(scale, std::fabs(x));
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= tol * scale)) ++bad;
  EXPECT_EQ(0u, bad) << what << ": " << bad << " of " << a.size() << " differ by more than "
                     << tol << " x " << scale;
}

TEST(CpuThreads, SameSeedAndThreadCountGiveTheSameBits) {
  for (int threads : {1, 2, 3}) {
    Trained a = train(threads), b = train(threads);
    EXPECT_TRUE(same_bits(a.params, b.params)) << threads << " threads";
    EXPECT_TRUE(same_bits(a.grads, b.grads)) << threads << " threads";
    EXPECT_TRUE(same_bits(a.costs, b.costs)) << threads << " threads";
    EXPECT_TRUE(same_bits(a.out, b.out)) << threads << " threads";
    EXPECT_EQ(a.eval_cost, b.eval_cost);
  }
}

TEST(CpuThreads, OneAndTwoThreadsAgree) {
  Trained one = train(1), two = train(2);
  // The gradients guard against passing trivially.
  float largest = 0;
  for (float g : one.grads) largest = std::fmax(largest, std::fabs(g));
  EXPECT_GT(largest, 1e-4f);
  expect_close(one.grads, two.grads, 1e-4f, "gradients");
  expect_close(one.params, two.params, 1e-4f, "parameters");
  expect_close(one.out, two.out, 1e-4f, "outputs");
  expect_close(one.costs, two.costs, 1e-4f, "costs");
  EXPECT_NEAR(one.eval_cost, two.eval_cost, 1e-4f * one.eval_cost);
}

// A model beyond the seed, wide enough that every pass threads: hidden passes
// over 530 x 300 and 460 x 300, the output's row pass over 230 x 300 (> 16
// rows, >= PAR_MIN), the update over 370,430 parameters (>= PAR_MIN_COPY).
struct Model {
  bp_activation hidden, output;
  bp_cost cost;
  bp_optimizer_config opt;
};

const int kModelSizes[] = {37, 530, 460, 230};

bp_status make_model(bp_context *ctx, const Model &m, uint64_t seed, bp_network **out) {
  const bp_activation acts[] = {m.hidden, m.hidden, m.output};
  bp_network_desc desc;
  bp_network_desc_init(&desc, 4, kModelSizes, seed);
  desc.activations = acts;
  desc.cost = m.cost;
  desc.optimizer = m.opt.kind;
  bp_status st = bp_network_create_ex(ctx, &desc, out);
  return st == BP_OK ? bp_network_set_optimizer(*out, &m.opt) : st;
}

// Probability rows for a softmax output, values in [0, 1] otherwise.
std::vector<float> model_targets(const Model &m, int n, uint64_t seed) {
  const int w = kModelSizes[3];
  auto Y = ref::random_vector((size_t)n * w, seed, 0.05f, 1.0f);
  if (m.output == BP_ACTIVATION_SOFTMAX)
    for (int e = 0; e < n; ++e) {
      float s = 0;
      for (int j = 0; j < w; ++j) s += Y[(size_t)e * w + j];
      for (int j = 0; j < w; ++j) Y[(size_t)e * w + j] /= s;
    }
  return Y;
}

std::vector<Model> models() {
  std::vector<Model> out;
  bp_optimizer_config c;
  bp_optimizer_config_init(&c, BP_OPTIMIZER_ADAMW);
  out.push_back({BP_ACTIVATION_RELU, BP_ACTIVATION_SOFTMAX, BP_COST_CROSS_ENTROPY, c});
  bp_optimizer_config_init(&c, BP_OPTIMIZER_SGD);
  c.momentum = 0.9;
  c.nesterov = 1;
  c.weight_decay = 1e-2;
  out.push_back({BP_ACTIVATION_TANH, BP_ACTIVATION_SIGMOID, BP_COST_CROSS_ENTROPY, c});
  bp_optimizer_config_init(&c, BP_OPTIMIZER_ADAM);
  c.weight_decay = 1e-2;
  out.push_back({BP_ACTIVATION_SIGMOID, BP_ACTIVATION_SOFTMAX, BP_COST_QUADRATIC, c});
  bp_optimizer_config_init(&c, BP_OPTIMIZER_RPROP);
  out.push_back({BP_ACTIVATION_IDENTITY, BP_ACTIVATION_TANH, BP_COST_QUADRATIC, c});
  bp_optimizer_config_init(&c, BP_OPTIMIZER_SGD);
  c.weight_decay = 5e-2;
  out.push_back({BP_ACTIVATION_RELU, BP_ACTIVATION_RELU, BP_COST_QUADRATIC, c});
  return out;
}

// Two epochs of 3 batches of 300, then an evaluation and the output of 600.
Trained train_model(const Model &m, int threads) {
  Trained r;
  tu::Ctx ctx;
  tu::Net net;
  tu::Data data;
  const int n = 900, in = kModelSizes[0], w = kModelSizes[3];
  auto X = ref::random_vector((size_t)n * in, 21);
  auto Y = model_targets(m, n, 22);
  EXPECT_EQ(BP_OK, bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx));
  EXPECT_EQ(BP_OK, bp_context_set_threads(ctx, threads));
  EXPECT_EQ(BP_OK, make_model(ctx, m, 5, &net.net)) << bp_context_last_error(ctx);
  EXPECT_EQ(BP_OK, bp_dataset_create(ctx, n, in, w, X.data(), Y.data(), &data.data));
  for (int e = 0; e < 2; ++e) {
    float c = 0;
    EXPECT_EQ(BP_OK, bp_train_epoch(net, data, 300, 1e-3f, 100 + e, &c));
    r.costs.push_back(c);
  }
  EXPECT_EQ(BP_OK, bp_evaluate(net, data, &r.eval_cost, &r.accuracy));
  for (int l = 0; l < 3; ++l) {
    std::vector<float> dW((size_t)kModelSizes[l] * kModelSizes[l + 1]), db(kModelSizes[l + 1]);
    EXPECT_EQ(BP_OK, bp_network_get_gradient(net, l, dW.data(), db.data()));
    r.grads.insert(r.grads.end(), dW.begin(), dW.end());
    r.grads.insert(r.grads.end(), db.begin(), db.end());
  }
  r.out.resize((size_t)600 * w);
  EXPECT_EQ(BP_OK, bp_forward(net, X.data(), 600, r.out.data()));
  r.params = tu::all_params(net);
  return r;
}

TEST(CpuThreads, EveryModelGivesTheSameBitsPerThreadCountAndAgreesAcrossThem) {
  for (const Model &m : models()) {
    SCOPED_TRACE(testing::Message() << "hidden " << m.hidden << " output " << m.output << " cost "
                                    << m.cost << " optimizer " << m.opt.kind);
    Trained one = train_model(m, 1);
    for (int threads : {1, 2, 3}) {
      Trained a = threads == 1 ? one : train_model(m, threads), b = train_model(m, threads);
      EXPECT_TRUE(same_bits(a.params, b.params)) << threads << " threads";
      EXPECT_TRUE(same_bits(a.grads, b.grads)) << threads << " threads";
      EXPECT_TRUE(same_bits(a.costs, b.costs)) << threads << " threads";
      EXPECT_TRUE(same_bits(a.out, b.out)) << threads << " threads";
      EXPECT_EQ(a.eval_cost, b.eval_cost) << threads << " threads";
      if (threads > 1) {
        expect_close(one.grads, a.grads, 1e-4f, "gradients");
        expect_close(one.params, a.params, 1e-4f, "parameters");
        expect_close(one.out, a.out, 1e-4f, "outputs");
        EXPECT_NEAR(one.eval_cost, a.eval_cost, 1e-4f * std::fabs(one.eval_cost));
      }
    }
    float largest = 0;
    for (float g : one.grads) largest = std::fmax(largest, std::fabs(g));
    EXPECT_GT(largest, 1e-6f);  // not trivially equal
    EXPECT_TRUE(std::isfinite(one.eval_cost));
  }
}

// src/api/optimizer.c's bp_optimizer_hyper, from the public config.
bp_opt_hyper hyper_of(const bp_optimizer_config &c) {
  bp_opt_hyper h;
  std::memset(&h, 0, sizeof h);
  h.kind = (int)c.kind;
  h.nesterov = c.nesterov != 0;
  h.momentum = (float)c.momentum;
  h.weight_decay = (float)c.weight_decay;
  h.weight_decay_d = c.weight_decay;
  h.one_minus_beta1 = (float)(1.0 - c.beta1);
  h.beta2 = (float)c.beta2;
  h.one_minus_beta2 = (float)(1.0 - c.beta2);
  h.eps = (float)c.eps;
  h.beta1_d = c.beta1;
  h.beta2_d = c.beta2;
  h.eta_minus = (float)c.eta_minus;
  h.eta_plus = (float)c.eta_plus;
  h.step_min = (float)c.step_min;
  h.step_max = (float)c.step_max;
  return h;
}

// The update pass (new values into spare buffers, threaded, vectorized,
// then swapped) against bp_opt_update applied element by element to the
// parameters, gradients and state read through the API: the same bits, on
// one thread and on two, for every optimizer, over several steps.
TEST(CpuThreads, TheOptimizerPassIsTheScalarFormulaBitForBit) {
  const float lr = 1e-3f;
  for (const Model &m : models()) {
    for (int threads : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "optimizer " << m.opt.kind << " momentum "
                                      << m.opt.momentum << " wd " << m.opt.weight_decay << ", "
                                      << threads << " threads");
      tu::Ctx ctx;
      tu::Net net;
      ASSERT_EQ(BP_OK, bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx));
      ASSERT_EQ(BP_OK, bp_context_set_threads(ctx, threads));
      ASSERT_EQ(BP_OK, make_model(ctx, m, 9, &net.net)) << bp_context_last_error(ctx);
      const int n = 64;
      auto X = ref::random_vector((size_t)n * kModelSizes[0], 31);
      auto Y = model_targets(m, n, 32);
      const size_t np = bp_network_parameter_count(net);
      const int slots = bp_network_optimizer_state_slots(net);
      const bp_opt_hyper h = hyper_of(m.opt);
      size_t changed = 0;
      for (int step = 0; step < 3; ++step) {
        std::vector<float> p = tu::all_params(net), s((size_t)slots * np);
        int64_t t = -1;
        ASSERT_EQ(BP_OK, bp_network_get_optimizer_state(net, s.data(), s.size(), &t));
        float cost = 0;
        ASSERT_EQ(BP_OK, bp_train_batch(net, X.data(), Y.data(), n, lr, &cost));
        std::vector<float> g;
        for (int l = 0; l < 3; ++l) {
          std::vector<float> dW((size_t)kModelSizes[l] * kModelSizes[l + 1]),
              db(kModelSizes[l + 1]);
          ASSERT_EQ(BP_OK, bp_network_get_gradient(net, l, dW.data(), db.data()));
          g.insert(g.end(), dW.begin(), dW.end());
          g.insert(g.end(), db.begin(), db.end());
        }
        const bp_opt_step st = bp_opt_step_of(&h, lr, (long long)t);
        std::vector<float> want_p(np), want_s(s.size());
        for (size_t i = 0; i < np; ++i) {
          float a = slots > 0 ? s[i] : 0.0f, b = slots > 1 ? s[np + i] : 0.0f;
          want_p[i] = bp_opt_update(&h, &st, p[i], g[i], &a, &b);
          if (slots > 0) want_s[i] = a;
          if (slots > 1) want_s[np + i] = b;
        }
        std::vector<float> got_p = tu::all_params(net), got_s(s.size());
        int64_t t2 = -1;
        ASSERT_EQ(BP_OK, bp_network_get_optimizer_state(net, got_s.data(), got_s.size(), &t2));
        EXPECT_EQ(t + 1, t2);
        EXPECT_TRUE(same_bits(want_p, got_p)) << "parameters, step " << step;
        EXPECT_TRUE(same_bits(want_s, got_s)) << "state, step " << step;
        for (size_t i = 0; i < np; ++i) changed += got_p[i] != p[i];
      }
      EXPECT_GT(changed, np);  // the updates moved most parameters
    }
  }
}

TEST(CpuThreads, SetAndGet) {
  tu::Ctx ctx;
  ASSERT_EQ(BP_OK, bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx));
  EXPECT_GE(bp_context_get_threads(ctx), 1);  // OpenMP's default, or 1 without OpenMP
  EXPECT_EQ(BP_ERR_INVALID_ARGUMENT, bp_context_set_threads(ctx, -1));
  EXPECT_EQ(BP_ERR_INVALID_ARGUMENT, bp_context_set_threads(nullptr, 1));
  EXPECT_EQ(0, bp_context_get_threads(nullptr));
  EXPECT_EQ(BP_OK, bp_context_set_threads(ctx, 3));
  EXPECT_EQ(3, bp_context_get_threads(ctx));
  EXPECT_EQ(BP_OK, bp_context_set_threads(ctx, 0));
  EXPECT_GE(bp_context_get_threads(ctx), 1);
  if (bp_cuda_device_count() > 0) {
    tu::Ctx gpu;
    ASSERT_EQ(BP_OK, bp_context_create(BP_BACKEND_CUDA, 0, &gpu.ctx));
    EXPECT_EQ(BP_OK, bp_context_set_threads(gpu, 4));  // accepted, ignored
    EXPECT_EQ(0, bp_context_get_threads(gpu));
  }
}

}  // namespace
