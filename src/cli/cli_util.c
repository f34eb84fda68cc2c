/* cli_util.c - error messages, clocks, dates and other small helpers. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "backprop%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "; see backprop%s%s --help\n", cmd ? " " : "", cmd ? cmd : "");
  return CLI_EXIT_USAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "backprop%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return CLI_EXIT_FAILURE;
}

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_utc_date(char *buf, size_t size) {
  time_t t = time(NULL);
  struct tm tm;
  if (size == 0) return;
  if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) buf[0] = '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_sequence(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned long min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  unsigned long cp = c & (0x3Fu >> (n - 1));
  for (size_t i = 1; i < n; ++i) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

char *cli_utf8_sanitized(const char *s) {
  size_t len = strlen(s);
  char *out = malloc(len + 1);
  if (!out) return NULL;
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0;
  while (*p) {
    size_t n = utf8_sequence(p);
    if (n == 0) {
      out[o++] = '?';
      ++p;
    } else {
      memcpy(out + o, p, n);
      o += n;
      p += n;
    }
  }
  out[o] = '\0';
  return out;
}

bp_context *cli_context_create(const char *cmd, bp_backend backend, int device, int *code) {
  bp_context *ctx = NULL;
  bp_status st = bp_context_create(backend, device, &ctx);
  if (st == BP_OK) return ctx;
  if (st == BP_ERR_NO_DEVICE && !bp_has_cuda())
    *code = cli_fail(cmd, "the cuda backend is not available: this build has no CUDA support "
                          "(use --backend cpu or auto)");
  else if (st == BP_ERR_NO_DEVICE)
    *code = cli_fail(cmd, "CUDA device %d is not usable (%d usable CUDA device(s); use --backend "
                          "cpu or auto)", device, bp_cuda_device_count());
  else
    *code = cli_fail(cmd, "cannot create a %s context: %s", bp_backend_name(backend),
                     bp_status_string(st));
  return NULL;
}

int cli_argmax(const float *v, int n) {
  if (n == 1) return v[0] >= 0.5f ? 1 : 0;
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}
