// nccl_emu.cc - an emulated NCCL for the CUDA backend on the CPU emulation
// (cudart_emu.cc): the subset src/cuda/cuda_comm.cu calls, with the ranks as
// threads of one process. Types and declarations are the real nccl.h's.
//
// A unique id names a group; ncclCommInitRank joins it and waits until all
// nranks have (as NCCL does). A collective runs when issued, as all work of
// the emulated streams does (cudart_emu.cc): each rank posts its send
// buffer, waits for the others at a barrier, computes the result from all
// the posted buffers in rank order (so every rank gets the same bits),
// waits at a second barrier (nobody reads a buffer any more) and writes its
// receive buffer. ncclCommAbort on one rank makes the others' collectives
// fail (their async error becomes ncclRemoteError); a rank that never comes
// makes a collective give up after BP_EMU_NCCL_WAIT_S seconds (default 120)
// the same way, instead of hanging a test.
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu.h"

namespace {

struct Group {
  explicit Group(int n_) : n(n_), send(n_, nullptr), joined(n_, 0) {}
  int n;
  std::mutex m;
  std::condition_variable cv;
  std::vector<const void *> send;
  std::vector<char> joined;
  int arrived = 0;
  unsigned long gen = 0;
  bool aborted = false;
};

std::mutex g_registry_mutex;
std::map<std::string, std::shared_ptr<Group>> g_registry;
unsigned long g_next_id = 0;

double wait_limit_s() {
  const char *v = std::getenv("BP_EMU_NCCL_WAIT_S");
  return v && *v ? std::atof(v) : 120.0;
}

// Every rank of g arrives; false if the group was aborted or a rank never came.
bool barrier(Group &g, std::unique_lock<std::mutex> &lk) {
  if (g.aborted) return false;
  const unsigned long my = g.gen;
  if (++g.arrived == g.n) {
    g.arrived = 0;
    ++g.gen;
    g.cv.notify_all();
    return true;
  }
  const bool ok = g.cv.wait_for(lk, std::chrono::duration<double>(wait_limit_s()),
                                [&] { return g.gen != my || g.aborted; });
  if (!ok) g.aborted = true;  // a rank never came: the group is broken for all
  if (g.aborted) g.cv.notify_all();
  return ok && !g.aborted && g.gen != my;
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32: return 4;
    case ncclFloat64: return 8;
    default: return 0;
  }
}

}  // namespace

struct ncclComm {
  std::shared_ptr<Group> group;
  int rank;
  ncclResult_t async = ncclSuccess;
};

namespace {

// The collective of comm: kind 0 all-reduce (sum), 1 broadcast from root.
void collective(ncclComm_t comm, int kind, const void *send, void *recv, size_t count,
                ncclDataType_t type, int root) {
  Group &g = *comm->group;
  const size_t bytes = count * type_size(type);
  std::vector<char> result(bytes);
  std::unique_lock<std::mutex> lk(g.m);
  g.send[comm->rank] = send;
  if (!barrier(g, lk)) {
    comm->async = ncclRemoteError;
    return;
  }
  if (kind == 1) {
    std::memcpy(result.data(), g.send[root], bytes);
  } else if (type == ncclFloat32) {
    float *r = reinterpret_cast<float *>(result.data());
    std::memcpy(r, g.send[0], bytes);
    for (int k = 1; k < g.n; ++k) {
      const float *s = static_cast<const float *>(g.send[k]);
      for (size_t i = 0; i < count; ++i) r[i] += s[i];
    }
  } else {
    double *r = reinterpret_cast<double *>(result.data());
    std::memcpy(r, g.send[0], bytes);
    for (int k = 1; k < g.n; ++k) {
      const double *s = static_cast<const double *>(g.send[k]);
      for (size_t i = 0; i < count; ++i) r[i] += s[i];
    }
  }
  if (!barrier(g, lk)) {
    comm->async = ncclRemoteError;
    return;
  }
  lk.unlock();
  if (bytes) std::memcpy(recv, result.data(), bytes);
}

ncclResult_t issue(ncclComm_t comm, int kind, const void *send, void *recv, size_t count,
                   ncclDataType_t type, int root, cudaStream_t stream) {
  if (!comm || type_size(type) == 0 || (count && (!send || !recv)) || root < 0 ||
      root >= comm->group->n)
    return ncclInvalidArgument;
  if (comm->async != ncclSuccess) return ncclInvalidUsage;
  bp_emu::stream_op(stream, [=] { collective(comm, kind, send, recv, count, type, root); });
  return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  if (!id) return ncclInvalidArgument;
  std::memset(id, 0, sizeof *id);
  std::lock_guard<std::mutex> lk(g_registry_mutex);
  std::snprintf(id->internal, sizeof id->internal, "bp-nccl-emu-%lu", ++g_next_id);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
  if (!out || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  const std::string key(id.internal, strnlen(id.internal, sizeof id.internal));
  if (key.rfind("bp-nccl-emu-", 0) != 0) return ncclInvalidArgument;  // not an id we made
  std::shared_ptr<Group> g;
  {
    std::lock_guard<std::mutex> lk(g_registry_mutex);
    auto &slot = g_registry[key];
    if (!slot) slot = std::make_shared<Group>(nranks);
    g = slot;
  }
  std::unique_lock<std::mutex> lk(g->m);
  if (g->n != nranks || g->joined[rank]) return ncclInvalidUsage;  // as NCCL: duplicate rank
  g->joined[rank] = 1;
  if (!barrier(*g, lk)) return ncclSystemError;
  *out = new ncclComm{g, rank};
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (op != ncclSum) return ncclInvalidArgument;  // the library only sums
  return issue(comm, 0, send, recv, count, type, 0, stream);
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  return issue(comm, 1, send, recv, count, type, root, stream);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
  if (!comm || !async) return ncclInvalidArgument;
  *async = comm->async;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  {
    std::lock_guard<std::mutex> lk(comm->group->m);
    comm->group->aborted = true;
    comm->group->cv.notify_all();
  }
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error (emulated NCCL)";
    case ncclSystemError: return "system error (emulated NCCL: a rank never joined)";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL)";
    case ncclRemoteError: return "remote process exited or there was a network error (emulated "
                                 "NCCL: another rank aborted or never came)";
    default: return "error (emulated NCCL)";
  }
}

}  // extern "C"
