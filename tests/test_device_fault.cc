// A sticky device fault (an illegal address in a kernel) poisons the
// context: that call and every later one return BP_ERR_DEVICE saying the
// process must restart, nothing hangs, and nothing is saved from it. The
// fault corrupts the whole process's CUDA context, so the test runs in a
// child process of its own (a death test re-executing this binary), and
// sanitizer runs exclude it by name (*DeliberateFault*).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

std::string slurp(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

#define CHILD_EXPECT(cond)                                                   \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #cond); \
      _exit(1);                                                              \
    }                                                                        \
  } while (0)

bool says_restart(bp_context *ctx) {
  return std::string(bp_context_last_error(ctx)).find("restart") != std::string::npos;
}

void poison_and_probe(const std::string &model) {
  bp_context *ctx = nullptr;
  CHILD_EXPECT(bp_context_create(BP_BACKEND_CUDA, 0, &ctx) == BP_OK);
  const int sizes[] = {4, 6, 2};
  bp_network *net = nullptr;
  CHILD_EXPECT(bp_network_create(ctx, 3, sizes, 9, &net) == BP_OK);
  auto X = ref::random_vector(4 * 8, 1);
  auto Y = ref::random_vector(2 * 8, 2, 0, 1);
  CHILD_EXPECT(bp_train_batch(net, X.data(), Y.data(), 8, 1.0f, nullptr) == BP_OK);
  CHILD_EXPECT(bp_network_save(net, model.c_str()) == BP_OK);
  const std::string saved = slurp(model);

  CHILD_EXPECT(bp_debug_inject_device_fault(ctx) == BP_ERR_DEVICE);
  CHILD_EXPECT(says_restart(ctx));
  std::vector<float> out(16);
  CHILD_EXPECT(bp_train_batch(net, X.data(), Y.data(), 8, 1.0f, nullptr) == BP_ERR_DEVICE);
  CHILD_EXPECT(says_restart(ctx));
  CHILD_EXPECT(bp_forward(net, X.data(), 8, out.data()) == BP_ERR_DEVICE);
  std::vector<float> W(24);
  CHILD_EXPECT(bp_network_get_layer(net, 0, W.data(), nullptr) == BP_ERR_DEVICE);
  CHILD_EXPECT(bp_network_save(net, model.c_str()) != BP_OK);
  CHILD_EXPECT(slurp(model) == saved);
  bp_network *other = nullptr;
  CHILD_EXPECT(bp_network_create(ctx, 3, sizes, 9, &other) == BP_ERR_DEVICE && !other);
  bp_dataset *data = nullptr;
  CHILD_EXPECT(bp_dataset_create(ctx, 8, 4, 2, X.data(), Y.data(), &data) == BP_ERR_DEVICE);
  bp_network_destroy(net);  // must return, not hang
  bp_context_destroy(ctx);
  fprintf(stderr, "poisoned as promised\n");
  _exit(0);
}

TEST(DeviceFault, DeliberateFaultPoisonsTheContextAndSavesNothing) {
  if (bp_cuda_device_count() == 0)
    GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  char dir[] = "/tmp/bp_fault_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string model = std::string(dir) + "/model.safetensors";
  EXPECT_EXIT(poison_and_probe(model), testing::ExitedWithCode(0), "poisoned as promised");
  std::remove(model.c_str());
  rmdir(dir);
}

TEST(DeviceFault, TheCpuBackendHasNoDeviceToFault) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  EXPECT_EQ(bp_debug_inject_device_fault(ctx), BP_ERR_UNSUPPORTED);
  const int sizes[] = {2, 2};
  tu::Net net;
  EXPECT_EQ(bp_network_create(ctx, 2, sizes, 1, &net.net), BP_OK) << "the context still works";
}

}  // namespace
