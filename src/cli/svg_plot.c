/* svg_plot.c - training curves as a self-contained SVG (see svg_plot.h). */
#define _POSIX_C_SOURCE 200809L

#include "svg_plot.h"

#include "io/file_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define SVG_W 760
#define SVG_H 660
#define LEFT 78
#define RIGHT 24
#define PANEL_H 220

static const char *const COLOR_TRAIN = "#1f77b4";
static const char *const COLOR_TEST = "#ff7f0e";
static const char *const COLOR_ACC = "#2ca02c";

/* A value range with round tick marks. */
typedef struct axis {
  double lo, hi, step;
} axis;

static double nice_step(double range, int target) {
  if (!(range > 0)) range = 1;
  double raw = range / target;
  double mag = pow(10, floor(log10(raw)));
  double f = raw / mag;
  double m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return m * mag;
}

static axis make_axis(double lo, double hi, int target) {
  axis a;
  if (!(hi > lo)) {
    double pad = fabs(lo) > 0 ? fabs(lo) * 0.05 : 0.5;
    lo -= pad;
    hi += pad;
  }
  a.step = nice_step(hi - lo, target);
  a.lo = floor(lo / a.step) * a.step;
  a.hi = ceil(hi / a.step) * a.step;
  return a;
}

/* XML text: escapes markup characters; control characters and bytes that are
 * not UTF-8 become '?'. */
static void put_text(FILE *f, const char *s) {
  char *clean = cli_utf8_sanitized(s);
  const char *p = clean ? clean : "?";
  for (; *p; ++p) {
    unsigned char c = (unsigned char)*p;
    if (c == '&') fputs("&amp;", f);
    else if (c == '<') fputs("&lt;", f);
    else if (c == '>') fputs("&gt;", f);
    else if (c == '"') fputs("&quot;", f);
    else if (c < 0x20 || c == 0x7F) fputc('?', f);
    else fputc(c, f);
  }
  free(clean);
}

/* A path, shortened to its last PATH_CHARS bytes (at a '/' when possible). */
#define PATH_CHARS 48
static void put_path(FILE *f, const char *path) {
  size_t n = strlen(path);
  if (n <= PATH_CHARS) {
    put_text(f, path);
    return;
  }
  const char *tail = path + n - PATH_CHARS;
  const char *slash = strchr(tail, '/');
  if (slash && slash[1]) tail = slash;
  while ((unsigned char)*tail >= 0x80 && (unsigned char)*tail < 0xC0) ++tail; /* UTF-8 boundary */
  fputs("\xe2\x80\xa6", f); /* ellipsis */
  put_text(f, tail);
}

/* A panel's frame in pixels and its two axes. */
typedef struct panel {
  double x0, y0, w, h;
  axis x, y;
} panel;

static double px(const panel *p, double v) { return p->x0 + (v - p->x.lo) / (p->x.hi - p->x.lo) * p->w; }
static double py(const panel *p, double v) { return p->y0 + p->h - (v - p->y.lo) / (p->y.hi - p->y.lo) * p->h; }

/* Tick labels: as many decimals as the step needs. */
static int decimals(double step) {
  int d = 0;
  while (d < 6 && fabs(step * pow(10, d) - floor(step * pow(10, d) + 0.5)) > 1e-6) ++d;
  return d;
}

static void draw_frame(FILE *f, const panel *p, const char *ylabel) {
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" "
             "stroke=\"#888888\"/>\n", p->x0, p->y0, p->w, p->h);
  int yd = decimals(p->y.step);
  for (double v = p->y.lo; v <= p->y.hi + p->y.step * 1e-6; v += p->y.step) {
    double y = py(p, v);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
            p->x0, y, p->x0 + p->w, y);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", p->x0 - 6, y + 4,
            yd, fabs(v) < p->y.step * 1e-9 ? 0.0 : v);
  }
  for (double v = p->x.lo; v <= p->x.hi + 1e-9; v += p->x.step) {
    double x = px(p, v);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x,
            p->y0, x, p->y0 + p->h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", x,
            p->y0 + p->h + 16, v);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epoch</text>\n",
          p->x0 + p->w / 2, p->y0 + p->h + 34);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
             "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
          p->x0 - 56, p->y0 + p->h / 2, p->x0 - 56, p->y0 + p->h / 2, ylabel);
}

/* Which number of an epoch a series shows. */
typedef double (*epoch_value)(const cli_epoch *e);
static double train_cost_of(const cli_epoch *e) { return e->train_cost; }
static double test_cost_of(const cli_epoch *e) { return e->test_cost; }
static double test_accuracy_of(const cli_epoch *e) { return e->test_accuracy; }

/* One series: a polyline, plus dots when there are few points. */
static void draw_series(FILE *f, const panel *p, const cli_run *run, epoch_value value,
                        const char *color) {
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
  for (int i = 0; i < run->n_history; ++i) {
    const cli_epoch *e = &run->history[i];
    double v = value(e);
    if (isfinite(v)) fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(p, e->epoch), py(p, v));
  }
  fputs("\"/>\n", f);
  if (run->n_history <= 60) {
    for (int i = 0; i < run->n_history; ++i) {
      const cli_epoch *e = &run->history[i];
      double v = value(e);
      if (isfinite(v))
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", px(p, e->epoch),
                py(p, v), color);
    }
  }
}

static void draw_legend(FILE *f, const panel *p, int row, const char *color, const char *label) {
  double x = p->x0 + p->w - 150, y = p->y0 + 18 + 18 * row;
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
             "stroke-width=\"3\"/>\n", x, y - 4, x + 22, y - 4, color);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 28, y, label);
}

static void series_range(const cli_run *run, epoch_value value, double *lo, double *hi) {
  for (int i = 0; i < run->n_history; ++i) {
    double v = value(&run->history[i]);
    if (!isfinite(v)) continue;
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
  }
}

static void write_svg(FILE *f, const cli_run *run) {
  int last = run->n_history > 0 ? run->history[run->n_history - 1].epoch : 1;
  axis xa; /* epochs: 0 .. a round number >= the last epoch */
  xa.lo = 0;
  xa.step = nice_step(last, 10);
  if (xa.step < 1) xa.step = 1;
  xa.hi = ceil(last / xa.step) * xa.step;
  int has_test = run->n_test > 0;

  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\" fill=\"#222222\">\n",
          SVG_W, SVG_H, SVG_W, SVG_H);
  fputs("<title>backprop training curves</title>\n", f);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#fafafa\"/>\n", SVG_W, SVG_H);
  fputs("<text x=\"20\" y=\"26\" font-size=\"16\" font-weight=\"bold\">", f);
  fputs("backprop: network ", f);
  for (int i = 0; i < run->n_sizes; ++i) fprintf(f, "%s%d", i ? "," : "", run->sizes[i]);
  fprintf(f, ", batch %d, lr %.9g, seed %llu, %s</text>\n", run->batch, (double)run->lr,
          (unsigned long long)run->seed, run->backend);
  fprintf(f, "<text x=\"20\" y=\"46\">%d epoch%s in %.1f s", run->epochs_done,
          run->epochs_done == 1 ? "" : "s", run->seconds);
  if (has_test && isfinite(run->test_accuracy))
    fprintf(f, ", test accuracy %.4f", run->test_accuracy);
  fputs("; data: ", f);
  put_path(f, run->data_path);
  if (run->test_path && strcmp(run->test_path, run->data_path) != 0) {
    fputs("; test: ", f);
    put_path(f, run->test_path);
  }
  fputs("</text>\n", f);

  /* Cost panel. */
  double lo = INFINITY, hi = -INFINITY;
  series_range(run, train_cost_of, &lo, &hi);
  series_range(run, test_cost_of, &lo, &hi);
  if (!isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  panel cost = {LEFT, 70, SVG_W - LEFT - RIGHT, PANEL_H, xa, make_axis(0, hi, 5)};
  draw_frame(f, &cost, "cost");
  draw_series(f, &cost, run, train_cost_of, COLOR_TRAIN);
  draw_legend(f, &cost, 0, COLOR_TRAIN, "train cost");
  if (has_test) {
    draw_series(f, &cost, run, test_cost_of, COLOR_TEST);
    draw_legend(f, &cost, 1, COLOR_TEST, "test cost");
  }

  /* Accuracy panel. */
  lo = INFINITY;
  hi = -INFINITY;
  series_range(run, test_accuracy_of, &lo, &hi);
  if (!isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  axis ya = make_axis(lo, hi, 5);
  if (ya.lo < 0) ya.lo = 0;
  if (ya.hi > 1 && hi <= 1) ya.hi = 1;
  panel acc = {LEFT, 70 + PANEL_H + 70, SVG_W - LEFT - RIGHT, PANEL_H, xa, ya};
  draw_frame(f, &acc, "test accuracy");
  if (has_test) {
    draw_series(f, &acc, run, test_accuracy_of, COLOR_ACC);
    draw_legend(f, &acc, 0, COLOR_ACC, "test accuracy");
  } else {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no test set (--test)</text>\n",
            acc.x0 + acc.w / 2, acc.y0 + acc.h / 2);
  }
  fputs("</svg>\n", f);
}

int cli_svg_plot_write(const char *cmd, const char *path, const cli_run *run) {
  /* Built in memory, then written by the library's atomic save: the same
   * target rules as --save (a device, FIFO or directory at the path is
   * refused, a symlink is followed) and no torn file on a crash. */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return cli_fail(cmd, "out of memory");
  write_svg(f, run);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad || !buf) {
    free(buf);
    return cli_fail(cmd, "cannot build plot %s: out of memory", path);
  }
  bp_context *ctx = NULL;
  int code = 0;
  if (bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) code = cli_fail(cmd, "out of memory");
  else if (bp_io_atomic_write(ctx, path, buf, len) != BP_OK)
    code = cli_fail(cmd, "cannot write plot %s: %s", path, bp_context_last_error(ctx));
  bp_context_destroy(ctx);
  free(buf);
  return code;
}
