/*
 * csv.c - numeric CSV data sets.
 *
 * Every field of a data line must be a plain decimal number ('.' as the
 * decimal point whatever the locale); blanks around a field are allowed.
 * The first non-blank line is a header when its first field is not a number;
 * a header may quote its fields. Blank lines are skipped; "\r\n" is accepted.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io/file_util.h"

/* CSV text files are read whole; 16 GiB on 64-bit hosts is far beyond any
 * data set that fits the library's int example counts anyway. */
#define CSV_MAX_BYTES ((size_t)1 << (sizeof(size_t) > 4 ? 34 : 30))
/* Labels are parsed as floats, exact only up to 2^24. With n_classes left to
 * the data (max label + 1), a hostile file could name class 16 million on a
 * few lines and make the one-hot targets gigabytes (the fuzzer found that):
 * the data then decide at most 65536 classes. */
#define CSV_MAX_CLASSES (1L << 24)
#define CSV_MAX_AUTO_CLASSES (1L << 16)

void bp_csv_options_init(bp_csv_options *opt) {
  if (!opt) return;
  opt->label_column = -1;
  opt->n_targets = 0;
  opt->n_classes = 0;
}

typedef struct csv_job {
  bp_context *ctx;
  const char *text;
  size_t len;
  const char *name;
  bp_csv_options opt;
  bp_data **out;
} csv_job;

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Number of fields of a header line, commas inside double quotes not
 * counting; -1 on an unterminated quote. */
static long header_fields(const char *s, size_t n) {
  long fields = 1;
  int quoted = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] == '"')
      quoted = !quoted;
    else if (s[i] == ',' && !quoted)
      ++fields;
  }
  return quoted ? -1 : fields;
}

/* Grows a float array to hold at least need elements. */
static int reserve(float **v, size_t *cap, size_t need) {
  if (need <= *cap) return 1;
  size_t ncap = *cap ? *cap : 1024;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / sizeof(float)) return 0;
    ncap *= 2;
  }
  float *nv = realloc(*v, ncap * sizeof(float));
  if (!nv) return 0;
  *v = nv;
  *cap = ncap;
  return 1;
}

static bp_status csv_run(void *arg) {
  csv_job *job = arg;
  bp_context *ctx = job->ctx;
  const char *name = job->name, *t = job->text;
  const bp_csv_options *opt = &job->opt;
  size_t len = job->len, pos = 0;
  if (len >= 3 && (unsigned char)t[0] == 0xef && (unsigned char)t[1] == 0xbb &&
      (unsigned char)t[2] == 0xbf)
    pos = 3; /* UTF-8 byte order mark written by some spreadsheet programs */

  float *vals = NULL;
  size_t cap = 0, nvals = 0;
  long ncols = -1, ncols_line = 0, line = 0, label_col = -1;
  long max_label = -1;
  int rows = 0, first = 1;
  bp_status st = BP_OK;
  while (pos < len && st == BP_OK) {
    const char *ls = t + pos;
    const char *nl = memchr(ls, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - ls) : len - pos;
    pos += ll + (nl ? 1 : 0);
    ++line;
    if (ll > 0 && ls[ll - 1] == '\r') --ll;
    size_t k = 0;
    while (k < ll && is_blank(ls[k])) ++k;
    if (k == ll) continue;

    if (first) {
      first = 0;
      /* Header detection looks at the first field only, as documented. */
      size_t e = 0;
      while (e < ll && ls[e] != ',') ++e;
      size_t a = 0, b = e;
      while (a < b && is_blank(ls[a])) ++a;
      while (b > a && is_blank(ls[b - 1])) --b;
      float dummy;
      if (!bp_io_parse_float(ls + a, b - a, &dummy)) {
        ncols = header_fields(ls, ll);
        ncols_line = line;
        if (ncols < 0)
          st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: unterminated quote in the header", name,
                        line);
        continue;
      }
    }
    if (rows == INT_MAX) {
      st =
          bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: more than %d data rows", name, line, INT_MAX);
      break;
    }
    long field = 0;
    size_t a = 0;
    for (;;) {
      size_t b = a;
      while (b < ll && ls[b] != ',') ++b;
      size_t fa = a, fb = b;
      while (fa < fb && is_blank(ls[fa])) ++fa;
      while (fb > fa && is_blank(ls[fb - 1])) --fb;
      ++field;
      if (ncols >= 0 && field > ncols) break; /* reported as a count mismatch below */
      float v;
      if (!bp_io_parse_float(ls + fa, fb - fa, &v)) {
        int shown = fb - fa > 40 ? 40 : (int)(fb - fa);
        st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: field %ld (\"%.*s%s\") is not a number",
                      name, line, field, shown, ls + fa, fb - fa > 40 ? "..." : "");
        break;
      }
      if (!reserve(&vals, &cap, nvals + 1)) {
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: line %ld: out of memory", name, line);
        break;
      }
      vals[nvals++] = v;
      if (b >= ll) break;
      a = b + 1;
    }
    if (st != BP_OK) break;
    if (ncols < 0) {
      ncols = field;
      ncols_line = line;
    }
    if (field != ncols) {
      /* Count every field of the line for the message. */
      long total = 1;
      for (size_t i = 0; i < ll; ++i) total += ls[i] == ',';
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: %ld fields, but line %ld has %ld", name,
                    line, total, ncols_line, ncols);
      break;
    }
    if (rows == 0 && opt->n_targets == 0) {
      label_col = opt->label_column < 0 ? ncols + opt->label_column : opt->label_column;
      if (ncols < 2 || label_col < 0 || label_col >= ncols) {
        st = bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "%s: label_column %d is out of range for %ld columns (and at least one "
                      "input column is needed)",
                      name, opt->label_column, ncols);
        break;
      }
    }
    if (rows == 0 && opt->n_targets > 0 && opt->n_targets >= ncols) {
      st = bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: n_targets %d leaves no input column among %ld columns", name,
                    opt->n_targets, ncols);
      break;
    }
    if (opt->n_targets == 0) {
      float v = vals[nvals - (size_t)ncols + (size_t)label_col];
      long limit = opt->n_classes > 0 ? (opt->n_classes < CSV_MAX_CLASSES ? opt->n_classes
                                                                           : CSV_MAX_CLASSES)
                                      : CSV_MAX_AUTO_CLASSES;
      if (!(v >= 0.0f) || v != floorf(v) || v >= (float)limit) {
        st = bp_error(ctx, BP_ERR_FORMAT,
                      "%s: line %ld: label %g in column %ld is not an integer class id in "
                      "0..%ld",
                      name, line, (double)v, label_col + 1, limit - 1);
        break;
      }
      if ((long)v > max_label) max_label = (long)v;
    }
    ++rows;
  }
  if (st == BP_OK && rows == 0)
    st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: no data rows", name, line);

  bp_data *d = NULL;
  if (st == BP_OK) {
    int n_cols = (int)ncols;
    if (opt->n_targets > 0) {
      int n_out = opt->n_targets, n_in = n_cols - n_out;
      st = bp_io_data_alloc(ctx, rows, n_in, n_out, &d);
      for (size_t r = 0; st == BP_OK && r < (size_t)rows; ++r) {
        memcpy(d->X + r * (size_t)n_in, vals + r * (size_t)n_cols, (size_t)n_in * sizeof(float));
        memcpy(d->Y + r * (size_t)n_out, vals + r * (size_t)n_cols + n_in,
               (size_t)n_out * sizeof(float));
      }
    } else {
      int classes = opt->n_classes > 0 ? opt->n_classes : (int)max_label + 1;
      int n_in = n_cols - 1;
      st = bp_io_data_alloc(ctx, rows, n_in, classes, &d);
      for (size_t r = 0; st == BP_OK && r < (size_t)rows; ++r) {
        const float *row = vals + r * (size_t)n_cols;
        float *x = d->X + r * (size_t)n_in;
        for (int c = 0, j = 0; c < n_cols; ++c)
          if (c != label_col) x[j++] = row[c];
        d->Y[r * (size_t)classes + (size_t)row[label_col]] = 1.0f;
      }
    }
  }
  free(vals);
  if (st != BP_OK) {
    bp_data_free(d);
    return st;
  }
  *job->out = d;
  return BP_OK;
}

bp_status bp_data_parse_csv(bp_context *ctx, const char *text, size_t len, const char *name,
                            const bp_csv_options *opt, bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !out || (!text && len))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_parse_csv: NULL argument");
  csv_job job = {ctx, text ? text : "", len, name ? name : "<buffer>", {-1, 0, 0}, out};
  if (opt) job.opt = *opt;
  if (job.opt.n_targets < 0 || job.opt.n_classes < 0)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n_targets and n_classes must be >= 0",
                    job.name);
  return bp_io_with_c_locale(ctx, csv_run, &job);
}

bp_status bp_data_read_csv(bp_context *ctx, const char *path, const bp_csv_options *opt,
                           bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !path || !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_read_csv: NULL argument");
  unsigned char *text = NULL;
  size_t len = 0;
  bp_status st = bp_io_read_file(ctx, path, CSV_MAX_BYTES, &text, &len);
  if (st != BP_OK) return st;
  st = bp_data_parse_csv(ctx, (const char *)text, len, path, opt, out);
  free(text);
  return st;
}
