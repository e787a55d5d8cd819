/*
 * timeline.h -- the timeline graph of a repository, from its history files.
 *
 * Timeline 1 has no history file; timeline N > 1 has wal/0000000N.history.zst listing
 * every ancestor with the LSN where its child branched off. A *path* is the sequence
 * of (timeline, begin, end) a recovery to timeline N replays, oldest first; the last
 * element is N itself with end TIMELINE_END.
 *
 *     timeline_set ts; timeline_set_init(&ts);
 *     timeline_load(&ts, st)                 0 | -1 (reported: unreadable storage)
 *     timeline_get_path(&ts, 3, &path)           0 | RS_NOT_FOUND (no such timeline) |
 *                                                RS_MISMATCH (its history is damaged) | -1
 *
 * A damaged history file (fails its trailer, does not parse) does not fail the load:
 * it is reported, recorded in ts.damaged, and that timeline alone is unusable (every
 * other timeline still is). timeline_latest walks through it, so a plan for "latest"
 * meets it and refuses, naming it, rather than silently stopping one timeline short.
 *     timeline_path_release(&path); timeline_set_release(&ts);
 *
 * Which segment file PostgreSQL reads for segment number s on a path (its
 * XLogFileReadAnyTLI): the newest timeline on the path whose begin lies in a segment
 * <= s. timeline_path_tli_for_seg() gives it.
 */
#ifndef RAGSAFE_TIMELINE_H
#define RAGSAFE_TIMELINE_H

#include <stddef.h>
#include <stdint.h>
#include "storage.h"
#include "walname.h"

#define TIMELINE_END UINT64_MAX

typedef struct timeline_step {
    uint32_t tli;
    uint64_t begin;   /* first LSN on this timeline (0 for the first) */
    uint64_t end;     /* switch point to the next step, TIMELINE_END for the last */
} timeline_step;

typedef struct timeline_path {
    size_t n;
    timeline_step *steps;  /* malloc'd, oldest first */
} timeline_path;

typedef struct timeline_damage {
    uint32_t tli;
    char reason[96];
} timeline_damage;

typedef struct timeline_set {
    size_t n;
    walhistory *hist;      /* malloc'd, sorted by tli */
    size_t ndamaged;
    timeline_damage *damaged; /* malloc'd: history files that could not be used */
} timeline_set;

void timeline_set_init(timeline_set *ts);
void timeline_set_release(timeline_set *ts);
/* Read and parse every wal/<TTTTTTTT>.history.zst (verified objects). */
int timeline_load(timeline_set *ts, storage *st);
/* Add one parsed history (takes ownership of h's entries). For tests and callers
 * that read history files themselves. */
int timeline_add(timeline_set *ts, walhistory *h);
/* Why tli's history file is damaged, or NULL when it is not. */
const char *timeline_damaged(const timeline_set *ts, uint32_t tli);
/* 1 when tli is 1 or has a (usable) history file. */
int timeline_exists(const timeline_set *ts, uint32_t tli);
/* The history of tli (NULL for timeline 1 or unknown). */
const walhistory *timeline_history(const timeline_set *ts, uint32_t tli);
/* PostgreSQL's "latest": from `from`, probe from+1, from+2, ... while a history
 * file exists (a damaged one counts: it exists, PostgreSQL would read it). */
uint32_t timeline_latest(const timeline_set *ts, uint32_t from);
/* The highest timeline with a history file (1 when none). */
uint32_t timeline_max(const timeline_set *ts);

int timeline_get_path(const timeline_set *ts, uint32_t tli, timeline_path *out);
void timeline_path_release(timeline_path *p);
/* 1 when (tli, lsn) lies on the path: a step of that timeline with begin <= lsn < end. */
int timeline_path_contains(const timeline_path *p, uint32_t tli, uint64_t lsn);
/* The timeline whose file PostgreSQL reads for segment segno (0 if none). */
uint32_t timeline_path_tli_for_seg(const timeline_path *p, uint64_t segno, uint32_t seg_size);
/* The timeline the path is on at lsn (0 if none). */
uint32_t timeline_path_tli_at(const timeline_path *p, uint64_t lsn);

#endif
