/*
 * file_util.h - shared plumbing of the file readers and writers (src/io):
 * whole-file reads with a size cap, gzip inflation, the atomic save, strict
 * locale-independent number parsing, and bp_data allocation. Internal: not
 * part of the public API.
 */
#ifndef BP_IO_FILE_UTIL_H
#define BP_IO_FILE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backprop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "a regular file", "a directory", "a FIFO", "a character device", ...:
 * the kind of file st_mode describes, for messages. */
const char *bp_io_file_type(unsigned mode);

/* Opens path for reading without blocking (a FIFO without a writer would
 * hang open() forever) and accepts only a regular file of at most max_size
 * bytes: devices (/dev/zero), FIFOs, sockets and directories are BP_ERR_IO
 * naming what the path is. On success *f is open (blocking again) and *size
 * is the file's size. */
bp_status bp_io_open_regular(bp_context *ctx, const char *path, uint64_t max_size, FILE **f,
                             uint64_t *size);

/* Reads the whole file at path into a fresh malloc'd buffer (*data, *len;
 * one extra NUL byte follows the data so text parsers may rely on it).
 * Only a regular file is read (bp_io_open_regular), and no more than its
 * size at the open: what is allocated is bounded by what the file holds.
 * A file that cannot be read, or is larger than max_size, is BP_ERR_IO with
 * the file name (and the errno text). On failure *data is NULL. */
bp_status bp_io_read_file(bp_context *ctx, const char *path, size_t max_size, unsigned char **data,
                          size_t *len);

/* Thread-safe strerror: the text for err, in buf (or static storage). */
const char *bp_io_errno_text(int err, char *buf, size_t n);

/* 1 if data starts with the gzip magic bytes 1f 8b. */
int bp_io_is_gzip(const void *data, size_t len);

/* Inflates a gzip stream (one or more concatenated members) into a fresh
 * malloc'd buffer. Output beyond max_out, a truncated or corrupt stream, or
 * trailing garbage is BP_ERR_FORMAT naming `name`. */
bp_status bp_io_gunzip(bp_context *ctx, const void *data, size_t len, size_t max_out,
                       const char *name, unsigned char **out, size_t *out_len);

/* Reads a file and, when it is gzip-compressed, inflates it (both steps
 * capped at max_size). */
bp_status bp_io_read_file_gz(bp_context *ctx, const char *path, size_t max_size,
                             unsigned char **data, size_t *len);

/* Checks, before anything is written, that path can be saved to: it is
 * absent or a regular file (a device, FIFO, socket or directory is refused:
 * the rename would replace it), its directory exists and is writable, and
 * its name leaves room for the temporary's suffix. A symbolic link is
 * followed to the file it names (which must be absent-but-resolvable or
 * regular); a dangling link is refused. On success, when resolved is not
 * NULL, *resolved is the malloc'd path that will really be replaced. */
bp_status bp_io_check_save_target(bp_context *ctx, const char *path, char **resolved);

/* Replaces path atomically with len bytes, after bp_io_check_save_target:
 * temp file "<target>.tmp.<pid>.XXXXXX" in the target's directory, write,
 * fflush, fsync, fclose, rename, fsync of the directory. Temporaries of the
 * same target left by processes that no longer exist (a save killed by
 * SIGKILL) are removed first. On failure (BP_ERR_IO) the temp file is
 * removed and path is untouched. */
bp_status bp_io_atomic_write(bp_context *ctx, const char *path, const void *data, size_t len);

/* Test hook (tests only): the nth write of file data from now on fails with
 * ENOSPC as if the disk were full (1 = the next one); 0 disarms. Data is
 * written in chunks of BP_IO_WRITE_CHUNK bytes, one write per chunk. */
#define BP_IO_WRITE_CHUNK ((size_t)65536)
void bp_io_debug_fail_write(long nth);

/* Runs fn(arg) with the calling thread switched to the "C" numeric locale
 * (uselocale: thread-local, so other threads and the caller's setlocale are
 * unaffected) and returns its status. Text parsers run inside it so that
 * bp_io_parse_float reads '.' as the decimal point whatever the locale. */
bp_status bp_io_with_c_locale(bp_context *ctx, bp_status (*fn)(void *arg), void *arg);

/* Parses a decimal floating-point number occupying exactly s[0..n) (no
 * surrounding blanks): [+-] digits [. digits] [(e|E) [+-] digits]. Rejects
 * inf, nan, hex and values outside float range. Must run inside
 * bp_io_with_c_locale. Returns 1 on success. */
int bp_io_parse_float(const char *s, size_t n, float *out);

/* Allocates a bp_data with n x n_in X and n x n_out Y (zero-filled), checking
 * the products for overflow. Errors are recorded on ctx. */
bp_status bp_io_data_alloc(bp_context *ctx, int n, int n_in, int n_out, bp_data **out);

#ifdef __cplusplus
}
#endif
#endif /* BP_IO_FILE_UTIL_H */
