// test_comm.cc - the communicator's API in one process (no launcher): the
// one-rank communicator, its options and errors, and that training with it
// is training without it. The ranks themselves are tested under mpirun
// (tests/mpi, ctest mpi_train_np*, mpi_fault_*).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backprop.h"

namespace {

TEST(Comm, WithoutALauncherItIsOneRank) {
  // A launcher's variables would make this an MPI rank.
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK"))
    GTEST_SKIP() << "running under an MPI launcher";
  bp_comm *comm = nullptr;
  ASSERT_EQ(bp_comm_create_from_env(nullptr, &comm), BP_OK) << bp_comm_last_error(nullptr);
  EXPECT_EQ(bp_comm_size(comm), 1);
  EXPECT_EQ(bp_comm_rank(comm), 0);
  EXPECT_EQ(bp_comm_local_rank(comm), 0);
  EXPECT_EQ(bp_comm_get_bootstrap(comm), BP_COMM_SINGLE);
  EXPECT_STREQ(bp_comm_bootstrap_name(BP_COMM_SINGLE), "single");
  EXPECT_STREQ(bp_comm_bootstrap_name(BP_COMM_MPI), "mpi");
  EXPECT_DOUBLE_EQ(bp_comm_get_timeout(comm), 300.0);
  EXPECT_EQ(bp_comm_set_timeout(comm, 20.0), BP_OK);
  EXPECT_DOUBLE_EQ(bp_comm_get_timeout(comm), 20.0);
  EXPECT_EQ(bp_comm_set_timeout(comm, 0.0), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_comm_set_timeout(comm, NAN), BP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(bp_comm_last_error(comm), "bp_comm_set_timeout"), nullptr);
  double v[2] = {1.5, -2.0};
  EXPECT_EQ(bp_comm_allreduce_sum(comm, v, 2), BP_OK);
  EXPECT_EQ(v[0], 1.5);
  EXPECT_EQ(v[1], -2.0);
  bp_comm_abort(comm, 1);  // one rank, no MPI: nothing to end, it returns
  bp_comm_destroy(comm);
  bp_comm_destroy(nullptr);
}

TEST(Comm, DescIsChecked) {
  bp_comm *comm = reinterpret_cast<bp_comm *>(1);
  bp_comm_desc d;
  bp_comm_desc_init(&d);
  EXPECT_EQ(d.struct_size, sizeof d);
  EXPECT_EQ(d.version, (uint32_t)BP_COMM_DESC_VERSION);
  EXPECT_EQ(d.transport, BP_COMM_TRANSPORT_AUTO);
  d.timeout_s = -1;
  EXPECT_EQ(bp_comm_create_from_env(&d, &comm), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(comm, nullptr);
  EXPECT_NE(std::strstr(bp_comm_last_error(nullptr), "timeout_s"), nullptr);
  bp_comm_desc_init(&d);
  d.version = BP_COMM_DESC_VERSION + 1;
  EXPECT_EQ(bp_comm_create_from_env(&d, &comm), BP_ERR_UNSUPPORTED);
  EXPECT_EQ(bp_comm_create_from_env(nullptr, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(bp_status_string(BP_ERR_COMM),
               "BP_ERR_COMM: a data-parallel collective failed or timed out");
}

TEST(Comm, OneRankTrainsExactlyAsNoCommunicator) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK"))
    GTEST_SKIP() << "running under an MPI launcher";
  bp_context *ctx = nullptr;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx), BP_OK);
  const int sizes[] = {5, 9, 7, 3};
  const int n = 97;
  std::vector<float> X(n * 5), Y(n * 3, 0.0f);
  for (int k = 0; k < n; ++k) {
    for (int j = 0; j < 5; ++j) X[k * 5 + j] = std::sin(0.37f * (k * 5 + j));
    Y[k * 3 + k % 3] = 1.0f;
  }
  bp_dataset *data = nullptr;
  ASSERT_EQ(bp_dataset_create(ctx, n, 5, 3, X.data(), Y.data(), &data), BP_OK);
  bp_network *a = nullptr, *b = nullptr;
  ASSERT_EQ(bp_network_create(ctx, 4, sizes, 11, &a), BP_OK);
  ASSERT_EQ(bp_network_create(ctx, 4, sizes, 11, &b), BP_OK);
  bp_comm *comm = nullptr;
  ASSERT_EQ(bp_comm_create_from_env(nullptr, &comm), BP_OK);
  EXPECT_EQ(bp_network_get_comm(a), nullptr);
  ASSERT_EQ(bp_network_set_comm(a, comm), BP_OK);
  EXPECT_EQ(bp_network_get_comm(a), comm);
  float ca = 0, cb = 0;
  for (int e = 0; e < 3; ++e) {
    ASSERT_EQ(bp_train_epoch(a, data, 10, 0.8f, 5 + e, &ca), BP_OK);
    ASSERT_EQ(bp_train_epoch(b, data, 10, 0.8f, 5 + e, &cb), BP_OK);
    EXPECT_EQ(ca, cb);
  }
  bp_epoch_stats st;
  ASSERT_EQ(bp_network_last_epoch_stats(a, &st, sizeof st), BP_OK);
  EXPECT_EQ(st.world_size, 0);  // one rank: nothing exchanged
  EXPECT_EQ(st.comm_bytes, 0.0);
  std::vector<float> wa(9 * 5), wb(9 * 5), ba(9), bb(9);
  ASSERT_EQ(bp_network_get_layer(a, 0, wa.data(), ba.data()), BP_OK);
  ASSERT_EQ(bp_network_get_layer(b, 0, wb.data(), bb.data()), BP_OK);
  EXPECT_EQ(std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)), 0);
  float ea, eb, aa, ab;
  ASSERT_EQ(bp_evaluate(a, data, &ea, &aa), BP_OK);
  ASSERT_EQ(bp_evaluate(b, data, &eb, &ab), BP_OK);
  EXPECT_EQ(ea, eb);
  EXPECT_EQ(aa, ab);
  ASSERT_EQ(bp_network_set_comm(a, nullptr), BP_OK);
  bp_network_destroy(a);
  bp_network_destroy(b);
  bp_dataset_destroy(data);
  bp_comm_destroy(comm);
  bp_context_destroy(ctx);
}

}  // namespace
