// test_model_files.cc - what a model file records beyond the weights: the
// activation of each layer, the cost and (bp_network_save_with_state) the
// optimizer with its state; and the epoch without shuffling
// (BP_SHUFFLE_NONE) that the command's --no-shuffle uses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "backprop.h"
#include "support/test_util.h"

#include <unistd.h>

namespace fs = std::filesystem;

namespace {

class ModelFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
    dir = fs::temp_directory_path() /
          ("bp_model_files_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  bp_network *make(std::vector<int> sizes, std::vector<bp_activation> acts, bp_cost cost,
                   uint64_t seed = 7) {
    bp_network_desc d;
    bp_network_desc_init(&d, (int)sizes.size(), sizes.data(), seed);
    d.activations = acts.empty() ? nullptr : acts.data();
    d.cost = cost;
    bp_network *net = nullptr;
    EXPECT_EQ(bp_network_create_ex(ctx, &d, &net), BP_OK) << bp_context_last_error(ctx);
    return net;
  }

  // n examples of a 3-class problem over `in` inputs, one-hot targets.
  void make_data(int n, int in, int out, std::vector<float> &X, std::vector<float> &Y,
                 uint64_t seed = 3) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    X.resize((size_t)n * in);
    Y.assign((size_t)n * out, 0.f);
    for (int i = 0; i < n; ++i) {
      float s = 0;
      for (int k = 0; k < in; ++k) s += X[(size_t)i * in + k] = g(rng);
      Y[(size_t)i * out + (s > 0.5f ? 0 : s < -0.5f ? 1 : 2) % out] = 1.f;
    }
  }

  bp_status load(const std::string &path, bp_network **out) {
    return bp_network_load(ctx, path.c_str(), out);
  }

  // A safetensors file from a header JSON and little-endian floats.
  std::string write_file(const std::string &name, const std::string &json,
                         const std::vector<float> &data) {
    std::string h = json;
    while (h.size() % 8) h += ' ';
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = (char)((uint64_t)h.size() >> (8 * i));
    bytes += h;
    bytes.append((const char *)data.data(), data.size() * 4);
    std::string path = dir / name;
    FILE *f = fopen(path.c_str(), "wb");
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
    return path;
  }

  // A 2-3-2 network's tensors and the given metadata pairs (JSON text).
  std::string small_file(const std::string &name, const std::string &meta,
                         const std::string &extra_tensors = "", size_t extra_floats = 0) {
    std::string json =
        "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
        "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},"
        "\"layers.1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[36,60]},"
        "\"layers.1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[60,68]}" +
        extra_tensors + (meta.empty() ? "" : ",\"__metadata__\":{" + meta + "}") + "}";
    std::vector<float> data(17 + extra_floats);
    for (size_t i = 0; i < data.size(); ++i) data[i] = 0.1f * (float)(i % 7) - 0.3f;
    return write_file(name, json, data);
  }

  void expect_format(const std::string &path, const std::string &detail) {
    bp_network *net = nullptr;
    EXPECT_EQ(load(path, &net), BP_ERR_FORMAT) << path;
    EXPECT_EQ(net, nullptr);
    std::string msg = bp_context_last_error(ctx);
    EXPECT_NE(msg.find(detail), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    bp_network_destroy(net);
  }

  tu::Ctx ctx;
  fs::path dir;
};

TEST_F(ModelFiles, ReluSoftmaxCrossEntropyReloadsAndEvaluatesIdentically) {
  tu::Net net;
  net.net = make({5, 8, 6, 3},
                 {BP_ACTIVATION_RELU, BP_ACTIVATION_TANH, BP_ACTIVATION_SOFTMAX},
                 BP_COST_CROSS_ENTROPY);
  std::vector<float> X, Y;
  make_data(64, 5, 3, X, Y);
  tu::Data ds;
  ASSERT_EQ(bp_dataset_create(ctx, 64, 5, 3, X.data(), Y.data(), &ds.data), BP_OK);
  ASSERT_EQ(bp_train_epoch(net, ds, 16, 0.1f, 1, nullptr), BP_OK);
  std::string path = dir / "m.safetensors";
  ASSERT_EQ(bp_network_save(net, path.c_str()), BP_OK) << bp_context_last_error(ctx);

  bp_model_info *info = nullptr;
  ASSERT_EQ(bp_model_info_read(ctx, path.c_str(), &info), BP_OK);
  std::string act, cost;
  for (int i = 0; i < info->n_meta; ++i) {
    if (!strcmp(info->meta_keys[i], "activation")) act = info->meta_values[i];
    if (!strcmp(info->meta_keys[i], "cost")) cost = info->meta_values[i];
  }
  bp_model_info_free(info);
  EXPECT_EQ(act, "relu,tanh,softmax");
  EXPECT_EQ(cost, "cross-entropy");

  tu::Net back;
  ASSERT_EQ(load(path, &back.net), BP_OK) << bp_context_last_error(ctx);
  EXPECT_EQ(bp_network_get_activation(back, 0), BP_ACTIVATION_RELU);
  EXPECT_EQ(bp_network_get_activation(back, 1), BP_ACTIVATION_TANH);
  EXPECT_EQ(bp_network_get_activation(back, 2), BP_ACTIVATION_SOFTMAX);
  EXPECT_EQ(bp_network_get_cost(back), BP_COST_CROSS_ENTROPY);
  EXPECT_EQ(tu::all_params(back), tu::all_params(net));
  float c1, a1, c2, a2;
  ASSERT_EQ(bp_evaluate(net, ds, &c1, &a1), BP_OK);
  ASSERT_EQ(bp_evaluate(back, ds, &c2, &a2), BP_OK);
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(a1, a2);
  std::vector<float> o1(64 * 3), o2(64 * 3);
  ASSERT_EQ(bp_forward(net, X.data(), 64, o1.data()), BP_OK);
  ASSERT_EQ(bp_forward(back, X.data(), 64, o2.data()), BP_OK);
  EXPECT_EQ(o1, o2);
  // Softmax outputs: each row sums to 1 (the file did not come back sigmoid).
  EXPECT_NEAR(o2[0] + o2[1] + o2[2], 1.0f, 1e-5f);
}

TEST_F(ModelFiles, OneActivationForEveryLayerIsWrittenOnce) {
  tu::Net net;
  net.net = make({3, 4, 2}, {BP_ACTIVATION_TANH, BP_ACTIVATION_TANH}, BP_COST_QUADRATIC);
  std::string path = dir / "t.safetensors";
  ASSERT_EQ(bp_network_save(net, path.c_str()), BP_OK);
  bp_model_info *info = nullptr;
  ASSERT_EQ(bp_model_info_read(ctx, path.c_str(), &info), BP_OK);
  EXPECT_STREQ(info->meta_keys[2], "activation");
  EXPECT_STREQ(info->meta_values[2], "tanh");
  bp_model_info_free(info);
}

// The optimizer state saved with the model resumes training exactly: two
// epochs, save, load, two more epochs give the weights of four epochs in one
// run, for every optimizer with state.
TEST_F(ModelFiles, OptimizerStateRoundTripResumesExactly) {
  std::vector<float> X, Y;
  make_data(48, 4, 3, X, Y);
  tu::Data ds;
  ASSERT_EQ(bp_dataset_create(ctx, 48, 4, 3, X.data(), Y.data(), &ds.data), BP_OK);
  struct Case {
    bp_optimizer kind;
    double momentum;
    int nesterov;
    double wd;
  } cases[] = {{BP_OPTIMIZER_ADAM, 0, 0, 0.001},
               {BP_OPTIMIZER_ADAMW, 0, 0, 0.05},
               {BP_OPTIMIZER_SGD, 0.9, 1, 0.0001},
               {BP_OPTIMIZER_RPROP, 0, 0, 0}};
  for (const Case &c : cases) {
    SCOPED_TRACE(bp_optimizer_name(c.kind));
    bp_optimizer_config cfg;
    bp_optimizer_config_init(&cfg, c.kind);
    cfg.momentum = c.momentum;
    cfg.nesterov = c.nesterov;
    cfg.weight_decay = c.wd;
    cfg.beta2 = 0.99; // not a default: must come back from the file
    std::vector<bp_activation> acts = {BP_ACTIVATION_RELU, BP_ACTIVATION_SOFTMAX};
    tu::Net whole, first;
    whole.net = make({4, 6, 3}, acts, BP_COST_CROSS_ENTROPY);
    first.net = make({4, 6, 3}, acts, BP_COST_CROSS_ENTROPY);
    ASSERT_EQ(bp_network_set_optimizer(whole, &cfg), BP_OK);
    ASSERT_EQ(bp_network_set_optimizer(first, &cfg), BP_OK);
    const int batch = c.kind == BP_OPTIMIZER_RPROP ? 48 : 8;
    const float lr = c.kind == BP_OPTIMIZER_SGD ? 0.05f : 0.01f;
    for (int e = 1; e <= 4; ++e) ASSERT_EQ(bp_train_epoch(whole, ds, batch, lr, e, nullptr), BP_OK);
    for (int e = 1; e <= 2; ++e) ASSERT_EQ(bp_train_epoch(first, ds, batch, lr, e, nullptr), BP_OK);
    std::string path = dir / "state.safetensors";
    ASSERT_EQ(bp_network_save_with_state(first, path.c_str(), 0, nullptr, nullptr), BP_OK)
        << bp_context_last_error(ctx);
    tu::Net resumed;
    ASSERT_EQ(load(path, &resumed.net), BP_OK) << bp_context_last_error(ctx);
    bp_optimizer_config got;
    got.struct_size = sizeof got;
    ASSERT_EQ(bp_network_get_optimizer(resumed, &got), BP_OK);
    EXPECT_EQ(got.kind, c.kind);
    EXPECT_EQ(got.momentum, cfg.momentum);
    EXPECT_EQ(got.nesterov, cfg.nesterov);
    if (c.kind != BP_OPTIMIZER_RPROP) {
      EXPECT_EQ(got.weight_decay, cfg.weight_decay);
    }
    if (c.kind == BP_OPTIMIZER_ADAM) {
      EXPECT_EQ(got.beta2, 0.99);
    }
    int64_t s1 = -1, s2 = -2;
    size_t count =
        (size_t)bp_network_optimizer_state_slots(first) * bp_network_parameter_count(first);
    EXPECT_GT(count, 0u);
    std::vector<float> st1(count), st2(count);
    ASSERT_EQ(bp_network_get_optimizer_state(first, st1.data(), count, &s1), BP_OK);
    ASSERT_EQ(bp_network_get_optimizer_state(resumed, st2.data(), count, &s2), BP_OK);
    EXPECT_EQ(s1, s2);
    EXPECT_GT(s1, 0);
    EXPECT_EQ(st1, st2);
    for (int e = 3; e <= 4; ++e)
      ASSERT_EQ(bp_train_epoch(resumed, ds, batch, lr, e, nullptr), BP_OK);
    EXPECT_EQ(tu::all_params(resumed), tu::all_params(whole));
    // Without the state the run would differ (the test is not vacuous).
    tu::Net cold;
    ASSERT_EQ(bp_network_load(ctx, path.c_str(), &cold.net), BP_OK);
    ASSERT_EQ(bp_network_set_optimizer_state(cold, std::vector<float>(count).data(), count, 0),
              BP_OK);
    for (int e = 3; e <= 4; ++e) ASSERT_EQ(bp_train_epoch(cold, ds, batch, lr, e, nullptr), BP_OK);
    EXPECT_NE(tu::all_params(cold), tu::all_params(whole));
  }
}

TEST_F(ModelFiles, PlainSaveHasNoOptimizerAndLoadsAsSgd) {
  tu::Net net;
  net.net = make({3, 4, 2}, {}, BP_COST_QUADRATIC);
  bp_optimizer_config cfg;
  bp_optimizer_config_init(&cfg, BP_OPTIMIZER_ADAM);
  ASSERT_EQ(bp_network_set_optimizer(net, &cfg), BP_OK);
  std::string path = dir / "plain.safetensors";
  ASSERT_EQ(bp_network_save(net, path.c_str()), BP_OK);
  tu::Net back;
  ASSERT_EQ(load(path, &back.net), BP_OK);
  bp_optimizer_config got;
  got.struct_size = sizeof got;
  ASSERT_EQ(bp_network_get_optimizer(back, &got), BP_OK);
  EXPECT_EQ(got.kind, BP_OPTIMIZER_SGD);
  // The optimizer keys are the library's.
  const char *k[] = {"optimizer.step"}, *v[] = {"3"};
  EXPECT_EQ(bp_network_save_ex(net, path.c_str(), 1, k, v), BP_ERR_INVALID_ARGUMENT);
}

TEST_F(ModelFiles, OldFilesWithoutActivationMetadataAreTheSeedsNetwork) {
  // The seed wrote "activation":"sigmoid","cost":"quadratic"; older or
  // foreign files may have no metadata at all. Both are sigmoid + quadratic.
  for (std::string meta : {std::string(""), std::string("\"format\":\"backprop\",\"activation\":"
                                                        "\"sigmoid\",\"cost\":\"quadratic\"")}) {
    tu::Net net;
    ASSERT_EQ(load(small_file("old.safetensors", meta), &net.net), BP_OK)
        << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_get_activation(net, 0), BP_ACTIVATION_SIGMOID);
    EXPECT_EQ(bp_network_get_activation(net, 1), BP_ACTIVATION_SIGMOID);
    EXPECT_EQ(bp_network_get_cost(net), BP_COST_QUADRATIC);
  }
}

TEST_F(ModelFiles, BadMetadataIsAFormatErrorWithAClearMessage) {
  expect_format(small_file("a.safetensors", "\"activation\":\"swish\""),
                "unknown activation \"swish\"");
  expect_format(small_file("b.safetensors", "\"activation\":\"relu,gelu\""),
                "unknown activation \"gelu\"");
  expect_format(small_file("c.safetensors", "\"activation\":\"softmax,softmax\""),
                "softmax on hidden layer 0");
  expect_format(small_file("d.safetensors", "\"activation\":\"relu,relu,relu\""),
                "names 3 activations for 2 weight layers");
  expect_format(small_file("e.safetensors", "\"cost\":\"hinge\""), "unknown cost \"hinge\"");
  expect_format(small_file("f.safetensors", "\"activation\":\"relu\",\"cost\":\"cross-entropy\""),
                "cross-entropy needs a softmax or sigmoid output");
  expect_format(small_file("g.safetensors", "\"optimizer\":\"lbfgs\""),
                "unknown optimizer \"lbfgs\"");
  expect_format(small_file("h.safetensors", "\"optimizer\":\"adam\",\"optimizer.step\":\"-1\""),
                "optimizer.step");
  // State tensors: without the optimizer, of another optimizer, incomplete.
  std::string t0 =
      ",\"optimizer.exp_avg.layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],"
      "\"data_offsets\":[68,92]}";
  expect_format(small_file("i.safetensors", "", t0, 6), "no \"optimizer\" in the metadata");
  expect_format(small_file("j.safetensors", "\"optimizer\":\"rprop\"", t0, 6),
                "not a state tensor of optimizer rprop");
  expect_format(small_file("k.safetensors", "\"optimizer\":\"adam\"", t0, 6),
                "\"optimizer.exp_avg.layers.0.bias\" is missing");
  // A model with all of exp_avg but not exp_avg_sq: the slot count is wrong.
  std::string all =
      t0 +
      ",\"optimizer.exp_avg.layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
      "\"data_offsets\":[92,104]},"
      "\"optimizer.exp_avg.layers.1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
      "\"data_offsets\":[104,128]},"
      "\"optimizer.exp_avg.layers.1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
      "\"data_offsets\":[128,136]}";
  expect_format(small_file("l.safetensors", "\"optimizer\":\"adam\"", all, 17),
                "keeps 2 state tensors per parameter but the file has 1");
  std::string wrong_shape =
      ",\"optimizer.exp_avg.layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
      "\"data_offsets\":[68,92]}";
  expect_format(small_file("m.safetensors", "\"optimizer\":\"adam\"", wrong_shape, 6),
                "does not have the shape of \"layers.0.weight\"");
}

// BP_SHUFFLE_NONE: the batches are the examples in order, as bp_train_batch
// on consecutive slices.
TEST_F(ModelFiles, NoShuffleTrainsTheBatchesInFileOrder) {
  std::vector<float> X, Y;
  make_data(40, 4, 3, X, Y);
  tu::Data ds;
  ASSERT_EQ(bp_dataset_create(ctx, 40, 4, 3, X.data(), Y.data(), &ds.data), BP_OK);
  tu::Net a, b, c;
  a.net = make({4, 5, 3}, {}, BP_COST_QUADRATIC);
  b.net = make({4, 5, 3}, {}, BP_COST_QUADRATIC);
  c.net = make({4, 5, 3}, {}, BP_COST_QUADRATIC);
  ASSERT_EQ(bp_train_epoch(a, ds, 16, 0.5f, BP_SHUFFLE_NONE, nullptr), BP_OK);
  for (int i = 0; i < 40; i += 16) {
    int n = 40 - i < 16 ? 40 - i : 16;
    ASSERT_EQ(bp_train_batch(b, X.data() + i * 4, Y.data() + i * 3, n, 0.5f, nullptr), BP_OK);
  }
  EXPECT_EQ(tu::all_params(a), tu::all_params(b));
  ASSERT_EQ(bp_train_epoch(c, ds, 16, 0.5f, 12345, nullptr), BP_OK);
  EXPECT_NE(tu::all_params(c), tu::all_params(a));
  // The host-array epoch follows the same rule.
  tu::Net d;
  d.net = make({4, 5, 3}, {}, BP_COST_QUADRATIC);
  ASSERT_EQ(bp_train_epoch_host(d, X.data(), Y.data(), 40, 16, 0.5f, BP_SHUFFLE_NONE, nullptr),
            BP_OK);
  EXPECT_EQ(tu::all_params(d), tu::all_params(a));
}

}  // namespace
