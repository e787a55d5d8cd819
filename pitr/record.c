/*
 * record.c -- restore records (restores/<stamp>-<random>.json) and the timeline tree
 * that info and plan show: which timelines exist, where each forked, which are leaves,
 * the newest archived commit on each, and which restore created it.
 *
 * A restored copy that keeps archiving (or a DBA who starts it with archiving on)
 * adds a timeline to the repository. PostgreSQL's "latest" then follows the highest
 * timeline, which may be a test copy's; the records let info and plan say where a
 * timeline came from, so the DBA can tell production from a test restore.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "pitr.h"
#include "timefmt.h"

#define RECORD_PREFIX "restores/"
#define RECORD_FORMAT 1
/* The fork a promoted copy writes is the end of its last replayed record, MAXALIGNed
 * and past a page header when it ends a page; the plan's stop point is the unaligned
 * end (or the next record's start). Within one WAL page is the same stop. */
#define FORK_SLACK 8192

static const char *kind_word(enum target_kind k)
{
    switch (k) {
    case TARGET_TIME: return "time";
    case TARGET_LSN: return "lsn";
    case TARGET_XID: return "xid";
    case TARGET_NAME: return "name";
    case TARGET_LATEST: return "latest";
    case TARGET_IMMEDIATE: return "immediate";
    default: return "none";
    }
}

/* new_timeline -- the timeline a promoted server switched to: the highest
 * pg_wal/<TLI>.history it wrote at promotion (written before pg_is_in_recovery()
 * turns false). 0 when none is found. */
static uint32_t new_timeline(const char *pgdata)
{
    char path[4096];
    uint32_t best = 0;
    if (snprintf(path, sizeof(path), "%s/pg_wal", pgdata) >= (int)sizeof(path))
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned int t;
        char rest[16];
        if (strlen(de->d_name) == 16 && sscanf(de->d_name, "%8X%15s", &t, rest) == 2 &&
            strcmp(rest, ".history") == 0 && t > best)
            best = t;
    }
    closedir(d);
    return best;
}

static json_t *lsn_json(uint64_t lsn)
{
    char a[LSN_STR_LEN + 1];
    lsn_format(a, lsn);
    return json_string(a);
}

/*
 * record_restore -- see pitr.h. The record says who restored what, where to, how far
 * and whether the copy archives; the second write (after --start) adds where the
 * server stopped and the timeline it promoted to.
 */
int record_restore(inventory *inv, const pitr_opts *o, const plan *p, restore_outcome *out)
{
    char host[256] = "", user[64] = "", t1[32], t2[32], ts[48];
    json_t *j = NULL, *tgt, *stop, *srv;
    char *text = NULL;
    int ret = -1;

    if (!out->key[0]) {
        char stamp[20];
        uint32_t rnd = 0;
        timefmt_stamp(stamp, sizeof(stamp), out->started);
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
        snprintf(out->key, sizeof(out->key), RECORD_PREFIX "%s-%08x.json", stamp, rnd);
    }
    gethostname(host, sizeof(host) - 1);
    struct passwd *pw = getpwuid(getuid());
    snprintf(user, sizeof(user), "%s", pw ? pw->pw_name : "?");
    timefmt_utc(t1, sizeof(t1), out->started);
    timefmt_utc(t2, sizeof(t2), (int64_t)time(NULL));

    j = json_object();
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)(strlen(out->key) - strlen(RECORD_PREFIX) - 5),
             out->key + strlen(RECORD_PREFIX));
    json_object_set_new(j, "format", json_integer(RECORD_FORMAT));
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "user", json_string(user));
    if (getenv("SUDO_USER") && *getenv("SUDO_USER"))
        json_object_set_new(j, "sudo_user", json_string(getenv("SUDO_USER")));
    json_object_set_new(j, "host", json_string(host));
    json_object_set_new(j, "started", json_string(t1));
    json_object_set_new(j, "recorded", json_string(t2));
    json_object_set_new(j, "backup", json_string(p->backup->label));

    tgt = json_object();
    json_object_set_new(tgt, "kind", json_string(kind_word(o->kind)));
    json_object_set_new(tgt, "value", o->target_str ? json_string(o->target_str) : json_null());
    switch (o->kind) {
    case TARGET_TIME:
        /* the instant recovery_target_time names (postgresql.auto.conf holds it in
         * PostgreSQL's syntax, p->time_conf) */
        timefmt_utc_us(ts, sizeof(ts), o->time_us);
        json_object_set_new(tgt, "written", json_string(ts));
        break;
    case TARGET_LSN:
        json_object_set_new(tgt, "written", lsn_json(o->lsn));
        break;
    case TARGET_XID: {
        char x[16];
        snprintf(x, sizeof(x), "%u", o->xid);
        json_object_set_new(tgt, "written", json_string(x));
        break;
    }
    case TARGET_NAME:
        json_object_set_new(tgt, "written", json_string(o->name));
        break;
    case TARGET_IMMEDIATE:
        json_object_set_new(tgt, "written", json_string("immediate"));
        break;
    default:
        json_object_set_new(tgt, "written", json_null());
        break;
    }
    json_object_set_new(tgt, "exclusive", json_boolean(o->exclusive));
    json_object_set_new(tgt, "timeline", json_integer(p->tli));
    json_object_set_new(tgt, "timeline_given", json_boolean(o->tli != 0));
    json_object_set_new(tgt, "action", json_string(o->kind == TARGET_LATEST ? "promote" : o->action));
    json_object_set_new(j, "target", tgt);

    stop = json_object();
    json_object_set_new(stop, "lsn", lsn_json(p->stop_lsn));
    json_object_set_new(stop, "timeline", json_integer(timeline_path_tli_at(&p->path, p->stop_lsn)));
    if (p->stop_time_us) {
        timefmt_utc_us(ts, sizeof(ts), p->stop_time_us);
        json_object_set_new(stop, "last_commit_time", json_string(ts));
        json_object_set_new(stop, "last_commit_xid", json_integer(p->stop_xid));
    }
    json_object_set_new(stop, "desc", json_string(p->stop_desc));
    json_object_set_new(j, "planned_stop", stop);
    json_object_set_new(j, "pgdata", json_string(out->pgdata));
    if (out->old_contents)
        json_object_set_new(j, "old_contents", json_string(out->old_contents));
    json_object_set_new(j, "archive_mode", json_string(o->archive_preserve ? "preserve" : "off"));

    const char *state = !o->start ? "restored"
                        : !out->start_ran ? "starting"
                        : out->start_failed ? "start failed"
                        : out->promoted ? "promoted"
                        : out->paused ? "paused"
                        : "shut down";
    json_object_set_new(j, "state", json_string(state));
    if (out->start_ran && !out->start_failed) {
        srv = json_object();
        json_object_set_new(srv, "replay_lsn", out->replay_lsn && *out->replay_lsn
                                                   ? json_string(out->replay_lsn) : json_null());
        json_object_set_new(srv, "replay_timestamp", out->replay_ts && *out->replay_ts
                                                         ? json_string(out->replay_ts) : json_null());
        uint32_t tli = out->promoted ? new_timeline(out->pgdata) : 0;
        json_object_set_new(srv, "new_timeline", tli ? json_integer(tli) : json_null());
        json_object_set_new(j, "server", srv);
    }
    text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        log_warning("could not record this restore in the repository: out of memory");
        goto out;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL's place: the object is the text and a newline */
    if (storage_put(inv->st, out->key, text, len + 1, 0) != 0) {
        log_warning("could not record this restore in the repository (%s)", out->key);
        log_detail("the restore itself is complete; a read-only repository keeps no record");
        goto out;
    }
    log_info("recorded this restore as \"%s\"", out->key);
    ret = 0;
out:
    free(text);
    json_decref(j);
    return ret;
}

/* ---- reading records back ---- */

typedef struct rec_list {
    storage *st;
    restore_rec *v;
    size_t n, cap;
} rec_list;

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static uint64_t jlsn(json_t *o, const char *k)
{
    uint64_t l = 0;
    json_t *v = json_object_get(o, k);
    if (json_is_string(v) && lsn_parse(json_string_value(v), &l) != 0)
        l = 0;
    return l;
}

static uint32_t jtli(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= UINT32_MAX
               ? (uint32_t)json_integer_value(v) : 0;
}

static int rec_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    rec_list *l = arg;
    size_t kl = strlen(key);
    char *buf = NULL;
    size_t len;
    (void)mtime;
    if (kl < 5 || strcmp(key + kl - 5, ".json") != 0 || strchr(key + strlen(RECORD_PREFIX), '/'))
        return 0;
    if (size > (1 << 20)) {
        log_warning("restore record \"%s\" is too large; ignored", key);
        return 0;
    }
    int r = storage_get(l->st, key, 1 << 20, &buf, &len);
    if (r != 0) {
        /* one damaged record stays one: the others still count */
        log_warning("could not read restore record \"%s\"; ignored", key);
        return 0;
    }
    json_error_t err;
    json_t *j = json_loadb(buf, len, 0, &err);
    free(buf);
    if (!json_is_object(j)) {
        log_warning("restore record \"%s\" is not valid JSON; ignored", key);
        json_decref(j);
        return 0;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        restore_rec *n = realloc(l->v, nc * sizeof(*n));
        if (!n) {
            json_decref(j);
            return log_error("out of memory");
        }
        l->v = n;
        l->cap = nc;
    }
    restore_rec *rr = &l->v[l->n++];
    memset(rr, 0, sizeof(*rr));
    rr->json = j;
    snprintf(rr->id, sizeof(rr->id), "%.*s", (int)(kl - strlen(RECORD_PREFIX) - 5),
             key + strlen(RECORD_PREFIX));
    snprintf(rr->user, sizeof(rr->user), "%s", jstr(j, "user"));
    snprintf(rr->host, sizeof(rr->host), "%s", jstr(j, "host"));
    snprintf(rr->started, sizeof(rr->started), "%s", jstr(j, "started"));
    snprintf(rr->backup, sizeof(rr->backup), "%s", jstr(j, "backup"));
    snprintf(rr->state, sizeof(rr->state), "%s", jstr(j, "state"));
    snprintf(rr->archive_mode, sizeof(rr->archive_mode), "%s", jstr(j, "archive_mode"));
    snprintf(rr->pgdata, sizeof(rr->pgdata), "%s", jstr(j, "pgdata"));
    json_t *t = json_object_get(j, "target");
    const char *kind = jstr(t, "kind");
    json_t *val = json_object_get(t, "value");
    if (json_is_string(val))
        snprintf(rr->target, sizeof(rr->target), "%s '%s'", kind, json_string_value(val));
    else
        snprintf(rr->target, sizeof(rr->target), "%s", kind);
    rr->target_tli = jtli(t, "timeline");
    rr->latest = strcmp(kind, "latest") == 0;
    json_t *s = json_object_get(j, "planned_stop");
    rr->stop_lsn = jlsn(s, "lsn");
    rr->stop_tli = jtli(s, "timeline");
    json_t *srv = json_object_get(j, "server");
    rr->replay_lsn = jlsn(srv, "replay_lsn");
    rr->new_tli = jtli(srv, "new_timeline");
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(((const restore_rec *)a)->id, ((const restore_rec *)b)->id);
}

void record_describe(char *out, size_t len, const restore_rec *r)
{
    snprintf(out, len, "restore %s (%s@%s at %s, backup %s, target %s, archive mode %s)", r->id,
             r->user, r->host, r->started, r->backup, r->target,
             r->archive_mode[0] ? r->archive_mode : "?");
}

/* ---- the timeline tree ---- */

typedef struct last_ctx {
    walscan_record last;
    int have;
    uint64_t limit;   /* only records ending at or before this LSN */
} last_ctx;

static int last_cb(void *arg, const walscan_record *r)
{
    last_ctx *c = arg;
    if ((r->kind == WALSCAN_COMMIT || r->kind == WALSCAN_ABORT) && r->end_lsn <= c->limit) {
        c->last = *r;
        c->have = 1;
    }
    return 0;
}

static int last_commit_upto(inventory *inv, const timeline_path *p, uint64_t lo, uint64_t end,
                            uint64_t limit, walscan_record *out)
{
    uint64_t hi = end;
    for (int tries = 0; tries < 16; tries++) {
        uint64_t from = hi >= lo + 1 ? hi - 1 : lo;
        last_ctx c;
        scan_ctl ctl;
        memset(&c, 0, sizeof(c));
        memset(&ctl, 0, sizeof(ctl));
        c.limit = limit;
        ctl.stop_seg = hi;
        int r = pitr_scan(inv, p, from, last_cb, &c, &ctl);
        if (r != 0 && r != RS_NOT_FOUND)
            return r == RS_MISMATCH ? RS_MISMATCH : -1;
        if (c.have) {
            *out = c.last;
            return 0;
        }
        if (from == lo)
            break;
        hi = from - 1;
    }
    return RS_NOT_FOUND;
}

int pitr_last_commit(inventory *inv, const timeline_path *p, uint64_t lo, uint64_t end,
                     walscan_record *out)
{
    return last_commit_upto(inv, p, lo, end, UINT64_MAX, out);
}

static int add_node(tl_tree *t, uint32_t tli, uint32_t parent, uint64_t fork)
{
    tl_node *n = realloc(t->nodes, (t->n + 1) * sizeof(*n));
    if (!n)
        return log_error("out of memory");
    t->nodes = n;
    memset(&n[t->n], 0, sizeof(n[0]));
    n[t->n].tli = tli;
    n[t->n].parent = parent;
    n[t->n].fork = fork;
    t->n++;
    return 0;
}

const tl_node *tltree_get(const tl_tree *t, uint32_t tli)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->nodes[i].tli == tli)
            return &t->nodes[i];
    return NULL;
}

/*
 * creator -- the record of the restore that made timeline n: one that saw its server
 * promote to n, else one whose planned stop is n's fork point (a copy started by
 * hand). A copy that kept archiving ("preserve") is the one that can have archived a
 * timeline, so it wins over one that did not; among equals the newest.
 */
static int fork_matches(const restore_rec *r, const tl_node *n, uint32_t seg_size)
{
    uint64_t d = n->fork > r->stop_lsn ? n->fork - r->stop_lsn : r->stop_lsn - n->fork;
    if (d < FORK_SLACK)
        return 1;
    /* recovery to the end of the archive ends on the last segment's XLOG_SWITCH, whose
     * end PostgreSQL takes to be the end of its segment: the fork is the next one's start */
    return r->latest && n->fork % seg_size == 0 && r->stop_lsn < n->fork &&
           n->fork - r->stop_lsn <= seg_size;
}

static const restore_rec *creator(const tl_tree *t, const tl_node *n, uint32_t seg_size)
{
    const restore_rec *best = NULL;
    int best_score = 0;
    for (size_t i = 0; i < t->nrecs; i++) {
        const restore_rec *r = &t->recs[i];
        int score = 0;
        if (r->new_tli == n->tli)
            score = 4;
        else if (r->new_tli == 0 && r->stop_tli == n->parent && r->stop_lsn &&
                 fork_matches(r, n, seg_size))
            score = 2;
        if (!score)
            continue;
        if (strcmp(r->archive_mode, "preserve") == 0)
            score++;
        if (score >= best_score) { /* records are oldest first: ties go to the newest */
            best = r;
            best_score = score;
        }
    }
    return best;
}

int tltree_load(inventory *inv, tl_tree *t, int with_commits)
{
    rec_list l;
    int ret = -1;

    memset(t, 0, sizeof(*t));
    memset(&l, 0, sizeof(l));
    l.st = inv->st;
    if (storage_list(inv->st, RECORD_PREFIX, rec_cb, &l) != 0)
        goto out;
    if (l.n)
        qsort(l.v, l.n, sizeof(*l.v), cmp_rec);
    t->recs = l.v;
    t->nrecs = l.n;
    l.v = NULL;

    if (add_node(t, 1, 0, 0) != 0)
        goto out;
    for (size_t i = 0; i < inv->ts.n; i++) {
        const walhistory *h = &inv->ts.hist[i];
        if (h->tli == 1 || h->n == 0)
            continue;
        if (add_node(t, h->tli, h->entries[h->n - 1].tli, h->entries[h->n - 1].switchpoint) != 0)
            goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        tl_node *n = &t->nodes[i];
        uint64_t last = 0, maxfork = 0;
        int children = 0;
        for (size_t k = 0; k < inv->nsegs; k++)
            if (inv->segs[k].tli == n->tli) {
                n->own_segs = 1;
                last = inv->segs[k].segno;
            }
        for (size_t k = 0; k < t->n; k++)
            if (t->nodes[k].parent == n->tli) {
                children = 1;
                if (t->nodes[k].fork > maxfork)
                    maxfork = t->nodes[k].fork;
            }
        /* A leaf is a branch tip: nothing forked off it, or its own WAL goes on past its
         * last fork (a test copy forked off production, which kept writing). A fork at
         * a segment boundary (recovery ended on a WAL switch) is past a segment the
         * parent has; a fork inside a segment the parent archived has the parent's
         * later records after it. */
        n->leaf = !children || (n->own_segs && last >= maxfork / inv->seg_size);
        t->nleaves += (size_t)n->leaf;
        n->fresh = n->parent != 0 && !n->own_segs;
        if (n->parent)
            n->creator = creator(t, n, inv->seg_size);
    }
    if (with_commits) {
        for (size_t i = 0; i < t->n; i++) {
            tl_node *n = &t->nodes[i];
            timeline_path p;
            uint64_t end, limit = UINT64_MAX;
            /* a new timeline without WAL of its own holds its parent's history up to
             * the fork: the parent's last commit before it */
            if (timeline_get_path(&inv->ts, n->fresh ? n->parent : n->tli, &p) != 0)
                goto out;
            int found = inventory_path_end(inv, &p, &end);
            if (n->fresh) {
                limit = n->fork;
                if (found && end > n->fork / inv->seg_size)
                    end = n->fork / inv->seg_size;
            }
            int r = found ? last_commit_upto(inv, &p, 0, end, limit, &n->commit) : RS_NOT_FOUND;
            timeline_path_release(&p);
            if (r < 0 || r == RS_MISMATCH)
                goto out;
            n->have_commit = r == 0;
        }
    }
    ret = 0;
out:
    if (l.v) {
        for (size_t i = 0; i < l.n; i++)
            json_decref(l.v[i].json);
        free(l.v);
    }
    if (ret != 0)
        tltree_release(t);
    return ret;
}

void tltree_release(tl_tree *t)
{
    for (size_t i = 0; i < t->nrecs; i++)
        json_decref(t->recs[i].json);
    free(t->recs);
    free(t->nodes);
    memset(t, 0, sizeof(*t));
}
