/*
 * run.h - what a training run records: one cli_epoch per finished epoch and
 * a cli_run summary. The progress display, the CSV log, the SVG plot and the
 * JSON output all read these; none of them trains anything.
 */
#ifndef BP_CLI_RUN_H
#define BP_CLI_RUN_H

#include <stddef.h>
#include <stdint.h>

typedef struct cli_epoch {
  int epoch;             /* 1-based */
  double train_cost;     /* mean cost of the epoch's batches before their steps */
  double train_accuracy; /* running: the batches as their own steps classified them */
  double test_cost;      /* NAN when there is no test set */
  double test_accuracy;  /* NAN when there is no test set, or for a regression */
  double test_mse;       /* regression with the quadratic cost: test_cost / outputs; else NAN */
  double val_cost;       /* --validation: the held-out set's cost; else NAN */
  double val_accuracy;   /* NAN without --validation, or for a regression */
  double val_mse;        /* as test_mse, on the held-out set */
  double lr;             /* the learning rate of the epoch (--lr-schedule, --warmup) */
  double train_seconds;  /* bp_train_epoch alone */
  double seconds;        /* the epoch: training plus evaluation */
  double elapsed;        /* since training began, at the end of this epoch */
} cli_epoch;

typedef struct cli_run {
  const char *data_path;  /* what was trained on */
  const char *test_path;  /* NULL: no separate test file (none, or an IDX directory's) */
  const char *backend;    /* "cpu" or "cuda" */
  const char *math;       /* the math mode: "fp32", "tf32" or "bf16" */
  int deterministic;      /* 1 unless --nondeterministic */
  int cuda_graphs;        /* --cuda-graphs */
  const char *kernels;    /* --kernels: "reference" or "fused" */
  const char *products;   /* --products: "cublas" or "cublaslt" */
  int threads;            /* the CPU context's thread count (--threads); 0 on CUDA */
  int device;             /* CUDA device; -1 on the CPU backend */
  const int *sizes;
  int n_sizes;
  size_t n_params;
  int n_train, n_test;    /* n_test 0: no test set */
  int n_val;              /* --validation: examples held out of the training set */
  int regression;         /* targets are not all 0/1: report mean squared error */
  int epoch_offset;       /* --init: epochs the model had already been trained */
  int best_epoch;         /* --early-stop: the epoch whose model is kept (0: none) */
  int stopped_early;      /* --early-stop ran out of patience */
  int epochs_requested;
  int batch;
  float lr;
  uint64_t seed;
  /* Results, of the model that is kept (after the last good epoch). */
  int epochs_done;
  double train_cost;      /* NAN before the first epoch */
  double train_accuracy;  /* on the training set, at the end */
  double test_cost;       /* NAN without a test set */
  double test_accuracy;
  double test_mse;        /* regression with the quadratic cost; else NAN */
  double val_cost, val_accuracy; /* --validation; else NAN */
  double seconds;         /* training (with per-epoch evaluation) */
  double load_seconds;    /* reading the data and copying it to the backend */
  int interrupted;        /* stopped by SIGINT */
  int numeric_failure;    /* stopped by a non-finite cost */
  const char *saved_to;   /* NULL if not saved */
  /* What --save writes besides the library's keys. */
  const char *input_mean, *input_std; /* --standardize: model_meta.h; NULL: none */
  const char *optimizer;  /* the optimizer's name */
  int save_optimizer;     /* --save-optimizer: write its state too */
  const char *warning;    /* NULL, or why the run looks like it is not learning */
  const char *classes;    /* class names of CSV labels, '\n'-separated, or NULL */
  const cli_epoch *history;
  int n_history;
  /* Data-parallel (comm_setup.c): ranks (1 without a launcher), and per
   * training step the exchange's time and the share of it hidden behind
   * backward (0 with one rank). */
  int world_size;
  double comm_ms_per_step;
  double comm_hidden_share;
} cli_run;

#endif /* BP_CLI_RUN_H */
