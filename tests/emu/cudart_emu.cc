// cudart_emu.cc - the CUDA runtime, cuBLAS and cuBLASLt calls the library and
// its tests make, on the host, for the CPU emulation (cuda_emu.h). Memory is
// host memory; every stream runs its work at once, in order (so events and
// waits have nothing left to order), except a stream being captured, whose
// operations are recorded into a graph and run at each cudaGraphLaunch. As in
// CUDA, another stream joins a capture by waiting on an event recorded in it
// (its operations then go into the same graph, in issue order, which is one
// valid order of the graph's branches) and must be joined back (the capturing
// stream waits on an event recorded after its last operation) before the
// capture ends, else cudaErrorStreamCaptureUnjoined; a joined stream cannot
// be synchronized or queried during the capture. The
// products are plain loops in the precision asked for (float32 inputs,
// TF32- or bfloat16-rounded inputs, float32 accumulation), so results agree
// with the CPU backend to float rounding, not bit for bit.
#include "cuda_emu.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "backprop.h"
#include "elementwise.cuh"

// ---- Streams, capture, graphs -----------------------------------------------------

struct CUstream_st {
  bool capturing = false;
  std::vector<std::function<void()>> captured;
  // A stream that joined another's capture: the capturing stream, how many
  // operations it put there, and how many of those the capturing stream has
  // waited for (joined back).
  CUstream_st *origin = nullptr;
  long ops = 0, joined_ops = 0;
  std::vector<CUstream_st *> joiners;  // of a capturing stream
};
struct CUevent_st {
  CUstream_st *capture = nullptr;  // recorded inside this stream's capture
  CUstream_st *by = nullptr;       // on this stream,
  long ops = 0;                    // after this many of its captured operations
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};

namespace bp_emu {
// The capture s's work goes to, or nullptr.
CUstream_st *capture_of(cudaStream_t s) {
  if (s == nullptr) return nullptr;
  if (s->capturing) return s;
  if (s->origin != nullptr && s->origin->capturing) return s->origin;
  return nullptr;
}

void stream_op(cudaStream_t stream, const std::function<void()> &op) {
  CUstream_st *c = capture_of(stream);
  if (c == nullptr) {
    op();
    return;
  }
  c->captured.push_back(op);
  if (c != stream) ++stream->ops;
}
}  // namespace bp_emu

namespace {
// Which addresses are "device" memory and which are pinned host memory, for
// cudaPointerGetAttributes.
std::mutex g_mem_mutex;
std::map<const char *, size_t> g_device, g_pinned;

bool inside(const std::map<const char *, size_t> &m, const void *p) {
  const char *c = static_cast<const char *>(p);
  auto it = m.upper_bound(c);
  if (it == m.begin()) return false;
  --it;
  return c < it->first + (it->second ? it->second : 1);
}
}  // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t err) {
  return err == cudaSuccess ? "no error (emulated)" : "error (emulated)";
}
const char *cudaGetErrorName(cudaError_t err) {
  return err == cudaSuccess ? "cudaSuccess" : "cudaError (emulated)";
}
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
  (void)device;
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: *value = 0; break;  // e.g. no pageable memory access
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
// The one emulated device: UUID all zeros (every rank of a test shares it).
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "emulated device");
  prop->major = 9;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_device[static_cast<const char *>(*p)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  if (p == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    g_device.erase(static_cast<const char *>(p));
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags) {
  (void)flags;
  *p = std::malloc(bytes ? bytes : 1);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_pinned[static_cast<const char *>(*p)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }
cudaError_t cudaFreeHost(void *p) {
  if (p == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    g_pinned.erase(static_cast<const char *>(p));
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
  std::memset(a, 0, sizeof *a);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (inside(g_device, p)) {
    a->type = cudaMemoryTypeDevice;
    a->device = 0;
    a->devicePointer = const_cast<void *>(p);
  } else if (inside(g_pinned, p)) {
    a->type = cudaMemoryTypeHost;
    a->devicePointer = const_cast<void *>(p);
    a->hostPointer = const_cast<void *>(p);
  } else {
    a->type = cudaMemoryTypeUnregistered;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
  (void)kind;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
  (void)kind;
  bp_emu::stream_op(stream, [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
  bp_emu::stream_op(stream, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
  (void)flags;
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return bp_emu::capture_of(s) != nullptr ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  if (s == nullptr || e == nullptr || e->capture == nullptr || !e->capture->capturing)
    return cudaSuccess;  // work runs when issued: nothing to wait for
  CUstream_st *c = e->capture;
  if (s == c) {  // the capturing stream joins back what e's stream did so far
    if (e->by != c && e->by->origin == c) e->by->joined_ops = std::max(e->by->joined_ops, e->ops);
    return cudaSuccess;
  }
  if (s->capturing) return cudaErrorStreamCaptureIsolation;  // another capture's stream
  if (s->origin != c) {
    s->origin = c;
    s->ops = s->joined_ops = 0;
    c->joiners.push_back(s);
  }
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  CUstream_st *c = bp_emu::capture_of(s);
  e->capture = c;
  e->by = s;
  e->ops = c != nullptr && c != s ? s->ops : 0;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
// Work runs when issued: an event or a stream is always complete.
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t s) {
  return bp_emu::capture_of(s) != nullptr ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode) {
  if (s == nullptr || s->capturing) return cudaErrorIllegalState;
  s->capturing = true;
  s->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  if (s == nullptr || !s->capturing) return cudaErrorIllegalState;
  s->capturing = false;
  bool unjoined = false;
  for (CUstream_st *j : s->joiners) {
    if (j->ops > j->joined_ops) unjoined = true;
    j->origin = nullptr;
    j->ops = j->joined_ops = 0;
  }
  s->joiners.clear();
  if (unjoined) {  // as CUDA: the capture is invalidated, no graph
    s->captured.clear();
    *graph = nullptr;
    return cudaErrorStreamCaptureUnjoined;
  }
  *graph = new CUgraph_st;
  (*graph)->ops.swap(s->captured);
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status) {
  *status = s != nullptr && s->capturing ? cudaStreamCaptureStatusActive
                                         : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
  (void)flags;
  *exec = new CUgraphExec_st;
  (*exec)->ops = graph->ops;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  for (const auto &op : exec->ops) bp_emu::stream_op(stream, op);
  return cudaSuccess;
}

// kernels/debug_fault.cu faults on purpose; a CPU cannot fault that way
// without taking the process down, so the emulated launch reports the error
// a faulting kernel would leave.
cudaError_t bp_launch_debug_fault(cudaStream_t) { return cudaErrorLaunchFailure; }

}  // extern "C"

// ---- cuBLAS ---------------------------------------------------------------------------

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

enum class in_kind { f32, tf32, bf16 };

float load(const void *p, size_t i, in_kind kind) {
  if (kind == in_kind::bf16) {
    uint16_t bits;
    std::memcpy(&bits, static_cast<const uint16_t *>(p) + i, sizeof bits);
    uint32_t u = (uint32_t)bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  const float f = static_cast<const float *>(p)[i];
  return kind == in_kind::tf32 ? bp_round_tf32(f) : f;
}

// Column-major C = alpha op(A) op(B) + beta C, float accumulation. The
// operands are first copied, rounded as the mode says, into op(A) (m x k)
// and op(B) (k x n) column-major, so the inner loop runs over contiguous
// memory.
void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void *A, int lda,
          const void *B, int ldb, float beta, float *C, int ldc, in_kind kind) {
  std::vector<float> a((size_t)m * k), b((size_t)k * n), acc((size_t)m);
  for (int p = 0; p < k; ++p)
    for (int i = 0; i < m; ++i)
      a[(size_t)p * m + i] = load(A, ta ? (size_t)i * lda + p : (size_t)p * lda + i, kind);
  for (int j = 0; j < n; ++j)
    for (int p = 0; p < k; ++p)
      b[(size_t)j * k + p] = load(B, tb ? (size_t)p * ldb + j : (size_t)j * ldb + p, kind);
  for (int j = 0; j < n; ++j) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int p = 0; p < k; ++p) {
      const float bv = b[(size_t)j * k + p];
      const float *ap = &a[(size_t)p * m];
      for (int i = 0; i < m; ++i) acc[i] += ap[i] * bv;
    }
    for (int i = 0; i < m; ++i) {
      float &c = C[(size_t)j * ldc + i];
      c = alpha * acc[i] + (beta == 0.0f ? 0.0f : beta * c);
    }
  }
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void *, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t st) {
  return st == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "cuBLAS error (emulated)";
}
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc) {
  const float al = *alpha, be = *beta;
  bp_emu::stream_op(h->stream, [=] {
    gemm(ta != CUBLAS_OP_N, tb != CUBLAS_OP_N, m, n, k, al, A, lda, B, ldb, be, C, ldc,
         in_kind::f32);
  });
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                            int lda, const void *B, cudaDataType Btype, int ldb, const void *beta,
                            void *C, cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
  (void)algo;
  if (Atype != Btype || Ctype != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  in_kind kind = in_kind::f32;
  if (Atype == CUDA_R_16BF)
    kind = in_kind::bf16;
  else if (Atype != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  else if (compute == CUBLAS_COMPUTE_32F_FAST_TF32)
    kind = in_kind::tf32;
  const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
  float *Cf = static_cast<float *>(C);
  bp_emu::stream_op(h->stream, [=] {
    gemm(ta != CUBLAS_OP_N, tb != CUBLAS_OP_N, m, n, k, al, A, lda, B, ldb, be, Cf, ldc, kind);
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"

// ---- cuBLASLt ---------------------------------------------------------------------------
// The opaque descriptors hold these structs in their data arrays.

struct cublasLtContext {
  int unused = 0;
};

namespace {
struct lt_desc {
  cublasComputeType_t compute;
  int32_t ta, tb;
};
struct lt_layout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
static_assert(sizeof(lt_desc) <= sizeof(cublasLtMatmulDescOpaque_t), "desc");
static_assert(sizeof(lt_layout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "layout");
lt_desc *desc_of(cublasLtMatmulDesc_t d) { return reinterpret_cast<lt_desc *>(d->data); }
lt_layout *layout_of(cublasLtMatrixLayout_t l) { return reinterpret_cast<lt_layout *>(l->data); }
}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new cublasLtMatmulDescOpaque_t();
  *desc_of(*d) = lt_desc{compute, CUBLAS_OP_N, CUBLAS_OP_N};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t bytes) {
  if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr == CUBLASLT_MATMUL_DESC_TRANSA)
    std::memcpy(&desc_of(d)->ta, buf, bytes);
  else if (attr == CUBLASLT_MATMUL_DESC_TRANSB)
    std::memcpy(&desc_of(d)->tb, buf, bytes);
  else
    return CUBLAS_STATUS_NOT_SUPPORTED;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  *l = new cublasLtMatrixLayoutOpaque_t();
  *layout_of(*l) = lt_layout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
  *p = new cublasLtMatmulPreferenceOpaque_t();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                    cublasLtMatmulPreferenceAttributes_t,
                                                    const void *, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  std::memset(&results[0], 0, sizeof results[0]);
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].workspaceSize = 0;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                              cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                              cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t stream) {
  const lt_desc d = *desc_of(desc);
  const lt_layout a = *layout_of(Adesc), b = *layout_of(Bdesc), c = *layout_of(Cdesc),
                  dd = *layout_of(Ddesc);
  if (C != D || c.ld != dd.ld || a.type != b.type || dd.type != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = d.ta != CUBLAS_OP_N, tb = d.tb != CUBLAS_OP_N;
  const int m = (int)dd.rows, n = (int)dd.cols, k = (int)(ta ? a.rows : a.cols);
  in_kind kind = a.type == CUDA_R_16BF                            ? in_kind::bf16
                 : d.compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? in_kind::tf32
                                                                  : in_kind::f32;
  const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
  float *Df = static_cast<float *>(D);
  const int lda = (int)a.ld, ldb = (int)b.ld, ldc = (int)dd.ld;
  bp_emu::stream_op(stream, [=] {
    gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, Df, ldc, kind);
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
