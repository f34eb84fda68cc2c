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
#include <sys/stat.h>

#include "internal.h"
#include "io/file_util.h"

/* Inflated (or plain) IDX files are capped at 4 GiB: 60000 MNIST images are
 * 47 MB; the cap only stops a decompression bomb from exhausting memory. */
#define IDX_MAX_BYTES ((size_t)1 << (sizeof(size_t) > 4 ? 32 : 30))
#define IDX_MIN_CLASSES 10

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Either buffer may be gzip-compressed; inflated copies are returned in
 * *owned (to be freed) and *p / *len point at the plain bytes. */
static bp_status plain_bytes(bp_context *ctx, const char *name, const unsigned char **p,
                             size_t *len, unsigned char **owned) {
  *owned = NULL;
  if (!bp_io_is_gzip(*p, *len)) return BP_OK;
  size_t n;
  bp_status st = bp_io_gunzip(ctx, *p, *len, IDX_MAX_BYTES, name, owned, &n);
  if (st != BP_OK) return st;
  *p = *owned;
  *len = n;
  return BP_OK;
}

static bp_status parse_idx(bp_context *ctx, const unsigned char *img, size_t img_len,
                           const char *img_name, const unsigned char *lab, size_t lab_len,
                           const char *lab_name, int min_classes, bp_data **out) {
  unsigned char *img_owned = NULL, *lab_owned = NULL;
  bp_status st = plain_bytes(ctx, img_name, &img, &img_len, &img_owned);
  if (st == BP_OK) st = plain_bytes(ctx, lab_name, &lab, &lab_len, &lab_owned);
  uint32_t n = 0, rows = 0, cols = 0, n_labels = 0;
  if (st == BP_OK) {
    if (img_len < 4 || be32(img) != 0x00000803)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: not an IDX image file (magic must be 00 00 08 03: unsigned "
                    "bytes, 3 dimensions)",
                    img_name);
    else if (img_len < 16)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: truncated IDX header (%zu of 16 bytes)",
                    img_name, img_len, img_len);
  }
  if (st == BP_OK) {
    n = be32(img + 4);
    rows = be32(img + 8);
    cols = be32(img + 12);
    uint64_t pixels = (uint64_t)rows * cols; /* < 2^64: both < 2^32 */
    if (n < 1 || n > (uint32_t)BP_MAX_DIM || pixels < 1 || pixels > (uint64_t)BP_MAX_DIM)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 4: unsupported IDX dimensions %u x %u x %u (each count 1..%d)",
                    img_name, n, rows, cols, BP_MAX_DIM);
    else if ((uint64_t)n * pixels != (uint64_t)(img_len - 16))
      /* n, pixels <= 2^28: the product fits in 64 bits. */
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 16: header says %u images of %u x %u (%llu bytes) but %zu bytes "
                    "follow%s",
                    img_name, n, rows, cols, (unsigned long long)((uint64_t)n * pixels),
                    img_len - 16,
                    (uint64_t)n * pixels > (uint64_t)(img_len - 16) ? " (truncated)" : "");
  }
  if (st == BP_OK) {
    if (lab_len < 4 || be32(lab) != 0x00000801)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: not an IDX label file (magic must be 00 00 08 01: unsigned "
                    "bytes, 1 dimension)",
                    lab_name);
    else if (lab_len < 8)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: truncated IDX header (%zu of 8 bytes)",
                    lab_name, lab_len, lab_len);
  }
  if (st == BP_OK) {
    n_labels = be32(lab + 4);
    if ((uint64_t)n_labels != (uint64_t)(lab_len - 8))
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: header says %u labels but %zu bytes follow%s",
                    lab_name, n_labels, lab_len - 8,
                    (uint64_t)n_labels > (uint64_t)(lab_len - 8) ? " (truncated)" : "");
    else if (n_labels != n)
      st = bp_error(ctx, BP_ERR_FORMAT, "%s has %u images but %s has %u labels", img_name, n,
                    lab_name, n_labels);
  }
  bp_data *d = NULL;
  if (st == BP_OK) {
    int classes = min_classes > IDX_MIN_CLASSES ? min_classes : IDX_MIN_CLASSES;
    for (uint32_t i = 0; i < n; ++i)
      if (lab[8 + i] + 1 > classes) classes = lab[8 + i] + 1;
    int pixels = (int)(rows * cols);
    st = bp_io_data_alloc(ctx, (int)n, pixels, classes, &d);
    if (st == BP_OK) {
      const unsigned char *px = img + 16;
      size_t total = (size_t)n * (size_t)pixels;
      for (size_t i = 0; i < total; ++i) d->X[i] = (float)px[i] / 255.0f;
      for (uint32_t i = 0; i < n; ++i) d->Y[(size_t)i * (size_t)classes + lab[8 + i]] = 1.0f;
    }
  }
  free(img_owned);
  free(lab_owned);
  if (st != BP_OK) return st;
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
