// Paths chosen by an attacker or by accident (issue 13): what a save may
// replace, what a reader may open, and what is left behind.
//  - A save replaces only a regular file or creates a new one; a FIFO, a
//    device or a directory at the target is refused and left as it was.
//  - A symbolic link is followed: the file it names is replaced, the link
//    stays. A dangling link is refused.
//  - Readers open only regular files, without blocking: a FIFO or
//    /dev/zero is an error at once, not a hang or unbounded growth.
//  - Temporaries of a save killed by SIGKILL are removed by the next save.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "io/file_util.h"
#include "support/test_util.h"

namespace {

class Paths : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
    const int sizes[] = {3, 4, 2};
    ASSERT_EQ(bp_network_create(ctx, 3, sizes, 1, &net.net), BP_OK);
    char tmpl[] = "/tmp/bp_paths_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string path(const std::string &name) const { return dir + "/" + name; }
  std::string error() const { return bp_context_last_error(ctx); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    DIR *d = opendir(dir.c_str());
    while (struct dirent *e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
    closedir(d);
    return out;
  }
  tu::Ctx ctx;
  tu::Net net;
  std::string dir;
};

bool is_fifo(const std::string &p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

TEST_F(Paths, SaveRefusesAFifoAndLeavesIt) {
  const std::string p = path("model.fifo");
  ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
  EXPECT_EQ(bp_network_save(net, p.c_str()), BP_ERR_IO);
  EXPECT_NE(error().find("a FIFO, not a regular file"), std::string::npos) << error();
  EXPECT_TRUE(is_fifo(p)) << "the FIFO was replaced";
  EXPECT_EQ(entries().size(), 1u) << "a temporary was left behind";
}

TEST_F(Paths, SaveRefusesADeviceThroughASymlink) {
  // /dev/null itself cannot be replaced without root; a link to it shows
  // the same check: the link is followed, and a device is refused.
  const std::string link = path("null.safetensors");
  ASSERT_EQ(symlink("/dev/null", link.c_str()), 0);
  EXPECT_EQ(bp_network_save(net, link.c_str()), BP_ERR_IO);
  EXPECT_NE(error().find("a character device"), std::string::npos) << error();
  struct stat st;
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link was replaced";
}

TEST_F(Paths, SaveRefusesADirectory) {
  const std::string p = path("model.safetensors");
  ASSERT_EQ(mkdir(p.c_str(), 0700), 0);
  EXPECT_EQ(bp_network_save(net, p.c_str()), BP_ERR_IO);
  EXPECT_NE(error().find("a directory"), std::string::npos) << error();
  EXPECT_EQ(bp_io_check_save_target(ctx, p.c_str(), nullptr), BP_ERR_IO);
}

TEST_F(Paths, SaveFollowsASymlinkAndKeepsIt) {
  const std::string real = path("run3.safetensors"), link = path("latest.safetensors");
  ASSERT_EQ(bp_network_save(net, real.c_str()), BP_OK);
  ASSERT_EQ(symlink("run3.safetensors", link.c_str()), 0);
  const int sizes[] = {3, 4, 2};
  tu::Net other;
  ASSERT_EQ(bp_network_create(ctx, 3, sizes, 99, &other.net), BP_OK);
  ASSERT_EQ(bp_network_save(other, link.c_str()), BP_OK) << error();
  struct stat st;
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link was replaced by a file";
  tu::Net loaded;
  ASSERT_EQ(bp_network_load(ctx, real.c_str(), &loaded.net), BP_OK);
  EXPECT_EQ(tu::all_params(loaded), tu::all_params(other)) << "the link's target was not updated";
  EXPECT_EQ(entries().size(), 2u);
}

TEST_F(Paths, SaveRefusesADanglingSymlink) {
  const std::string link = path("dangling.safetensors");
  ASSERT_EQ(symlink("/nonexistent/dir/model", link.c_str()), 0);
  EXPECT_EQ(bp_network_save(net, link.c_str()), BP_ERR_IO);
  EXPECT_NE(error().find("symbolic link"), std::string::npos) << error();
}

TEST_F(Paths, ANameTooLongForTheTemporaryIsRefusedBeforeWriting) {
  // 240 bytes is a valid name on its own (NAME_MAX 255), but not with the
  // temporary's suffix: found by the check, before any work.
  const std::string p = path(std::string(240, 'm'));
  EXPECT_EQ(bp_io_check_save_target(ctx, p.c_str(), nullptr), BP_ERR_IO);
  EXPECT_NE(error().find("temporary file's suffix"), std::string::npos) << error();
  EXPECT_EQ(bp_network_save(net, p.c_str()), BP_ERR_IO);
  EXPECT_TRUE(entries().empty());
  EXPECT_EQ(bp_io_check_save_target(ctx, path("ok.safetensors").c_str(), nullptr), BP_OK);
  EXPECT_EQ(bp_io_check_save_target(ctx, path("nodir/x").c_str(), nullptr), BP_ERR_IO);
}

TEST_F(Paths, StaleTemporariesOfDeadProcessesAreRemoved) {
  const std::string target = path("model.safetensors");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // a pid that no longer runs
  const std::string stale = target + ".tmp." + std::to_string(child) + ".Ab12Cd";
  const std::string live = target + ".tmp." + std::to_string(getppid()) + ".Xy34Zw";
  const std::string other = path("other.safetensors.tmp." + std::to_string(child) + ".Ab12Cd");
  for (const auto &p : {stale, live, other}) std::ofstream(p) << "partial";
  ASSERT_EQ(bp_network_save(net, target.c_str()), BP_OK) << error();
  EXPECT_NE(access(stale.c_str(), F_OK), 0) << "the dead process's temporary is still there";
  EXPECT_EQ(access(live.c_str(), F_OK), 0) << "a live process's temporary was removed";
  EXPECT_EQ(access(other.c_str(), F_OK), 0) << "another target's temporary was removed";
}

TEST_F(Paths, ReadersRefuseAFifoWithoutBlocking) {
  const std::string p = path("data.fifo");
  ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
  // Without O_NONBLOCK each of these would wait in open() for a writer.
  tu::Net n;
  EXPECT_EQ(bp_network_load(ctx, p.c_str(), &n.net), BP_ERR_IO);
  EXPECT_NE(error().find("a FIFO"), std::string::npos) << error();
  bp_model_info *info = nullptr;
  EXPECT_EQ(bp_model_info_read(ctx, p.c_str(), &info), BP_ERR_IO);
  EXPECT_NE(error().find("a FIFO"), std::string::npos) << error();
  bp_data *d = nullptr;
  bp_csv_options o;
  bp_csv_options_init(&o);
  EXPECT_EQ(bp_data_read_csv(ctx, p.c_str(), &o, &d), BP_ERR_IO);
  EXPECT_EQ(bp_data_read_fann(ctx, p.c_str(), &d), BP_ERR_IO);
  EXPECT_EQ(bp_data_read_idx(ctx, p.c_str(), p.c_str(), &d), BP_ERR_IO);
  EXPECT_EQ(d, nullptr);
}

TEST_F(Paths, ReadersRefuseDevicesInsteadOfReadingWithoutEnd) {
  if (access("/dev/zero", R_OK) != 0) GTEST_SKIP() << "no /dev/zero";
  tu::Net n;
  EXPECT_EQ(bp_network_load(ctx, "/dev/zero", &n.net), BP_ERR_IO);
  EXPECT_NE(error().find("a character device"), std::string::npos) << error();
  EXPECT_EQ(bp_network_load_weights(net, "/dev/zero"), BP_ERR_IO);
  bp_data *d = nullptr;
  bp_csv_options o;
  bp_csv_options_init(&o);
  EXPECT_EQ(bp_data_read_csv(ctx, "/dev/zero", &o, &d), BP_ERR_IO);
  EXPECT_EQ(bp_data_read_fann(ctx, "/dev/zero", &d), BP_ERR_IO);
  EXPECT_EQ(bp_data_read_idx(ctx, "/dev/zero", "/dev/zero", &d), BP_ERR_IO);
  bp_model_info *info = nullptr;
  EXPECT_EQ(bp_model_info_read(ctx, "/dev/zero", &info), BP_ERR_IO);
  EXPECT_EQ(bp_network_load(ctx, dir.c_str(), &n.net), BP_ERR_IO);
  EXPECT_NE(error().find("a directory"), std::string::npos) << error();
}

TEST_F(Paths, InfoOnAnotherKindOfFileSaysItIsNotAModel) {
  const std::string p = path("data.csv");
  std::ofstream(p) << "x0,x1,label\n0.5,0.25,1\n";
  bp_model_info *info = nullptr;
  EXPECT_EQ(bp_model_info_read(ctx, p.c_str(), &info), BP_ERR_FORMAT);
  EXPECT_NE(error().find("not a model file"), std::string::npos) << error();
  tu::Net n;
  EXPECT_EQ(bp_network_load(ctx, p.c_str(), &n.net), BP_ERR_FORMAT);
  EXPECT_NE(error().find("not a model file"), std::string::npos) << error();
}

}  // namespace

namespace {

// gzip of n zero bytes, as one member.
std::string gzip_zeros(size_t n) {
  std::vector<unsigned char> in(n, 0), out(compressBound(n) + 64);
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = in.data();
  zs.avail_in = (uInt)n;
  zs.next_out = out.data();
  zs.avail_out = (uInt)out.size();
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return std::string(out.begin(), out.end());
}

std::string be32s(uint32_t v) {
  const char b[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
  return std::string(b, 4);
}

// A gzip IDX file whose header declares 3 small images, followed by 512 MB
// of zeros (half a megabyte compressed). The reader must stop at the first
// byte past the declared images, not inflate the whole stream first: the
// peak memory of the refused file stays small. Run in a child so that its
// peak is its own.
TEST(IdxBomb, RefusedWithoutInflatingTheWholeStream) {
  std::string header = std::string("\x00\x00\x08\x03", 4) + be32s(3) + be32s(2) + be32s(2);
  // Member 1: the header and 12 pixels; then 8 MB members of zeros.
  std::string first;
  {
    std::string plain = header + std::string(12, '\x10');
    std::vector<unsigned char> out(compressBound(plain.size()) + 64);
    z_stream zs{};
    ASSERT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)plain.data();
    zs.avail_in = (uInt)plain.size();
    zs.next_out = out.data();
    zs.avail_out = (uInt)out.size();
    ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
    first.assign((const char *)out.data(), zs.total_out);
    deflateEnd(&zs);
  }
  const std::string zeros = gzip_zeros((size_t)8 << 20);
  std::string bomb = first;
  for (int i = 0; i < 64; ++i) bomb += zeros;
  const std::string labels = std::string("\x00\x00\x08\x01", 4) + be32s(3) + std::string("\x01\x02\x03", 3);

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    bp_context *c = nullptr;
    if (bp_context_create(BP_BACKEND_CPU, 0, &c) != BP_OK) _exit(101);
    bp_data *d = nullptr;
    bp_status st = bp_data_parse_idx(c, bomb.data(), bomb.size(), labels.data(), labels.size(),
                                     "bomb", &d);
    std::string msg = bp_context_last_error(c);
    if (st != BP_ERR_FORMAT || msg.find("more data than the 3 images") == std::string::npos) {
      fprintf(stderr, "status %d: %s\n", (int)st, msg.c_str());
      _exit(102);
    }
    getrusage(RUSAGE_SELF, &after);
    long grown_mb = (after.ru_maxrss - before.ru_maxrss) / 1024;
    _exit(grown_mb > 100 ? 100 : (int)grown_mb);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  ASSERT_LT(code, 101) << "wrong status or message (see stderr)";
  EXPECT_LT(code, 64) << "peak memory grew by " << code << " MB or more for a 3-image file";
}

TEST(IdxBomb, DeclaredSizeBeyondWhatTheGzipCanHoldIsRefusedBeforeAllocating) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  // 2^28 images of 28 x 28 (210 GB) from a few bytes of gzip.
  const std::string header = std::string("\x00\x00\x08\x03", 4) + be32s(1u << 28) + be32s(28) + be32s(28);
  std::vector<unsigned char> out(256);
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = (Bytef *)header.data();
  zs.avail_in = (uInt)header.size();
  zs.next_out = out.data();
  zs.avail_out = (uInt)out.size();
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  const std::string gz((const char *)out.data(), zs.total_out);
  deflateEnd(&zs);
  const std::string labels = std::string("\x00\x00\x08\x01", 4) + be32s(1u << 28);
  bp_data *d = nullptr;
  EXPECT_EQ(bp_data_parse_idx(ctx, gz.data(), gz.size(), labels.data(), labels.size(), "big", &d),
            BP_ERR_FORMAT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("inflate to at most"), std::string::npos)
      << bp_context_last_error(ctx);
  EXPECT_EQ(d, nullptr);
}

TEST(DataAlloc, MoreThanTheMachineHoldsIsAClearError) {
  tu::Ctx ctx;
  ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
  bp_data *d = nullptr;
  EXPECT_EQ(bp_io_data_alloc(ctx, 1 << 30, 1 << 20, 1, &d), BP_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find("of memory"), std::string::npos)
      << bp_context_last_error(ctx);
}

}  // namespace
