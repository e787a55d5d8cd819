/*
 * inventory.c -- what a repository holds: backups, WAL per timeline, history.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "pitr.h"

typedef struct list_ctx {
    inventory *inv;
    size_t cap, ocap, scap;
} list_ctx;

static int push_seg(wal_seg **arr, size_t *n, size_t *cap, const wal_seg *s)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        wal_seg *a = realloc(*arr, nc * sizeof(*a));
        if (!a)
            return log_error("out of memory");
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = *s;
    return 0;
}

static int list_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    list_ctx *c = arg;
    inventory *inv = c->inv;
    char name[64];
    wal_seg s;

    if (repo_wal_name_from_key(key, name, sizeof(name)) != 0)
        return 0;
    memset(&s, 0, sizeof(s));
    s.kind = walname_classify(name);
    s.size = size;
    s.mtime = mtime;
    if (strlen(key) >= sizeof(s.key))
        return 0;
    strcpy(s.key, key);
    switch (s.kind) {
    case WALFILE_SEGMENT:
        if (walname_parse(name, inv->seg_size, &s.tli, &s.segno) != 0)
            return 0;
        return push_seg(&inv->segs, &inv->nsegs, &c->cap, &s);
    case WALFILE_PARTIAL:
    case WALFILE_BACKUP:
        if (walname_parse(name, inv->seg_size, &s.tli, &s.segno) != 0)
            return 0;
        return push_seg(&inv->others, &inv->nothers, &c->ocap, &s);
    case WALFILE_HISTORY:
        inv->nhistory++;
        return 0;
    default:
        return 0;
    }
}

/*
 * stream_cb -- one object under stream/: "stream/<TTTTTTTT>/<segment>.partial" (".zst"
 * after it, and a lowercase folder, are taken too) whose folder names the segment's
 * timeline; anything else there (status.json) is not a partial.
 */
static int stream_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    list_ctx *c = arg;
    inventory *inv = c->inv;
    const char *p = key + strlen(PITR_STREAM_PREFIX);
    char dir[9], name[WAL_NAME_LEN + 1];
    wal_seg s;

    if (strlen(p) < 9 + WAL_NAME_LEN + 8 || p[8] != '/' || strlen(key) >= sizeof(s.key))
        return 0;
    memcpy(dir, p, 8);
    dir[8] = '\0';
    p += 9;
    if (strcmp(p + WAL_NAME_LEN, ".partial") != 0 && strcmp(p + WAL_NAME_LEN, ".partial.zst") != 0)
        return 0;
    memcpy(name, p, WAL_NAME_LEN);
    name[WAL_NAME_LEN] = '\0';
    memset(&s, 0, sizeof(s));
    if (strspn(dir, "0123456789ABCDEFabcdef") != 8 || walname_classify(name) != WALFILE_SEGMENT ||
        walname_parse(name, inv->seg_size, &s.tli, &s.segno) != 0 ||
        strtoul(dir, NULL, 16) != s.tli)
        return 0;
    s.kind = WALFILE_PARTIAL;
    s.size = size;
    s.mtime = mtime;
    s.streamed = 1;
    strcpy(s.key, key);
    return push_seg(&inv->stream, &inv->nstream, &c->scap, &s);
}

static int cmp_seg(const void *a, const void *b)
{
    const wal_seg *x = a, *y = b;
    if (x->tli != y->tli)
        return x->tli < y->tli ? -1 : 1;
    if (x->segno != y->segno)
        return x->segno < y->segno ? -1 : 1;
    return strcmp(x->key, y->key);
}

/*
 * stream_usable -- does partial s extend the end of its timeline's archive? It must be
 * the segment PostgreSQL reads for its number on its timeline's path, not archived
 * itself, the one after a segment archived on the path, with nothing of its timeline
 * archived beyond it and no later timeline (ragsafe-restore's conditions for serving
 * it): a partial the archive has overtaken, or one left behind by a timeline switch,
 * is not used.
 */
static int stream_usable(const inventory *inv, const wal_seg *s)
{
    timeline_path p;
    int ok = 0, found;

    if (s->segno == 0 || timeline_max(&inv->ts) > s->tli || inventory_find(inv, s->tli, s->segno))
        return 0;
    for (size_t i = 0; i < inv->ts.ndamaged; i++)
        if (inv->ts.damaged[i].tli > s->tli)
            return 0;
    for (size_t i = 0; i < inv->nsegs; i++)
        if (inv->segs[i].tli > s->tli)
            return 0;
    inventory_last_seg(inv, s->tli, s->segno, UINT64_MAX, &found);
    if (found || timeline_get_path(&inv->ts, s->tli, &p) != 0)
        return 0;
    if (timeline_path_tli_for_seg(&p, s->segno, inv->seg_size) == s->tli &&
        inventory_find(inv, timeline_path_tli_for_seg(&p, s->segno - 1, inv->seg_size),
                       s->segno - 1))
        ok = 1;
    timeline_path_release(&p);
    return ok;
}

/* add_streamed -- put each timeline's usable partial into segs (see pitr.h). */
static int add_streamed(inventory *inv, list_ctx *c)
{
    char *use = calloc(inv->nstream + 1, 1);
    size_t n = inv->nsegs;
    int ret = -1;

    if (!use)
        return log_error("out of memory");
    /* all decided against the archive alone, before any is added: a partial never
     * extends another */
    for (size_t i = 0; i < inv->nstream; i++)
        use[i] = (char)stream_usable(inv, &inv->stream[i]);
    for (size_t i = 0; i < inv->nstream; i++) {
        if (!use[i])
            continue;
        if (push_seg(&inv->segs, &inv->nsegs, &c->cap, &inv->stream[i]) != 0)
            goto out;
        log_debug("the streamed partial \"%s\" ends the archive of timeline %u",
                  inv->stream[i].key, inv->stream[i].tli);
    }
    if (inv->nsegs != n)
        qsort(inv->segs, inv->nsegs, sizeof(*inv->segs), cmp_seg);
    ret = 0;
out:
    free(use);
    return ret;
}

static int add_damaged(inventory *inv, const char *key, const char *why)
{
    damaged_obj *d = realloc(inv->damaged, (inv->ndamaged + 1) * sizeof(*d));
    if (!d)
        return log_error("out of memory");
    inv->damaged = d;
    d += inv->ndamaged++;
    snprintf(d->key, sizeof(d->key), "%s", key);
    snprintf(d->why, sizeof(d->why), "%s", why);
    return 0;
}

static int backup_damaged(void *arg, const char *label, const char *why)
{
    char key[160];
    snprintf(key, sizeof(key), "backups/%s/backup.json", label);
    log_warning("backup %s is left out: %s", label, why);
    return add_damaged(arg, key, why);
}

/*
 * inventory_load -- open the repository and read everything the subcommands plan
 * with. Fails (reported) on a missing repo.json: a directory that is not a
 * repository must not look like an empty one.
 */
static int load(inventory *inv, const char *repo_path, int reader_lock)
{
    list_ctx c;
    memset(inv, 0, sizeof(*inv));
    timeline_set_init(&inv->ts);

    inv->r = repo_open(repo_path, NULL, 0);
    if (!inv->r)
        return -1;
    inv->st = inv->r->st;
    /* every subcommand reads through here: hold the retention lock shared until
     * inventory_release, so an expire deletes nothing this reads (a restore that starts
     * the server keeps it while recovery runs) */
    if (reader_lock && storage_reader_lock(inv->st, &inv->lock) != 0)
        return -1;
    int r = repo_load_info(inv->r);
    if (r == RS_NOT_FOUND) {
        log_error("\"%s\" is not a ragsafe repository (no %s)", repo_path, REPO_INFO_KEY);
        return -1;
    }
    if (r != 0)
        return r == RS_MISMATCH ? RS_MISMATCH : -1;
    inv->seg_size = inv->r->info.seg_size ? inv->r->info.seg_size : WAL_DEFAULT_SEG_SIZE;
    if (!walname_seg_size_valid(inv->seg_size))
        return log_error("repository \"%s\" names an invalid WAL segment size %u", repo_path,
                         inv->seg_size);

    memset(&c, 0, sizeof(c));
    c.inv = inv;
    if (storage_list(inv->st, "wal/", list_cb, &c) != 0)
        return -1;
    if (inv->nsegs)
        qsort(inv->segs, inv->nsegs, sizeof(*inv->segs), cmp_seg);
    if (inv->nothers)
        qsort(inv->others, inv->nothers, sizeof(*inv->others), cmp_seg);
    if (timeline_load(&inv->ts, inv->st) != 0)
        return -1;
    if (storage_list(inv->st, PITR_STREAM_PREFIX, stream_cb, &c) != 0)
        return -1;
    if (inv->nstream)
        qsort(inv->stream, inv->nstream, sizeof(*inv->stream), cmp_seg);
    if (add_streamed(inv, &c) != 0)
        return -1;
    for (size_t i = 0; i < inv->ts.ndamaged; i++) {
        char name[17], key[128];
        walname_history(name, inv->ts.damaged[i].tli);
        if (repo_wal_key(name, key, sizeof(key)) != 0)
            snprintf(key, sizeof(key), "wal/%s", name);
        if (add_damaged(inv, key, inv->ts.damaged[i].reason) != 0)
            return -1;
    }
    r = backupinfo_list(inv->st, &inv->backups, &inv->nbackups, backup_damaged, inv);
    if (r != 0)
        return r == RS_MISMATCH ? RS_MISMATCH : -1;
    return 0;
}

int inventory_load(inventory *inv, const char *repo_path)
{
    return load(inv, repo_path, 1);
}

int inventory_load_unlocked(inventory *inv, const char *repo_path)
{
    return load(inv, repo_path, 0);
}

void inventory_release(inventory *inv)
{
    if (inv->backups)
        backupinfo_list_free(inv->backups, inv->nbackups);
    free(inv->segs);
    free(inv->others);
    free(inv->stream);
    timeline_set_release(&inv->ts);
    free(inv->damaged);
    storage_lock_release(inv->lock);
    if (inv->r)
        repo_free(inv->r);
    memset(inv, 0, sizeof(*inv));
}

const wal_seg *inventory_find(const inventory *inv, uint32_t tli, uint64_t segno)
{
    size_t lo = 0, hi = inv->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const wal_seg *s = &inv->segs[mid];
        if (s->tli < tli || (s->tli == tli && s->segno < segno))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < inv->nsegs && inv->segs[lo].tli == tli && inv->segs[lo].segno == segno)
        return &inv->segs[lo];
    return NULL;
}

uint64_t inventory_last_seg(const inventory *inv, uint32_t tli, uint64_t lo, uint64_t hi, int *found)
{
    uint64_t best = 0;
    *found = 0;
    for (size_t i = 0; i < inv->nsegs; i++) {
        const wal_seg *s = &inv->segs[i];
        if (s->tli == tli && s->segno >= lo && s->segno <= hi && (!*found || s->segno > best)) {
            best = s->segno;
            *found = 1;
        }
    }
    return best;
}

int inventory_path_end(const inventory *inv, const timeline_path *p, uint64_t *segno)
{
    int any = 0;
    *segno = 0;
    for (size_t i = 0; i < p->n; i++) {
        const timeline_step *st = &p->steps[i];
        uint64_t lo = st->begin / inv->seg_size;
        uint64_t hi = st->end == TIMELINE_END ? UINT64_MAX : (st->end - 1) / inv->seg_size;
        int found;
        uint64_t last = inventory_last_seg(inv, st->tli, lo, hi, &found);
        if (found && (!any || last > *segno)) {
            *segno = last;
            any = 1;
        }
    }
    return any;
}

const wal_seg *inventory_streamed(const inventory *inv, uint32_t tli)
{
    for (size_t i = 0; i < inv->nsegs; i++)
        if (inv->segs[i].streamed && inv->segs[i].tli == tli)
            return &inv->segs[i];
    return NULL;
}

void seg_name(const inventory *inv, char *out, uint32_t tli, uint64_t segno)
{
    walname_format(out, tli, segno, inv->seg_size);
}

/*
 * inventory_check_seg -- the segment (or .partial) stored as name must be that
 * segment of this repository: its long page header against the name, repo.json's
 * system identifier and segment size, and the name's timeline history
 * (walpage_check, the same checks ragsafe-archive and ragsafe-restore make).
 * raw_size: the object's length (0: not checked). 0 | RS_MISMATCH (reported).
 */
int inventory_check_seg(const inventory *inv, const char *name, const void *buf, size_t len,
                        uint64_t raw_size)
{
    walpage_expect ex = {.sysid = inv->r->info.sysid, .seg_size = inv->seg_size,
                         .file_size = raw_size, .check_tli = 1};
    uint32_t tli;
    char why[256];

    if (walname_parse(name, inv->seg_size, &tli, NULL) == 0)
        ex.history = timeline_history(&inv->ts, tli);
    if (walpage_check(buf, len, name, &ex, NULL, why, sizeof(why)) == WALPAGE_OK)
        return 0;
    log_error("WAL segment \"%s\" is damaged: %s", name, why);
    return RS_MISMATCH;
}

/*
 * The read-ahead thread: verifying a segment (decompress + SHA-256) costs about as
 * much as walking its records, so on two cores a second thread reads the next
 * segments while the caller walks this one. It only reads segments the caller has
 * said it will surely need (so it never reports a problem with a segment the plan
 * does not use).
 */
#define PREFETCH_DEPTH 2

typedef struct pf_slot {
    uint64_t segno;
    int state;      /* 0 empty, 1 ready */
    int rc;         /* object_get_seg's result, or RS_NOT_FOUND when not archived */
    char *buf;
    size_t len;
    zst_meta meta;  /* the object's digest, for ctl->verified */
} pf_slot;

typedef struct prefetch {
    inventory *inv;
    const timeline_path *p;
    uint64_t first, last, consumed; /* consumed: next segment the walker takes */
    int stop;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pf_slot slot[PREFETCH_DEPTH];
} prefetch;

static void *pf_main(void *arg)
{
    prefetch *pf = arg;
    for (uint64_t s = pf->first; s <= pf->last; s++) {
        pf_slot *sl = &pf->slot[s % PREFETCH_DEPTH];
        pthread_mutex_lock(&pf->mu);
        while (!pf->stop && (s >= pf->consumed + PREFETCH_DEPTH || sl->state != 0))
            pthread_cond_wait(&pf->cv, &pf->mu);
        int stop = pf->stop;
        pthread_mutex_unlock(&pf->mu);
        if (stop)
            break;
        uint32_t tli = timeline_path_tli_for_seg(pf->p, s, pf->inv->seg_size);
        const wal_seg *w = inventory_find(pf->inv, tli, s);
        char *buf = NULL;
        size_t len = 0;
        int rc = RS_NOT_FOUND;
        zst_meta meta = {0};
        if (w)
            rc = object_get_seg(pf->inv->st, w->key, pf->inv->seg_size, &buf, &len, &meta);
        pthread_mutex_lock(&pf->mu);
        sl->meta = meta;
        sl->segno = s;
        sl->rc = rc;
        sl->buf = buf;
        sl->len = len;
        sl->state = 1;
        pthread_cond_broadcast(&pf->cv);
        pthread_mutex_unlock(&pf->mu);
        if (rc != 0)
            break; /* the walker stops there */
    }
    return NULL;
}

/* pf_take -- the prefetched result for segment s (waits for it). */
static int pf_take(prefetch *pf, uint64_t s, char **buf, size_t *len, zst_meta *meta)
{
    pf_slot *sl = &pf->slot[s % PREFETCH_DEPTH];
    pthread_mutex_lock(&pf->mu);
    while (!(sl->state == 1 && sl->segno == s))
        pthread_cond_wait(&pf->cv, &pf->mu);
    int rc = sl->rc;
    *buf = sl->buf;
    *len = sl->len;
    *meta = sl->meta;
    sl->buf = NULL;
    sl->state = 0;
    pf->consumed = s + 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    return rc;
}

static void pf_finish(prefetch *pf)
{
    pthread_mutex_lock(&pf->mu);
    pf->stop = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->th, NULL);
    for (int i = 0; i < PREFETCH_DEPTH; i++)
        free(pf->slot[i].buf);
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
}

/*
 * pitr_scan -- feed the segments PostgreSQL would read along path, from first_seg
 * on, to a walscan. Each segment is read as a verified object (a corrupt one fails
 * the walk). See pitr.h for the results.
 */
int pitr_scan(inventory *inv, const timeline_path *p, uint64_t first_seg, walscan_fn cb,
              void *arg, scan_ctl *ctl)
{
    walscan *ws = NULL;
    uint64_t end;
    prefetch pf;
    int have_pf = 0;
    int ret = -1;

    ctl->read_any = 0;
    ctl->bytes = 0;
    ctl->nread = 0;
    ctl->stream_flush = 0;
    if (!inventory_path_end(inv, p, &end) || end < first_seg) {
        ctl->gap_tli = timeline_path_tli_for_seg(p, first_seg, inv->seg_size);
        ctl->gap_segno = first_seg;
        return RS_NOT_FOUND;
    }
    ws = walscan_new(inv->seg_size, cb, arg);
    if (!ws)
        return log_error("out of memory");
    memset(&pf, 0, sizeof(pf));
    if (ctl->prefetch_to > first_seg) {
        pf.inv = inv;
        pf.p = p;
        pf.first = first_seg;
        pf.last = ctl->prefetch_to < end ? ctl->prefetch_to : end;
        if (pf.last > ctl->stop_seg)
            pf.last = ctl->stop_seg;
        pf.consumed = first_seg;
        pthread_mutex_init(&pf.mu, NULL);
        pthread_cond_init(&pf.cv, NULL);
        if (pthread_create(&pf.th, NULL, pf_main, &pf) == 0) {
            have_pf = 1;
        } else {
            pthread_mutex_destroy(&pf.mu);
            pthread_cond_destroy(&pf.cv);
        }
    }
    for (uint64_t s = first_seg; s <= end && s <= ctl->stop_seg; s++) {
        uint32_t tli = timeline_path_tli_for_seg(p, s, inv->seg_size);
        const wal_seg *ws_seg = inventory_find(inv, tli, s);
        char name[WAL_NAME_LEN + 1];
        char *buf = NULL;
        size_t len = 0;
        zst_meta meta = {0};
        int r;
        if (have_pf && s <= pf.last) {
            r = pf_take(&pf, s, &buf, &len, &meta);
        } else if (!ws_seg) {
            r = RS_NOT_FOUND;
        } else {
            r = object_get_seg(inv->st, ws_seg->key, inv->seg_size, &buf, &len, &meta);
        }
        if (r == RS_NOT_FOUND && ws_seg && ws_seg->streamed) {
            /* the receiver completed the segment since the listing: it is under wal/ now
             * and its partial deleted. Not there either: the archive ends before it */
            char key[128];
            seg_name(inv, name, tli, s);
            if (repo_wal_key(name, key, sizeof(key)) == 0)
                r = object_get_buf(inv->st, key, (size_t)inv->seg_size + 1, &buf, &len, NULL);
            if (r == RS_NOT_FOUND)
                break;
        }
        if (r == RS_NOT_FOUND) {
            ctl->gap_tli = tli;
            ctl->gap_segno = s;
            ret = RS_NOT_FOUND;
            goto out;
        }
        seg_name(inv, name, tli, s);
        if (r == 0 && ws_seg && ws_seg->streamed) {
            /* the receiver's partial: zeroes past its flushed position. One whose first
             * page was not flushed yet holds no WAL: the archive ends before it */
            size_t nz = len;
            while (nz > 0 && buf[nz - 1] == '\0')
                nz--;
            if (nz == 0) {
                free(buf);
                break;
            }
            ctl->stream_flush = s * (uint64_t)inv->seg_size + nz;
        }
        if (r != 0) {
            if (r == RS_MISMATCH)
                log_error("WAL segment \"%s\" is corrupt", name);
            else
                log_error("could not read WAL segment \"%s\"", name);
            ret = r == RS_MISMATCH ? RS_MISMATCH : -1;
            goto out;
        }
        if (inventory_check_seg(inv, name, buf, len, len) != 0) {
            free(buf);
            ret = RS_MISMATCH;
            goto out;
        }
        ctl->read_any = 1;
        ctl->last_seg = s;
        ctl->bytes += len;
        ctl->nread++;
        r = walscan_feed(ws, tli, s, buf, len);
        /* handed over after the walk read it: the handover keeps buf (no copy) */
        if (!(ctl->verified && r != -1 && ctl->verified(ctl->verified_arg, name, buf, len, meta.sha256)))
            free(buf);
        /* the zero tail ends the partial's records: its flushed position is at least
         * the (aligned) end of the last complete record */
        if (r == WALSCAN_END && ws_seg && ws_seg->streamed &&
            walscan_next_lsn(ws) > ctl->stream_flush)
            ctl->stream_flush = walscan_next_lsn(ws);
        if (r == -1) {
            /* walscan's own -1 (a callback's value is returned as it is): it passed its
             * checksum, so it was archived like this: damage (exit 3) */
            log_error("WAL segment \"%s\" is damaged: %s", name, walscan_error(ws));
            ret = RS_MISMATCH;
            goto out;
        }
        if (r == WALSCAN_END) {
            walscan_reset(ws);
            continue;
        }
        if (r != 0) {
            ret = r;
            goto out;
        }
    }
    ret = 0;
out:
    if (have_pf)
        pf_finish(&pf);
    walscan_free(ws);
    return ret;
}
