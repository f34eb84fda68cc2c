// Model files: the safetensors writer and its validating parser, the atomic
// save, and (with BP_PYTHON) interoperability with the reference package.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/file_util.h"
#include "support/test_util.h"

namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/bp_safetensors_XXXXXX";
    const char *p = mkdtemp(tmpl);
    if (p) path = p;
  }
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string &name) const { return path + "/" + name; }
};

std::string read_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), (std::streamsize)bytes.size());
}

std::vector<std::string> list_dir(const std::string &dir) {
  std::vector<std::string> names;
  for (const auto &e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = (char)(unsigned char)(n >> (8 * i));
  return s;
}

std::string f32le(const std::vector<float> &v) {
  std::string s;
  for (float f : v) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i) s += (char)(unsigned char)(u >> (8 * i));
  }
  return s;
}

std::string st_file(const std::string &header, const std::string &data) {
  return le64(header.size()) + header + data;
}

std::string tensor(const std::string &name, const std::string &shape, uint64_t begin, uint64_t end,
                   const std::string &dtype = "F32") {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// A valid one-layer model (sizes 2, 1): W = [1, 2] at bytes 0..8, b at 8..12.
std::string tiny_header() {
  return "{" + tensor("layers.0.weight", "[1,2]", 0, 8) + "," +
         tensor("layers.0.bias", "[1]", 8, 12) + "}";
}
std::string tiny_data() { return f32le({0.5f, -1.25f, 3.0f}); }

// Random weights, with the values a text format would get wrong mixed in.
void randomize(bp_network *net, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float special[] = {-0.0f,
                           std::numeric_limits<float>::denorm_min(),
                           1e-40f,
                           std::numeric_limits<float>::max(),
                           -std::numeric_limits<float>::min(),
                           0.1f,
                           1.0f / 3.0f};
  size_t k = 0;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    std::vector<float> W((size_t)bp_network_size(net, i) * bp_network_size(net, i + 1));
    std::vector<float> b(bp_network_size(net, i + 1));
    for (float &w : W) w = (k++ % 5 == 0) ? special[k % 7] : normal(rng);
    for (float &x : b) x = (k++ % 3 == 0) ? special[k % 7] : normal(rng);
    ASSERT_EQ(bp_network_set_layer(net, i, W.data(), b.data()), BP_OK);
  }
}

bool bits_equal(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Safetensors : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
    ASSERT_FALSE(dir.path.empty());
  }
  void TearDown() override { bp_io_debug_fail_write(0); }

  bp_status load_mem(const std::string &bytes, bp_network **out) {
    return bp_network_load_buffer(ctx, bytes.data(), bytes.size(), "mem.safetensors", out);
  }
  // The bytes must be rejected as malformed, with the name, a byte offset and
  // `detail` in the message.
  void expect_format(const std::string &bytes, const std::string &detail) {
    bp_network *net = reinterpret_cast<bp_network *>(1);
    EXPECT_EQ(load_mem(bytes, &net), BP_ERR_FORMAT) << detail;
    EXPECT_EQ(net, nullptr);
    if (net != reinterpret_cast<bp_network *>(1)) bp_network_destroy(net);
    std::string msg = bp_context_last_error(ctx);
    EXPECT_NE(msg.find("mem.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte "), std::string::npos) << msg;
    EXPECT_NE(msg.find(detail), std::string::npos) << msg;
  }
  tu::Net make(const std::vector<int> &sizes, uint64_t seed) {
    tu::Net n;
    EXPECT_EQ(bp_network_create(ctx, (int)sizes.size(), sizes.data(), seed, &n.net), BP_OK);
    if (n.net) randomize(n.net, seed);
    return n;
  }

  tu::Ctx ctx;
  TempDir dir;
};

TEST_F(Safetensors, TinyHandWrittenFileLoads) {
  tu::Net net;
  ASSERT_EQ(load_mem(st_file(tiny_header(), tiny_data()), &net.net), BP_OK)
      << bp_context_last_error(ctx);
  ASSERT_EQ(bp_network_n_layers(net), 1);
  EXPECT_EQ(bp_network_size(net, 0), 2);
  EXPECT_EQ(bp_network_size(net, 1), 1);
  EXPECT_EQ(tu::all_params(net), (std::vector<float>{0.5f, -1.25f, 3.0f}));
}

TEST_F(Safetensors, RoundTripIsBitExact) {
  const uint64_t seed = tu::fresh_seed();
  SCOPED_TRACE(seed);
  const std::vector<std::vector<int>> shapes = {
      {1, 1}, {3, 2}, {5, 7, 3, 2}, {784, 100, 10}, {2, 9, 1, 4, 3}};
  for (const auto &sizes : shapes) {
    tu::Net a = make(sizes, seed + sizes.size());
    ASSERT_NE(a.net, nullptr);
    std::string path = dir / "model.safetensors";
    ASSERT_EQ(bp_network_save(a, path.c_str()), BP_OK) << bp_context_last_error(ctx);
    tu::Net b;
    ASSERT_EQ(bp_network_load(ctx, path.c_str(), &b.net), BP_OK) << bp_context_last_error(ctx);
    ASSERT_EQ(bp_network_n_layers(b), (int)sizes.size() - 1);
    for (size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(bp_network_size(b, (int)i), sizes[i]);
    EXPECT_TRUE(bits_equal(tu::all_params(a), tu::all_params(b)));

    std::string bytes = read_bytes(path);
    tu::Net c;
    ASSERT_EQ(load_mem(bytes, &c.net), BP_OK) << bp_context_last_error(ctx);
    EXPECT_TRUE(bits_equal(tu::all_params(a), tu::all_params(c)));

    // Saving the loaded copy gives the same bytes: the format is canonical.
    std::string path2 = dir / "again.safetensors";
    ASSERT_EQ(bp_network_save(b, path2.c_str()), BP_OK);
    EXPECT_EQ(read_bytes(path2), bytes);
    EXPECT_EQ(list_dir(dir.path),
              (std::vector<std::string>{"again.safetensors", "model.safetensors"}));
    fs::remove(path2);
  }
}

TEST_F(Safetensors, LayoutIsCompactOrderedPaddedLittleEndian) {
  tu::Net net = make({3, 2}, 7);
  std::string path = dir / "m.safetensors";
  const char *keys[] = {"note"}, *values[] = {"quote \" and \xc3\xa9"};
  ASSERT_EQ(bp_network_save_ex(net, path.c_str(), 1, keys, values), BP_OK);
  std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | (unsigned char)bytes[i];
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 4 * (6 + 2));
  std::string header = bytes.substr(8, n);
  std::string json = header.substr(0, header.find_last_not_of(' ') + 1);
  EXPECT_EQ(json,
            "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
            "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
            "\"__metadata__\":{\"format\":\"backprop\",\"backprop_version\":\"" BP_VERSION_STRING
            "\",\"activation\":\"sigmoid\",\"cost\":\"quadratic\",\"sizes\":\"3,2\","
            "\"note\":\"quote \\\" and \xc3\xa9\"}}");
  EXPECT_EQ(bytes.substr(8 + n), f32le(tu::all_params(net)));
}

TEST_F(Safetensors, ModelInfoReadsShapeAndMetadata) {
  tu::Net net = make({4, 3, 2}, 11);
  std::string path = dir / "m.safetensors";
  const char *keys[] = {"epoch", "data"}, *values[] = {"12", "mnist"};
  ASSERT_EQ(bp_network_save_ex(net, path.c_str(), 2, keys, values), BP_OK);
  bp_model_info *info = nullptr;
  ASSERT_EQ(bp_model_info_read(ctx, path.c_str(), &info), BP_OK) << bp_context_last_error(ctx);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->n_sizes, 3);
  EXPECT_EQ(std::vector<int>(info->sizes, info->sizes + 3), (std::vector<int>{4, 3, 2}));
  EXPECT_EQ(info->n_params, bp_network_parameter_count(net));
  ASSERT_EQ(info->n_meta, 7);
  const char *want_keys[] = {"format", "backprop_version", "activation", "cost", "sizes", "epoch",
                             "data"};
  const char *want_values[] = {"backprop", BP_VERSION_STRING, "sigmoid", "quadratic", "4,3,2", "12",
                               "mnist"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_STREQ(info->meta_keys[i], want_keys[i]);
    EXPECT_STREQ(info->meta_values[i], want_values[i]);
  }
  bp_model_info_free(info);
  bp_model_info_free(nullptr);

  // The info reader validates the header against the file size too.
  std::string bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, bytes.size() - 1));
  info = reinterpret_cast<bp_model_info *>(1);
  EXPECT_EQ(bp_model_info_read(ctx, path.c_str(), &info), BP_ERR_FORMAT);
  EXPECT_EQ(info, nullptr);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find(path), std::string::npos);
}

TEST_F(Safetensors, SaveRejectsBadMetadata) {
  tu::Net net = make({2, 1}, 1);
  std::string path = dir / "m.safetensors";
  const char *reserved[] = {"sizes"}, *v[] = {"1,2"};
  EXPECT_EQ(bp_network_save_ex(net, path.c_str(), 1, reserved, v), BP_ERR_INVALID_ARGUMENT);
  const char *dup[] = {"a", "a"}, *v2[] = {"1", "2"};
  EXPECT_EQ(bp_network_save_ex(net, path.c_str(), 2, dup, v2), BP_ERR_INVALID_ARGUMENT);
  const char *k[] = {"bad"}, *notutf8[] = {"\xff\xfe"};
  EXPECT_EQ(bp_network_save_ex(net, path.c_str(), 1, k, notutf8), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_save_ex(net, path.c_str(), 1, nullptr, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_save(nullptr, path.c_str()), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_save(net, nullptr), BP_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(list_dir(dir.path).empty());
}

TEST_F(Safetensors, TruncationAtEveryByteIsAFormatError) {
  tu::Net net = make({3, 4, 2}, 5);
  std::string path = dir / "m.safetensors";
  ASSERT_EQ(bp_network_save(net, path.c_str()), BP_OK);
  std::string bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 100u);
  for (size_t k = 0; k < bytes.size(); ++k) {
    // An exactly sized heap copy, so a read past the end is a real overrun
    // (and is caught under AddressSanitizer).
    std::vector<unsigned char> prefix(bytes.begin(), bytes.begin() + (std::ptrdiff_t)k);
    bp_network *out = reinterpret_cast<bp_network *>(1);
    bp_status st = bp_network_load_buffer(ctx, k ? prefix.data() : nullptr, k, "cut", &out);
    ASSERT_EQ(st, BP_ERR_FORMAT) << "truncated at " << k << ": " << bp_context_last_error(ctx);
    ASSERT_EQ(out, nullptr);
    ASSERT_EQ(std::string(bp_context_last_error(ctx)).rfind("cut: byte ", 0), 0u)
        << bp_context_last_error(ctx);
  }
  // The same through a file: the message names the file.
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  tu::Net out;
  EXPECT_EQ(bp_network_load(ctx, path.c_str(), &out.net), BP_ERR_FORMAT);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find(path), std::string::npos);
}

TEST_F(Safetensors, HeaderLengthThatLies) {
  std::string good = st_file(tiny_header(), tiny_data());
  std::string body = good.substr(8);
  expect_format(le64(body.size() + 1) + body, "header length");
  expect_format(le64(UINT64_MAX) + body, "header length");
  expect_format(le64(100000001) + body, "limit");
  expect_format(le64(1) + body, "header");  // cuts the JSON after "{"
  expect_format(le64(0) + body, "'{'");
  expect_format(std::string("\x05\0\0", 3), "shorter than");
}

TEST_F(Safetensors, HeaderMustBeOneJsonObject) {
  expect_format(st_file(" " + tiny_header(), tiny_data()), "'{'");
  expect_format(st_file("[" + tiny_header() + "]", tiny_data()), "'{'");
  std::string h = tiny_header();
  expect_format(st_file(h.substr(0, h.size() - 1) + "   ", tiny_data()), "not valid JSON");
  expect_format(st_file(h + "x", tiny_data()), "after the header");
  expect_format(st_file(h + "{}", tiny_data()), "after the header");
  std::string nul = h;
  nul[3] = '\0';
  expect_format(st_file(nul, tiny_data()), "control byte");
  expect_format(st_file("{\"\xff\":1}", ""), "UTF-8");
  // Padding with spaces (and other JSON blanks) after the object is allowed.
  tu::Net net;
  EXPECT_EQ(load_mem(st_file(h + "       \n", tiny_data()), &net.net), BP_OK)
      << bp_context_last_error(ctx);
}

TEST_F(Safetensors, DuplicateKeysAreRejected) {
  std::string w = tensor("layers.0.weight", "[1,2]", 0, 8);
  std::string b = tensor("layers.0.bias", "[1]", 8, 12);
  expect_format(st_file("{" + w + "," + b + "," + w + "}", tiny_data()), "duplicate key");
  expect_format(
      st_file("{" + w + "," + b + ",\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", tiny_data()),
      "duplicate key \"a\"");
  expect_format(st_file("{\"layers.0.weight\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1,2],"
                        "\"data_offsets\":[0,8]}," +
                            b + "}",
                        tiny_data()),
                "duplicate key \"dtype\"");
}

TEST_F(Safetensors, UnknownKeysAndDtypes) {
  std::string w = tensor("layers.0.weight", "[1,2]", 0, 8);
  std::string b = tensor("layers.0.bias", "[1]", 8, 12);
  expect_format(
      st_file("{" + w + "," + b + "," + tensor("extra", "[0]", 12, 12) + "}", tiny_data()),
      "unknown key \"extra\"");
  expect_format(
      st_file("{" + tensor("layers.00.weight", "[1,2]", 0, 8) + "," + b + "}", tiny_data()),
      "unknown key");
  expect_format(
      st_file("{" + tensor("layers.0.weight", "[1,2]", 0, 8, "F16") + "," + b + "}", tiny_data()),
      "\"F16\"");
  expect_format(
      st_file("{" + tensor("layers.0.weight", "[1,2]", 0, 8, "F64") + "," + b + "}", tiny_data()),
      "dtype");
  expect_format(st_file("{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],"
                        "\"data_offsets\":[0,8],\"extra\":1}," +
                            b + "}",
                        tiny_data()),
                "unknown field");
  expect_format(
      st_file("{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2]}," + b + "}", tiny_data()),
      "data_offsets");
  expect_format(st_file("{" + w + "," + b + ",\"__metadata__\":{\"n\":1}}", tiny_data()),
                "not a string");
}

TEST_F(Safetensors, ShapesMustBeNonNegativeIntegersWithoutOverflow) {
  std::string b = tensor("layers.0.bias", "[1]", 8, 12);
  for (const char *shape : {"[1,-2]", "[1,2.5]", "[1,\"2\"]", "{}", "[1,1e300]"}) {
    expect_format(
        st_file("{" + tensor("layers.0.weight", shape, 0, 8) + "," + b + "}", tiny_data()),
        "shape");
  }
  expect_format(
      st_file("{" + tensor("layers.0.weight", "[4294967296,4294967296]", 0, 8) + "," + b + "}",
              tiny_data()),
      "overflow");
  expect_format(
      st_file("{" + tensor("layers.0.weight", "[1,2,3]", 0, 24) + "," + b + "}", tiny_data()),
      "past the data buffer");
  expect_format(
      st_file("{" + tensor("layers.0.weight", "[1,2,1]", 0, 8) + "," + b + "}", tiny_data()),
      "rank 3");
}

TEST_F(Safetensors, OffsetsMustTileTheDataBuffer) {
  std::string w = tensor("layers.0.weight", "[1,2]", 0, 8);
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[1]", 4, 8) + "}", tiny_data()),
                "overlaps");
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[1]", 12, 16) + "}",
                        tiny_data() + f32le({0})),
                "gap");
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[1]", 8, 12) + "}",
                        tiny_data() + "\x01\x02\x03\x04"),
                "belong to no tensor");
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[1]", 12, 8) + "}", tiny_data()),
                "begin");
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[1]", 8, 16) + "}", tiny_data()),
                "past the data buffer");
  expect_format(st_file("{" + w + "," + tensor("layers.0.bias", "[2]", 8, 12) + "}", tiny_data()),
                "span");
  expect_format(st_file("{" + w +
                            ",\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[1],"
                            "\"data_offsets\":[8]}}",
                        tiny_data()),
                "data_offsets");
  // Any order of the tensors in the buffer is fine when it is fully covered.
  tu::Net net;
  EXPECT_EQ(load_mem(st_file("{" + tensor("layers.0.weight", "[1,2]", 4, 12) + "," +
                                 tensor("layers.0.bias", "[1]", 0, 4) + "}",
                             f32le({3.0f, 0.5f, -1.25f})),
                     &net.net),
            BP_OK)
      << bp_context_last_error(ctx);
  EXPECT_EQ(tu::all_params(net), (std::vector<float>{0.5f, -1.25f, 3.0f}));
}

TEST_F(Safetensors, LayersMustBeCompleteAndConsistent) {
  // sizes 2 -> 3 -> 1: W0 [3,2] 0..24, b0 [3] 24..36, W1 [1,3] 36..48, b1 [1] 48..52.
  std::string data = f32le(std::vector<float>(13, 0.25f));
  auto two = [&](const std::string &w0, const std::string &b0, const std::string &w1,
                 const std::string &b1) {
    return st_file("{" + tensor("layers.0.weight", w0, 0, 24) + "," +
                       tensor("layers.0.bias", b0, 24, 36) + "," +
                       tensor("layers.1.weight", w1, 36, 48) + "," +
                       tensor("layers.1.bias", b1, 48, 52) + "}",
                   data);
  };
  tu::Net ok;
  ASSERT_EQ(load_mem(two("[3,2]", "[3]", "[1,3]", "[1]"), &ok.net), BP_OK)
      << bp_context_last_error(ctx);
  expect_format(two("[2,3]", "[3]", "[1,3]", "[1]"), "layers.0.bias");
  expect_format(two("[3,2]", "[3]", "[3,1]", "[1]"), "layers.1.weight");
  expect_format(two("[6]", "[3]", "[1,3]", "[1]"), "rank 1");
  expect_format(two("[3,2]", "[3]", "[1,3]", "[1,1]"), "rank 2");
  expect_format(two("[0,2]", "[3]", "[1,3]", "[1]"), "span");
  // Missing bias, numbering with a hole, no tensors at all.
  expect_format(st_file("{" + tensor("layers.0.weight", "[1,3]", 0, 12) + "}", f32le({1, 2, 3})),
                "layers.0.bias\" is missing");
  expect_format(st_file("{" + tensor("layers.0.weight", "[1,2]", 0, 8) + "," +
                            tensor("layers.0.bias", "[1]", 8, 12) + "," +
                            tensor("layers.2.weight", "[1,1]", 12, 16) + "," +
                            tensor("layers.2.bias", "[1]", 16, 20) + "}",
                        tiny_data() + f32le({1, 2})),
                "layers.1.weight\" is missing");
  expect_format(st_file("{\"__metadata__\":{}}", ""), "no tensors");
  expect_format(st_file("{}", ""), "no tensors");
}

TEST_F(Safetensors, MetadataMustAgreeWithTheTensors) {
  std::string t =
      tensor("layers.0.weight", "[1,2]", 0, 8) + "," + tensor("layers.0.bias", "[1]", 8, 12);
  tu::Net net;
  EXPECT_EQ(
      load_mem(st_file("{" + t + ",\"__metadata__\":{\"sizes\":\"2,1\"}}", tiny_data()), &net.net),
      BP_OK);
  expect_format(st_file("{" + t + ",\"__metadata__\":{\"sizes\":\"2,3\"}}", tiny_data()), "sizes");
  expect_format(st_file("{" + t + ",\"__metadata__\":{\"sizes\":\"2,1,\"}}", tiny_data()), "sizes");
  // Activations and the cost are read from the metadata (test_model_files.cc);
  // a name this version does not know is a malformed file.
  tu::Net relu;
  EXPECT_EQ(load_mem(st_file("{" + t + ",\"__metadata__\":{\"activation\":\"relu\"}}", tiny_data()),
                     &relu.net),
            BP_OK);
  EXPECT_EQ(bp_network_get_activation(relu, 0), BP_ACTIVATION_RELU);
  expect_format(st_file("{" + t + ",\"__metadata__\":{\"activation\":\"swish\"}}", tiny_data()),
                "unknown activation \"swish\"");
}

TEST_F(Safetensors, NonFiniteValuesAreRejected) {
  std::string h = tiny_header();
  expect_format(st_file(h, f32le({0.5f, NAN, 3.0f})), "not finite");
  expect_format(st_file(h, f32le({0.5f, 1.0f, INFINITY})), "layers.0.bias");
  bp_network *net = nullptr;
  ASSERT_EQ(load_mem(st_file(h, f32le({0.5f, NAN, 3.0f})), &net), BP_ERR_FORMAT);
  // The offset of the bad value: 8 + header + 4.
  std::string want = "byte " + std::to_string(8 + h.size() + 4);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find(want), std::string::npos)
      << bp_context_last_error(ctx);
}

TEST_F(Safetensors, LoadWeightsIntoAnotherShapeOverwritesNothing) {
  tu::Net src = make({3, 4, 2}, 21);
  std::string path = dir / "src.safetensors";
  ASSERT_EQ(bp_network_save(src, path.c_str()), BP_OK);

  for (const std::vector<int> &sizes :
       std::vector<std::vector<int>>{{3, 5, 2}, {3, 4}, {3, 4, 2, 2}, {4, 4, 2}, {3, 4, 3}}) {
    tu::Net dst = make(sizes, 99);
    std::vector<float> before = tu::all_params(dst);
    EXPECT_EQ(bp_network_load_weights(dst, path.c_str()), BP_ERR_FORMAT);
    std::string msg = bp_context_last_error(ctx);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("3,4,2"), std::string::npos) << msg;
    EXPECT_TRUE(bits_equal(before, tu::all_params(dst)));
  }

  // Same shape, but the last value is NaN: nothing is overwritten either.
  tu::Net dst = make({3, 4, 2}, 99);
  std::vector<float> before = tu::all_params(dst);
  std::string bytes = read_bytes(path);
  std::string bad = bytes.substr(0, bytes.size() - 4) + f32le({NAN});
  write_bytes(dir / "nan.safetensors", bad);
  EXPECT_EQ(bp_network_load_weights(dst, (dir / "nan.safetensors").c_str()), BP_ERR_FORMAT);
  EXPECT_TRUE(bits_equal(before, tu::all_params(dst)));
  EXPECT_EQ(bp_network_load_weights(dst, (dir / "missing.safetensors").c_str()), BP_ERR_IO);
  EXPECT_TRUE(bits_equal(before, tu::all_params(dst)));

  // And the right file loads exactly.
  ASSERT_EQ(bp_network_load_weights(dst, path.c_str()), BP_OK) << bp_context_last_error(ctx);
  EXPECT_TRUE(bits_equal(tu::all_params(src), tu::all_params(dst)));
}

TEST_F(Safetensors, FailedWriteLeavesTheOldFileAndNoTemporary) {
  tu::Net old_net = make({3, 2}, 1);
  tu::Net new_net = make({784, 100, 10}, 2);  // ~318 KB: several write chunks
  std::string path = dir / "model.safetensors";
  ASSERT_EQ(bp_network_save(old_net, path.c_str()), BP_OK);
  const std::string old_bytes = read_bytes(path);
  std::string probe = dir / "probe.safetensors";
  ASSERT_EQ(bp_network_save(new_net, probe.c_str()), BP_OK);
  size_t chunks = (fs::file_size(probe) + BP_IO_WRITE_CHUNK - 1) / BP_IO_WRITE_CHUNK;
  fs::remove(probe);
  ASSERT_GE(chunks, 4u);
  for (long nth = 1; nth <= (long)chunks; ++nth) {
    SCOPED_TRACE(nth);
    bp_io_debug_fail_write(nth);
    EXPECT_EQ(bp_network_save(new_net, path.c_str()), BP_ERR_IO);
    std::string msg = bp_context_last_error(ctx);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
    EXPECT_EQ(read_bytes(path), old_bytes);
    EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"model.safetensors"});
  }
  bp_io_debug_fail_write(0);
  ASSERT_EQ(bp_network_save(new_net, path.c_str()), BP_OK);
  tu::Net back;
  ASSERT_EQ(bp_network_load(ctx, path.c_str(), &back.net), BP_OK);
  EXPECT_TRUE(bits_equal(tu::all_params(new_net), tu::all_params(back)));
}

TEST_F(Safetensors, SaveIntoAMissingDirectoryFails) {
  tu::Net net = make({3, 2}, 1);
  std::string path = dir / "no/such/dir/model.safetensors";
  EXPECT_EQ(bp_network_save(net, path.c_str()), BP_ERR_IO);
  std::string msg = bp_context_last_error(ctx);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_TRUE(list_dir(dir.path).empty());
}

TEST_F(Safetensors, FailedRenameLeavesTheTargetAndNoTemporary) {
  // A directory in the way makes the final rename fail, after the data was
  // written and synced: the cleanup of that late failure is what is tested.
  tu::Net net = make({3, 2}, 1);
  std::string path = dir / "model.safetensors";
  ASSERT_TRUE(fs::create_directory(path));
  write_bytes(path + "/keep", "x");
  EXPECT_EQ(bp_network_save(net, path.c_str()), BP_ERR_IO);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find(path), std::string::npos);
  EXPECT_TRUE(fs::is_directory(path));
  EXPECT_EQ(read_bytes(path + "/keep"), "x");
  EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"model.safetensors"});
}

TEST_F(Safetensors, ReadOnlyDirectoryLeavesTheOldFile) {
  tu::Net old_net = make({3, 2}, 1), new_net = make({3, 2}, 2);
  std::string path = dir / "model.safetensors";
  ASSERT_EQ(bp_network_save(old_net, path.c_str()), BP_OK);
  const std::string old_bytes = read_bytes(path);
  ASSERT_EQ(chmod(dir.path.c_str(), 0555), 0);
  // Root (tests often run as root in containers, CI too) ignores directory
  // modes: then the save runs in a child process that drops to the unprivileged
  // user nobody (65534) first, for whom the 0555 directory is read-only.
  if (geteuid() == 0) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      bp_status st = bp_network_save(new_net, path.c_str());
      bool names_path = std::string(bp_context_last_error(ctx)).find(path) != std::string::npos;
      _exit(st == BP_ERR_IO && names_path ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    chmod(dir.path.c_str(), 0755);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_NE(WEXITSTATUS(status), 3) << "could not drop privileges to nobody";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the save as nobody did not fail with BP_ERR_IO naming "
                                         "the file";
    EXPECT_EQ(read_bytes(path), old_bytes);
    EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"model.safetensors"});
    return;
  }
  EXPECT_EQ(bp_network_save(new_net, path.c_str()), BP_ERR_IO);
  EXPECT_NE(std::string(bp_context_last_error(ctx)).find(path), std::string::npos);
  chmod(dir.path.c_str(), 0755);
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"model.safetensors"});
}

TEST_F(Safetensors, NullArgumentsAndMissingFiles) {
  bp_network *net = reinterpret_cast<bp_network *>(1);
  std::string missing = dir / "missing.safetensors";
  EXPECT_EQ(bp_network_load(ctx, missing.c_str(), &net), BP_ERR_IO);
  EXPECT_EQ(net, nullptr);
  std::string msg = bp_context_last_error(ctx);
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
  EXPECT_EQ(bp_network_load(ctx, nullptr, &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_load(nullptr, missing.c_str(), &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_load_buffer(ctx, nullptr, 5, "x", &net), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(bp_network_load_weights(nullptr, missing.c_str()), BP_ERR_INVALID_ARGUMENT);
  bp_model_info *info = nullptr;
  EXPECT_EQ(bp_model_info_read(ctx, missing.c_str(), &info), BP_ERR_IO);
  EXPECT_EQ(bp_network_load(ctx, dir.path.c_str(), &net), BP_ERR_IO);  // a directory
}

// ---- Interoperability with the reference implementation -------------------

std::string shell_quote(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

class SafetensorsInterop : public Safetensors {
 protected:
  void SetUp() override {
    Safetensors::SetUp();
    const char *py = std::getenv("BP_PYTHON");
#ifdef BP_SOURCE_DIR
    script = std::string(BP_SOURCE_DIR) + "/tests/python/safetensors_interop.py";
#endif
    if (!py || !*py || script.empty() ||
        std::system(
            (shell_quote(py) + " -c 'import numpy, safetensors.numpy' 2>/dev/null").c_str()) != 0)
      GTEST_SKIP() << "python safetensors package not available (set BP_PYTHON)";
    python = py;
  }
  int run(const std::string &args) {
    return std::system((shell_quote(python) + " " + shell_quote(script) + " " + args).c_str());
  }
  std::string python, script;
};

TEST_F(SafetensorsInterop, OurFilesReadByTheReferencePackage) {
  for (const std::vector<int> &sizes :
       std::vector<std::vector<int>>{{5, 4, 3}, {7, 1}, {3, 9, 4, 2}}) {
    tu::Net net = make(sizes, 3);
    std::string model = dir / "ours.safetensors", expect = dir / "ours.bin";
    const char *k[] = {"note"}, *v[] = {"from the C++ test"};
    ASSERT_EQ(bp_network_save_ex(net, model.c_str(), 1, k, v), BP_OK);
    write_bytes(expect, f32le(tu::all_params(net)));
    EXPECT_EQ(run("--check-ours " + shell_quote(model) + " --expect " + shell_quote(expect)), 0);
  }
}

TEST_F(SafetensorsInterop, ReferenceFilesReadByUs) {
  for (const char *sizes : {"6,4,2", "3,1", "4,8,8,3"}) {
    SCOPED_TRACE(sizes);
    std::string model = dir / "py.safetensors", dump = dir / "py.bin";
    ASSERT_EQ(
        run("--write " + shell_quote(model) + " --sizes " + sizes + " --dump " + shell_quote(dump)),
        0);
    tu::Net net;
    ASSERT_EQ(bp_network_load(ctx, model.c_str(), &net.net), BP_OK) << bp_context_last_error(ctx);
    std::string dumped = read_bytes(dump);
    std::vector<float> want(dumped.size() / 4);
    for (size_t i = 0; i < want.size(); ++i) {
      uint32_t u = 0;
      for (int b = 3; b >= 0; --b) u = u << 8 | (unsigned char)dumped[4 * i + b];
      std::memcpy(&want[i], &u, 4);
    }
    EXPECT_TRUE(bits_equal(tu::all_params(net), want));
    bp_model_info *info = nullptr;
    ASSERT_EQ(bp_model_info_read(ctx, model.c_str(), &info), BP_OK);
    EXPECT_EQ(info->n_params, want.size());
    bp_model_info_free(info);
  }
}

}  // namespace
