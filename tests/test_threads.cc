// The threading rule of backprop.h: one context per thread, and different
// contexts are independent. Two contexts training in two threads at once
// give exactly the results of running them one after the other. Failure
// details are per thread. Run these under ThreadSanitizer too (README,
// "Tests": the build-tsan commands).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>

#include "support/reference.h"
#include "support/test_util.h"

namespace {

class Threads : public testing::TestWithParam<bp_backend> {};

struct Job {
  uint64_t seed;
  std::vector<float> params, costs;
  bp_status status = BP_OK;
};

void train(bp_backend backend, Job &job) {
  tu::Ctx ctx;
  tu::Net net;
  tu::Data data;
  const int n = 2000, sizes[] = {16, 48, 24, 4};
  auto X = ref::random_vector((size_t)n * 16, job.seed);
  auto Y = ref::random_vector((size_t)n * 4, job.seed + 1, 0, 1);
  if ((job.status = bp_context_create(backend, 0, &ctx.ctx)) != BP_OK) return;
  if ((job.status = bp_network_create(ctx, 4, sizes, job.seed, &net.net)) != BP_OK) return;
  if ((job.status = bp_dataset_create(ctx, n, 16, 4, X.data(), Y.data(), &data.data)) != BP_OK)
    return;
  for (int e = 0; e < 4; ++e) {
    float c = 0;
    if ((job.status = bp_train_epoch(net, data, 50, 1.5f, job.seed + e, &c)) != BP_OK) return;
    job.costs.push_back(c);
  }
  job.params = tu::all_params(net);
}

TEST_P(Threads, TwoContextsInTwoThreadsMatchSequentialRuns) {
  if (GetParam() == BP_BACKEND_CUDA && bp_cuda_device_count() == 0)
    GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  Job seq[2] = {{seed, {}, {}}, {seed + 17, {}, {}}};
  Job par[2] = {{seed, {}, {}}, {seed + 17, {}, {}}};
  for (Job &j : seq) train(GetParam(), j);
  std::thread t0(train, GetParam(), std::ref(par[0]));
  std::thread t1(train, GetParam(), std::ref(par[1]));
  t0.join();
  t1.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(seq[i].status, BP_OK);
    ASSERT_EQ(par[i].status, BP_OK);
    ASSERT_EQ(seq[i].params.size(), par[i].params.size());
    EXPECT_EQ(0, memcmp(seq[i].params.data(), par[i].params.data(),
                        seq[i].params.size() * sizeof(float)))
        << "job " << i;
    EXPECT_EQ(seq[i].costs, par[i].costs) << "job " << i;
  }
  EXPECT_NE(seq[0].params, seq[1].params) << "the two jobs must differ to prove anything";
}

INSTANTIATE_TEST_SUITE_P(Backends, Threads, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

}  // namespace

// Failure details are kept per thread: two threads failing on one shared
// context each read their own message, never the other's (and, under
// ThreadSanitizer, never race on a shared buffer). Readers touch nothing else
// of a context, so this use is allowed (backprop.h, "Threads").
TEST(ContextErrors, TwoThreadsFailingOnOneContextReadTheirOwnMessages) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  const int rounds = 20000;
  int wrong[2] = {0, 0};
  auto hammer = [&](int id) {
    const std::string name = "thread" + std::to_string(id) + ".csv";
    const std::string text = "1,x" + std::to_string(id) + ",2\n";
    for (int i = 0; i < rounds; ++i) {
      bp_data *d = nullptr;
      if (bp_data_parse_csv(ctx, text.data(), text.size(), name.c_str(), nullptr, &d) !=
              BP_ERR_FORMAT ||
          !strstr(bp_context_last_error(ctx), name.c_str()))
        ++wrong[id];
    }
  };
  std::thread t0(hammer, 0), t1(hammer, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(wrong[0], 0);
  EXPECT_EQ(wrong[1], 0);
  // The main thread failed nothing on ctx: its record is empty.
  EXPECT_STREQ(bp_context_last_error(ctx), "");
}

// Each context keeps its own message in a thread, and a context made where a
// destroyed one lived inherits nothing.
TEST(ContextErrors, MessagesStayPerContextInOneThread) {
  tu::Ctx a, b;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &a.ctx), BP_OK);
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &b.ctx), BP_OK);
  bp_data *d = nullptr;
  EXPECT_EQ(bp_data_parse_csv(a, "1,x,2\n", 6, "a.csv", nullptr, &d), BP_ERR_FORMAT);
  EXPECT_EQ(bp_data_parse_csv(b, "1,y,2\n", 6, "b.csv", nullptr, &d), BP_ERR_FORMAT);
  EXPECT_TRUE(strstr(bp_context_last_error(a), "a.csv")) << bp_context_last_error(a);
  EXPECT_TRUE(strstr(bp_context_last_error(b), "b.csv")) << bp_context_last_error(b);
  const int sizes[] = {2, 1};
  tu::Net net;
  ASSERT_EQ(bp_network_create(a, 2, sizes, 1, &net.net), BP_OK);
  EXPECT_STREQ(bp_context_last_error(a), "") << "a success clears the message";
  EXPECT_TRUE(strstr(bp_context_last_error(b), "b.csv")) << "another context's stays";
  bp_network_destroy(net.net);
  net.net = nullptr;
  bp_context_destroy(b.ctx);
  b.ctx = nullptr;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &b.ctx), BP_OK);
  EXPECT_STREQ(bp_context_last_error(b), "");
}
