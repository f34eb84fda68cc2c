// test_util.h - small helpers shared by the test files.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backprop.h"

namespace tu {

// A seed that differs on every run (fresh data per test), printed on failure
// through SCOPED_TRACE so a failing case can be replayed.
// A new seed per call, printed by each test's trace; BP_TEST_SEED=N replays
// a failure's seed (every call then returns N).
inline uint64_t fresh_seed() {
  if (const char *fixed = std::getenv("BP_TEST_SEED")) return std::strtoull(fixed, nullptr, 10);
  std::random_device rd;
  return ((uint64_t)rd() << 32) ^ rd();
}

// Owns a context; nullptr when the backend is unavailable.
struct Ctx {
  bp_context *ctx = nullptr;
  ~Ctx() { bp_context_destroy(ctx); }
  operator bp_context *() const { return ctx; }
};

struct Net {
  bp_network *net = nullptr;
  ~Net() { bp_network_destroy(net); }
  operator bp_network *() const { return net; }
};

struct Data {
  bp_dataset *data = nullptr;
  ~Data() { bp_dataset_destroy(data); }
  operator bp_dataset *() const { return data; }
};

inline std::string backend_label(const testing::TestParamInfo<bp_backend> &info) {
  return bp_backend_name(info.param);
}

// All weights and biases of a network, layer after layer.
inline std::vector<float> all_params(const bp_network *net) {
  std::vector<float> out;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    std::vector<float> W((size_t)bp_network_size(net, i) * bp_network_size(net, i + 1));
    std::vector<float> b(bp_network_size(net, i + 1));
    EXPECT_EQ(bp_network_get_layer(net, i, W.data(), b.data()), BP_OK);
    out.insert(out.end(), W.begin(), W.end());
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

}  // namespace tu

// Creates a context for the backend under test, or skips with the reason.
#define BP_MAKE_CONTEXT(holder, backend)                                                   \
  do {                                                                                     \
    if ((backend) == BP_BACKEND_CUDA && bp_cuda_device_count() == 0)                       \
      GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");           \
    ASSERT_EQ(bp_context_create((backend), 0, &(holder).ctx), BP_OK);                      \
  } while (0)
