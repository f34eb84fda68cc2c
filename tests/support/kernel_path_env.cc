// BP_TEST_KERNELS=fused runs a whole test binary on the fused kernels: every
// network the tests create through bp_network_desc_init (bp_network_create
// included) starts on that path. The library reads no environment; this
// test-side hook passes the choice on (scripts/gpu-check uses it). An
// unknown value fails every test rather than testing the wrong path.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "internal.h"

namespace {

class KernelPathEnv : public testing::Environment {
 public:
  void SetUp() override {
    const char *v = std::getenv("BP_TEST_KERNELS");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "reference") == 0) return;
    ASSERT_STREQ(v, "fused") << "BP_TEST_KERNELS must be reference or fused";
    bp_testing_set_default_kernel_path(BP_KERNELS_FUSED);
  }
};

const testing::Environment *const kEnv = testing::AddGlobalTestEnvironment(new KernelPathEnv);

}  // namespace
