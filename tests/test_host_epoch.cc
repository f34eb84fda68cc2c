// bp_train_epoch_host: an epoch read from host arrays batch by batch gives
// bit-identical weights, mean cost and status to bp_train_epoch on a data
// set of the same examples with the same shuffle seed, on every backend;
// NaN/Inf and bad arguments change nothing; failed allocations leave the
// network as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

class HostEpoch : public testing::TestWithParam<bp_backend> {};

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Case {
  std::vector<int> sizes;
  int n;
  std::vector<int> batches;  // one epoch per entry, in order
};

// Several epochs in a row (each with its own seed and batch size) through
// both calls on two networks from the same seed; after each epoch the
// statuses, the mean costs and every weight agree bit for bit.
TEST_P(HostEpoch, MatchesTrainEpochBitForBit) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const std::vector<Case> cases = {
      // last batch partial (103 = 6 * 16 + 7), then batch 1, then batch > n,
      // then batch == n, then partial again after the workspace grew
      {{5, 7, 3}, 103, {16, 1, 500, 103, 16}},
      {{37, 33, 65, 10}, 300, {64, 7, 300}},
      {{1, 1, 1}, 9, {2, 4}},
      {{64, 128, 1}, 1000, {100, 333}},
  };
  for (const Case &c : cases) {
    const uint64_t seed = tu::fresh_seed();
    const int L = (int)c.sizes.size();
    const int s0 = c.sizes[0], sL = c.sizes.back();
    SCOPED_TRACE(testing::Message() << "sizes " << s0 << "->" << sL << " (" << L
                                    << " sizes), n " << c.n << ", seed " << seed);
    auto X = ref::random_vector((size_t)c.n * s0, seed + 1);
    auto Y = ref::random_vector((size_t)c.n * sL, seed + 2, 0.0f, 1.0f);
    tu::Net a, b;
    ASSERT_EQ(bp_network_create(ctx, L, c.sizes.data(), seed, &a.net), BP_OK);
    ASSERT_EQ(bp_network_create(ctx, L, c.sizes.data(), seed, &b.net), BP_OK);
    tu::Data data;
    ASSERT_EQ(bp_dataset_create(ctx, c.n, s0, sL, X.data(), Y.data(), &data.data), BP_OK);
    const std::vector<float> initial = tu::all_params(a);
    for (size_t e = 0; e < c.batches.size(); ++e) {
      const int batch = c.batches[e];
      SCOPED_TRACE(testing::Message() << "epoch " << e << ", batch " << batch);
      float ca = NAN, cb = NAN;
      const bp_status sa = bp_train_epoch(a, data, batch, 0.5f, seed + 10 + e, &ca);
      const bp_status sb = bp_train_epoch_host(b, X.data(), Y.data(), c.n, batch, 0.5f,
                                               seed + 10 + e, &cb);
      ASSERT_EQ(sa, BP_OK) << bp_context_last_error(ctx);
      ASSERT_EQ(sb, BP_OK) << bp_context_last_error(ctx);
      EXPECT_TRUE(std::isfinite(ca));
      EXPECT_GT(ca, 0.0f);
      EXPECT_TRUE(same_bits(ca, cb)) << "mean cost " << ca << " vs " << cb;
      EXPECT_TRUE(same_bits(tu::all_params(a), tu::all_params(b))) << "weights differ";
    }
    EXPECT_FALSE(same_bits(initial, tu::all_params(b))) << "training changed nothing";
  }
}

// The skipping rules are those of bp_train_epoch. One weight and one bias,
// both 0 (as in test_divergence.cc): an example (x = 100, y = 1) has the
// gradient dC/dw = -25, so at a learning rate of 3e37 its update would pass
// FLT_MAX and is skipped; an example with y = 0.5 has a = y and a zero
// gradient at any x. In batches of 1 every big example is skipped, the call
// reports BP_ERR_NUMERIC after the epoch, and both calls leave the same
// finite weights and the same mean cost.
TEST_P(HostEpoch, SkipsBatchesAsTrainEpochDoes) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {1, 1};
  const int n = 24;
  std::vector<float> X = ref::random_vector(n, seed + 1), Y(n, 0.5f);
  for (int k = 0; k < n; k += 3) {
    X[k] = 100.0f;
    Y[k] = 1.0f;
  }
  tu::Net a, b;
  ASSERT_EQ(bp_network_create(ctx, 2, sizes, seed, &a.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 2, sizes, seed, &b.net), BP_OK);
  const float zero = 0.0f;
  ASSERT_EQ(bp_network_set_layer(a, 0, &zero, &zero), BP_OK);
  ASSERT_EQ(bp_network_set_layer(b, 0, &zero, &zero), BP_OK);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, 1, 1, X.data(), Y.data(), &data.data), BP_OK);
  float ca = NAN, cb = NAN;
  const float lr = 3e37f;
  EXPECT_EQ(bp_train_epoch(a, data, 1, lr, seed, &ca), BP_ERR_NUMERIC);
  EXPECT_EQ(bp_train_epoch_host(b, X.data(), Y.data(), n, 1, lr, seed, &cb), BP_ERR_NUMERIC);
  const std::string msg = bp_context_last_error(ctx);
  EXPECT_NE(msg.find("bp_train_epoch_host"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8 batch(es)"), std::string::npos) << msg;
  EXPECT_TRUE(same_bits(ca, cb)) << ca << " vs " << cb;
  EXPECT_NEAR(cb, 8 * 0.25f / n, 1e-6f) << "each big example costs 0.25, the others 0";
  const auto pa = tu::all_params(a), pb = tu::all_params(b);
  EXPECT_TRUE(same_bits(pa, pb));
  for (float v : pb) EXPECT_TRUE(std::isfinite(v));
}

// NaN or Inf anywhere in X or Y: BP_ERR_NUMERIC before anything is trained.
TEST_P(HostEpoch, NonFiniteDataChangesNothing) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {4, 5, 2};
  const int n = 40;
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  const std::vector<float> before = tu::all_params(net);
  const float bad_values[] = {NAN, INFINITY, -INFINITY};
  for (int which = 0; which < 2; ++which) {
    for (float v : bad_values) {
      auto X = ref::random_vector((size_t)n * 4, seed + 1);
      auto Y = ref::random_vector((size_t)n * 2, seed + 2, 0.0f, 1.0f);
      // The last element, so a scan that stops early would miss it.
      if (which == 0)
        X.back() = v;
      else
        Y.back() = v;
      float cost = 123.0f;
      EXPECT_EQ(bp_train_epoch_host(net, X.data(), Y.data(), n, 8, 0.5f, seed, &cost),
                BP_ERR_NUMERIC);
      const std::string msg = bp_context_last_error(ctx);
      EXPECT_NE(msg.find(which == 0 ? "X holds" : "Y holds"), std::string::npos) << msg;
      EXPECT_NE(msg.find("bp_train_epoch_host"), std::string::npos) << msg;
      EXPECT_EQ(cost, 123.0f) << "mean_cost written on a refused call";
      EXPECT_TRUE(same_bits(before, tu::all_params(net)));
    }
  }
}

TEST_P(HostEpoch, BadArgumentsAreRefused) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {3, 4, 2};
  const int n = 10;
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  auto X = ref::random_vector((size_t)n * 3, seed + 1);
  auto Y = ref::random_vector((size_t)n * 2, seed + 2, 0.0f, 1.0f);
  const std::vector<float> before = tu::all_params(net);
  const bp_status bad = BP_ERR_INVALID_ARGUMENT;
  float cost = 0;
  EXPECT_EQ(bp_train_epoch_host(nullptr, X.data(), Y.data(), n, 4, 0.5f, 1, &cost), bad);
  struct Try {
    const float *X, *Y;
    int n, batch;
    float lr;
    const char *what;  // expected in the message
  } tries[] = {
      {nullptr, Y.data(), n, 4, 0.5f, "X or Y is NULL"},
      {X.data(), nullptr, n, 4, 0.5f, "X or Y is NULL"},
      {X.data(), Y.data(), 0, 4, 0.5f, "n = 0"},
      {X.data(), Y.data(), -3, 4, 0.5f, "n = -3"},
      {X.data(), Y.data(), (1 << 28) + 1, 4, 0.5f, "out of range"},  // checked before reading
      {X.data(), Y.data(), n, 0, 0.5f, "batch_size = 0"},
      {X.data(), Y.data(), n, -1, 0.5f, "batch_size = -1"},
      {X.data(), Y.data(), n, 4, NAN, "learning rate"},
      {X.data(), Y.data(), n, 4, INFINITY, "learning rate"},
  };
  for (const Try &t : tries) {
    SCOPED_TRACE(t.what);
    EXPECT_EQ(bp_train_epoch_host(net, t.X, t.Y, t.n, t.batch, t.lr, 1, &cost), bad);
    const std::string msg = bp_context_last_error(ctx);
    EXPECT_NE(msg.find("bp_train_epoch_host"), std::string::npos) << msg;
    EXPECT_NE(msg.find(t.what), std::string::npos) << msg;
  }
  EXPECT_TRUE(same_bits(before, tu::all_params(net)));
  // mean_cost may be NULL.
  EXPECT_EQ(bp_train_epoch_host(net, X.data(), Y.data(), n, 4, 0.5f, 1, nullptr), BP_OK);
  EXPECT_FALSE(same_bits(before, tu::all_params(net)));
}

// Every allocation the call makes can fail (the workspace; on CUDA also the
// pinned and device staging buffers): each failure is BP_ERR_OUT_OF_MEMORY
// and leaves the weights as they were; once allocations succeed, the epoch
// is the one bp_train_epoch gives.
TEST_P(HostEpoch, FailedAllocationsChangeNothing) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {12, 20, 3};
  const int n = 70;
  auto X = ref::random_vector((size_t)n * 12, seed + 1);
  auto Y = ref::random_vector((size_t)n * 3, seed + 2, 0.0f, 1.0f);
  tu::Net net, ref_net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &ref_net.net), BP_OK);
  const std::vector<float> before = tu::all_params(net);
  int failures = 0;
  float cost = NAN;
  bp_status st = BP_ERR_OUT_OF_MEMORY;
  for (long nth = 1; nth < 200 && st != BP_OK; ++nth) {
    ASSERT_EQ(bp_debug_fail_allocation(ctx, nth), BP_OK);
    st = bp_train_epoch_host(net, X.data(), Y.data(), n, 16, 0.5f, seed, &cost);
    if (st != BP_OK) {
      ++failures;
      EXPECT_EQ(st, BP_ERR_OUT_OF_MEMORY) << "allocation " << nth << ": "
                                          << bp_context_last_error(ctx);
      EXPECT_TRUE(same_bits(before, tu::all_params(net))) << "allocation " << nth;
    }
  }
  ASSERT_EQ(bp_debug_fail_allocation(ctx, 0), BP_OK);
  ASSERT_EQ(st, BP_OK) << bp_context_last_error(ctx);
  EXPECT_GE(failures, 1) << "the call allocated nothing through the test hook";
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, 12, 3, X.data(), Y.data(), &data.data), BP_OK);
  float ref_cost = NAN;
  ASSERT_EQ(bp_train_epoch(ref_net, data, 16, 0.5f, seed, &ref_cost), BP_OK);
  EXPECT_TRUE(same_bits(ref_cost, cost));
  EXPECT_TRUE(same_bits(tu::all_params(ref_net), tu::all_params(net)));
}

INSTANTIATE_TEST_SUITE_P(Backends, HostEpoch, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace
