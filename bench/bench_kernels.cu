/*
 * bench_kernels.cu - every custom kernel of kernels/ against the memory limit.
 *
 * In the manner of llm.c's dev/cuda: for each kernel and each size, first
 * validate against a CPU reference (the shared formulas of
 * kernels/elementwise.cuh) on fresh random data, then time it, and print the
 * fewest bytes the kernel must move divided by its time, in GB/s and as a
 * fraction of the device-to-device copy bandwidth measured in the same run.
 *
 * Method:
 *   - Sizes are traffic: a size of 64 MiB gives each kernel the problem whose
 *     fewest bytes moved (inputs read once, outputs written once) are about
 *     64 MiB. The copy reference moves the same: cudaMemcpyAsync D2D of half
 *     the size, counting read + write bytes.
 *   - Inputs are random (never zeros), drawn on the device. Several buffer
 *     sets are allocated so that together they span at least 3x the L2
 *     cache, and consecutive launches rotate through them: each launch reads
 *     memory the previous launches have pushed out of L2.
 *   - Timing: CUDA events around one full rotation of launches (a sample),
 *     after warm-up launches; the time per launch is the sample time over
 *     the launches in it; the reported time is the median over --repeats
 *     samples (the minimum is printed too).
 *   - Validation runs each kernel once on buffer set 0 with its outputs
 *     poisoned (all bits set: NaN), so an element the kernel fails to write
 *     fails the check. The gates on the device (the SGD skip on a non-finite
 *     batch cost, the cost kernel's skip count) are checked too.
 *
 * A kernel benchmark, like llm.c's dev/cuda: it calls the launchers of
 * kernels/kernels.cuh directly and checks them against kernels/elementwise.cuh,
 * the accuracy rule included, so it includes those two library
 * headers, the only bench program that does; the others go through the
 * public API (backprop.h).
 *
 * Build: part of the CMake build (bench/CMakeLists.txt) when CUDA is on.
 * Run:   bench_kernels [--quick|--smoke] [--kernels a,b] [--sizes 1,64] [--json F]
 * Exit:  0 all validated; 1 a validation failed; 2 bad usage; 77 no device.
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "elementwise.cuh"
#include "kernels.cuh"

/* ---- Device helpers ------------------------------------------------------- */

__global__ void fill_uniform_kernel(float *p, size_t n, uint64_t seed, float lo, float hi) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = bench_uniform(seed, i, lo, hi);
}

static void fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  if (n == 0) return;
  fill_uniform_kernel<<<bp_grid_1d(n), BP_BLOCK, 0, s>>>(p, n, seed, lo, hi);
  cudaCheck(cudaGetLastError());
}

/* Every operation of the benchmark goes on this one non-blocking stream, so
 * copies, memsets and launches are strictly ordered (plain cudaMemcpy and
 * cudaMemset run on the legacy stream, which a non-blocking stream does not
 * wait for). */
static cudaStream_t g_stream;

template <class T>
static std::vector<T> to_host(const T *d, size_t n) {
  std::vector<T> h(n);
  if (n) {
    cudaCheck(cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, g_stream));
    cudaCheck(cudaStreamSynchronize(g_stream));
  }
  return h;
}

template <class T>
static void to_device(T *d, const T *h, size_t n) {
  if (n) {
    cudaCheck(cudaMemcpyAsync(d, h, n * sizeof(T), cudaMemcpyHostToDevice, g_stream));
    cudaCheck(cudaStreamSynchronize(g_stream)); /* h may be a temporary */
  }
}

static void zero(void *d, size_t bytes) { cudaCheck(cudaMemsetAsync(d, 0, bytes, g_stream)); }

/* ---- Validation helpers --------------------------------------------------- */

struct Check {
  bool ok = true;
  double worst = 0.0; /* largest |got - ref| / tolerance seen (<= 1 passes) */
  std::string first_failure;

  /* One value: |got - ref| <= atol + rtol |ref|. NaN fails. */
  void value(const char *what, size_t i, double got, double ref, double atol, double rtol) {
    double err = std::fabs(got - ref), tol = atol + rtol * std::fabs(ref);
    double ratio = tol > 0 ? err / tol : (err == 0 ? 0.0 : INFINITY);
    if (!(err <= tol)) {
      if (ok) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s[%zu] = %.9g, reference %.9g (tolerance %.3g)", what, i,
                 got, ref, tol);
        first_failure = buf;
      }
      ok = false;
      ratio = INFINITY;
    }
    if (ratio > worst || std::isnan(ratio)) worst = ratio;
  }
  void condition(bool cond, const char *msg) {
    if (!cond) {
      if (ok) first_failure = msg;
      ok = false;
      worst = INFINITY;
    }
  }
};

/* ---- Buffer sets ------------------------------------------------------------ */

enum class Init { Uniform, Poison, Scratch, Zero, Const, Perm };

struct BufSpec {
  const char *name;
  size_t count;
  size_t elem;
  Init init;
  float lo, hi; /* Uniform range; Const value in lo */
};

/* One buffer set: pointers into the slab. */
struct Set {
  std::vector<void *> p;
  template <class T>
  T *get(size_t i) const { return static_cast<T *>(p[i]); }
};

/* ---- The kernels ------------------------------------------------------------ */

struct Options {
  int width = 1024;    /* rows of bias_sigmoid and bias_grad */
  int out_width = 10;  /* rows of cost and accuracy (an output layer) */
  int in_width = 784;  /* rows of gather's inputs (an MNIST image) */
};

class KernelBench {
 public:
  virtual ~KernelBench() {}
  virtual const char *name() const = 0;
  /* Which bytes are counted, for the output. */
  virtual const char *traffic() const = 0;
  /* true for the elementwise kernels (the 85% target applies to them). */
  virtual bool elementwise() const { return true; }
  /* Sizes the problem so that bytes() is about target_bytes. */
  virtual void plan(size_t target_bytes, const Options &o) = 0;
  virtual std::string dims() const = 0;
  virtual size_t bytes() const = 0;
  virtual std::vector<BufSpec> buffers() const = 0;
  virtual void launch(const Set &s, cudaStream_t st) = 0;
  /* Runs the kernel once on set s (its inputs freshly drawn, its outputs
   * poisoned) and compares with the CPU reference. */
  virtual Check validate(const Set &s, cudaStream_t st) = 0;
};

static size_t at_least_1(size_t v) { return v < 1 ? 1 : v; }

/* z += b (per row), a = sigmoid(z): reads z, writes z and a, reads b. */
class BiasSigmoid : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "bias_sigmoid"; }
  const char *traffic() const override { return "read z, write z and a (12 B/elem) + b"; }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (12 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 12 * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    /* Small biases: z drifts by b at each launch while timing. */
    return {{"z", c, 4, Init::Uniform, -6.f, 6.f},
            {"a", c, 4, Init::Poison, 0, 0},
            {"b", (size_t)W, 4, Init::Uniform, -0.5f, 0.5f}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_bias_sigmoid(s.get<float>(0), s.get<float>(1), s.get<float>(2), W, n, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto z0 = to_host(s.get<float>(0), c);
    auto b = to_host(s.get<float>(2), (size_t)W);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto z = to_host(s.get<float>(0), c);
    auto a = to_host(s.get<float>(1), c);
    Check ck;
    for (size_t i = 0; i < c; ++i) {
      float zr = z0[i] + b[i % (size_t)W];
      ck.value("z", i, z[i], zr, 0.0, 1e-7);
      ck.value("a", i, a[i], bp_sigmoid(zr), 1e-6, 1e-6);
    }
    return ck;
  }
};

/* delta = 2 (a - y) sigma'(z): reads a, y, z, writes delta. */
class OutputError : public KernelBench {
  size_t count = 0;

 public:
  const char *name() const override { return "output_error"; }
  const char *traffic() const override { return "read a, y, z, write delta (16 B/elem)"; }
  void plan(size_t t, const Options &) override { count = at_least_1(t / 16); }
  std::string dims() const override { return std::to_string(count); }
  size_t bytes() const override { return 16 * count; }
  std::vector<BufSpec> buffers() const override {
    return {{"a", count, 4, Init::Uniform, 0.f, 1.f},
            {"y", count, 4, Init::Uniform, 0.f, 1.f},
            {"z", count, 4, Init::Uniform, -6.f, 6.f},
            {"delta", count, 4, Init::Poison, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_output_error(s.get<float>(0), s.get<float>(1), s.get<float>(2),
                                     s.get<float>(3), count, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    auto a = to_host(s.get<float>(0), count);
    auto y = to_host(s.get<float>(1), count);
    auto z = to_host(s.get<float>(2), count);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(3), count);
    Check ck;
    for (size_t i = 0; i < count; ++i)
      ck.value("delta", i, d[i], bp_output_error(a[i], y[i], z[i]), 2e-6, 1e-5);
    return ck;
  }
};

/* delta = g * sigma'(z): reads g and z, writes delta. The backend runs it in
 * place (delta == g); here it runs out of place so that repeated launches
 * keep their inputs (in place they would shrink toward zero). Same bytes. */
class HiddenError : public KernelBench {
  size_t count = 0;

 public:
  const char *name() const override { return "hidden_error"; }
  const char *traffic() const override { return "read g, z, write delta (12 B/elem)"; }
  void plan(size_t t, const Options &) override { count = at_least_1(t / 12); }
  std::string dims() const override { return std::to_string(count); }
  size_t bytes() const override { return 12 * count; }
  std::vector<BufSpec> buffers() const override {
    return {{"g", count, 4, Init::Uniform, -1.f, 1.f},
            {"z", count, 4, Init::Uniform, -6.f, 6.f},
            {"delta", count, 4, Init::Poison, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_hidden_error(s.get<float>(0), s.get<float>(1), s.get<float>(2), count, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    auto g = to_host(s.get<float>(0), count);
    auto z = to_host(s.get<float>(1), count);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(2), count);
    Check ck;
    for (size_t i = 0; i < count; ++i)
      ck.value("delta", i, d[i], bp_hidden_error(g[i], z[i]), 1e-6, 1e-5);
    return ck;
  }
};

/* db = (1/n) sum over columns of delta (width x n): reads delta once. */
class BiasGrad : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "bias_grad"; }
  const char *traffic() const override { return "read delta (4 B/elem) + write db"; }
  bool elementwise() const override { return false; }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (4 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 4 * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    return {{"delta", (size_t)W * n, 4, Init::Uniform, -1.f, 1.f},
            {"partials", bp_bias_grad_partials_count(W, n), 4, Init::Scratch, 0, 0},
            {"db", (size_t)W, 4, Init::Poison, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_bias_grad(s.get<float>(0), W, n, s.get<float>(1), s.get<float>(2), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    auto d = to_host(s.get<float>(0), (size_t)W * n);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto db = to_host(s.get<float>(2), (size_t)W);
    std::vector<double> sum((size_t)W, 0.0), sum_abs((size_t)W, 0.0);
    for (size_t k = 0; k < (size_t)n; ++k)
      for (size_t j = 0; j < (size_t)W; ++j) {
        double v = d[j + k * (size_t)W];
        sum[j] += v;
        sum_abs[j] += std::fabs(v);
      }
    Check ck;
    /* Float partial sums over chunks of columns: the error is bounded by a
     * few dozen roundings of the sum of magnitudes. */
    for (size_t j = 0; j < (size_t)W; ++j)
      ck.value("db", j, db[j], sum[j] / n, 4e-6 * sum_abs[j] / n + 1e-12, 1e-6);
    return ck;
  }
};

/* Batch cost (1/n) sum (a - y)^2 with the training path's accumulation:
 * reads a and y once. */
class Cost : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "cost"; }
  const char *traffic() const override { return "read a, y (8 B/elem)"; }
  bool elementwise() const override { return false; }
  void plan(size_t t, const Options &o) override {
    W = o.out_width;
    n = (int)at_least_1(t / (8 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 8 * (size_t)W * n; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    return {{"a", c, 4, Init::Uniform, 0.f, 1.f},
            {"y", c, 4, Init::Uniform, 0.f, 1.f},
            {"partials", bp_cost_partials_count(W, n), 8, Init::Scratch, 0, 0},
            {"cost", 1, 4, Init::Poison, 0, 0},
            {"cost_acc", 1, 8, Init::Zero, 0, 0},
            {"skipped", 1, 4, Init::Zero, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_cost(s.get<float>(0), s.get<float>(1), W, n, s.get<double>(2),
                             s.get<float>(3), s.get<double>(4), s.get<int>(5), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto a = to_host(s.get<float>(0), c);
    auto y = to_host(s.get<float>(1), c);
    zero(s.get<double>(4), sizeof(double));
    zero(s.get<int>(5), sizeof(int));
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    float cost = to_host(s.get<float>(3), 1)[0];
    double acc = to_host(s.get<double>(4), 1)[0];
    int skipped = to_host(s.get<int>(5), 1)[0];
    double total = 0.0;
    for (size_t i = 0; i < c; ++i) total += (double)bp_cost_term(a[i], y[i]);
    Check ck;
    ck.value("cost", 0, cost, (float)(total / n), 0.0, 3e-7);
    ck.value("cost_acc", 0, acc, total, 0.0, 1e-9);
    ck.condition(skipped == 0, "cost: skipped counted a finite batch");
    /* A non-finite batch: counted as skipped, accumulator untouched. */
    float nan = NAN;
    to_device(s.get<float>(0), &nan, 1);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    ck.condition(to_host(s.get<int>(5), 1)[0] == 1, "cost: a NaN batch was not counted as skipped");
    ck.condition(to_host(s.get<double>(4), 1)[0] == acc, "cost: a NaN batch changed the accumulator");
    ck.condition(std::isnan(to_host(s.get<float>(3), 1)[0]), "cost: a NaN batch gave a finite cost");
    to_device(s.get<float>(0), a.data(), 1);
    return ck;
  }
};

/* Examples classified right (argmax per column): reads a and y once. */
class Accuracy : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "accuracy"; }
  const char *traffic() const override { return "read a, y (8 B/elem)"; }
  bool elementwise() const override { return false; }
  void plan(size_t t, const Options &o) override {
    W = o.out_width;
    n = (int)at_least_1(t / (8 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 8 * (size_t)W * n; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    return {{"a", c, 4, Init::Uniform, 0.f, 1.f},
            {"y", c, 4, Init::Uniform, 0.f, 1.f},
            {"correct", 1, 8, Init::Zero, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_accuracy(s.get<float>(0), s.get<float>(1), W, n,
                                 s.get<unsigned long long>(2), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto a = to_host(s.get<float>(0), c);
    auto y = to_host(s.get<float>(1), c);
    zero(s.get<unsigned long long>(2), sizeof(unsigned long long));
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    unsigned long long got = to_host(s.get<unsigned long long>(2), 1)[0];
    unsigned long long ref = 0;
    for (size_t k = 0; k < (size_t)n; ++k)
      ref += (unsigned long long)bp_example_correct(&a[k * W], &y[k * W], W, 1);
    Check ck;
    ck.value("correct", 0, (double)got, (double)ref, 0.0, 0.0);
    return ck;
  }
};

/* params -= lr * grads, gated on a finite batch cost (the training path):
 * reads params and grads, writes params. */
class Sgd : public KernelBench {
  size_t count = 0;
  static constexpr float lr = 0.01f;

 public:
  const char *name() const override { return "sgd"; }
  const char *traffic() const override { return "read p, g, write p (12 B/elem)"; }
  void plan(size_t t, const Options &) override { count = at_least_1(t / 12); }
  std::string dims() const override { return std::to_string(count); }
  size_t bytes() const override { return 12 * count; }
  std::vector<BufSpec> buffers() const override {
    return {{"params", count, 4, Init::Uniform, -1.f, 1.f},
            {"grads", count, 4, Init::Uniform, -1.f, 1.f},
            {"batch_cost", 1, 4, Init::Const, 0.5f, 0.f}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_sgd(s.get<float>(0), s.get<float>(1), count, lr, s.get<float>(2), nullptr, nullptr, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    auto p0 = to_host(s.get<float>(0), count);
    auto g = to_host(s.get<float>(1), count);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto p = to_host(s.get<float>(0), count);
    Check ck;
    for (size_t i = 0; i < count; ++i)
      ck.value("params", i, p[i], bp_sgd_update(p0[i], g[i], lr), 2e-7, 2e-7);
    /* A non-finite batch cost: nothing changes. */
    float nan = NAN, half = 0.5f;
    to_device(s.get<float>(2), &nan, 1);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto p2 = to_host(s.get<float>(0), count);
    ck.condition(std::memcmp(p.data(), p2.data(), count * sizeof(float)) == 0,
                 "sgd: a NaN batch cost still changed the parameters");
    to_device(s.get<float>(2), &half, 1);
    return ck;
  }
};

/* Both gathers: column k of x and y must be column perm[k] of X and Y,
 * exactly. */
static Check check_gathered(const std::vector<float> &X, const std::vector<float> &Y,
                            const std::vector<int32_t> &perm, const std::vector<float> &x,
                            const std::vector<float> &y, int n_in, int n_out, int bn) {
  Check ck;
  for (size_t k = 0; k < (size_t)bn; ++k) {
    size_t src = (size_t)perm[k];
    for (size_t j = 0; j < (size_t)n_in; ++j)
      ck.value("x", j + k * n_in, x[j + k * n_in], X[j + src * n_in], 0.0, 0.0);
    for (size_t j = 0; j < (size_t)n_out; ++j)
      ck.value("y", j + k * n_out, y[j + k * n_out], Y[j + src * n_out], 0.0, 0.0);
  }
  return ck;
}

/* Mini-batch gather: x column k = X column perm[k] (and y from Y). Reads and
 * writes each gathered element once, reads the permutation. */
class Gather : public KernelBench {
 protected:
  int n_in = 0, n_out = 0, bn = 0;

 public:
  const char *name() const override { return "gather"; }
  const char *traffic() const override { return "read X, Y columns, write x, y (8 B/elem) + perm"; }
  void plan(size_t t, const Options &o) override {
    n_in = o.in_width;
    n_out = o.out_width;
    bn = (int)at_least_1(t / (8 * (size_t)(n_in + n_out) + 4));
  }
  std::string dims() const override {
    return std::to_string(n_in) + "+" + std::to_string(n_out) + " x " + std::to_string(bn);
  }
  size_t bytes() const override { return 8 * (size_t)(n_in + n_out) * bn + 4 * (size_t)bn; }
  std::vector<BufSpec> buffers() const override {
    size_t cx = (size_t)n_in * bn, cy = (size_t)n_out * bn;
    return {{"X", cx, 4, Init::Uniform, 0.f, 1.f},
            {"Y", cy, 4, Init::Uniform, 0.f, 1.f},
            {"perm", (size_t)bn, 4, Init::Perm, 0, 0},
            {"x", cx, 4, Init::Poison, 0, 0},
            {"y", cy, 4, Init::Poison, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_gather(s.get<float>(0), s.get<float>(1), n_in, n_out, s.get<int32_t>(2), 0,
                               bn, s.get<float>(3), s.get<float>(4), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t cx = (size_t)n_in * bn, cy = (size_t)n_out * bn;
    auto X = to_host(s.get<float>(0), cx);
    auto Y = to_host(s.get<float>(1), cy);
    auto perm = to_host(s.get<int32_t>(2), (size_t)bn);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    return check_gathered(X, Y, perm, to_host(s.get<float>(3), cx), to_host(s.get<float>(4), cy),
                          n_in, n_out, bn);
  }
};

/* The ceiling: cudaMemcpyAsync device to device of half the size; bytes are
 * read + write. */
class Copy : public KernelBench {
  size_t count = 0;

 public:
  const char *name() const override { return "copy"; }
  const char *traffic() const override { return "cudaMemcpyAsync D2D, read + write (8 B/elem)"; }
  void plan(size_t t, const Options &) override { count = at_least_1(t / 8); }
  std::string dims() const override { return std::to_string(count); }
  size_t bytes() const override { return 8 * count; }
  std::vector<BufSpec> buffers() const override {
    return {{"src", count, 4, Init::Uniform, -1.f, 1.f}, {"dst", count, 4, Init::Poison, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(cudaMemcpyAsync(s.p[1], s.p[0], count * sizeof(float), cudaMemcpyDeviceToDevice, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto a = to_host(s.get<float>(0), count);
    auto b = to_host(s.get<float>(1), count);
    Check ck;
    ck.condition(std::memcmp(a.data(), b.data(), count * sizeof(float)) == 0,
                 "copy: destination differs from source");
    return ck;
  }
};

/* ---- fused.cu: the fast path's kernels ------------------------------------------
 * Each is validated against the CPU reference of the formulas, and its bytes
 * are the fewest it must move; the reference kernels it replaces moved more
 * (see the traffic strings), which is the point of fusing. */

/* a = sigma(z + b) written over z: reads z, writes a, reads b. */
class BiasSigmoidInplace : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "bias_sigmoid_inplace"; }
  const char *traffic() const override {
    return "read z, write a over it (8 B/elem) + b; replaces bias_sigmoid (12 B/elem)";
  }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (8 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 8 * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    /* In place, repeated launches feed a back in: it stays in (-0.5, 1.5). */
    return {{"za", (size_t)W * n, 4, Init::Uniform, -6.f, 6.f},
            {"b", (size_t)W, 4, Init::Uniform, -0.5f, 0.5f}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_bias_sigmoid_inplace(s.get<float>(0), s.get<float>(1), W, n, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto z0 = to_host(s.get<float>(0), c);
    auto b = to_host(s.get<float>(1), (size_t)W);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto a = to_host(s.get<float>(0), c);
    Check ck;
    for (size_t k = 0, i = 0; k < (size_t)n; ++k)
      for (size_t j = 0; j < (size_t)W; ++j, ++i)
        ck.value("a", i, a[i], bp_sigmoid(z0[i] + b[j]), 1e-6, 1e-6);
    return ck;
  }
};

/* Output layer in one kernel: delta = 2 (a - y) a (1 - a), the batch cost
 * and db. Reads a and y, writes delta. */
class OutputErrorFused : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "output_error_fused"; }
  const char *traffic() const override {
    return "read a, y, write delta (12 B/elem); replaces output_error + cost + bias_grad "
           "(28 B/elem)";
  }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (12 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 12 * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    return {{"a", c, 4, Init::Uniform, 0.f, 1.f},
            {"y", c, 4, Init::Uniform, 0.f, 1.f},
            {"delta", c, 4, Init::Poison, 0, 0},
            {"bias_partials", bp_bias_grad_partials_count(W, n), 4, Init::Scratch, 0, 0},
            {"db", (size_t)W, 4, Init::Poison, 0, 0},
            {"cost_partials", bp_output_fused_cost_partials_count(W, n), 8, Init::Scratch, 0, 0},
            {"cost", 1, 4, Init::Poison, 0, 0},
            {"cost_acc", 1, 8, Init::Zero, 0, 0},
            {"skipped", 1, 4, Init::Zero, 0, 0},
            {"ticket", 1, 4, Init::Zero, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_output_error_fused(
        s.get<float>(0), s.get<float>(1), s.get<float>(2), W, n, s.get<float>(3),
        s.get<float>(4), s.get<double>(5), s.get<float>(6), s.get<double>(7), s.get<int>(8),
        s.get<unsigned>(9), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto a = to_host(s.get<float>(0), c);
    auto y = to_host(s.get<float>(1), c);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(2), c);
    auto db = to_host(s.get<float>(4), (size_t)W);
    auto cost = to_host(s.get<float>(6), 1);
    Check ck;
    std::vector<double> sum((size_t)W, 0.0), sum_abs((size_t)W, 0.0);
    double total = 0.0;
    for (size_t k = 0, i = 0; k < (size_t)n; ++k)
      for (size_t j = 0; j < (size_t)W; ++j, ++i) {
        float r = bp_output_error_of_a(a[i], y[i]);
        ck.value("delta", i, d[i], r, 0.0, 0.0); /* the same float operations */
        sum[j] += r;
        sum_abs[j] += std::fabs(r);
        total += bp_cost_term(a[i], y[i]);
      }
    for (size_t j = 0; j < (size_t)W; ++j)
      ck.value("db", j, db[j], sum[j] / n, 4e-6 * sum_abs[j] / n + 1e-12, 1e-6);
    ck.value("cost", 0, cost[0], total / n, 0.0, 1e-6);
    return ck;
  }
};

/* Hidden layer in one kernel: delta = g a (1 - a) and db. Reads g and a,
 * writes delta; out of place here, as HiddenError, so repeated launches keep
 * their inputs (the same bytes as in place). */
class HiddenErrorFused : public KernelBench {
  int W = 0, n = 0;

 public:
  const char *name() const override { return "hidden_error_fused"; }
  const char *traffic() const override {
    return "read g, a, write delta (12 B/elem); replaces hidden_error + bias_grad (16 B/elem)";
  }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (12 * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return 12 * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    return {{"g", c, 4, Init::Uniform, -1.f, 1.f},
            {"a", c, 4, Init::Uniform, 0.f, 1.f},
            {"delta", c, 4, Init::Poison, 0, 0},
            {"bias_partials", bp_bias_grad_partials_count(W, n), 4, Init::Scratch, 0, 0},
            {"db", (size_t)W, 4, Init::Poison, 0, 0},
            {"ticket", 1, 4, Init::Zero, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    cudaCheck(bp_launch_hidden_error_fused(s.get<float>(0), s.get<float>(1), s.get<float>(2), W,
                                           n, s.get<float>(3), s.get<float>(4),
                                           s.get<unsigned>(5), st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto g = to_host(s.get<float>(0), c);
    auto a = to_host(s.get<float>(1), c);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(2), c);
    auto db = to_host(s.get<float>(4), (size_t)W);
    Check ck;
    std::vector<double> sum((size_t)W, 0.0), sum_abs((size_t)W, 0.0);
    for (size_t k = 0, i = 0; k < (size_t)n; ++k)
      for (size_t j = 0; j < (size_t)W; ++j, ++i) {
        float r = bp_hidden_error_of_a(g[i], a[i]);
        ck.value("delta", i, d[i], r, 0.0, 0.0);
        sum[j] += r;
        sum_abs[j] += std::fabs(r);
      }
    for (size_t j = 0; j < (size_t)W; ++j)
      ck.value("db", j, db[j], sum[j] / n, 4e-6 * sum_abs[j] / n + 1e-12, 1e-6);
    return ck;
  }
};

/* ---- The model beyond the seed: each fused kernel next to its reference --------
 * The reference rows run what the reference path issues for the same work
 * (model.cu's kernel, then bias_grad and cost_sum where the fused kernel
 * folds those in; optimizers.cu's check, update and step count), so the
 * two rows of a pair count the same bytes and their GB/s compare directly.
 * Validated against elementwise.cuh on the host; the device's expf, tanhf,
 * logf and FMA contraction differ from the host's by ulps, hence 1e-6
 * absolute and 1e-5 relative on elements. */

static const char *const kActNames[] = {"sigmoid", "tanh", "relu", "identity", "softmax"};

static std::string pair_name(int act, int cost) {
  return std::string(kActNames[act]) + (cost == BP_EW_CROSS_ENTROPY ? "_xent" : "_quad");
}

/* a = f(z + b). Reference (model.cu): z += b kept, a written (12 B/elem).
 * Fused: a over z (8 B/elem). Softmax columns are an output layer's
 * (out_width rows); the elementwise ones a hidden layer's (width rows). */
class BiasActivation : public KernelBench {
  int act, W = 0, n = 0;
  bool fused;
  std::string nm;

 public:
  BiasActivation(int a, bool f) : act(a), fused(f) {
    nm = std::string(f ? "bias_activation_fused_" : "bias_activation_") + kActNames[a];
  }
  const char *name() const override { return nm.c_str(); }
  const char *traffic() const override {
    return fused ? "read z, write a over it (8 B/elem) + b; replaces bias_activation (12 B/elem)"
                 : "read z, write z and a (12 B/elem) + b";
  }
  size_t per_elem() const { return fused ? 8 : 12; }
  void plan(size_t t, const Options &o) override {
    W = act == BP_EW_SOFTMAX ? o.out_width : o.width;
    n = (int)at_least_1(t / (per_elem() * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return per_elem() * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    /* Small biases: repeated launches move z (or a, in place) by b each. */
    return {{"z", c, 4, Init::Uniform, -3.f, 3.f},
            {"a", fused ? 1 : c, 4, Init::Poison, 0, 0},
            {"b", (size_t)W, 4, Init::Uniform, -0.05f, 0.05f}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    float *z = s.get<float>(0), *a = fused ? z : s.get<float>(1);
    if (fused)
      cudaCheck(bp_launch_bias_activation_fused(act, z, a, s.get<float>(2), W, n, st));
    else
      cudaCheck(bp_launch_bias_activation(act, z, a, s.get<float>(2), W, n, st));
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto z0 = to_host(s.get<float>(0), c);
    auto b = to_host(s.get<float>(2), (size_t)W);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto a = to_host(fused ? s.get<float>(0) : s.get<float>(1), c);
    std::vector<float> zr(c), ar(c);
    for (size_t i = 0; i < c; ++i) zr[i] = z0[i] + b[i % (size_t)W];
    if (act == BP_EW_SOFTMAX)
      for (size_t k = 0; k < (size_t)n; ++k) bp_softmax_column(&zr[k * W], &ar[k * W], W);
    else
      for (size_t i = 0; i < c; ++i) ar[i] = bp_activate(act, zr[i]);
    Check ck;
    for (size_t i = 0; i < c; ++i) ck.value("a", i, a[i], ar[i], 1e-6, 1e-5);
    return ck;
  }
};

/* Output layer of a (activation, cost) pair. Reference: output_error_model
 * (delta and per-column costs), bias_grad, cost_sum. Fused: one kernel. */
class OutputModel : public KernelBench {
  int act, cost_kind, W = 0, n = 0;
  bool fused;
  std::string nm;

 public:
  OutputModel(int a, int c, bool f) : act(a), cost_kind(c), fused(f) {
    nm = std::string(f ? "output_error_fused_" : "output_error_model_") + pair_name(a, c);
  }
  const char *name() const override { return nm.c_str(); }
  const char *traffic() const override {
    if (cost_kind == BP_EW_CROSS_ENTROPY)
      return fused ? "read z, a, y, write delta (16 B/elem); replaces output_error_model + "
                     "bias_grad + cost_sum (20 B/elem)"
                   : "read z, a, y, write delta; bias_grad reads delta (20 B/elem)";
    return fused ? "read a, y, write delta (12 B/elem); replaces output_error_model + bias_grad "
                   "+ cost_sum (16 B/elem, z unread)"
                 : "read a, y, write delta; bias_grad reads delta (16 B/elem)";
  }
  bool elementwise() const override { return false; }
  size_t per_elem() const {
    return (cost_kind == BP_EW_CROSS_ENTROPY ? 16 : 12) + (fused ? 0 : 4);
  }
  void plan(size_t t, const Options &o) override {
    W = o.out_width;
    n = (int)at_least_1(t / (per_elem() * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return per_elem() * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    size_t cp = std::max(bp_output_fused_cost_partials_count(W, n), bp_cost_partials_count(1, n));
    return {{"z", c, 4, Init::Uniform, -3.f, 3.f},
            {"a", c, 4, Init::Uniform, 0.01f, 0.2f},
            {"y", c, 4, Init::Uniform, 0.f, 0.2f},
            {"delta", c, 4, Init::Poison, 0, 0},
            {"bias_partials", bp_bias_grad_partials_count(W, n), 4, Init::Scratch, 0, 0},
            {"db", (size_t)W, 4, Init::Poison, 0, 0},
            {"cost_partials", cp, 8, Init::Scratch, 0, 0},
            {"cost", 1, 4, Init::Poison, 0, 0},
            {"cost_acc", 1, 8, Init::Zero, 0, 0},
            {"skipped", 1, 4, Init::Zero, 0, 0},
            {"ticket", 1, 4, Init::Zero, 0, 0},
            {"col_cost", fused ? 1 : (size_t)n, 8, Init::Scratch, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    const float *z = s.get<float>(0), *a = s.get<float>(1), *y = s.get<float>(2);
    float *delta = s.get<float>(3), *bp = s.get<float>(4), *db = s.get<float>(5);
    double *cp = s.get<double>(6), *acc = s.get<double>(8);
    float *cost = s.get<float>(7);
    int *skipped = s.get<int>(9);
    if (fused) {
      cudaCheck(bp_launch_output_error_fused_act(act, cost_kind, z, a, y, delta, W, n, bp, db, cp,
                                                 cost, acc, skipped, s.get<unsigned>(10), st));
    } else {
      double *col = s.get<double>(11);
      cudaCheck(bp_launch_output_error_model(act, cost_kind, z, a, y, delta, W, n, col, st));
      cudaCheck(bp_launch_bias_grad(delta, W, n, bp, db, st));
      cudaCheck(bp_launch_cost_sum(col, n, cp, cost, acc, skipped, st));
    }
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto z = to_host(s.get<float>(0), c);
    auto a = to_host(s.get<float>(1), c);
    auto y = to_host(s.get<float>(2), c);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(3), c);
    auto db = to_host(s.get<float>(5), (size_t)W);
    float cost = to_host(s.get<float>(7), 1)[0];
    std::vector<float> dr(c);
    double total = 0.0;
    for (size_t k = 0; k < (size_t)n; ++k)
      total += bp_output_column(act, cost_kind, &z[k * W], &a[k * W], &y[k * W], &dr[k * W], W);
    Check ck;
    std::vector<double> sum((size_t)W, 0.0), sum_abs((size_t)W, 0.0);
    for (size_t i = 0; i < c; ++i) {
      ck.value("delta", i, d[i], dr[i], 1e-6, 1e-5);
      sum[i % (size_t)W] += dr[i];
      sum_abs[i % (size_t)W] += std::fabs(dr[i]);
    }
    for (size_t j = 0; j < (size_t)W; ++j)
      ck.value("db", j, db[j], sum[j] / n, 1e-5 * sum_abs[j] / n + 1e-12, 1e-5);
    ck.value("cost", 0, cost, total / n, 0.0, 1e-5);
    return ck;
  }
};

/* Hidden layer: delta = g f'(a) and db. Reference: hidden_error_act (reads
 * z too, unused but for the sigmoid) and bias_grad; fused: one kernel. Out
 * of place, as HiddenErrorFused. */
class HiddenAct : public KernelBench {
  int act, W = 0, n = 0;
  bool fused;
  std::string nm;

 public:
  HiddenAct(int a, bool f) : act(a), fused(f) {
    nm = std::string(f ? "hidden_error_fused_" : "hidden_error_act_") + kActNames[a];
  }
  const char *name() const override { return nm.c_str(); }
  const char *traffic() const override {
    return fused ? "read g, a, write delta (12 B/elem); replaces hidden_error_act + bias_grad "
                   "(20 B/elem)"
                 : "read g, z, a, write delta; bias_grad reads delta (20 B/elem)";
  }
  bool elementwise() const override { return false; }
  size_t per_elem() const { return fused ? 12 : 20; }
  void plan(size_t t, const Options &o) override {
    W = o.width;
    n = (int)at_least_1(t / (per_elem() * (size_t)W));
  }
  std::string dims() const override { return std::to_string(W) + "x" + std::to_string(n); }
  size_t bytes() const override { return per_elem() * (size_t)W * n + 4 * (size_t)W; }
  std::vector<BufSpec> buffers() const override {
    size_t c = (size_t)W * n;
    return {{"g", c, 4, Init::Uniform, -1.f, 1.f},
            {"a", c, 4, Init::Uniform, -0.9f, 0.9f},
            {"delta", c, 4, Init::Poison, 0, 0},
            {"bias_partials", bp_bias_grad_partials_count(W, n), 4, Init::Scratch, 0, 0},
            {"db", (size_t)W, 4, Init::Poison, 0, 0},
            {"ticket", 1, 4, Init::Zero, 0, 0},
            {"z", fused ? 1 : c, 4, Init::Uniform, -3.f, 3.f}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    const float *g = s.get<float>(0), *a = s.get<float>(1);
    float *delta = s.get<float>(2), *bp = s.get<float>(3), *db = s.get<float>(4);
    if (fused) {
      cudaCheck(bp_launch_hidden_error_fused_act(act, g, a, delta, W, n, bp, db,
                                                 s.get<unsigned>(5), st));
    } else {
      cudaCheck(bp_launch_hidden_error_act(act, g, s.get<float>(6), a, delta, (size_t)W * n, st));
      cudaCheck(bp_launch_bias_grad(delta, W, n, bp, db, st));
    }
  }
  Check validate(const Set &s, cudaStream_t st) override {
    size_t c = (size_t)W * n;
    auto g = to_host(s.get<float>(0), c);
    auto a = to_host(s.get<float>(1), c);
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto d = to_host(s.get<float>(2), c);
    auto db = to_host(s.get<float>(4), (size_t)W);
    Check ck;
    std::vector<double> sum((size_t)W, 0.0), sum_abs((size_t)W, 0.0);
    for (size_t i = 0; i < c; ++i) {
      float r = g[i] * bp_activation_prime_of_a(act, a[i]);
      ck.value("delta", i, d[i], r, 1e-6, 1e-5);
      sum[i % (size_t)W] += r;
      sum_abs[i % (size_t)W] += std::fabs(r);
    }
    for (size_t j = 0; j < (size_t)W; ++j)
      ck.value("db", j, db[j], sum[j] / n, 4e-6 * sum_abs[j] / n + 1e-12, 1e-6);
    return ck;
  }
};

/* The guarded update of an optimizer with state. Reference: check, update,
 * step count (3 launches); fused: check (which counts the step), update.
 * Both read p, g and the state twice and write p and the state once. */
class OptUpdate : public KernelBench {
  int kind, slots;
  bool fused;
  size_t count = 0;
  bp_opt_hyper h;
  std::string nm;
  static constexpr float lr = 0.001f;

 public:
  OptUpdate(int k, bool f) : kind(k), fused(f) {
    std::memset(&h, 0, sizeof h);
    h.kind = k;
    h.one_minus_beta1 = 0.1f;
    h.beta2 = 0.999f;
    h.one_minus_beta2 = 0.001f;
    h.eps = 1e-8f;
    h.beta1_d = 0.9;
    h.beta2_d = 0.999;
    h.eta_minus = 0.5f;
    h.eta_plus = 1.2f;
    h.step_min = 1e-6f;
    h.step_max = 1e-3f; /* repeated launches keep the weights in range */
    if (k == BP_EW_SGD) {
      h.momentum = 0.9f;
      h.nesterov = 1;
    }
    slots = k == BP_EW_SGD ? 1 : 2;
    static const char *const names[] = {"sgd_momentum", "adam", "adamw", "rprop"};
    nm = std::string(f ? "opt_update_fused_" : "opt_update_") + names[k];
  }
  const char *name() const override { return nm.c_str(); }
  const char *traffic() const override {
    return slots == 1 ? "check reads p, g, s; update reads p, g, s, writes p, s (32 B/elem)"
                      : "check reads p, g, s0, s1; update reads them, writes p, s0, s1 "
                        "(44 B/elem)";
  }
  size_t per_elem() const { return 2 * 4 * (2 + slots) + 4 * (1 + slots); }
  void plan(size_t t, const Options &) override { count = at_least_1(t / per_elem()); }
  std::string dims() const override { return std::to_string(count); }
  size_t bytes() const override { return per_elem() * count; }
  std::vector<BufSpec> buffers() const override {
    return {{"params", count, 4, Init::Uniform, -1.f, 1.f},
            {"grads", count, 4, Init::Uniform, -1.f, 1.f},
            {"state", count * slots, 4, Init::Uniform, 0.01f, 0.02f},
            {"step", 1, 8, Init::Zero, 0, 0},
            {"bad", 1, 4, Init::Zero, 0, 0},
            {"skipped", 1, 4, Init::Zero, 0, 0},
            {"batch_cost", 1, 4, Init::Const, 0.5f, 0.f},
            {"step_scalars", 1, sizeof(bp_opt_step), Init::Scratch, 0, 0},
            {"ticket", 1, 4, Init::Zero, 0, 0}};
  }
  void launch(const Set &s, cudaStream_t st) override {
    float *p = s.get<float>(0), *g = s.get<float>(1), *state = s.get<float>(2);
    long long *step = s.get<long long>(3);
    int *bad = s.get<int>(4), *skipped = s.get<int>(5);
    const float *cost = s.get<float>(6);
    if (fused) {
      bp_opt_step *sc = s.get<bp_opt_step>(7);
      cudaCheck(bp_launch_opt_check_fused(h, lr, p, g, state, count, slots, step, cost, bad, sc,
                                          s.get<unsigned>(8), st));
      cudaCheck(bp_launch_opt_update_fused(h, p, g, state, count, slots, sc, cost, bad, skipped,
                                           st));
    } else {
      cudaCheck(bp_launch_opt_check(h, lr, p, g, state, count, slots, step, bad, st));
      cudaCheck(
          bp_launch_opt_update(h, lr, p, g, state, count, slots, step, cost, bad, skipped, st));
    }
  }
  Check validate(const Set &s, cudaStream_t st) override {
    auto p0 = to_host(s.get<float>(0), count);
    auto g = to_host(s.get<float>(1), count);
    auto s0 = to_host(s.get<float>(2), count * slots);
    long long t0 = to_host(s.get<long long>(3), 1)[0];
    launch(s, st);
    cudaCheck(cudaStreamSynchronize(st));
    auto p = to_host(s.get<float>(0), count);
    auto sd = to_host(s.get<float>(2), count * slots);
    Check ck;
    const bp_opt_step stp = bp_opt_step_of(&h, lr, t0);
    for (size_t i = 0; i < count; ++i) {
      float a0 = s0[i], a1 = slots > 1 ? s0[count + i] : 0.0f;
      const float r = bp_opt_update(&h, &stp, p0[i], g[i], &a0, &a1);
      ck.value("params", i, p[i], r, 1e-7, 1e-5);
      ck.value("state0", i, sd[i], a0, 1e-9, 1e-5);
      if (slots > 1) ck.value("state1", i, sd[count + i], a1, 1e-9, 1e-5);
    }
    ck.condition(to_host(s.get<long long>(3), 1)[0] == t0 + 1, "the step was not counted");
    return ck;
  }
};

static std::vector<std::unique_ptr<KernelBench>> all_kernels() {
  std::vector<std::unique_ptr<KernelBench>> v;
  v.emplace_back(new Copy());
  v.emplace_back(new BiasSigmoid());
  v.emplace_back(new OutputError());
  v.emplace_back(new HiddenError());
  v.emplace_back(new Sgd());
  v.emplace_back(new Gather());
  v.emplace_back(new BiasGrad());
  v.emplace_back(new Cost());
  v.emplace_back(new Accuracy());
  v.emplace_back(new BiasSigmoidInplace());
  v.emplace_back(new OutputErrorFused());
  v.emplace_back(new HiddenErrorFused());
  for (int act = BP_EW_SIGMOID; act <= BP_EW_SOFTMAX; ++act)
    for (bool fused : {false, true}) v.emplace_back(new BiasActivation(act, fused));
  const int pairs[][2] = {{BP_EW_TANH, BP_EW_QUADRATIC},     {BP_EW_RELU, BP_EW_QUADRATIC},
                          {BP_EW_IDENTITY, BP_EW_QUADRATIC}, {BP_EW_SOFTMAX, BP_EW_QUADRATIC},
                          {BP_EW_SIGMOID, BP_EW_CROSS_ENTROPY},
                          {BP_EW_SOFTMAX, BP_EW_CROSS_ENTROPY}};
  for (const auto &pr : pairs)
    for (bool fused : {false, true}) v.emplace_back(new OutputModel(pr[0], pr[1], fused));
  for (int act = BP_EW_TANH; act <= BP_EW_IDENTITY; ++act)
    for (bool fused : {false, true}) v.emplace_back(new HiddenAct(act, fused));
  for (int kind : {BP_EW_SGD, BP_EW_ADAM, BP_EW_RPROP})
    for (bool fused : {false, true}) v.emplace_back(new OptUpdate(kind, fused));
  return v;
}

/* ---- The measurement ---------------------------------------------------------- */

struct Result {
  std::string kernel, dims, traffic, error;
  bool elementwise = true;
  size_t size_mib = 0, bytes = 0, sets = 0, per_sample = 0;
  bool valid = false, skipped = false;
  double worst = 0, median_us = NAN, min_us = NAN, gbps = NAN;
};

struct Config {
  std::vector<long> sizes_mib{1, 4, 16, 64, 256, 1024};
  std::vector<std::string> kernels;  /* empty: all */
  int repeats = 30, warmup = 5;
  size_t flush_bytes = 0;            /* 0: 3x L2 */
  size_t max_mem = (size_t)8 << 30;  /* all sets of one problem together */
  uint64_t seed = 0x5eed;
  double time_budget = 0; /* seconds: start no problem after this (0: no limit) */
  int device = 0;
  const char *json = nullptr;
  Options o;
};

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

static Result run_one(KernelBench &k, size_t size_mib, const Config &cfg, size_t l2_bytes,
                      cudaStream_t st) {
  Result r;
  r.kernel = k.name();
  r.traffic = k.traffic();
  r.elementwise = k.elementwise();
  r.size_mib = size_mib;
  k.plan(size_mib << 20, cfg.o);
  r.dims = k.dims();
  r.bytes = k.bytes();

  std::vector<BufSpec> specs = k.buffers();
  std::vector<size_t> offs;
  size_t set_bytes = 0;
  for (const BufSpec &b : specs) {
    offs.push_back(set_bytes);
    set_bytes += align256(b.count * b.elem);
  }
  size_t flush = cfg.flush_bytes ? cfg.flush_bytes : 3 * l2_bytes;
  size_t nsets = std::max<size_t>(2, BENCH_CEIL_DIV(flush, set_bytes));
  size_t free_b = 0, total_b = 0;
  cudaCheck(cudaMemGetInfo(&free_b, &total_b));
  size_t cap = std::min(cfg.max_mem, free_b / 10 * 6);
  if (nsets * set_bytes > cap) nsets = cap / set_bytes;
  if (nsets == 0) {
    r.skipped = true;
    r.error = "does not fit in device memory";
    return r;
  }
  r.sets = nsets;

  char *slab = nullptr;
  cudaCheck(cudaMalloc(&slab, nsets * set_bytes));
  std::vector<Set> sets(nsets);
  std::vector<int32_t> perm;
  for (size_t si = 0; si < nsets; ++si) {
    for (size_t bi = 0; bi < specs.size(); ++bi) {
      const BufSpec &b = specs[bi];
      void *p = slab + si * set_bytes + offs[bi];
      sets[si].p.push_back(p);
      uint64_t seed = bench_mix64(cfg.seed ^ bench_mix64(size_mib * 1000003u + si * 131u + bi));
      switch (b.init) {
        case Init::Uniform:
          fill_uniform(static_cast<float *>(p), b.count, seed, b.lo, b.hi, st);
          break;
        case Init::Poison: /* all bits set: NaN for floats */
          cudaCheck(cudaMemsetAsync(p, 0xFF, b.count * b.elem, st));
          break;
        case Init::Zero:
          cudaCheck(cudaMemsetAsync(p, 0, b.count * b.elem, st));
          break;
        case Init::Const: {
          std::vector<float> h(b.count, b.lo);
          to_device(static_cast<float *>(p), h.data(), b.count);
          break;
        }
        case Init::Perm:
          perm.resize(b.count);
          bench_permutation(perm.data(), (int)b.count, seed);
          to_device(static_cast<int32_t *>(p), perm.data(), b.count);
          break;
        case Init::Scratch:
          break;
      }
    }
  }
  cudaCheck(cudaStreamSynchronize(st));

  /* Validate on set 0 before any timing. */
  Check ck = k.validate(sets[0], st);
  r.valid = ck.ok;
  r.worst = ck.worst;
  if (!ck.ok) r.error = ck.first_failure;

  /* Time: warm-up, then samples of one rotation through the sets each. */
  cudaEvent_t start, stop;
  cudaCheck(cudaEventCreate(&start));
  cudaCheck(cudaEventCreate(&stop));
  size_t next = 0;
  for (int w = 0; w < cfg.warmup; ++w) k.launch(sets[next++ % nsets], st);
  r.per_sample = nsets;
  std::vector<double> t;
  for (int rep = 0; rep < cfg.repeats; ++rep) {
    cudaCheck(cudaEventRecord(start, st));
    for (size_t j = 0; j < nsets; ++j) k.launch(sets[next++ % nsets], st);
    cudaCheck(cudaEventRecord(stop, st));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    t.push_back(1e3 * ms / (double)nsets);
  }
  cudaCheck(cudaGetLastError());
  r.min_us = bench_min(t.data(), (int)t.size());
  r.median_us = bench_median(t.data(), (int)t.size());
  r.gbps = (double)r.bytes / (r.median_us * 1e-6) / 1e9;
  cudaCheck(cudaEventDestroy(start));
  cudaCheck(cudaEventDestroy(stop));
  cudaCheck(cudaFree(slab));
  return r;
}

/* ---- Command line and output ---------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_kernels [options]\n"
          "  --kernels a,b,...  kernels to run (default all; --list names them)\n"
          "  --sizes 1,16,...   traffic per launch in MiB (default 1,4,16,64,256,1024)\n"
          "  --repeats N        timed samples per problem, median reported (default 30)\n"
          "  --warmup N         untimed launches first (default 5)\n"
          "  --width W          rows of bias_sigmoid and bias_grad (default 1024)\n"
          "  --out-width W      rows of cost and accuracy (default 10)\n"
          "  --in-width W       input rows of gather (default 784)\n"
          "  --flush-mib M      the buffer sets together span at least M MiB (default 3x L2)\n"
          "  --max-mem-mib M    memory for one problem's sets at most (default 8192)\n"
          "  --time-budget T    start no problem after T seconds (the rest: skipped)\n"
          "  --quick            sizes 1,4,16,64,256, 15 repeats\n"
          "  --smoke            sizes 1,4, 3 repeats, 1 warm-up (a test of the program)\n"
          "  --json FILE        write the results as JSON\n"
          "  --device D         CUDA device (default 0)\n"
          "  --seed S           random seed\n"
          "  --list             print the kernel names and exit\n"
          "Exit status: 0 all validated, 1 a validation failed, 2 usage, 77 no CUDA device.\n");
}

static void write_skip_json(const char *path, const char *why) {
  if (!path) return;
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "{\"bench\": \"bench_kernels\", \"skipped\": ");
  bench_json_string(f, why);
  fprintf(f, "}\n");
  fclose(f);
}

int main(int argc, char **argv) {
  Config cfg;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char *opt) -> const char * {
      if (i + 1 >= argc) {
        fprintf(stderr, "bench_kernels: %s needs a value\n", opt);
        exit(2);
      }
      return argv[++i];
    };
    long v[64];
    if (a == "--kernels") {
      std::string s = need("--kernels");
      cfg.kernels.clear();
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) cfg.kernels.push_back(s.substr(p, q - p));
        p = q + 1;
      }
      if (cfg.kernels.size() == 1 && cfg.kernels[0] == "all") cfg.kernels.clear();
    } else if (a == "--sizes") {
      int n = bench_parse_ints(need("--sizes"), ',', v, 64);
      if (n <= 0) { fprintf(stderr, "bench_kernels: bad --sizes\n"); return 2; }
      cfg.sizes_mib.assign(v, v + n);
      for (long s : cfg.sizes_mib)
        if (s < 1) { fprintf(stderr, "bench_kernels: sizes must be >= 1 MiB\n"); return 2; }
    } else if (a == "--repeats") {
      cfg.repeats = atoi(need("--repeats"));
    } else if (a == "--warmup") {
      cfg.warmup = atoi(need("--warmup"));
    } else if (a == "--width") {
      cfg.o.width = atoi(need("--width"));
    } else if (a == "--out-width") {
      cfg.o.out_width = atoi(need("--out-width"));
    } else if (a == "--in-width") {
      cfg.o.in_width = atoi(need("--in-width"));
    } else if (a == "--flush-mib") {
      cfg.flush_bytes = (size_t)atol(need("--flush-mib")) << 20;
    } else if (a == "--time-budget") {
      cfg.time_budget = atof(need("--time-budget"));
    } else if (a == "--max-mem-mib") {
      cfg.max_mem = (size_t)atol(need("--max-mem-mib")) << 20;
    } else if (a == "--quick") {
      cfg.sizes_mib = {1, 4, 16, 64, 256};
      cfg.repeats = 15;
    } else if (a == "--smoke") {
      cfg.sizes_mib = {1, 4};
      cfg.repeats = 3;
      cfg.warmup = 1;
    } else if (a == "--json") {
      cfg.json = need("--json");
    } else if (a == "--device") {
      cfg.device = atoi(need("--device"));
    } else if (a == "--seed") {
      cfg.seed = strtoull(need("--seed"), nullptr, 0);
    } else if (a == "--list") {
      list = true;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench_kernels: unknown option %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (cfg.repeats < 1 || cfg.warmup < 0 || cfg.o.width < 1 || cfg.o.out_width < 1 ||
      cfg.o.in_width < 1) {
    fprintf(stderr, "bench_kernels: repeats, widths must be >= 1 and warmup >= 0\n");
    return 2;
  }

  auto kernels = all_kernels();
  if (list) {
    for (auto &k : kernels) printf("%-14s %s\n", k->name(), k->traffic());
    return 0;
  }
  for (const std::string &name : cfg.kernels) {
    bool found = false;
    for (auto &k : kernels) found = found || name == k->name();
    if (!found) {
      fprintf(stderr, "bench_kernels: unknown kernel '%s' (--list names them)\n", name.c_str());
      return 2;
    }
  }

  /* No device: a skip, not a failure. */
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0 || cfg.device >= count) {
    char why[256];
    snprintf(why, sizeof why, "no usable CUDA device (%s)",
             err != cudaSuccess ? cudaGetErrorString(err)
                                : (count == 0 ? "none found" : "device ordinal out of range"));
    printf("bench_kernels: %s; skipping\n", why);
    write_skip_json(cfg.json, why);
    return BENCH_EXIT_SKIP;
  }
  cudaCheck(cudaSetDevice(cfg.device));
  cudaDeviceProp prop;
  cudaCheck(cudaGetDeviceProperties(&prop, cfg.device));
  int driver = 0, runtime = 0;
  cudaCheck(cudaDriverGetVersion(&driver));
  cudaCheck(cudaRuntimeGetVersion(&runtime));
  size_t l2 = prop.l2CacheSize > 0 ? (size_t)prop.l2CacheSize : (size_t)50 << 20;
  cudaCheck(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  cudaStream_t st = g_stream;

  printf("bench_kernels: %s (sm_%d%d, %d SMs, L2 %.0f MiB, %.1f GiB), driver %d, runtime %d\n",
         prop.name, prop.major, prop.minor, prop.multiProcessorCount, l2 / 1048576.0,
         prop.totalGlobalMem / 1073741824.0, driver, runtime);
  printf("bytes = the fewest a launch must move; GB/s = 1e9 bytes/s; %%copy = of the best "
         "D2D copy below\n\n");

  /* The copy first, at every size: its best rate is the reference. */
  std::vector<Result> results;
  bool all_valid = true;
  auto selected = [&](const char *name) {
    if (std::string(name) == "copy") return true;
    if (cfg.kernels.empty()) return true;
    return std::find(cfg.kernels.begin(), cfg.kernels.end(), name) != cfg.kernels.end();
  };
  printf("%-14s %8s %-22s %12s %10s %10s %8s %6s %s\n", "kernel", "MiB", "dims", "bytes",
         "median us", "GB/s", "%copy", "sets", "check");
  double copy_best = 0;
  const double t_start = bench_now_ms();
  for (auto &k : kernels) {
    if (!selected(k->name())) continue;
    for (long s : cfg.sizes_mib) {
      Result r;
      if (cfg.time_budget > 0 && (bench_now_ms() - t_start) / 1e3 > cfg.time_budget) {
        r.kernel = k->name();
        r.traffic = k->traffic();
        r.elementwise = k->elementwise();
        r.size_mib = (size_t)s;
        r.skipped = true;
        r.error = "time budget spent";
      } else {
        r = run_one(*k, (size_t)s, cfg, l2, st);
      }
      if (r.kernel == "copy" && !r.skipped && r.gbps > copy_best) copy_best = r.gbps;
      if (!r.skipped && !r.valid) all_valid = false;
      char pct[32];
      if (r.kernel == "copy" || copy_best <= 0)
        snprintf(pct, sizeof pct, "%s", r.kernel == "copy" ? "-" : "?");
      else
        snprintf(pct, sizeof pct, "%.1f", 100.0 * r.gbps / copy_best);
      if (r.skipped)
        printf("%-14s %8zu %-22s %12zu skipped: %s\n", r.kernel.c_str(), r.size_mib,
               r.dims.c_str(), r.bytes, r.error.c_str());
      else
        printf("%-14s %8zu %-22s %12zu %10.2f %10.1f %8s %6zu %s\n", r.kernel.c_str(),
               r.size_mib, r.dims.c_str(), r.bytes, r.median_us, r.gbps, pct, r.sets,
               r.valid ? "ok" : ("FAILED: " + r.error).c_str());
      fflush(stdout);
      results.push_back(r);
    }
  }
  printf("\ncopy bandwidth (best over sizes): %.1f GB/s\n", copy_best);
  printf("%s\n", all_valid ? "all kernels validated" : "VALIDATION FAILED");

  if (cfg.json) {
    FILE *f = fopen(cfg.json, "w");
    if (!f) {
      fprintf(stderr, "bench_kernels: cannot write %s\n", cfg.json);
      return 1;
    }
    char stamp[64];
    bench_timestamp(stamp, sizeof stamp);
    fprintf(f, "{\n  \"bench\": \"bench_kernels\",\n  \"date\": \"%s\",\n  \"device\": {\"name\": ",
            stamp);
    bench_json_string(f, prop.name);
    fprintf(f,
            ", \"sm\": \"%d%d\", \"sms\": %d, \"l2_bytes\": %zu, \"memory_bytes\": %zu, "
            "\"driver\": %d, \"runtime\": %d},\n",
            prop.major, prop.minor, prop.multiProcessorCount, l2, (size_t)prop.totalGlobalMem,
            driver, runtime);
    fprintf(f, "  \"repeats\": %d,\n  \"warmup\": %d,\n  \"copy_gbps\": ", cfg.repeats,
            cfg.warmup);
    bench_json_number(f, copy_best);
    fprintf(f, ",\n  \"all_valid\": %s,\n  \"results\": [\n", all_valid ? "true" : "false");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result &r = results[i];
      fprintf(f, "    {\"kernel\": \"%s\", \"size_mib\": %zu, \"dims\": ", r.kernel.c_str(),
              r.size_mib);
      bench_json_string(f, r.dims.c_str());
      fprintf(f, ", \"traffic\": ");
      bench_json_string(f, r.traffic.c_str());
      fprintf(f, ", \"elementwise\": %s, \"bytes\": %zu, \"sets\": %zu, \"skipped\": %s",
              r.elementwise ? "true" : "false", r.bytes, r.sets, r.skipped ? "true" : "false");
      fprintf(f, ", \"valid\": %s, \"worst_err_over_tol\": ", r.valid ? "true" : "false");
      bench_json_number(f, r.worst);
      fprintf(f, ", \"median_us\": ");
      bench_json_number(f, r.median_us);
      fprintf(f, ", \"min_us\": ");
      bench_json_number(f, r.min_us);
      fprintf(f, ", \"gbps\": ");
      bench_json_number(f, r.gbps);
      fprintf(f, ", \"frac_of_copy\": ");
      bench_json_number(f, copy_best > 0 ? r.gbps / copy_best : NAN);
      fprintf(f, ", \"error\": ");
      bench_json_string(f, r.error.c_str());
      fprintf(f, "}%s\n", i + 1 < results.size() ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
      fprintf(stderr, "bench_kernels: writing %s failed\n", cfg.json);
      return 1;
    }
  }
  cudaCheck(cudaStreamDestroy(st));
  return all_valid ? 0 : 1;
}
