/* file_util.c - whole-file reads, gzip, the atomic save, strict numbers. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700 /* realpath */

#include "io/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

/* strerror is not thread-safe; the XSI strerror_r is, but _GNU_SOURCE swaps
 * in a variant with another signature, so both are handled. */
const char *bp_io_errno_text(int err, char *buf, size_t n) {
#if defined(_GNU_SOURCE)
  return strerror_r(err, buf, n);
#else
  if (strerror_r(err, buf, n) != 0) snprintf(buf, n, "error %d", err);
  return buf;
#endif
}

/* ---- Reading ------------------------------------------------------------- */

const char *bp_io_file_type(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

bp_status bp_io_open_regular(bp_context *ctx, const char *path, uint64_t max_size, FILE **out,
                             uint64_t *size) {
  char eb[128];
  *out = NULL;
  *size = 0;
  if (!path) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "file path is NULL");
  /* O_NONBLOCK: open() on a FIFO without a writer would block forever; the
   * type is checked on the descriptor (not on the name, which could be
   * swapped between a stat and the open), then the flag is cleared. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return bp_error(ctx, BP_ERR_IO, "%s: cannot open: %s", path,
                    bp_io_errno_text(e, eb, sizeof eb));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return bp_error(ctx, BP_ERR_IO, "%s: cannot stat: %s", path,
                    bp_io_errno_text(e, eb, sizeof eb));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return bp_error(ctx, BP_ERR_IO, "%s: cannot read: it is %s, not a regular file", path,
                    bp_io_file_type((unsigned)st.st_mode));
  }
  if (st.st_size < 0 || (uint64_t)st.st_size > max_size) {
    close(fd);
    return bp_error(ctx, BP_ERR_IO, "%s: file size %jd exceeds the limit of %llu bytes", path,
                    (intmax_t)st.st_size, (unsigned long long)max_size);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int e = errno;
    close(fd);
    return bp_error(ctx, BP_ERR_IO, "%s: cannot open: %s", path,
                    bp_io_errno_text(e, eb, sizeof eb));
  }
  *out = f;
  *size = (uint64_t)st.st_size;
  return BP_OK;
}

bp_status bp_io_read_file(bp_context *ctx, const char *path, size_t max_size, unsigned char **data,
                          size_t *len) {
  char eb[128];
  *data = NULL;
  *len = 0;
  if (max_size > SIZE_MAX - 1) max_size = SIZE_MAX - 1; /* room for the NUL */
  FILE *f;
  uint64_t size;
  bp_status st = bp_io_open_regular(ctx, path, max_size, &f, &size);
  if (st != BP_OK) return st;
  /* Only regular files get here, so the size is known and bounds both the
   * allocation and the read: /dev/zero or a FIFO can no longer feed bytes
   * without end. A file that grows meanwhile is read as it was. */
  unsigned char *buf = malloc((size_t)size + 1);
  if (!buf) {
    fclose(f);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes", path,
                    (unsigned long long)size + 1);
  }
  size_t got = size ? fread(buf, 1, (size_t)size, f) : 0;
  int failed = ferror(f), e = errno;
  fclose(f);
  if (failed || got != (size_t)size) {
    free(buf);
    if (failed)
      return bp_error(ctx, BP_ERR_IO, "%s: read failed: %s", path,
                      bp_io_errno_text(e, eb, sizeof eb));
    return bp_error(ctx, BP_ERR_IO, "%s: the file shrank while it was read (%zu of %llu bytes)",
                    path, got, (unsigned long long)size);
  }
  buf[got] = 0;
  *data = buf;
  *len = got;
  return BP_OK;
}

int bp_io_is_gzip(const void *data, size_t len) {
  const unsigned char *p = data;
  return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

bp_status bp_io_gunzip(bp_context *ctx, const void *data, size_t len, size_t max_out,
                       const char *name, unsigned char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (!name) name = "<buffer>";
  if (max_out > SIZE_MAX - 2) max_out = SIZE_MAX - 2;
  const unsigned char *in = data;
  /* ISIZE (last 4 bytes, size mod 2^32) sizes the first allocation. It is
   * untrusted, so it is believed only up to what deflate can produce from len
   * bytes (at most 1032:1); later growth follows the output actually
   * produced, and max_out is what stops a decompression bomb. */
  size_t cap = 65536;
  if (len >= 18) {
    size_t hint = (size_t)in[len - 4] | (size_t)in[len - 3] << 8 | (size_t)in[len - 2] << 16 |
                  (size_t)in[len - 1] << 24;
    size_t possible = len <= (SIZE_MAX - 1) / 1032 ? len * 1032 : SIZE_MAX - 1;
    if (hint > possible) hint = possible;
    if (hint + 1 > cap) cap = hint + 1;
  }
  if (cap > max_out + 1) cap = max_out + 1;
  unsigned char *buf = malloc(cap);
  if (!buf) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", name, cap);

  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    free(buf);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot initialize zlib", name);
  }
  size_t in_pos = 0, used = 0;
  bp_status st = BP_OK;
  for (;;) {
    if (used == cap) {
      if (cap > max_out) {
        st = bp_error(ctx, BP_ERR_FORMAT, "%s: inflated data exceeds the limit of %zu bytes", name,
                      max_out);
        break;
      }
      size_t ncap = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
      if (ncap > max_out + 1) ncap = max_out + 1;
      unsigned char *nb = realloc(buf, ncap);
      if (!nb) {
        st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", name, ncap);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    /* avail_in/avail_out are 32-bit: feed and drain in slices. */
    size_t in_left = len - in_pos, out_left = cap - used;
    zs.next_in = (Bytef *)(in + in_pos);
    zs.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
    zs.next_out = buf + used;
    zs.avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
    uInt avail_in0 = zs.avail_in, avail_out0 = zs.avail_out;
    int ret = inflate(&zs, Z_NO_FLUSH);
    in_pos += avail_in0 - zs.avail_in;
    used += avail_out0 - zs.avail_out;
    if (ret == Z_STREAM_END) {
      if (in_pos == len) break;
      /* gzip allows concatenated members; anything else after one is junk. */
      if (len - in_pos >= 2 && in[in_pos] == 0x1f && in[in_pos + 1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: trailing data after the gzip stream", name,
                    in_pos);
      break;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR) {
      if (zs.avail_out == 0) continue; /* output full: grow and go on */
      st = bp_error(ctx, BP_ERR_FORMAT, "%s: gzip stream truncated at byte %zu", name, len);
      break;
    }
    if (ret == Z_MEM_ERROR) {
      st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: zlib out of memory", name);
      break;
    }
    st = bp_error(ctx, BP_ERR_FORMAT, "%s: byte %zu: corrupt gzip data (%s)", name, in_pos,
                  zs.msg ? zs.msg : "invalid stream");
    break;
  }
  inflateEnd(&zs);
  if (st != BP_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  *out_len = used;
  return BP_OK;
}

bp_status bp_io_read_file_gz(bp_context *ctx, const char *path, size_t max_size,
                             unsigned char **data, size_t *len) {
  unsigned char *raw;
  size_t raw_len;
  bp_status st = bp_io_read_file(ctx, path, max_size, &raw, &raw_len);
  if (st != BP_OK) {
    *data = NULL;
    *len = 0;
    return st;
  }
  if (!bp_io_is_gzip(raw, raw_len)) {
    *data = raw;
    *len = raw_len;
    return BP_OK;
  }
  st = bp_io_gunzip(ctx, raw, raw_len, max_size, path, data, len);
  free(raw);
  return st;
}

/* ---- Atomic save --------------------------------------------------------- */

/* The test hook: atomic, so that concurrent saves in different threads stay
 * well-defined even while it is armed. */
static atomic_long fail_write_countdown;

void bp_io_debug_fail_write(long nth) { atomic_store(&fail_write_countdown, nth > 0 ? nth : 0); }

static int should_fail_write(void) {
  long c = atomic_load(&fail_write_countdown);
  while (c > 0) {
    if (atomic_compare_exchange_weak(&fail_write_countdown, &c, c - 1)) return c == 1;
  }
  return 0;
}

/* fsync of the directory makes the rename itself durable. */
static int fsync_parent_dir(const char *path, int *err) {
  const char *slash = strrchr(path, '/');
  char *dir;
  if (!slash) {
    dir = malloc(2);
    if (dir) strcpy(dir, ".");
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    dir = malloc(n + 1);
    if (dir) {
      memcpy(dir, path, n);
      dir[n] = 0;
    }
  }
  if (!dir) return 0; /* nothing more can be done; the data itself is synced */
  int fd = open(dir, O_RDONLY);
  free(dir);
  if (fd < 0) return 0; /* e.g. a directory we may write but not read */
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  /* Some file systems cannot fsync a directory (EINVAL): not an error. */
  if (rc != 0 && e != EINVAL) {
    *err = e;
    return -1;
  }
  return 0;
}

/* The temporary's name: "<target>.tmp.<pid>.XXXXXX". The pid lets a later
 * save tell the leftovers of a killed process (pid gone) from the live
 * temporary of a concurrent save (pid alive), which must be left alone. */
#define TMP_MARK ".tmp."
#define TMP_SUFFIX_MAX (sizeof TMP_MARK - 1 + 20 + 1 + 6) /* pid up to 20 digits */

/* Splits path into its directory ("." when none) and base name. */
static int split_path(const char *path, char **dir, const char **base) {
  const char *slash = strrchr(path, '/');
  size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  *dir = malloc(n + 1);
  if (!*dir) return -1;
  if (!slash) memcpy(*dir, ".", 2);
  else {
    memcpy(*dir, path, n);
    (*dir)[n] = 0;
  }
  *base = slash ? slash + 1 : path;
  return 0;
}

bp_status bp_io_check_save_target(bp_context *ctx, const char *path, char **resolved) {
  char eb[128];
  if (resolved) *resolved = NULL;
  if (!path || !*path) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "save: empty file name");
  struct stat st;
  char *target = NULL;
  if (lstat(path, &st) != 0) {
    int e = errno;
    if (e != ENOENT)
      return bp_error(ctx, BP_ERR_IO, "%s: cannot check the target: %s", path,
                      bp_io_errno_text(e, eb, sizeof eb));
    target = strdup(path);
  } else if (S_ISLNK(st.st_mode)) {
    /* A symbolic link is followed: the file it names is replaced atomically
     * (the temporary goes next to it) and the link is kept. A dangling link
     * is refused: creating its target would write to a place the name does
     * not show. */
    target = realpath(path, NULL);
    if (!target) {
      int e = errno;
      return bp_error(ctx, BP_ERR_IO,
                      "%s: a symbolic link whose target cannot be resolved (%s); refusing to "
                      "write through it",
                      path, bp_io_errno_text(e, eb, sizeof eb));
    }
    if (stat(target, &st) != 0) {
      free(target);
      return bp_error(ctx, BP_ERR_IO, "%s: cannot check the link's target", path);
    }
  } else {
    target = strdup(path);
  }
  if (!target) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  if (lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
    bp_status r = bp_error(ctx, BP_ERR_IO,
                           "%s: it is %s, not a regular file; refusing to replace it (only a "
                           "regular file or a new name can be saved to)",
                           path, bp_io_file_type((unsigned)st.st_mode));
    free(target);
    return r;
  }
  char *dir;
  const char *base;
  if (split_path(target, &dir, &base) != 0) {
    free(target);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  bp_status r = BP_OK;
  long name_max = pathconf(dir, _PC_NAME_MAX);
  if (name_max <= 0) name_max = 255;
  struct stat dst;
  if (!*base) {
    r = bp_error(ctx, BP_ERR_IO, "%s: names a directory, not a file", path);
  } else if (stat(dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
    r = bp_error(ctx, BP_ERR_IO, "%s: the directory %s does not exist", path, dir);
  } else if (strlen(base) + TMP_SUFFIX_MAX > (size_t)name_max) {
    r = bp_error(ctx, BP_ERR_IO,
                 "%s: the file name is %zu bytes; with the temporary file's suffix (up to %zu "
                 "bytes) it must fit in %ld",
                 path, strlen(base), (size_t)TMP_SUFFIX_MAX, name_max);
  } else if (access(dir, W_OK | X_OK) != 0) {
    int e = errno;
    r = bp_error(ctx, BP_ERR_IO, "%s: cannot create files in %s: %s", path, dir,
                 bp_io_errno_text(e, eb, sizeof eb));
  }
  free(dir);
  if (r != BP_OK || !resolved) free(target);
  else *resolved = target;
  return r;
}

/* Removes "<base>.tmp.<pid>.XXXXXX" files in dir whose process is gone: what
 * a save killed by SIGKILL (or a power cut) left behind. Best effort. */
static void remove_stale_temporaries(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  if (!d) return;
  size_t bl = strlen(base), ml = sizeof TMP_MARK - 1;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    const char *n = ent->d_name;
    if (strncmp(n, base, bl) != 0 || strncmp(n + bl, TMP_MARK, ml) != 0) continue;
    const char *p = n + bl + ml;
    char *end;
    errno = 0;
    long long pid = strtoll(p, &end, 10);
    if (errno || end == p || *end != '.' || strlen(end + 1) != 6 || pid <= 0 ||
        pid > (long long)INT_MAX)
      continue;
    if ((pid_t)pid == getpid()) continue; /* another thread's save in progress */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    size_t dl = strlen(dir);
    char *full = malloc(dl + 1 + strlen(n) + 1);
    if (!full) break;
    sprintf(full, "%s/%s", dir, n);
    (void)unlink(full);
    free(full);
  }
  closedir(d);
}

bp_status bp_io_atomic_write(bp_context *ctx, const char *path, const void *data, size_t len) {
  char eb[128];
  if (!path || (!data && len)) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "save: NULL argument");
  char *target;
  bp_status cs = bp_io_check_save_target(ctx, path, &target);
  if (cs != BP_OK) return cs;
  char *dir;
  const char *base;
  if (split_path(target, &dir, &base) != 0) {
    free(target);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate a path", path);
  }
  remove_stale_temporaries(dir, base);
  free(dir);

  size_t plen = strlen(target);
  char *tmp = malloc(plen + TMP_SUFFIX_MAX + 1);
  if (!tmp) {
    free(target);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: cannot allocate a path", path);
  }
  sprintf(tmp, "%s" TMP_MARK "%ld.XXXXXX", target, (long)getpid());

  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    free(target);
    return bp_error(ctx, BP_ERR_IO, "%s: cannot create a temporary file: %s", path,
                    bp_io_errno_text(e, eb, sizeof eb));
  }
  /* mkstemp creates mode 0600; a replaced file keeps its mode, a new one gets
   * 0644 (the umask cannot be read without changing it, racing other threads). */
  struct stat st;
  mode_t mode = 0644;
  if (stat(target, &st) == 0 && S_ISREG(st.st_mode)) mode = st.st_mode & 07777;
  (void)fchmod(fd, mode); /* best effort: the permissions are not the data */

  const char *what = NULL;
  int err = 0;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    err = errno;
    close(fd);
    what = "cannot open the temporary file";
  } else {
    const unsigned char *p = data;
    for (size_t off = 0; off < len && !what;) {
      size_t n = len - off < BP_IO_WRITE_CHUNK ? len - off : BP_IO_WRITE_CHUNK;
      if (should_fail_write()) {
        err = ENOSPC;
        what = "write failed";
      } else if (fwrite(p + off, 1, n, f) != n) {
        err = errno;
        what = "write failed";
      }
      off += n;
    }
    if (!what && fflush(f) != 0) {
      err = errno;
      what = "flush failed";
    }
    if (!what && fsync(fileno(f)) != 0) {
      err = errno;
      what = "fsync failed";
    }
    /* fclose releases the descriptor even when it fails, so it runs always;
     * its own failure (a delayed write error) counts only if none came before. */
    if (fclose(f) != 0 && !what) {
      err = errno;
      what = "close failed";
    }
  }
  /* The target is checked again just before the rename: it may have become
   * something else (a directory, a device) while the data was written. */
  if (!what && lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
    unlink(tmp);
    free(tmp);
    bp_status r = bp_error(ctx, BP_ERR_IO,
                           "%s: it became %s while the file was written; refusing to replace it",
                           path, bp_io_file_type((unsigned)st.st_mode));
    free(target);
    return r;
  }
  if (!what && rename(tmp, target) != 0) {
    err = errno;
    what = "cannot rename the temporary file over it";
  }
  if (what) {
    unlink(tmp);
    free(tmp);
    free(target);
    return bp_error(ctx, BP_ERR_IO, "%s: %s: %s; the file was not changed", path, what,
                    bp_io_errno_text(err, eb, sizeof eb));
  }
  free(tmp);
  int dir_failed = fsync_parent_dir(target, &err);
  free(target);
  if (dir_failed != 0)
    return bp_error(ctx, BP_ERR_IO,
                    "%s: written and renamed, but the fsync of its directory failed (%s): the "
                    "new file may not survive a crash",
                    path, bp_io_errno_text(err, eb, sizeof eb));
  return BP_OK;
}

/* ---- Numbers ------------------------------------------------------------- */

bp_status bp_io_with_c_locale(bp_context *ctx, bp_status (*fn)(void *arg), void *arg) {
  locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (c == (locale_t)0) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "cannot create the C locale");
  locale_t old = uselocale(c);
  bp_status st = fn(arg);
  uselocale(old);
  freelocale(c);
  return st;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int bp_io_parse_float(const char *s, size_t n, float *out) {
  /* The grammar is checked by hand because strtof also accepts leading
   * blanks, "inf", "nan" and hex floats, none of which belong in a data file. */
  size_t i = 0, digits = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  while (i < n && is_digit(s[i])) ++i, ++digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && is_digit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < n && is_digit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return 0;
  }
  if (i != n) return 0;

  char small[128];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf) return 0;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  float v = strtof(buf, &end);            /* correctly rounded to float, unlike (float)strtod */
  int ok = end == buf + n && isfinite(v); /* underflow to 0/subnormal is accepted */
  if (buf != small) free(buf);
  if (ok) *out = v;
  return ok;
}

/* ---- Data sets ----------------------------------------------------------- */

bp_status bp_io_data_alloc(bp_context *ctx, int n, int n_in, int n_out, bp_data **out) {
  *out = NULL;
  if (n < 1 || n_in < 1 || n_out < 1)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "data set shape %d x (%d, %d) is invalid", n,
                    n_in, n_out);
  if ((size_t)n > SIZE_MAX / sizeof(float) / (size_t)n_in ||
      (size_t)n > SIZE_MAX / sizeof(float) / (size_t)n_out)
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "data set of %d x (%d, %d) is too large", n, n_in,
                    n_out);
  /* A header may declare a set that fits in size_t yet not in this machine:
   * refused with a clear message instead of an allocation that the kernel
   * might grant lazily and kill the process for later. */
  double need = ((double)n_in + (double)n_out) * (double)n * (double)sizeof(float);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 && need > (double)pages * (double)page)
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "data set of %d x (%d, %d) needs %.1f GiB as floats, more than this "
                    "machine's %.1f GiB of memory",
                    n, n_in, n_out, need / 1073741824.0, (double)pages * (double)page / 1073741824.0);
  bp_data *d = calloc(1, sizeof *d);
  if (d) {
    d->X = calloc((size_t)n * (size_t)n_in, sizeof(float));
    d->Y = calloc((size_t)n * (size_t)n_out, sizeof(float));
  }
  if (!d || !d->X || !d->Y) {
    bp_data_free(d);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "cannot allocate a data set of %d x (%d, %d)", n,
                    n_in, n_out);
  }
  d->n = n;
  d->n_in = n_in;
  d->n_out = n_out;
  *out = d;
  return BP_OK;
}

void bp_data_free(bp_data *data) {
  if (!data) return;
  free(data->X);
  free(data->Y);
  if (data->class_names)
    for (int i = 0; i < data->n_out; ++i) free(data->class_names[i]);
  free(data->class_names);
  free(data);
}
