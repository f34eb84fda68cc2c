// The ways the CUDA backend can run a step give the same training, bit for
// bit: the reference kernels or the fused ones (bp_network_set_kernel_path),
// with or without CUDA graphs (bp_network_set_cuda_graphs).
// A graph bakes in pointers and arguments, so the runs also change the
// learning rate, the batch size, the workspace size and the data set between
// epochs: a stale graph would show as a difference. On the CPU backend the
// graph switch is accepted and changes nothing (that part runs everywhere).
//
// Fused and reference weights must be bit-identical (the same formulas on
// the same floats; bias sums in the same order: kernels/fused.cu). The
// fused batch cost sums the same double terms over another partition, so
// epoch costs are compared to 1e-6 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace {

struct RunResult {
  std::vector<float> params;
  std::vector<float> costs;   // mean cost of each epoch or batch call
  std::vector<float> outputs; // bp_forward on the first examples at the end
  std::vector<bp_epoch_stats> stats;  // after each epoch
};

struct Problem {
  int n;
  std::vector<float> X, Y;
};

Problem make_problem(uint64_t seed, int n, int n_in, int n_out) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Problem p{n, std::vector<float>((size_t)n * n_in), std::vector<float>((size_t)n * n_out, 0.0f)};
  for (auto &x : p.X) x = u(gen);
  for (int e = 0; e < n; ++e) {
    // A learnable target: the class is the index of the largest of the
    // first n_out inputs.
    int best = 0;
    for (int j = 1; j < n_out; ++j)
      if (p.X[(size_t)e * n_in + j] > p.X[(size_t)e * n_in + best]) best = j;
    p.Y[(size_t)e * n_out + best] = 1.0f;
  }
  return p;
}

// Trains a fresh network through every entry point that can take a graph,
// changing everything a graph bakes in along the way.
// Two shapes: widths that are not multiples of 4 (the fused kernels' scalar
// instances) and widths that are (their float4 instances).
const int kOddSizes[] = {29, 67, 33, 5};
const int kQuadSizes[] = {32, 64, 48, 8};

RunResult train(bp_backend backend, bp_kernel_path kernels, int graphs, uint64_t seed,
                const int *sizes = kOddSizes) {
  RunResult r;
  tu::Ctx ctx;
  if (bp_context_create(backend, 0, &ctx.ctx) != BP_OK) {
    ADD_FAILURE() << "context: " << bp_context_last_error(nullptr);
    return r;
  }
  const int s0 = sizes[0], sL = sizes[3];
  tu::Net net;
  EXPECT_EQ(bp_network_create(ctx, 4, sizes, seed, &net.net), BP_OK) << bp_context_last_error(ctx);
  if (!net.net) return r;
  EXPECT_EQ(bp_network_set_cuda_graphs(net, graphs), BP_OK);
  EXPECT_EQ(bp_network_cuda_graphs(net), graphs);
  EXPECT_EQ(bp_network_set_kernel_path(net, kernels), BP_OK);
  EXPECT_EQ(bp_network_get_kernel_path(net), kernels);
  Problem a = make_problem(seed + 1, 1000, s0, sL), b = make_problem(seed + 2, 700, s0, sL);
  tu::Data da, db;
  EXPECT_EQ(bp_dataset_create(ctx, a.n, s0, sL, a.X.data(), a.Y.data(), &da.data), BP_OK);
  EXPECT_EQ(bp_dataset_create(ctx, b.n, s0, sL, b.X.data(), b.Y.data(), &db.data), BP_OK);
  // (data set, batch, learning rate) per epoch: repeated shapes (captured
  // and replayed), a new lr, a larger batch (the workspace grows), the
  // other data set, and back.
  struct Epoch {
    bp_dataset *d;
    int batch;
    float lr;
  } epochs[] = {{da, 64, 2.0f},  {da, 64, 2.0f},  {da, 64, 1.0f}, {da, 128, 1.0f},
                {db, 128, 1.0f}, {da, 64, 2.0f},  {db, 700, 0.5f}, {db, 700, 0.5f}};
  uint64_t shuffle = seed;
  for (const Epoch &e : epochs) {
    float c = NAN;
    EXPECT_EQ(bp_train_epoch(net, e.d, e.batch, e.lr, ++shuffle, &c), BP_OK)
        << bp_context_last_error(ctx);
    r.costs.push_back(c);
    bp_epoch_stats st;
    EXPECT_EQ(bp_network_last_epoch_stats(net, &st, sizeof st), BP_OK);
    const int examples = e.d == da.data ? a.n : b.n;
    EXPECT_EQ(st.steps, (examples + e.batch - 1) / e.batch);
    EXPECT_GT(st.wall_us, 0.0);
    EXPECT_GT(st.queue_us, 0.0);
    EXPECT_LE(st.queue_us, st.wall_us);
    r.stats.push_back(st);
    std::vector<float> out3((size_t)3 * sL);
    EXPECT_EQ(bp_forward(net, a.X.data(), 3, out3.data()), BP_OK);  // the forward graph, n = 3
    r.outputs.insert(r.outputs.end(), out3.begin(), out3.end());
  }
  for (int i = 0; i < 3; ++i) {
    float c = NAN;
    EXPECT_EQ(bp_train_batch(net, a.X.data(), a.Y.data(), 200, 1.0f, &c), BP_OK);
    r.costs.push_back(c);
  }
  // Host-streamed epochs: two staging sets alternate, each its own graph.
  for (int i = 0; i < 3; ++i) {
    float c = NAN;
    EXPECT_EQ(bp_train_epoch_host(net, b.X.data(), b.Y.data(), b.n, 100, 1.0f, ++shuffle, &c),
              BP_OK)
        << bp_context_last_error(ctx);
    r.costs.push_back(c);
    bp_epoch_stats st;
    EXPECT_EQ(bp_network_last_epoch_stats(net, &st, sizeof st), BP_OK);
    EXPECT_EQ(st.steps, 7);
    r.stats.push_back(st);
  }
  std::vector<float> out((size_t)a.n * sL);
  EXPECT_EQ(bp_forward(net, a.X.data(), a.n, out.data()), BP_OK);
  r.outputs.insert(r.outputs.end(), out.begin(), out.end());
  r.params = tu::all_params(net);
  return r;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_same_training(const RunResult &got, const RunResult &want, double cost_tol,
                          const char *what) {
  SCOPED_TRACE(what);
  ASSERT_FALSE(want.params.empty());
  EXPECT_TRUE(same_bits(got.params, want.params)) << "weights differ";
  EXPECT_TRUE(same_bits(got.outputs, want.outputs)) << "outputs differ";
  ASSERT_EQ(got.costs.size(), want.costs.size());
  for (size_t i = 0; i < want.costs.size(); ++i)
    EXPECT_LE(std::fabs(got.costs[i] - want.costs[i]), cost_tol * std::fabs(want.costs[i]))
        << "cost " << i << ": " << got.costs[i] << " vs " << want.costs[i];
  // The training must have done something: the first epoch's cost falls.
  EXPECT_LT(want.costs[7], want.costs[0]);
}

TEST(ExecutionPaths, CpuIgnoresTheGraphSwitch) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  RunResult plain = train(BP_BACKEND_CPU, BP_KERNELS_REFERENCE, 0, seed);
  RunResult graphs = train(BP_BACKEND_CPU, BP_KERNELS_REFERENCE, 1, seed);
  expect_same_training(graphs, plain, 0.0, "cpu, graphs on vs off");
}

TEST(ExecutionPaths, EpochStatsArgumentsAndOlderCallers) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  const int sizes[] = {3, 4, 2};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 5, &net.net), BP_OK);
  bp_epoch_stats st;
  std::memset(&st, 0x7f, sizeof st);
  ASSERT_EQ(bp_network_last_epoch_stats(net, &st, sizeof st), BP_OK);
  EXPECT_EQ(st.steps, 0) << "before any epoch: zeros";
  EXPECT_EQ(st.wall_us, 0.0);
  EXPECT_EQ(bp_network_last_epoch_stats(nullptr, &st, sizeof st), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_last_epoch_stats(net, nullptr, sizeof st), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_last_epoch_stats(net, &st, 0), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("stats_size"), std::string::npos);

  Problem p = make_problem(tu::fresh_seed(), 50, 3, 2);
  float c = NAN;
  ASSERT_EQ(bp_train_epoch_host(net, p.X.data(), p.Y.data(), p.n, 8, 1.0f, 1, &c), BP_OK);
  // A caller built against a struct that ended after graph_replays: gets
  // those two fields, and nothing past them is written.
  struct {
    bp_epoch_stats s;
    char guard[8];
  } old_caller;
  std::memset(&old_caller, 0x5a, sizeof old_caller);
  const size_t old_size = offsetof(bp_epoch_stats, wall_us);
  ASSERT_EQ(bp_network_last_epoch_stats(net, &old_caller.s, old_size), BP_OK);
  EXPECT_EQ(old_caller.s.steps, 7);
  EXPECT_EQ(old_caller.s.graph_replays, 0);
  const unsigned char *tail = reinterpret_cast<const unsigned char *>(&old_caller.s) + old_size;
  for (size_t i = old_size; i < sizeof old_caller; ++i, ++tail)
    ASSERT_EQ(*tail, 0x5a) << "byte " << i << " past the caller's struct was written";
}

TEST(ExecutionPaths, CudaGraphsReplayTheSameStep) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (bp_kernel_path kernels : {BP_KERNELS_REFERENCE, BP_KERNELS_FUSED}) {
    for (const int *sizes : {kOddSizes, kQuadSizes}) {
      SCOPED_TRACE(testing::Message() << (kernels == BP_KERNELS_FUSED ? "fused" : "reference")
                                      << ", widths " << sizes[0] << "-" << sizes[1]
                                      << "-" << sizes[2] << "-" << sizes[3]);
      RunResult plain = train(BP_BACKEND_CUDA, kernels, 0, seed, sizes);
      RunResult graphs = train(BP_BACKEND_CUDA, kernels, 1, seed, sizes);
      // The same kernels replayed: the costs are bit-identical too.
      expect_same_training(graphs, plain, 0.0, "graphs on vs off");
      // And they were replayed: the second epoch repeats the first's shapes,
      // so every one of its steps comes from a graph.
      ASSERT_GE(graphs.stats.size(), 11u);
      EXPECT_EQ(graphs.stats[1].graph_replays, graphs.stats[1].steps);
      EXPECT_EQ(graphs.stats[10].graph_replays, graphs.stats[10].steps) << "host-streamed epoch";
      for (const bp_epoch_stats &st : plain.stats) EXPECT_EQ(st.graph_replays, 0);
      // The launches the library reports: a replayed data-set step is the
      // gather and the graph; a replayed streamed step the graph alone (its
      // copies are not launches); uncaptured, every kernel and product.
      EXPECT_EQ(graphs.stats[1].launches, 2LL * graphs.stats[1].steps);
      EXPECT_EQ(graphs.stats[10].launches, (long long)graphs.stats[10].steps);
      const int L = 3;
      for (const bp_epoch_stats &st : plain.stats)
        EXPECT_GE(st.launches, (long long)st.steps * (1 + 3 * L)) << "gather + 3 products a layer";
    }
  }
}

TEST(ExecutionPaths, CpuReportsNoLaunches) {
  const uint64_t seed = tu::fresh_seed();
  RunResult r = train(BP_BACKEND_CPU, BP_KERNELS_REFERENCE, 0, seed);
  ASSERT_FALSE(r.stats.empty());
  for (const bp_epoch_stats &st : r.stats) EXPECT_EQ(st.launches, 0);
}

// The kernel path may change between any two calls: a network switched to
// the fused kernels and back trains as one that never left the reference
// path (the workspace is made again with the buffers the path needs).
TEST(ExecutionPaths, CudaKernelPathChangesBetweenCalls) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &ctx.ctx), BP_OK);
  const int *sizes = kOddSizes;
  Problem p = make_problem(seed + 1, 300, sizes[0], sizes[3]);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, p.n, sizes[0], sizes[3], p.X.data(), p.Y.data(), &data.data),
            BP_OK);
  std::vector<float> params[2];
  for (int switching = 0; switching < 2; ++switching) {
    tu::Net net;
    ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &net.net), BP_OK);
    for (int e = 0; e < 4; ++e) {
      if (switching) {
        ASSERT_EQ(bp_network_set_kernel_path(net, e % 2 ? BP_KERNELS_FUSED : BP_KERNELS_REFERENCE),
                  BP_OK);
      }
      float c = NAN;
      ASSERT_EQ(bp_train_epoch(net, data, 32 + 16 * e, 1.0f, seed + e, &c), BP_OK)
          << bp_context_last_error(ctx);
    }
    params[switching] = tu::all_params(net);
  }
  EXPECT_TRUE(same_bits(params[1], params[0])) << "switching kernel paths changed the weights";
}

TEST(ExecutionPaths, CudaFusedKernelsTrainAsTheReference) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const int *sizes : {kQuadSizes}) {  // the float4 instances
    RunResult reference4 = train(BP_BACKEND_CUDA, BP_KERNELS_REFERENCE, 0, seed, sizes);
    RunResult fused4 = train(BP_BACKEND_CUDA, BP_KERNELS_FUSED, 0, seed, sizes);
    expect_same_training(fused4, reference4, 1e-6, "fused vs reference, widths 32-64-48-8");
  }
  RunResult reference = train(BP_BACKEND_CUDA, BP_KERNELS_REFERENCE, 0, seed);
  RunResult fused = train(BP_BACKEND_CUDA, BP_KERNELS_FUSED, 0, seed);
  expect_same_training(fused, reference, 1e-6, "fused vs reference");
  // And both agree with the CPU backend to float rounding (the products
  // differ in summation order): a sanity check that neither path is off.
  RunResult cpu = train(BP_BACKEND_CPU, BP_KERNELS_REFERENCE, 0, seed);
  ASSERT_EQ(cpu.params.size(), fused.params.size());
  double worst = 0;
  for (size_t i = 0; i < cpu.params.size(); ++i)
    worst = std::max(worst, (double)std::fabs(cpu.params[i] - fused.params[i]) /
                                std::max(1.0, (double)std::fabs(cpu.params[i])));
  EXPECT_LT(worst, 1e-3) << "fused CUDA weights drift from the CPU backend's";
}

// The paths are options of the network on every backend: unknown values
// are refused by the setters and by the description, and a version-2
// description (before the paths existed) gets the defaults.
TEST(ExecutionPaths, PathOptionsAreValidatedOnEveryBackend) {
  for (bp_backend backend : {BP_BACKEND_CPU, BP_BACKEND_CUDA}) {
    if (backend == BP_BACKEND_CUDA && bp_cuda_device_count() == 0) continue;
    SCOPED_TRACE(bp_backend_name(backend));
    tu::Ctx ctx;
    ASSERT_EQ(bp_context_create(backend, 0, &ctx.ctx), BP_OK);
    const int sizes[] = {3, 2};
    bp_network_desc desc;
    bp_network_desc_init(&desc, 2, sizes, 1);
    EXPECT_EQ(desc.version, 3u);
    const char *test_kernels = std::getenv("BP_TEST_KERNELS");  // kernel_path_env.cc
    EXPECT_EQ(desc.kernels, test_kernels && std::strcmp(test_kernels, "fused") == 0
                                ? BP_KERNELS_FUSED
                                : BP_KERNELS_REFERENCE);
    EXPECT_EQ(desc.products, BP_PRODUCTS_CUBLAS);
    desc.kernels = BP_KERNELS_FUSED;
    desc.products = BP_PRODUCTS_CUBLASLT;
    tu::Net net;
    ASSERT_EQ(bp_network_create_ex(ctx, &desc, &net.net), BP_OK) << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_get_kernel_path(net), BP_KERNELS_FUSED);
    EXPECT_EQ(bp_network_get_product_path(net), BP_PRODUCTS_CUBLASLT);
    EXPECT_EQ(bp_network_set_kernel_path(net, (bp_kernel_path)7), BP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(bp_context_last_error(ctx)).find("kernel path"), std::string::npos);
    EXPECT_EQ(bp_network_set_product_path(net, (bp_product_path)-1), BP_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bp_network_get_kernel_path(net), BP_KERNELS_FUSED) << "a refused value changes nothing";
    EXPECT_EQ(bp_network_set_kernel_path(nullptr, BP_KERNELS_FUSED), BP_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bp_network_get_kernel_path(nullptr), BP_KERNELS_REFERENCE);
    EXPECT_EQ(bp_network_get_product_path(nullptr), BP_PRODUCTS_CUBLAS);

    bp_network *none = nullptr;
    desc.kernels = (bp_kernel_path)2;
    EXPECT_EQ(bp_network_create_ex(ctx, &desc, &none), BP_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(none, nullptr);
    // A version-2 caller: its struct ends before kernels, whatever follows.
    bp_network_desc v2 = desc;
    v2.version = 2;
    v2.struct_size = (uint32_t)offsetof(bp_network_desc, kernels);
    tu::Net old;
    ASSERT_EQ(bp_network_create_ex(ctx, &v2, &old.net), BP_OK) << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_get_kernel_path(old), BP_KERNELS_REFERENCE);
    EXPECT_EQ(bp_network_get_product_path(old), BP_PRODUCTS_CUBLAS);
    // A version-3 struct too short for its version is refused.
    bp_network_desc short_v3 = desc;
    short_v3.kernels = BP_KERNELS_REFERENCE;
    short_v3.struct_size = (uint32_t)offsetof(bp_network_desc, products);
    EXPECT_EQ(bp_network_create_ex(ctx, &short_v3, &none), BP_ERR_UNSUPPORTED);
  }
}

}  // namespace
