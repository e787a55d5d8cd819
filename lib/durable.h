/*
 * durable.h -- "durable or absent": files appear under their final name complete and
 * fsync'd, or not at all. The one place every tool gets this from.
 *
 * Recipe (the order of PostgreSQL's durable_rename): write a temp name in the same
 * directory, fsync the file, rename, fsync the directory. An fsync failure fails the
 * operation and is never retried (the page cache may have dropped the data).
 *
 *     durable_file *f = durable_open(final_path, ur, 0640);   NULL: reported
 *     durable_write(f, buf, len) ...                          -1: reported
 *     r = durable_commit(f, DURABLE_NOREPLACE);               0 | RS_EXISTS | -1
 *     durable_free(f);      after commit; before commit it aborts (unlinks the temp)
 *
 * The temp file is "<dir>/.<name>.tmp", held under flock while in use: a temp left by
 * a process killed with -9 is taken over and truncated by the next writer of the same
 * name. A live concurrent writer of the same name makes the second one write a private
 * temp ("<dir>/.<name>.<pid>.<n>.tmp"); with DURABLE_NOREPLACE the first commit wins
 * and the other gets RS_EXISTS.
 * Names that start with '.' are never objects: listings skip them.
 *
 * Writes go through uring.h (io_uring or the fallback); ur may be NULL for plain
 * syscalls.
 */
#ifndef RAGSAFE_DURABLE_H
#define RAGSAFE_DURABLE_H

#include <stddef.h>
#include <sys/types.h>
#include "uring.h"

typedef struct durable_file durable_file;

enum { DURABLE_NOREPLACE = 1 };

durable_file *durable_open(const char *path, uring *ur, mode_t mode);
int durable_write(durable_file *f, const void *buf, size_t len);
/* Bytes written so far. */
uint64_t durable_size(const durable_file *f);
/* fsync, rename into place (RENAME_NOREPLACE with DURABLE_NOREPLACE: returns
 * RS_EXISTS, nothing reported, temp removed, when the final name exists), fsync dir. */
int durable_commit(durable_file *f, int flags);
void durable_free(durable_file *f);

/* Whole small file in one call (temp + fsync + rename + dir fsync). */
int durable_write_file(const char *path, const void *buf, size_t len, mode_t mode, int flags);

/* mkdir -p; each directory created is fsync'd into its parent. */
int durable_mkdirs(const char *path, mode_t mode);
/* The same, each directory created chown'ed to uid:gid first (uid (uid_t)-1: left
 * alone): root writing into a repository another user owns (storage.c). */
int durable_mkdirs_owned(const char *path, mode_t mode, uid_t uid, gid_t gid);
/* fchown the temp file (before the commit renames it into place); uid (uid_t)-1: a
 * no-op. 0 | -1 (reported). */
int durable_fchown(durable_file *f, uid_t uid, gid_t gid);

/* The one no-replace rename of the code base (every commit that must never replace a
 * name goes through it): rename oldpath (a file or a directory) to newpath unless
 * newpath exists. 0 | RS_EXISTS (nothing changed, nothing reported) | -1 (reported).
 * Without RENAME_NOREPLACE (NFS, FUSE: EINVAL) a file is link()ed and unlinked, a
 * directory checked for and renamed (callers hold the repository lock). Nothing is
 * fsync'd: the caller makes the rename durable. */
int durable_rename_noreplace(const char *oldpath, const char *newpath);

/* Test hook: on != 0 behaves as a file system without RENAME_NOREPLACE. The
 * environment variable RAGSAFE_NO_RENAME_NOREPLACE=1 does the same (read once). */
void durable_set_no_rename_noreplace(int on);

/* rename(old, new) then fsync both parent directories. */
int durable_rename(const char *oldpath, const char *newpath);

/* fsync a directory (or a file) by path. */
int durable_fsync_path(const char *path);

/* Recursively fsync every file and directory under path (a restored data dir). */
int durable_fsync_tree(const char *path);

/*
 * One syncfs instead of an fsync per file, for a large set written at once (a restored
 * data directory): see durable.c for why that is as durable.
 *
 *     int sfd = durable_sync_open(parent);   before the first write; -1: not usable here
 *     ... write files, make directories ...
 *     durable_sync_tree(sfd, dir);           syncfs, or durable_fsync_tree when sfd < 0
 *     durable_sync_close(sfd);
 */
int durable_sync_open(const char *path);
int durable_sync_tree(int sfd, const char *path);
void durable_sync_close(int sfd);

/* rm -rf path (no error when absent). */
int durable_remove_tree(const char *path);

#endif
