/*
 * restore.h -- ragsafe-restore's prefetch (prefetch.c).
 *
 * Recovery asks for one segment at a time and waits for each; with the repository a
 * network round trip away (S3) the round trips, not the bandwidth, set the pace. When
 * asked for segment N, ragsafe-restore also fetches N+1 .. N+K of the same timeline
 * with up to PREFETCH_THREADS threads while the main thread fetches N, each into
 * pg_wal/ragsafe-prefetch/<name> (a temp name first, renamed only once the object's
 * SHA-256 and the segment's page header have been checked; <name>.sum records
 * the digest and the file's identity: boot id, inode, size, mtime). When recovery then
 * asks for one of them, prefetch_take renames the spooled file onto %p and the call
 * returns 0 at once. A file that is not in the repository is simply not spooled (the
 * real call answers "not found"); spooled files older than the segment asked for are
 * removed, and the whole spool goes when recovery asks for a file the repository does
 * not have (the end of the archive: recovery is about to end). The calls never wait
 * for anything but their own threads.
 *
 *     if (prefetch_take(path, name) == 1) -> exit 0
 *     prefetch *p = prefetch_start(loc, path, name, &info, k);   NULL: nothing to do
 *     ... fetch N ...
 *     prefetch_finish(p);
 */
#ifndef RAGSAFE_RESTORE_H
#define RAGSAFE_RESTORE_H

#include "repo.h"
#include "walspool.h"
#include "zst.h"

#define PREFETCH_DEFAULT 8  /* segments: 128 MiB of spool at most, pgBackRest's queue default */
#define PREFETCH_THREADS 8
#define PREFETCH_DIR WALSPOOL_DIR

/* main.c: a restored segment must be the one its name says, from the repository's
 * cluster (page header against name, repository and history). 0 | -1 reported. */
int restore_check_segment(int fd, const char *tmp, const char *name, uint64_t raw_size,
                          storage *st, const repo_info *info);

typedef struct prefetch prefetch;

/* 1: a verified spooled copy of name is now at path; 0: none. Never fails. */
int prefetch_take(const char *path, const char *name);
prefetch *prefetch_start(const char *loc, const char *path, const char *name,
                         const repo_info *info, int k);
void prefetch_finish(prefetch *p);
/* Recovery asked for a file the repository does not have: it is about to end (or to
 * switch timelines); spooled segments would only be left behind in pg_wal. A missing
 * segment clears everything; a missing history file (keep_handover) is also the probe a
 * server makes at start-up, before it asks for the WAL ragsafe-pitr restore handed over:
 * that WAL stays, what the prefetch fetched goes (a recovery that stops at a target ends
 * with such a probe, never asking for the segments fetched beyond it). The spool folder
 * goes once empty. */
void prefetch_clear(const char *path, int keep_handover);

#endif
