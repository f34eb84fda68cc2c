// test_comm_bootstrap.cc - data-parallel bootstrap without MPI and the
// transport decisions (src/comm, src/cuda/cuda_comm.cu):
//   - the shared-file rendezvous (BP_COMM_FILE): rank 0's bytes reach the
//     other ranks (threads here), a missing rank 0 is BP_ERR_COMM at the
//     deadline, another job's file is refused, rank 0 removes the file;
//   - bp_comm_create_from_env with BP_RANK / BP_WORLD_SIZE / BP_RENDEZVOUS;
//   - a BP_COMM_FILE communicator on the CPU backend: BP_ERR_UNSUPPORTED;
//   - the device keys behind "two ranks on one GPU: stage through MPI";
//   - on the CUDA emulation with the emulated NCCL (tests/emu/nccl_emu.cc,
//     backprop_emu_suite): 2 and 3 ranks as threads, each with its own
//     context, train data-parallel over NCCL bootstrapped through the file,
//     and end with weights within 1e-5 of a one-rank run and bit-identical
//     across ranks; the same over the TCP rendezvous (tcp:127.0.0.1:PORT).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backprop.h"
#include "comm/comm.h"
#include "support/loopback.h"

namespace {

std::string temp_path(const char *tag) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "/tmp/bp_rdv_%s_%ld_%d", tag, (long)getpid(), std::rand());
  std::remove(buf);
  return buf;
}

bool exists(const std::string &p) { return access(p.c_str(), F_OK) == 0; }

bp_comm *file_comm(int rank, int size, const std::string &path, double timeout_s = 30.0) {
  bp_comm_desc d;
  bp_comm_desc_init(&d);
  d.timeout_s = timeout_s;
  bp_comm *c = nullptr;
  EXPECT_EQ(bp_comm_create_file(&d, rank, size, rank, path.c_str(), &c), BP_OK)
      << bp_comm_last_error(nullptr);
  return c;
}

}  // namespace

TEST(CommDeviceKey, EqualOnlyForTheSameDevice) {
  unsigned char a[16] = {0}, b[16] = {0};
  b[15] = 1;
  const double ka = bp_comm_device_key(a, 16), kb = bp_comm_device_key(b, 16);
  EXPECT_NE(ka, 0.0);
  EXPECT_NE(ka, kb);
  EXPECT_EQ(ka, bp_comm_device_key(a, 16));
  EXPECT_EQ(ka, std::floor(ka));  // an exact integer: survives a sum with zeros
  EXPECT_LE(ka, 4503599627370497.0);
  // As the ranks' all-reduce leaves them: one key per rank.
  const double two_gpus[2] = {ka, kb}, one_gpu[3] = {kb, ka, kb};
  EXPECT_EQ(bp_comm_keys_repeat(two_gpus, 2), 0);
  EXPECT_EQ(bp_comm_keys_repeat(one_gpu, 3), 1);
  EXPECT_EQ(bp_comm_keys_repeat(one_gpu, 1), 0);
}

TEST(CommFileRendezvous, RankZerosBytesReachEveryRank) {
  const std::string path = temp_path("bcast");
  const int n = 3;
  std::vector<bp_comm *> comms(n);
  std::vector<std::vector<unsigned char>> got(n, std::vector<unsigned char>(128, 0));
  for (int i = 0; i < 128; ++i) got[0][i] = (unsigned char)(i * 7 + 1);
  std::vector<bp_status> st(n, BP_OK);
  std::vector<std::thread> ts;
  for (int r = n - 1; r >= 0; --r)  // the readers first: they poll
    ts.emplace_back([&, r] {
      comms[r] = file_comm(r, n, path);
      if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      st[r] = bp_comm_bcast_bytes(comms[r], got[r].data(), 128, "test broadcast");
    });
  for (auto &t : ts) t.join();
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(st[r], BP_OK) << bp_comm_last_error(comms[r]);
    EXPECT_EQ(got[r], got[0]) << "rank " << r;
    EXPECT_EQ(bp_comm_get_bootstrap(comms[r]), BP_COMM_FILE);
    EXPECT_EQ(bp_comm_rank(comms[r]), r);
    EXPECT_EQ(bp_comm_size(comms[r]), n);
  }
  EXPECT_TRUE(exists(path));
  for (int r = n - 1; r >= 0; --r) bp_comm_destroy(comms[r]);
  EXPECT_FALSE(exists(path)) << "rank 0 removes the rendezvous file";
  EXPECT_STREQ(bp_comm_bootstrap_name(BP_COMM_FILE), "file");
}

TEST(CommFileRendezvous, NoRankZeroIsACommErrorAtTheDeadline) {
  const std::string path = temp_path("late");
  bp_comm *c = file_comm(1, 2, path, 0.3);
  unsigned char id[128];
  const double t0 = bp_now_us();
  EXPECT_EQ(bp_comm_bcast_bytes(c, id, 128, "broadcast of NCCL's unique id"), BP_ERR_COMM);
  EXPECT_LT((bp_now_us() - t0) * 1e-6, 5.0);
  EXPECT_NE(std::strstr(bp_comm_last_error(c), "rendezvous file"), nullptr)
      << bp_comm_last_error(c);
  EXPECT_NE(std::strstr(bp_comm_last_error(c), "timeout of 0.3 s"), nullptr);
  // Broken from now on.
  double v = 1;
  EXPECT_EQ(bp_comm_allreduce_sum(c, &v, 1), BP_ERR_COMM);
  bp_comm_destroy(c);
}

TEST(CommFileRendezvous, AnotherJobsFileIsRefused) {
  const std::string path = temp_path("stale");
  bp_comm *writer = file_comm(0, 5, path);  // an earlier job of 5 ranks
  unsigned char id[128] = {1, 2, 3};
  ASSERT_EQ(bp_comm_bcast_bytes(writer, id, 128, "x"), BP_OK);
  bp_comm *reader = file_comm(1, 2, path, 2.0);
  EXPECT_EQ(bp_comm_bcast_bytes(reader, id, 128, "x"), BP_ERR_COMM);
  EXPECT_NE(std::strstr(bp_comm_last_error(reader), "not this job's"), nullptr)
      << bp_comm_last_error(reader);
  bp_comm_destroy(reader);
  bp_comm_destroy(writer);
  EXPECT_FALSE(exists(path));
}

TEST(CommFileRendezvous, FromTheEnvironment) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK"))
    GTEST_SKIP() << "under an MPI launcher, which takes precedence";
  const std::string path = temp_path("env");
  setenv("BP_RENDEZVOUS", ("file:" + path).c_str(), 1);
  setenv("BP_RANK", "1", 1);
  setenv("BP_WORLD_SIZE", "2", 1);
  bp_comm *c = nullptr;
  ASSERT_EQ(bp_comm_create_from_env(nullptr, &c), BP_OK) << bp_comm_last_error(nullptr);
  EXPECT_EQ(bp_comm_get_bootstrap(c), BP_COMM_FILE);
  EXPECT_EQ(bp_comm_rank(c), 1);
  EXPECT_EQ(bp_comm_size(c), 2);
  EXPECT_EQ(bp_comm_local_rank(c), 1);  // BP_LOCAL_RANK unset: the rank
  bp_comm_destroy(c);
  setenv("BP_LOCAL_RANK", "0", 1);
  ASSERT_EQ(bp_comm_create_from_env(nullptr, &c), BP_OK);
  EXPECT_EQ(bp_comm_local_rank(c), 0);
  bp_comm_destroy(c);
  setenv("BP_RANK", "2", 1);  // out of range
  EXPECT_EQ(bp_comm_create_from_env(nullptr, &c), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(std::strstr(bp_comm_last_error(nullptr), "BP_RANK"), nullptr);
  setenv("BP_RANK", "0", 1);
  setenv("BP_RENDEZVOUS", "nfs:/tmp/x", 1);  // neither file: nor tcp:
  EXPECT_EQ(bp_comm_create_from_env(nullptr, &c), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(bp_comm_last_error(nullptr), "file:PATH or tcp:HOST:PORT"), nullptr)
      << bp_comm_last_error(nullptr);
  unsetenv("BP_RENDEZVOUS");
  unsetenv("BP_RANK");
  unsetenv("BP_WORLD_SIZE");
  unsetenv("BP_LOCAL_RANK");
}

TEST(CommFileRendezvous, CpuBackendIsUnsupported) {
  const std::string path = temp_path("cpu");
  bp_comm *c = file_comm(0, 2, path, 1.0);
  bp_context *ctx = nullptr;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx), BP_OK);
  const int sizes[] = {4, 3, 2};
  bp_network *net = nullptr;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 1, &net), BP_OK);
  EXPECT_EQ(bp_network_set_comm(net, c), BP_ERR_UNSUPPORTED);
  EXPECT_NE(std::strstr(bp_context_last_error(ctx), "CUDA backend only"), nullptr)
      << bp_context_last_error(ctx);
  EXPECT_EQ(bp_network_get_comm(net), nullptr);
  // The program's own reduction has no way to go either: said so, no hang.
  double v = 1;
  EXPECT_EQ(bp_comm_allreduce_sum(c, &v, 1), BP_ERR_UNSUPPORTED);
  EXPECT_NE(std::strstr(bp_comm_last_error(c), "NCCL transport of the CUDA backend only"),
            nullptr);
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  bp_comm_destroy(c);
  EXPECT_FALSE(exists(path));
}

#if defined(BP_KERNEL_EMULATION)
namespace {

constexpr int kN = 70, kIn = 8, kOut = 4, kBatch = 16, kEpochs = 3;

void make_data(std::vector<float> &X, std::vector<float> &Y) {
  X.assign(kN * kIn, 0.0f);
  Y.assign(kN * kOut, 0.0f);
  unsigned s = 12345u;
  for (int k = 0; k < kN; ++k) {
    double sum = 0;
    for (int j = 0; j < kIn; ++j) {
      s = s * 1664525u + 1013904223u;
      X[k * kIn + j] = (float)((s >> 8) / 16777216.0) * 2.0f - 1.0f;
      sum += X[k * kIn + j] * (j + 1);
    }
    Y[k * kOut + (sum > 2 ? 0 : sum > 0 ? 1 : sum > -2 ? 2 : 3)] = 1.0f;
  }
}

std::vector<float> params_of(bp_network *net) {
  std::vector<float> p(bp_network_parameter_count(net));
  size_t off = 0;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    const size_t w = (size_t)bp_network_size(net, i) * bp_network_size(net, i + 1);
    EXPECT_EQ(bp_network_get_layer(net, i, p.data() + off, p.data() + off + w), BP_OK);
    off += w + bp_network_size(net, i + 1);
  }
  return p;
}

// One rank's run (comm NULL: the one-rank reference): the weights, the last
// epoch's cost, bp_evaluate's cost.
struct Run {
  std::vector<float> w;
  float cost = 0, eval = 0;
  int world = 0;
  double replays = 0;  // the last epoch's graph replays
  std::string error;
};

Run train(bp_comm *comm, int seed_for_weights, bool graphs = false) {
  Run out;
  std::vector<float> X, Y;
  make_data(X, Y);
  bp_context *ctx = nullptr;
  if (bp_context_create(BP_BACKEND_CUDA, 0, &ctx) != BP_OK) {
    out.error = "no CUDA context";
    return out;
  }
  const int sizes[] = {kIn, 16, 12, kOut};
  bp_dataset *data = nullptr;
  bp_network *net = nullptr;
  bp_status st = bp_dataset_create(ctx, kN, kIn, kOut, X.data(), Y.data(), &data);
  if (st == BP_OK) st = bp_network_create(ctx, 4, sizes, (uint64_t)seed_for_weights, &net);
  if (st == BP_OK && graphs) st = bp_network_set_cuda_graphs(net, 1);
  if (st == BP_OK && comm) st = bp_network_set_comm(net, comm);
  for (int e = 0; st == BP_OK && e < kEpochs; ++e)
    st = bp_train_epoch(net, data, kBatch, 0.5f, 99 + (uint64_t)e, &out.cost);
  float acc = 0;
  if (st == BP_OK) st = bp_evaluate(net, data, &out.eval, &acc);
  if (st == BP_OK) {
    out.w = params_of(net);
    bp_epoch_stats stats;
    bp_network_last_epoch_stats(net, &stats, sizeof stats);
    out.world = stats.world_size;
    out.replays = (double)stats.graph_replays;
  } else {
    out.error = bp_context_last_error(ctx);
  }
  if (net && comm) bp_network_set_comm(net, nullptr);
  bp_network_destroy(net);
  bp_dataset_destroy(data);
  bp_context_destroy(ctx);
  return out;
}

double rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::fmax(num, std::fabs((double)a[i] - b[i]));
    den = std::fmax(den, std::fabs((double)b[i]));
  }
  return num / (den > 0 ? den : 1);
}

// The ranks find each other through the file (tcp false) or through rank
// 0's socket on a free loopback port (tcp true).
void data_parallel_over_emulated_nccl(int n, bool tcp = false) {
  ASSERT_EQ(bp_has_nccl(), 1) << "the emulation suite is built with the emulated NCCL";
  const Run ref = train(nullptr, 7);
  ASSERT_TRUE(ref.error.empty()) << ref.error;
  const std::string path = temp_path("nccl");
  const int port = tcp ? free_loopback_port() : 0;
  ASSERT_TRUE(!tcp || port != 0);
  const std::string spec = tcp ? "tcp:127.0.0.1:" + std::to_string(port) : "file:" + path;
  std::vector<Run> runs(n);
  std::vector<bp_comm *> comms(n, nullptr);
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r)
    ts.emplace_back([&, r] {
      bp_comm_desc d;
      bp_comm_desc_init(&d);
      d.timeout_s = 30.0;
      EXPECT_EQ(bp_comm_create_rendezvous(&d, r, n, r, spec.c_str(), &comms[r]), BP_OK)
          << bp_comm_last_error(nullptr);
      if (comms[r]) runs[r] = train(comms[r], 7 + r);  // rank 0's weights win the broadcast
    });
  for (auto &t : ts) t.join();
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(runs[r].error.empty()) << "rank " << r << ": " << runs[r].error;
    EXPECT_EQ(runs[r].world, n);
    EXPECT_LE(rel_diff(runs[r].w, ref.w), 1e-5) << "rank " << r;
    EXPECT_NEAR(runs[r].cost, ref.cost, 1e-5 * std::fabs(ref.cost));
    EXPECT_NEAR(runs[r].eval, ref.eval, 1e-5 * std::fabs(ref.eval));
    ASSERT_EQ(runs[r].w.size(), runs[0].w.size());
    EXPECT_EQ(std::memcmp(runs[r].w.data(), runs[0].w.data(), sizeof(float) * runs[0].w.size()), 0)
        << "rank " << r << " is not bit-identical to rank 0";
    EXPECT_EQ(runs[r].cost, runs[0].cost);
  }
  for (int r = n - 1; r >= 0; --r) bp_comm_destroy(comms[r]);
  EXPECT_FALSE(exists(path));
}

// n ranks over the emulated NCCL, each rank's whole run with CUDA graphs
// off and then on (the step with its NCCL exchange captured and replayed):
// the same bits on every rank either way.
void graphs_change_no_bit(int n) {
  ASSERT_EQ(bp_has_nccl(), 1) << "the emulation suite is built with the emulated NCCL";
  std::vector<Run> runs[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    const std::string path = temp_path(graphs ? "graphs_on" : "graphs_off");
    runs[graphs].resize(n);
    std::vector<bp_comm *> comms(n, nullptr);
    std::vector<std::thread> ts;
    for (int r = 0; r < n; ++r)
      ts.emplace_back([&, r] {
        comms[r] = file_comm(r, n, path);
        if (comms[r]) runs[graphs][r] = train(comms[r], 7 + r, graphs != 0);
      });
    for (auto &t : ts) t.join();
    for (int r = n - 1; r >= 0; --r) bp_comm_destroy(comms[r]);
  }
  for (int r = 0; r < n; ++r) {
    const Run &off = runs[0][r], &on = runs[1][r];
    ASSERT_TRUE(off.error.empty()) << "rank " << r << ", graphs off: " << off.error;
    ASSERT_TRUE(on.error.empty()) << "rank " << r << ", graphs on: " << on.error;
    EXPECT_EQ(off.replays, 0) << "rank " << r;
    // 5 steps an epoch, 2 shapes (16 and the last 6): 3 replays at least.
    EXPECT_GE(on.replays, 3) << "rank " << r << ": the data-parallel step was not replayed";
    ASSERT_EQ(on.w.size(), off.w.size());
    EXPECT_EQ(std::memcmp(on.w.data(), off.w.data(), sizeof(float) * off.w.size()), 0)
        << "rank " << r << ": graphs on changed the weights";
    EXPECT_EQ(std::memcmp(on.w.data(), runs[1][0].w.data(), sizeof(float) * off.w.size()), 0)
        << "rank " << r << " differs from rank 0 with graphs on";
    EXPECT_EQ(on.cost, off.cost) << "rank " << r;
    EXPECT_EQ(on.eval, off.eval) << "rank " << r;
  }
}

}  // namespace

TEST(CommNcclEmulated, TwoRanksWithGraphsOnEqualGraphsOffBitForBit) { graphs_change_no_bit(2); }
TEST(CommNcclEmulated, ThreeRanksWithGraphsOnEqualGraphsOffBitForBit) { graphs_change_no_bit(3); }

TEST(CommNcclEmulated, TwoRanksTrainLikeOne) { data_parallel_over_emulated_nccl(2); }
TEST(CommNcclEmulated, ThreeRanksUnevenBatchesTrainLikeOne) { data_parallel_over_emulated_nccl(3); }
TEST(CommNcclEmulated, TwoRanksOverTcpTrainLikeOne) { data_parallel_over_emulated_nccl(2, true); }
TEST(CommNcclEmulated, ThreeRanksOverTcpTrainLikeOne) { data_parallel_over_emulated_nccl(3, true); }

TEST(CommNcclEmulated, MpiTransportWithoutMpiIsUnsupported) {
  const std::string path = temp_path("mpi");
  bp_comm_desc d;
  bp_comm_desc_init(&d);
  d.transport = BP_COMM_TRANSPORT_MPI;
  bp_comm *c = nullptr;
  ASSERT_EQ(bp_comm_create_file(&d, 0, 2, 0, path.c_str(), &c), BP_OK);
  bp_context *ctx = nullptr;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CUDA, 0, &ctx), BP_OK);
  const int sizes[] = {4, 3, 2};
  bp_network *net = nullptr;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 1, &net), BP_OK);
  EXPECT_EQ(bp_network_set_comm(net, c), BP_ERR_UNSUPPORTED);
  EXPECT_NE(std::strstr(bp_context_last_error(ctx), "MPI transport"), nullptr)
      << bp_context_last_error(ctx);
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  bp_comm_destroy(c);
}
#endif
