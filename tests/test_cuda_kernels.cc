// Each CUDA kernel launcher of kernels/kernels.cuh against a host reference
// built from the same formulas (elementwise.cuh, bp_example_correct
// included), on fresh random inputs, at sizes that are not multiples of the
// block size (one element, 37 x 1000, about 1000 x 3000). Outputs are
// poisoned with NaN before each launch, so an element the kernel fails to
// write cannot pass. Reductions are also run twice and must be bit-identical.
//
// Tolerances, and why:
//   - elementwise: 1e-6 relative. The device expf may differ from the host's
//     by 2 ulp; where sigma'(z) = s (1 - s) cancels (s near 1) that becomes an
//     absolute error of a few 1e-7, hence an absolute floor of 1e-6 on the
//     error kernels. The SGD update may be fused into one FMA on the device:
//     1e-6 of |p| + |lr g|.
//   - reductions: 1e-5 relative to a double-precision host sum, relative to
//     the sum of magnitudes where the terms have mixed signs (the bias
//     gradient), since cancellation makes the result itself a poor scale.
//   - the accuracy count and the gather: exact.
//
// Seeds are fresh per run (std::random_device) unless BP_TEST_SEED is set;
// each failure prints the seed that reproduces it.
//
// The same file also builds as backprop_emu_tests (tests/emu): the kernel
// sources run on the CPU, one fiber per CUDA thread, so every test here also
// runs on machines without a GPU (ctest names them emu/CudaKernels.*), and
// under ASan/UBSan in the sanitizer build. It checks the kernels' logic
// (indexing, tiles, barriers, tickets, the order of sums), not the GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backprop.h"
#include "elementwise.cuh"
#include "internal.h"
#include "kernels.cuh"

namespace {

// ---- Helpers ----------------------------------------------------------------

uint64_t test_seed(uint64_t salt) {
  static const uint64_t base = [] {
    if (const char *s = std::getenv("BP_TEST_SEED")) return (uint64_t)std::strtoull(s, nullptr, 0);
    std::random_device rd;
    return ((uint64_t)rd() << 32) ^ rd();
  }();
  // Different per test (salt) and per case, the same for a given base.
  return base ^ (salt * 0x9e3779b97f4a7c15ULL);
}

std::vector<float> random_floats(std::mt19937 &rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v) {
    do x = dist(rng);
    while (x == 0.0f);  // never zeros: a kernel that writes 0 must not pass by luck
  }
  return v;
}

// Device buffer of T; poison() fills every byte with 0xFF, which is a NaN as
// float and as double.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    cudaError_t err = cudaMalloc(&ptr_, std::max<size_t>(count, 1) * sizeof(T));
    if (err != cudaSuccess) {
      ptr_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << count << " elements: " << cudaGetErrorString(err);
    }
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  T *get() const { return ptr_; }
  bool ok() const { return ptr_ != nullptr; }
  // Both wait for the device: a host-to-device cudaMemcpy may return before
  // the data lands, and cudaMemset is asynchronous, while the kernels run on a
  // non-blocking stream that does not wait for the legacy default stream.
  void upload(const std::vector<T> &v) {
    ASSERT_EQ(v.size(), count_);
    ASSERT_EQ(cudaMemcpy(ptr_, v.data(), count_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  void poison() {
    ASSERT_EQ(cudaMemset(ptr_, 0xFF, count_ * sizeof(T)), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(count_);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  T *ptr_ = nullptr;
  size_t count_;
};

// A non-blocking stream, like the backend's. Synchronous cudaMemcpy does not
// wait for it, so every check first calls sync().
class Stream {
 public:
  Stream() { EXPECT_EQ(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }
  cudaError_t sync() const { return cudaStreamSynchronize(s_); }

 private:
  cudaStream_t s_ = nullptr;
};

// Compares got[i] with ref[i] for every i: |got - ref| <= tol(i). NaN (an
// unwritten element) always fails. Reports the count and the first few.
template <class T>
void expect_close(const std::vector<T> &got, const std::vector<T> &ref,
                  const std::function<double(size_t)> &tol, const char *what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    double diff = std::fabs((double)got[i] - (double)ref[i]);
    if (!(diff <= tol(i))) {  // false for NaN too
      if (bad < 5)
        first += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + ", want " +
                 std::to_string(ref[i]) + " (tolerance " + std::to_string(tol(i)) + ")";
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off" << first;
}

template <class T>
bool bit_identical(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

struct Shape {
  int width, n;
};
// Not multiples of the block size; one element; a large one. Built as the
// CPU emulation of the kernels (BP_KERNEL_EMULATION, tests/emu), where each
// CUDA thread is a host thread, every list keeps its small shapes and trades
// the large ones for moderate ones that still span several blocks and tiles.
#ifdef BP_KERNEL_EMULATION
const Shape kShapes[] = {{37, 1000}, {1, 1}, {64, 129}};
#else
const Shape kShapes[] = {{37, 1000}, {1, 1}, {1000, 3000}};
#endif

#define CUDA_OK(expr)                                                          \
  do {                                                                         \
    cudaError_t err_ = (expr);                                                 \
    ASSERT_EQ(err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(err_); \
  } while (0)

// ---- activation.cu ------------------------------------------------------------

TEST(CudaKernels, BiasSigmoid) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kShapes) {
    const uint64_t seed = test_seed(101 + s.width);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> Z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> b = random_floats(rng, (size_t)s.width, -2.0f, 2.0f);
    if (total > 2) {  // the saturated ends too: sigmoid must give 0 and 1, never NaN
      Z[0] = -120.0f;
      Z[1] = 120.0f;
    }
    std::vector<float> z_ref(total), a_ref(total);
    for (int k = 0; k < s.n; ++k)
      for (int j = 0; j < s.width; ++j) {
        size_t i = (size_t)k * s.width + j;
        z_ref[i] = Z[i] + b[j];
        a_ref[i] = bp_sigmoid(z_ref[i]);
      }
    DeviceBuffer<float> dz(total), da(total), db(s.width);
    ASSERT_TRUE(dz.ok() && da.ok() && db.ok());
    dz.upload(Z);
    db.upload(b);
    da.poison();
    CUDA_OK(bp_launch_bias_sigmoid(dz.get(), da.get(), db.get(), s.width, s.n, stream));
    CUDA_OK(stream.sync());
    // z + b is one float addition on both sides: exact.
    expect_close(
        dz.download(), z_ref, [](size_t) { return 0.0; }, "z");
    expect_close(
        da.download(), a_ref, [&](size_t i) { return 1e-6 * std::fabs(a_ref[i]) + 1e-30; }, "a");
  }
}

// ---- errors.cu -----------------------------------------------------------------

TEST(CudaKernels, OutputError) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kShapes) {
    const uint64_t seed = test_seed(201 + s.width);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> a(total), y = random_floats(rng, total, 0.0f, 1.0f);
    for (size_t i = 0; i < total; ++i) a[i] = bp_sigmoid(z[i]);
    std::vector<float> ref(total);
    for (size_t i = 0; i < total; ++i) ref[i] = bp_output_error(a[i], y[i], z[i]);
    DeviceBuffer<float> da(total), dy(total), dz(total), dd(total);
    ASSERT_TRUE(da.ok() && dy.ok() && dz.ok() && dd.ok());
    da.upload(a);
    dy.upload(y);
    dz.upload(z);
    dd.poison();
    CUDA_OK(bp_launch_output_error(da.get(), dy.get(), dz.get(), dd.get(), total, stream));
    CUDA_OK(stream.sync());
    expect_close(
        dd.download(), ref, [&](size_t i) { return 1e-6 * std::fabs(ref[i]) + 1e-6; }, "delta");
  }
}

TEST(CudaKernels, HiddenErrorInPlaceAndSeparate) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kShapes) {
    const uint64_t seed = test_seed(301 + s.width);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> g = random_floats(rng, total, -1.0f, 1.0f);
    std::vector<float> z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> ref(total);
    for (size_t i = 0; i < total; ++i) ref[i] = bp_hidden_error(g[i], z[i]);
    auto tol = [&](size_t i) { return 1e-6 * std::fabs(ref[i]) + 1e-6; };

    DeviceBuffer<float> dg(total), dz(total), dd(total);
    ASSERT_TRUE(dg.ok() && dz.ok() && dd.ok());
    dg.upload(g);
    dz.upload(z);
    dd.poison();
    CUDA_OK(bp_launch_hidden_error(dg.get(), dz.get(), dd.get(), total, stream));
    CUDA_OK(stream.sync());
    expect_close(dd.download(), ref, tol, "separate output");
    expect_close(
        dg.download(), g, [](size_t) { return 0.0; }, "g left alone");

    // In place, as the backend calls it.
    CUDA_OK(bp_launch_hidden_error(dg.get(), dz.get(), dg.get(), total, stream));
    CUDA_OK(stream.sync());
    expect_close(dg.download(), ref, tol, "in place");
  }
}

// ---- sgd.cu --------------------------------------------------------------------

TEST(CudaKernels, SgdUpdateAndDeviceSideSkip) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
#ifdef BP_KERNEL_EMULATION
  const size_t counts[] = {1, 37000, 300000 + 17};
#else
  const size_t counts[] = {1, 37000, 3000000 + 17};
#endif
  for (size_t count : counts) {
    const uint64_t seed = test_seed(401 + count);
    SCOPED_TRACE(testing::Message() << "count " << count << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    std::vector<float> p = random_floats(rng, count, -2.0f, 2.0f);
    std::vector<float> g = random_floats(rng, count, -1.0f, 1.0f);
    const float lr = 0.37f;
    std::vector<float> ref(count);
    for (size_t i = 0; i < count; ++i) ref[i] = bp_sgd_update(p[i], g[i], lr);
    auto tol = [&](size_t i) { return 1e-6 * (std::fabs(ref[i]) + std::fabs(lr * g[i])); };

    DeviceBuffer<float> dp(count), dg(count), dcost(1);
    ASSERT_TRUE(dp.ok() && dg.ok() && dcost.ok());
    dg.upload(g);

    // No gate.
    dp.upload(p);
    CUDA_OK(bp_launch_sgd(dp.get(), dg.get(), count, lr, nullptr, nullptr, nullptr, stream));
    CUDA_OK(stream.sync());
    expect_close(dp.download(), ref, tol, "ungated");

    // Gate with a finite cost: applied.
    dp.upload(p);
    dcost.upload({0.25f});
    CUDA_OK(bp_launch_sgd(dp.get(), dg.get(), count, lr, dcost.get(), nullptr, nullptr, stream));
    CUDA_OK(stream.sync());
    expect_close(dp.download(), ref, tol, "finite cost");

    // Gate with NaN or Inf: nothing changes, bit for bit.
    const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                         std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity()};
    for (float c : bad) {
      dp.upload(p);
      dcost.upload({c});
      CUDA_OK(bp_launch_sgd(dp.get(), dg.get(), count, lr, dcost.get(), nullptr, nullptr, stream));
      CUDA_OK(stream.sync());
      EXPECT_TRUE(bit_identical(dp.download(), p)) << "cost " << c << " must skip the update";
    }
  }
}

// ---- gather.cu -------------------------------------------------------------------

TEST(CudaKernels, GatherColumnsByPermutation) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  struct Case {
    int n_in, n_out, n_total, start, bn;
  };
#ifdef BP_KERNEL_EMULATION
  const Case cases[] = {
      {37, 10, 1000, 123, 500}, {1, 1, 1, 0, 1}, {100, 3, 300, 0, 300}, {5, 2, 777, 700, 77}};
#else
  const Case cases[] = {
      {37, 10, 1000, 123, 500}, {1, 1, 1, 0, 1}, {1000, 3, 3000, 0, 3000}, {5, 2, 777, 700, 77}};
#endif
  for (const Case &c : cases) {
    const uint64_t seed = test_seed(501 + c.n_in + c.start);
    SCOPED_TRACE(testing::Message()
                 << "n_in " << c.n_in << ", n_out " << c.n_out << ", n_total " << c.n_total
                 << ", start " << c.start << ", bn " << c.bn << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    std::vector<float> X = random_floats(rng, (size_t)c.n_in * c.n_total, -1.0f, 1.0f);
    std::vector<float> Y = random_floats(rng, (size_t)c.n_out * c.n_total, 0.0f, 1.0f);
    std::vector<int32_t> perm((size_t)c.n_total);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<float> x_ref((size_t)c.n_in * c.bn), y_ref((size_t)c.n_out * c.bn);
    for (int k = 0; k < c.bn; ++k) {
      size_t src = (size_t)perm[(size_t)c.start + k];
      for (int j = 0; j < c.n_in; ++j) x_ref[(size_t)k * c.n_in + j] = X[src * c.n_in + j];
      for (int j = 0; j < c.n_out; ++j) y_ref[(size_t)k * c.n_out + j] = Y[src * c.n_out + j];
    }
    DeviceBuffer<float> dX(X.size()), dY(Y.size()), dx(x_ref.size()), dy(y_ref.size());
    DeviceBuffer<int32_t> dperm(perm.size());
    ASSERT_TRUE(dX.ok() && dY.ok() && dx.ok() && dy.ok() && dperm.ok());
    dX.upload(X);
    dY.upload(Y);
    dperm.upload(perm);
    dx.poison();
    dy.poison();
    CUDA_OK(bp_launch_gather(dX.get(), dY.get(), c.n_in, c.n_out, dperm.get(), c.start, c.bn,
                             dx.get(), dy.get(), stream));
    CUDA_OK(stream.sync());
    EXPECT_TRUE(bit_identical(dx.download(), x_ref)) << "inputs";
    EXPECT_TRUE(bit_identical(dy.download(), y_ref)) << "targets";
  }
}

// ---- reduce.cu: bias gradient ---------------------------------------------------------

TEST(CudaKernels, BiasGradientMatchesDoubleSumAndIsDeterministic) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  // Beyond kShapes: many column chunks (n >> 128), and n past the point where
  // the chunk width must grow to keep the grid's y dimension <= 65535.
#ifdef BP_KERNEL_EMULATION
  const Shape shapes[] = {{37, 1000}, {1, 1}, {64, 129}, {3, 2003}};
#else
  const Shape shapes[] = {{37, 1000}, {1, 1}, {1000, 3000}, {3, 100003}, {1, 9000001}};
#endif
  for (const Shape &s : shapes) {
    const uint64_t seed = test_seed(601 + s.width + s.n);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> delta = random_floats(rng, total, -1.0f, 1.0f);
    std::vector<float> ref(s.width);
    std::vector<double> magnitude(s.width);
    for (int j = 0; j < s.width; ++j) {
      double sum = 0, abs_sum = 0;
      for (int k = 0; k < s.n; ++k) {
        double d = delta[(size_t)k * s.width + j];
        sum += d;
        abs_sum += std::fabs(d);
      }
      ref[j] = (float)(sum / s.n);
      magnitude[j] = abs_sum / s.n;
    }
    const size_t n_partials = bp_bias_grad_partials_count(s.width, s.n);
    ASSERT_GT(n_partials, 0u);
    DeviceBuffer<float> dd(total), dpart(n_partials), ddb(s.width);
    ASSERT_TRUE(dd.ok() && dpart.ok() && ddb.ok());
    dd.upload(delta);

    std::vector<float> runs[2];
    for (auto &run : runs) {
      dpart.poison();
      ddb.poison();
      CUDA_OK(bp_launch_bias_grad(dd.get(), s.width, s.n, dpart.get(), ddb.get(), stream));
      CUDA_OK(stream.sync());
      run = ddb.download();
    }
    expect_close(
        runs[0], ref, [&](size_t j) { return 1e-5 * magnitude[j] + 1e-6 * std::fabs(ref[j]); },
        "db");
    EXPECT_TRUE(bit_identical(runs[0], runs[1])) << "two runs differ";
  }
  // Scratch sized for a larger n serves every smaller one.
  for (int n = 1; n < 20000000; n = n * 3 + 1)
    EXPECT_LE(bp_bias_grad_partials_count(7, n), bp_bias_grad_partials_count(7, n * 3 + 1));
}

// ---- reduce.cu: cost -----------------------------------------------------------------

TEST(CudaKernels, CostMatchesDoubleSumAndIsDeterministic) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
#ifdef BP_KERNEL_EMULATION
  const Shape shapes[] = {{37, 1000}, {1, 1}, {64, 129}, {10, 601}};
#else
  const Shape shapes[] = {{37, 1000}, {1, 1}, {1000, 3000}, {10, 60001}};
#endif
  for (const Shape &s : shapes) {
    const uint64_t seed = test_seed(701 + s.width + s.n);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> a = random_floats(rng, total, 0.0f, 1.0f);
    std::vector<float> y = random_floats(rng, total, 0.0f, 1.0f);
    double sum = 0;
    for (size_t i = 0; i < total; ++i) sum += bp_cost_term(a[i], y[i]);
    const double ref = sum / s.n;

    const size_t n_partials = bp_cost_partials_count(s.width, s.n);
    ASSERT_GT(n_partials, 0u);
    DeviceBuffer<float> da(total), dy(total), dcost(1);
    DeviceBuffer<double> dpart(n_partials), dacc(1);
    DeviceBuffer<int> dskip(1);
    ASSERT_TRUE(da.ok() && dy.ok() && dcost.ok() && dpart.ok() && dacc.ok() && dskip.ok());
    da.upload(a);
    dy.upload(y);

    // Plain: the mean only, twice, bit-identical.
    float runs[2];
    for (float &run : runs) {
      dpart.poison();
      dcost.poison();
      CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dpart.get(), dcost.get(), nullptr,
                             nullptr, stream));
      CUDA_OK(stream.sync());
      run = dcost.download()[0];
    }
    EXPECT_LE(std::fabs(runs[0] - ref), 1e-5 * ref) << "cost " << runs[0] << " vs " << ref;
    EXPECT_EQ(std::memcmp(&runs[0], &runs[1], sizeof(float)), 0) << "two runs differ";

    // Training accumulation: finite, so the total is added and nothing skipped.
    dacc.upload({1.5});
    dskip.upload({7});
    CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dpart.get(), dcost.get(), dacc.get(),
                           dskip.get(), stream));
    CUDA_OK(stream.sync());
    EXPECT_LE(std::fabs(dacc.download()[0] - 1.5 - sum), 1e-5 * sum) << "accumulated total";
    EXPECT_EQ(dskip.download()[0], 7);

    // Evaluation accumulation (no skip counter): added as well.
    dacc.upload({0.0});
    CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dpart.get(), dcost.get(), dacc.get(),
                           nullptr, stream));
    CUDA_OK(stream.sync());
    EXPECT_LE(std::fabs(dacc.download()[0] - sum), 1e-5 * sum) << "evaluation total";

    // A NaN in the batch: training counts a skip and leaves the sum alone...
    std::vector<float> a_bad = a;
    a_bad[total / 2] = std::numeric_limits<float>::quiet_NaN();
    da.upload(a_bad);
    dacc.upload({1.5});
    dskip.upload({7});
    CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dpart.get(), dcost.get(), dacc.get(),
                           dskip.get(), stream));
    CUDA_OK(stream.sync());
    EXPECT_TRUE(std::isnan(dcost.download()[0]));
    EXPECT_EQ(dacc.download()[0], 1.5) << "a skipped batch must not be summed";
    EXPECT_EQ(dskip.download()[0], 8);
    // ...while evaluation propagates it.
    dacc.upload({1.5});
    CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dpart.get(), dcost.get(), dacc.get(),
                           nullptr, stream));
    CUDA_OK(stream.sync());
    EXPECT_TRUE(std::isnan(dacc.download()[0]));
  }
  for (int n = 1; n < 20000000; n = n * 3 + 1)
    EXPECT_LE(bp_cost_partials_count(7, n), bp_cost_partials_count(7, n * 3 + 1));
}

// ---- reduce.cu: accuracy ----------------------------------------------------------------

TEST(CudaKernels, AccuracyCountMatchesExampleRule) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
#ifdef BP_KERNEL_EMULATION
  const Shape shapes[] = {{37, 1000}, {1, 1}, {1, 1001}, {10, 3007}, {64, 129}};
#else
  const Shape shapes[] = {{37, 1000}, {1, 1}, {1, 1001}, {10, 300007}, {1000, 3000}};
#endif
  for (const Shape &s : shapes) {
    const uint64_t seed = test_seed(801 + s.width + s.n);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    // Values on a coarse grid (multiples of 1/8), so ties are common and the
    // first-index rule is exercised; 0.5 itself appears for width 1.
    std::vector<float> a(total), y(total);
    std::uniform_int_distribution<int> eighth(1, 8);
    for (size_t i = 0; i < total; ++i) {
      a[i] = (float)eighth(rng) / 8.0f;
      y[i] = (float)eighth(rng) / 8.0f;
    }
    uint64_t ref = 0;
    for (int k = 0; k < s.n; ++k)
      ref += bp_example_correct(&a[(size_t)k * s.width], &y[(size_t)k * s.width], s.width, 1);
    if (s.n > 10) {
      ASSERT_GT(ref, 0u) << "test data too weak";
      ASSERT_LT(ref, (uint64_t)s.n) << "test data too weak";
    }

    DeviceBuffer<float> da(total), dy(total);
    DeviceBuffer<unsigned long long> dcount(1);
    ASSERT_TRUE(da.ok() && dy.ok() && dcount.ok());
    da.upload(a);
    dy.upload(y);
    dcount.upload({5ULL});  // the kernel adds to the counter
    CUDA_OK(bp_launch_accuracy(da.get(), dy.get(), s.width, s.n, dcount.get(), stream));
    CUDA_OK(stream.sync());
    EXPECT_EQ(dcount.download()[0], 5ULL + ref);
  }
}

// ---- Arguments --------------------------------------------------------------------------

TEST(CudaKernels, BadArgumentsLaunchNothing) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceBuffer<float> buf(16);
  DeviceBuffer<double> part(16);
  ASSERT_TRUE(buf.ok() && part.ok());
  float *p = buf.get();
  EXPECT_EQ(bp_launch_bias_sigmoid(p, p + 8, p, -1, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_bias_grad(p, 0, 4, p, p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_cost(p, p, 1, 0, part.get(), p, nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_sgd(nullptr, p, 4, 0.1f, nullptr, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_gather(p, p, 1, 1, nullptr, 0, 1, p, p, nullptr), cudaErrorInvalidValue);
  // Empty problems are no-ops.
  EXPECT_EQ(bp_launch_output_error(p, p, p, p + 8, 0, nullptr), cudaSuccess);
  EXPECT_EQ(bp_launch_hidden_error(p, p, p, 0, nullptr), cudaSuccess);
  EXPECT_EQ(bp_launch_accuracy(p, p, 1, 0, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_bias_grad_partials_count(0, 5), 0u);
  EXPECT_EQ(bp_cost_partials_count(5, 0), 0u);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// ---- fused.cu: each fused kernel against the reference kernels ----------------------
//
// The reference launchers above run on the same inputs; the fused outputs
// must match them bit for bit where the design says so (delta, a, db: the
// same formulas on the same floats, the bias sums in the same order), and
// the cost to double rounding (a different partition of the same double
// sum). Each fused launch runs twice on one counter: the second run checks
// that the last block left the counter at 0 and that results repeat exactly.

// Shapes for the fused kernels: many column chunks, more than one row tile,
// a chunk width that grows (n past 65535 * 128), batch 1; widths that are
// multiples of 4 take the float4 path (1000, 64, 4, 1024), the others the
// scalar one.
#ifdef BP_KERNEL_EMULATION
const Shape kFusedShapes[] = {{37, 1000}, {1, 1},    {64, 129}, {10, 4096},
                              {3, 2003},  {64, 513}, {4, 3},    {1024, 9}};
#else
const Shape kFusedShapes[] = {{37, 1000}, {1, 1},    {1000, 3000}, {10, 4096},  {3, 100003},
                              {1, 9000001}, {64, 513}, {4, 3},       {1024, 129}};
#endif

TEST(CudaKernels, FusedBiasSigmoidInPlaceMatchesReference) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kFusedShapes) {
    const uint64_t seed = test_seed(901 + s.width);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> Z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> b = random_floats(rng, (size_t)s.width, -2.0f, 2.0f);
    if (total > 2) {
      Z[0] = -120.0f;
      Z[1] = 120.0f;
    }
    DeviceBuffer<float> dz(total), da(total), dza(total), db(s.width);
    ASSERT_TRUE(dz.ok() && da.ok() && dza.ok() && db.ok());
    dz.upload(Z);
    dza.upload(Z);
    db.upload(b);
    da.poison();
    CUDA_OK(bp_launch_bias_sigmoid(dz.get(), da.get(), db.get(), s.width, s.n, stream));
    CUDA_OK(bp_launch_bias_sigmoid_inplace(dza.get(), db.get(), s.width, s.n, stream));
    CUDA_OK(stream.sync());
    EXPECT_TRUE(bit_identical(dza.download(), da.download())) << "in-place a differs";
  }
}

TEST(CudaKernels, FusedOutputErrorMatchesReference) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kFusedShapes) {
    const uint64_t seed = test_seed(1001 + s.width + s.n);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> bias = random_floats(rng, (size_t)s.width, -1.0f, 1.0f);
    std::vector<float> y = random_floats(rng, total, 0.0f, 1.0f);
    // The reference: output error (from z), bias gradient, cost.
    const size_t n_bias = bp_bias_grad_partials_count(s.width, s.n);
    const size_t n_cost = std::max(bp_cost_partials_count(s.width, s.n),
                                   bp_output_fused_cost_partials_count(s.width, s.n));
    DeviceBuffer<float> da(total), dy(total), dz(total), dref(total), dfused(total);
    DeviceBuffer<float> dbias(n_bias), db_ref(s.width), db_fused(s.width), dcost(1), dbb(s.width);
    DeviceBuffer<double> dcp(n_cost), dacc(1);
    DeviceBuffer<int> dskip(1);
    DeviceBuffer<unsigned> dcounter(1);
    ASSERT_TRUE(da.ok() && dy.ok() && dz.ok() && dref.ok() && dfused.ok() && dbias.ok() &&
                db_ref.ok() && db_fused.ok() && dcost.ok() && dcp.ok() && dacc.ok() &&
                dskip.ok() && dcounter.ok() && dbb.ok());
    // z and a = sigma(z) as the forward pass leaves them, from the device's
    // own sigmoid (the host's expf may differ by an ulp).
    dz.upload(z);
    dbb.upload(bias);
    CUDA_OK(bp_launch_bias_sigmoid(dz.get(), da.get(), dbb.get(), s.width, s.n, stream));
    CUDA_OK(stream.sync());
    const std::vector<float> a = da.download();
    dy.upload(y);
    dcounter.upload({0u});
    dref.poison();
    CUDA_OK(bp_launch_output_error(da.get(), dy.get(), dz.get(), dref.get(), total, stream));
    CUDA_OK(bp_launch_bias_grad(dref.get(), s.width, s.n, dbias.get(), db_ref.get(), stream));
    CUDA_OK(bp_launch_cost(da.get(), dy.get(), s.width, s.n, dcp.get(), dcost.get(), nullptr,
                           nullptr, stream));
    CUDA_OK(stream.sync());
    const float cost_ref = dcost.download()[0];
    const std::vector<float> delta_ref = dref.download(), db_want = db_ref.download();

    for (int run = 0; run < 2; ++run) {
      SCOPED_TRACE(testing::Message() << "run " << run);
      dfused.poison();
      db_fused.poison();
      dcost.poison();
      dacc.upload({2.5});
      dskip.upload({3});
      CUDA_OK(bp_launch_output_error_fused(da.get(), dy.get(), dfused.get(), s.width, s.n,
                                           dbias.get(), db_fused.get(), dcp.get(), dcost.get(),
                                           dacc.get(), dskip.get(), dcounter.get(), stream));
      CUDA_OK(stream.sync());
      EXPECT_TRUE(bit_identical(dfused.download(), delta_ref)) << "delta differs";
      EXPECT_TRUE(bit_identical(db_fused.download(), db_want)) << "db differs";
      const float cost = dcost.download()[0];
      EXPECT_LE(std::fabs(cost - cost_ref), 2e-7 * std::fabs(cost_ref))
          << "cost " << cost << " vs reference " << cost_ref;
      EXPECT_LE(std::fabs(dacc.download()[0] - 2.5 - (double)cost_ref * s.n),
                1e-6 * std::fabs(cost_ref) * s.n)
          << "accumulated total";
      EXPECT_EQ(dskip.download()[0], 3);
      EXPECT_EQ(dcounter.download()[0], 0u) << "the last block must reset the ticket";
    }

    // A NaN: the fused kernel counts a skip and leaves the sum alone.
    std::vector<float> a_bad = a;
    a_bad[total / 2] = std::numeric_limits<float>::quiet_NaN();
    da.upload(a_bad);
    dacc.upload({2.5});
    dskip.upload({3});
    CUDA_OK(bp_launch_output_error_fused(da.get(), dy.get(), dfused.get(), s.width, s.n,
                                         dbias.get(), db_fused.get(), dcp.get(), dcost.get(),
                                         dacc.get(), dskip.get(), dcounter.get(), stream));
    CUDA_OK(stream.sync());
    EXPECT_TRUE(std::isnan(dcost.download()[0]));
    EXPECT_EQ(dacc.download()[0], 2.5);
    EXPECT_EQ(dskip.download()[0], 4);
  }
}

TEST(CudaKernels, FusedHiddenErrorMatchesReferenceInPlace) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (const Shape &s : kFusedShapes) {
    const uint64_t seed = test_seed(1101 + s.width + s.n);
    SCOPED_TRACE(testing::Message() << "width " << s.width << ", n " << s.n << ", seed " << seed);
    std::mt19937 rng((uint32_t)seed);
    const size_t total = (size_t)s.width * s.n;
    std::vector<float> g = random_floats(rng, total, -1.0f, 1.0f);
    std::vector<float> z = random_floats(rng, total, -6.0f, 6.0f);
    std::vector<float> bias = random_floats(rng, (size_t)s.width, -1.0f, 1.0f);
    const size_t n_bias = bp_bias_grad_partials_count(s.width, s.n);
    DeviceBuffer<float> dg(total), dz(total), da(total), dref(total), dbias(n_bias);
    DeviceBuffer<float> db_ref(s.width), db_fused(s.width), dbb(s.width);
    DeviceBuffer<unsigned> dcounter(1);
    ASSERT_TRUE(dg.ok() && dz.ok() && da.ok() && dref.ok() && dbias.ok() && db_ref.ok() &&
                db_fused.ok() && dcounter.ok() && dbb.ok());
    dg.upload(g);
    // z and a = sigma(z) from the device's own sigmoid, as in the backend.
    dz.upload(z);
    dbb.upload(bias);
    CUDA_OK(bp_launch_bias_sigmoid(dz.get(), da.get(), dbb.get(), s.width, s.n, stream));
    dcounter.upload({0u});
    dref.poison();
    CUDA_OK(bp_launch_hidden_error(dg.get(), dz.get(), dref.get(), total, stream));
    CUDA_OK(bp_launch_bias_grad(dref.get(), s.width, s.n, dbias.get(), db_ref.get(), stream));
    CUDA_OK(stream.sync());
    const std::vector<float> delta_ref = dref.download(), db_want = db_ref.download();
    for (int run = 0; run < 2; ++run) {
      SCOPED_TRACE(testing::Message() << "run " << run);
      dg.upload(g);  // in place, as the backend calls it: g becomes delta
      db_fused.poison();
      CUDA_OK(bp_launch_hidden_error_fused(dg.get(), da.get(), dg.get(), s.width, s.n,
                                           dbias.get(), db_fused.get(), dcounter.get(), stream));
      CUDA_OK(stream.sync());
      EXPECT_TRUE(bit_identical(dg.download(), delta_ref)) << "delta differs";
      EXPECT_TRUE(bit_identical(db_fused.download(), db_want)) << "db differs";
      EXPECT_EQ(dcounter.download()[0], 0u) << "the last block must reset the ticket";
    }
  }
  for (int n = 1; n < 20000000; n = n * 3 + 1)
    EXPECT_LE(bp_output_fused_cost_partials_count(7, n),
              bp_output_fused_cost_partials_count(7, n * 3 + 1));
}

// ---- fused.cu: every activation, cost and optimizer --------------------------------
// Against the reference kernels of model.cu, reduce.cu and optimizers.cu on
// the same device floats. Elementwise layers and the optimizers: bit for
// bit (the same formula text, the bias sums in the same order). Softmax: the
// fused kernels add a column's sums over 32 lanes instead of one thread's
// order, so a, delta and db agree to rounding: 1e-5 relative (a sum of up
// to 1024 positive terms in another order moves by a few ulps, 1e-7 each,
// and a few of those meet in delta), with an absolute floor of 1e-6 of the
// column's largest magnitude for elements near 0 (cancellation in delta).
// The cost: 2e-7 relative where only the double partition differs (the
// mean is rounded to float once), 1e-5 for softmax.

const char *act_name(int act) {
  static const char *const names[] = {"sigmoid", "tanh", "relu", "identity", "softmax"};
  return names[act];
}

// Columns of y that are probability rows, as a softmax's targets are.
void normalize_columns(std::vector<float> &y, int width, int n) {
  for (int k = 0; k < n; ++k) {
    float s = 0;
    for (int j = 0; j < width; ++j) s += y[(size_t)k * width + j];
    for (int j = 0; j < width; ++j) y[(size_t)k * width + j] /= s;
  }
}

void expect_softmax_close(const std::vector<float> &got, const std::vector<float> &want,
                          const char *what) {
  double scale = 0;
  for (float v : want) scale = std::max(scale, (double)std::fabs(v));
  expect_close(got, want, [&](size_t i) { return 1e-5 * std::fabs(want[i]) + 1e-6 * scale; },
               what);
}

TEST(CudaKernels, FusedBiasActivationMatchesReferenceForEveryActivation) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (int act = BP_EW_SIGMOID; act <= BP_EW_SOFTMAX; ++act)
    for (const Shape &s : kFusedShapes) {
      const uint64_t seed = test_seed(1301 + 7 * act + s.width + s.n);
      SCOPED_TRACE(testing::Message() << act_name(act) << ", width " << s.width << ", n " << s.n
                                      << ", seed " << seed);
      std::mt19937 rng((uint32_t)seed);
      const size_t total = (size_t)s.width * s.n;
      std::vector<float> Z = random_floats(rng, total, -6.0f, 6.0f);
      std::vector<float> b = random_floats(rng, (size_t)s.width, -2.0f, 2.0f);
      if (total > 2) {  // the far tails: sigmoid 0 and 1, tanh -1 and 1, a dominant softmax entry
        Z[0] = -120.0f;
        Z[1] = 120.0f;
      }
      DeviceBuffer<float> dz(total), da(total), dzk(total), dak(total), dza(total), db(s.width);
      ASSERT_TRUE(dz.ok() && da.ok() && dzk.ok() && dak.ok() && dza.ok() && db.ok());
      dz.upload(Z);
      dzk.upload(Z);
      dza.upload(Z);
      db.upload(b);
      da.poison();
      dak.poison();
      CUDA_OK(bp_launch_bias_activation(act, dz.get(), da.get(), db.get(), s.width, s.n, stream));
      // z kept (a cross-entropy output) and in place (every other layer).
      CUDA_OK(bp_launch_bias_activation_fused(act, dzk.get(), dak.get(), db.get(), s.width, s.n,
                                              stream));
      CUDA_OK(bp_launch_bias_activation_fused(act, dza.get(), dza.get(), db.get(), s.width, s.n,
                                              stream));
      CUDA_OK(stream.sync());
      const std::vector<float> z_ref = dz.download(), a_ref = da.download();
      EXPECT_TRUE(bit_identical(dzk.download(), z_ref)) << "kept z differs";
      if (act == BP_EW_SOFTMAX) {
        expect_softmax_close(dak.download(), a_ref, "a (z kept)");
        expect_softmax_close(dza.download(), a_ref, "a (in place)");
        EXPECT_TRUE(bit_identical(dza.download(), dak.download())) << "in place vs z kept";
      } else {
        EXPECT_TRUE(bit_identical(dak.download(), a_ref)) << "a (z kept) differs";
        EXPECT_TRUE(bit_identical(dza.download(), a_ref)) << "a (in place) differs";
      }
    }
}

TEST(CudaKernels, FusedOutputErrorMatchesReferenceForEveryPair) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  struct Pair {
    int act, cost;
  };
  const Pair pairs[] = {{BP_EW_SIGMOID, BP_EW_QUADRATIC},       {BP_EW_TANH, BP_EW_QUADRATIC},
                        {BP_EW_RELU, BP_EW_QUADRATIC},          {BP_EW_IDENTITY, BP_EW_QUADRATIC},
                        {BP_EW_SOFTMAX, BP_EW_QUADRATIC},       {BP_EW_SIGMOID, BP_EW_CROSS_ENTROPY},
                        {BP_EW_SOFTMAX, BP_EW_CROSS_ENTROPY}};
  for (const Pair &pr : pairs)
    for (const Shape &s : kFusedShapes) {
      const bool softmax = pr.act == BP_EW_SOFTMAX, ce = pr.cost == BP_EW_CROSS_ENTROPY;
      const uint64_t seed = test_seed(1401 + 11 * pr.act + 5 * pr.cost + s.width + s.n);
      SCOPED_TRACE(testing::Message() << act_name(pr.act) << (ce ? ", cross-entropy" : ", quadratic")
                                      << ", width " << s.width << ", n " << s.n << ", seed "
                                      << seed);
      std::mt19937 rng((uint32_t)seed);
      const size_t total = (size_t)s.width * s.n;
      std::vector<float> z = random_floats(rng, total, -4.0f, 4.0f);
      std::vector<float> bias = random_floats(rng, (size_t)s.width, -1.0f, 1.0f);
      std::vector<float> y = random_floats(rng, total, 0.0f, 1.0f);
      if (softmax) normalize_columns(y, s.width, s.n);
      const size_t n_bias = bp_bias_grad_partials_count(s.width, s.n);
      const size_t n_cost = std::max(bp_cost_partials_count(1, s.n),
                                     bp_output_fused_cost_partials_count(s.width, s.n));
      DeviceBuffer<float> dz(total), da(total), dy(total), dref(total), dfused(total);
      DeviceBuffer<float> dbias(n_bias), db_ref(s.width), db_fused(s.width), dcost(1),
          dbb(s.width);
      DeviceBuffer<double> dcp(n_cost), dacc(1), dcol(s.n);
      DeviceBuffer<int> dskip(1);
      DeviceBuffer<unsigned> dcounter(1);
      ASSERT_TRUE(dz.ok() && da.ok() && dy.ok() && dref.ok() && dfused.ok() && dbias.ok() &&
                  db_ref.ok() && db_fused.ok() && dcost.ok() && dbb.ok() && dcp.ok() &&
                  dacc.ok() && dcol.ok() && dskip.ok() && dcounter.ok());
      // z and a as the reference forward pass leaves them.
      dz.upload(z);
      dbb.upload(bias);
      CUDA_OK(bp_launch_bias_activation(pr.act, dz.get(), da.get(), dbb.get(), s.width, s.n,
                                        stream));
      CUDA_OK(stream.sync());
      const std::vector<float> a = da.download();
      dy.upload(y);
      dcounter.upload({0u});
      dref.poison();
      CUDA_OK(bp_launch_output_error_model(pr.act, pr.cost, dz.get(), da.get(), dy.get(),
                                           dref.get(), s.width, s.n, dcol.get(), stream));
      CUDA_OK(bp_launch_bias_grad(dref.get(), s.width, s.n, dbias.get(), db_ref.get(), stream));
      CUDA_OK(bp_launch_cost_sum(dcol.get(), s.n, dcp.get(), dcost.get(), nullptr, nullptr,
                                 stream));
      CUDA_OK(stream.sync());
      const float cost_ref = dcost.download()[0];
      const std::vector<float> delta_ref = dref.download(), db_want = db_ref.download();
      ASSERT_TRUE(std::isfinite(cost_ref));
      const double cost_tol = (softmax ? 1e-5 : 2e-7) * std::fabs(cost_ref);

      std::vector<float> first_delta, first_db;
      for (int run = 0; run < 2; ++run) {
        SCOPED_TRACE(testing::Message() << "run " << run);
        dfused.poison();
        db_fused.poison();
        dcost.poison();
        dacc.upload({2.5});
        dskip.upload({3});
        CUDA_OK(bp_launch_output_error_fused_act(
            pr.act, pr.cost, ce ? dz.get() : nullptr, da.get(), dy.get(), dfused.get(), s.width,
            s.n, dbias.get(), db_fused.get(), dcp.get(), dcost.get(), dacc.get(), dskip.get(),
            dcounter.get(), stream));
        CUDA_OK(stream.sync());
        const std::vector<float> delta = dfused.download(), db = db_fused.download();
        if (softmax) {
          expect_softmax_close(delta, delta_ref, "delta");
          expect_softmax_close(db, db_want, "db");
        } else {
          EXPECT_TRUE(bit_identical(delta, delta_ref)) << "delta differs";
          EXPECT_TRUE(bit_identical(db, db_want)) << "db differs";
        }
        if (run == 0) {
          first_delta = delta;
          first_db = db;
        } else {
          EXPECT_TRUE(bit_identical(delta, first_delta)) << "not deterministic";
          EXPECT_TRUE(bit_identical(db, first_db)) << "not deterministic";
        }
        const float cost = dcost.download()[0];
        EXPECT_LE(std::fabs(cost - cost_ref), cost_tol)
            << "cost " << cost << " vs reference " << cost_ref;
        EXPECT_LE(std::fabs(dacc.download()[0] - 2.5 - (double)cost_ref * s.n),
                  (softmax ? 1e-5 : 1e-6) * std::fabs(cost_ref) * s.n)
            << "accumulated total";
        EXPECT_EQ(dskip.download()[0], 3);
        EXPECT_EQ(dcounter.download()[0], 0u) << "the last block must reset the ticket";
      }

      // A NaN: the fused kernel counts a skip and leaves the sum alone.
      std::vector<float> a_bad = a;
      a_bad[total / 2] = std::numeric_limits<float>::quiet_NaN();
      if (ce) {  // cross-entropy's cost reads z
        std::vector<float> z_bad = dz.download();
        z_bad[total / 2] = std::numeric_limits<float>::quiet_NaN();
        dz.upload(z_bad);
      }
      da.upload(a_bad);
      dacc.upload({2.5});
      dskip.upload({3});
      CUDA_OK(bp_launch_output_error_fused_act(
          pr.act, pr.cost, ce ? dz.get() : nullptr, da.get(), dy.get(), dfused.get(), s.width,
          s.n, dbias.get(), db_fused.get(), dcp.get(), dcost.get(), dacc.get(), dskip.get(),
          dcounter.get(), stream));
      CUDA_OK(stream.sync());
      EXPECT_TRUE(std::isnan(dcost.download()[0]));
      EXPECT_EQ(dacc.download()[0], 2.5);
      EXPECT_EQ(dskip.download()[0], 4);
    }
}

TEST(CudaKernels, FusedHiddenErrorMatchesReferenceForEveryActivation) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
  for (int act = BP_EW_SIGMOID; act <= BP_EW_IDENTITY; ++act)
    for (const Shape &s : kFusedShapes) {
      const uint64_t seed = test_seed(1501 + 13 * act + s.width + s.n);
      SCOPED_TRACE(testing::Message() << act_name(act) << ", width " << s.width << ", n " << s.n
                                      << ", seed " << seed);
      std::mt19937 rng((uint32_t)seed);
      const size_t total = (size_t)s.width * s.n;
      std::vector<float> g = random_floats(rng, total, -1.0f, 1.0f);
      std::vector<float> z = random_floats(rng, total, -3.0f, 3.0f);
      std::vector<float> bias = random_floats(rng, (size_t)s.width, -1.0f, 1.0f);
      const size_t n_bias = bp_bias_grad_partials_count(s.width, s.n);
      DeviceBuffer<float> dg(total), dz(total), da(total), dref(total), dbias(n_bias);
      DeviceBuffer<float> db_ref(s.width), db_fused(s.width), dbb(s.width);
      DeviceBuffer<unsigned> dcounter(1);
      ASSERT_TRUE(dg.ok() && dz.ok() && da.ok() && dref.ok() && dbias.ok() && db_ref.ok() &&
                  db_fused.ok() && dcounter.ok() && dbb.ok());
      dz.upload(z);
      dbb.upload(bias);
      CUDA_OK(bp_launch_bias_activation(act, dz.get(), da.get(), dbb.get(), s.width, s.n,
                                        stream));
      dg.upload(g);
      dcounter.upload({0u});
      dref.poison();
      CUDA_OK(bp_launch_hidden_error_act(act, dg.get(), dz.get(), da.get(), dref.get(), total,
                                         stream));
      CUDA_OK(bp_launch_bias_grad(dref.get(), s.width, s.n, dbias.get(), db_ref.get(), stream));
      CUDA_OK(stream.sync());
      const std::vector<float> delta_ref = dref.download(), db_want = db_ref.download();
      if (act == BP_EW_RELU && total > 100) {  // both sides of the kink are checked
        size_t live = 0;
        for (float v : delta_ref) live += v != 0.0f;
        EXPECT_GT(live, 0u);
        EXPECT_LT(live, total);
      }
      for (int run = 0; run < 2; ++run) {
        SCOPED_TRACE(testing::Message() << "run " << run);
        dg.upload(g);  // in place, as the backend calls it
        db_fused.poison();
        CUDA_OK(bp_launch_hidden_error_fused_act(act, dg.get(), da.get(), dg.get(), s.width, s.n,
                                                 dbias.get(), db_fused.get(), dcounter.get(),
                                                 stream));
        CUDA_OK(stream.sync());
        EXPECT_TRUE(bit_identical(dg.download(), delta_ref)) << "delta differs";
        EXPECT_TRUE(bit_identical(db_fused.download(), db_want)) << "db differs";
        EXPECT_EQ(dcounter.download()[0], 0u) << "the last block must reset the ticket";
      }
    }
}

// The hyperparameters as bp_optimizer_hyper (src/api/optimizer.c) fills
// them, for a few settings that take every branch of bp_opt_update.
struct OptCase {
  const char *name;
  bp_opt_hyper h;
  int slots;
  long long step;  // updates applied before
};

std::vector<OptCase> opt_cases() {
  auto base = [] {
    bp_opt_hyper h;
    std::memset(&h, 0, sizeof h);
    h.one_minus_beta1 = 0.1f;
    h.beta2 = 0.999f;
    h.one_minus_beta2 = 0.001f;
    h.eps = 1e-8f;
    h.beta1_d = 0.9;
    h.beta2_d = 0.999;
    h.eta_minus = 0.5f;
    h.eta_plus = 1.2f;
    h.step_min = 1e-6f;
    h.step_max = 50.0f;
    return h;
  };
  std::vector<OptCase> out;
  bp_opt_hyper sgd = base();
  sgd.kind = BP_EW_SGD;
  sgd.momentum = 0.9f;
  sgd.nesterov = 1;
  sgd.weight_decay = 0.01f;
  sgd.weight_decay_d = 0.01;
  out.push_back({"sgd momentum nesterov decay", sgd, 1, 4});
  bp_opt_hyper adam = base();
  adam.kind = BP_EW_ADAM;
  adam.weight_decay = 0.001f;
  adam.weight_decay_d = 0.001;
  out.push_back({"adam", adam, 2, 2});
  bp_opt_hyper adamw = base();
  adamw.kind = BP_EW_ADAMW;
  adamw.weight_decay = 0.01f;
  adamw.weight_decay_d = 0.01;
  out.push_back({"adamw", adamw, 2, 0});
  bp_opt_hyper rprop = base();
  rprop.kind = BP_EW_RPROP;
  out.push_back({"rprop first", rprop, 2, 0});
  out.push_back({"rprop", rprop, 2, 5});
  return out;
}

TEST(CudaKernels, FusedOptimizerUpdateMatchesReference) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Stream stream;
#ifdef BP_KERNEL_EMULATION
  const size_t counts[] = {1, 3001, 70001};
#else
  const size_t counts[] = {1, 37000, 3000000 + 17};
#endif
  for (const OptCase &oc : opt_cases())
    for (size_t count : counts) {
      const uint64_t seed = test_seed(1601 + count + (uint64_t)oc.h.kind * 31 + oc.step);
      SCOPED_TRACE(testing::Message() << oc.name << ", count " << count << ", seed " << seed);
      std::mt19937 rng((uint32_t)seed);
      const float lr = 0.01f;
      std::vector<float> p = random_floats(rng, count, -2.0f, 2.0f);
      std::vector<float> g = random_floats(rng, count, -1.0f, 1.0f);
      // Slot 0 of any sign (momentum, exp_avg, Rprop's previous gradient),
      // slot 1 positive (exp_avg_sq, Rprop's step size).
      std::vector<float> state = random_floats(rng, count, -0.5f, 0.5f);
      if (oc.slots > 1) {
        std::vector<float> s1 = random_floats(rng, count, 1e-4f, 0.05f);
        state.insert(state.end(), s1.begin(), s1.end());
      }
      const size_t n_state = state.size();
      DeviceBuffer<float> dp_ref(count), dp(count), dg(count), ds_ref(n_state), ds(n_state),
          dcost(1);
      DeviceBuffer<long long> dstep_ref(1), dstep(1);
      DeviceBuffer<int> dbad_ref(1), dbad(1), dskip_ref(1), dskip(1);
      DeviceBuffer<bp_opt_step> dst(1);
      DeviceBuffer<unsigned> dcounter(1);
      ASSERT_TRUE(dp_ref.ok() && dp.ok() && dg.ok() && ds_ref.ok() && ds.ok() && dcost.ok() &&
                  dstep_ref.ok() && dstep.ok() && dbad_ref.ok() && dbad.ok() && dskip_ref.ok() &&
                  dskip.ok() && dst.ok() && dcounter.ok());
      dcounter.upload({0u});
      // cost: the batch's cost, finite or not; grad: g, perhaps with an
      // element that makes the update non-finite.
      auto run_both = [&](float cost, const std::vector<float> &grad,
                          const std::vector<float> &st) {
        dg.upload(grad);
        dcost.upload({cost});
        for (auto *b : {&dp_ref, &dp}) b->upload(p);
        for (auto *b : {&ds_ref, &ds}) b->upload(st);
        for (auto *b : {&dstep_ref, &dstep}) b->upload({oc.step});
        for (auto *b : {&dbad_ref, &dbad}) b->upload({0});
        for (auto *b : {&dskip_ref, &dskip}) b->upload({7});
        CUDA_OK(bp_launch_opt_check(oc.h, lr, dp_ref.get(), dg.get(), ds_ref.get(), count,
                                    oc.slots, dstep_ref.get(), dbad_ref.get(), stream));
        CUDA_OK(bp_launch_opt_update(oc.h, lr, dp_ref.get(), dg.get(), ds_ref.get(), count,
                                     oc.slots, dstep_ref.get(), dcost.get(), dbad_ref.get(),
                                     dskip_ref.get(), stream));
        CUDA_OK(bp_launch_opt_check_fused(oc.h, lr, dp.get(), dg.get(), ds.get(), count, oc.slots,
                                          dstep.get(), dcost.get(), dbad.get(), dst.get(),
                                          dcounter.get(), stream));
        CUDA_OK(bp_launch_opt_update_fused(oc.h, dp.get(), dg.get(), ds.get(), count, oc.slots,
                                           dst.get(), dcost.get(), dbad.get(), dskip.get(),
                                           stream));
        CUDA_OK(stream.sync());
        EXPECT_TRUE(bit_identical(dp.download(), dp_ref.download())) << "parameters differ";
        EXPECT_TRUE(bit_identical(ds.download(), ds_ref.download())) << "state differs";
        EXPECT_EQ(dstep.download()[0], dstep_ref.download()[0]) << "step count";
        EXPECT_EQ(dbad.download()[0], dbad_ref.download()[0]) << "guard verdict";
        EXPECT_EQ(dskip.download()[0], dskip_ref.download()[0]) << "skip count";
        EXPECT_EQ(dcounter.download()[0], 0u) << "the last block must reset the ticket";
      };
      {
        SCOPED_TRACE("applied");
        run_both(0.25f, g, state);
        EXPECT_EQ(dstep.download()[0], oc.step + 1);
        // (One Rprop weight whose gradient changed sign stays put.)
        if (count > 1) {
          EXPECT_FALSE(bit_identical(dp.download(), p)) << "the update must change the weights";
        }
      }
      {
        SCOPED_TRACE("an update that would overflow: refused, nothing changes, one skip");
        // An infinite gradient of the sign of slot 0, so that Rprop keeps it
        // (a sign change would zero it) and every optimizer's state overflows.
        std::vector<float> g_bad = g, st = state;
        g_bad[count / 2] = std::numeric_limits<float>::infinity();
        st[count / 2] = 0.25f;
        run_both(0.25f, g_bad, st);
        EXPECT_TRUE(bit_identical(dp.download(), p));
        EXPECT_TRUE(bit_identical(ds.download(), st));
        EXPECT_EQ(dstep.download()[0], oc.step);
        EXPECT_EQ(dskip.download()[0], 8);
      }
      {
        SCOPED_TRACE("a non-finite batch cost: nothing changes, counted by the cost kernel");
        run_both(std::numeric_limits<float>::quiet_NaN(), g, state);
        EXPECT_TRUE(bit_identical(dp.download(), p));
        EXPECT_TRUE(bit_identical(ds.download(), state));
        EXPECT_EQ(dstep.download()[0], oc.step);
        EXPECT_EQ(dskip.download()[0], 7);
      }
    }
}

TEST(CudaKernels, FusedModelBadArgumentsLaunchNothing) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceBuffer<float> buf(16);
  DeviceBuffer<double> part(16);
  DeviceBuffer<unsigned> counter(1);
  DeviceBuffer<int> flag(1);
  DeviceBuffer<long long> step(1);
  DeviceBuffer<bp_opt_step> st(1);
  ASSERT_TRUE(buf.ok() && part.ok() && counter.ok() && flag.ok() && step.ok() && st.ok());
  float *p = buf.get();
  EXPECT_EQ(bp_launch_bias_activation_fused(5, p, p, p, 2, 2, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_bias_activation_fused(BP_EW_TANH, p, p, nullptr, 2, 2, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_bias_activation_fused(BP_EW_SOFTMAX, p, p, p, 0, 2, nullptr), cudaSuccess);
  // Cross-entropy: only softmax and sigmoid outputs, and z is needed.
  EXPECT_EQ(bp_launch_output_error_fused_act(BP_EW_TANH, BP_EW_CROSS_ENTROPY, p, p, p, p + 8, 2, 2,
                                             p, p, part.get(), p, nullptr, nullptr, counter.get(),
                                             nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_output_error_fused_act(BP_EW_SIGMOID, BP_EW_CROSS_ENTROPY, nullptr, p, p,
                                             p + 8, 2, 2, p, p, part.get(), p, nullptr, nullptr,
                                             counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_output_error_fused_act(BP_EW_SOFTMAX, BP_EW_QUADRATIC, nullptr, p, p, p + 8,
                                             BP_FUSED_SOFTMAX_MAX_WIDTH + 1, 1, p, p, part.get(),
                                             p, nullptr, nullptr, counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_output_error_fused_act(BP_EW_RELU, 2, nullptr, p, p, p + 8, 2, 2, p, p,
                                             part.get(), p, nullptr, nullptr, counter.get(),
                                             nullptr),
            cudaErrorInvalidValue);
  // Softmax is no hidden activation.
  EXPECT_EQ(bp_launch_hidden_error_fused_act(BP_EW_SOFTMAX, p, p, p, 2, 2, p, p, counter.get(),
                                             nullptr),
            cudaErrorInvalidValue);
  bp_opt_hyper h;
  std::memset(&h, 0, sizeof h);
  EXPECT_EQ(bp_launch_opt_check_fused(h, 0.1f, p, p, nullptr, 4, 1, step.get(), nullptr,
                                      flag.get(), st.get(), counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_opt_check_fused(h, 0.1f, p, p, p, 4, 1, step.get(), nullptr, flag.get(),
                                      nullptr, counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_opt_update_fused(h, p, p, p, 4, 1, st.get(), nullptr, nullptr, nullptr,
                                       nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(CudaKernels, FusedBadArgumentsLaunchNothing) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceBuffer<float> buf(16);
  DeviceBuffer<double> part(16);
  DeviceBuffer<unsigned> counter(1);
  ASSERT_TRUE(buf.ok() && part.ok() && counter.ok());
  float *p = buf.get();
  EXPECT_EQ(bp_launch_bias_sigmoid_inplace(p, nullptr, 2, 2, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_bias_sigmoid_inplace(p, p, 0, 2, nullptr), cudaSuccess);
  EXPECT_EQ(bp_launch_output_error_fused(p, p, p + 8, 1, 0, p, p, part.get(), p, nullptr,
                                         nullptr, counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_output_error_fused(p, p, p + 8, 1, 1, p, p, part.get(), p, nullptr,
                                         nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_hidden_error_fused(p, p, p, 0, 4, p, p, counter.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bp_output_fused_cost_partials_count(0, 5), 0u);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
