// The CPU backend's one thread pool (bp_context_set_threads): the thread
// count changes how the work is split, never the result beyond the BLAS's
// own summation order. The same seed and the same thread count give the same
// bits; one and two threads agree to float tolerance. The shapes are large
// enough that the threaded passes run on several threads (hidden passes over
// PAR_MIN elements, the update over PAR_MIN_COPY parameters), with widths
// that are not multiples of the 16-row chunks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

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
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
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
