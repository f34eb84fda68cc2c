/* cmd_train.c - `backprop train`: read data, train epoch by epoch, report. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "commands.h"
#include "comm_setup.h"
#include "csv_log.h"
#include "data.h"
#include "interrupt.h"
#include "io/file_util.h"
#include "json_out.h"
#include "layers.h"
#include "model_meta.h"
#include "progress.h"
#include "run.h"
#include "save.h"
#include "svg_plot.h"
#include "train_recipe.h"
#include "train_snapshot.h"

#define CMD "train"

/* Defaults: measured on Fashion-MNIST, 784,100,10 (see --help). */
#define DEFAULT_EPOCHS 50
#define DEFAULT_BATCH 32
#define DEFAULT_LR 0.5f
#define DEFAULT_SEED 1u
#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_DIR_ENV "BACKPROP_FASHION_MNIST"

enum {
  OPT_HELP, OPT_DATA, OPT_TEST, OPT_LAYERS, OPT_HIDDEN, OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_SEED,
  OPT_BACKEND, OPT_DEVICE, OPT_SAVE, OPT_LOG, OPT_PLOT, OPT_JSON, OPT_QUIET, OPT_LABEL_COLUMN,
  OPT_TARGETS, OPT_CLASSES, OPT_FORMAT, OPT_MATH, OPT_NONDETERMINISTIC,
  OPT_CUDA_GRAPHS, OPT_KERNELS, OPT_PRODUCTS, OPT_DELIMITER, OPT_THREADS, OPT_COMM_TIMEOUT,
  OPT_COMM_TRANSPORT
};

static const cli_option options[] = {
    {"help", 'h', 0, OPT_HELP},       {"data", 0, 1, OPT_DATA},
    {"test", 0, 1, OPT_TEST},         {"layers", 0, 1, OPT_LAYERS},
    {"hidden", 0, 1, OPT_HIDDEN},     {"epochs", 0, 1, OPT_EPOCHS},
    {"batch", 0, 1, OPT_BATCH},       {"lr", 0, 1, OPT_LR},
    {"seed", 0, 1, OPT_SEED},         {"backend", 0, 1, OPT_BACKEND},
    {"device", 0, 1, OPT_DEVICE},     {"save", 0, 1, OPT_SAVE},
    {"log", 0, 1, OPT_LOG},           {"plot", 0, 1, OPT_PLOT},
    {"json", 0, 0, OPT_JSON},         {"quiet", 'q', 0, OPT_QUIET},
    {"label-column", 0, 1, OPT_LABEL_COLUMN}, {"targets", 0, 1, OPT_TARGETS},
    {"classes", 0, 1, OPT_CLASSES},   {"format", 0, 1, OPT_FORMAT},
    {"math", 0, 1, OPT_MATH},         {"nondeterministic", 0, 0, OPT_NONDETERMINISTIC},
    {"cuda-graphs", 0, 0, OPT_CUDA_GRAPHS}, {"kernels", 0, 1, OPT_KERNELS},
    {"products", 0, 1, OPT_PRODUCTS},       {"delimiter", 0, 1, OPT_DELIMITER},
    {"threads", 0, 1, OPT_THREADS},
    {"comm-timeout", 0, 1, OPT_COMM_TIMEOUT}, {"comm-transport", 0, 1, OPT_COMM_TRANSPORT},
    CLI_RECIPE_OPTIONS,
    {NULL, 0, 0, 0}};

static void help(FILE *f) {
  fprintf(f,
"Usage: backprop train [options]\n"
"\n"
"Trains a fully-connected sigmoid network (quadratic cost, plain mini-batch SGD)\n"
"and reports the cost and accuracy after each epoch. Without --data it trains\n"
"on Fashion-MNIST from " DEFAULT_DATA_DIR "\n"
"(sudo apt-get install dataset-fashion-mnist) on the best backend available.\n"
"\n"
"Data:\n"
"  --data PATH          training data: an IDX directory (its t10k files become the\n"
"                       test set), an IDX images file, a CSV file or a FANN file\n"
"  --test PATH          test data, evaluated after every epoch (same formats; a\n"
"                       directory gives its t10k files)\n"
"  --format F           idx|csv|fann (default: a directory or a name with \"-ubyte\"\n"
"                       or \"idx3\" is idx, *.csv is csv, anything else fann)\n"
"  --label-column N     CSV: column of the class label (default -1: last): integer\n"
"                       ids, or class names (saved in the model for eval/predict)\n"
"  --targets K          CSV: the last K columns are real-valued targets instead\n"
"                       (in [0, 1], the sigmoid's range; a warning says otherwise)\n"
"  --classes K          CSV: number of classes (default: largest label + 1)\n"
"  --delimiter D        CSV: , or ; or tab (default: detected from the first line)\n"
"\n"
"Network and training:\n"
"  --layers LIST        all widths, input and output included, e.g. 784,100,10; the\n"
"                       first and last must match the data (else a usage error)\n"
"  --hidden LIST        hidden widths only (default %d)\n"
"  --epochs N           epochs (default %d); 0 with --save writes the initialized\n"
"                       model\n"
"  --batch N            mini-batch size (default %d)\n"
"  --lr X               learning rate (default %g)\n"
"  --seed N             initialization seed; epoch e shuffles with seed + e\n"
"                       (default %u). Same seed, same result on the CPU backend.\n"
"  --backend B          auto|cpu|cuda (default auto: CUDA when a device is usable)\n"
"  --device N           CUDA device (default 0)\n"
"  --math M             precision of the matrix products: fp32 (default), tf32 or\n"
"                       bf16; float32 accumulation, weights and everything else\n"
"                       float32 in every mode. CUDA: tensor cores (compute\n"
"                       capability 8.0 or later). CPU: emulated by rounding the\n"
"                       products' inputs, to study the accuracy (slower, not faster)\n"
"  --nondeterministic   let CUDA choose split-K products whose partial sums may be\n"
"                       combined differently from run to run (default: runs with\n"
"                       the same seed are bit-identical; the CPU always is)\n"
"  --cuda-graphs        CUDA: capture each training step once and replay it (one\n"
"                       launch per step instead of one per kernel; the same\n"
"                       results bit for bit). The CPU backend ignores it\n"
"  --kernels K          CUDA kernel path: reference (default) or fused (one kernel\n"
"                       per layer for bias + activation and for error + bias\n"
"                       gradient; the same weights bit for bit). CPU: ignored\n"
"  --products P         CUDA products: cublas (default) or cublaslt. CPU: ignored\n"
"  --threads N          CPU: threads for the products and the elementwise passes\n"
"                       (default: OMP_NUM_THREADS, else one per core). CUDA: ignored\n"
"\n"
CLI_RECIPE_HELP
"\n"
"Output:\n"
"  --save FILE          save the model (safetensors, with the training metadata:\n"
"                       activations, cost, input scaling; see --save-optimizer)\n"
"  --log FILE.csv       one row per epoch: epoch,train_cost,test_cost,test_accuracy,\n"
"                       seconds,train_accuracy (seconds: that epoch's wall time)\n"
"  --plot FILE.svg      the training curves (cost and accuracy per epoch), one\n"
"                       self-contained SVG\n"
"  --json               print one JSON object on stdout at the end (test_accuracy,\n"
"                       test_cost, train_cost, epochs, seconds, backend, ...)\n"
"  -q, --quiet          no progress and no summary (errors and --json still print)\n"
CLI_COMM_HELP
"  -h, --help           this help\n"
"\n"
"Progress goes to stderr: one line per epoch and, on a terminal, a live bar\n"
"within each epoch: examples done, examples/s, running cost, time left.\n"
"\n"
"Ctrl-C stops training at the next batch; with --save the model reached so far\n"
"is saved; the exit status is then 130. A second Ctrl-C quits at once and saves\n"
"nothing. A run whose train cost is no better than the untrained network's, or\n"
"has not improved for 5 epochs, gets a warning (stderr, the summary, --json).\n"
"If the cost stops being finite or the learning rate would overflow the weights,\n"
"training stops, --save keeps the model of the last good epoch, and the exit\n"
"status is 1.\n"
"\n"
"Exit status: 0 done, 1 failure (files, training), 2 usage error, 130 interrupted.\n"
"Environment: " DATA_DIR_ENV " overrides the default data directory.\n",
          CLI_DEFAULT_HIDDEN, DEFAULT_EPOCHS, DEFAULT_BATCH, (double)DEFAULT_LR, DEFAULT_SEED);
}

typedef struct train_opts {
  const char *data, *test, *save, *log, *plot;
  int *layers;
  int n_layers;
  int hidden_only;
  int epochs, batch, device, json, quiet;
  float lr;
  uint64_t seed;
  bp_backend backend;
  bp_math_mode math;
  int nondeterministic;
  int cuda_graphs;
  bp_kernel_path kernels;
  bp_product_path products;
  int threads; /* 0: OpenMP's default */
  cli_data_options data_opt;
  int label_column_given;
  cli_comm comm;      /* data-parallel under mpirun/srun (comm_setup.h) */
  int device_given;
  cli_recipe recipe;
} train_opts;

/* Returns -1 to go on, or the exit code (0 after --help). */
static int parse(int argc, char **argv, train_opts *o) {
  static const char *const backends[] = {"auto", "cpu", "cuda", NULL};
  static const char *const maths[] = {"fp32", "tf32", "bf16", NULL};
  static const char *const kernel_paths[] = {"reference", "fused", NULL};
  static const char *const product_paths[] = {"cublas", "cublaslt", NULL};
  memset(o, 0, sizeof *o);
  o->epochs = DEFAULT_EPOCHS;
  o->batch = DEFAULT_BATCH;
  o->lr = DEFAULT_LR;
  o->seed = DEFAULT_SEED;
  o->backend = BP_BACKEND_AUTO;
  o->math = BP_MATH_FP32;
  cli_data_options_init(&o->data_opt);
  cli_recipe_init(&o->recipe);
  cli_args a;
  cli_args_init(&a, CMD, argc, argv);
  int layers_given = 0, hidden_given = 0;
  const char *v;
  int id, choice;
  while ((id = cli_next_option(&a, options, &v)) != CLI_ARGS_END) {
    int bad = 0;
    switch (id) {
      case CLI_ARGS_ERROR: return CLI_EXIT_USAGE;
      case CLI_ARGS_POSITIONAL: return cli_usage_error(CMD, "unexpected argument '%s'", v);
      case OPT_HELP: help(stdout); return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
      case OPT_DATA: o->data = v; break;
      case OPT_TEST: o->test = v; break;
      case OPT_LAYERS:
      case OPT_HIDDEN:
        if (id == OPT_LAYERS) layers_given = 1; else hidden_given = 1;
        free(o->layers);
        o->hidden_only = id == OPT_HIDDEN;
        bad = cli_parse_int_list(&a, v, 1, 1 << 24, CLI_MAX_LAYERS, &o->layers, &o->n_layers);
        break;
      case OPT_EPOCHS: bad = cli_parse_int(&a, v, 0, 100000000, &o->epochs); break;
      case OPT_BATCH: bad = cli_parse_int(&a, v, 1, 1 << 28, &o->batch); break;
      case OPT_LR: bad = cli_parse_float(&a, v, 0, 3.0e38, 1, &o->lr); break;
      case OPT_SEED: bad = cli_parse_u64(&a, v, &o->seed); break;
      case OPT_BACKEND:
        bad = cli_parse_choice(&a, v, backends, &choice);
        o->backend = choice == 1 ? BP_BACKEND_CPU : choice == 2 ? BP_BACKEND_CUDA : BP_BACKEND_AUTO;
        break;
      case OPT_DEVICE: o->device_given = 1; bad = cli_parse_int(&a, v, 0, 1024, &o->device); break;
      case OPT_COMM_TIMEOUT: bad = cli_comm_parse_timeout(&a, v, &o->comm); break;
      case OPT_COMM_TRANSPORT: bad = cli_comm_parse_transport(&a, v, &o->comm); break;
      case OPT_MATH:
        bad = cli_parse_choice(&a, v, maths, &choice);
        if (!bad && bp_math_mode_parse(maths[choice], &o->math) != BP_OK) bad = 1;
        break;
      case OPT_NONDETERMINISTIC: o->nondeterministic = 1; break;
      case OPT_CUDA_GRAPHS: o->cuda_graphs = 1; break;
      case OPT_THREADS: bad = cli_parse_int(&a, v, 1, 4096, &o->threads); break;
      case OPT_KERNELS:
        bad = cli_parse_choice(&a, v, kernel_paths, &choice);
        o->kernels = choice == 1 ? BP_KERNELS_FUSED : BP_KERNELS_REFERENCE;
        break;
      case OPT_PRODUCTS:
        bad = cli_parse_choice(&a, v, product_paths, &choice);
        o->products = choice == 1 ? BP_PRODUCTS_CUBLASLT : BP_PRODUCTS_CUBLAS;
        break;
      case OPT_SAVE: o->save = v; break;
      case OPT_LOG: o->log = v; break;
      case OPT_PLOT: o->plot = v; break;
      case OPT_JSON: o->json = 1; break;
      case OPT_QUIET: o->quiet = 1; break;
      case OPT_LABEL_COLUMN:
        o->label_column_given = 1;
        bad = cli_parse_int(&a, v, -1000000, 1000000, &o->data_opt.label_column);
        break;
      case OPT_TARGETS: bad = cli_parse_int(&a, v, 1, 1 << 24, &o->data_opt.n_targets); break;
      case OPT_CLASSES: bad = cli_parse_int(&a, v, 1, 1 << 24, &o->data_opt.n_classes); break;
      case OPT_FORMAT:
        bad = cli_parse_choice(&a, v, cli_format_names, &choice);
        o->data_opt.format = (cli_format)choice;
        break;
      case OPT_DELIMITER:
        bad = cli_parse_choice(&a, v, cli_delimiter_names, &choice);
        o->data_opt.delimiter = cli_delimiter_chars[choice];
        break;
      default: bad = cli_recipe_option(&a, id, v, &o->recipe) < 0; break;
    }
    if (bad) return CLI_EXIT_USAGE;
  }
  if (o->epochs == 0 && !o->save)
    return cli_usage_error(CMD, "invalid value '0' for --epochs: 0 only with --save FILE (to "
                                "write the initialized model)");
  int rc = cli_recipe_check(CMD, &o->recipe, layers_given || hidden_given);
  if (rc) return rc;
  if (layers_given && hidden_given)
    return cli_usage_error(CMD, "give --layers or --hidden, not both");
  if (o->test && !o->data) return cli_usage_error(CMD, "--test needs --data");
  if (o->data_opt.n_targets > 0 && (o->label_column_given || o->data_opt.n_classes))
    return cli_usage_error(CMD, "--targets excludes --label-column and --classes");
  return -1;
}

/* Everything the run owns, released by cleanup(). */
typedef struct train_state {
  bp_context *ctx;
  bp_network *net;
  bp_dataset *train, *test, *val;
  int *sizes;
  cli_snapshot best; /* --early-stop: the model of the best validation cost */
  bp_model_info *init_info; /* --init: the file's metadata */
  cli_scaling scaling;      /* --standardize, or the --init model's */
  cli_snapshot last; /* the model after the last good epoch (with --save) */
  cli_epoch *history; /* one per finished epoch; grows */
  int history_cap;
  cli_csv_log log;
  cli_early_stop early;
  double initial_cost, best_cost; /* for check_progress */
  int stalled;
  char warning[400];
  char *classes; /* the training set's class names, '\n'-separated, or NULL */
  cli_comm *comm;
} train_state;

static void cleanup(train_state *s) {
  bp_dataset_destroy(s->train);
  bp_dataset_destroy(s->test);
  bp_dataset_destroy(s->val);
  bp_network_destroy(s->net);
  cli_snapshot_free(&s->best);
  bp_model_info_free(s->init_info);
  cli_scaling_free(&s->scaling);
  bp_context_destroy(s->ctx);
  free(s->sizes);
  cli_snapshot_free(&s->last);
  free(s->history);
  free(s->classes);
}

/* The class names of a data set joined by '\n' (the model's "classes"
 * metadata), or NULL when its labels were ids (or out of memory). */
static char *join_names(const bp_data *d) {
  if (!d->class_names) return NULL;
  size_t len = 1;
  for (int c = 0; c < d->n_out; ++c) len += strlen(d->class_names[c]) + 1;
  char *s = malloc(len), *p = s;
  for (int c = 0; s && c < d->n_out; ++c) {
    size_t n = strlen(d->class_names[c]);
    memcpy(p, d->class_names[c], n);
    p += n;
    *p++ = c + 1 < d->n_out ? '\n' : '\0';
  }
  return s;
}

/* The sigmoid output layer gives values in (0, 1): regression targets
 * outside [0, 1] cannot be reached, and training toward them saturates the
 * outputs without any error (issue 13). Says so once, before training. */
static void check_targets(const bp_data *d, const char *path) {
  size_t count = (size_t)d->n * (size_t)d->n_out, outside = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < count; ++i) {
    float y = d->Y[i];
    if (y < lo) lo = y;
    if (y > hi) hi = y;
    outside += y < 0.0f || y > 1.0f;
  }
  if (outside)
    fprintf(stderr,
            "backprop " CMD ": warning: %s: %zu of %zu targets lie outside [0, 1] (from %g to "
            "%g), which the sigmoid outputs can never reach; scale the targets into [0, 1]\n",
            path, outside, count, (double)lo, (double)hi);
}

/* Reads the training and test sets into backend data sets; fills the run's
 * data fields. Host copies are released as soon as the backend has them. */
static int load_data(const train_opts *o, train_state *s, cli_run *run, const char *data_path) {
  bp_data *train = NULL, *test = NULL;
  int code = cli_data_read_train(CMD, s->ctx, data_path, &o->data_opt, &train, o->test ? NULL : &test);
  if (code) return code;
  if (test) run->test_path = data_path; /* an IDX directory's t10k files */
  if (train->class_names && !(s->classes = join_names(train))) {
    bp_data_free(train);
    bp_data_free(test);
    return cli_fail(CMD, "out of memory");
  }
  run->classes = s->classes;
  if (o->data_opt.n_targets > 0) check_targets(train, data_path);
  if (o->test) {
    /* The test file's class names get the training set's ids. */
    cli_data_options test_opt = o->data_opt;
    test_opt.class_names = s->classes;
    code = cli_data_read_eval(CMD, s->ctx, o->test, &test_opt, train->n_out, &test);
    if (code) {
      bp_data_free(train);
      return code;
    }
    run->test_path = o->test;
    if (test->n_in != train->n_in || test->n_out != train->n_out) {
      code = cli_fail(CMD, "%s has %d inputs and %d outputs per example but %s has %d and %d",
                      o->test, test->n_in, test->n_out, data_path, train->n_in, train->n_out);
      bp_data_free(train);
      bp_data_free(test);
      return code;
    }
  }
  bp_data *val = NULL;
  if (o->recipe.validation > 0)
    code = cli_recipe_split(CMD, train, o->recipe.validation, o->seed, &val);
  run->regression = !cli_targets_are_classes(train);
  run->n_train = train->n;
  run->n_test = test ? test->n : 0;
  run->n_val = val ? val->n : 0;
  if (!code && s->init_info) {
    const bp_model_info *mi = s->init_info;
    if (mi->sizes[0] != train->n_in || mi->sizes[mi->n_sizes - 1] != train->n_out)
      code = cli_fail(CMD, "--init %s takes %d inputs and gives %d outputs but %s has %d and %d",
                      o->recipe.init, mi->sizes[0], mi->sizes[mi->n_sizes - 1], data_path,
                      train->n_in, train->n_out);
    if (!code) code = cli_scaling_read(CMD, mi, o->recipe.init, train->n_in, &s->scaling);
    if (!code) {
      s->sizes = malloc(sizeof(int) * (size_t)mi->n_sizes);
      if (!s->sizes) code = cli_fail(CMD, "out of memory");
      else memcpy(s->sizes, mi->sizes, sizeof(int) * (size_t)mi->n_sizes);
      run->n_sizes = mi->n_sizes;
    }
  } else if (!code) {
    if (o->recipe.standardize && cli_scaling_fit(train, &s->scaling))
      code = cli_fail(CMD, "out of memory");
    if (!code)
      code = cli_resolve_sizes(CMD, o->layers, o->n_layers, o->hidden_only, train->n_in,
                               train->n_out, &s->sizes, &run->n_sizes);
  }
  if (!code && s->scaling.n) {
    cli_scaling_apply(&s->scaling, train);
    if (test) cli_scaling_apply(&s->scaling, test);
    if (val) cli_scaling_apply(&s->scaling, val);
  }
  if (!code && val &&
      bp_dataset_create(s->ctx, val->n, val->n_in, val->n_out, val->X, val->Y, &s->val) != BP_OK)
    code = cli_fail(CMD, "%s: %s", data_path, bp_context_last_error(s->ctx));
  bp_data_free(val);
  if (!code && bp_dataset_create(s->ctx, train->n, train->n_in, train->n_out, train->X, train->Y,
                                 &s->train) != BP_OK)
    code = cli_fail(CMD, "%s: %s", data_path, bp_context_last_error(s->ctx));
  if (!code && test &&
      bp_dataset_create(s->ctx, test->n, test->n_in, test->n_out, test->X, test->Y, &s->test) !=
          BP_OK)
    code = cli_fail(CMD, "%s: %s", run->test_path, bp_context_last_error(s->ctx));
  bp_data_free(train);
  bp_data_free(test);
  run->sizes = s->sizes;
  return code;
}

/* Fails early (before any training) when --save or --plot could not be
 * written at the end: the library's own check of a save target (a regular
 * file or a new name, the directory writable, room for the temporary's
 * suffix), so that a run is never lost to a bad name. */
static int check_target(const char *option, const char *path) {
  bp_context *ctx = NULL;
  if (bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return cli_fail(CMD, "out of memory");
  int code = 0;
  if (bp_io_check_save_target(ctx, path, NULL) != BP_OK)
    code = cli_fail(CMD, "%s: %s", option, bp_context_last_error(ctx));
  bp_context_destroy(ctx);
  return code;
}

/* When the save fails at the end, the model is not lost: it goes to a new
 * file in the temporary directory, and the message says where. */
static void rescue_model(const bp_network *net, const cli_run *run) {
  const char *tmpdir = getenv("TMPDIR");
  if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
  char path[4096];
  snprintf(path, sizeof path, "%s/backprop-rescued-%ld.safetensors", tmpdir, (long)getpid());
  if (cli_save_model(CMD, net, path, run) == 0)
    fprintf(stderr, "backprop " CMD ": the model was saved to %s instead\n", path);
}

/* Where the default data set lives, or NULL after the one-line hint. */
static const char *default_data(void) {
  const char *dir = getenv(DATA_DIR_ENV);
  if (!dir || !*dir) dir = DEFAULT_DATA_DIR;
  if (!cli_is_directory(dir)) {
    cli_fail(CMD, "Fashion-MNIST not found in %s; get it with: sudo apt-get install "
                  "dataset-fashion-mnist (or pass --data PATH)", dir);
    return NULL;
  }
  return dir;
}

/* The library's progress callback: draws the live bar on a terminal and
 * stops the epoch at the next report after Ctrl-C (issue 13: a long epoch
 * used to run to its end). */
typedef struct live_bar {
  cli_progress *prog;
  int epoch;
  double t0;
  int done, total, every_drawn, last_drawn;
} live_bar;

static int on_progress(void *user, int done, int total, float running_cost) {
  live_bar *bar = user;
  bar->done = done;
  bar->total = total;
  if (bar->prog->tty && (done - bar->last_drawn >= bar->every_drawn || done == total)) {
    bar->last_drawn = done;
    cli_progress_batch(bar->prog, bar->epoch, done, total, running_cost, cli_now() - bar->t0);
  }
  return cli_interrupted();
}

/* Epochs in a row without a better train cost before the run is called
 * stalled; and the relative gain that counts as better. */
#define STALL_EPOCHS 5
#define STALL_GAIN 1e-3

/* Training that runs without failing yet learns nothing: a learning rate so
 * high that the sigmoids saturate leaves the cost stuck at or above the
 * untrained network's (--lr 100 ended at cost 1.0 and accuracy 0.075, exit
 * 0). Warned once, during the run, and kept for the summary and --json. */
static void check_progress(train_state *s, cli_run *run, int e, double cost) {
  if (run->warning || !isfinite(cost)) return;
  /* A full batch's first epoch cost is the untrained network's itself (the
   * cost is taken before the step): not a sign of anything. */
  if (e == 1 && run->batch >= run->n_train) return;
  if (isfinite(s->initial_cost) && cost >= s->initial_cost) {
    snprintf(s->warning, sizeof s->warning,
             "epoch %d: the train cost %.4f is no better than the untrained network's %.4f: the "
             "network is not learning (saturated outputs?); try a smaller --lr (now %g)",
             e, cost, s->initial_cost, (double)run->lr);
  } else {
    if (!(cost < s->best_cost * (1.0 - STALL_GAIN))) {
      if (++s->stalled < STALL_EPOCHS) return;
      snprintf(s->warning, sizeof s->warning,
               "epoch %d: the train cost has not improved for %d epochs (best %.4f, now %.4f): "
               "saturated or stalled; try a smaller --lr (now %g)",
               e, STALL_EPOCHS, s->best_cost, cost, (double)run->lr);
    } else {
      s->best_cost = cost;
      s->stalled = 0;
      return;
    }
  }
  run->warning = s->warning;
  fprintf(stderr, "backprop " CMD ": warning: %s\n", s->warning);
}

/* Cost and accuracy of one set; for a regression the accuracy is NAN and,
 * with the quadratic cost (a sum over outputs), *mse is cost / outputs. */
static bp_status evaluate(train_state *s, const cli_run *run, const bp_dataset *d, double *cost,
                          double *acc, double *mse) {
  float c, a;
  bp_status st = bp_evaluate(s->net, d, &c, &a);
  if (st != BP_OK) return st;
  *cost = c;
  *acc = run->regression ? NAN : a;
  *mse = NAN;
  if (run->regression && bp_network_get_cost(s->net) == BP_COST_QUADRATIC)
    *mse = c / bp_dataset_n_out(d);
  return BP_OK;
}

/* --early-stop: puts the best epoch's parameters back and reports that
 * epoch's results as the run's. */
static int keep_best(train_state *s, cli_run *run) {
  if (!s->best.params || run->best_epoch == 0 || run->best_epoch == run->epochs_done) return 0;
  if (cli_snapshot_restore(&s->best, s->net) != BP_OK)
    return cli_fail(CMD, "cannot restore the model of epoch %d: %s", run->best_epoch,
                    bp_context_last_error(s->ctx));
  for (int i = 0; i < run->n_history; ++i) {
    const cli_epoch *h = &run->history[i];
    if (h->epoch != run->best_epoch) continue;
    run->train_cost = h->train_cost;
    run->test_cost = h->test_cost;
    run->test_accuracy = h->test_accuracy;
    run->test_mse = h->test_mse;
    run->val_cost = h->val_cost;
    run->val_accuracy = h->val_accuracy;
  }
  return 0;
}

static int train_loop(const train_opts *o, train_state *s, cli_run *run, cli_progress *prog) {
  double start = cli_now();
  s->best_cost = INFINITY;
  float c0; /* the untrained network's cost: what "not learning" compares with */
  if (bp_evaluate(s->net, s->train, &c0, NULL) == BP_OK) s->initial_cost = c0;
  cli_progress_start(prog);
  int code = 0;
  const int batches = (int)(((long)bp_dataset_size(s->train) + o->batch - 1) / o->batch);
  /* Each report is one device wait on CUDA: there, about 200 per epoch; on
   * the CPU they cost nothing, so Ctrl-C stops at the very next batch. */
  int every = 1;
  if (bp_context_backend(s->ctx) != BP_BACKEND_CPU && batches / 200 > 1) every = batches / 200;
  for (int e = 1; e <= o->epochs; ++e) {
    if (cli_comm_any_interrupted(s->comm, cli_interrupted())) {
      run->interrupted = 1;
      break;
    }
    double t0 = cli_now();
    float cost = NAN;
    live_bar bar = {prog, e, t0, 0, 0, 0, 0};
    bar.every_drawn = (int)((long)bp_dataset_size(s->train) / 100);
    /* --init continues the model's epoch count: the same shuffles and rates
     * as one uninterrupted run. */
    const int g = run->epoch_offset + e;
    const double lr = cli_recipe_lr(&o->recipe, o->lr, g - 1, run->epoch_offset + o->epochs);
    bp_status st = bp_train_epoch_ex(s->net, s->train, o->batch, (float)lr,
                                     cli_recipe_shuffle_seed(&o->recipe, o->seed, g), &cost,
                                     on_progress, &bar, every);
    if (st == BP_OK && cli_interrupted() && bar.done < bar.total) {
      /* Stopped inside the epoch: its batches so far stay applied (and are
       * saved), but it does not count as an epoch done. */
      cli_progress_finish(prog);
      fprintf(stderr, "backprop " CMD ": stopped in epoch %d after %d of %d examples\n", e,
              bar.done, bar.total);
      run->interrupted = 1;
      break;
    }
    double t1 = cli_now();
    cli_comm_epoch_done(s->comm, s->net);
    if (st == BP_ERR_NUMERIC) {
      cli_progress_finish(prog);
      fprintf(stderr, "backprop " CMD ": epoch %d: %s\n", e, bp_context_last_error(s->ctx));
      fprintf(stderr, "backprop " CMD ": stopped; keeping the model of epoch %d\n", e - 1);
      run->numeric_failure = 1;
      if (s->last.params && cli_snapshot_restore(&s->last, s->net) != BP_OK)
        code = cli_fail(CMD, "cannot restore the model of epoch %d: %s", e - 1,
                        bp_context_last_error(s->ctx));
      break;
    }
    if (st != BP_OK) {
      cli_progress_finish(prog);
      code = cli_fail(CMD, "epoch %d: %s", e, bp_context_last_error(s->ctx));
      break;
    }
    if (run->n_history == s->history_cap) {
      int cap = s->history_cap ? 2 * s->history_cap : 64;
      cli_epoch *h = realloc(s->history, sizeof *h * (size_t)cap);
      if (!h) {
        cli_progress_finish(prog);
        code = cli_fail(CMD, "out of memory");
        break;
      }
      s->history = h;
      s->history_cap = cap;
      run->history = h;
    }
    cli_epoch *rec = &s->history[run->n_history];
    rec->epoch = e;
    rec->train_cost = cost;
    rec->test_cost = rec->test_accuracy = rec->test_mse = NAN;
    rec->val_cost = rec->val_accuracy = rec->val_mse = NAN;
    rec->train_accuracy = NAN;
    rec->lr = lr;
    /* The epoch's running train accuracy (classifiers): each batch as its own
     * step's forward pass classified it, like the cost above, so the log
     * costs no second pass over the training set (that pass was a third of
     * the main job's time). The summary's figure is the final weights'. */
    bp_epoch_stats es;
    if (!run->regression && bp_network_last_epoch_stats(s->net, &es, sizeof es) == BP_OK &&
        es.examples > 0) {
      rec->train_accuracy = (double)es.correct / (double)es.examples;
      run->train_accuracy = rec->train_accuracy;
    }
    if (s->test && evaluate(s, run, s->test, &rec->test_cost, &rec->test_accuracy,
                            &rec->test_mse) != BP_OK) {
      cli_progress_finish(prog);
      code = cli_fail(CMD, "evaluating epoch %d: %s", e, bp_context_last_error(s->ctx));
      break;
    }
    if (s->val && evaluate(s, run, s->val, &rec->val_cost, &rec->val_accuracy, &rec->val_mse) !=
                      BP_OK) {
      cli_progress_finish(prog);
      code = cli_fail(CMD, "evaluating epoch %d: %s", e, bp_context_last_error(s->ctx));
      break;
    }
    int stop = 0;
    if (s->val && cli_early_stop_update(&s->early, e, rec->val_cost, &stop) && s->best.params) {
      run->best_epoch = e;
      if (cli_snapshot_take(&s->best, s->net) != BP_OK) {
        cli_progress_finish(prog);
        code = cli_fail(CMD, "epoch %d: %s", e, bp_context_last_error(s->ctx));
        break;
      }
    }
    if (s->last.params && cli_snapshot_take(&s->last, s->net) != BP_OK) {
      cli_progress_finish(prog);
      code = cli_fail(CMD, "epoch %d: %s", e, bp_context_last_error(s->ctx));
      break;
    }
    double t2 = cli_now();
    rec->train_seconds = t1 - t0;
    rec->seconds = t2 - t0;
    rec->elapsed = t2 - start;
    run->n_history++;
    run->epochs_done = e;
    run->train_cost = rec->train_cost;
    run->test_cost = rec->test_cost;
    run->test_accuracy = rec->test_accuracy;
    run->test_mse = rec->test_mse;
    run->val_cost = rec->val_cost;
    run->val_accuracy = rec->val_accuracy;
    cli_progress_epoch(prog, rec);
    check_progress(s, run, e, rec->train_cost);
    if (cli_csv_log_row(&s->log, CMD, rec)) {
      code = CLI_EXIT_FAILURE;
      break;
    }
    if (stop) {
      cli_progress_note(prog, "backprop " CMD ": no better validation cost for %d epochs; "
                              "stopping and keeping the model of epoch %d",
                        o->recipe.early_stop, run->best_epoch);
      run->stopped_early = 1;
      break;
    }
  }
  if (cli_interrupted()) run->interrupted = 1;
  run->seconds = cli_now() - start;
  cli_progress_finish(prog);
  return code;
}

static void summary(const cli_run *run) {
  if (run->n_test > 0 && run->regression)
    printf("test mse %.6g  test cost %.4f  ", run->test_mse, run->test_cost);
  else if (run->n_test > 0)
    printf("test accuracy %.4f  test cost %.4f  ", run->test_accuracy, run->test_cost);
  if (run->n_val > 0 && run->regression)
    printf("validation cost %.4f  ", run->val_cost);
  else if (run->n_val > 0)
    printf("validation accuracy %.4f  validation cost %.4f  ", run->val_accuracy, run->val_cost);
  if (run->best_epoch > 0 && run->best_epoch != run->epochs_done)
    printf("(the model of epoch %d)  ", run->best_epoch);
  printf("train cost %.4f  train accuracy %.4f  (%d epoch%s, %.1f s, %s, %s)\n", run->train_cost,
         run->train_accuracy, run->epochs_done, run->epochs_done == 1 ? "" : "s", run->seconds,
         run->backend, run->math);
  if (run->warning) printf("warning: %s\n", run->warning);
  if (run->saved_to) printf("saved the model to %s\n", run->saved_to);
}

int cli_cmd_train(int argc, char **argv) {
  train_opts o;
  int code = parse(argc, argv, &o);
  if (code >= 0) {
    free(o.layers);
    return code;
  }
  train_state s;
  memset(&s, 0, sizeof s);
  s.initial_cost = NAN;
  cli_run run;
  memset(&run, 0, sizeof run);
  run.train_cost = run.test_cost = run.test_accuracy = run.train_accuracy = NAN;
  if ((code = cli_comm_begin(CMD, &o.comm, o.device_given, &o.device, &o.quiet, &o.json, &o.save,
                             &o.log, &o.plot)) != 0) {
    free(o.layers);
    return code;
  }
  s.comm = &o.comm;
  run.test_mse = run.val_cost = run.val_accuracy = NAN;
  run.save_optimizer = o.recipe.save_optimizer;
  cli_early_stop_init(&s.early, o.recipe.early_stop);
  run.epochs_requested = o.epochs;
  run.batch = o.batch;
  run.lr = o.lr;
  run.seed = o.seed;
  run.device = o.device;
  run.math = bp_math_mode_name(o.math);
  run.deterministic = !o.nondeterministic;
  run.cuda_graphs = o.cuda_graphs;
  run.kernels = o.kernels == BP_KERNELS_FUSED ? "fused" : "reference";
  run.products = o.products == BP_PRODUCTS_CUBLASLT ? "cublaslt" : "cublas";

  const char *data_path = o.data ? o.data : default_data();
  if (!data_path) {
    free(o.layers);
    cli_comm_end(&o.comm, CLI_EXIT_FAILURE);
    return CLI_EXIT_FAILURE;
  }
  run.data_path = data_path;
  if ((o.save && (code = check_target("--save", o.save)) != 0) ||
      (o.plot && (code = check_target("--plot", o.plot)) != 0)) {
    free(o.layers);
    cli_comm_end(&o.comm, code);
    return code;
  }
  s.ctx = cli_context_create(CMD, o.backend, o.device, &code);
  if (!s.ctx) {
    free(o.layers);
    cli_comm_end(&o.comm, code);
    return code;
  }
  if (o.threads > 0 && bp_context_set_threads(s.ctx, o.threads) != BP_OK) {
    code = cli_fail(CMD, "--threads %d: %s", o.threads, bp_context_last_error(s.ctx));
    bp_context_destroy(s.ctx);
    free(o.layers);
    cli_comm_end(&o.comm, code);
    return code;
  }
  run.backend = bp_backend_name(bp_context_backend(s.ctx));
  run.threads = bp_context_get_threads(s.ctx);
  if (bp_context_backend(s.ctx) == BP_BACKEND_CPU) run.device = -1;

  if (o.recipe.init) {
    if (bp_model_info_read(s.ctx, o.recipe.init, &s.init_info) != BP_OK) {
      code = cli_fail(CMD, "--init: %s", bp_context_last_error(s.ctx));
      free(o.layers);
      cleanup(&s);
      cli_comm_end(&o.comm, code);
      return code;
    }
    const char *ep = cli_model_meta(s.init_info, "epochs");
    if (ep) run.epoch_offset = atoi(ep) > 0 ? atoi(ep) : 0;
  }

  double t_load = cli_now();
  code = load_data(&o, &s, &run, data_path);
  free(o.layers);
  o.layers = NULL;
  run.load_seconds = cli_now() - t_load;
  if (!code && o.recipe.init) {
    /* The file's network: widths, activations, cost and, when saved with
     * --save-optimizer, the optimizer and its state. */
    if (bp_network_load(s.ctx, o.recipe.init, &s.net) != BP_OK ||
        bp_network_set_deterministic(s.net, !o.nondeterministic) != BP_OK ||
        bp_network_set_cuda_graphs(s.net, o.cuda_graphs) != BP_OK ||
        bp_network_set_kernel_path(s.net, o.kernels) != BP_OK ||
        bp_network_set_product_path(s.net, o.products) != BP_OK ||
        bp_network_set_math_mode(s.net, o.math) != BP_OK)
      code = cli_fail(CMD, "--init: %s", bp_context_last_error(s.ctx));
  } else if (!code) {
    bp_activation acts[CLI_MAX_LAYERS];
    bp_network_desc desc;
    bp_network_desc_init(&desc, run.n_sizes, s.sizes, o.seed);
    cli_recipe_network(&o.recipe, run.n_sizes - 1, s.sizes[run.n_sizes - 1], acts, &desc.cost);
    desc.activations = acts;
    desc.math = o.math;
    desc.deterministic = !o.nondeterministic;
    desc.cuda_graphs = o.cuda_graphs;
    desc.kernels = o.kernels;
    desc.products = o.products;
    if (bp_network_create_ex(s.ctx, &desc, &s.net) != BP_OK)
      code = cli_fail(CMD, "cannot create the network: %s", bp_context_last_error(s.ctx));
  }
  if (!code) code = cli_comm_attach(CMD, &o.comm, s.net);
  if (!code) code = cli_recipe_set_optimizer(CMD, &o.recipe, s.net);
  bp_optimizer_config opt_cfg;
  opt_cfg.struct_size = sizeof opt_cfg;
  if (!code && bp_network_get_optimizer(s.net, &opt_cfg) == BP_OK)
    run.optimizer = bp_optimizer_name(opt_cfg.kind);
  char *mean_str = NULL, *std_str = NULL;
  if (!code && s.scaling.n) {
    if (cli_scaling_format(&s.scaling, &mean_str, &std_str)) code = cli_fail(CMD, "out of memory");
    run.input_mean = mean_str;
    run.input_std = std_str;
  }
  if (!code) run.n_params = bp_network_parameter_count(s.net);
  /* With --save-optimizer the snapshots carry the optimizer state too, so
   * a restored epoch is saved with its own state, not a later epoch's. */
  if (!code && o.save) {
    if (cli_snapshot_init(&s.last, s.net, run.save_optimizer) != BP_OK)
      code = cli_fail(CMD, "out of memory");
    else if (cli_snapshot_take(&s.last, s.net) != BP_OK)
      code = cli_fail(CMD, "%s", bp_context_last_error(s.ctx));
  }
  if (!code && o.recipe.early_stop &&
      cli_snapshot_init(&s.best, s.net, o.save && run.save_optimizer) != BP_OK)
    code = cli_fail(CMD, "out of memory");
  if (!code && o.log) code = cli_csv_log_open(&s.log, CMD, o.log);
  if (code) {
    free(mean_str);
    free(std_str);
    cleanup(&s);
    cli_comm_end(&o.comm, code);
    return code;
  }

  char shape[256];
  cli_format_sizes(s.sizes, run.n_sizes, shape, sizeof shape);
  cli_progress prog;
  cli_progress_init(&prog, o.quiet, o.epochs, run.n_train);
  cli_progress_note(&prog,
                    "backprop: network %s (%zu parameters), %d training examples, %d test "
                    "examples, %s backend, %s math%s%s; %d epoch%s, batch %d, lr %.9g, seed %llu",
                    shape, run.n_params, run.n_train, run.n_test, run.backend, run.math,
                    run.deterministic ? "" : " (nondeterministic)", cli_comm_note(&o.comm),
                    o.epochs, o.epochs == 1 ? "" : "s", o.batch,
                    (double)o.lr, (unsigned long long)o.seed);
  {
    char acts[CLI_MAX_LAYERS * 10] = "";
    size_t al = 0;
    for (int i = 0; i < run.n_sizes - 1 && al < sizeof acts - 12; ++i)
      al += (size_t)snprintf(acts + al, sizeof acts - al, i ? ",%s" : "%s",
                             bp_activation_name(bp_network_get_activation(s.net, i)));
    cli_progress_note(&prog, "backprop: activations %s, cost %s, optimizer %s%s%s%s, %s",
                      acts, bp_cost_name(bp_network_get_cost(s.net)), run.optimizer,
                      o.recipe.no_shuffle ? ", batches in file order" : "",
                      run.n_val ? ", validation set held out of the training set" : "",
                      s.scaling.n ? ", inputs standardized" : "",
                      run.regression ? "regression (mean squared error)" : "classification");
    if (run.n_val) cli_progress_note(&prog, "backprop: %d validation examples", run.n_val);
    if (run.epoch_offset)
      cli_progress_note(&prog, "backprop: --init %s: continuing after epoch %d", o.recipe.init,
                        run.epoch_offset);
  }

  cli_interrupt_install();
  code = train_loop(&o, &s, &run, &prog);
  if (!code) code = keep_best(&s, &run);
  if (run.interrupted)
    fprintf(stderr, "backprop " CMD ": interrupted after %d epoch%s\n", run.epochs_done,
            run.epochs_done == 1 ? "" : "s");

  if (!code || run.numeric_failure) {
    float acc;
    if (bp_evaluate(s.net, s.train, NULL, &acc) == BP_OK) run.train_accuracy = acc;
  }
  int out_code = 0;
  if (o.save && (!code || run.numeric_failure)) {
    out_code = cli_save_model(CMD, s.net, o.save, &run);
    if (!out_code) run.saved_to = o.save;
    else rescue_model(s.net, &run);
  }
  cli_interrupt_uninstall();
  if (cli_csv_log_close(&s.log, CMD)) out_code = CLI_EXIT_FAILURE;
  if (o.plot && cli_svg_plot_write(CMD, o.plot, &run))
    out_code = CLI_EXIT_FAILURE;
  cli_comm_report(&o.comm, &run);
  if (o.json)
    cli_json_train_result(stdout, &run);
  else if (!o.quiet)
    summary(&run);
  if (fflush(stdout) != 0 || ferror(stdout))
    out_code = cli_fail(CMD, "cannot write to standard output");
  cleanup(&s);
  cli_comm_end(&o.comm, code);
  free(mean_str);
  free(std_str);

  if (code) return code;
  if (run.numeric_failure || out_code) return CLI_EXIT_FAILURE;
  return run.interrupted ? CLI_EXIT_INTERRUPTED : 0;
}
