/* optimizer.c - the model beyond the seed on the API side: names of
 * activations, costs and optimizers; optimizer configuration, validation and
 * state; learning-rate schedules. The updates themselves are the formulas of
 * kernels/elementwise.cuh, run by the backends' update primitive. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.cuh"
#include "internal.h"

/* ---- Names ---------------------------------------------------------------- */

static const char *const activation_names[] = {"sigmoid", "tanh", "relu", "identity", "softmax"};
static const char *const cost_names[] = {"quadratic", "cross-entropy"};
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", "rprop"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *bp_activation_name(bp_activation act) {
  return (int)act >= 0 && (int)act < COUNT(activation_names) ? activation_names[act] : "unknown";
}
const char *bp_cost_name(bp_cost cost) {
  return (int)cost >= 0 && (int)cost < COUNT(cost_names) ? cost_names[cost] : "unknown";
}
const char *bp_optimizer_name(bp_optimizer opt) {
  return (int)opt >= 0 && (int)opt < COUNT(optimizer_names) ? optimizer_names[opt] : "unknown";
}

static int find_name(const char *name, const char *const *names, int count) {
  if (!name) return -1;
  for (int i = 0; i < count; ++i)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

bp_status bp_activation_parse(const char *name, bp_activation *out) {
  const int i = find_name(name, activation_names, COUNT(activation_names));
  if (i < 0 || !out) return BP_ERR_INVALID_ARGUMENT;
  *out = (bp_activation)i;
  return BP_OK;
}

bp_status bp_cost_parse(const char *name, bp_cost *out) {
  int i = find_name(name, cost_names, COUNT(cost_names));
  if (i < 0 && name && strcmp(name, "cross_entropy") == 0) i = BP_COST_CROSS_ENTROPY;
  if (i < 0 || !out) return BP_ERR_INVALID_ARGUMENT;
  *out = (bp_cost)i;
  return BP_OK;
}

bp_status bp_optimizer_parse(const char *name, bp_optimizer *out) {
  const int i = find_name(name, optimizer_names, COUNT(optimizer_names));
  if (i < 0 || !out) return BP_ERR_INVALID_ARGUMENT;
  *out = (bp_optimizer)i;
  return BP_OK;
}

/* ---- Configuration ---------------------------------------------------------- */

void bp_optimizer_config_init(bp_optimizer_config *cfg, bp_optimizer kind) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->struct_size = (uint32_t)sizeof *cfg;
  cfg->version = BP_OPTIMIZER_CONFIG_VERSION;
  cfg->kind = kind;
  /* torch.optim's defaults. */
  cfg->momentum = 0.0;
  cfg->nesterov = 0;
  cfg->weight_decay = kind == BP_OPTIMIZER_ADAMW ? 1e-2 : 0.0;
  cfg->beta1 = 0.9;
  cfg->beta2 = 0.999;
  cfg->eps = 1e-8;
  cfg->eta_minus = 0.5;
  cfg->eta_plus = 1.2;
  cfg->step_min = 1e-6;
  cfg->step_max = 50.0;
}

static int finite_at_least(double x, double lo) { return isfinite(x) && x >= lo; }

bp_status bp_optimizer_config_check(bp_context *ctx, const bp_optimizer_config *c,
                                    const char *fn) {
  const char *bad = NULL;
  if ((int)c->kind < (int)BP_OPTIMIZER_SGD || (int)c->kind > (int)BP_OPTIMIZER_RPROP)
    bad = "kind (sgd = 0, adam = 1, adamw = 2, rprop = 3)";
  else if (!finite_at_least(c->momentum, 0.0))
    bad = "momentum (>= 0)";
  else if (c->nesterov && c->kind == BP_OPTIMIZER_SGD && !(c->momentum > 0.0))
    bad = "nesterov (needs momentum > 0)";
  else if (!finite_at_least(c->weight_decay, 0.0))
    bad = "weight_decay (>= 0)";
  else if (!finite_at_least(c->beta1, 0.0) || c->beta1 >= 1.0)
    bad = "beta1 (in [0, 1))";
  else if (!finite_at_least(c->beta2, 0.0) || c->beta2 >= 1.0)
    bad = "beta2 (in [0, 1))";
  else if (!(isfinite(c->eps) && c->eps > 0.0))
    bad = "eps (> 0)";
  else if (!(isfinite(c->eta_minus) && c->eta_minus > 0.0 && c->eta_minus < 1.0))
    bad = "eta_minus (in (0, 1))";
  else if (!(isfinite(c->eta_plus) && c->eta_plus > 1.0))
    bad = "eta_plus (> 1)";
  else if (!finite_at_least(c->step_min, 0.0) || !isfinite(c->step_max) ||
           c->step_max < c->step_min)
    bad = "step_min/step_max (0 <= step_min <= step_max)";
  if (bad)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: the optimizer's %s is out of range", fn,
                    bad);
  return BP_OK;
}

int bp_optimizer_slots(const bp_optimizer_config *cfg) {
  switch (cfg->kind) {
    case BP_OPTIMIZER_SGD: return cfg->momentum != 0.0 ? 1 : 0;
    case BP_OPTIMIZER_ADAM:
    case BP_OPTIMIZER_ADAMW:
    case BP_OPTIMIZER_RPROP: return 2;
  }
  return 0;
}

int bp_optimizer_is_plain_sgd(const bp_optimizer_config *cfg) {
  return cfg->kind == BP_OPTIMIZER_SGD && cfg->momentum == 0.0 && cfg->weight_decay == 0.0;
}

void bp_optimizer_hyper(const bp_optimizer_config *c, void *out) {
  bp_opt_hyper *h = out;
  memset(h, 0, sizeof *h);
  h->kind = (int)c->kind;
  h->nesterov = c->nesterov != 0;
  h->momentum = (float)c->momentum;
  h->weight_decay = (float)c->weight_decay;
  h->weight_decay_d = c->weight_decay;
  h->one_minus_beta1 = (float)(1.0 - c->beta1);
  h->beta2 = (float)c->beta2;
  h->one_minus_beta2 = (float)(1.0 - c->beta2);
  h->eps = (float)c->eps;
  h->beta1_d = c->beta1;
  h->beta2_d = c->beta2;
  h->eta_minus = (float)c->eta_minus;
  h->eta_plus = (float)c->eta_plus;
  h->step_min = (float)c->step_min;
  h->step_max = (float)c->step_max;
}

/* Version 1 is the whole struct today; a later version appends fields, and
 * an older caller's shorter struct then gets the defaults of the rest. */
static size_t config_size(const bp_optimizer_config *cfg) {
  return cfg->struct_size < sizeof(bp_optimizer_config) ? cfg->struct_size
                                                         : sizeof(bp_optimizer_config);
}

bp_status bp_network_set_optimizer(bp_network *net, const bp_optimizer_config *cfg) {
  static const char fn[] = "bp_network_set_optimizer";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!cfg) return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "%s: cfg is NULL", fn);
  if (cfg->version < 1 || cfg->struct_size < sizeof(bp_optimizer_config))
    /* Version 1 is the first: every valid struct_size covers it all today. */
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: cfg version %u (size %u) is not valid; initialize it with "
                    "bp_optimizer_config_init",
                    fn, cfg->version, cfg->struct_size);
  bp_optimizer_config c;
  bp_optimizer_config_init(&c, cfg->kind);
  memcpy(&c, cfg, config_size(cfg));
  c.struct_size = (uint32_t)sizeof c;
  c.version = BP_OPTIMIZER_CONFIG_VERSION;
  st = bp_optimizer_config_check(net->ctx, &c, fn);
  if (st != BP_OK) return st;
  const int reset = c.kind != net->opt.kind || bp_optimizer_slots(&c) != bp_optimizer_slots(&net->opt);
  if (reset) {
    const size_t count = (size_t)bp_optimizer_slots(&c) * net->n_params;
    st = net->ctx->ops->opt_reset(net, count);
    if (st != BP_OK) return st;
    net->opt_state_count = count;
  }
  net->opt = c;
  ++net->options_serial; /* captured steps bake the hyperparameters in */
  return BP_OK;
}

bp_status bp_network_get_optimizer(const bp_network *net, bp_optimizer_config *cfg) {
  if (!net || !cfg || cfg->struct_size == 0) return BP_ERR_INVALID_ARGUMENT;
  const uint32_t size = cfg->struct_size;
  memcpy(cfg, &net->opt, config_size(cfg));
  cfg->struct_size = size < sizeof *cfg ? size : (uint32_t)sizeof *cfg;
  return BP_OK;
}

/* ---- State ----------------------------------------------------------------- */

int bp_network_optimizer_state_slots(const bp_network *net) {
  return net ? bp_optimizer_slots(&net->opt) : 0;
}

const char *bp_optimizer_state_slot_name(bp_optimizer kind, int slot) {
  static const char *const adam[] = {"exp_avg", "exp_avg_sq"};
  static const char *const rprop[] = {"prev", "step_size"};
  switch (kind) {
    case BP_OPTIMIZER_SGD: return slot == 0 ? "momentum_buffer" : NULL;
    case BP_OPTIMIZER_ADAM:
    case BP_OPTIMIZER_ADAMW: return slot == 0 || slot == 1 ? adam[slot] : NULL;
    case BP_OPTIMIZER_RPROP: return slot == 0 || slot == 1 ? rprop[slot] : NULL;
  }
  return NULL;
}

static bp_status check_state_count(const bp_network *net, size_t count, const void *buf,
                                   const char *fn) {
  if (count != net->opt_state_count)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: count = %zu, but the %s optimizer's state is %d slot(s) of %zu "
                    "parameters = %zu floats",
                    fn, count, bp_optimizer_name(net->opt.kind), bp_optimizer_slots(&net->opt),
                    net->n_params, net->opt_state_count);
  if (count > 0 && !buf)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "%s: state is NULL", fn);
  return BP_OK;
}

bp_status bp_network_get_optimizer_state(const bp_network *net, float *state, size_t count,
                                         int64_t *step) {
  static const char fn[] = "bp_network_get_optimizer_state";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st == BP_OK) st = check_state_count(net, count, state, fn);
  if (st != BP_OK) return st;
  int64_t t = 0;
  st = net->ctx->ops->opt_read(net, 0, count, state, &t);
  if (st == BP_OK && step) *step = t;
  return st;
}

bp_status bp_network_set_optimizer_state(bp_network *net, const float *state, size_t count,
                                         int64_t step) {
  static const char fn[] = "bp_network_set_optimizer_state";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st == BP_OK) st = check_state_count(net, count, state, fn);
  if (st != BP_OK) return st;
  if (step < 0)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "%s: step = %lld must be >= 0", fn,
                    (long long)step);
  if (count > 0 && !bp_all_finite(state, count))
    return bp_error(net->ctx, BP_ERR_NUMERIC, "%s: the state holds NaN or Inf; nothing changed",
                    fn);
  return net->ctx->ops->opt_write(net, 0, count, state, &step);
}

/* ---- Learning-rate schedules --------------------------------------------------- */

void bp_lr_schedule_init(bp_lr_schedule *s, double base_lr) {
  if (!s) return;
  memset(s, 0, sizeof *s);
  s->kind = BP_LR_CONSTANT;
  s->base_lr = base_lr;
  s->step_epochs = 1;
  s->step_factor = 1.0;
}

bp_status bp_lr_schedule_parse(const char *text, bp_lr_schedule *s) {
  if (!text || !s) return BP_ERR_INVALID_ARGUMENT;
  if (strcmp(text, "constant") == 0) {
    s->kind = BP_LR_CONSTANT;
    return BP_OK;
  }
  if (strcmp(text, "cosine") == 0) {
    s->kind = BP_LR_COSINE;
    return BP_OK;
  }
  if (strncmp(text, "step:", 5) == 0) {
    char *end = NULL;
    const long epochs = strtol(text + 5, &end, 10);
    if (end == text + 5 || *end != ':' || epochs < 1 || epochs > 1000000000L)
      return BP_ERR_INVALID_ARGUMENT;
    const char *f = end + 1;
    const double factor = strtod(f, &end);
    if (end == f || *end != '\0' || !isfinite(factor) || factor <= 0.0)
      return BP_ERR_INVALID_ARGUMENT;
    s->kind = BP_LR_STEP;
    s->step_epochs = (int)epochs;
    s->step_factor = factor;
    return BP_OK;
  }
  return BP_ERR_INVALID_ARGUMENT;
}

double bp_lr_schedule_at(const bp_lr_schedule *s, int epoch) {
  if (!s || epoch < 0 || s->warmup_epochs < 0 || !isfinite(s->base_lr)) return NAN;
  const double base = s->base_lr;
  if (epoch < s->warmup_epochs) return base * (double)(epoch + 1) / (double)s->warmup_epochs;
  const int e = epoch - s->warmup_epochs;
  switch (s->kind) {
    case BP_LR_CONSTANT: return base;
    case BP_LR_STEP:
      if (s->step_epochs < 1 || !(s->step_factor > 0.0)) return NAN;
      return base * pow(s->step_factor, (double)(e / s->step_epochs));
    case BP_LR_COSINE: {
      const int T = s->total_epochs - s->warmup_epochs;
      if (T < 1) return base;
      const double done = e < T ? (double)e : (double)T;
      return s->min_lr + (base - s->min_lr) * (1.0 + cos(3.14159265358979323846 * done / (double)T)) / 2.0;
    }
  }
  return NAN;
}
