// The device-pointer calls (bp_forward_device, bp_backward_device,
// bp_train_batch_device). On every backend: argument errors first, with the
// function named; then the CPU backend says BP_ERR_UNSUPPORTED. With a CUDA
// device: results bit-identical to the host-array calls on the same data,
// with a stream the test creates and with the legacy default stream;
// ordering against work queued on the caller's stream; a non-finite cost
// from NaN input skips the update on the device; pointers the device cannot
// read and streams under capture are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#ifdef BP_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "support/reference.h"
#include "support/test_util.h"

namespace {

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool contains(const std::string &s, const char *what) { return s.find(what) != std::string::npos; }

class DeviceApi : public testing::TestWithParam<bp_backend> {};

// Argument errors come first on every backend, each naming the function.
// The pointers are never dereferenced here: every call is refused before.
TEST_P(DeviceApi, ArgumentErrorsComeFirst) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {3, 4, 2};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, tu::fresh_seed(), &net.net), BP_OK);
  const std::vector<float> before = tu::all_params(net);
  // Addresses that must never be read (the calls refuse before using them).
  const float *X = reinterpret_cast<const float *>(0x1000);
  const float *Y = reinterpret_cast<const float *>(0x2000);
  float *out = reinterpret_cast<float *>(0x3000);
  const bp_status bad = BP_ERR_INVALID_ARGUMENT;

  EXPECT_EQ(bp_forward_device(nullptr, X, 4, out, nullptr), bad);
  EXPECT_EQ(bp_backward_device(nullptr, X, Y, 4, nullptr, nullptr), bad);
  EXPECT_EQ(bp_train_batch_device(nullptr, X, Y, 4, 0.1f, nullptr, nullptr), bad);

  auto check = [&](bp_status got, const char *fn, const char *what) {
    SCOPED_TRACE(testing::Message() << fn << ": " << what);
    EXPECT_EQ(got, bad);
    const std::string msg = bp_context_last_error(ctx);
    EXPECT_TRUE(contains(msg, fn)) << msg;
    EXPECT_TRUE(contains(msg, what)) << msg;
  };
  check(bp_forward_device(net, nullptr, 4, out, nullptr), "bp_forward_device", "X is NULL");
  check(bp_forward_device(net, X, 4, nullptr, nullptr), "bp_forward_device", "out is NULL");
  check(bp_forward_device(net, X, 0, out, nullptr), "bp_forward_device", "n = 0");
  check(bp_forward_device(net, X, (1 << 28) + 1, out, nullptr), "bp_forward_device",
        "out of range");
  check(bp_backward_device(net, nullptr, Y, 4, nullptr, nullptr), "bp_backward_device",
        "X is NULL");
  check(bp_backward_device(net, X, nullptr, 4, nullptr, nullptr), "bp_backward_device",
        "Y is NULL");
  check(bp_backward_device(net, X, Y, -2, nullptr, nullptr), "bp_backward_device", "n = -2");
  check(bp_train_batch_device(net, nullptr, Y, 4, 0.1f, nullptr, nullptr),
        "bp_train_batch_device", "X is NULL");
  check(bp_train_batch_device(net, X, nullptr, 4, 0.1f, nullptr, nullptr),
        "bp_train_batch_device", "Y is NULL");
  check(bp_train_batch_device(net, X, Y, 0, 0.1f, nullptr, nullptr), "bp_train_batch_device",
        "n = 0");
  check(bp_train_batch_device(net, X, Y, 4, NAN, nullptr, nullptr), "bp_train_batch_device",
        "learning rate");
  check(bp_train_batch_device(net, X, Y, 4, -INFINITY, nullptr, nullptr),
        "bp_train_batch_device", "learning rate");
  EXPECT_TRUE(same_bits(before, tu::all_params(net)));
}

INSTANTIATE_TEST_SUITE_P(Backends, DeviceApi, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

// The CPU backend has no device: valid calls are BP_ERR_UNSUPPORTED, with a
// message that says what is needed and what the context has. Host arrays
// are passed (valid memory), and nothing is computed or changed.
TEST(DeviceApiCpu, ValidCallsAreUnsupported) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {3, 4, 2};
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  const std::vector<float> before = tu::all_params(net);
  auto X = ref::random_vector(5 * 3, seed + 1);
  auto Y = ref::random_vector(5 * 2, seed + 2, 0.0f, 1.0f);
  std::vector<float> out(5 * 2, 7.0f);
  float cost = 7.0f;
  const bp_status results[] = {
      bp_forward_device(net, X.data(), 5, out.data(), nullptr),
      bp_backward_device(net, X.data(), Y.data(), 5, &cost, nullptr),
      bp_train_batch_device(net, X.data(), Y.data(), 5, 0.5f, &cost, nullptr),
  };
  const char *names[] = {"bp_forward_device", "bp_backward_device", "bp_train_batch_device"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i], BP_ERR_UNSUPPORTED) << names[i];
  }
  // The last message; each call wrote its own.
  const std::string msg = bp_context_last_error(ctx);
  EXPECT_TRUE(contains(msg, "bp_train_batch_device")) << msg;
  EXPECT_TRUE(contains(msg, "CUDA backend")) << msg;
  EXPECT_TRUE(contains(msg, "cpu")) << msg;
  EXPECT_EQ(bp_forward_device(net, X.data(), 5, out.data(), nullptr), BP_ERR_UNSUPPORTED);
  EXPECT_TRUE(contains(bp_context_last_error(ctx), "bp_forward_device"));
  EXPECT_TRUE(same_bits(std::vector<float>(5 * 2, 7.0f), out)) << "out was written";
  EXPECT_EQ(cost, 7.0f);
  EXPECT_TRUE(same_bits(before, tu::all_params(net)));
  // The network is unharmed.
  EXPECT_EQ(bp_train_batch(net, X.data(), Y.data(), 5, 0.5f, &cost), BP_OK);
}

#ifdef BP_WITH_CUDA

#define CUDA_OK(expr)                                                          \
  do {                                                                         \
    cudaError_t err_ = (expr);                                                 \
    ASSERT_EQ(err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(err_); \
  } while (0)

// A device buffer of floats; the test's own cudaMalloc, as a caller's.
class DevFloats {
 public:
  explicit DevFloats(size_t count) : count_(count) {
    if (cudaMalloc(&p_, count * sizeof(float)) != cudaSuccess) {
      p_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << count << " floats failed";
    }
  }
  ~DevFloats() {
    if (p_) cudaFree(p_);
  }
  DevFloats(const DevFloats &) = delete;
  DevFloats &operator=(const DevFloats &) = delete;
  float *get() const { return p_; }
  // Synchronous: the library's stream does not wait for the legacy stream's
  // copies, so the device is synchronized before the data is used.
  void upload(const std::vector<float> &v) {
    ASSERT_EQ(v.size(), count_);
    CUDA_OK(cudaMemcpy(p_, v.data(), count_ * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(cudaDeviceSynchronize());
  }
  void poison() {
    CUDA_OK(cudaMemset(p_, 0xFF, count_ * sizeof(float)));  // NaN in every float
    CUDA_OK(cudaDeviceSynchronize());
  }
  std::vector<float> download(cudaStream_t s) const {
    std::vector<float> v(count_);
    EXPECT_EQ(cudaMemcpyAsync(v.data(), p_, count_ * sizeof(float), cudaMemcpyDeviceToHost, s),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    return v;
  }

 private:
  float *p_ = nullptr;
  size_t count_;
};

class UserStream {
 public:
  UserStream() { EXPECT_EQ(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), cudaSuccess); }
  ~UserStream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class DeviceApiCuda : public testing::Test {
 protected:
  void SetUp() override {
    if (bp_cuda_device_count() == 0)
      GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");
    ASSERT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &ctx.ctx), BP_OK);
  }
  tu::Ctx ctx;
};

struct Shape {
  std::vector<int> sizes;
  int n;
};
const std::vector<Shape> kShapes = {
    {{1, 1, 1}, 1}, {{3, 5, 2}, 7}, {{37, 33, 65, 10}, 1000}, {{784, 100, 10}, 513}};

// Forward, backward and training steps through the device calls equal the
// host-array calls bit for bit, on a stream the test owns (use_null false)
// or on the legacy default stream.
void check_matches_host_calls(bp_context *ctx, bool use_null) {
  UserStream own;
  cudaStream_t stream = use_null ? nullptr : (cudaStream_t)own;
  for (const Shape &s : kShapes) {
    const uint64_t seed = tu::fresh_seed();
    const int L = (int)s.sizes.size(), s0 = s.sizes[0], sL = s.sizes.back();
    SCOPED_TRACE(testing::Message() << "sizes " << s0 << "->" << sL << " (" << L << " sizes), n "
                                    << s.n << ", seed " << seed
                                    << (use_null ? ", legacy stream" : ", own stream"));
    tu::Net host_net, dev_net;
    ASSERT_EQ(bp_network_create(ctx, L, s.sizes.data(), seed, &host_net.net), BP_OK);
    ASSERT_EQ(bp_network_create(ctx, L, s.sizes.data(), seed, &dev_net.net), BP_OK);
    DevFloats dX((size_t)s.n * s0), dY((size_t)s.n * sL), dOut((size_t)s.n * sL), dCost(1);

    // Forward.
    auto X = ref::random_vector((size_t)s.n * s0, seed + 1);
    dX.upload(X);
    dOut.poison();
    std::vector<float> host_out((size_t)s.n * sL, NAN);
    ASSERT_EQ(bp_forward(host_net, X.data(), s.n, host_out.data()), BP_OK);
    ASSERT_EQ(bp_forward_device(dev_net, dX.get(), s.n, dOut.get(), stream), BP_OK)
        << bp_context_last_error(ctx);
    EXPECT_TRUE(same_bits(host_out, dOut.download(stream))) << "forward outputs";

    // Backward: the cost and the gradients.
    auto Y = ref::random_vector((size_t)s.n * sL, seed + 2, 0.0f, 1.0f);
    dY.upload(Y);
    dCost.poison();
    float host_cost = NAN;
    ASSERT_EQ(bp_backward(host_net, X.data(), Y.data(), s.n, &host_cost), BP_OK);
    ASSERT_EQ(bp_backward_device(dev_net, dX.get(), dY.get(), s.n, dCost.get(), stream), BP_OK)
        << bp_context_last_error(ctx);
    EXPECT_TRUE(same_bits({host_cost}, dCost.download(stream))) << "cost";
    EXPECT_GT(host_cost, 0.0f);
    for (int i = 0; i < L - 1; ++i) {
      const size_t nw = (size_t)s.sizes[i] * s.sizes[i + 1];
      std::vector<float> ga(nw), gb(nw), ba(s.sizes[i + 1]), bb(s.sizes[i + 1]);
      ASSERT_EQ(bp_network_get_gradient(host_net, i, ga.data(), ba.data()), BP_OK);
      ASSERT_EQ(bp_network_get_gradient(dev_net, i, gb.data(), bb.data()), BP_OK);
      EXPECT_TRUE(same_bits(ga, gb)) << "dW of layer " << i;
      EXPECT_TRUE(same_bits(ba, bb)) << "db of layer " << i;
    }

    // Training steps on fresh data each step.
    const std::vector<float> initial = tu::all_params(dev_net);
    for (int step = 0; step < 3; ++step) {
      auto Xs = ref::random_vector((size_t)s.n * s0, seed + 10 + step);
      auto Ys = ref::random_vector((size_t)s.n * sL, seed + 20 + step, 0.0f, 1.0f);
      dX.upload(Xs);
      dY.upload(Ys);
      dCost.poison();
      float c = NAN;
      ASSERT_EQ(bp_train_batch(host_net, Xs.data(), Ys.data(), s.n, 0.5f, &c), BP_OK);
      ASSERT_EQ(bp_train_batch_device(dev_net, dX.get(), dY.get(), s.n, 0.5f, dCost.get(), stream),
                BP_OK)
          << bp_context_last_error(ctx);
      EXPECT_TRUE(same_bits({c}, dCost.download(stream))) << "step " << step;
      EXPECT_TRUE(same_bits(tu::all_params(host_net), tu::all_params(dev_net))) << "step " << step;
    }
    EXPECT_FALSE(same_bits(initial, tu::all_params(dev_net))) << "training changed nothing";
    // cost may be NULL.
    ASSERT_EQ(bp_train_batch_device(dev_net, dX.get(), dY.get(), s.n, 0.5f, nullptr, stream),
              BP_OK);
    CUDA_OK(cudaStreamSynchronize(stream));
  }
}

TEST_F(DeviceApiCuda, MatchesHostCallsOnOwnStream) { check_matches_host_calls(ctx, false); }

TEST_F(DeviceApiCuda, MatchesHostCallsOnLegacyStream) { check_matches_host_calls(ctx, true); }

// Ordering: the input is written by cudaMemcpyAsync on the caller's stream
// right before each call and the output read back on it right after, into
// the same device buffers every time; only the caller's stream is ever
// synchronized, at the end. If the library did not wait for the copy, or
// the read-back did not wait for the library, outputs would mix.
TEST_F(DeviceApiCuda, OrdersAgainstTheCallersStream) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
#ifdef BP_KERNEL_EMULATION  // tests/emu: the CPU emulation, where every call is synchronous
  const int sizes[] = {64, 96, 96, 16};
  const int n = 256, rounds = 3, s0 = 64, sL = 16;
#else
  const int sizes[] = {512, 1024, 1024, 16};
  const int n = 2048, rounds = 6, s0 = 512, sL = 16;
#endif
  tu::Net net, ref_net;
  ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &net.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &ref_net.net), BP_OK);
  UserStream stream;
  DevFloats dX((size_t)n * s0), dY((size_t)n * sL), dOut((size_t)n * sL), dCost(1);
  // Pinned host memory, so the copies are truly asynchronous.
  float *hX = nullptr, *hY = nullptr, *hOut = nullptr, *hCost = nullptr;
  const size_t nx = (size_t)n * s0, ny = (size_t)n * sL;
  CUDA_OK(cudaMallocHost((void **)&hX, rounds * nx * sizeof(float)));
  CUDA_OK(cudaMallocHost((void **)&hY, rounds * ny * sizeof(float)));
  CUDA_OK(cudaMallocHost((void **)&hOut, rounds * ny * sizeof(float)));
  CUDA_OK(cudaMallocHost((void **)&hCost, rounds * sizeof(float)));
  for (int r = 0; r < rounds; ++r) {
    auto X = ref::random_vector(nx, seed + 1 + r);
    auto Y = ref::random_vector(ny, seed + 100 + r, 0.0f, 1.0f);
    std::memcpy(hX + r * nx, X.data(), nx * sizeof(float));
    std::memcpy(hY + r * ny, Y.data(), ny * sizeof(float));
  }
  for (size_t i = 0; i < rounds * ny; ++i) hOut[i] = NAN;
  // Each round: write X and Y, train one step (cost out), forward with the
  // new weights (outputs out), read both back; all on the caller's stream.
  for (int r = 0; r < rounds; ++r) {
    CUDA_OK(cudaMemcpyAsync(dX.get(), hX + r * nx, nx * sizeof(float), cudaMemcpyHostToDevice,
                            stream));
    CUDA_OK(cudaMemcpyAsync(dY.get(), hY + r * ny, ny * sizeof(float), cudaMemcpyHostToDevice,
                            stream));
    ASSERT_EQ(bp_train_batch_device(net, dX.get(), dY.get(), n, 0.5f, dCost.get(), stream), BP_OK)
        << bp_context_last_error(ctx);
    ASSERT_EQ(bp_forward_device(net, dX.get(), n, dOut.get(), stream), BP_OK)
        << bp_context_last_error(ctx);
    CUDA_OK(cudaMemcpyAsync(hOut + r * ny, dOut.get(), ny * sizeof(float), cudaMemcpyDeviceToHost,
                            stream));
    CUDA_OK(cudaMemcpyAsync(hCost + r, dCost.get(), sizeof(float), cudaMemcpyDeviceToHost,
                            stream));
  }
  CUDA_OK(cudaStreamSynchronize(stream));
  for (int r = 0; r < rounds; ++r) {
    float c = NAN;
    ASSERT_EQ(bp_train_batch(ref_net, hX + r * nx, hY + r * ny, n, 0.5f, &c), BP_OK);
    std::vector<float> want(ny);
    ASSERT_EQ(bp_forward(ref_net, hX + r * nx, n, want.data()), BP_OK);
    EXPECT_TRUE(same_bits({c}, {hCost[r]})) << "round " << r << ": " << c << " vs " << hCost[r];
    EXPECT_TRUE(same_bits(want, std::vector<float>(hOut + r * ny, hOut + (r + 1) * ny)))
        << "round " << r;
  }
  EXPECT_TRUE(same_bits(tu::all_params(ref_net), tu::all_params(net)));
  cudaFreeHost(hX);
  cudaFreeHost(hY);
  cudaFreeHost(hOut);
  cudaFreeHost(hCost);
}

// NaN in the device input is not scanned for: the cost comes out NaN, the
// update is skipped on the device, the call itself returns BP_OK, and the
// weights are exactly as before. A good batch afterwards trains.
TEST_F(DeviceApiCuda, NonFiniteCostSkipsTheUpdate) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {20, 30, 5};
  const int n = 64;
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  UserStream stream;
  DevFloats dX((size_t)n * 20), dY((size_t)n * 5), dCost(1);
  auto X = ref::random_vector((size_t)n * 20, seed + 1);
  auto Y = ref::random_vector((size_t)n * 5, seed + 2, 0.0f, 1.0f);
  X[(size_t)n * 20 / 2] = NAN;
  dX.upload(X);
  dY.upload(Y);
  const std::vector<float> before = tu::all_params(net);
  ASSERT_EQ(bp_train_batch_device(net, dX.get(), dY.get(), n, 0.5f, dCost.get(), stream), BP_OK)
      << bp_context_last_error(ctx);
  EXPECT_TRUE(std::isnan(dCost.download(stream)[0]));
  EXPECT_TRUE(same_bits(before, tu::all_params(net)));
  X[(size_t)n * 20 / 2] = 0.25f;
  dX.upload(X);
  ASSERT_EQ(bp_train_batch_device(net, dX.get(), dY.get(), n, 0.5f, dCost.get(), stream), BP_OK);
  EXPECT_TRUE(std::isfinite(dCost.download(stream)[0]));
  EXPECT_FALSE(same_bits(before, tu::all_params(net)));
}

// Plain host memory would make the device fault (poisoning the process's
// CUDA context) unless the device reads pageable memory (HMM, ATS): then it
// is refused, else accepted and correct.
TEST_F(DeviceApiCuda, HostPointersAreRefusedUnlessTheDeviceReadsThem) {
  const uint64_t seed = tu::fresh_seed();
  const int sizes[] = {6, 8, 3};
  const int n = 10;
  tu::Net net, ref_net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &ref_net.net), BP_OK);
  int pageable = 0;
  CUDA_OK(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0));
  auto X = ref::random_vector((size_t)n * 6, seed + 1);
  DevFloats dOut((size_t)n * 3), dX((size_t)n * 6);
  dX.upload(X);
  std::vector<float> host_out((size_t)n * 3, NAN);
  UserStream stream;
  if (!pageable) {
    EXPECT_EQ(bp_forward_device(net, X.data(), n, dOut.get(), stream), BP_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(bp_context_last_error(ctx), "X is host memory"))
        << bp_context_last_error(ctx);
    EXPECT_EQ(bp_forward_device(net, dX.get(), n, host_out.data(), stream),
              BP_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(bp_context_last_error(ctx), "out is host memory"))
        << bp_context_last_error(ctx);
  } else {
    ASSERT_EQ(bp_forward_device(net, X.data(), n, dOut.get(), stream), BP_OK);
    std::vector<float> want((size_t)n * 3);
    ASSERT_EQ(bp_forward(ref_net, X.data(), n, want.data()), BP_OK);
    EXPECT_TRUE(same_bits(want, dOut.download(stream)));
  }
  // The context still works either way.
  ASSERT_EQ(bp_forward_device(net, dX.get(), n, dOut.get(), stream), BP_OK);
  CUDA_OK(cudaStreamSynchronize(stream));
}

// A stream being captured into a graph is refused, and the capture is not
// broken by the refusal.
TEST_F(DeviceApiCuda, StreamsUnderCaptureAreRefused) {
  const int sizes[] = {4, 4, 2};
  const int n = 8;
  tu::Net net;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, tu::fresh_seed(), &net.net), BP_OK);
  DevFloats dX((size_t)n * 4), dOut((size_t)n * 2);
  dX.upload(ref::random_vector((size_t)n * 4, 5));
  UserStream stream;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  EXPECT_EQ(bp_forward_device(net, dX.get(), n, dOut.get(), stream), BP_ERR_UNSUPPORTED);
  EXPECT_TRUE(contains(bp_context_last_error(ctx), "captured")) << bp_context_last_error(ctx);
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  CUDA_OK(cudaGraphDestroy(graph));
  EXPECT_EQ(bp_forward_device(net, dX.get(), n, dOut.get(), stream), BP_OK)
      << bp_context_last_error(ctx);
  CUDA_OK(cudaStreamSynchronize(stream));
}

#endif  // BP_WITH_CUDA

}  // namespace
