/*
 * train_recipe.h - `backprop train`'s choice of network and training recipe
 * beyond the seed's: activations, cost, optimizer and its hyperparameters,
 * learning-rate schedule, shuffling, a validation split with early stopping,
 * starting from a saved model, and input standardization.
 *
 * Every default is the seed's (sigmoid everywhere, quadratic cost, plain SGD
 * at a constant rate, shuffled batches, no validation set, no scaling): a
 * command line without these options trains exactly as before.
 */
#ifndef BP_CLI_TRAIN_RECIPE_H
#define BP_CLI_TRAIN_RECIPE_H

#include <stdint.h>

#include "args.h"
#include "backprop.h"

/* Option ids handled by cli_recipe_option (train's own are below 100). */
enum {
  RC_OPT_ACTIVATION = 200,
  RC_OPT_OUTPUT,
  RC_OPT_COST,
  RC_OPT_OPTIMIZER,
  RC_OPT_MOMENTUM,
  RC_OPT_NESTEROV,
  RC_OPT_WEIGHT_DECAY,
  RC_OPT_LR_SCHEDULE,
  RC_OPT_WARMUP,
  RC_OPT_NO_SHUFFLE,
  RC_OPT_VALIDATION,
  RC_OPT_EARLY_STOP,
  RC_OPT_INIT,
  RC_OPT_STANDARDIZE,
  RC_OPT_SAVE_OPTIMIZER
};

#define CLI_RECIPE_OPTIONS                                                                 \
  {"activation", 0, 1, RC_OPT_ACTIVATION}, {"output", 0, 1, RC_OPT_OUTPUT},                  \
      {"cost", 0, 1, RC_OPT_COST}, {"optimizer", 0, 1, RC_OPT_OPTIMIZER},                    \
      {"momentum", 0, 1, RC_OPT_MOMENTUM}, {"nesterov", 0, 0, RC_OPT_NESTEROV},              \
      {"weight-decay", 0, 1, RC_OPT_WEIGHT_DECAY}, {"lr-schedule", 0, 1, RC_OPT_LR_SCHEDULE}, \
      {"warmup", 0, 1, RC_OPT_WARMUP}, {"no-shuffle", 0, 0, RC_OPT_NO_SHUFFLE},              \
      {"validation", 0, 1, RC_OPT_VALIDATION}, {"early-stop", 0, 1, RC_OPT_EARLY_STOP},      \
      {"init", 0, 1, RC_OPT_INIT}, {"standardize", 0, 0, RC_OPT_STANDARDIZE},                \
      {"save-optimizer", 0, 0, RC_OPT_SAVE_OPTIMIZER}

#define CLI_RECIPE_HELP                                                                     \
  "Recipe (defaults: the seed's sigmoid network, quadratic cost, plain SGD):\n"              \
  "  --activation A       hidden layers: sigmoid (default), tanh, relu, identity\n"          \
  "  --output A           output layer: sigmoid (default; softmax with --cost\n"             \
  "                       cross-entropy and more than one output), tanh, relu,\n"           \
  "                       identity, softmax\n"                                               \
  "  --cost C             quadratic (default) or cross-entropy (softmax or sigmoid\n"        \
  "                       output)\n"                                                         \
  "  --optimizer O        sgd (default), adam, adamw or rprop (torch.optim's rules\n"        \
  "                       and defaults; rprop is for full batches: --batch N)\n"            \
  "  --momentum X         SGD momentum (default 0)\n"                                         \
  "  --nesterov           SGD: Nesterov momentum (needs --momentum)\n"                       \
  "  --weight-decay X     L2 penalty (SGD, Adam) or decoupled decay (AdamW; default\n"        \
  "                       0.01 there, 0 elsewhere)\n"                                        \
  "  --lr-schedule S      constant (default), step:EPOCHS:FACTOR (multiply the rate\n"       \
  "                       by FACTOR every EPOCHS epochs) or cosine (down to 0 at the\n"       \
  "                       last epoch)\n"                                                      \
  "  --warmup N           the first N epochs ramp the rate up linearly (default 0)\n"        \
  "  --no-shuffle         batches in file order (default: shuffled every epoch)\n"           \
  "  --validation F       hold out the fraction F (0 < F < 1) of the training set,\n"          \
  "                       chosen by --seed, and report its cost every epoch\n"               \
  "  --early-stop N       with --validation: stop after N epochs without a better\n"          \
  "                       validation cost and keep the best model\n"                         \
  "  --init FILE          start from a saved model (its widths, activations and cost,\n"       \
  "                       its input scaling, and its optimizer state when it has\n"         \
  "                       one); epochs and the schedule continue its count\n"               \
  "  --standardize        scale each input by the training set's mean and standard\n"          \
  "                       deviation; stored in the model, applied by eval/predict\n"        \
  "  --save-optimizer     --save also writes the optimizer state, for --init\n"

typedef struct cli_recipe {
  int activation_given, output_given, cost_given, optimizer_given;
  bp_activation activation, output;
  bp_cost cost;
  bp_optimizer optimizer;
  int momentum_given, weight_decay_given, nesterov;
  float momentum, weight_decay;
  bp_lr_schedule schedule; /* kind and step fields from --lr-schedule */
  int warmup;
  int no_shuffle;
  float validation; /* 0: none */
  int early_stop;   /* 0: none */
  const char *init;
  int standardize;
  int save_optimizer;
} cli_recipe;

void cli_recipe_init(cli_recipe *r);
/* One of the RC_OPT_* options: 0 done, -1 bad value (usage error printed),
 * 1 not one of them. */
int cli_recipe_option(cli_args *a, int id, const char *value, cli_recipe *r);
/* Checks after parsing (combinations); 0 or CLI_EXIT_USAGE after a message.
 * layers_given: --layers or --hidden was given. */
int cli_recipe_check(const char *cmd, const cli_recipe *r, int layers_given);

/* The activation of each of the n_layers weight layers and the cost, for
 * bp_network_desc; n_out is the output width. */
void cli_recipe_network(const cli_recipe *r, int n_layers, int n_out, bp_activation *acts,
                        bp_cost *cost);
/* Applies --optimizer, --momentum, --nesterov and --weight-decay to net
 * (keeping the optimizer, and its state, that --init brought when none is
 * given). 0 or an exit code after a message. */
int cli_recipe_set_optimizer(const char *cmd, const cli_recipe *r, bp_network *net);
/* The learning rate of 0-based epoch `epoch` of a run of total_epochs. */
double cli_recipe_lr(const cli_recipe *r, double base_lr, int epoch, int total_epochs);
/* The shuffle seed of 1-based epoch e: seed + e, or BP_SHUFFLE_NONE. */
uint64_t cli_recipe_shuffle_seed(const cli_recipe *r, uint64_t seed, int e);

/* Moves round(fraction * n) examples, chosen by a permutation drawn from
 * seed, from *train into a new *val (the rest keep their order). 0, or an
 * exit code after a message (too few examples for both sets). */
int cli_recipe_split(const char *cmd, bp_data *train, double fraction, uint64_t seed,
                     bp_data **val);

/* Early stopping on the validation cost. */
typedef struct cli_early_stop {
  int patience;   /* 0: off */
  double best;    /* best validation cost so far */
  int best_epoch; /* 0: none yet */
  int bad;        /* epochs since the best */
} cli_early_stop;
void cli_early_stop_init(cli_early_stop *s, int patience);
/* Records epoch e's validation cost: returns 1 when it is the best so far
 * (keep this model), 0 otherwise; *stop becomes 1 when patience ran out. */
int cli_early_stop_update(cli_early_stop *s, int e, double val_cost, int *stop);

/* 1 when every target is 0 or 1 (one-hot classes, or a binary output): a
 * classifier, reported by accuracy; else a regression, reported by mean
 * squared error. */
int cli_targets_are_classes(const bp_data *d);

#endif /* BP_CLI_TRAIN_RECIPE_H */
