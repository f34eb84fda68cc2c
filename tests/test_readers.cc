// Data set readers: IDX (plain and gzip), CSV and FANN, good and malformed.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/bp_readers_XXXXXX";
    const char *p = mkdtemp(tmpl);
    if (p) path = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
  std::string operator/(const std::string &name) const { return path + "/" + name; }
};

void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), (std::streamsize)bytes.size());
}

std::string be32(uint32_t v) {
  return std::string{(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
}

std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, const std::string &pixels) {
  return be32(0x00000803) + be32(n) + be32(rows) + be32(cols) + pixels;
}

std::string idx_labels(const std::string &labels) {
  return be32(0x00000801) + be32((uint32_t)labels.size()) + labels;
}

std::string gzip(const std::string &data) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 32, '\0');
  zs.next_in = (Bytef *)data.data();
  zs.avail_in = (uInt)data.size();
  zs.next_out = (Bytef *)&out[0];
  zs.avail_out = (uInt)out.size();
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct DataHolder {
  bp_data *d = nullptr;
  ~DataHolder() { bp_data_free(d); }
};

class Readers : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(bp_context_create(BP_BACKEND_CPU, 0, &ctx.ctx), BP_OK);
    ASSERT_FALSE(dir.path.empty());
  }
  std::string error() const { return bp_context_last_error(ctx); }
  // Expects status `want` (and no output unless BP_OK) with every piece of `parts` in the message.
  void expect_error(bp_status got, bp_status want, bp_data *out,
                    std::initializer_list<std::string> parts) {
    EXPECT_EQ(got, want) << error();
    if (want != BP_OK) {
      EXPECT_EQ(out, nullptr);
    }
    for (const auto &p : parts) EXPECT_NE(error().find(p), std::string::npos) << error();
  }
  bp_status csv(const std::string &text, bp_data **out, const bp_csv_options *opt = nullptr) {
    return bp_data_parse_csv(ctx, text.data(), text.size(), "t.csv", opt, out);
  }
  bp_status fann(const std::string &text, bp_data **out) {
    return bp_data_parse_fann(ctx, text.data(), text.size(), "t.fann", out);
  }

  tu::Ctx ctx;
  TempDir dir;
};

// ---- IDX --------------------------------------------------------------------

const std::string kPixels(
    "\x00\xff\x80\x01"
    "\x10\x20\x30\x40"
    "\xff\xff\x00\x00",
    12);
const std::string kLabels("\x00\x09\x03", 3);

void expect_small_idx(const bp_data *d) {
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->n, 3);
  EXPECT_EQ(d->n_in, 4);
  EXPECT_EQ(d->n_out, 10);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(d->X[i], (unsigned char)kPixels[i] / 255.0f) << i;
  EXPECT_EQ(d->X[0], 0.0f);
  EXPECT_EQ(d->X[1], 1.0f);
  for (int e = 0; e < 3; ++e)
    for (int c = 0; c < 10; ++c)
      EXPECT_EQ(d->Y[e * 10 + c], c == kLabels[e] ? 1.0f : 0.0f) << e << "," << c;
}

TEST_F(Readers, IdxPlainAndGzip) {
  std::string img = idx_images(3, 2, 2, kPixels), lab = idx_labels(kLabels);
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant);
    std::string i = variant & 1 ? gzip(img) : img, l = variant & 2 ? gzip(lab) : lab;
    DataHolder h;
    ASSERT_EQ(bp_data_parse_idx(ctx, i.data(), i.size(), l.data(), l.size(), "mem", &h.d), BP_OK)
        << error();
    expect_small_idx(h.d);
    std::string ip = dir / "images", lp = dir / "labels";
    write_bytes(ip, i);
    write_bytes(lp, l);
    DataHolder f;
    ASSERT_EQ(bp_data_read_idx(ctx, ip.c_str(), lp.c_str(), &f.d), BP_OK) << error();
    expect_small_idx(f.d);
  }
}

TEST_F(Readers, IdxClassesGrowWithTheLargestLabel) {
  std::string img = idx_images(3, 2, 2, kPixels), lab = idx_labels(std::string("\x00\x0c\x03", 3));
  DataHolder h;
  ASSERT_EQ(bp_data_parse_idx(ctx, img.data(), img.size(), lab.data(), lab.size(), "m", &h.d),
            BP_OK);
  EXPECT_EQ(h.d->n_out, 13);
  EXPECT_EQ(h.d->Y[13 + 12], 1.0f);
}

TEST_F(Readers, IdxMalformed) {
  std::string img = idx_images(3, 2, 2, kPixels), lab = idx_labels(kLabels);
  std::string ip = dir / "img-idx3-ubyte", lp = dir / "lab-idx1-ubyte";
  auto read = [&](const std::string &i, const std::string &l, bp_status want,
                  std::initializer_list<std::string> parts) {
    write_bytes(ip, i);
    write_bytes(lp, l);
    bp_data *d = nullptr;
    expect_error(bp_data_read_idx(ctx, ip.c_str(), lp.c_str(), &d), want, d, parts);
    bp_data_free(d);
  };
  read(idx_labels(kLabels), lab, BP_ERR_FORMAT, {ip, "magic"});  // labels given as images
  read(img, img, BP_ERR_FORMAT, {lp, "magic"});
  read(std::string("\0\0\x08\x02", 4) + img.substr(4), lab, BP_ERR_FORMAT, {ip, "magic"});
  read(img.substr(0, 10), lab, BP_ERR_FORMAT, {ip, "truncated"});
  read(img.substr(0, img.size() - 1), lab, BP_ERR_FORMAT, {ip, "truncated"});
  read(img + "x", lab, BP_ERR_FORMAT, {ip, "13 bytes"});
  read(img, lab.substr(0, lab.size() - 1), BP_ERR_FORMAT, {lp, "truncated"});
  read(img, idx_labels(kLabels.substr(0, 2)), BP_ERR_FORMAT, {ip, lp, "3 images", "2 labels"});
  read(idx_images(0, 2, 2, ""), idx_labels(""), BP_ERR_FORMAT, {ip, "dimensions"});
  read(idx_images(1, 0, 5, ""), idx_labels("\x01"), BP_ERR_FORMAT, {ip, "dimensions"});
  // Counts whose product would overflow 32 bits must not wrap into a match.
  read(idx_images(65536, 65536, 1, kPixels), lab, BP_ERR_FORMAT, {ip});
  read("", lab, BP_ERR_FORMAT, {ip});

  // gzip: truncated, corrupt, with trailing junk.
  std::string gz = gzip(img);
  read(gz.substr(0, gz.size() - 5), lab, BP_ERR_FORMAT, {ip, "truncated"});
  read(gz.substr(0, 12), lab, BP_ERR_FORMAT, {ip, "gzip"});
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x55;  // in the CRC or the last deflate bytes
  read(bad, lab, BP_ERR_FORMAT, {ip});
  read(gz + "junk", lab, BP_ERR_FORMAT, {ip, "trailing"});
  // Two concatenated gzip members are one valid stream.
  read(gzip(img.substr(0, 7)) + gzip(img.substr(7)), lab, BP_OK, {});

  bp_data *d = nullptr;
  std::string missing = dir / "missing";
  expect_error(bp_data_read_idx(ctx, missing.c_str(), lp.c_str(), &d), BP_ERR_IO, d,
               {missing, "No such file"});
  expect_error(bp_data_parse_idx(ctx, img.data(), img.size(), "", 0, "buf", &d), BP_ERR_FORMAT, d,
               {"buf (labels)"});
  expect_error(bp_data_read_idx(nullptr, ip.c_str(), lp.c_str(), &d), BP_ERR_INVALID_ARGUMENT, d,
               {});
}

TEST_F(Readers, IdxDirectoryWithPlainAndGzipFiles) {
  std::string tr_img = idx_images(3, 2, 2, kPixels), tr_lab = idx_labels(kLabels);
  std::string te_img = idx_images(1, 2, 2, kPixels.substr(0, 4));
  std::string te_lab = idx_labels(std::string("\x0b", 1));  // class 11 only in the test set
  write_bytes(dir / "train-images-idx3-ubyte.gz", gzip(tr_img));
  write_bytes(dir / "train-labels-idx1-ubyte", tr_lab);
  write_bytes(dir / "t10k-images-idx3-ubyte", te_img);
  write_bytes(dir / "t10k-labels-idx1-ubyte.gz", gzip(te_lab));
  DataHolder train, test;
  ASSERT_EQ(bp_data_read_idx_dir(ctx, dir.path.c_str(), &train.d, &test.d), BP_OK) << error();
  EXPECT_EQ(train.d->n, 3);
  EXPECT_EQ(test.d->n, 1);
  // Both sets one-hot over the same classes, so one network fits both.
  EXPECT_EQ(train.d->n_out, 12);
  EXPECT_EQ(test.d->n_out, 12);
  EXPECT_EQ(test.d->Y[11], 1.0f);
  EXPECT_EQ(train.d->Y[12 + 9], 1.0f);

  fs::remove(dir / "t10k-labels-idx1-ubyte.gz");
  bp_data *a = nullptr, *b = nullptr;
  EXPECT_EQ(bp_data_read_idx_dir(ctx, dir.path.c_str(), &a, &b), BP_ERR_IO);
  EXPECT_EQ(a, nullptr);
  EXPECT_EQ(b, nullptr);
  EXPECT_NE(error().find("t10k-labels-idx1-ubyte"), std::string::npos) << error();
}

TEST_F(Readers, FashionMnistFromDebianPackage) {
  const char *path = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(path))
    GTEST_SKIP() << path << " not installed (apt-get install dataset-fashion-mnist)";
  DataHolder train, test;
  ASSERT_EQ(bp_data_read_idx_dir(ctx, path, &train.d, &test.d), BP_OK) << error();
  EXPECT_EQ(train.d->n, 60000);
  EXPECT_EQ(test.d->n, 10000);
  EXPECT_EQ(train.d->n_in, 784);
  EXPECT_EQ(train.d->n_out, 10);
  std::vector<int> count(10, 0);
  for (int e = 0; e < test.d->n; ++e) {
    float sum = 0;
    for (int c = 0; c < 10; ++c) {
      sum += test.d->Y[e * 10 + c];
      if (test.d->Y[e * 10 + c] == 1.0f) ++count[c];
    }
    ASSERT_EQ(sum, 1.0f) << e;
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(count[c], 1000) << c;  // balanced classes
  float mx = 0;
  for (size_t i = 0; i < (size_t)784 * 100; ++i) {
    ASSERT_GE(train.d->X[i], 0.0f);
    ASSERT_LE(train.d->X[i], 1.0f);
    mx = std::max(mx, train.d->X[i]);
  }
  EXPECT_EQ(mx, 1.0f);
}

// ---- CSV --------------------------------------------------------------------

TEST_F(Readers, CsvWithHeaderAndClassLabels) {
  DataHolder h;
  ASSERT_EQ(csv("\xef\xbb\xbfx1,\"x, two\",label\r\n0.5, -1e2 ,2\r\n\r\n.25,3.,0\n", &h.d), BP_OK)
      << error();
  ASSERT_EQ(h.d->n, 2);
  EXPECT_EQ(h.d->n_in, 2);
  EXPECT_EQ(h.d->n_out, 3);
  EXPECT_EQ(std::vector<float>(h.d->X, h.d->X + 4), (std::vector<float>{0.5f, -100, 0.25f, 3}));
  EXPECT_EQ(std::vector<float>(h.d->Y, h.d->Y + 6), (std::vector<float>{0, 0, 1, 1, 0, 0}));
}

TEST_F(Readers, CsvLabelColumnAndClassCount) {
  bp_csv_options opt;
  bp_csv_options_init(&opt);
  EXPECT_EQ(opt.label_column, -1);
  EXPECT_EQ(opt.n_targets, 0);
  EXPECT_EQ(opt.n_classes, 0);
  opt.label_column = 0;
  opt.n_classes = 5;
  DataHolder h;
  ASSERT_EQ(csv("1,7,8\n0,9,10\n", &h.d, &opt), BP_OK) << error();
  EXPECT_EQ(h.d->n_out, 5);
  EXPECT_EQ(std::vector<float>(h.d->X, h.d->X + 4), (std::vector<float>{7, 8, 9, 10}));
  EXPECT_EQ(h.d->Y[1], 1.0f);
  EXPECT_EQ(h.d->Y[5], 1.0f);

  bp_data *d = nullptr;
  expect_error(csv("7,1,5\n", &d, &opt), BP_ERR_FORMAT, d, {"t.csv", "line 1", "label"});
  opt.label_column = -4;
  expect_error(csv("1,7,3\n", &d, &opt), BP_ERR_INVALID_ARGUMENT, d, {"label_column"});
  opt.label_column = 3;
  expect_error(csv("1,7,3\n", &d, &opt), BP_ERR_INVALID_ARGUMENT, d, {"label_column"});
}

TEST_F(Readers, CsvRegressionTargets) {
  bp_csv_options opt;
  bp_csv_options_init(&opt);
  opt.n_targets = 2;
  DataHolder h;
  ASSERT_EQ(csv("a,b,c,y1,y2\n1,2,3,0.5,-0.25\n4,5,6,1e-3,7\n", &h.d, &opt), BP_OK) << error();
  EXPECT_EQ(h.d->n, 2);
  EXPECT_EQ(h.d->n_in, 3);
  EXPECT_EQ(h.d->n_out, 2);
  EXPECT_EQ(std::vector<float>(h.d->X, h.d->X + 6), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(std::vector<float>(h.d->Y, h.d->Y + 4), (std::vector<float>{0.5f, -0.25f, 1e-3f, 7}));
  bp_data *d = nullptr;
  opt.n_targets = 2;
  expect_error(csv("1,2\n", &d, &opt), BP_ERR_INVALID_ARGUMENT, d, {"n_targets"});
  opt.n_targets = -1;
  expect_error(csv("1,2\n", &d, &opt), BP_ERR_INVALID_ARGUMENT, d, {});
}

TEST_F(Readers, CsvMalformed) {
  bp_data *d = nullptr;
  expect_error(csv("a,b\n1,2\n3,x\n", &d), BP_ERR_FORMAT, d, {"t.csv", "line 3", "\"x\""});
  expect_error(csv("1,2,0\n3,4\n", &d), BP_ERR_FORMAT, d, {"line 2", "2 fields", "line 1 has 3"});
  expect_error(csv("1,2\n3,4,5\n", &d), BP_ERR_FORMAT, d, {"line 2", "3 fields"});
  expect_error(csv("a,b,c\n1,2\n", &d), BP_ERR_FORMAT, d, {"line 2", "line 1 has 3"});
  expect_error(csv("1,2\n,0\n", &d), BP_ERR_FORMAT, d, {"line 2", "field 1"});
  expect_error(csv("a,b\n", &d), BP_ERR_FORMAT, d, {"no data"});
  expect_error(csv("", &d), BP_ERR_FORMAT, d, {"no data"});
  // Header detection looks at the first line only.
  expect_error(csv("a,b\nc,d\n1,0\n", &d), BP_ERR_FORMAT, d, {"line 2"});
  // Not plain decimal numbers.
  for (const char *v : {"nan", "inf", "0x10", "1e", "1.2.3", "1e999", "+", "1 2", "1,5;"}) {
    std::string text = std::string("1,") + v + ",0\n";
    expect_error(csv(text, &d), BP_ERR_FORMAT, d, {"line 1"});
  }
  // Labels: non-negative integers.
  for (const char *label : {"-1", "1.5", "2e30"})
    expect_error(csv(std::string("1,2,") + label + "\n", &d), BP_ERR_FORMAT, d, {"label"});
  DataHolder ok;
  ASSERT_EQ(csv("1,2\n", &ok.d), BP_OK) << error();
  EXPECT_EQ(ok.d->n_out, 3);  // max label + 1
  // A few bytes must not buy gigabytes of one-hot targets: the data may name
  // at most 65536 classes on their own (the fuzzer's 740-byte file asked for
  // 2.8 GB through a label of 711111111); an explicit n_classes may say more.
  expect_error(csv("1,711111111\n2,3\n", &d), BP_ERR_FORMAT, d, {"line 1", "0..65535"});
  DataHolder top;
  ASSERT_EQ(csv("1,65535\n", &top.d), BP_OK) << error();
  EXPECT_EQ(top.d->n_out, 65536);
  bp_csv_options many;
  bp_csv_options_init(&many);
  many.n_classes = 70000;
  DataHolder wide;
  ASSERT_EQ(csv("1,69999\n", &wide.d, &many), BP_OK) << error();
  EXPECT_EQ(wide.d->n_out, 70000);
}

TEST_F(Readers, CsvFromFileNamesTheFile) {
  std::string path = dir / "data.csv";
  write_bytes(path, "1,2,0\n3,4,1\n5,6\n");
  bp_data *d = nullptr;
  expect_error(bp_data_read_csv(ctx, path.c_str(), nullptr, &d), BP_ERR_FORMAT, d,
               {path, "line 3"});
  write_bytes(path, "1,2,0\n3,4,1\n");
  DataHolder h;
  ASSERT_EQ(bp_data_read_csv(ctx, path.c_str(), nullptr, &h.d), BP_OK) << error();
  EXPECT_EQ(h.d->n, 2);
  EXPECT_EQ(h.d->n_out, 2);
  std::string missing = dir / "missing.csv";
  expect_error(bp_data_read_csv(ctx, missing.c_str(), nullptr, &d), BP_ERR_IO, d, {missing});
}

TEST_F(Readers, CsvIgnoresTheLocaleDecimalComma) {
  // Builds a locale whose decimal point is ',' when none is installed.
  std::string saved = std::setlocale(LC_NUMERIC, nullptr);
  const char *locpath = std::getenv("LOCPATH");
  std::string saved_locpath = locpath ? locpath : "";
  const char *found = nullptr;
  for (const char *name : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"})
    if ((found = std::setlocale(LC_NUMERIC, name))) break;
  if (!found &&
      std::system(
          ("localedef -i de_DE -f UTF-8 " + (dir / "de_DE.UTF-8") + " >/dev/null 2>&1").c_str()) ==
          0) {
    setenv("LOCPATH", dir.path.c_str(), 1);
    found = std::setlocale(LC_NUMERIC, "de_DE.UTF-8");
  }
  if (!found || std::strtod("1.5", nullptr) == 1.5) {
    std::setlocale(LC_NUMERIC, saved.c_str());
    GTEST_SKIP() << "no locale with a decimal comma is available (and localedef failed)";
  }
  DataHolder h;
  bp_csv_options opt;
  bp_csv_options_init(&opt);
  opt.n_targets = 1;
  bp_status st = csv("1.5,2.25\n", &h.d, &opt);
  bp_data *d = nullptr;
  bp_status comma = csv("1,5;2\n", &d, &opt);
  DataHolder f;
  bp_status fst = fann("1 1 1\n0.125\n-7.5e-1\n", &f.d);
  std::setlocale(LC_NUMERIC, saved.c_str());
  if (locpath)
    setenv("LOCPATH", saved_locpath.c_str(), 1);
  else
    unsetenv("LOCPATH");
  ASSERT_EQ(st, BP_OK) << error();
  EXPECT_EQ(h.d->X[0], 1.5f);
  EXPECT_EQ(h.d->Y[0], 2.25f);
  EXPECT_EQ(comma, BP_ERR_FORMAT);
  bp_data_free(d);
  ASSERT_EQ(fst, BP_OK) << error();
  EXPECT_EQ(f.d->X[0], 0.125f);
  EXPECT_EQ(f.d->Y[0], -0.75f);
}

// ---- FANN -------------------------------------------------------------------

TEST_F(Readers, FannGood) {
  DataHolder h;
  ASSERT_EQ(
      fann("4 2 1\n-1 -1\n-1\n-1 1\n1\n\n1 -1\r\n1\n1 1\n-1.00000000000000000000e+00\n", &h.d),
      BP_OK)
      << error();
  EXPECT_EQ(h.d->n, 4);
  EXPECT_EQ(h.d->n_in, 2);
  EXPECT_EQ(h.d->n_out, 1);
  EXPECT_EQ(std::vector<float>(h.d->X, h.d->X + 8),
            (std::vector<float>{-1, -1, -1, 1, 1, -1, 1, 1}));
  EXPECT_EQ(std::vector<float>(h.d->Y, h.d->Y + 4), (std::vector<float>{-1, 1, 1, -1}));

  std::string path = dir / "xor.data";
  write_bytes(path, "1 3 2\n\t0.5 0.25\t1 \n0 1\n");
  DataHolder f;
  ASSERT_EQ(bp_data_read_fann(ctx, path.c_str(), &f.d), BP_OK) << error();
  EXPECT_EQ(f.d->n_in, 3);
  EXPECT_EQ(f.d->Y[1], 1.0f);
}

TEST_F(Readers, FannMalformed) {
  bp_data *d = nullptr;
  expect_error(fann("", &d), BP_ERR_FORMAT, d, {"t.fann", "line 1"});
  expect_error(fann("2 2\n", &d), BP_ERR_FORMAT, d, {"line 1", "n_examples"});
  expect_error(fann("2 2 1 4\n", &d), BP_ERR_FORMAT, d, {"line 1"});
  expect_error(fann("0 2 1\n", &d), BP_ERR_FORMAT, d, {"line 1"});
  expect_error(fann("1 -2 1\n", &d), BP_ERR_FORMAT, d, {"line 1"});
  expect_error(fann("1 2 x\n", &d), BP_ERR_FORMAT, d, {"line 1"});
  expect_error(fann("1 2 1\n1 x\n0\n", &d), BP_ERR_FORMAT, d, {"line 2", "\"x\""});
  expect_error(fann("1 2 1\n1\n0\n", &d), BP_ERR_FORMAT, d, {"line 2", "1 input values"});
  expect_error(fann("1 2 1\n1 2 3\n0\n", &d), BP_ERR_FORMAT, d, {"line 2", "3 input values"});
  expect_error(fann("1 2 1\n1 2\n0 1\n", &d), BP_ERR_FORMAT, d, {"line 3", "output"});
  expect_error(fann("2 2 1\n1 2\n0\n\n", &d), BP_ERR_FORMAT, d, {"line 4", "end of file"});
  expect_error(fann("1 2 1\n1 2\n0\n5 5\n", &d), BP_ERR_FORMAT, d, {"line 4", "after"});
  expect_error(fann("1 2 1\n1 nan\n0\n", &d), BP_ERR_FORMAT, d, {"line 2"});
  // A header announcing far more values than the file holds fails before
  // allocating for them.
  expect_error(fann("2000000000 100000 100000\n1\n", &d), BP_ERR_FORMAT, d, {"line 1"});
  std::string missing = dir / "missing.data";
  expect_error(bp_data_read_fann(ctx, missing.c_str(), &d), BP_ERR_IO, d, {missing});
  std::string path = dir / "bad.data";
  write_bytes(path, "1 1 1\n1\n");
  expect_error(bp_data_read_fann(ctx, path.c_str(), &d), BP_ERR_FORMAT, d, {path, "line"});
}

TEST_F(Readers, DataFreeAcceptsNull) {
  bp_data_free(nullptr);
  SUCCEED();
}

}  // namespace

namespace {
// Issue 13: ';' and tab separators (detected or given), class names as
// labels (ids in order of first appearance, or a given map), inputs alone.
TEST_F(Readers, CsvSeparatorsClassNamesAndInputsOnly) {
  DataHolder semi, tab, names, mapped, inputs;
  ASSERT_EQ(csv("a;b;label\n1;2;1\n3;4;0\n", &semi.d), BP_OK) << error();
  EXPECT_EQ(semi.d->n_in, 2);
  EXPECT_EQ(std::vector<float>(semi.d->X, semi.d->X + 4), (std::vector<float>{1, 2, 3, 4}));
  bp_csv_options opt;
  bp_csv_options_init(&opt);
  EXPECT_EQ(opt.delimiter, 0);
  EXPECT_EQ(opt.inputs_only, 0);
  EXPECT_EQ(opt.class_names, nullptr);
  opt.delimiter = '\t';
  ASSERT_EQ(csv("1\t2\t0\n3\t4\t1\n", &tab.d, &opt), BP_OK) << error();
  EXPECT_EQ(tab.d->n_in, 2);
  EXPECT_EQ(tab.d->class_names, nullptr) << "integer ids have no names";

  ASSERT_EQ(csv("1,2,dog\n3,4,cat\n5,6,dog\n", &names.d), BP_OK) << error();
  ASSERT_EQ(names.d->n_out, 2);
  ASSERT_NE(names.d->class_names, nullptr);
  EXPECT_STREQ(names.d->class_names[0], "dog");
  EXPECT_STREQ(names.d->class_names[1], "cat");
  EXPECT_EQ(std::vector<float>(names.d->Y, names.d->Y + 6), (std::vector<float>{1, 0, 0, 1, 1, 0}));

  bp_csv_options map;
  bp_csv_options_init(&map);
  map.class_names = "cat\ndog\nbird";
  ASSERT_EQ(csv("1,2,dog\n3,4,cat\n", &mapped.d, &map), BP_OK) << error();
  ASSERT_EQ(mapped.d->n_out, 3);
  EXPECT_STREQ(mapped.d->class_names[2], "bird");
  EXPECT_EQ(std::vector<float>(mapped.d->Y, mapped.d->Y + 6), (std::vector<float>{0, 1, 0, 1, 0, 0}));

  bp_csv_options only;
  bp_csv_options_init(&only);
  only.inputs_only = 1;
  ASSERT_EQ(csv("x,y\n1,2\n3,4\n", &inputs.d, &only), BP_OK) << error();
  EXPECT_EQ(inputs.d->n_in, 2);
  EXPECT_EQ(inputs.d->n_out, 0);
  EXPECT_EQ(inputs.d->Y, nullptr);

  bp_data *d = nullptr;
  expect_error(csv("1,2,0\n3,4,cat\n", &d), BP_ERR_FORMAT, d, {"line 2", "\"cat\"", "integer"});
  expect_error(csv("a;b;c\n1,5;2;0\n", &d), BP_ERR_FORMAT, d, {"hint", "decimal commas"});
  opt.delimiter = 'x';
  expect_error(csv("1,2,0\n", &d, &opt), BP_ERR_INVALID_ARGUMENT, d, {"delimiter"});
}
}  // namespace
