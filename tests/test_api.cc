// The API's rules: statuses and their strings, versions, NULL handling,
// argument checks, and that a failed call leaves the network usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

TEST(Api, VersionMacrosMatchTheLibrary) {
  EXPECT_EQ(bp_version(), (unsigned)BP_VERSION_NUMBER);
  EXPECT_STREQ(bp_version_string(), BP_VERSION_STRING);
}

TEST(Api, EveryStatusHasItsOwnString) {
  const bp_status all[] = {BP_OK,          BP_ERR_INVALID_ARGUMENT, BP_ERR_OUT_OF_MEMORY,
                           BP_ERR_NO_DEVICE, BP_ERR_DEVICE,         BP_ERR_IO,
                           BP_ERR_FORMAT,  BP_ERR_NUMERIC,          BP_ERR_UNSUPPORTED};
  std::set<std::string> seen;
  for (bp_status s : all) {
    std::string text = bp_status_string(s);
    EXPECT_NE(text, "unknown bp_status") << (int)s;
    EXPECT_TRUE(seen.insert(text).second) << text;
  }
  EXPECT_STREQ(bp_status_string((bp_status)999), "unknown bp_status");
  EXPECT_EQ((int)BP_ERR_UNSUPPORTED, 8);  // values are stable: a test pins them
}

TEST(Api, DestroyAcceptsNull) {
  bp_context_destroy(nullptr);
  bp_network_destroy(nullptr);
  bp_dataset_destroy(nullptr);
  SUCCEED() << "no crash";
}

TEST(Api, ContextCreateChecksArguments) {
  EXPECT_EQ(bp_context_create(BP_BACKEND_CPU, 0, nullptr), BP_ERR_INVALID_ARGUMENT);
  bp_context *ctx = reinterpret_cast<bp_context *>(0x1);
  EXPECT_EQ(bp_context_create(BP_BACKEND_CPU, -1, &ctx), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ctx, nullptr);
  ctx = reinterpret_cast<bp_context *>(0x1);
  EXPECT_EQ(bp_context_create((bp_backend)7, 0, &ctx), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ctx, nullptr);
}

TEST(Api, AutoPicksCudaOnlyWhenADeviceIsUsable) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_AUTO, 0, &ctx.ctx), BP_OK);
  EXPECT_EQ(bp_context_backend(ctx),
            bp_cuda_device_count() > 0 ? BP_BACKEND_CUDA : BP_BACKEND_CPU);
  if (bp_cuda_device_count() == 0) {
    bp_context *cuda = reinterpret_cast<bp_context *>(0x1);
    EXPECT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &cuda), BP_ERR_NO_DEVICE);
    EXPECT_EQ(cuda, nullptr);
  } else {
    bp_context *cuda = reinterpret_cast<bp_context *>(0x1);
    EXPECT_EQ(bp_context_create(BP_BACKEND_CUDA, bp_cuda_device_count(), &cuda),
              BP_ERR_NO_DEVICE);
    EXPECT_EQ(cuda, nullptr);
  }
}

class ApiChecks : public testing::TestWithParam<bp_backend> {};

TEST_P(ApiChecks, NetworkCreateRejectsBadShapes) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  bp_network *net = reinterpret_cast<bp_network *>(0x1);
  const int ok[] = {3, 2};
  EXPECT_EQ(bp_network_create(nullptr, 2, ok, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(net, nullptr);
  EXPECT_EQ(bp_network_create(ctx, 2, ok, 1, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_create(ctx, 2, nullptr, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_create(ctx, 1, ok, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("at least 2 sizes"), std::string::npos);
  const int zero[] = {3, 0, 2}, negative[] = {3, -4, 2};
  EXPECT_EQ(bp_network_create(ctx, 3, zero, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("sizes[1]"), std::string::npos);
  EXPECT_EQ(bp_network_create(ctx, 3, negative, 1, &net), BP_ERR_INVALID_ARGUMENT);
  // Each width allowed, but their products overflow any memory.
  const int huge[] = {1 << 28, 1 << 28, 1 << 28};
  EXPECT_EQ(bp_network_create(ctx, 3, huge, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("too many parameters"),
            std::string::npos);
  const int too_wide[] = {3, (1 << 28) + 1};
  EXPECT_EQ(bp_network_create(ctx, 2, too_wide, 1, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(net, nullptr);
}

TEST_P(ApiChecks, CreateExRejectsWhatThisVersionDoesNotImplement) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {3, 4, 2};
  bp_network_desc desc;
  bp_network_desc_init(&desc, 3, sizes, 5);
  tu::Net net;
  ASSERT_EQ(bp_network_create_ex(ctx, &desc, &net.net), BP_OK);
  EXPECT_EQ(bp_network_parameter_count(net), (size_t)(3 * 4 + 4 + 4 * 2 + 2));
  bp_network *other = nullptr;
  bp_network_desc future = desc;
  future.version = BP_NETWORK_DESC_VERSION + 1;
  EXPECT_EQ(bp_network_create_ex(ctx, &future, &other), BP_ERR_UNSUPPORTED);
  // Values no version knows are argument errors (test_models.cc tests the rest).
  bp_network_desc bad_cost = desc;
  bad_cost.cost = (bp_cost)2;
  EXPECT_EQ(bp_network_create_ex(ctx, &bad_cost, &other), BP_ERR_INVALID_ARGUMENT);
  const bp_activation acts[] = {BP_ACTIVATION_SIGMOID, (bp_activation)5};
  bp_network_desc bad_act = desc;
  bad_act.activations = acts;
  EXPECT_EQ(bp_network_create_ex(ctx, &bad_act, &other), BP_ERR_INVALID_ARGUMENT);
  bp_network_desc bad_opt = desc;
  bad_opt.optimizer = (bp_optimizer)4;
  EXPECT_EQ(bp_network_create_ex(ctx, &bad_opt, &other), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(other, nullptr);
}

TEST_P(ApiChecks, CallsRejectBadArgumentsAndTheNetworkStaysUsable) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {4, 5, 3};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  auto X = ref::random_vector(4 * 6, seed);
  auto Y = ref::random_vector(3 * 6, seed + 1, 0, 1);
  std::vector<float> out(3 * 6), W(20), b(5);
  const auto before = tu::all_params(net);

  EXPECT_EQ(bp_forward(nullptr, X.data(), 6, out.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_forward(net, nullptr, 6, out.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_forward(net, X.data(), 6, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_forward(net, X.data(), 0, out.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_forward(net, X.data(), -3, out.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("n = -3"), std::string::npos);
  EXPECT_EQ(bp_backward(net, X.data(), nullptr, 6, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_train_batch(net, X.data(), Y.data(), 6, NAN, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_sgd_step(net, INFINITY), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_get_layer(net, 2, W.data(), b.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("layer 2"), std::string::npos);
  EXPECT_EQ(bp_network_get_layer(net, -1, W.data(), b.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_set_layer(net, 5, W.data(), b.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_get_gradient(net, 2, W.data(), b.data()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_size(net, 3), -1);
  EXPECT_EQ(tu::all_params(net), before);

  // The same network still trains after all of that.
  float cost = NAN;
  EXPECT_EQ(bp_train_batch(net, X.data(), Y.data(), 6, 0.5f, &cost), BP_OK);
  EXPECT_TRUE(std::isfinite(cost));
  EXPECT_NE(tu::all_params(net), before);
}

TEST_P(ApiChecks, NanOrInfInInputsIsNumericAndChangesNothing) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {4, 5, 3};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  auto X = ref::random_vector(4 * 6, seed);
  auto Y = ref::random_vector(3 * 6, seed + 1, 0, 1);
  // Take one good step first so there are gradients to protect too.
  ASSERT_EQ(bp_backward(net, X.data(), Y.data(), 6, nullptr), BP_OK);
  const auto before = tu::all_params(net);
  std::vector<float> dW0(20);
  ASSERT_EQ(bp_network_get_gradient(net, 0, dW0.data(), nullptr), BP_OK);
  std::vector<float> out(18);

  auto badX = X;
  badX[13] = NAN;
  EXPECT_EQ(bp_train_batch(net, badX.data(), Y.data(), 6, 1.0f, nullptr), BP_ERR_NUMERIC);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("X holds NaN"), std::string::npos);
  EXPECT_EQ(bp_forward(net, badX.data(), 6, out.data()), BP_ERR_NUMERIC);
  auto badY = Y;
  badY[17] = -INFINITY;
  EXPECT_EQ(bp_train_batch(net, X.data(), badY.data(), 6, 1.0f, nullptr), BP_ERR_NUMERIC);
  EXPECT_EQ(bp_backward(net, X.data(), badY.data(), 6, nullptr), BP_ERR_NUMERIC);
  std::vector<float> W(20, 1.0f);
  W[3] = NAN;
  EXPECT_EQ(bp_network_set_layer(net, 0, W.data(), nullptr), BP_ERR_NUMERIC);
  bp_dataset *data = reinterpret_cast<bp_dataset *>(0x1);
  EXPECT_EQ(bp_dataset_create(ctx, 6, 4, 3, badX.data(), Y.data(), &data), BP_ERR_NUMERIC);
  EXPECT_EQ(data, nullptr);

  EXPECT_EQ(tu::all_params(net), before);
  std::vector<float> dW1(20);
  ASSERT_EQ(bp_network_get_gradient(net, 0, dW1.data(), nullptr), BP_OK);
  EXPECT_EQ(dW0, dW1);
}

TEST_P(ApiChecks, DatasetsCheckShapesAndContexts) {
  tu::Ctx ctx, other;
  BP_MAKE_CONTEXT(ctx, GetParam());
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &other.ctx), BP_OK);
  const uint64_t seed = tu::fresh_seed();
  auto X = ref::random_vector(10 * 4, seed);
  auto Y = ref::random_vector(10 * 3, seed + 1, 0, 1);
  bp_dataset *bad = reinterpret_cast<bp_dataset *>(0x1);
  EXPECT_EQ(bp_dataset_create(ctx, 0, 4, 3, X.data(), Y.data(), &bad), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bad, nullptr);
  EXPECT_EQ(bp_dataset_create(ctx, 10, 4, 3, nullptr, Y.data(), &bad), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_dataset_create(ctx, 10, -4, 3, X.data(), Y.data(), &bad),
            BP_ERR_INVALID_ARGUMENT);

  const int sizes[] = {4, 5, 3}, wrong[] = {4, 5, 2};
  tu::Net net, net_wrong;
  tu::Data data, data_other;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, wrong, seed, &net_wrong.net), BP_OK);
  ASSERT_EQ(bp_dataset_create(ctx, 10, 4, 3, X.data(), Y.data(), &data.data), BP_OK);
  ASSERT_EQ(bp_dataset_create(other, 10, 4, 3, X.data(), Y.data(), &data_other.data), BP_OK);
  EXPECT_EQ(bp_dataset_size(data), 10);
  float cost = 0, acc = 0;
  EXPECT_EQ(bp_train_epoch(net_wrong, data, 4, 1.0f, 1, &cost), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("3 outputs"), std::string::npos);
  EXPECT_EQ(bp_evaluate(net_wrong, data, &cost, &acc), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_train_epoch(net, data_other, 4, 1.0f, 1, &cost), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("different contexts"),
            std::string::npos);
  EXPECT_EQ(bp_train_epoch(net, data, 0, 1.0f, 1, &cost), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_train_epoch(net, nullptr, 4, 1.0f, 1, &cost), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_train_epoch(net, data, 4, 1.0f, 1, &cost), BP_OK);
  // A batch larger than the data set is one batch of all of it.
  EXPECT_EQ(bp_train_epoch(net, data, 1000, 1.0f, 1, &cost), BP_OK);
  EXPECT_EQ(bp_evaluate(net, data, &cost, &acc), BP_OK);
  EXPECT_GE(acc, 0.0f);
  EXPECT_LE(acc, 1.0f);
}

TEST_P(ApiChecks, OutOfMemoryIsRecoverable) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {6, 8, 2};
  // Parameters: the first allocation fails, nothing is leaked, the next works.
  bp_network *net = nullptr;
  ASSERT_EQ(bp_debug_fail_allocation(ctx, 1), BP_OK);
  EXPECT_EQ(bp_network_create(ctx, 3, sizes, seed, &net), BP_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(net, nullptr);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("test hook"), std::string::npos);
  tu::Net good;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &good.net), BP_OK);

  // Workspace growth: a failure keeps the old, smaller workspace working.
  auto X = ref::random_vector(6 * 500, seed);
  auto Y = ref::random_vector(2 * 500, seed + 1, 0, 1);
  float cost = 0;
  ASSERT_EQ(bp_train_batch(good, X.data(), Y.data(), 10, 1.0f, &cost), BP_OK);
  for (long nth = 1; nth <= 3; ++nth) {
    ASSERT_EQ(bp_debug_fail_allocation(ctx, nth), BP_OK);
    EXPECT_EQ(bp_train_batch(good, X.data(), Y.data(), 500, 1.0f, &cost), BP_ERR_OUT_OF_MEMORY)
        << "failing allocation " << nth;
    EXPECT_EQ(bp_train_batch(good, X.data(), Y.data(), 10, 1.0f, &cost), BP_OK)
        << bp_context_last_error(ctx);
  }
  ASSERT_EQ(bp_debug_fail_allocation(ctx, 0), BP_OK);
  EXPECT_EQ(bp_train_batch(good, X.data(), Y.data(), 500, 1.0f, &cost), BP_OK);

  // A network far larger than any memory: 2^39 parameters, 2 TiB each for
  // weights and gradients. On the CPU this relies on the kernel refusing an
  // allocation that large, which it does unless overcommit is set to always.
  bool host_refuses = true;
  if (GetParam() == BP_BACKEND_CPU) {
    std::ifstream f("/proc/sys/vm/overcommit_memory");
    int mode = 0;
    host_refuses = !(f >> mode) || mode != 1;
  }
  if (host_refuses) {
    const int huge[] = {1 << 28, 1 << 11};
    EXPECT_EQ(bp_network_create(ctx, 2, huge, seed, &net), BP_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(net, nullptr);
  }
  EXPECT_EQ(bp_train_batch(good, X.data(), Y.data(), 500, 1.0f, &cost), BP_OK);
}

INSTANTIATE_TEST_SUITE_P(Backends, ApiChecks, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace

namespace {

// Status discipline, exhaustively: every public entry point given NULL where
// it takes a pointer returns a status (no crash), leaves *out NULL, and the
// queries answer with their documented "no object" values.
TEST(Api, EveryEntryPointRejectsNull) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  const int sizes[] = {2, 3, 1};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 1, &net.net), BP_OK);
  const float X[] = {0.1f, 0.2f}, Y[] = {0.7f};
  float f = 0, out[1];
  void *const sentinel = reinterpret_cast<void *>(0x1);
  const bp_status bad = BP_ERR_INVALID_ARGUMENT;

  EXPECT_EQ(bp_context_backend(nullptr), BP_BACKEND_AUTO);
  EXPECT_STRNE(bp_context_last_error(nullptr), "");
  EXPECT_STREQ(bp_backend_name((bp_backend)42), "unknown");
  bp_network_desc_init(nullptr, 3, sizes, 1);  // no crash

  bp_network *n_out = static_cast<bp_network *>(sentinel);
  EXPECT_EQ(bp_network_create_ex(ctx, nullptr, &n_out), bad);
  EXPECT_EQ(n_out, nullptr);
  EXPECT_EQ(bp_network_create_ex(nullptr, nullptr, nullptr), bad);
  EXPECT_EQ(bp_network_n_layers(nullptr), -1);
  EXPECT_EQ(bp_network_size(nullptr, 0), -1);
  EXPECT_EQ(bp_network_parameter_count(nullptr), 0u);
  EXPECT_EQ(bp_network_context(nullptr), nullptr);
  EXPECT_EQ(bp_network_get_layer(nullptr, 0, out, out), bad);
  EXPECT_EQ(bp_network_set_layer(nullptr, 0, X, Y), bad);
  EXPECT_EQ(bp_network_get_gradient(nullptr, 0, out, out), bad);
  EXPECT_EQ(bp_backward(nullptr, X, Y, 1, &f), bad);
  EXPECT_EQ(bp_backward(net, nullptr, Y, 1, &f), bad);
  EXPECT_EQ(bp_sgd_step(nullptr, 0.1f), bad);
  EXPECT_EQ(bp_train_batch(nullptr, X, Y, 1, 0.1f, &f), bad);
  EXPECT_EQ(bp_train_batch(net, X, nullptr, 1, 0.1f, &f), bad);

  bp_dataset *d_out = static_cast<bp_dataset *>(sentinel);
  EXPECT_EQ(bp_dataset_create(nullptr, 1, 2, 1, X, Y, &d_out), bad);
  EXPECT_EQ(d_out, nullptr);
  EXPECT_EQ(bp_dataset_create(ctx, 1, 2, 1, X, Y, nullptr), bad);
  EXPECT_EQ(bp_dataset_size(nullptr), -1);
  EXPECT_EQ(bp_dataset_n_in(nullptr), -1);
  EXPECT_EQ(bp_dataset_n_out(nullptr), -1);
  EXPECT_EQ(bp_train_epoch(nullptr, nullptr, 1, 0.1f, 1, &f), bad);
  EXPECT_EQ(bp_train_epoch_ex(nullptr, nullptr, 1, 0.1f, 1, &f, nullptr, nullptr, 1), bad);
  EXPECT_EQ(bp_evaluate(nullptr, nullptr, &f, &f), bad);
  EXPECT_EQ(bp_evaluate(net, nullptr, &f, &f), bad);
  EXPECT_EQ(bp_train_epoch_host(nullptr, X, Y, 1, 1, 0.1f, 1, &f), bad);
  EXPECT_EQ(bp_train_epoch_host(net, nullptr, Y, 1, 1, 0.1f, 1, &f), bad);
  EXPECT_EQ(bp_train_epoch_host(net, X, nullptr, 1, 1, 0.1f, 1, &f), bad);
  EXPECT_EQ(bp_forward_device(nullptr, X, 1, out, nullptr), bad);
  EXPECT_EQ(bp_forward_device(net, nullptr, 1, out, nullptr), bad);
  EXPECT_EQ(bp_forward_device(net, X, 1, nullptr, nullptr), bad);
  EXPECT_EQ(bp_backward_device(nullptr, X, Y, 1, nullptr, nullptr), bad);
  EXPECT_EQ(bp_backward_device(net, X, nullptr, 1, nullptr, nullptr), bad);
  EXPECT_EQ(bp_train_batch_device(nullptr, X, Y, 1, 0.1f, nullptr, nullptr), bad);
  EXPECT_EQ(bp_train_batch_device(net, nullptr, Y, 1, 0.1f, nullptr, nullptr), bad);

  EXPECT_EQ(bp_network_save(nullptr, "/tmp/x.safetensors"), bad);
  EXPECT_EQ(bp_network_save(net, nullptr), bad);
  EXPECT_EQ(bp_network_save_ex(net, "/tmp/x.safetensors", 1, nullptr, nullptr), bad);
  EXPECT_EQ(bp_network_load(ctx, nullptr, &n_out), bad);
  EXPECT_EQ(bp_network_load_weights(net, nullptr), bad);
  bp_model_info *info = static_cast<bp_model_info *>(sentinel);
  EXPECT_EQ(bp_model_info_read(ctx, nullptr, &info), bad);
  EXPECT_EQ(info, nullptr);
  EXPECT_EQ(bp_model_info_read(nullptr, "/tmp/x", &info), bad);
  bp_model_info_free(nullptr);

  bp_data *data = static_cast<bp_data *>(sentinel);
  EXPECT_EQ(bp_data_read_idx(ctx, nullptr, "/tmp/labels", &data), bad);
  EXPECT_EQ(data, nullptr);
  data = static_cast<bp_data *>(sentinel);
  EXPECT_EQ(bp_data_parse_idx(ctx, nullptr, 10, nullptr, 10, "x", &data), bad);
  EXPECT_EQ(data, nullptr);
  bp_data *test = static_cast<bp_data *>(sentinel);
  EXPECT_EQ(bp_data_read_idx_dir(ctx, nullptr, &data, &test), bad);
  EXPECT_EQ(test, nullptr);
  bp_csv_options_init(nullptr);  // no crash
  EXPECT_EQ(bp_data_read_csv(ctx, nullptr, nullptr, &data), bad);
  EXPECT_EQ(bp_data_parse_csv(ctx, nullptr, 4, "x", nullptr, &data), bad);
  EXPECT_EQ(bp_data_read_fann(ctx, nullptr, &data), bad);
  EXPECT_EQ(bp_data_parse_fann(ctx, nullptr, 4, "x", &data), bad);
  EXPECT_EQ(bp_data_parse_fann(nullptr, "1 1 1\n0\n1\n", 10, "x", nullptr), bad);
  bp_data_free(nullptr);
  EXPECT_EQ(bp_debug_fail_allocation(nullptr, 1), bad);
  EXPECT_EQ(bp_debug_inject_device_fault(nullptr), bad);

  // After all of that the network still trains.
  EXPECT_EQ(bp_train_batch(net, X, Y, 1, 0.5f, &f), BP_OK);
}

}  // namespace
