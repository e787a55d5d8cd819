/*
 * object.h -- files in and out of the repository as verified zstd objects (zst.h).
 *
 * The hot path of ragsafe-archive / ragsafe-restore and the file path of every other
 * tool: read a file through io_uring, hash and compress it, stream it into a
 * storage_write; or stream an object out, decompress, hash, and check it against its
 * trailer before the caller puts the result in place.
 */
#ifndef RAGSAFE_OBJECT_H
#define RAGSAFE_OBJECT_H

#include <stdint.h>
#include "storage.h"
#include "zst.h"

typedef struct object_opts {
    int level;    /* zstd level (ZST_DEFAULT_LEVEL when 0) */
    int workers;  /* zstd worker threads, 0 = single-threaded */
} object_opts;

/* Store the contents of fd (read from offset 0 to EOF) under key. src_name is for
 * messages. noreplace: RS_EXISTS when the key exists (nothing changed; meta still
 * holds the digest of what fd had). Returns 0 | RS_EXISTS | -1. meta may be NULL. */
int object_put_fd(storage *st, const char *key, int fd, const char *src_name,
                  const object_opts *opts, int noreplace, zst_meta *meta);

/* Store a buffer. Same results. */
int object_put_buf(storage *st, const char *key, const void *buf, size_t len,
                   const object_opts *opts, int noreplace, zst_meta *meta);

/* Decompress key into fd (written from its current position; not fsync'd) and verify.
 * 0 | RS_NOT_FOUND (nothing written) | RS_MISMATCH (reported: the object is damaged:
 * checksum or size mismatch, not zstd, cut short, no trailer) | -1 (reported: I/O).
 * fd -1: verify only. On RS_MISMATCH / -1 fd may hold partial data: callers write to
 * a temp name. meta may be NULL. */
int object_get_fd(storage *st, const char *key, int fd, zst_meta *meta);

/* By default a large object (128 KiB stored and more) is hashed on a thread of its own
 * while it is decompressed. A caller that already runs a worker per core (a parallel
 * restore) passes 0, before its workers start: the extra thread would only add a copy
 * of every byte and a thread per object. */
void object_set_hash_thread(int on);

/* Decompress into a malloc'd buffer (NUL-terminated). max: refuse larger. */
int object_get_buf(storage *st, const char *key, size_t max, char **buf, size_t *len,
                   zst_meta *meta);

/*
 * objinto.c: a WAL segment's object (cap bytes at most) decompressed straight into
 * one buffer (zstd's stable output buffer: no window buffer, no copy out), hashed on
 * a second thread and, with fd >= 0, written to fd from offset 0 on a third, both
 * following the decompression; the size and SHA-256 are checked against the trailer
 * before 0. object_get_into: into out (object_into_alloc: cap + 1 bytes, aligned for
 * huge pages and faulted in at once, free()d by the caller); *len the bytes. 0 |
 * RS_NOT_FOUND | RS_MISMATCH (damaged, or larger than cap: reported) | -1 (reported)
 * | OBJECT_INTO_UNSUPPORTED (this libzstd cannot: nothing read or written, not
 * reported). object_get_seg: object_get_buf's results, the same buffer (NUL after
 * the bytes, free()d), by object_get_into when it can (cap <= OBJECT_INTO_MAX).
 */
#define OBJECT_INTO_UNSUPPORTED 100 /* apart from RS_* (common.h) */
#define OBJECT_INTO_MAX (64u << 20)
uint8_t *object_into_alloc(size_t cap);
int object_get_into(storage *st, const char *key, uint8_t *out, size_t cap, int fd,
                    size_t *len, zst_meta *meta);
int object_get_seg(storage *st, const char *key, size_t cap, char **buf, size_t *len,
                   zst_meta *meta);

/* The trailer only (no decompression). 0 | RS_NOT_FOUND | -1 (reported: unreadable
 * or no trailer). */
int object_meta(storage *st, const char *key, zst_meta *meta);

#endif
