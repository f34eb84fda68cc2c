// Math modes (bp_math_mode) and deterministic mode: the option API, the
// rounding rules, the accuracy of each mode against the double-precision
// reference, training in each mode, CUDA against the CPU per mode, and
// bit-identical reruns. CUDA cases skip without a device.
//
// Tolerances, and where they come from. A format with p significant bits
// rounds to nearest with a relative error of at most u = 2^-p:
//   FP32 p = 24 (u = 6.0e-8), TF32 p = 11 (u = 4.9e-4), BF16 p = 8 (u = 3.9e-3).
// In TF32 and BF16 every product rounds both of its operands, so each of the
// three products per layer sees relative input errors up to u on both sides;
// the products of rounded values are exact in float32 and the sums are
// float32, so the float32 part adds nothing of this size. A product's error
// is then at most 2u times the sum of |terms| (first order). Errors made in
// the forward pass reach the gradients through sigma' (at most 1/4) and the
// following products, one more 2u per product on the path: a gradient of
// layer i of L depends on at most 2L products (L forward, L backward). We
// compare norm-wise (Frobenius norm of the error over the norm of the
// reference, per layer), where independent rounding errors add in quadrature
// and cancellation cannot blow a single element up: bound 2 * 2L * u times a
// cancellation allowance of 4 (the sum of |terms| over |sum| in a norm-wise
// average over random data), i.e. 16 L u:
//   L = 2: TF32 1.6e-2, BF16 1.25e-1;   L = 3: TF32 2.3e-2, BF16 1.9e-1.
// Measured on the CPU emulation (the shapes below, 8 runs with fresh seeds):
// 0.3u to 2.8u per layer (BF16 1.0e-3 to 8.9e-3, TF32 1.4e-4 to 1.4e-3), so
// the bound has a margin of more than 10. FP32 keeps the 1e-4 of
// test_gradients.cc (norm-wise here; measured up to 6 float32 ulps, 4e-7).
// "The mode does something": the gradients must differ from FP32's by at
// least u/64 norm-wise (measured: at least 0.27u).
// CUDA against the CPU in a reduced mode: both sides within the bound of the
// reference, so within twice the bound of each other; the GPU's TF32 tensor
// cores may truncate rather than round the inputs, which doubles u, and the
// bound covers it. Training: the cost must fall below a quarter of its start.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "elementwise.cuh"
#include "internal.h"
#include "support/reference.h"
#include "support/test_util.h"

#ifdef BP_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels.cuh"
#endif

namespace {

const bp_math_mode kModes[] = {BP_MATH_FP32, BP_MATH_TF32, BP_MATH_BF16};

// Unit roundoff of the inputs of the products in a mode.
double unit_roundoff(bp_math_mode m) {
  switch (m) {
    case BP_MATH_TF32: return std::ldexp(1.0, -11);
    case BP_MATH_BF16: return std::ldexp(1.0, -8);
    default: return std::ldexp(1.0, -24);
  }
}

// Norm-wise gradient tolerance against the double reference (see the top).
double grad_tolerance(bp_math_mode m, int layers) {
  if (m == BP_MATH_FP32) return 1e-4;
  return 16.0 * layers * unit_roundoff(m);
}

// True if the backend of ctx can run mode (CUDA: compute capability 8.0).
bool mode_available(bp_context *ctx, bp_math_mode mode) {
  if (mode == BP_MATH_FP32 || bp_context_backend(ctx) == BP_BACKEND_CPU) return true;
#ifdef BP_WITH_CUDA
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess)
    return false;
  return major >= 8;
#else
  return false;
#endif
}

// Sets the math mode; on a device that cannot run it, checks the refusal and
// returns false.
bool set_mode(bp_network *net, bp_math_mode mode) {
  bp_context *ctx = bp_network_context(net);
  if (!mode_available(ctx, mode)) {
    const bp_math_mode before = bp_network_math_mode(net);
    EXPECT_EQ(bp_network_set_math_mode(net, mode), BP_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(bp_context_last_error(ctx)).find("8.0"), std::string::npos)
        << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_math_mode(net), before);
    return false;
  }
  EXPECT_EQ(bp_network_set_math_mode(net, mode), BP_OK) << bp_context_last_error(ctx);
  return bp_network_math_mode(net) == mode;
}

// The product paths to cover on a backend: the CPU has one (it ignores the
// switch); CUDA has the cuBLAS path (the default) and the cuBLASLt path.
std::vector<bp_product_path> product_paths(bp_backend backend) {
  if (backend == BP_BACKEND_CUDA) return {BP_PRODUCTS_CUBLAS, BP_PRODUCTS_CUBLASLT};
  return {BP_PRODUCTS_CUBLAS};
}

const char *product_name(bp_product_path p) {
  return p == BP_PRODUCTS_CUBLASLT ? "cublaslt" : "cublas";
}

// ||a - b|| / ||b|| over one layer's dW and db together.
double layer_rel_err(const ref::Grads &a, const ref::Grads &b, size_t i) {
  double num = 0, den = 0;
  for (size_t k = 0; k < b.dW[i].size(); ++k) {
    num += (a.dW[i][k] - b.dW[i][k]) * (a.dW[i][k] - b.dW[i][k]);
    den += b.dW[i][k] * b.dW[i][k];
  }
  for (size_t k = 0; k < b.db[i].size(); ++k) {
    num += (a.db[i][k] - b.db[i][k]) * (a.db[i][k] - b.db[i][k]);
    den += b.db[i][k] * b.db[i][k];
  }
  EXPECT_GT(den, 1e-20) << "layer " << i << ": the reference gradient is zero";
  return std::sqrt(num / den);
}

// ||a - b|| / ||b|| of two float vectors.
double vec_rel_err(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t k = 0; k < b.size(); ++k) {
    num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
    den += (double)b[k] * b[k];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

bool grads_identical(const ref::Grads &a, const ref::Grads &b) {
  return a.dW == b.dW && a.db == b.db;
}

// A learnable classification: 4 classes from the signs of two inputs.
void rule_data(int n, int d, uint64_t seed, std::vector<float> &X, std::vector<float> &Y) {
  X = ref::random_vector((size_t)n * d, seed);
  Y.assign((size_t)n * 4, 0.0f);
  for (int e = 0; e < n; ++e) {
    int cls = (X[(size_t)e * d] > 0) + 2 * (X[(size_t)e * d + 1] > 0);
    Y[(size_t)e * 4 + cls] = 1.0f;
  }
}

// ---- Rounding rules (host; every build) -------------------------------------------

// An arithmetic (not bit-level) reference: round x to p significant bits,
// nearest-even, with the float32 exponent range (subnormals at the same
// absolute spacing as float32's smallest normal exponent allows), overflow
// to infinity.
float round_reference(float x, int p) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0f) return x;
  const double ax = std::fabs((double)x);
  int e = std::max((int)std::floor(std::log2(ax)), -126);
  // log2 may be off by one at exact powers of two: fix it.
  if (std::ldexp(1.0, e) > ax && e > -126) --e;
  if (std::ldexp(1.0, e + 1) <= ax) ++e;
  const double spacing = std::ldexp(1.0, e - (p - 1));
  const int old = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint((double)x / spacing) * spacing;
  std::fesetround(old);
  if (std::fabs(r) >= std::ldexp(1.0, 128)) return std::copysign(INFINITY, x);
  return (float)r;
}

std::vector<float> rounding_cases(uint64_t seed, size_t random_count) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, 3.0e38f, -3.0e38f,
                          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::denorm_min(), 1e-40f, -3e-39f, INFINITY,
                          -INFINITY, NAN, -NAN};
  // Exact ties and their neighbours for both formats: 1 + half an ulp.
  for (int drop : {13, 16}) {
    for (uint32_t base : {0x3f800000u, 0x3f810000u, 0x40490000u, 0x00010000u, 0xc2f6e000u}) {
      const uint32_t half = 1u << (drop - 1);
      for (uint32_t bits : {base | half, (base | half) + 1, (base | half) - 1,
                            (base + (1u << drop)) | half}) {
        float f;
        std::memcpy(&f, &bits, sizeof f);
        v.push_back(f);
      }
    }
  }
  std::mt19937_64 gen(seed);
  for (size_t i = 0; i < random_count; ++i) {
    uint32_t bits = (uint32_t)gen();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    v.push_back(f);
  }
  return v;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

TEST(MathRounding, HostRoundingMatchesAnArithmeticReference) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  int checked_inexact = 0;
  for (float x : rounding_cases(seed, 200000)) {
    const float b = bp_round_bf16(x), t = bp_round_tf32(x);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(b) && std::isnan(t)) << "NaN must stay NaN";
      EXPECT_EQ(std::signbit(b), std::signbit(x));
      continue;
    }
    EXPECT_EQ(bits_of(b), bits_of(round_reference(x, 8))) << "bf16 of " << x;
    EXPECT_EQ(bits_of(t), bits_of(round_reference(x, 11))) << "tf32 of " << x;
    EXPECT_EQ(bits_of(b) & 0xffffu, 0u);
    EXPECT_EQ(bits_of(t) & 0x1fffu, 0u);
    EXPECT_EQ((uint32_t)bp_bf16_bits(x), bits_of(b) >> 16);
    checked_inexact += b != x;
  }
  EXPECT_GT(checked_inexact, 1000) << "the cases must include values that round";
  // Ties go to even, both ways.
  EXPECT_EQ(bits_of(bp_round_bf16(1.0f + std::ldexp(1.0f, -8))), bits_of(1.0f));
  EXPECT_EQ(bits_of(bp_round_bf16(1.0f + 3 * std::ldexp(1.0f, -8))),
            bits_of(1.0f + std::ldexp(1.0f, -6)));
  EXPECT_EQ(bits_of(bp_round_tf32(1.0f + std::ldexp(1.0f, -11))), bits_of(1.0f));
  EXPECT_TRUE(std::isinf(bp_round_bf16(std::numeric_limits<float>::max())));
}

#ifdef BP_WITH_CUDA
// The host rounding against NVIDIA's own host conversion (cuda_bf16.h).
TEST(MathRounding, HostBf16MatchesFloat2Bfloat16Rn) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (float x : rounding_cases(seed, 200000)) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    uint16_t hb;
    std::memcpy(&hb, &h, sizeof hb);
    const uint16_t ours = bp_bf16_bits(x);
    if (std::isnan(x)) {
      EXPECT_EQ(hb & 0x7f80, 0x7f80);
      EXPECT_NE(hb & 0x7f, 0);
      EXPECT_EQ(ours & 0x7f80, 0x7f80);
      EXPECT_NE(ours & 0x7f, 0);
    } else {
      EXPECT_EQ(ours, hb) << "x = " << x << " (bits 0x" << std::hex << bits_of(x) << ")";
    }
  }
}
#endif

// ---- The option API -----------------------------------------------------------------

TEST(MathModeNames, RoundTripAndRejection) {
  for (bp_math_mode m : kModes) {
    bp_math_mode back = (bp_math_mode)99;
    ASSERT_EQ(bp_math_mode_parse(bp_math_mode_name(m), &back), BP_OK) << bp_math_mode_name(m);
    EXPECT_EQ(back, m);
  }
  EXPECT_STREQ(bp_math_mode_name(BP_MATH_FP32), "fp32");
  EXPECT_STREQ(bp_math_mode_name(BP_MATH_TF32), "tf32");
  EXPECT_STREQ(bp_math_mode_name(BP_MATH_BF16), "bf16");
  EXPECT_STREQ(bp_math_mode_name((bp_math_mode)7), "unknown");
  for (const char *bad : {"", "FP32", "fp16", "bf16 ", "tf", "float32", "unknown"}) {
    bp_math_mode m = BP_MATH_TF32;
    EXPECT_EQ(bp_math_mode_parse(bad, &m), BP_ERR_INVALID_ARGUMENT) << "'" << bad << "'";
    EXPECT_EQ(m, BP_MATH_TF32) << "a rejected name must leave *mode alone";
  }
  bp_math_mode m = BP_MATH_BF16;
  EXPECT_EQ(bp_math_mode_parse(nullptr, &m), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, BP_MATH_BF16);
  EXPECT_EQ(bp_math_mode_parse("fp32", nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_math_mode(nullptr), BP_MATH_FP32);
  EXPECT_EQ(bp_network_deterministic(nullptr), 1);
  EXPECT_EQ(bp_network_set_math_mode(nullptr, BP_MATH_FP32), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_set_deterministic(nullptr, 1), BP_ERR_INVALID_ARGUMENT);
}

class MathModes : public testing::TestWithParam<bp_backend> {};

TEST_P(MathModes, DefaultsSetGetAndUnknownModes) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {3, 4, 2};
  bp_network_desc desc;
  std::memset(&desc, 0xab, sizeof desc);
  bp_network_desc_init(&desc, 3, sizes, 9);
  EXPECT_EQ(desc.struct_size, sizeof(bp_network_desc));
  EXPECT_EQ(desc.version, (uint32_t)BP_NETWORK_DESC_VERSION);
  EXPECT_EQ(desc.math, BP_MATH_FP32);
  EXPECT_EQ(desc.deterministic, 1);
  EXPECT_EQ(desc.cuda_graphs, 0);
  tu::Net net;
  ASSERT_EQ(bp_network_create_ex(ctx, &desc, &net.net), BP_OK);
  EXPECT_EQ(bp_network_math_mode(net), BP_MATH_FP32);
  EXPECT_EQ(bp_network_deterministic(net), 1);

  for (bp_math_mode m : {BP_MATH_TF32, BP_MATH_BF16, BP_MATH_FP32, BP_MATH_BF16}) {
    if (set_mode(net, m)) {
      EXPECT_EQ(bp_network_math_mode(net), m);
    }
  }
  const bp_math_mode before = bp_network_math_mode(net);
  for (int bad : {3, -1, 1000}) {
    EXPECT_EQ(bp_network_set_math_mode(net, (bp_math_mode)bad), BP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(bp_context_last_error(ctx)).find("unknown math mode"), std::string::npos)
        << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_math_mode(net), before) << "a refused mode must change nothing";
  }
  EXPECT_EQ(bp_network_set_deterministic(net, 0), BP_OK);
  EXPECT_EQ(bp_network_deterministic(net), 0);
  EXPECT_EQ(bp_network_set_deterministic(net, 7), BP_OK);
  EXPECT_EQ(bp_network_deterministic(net), 1) << "any nonzero value is on";

  // The network still works after all that.
  const float X[] = {0.1f, -0.4f, 0.9f, 0.3f, 0.2f, -0.7f};
  float out[4] = {NAN, NAN, NAN, NAN};
  ASSERT_EQ(bp_forward(net, X, 2, out), BP_OK) << bp_context_last_error(ctx);
  for (float o : out) EXPECT_TRUE(o > 0.0f && o < 1.0f) << o;
}

TEST_P(MathModes, DescVersionOneGetsDefaultsAndVersionTwoItsModes) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const int sizes[] = {3, 5, 2};
  // A version-1 caller knows nothing past optimizer: what lies there must be
  // ignored, so fill it with values that would be wrong if read.
  bp_network_desc v1;
  bp_network_desc_init(&v1, 3, sizes, 11);
  v1.struct_size = (uint32_t)offsetof(bp_network_desc, math);
  v1.version = 1;
  v1.math = (bp_math_mode)77;
  v1.deterministic = 0;
  v1.cuda_graphs = 1;
  tu::Net a;
  ASSERT_EQ(bp_network_create_ex(ctx, &v1, &a.net), BP_OK) << bp_context_last_error(ctx);
  EXPECT_EQ(bp_network_math_mode(a), BP_MATH_FP32);
  EXPECT_EQ(bp_network_deterministic(a), 1);
  EXPECT_EQ(bp_network_cuda_graphs(a), 0);

  bp_network_desc short_v1 = v1;
  short_v1.struct_size -= 4;
  bp_network *none = nullptr;
  EXPECT_EQ(bp_network_create_ex(ctx, &short_v1, &none), BP_ERR_UNSUPPORTED);
  EXPECT_EQ(none, nullptr);

  bp_network_desc v2;
  bp_network_desc_init(&v2, 3, sizes, 11);
  v2.math = BP_MATH_BF16;
  v2.deterministic = 0;
  tu::Net b;
  if (mode_available(ctx, BP_MATH_BF16)) {
    ASSERT_EQ(bp_network_create_ex(ctx, &v2, &b.net), BP_OK) << bp_context_last_error(ctx);
    EXPECT_EQ(bp_network_math_mode(b), BP_MATH_BF16);
    EXPECT_EQ(bp_network_deterministic(b), 0);
    // Same seed, same initial weights whatever the mode: the mode is about
    // the products, not the parameters.
    EXPECT_EQ(tu::all_params(a), tu::all_params(b));
  } else {
    EXPECT_EQ(bp_network_create_ex(ctx, &v2, &b.net), BP_ERR_UNSUPPORTED);
    EXPECT_EQ(b.net, nullptr);
  }
  v2.math = (bp_math_mode)5;
  EXPECT_EQ(bp_network_create_ex(ctx, &v2, &none), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(none, nullptr);
}

// ---- Accuracy per mode --------------------------------------------------------------

TEST_P(MathModes, GradientsPerModeAgainstTheDoubleReference) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  // tensor_cores: every product large and every layer's weights 256-byte
  // aligned in the parameter buffer. cuBLAS's FAST_TF32 compute type allows
  // tensor cores but does not force them; for small or unaligned products
  // it may run plain FP32 kernels, so on CUDA "TF32 differs from FP32" is
  // only asserted where tensor cores are certain to be worth it. (BF16
  // rounds its operands itself, so it differs everywhere.)
  struct Shape {
    std::vector<int> sizes;
    int n;
    bool tensor_cores;
  };
  const std::vector<Shape> shapes = {{{5, 7, 3}, 7, false},
                                     {{33, 17, 65, 9}, 50, false},
                                     {{120, 64, 10}, 300, false},
                                     {{784, 100, 10}, 64, false},
                                     {{256, 256, 256}, 256, true}};
  for (bp_product_path impl : product_paths(GetParam())) {
    for (const Shape &s : shapes) {
      const uint64_t seed = tu::fresh_seed();
      const int L = (int)s.sizes.size() - 1;
      SCOPED_TRACE(testing::Message() << "sizes " << s.sizes[0] << "->" << s.sizes.back() << " ("
                                      << L << " layers), n " << s.n << ", seed " << seed
                                      << ", products " << product_name(impl));
      tu::Net net;
      ASSERT_EQ(bp_network_create(ctx, L + 1, s.sizes.data(), seed, &net.net), BP_OK)
          << bp_context_last_error(ctx);
      ASSERT_EQ(bp_network_set_product_path(net, impl), BP_OK);
      auto X = ref::random_vector((size_t)s.n * s.sizes[0], seed + 1);
      auto Y = ref::random_vector((size_t)s.n * s.sizes.back(), seed + 2, 0.0f, 1.0f);
      const ref::Net r = ref::from_network(net);
      const auto Xd = ref::to_double(X), Yd = ref::to_double(Y);
      const ref::Grads want = ref::gradients(r, Xd, Yd, s.n);
      const double want_cost = ref::cost(r, Xd, Yd, s.n);
      ref::Grads fp32;
      for (bp_math_mode m : kModes) {
        SCOPED_TRACE(bp_math_mode_name(m));
        if (!set_mode(net, m)) continue;
        float cost = NAN;
        const ref::Grads got = ref::library_grads(net, X, Y, s.n, &cost);
#ifdef BP_WITH_CUDA
        // The cuBLASLt path must run on cuBLASLt, not only its cuBLAS fallback:
        // certain for the tensor-core modes on the large, aligned shape.
        if (impl == BP_PRODUCTS_CUBLASLT && s.tensor_cores &&
            m != BP_MATH_FP32) {
          EXPECT_GT(bp_cuda_debug_lt_plans(net), 0) << "no product ran on cuBLASLt";
        }
#endif
        const double tol = grad_tolerance(m, L);
        EXPECT_LT(ref::rel_err(cost, want_cost), tol) << "cost " << cost << " vs " << want_cost;
        for (int i = 0; i < L; ++i) {
          const double err = layer_rel_err(got, want, (size_t)i);
          EXPECT_LT(err, tol) << "layer " << i << " gradient, norm-wise error " << err;
          const bool must_move = m == BP_MATH_BF16 || (m == BP_MATH_TF32 && (s.tensor_cores ||
                                                   GetParam() == BP_BACKEND_CPU));
          if (must_move) {
            const double moved = layer_rel_err(got, fp32, (size_t)i);
            EXPECT_GT(moved, unit_roundoff(m) / 64)
                << "layer " << i << ": the gradient barely differs from FP32's (" << moved
                << "); the mode did not round the products' inputs";
          }
        }
        if (m == BP_MATH_FP32) {
          fp32 = got;
        } else if (m == BP_MATH_BF16 || s.tensor_cores || GetParam() == BP_BACKEND_CPU) {
          EXPECT_FALSE(grads_identical(got, fp32)) << "identical to FP32: the mode did nothing";
        }
      }
    }
  }
}

TEST_P(MathModes, ModeChangesTakeEffectAtTheNextCallAndFp32IsUntouched) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int sizes[] = {40, 30, 20, 4};
  const int n = 77;
  std::vector<float> X, Y;
  rule_data(n, 40, seed, X, Y);
  for (bp_product_path impl : product_paths(GetParam())) {
    SCOPED_TRACE(product_name(impl));
    // A: FP32, the mode never touched. B: through BF16 and TF32 and back.
    tu::Net a, b;
    ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &a.net), BP_OK);
    ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &b.net), BP_OK);
    ASSERT_EQ(bp_network_set_product_path(a, impl), BP_OK);
    ASSERT_EQ(bp_network_set_product_path(b, impl), BP_OK);
    float ca = 0, cb = 0;
    const ref::Grads ga = ref::library_grads(a, X, Y, n, &ca);
    ref::Grads reduced[2];
    bool ran[2] = {false, false};
    const bp_math_mode others[2] = {BP_MATH_BF16, BP_MATH_TF32};
    for (int k = 0; k < 2; ++k) {
      if (!set_mode(b, others[k])) continue;
      reduced[k] = ref::library_grads(b, X, Y, n, &cb);
      ran[k] = true;
      // TF32 on CUDA may run plain FP32 kernels for these small, unaligned
      // products (see GradientsPerModeAgainstTheDoubleReference).
      if (others[k] == BP_MATH_BF16 || GetParam() == BP_BACKEND_CPU) {
        EXPECT_FALSE(grads_identical(reduced[k], ga)) << bp_math_mode_name(others[k]);
      }
    }
    ASSERT_TRUE(set_mode(b, BP_MATH_FP32));
    const ref::Grads gb = ref::library_grads(b, X, Y, n, &cb);
    EXPECT_TRUE(grads_identical(gb, ga)) << "FP32 after other modes differs from FP32";
    EXPECT_EQ(ca, cb);
    if (ran[0]) {
      ASSERT_TRUE(set_mode(b, BP_MATH_BF16));
      EXPECT_TRUE(grads_identical(ref::library_grads(b, X, Y, n, &cb), reduced[0]))
          << "BF16 again gives other gradients";
      ASSERT_TRUE(set_mode(b, BP_MATH_FP32));
    }
    // Training in FP32 from there: bit-identical to the untouched network.
    for (int step = 0; step < 20; ++step) {
      ASSERT_EQ(bp_train_batch(a, X.data(), Y.data(), n, 1.0f, &ca), BP_OK);
      ASSERT_EQ(bp_train_batch(b, X.data(), Y.data(), n, 1.0f, &cb), BP_OK);
      ASSERT_EQ(ca, cb) << "step " << step;
    }
    const auto pa = tu::all_params(a), pb = tu::all_params(b);
    ASSERT_EQ(pa.size(), pb.size());
    EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)));
  }
}

TEST_P(MathModes, TrainingStillLearnsInEveryMode) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const int n = 2000, d = 16, sizes[] = {16, 32, 4};
  std::vector<float> X, Y;
  rule_data(n, d, seed, X, Y);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, d, 4, X.data(), Y.data(), &data.data), BP_OK);
  for (bp_math_mode m : kModes) {
    SCOPED_TRACE(bp_math_mode_name(m));
    tu::Net net;
    ASSERT_EQ(bp_network_create(ctx, 3, sizes, seed, &net.net), BP_OK);
    if (!set_mode(net, m)) continue;
    float cost0 = 0, acc0 = 0, cost = 0, acc = 0, train_cost = 0;
    ASSERT_EQ(bp_evaluate(net, data, &cost0, &acc0), BP_OK);
    for (int e = 0; e < 15; ++e)
      ASSERT_EQ(bp_train_epoch(net, data, 32, 2.0f, seed + (uint64_t)e, &train_cost), BP_OK)
          << bp_context_last_error(ctx);
    ASSERT_EQ(bp_evaluate(net, data, &cost, &acc), BP_OK);
    EXPECT_LT(cost, 0.25f * cost0) << "cost " << cost0 << " -> " << cost;
    EXPECT_GT(acc, 0.9f) << "accuracy " << acc0 << " -> " << acc;
  }
}

TEST_P(MathModes, DeterministicRunsAreBitIdenticalInEveryMode) {
  tu::Ctx ctx;
  BP_MAKE_CONTEXT(ctx, GetParam());
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  // Large enough for the products to have real choices of algorithm (a long
  // inner dimension for the weight gradient).
  const int n = 3000, d = 200, sizes[] = {200, 256, 64, 4};
  std::vector<float> X, Y;
  rule_data(n, d, seed, X, Y);
  tu::Data data;
  ASSERT_EQ(bp_dataset_create(ctx, n, d, 4, X.data(), Y.data(), &data.data), BP_OK);
  for (bp_product_path impl : product_paths(GetParam())) {
    for (bp_math_mode m : kModes) {
      SCOPED_TRACE(testing::Message() << bp_math_mode_name(m) << ", products "
                                      << product_name(impl));
      auto run = [&](std::vector<float> &params, std::vector<float> &costs) {
        tu::Net net;
        ASSERT_EQ(bp_network_create(ctx, 4, sizes, seed, &net.net), BP_OK);
        ASSERT_EQ(bp_network_set_product_path(net, impl), BP_OK);
        if (!set_mode(net, m)) return;
        ASSERT_EQ(bp_network_deterministic(net), 1);
        for (int e = 0; e < 2; ++e) {
          float c = 0;
          ASSERT_EQ(bp_train_epoch(net, data, 1000, 1.0f, seed ^ (uint64_t)e, &c), BP_OK);
          costs.push_back(c);
        }
        float c = 0;
        ASSERT_EQ(bp_train_batch(net, X.data(), Y.data(), 700, 1.0f, &c), BP_OK);
        costs.push_back(c);
        params = tu::all_params(net);
      };
      std::vector<float> p1, p2, c1, c2;
      run(p1, c1);
      run(p2, c2);
      if (p1.empty()) continue;  // mode unavailable on this device
      ASSERT_EQ(p1.size(), p2.size());
      EXPECT_EQ(0, std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)));
      ASSERT_EQ(c1.size(), c2.size());
      EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)));
      EXPECT_NE(c1.front(), c1.back()) << "training did not move";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, MathModes, testing::Values(BP_BACKEND_CPU, BP_BACKEND_CUDA),
                         tu::backend_label);

// ---- CUDA against the CPU, per mode --------------------------------------------------

TEST(MathModeParity, CudaMatchesTheCpuInEveryMode) {
  if (bp_cuda_device_count() == 0)
    GTEST_SKIP() << (bp_has_cuda() ? "no CUDA device" : "built without CUDA");
  tu::Ctx cpu, cuda;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &cpu.ctx), BP_OK);
  ASSERT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &cuda.ctx), BP_OK);
  struct Shape {
    std::vector<int> sizes;
    int n;
  };
  const std::vector<Shape> shapes = {{{784, 100, 10}, 513}, {{37, 33, 65, 10}, 1000}};
  for (bp_product_path impl : {BP_PRODUCTS_CUBLAS, BP_PRODUCTS_CUBLASLT}) {
    for (const Shape &s : shapes) {
      const int L = (int)s.sizes.size() - 1;
      for (bp_math_mode m : kModes) {
        const uint64_t seed = tu::fresh_seed();
        SCOPED_TRACE(testing::Message() << "products " << product_name(impl) << ", " << bp_math_mode_name(m)
                                        << ", sizes " << s.sizes[0] << "->" << s.sizes.back()
                                        << ", n " << s.n << ", seed " << seed);
        tu::Net a, b;
        ASSERT_EQ(bp_network_create(cpu, L + 1, s.sizes.data(), seed, &a.net), BP_OK);
        ASSERT_EQ(bp_network_create(cuda, L + 1, s.sizes.data(), seed, &b.net), BP_OK)
            << bp_context_last_error(cuda);
        ASSERT_EQ(bp_network_set_product_path(b, impl), BP_OK);
        ASSERT_TRUE(set_mode(a, m));
        if (!set_mode(b, m)) continue;
        // FP32 keeps the tolerances of test_backend_parity.cc; the reduced
        // modes get twice their reference bound (see the top of the file).
        const double tol = m == BP_MATH_FP32 ? 1e-4 : 2 * grad_tolerance(m, L);
        auto X = ref::random_vector((size_t)s.n * s.sizes[0], seed + 1);
        auto Y = ref::random_vector((size_t)s.n * s.sizes.back(), seed + 2, 0.0f, 1.0f);
        std::vector<float> oa((size_t)s.n * s.sizes.back(), NAN), ob(oa.size(), NAN);
        ASSERT_EQ(bp_forward(a, X.data(), s.n, oa.data()), BP_OK);
        ASSERT_EQ(bp_forward(b, X.data(), s.n, ob.data()), BP_OK) << bp_context_last_error(cuda);
        EXPECT_LT(vec_rel_err(ob, oa), m == BP_MATH_FP32 ? 1e-5 : tol) << "forward outputs";
        float ca = NAN, cb = NAN;
        const ref::Grads ga = ref::library_grads(a, X, Y, s.n, &ca);
        const ref::Grads gb = ref::library_grads(b, X, Y, s.n, &cb);
        EXPECT_LT(ref::rel_err(cb, ca), m == BP_MATH_FP32 ? 1e-5 : tol) << cb << " vs " << ca;
        for (int i = 0; i < L; ++i)
          EXPECT_LT(layer_rel_err(gb, ga, (size_t)i), tol) << "layer " << i << " gradient";
        for (int step = 0; step < 5; ++step) {
          ASSERT_EQ(bp_train_batch(a, X.data(), Y.data(), s.n, 0.5f, &ca), BP_OK);
          ASSERT_EQ(bp_train_batch(b, X.data(), Y.data(), s.n, 0.5f, &cb), BP_OK)
              << bp_context_last_error(cuda);
        }
        EXPECT_LT(vec_rel_err(tu::all_params(b), tu::all_params(a)),
                  m == BP_MATH_FP32 ? 1e-5 : tol)
            << "weights after 5 steps";
      }
    }
  }
}

// ---- The bfloat16 conversion kernel (kernels/convert.cu) ------------------------------

#ifdef BP_WITH_CUDA
TEST(MathModeKernels, Bf16ConversionMatchesTheHostRounding) {
  if (bp_cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const std::vector<float> cases = rounding_cases(seed, 300000);
  float *src = nullptr;
  uint16_t *dst = nullptr;
  ASSERT_EQ(cudaMalloc(&src, (cases.size() + 8) * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dst, (cases.size() + 8) * sizeof(uint16_t)), cudaSuccess);
  // Counts that are not multiples of 4 or of the block, and offsets that
  // break the 16-byte alignment of the vector path.
  for (size_t count : {(size_t)1, (size_t)3, (size_t)4, (size_t)1027, cases.size()}) {
    for (size_t offset : {(size_t)0, (size_t)1, (size_t)4}) {
      SCOPED_TRACE(testing::Message() << "count " << count << ", offset " << offset);
      if (offset + count > cases.size() + 8) continue;
      const size_t c = std::min(count, cases.size());
      ASSERT_EQ(cudaMemcpy(src + offset, cases.data(), c * sizeof(float), cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_EQ(cudaMemset(dst, 0xff, (cases.size() + 8) * sizeof(uint16_t)), cudaSuccess);
      ASSERT_EQ(bp_launch_float_to_bf16(src + offset, dst + offset, c, nullptr), cudaSuccess);
      std::vector<uint16_t> got(c + 1);
      ASSERT_EQ(cudaMemcpy(got.data(), dst + offset, (c + 1) * sizeof(uint16_t),
                           cudaMemcpyDeviceToHost),
                cudaSuccess);
      int bad = 0;
      for (size_t i = 0; i < c; ++i) {
        const uint16_t want = bp_bf16_bits(cases[i]);
        const bool ok = std::isnan(cases[i]) ? ((got[i] & 0x7f80) == 0x7f80 && (got[i] & 0x7f))
                                             : got[i] == want;
        if (!ok && bad++ < 5)
          ADD_FAILURE() << "element " << i << ": " << cases[i] << " gave 0x" << std::hex
                        << got[i] << ", expected 0x" << want;
      }
      EXPECT_EQ(got[c], 0xffff) << "wrote past count";
    }
  }
  EXPECT_EQ(bp_launch_float_to_bf16(nullptr, dst, 5, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_float_to_bf16(src, nullptr, 5, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(bp_launch_float_to_bf16(nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(src);
  cudaFree(dst);
}
#endif

}  // namespace
