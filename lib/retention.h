/*
 * retention.h -- which base backups a retention policy keeps, and which WAL segments.
 *
 * Pure functions over the backups' stop times and WAL positions: no I/O, no clock (the
 * caller passes "now"), so the policy can be tested on made-up calendars
 * (tests/unit/check_retention.c). ragsafe-pitr expire loads the inventory, asks these
 * functions, then deletes.
 *
 *     retention_policy p = {.now = time(NULL), .window = 7 * 86400, .keep_backups = -1,
 *                           .min_backups = 1, .daily = 30};
 *     retention_backup b[n];                  stop_time, start_seg, stop_seg filled in,
 *     retention_decide(&p, b, n);             in the inventory's order (oldest first)
 *     retention_range *r; size_t nr;
 *     if (retention_wal_ranges(b, n, &r, &nr) != 0) goto out;   reported (out of memory)
 *     ... retention_seg_kept(r, nr, segno) ...
 *     free(r);
 *
 * Two policies:
 * - daily < 0 (no --keep-daily: the count-based policy of earlier versions): keep every
 *   backup that ended inside the window, the newest that ended before it (it restores
 *   the window's first instant), those younger than keep_backups, the newest
 *   min_backups; every kept backup keeps all WAL from its start on (point-in-time
 *   recovery from any kept backup), so WAL goes only below the oldest kept backup.
 * - daily >= 0: the same backups (keep_backups < 0 is off), plus for each of the last
 *   `daily` UTC days, counting the day of `now` as the first, the newest backup that
 *   ended that day, plus always the newest backup. WAL kept: from the start of the
 *   backup that reaches the window's first instant (the newest that ended before it;
 *   none: the oldest that ended inside it) to the end, for point-in-time recovery to
 *   any instant of the window; for every other kept backup, only the WAL from its start
 *   to its stop, what it needs to be consistent. The WAL between those islands goes.
 *
 * The newest of a day, not the oldest: it holds the whole day's work (the state at the
 * day's end), and it is the backup the window keeps longest, so a day's choice is
 * already kept when it leaves the window and nothing older need be kept for it.
 *
 * "Ended before the window" is strictly before: stop times have whole seconds, and a
 * backup ending within the window's first second may not be consistent yet at its
 * first instant.
 */
#ifndef RAGSAFE_RETENTION_H
#define RAGSAFE_RETENTION_H

#include <stddef.h>
#include <stdint.h>

enum retention_why {
    RETENTION_EXPIRED = 0,
    RETENTION_WINDOW,       /* ended inside the window (or after now) */
    RETENTION_DAILY,        /* the newest of one of the last `daily` UTC days */
    RETENTION_WINDOW_START, /* the newest that ended before the window opened */
    RETENTION_KEEP_BACKUPS, /* younger than keep_backups */
    RETENTION_MIN_BACKUPS,  /* one of the newest min_backups */
    RETENTION_NEWEST,       /* the newest backup, always kept under the daily policy */
};

typedef struct retention_policy {
    int64_t now;          /* Unix seconds */
    int64_t window;       /* seconds: every instant of [now - window, now] stays restorable */
    int64_t keep_backups; /* seconds; < 0: off */
    long min_backups;
    long daily;           /* UTC days; < 0: the count-based policy (no --keep-daily) */
} retention_policy;

typedef struct retention_backup {
    int64_t stop_time;    /* in: Unix seconds */
    uint64_t start_seg;   /* in: segment number of its start LSN */
    uint64_t stop_seg;    /* in: segment number of its stop LSN */
    int keep;             /* out */
    enum retention_why why; /* out: why it is kept (window first, then daily, ...) */
    int64_t day;          /* out, RETENTION_DAILY or daily_too: UTC days since the epoch */
    int daily_too;        /* out: also the newest of a kept day (why says something else) */
    int wal_to_end;       /* out: keeps every segment from its start on; else start..stop */
} retention_backup;

/* Decide for each of b[0..n) (the inventory's order: oldest stop LSN first; "newest"
 * is the last). */
void retention_decide(const retention_policy *p, retention_backup *b, size_t n);

/* A range of segment numbers kept on every timeline: [first, last], last UINT64_MAX for
 * "to the end". from / to: indexes of the kept backups whose start opens it and whose
 * WAL ends it (the last one to join it). */
typedef struct retention_range {
    uint64_t first, last;
    size_t from, to;
} retention_range;

/* The merged, sorted ranges the kept backups need (none when no backup is kept).
 * *out malloc'd (NULL when *nout is 0); the caller frees it. 0 | -1 (reported). */
int retention_wal_ranges(const retention_backup *b, size_t n, retention_range **out,
                         size_t *nout);

/* Is segment segno inside one of the ranges? */
int retention_seg_kept(const retention_range *r, size_t nr, uint64_t segno);

/* "inside the window", "daily", ... for messages. */
const char *retention_why_text(enum retention_why w);
/* "window", "daily", "window-start", "keep-backups", "min-backups", "newest",
 * "expired": the JSON value. */
const char *retention_why_key(enum retention_why w);

#endif
