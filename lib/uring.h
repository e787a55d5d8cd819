/*
 * uring.h -- sequential file I/O through io_uring, with a plain-syscall fallback.
 *
 * One `uring` per process (or thread). uring_new() tries io_uring_queue_init; when
 * the kernel or a seccomp profile refuses it, or RAGSAFE_NO_URING=1 is set, the same
 * object runs every operation with pread/pwrite/fsync instead (noted at debug level,
 * never an error). Callers do not care which path runs.
 *
 * Like liburing, functions here return -errno and never report: the caller, which
 * knows the path, reports (log_errnum(-ret, ...)).
 *
 * Reader: read-ahead of `depth` chunks. uring_reader_next() hands back the next chunk
 * (valid until the next call) and submits the read of a later one, so the caller's
 * work on this chunk overlaps the kernel's read of the next.
 *     uring_reader *r = uring_reader_new(ur, fd, 0, chunk, depth);
 *     while ((n = uring_reader_next(r, &buf)) > 0) work(buf, n);   n < 0: -errno
 *     uring_reader_free(r);
 *
 * Writer: write-behind. uring_writer_write() copies into a chunk buffer and submits
 * full chunks without waiting; uring_writer_finish(w, 1) submits the last chunk and an
 * fsync linked behind it (IOSQE_IO_LINK) and waits for everything. A failed write or
 * fsync fails finish; an fsync failure is never retried. A short write is completed
 * with plain pwrite, which then fails with the real cause (ENOSPC) if there is one.
 *
 * Fault injection for tests: uring_set_fault() installs a hook that sees every
 * completed operation (kind, result) and may replace the result, on both paths.
 */
#ifndef RAGSAFE_URING_H
#define RAGSAFE_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct uring uring;
typedef struct uring_reader uring_reader;
typedef struct uring_writer uring_writer;

enum uring_op_kind { URING_OP_READ, URING_OP_WRITE, URING_OP_FSYNC };

/* NULL only on out-of-memory (errno set). */
uring *uring_new(unsigned entries);
/* Always the plain-syscall path (small files, where a ring costs more than it saves). */
uring *uring_new_plain(void);
/* io_uring only when RAGSAFE_URING is set (not "0"), else plain syscalls: for the WAL
 * commands, where the ring measured more CPU than it overlapped on 2-core VMs but may pay
 * on fast local NVMe (RAGSAFE_NO_URING still wins). */
uring *uring_new_opt_in(unsigned entries);
void uring_free(uring *ur);
/* 1 when io_uring is in use, 0 on the fallback path. */
int uring_active(const uring *ur);

uring_reader *uring_reader_new(uring *ur, int fd, off_t start, size_t chunk, unsigned depth);
ssize_t uring_reader_next(uring_reader *r, const void **buf);
void uring_reader_free(uring_reader *r);

uring_writer *uring_writer_new(uring *ur, int fd, size_t chunk, unsigned depth);
int uring_writer_write(uring_writer *w, const void *buf, size_t len);
int uring_writer_finish(uring_writer *w, int do_fsync);
/* Bytes accepted so far. */
uint64_t uring_writer_offset(const uring_writer *w);
void uring_writer_free(uring_writer *w);

/* fsync(fd) through the ring (fallback: fsync). -errno. */
int uring_fsync(uring *ur, int fd);

typedef int (*uring_fault_fn)(enum uring_op_kind kind, int res);
void uring_set_fault(uring_fault_fn fn);

#endif
