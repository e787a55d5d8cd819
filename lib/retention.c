/*
 * retention.c -- the retention policy as pure functions (see retention.h).
 */
#include <stdlib.h>

#include "log.h"
#include "retention.h"

#define DAY_SECONDS 86400

/* utc_day -- days since the epoch of a Unix time, rounded down (UTC days). */
static int64_t utc_day(int64_t t)
{
    return t >= 0 ? t / DAY_SECONDS : -((-t + DAY_SECONDS - 1) / DAY_SECONDS);
}

static void keep(retention_backup *b, enum retention_why why)
{
    if (!b->keep) {
        b->keep = 1;
        b->why = why;
    }
}

void retention_decide(const retention_policy *p, retention_backup *b, size_t n)
{
    int64_t wstart = p->now - p->window;
    int daily = p->daily >= 0;
    size_t anchor = n; /* the newest that ended before the window: n when none */

    for (size_t i = 0; i < n; i++) {
        b[i].keep = 0;
        b[i].why = RETENTION_EXPIRED;
        b[i].day = 0;
        b[i].daily_too = 0;
        b[i].wal_to_end = 0;
    }
    for (size_t i = n; i-- > 0;)
        if (b[i].stop_time < wstart) {
            anchor = i;
            break;
        }
    for (size_t i = 0; i < n; i++)
        if (b[i].stop_time >= wstart)
            keep(&b[i], RETENTION_WINDOW);

    if (daily) {
        /* for each of the last `daily` UTC days, the newest backup that ended that day
         * (by stop time; on a tie the later one in the inventory) and not after now */
        int64_t today = utc_day(p->now);
        for (size_t i = 0; i < n; i++) {
            int64_t d = utc_day(b[i].stop_time);
            if (b[i].stop_time > p->now || d > today || today - d >= p->daily)
                continue;
            int newest = 1;
            for (size_t j = 0; j < n && newest; j++)
                if (j != i && b[j].stop_time <= p->now && utc_day(b[j].stop_time) == d &&
                    (b[j].stop_time > b[i].stop_time || (b[j].stop_time == b[i].stop_time && j > i)))
                    newest = 0;
            if (!newest)
                continue;
            b[i].day = d;
            if (b[i].keep)
                b[i].daily_too = 1;
            keep(&b[i], RETENTION_DAILY);
        }
        if (anchor < n)
            keep(&b[anchor], RETENTION_WINDOW_START);
        if (p->keep_backups >= 0)
            for (size_t i = 0; i < n; i++)
                if (b[i].stop_time >= p->now - p->keep_backups)
                    keep(&b[i], RETENTION_KEEP_BACKUPS);
    } else {
        /* the order of earlier versions: their reasons read the same */
        for (size_t i = 0; i < n; i++)
            if (p->keep_backups >= 0 && b[i].stop_time >= p->now - p->keep_backups)
                keep(&b[i], RETENTION_KEEP_BACKUPS);
        if (anchor < n)
            keep(&b[anchor], RETENTION_WINDOW_START);
    }
    long mk = 0;
    for (size_t i = n; i-- > 0 && mk < p->min_backups; mk++)
        keep(&b[i], RETENTION_MIN_BACKUPS);
    if (daily && n > 0)
        keep(&b[n - 1], RETENTION_NEWEST);

    for (size_t i = 0; i < n; i++) {
        if (!b[i].keep)
            continue;
        if (!daily)
            b[i].wal_to_end = 1; /* point-in-time recovery from every kept backup */
        else if (i == anchor || i == n - 1 || b[i].stop_time >= wstart)
            b[i].wal_to_end = 1; /* the window's instants, and everything after the newest */
    }
}

static int range_cmp(const void *a, const void *b)
{
    const retention_range *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->last < y->last ? -1 : x->last > y->last;
}

int retention_wal_ranges(const retention_backup *b, size_t n, retention_range **out,
                         size_t *nout)
{
    retention_range *r = NULL;
    size_t nr = 0;

    *out = NULL;
    *nout = 0;
    for (size_t i = 0; i < n; i++)
        nr += b[i].keep != 0;
    if (nr == 0)
        return 0;
    r = calloc(nr, sizeof(*r));
    if (!r)
        return log_error("out of memory");
    nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!b[i].keep)
            continue;
        r[nr].first = b[i].start_seg;
        r[nr].last = b[i].wal_to_end ? UINT64_MAX
                     : b[i].stop_seg < b[i].start_seg ? b[i].start_seg : b[i].stop_seg;
        r[nr].from = r[nr].to = i;
        nr++;
    }
    qsort(r, nr, sizeof(*r), range_cmp);
    size_t m = 0;
    for (size_t i = 1; i < nr; i++) {
        /* overlapping or adjacent: one range (last + 1 cannot overflow below MAX) */
        if (r[m].last == UINT64_MAX || r[i].first <= r[m].last + 1) {
            if (r[i].last >= r[m].last) {
                r[m].last = r[i].last;
                r[m].to = r[i].to;
            }
        } else {
            r[++m] = r[i];
        }
    }
    *out = r;
    *nout = m + 1;
    return 0;
}

int retention_seg_kept(const retention_range *r, size_t nr, uint64_t segno)
{
    for (size_t i = 0; i < nr; i++)
        if (segno >= r[i].first && segno <= r[i].last)
            return 1;
    return 0;
}

const char *retention_why_text(enum retention_why w)
{
    switch (w) {
    case RETENTION_WINDOW: return "inside the window";
    case RETENTION_DAILY: return "daily";
    case RETENTION_WINDOW_START: return "restores the start of the window";
    case RETENTION_KEEP_BACKUPS: return "younger than --keep-backups";
    case RETENTION_MIN_BACKUPS: return "--min-backups";
    case RETENTION_NEWEST: return "newest";
    case RETENTION_EXPIRED: break;
    }
    return "expired";
}

const char *retention_why_key(enum retention_why w)
{
    switch (w) {
    case RETENTION_WINDOW: return "window";
    case RETENTION_DAILY: return "daily";
    case RETENTION_WINDOW_START: return "window-start";
    case RETENTION_KEEP_BACKUPS: return "keep-backups";
    case RETENTION_MIN_BACKUPS: return "min-backups";
    case RETENTION_NEWEST: return "newest";
    case RETENTION_EXPIRED: break;
    }
    return "expired";
}
