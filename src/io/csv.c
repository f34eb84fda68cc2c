/*
 * csv.c - numeric CSV data sets.
 *
 * Every field of a data line must be a plain decimal number ('.' as the
 * decimal point whatever the locale), except a label that names its class;
 * blanks around a field are allowed. Fields are separated by ',', ';' or tab
 * (detected from the first line: the most frequent of the three).
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
  opt->delimiter = 0;
  opt->inputs_only = 0;
  opt->class_names = NULL;
}

typedef struct csv_job {
  bp_context *ctx;
  const char *text;
  size_t len;
  const char *name;
  bp_csv_options opt;
  bp_data **out;
} csv_job;

/* Blanks around a field: spaces, and tabs unless tab separates fields. */
static int is_blank(char c, char delim) { return c == ' ' || (c == '\t' && delim != '\t'); }

static const char *delim_name(char d) { return d == '\t' ? "tab" : d == ';' ? "';'" : "','"; }

/* The separator of a file whose first non-blank line is s[0..n): the most
 * frequent of ',', ';' and tab outside double quotes; ',' on a tie. */
static char detect_delimiter(const char *s, size_t n) {
  size_t comma = 0, semi = 0, tab = 0;
  int quoted = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] == '"') quoted = !quoted;
    if (quoted) continue;
    comma += s[i] == ',';
    semi += s[i] == ';';
    tab += s[i] == '\t';
  }
  if (semi > comma && semi >= tab) return ';';
  if (tab > comma && tab > semi) return '\t';
  return ',';
}

/* Number of fields of a header line, separators inside double quotes not
 * counting; -1 on an unterminated quote. */
static long header_fields(const char *s, size_t n, char delim) {
  long fields = 1;
  int quoted = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] == '"')
      quoted = !quoted;
    else if (s[i] == delim && !quoted)
      ++fields;
  }
  return quoted ? -1 : fields;
}

/* Grows an array of elements of `size` bytes to hold at least need. */
static int reserve(void **v, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 1;
  size_t ncap = *cap ? *cap : 1024;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / size) return 0;
    ncap *= 2;
  }
  void *nv = realloc(*v, ncap * size);
  if (!nv) return 0;
  *v = nv;
  *cap = ncap;
  return 1;
}

/* ---- Class names: ids in order of arrival, found through a hash table. ---- */
typedef struct name_map {
  char **names;
  size_t n, cap;
  int32_t *table; /* open addressing; -1 empty; size a power of two >= 2 n */
  size_t table_size;
} name_map;

static uint64_t name_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; ++i) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

static long name_find(const name_map *m, const char *s, size_t n, size_t *slot) {
  if (!m->table_size) return -1;
  size_t i = (size_t)name_hash(s, n) & (m->table_size - 1);
  for (;; i = (i + 1) & (m->table_size - 1)) {
    int32_t id = m->table[i];
    if (id < 0) break;
    /* Lengths first: a field may hold NUL bytes, so a stored name can be
     * shorter than n, and nothing may be read past its end. */
    if (strlen(m->names[id]) == n && memcmp(m->names[id], s, n) == 0) return id;
  }
  if (slot) *slot = i;
  return -1;
}

/* Adds s[0..n) as the next id; 0 when out of memory. */
static int name_add(name_map *m, const char *s, size_t n) {
  if (2 * (m->n + 1) > m->table_size) {
    size_t size = m->table_size ? 2 * m->table_size : 64;
    int32_t *t = malloc(size * sizeof *t);
    if (!t) return 0;
    for (size_t i = 0; i < size; ++i) t[i] = -1;
    for (size_t id = 0; id < m->n; ++id) {
      size_t i = (size_t)name_hash(m->names[id], strlen(m->names[id])) & (size - 1);
      while (t[i] >= 0) i = (i + 1) & (size - 1);
      t[i] = (int32_t)id;
    }
    free(m->table);
    m->table = t;
    m->table_size = size;
  }
  size_t slot = 0;
  name_find(m, s, n, &slot);
  void *names = m->names;
  if (!reserve(&names, &m->cap, m->n + 1, sizeof(char *))) return 0;
  m->names = names;
  char *copy = malloc(n + 1);
  if (!copy) return 0;
  memcpy(copy, s, n);
  copy[n] = '\0';
  m->names[m->n] = copy;
  m->table[slot] = (int32_t)m->n++;
  return 1;
}

static void name_map_free(name_map *m) {
  for (size_t i = 0; i < m->n; ++i) free(m->names[i]);
  free(m->names);
  free(m->table);
}

/* A field's span within its line. */
typedef struct span {
  size_t a, b;
} span;

/* A hint for a field that is not a number, or "". */
static const char *field_hint(const char *f, size_t n, char delim) {
  for (size_t i = 0; i < n; ++i) {
    if (f[i] == ';' || f[i] == '\t' || (f[i] == ',' && delim != ','))
      return f[i] == ',' && delim == ';' && i > 0 && f[i - 1] >= '0' && f[i - 1] <= '9'
                 ? " (hint: decimal commas are not read; write 1.5, not 1,5)"
                 : " (hint: the field holds another separator; set the delimiter)";
    if (f[i] == '"') return " (hint: data fields are not quoted)";
  }
  return "";
}

static bp_status csv_run(void *arg) {
  csv_job *job = arg;
  bp_context *ctx = job->ctx;
  const char *name = job->name, *t = job->text;
  const bp_csv_options *opt = &job->opt;
  const int inputs_only = opt->inputs_only != 0;
  const int n_targets = inputs_only ? 0 : opt->n_targets;
  const int labelled = !inputs_only && n_targets == 0;
  size_t len = job->len, pos = 0;
  if (len >= 3 && (unsigned char)t[0] == 0xef && (unsigned char)t[1] == 0xbb &&
      (unsigned char)t[2] == 0xbf)
    pos = 3; /* UTF-8 byte order mark written by some spreadsheet programs */

  float *vals = NULL;
  span *spans = NULL;
  size_t cap = 0, nvals = 0, spans_cap = 0;
  long ncols = -1, ncols_line = 0, line = 0, label_col = -1;
  long max_label = -1;
  int rows = 0, first = 1, named = -1; /* named: labels are class names (-1: not known yet) */
  char delim = (char)opt->delimiter;
  name_map map = {0};
  bp_status st = BP_OK;
  if (labelled && opt->class_names) {
    named = 1;
    for (const char *p = opt->class_names; st == BP_OK && *p;) {
      const char *e = strchr(p, '\n');
      size_t n = e ? (size_t)(e - p) : strlen(p);
      if (name_find(&map, p, n, NULL) >= 0)
        st = bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: class name \"%.*s\" is given twice",
                      name, (int)(n > 40 ? 40 : n), p);
      else if (!name_add(&map, p, n))
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
      p += n + (e ? 1 : 0);
    }
  }
  while (pos < len && st == BP_OK) {
    const char *ls = t + pos;
    const char *nl = memchr(ls, '\n', len - pos);
    size_t ll = nl ? (size_t)(nl - ls) : len - pos;
    pos += ll + (nl ? 1 : 0);
    ++line;
    if (ll > 0 && ls[ll - 1] == '\r') --ll;
    size_t k = 0;
    while (k < ll && (ls[k] == ' ' || ls[k] == '\t')) ++k;
    if (k == ll) continue;

    if (first) {
      first = 0;
      if (!delim) delim = detect_delimiter(ls, ll);
      /* Header detection looks at the first field only, as documented. */
      size_t e = 0;
      while (e < ll && ls[e] != delim) ++e;
      size_t a = 0, b = e;
      while (a < b && is_blank(ls[a], delim)) ++a;
      while (b > a && is_blank(ls[b - 1], delim)) --b;
      float dummy;
      if (!bp_io_parse_float(ls + a, b - a, &dummy)) {
        ncols = header_fields(ls, ll, delim);
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
    /* Split the line into fields first: the label column's place depends on
     * the count. */
    long field = 0;
    for (size_t a = 0;;) {
      size_t b = a;
      while (b < ll && ls[b] != delim) ++b;
      size_t fa = a, fb = b;
      while (fa < fb && is_blank(ls[fa], delim)) ++fa;
      while (fb > fa && is_blank(ls[fb - 1], delim)) --fb;
      void *sp = spans;
      if (!reserve(&sp, &spans_cap, (size_t)field + 1, sizeof(span))) {
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: line %ld: out of memory", name, line);
        break;
      }
      spans = sp;
      spans[field++] = (span){fa, fb};
      if (b >= ll) break;
      a = b + 1;
    }
    if (st != BP_OK) break;
    if (ncols < 0) {
      ncols = field;
      ncols_line = line;
    }
    if (field != ncols) {
      const char *other = delim != ';' && memchr(ls, ';', ll)    ? ";"
                          : delim != '\t' && memchr(ls, '\t', ll) ? "\t"
                          : delim != ',' && memchr(ls, ',', ll)   ? ","
                                                                  : NULL;
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: %ld fields separated by %s, but line %ld has %ld%s%s%s",
                    name, line, field, delim_name(delim), ncols_line, ncols,
                    other ? " (hint: the line also holds " : "", other ? delim_name(*other) : "",
                    other ? "; set the delimiter if that is the separator)" : "");
      break;
    }
    if (rows == 0 && labelled) {
      label_col = opt->label_column < 0 ? ncols + opt->label_column : opt->label_column;
      if (ncols < 2 || label_col < 0 || label_col >= ncols) {
        int other = ncols == 1 && (memchr(ls, ';', ll) || memchr(ls, '\t', ll) ||
                                   (delim != ',' && memchr(ls, ',', ll)));
        st = bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "%s: label_column %d is out of range for %ld columns (and at least one "
                      "input column is needed)%s%s%s",
                      name, opt->label_column, ncols,
                      other ? " (hint: the line holds another separator than the one in use, " : "",
                      other ? delim_name(delim) : "", other ? "; set the delimiter)" : "");
        break;
      }
    }
    if (rows == 0 && n_targets > 0 && n_targets >= ncols) {
      st = bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: n_targets %d leaves no input column among %ld columns", name, n_targets,
                    ncols);
      break;
    }
    for (long f = 0; f < field; ++f) {
      const char *fs = ls + spans[f].a;
      size_t fn = spans[f].b - spans[f].a;
      int shown = fn > 40 ? 40 : (int)fn;
      float v = 0.0f;
      if (f == label_col) {
        if (named < 0) named = !bp_io_parse_float(fs, fn, &v);
        if (named) {
          if (fn == 0) {
            st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: the label (column %ld) is empty",
                          name, line, label_col + 1);
            break;
          }
          long id = name_find(&map, fs, fn, NULL);
          if (id < 0) {
            if (opt->n_classes > 0 && map.n >= (size_t)opt->n_classes) {
              st = bp_error(ctx, BP_ERR_FORMAT,
                            "%s: line %ld: class \"%.*s%s\" would be class %zu, past the %d "
                            "classes known",
                            name, line, shown, fs, fn > 40 ? "..." : "", map.n + 1,
                            opt->n_classes);
              break;
            }
            if (map.n >= CSV_MAX_AUTO_CLASSES || !name_add(&map, fs, fn)) {
              st = bp_error(ctx, map.n >= CSV_MAX_AUTO_CLASSES ? BP_ERR_FORMAT : BP_ERR_OUT_OF_MEMORY,
                            "%s: line %ld: more than %ld class names", name, line,
                            (long)CSV_MAX_AUTO_CLASSES);
              break;
            }
            id = (long)map.n - 1;
          }
          v = (float)id;
        } else {
          long limit = opt->n_classes > 0 ? (opt->n_classes < CSV_MAX_CLASSES ? opt->n_classes
                                                                               : CSV_MAX_CLASSES)
                                          : CSV_MAX_AUTO_CLASSES;
          if (!bp_io_parse_float(fs, fn, &v) || !(v >= 0.0f) || v != floorf(v) ||
              v >= (float)limit) {
            st = bp_error(ctx, BP_ERR_FORMAT,
                          "%s: line %ld: label \"%.*s%s\" in column %ld is not an integer class "
                          "id in 0..%ld (labels are class names only when the first row's is "
                          "not a number)",
                          name, line, shown, fs, fn > 40 ? "..." : "", label_col + 1, limit - 1);
            break;
          }
        }
        if ((long)v > max_label) max_label = (long)v;
      } else if (!bp_io_parse_float(fs, fn, &v)) {
        st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: field %ld (\"%.*s%s\") is not a number%s",
                      name, line, f + 1, shown, fs, fn > 40 ? "..." : "",
                      field_hint(fs, fn, delim));
        break;
      }
      void *vp = vals;
      if (!reserve(&vp, &cap, nvals + 1, sizeof(float))) {
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: line %ld: out of memory", name, line);
        break;
      }
      vals = vp;
      vals[nvals++] = v;
    }
    if (st != BP_OK) break;
    ++rows;
  }
  if (st == BP_OK && rows == 0)
    st = bp_error(ctx, BP_ERR_FORMAT, "%s: line %ld: no data rows", name, line);

  bp_data *d = NULL;
  if (st == BP_OK) {
    int n_cols = (int)ncols;
    if (inputs_only) {
      /* Allocated with one target column, which is then dropped. */
      st = bp_io_data_alloc(ctx, rows, n_cols, 1, &d);
      if (st == BP_OK) {
        free(d->Y);
        d->Y = NULL;
        d->n_out = 0;
        memcpy(d->X, vals, (size_t)rows * (size_t)n_cols * sizeof(float));
      }
    } else if (n_targets > 0) {
      int n_out = n_targets, n_in = n_cols - n_out;
      st = bp_io_data_alloc(ctx, rows, n_in, n_out, &d);
      for (size_t r = 0; st == BP_OK && r < (size_t)rows; ++r) {
        memcpy(d->X + r * (size_t)n_in, vals + r * (size_t)n_cols, (size_t)n_in * sizeof(float));
        memcpy(d->Y + r * (size_t)n_out, vals + r * (size_t)n_cols + n_in,
               (size_t)n_out * sizeof(float));
      }
    } else {
      int classes = opt->n_classes > 0 ? opt->n_classes
                    : named == 1       ? (int)map.n
                                       : (int)max_label + 1;
      int n_in = n_cols - 1;
      st = bp_io_data_alloc(ctx, rows, n_in, classes, &d);
      for (size_t r = 0; st == BP_OK && r < (size_t)rows; ++r) {
        const float *row = vals + r * (size_t)n_cols;
        float *x = d->X + r * (size_t)n_in;
        for (int c = 0, j = 0; c < n_cols; ++c)
          if (c != label_col) x[j++] = row[c];
        d->Y[r * (size_t)classes + (size_t)row[label_col]] = 1.0f;
      }
      if (st == BP_OK && named == 1) {
        /* The names move to the bp_data, padded with "" up to n_classes. */
        d->class_names = calloc((size_t)classes, sizeof(char *));
        for (int c = 0; d->class_names && c < classes; ++c) {
          if ((size_t)c < map.n) {
            d->class_names[c] = map.names[c];
            map.names[c] = NULL;
          } else if (!(d->class_names[c] = calloc(1, 1))) {
            break;
          }
        }
        if (!d->class_names || !d->class_names[classes - 1])
          st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
      }
    }
  }
  free(vals);
  free(spans);
  name_map_free(&map);
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
  csv_job job = {ctx, text ? text : "", len, name ? name : "<buffer>", {0}, out};
  bp_csv_options_init(&job.opt);
  if (opt) job.opt = *opt;
  if (job.opt.n_targets < 0 || job.opt.n_classes < 0)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n_targets and n_classes must be >= 0",
                    job.name);
  if (job.opt.delimiter != 0 && job.opt.delimiter != ',' && job.opt.delimiter != ';' &&
      job.opt.delimiter != '\t')
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: the delimiter must be ',', ';' or tab",
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
