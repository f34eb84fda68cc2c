/* save.c - saving a model with training metadata (see save.h). */
#include "save.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_META 28

typedef struct meta {
  const char *keys[MAX_META];
  char *values[MAX_META];
  int n;
} meta;

static void add(meta *m, const char *key, const char *value) {
  if (m->n == MAX_META) return;
  char *v = cli_utf8_sanitized(value); /* metadata must be UTF-8 */
  if (!v) return;
  m->keys[m->n] = key;
  m->values[m->n++] = v;
}

static void add_number(meta *m, const char *key, double v) {
  if (!isfinite(v)) return;
  char buf[40];
  snprintf(buf, sizeof buf, "%.9g", v);
  add(m, key, buf);
}

int cli_save_model(const char *cmd, const bp_network *net, const char *path, const cli_run *run) {
  meta m;
  memset(&m, 0, sizeof m);
  char buf[64];
  /* With --init, the epochs of the model, not only of this run: what a
   * later --init continues from. */
  snprintf(buf, sizeof buf, "%d", run->epoch_offset + run->epochs_done);
  add(&m, "epochs", buf);
  snprintf(buf, sizeof buf, "%d", run->batch);
  add(&m, "batch", buf);
  add_number(&m, "lr", run->lr);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)run->seed);
  add(&m, "seed", buf);
  add_number(&m, "train_cost", run->train_cost);
  add_number(&m, "train_accuracy", run->train_accuracy);
  add_number(&m, "test_cost", run->test_cost);
  add_number(&m, "test_accuracy", run->test_accuracy);
  add(&m, "data", run->data_path);
  if (run->test_path) add(&m, "test", run->test_path);
  add(&m, "backend", run->backend);
  if (run->math) add(&m, "math", run->math);
  add(&m, "deterministic", run->deterministic ? "true" : "false");
  cli_utc_date(buf, sizeof buf);
  add(&m, "date", buf);
  if (run->interrupted) add(&m, "interrupted", "true");
  if (run->classes) add(&m, "classes", run->classes);
  if (run->optimizer) add(&m, "train_optimizer", run->optimizer);
  if (run->best_epoch > 0) {
    snprintf(buf, sizeof buf, "%d", run->epoch_offset + run->best_epoch);
    add(&m, "best_epoch", buf);
  }
  /* --standardize: one number per input, read back by eval and predict
   * (model_meta.h); ASCII, so the sanitized copy is the string itself. */
  const char *keys_extra[2] = {"input_mean", "input_std"};
  const char *vals_extra[2] = {run->input_mean, run->input_std};
  for (int i = 0; i < 2 && vals_extra[i] && m.n < MAX_META; ++i)
    add(&m, keys_extra[i], vals_extra[i]);

  int code = 0;
  bp_status st = run->save_optimizer
                     ? bp_network_save_with_state(net, path, m.n, m.keys,
                                                  (const char *const *)m.values)
                     : bp_network_save_ex(net, path, m.n, m.keys, (const char *const *)m.values);
  if (st != BP_OK)
    code = cli_fail(cmd, "cannot save the model to %s: %s", path,
                    bp_context_last_error(bp_network_context(net)));
  for (int i = 0; i < m.n; ++i) free(m.values[i]);
  return code;
}
