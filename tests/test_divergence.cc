// Divergence: a batch whose cost is not finite, or whose update would make a
// weight non-finite, is not applied. The call says BP_ERR_NUMERIC, the
// weights stay finite and exactly as they were, and training goes on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "support/test_util.h"

namespace {

class Divergence : public testing::TestWithParam<bp_backend> {};

bool all_finite(const std::vector<float> &v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// One weight, one example: z = w x + b = 0 at w = b = 0, so a = 0.5 and
// with y = 1 the gradient is dC/dw = 2 (a - y) sigma'(0) x = -0.25 x. At
// x = 100 that is -25: a learning rate of 3e37 would move w to 7.5e38,
// past FLT_MAX.
TEST_P(Divergence, AnUpdateThatOverflowsIsRefusedAndChangesNothing) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {1, 1};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 2, sizes, 3, &net.net), BP_OK);
  const float w = 0.0f, b = 0.0f, x = 100.0f, y = 1.0f;
  ASSERT_EQ(bp_network_set_layer(net, 0, &w, &b), BP_OK);
  float cost = NAN;
  EXPECT_EQ(bp_train_batch(net, &x, &y, 1, 3e37f, &cost), BP_ERR_NUMERIC);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("non-finite"), std::string::npos)
      << bp_context_last_error(ctx);
  EXPECT_FLOAT_EQ(cost, 0.25f) << "the cost before the refused step is reported";
  float dw = 0;
  ASSERT_EQ(bp_network_get_gradient(net, 0, &dw, nullptr), BP_OK);
  EXPECT_FLOAT_EQ(dw, -25.0f);
  auto params = tu::all_params(net);
  EXPECT_EQ(params, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(bp_sgd_step(net, 3e37f), BP_ERR_NUMERIC);
  EXPECT_EQ(tu::all_params(net), params);

  // In an epoch: the same refusal, decided on the device, counted as a skip.
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, 1, 1, 1, &x, &y, &data.data), BP_OK);
  float mean = NAN;
  EXPECT_EQ(bp_train_epoch(net, data, 1, 3e37f, 1, &mean), BP_ERR_NUMERIC);
  EXPECT_EQ(tu::all_params(net), params);
  EXPECT_FLOAT_EQ(mean, 0.25f);
  // A sane rate still trains the same network afterwards.
  EXPECT_EQ(bp_train_epoch(net, data, 1, 0.01f, 2, &mean), BP_OK);
  EXPECT_NE(tu::all_params(net), params);
}

// Inputs at the edge of float range: w x overflows to an infinite z. The
// sigmoid saturates (a = 1, sigma' = 0), so the cost stays finite and the
// step is taken; should a BLAS sum the overflowing products into a NaN
// instead, the batch must be refused. Either way no weight may become
// non-finite, in a single step or in an epoch.
TEST_P(Divergence, OverflowingInputsNeverMakeWeightsNonFinite) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {2, 3, 1};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 3, &net.net), BP_OK);
  const float W[] = {2.0f, -2.0f, 1.0f, 1.0f, -3.0f, 0.5f}, b[] = {0.1f, 0.0f, -0.2f};
  ASSERT_EQ(bp_network_set_layer(net, 0, W, b), BP_OK);
  const float X[] = {3e38f, 3e38f, 0.5f, -0.5f, -3e38f, 1e38f}, Y[] = {1.0f, 0.0f, 1.0f};
  const auto before = tu::all_params(net);
  float cost = 0;
  bp_status st = bp_train_batch(net, X, Y, 3, 0.5f, &cost);
  ASSERT_TRUE(st == BP_OK || st == BP_ERR_NUMERIC) << bp_status_string(st);
  if (st == BP_OK) {
    EXPECT_TRUE(std::isfinite(cost));
  } else {
    EXPECT_EQ(tu::all_params(net), before) << "a refused batch changes nothing";
  }
  EXPECT_TRUE(all_finite(tu::all_params(net)));

  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, 3, 2, 1, X, Y, &data.data), BP_OK);
  for (int e = 0; e < 5; ++e) {
    float mean = NAN;
    st = bp_train_epoch(net, data, 1, 1e30f, 7 + e, &mean);
    ASSERT_TRUE(st == BP_OK || st == BP_ERR_NUMERIC) << bp_status_string(st);
    EXPECT_TRUE(all_finite(tu::all_params(net))) << "epoch " << e;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Divergence, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace
