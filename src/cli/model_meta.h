/*
 * model_meta.h - what the command keeps in a model file's metadata besides
 * the library's keys: the input standardization of --standardize, applied
 * again by eval and predict, and the epoch count that --init continues.
 *
 * Keys: "input_mean" and "input_std", one number per input, comma-separated,
 * printed with %.9g (exact for float32); x' = (x - mean) / std per input.
 */
#ifndef BP_CLI_MODEL_META_H
#define BP_CLI_MODEL_META_H

#include "backprop.h"

typedef struct cli_scaling {
  int n;       /* inputs; 0: no scaling */
  float *mean; /* n each, malloc'd */
  float *std;
} cli_scaling;

void cli_scaling_free(cli_scaling *s);
/* Mean and standard deviation of each input over d (a constant input gets
 * deviation 1, so it maps to 0). 0 or -1 when out of memory. */
int cli_scaling_fit(const bp_data *d, cli_scaling *s);
/* x = (x - mean) / std for every example of d (n must equal d->n_in). */
void cli_scaling_apply(const cli_scaling *s, bp_data *d);
/* The two metadata values, malloc'd (the caller frees both); -1 when out of
 * memory. */
int cli_scaling_format(const cli_scaling *s, char **mean, char **std);
/* Reads the scaling from a model file's metadata, for a model of n_in
 * inputs; s->n is 0 when the file has none. 0, or an exit code after a
 * message naming path (malformed values). */
int cli_scaling_read(const char *cmd, const bp_model_info *info, const char *path, int n_in,
                     cli_scaling *s);
/* Applies the scaling recorded in model file `model` (if any) to data's
 * inputs, as eval and predict must. 0, or an exit code after a message. */
int cli_model_scale_inputs(const char *cmd, bp_context *ctx, const char *model, bp_data *data);
/* The value of metadata key `key` in info, or NULL. */
const char *cli_model_meta(const bp_model_info *info, const char *key);

#endif /* BP_CLI_MODEL_META_H */
