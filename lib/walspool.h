/*
 * walspool.h -- the record that vouches for a WAL segment spooled for restore_command.
 *
 * A spool (pg_wal/ragsafe-prefetch of a restored data directory) holds segments that
 * were verified before they were written there: by ragsafe-restore's prefetch threads,
 * or by ragsafe-pitr restore's plan, which hands over what it verified. Each spooled
 * file X has a record X.sum, written before X appears under its name:
 *
 *     <sha256 hex> <size>\n                      the verified content
 *     <boot id> <inode> <size> <mtime ns>[ <ctime ns>]\n   the file as written
 *                                                (walspool_identity)
 *     [handover <restore id>\n]                  written by ragsafe-pitr restore
 *
 * Spool files are not fsync'd: only the same boot vouches for their contents. The
 * taker (restore_cmd/prefetch.c) uses X as is when its identity still matches, this
 * boot; otherwise it re-hashes X against the first line, and a file that no longer
 * matches is never used.
 *
 *     walspool_identity(tmp, id, sizeof(id));   after the last write, before the rename
 *     walspool_write_sum(dir, name, hex, size, id, extra);   then rename tmp to dir/name
 */
#ifndef RAGSAFE_WALSPOOL_H
#define RAGSAFE_WALSPOOL_H

#include <stddef.h>
#include <stdint.h>

#define WALSPOOL_DIR "ragsafe-prefetch"

/* "<boot id> <inode> <size> <mtime ns>" of path, then " <ctime ns>" when ctime: no
 * write, truncation or touch can leave that unchanged (only the kernel sets a ctime),
 * but a rename changes it on some file systems (ext4), so it is recorded only for a
 * file that stays where it is until taken (a handover). A taker computes the form the
 * record holds (walspool_identity_like). -1 (not reported) when path cannot be stat'd
 * or this boot's id is unknown. */
int walspool_identity(const char *path, int ctime, char *out, size_t n);
/* the identity of path in the form of the recorded one (with a ctime when it has 5
 * fields). */
int walspool_identity_like(const char *path, const char *recorded, char *out, size_t n);

/* dir/name.sum through a temp name and a rename (no fsync: see above); extra: a third
 * line without its newline, or NULL. 0 | -1 (not reported: a spool is an optimisation). */
int walspool_write_sum(const char *dir, const char *name, const char *sha_hex, uint64_t size,
                       const char *id, const char *extra);

#endif
