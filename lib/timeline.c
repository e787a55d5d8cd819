/*
 * timeline.c -- timeline graph from history files (see timeline.h).
 */
#include "timeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "repo.h"

void timeline_set_init(timeline_set *ts) { memset(ts, 0, sizeof(*ts)); }

void timeline_set_release(timeline_set *ts)
{
    for (size_t i = 0; i < ts->n; i++)
        walhistory_release(&ts->hist[i]);
    free(ts->hist);
    free(ts->damaged);
    memset(ts, 0, sizeof(*ts));
}

static int add_damage(timeline_set *ts, uint32_t tli, const char *reason)
{
    timeline_damage *d = realloc(ts->damaged, (ts->ndamaged + 1) * sizeof(*d));
    if (!d)
        return log_error("out of memory");
    ts->damaged = d;
    d[ts->ndamaged].tli = tli;
    snprintf(d[ts->ndamaged].reason, sizeof(d->reason), "%s", reason);
    ts->ndamaged++;
    return 0;
}

const char *timeline_damaged(const timeline_set *ts, uint32_t tli)
{
    for (size_t i = 0; i < ts->ndamaged; i++)
        if (ts->damaged[i].tli == tli)
            return ts->damaged[i].reason;
    return NULL;
}

static int cmp_hist(const void *a, const void *b)
{
    const walhistory *x = a, *y = b;
    return x->tli < y->tli ? -1 : x->tli > y->tli;
}

int timeline_add(timeline_set *ts, walhistory *h)
{
    walhistory *n = realloc(ts->hist, (ts->n + 1) * sizeof(*n));
    if (!n)
        return log_error("out of memory");
    ts->hist = n;
    ts->hist[ts->n++] = *h;
    memset(h, 0, sizeof(*h));
    qsort(ts->hist, ts->n, sizeof(*ts->hist), cmp_hist);
    return 0;
}

typedef struct load_ctx {
    size_t n;
    char (*keys)[128];
} load_ctx;

static int collect_history(void *arg, const char *key, int64_t size, int64_t mtime)
{
    load_ctx *c = arg;
    char name[64];
    uint32_t tli;
    (void)size;
    (void)mtime;
    if (repo_wal_name_from_key(key, name, sizeof(name)) != 0)
        return 0;
    if (walname_classify(name) != WALFILE_HISTORY || walname_parse_history(name, &tli) != 0)
        return 0;
    if (strlen(key) >= 128)
        return 0;
    char(*k)[128] = realloc(c->keys, (c->n + 1) * sizeof(*k));
    if (!k)
        return log_error("out of memory");
    c->keys = k;
    strcpy(c->keys[c->n++], key);
    return 0;
}

int timeline_load(timeline_set *ts, storage *st)
{
    load_ctx c = {0, NULL};
    int ret = -1;

    if (storage_list(st, "wal/", collect_history, &c) != 0)
        goto out;
    for (size_t i = 0; i < c.n; i++) {
        char name[64];
        uint32_t tli;
        char *text = NULL;
        size_t len;
        walhistory h;
        if (repo_wal_name_from_key(c.keys[i], name, sizeof(name)) != 0 ||
            walname_parse_history(name, &tli) != 0)
            continue;
        int r = object_get_buf(st, c.keys[i], 1 << 20, &text, &len, NULL);
        if (r == RS_NOT_FOUND)
            continue;
        if (r == RS_MISMATCH) {
            /* judged alone: this timeline is unusable, the others are not */
            log_error("history file \"%s\" is corrupt", name);
            if (add_damage(ts, tli, "corrupt: fails its checksum") != 0)
                goto out;
            continue;
        }
        if (r != 0)
            goto out;
        if (walhistory_parse(text, len, tli, &h) != 0) {
            free(text);
            log_error("could not parse history file \"%s\"", name);
            if (add_damage(ts, tli, "damaged: does not parse as a timeline history") != 0)
                goto out;
            continue;
        }
        free(text);
        if (timeline_add(ts, &h) != 0) {
            walhistory_release(&h);
            goto out;
        }
    }
    ret = 0;
out:
    free(c.keys);
    return ret;
}

const walhistory *timeline_history(const timeline_set *ts, uint32_t tli)
{
    for (size_t i = 0; i < ts->n; i++)
        if (ts->hist[i].tli == tli)
            return &ts->hist[i];
    return NULL;
}

int timeline_exists(const timeline_set *ts, uint32_t tli)
{
    return tli == 1 || timeline_history(ts, tli) != NULL;
}

uint32_t timeline_latest(const timeline_set *ts, uint32_t from)
{
    uint32_t t = from;
    while (timeline_history(ts, t + 1) || timeline_damaged(ts, t + 1))
        t++;
    return t;
}

uint32_t timeline_max(const timeline_set *ts)
{
    uint32_t m = 1;
    for (size_t i = 0; i < ts->n; i++)
        if (ts->hist[i].tli > m)
            m = ts->hist[i].tli;
    return m;
}

int timeline_get_path(const timeline_set *ts, uint32_t tli, timeline_path *out)
{
    memset(out, 0, sizeof(*out));
    if (timeline_damaged(ts, tli)) {
        char name[17];
        walname_history(name, tli);
        log_error("timeline %u cannot be followed: its history file \"%s\" is %s", tli, name,
                  timeline_damaged(ts, tli));
        return RS_MISMATCH;
    }
    if (!timeline_exists(ts, tli))
        return RS_NOT_FOUND;
    const walhistory *h = timeline_history(ts, tli);
    size_t n = (h ? h->n : 0) + 1;
    out->steps = calloc(n, sizeof(*out->steps));
    if (!out->steps)
        return log_error("out of memory");
    uint64_t begin = 0;
    for (size_t i = 0; h && i < h->n; i++) {
        out->steps[i].tli = h->entries[i].tli;
        out->steps[i].begin = begin;
        out->steps[i].end = h->entries[i].switchpoint;
        begin = h->entries[i].switchpoint;
    }
    out->steps[n - 1].tli = tli;
    out->steps[n - 1].begin = begin;
    out->steps[n - 1].end = TIMELINE_END;
    out->n = n;
    return 0;
}

void timeline_path_release(timeline_path *p)
{
    free(p->steps);
    memset(p, 0, sizeof(*p));
}

int timeline_path_contains(const timeline_path *p, uint32_t tli, uint64_t lsn)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->steps[i].tli == tli && p->steps[i].begin <= lsn && lsn < p->steps[i].end)
            return 1;
    return 0;
}

uint32_t timeline_path_tli_for_seg(const timeline_path *p, uint64_t segno, uint32_t seg_size)
{
    for (size_t i = p->n; i-- > 0;)
        if (p->steps[i].begin / seg_size <= segno)
            return p->steps[i].tli;
    return 0;
}

uint32_t timeline_path_tli_at(const timeline_path *p, uint64_t lsn)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->steps[i].begin <= lsn && lsn < p->steps[i].end)
            return p->steps[i].tli;
    return 0;
}
