/*
 * fann.c - FANN training data files.
 *
 *   n_examples n_inputs n_outputs
 *   in_1 ... in_n_inputs        (one line per example)
 *   out_1 ... out_n_outputs     (the line after it)
 *
 * Values are separated by blanks. FANN's own reader only counts tokens; this
 * one holds each example to its two lines, so a wrong count in the first
 * line is reported where it first shows instead of as a misaligned total.
 * Blank lines are skipped; "\r\n" is accepted.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io/file_util.h"

#define FANN_MAX_BYTES ((size_t)1 << (sizeof(size_t) > 4 ? 34 : 30))

typedef struct fann_job {
  bp_context *ctx;
  const char *text;
  size_t len;
  const char *name;
  bp_data **out;
} fann_job;

typedef struct line_reader {
  const char *t;
  size_t len, pos;
  long line;
} line_reader;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Next line that is not blank; returns 0 at the end of the text. */
static int next_line(line_reader *r, const char **s, size_t *n) {
  while (r->pos < r->len) {
    const char *ls = r->t + r->pos;
    const char *nl = memchr(ls, '\n', r->len - r->pos);
    size_t ll = nl ? (size_t)(nl - ls) : r->len - r->pos;
    r->pos += ll + (nl ? 1 : 0);
    ++r->line;
    size_t k = 0;
    while (k < ll && is_space(ls[k])) ++k;
    if (k < ll) {
      *s = ls;
      *n = ll;
      return 1;
    }
  }
  return 0;
}

/* Next blank-separated token of s[*pos..n); returns 0 when there is none. */
static int next_token(const char *s, size_t n, size_t *pos, const char **tok, size_t *tl) {
  size_t i = *pos;
  while (i < n && is_space(s[i])) ++i;
  if (i == n) return 0;
  size_t j = i;
  while (j < n && !is_space(s[j])) ++j;
  *tok = s + i;
  *tl = j - i;
  *pos = j;
  return 1;
}

static int parse_count(const char *s, size_t n, long max, long *out) {
  long v = 0;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
    if (v > max) return 0;
  }
  *out = v;
  return 1;
}

/* Reads exactly count numbers from one line into dst. */
static bp_status read_values(bp_context *ctx, const char *name, line_reader *r, long count,
                             const char *what, long example, float *dst) {
  const char *s;
  size_t n;
  if (!next_line(r, &s, &n))
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: line %ld: end of file; expected the %s line of example %ld", name, r->line,
                    what, example + 1);
  size_t pos = 0;
  long k = 0;
  const char *tok;
  size_t tl;
  while (next_token(s, n, &pos, &tok, &tl)) {
    if (k == count) {
      long extra = 1;
      while (next_token(s, n, &pos, &tok, &tl)) ++extra;
      return bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: %ld %s values, expected %ld", name,
                      r->line, count + extra, what, count);
    }
    if (!bp_io_parse_float(tok, tl, &dst[k])) {
      int shown = tl > 40 ? 40 : (int)tl;
      return bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: value %ld (\"%.*s%s\") is not a number",
                      name, r->line, k + 1, shown, tok, tl > 40 ? "..." : "");
    }
    ++k;
  }
  if (k != count)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: %ld %s values, expected %ld", name, r->line,
                    k, what, count);
  return BP_OK;
}

static bp_status fann_run(void *arg) {
  fann_job *job = arg;
  bp_context *ctx = job->ctx;
  const char *name = job->name;
  line_reader r = {job->text, job->len, 0, 0};
  const char *s;
  size_t n;
  if (!next_line(&r, &s, &n))
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: line 1: empty file; expected \"n_examples n_inputs "
                    "n_outputs\"",
                    name);
  long counts[3];
  size_t pos = 0;
  int k = 0;
  const char *tok;
  size_t tl;
  while (next_token(s, n, &pos, &tok, &tl)) {
    long max = k == 0 ? INT_MAX : BP_MAX_DIM;
    if (k == 3 || !parse_count(tok, tl, max, &counts[k]) || counts[k] < 1)
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: line %ld: expected \"n_examples n_inputs n_outputs\" (three positive "
                      "integers)",
                      name, r.line);
    ++k;
  }
  if (k != 3)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: line %ld: expected \"n_examples n_inputs n_outputs\" (three positive "
                    "integers)",
                    name, r.line);
  /* Each value takes at least one byte: a header that promises more values
   * than there are bytes is rejected before allocating for them. */
  uint64_t values = (uint64_t)counts[0] * (uint64_t)(counts[1] + counts[2]);
  if (values > (uint64_t)(job->len - r.pos))
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: line %ld: %ld examples of %ld + %ld values cannot fit in the %zu bytes "
                    "that follow",
                    name, r.line, counts[0], counts[1], counts[2], job->len - r.pos);
  bp_data *d;
  bp_status st = bp_io_data_alloc(ctx, (int)counts[0], (int)counts[1], (int)counts[2], &d);
  if (st != BP_OK) return st;
  for (long e = 0; e < counts[0] && st == BP_OK; ++e) {
    st = read_values(ctx, name, &r, counts[1], "input", e, d->X + (size_t)e * (size_t)counts[1]);
    if (st == BP_OK)
      st = read_values(ctx, name, &r, counts[2], "output", e, d->Y + (size_t)e * (size_t)counts[2]);
  }
  if (st == BP_OK && next_line(&r, &s, &n))
    st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: data after the %ld announced examples", name,
                  r.line, counts[0]);
  if (st != BP_OK) {
    bp_data_free(d);
    return st;
  }
  *job->out = d;
  return BP_OK;
}

bp_status bp_data_parse_fann(bp_context *ctx, const char *text, size_t len, const char *name,
                             bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !out || (!text && len))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_parse_fann: NULL argument");
  fann_job job = {ctx, text ? text : "", len, name ? name : "<buffer>", out};
  return bp_io_with_c_locale(ctx, fann_run, &job);
}

bp_status bp_data_read_fann(bp_context *ctx, const char *path, bp_data **out) {
  if (out) *out = NULL;
  if (!ctx || !path || !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_data_read_fann: NULL argument");
  unsigned char *text = NULL;
  size_t len = 0;
  bp_status st = bp_io_read_file(ctx, path, FANN_MAX_BYTES, &text, &len);
  if (st != BP_OK) return st;
  st = bp_data_parse_fann(ctx, (const char *)text, len, path, out);
  free(text);
  return st;
}
