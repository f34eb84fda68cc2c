// Training works and is reproducible: XOR, a synthetic classification task,
// epochs on data sets in backend memory, and bit-identical reruns.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

class Training : public testing::TestWithParam<bp_backend> {};

TEST_P(Training, XorReachesNearZeroCost) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {2, 4, 1};
  const float X[] = {0, 0, 0, 1, 1, 0, 1, 1}, Y[] = {0, 1, 1, 0};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 1234, &net.net), BP_OK);
  float first = 0, cost = 0;
  ASSERT_EQ(bp_backward(net, X, Y, 4, &first), BP_OK);
  for (int i = 0; i < 4000; ++i) ASSERT_EQ(bp_train_batch(net, X, Y, 4, 4.0f, &cost), BP_OK);
  float out[4];
  ASSERT_EQ(bp_forward(net, X, 4, out), BP_OK);
  EXPECT_GT(first, 0.2f);
  EXPECT_LT(cost, 0.01f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], Y[i], 0.1f) << "example " << i;
}

// Three Gaussian blobs in 8 dimensions, one-hot targets.
// The centres come from seed, the points from seed + point_stream, so a test
// set shares the centres but none of the points.
void make_blobs(int n, uint64_t seed, std::vector<float> &X, std::vector<float> &Y,
                uint64_t point_stream = 0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> noise(0.0f, 0.35f);
  const int d = 8, k = 3;
  // Centres at least 2.0 apart (about 3 noise widths from each to the
  // midpoint), so the task is separable but for a fraction of a percent.
  std::vector<float> centers(k * d);
  std::uniform_real_distribution<float> c(-1.0f, 1.0f);
  for (bool apart = false; !apart;) {
    for (auto &v : centers) v = c(gen);
    apart = true;
    for (int p = 0; p < k; ++p)
      for (int q = p + 1; q < k; ++q) {
        float d2 = 0;
        for (int j = 0; j < d; ++j)
          d2 +=
              (centers[p * d + j] - centers[q * d + j]) * (centers[p * d + j] - centers[q * d + j]);
        if (d2 < 4.0f) apart = false;
      }
  }
  gen.seed(seed + 1000003 * (point_stream + 1));
  X.assign((size_t)n * d, 0);
  Y.assign((size_t)n * k, 0);
  for (int e = 0; e < n; ++e) {
    int cls = (int)(gen() % k);
    for (int j = 0; j < d; ++j) X[(size_t)e * d + j] = centers[cls * d + j] + noise(gen);
    Y[(size_t)e * k + cls] = 1.0f;
  }
}

TEST_P(Training, SyntheticClassificationReachesFullAccuracy) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::vector<float> X, Y, Xt, Yt;
  make_blobs(3000, seed, X, Y);
  make_blobs(600, seed, Xt, Yt, 1);  // same centres, other points
  tu::Data train, test;
  ASSERT_EQ(bp_dataset_create(ctx, 3000, 8, 3, X.data(), Y.data(), &train.data), BP_OK);
  ASSERT_EQ(bp_dataset_create(ctx, 600, 8, 3, Xt.data(), Yt.data(), &test.data), BP_OK);
  const int sizes[] = {8, 16, 3};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  float cost0 = 0, acc0 = 0;
  ASSERT_EQ(bp_evaluate(net, test, &cost0, &acc0), BP_OK);
  float cost = 0, acc = 0, train_cost = 0;
  for (int epoch = 0; epoch < 30; ++epoch)
    ASSERT_EQ(bp_train_epoch(net, train, 32, 2.0f, seed + epoch, &train_cost), BP_OK);
  ASSERT_EQ(bp_evaluate(net, test, &cost, &acc), BP_OK);
  EXPECT_LT(cost, cost0);
  EXPECT_LT(train_cost, 0.1f);
  // Blobs 0.35 wide around centres at least 2.0 apart: separable but for a
  // few points drawn into the wrong cloud.
  EXPECT_GE(acc, 0.97f) << "accuracy before training " << acc0;
}

TEST_P(Training, EpochCostMatchesTheBatchesItRan) {
  // With batch = data set size, one epoch is one step on every example, in
  // permuted order; its reported cost is the cost before the step.
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int n = 50, sizes[] = {5, 6, 2};
  auto X = ref::random_vector(n * 5, seed);
  auto Y = ref::random_vector(n * 2, seed + 1, 0.0f, 1.0f);
  tu::Net a, b;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &a.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &b.net), BP_OK);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, 5, 2, X.data(), Y.data(), &data.data), BP_OK);
  float epoch_cost = 0, batch_cost = 0, eval_cost = 0;
  ASSERT_EQ(bp_evaluate(a, data, &eval_cost, nullptr), BP_OK);
  ASSERT_EQ(bp_train_epoch(a, data, n, 0.5f, seed, &epoch_cost), BP_OK);
  ASSERT_EQ(bp_train_batch(b, X.data(), Y.data(), n, 0.5f, &batch_cost), BP_OK);
  EXPECT_LT(ref::rel_err(epoch_cost, batch_cost), 1e-5);
  EXPECT_LT(ref::rel_err(eval_cost, batch_cost), 1e-5);
  auto pa = tu::all_params(a), pb = tu::all_params(b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_NEAR(pa[i], pb[i], 1e-6) << i;
}

TEST_P(Training, EpochStatsCountTheRunningAccuracy) {
  // bp_epoch_stats.correct counts each batch as its own step's forward pass
  // classified it. With learning rate 0 no step changes the weights, so the
  // running count must equal bp_evaluate's on the same data exactly; with a
  // real rate it differs from the final weights' and stays within 0..n.
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::vector<float> X, Y;
  make_blobs(600, seed, X, Y);
  const int sizes[] = {8, 16, 3};
  tu::Net net;
  tu::Data data;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  ASSERT_EQ(bp_dataset_create(ctx, 600, 8, 3, X.data(), Y.data(), &data.data), BP_OK);
  float acc = -1, cost = 0;
  ASSERT_EQ(bp_evaluate(net, data, nullptr, &acc), BP_OK);
  ASSERT_EQ(bp_train_epoch(net, data, 64, 0.0f, seed, &cost), BP_OK);
  bp_epoch_stats es;
  ASSERT_EQ(bp_network_last_epoch_stats(net, &es, sizeof es), BP_OK);
  EXPECT_EQ(es.examples, 600);
  EXPECT_EQ(es.correct, std::llround(acc * 600.0)) << "accuracy " << acc;
  for (int e = 0; e < 3; ++e) ASSERT_EQ(bp_train_epoch(net, data, 32, 1.0f, seed + e, &cost), BP_OK);
  ASSERT_EQ(bp_network_last_epoch_stats(net, &es, sizeof es), BP_OK);
  EXPECT_EQ(es.examples, 600);
  EXPECT_GT(es.correct, 600 / 3) << "blobs are separable: better than chance after 4 epochs";
  EXPECT_LE(es.correct, 600);
}

TEST_P(Training, SameSeedGivesBitIdenticalResults) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::vector<float> X, Y;
  make_blobs(1000, seed, X, Y);
  const int sizes[] = {8, 32, 16, 3};
  auto run = [&](std::vector<float> &params, std::vector<float> &costs) {
    tu::Net net;
    tu::Data data;
    ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &net.net), BP_OK);
    ASSERT_EQ(bp_dataset_create(ctx, 1000, 8, 3, X.data(), Y.data(), &data.data), BP_OK);
    for (int e = 0; e < 3; ++e) {
      float c = 0;
      ASSERT_EQ(bp_train_epoch(net, data, 64, 1.0f, seed ^ (uint64_t)e, &c), BP_OK);
      costs.push_back(c);
    }
    params = tu::all_params(net);
  };
  std::vector<float> p1, p2, c1, c2;
  run(p1, c1);
  run(p2, c2);
  ASSERT_EQ(p1.size(), p2.size());
  EXPECT_EQ(0, memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)));
  EXPECT_EQ(0, memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
  EXPECT_NE(c1[0], c1[2]) << "training did not move";
}

TEST_P(Training, InitializationIsDeterministicAndScaledByFanIn) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {400, 300, 2};
  tu::Net a, b, c;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 42, &a.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 42, &b.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 43, &c.net), BP_OK);
  auto pa = tu::all_params(a), pb = tu::all_params(b), pc = tu::all_params(c);
  EXPECT_EQ(pa, pb);
  EXPECT_NE(pa, pc);
  std::vector<float> W(400 * 300), bias(300, NAN);
  ASSERT_EQ(bp_network_get_layer(a, 0, W.data(), bias.data()), BP_OK);
  double sum = 0, sq = 0;
  for (float w : W) sum += w, sq += (double)w * w;
  const double mean = sum / W.size(), sd = std::sqrt(sq / W.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 1.0 / std::sqrt(400.0), 0.002);
  for (float x : bias) EXPECT_EQ(x, 0.0f);
}

struct ProgressLog {
  std::vector<int> done;
  std::vector<float> cost;
  int stop_at = -1;  // stop once this many examples are done (-1: never)
};

int record_progress(void *user, int done, int total, float running_cost) {
  auto *log = static_cast<ProgressLog *>(user);
  EXPECT_EQ(total, 1000);
  log->done.push_back(done);
  log->cost.push_back(running_cost);
  return log->stop_at >= 0 && done >= log->stop_at;
}

TEST_P(Training, EpochProgressIsReportedAndCanStopTheEpoch) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::vector<float> X, Y;
  make_blobs(1000, seed, X, Y);
  const int sizes[] = {8, 12, 3};
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, 1000, 8, 3, X.data(), Y.data(), &data.data), BP_OK);
  tu::Net plain, reported, stopped;
  for (tu::Net *n : {&plain, &reported, &stopped})
    ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &n->net), BP_OK);

  // 100 batches of 10, a report every 7 batches and after the last.
  float plain_cost = 0, reported_cost = 0;
  ASSERT_EQ(bp_train_epoch(plain, data, 10, 1.0f, seed, &plain_cost), BP_OK);
  ProgressLog log;
  ASSERT_EQ(bp_train_epoch_ex(reported, data, 10, 1.0f, seed, &reported_cost, record_progress,
                              &log, 7),
            BP_OK);
  std::vector<int> want;
  for (int b = 7; b < 100; b += 7) want.push_back(10 * b);
  want.push_back(1000);
  EXPECT_EQ(log.done, want);
  EXPECT_FLOAT_EQ(log.cost.back(), reported_cost);
  for (float c : log.cost) EXPECT_TRUE(std::isfinite(c) && c > 0.0f);
  // Reporting changes nothing in the training itself.
  EXPECT_EQ(reported_cost, plain_cost);
  EXPECT_EQ(tu::all_params(reported), tu::all_params(plain));

  // The callback stops the epoch after 500 examples: those steps stay.
  ProgressLog stop;
  stop.stop_at = 500;
  const auto before = tu::all_params(stopped);
  float stopped_cost = 0;
  ASSERT_EQ(bp_train_epoch_ex(stopped, data, 10, 1.0f, seed, &stopped_cost, record_progress,
                              &stop, 5),
            BP_OK);
  EXPECT_EQ(stop.done.back(), 500);
  EXPECT_EQ(stop.done.size(), 10u);
  EXPECT_FLOAT_EQ(stopped_cost, stop.cost.back());
  const auto after = tu::all_params(stopped);
  EXPECT_NE(after, before);
  EXPECT_NE(after, tu::all_params(plain));

  EXPECT_EQ(bp_train_epoch_ex(stopped, data, 10, 1.0f, seed, nullptr, record_progress, &stop, 0),
            BP_ERR_INVALID_ARGUMENT);
}

INSTANTIATE_TEST_SUITE_P(Backends, Training, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace
