/* train_recipe.c - train's recipe options (see train_recipe.h). */
#include "train_recipe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_recipe_init(cli_recipe *r) {
  memset(r, 0, sizeof *r);
  r->activation = r->output = BP_ACTIVATION_SIGMOID;
  r->cost = BP_COST_QUADRATIC;
  r->optimizer = BP_OPTIMIZER_SGD;
  bp_lr_schedule_init(&r->schedule, 1.0);
}

static int bad(const cli_args *a, const char *v, const char *what) {
  cli_usage_error(a->cmd, "invalid value '%s' for %s: %s", v, a->current, what);
  return -1;
}

int cli_recipe_option(cli_args *a, int id, const char *v, cli_recipe *r) {
  switch (id) {
    case RC_OPT_ACTIVATION:
      r->activation_given = 1;
      if (bp_activation_parse(v, &r->activation) != BP_OK || r->activation == BP_ACTIVATION_SOFTMAX)
        return bad(a, v, "expected sigmoid|tanh|relu|identity (softmax only with --output)");
      return 0;
    case RC_OPT_OUTPUT:
      r->output_given = 1;
      if (bp_activation_parse(v, &r->output) != BP_OK)
        return bad(a, v, "expected sigmoid|tanh|relu|identity|softmax");
      return 0;
    case RC_OPT_COST:
      r->cost_given = 1;
      if (bp_cost_parse(v, &r->cost) != BP_OK) return bad(a, v, "expected quadratic|cross-entropy");
      return 0;
    case RC_OPT_OPTIMIZER:
      r->optimizer_given = 1;
      if (bp_optimizer_parse(v, &r->optimizer) != BP_OK)
        return bad(a, v, "expected sgd|adam|adamw|rprop");
      return 0;
    case RC_OPT_MOMENTUM:
      r->momentum_given = 1;
      return cli_parse_float(a, v, 0, 1e6, 0, &r->momentum);
    case RC_OPT_NESTEROV: r->nesterov = 1; return 0;
    case RC_OPT_WEIGHT_DECAY:
      r->weight_decay_given = 1;
      return cli_parse_float(a, v, 0, 1e6, 0, &r->weight_decay);
    case RC_OPT_LR_SCHEDULE:
      if (bp_lr_schedule_parse(v, &r->schedule) != BP_OK)
        return bad(a, v, "expected constant|step:EPOCHS:FACTOR|cosine");
      return 0;
    case RC_OPT_WARMUP: return cli_parse_int(a, v, 0, 100000000, &r->warmup);
    case RC_OPT_NO_SHUFFLE: r->no_shuffle = 1; return 0;
    case RC_OPT_VALIDATION:
      if (cli_parse_float(a, v, 0, 1, 1, &r->validation)) return -1;
      if (r->validation >= 1) return bad(a, v, "expected a fraction between 0 and 1");
      return 0;
    case RC_OPT_EARLY_STOP: return cli_parse_int(a, v, 1, 100000000, &r->early_stop);
    case RC_OPT_INIT: r->init = v; return 0;
    case RC_OPT_STANDARDIZE: r->standardize = 1; return 0;
    case RC_OPT_SAVE_OPTIMIZER: r->save_optimizer = 1; return 0;
    default: return 1;
  }
}

int cli_recipe_check(const char *cmd, const cli_recipe *r, int layers_given) {
  if (r->nesterov && !(r->momentum > 0))
    return cli_usage_error(cmd, "--nesterov needs --momentum X with X > 0");
  if (r->momentum_given && r->optimizer_given && r->optimizer != BP_OPTIMIZER_SGD)
    return cli_usage_error(cmd, "--momentum is for --optimizer sgd");
  if (r->weight_decay_given && r->optimizer_given && r->optimizer == BP_OPTIMIZER_RPROP)
    return cli_usage_error(cmd, "--weight-decay is not for --optimizer rprop");
  if (r->early_stop && r->validation <= 0)
    return cli_usage_error(cmd, "--early-stop needs --validation FRACTION");
  if (r->init && (layers_given || r->activation_given || r->output_given || r->cost_given))
    return cli_usage_error(cmd, "--init takes the network (widths, activations, cost) from its "
                                "file; drop --layers/--hidden/--activation/--output/--cost");
  if (r->init && r->standardize)
    return cli_usage_error(cmd, "--init keeps the input scaling of its file (if any); drop "
                                "--standardize");
  if (!r->init && r->cost == BP_COST_CROSS_ENTROPY && r->output_given &&
      r->output != BP_ACTIVATION_SOFTMAX && r->output != BP_ACTIVATION_SIGMOID)
    return cli_usage_error(cmd, "--cost cross-entropy needs --output softmax or sigmoid");
  return 0;
}

void cli_recipe_network(const cli_recipe *r, int n_layers, int n_out, bp_activation *acts,
                        bp_cost *cost) {
  for (int i = 0; i + 1 < n_layers; ++i) acts[i] = r->activation;
  bp_activation out = r->output;
  if (!r->output_given && r->cost == BP_COST_CROSS_ENTROPY && n_out > 1)
    out = BP_ACTIVATION_SOFTMAX;
  acts[n_layers - 1] = out;
  *cost = r->cost;
}

int cli_recipe_set_optimizer(const char *cmd, const cli_recipe *r, bp_network *net) {
  bp_optimizer_config cfg;
  cfg.struct_size = sizeof cfg;
  if (bp_network_get_optimizer(net, &cfg) != BP_OK)
    return cli_fail(cmd, "%s", bp_context_last_error(bp_network_context(net)));
  if (!r->optimizer_given && !r->momentum_given && !r->nesterov && !r->weight_decay_given)
    return 0; /* the seed's SGD, or what --init brought */
  if (r->optimizer_given && r->optimizer != cfg.kind) bp_optimizer_config_init(&cfg, r->optimizer);
  if (r->momentum_given && cfg.kind != BP_OPTIMIZER_SGD)
    return cli_usage_error(cmd, "--momentum is for --optimizer sgd (the model's is %s)",
                           bp_optimizer_name(cfg.kind));
  if (r->momentum_given) cfg.momentum = r->momentum;
  if (r->nesterov) cfg.nesterov = 1;
  if (r->weight_decay_given) cfg.weight_decay = r->weight_decay;
  if (bp_network_set_optimizer(net, &cfg) != BP_OK)
    return cli_usage_error(cmd, "%s", bp_context_last_error(bp_network_context(net)));
  return 0;
}

double cli_recipe_lr(const cli_recipe *r, double base_lr, int epoch, int total_epochs) {
  bp_lr_schedule s = r->schedule;
  s.base_lr = base_lr;
  s.warmup_epochs = r->warmup;
  s.total_epochs = total_epochs;
  return bp_lr_schedule_at(&s, epoch);
}

uint64_t cli_recipe_shuffle_seed(const cli_recipe *r, uint64_t seed, int e) {
  if (r->no_shuffle) return BP_SHUFFLE_NONE;
  uint64_t s = seed + (uint64_t)e;
  return s == BP_SHUFFLE_NONE ? 0 : s; /* seed 2^64-1-e would mean "no shuffle" */
}

/* SplitMix64: the split only needs a fixed, seedable order. */
static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int cli_recipe_split(const char *cmd, bp_data *train, double fraction, uint64_t seed,
                     bp_data **val) {
  *val = NULL;
  int n = train->n, nv = (int)floor(fraction * n + 0.5);
  if (nv < 1 || n - nv < 1)
    return cli_fail(cmd, "--validation %g of %d examples leaves an empty training or validation "
                         "set", fraction, n);
  int *perm = malloc(sizeof(int) * (size_t)n);
  char *held = calloc((size_t)n, 1);
  bp_data *v = calloc(1, sizeof *v);
  float *X = NULL, *Y = NULL;
  if (v) {
    X = malloc(sizeof(float) * (size_t)nv * (size_t)train->n_in);
    Y = malloc(sizeof(float) * (size_t)nv * (size_t)train->n_out);
  }
  if (!perm || !held || !v || !X || !Y) {
    free(perm), free(held), free(v), free(X), free(Y);
    return cli_fail(cmd, "out of memory");
  }
  uint64_t st = seed ^ 0x76616c6964617465ull; /* "validate": not the epochs' shuffles */
  for (int i = 0; i < n; ++i) perm[i] = i;
  for (int i = n - 1; i > 0; --i) {
    int j = (int)(splitmix(&st) % (uint64_t)(i + 1));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int i = 0; i < nv; ++i) held[perm[i]] = 1;
  size_t in = (size_t)train->n_in, out = (size_t)train->n_out;
  int kv = 0, kt = 0;
  for (int i = 0; i < n; ++i) { /* both sets keep the file's order */
    if (held[i]) {
      memcpy(X + kv * in, train->X + i * in, in * sizeof(float));
      memcpy(Y + kv * out, train->Y + i * out, out * sizeof(float));
      ++kv;
    } else {
      memmove(train->X + kt * in, train->X + i * in, in * sizeof(float));
      memmove(train->Y + kt * out, train->Y + i * out, out * sizeof(float));
      ++kt;
    }
  }
  train->n = kt;
  v->n = nv;
  v->n_in = train->n_in;
  v->n_out = train->n_out;
  v->X = X;
  v->Y = Y;
  free(perm);
  free(held);
  *val = v;
  return 0;
}

void cli_early_stop_init(cli_early_stop *s, int patience) {
  s->patience = patience;
  s->best = INFINITY;
  s->best_epoch = 0;
  s->bad = 0;
}

int cli_early_stop_update(cli_early_stop *s, int e, double val_cost, int *stop) {
  *stop = 0;
  if (isfinite(val_cost) && val_cost < s->best) {
    s->best = val_cost;
    s->best_epoch = e;
    s->bad = 0;
    return 1;
  }
  if (s->patience > 0 && ++s->bad >= s->patience) *stop = 1;
  return 0;
}

int cli_targets_are_classes(const bp_data *d) {
  size_t n = (size_t)d->n * (size_t)d->n_out;
  for (size_t i = 0; i < n; ++i)
    if (d->Y[i] != 0.0f && d->Y[i] != 1.0f) return 0;
  return 1;
}
