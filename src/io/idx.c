/*
 * idx.c - IDX image and label files (MNIST, Fashion-MNIST), plain or gzip.
 *
 * Images: magic 00 00 08 03, then big-endian n, rows, cols, then n*rows*cols
 * bytes. Labels: magic 00 00 08 01, big-endian n, then n bytes.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <zlib.h>

#include "internal.h"
#include "io/file_util.h"

/* IDX files as stored (plain or gzip) are capped at 4 GiB: 60000 MNIST
 * images are 47 MB. What a gzip file may inflate to is bounded by deflate's
 * ratio and by memory (bp_io_data_alloc), checked before allocating. */
#define IDX_MAX_BYTES ((size_t)1 << (sizeof(size_t) > 4 ? 32 : 30))
#define IDX_MIN_CLASSES 10

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* deflate's best ratio is about 1032:1, so len compressed bytes inflate to
 * at most this many: a header promising more is refused before anything is
 * allocated for it. */
#define GZIP_MAX_RATIO 1032u

/* The bytes of one IDX file, plain or gzip, read front to back. A gzip file
 * is inflated straight into the caller's buffers in pieces, never whole: a
 * decompression bomb is refused after the header or at the first byte past
 * what the header declares, with peak memory of a few pages. */
typedef struct idx_src {
  bp_context *ctx;
  const char *name;
  const unsigned char *in;
  size_t len, pos; /* plain: read position; gzip: input consumed */
  int gz, zs_ready, ended;
  uint64_t out; /* bytes produced so far */
  z_stream zs;
} idx_src;

static bp_status src_open(idx_src *s, bp_context *ctx, const char *name, const void *data,
                          size_t len) {
  memset(s, 0, sizeof *s);
  s->ctx = ctx;
  s->name = name;
  s->in = data;
  s->len = len;
  s->gz = bp_io_is_gzip(data, len);
  if (s->gz) {
    if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
      return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot initialize zlib", name);
    s->zs_ready = 1;
  }
  return BP_OK;
}

static void src_close(idx_src *s) {
  if (s->zs_ready) inflateEnd(&s->zs);
  s->zs_ready = 0;
}

/* The most bytes the source can still produce (plain: exactly that many). */
static uint64_t src_capacity(const idx_src *s) {
  return s->gz ? (uint64_t)s->len * GZIP_MAX_RATIO : (uint64_t)(s->len - s->pos);
}

/* Reads up to n bytes into dst; *got is how many arrived (fewer only at the
 * end of the data). Corrupt gzip and trailing junk are BP_ERR_FORMAT. */
static bp_status src_read(idx_src *s, unsigned char *dst, size_t n, size_t *got) {
  *got = 0;
  if (!s->gz) {
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    if (k) memcpy(dst, s->in + s->pos, k);
    s->pos += k;
    s->out += k;
    *got = k;
    return BP_OK;
  }
  while (*got < n && !s->ended) {
    size_t in_left = s->len - s->pos, out_left = n - *got;
    s->zs.next_in = (Bytef *)(s->in + s->pos);
    s->zs.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
    s->zs.next_out = dst + *got;
    s->zs.avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
    uInt ai = s->zs.avail_in, ao = s->zs.avail_out;
    int ret = inflate(&s->zs, Z_NO_FLUSH);
    s->pos += ai - s->zs.avail_in;
    *got += ao - s->zs.avail_out;
    s->out += ao - s->zs.avail_out;
    if (ret == Z_STREAM_END) {
      if (s->pos == s->len) {
        s->ended = 1;
      } else if (s->len - s->pos >= 2 && s->in[s->pos] == 0x1f && s->in[s->pos + 1] == 0x8b) {
        inflateReset(&s->zs); /* gzip allows concatenated members */
      } else {
        return bp_error(s->ctx, BP_ERR_FORMAT, "%s: byte %zu: trailing data after the gzip stream",
                        s->name, s->pos);
      }
    } else if (ret == Z_BUF_ERROR || (ret == Z_OK && s->zs.avail_in == 0 && s->pos == s->len &&
                                      s->zs.avail_out > 0)) {
      if (s->zs.avail_out == 0) continue;
      return bp_error(s->ctx, BP_ERR_FORMAT, "%s: gzip stream truncated at byte %zu", s->name,
                      s->len);
    } else if (ret == Z_MEM_ERROR) {
      return bp_error(s->ctx, BP_ERR_OUT_OF_MEMORY, "%s: zlib out of memory", s->name);
    } else if (ret != Z_OK) {
      return bp_error(s->ctx, BP_ERR_FORMAT, "%s: byte %zu: corrupt gzip data (%s)", s->name,
                      s->pos, s->zs.msg ? s->zs.msg : "invalid stream");
    }
  }
  return BP_OK;
}

/* 1 when the source has no byte left (a gzip stream must also end cleanly). */
static bp_status src_at_end(idx_src *s, int *at_end) {
  unsigned char extra;
  size_t got;
  bp_status st = src_read(s, &extra, 1, &got);
  *at_end = got == 0;
  return st;
}

/* Reads exactly n bytes, or says the file is truncated. */
static bp_status src_need(idx_src *s, unsigned char *dst, size_t n, const char *what) {
  size_t got;
  bp_status st = src_read(s, dst, n, &got);
  if (st == BP_OK && got < n)
    st = bp_error(s->ctx, BP_ERR_FORMAT, "%s: byte %llu: truncated %s", s->name,
                  (unsigned long long)s->out, what);
  return st;
}

static bp_status parse_idx(bp_context *ctx, const unsigned char *img, size_t img_len,
                           const char *img_name, const unsigned char *lab, size_t lab_len,
                           const char *lab_name, int min_classes, bp_data **out) {
  idx_src is, ls;
  unsigned char ih[16], lh[8];
  unsigned char *labels = NULL;
  bp_data *d = NULL;
  uint32_t n = 0, rows = 0, cols = 0, n_labels = 0;
  uint64_t pixels = 0;
  size_t got;
  bp_status st = src_open(&is, ctx, img_name, img, img_len);
  if (st == BP_OK) st = src_open(&ls, ctx, lab_name, lab, lab_len);
  else memset(&ls, 0, sizeof ls);

  if (st == BP_OK) st = src_read(&is, ih, 16, &got);
  if (st == BP_OK) {
    if (got < 4 || be32(ih) != 0x00000803)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: not an IDX image file (magic must be 00 00 08 03: unsigned "
                    "bytes, 3 dimensions)",
                    img_name);
    else if (got < 16)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: truncated IDX header (%zu of 16 bytes)",
                    img_name, got, got);
  }
  if (st == BP_OK) {
    n = be32(ih + 4);
    rows = be32(ih + 8);
    cols = be32(ih + 12);
    pixels = (uint64_t)rows * cols; /* < 2^64: both < 2^32 */
    if (n < 1 || n > (uint32_t)BP_MAX_DIM || pixels < 1 || pixels > (uint64_t)BP_MAX_DIM)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 4: unsupported IDX dimensions %u x %u x %u (each count 1..%d)",
                    img_name, n, rows, cols, BP_MAX_DIM);
  }
  if (st == BP_OK) {
    /* n, pixels <= 2^28: the product fits in 64 bits. The declared size is
     * checked against what the file can hold before anything is allocated. */
    uint64_t want = (uint64_t)n * pixels, cap = src_capacity(&is);
    if (!is.gz && want != cap)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 16: header says %u images of %u x %u (%llu bytes) but %llu bytes "
                    "follow%s",
                    img_name, n, rows, cols, (unsigned long long)want, (unsigned long long)cap,
                    want > cap ? " (truncated)" : "");
    else if (is.gz && want > cap)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 16: header says %u images of %u x %u (%llu bytes) but %zu bytes of "
                    "gzip inflate to at most %llu (truncated, or not an IDX file)",
                    img_name, n, rows, cols, (unsigned long long)want, img_len,
                    (unsigned long long)cap);
  }
  if (st == BP_OK) st = src_read(&ls, lh, 8, &got);
  if (st == BP_OK) {
    if (got < 4 || be32(lh) != 0x00000801)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: not an IDX label file (magic must be 00 00 08 01: unsigned "
                    "bytes, 1 dimension)",
                    lab_name);
    else if (got < 8)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: truncated IDX header (%zu of 8 bytes)",
                    lab_name, got, got);
  }
  if (st == BP_OK) {
    n_labels = be32(lh + 4);
    uint64_t cap = src_capacity(&ls);
    if (!ls.gz && (uint64_t)n_labels != cap)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: header says %u labels but %llu bytes follow%s",
                    lab_name, n_labels, (unsigned long long)cap,
                    (uint64_t)n_labels > cap ? " (truncated)" : "");
    else if (n_labels != n)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s has %u images but %s has %u labels", img_name, n,
                    lab_name, n_labels);
    else if (ls.gz && (uint64_t)n_labels > cap)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 8: header says %u labels but %zu bytes of gzip inflate to at most "
                    "%llu (truncated)",
                    lab_name, n_labels, lab_len, (unsigned long long)cap);
  }
  if (st == BP_OK) {
    labels = malloc(n);
    if (!labels) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %u bytes", lab_name, n);
  }
  if (st == BP_OK) st = src_need(&ls, labels, n, "label data");
  int at_end = 1;
  if (st == BP_OK) st = src_at_end(&ls, &at_end);
  if (st == BP_OK && !at_end)
    st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %u: more data than the %u labels the header says",
                  lab_name, 8 + n, n);
  if (st == BP_OK) {
    int classes = min_classes > IDX_MIN_CLASSES ? min_classes : IDX_MIN_CLASSES;
    for (uint32_t i = 0; i < n; ++i)
      if (labels[i] + 1 > classes) classes = labels[i] + 1;
    st = bp_io_data_alloc(ctx, (int)n, (int)pixels, classes, &d);
    if (st == BP_OK) {
      for (uint32_t i = 0; i < n; ++i) d->Y[(size_t)i * (size_t)classes + labels[i]] = 1.0f;
      /* The pixels go from the stream to floats a slice at a time. */
      unsigned char chunk[16384];
      size_t total = (size_t)n * (size_t)pixels;
      for (size_t done = 0; st == BP_OK && done < total;) {
        size_t k = total - done < sizeof chunk ? total - done : sizeof chunk;
        st = src_need(&is, chunk, k, "image data");
        for (size_t i = 0; st == BP_OK && i < k; ++i) d->X[done + i] = (float)chunk[i] / 255.0f;
        done += k;
      }
    }
  }
  if (st == BP_OK) st = src_at_end(&is, &at_end);
  if (st == BP_OK && !at_end)
    st = bp_error(ctx, BP_ERR_FORMAT,
                  "%s: byte %llu: more data than the %u images of %u x %u the header says", img_name,
                  (unsigned long long)(16 + (uint64_t)n * pixels), n, rows, cols);
  src_close(&is);
  src_close(&ls);
  free(labels);
  if (st != BP_OK) {
    bp_data_free(d);
    return st;
  }
  *out = d;
  return BP_OK;
}

bp_status bp_data_parse_idx(bp_context *ctx, const void *images, size_t images_len,
                            const void *labels, size_t labels_len, const char *name,
                            bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !out || (!images && images_len) || (!labels && labels_len))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_parse_idx: NULL argument");
  if (!name) name = "<buffer>";
  size_t nl = strlen(name) + 10;
  char *img_name = malloc(nl), *lab_name = malloc(nl);
  bp_status st;
  if (!img_name || !lab_name) {
    st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  } else {
    snprintf(img_name, nl, "%s (images)", name);
    snprintf(lab_name, nl, "%s (labels)", name);
    st = parse_idx(ctx, images, images_len, img_name, labels, labels_len, lab_name, 0, out);
  }
  free(img_name);
  free(lab_name);
  return st;
}

static bp_status read_idx_pair(bp_context *ctx, const char *images_path, const char *labels_path,
                               int min_classes, bp_data **out) {
  unsigned char *img = NULL, *lab = NULL;
  size_t img_len = 0, lab_len = 0;
  /* The files are read raw; parse_idx inflates them if they are gzip. */
  bp_status st = bp_io_read_file(ctx, images_path, IDX_MAX_BYTES, &img, &img_len);
  if (st == BP_OK) st = bp_io_read_file(ctx, labels_path, IDX_MAX_BYTES, &lab, &lab_len);
  if (st == BP_OK)
    st = parse_idx(ctx, img, img_len, images_path, lab, lab_len, labels_path, min_classes, out);
  free(img);
  free(lab);
  return st;
}

bp_status bp_data_read_idx(bp_context *ctx, const char *images_path, const char *labels_path,
                           bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !images_path || !labels_path || !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_read_idx: NULL argument");
  return read_idx_pair(ctx, images_path, labels_path, 0, out);
}

/* dir/base, or dir/base.gz when only that exists. */
static bp_status find_idx_file(bp_context *ctx, const char *dir, const char *base, char **out) {
  size_t n = strlen(dir) + strlen(base) + 5;
  char *p = malloc(n);
  if (!p) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "out of memory");
  struct stat sb;
  snprintf(p, n, "%s/%s", dir, base);
  if (stat(p, &sb) != 0) {
    snprintf(p, n, "%s/%s.gz", dir, base);
    if (stat(p, &sb) != 0) {
      free(p);
      return bp_error(ctx, BP_ERR_IO, "%s: neither %s nor %s.gz exists", dir, base, base);
    }
  }
  *out = p;
  return BP_OK;
}

bp_status bp_data_read_idx_dir(bp_context *ctx, const char *dir, bp_data **train, bp_data **test) {
  if (train) *train = NULL;
  if (test) *test = NULL;
  if (!ctx || !dir || !train || !test)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_read_idx_dir: NULL argument");
  static const char *const bases[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  char *paths[4] = {NULL, NULL, NULL, NULL};
  bp_status st = BP_OK;
  for (int i = 0; i < 4 && st == BP_OK; ++i) st = find_idx_file(ctx, dir, bases[i], &paths[i]);
  bp_data *tr = NULL, *te = NULL;
  if (st == BP_OK) st = read_idx_pair(ctx, paths[0], paths[1], 0, &tr);
  /* Both sets must one-hot over the same number of classes, or a network
   * sized for one could not be evaluated on the other. */
  if (st == BP_OK) st = read_idx_pair(ctx, paths[2], paths[3], tr->n_out, &te);
  if (st == BP_OK && te->n_out > tr->n_out) {
    bp_data_free(tr);
    tr = NULL;
    st = read_idx_pair(ctx, paths[0], paths[1], te->n_out, &tr);
  }
  for (int i = 0; i < 4; ++i) free(paths[i]);
  if (st != BP_OK) {
    bp_data_free(tr);
    bp_data_free(te);
    return st;
  }
  *train = tr;
  *test = te;
  return BP_OK;
}
