/* progress.c - per-epoch lines and, on a terminal, a bar (see progress.h). */
#define _POSIX_C_SOURCE 200809L

#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 24

void cli_progress_init(cli_progress *p, int quiet, int epochs, int examples_per_epoch) {
  memset(p, 0, sizeof *p);
  p->enabled = !quiet;
  p->tty = !quiet && isatty(STDERR_FILENO);
  p->epochs = epochs;
  p->examples = examples_per_epoch;
}

/* "1:05" or "1:02:03". */
static void format_duration(double s, char *buf, size_t size) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/* "850", "85.2k", "1.25M". */
static void format_count(double v, char *buf, size_t size) {
  if (v >= 1e6)
    snprintf(buf, size, "%.3gM", v / 1e6);
  else if (v >= 1e4)
    snprintf(buf, size, "%.3gk", v / 1e3);
  else
    snprintf(buf, size, "%.0f", v);
}

static void clear_bar(cli_progress *p) {
  if (p->bar_visible) {
    fputs("\r\033[K", stderr);
    p->bar_visible = 0;
  }
}

static void draw_bar(cli_progress *p, const cli_epoch *last) {
  int done = last ? last->epoch : 0;
  int filled = p->epochs > 0 ? (int)((long)BAR_WIDTH * done / p->epochs) : 0;
  char bar[BAR_WIDTH + 1];
  for (int i = 0; i < BAR_WIDTH; ++i) bar[i] = i < filled ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  char examples[32], rate[32] = "-", elapsed[32], left[32] = "-";
  format_count((double)p->examples * done, examples, sizeof examples);
  if (last) {
    if (p->train_seconds > 0) format_count((double)p->examples * done / p->train_seconds, rate,
                                           sizeof rate);
    format_duration(last->elapsed, elapsed, sizeof elapsed);
    format_duration(last->elapsed / done * (p->epochs - done), left, sizeof left);
  } else {
    snprintf(elapsed, sizeof elapsed, "0:00");
  }
  fprintf(stderr, "\r\033[K[%s] %d/%d epochs  %s examples  %s ex/s", bar, done, p->epochs,
          examples, rate);
  if (last) fprintf(stderr, "  cost %.4f", last->train_cost);
  fprintf(stderr, "  %s elapsed  %s left", elapsed, left);
  fflush(stderr);
  p->bar_visible = 1;
}

void cli_progress_batch(cli_progress *p, int epoch, int done, int total, float running_cost,
                        double elapsed) {
  if (!p->tty || total <= 0) return;
  int filled = (int)((long)BAR_WIDTH * done / total);
  char bar[BAR_WIDTH + 1];
  for (int i = 0; i < BAR_WIDTH; ++i) bar[i] = i < filled ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  char examples[32], all[32], rate[32] = "-", left_epoch[32] = "-", left_all[32] = "-";
  format_count(done, examples, sizeof examples);
  format_count(total, all, sizeof all);
  if (elapsed > 0 && done > 0) {
    format_count(done / elapsed, rate, sizeof rate);
    double epoch_left = elapsed / done * (total - done);
    /* Later epochs at the pace of the finished ones (or of this one). */
    double per_epoch = epoch > 1 ? p->train_seconds / (epoch - 1) : elapsed / done * total;
    format_duration(epoch_left, left_epoch, sizeof left_epoch);
    format_duration(epoch_left + per_epoch * (p->epochs - epoch), left_all, sizeof left_all);
  }
  fprintf(stderr, "\r\033[K[%s] epoch %d/%d  %s/%s examples  %s ex/s  cost %.4f  %s left in epoch"
                  "  %s left",
          bar, epoch, p->epochs, examples, all, rate, running_cost, left_epoch, left_all);
  fflush(stderr);
  p->bar_visible = 1;
}

void cli_progress_start(cli_progress *p) {
  if (p->tty) draw_bar(p, NULL);
}

void cli_progress_epoch(cli_progress *p, const cli_epoch *e) {
  p->train_seconds += e->train_seconds;
  if (!p->enabled) return;
  clear_bar(p);
  char rate[32] = "-";
  if (e->train_seconds > 0) format_count(p->examples / e->train_seconds, rate, sizeof rate);
  int width = snprintf(NULL, 0, "%d", p->epochs);
  fprintf(stderr, "epoch %*d/%d  train cost %.4f", width, e->epoch, p->epochs, e->train_cost);
  if (!isnan(e->train_accuracy)) fprintf(stderr, "  train accuracy %.4f", e->train_accuracy);
  if (!isnan(e->val_cost)) {
    fprintf(stderr, "  val cost %.4f", e->val_cost);
    if (!isnan(e->val_mse)) fprintf(stderr, "  val mse %.4g", e->val_mse);
    else if (!isnan(e->val_accuracy)) fprintf(stderr, "  val accuracy %.4f", e->val_accuracy);
  }
  if (!isnan(e->test_cost)) {
    fprintf(stderr, "  test cost %.4f", e->test_cost);
    if (!isnan(e->test_mse)) fprintf(stderr, "  test mse %.4g", e->test_mse);
    else if (!isnan(e->test_accuracy)) fprintf(stderr, "  test accuracy %.4f", e->test_accuracy);
  }
  fprintf(stderr, "  %.2f s  %s ex/s\n", e->seconds, rate);
  if (p->tty)
    draw_bar(p, e);
  else
    fflush(stderr);
}

void cli_progress_note(cli_progress *p, const char *fmt, ...) {
  if (!p->enabled) return;
  clear_bar(p);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

void cli_progress_finish(cli_progress *p) {
  clear_bar(p);
  fflush(stderr);
}
