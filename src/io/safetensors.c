/*
 * safetensors.c - model files: writer and validating parser.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON (padded with
 * spaces so the data starts 8-byte aligned), then the data buffer. Offsets in
 * the header are relative to the data buffer. The parser trusts nothing in
 * the file: every length, shape and offset is checked against the bytes that
 * are actually there before any of them is used.
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "io/file_util.h"

/* A header is a few hundred bytes per layer; the cap keeps a hostile length
 * field from making cJSON build a tree of gigabytes. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Integers above 2^53 are not exact in cJSON's doubles; no real buffer is
 * that large, so such values are rejected rather than rounded. */
#define ST_MAX_INT 9007199254740992.0

/* cJSON's parser writes a static error record on every call, a data race when
 * two contexts load models in two threads (which the API allows); this lock
 * around the parse is the price of using it. */
static pthread_mutex_t cjson_parse_lock = PTHREAD_MUTEX_INITIALIZER;

/* Keys the library writes; "optimizer" also reserves every "optimizer.*". */
static const char *const reserved_meta[] = {"format", "backprop_version", "activation", "cost",
                                            "sizes",  "optimizer"};

/* Optimizer state slots per kind: at most two (bp_optimizer_state_slot_name). */
#define ST_MAX_SLOTS 2

/* ---- Shared helpers ------------------------------------------------------ */

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

static float le_f32(const unsigned char *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void put_le_f32(unsigned char *p, float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  p[0] = (unsigned char)u;
  p[1] = (unsigned char)(u >> 8);
  p[2] = (unsigned char)(u >> 16);
  p[3] = (unsigned char)(u >> 24);
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Returns the length of the valid UTF-8 prefix of s[0..n) (n when all of it
 * is valid). Rejects overlong forms, surrogates and code points > U+10FFFF,
 * as Rust's from_utf8 in the reference safetensors reader does. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k;
    unsigned min, cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      k = 1, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return i;
    }
    if (n - i <= k) return i;
    for (size_t j = 1; j <= k; ++j) {
      if ((s[i + j] & 0xc0) != 0x80) return i;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += k + 1;
  }
  return n;
}

/* ---- Parser -------------------------------------------------------------- */

typedef struct st_tensor {
  const char *key;
  int present;
  uint64_t shape[2];
  int rank;
  uint64_t begin, end; /* relative to the data buffer */
} st_tensor;

typedef struct st_model {
  const char *name;
  const unsigned char *header; /* the N header bytes (not NUL-terminated) */
  size_t header_len;
  uint64_t data_len;
  cJSON *root;
  const cJSON *meta; /* "__metadata__" object or NULL */
  int n_layers;
  st_tensor *weight, *bias; /* n_layers each */
  int *sizes;               /* n_layers + 1 */
  size_t n_params;          /* weights and biases */
  bp_activation *acts;      /* n_layers, from the metadata (sigmoid without it) */
  bp_cost cost;             /* from the metadata (quadratic without it) */
  /* Optimizer state ("optimizer" metadata; tensors optimizer.<slot>.layers.<i>.*). */
  int has_opt;
  bp_optimizer_config opt;
  int64_t opt_step;
  int n_opt_slots;                                   /* slots with tensors: 0 .. n_opt_slots-1 */
  st_tensor *opt_weight[ST_MAX_SLOTS], *opt_bias[ST_MAX_SLOTS]; /* n_layers each */
} st_model;

static void st_model_free(st_model *m) {
  cJSON_Delete(m->root);
  free(m->weight);
  free(m->bias);
  free(m->sizes);
  free(m->acts);
  for (int k = 0; k < ST_MAX_SLOTS; ++k) {
    free(m->opt_weight[k]);
    free(m->opt_bias[k]);
  }
  memset(m, 0, sizeof *m);
}

/* Absolute file offset of the nth (0-based) occurrence of "key" in the
 * header, for messages; the start of the header when it cannot be found
 * (e.g. the key was written with escapes). */
static size_t key_offset(const st_model *m, const char *key, int nth) {
  size_t kl = strlen(key);
  const unsigned char *h = m->header;
  for (size_t i = 0; i + kl + 2 <= m->header_len; ++i) {
    if (h[i] == '"' && h[i + kl + 1] == '"' && memcmp(h + i + 1, key, kl) == 0) {
      if (nth-- == 0) return 8 + i;
    }
  }
  return 8;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps duplicate keys; a reader that takes the first and one that
 * takes the last would see different models, so duplicates are malformed. */
static bp_status check_unique_keys(bp_context *ctx, const st_model *m, const cJSON *obj,
                                   const char *where) {
  size_t n = 0;
  for (const cJSON *c = obj->child; c; c = c->next) ++n;
  if (n < 2) return BP_OK;
  const char **keys = malloc(n * sizeof *keys);
  if (!keys) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", m->name);
  size_t i = 0;
  for (const cJSON *c = obj->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
  qsort(keys, n, sizeof *keys, cmp_str_ptr);
  bp_status st = BP_OK;
  for (i = 1; i < n; ++i) {
    if (strcmp(keys[i - 1], keys[i]) == 0) {
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: duplicate key \"%s\" in %s", m->name,
                    key_offset(m, keys[i], 1), keys[i], where);
      break;
    }
  }
  free(keys);
  return st;
}

static int json_uint(const cJSON *it, uint64_t *out) {
  if (!cJSON_IsNumber(it)) return 0;
  double d = it->valuedouble;
  if (!(d >= 0.0 && d <= ST_MAX_INT) || d != floor(d)) return 0;
  *out = (uint64_t)d;
  return 1;
}

/* "layers.<i>.weight" / "layers.<i>.bias" with a canonical decimal i. */
static int parse_layer_key(const char *k, int *layer, int *is_bias) {
  if (strncmp(k, "layers.", 7) != 0) return 0;
  const char *p = k + 7;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return 0;
  long v = 0;
  while (*p >= '0' && *p <= '9') {
    v = v * 10 + (*p++ - '0');
    if (v > BP_MAX_DIM) return 0;
  }
  if (strcmp(p, ".weight") == 0) {
    *is_bias = 0;
  } else if (strcmp(p, ".bias") == 0) {
    *is_bias = 1;
  } else {
    return 0;
  }
  *layer = (int)v;
  return 1;
}

/* "optimizer.<slot>.layers.<i>.weight|bias": *slot is the index of <slot>
 * among the state slots of kind (-1: not a slot name of kind). Returns 0
 * when k does not start with "optimizer.". */
static int parse_opt_key(const char *k, bp_optimizer kind, int has_kind, int *slot, int *layer,
                         int *is_bias) {
  if (strncmp(k, "optimizer.", 10) != 0) return 0;
  const char *name = k + 10, *dot = strstr(name, ".layers.");
  *slot = -1;
  *layer = -1;
  if (!dot || !parse_layer_key(dot + 1, layer, is_bias)) return 1;
  for (int s = 0; has_kind && s < ST_MAX_SLOTS; ++s) {
    const char *sn = bp_optimizer_state_slot_name(kind, s);
    if (sn && strlen(sn) == (size_t)(dot - name) && strncmp(sn, name, (size_t)(dot - name)) == 0)
      *slot = s;
  }
  return 1;
}

static bp_status parse_tensor(bp_context *ctx, const st_model *m, const cJSON *entry,
                              st_tensor *t) {
  const char *key = entry->string;
  size_t off = key_offset(m, key, 0);
  if (!cJSON_IsObject(entry))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\" is not an object", m->name,
                    off, key);
  bp_status st = check_unique_keys(ctx, m, entry, key);
  if (st != BP_OK) return st;
  const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
  for (const cJSON *c = entry->child; c; c = c->next) {
    if (strcmp(c->string, "dtype") == 0) {
      dtype = c;
    } else if (strcmp(c->string, "shape") == 0) {
      shape = c;
    } else if (strcmp(c->string, "data_offsets") == 0) {
      offsets = c;
    } else {
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\" has unknown field \"%s\"",
                      m->name, off, key, c->string);
    }
  }
  if (!dtype || !shape || !offsets)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\" lacks \"%s\"", m->name, off,
                    key,
                    !dtype   ? "dtype"
                    : !shape ? "shape"
                             : "data_offsets");
  if (!cJSON_IsString(dtype))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\": dtype is not a string",
                    m->name, off, key);
  if (strcmp(dtype->valuestring, "F32") != 0)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\" has dtype \"%s\"; only \"F32\" is supported",
                    m->name, off, key, dtype->valuestring);

  if (!cJSON_IsArray(shape))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\": shape is not an array",
                    m->name, off, key);
  uint64_t elements = 1;
  int rank = 0, overflow = 0;
  for (const cJSON *c = shape->child; c; c = c->next, ++rank) {
    uint64_t d;
    if (!json_uint(c, &d))
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: tensor \"%s\": shape entry %d is not a non-negative integer",
                      m->name, off, key, rank);
    if (rank < 2) t->shape[rank] = d;
    if (d != 0 && elements > UINT64_MAX / 4 / d) overflow = 1;
    elements *= overflow ? 1 : d;
  }
  /* A zero dimension makes the product 0 whatever the others are; the
   * overflow is reported anyway, since such a shape is not a real tensor. */
  if (overflow)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\": shape size overflows",
                    m->name, off, key);
  t->rank = rank;

  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
      !json_uint(offsets->child, &t->begin) || !json_uint(offsets->child->next, &t->end))
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\": data_offsets is not two non-negative integers",
                    m->name, off, key);
  if (t->begin > t->end)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\": data_offsets begin %llu > end %llu", m->name, off,
                    key, (unsigned long long)t->begin, (unsigned long long)t->end);
  if (t->end > m->data_len)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\": data_offsets end %llu is past the data buffer "
                    "(%llu bytes)",
                    m->name, off, key, (unsigned long long)t->end, (unsigned long long)m->data_len);
  if (t->end - t->begin != elements * 4)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\": data_offsets span %llu bytes but the shape "
                    "needs %llu",
                    m->name, off, key, (unsigned long long)(t->end - t->begin),
                    (unsigned long long)(elements * 4));
  t->key = key;
  t->present = 1;
  return BP_OK;
}

static int cmp_tensor_begin(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static bp_status check_coverage(bp_context *ctx, const st_model *m) {
  size_t n = (size_t)m->n_layers * 2 * (1 + (size_t)m->n_opt_slots);
  const st_tensor **order = malloc(n * sizeof *order);
  if (!order) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", m->name);
  size_t k = 0;
  for (int i = 0; i < m->n_layers; ++i) {
    order[k++] = &m->weight[i];
    order[k++] = &m->bias[i];
  }
  for (int sl = 0; sl < m->n_opt_slots; ++sl) {
    for (int i = 0; i < m->n_layers; ++i) {
      order[k++] = &m->opt_weight[sl][i];
      order[k++] = &m->opt_bias[sl][i];
    }
  }
  qsort(order, n, sizeof *order, cmp_tensor_begin);
  bp_status st = BP_OK;
  uint64_t pos = 0;
  for (size_t i = 0; i < n && st == BP_OK; ++i) {
    const st_tensor *t = order[i];
    if (t->begin < pos)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: tensor \"%s\" (data bytes %llu..%llu) overlaps the previous "
                    "tensor",
                    m->name, key_offset(m, t->key, 0), t->key, (unsigned long long)t->begin,
                    (unsigned long long)t->end);
    else if (t->begin > pos)
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: gap in the data buffer: bytes %llu..%llu belong to no tensor",
                    m->name, (size_t)(8 + m->header_len + pos), (unsigned long long)pos,
                    (unsigned long long)t->begin);
    pos = t->end;
  }
  if (st == BP_OK && pos != m->data_len)
    st = bp_error(ctx, BP_ERR_FORMAT,
                  "%s: byte %zu: the last %llu bytes of the data buffer belong to no tensor",
                  m->name, (size_t)(8 + m->header_len + pos),
                  (unsigned long long)(m->data_len - pos));
  free(order);
  return st;
}

static bp_status check_metadata(bp_context *ctx, st_model *m, const cJSON *meta) {
  size_t off = key_offset(m, "__metadata__", 0);
  if (!cJSON_IsObject(meta))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: __metadata__ is not an object", m->name,
                    off);
  bp_status st = check_unique_keys(ctx, m, meta, "__metadata__");
  if (st != BP_OK) return st;
  for (const cJSON *c = meta->child; c; c = c->next) {
    if (!cJSON_IsString(c))
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: __metadata__ value \"%s\" is not a string",
                      m->name, key_offset(m, c->string, 0), c->string);
  }
  m->meta = meta;
  return BP_OK;
}

/* One number of the optimizer's metadata ("optimizer.<field>"), when present. */
static bp_status meta_number(bp_context *ctx, const st_model *m, const char *field, double *out) {
  char key[48];
  snprintf(key, sizeof key, "optimizer.%s", field);
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(m->meta, key);
  if (!it) return BP_OK;
  char *end = NULL;
  double v = strtod(it->valuestring, &end);
  if (end == it->valuestring || *end != '\0' || !isfinite(v))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: metadata \"%s\" = \"%s\" is not a number",
                    m->name, key_offset(m, key, 0), key, it->valuestring);
  *out = v;
  return BP_OK;
}

/* "activation": one name for every layer (the seed's files: "sigmoid") or
 * one name per weight layer, comma-separated ("relu,relu,softmax"). */
static bp_status parse_activations(bp_context *ctx, st_model *m, const char *text) {
  size_t off = key_offset(m, "activation", 0);
  int n = 1;
  for (const char *p = text; *p; ++p) n += *p == ',';
  if (n != 1 && n != m->n_layers)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: metadata activation \"%s\" names %d activations for %d weight "
                    "layers (give one, or one per layer)",
                    m->name, off, text, n, m->n_layers);
  const char *p = text;
  for (int i = 0; i < n; ++i) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    char name[32];
    bp_activation a;
    if (len >= sizeof name || (memcpy(name, p, len), name[len] = '\0',
                               bp_activation_parse(name, &a) != BP_OK))
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: unknown activation \"%.*s\" in metadata activation \"%s\" "
                      "(known: sigmoid, tanh, relu, identity, softmax)",
                      m->name, off, (int)(len > 40 ? 40 : len), p, text);
    if (n == 1) {
      for (int j = 0; j < m->n_layers; ++j) m->acts[j] = a;
    } else {
      m->acts[i] = a;
    }
    p = e ? e + 1 : p + len;
  }
  for (int i = 0; i + 1 < m->n_layers; ++i) {
    if (m->acts[i] == BP_ACTIVATION_SOFTMAX)
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: metadata activation \"%s\": softmax on hidden layer %d; "
                      "softmax is only allowed on the output layer",
                      m->name, off, text, i);
  }
  return BP_OK;
}

/* What the metadata says must agree with the tensors, and name only what
 * this version implements: a file that would silently compute something
 * else is malformed. Without "activation" and "cost" (older files) the
 * network is the seed's: sigmoid everywhere, quadratic cost. */
static bp_status check_metadata_semantics(bp_context *ctx, st_model *m) {
  m->acts = malloc((size_t)m->n_layers * sizeof *m->acts);
  if (!m->acts) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", m->name);
  for (int i = 0; i < m->n_layers; ++i) m->acts[i] = BP_ACTIVATION_SIGMOID;
  m->cost = BP_COST_QUADRATIC;
  if (!m->meta) return BP_OK;
  bp_status st;
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(m->meta, "activation");
  if (act && (st = parse_activations(ctx, m, act->valuestring)) != BP_OK) return st;
  const cJSON *cost = cJSON_GetObjectItemCaseSensitive(m->meta, "cost");
  if (cost && bp_cost_parse(cost->valuestring, &m->cost) != BP_OK)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: unknown cost \"%s\" (known: quadratic, cross-entropy)", m->name,
                    key_offset(m, "cost", 0), cost->valuestring);
  bp_activation out = m->acts[m->n_layers - 1];
  if (m->cost == BP_COST_CROSS_ENTROPY && out != BP_ACTIVATION_SOFTMAX &&
      out != BP_ACTIVATION_SIGMOID)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: cost cross-entropy needs a softmax or sigmoid output layer, "
                    "not %s",
                    m->name, key_offset(m, "cost", 0), bp_activation_name(out));
  const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(m->meta, "sizes");
  if (sizes) {
    const char *p = sizes->valuestring;
    int ok = 1;
    for (int i = 0; i <= m->n_layers && ok; ++i) {
      if (i > 0) ok = *p++ == ',';
      long v = 0;
      int digits = 0;
      while (ok && *p >= '0' && *p <= '9' && v <= BP_MAX_DIM) v = v * 10 + (*p++ - '0'), ++digits;
      ok = ok && digits > 0 && v == m->sizes[i];
    }
    if (!ok || *p != '\0')
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: metadata sizes \"%s\" disagree with the tensor shapes",
                      m->name, key_offset(m, "sizes", 0), sizes->valuestring);
  }
  if (m->has_opt) {
    bp_optimizer_config *c = &m->opt;
    double nesterov = c->nesterov, step = 0;
    if ((st = meta_number(ctx, m, "momentum", &c->momentum)) != BP_OK ||
        (st = meta_number(ctx, m, "nesterov", &nesterov)) != BP_OK ||
        (st = meta_number(ctx, m, "weight_decay", &c->weight_decay)) != BP_OK ||
        (st = meta_number(ctx, m, "beta1", &c->beta1)) != BP_OK ||
        (st = meta_number(ctx, m, "beta2", &c->beta2)) != BP_OK ||
        (st = meta_number(ctx, m, "eps", &c->eps)) != BP_OK ||
        (st = meta_number(ctx, m, "eta_minus", &c->eta_minus)) != BP_OK ||
        (st = meta_number(ctx, m, "eta_plus", &c->eta_plus)) != BP_OK ||
        (st = meta_number(ctx, m, "step_min", &c->step_min)) != BP_OK ||
        (st = meta_number(ctx, m, "step_max", &c->step_max)) != BP_OK ||
        (st = meta_number(ctx, m, "step", &step)) != BP_OK)
      return st;
    if (!(step >= 0 && step <= ST_MAX_INT && step == floor(step)))
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: metadata optimizer.step is not a non-negative integer",
                      m->name, key_offset(m, "optimizer.step", 0));
    if (nesterov != 0 && nesterov != 1)
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: metadata optimizer.nesterov is not 0 or 1",
                      m->name, key_offset(m, "optimizer.nesterov", 0));
    c->nesterov = (int)nesterov;
    m->opt_step = (int64_t)step;
  }
  return BP_OK;
}

/* The optimizer state tensors: every slot 0 .. n_opt_slots-1 complete, each
 * tensor in the shape of the parameter it belongs to. */
static bp_status parse_opt_tensors(bp_context *ctx, st_model *m) {
  for (int sl = 0; sl < m->n_opt_slots; ++sl) {
    m->opt_weight[sl] = calloc((size_t)m->n_layers, sizeof(st_tensor));
    m->opt_bias[sl] = calloc((size_t)m->n_layers, sizeof(st_tensor));
    if (!m->opt_weight[sl] || !m->opt_bias[sl])
      return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", m->name);
  }
  for (const cJSON *c = m->root->child; c; c = c->next) {
    int layer, is_bias, slot;
    if (!parse_opt_key(c->string, m->opt.kind, m->has_opt, &slot, &layer, &is_bias)) continue;
    if (layer >= m->n_layers)
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: tensor \"%s\": the network has only %d weight layers",
                      m->name, key_offset(m, c->string, 0), c->string, m->n_layers);
    st_tensor *t = is_bias ? &m->opt_bias[slot][layer] : &m->opt_weight[slot][layer];
    bp_status st = parse_tensor(ctx, m, c, t);
    if (st != BP_OK) return st;
    const st_tensor *p = is_bias ? &m->bias[layer] : &m->weight[layer];
    if (t->rank != p->rank || t->shape[0] != p->shape[0] ||
        (p->rank == 2 && t->shape[1] != p->shape[1]))
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: tensor \"%s\" does not have the shape of \"%s\"", m->name,
                      key_offset(m, c->string, 0), c->string, p->key);
  }
  for (int sl = 0; sl < m->n_opt_slots; ++sl) {
    for (int i = 0; i < m->n_layers; ++i) {
      for (int b = 0; b < 2; ++b) {
        if ((b ? m->opt_bias[sl] : m->opt_weight[sl])[i].present) continue;
        return bp_error(ctx, BP_ERR_FORMAT,
                        "%s: byte 8: optimizer state tensor \"optimizer.%s.layers.%d.%s\" is "
                        "missing",
                        m->name, bp_optimizer_state_slot_name(m->opt.kind, sl), i,
                        b ? "bias" : "weight");
      }
    }
  }
  return BP_OK;
}

/* Validates the header against a data buffer of data_len bytes. On success
 * m describes a consistent network; the caller frees it with st_model_free. */
static bp_status parse_header(bp_context *ctx, const char *name, const unsigned char *hdr,
                              size_t hdr_len, uint64_t data_len, st_model *m) {
  memset(m, 0, sizeof *m);
  m->name = name;
  m->header = hdr;
  m->header_len = hdr_len;
  m->data_len = data_len;

  if (hdr_len < 2 || hdr[0] != '{')
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: header does not start with '{'", name);
  /* cJSON treats every byte <= 0x20 as whitespace and stops keys at NUL:
   * control bytes would let one header mean different things to us and to
   * other readers. */
  for (size_t i = 0; i < hdr_len; ++i) {
    unsigned char c = hdr[i];
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: control byte 0x%02x in the header", name,
                      8 + i, c);
  }
  size_t valid = utf8_valid_prefix(hdr, hdr_len);
  if (valid != hdr_len)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: header is not valid UTF-8", name, 8 + valid);

  const char *end = NULL;
  pthread_mutex_lock(&cjson_parse_lock);
  m->root = cJSON_ParseWithLengthOpts((const char *)hdr, hdr_len, &end, 0);
  pthread_mutex_unlock(&cjson_parse_lock);
  if (!m->root) {
    size_t pos = end && end >= (const char *)hdr ? (size_t)(end - (const char *)hdr) : 0;
    if (pos > hdr_len) pos = hdr_len;
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: header is not valid JSON", name, 8 + pos);
  }
  for (size_t i = (size_t)(end - (const char *)hdr); i < hdr_len; ++i) {
    if (hdr[i] != ' ' && hdr[i] != '\t' && hdr[i] != '\n' && hdr[i] != '\r')
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: data after the header JSON", name, 8 + i);
  }
  if (!cJSON_IsObject(m->root))
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: header is not a JSON object", name);
  bp_status st = check_unique_keys(ctx, m, m->root, "the header");
  if (st != BP_OK) return st;

  /* First pass: classify the keys and find the number of layers. A layer
   * index can be at most (number of tensors)/2 - 1 in a complete file, which
   * bounds the arrays below by the header's own size. */
  size_t n_tensors = 0;
  int max_layer = -1;
  const cJSON *meta_item = cJSON_GetObjectItemCaseSensitive(m->root, "__metadata__");
  if (meta_item && (st = check_metadata(ctx, m, meta_item)) != BP_OK) return st;
  /* The optimizer named in the metadata says which state tensors may follow. */
  const cJSON *opt_name = m->meta ? cJSON_GetObjectItemCaseSensitive(m->meta, "optimizer") : NULL;
  if (opt_name) {
    bp_optimizer kind;
    if (bp_optimizer_parse(opt_name->valuestring, &kind) != BP_OK)
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: unknown optimizer \"%s\" (known: sgd, adam, adamw, rprop)",
                      name, key_offset(m, "optimizer", 0), opt_name->valuestring);
    m->has_opt = 1;
    bp_optimizer_config_init(&m->opt, kind);
  }
  for (const cJSON *c = m->root->child; c; c = c->next) {
    int layer, is_bias, slot;
    if (strcmp(c->string, "__metadata__") == 0) {
      continue;
    } else if (parse_layer_key(c->string, &layer, &is_bias)) {
      ++n_tensors;
      if (layer > max_layer) max_layer = layer;
    } else if (parse_opt_key(c->string, m->opt.kind, m->has_opt, &slot, &layer, &is_bias)) {
      if (!m->has_opt)
        return bp_error(ctx, BP_ERR_FORMAT,
                        "%s: byte %zu: optimizer state tensor \"%s\" but no \"optimizer\" in "
                        "the metadata",
                        name, key_offset(m, c->string, 0), c->string);
      if (slot < 0)
        return bp_error(ctx, BP_ERR_FORMAT,
                        "%s: byte %zu: tensor \"%s\" is not a state tensor of optimizer %s "
                        "(optimizer.<slot>.layers.<i>.weight|bias)",
                        name, key_offset(m, c->string, 0), c->string,
                        bp_optimizer_name(m->opt.kind));
      if (slot + 1 > m->n_opt_slots) m->n_opt_slots = slot + 1;
    } else {
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: unknown key \"%s\" (expected layers.<i>.weight, "
                      "layers.<i>.bias, optimizer.<slot>.layers.<i>.weight|bias or __metadata__)",
                      name, key_offset(m, c->string, 0), c->string);
    }
  }
  if (n_tensors == 0)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: the header lists no tensors", name);
  if ((size_t)max_layer + 1 > n_tensors / 2 || n_tensors % 2 != 0) {
    /* Some layer lacks its weight or bias, or the numbering has a hole: find
     * which, for the message. */
    for (int i = 0; i <= max_layer; ++i) {
      for (int b = 0; b < 2; ++b) {
        char k[40];
        snprintf(k, sizeof k, "layers.%d.%s", i, b ? "bias" : "weight");
        if (!cJSON_GetObjectItemCaseSensitive(m->root, k))
          return bp_error(ctx, BP_ERR_FORMAT,
                          "%s: byte 8: tensor \"%s\" is missing (layers must be numbered 0..%d "
                          "with a weight and a bias each)",
                          name, k, max_layer);
      }
    }
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte 8: inconsistent layer numbering", name);
  }
  m->n_layers = max_layer + 1;
  m->weight = calloc((size_t)m->n_layers, sizeof *m->weight);
  m->bias = calloc((size_t)m->n_layers, sizeof *m->bias);
  m->sizes = calloc((size_t)m->n_layers + 1, sizeof *m->sizes);
  if (!m->weight || !m->bias || !m->sizes)
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", name);

  for (const cJSON *c = m->root->child; c; c = c->next) {
    int layer, is_bias;
    if (!parse_layer_key(c->string, &layer, &is_bias)) continue;
    st = parse_tensor(ctx, m, c, is_bias ? &m->bias[layer] : &m->weight[layer]);
    if (st != BP_OK) return st;
  }

  /* Shapes: weight i is [s[i+1], s[i]], bias i is [s[i+1]]. */
  for (int i = 0; i < m->n_layers; ++i) {
    const st_tensor *w = &m->weight[i], *b = &m->bias[i];
    if (w->rank != 2)
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\" has rank %d, expected 2",
                      name, key_offset(m, w->key, 0), w->key, w->rank);
    if (b->rank != 1)
      return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\" has rank %d, expected 1",
                      name, key_offset(m, b->key, 0), b->key, b->rank);
    if (i == 0) {
      if (w->shape[1] < 1 || w->shape[1] > BP_MAX_DIM)
        return bp_error(ctx, BP_ERR_FORMAT,
                        "%s: byte %zu: tensor \"%s\": input width %llu out of "
                        "range 1..%d",
                        name, key_offset(m, w->key, 0), w->key, (unsigned long long)w->shape[1],
                        BP_MAX_DIM);
      m->sizes[0] = (int)w->shape[1];
    } else if (w->shape[1] != (uint64_t)m->sizes[i]) {
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: tensor \"%s\" has shape [%llu, %llu] but layer %d outputs %d",
                      name, key_offset(m, w->key, 0), w->key, (unsigned long long)w->shape[0],
                      (unsigned long long)w->shape[1], i - 1, m->sizes[i]);
    }
    if (w->shape[0] < 1 || w->shape[0] > BP_MAX_DIM)
      return bp_error(
          ctx, BP_ERR_FORMAT, "%s: byte %zu: tensor \"%s\": output width %llu out of range 1..%d",
          name, key_offset(m, w->key, 0), w->key, (unsigned long long)w->shape[0], BP_MAX_DIM);
    m->sizes[i + 1] = (int)w->shape[0];
    if (b->shape[0] != w->shape[0])
      return bp_error(ctx, BP_ERR_FORMAT,
                      "%s: byte %zu: tensor \"%s\" has shape [%llu] but \"%s\" has %llu rows", name,
                      key_offset(m, b->key, 0), b->key, (unsigned long long)b->shape[0], w->key,
                      (unsigned long long)w->shape[0]);
  }
  st = parse_opt_tensors(ctx, m);
  if (st != BP_OK) return st;
  st = check_coverage(ctx, m);
  if (st != BP_OK) return st;
  /* Every tensor is inside data_len bytes, without overlap: the sum fits. */
  m->n_params = 0;
  for (int i = 0; i < m->n_layers; ++i)
    m->n_params += (size_t)m->sizes[i + 1] * ((size_t)m->sizes[i] + 1);
  return check_metadata_semantics(ctx, m);
}

/* A header length over the cap is most likely another kind of file (a CSV,
 * an IDX file) given as a model: the message says so rather than only
 * quoting an absurd length. */
static bp_status not_a_model(bp_context *ctx, const char *name, uint64_t n, uint64_t after) {
  if (n > ST_MAX_HEADER)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: not a model file (a safetensors file starts with the 8-byte "
                    "length of its JSON header; these bytes give a header length of %llu, over "
                    "the limit of 100000000)",
                    name, (unsigned long long)n);
  return bp_error(ctx, BP_ERR_FORMAT, "%s: byte 0: header length %llu exceeds the %llu bytes after it",
                  name, (unsigned long long)n, (unsigned long long)after);
}

/* Splits a whole file in memory into header and data and validates it. */
static bp_status parse_buffer(bp_context *ctx, const char *name, const unsigned char *p, size_t len,
                              st_model *m) {
  memset(m, 0, sizeof *m);
  if (len < 8)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: file is %zu bytes, shorter than the 8-byte "
                    "header length",
                    name, len);
  uint64_t n = le64(p);
  if (n > ST_MAX_HEADER || n > len - 8) return not_a_model(ctx, name, n, len - 8);
  return parse_header(ctx, name, p + 8, (size_t)n, (uint64_t)(len - 8 - (size_t)n), m);
}

/* Decodes the tensors weight[i], bias[i] into params (layer i's W then b, in
 * layer order: the parameters' layout), rejecting non-finite values. */
static bp_status decode_tensors(bp_context *ctx, const st_model *m, const unsigned char *data,
                                const st_tensor *weight, const st_tensor *bias, float *params) {
  size_t k = 0;
  for (int i = 0; i < m->n_layers; ++i) {
    for (int b = 0; b < 2; ++b) {
      const st_tensor *t = b ? &bias[i] : &weight[i];
      const unsigned char *p = data + t->begin;
      size_t count = (size_t)((t->end - t->begin) / 4);
      for (size_t j = 0; j < count; ++j, ++k) {
        float v = le_f32(p + 4 * j);
        if (!isfinite(v))
          return bp_error(ctx, BP_ERR_FORMAT,
                          "%s: byte %zu: tensor \"%s\" element %zu is not finite", m->name,
                          (size_t)(8 + m->header_len + t->begin + 4 * j), t->key, j);
        params[k] = v;
      }
    }
  }
  return BP_OK;
}

static bp_status decode_params(bp_context *ctx, const st_model *m, const unsigned char *data,
                               float *params) {
  return decode_tensors(ctx, m, data, m->weight, m->bias, params);
}

/* Gives net the file's optimizer, its hyperparameters, state and step. */
static bp_status restore_optimizer(bp_context *ctx, const st_model *m, const unsigned char *data,
                                   bp_network *net) {
  bp_status st = bp_network_set_optimizer(net, &m->opt);
  if (st != BP_OK)
    return bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: the optimizer metadata is not valid: %s",
                    m->name, key_offset(m, "optimizer", 0), bp_context_last_error(ctx));
  int slots = bp_network_optimizer_state_slots(net);
  if (slots != m->n_opt_slots)
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte %zu: optimizer %s as configured keeps %d state tensor%s per "
                    "parameter but the file has %d",
                    m->name, key_offset(m, "optimizer", 0), bp_optimizer_name(m->opt.kind), slots,
                    slots == 1 ? "" : "s", m->n_opt_slots);
  size_t count = (size_t)slots * m->n_params;
  float *state = malloc(count ? count * sizeof(float) : 1);
  if (!state) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", m->name);
  for (int sl = 0; st == BP_OK && sl < slots; ++sl)
    st = decode_tensors(ctx, m, data, m->opt_weight[sl], m->opt_bias[sl],
                        state + (size_t)sl * m->n_params);
  if (st == BP_OK) st = bp_network_set_optimizer_state(net, state, count, m->opt_step);
  free(state);
  return st;
}

static size_t layer_weights(const st_model *m, int i) {
  return (size_t)m->sizes[i] * (size_t)m->sizes[i + 1];
}

bp_status bp_network_load_buffer(bp_context *ctx, const void *data, size_t len, const char *name,
                                 bp_network **out) {
  if (out) *out = NULL;
  if (!ctx || !out || (!data && len))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_load_buffer: NULL argument");
  if (!name) name = "<buffer>";
  st_model m;
  bp_status st = parse_buffer(ctx, name, data, len, &m);
  float *params = NULL;
  bp_network *net = NULL;
  if (st == BP_OK) {
    params = malloc(m.n_params ? m.n_params * sizeof(float) : 1);
    if (!params) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  }
  const unsigned char *tensor_data = (const unsigned char *)data + 8 + m.header_len;
  if (st == BP_OK) st = decode_params(ctx, &m, tensor_data, params);
  if (st == BP_OK) {
    bp_network_desc desc;
    bp_network_desc_init(&desc, m.n_layers + 1, m.sizes, 0);
    desc.activations = m.acts;
    desc.cost = m.cost;
    st = bp_network_create_ex(ctx, &desc, &net);
  }
  size_t k = 0;
  for (int i = 0; st == BP_OK && i < m.n_layers; ++i) {
    size_t nw = layer_weights(&m, i);
    st = bp_network_set_layer(net, i, params + k, params + k + nw);
    k += nw + (size_t)m.sizes[i + 1];
  }
  if (st == BP_OK && m.has_opt) st = restore_optimizer(ctx, &m, tensor_data, net);
  free(params);
  st_model_free(&m);
  if (st != BP_OK) {
    bp_network_destroy(net);
    return st;
  }
  *out = net;
  return BP_OK;
}

/* Model files have no size limit of their own: the header cap bounds the
 * parsing work, and the data must be there to be loaded anyway. */
static bp_status read_model_file(bp_context *ctx, const char *path, unsigned char **data,
                                 size_t *len) {
  return bp_io_read_file(ctx, path, SIZE_MAX - 1, data, len);
}

bp_status bp_network_load(bp_context *ctx, const char *path, bp_network **out) {
  if (out) *out = NULL;
  if (!ctx || !path || !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_load: NULL argument");
  unsigned char *data = NULL;
  size_t len = 0;
  bp_status st = read_model_file(ctx, path, &data, &len);
  if (st != BP_OK) return st;
  st = bp_network_load_buffer(ctx, data, len, path, out);
  free(data);
  return st;
}

bp_status bp_network_load_weights(bp_network *net, const char *path) {
  bp_context *ctx = bp_network_context(net);
  if (!net || !path)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_load_weights: NULL argument");
  unsigned char *data = NULL;
  size_t len = 0;
  bp_status st = read_model_file(ctx, path, &data, &len);
  if (st != BP_OK) return st;
  st_model m;
  st = parse_buffer(ctx, path, data, len, &m);
  int L = bp_network_n_layers(net);
  if (st == BP_OK) {
    int same = m.n_layers == L;
    for (int i = 0; same && i <= L; ++i) same = bp_network_size(net, i) == m.sizes[i];
    if (!same) {
      char want[96] = "", got[96] = "";
      size_t wl = 0, gl = 0;
      for (int i = 0; i <= L && wl < sizeof want - 12; ++i)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, i ? ",%d" : "%d",
                               bp_network_size(net, i));
      for (int i = 0; i <= m.n_layers && gl < sizeof got - 12; ++i)
        gl += (size_t)snprintf(got + gl, sizeof got - gl, i ? ",%d" : "%d", m.sizes[i]);
      st = bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 8: the file holds a network of sizes %s, this network has %s; "
                    "nothing was loaded",
                    path, got, want);
    }
  }
  /* Keep the current weights until every new layer is in: a backend failure
   * half way through must not leave a mix of two models. */
  float *params = NULL, *backup = NULL;
  if (st == BP_OK) {
    params = malloc(m.n_params * sizeof(float));
    backup = malloc(m.n_params * sizeof(float));
    if (!params || !backup) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  if (st == BP_OK) st = decode_params(ctx, &m, data + 8 + m.header_len, params);
  size_t k = 0;
  for (int i = 0; st == BP_OK && i < L; ++i) {
    size_t nw = layer_weights(&m, i);
    st = bp_network_get_layer(net, i, backup + k, backup + k + nw);
    k += nw + (size_t)m.sizes[i + 1];
  }
  int done = 0;
  k = 0;
  for (int i = 0; st == BP_OK && i < L; ++i, ++done) {
    size_t nw = layer_weights(&m, i);
    st = bp_network_set_layer(net, i, params + k, params + k + nw);
    k += nw + (size_t)m.sizes[i + 1];
  }
  if (st != BP_OK && done > 0) {
    k = 0;
    for (int i = 0; i < done; ++i) {
      size_t nw = layer_weights(&m, i);
      (void)bp_network_set_layer(net, i, backup + k, backup + k + nw); /* best effort */
      k += nw + (size_t)m.sizes[i + 1];
    }
  }
  free(params);
  free(backup);
  free(data);
  st_model_free(&m);
  return st;
}

bp_status bp_model_info_read(bp_context *ctx, const char *path, bp_model_info **out) {
  if (out) *out = NULL;
  if (!ctx || !path || !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_model_info_read: NULL argument");
  /* Only the header is read: the data buffer's size is all the validation
   * of the offsets needs, and a model may be large. */
  FILE *f;
  uint64_t file_len;
  bp_status ost = bp_io_open_regular(ctx, path, UINT64_MAX, &f, &file_len);
  if (ost != BP_OK) return ost;
  unsigned char len8[8];
  if (file_len < 8 || fread(len8, 1, 8, f) != 8) {
    fclose(f);
    return bp_error(ctx, BP_ERR_FORMAT,
                    "%s: byte 0: file is %llu bytes, shorter than the 8-byte header length", path,
                    (unsigned long long)file_len);
  }
  uint64_t n = le64(len8);
  if (n > ST_MAX_HEADER || n > file_len - 8) {
    fclose(f);
    return not_a_model(ctx, path, n, file_len - 8);
  }
  unsigned char *hdr = malloc(n ? (size_t)n : 1);
  if (!hdr) {
    fclose(f);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  size_t got = fread(hdr, 1, (size_t)n, f);
  fclose(f);
  if (got != n) {
    free(hdr);
    return bp_error(ctx, BP_ERR_IO, "%s: read failed (file changed while being read?)", path);
  }
  st_model m;
  bp_status st = parse_header(ctx, path, hdr, (size_t)n, file_len - 8 - n, &m);
  bp_model_info *info = NULL;
  if (st == BP_OK) {
    info = calloc(1, sizeof *info);
    int n_meta = m.meta ? cJSON_GetArraySize(m.meta) : 0;
    if (info) {
      info->n_sizes = m.n_layers + 1;
      info->n_params = m.n_params;
      info->sizes = malloc((size_t)info->n_sizes * sizeof(int));
      info->meta_keys = calloc((size_t)n_meta + 1, sizeof(char *));
      info->meta_values = calloc((size_t)n_meta + 1, sizeof(char *));
    }
    if (!info || !info->sizes || !info->meta_keys || !info->meta_values) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    } else {
      memcpy(info->sizes, m.sizes, (size_t)info->n_sizes * sizeof(int));
      for (const cJSON *c = m.meta ? m.meta->child : NULL; c; c = c->next) {
        char *k = dup_string(c->string), *v = dup_string(c->valuestring);
        info->meta_keys[info->n_meta] = k;
        info->meta_values[info->n_meta] = v;
        if (!k || !v) {
          free(k);
          free(v);
          info->meta_keys[info->n_meta] = info->meta_values[info->n_meta] = NULL;
          st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
          break;
        }
        ++info->n_meta;
      }
    }
  }
  st_model_free(&m);
  free(hdr);
  if (st != BP_OK) {
    bp_model_info_free(info);
    return st;
  }
  *out = info;
  return BP_OK;
}

void bp_model_info_free(bp_model_info *info) {
  if (!info) return;
  for (int i = 0; i < info->n_meta; ++i) {
    free(info->meta_keys[i]);
    free(info->meta_values[i]);
  }
  free(info->meta_keys);
  free(info->meta_values);
  free(info->sizes);
  free(info);
}

/* ---- Writer -------------------------------------------------------------- */

static bp_status add_tensor(cJSON *root, const char *key, int rank, const int *shape, size_t begin,
                            size_t end) {
  cJSON *t = cJSON_CreateObject();
  if (!t || !cJSON_AddItemToObject(root, key, t)) {
    cJSON_Delete(t);
    return BP_ERR_OUT_OF_MEMORY;
  }
  cJSON *sh = cJSON_CreateArray();
  cJSON *off = cJSON_CreateArray();
  if (!cJSON_AddStringToObject(t, "dtype", "F32") || !sh ||
      !cJSON_AddItemToObject(t, "shape", sh)) {
    cJSON_Delete(sh);
    cJSON_Delete(off);
    return BP_ERR_OUT_OF_MEMORY;
  }
  if (!off || !cJSON_AddItemToObject(t, "data_offsets", off)) {
    cJSON_Delete(off);
    return BP_ERR_OUT_OF_MEMORY;
  }
  for (int i = 0; i < rank; ++i) {
    cJSON *d = cJSON_CreateNumber((double)shape[i]);
    if (!d || !cJSON_AddItemToArray(sh, d)) {
      cJSON_Delete(d);
      return BP_ERR_OUT_OF_MEMORY;
    }
  }
  /* Offsets are exact in a double: they are bounded by a buffer in memory,
   * far below 2^53. */
  cJSON *b = cJSON_CreateNumber((double)begin), *e = cJSON_CreateNumber((double)end);
  if (!b || !cJSON_AddItemToArray(off, b)) {
    cJSON_Delete(b);
    cJSON_Delete(e);
    return BP_ERR_OUT_OF_MEMORY;
  }
  if (!e || !cJSON_AddItemToArray(off, e)) {
    cJSON_Delete(e);
    return BP_ERR_OUT_OF_MEMORY;
  }
  return BP_OK;
}

static bp_status check_meta_args(bp_context *ctx, const char *path, int n_meta,
                                 const char *const *keys, const char *const *values) {
  if (n_meta < 0 || (n_meta > 0 && (!keys || !values)))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: invalid metadata arguments", path);
  for (int i = 0; i < n_meta; ++i) {
    if (!keys[i] || !values[i])
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: metadata entry %d is NULL", path, i);
    /* The JSON header must be UTF-8 for every reader, and a second "sizes"
     * or a repeated key would make the file ambiguous (the parser rejects it). */
    if (utf8_valid_prefix((const unsigned char *)keys[i], strlen(keys[i])) != strlen(keys[i]) ||
        utf8_valid_prefix((const unsigned char *)values[i], strlen(values[i])) != strlen(values[i]))
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: metadata entry %d is not valid UTF-8",
                      path, i);
    for (size_t r = 0; r < sizeof reserved_meta / sizeof *reserved_meta; ++r) {
      if (strcmp(keys[i], reserved_meta[r]) == 0 || strncmp(keys[i], "optimizer.", 10) == 0)
        return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                        "%s: metadata key \"%s\" is reserved (written by the library)", path,
                        keys[i]);
    }
    for (int j = 0; j < i; ++j) {
      if (strcmp(keys[i], keys[j]) == 0)
        return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" is repeated", path,
                        keys[i]);
    }
  }
  return BP_OK;
}

/* Builds the whole file in memory: header JSON, padding, little-endian data. */
/* "sigmoid" when every layer has the same activation (as the seed wrote),
 * else one name per layer: "relu,relu,softmax". malloc'd; NULL when out of
 * memory. */
static char *activation_string(const bp_network *net) {
  int L = bp_network_n_layers(net), same = 1;
  for (int i = 1; i < L; ++i)
    same = same && bp_network_get_activation(net, i) == bp_network_get_activation(net, 0);
  size_t cap = (size_t)L * 12 + 1, len = 0;
  char *s = malloc(cap);
  if (!s) return NULL;
  s[0] = '\0';
  for (int i = 0; i < (same ? 1 : L); ++i)
    len += (size_t)snprintf(s + len, cap - len, i ? ",%s" : "%s",
                            bp_activation_name(bp_network_get_activation(net, i)));
  return s;
}

/* The optimizer's metadata: its name, step count and the hyperparameters of
 * its kind, printed so that they read back exactly (%.17g). */
static int add_optimizer_meta(cJSON *meta, const bp_optimizer_config *c, int64_t step) {
  char v[40];
  int ok = cJSON_AddStringToObject(meta, "optimizer", bp_optimizer_name(c->kind)) != NULL;
  snprintf(v, sizeof v, "%lld", (long long)step);
  ok = ok && cJSON_AddStringToObject(meta, "optimizer.step", v);
  struct {
    const char *key;
    double value;
    int used;
  } f[] = {
      {"optimizer.momentum", c->momentum, c->kind == BP_OPTIMIZER_SGD},
      {"optimizer.nesterov", c->nesterov, c->kind == BP_OPTIMIZER_SGD},
      {"optimizer.weight_decay", c->weight_decay, c->kind != BP_OPTIMIZER_RPROP},
      {"optimizer.beta1", c->beta1, c->kind == BP_OPTIMIZER_ADAM || c->kind == BP_OPTIMIZER_ADAMW},
      {"optimizer.beta2", c->beta2, c->kind == BP_OPTIMIZER_ADAM || c->kind == BP_OPTIMIZER_ADAMW},
      {"optimizer.eps", c->eps, c->kind == BP_OPTIMIZER_ADAM || c->kind == BP_OPTIMIZER_ADAMW},
      {"optimizer.eta_minus", c->eta_minus, c->kind == BP_OPTIMIZER_RPROP},
      {"optimizer.eta_plus", c->eta_plus, c->kind == BP_OPTIMIZER_RPROP},
      {"optimizer.step_min", c->step_min, c->kind == BP_OPTIMIZER_RPROP},
      {"optimizer.step_max", c->step_max, c->kind == BP_OPTIMIZER_RPROP},
  };
  for (size_t i = 0; ok && i < sizeof f / sizeof *f; ++i) {
    if (!f[i].used) continue;
    snprintf(v, sizeof v, "%.17g", f[i].value);
    ok = cJSON_AddStringToObject(meta, f[i].key, v) != NULL;
  }
  return ok;
}

static bp_status build_file(bp_context *ctx, const bp_network *net, const char *path, int n_meta,
                            const char *const *keys, const char *const *values, int with_state,
                            unsigned char **out, size_t *out_len) {
  int L = bp_network_n_layers(net);
  bp_status st = BP_OK;
  cJSON *root = cJSON_CreateObject();
  char *json = NULL;
  float *tmp = NULL, *state = NULL;
  unsigned char *buf = NULL;
  if (!root) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  bp_optimizer_config opt;
  opt.struct_size = sizeof opt;
  int slots = 0;
  int64_t step = 0;
  size_t n_params = bp_network_parameter_count(net);
  if (with_state) {
    st = bp_network_get_optimizer(net, &opt);
    slots = bp_network_optimizer_state_slots(net);
    if (st == BP_OK && slots > 0) {
      state = malloc((size_t)slots * n_params * sizeof(float));
      if (!state) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    if (st == BP_OK)
      st = bp_network_get_optimizer_state(net, state, (size_t)slots * n_params, &step);
    if (st != BP_OK) {
      cJSON_Delete(root);
      free(state);
      return st;
    }
  }

  size_t pos = 0, max_layer = 0;
  for (int i = 0; i < L && st == BP_OK; ++i) {
    int in = bp_network_size(net, i), outw = bp_network_size(net, i + 1);
    size_t nw = (size_t)in * (size_t)outw; /* widths <= 2^28: fits in 64 bits */
    if (nw > (SIZE_MAX - pos) / 4 || (size_t)outw > (SIZE_MAX - pos - 4 * nw) / 4) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: model too large to save", path);
      break;
    }
    if (nw + (size_t)outw > max_layer) max_layer = nw + (size_t)outw;
    char key[40];
    int wshape[2] = {outw, in};
    snprintf(key, sizeof key, "layers.%d.weight", i);
    int ok = add_tensor(root, key, 2, wshape, pos, pos + 4 * nw) == BP_OK;
    pos += 4 * nw;
    snprintf(key, sizeof key, "layers.%d.bias", i);
    ok = ok && add_tensor(root, key, 1, &outw, pos, pos + 4 * (size_t)outw) == BP_OK;
    pos += 4 * (size_t)outw;
    if (!ok) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  /* The optimizer state after the parameters, slot by slot, each in the
   * parameters' layout: optimizer.<slot>.layers.<i>.weight / .bias. */
  for (int sl = 0; sl < slots && st == BP_OK; ++sl) {
    const char *sn = bp_optimizer_state_slot_name(opt.kind, sl);
    if ((size_t)4 * n_params > SIZE_MAX - pos) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: model too large to save", path);
      break;
    }
    for (int i = 0; i < L && st == BP_OK; ++i) {
      int in = bp_network_size(net, i), outw = bp_network_size(net, i + 1);
      size_t nw = (size_t)in * (size_t)outw;
      char key[80];
      int wshape[2] = {outw, in};
      snprintf(key, sizeof key, "optimizer.%s.layers.%d.weight", sn, i);
      int ok = add_tensor(root, key, 2, wshape, pos, pos + 4 * nw) == BP_OK;
      pos += 4 * nw;
      snprintf(key, sizeof key, "optimizer.%s.layers.%d.bias", sn, i);
      ok = ok && add_tensor(root, key, 1, &outw, pos, pos + 4 * (size_t)outw) == BP_OK;
      pos += 4 * (size_t)outw;
      if (!ok) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
  }
  /* "784,100,10": at most 10 characters per width. */
  char *sizes_str = NULL;
  if (st == BP_OK) {
    size_t cap = ((size_t)L + 1) * 11 + 1, sl = 0;
    sizes_str = malloc(cap);
    if (!sizes_str) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    } else {
      for (int i = 0; i <= L; ++i)
        sl += (size_t)snprintf(sizes_str + sl, cap - sl, i ? ",%d" : "%d", bp_network_size(net, i));
    }
  }
  char *act_str = st == BP_OK ? activation_string(net) : NULL;
  if (st == BP_OK) {
    cJSON *meta = cJSON_CreateObject();
    int ok = act_str && meta && cJSON_AddItemToObject(root, "__metadata__", meta);
    if (!ok) cJSON_Delete(meta);
    ok = ok && cJSON_AddStringToObject(meta, "format", "backprop");
    ok = ok && cJSON_AddStringToObject(meta, "backprop_version", bp_version_string());
    ok = ok && cJSON_AddStringToObject(meta, "activation", act_str);
    ok = ok && cJSON_AddStringToObject(meta, "cost", bp_cost_name(bp_network_get_cost(net)));
    ok = ok && cJSON_AddStringToObject(meta, "sizes", sizes_str);
    if (with_state) ok = ok && add_optimizer_meta(meta, &opt, step);
    for (int i = 0; ok && i < n_meta; ++i)
      ok = cJSON_AddStringToObject(meta, keys[i], values[i]) != NULL;
    if (!ok) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  free(act_str);
  free(sizes_str);
  if (st == BP_OK) {
    json = cJSON_PrintUnformatted(root);
    if (!json) st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  size_t hl = 0, total = 0;
  if (st == BP_OK) {
    size_t jl = strlen(json);
    hl = (jl + 7) / 8 * 8; /* so the data starts 8-byte aligned */
    if (pos > SIZE_MAX - 8 - hl) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: model too large to save", path);
    } else {
      total = 8 + hl + pos;
      buf = malloc(total);
      tmp = malloc(max_layer * sizeof(float));
      if (!buf || !tmp) {
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", path, total);
      } else {
        for (int i = 0; i < 8; ++i) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
        memcpy(buf + 8, json, jl);
        memset(buf + 8 + jl, ' ', hl - jl);
      }
    }
  }
  unsigned char *p = buf + 8 + hl;
  for (int i = 0; i < L && st == BP_OK; ++i) {
    size_t outw = (size_t)bp_network_size(net, i + 1);
    size_t n = (size_t)bp_network_size(net, i) * outw + outw;
    st = bp_network_get_layer(net, i, tmp, tmp + (n - outw));
    for (size_t j = 0; st == BP_OK && j < n; ++j, p += 4) put_le_f32(p, tmp[j]);
  }
  for (size_t j = 0; st == BP_OK && j < (size_t)slots * n_params; ++j, p += 4)
    put_le_f32(p, state[j]);
  cJSON_free(json);
  cJSON_Delete(root);
  free(tmp);
  free(state);
  if (st != BP_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  *out_len = total;
  return BP_OK;
}

static bp_status save(const bp_network *net, const char *path, int n_meta,
                      const char *const *meta_keys, const char *const *meta_values,
                      int with_state) {
  bp_context *ctx = bp_network_context(net);
  if (!net || !path)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_save: NULL argument");
  bp_status st = check_meta_args(ctx, path, n_meta, meta_keys, meta_values);
  if (st != BP_OK) return st;
  unsigned char *buf = NULL;
  size_t len = 0;
  st = build_file(ctx, net, path, n_meta, meta_keys, meta_values, with_state, &buf, &len);
  if (st != BP_OK) return st;
  st = bp_io_atomic_write(ctx, path, buf, len);
  free(buf);
  return st;
}

bp_status bp_network_save_ex(const bp_network *net, const char *path, int n_meta,
                             const char *const *meta_keys, const char *const *meta_values) {
  return save(net, path, n_meta, meta_keys, meta_values, 0);
}

bp_status bp_network_save_with_state(const bp_network *net, const char *path, int n_meta,
                                     const char *const *meta_keys,
                                     const char *const *meta_values) {
  return save(net, path, n_meta, meta_keys, meta_values, 1);
}

bp_status bp_network_save(const bp_network *net, const char *path) {
  return bp_network_save_ex(net, path, 0, NULL, NULL);
}
