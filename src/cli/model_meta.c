/* model_meta.c - the command's own model metadata (see model_meta.h). */
#include "model_meta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_scaling_free(cli_scaling *s) {
  free(s->mean);
  free(s->std);
  s->mean = s->std = NULL;
  s->n = 0;
}

int cli_scaling_fit(const bp_data *d, cli_scaling *s) {
  s->n = d->n_in;
  s->mean = calloc((size_t)d->n_in, sizeof(float));
  s->std = calloc((size_t)d->n_in, sizeof(float));
  double *sum = calloc((size_t)d->n_in, sizeof(double));
  double *sq = calloc((size_t)d->n_in, sizeof(double));
  if (!s->mean || !s->std || !sum || !sq) {
    free(sum);
    free(sq);
    cli_scaling_free(s);
    return -1;
  }
  for (int i = 0; i < d->n; ++i) {
    const float *x = d->X + (size_t)i * (size_t)d->n_in;
    for (int k = 0; k < d->n_in; ++k) sum[k] += x[k];
  }
  for (int k = 0; k < d->n_in; ++k) sum[k] /= d->n > 0 ? d->n : 1;
  for (int i = 0; i < d->n; ++i) {
    const float *x = d->X + (size_t)i * (size_t)d->n_in;
    for (int k = 0; k < d->n_in; ++k) sq[k] += (x[k] - sum[k]) * (x[k] - sum[k]);
  }
  for (int k = 0; k < d->n_in; ++k) {
    double sd = d->n > 0 ? sqrt(sq[k] / d->n) : 0;
    s->mean[k] = (float)sum[k];
    s->std[k] = sd > 1e-6 ? (float)sd : 1.0f;
  }
  free(sum);
  free(sq);
  return 0;
}

void cli_scaling_apply(const cli_scaling *s, bp_data *d) {
  if (s->n == 0 || s->n != d->n_in) return;
  for (int i = 0; i < d->n; ++i) {
    float *x = d->X + (size_t)i * (size_t)d->n_in;
    for (int k = 0; k < d->n_in; ++k) x[k] = (x[k] - s->mean[k]) / s->std[k];
  }
}

static char *format_list(const float *v, int n) {
  size_t cap = (size_t)n * 18 + 1, len = 0;
  char *s = malloc(cap);
  if (!s) return NULL;
  s[0] = '\0';
  for (int k = 0; k < n; ++k)
    len += (size_t)snprintf(s + len, cap - len, k ? ",%.9g" : "%.9g", (double)v[k]);
  return s;
}

int cli_scaling_format(const cli_scaling *s, char **mean, char **std) {
  *mean = format_list(s->mean, s->n);
  *std = format_list(s->std, s->n);
  if (*mean && *std) return 0;
  free(*mean);
  free(*std);
  *mean = *std = NULL;
  return -1;
}

const char *cli_model_meta(const bp_model_info *info, const char *key) {
  for (int i = 0; info && i < info->n_meta; ++i)
    if (strcmp(info->meta_keys[i], key) == 0) return info->meta_values[i];
  return NULL;
}

static int parse_list(const char *text, int n, float *out, int positive) {
  const char *p = text;
  for (int k = 0; k < n; ++k) {
    char *end = NULL;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || (positive && !(v > 0))) return -1;
    out[k] = (float)v;
    if (k + 1 < n && *end != ',') return -1;
    p = end + (k + 1 < n);
  }
  return *p == '\0' ? 0 : -1;
}

int cli_scaling_read(const char *cmd, const bp_model_info *info, const char *path, int n_in,
                     cli_scaling *s) {
  memset(s, 0, sizeof *s);
  const char *mean = cli_model_meta(info, "input_mean"), *std = cli_model_meta(info, "input_std");
  if (!mean && !std) return 0;
  s->mean = malloc(sizeof(float) * (size_t)n_in);
  s->std = malloc(sizeof(float) * (size_t)n_in);
  if (!s->mean || !s->std) {
    cli_scaling_free(s);
    return cli_fail(cmd, "out of memory");
  }
  if (!mean || !std || parse_list(mean, n_in, s->mean, 0) || parse_list(std, n_in, s->std, 1)) {
    cli_scaling_free(s);
    return cli_fail(cmd, "%s: metadata input_mean/input_std is not %d numbers each (positive "
                         "deviations)", path, n_in);
  }
  s->n = n_in;
  return 0;
}

int cli_model_scale_inputs(const char *cmd, bp_context *ctx, const char *model, bp_data *data) {
  bp_model_info *info = NULL;
  if (bp_model_info_read(ctx, model, &info) != BP_OK)
    return cli_fail(cmd, "cannot load the model: %s", bp_context_last_error(ctx));
  cli_scaling s;
  int code = cli_scaling_read(cmd, info, model, data->n_in, &s);
  if (!code) cli_scaling_apply(&s, data);
  cli_scaling_free(&s);
  bp_model_info_free(info);
  return code;
}
