/*
 * archive.h -- ragsafe-archive's pieces: archiving one file (main.c) and the
 * look-ahead (ahead.c).
 *
 * Look-ahead: PostgreSQL calls archive_command for one segment at a time and waits
 * for each; with the repository a network round trip away (S3) that falls behind a
 * busy primary. When asked for segment N, ragsafe-archive also archives up to
 * AHEAD_QUEUE x workers other segments that PostgreSQL has marked ready
 * (pg_wal/archive_status/X.ready), with `workers` threads, once N itself is
 * archived (N's call also creates repo.json in a new repository; S3 stores without
 * conditional writes would let concurrent first writers race for it, and some, like
 * s3rver, serve a half-written object meanwhile). A segment whose upload was
 * confirmed (archive_file returned 0: the object is committed in the repository) is
 * recorded as a marker file
 * pg_wal/ragsafe-ahead/X.done holding the segment file's inode, size and mtime and
 * the repository; when PostgreSQL then asks for X, ahead_consume finds the marker,
 * checks the file is still the one uploaded and the repository the same, removes
 * the marker and the call returns 0 at once. Nothing
 * is ever recorded before its upload is confirmed, and a lost or stale marker only
 * means X is archived again (the identical copy is found and the call succeeds).
 *
 *     if (ahead_consume(path, name, loc) == 1) -> exit 0
 *     ... archive N ...
 *     ahead *a = ahead_start(loc, path, name, &oo, workers);   NULL: nothing to do
 *     ahead_finish(a);           joins the workers (their markers are written)
 */
#ifndef RAGSAFE_ARCHIVE_H
#define RAGSAFE_ARCHIVE_H

#include "object.h"
#include "repo.h"
#include "uring.h"

#define AHEAD_DEFAULT 4  /* threads */
#define AHEAD_QUEUE 4    /* segments per thread and call: fewer, longer calls */
#define AHEAD_DIR "ragsafe-ahead"

/* main.c: archive one file; *rp is opened on first use and reused (sealed when the
 * process has a key: repo_cli_setup). An exit status. */
int archive_file(const char *loc, repo **rp, uring *ur, const char *path, const char *name,
                 const object_opts *oo);

typedef struct ahead ahead;

/* 1: name was archived ahead (marker found and removed); 0: not. Never fails. */
int ahead_consume(const char *path, const char *name, const char *loc);
/* Start archiving other ready segments next to path. NULL when there are none or
 * the look-ahead cannot run (not reported: it is an optimisation). */
ahead *ahead_start(const char *loc, const char *path, const char *name,
                   const object_opts *oo, int workers);
void ahead_finish(ahead *a);

#endif
