/*
 * plan.c -- from a recovery target to a plan: which backup, which timelines,
 * which WAL segments, where recovery will stop; or why the target is unreachable
 * and the nearest target that is not.
 *
 * The stop rules are PostgreSQL 15's (recoveryStopsBefore / recoveryStopsAfter):
 *   time  stop before the first commit/abort with xact_time > T (>= T exclusive)
 *   xid   stop after (before, exclusive) the commit/abort of that transaction
 *   name  stop after the first restore point of that name
 *   lsn   stop after (before, exclusive) the first record starting at >= L
 *   immediate  stop once consistent (after the record that ends at the backup's stop)
 *   latest     replay everything archived on the path
 * A stop before the backup is consistent is refused by PostgreSQL ("requested
 * recovery stop point is before consistent recovery point"), so a backup only
 * serves a target whose stop lies after its stop LSN.
 */
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "pitr.h"
#include "timefmt.h"

#define SCAN_STOP 100
#define SCAN_ABORTED 101 /* told to stop (o->stop): not the WAL's fault, not reported here */

/* Throughputs behind the recovery-time estimate (measured on the benchmark box:
 * extraction incl. SHA-256, and WAL replay of pgbench traffic). */
#define EST_EXTRACT_BPS 250e6
#define EST_REPLAY_BPS 60e6

typedef struct plan_scan {
    const pitr_opts *o;
    const backup_info *b;
    int stopped;
    int before;               /* stop before stop_rec (else after it) */
    walscan_record stop_rec;
    walscan_record last_xact; /* last commit/abort replayed */
    int have_last_xact;
    walscan_record last_rec;
    int have_last_rec;
    char rp_names[512];       /* restore points seen, for the hint */
} plan_scan;

static int is_xact(const walscan_record *r)
{
    return r->kind == WALSCAN_COMMIT || r->kind == WALSCAN_ABORT;
}

static int plan_cb(void *arg, const walscan_record *r)
{
    plan_scan *ps = arg;
    const pitr_opts *o = ps->o;
    int stop = 0, before = 0;

    if (o->stop && *o->stop)
        return SCAN_ABORTED; /* restore was told to stop (a signal, or the extraction
                              * beside the plan failed): it says why */
    if (r->start_lsn < ps->b->start_lsn)
        return 0; /* before the redo point: not replayed */

    switch (o->kind) {
    case TARGET_TIME:
        if (is_xact(r) && (o->exclusive ? r->time_us >= o->time_us : r->time_us > o->time_us))
            stop = before = 1;
        break;
    case TARGET_XID:
        if (is_xact(r) && !r->prepared && r->xid == o->xid) {
            stop = 1;
            before = o->exclusive;
        }
        break;
    case TARGET_NAME:
        if (r->kind == WALSCAN_RESTORE_POINT && strcmp(r->name, o->name) == 0)
            stop = 1;
        break;
    case TARGET_LSN:
        if (r->start_lsn >= o->lsn) {
            stop = 1;
            before = o->exclusive;
        }
        break;
    case TARGET_IMMEDIATE:
        if (r->end_lsn >= ps->b->stop_lsn)
            stop = 1;
        break;
    default:
        break;
    }
    if (r->kind == WALSCAN_RESTORE_POINT) {
        size_t l = strlen(ps->rp_names);
        if (l + strlen(r->name) + 4 < sizeof(ps->rp_names))
            snprintf(ps->rp_names + l, sizeof(ps->rp_names) - l, "%s\"%s\"", l ? ", " : "",
                     r->name);
    }
    if (stop) {
        ps->stopped = 1;
        ps->before = before;
        ps->stop_rec = *r;
        if (!before) {
            ps->last_rec = *r;
            ps->have_last_rec = 1;
            if (is_xact(r)) {
                ps->last_xact = *r;
                ps->have_last_xact = 1;
            }
        }
        return SCAN_STOP;
    }
    ps->last_rec = *r;
    ps->have_last_rec = 1;
    if (is_xact(r)) {
        ps->last_xact = *r;
        ps->have_last_xact = 1;
    }
    return 0;
}

/* scan_from -- run plan_cb from backup b along path. Returns pitr_scan's result
 * with SCAN_STOP mapped to 0 (ps->stopped says so) and SCAN_ABORTED to -1 (not
 * reported: the caller that set o->stop says why). */
static int scan_from(inventory *inv, const pitr_opts *o, const backup_info *b,
                     const timeline_path *path, plan_scan *ps, scan_ctl *ctl)
{
    memset(ps, 0, sizeof(*ps));
    memset(ctl, 0, sizeof(*ctl));
    ps->o = o;
    ps->b = b;
    ctl->stop_seg = UINT64_MAX;
    if (o->handover) { /* restore: what is verified here is handed to restore_command */
        ctl->verified = handover_put;
        ctl->verified_arg = o->handover;
        if (o->wal_filter_db)
            handover_filter(o->handover, b, o->wal_filter_db);
    }
    uint64_t first = b->start_lsn / inv->seg_size;
    switch (o->kind) {
    case TARGET_LATEST:
        ctl->prefetch_to = UINT64_MAX;
        break;
    case TARGET_IMMEDIATE:
        ctl->prefetch_to = b->stop_lsn / inv->seg_size;
        break;
    case TARGET_LSN:
        ctl->prefetch_to = o->lsn / inv->seg_size;
        break;
    case TARGET_TIME:
        /* a segment archived before T holds no commit after T: surely needed */
        for (uint64_t s = first;; s++) {
            const wal_seg *w =
                inventory_find(inv, timeline_path_tli_for_seg(path, s, inv->seg_size), s);
            if (!w || w->mtime >= o->time_us / 1000000)
                break;
            ctl->prefetch_to = s;
        }
        break;
    default:
        break;
    }
    int r = pitr_scan(inv, path, first, plan_cb, ps, ctl);
    if (r == SCAN_STOP)
        r = 0;
    else if (r == SCAN_ABORTED)
        r = -1;
    return r;
}

void plan_release(plan *p)
{
    timeline_path_release(&p->path);
    memset(p, 0, sizeof(*p));
}

static void describe_xact(char *out, size_t len, const char *pre, const walscan_record *r)
{
    char ts[48], lsn[LSN_STR_LEN + 1];
    timefmt_utc_us(ts, sizeof(ts), r->time_us);
    lsn_format(lsn, r->end_lsn);
    snprintf(out, len, "%s%s of transaction %u at %s (lsn %s)", pre,
             r->kind == WALSCAN_COMMIT ? "commit" : "abort", r->xid, ts, lsn);
}

/* nearest_hint -- the "nearest reachable target" line after a refusal. */
static void nearest_hint(const plan_scan *ps)
{
    if (ps->have_last_xact) {
        char ts[48], lsn[LSN_STR_LEN + 1];
        timefmt_utc_us(ts, sizeof(ts), ps->last_xact.time_us);
        lsn_format(lsn, ps->last_xact.end_lsn);
        /* by its xid, not its time: a time target stops only at a later commit, and
         * there is none to stop at (the archive ends, or has a gap, after this one) */
        log_hint("the nearest reachable target is the last archived %s before it, of "
                 "transaction %u at %s (lsn %s): --target-xid %u",
                 ps->last_xact.kind == WALSCAN_COMMIT ? "commit" : "abort", ps->last_xact.xid,
                 ts, lsn, ps->last_xact.xid);
    } else if (ps->have_last_rec) {
        char lsn[LSN_STR_LEN + 1];
        lsn_format(lsn, ps->last_rec.start_lsn);
        log_hint("the nearest reachable target is --target-lsn %s", lsn);
    }
}

static void list_timelines(const inventory *inv, char *out, size_t len)
{
    size_t l = 0;
    l += (size_t)snprintf(out, len, "1");
    for (size_t i = 0; i < inv->ts.n && l < len; i++)
        l += (size_t)snprintf(out + l, len - l, ", %u", inv->ts.hist[i].tli);
}

static const char *target_word(enum target_kind k)
{
    switch (k) {
    case TARGET_TIME: return "time";
    case TARGET_LSN: return "lsn";
    case TARGET_XID: return "xid";
    case TARGET_NAME: return "restore point";
    case TARGET_LATEST: return "latest";
    case TARGET_IMMEDIATE: return "immediate";
    default: return "none";
    }
}

/* plan_warn -- keep a warning for --json (log it yourself). */
static void plan_warn(plan *p, const char *text)
{
    if (p->nwarn < PLAN_MAX_WARNINGS)
        snprintf(p->warn[p->nwarn++], sizeof(p->warn[0]), "%s", text);
}

static void append(char *buf, size_t len, const char *s)
{
    size_t l = strlen(buf);
    if (l < len)
        snprintf(buf + l, len - l, "%s", s);
}

/*
 * latest_warnings -- PostgreSQL's "latest" follows the highest timeline, which may be
 * a restored test copy's. Say so when several timelines are leaves (the DBA must pick
 * one) and when the chosen one does not hold the newest archived commit, naming each
 * leaf, its newest commit, the restore that made it and the --target-timeline that
 * picks it. Nothing here fails the plan.
 */
static void latest_warnings(inventory *inv, plan *p)
{
    tl_tree tr;
    const tl_node *chosen, *newest = NULL;
    char line[1024], all[2048], ts[48];

    if (tltree_load(inv, &tr, 0) != 0)
        return;
    chosen = tltree_get(&tr, p->tli);
    int needed = tr.nleaves > 1 || (chosen && !chosen->leaf);
    tltree_release(&tr);
    if (!needed || tltree_load(inv, &tr, 1) != 0)
        return;
    chosen = tltree_get(&tr, p->tli);
    for (size_t i = 0; i < tr.n; i++) {
        const tl_node *n = &tr.nodes[i];
        if (n->leaf && n->have_commit && (!newest || n->commit.time_us > newest->commit.time_us))
            newest = n;
    }
    if (tr.nleaves > 1) {
        snprintf(line, sizeof(line), "%zu leaf timelines exist: \"latest\" follows timeline %u",
                 tr.nleaves, p->tli);
        log_warning("%s", line);
        snprintf(all, sizeof(all), "%s", line);
        for (size_t i = 0; i < tr.n; i++) {
            const tl_node *n = &tr.nodes[i];
            if (!n->leaf)
                continue;
            snprintf(line, sizeof(line), "timeline %u: ", n->tli);
            if (n->have_commit) {
                char x[160];
                timefmt_utc_us(ts, sizeof(ts), n->commit.time_us);
                snprintf(x, sizeof(x), "newest archived commit %s (transaction %u%s)", ts,
                         n->commit.xid, n->fresh ? ", before its fork" : "");
                append(line, sizeof(line), x);
            } else {
                append(line, sizeof(line), "no archived commit found");
            }
            if (n->creator) {
                char d[768];
                record_describe(d, sizeof(d), n->creator);
                append(line, sizeof(line), "; created by ");
                append(line, sizeof(line), d);
            }
            char pick[64];
            snprintf(pick, sizeof(pick), "; pick it with --target-timeline %u", n->tli);
            append(line, sizeof(line), pick);
            log_detail("%s", line);
            append(all, sizeof(all), "; ");
            append(all, sizeof(all), line);
        }
        plan_warn(p, all);
    }
    if (newest && chosen && newest != chosen &&
        (!chosen->have_commit || chosen->commit.time_us < newest->commit.time_us)) {
        char lsn[LSN_STR_LEN + 1];
        timefmt_utc_us(ts, sizeof(ts), newest->commit.time_us);
        lsn_format(lsn, newest->commit.end_lsn);
        snprintf(all, sizeof(all),
                 "timeline %u, which \"latest\" follows, does not hold the newest archived "
                 "commit: transaction %u at %s (lsn %s) on timeline %u; --target-timeline %u "
                 "restores up to it",
                 p->tli, newest->commit.xid, ts, lsn, newest->tli, newest->tli);
        log_warning("%s", all);
        plan_warn(p, all);
    }
    tltree_release(&tr);
}

/* plan_guess -- see pitr.h. The same candidates and choice as plan_make's below. */
const backup_info *plan_guess(inventory *inv, const pitr_opts *o)
{
    uint32_t tli = o->tli ? o->tli : timeline_latest(&inv->ts, 1);
    timeline_path path;
    const backup_info *b = NULL;

    if (inv->nbackups == 0 || timeline_damaged(&inv->ts, tli) || !timeline_exists(&inv->ts, tli) ||
        timeline_get_path(&inv->ts, tli, &path) != 0)
        return NULL;
    for (size_t i = inv->nbackups; i-- > 0 && !b;) {
        const backup_info *bi = &inv->backups[i];
        if (!timeline_path_contains(&path, bi->start_tli, bi->start_lsn) ||
            !timeline_path_contains(&path, bi->stop_tli, bi->stop_lsn))
            continue;
        switch (o->kind) {
        case TARGET_LATEST:
        case TARGET_IMMEDIATE:
            b = bi;
            break;
        case TARGET_LSN:
            if (bi->stop_lsn <= o->lsn)
                b = bi;
            break;
        case TARGET_TIME:
            if (bi->stop_time <= o->time_us / 1000000)
                b = bi;
            break;
        default:
            i = 0; /* only the walk finds the record (xid, name) */
            break;
        }
    }
    timeline_path_release(&path);
    return b;
}

/*
 * plan_make -- see pitr.h. Nothing is written anywhere: the caller (restore) acts
 * only on a plan that came back 0.
 */
int plan_make(inventory *inv, const pitr_opts *o, plan *p)
{
    const backup_info **cand = NULL;
    size_t ncand = 0;
    const backup_info *b = NULL;
    plan_scan ps;
    scan_ctl ctl;
    int ret = -1, r;
    char name[WAL_NAME_LEN + 1], lsnbuf[LSN_STR_LEN + 1], tls[128];

    memset(p, 0, sizeof(*p));
    memset(&ps, 0, sizeof(ps));
    if (o->kind == TARGET_TIME)
        walscan_format_time(p->time_conf, sizeof(p->time_conf), o->time_us);
    p->tli = o->tli ? o->tli : timeline_latest(&inv->ts, 1);
    r = timeline_get_path(&inv->ts, p->tli, &p->path);
    if (r == RS_NOT_FOUND) {
        list_timelines(inv, tls, sizeof(tls));
        log_error("target unreachable: timeline %u does not exist in the repository", p->tli);
        log_hint("timelines in the repository: %s", tls);
        return RS_NOT_FOUND;
    }
    if (r != 0)
        return r == RS_MISMATCH ? RS_MISMATCH : -1; /* a damaged history on the path */
    if (!o->tli)
        latest_warnings(inv, p);

    if (inv->nbackups == 0) {
        log_error("target unreachable: the repository holds no backup");
        log_hint("take one with ragsafe-basebackup");
        return RS_NOT_FOUND;
    }
    cand = calloc(inv->nbackups, sizeof(*cand));
    if (!cand)
        return log_error("out of memory");
    for (size_t i = 0; i < inv->nbackups; i++) {
        const backup_info *bi = &inv->backups[i];
        if (timeline_path_contains(&p->path, bi->start_tli, bi->start_lsn) &&
            timeline_path_contains(&p->path, bi->stop_tli, bi->stop_lsn))
            cand[ncand++] = bi;
    }
    if (ncand == 0) {
        log_error("target unreachable: no backup lies on the history of timeline %u", p->tli);
        if (p->path.n > 1) {
            lsn_format(lsnbuf, p->path.steps[p->path.n - 1].begin);
            log_detail("timeline %u branched off timeline %u at %s; every backup was taken "
                       "after that point on another timeline",
                       p->tli, p->path.steps[p->path.n - 2].tli, lsnbuf);
        }
        log_hint("restore on the timeline of a backup (--target-timeline %u)",
                 inv->backups[inv->nbackups - 1].stop_tli);
        ret = RS_NOT_FOUND;
        goto out;
    }

    switch (o->kind) {
    case TARGET_LATEST:
    case TARGET_IMMEDIATE:
        b = cand[ncand - 1];
        r = scan_from(inv, o, b, &p->path, &ps, &ctl);
        break;
    case TARGET_LSN:
        for (size_t i = ncand; i-- > 0;)
            if (cand[i]->stop_lsn <= o->lsn) {
                b = cand[i];
                break;
            }
        if (!b) {
            lsn_format(lsnbuf, cand[0]->stop_lsn);
            log_error("target unreachable: lsn %s is before the end of the oldest backup",
                      o->target_str);
            log_hint("the earliest reachable target is --target-lsn %s (backup %s)", lsnbuf,
                     cand[0]->label);
            ret = RS_NOT_FOUND;
            goto out;
        }
        r = scan_from(inv, o, b, &p->path, &ps, &ctl);
        break;
    case TARGET_TIME: {
        int64_t tsec = o->time_us / 1000000;
        r = RS_NOT_FOUND;
        for (size_t i = ncand; i-- > 0;) {
            /* stop_time has whole seconds: a backup ending in T's second is tried,
             * and the scan below rejects it if a commit after T preceded its end */
            if (cand[i]->stop_time > tsec)
                continue;
            b = cand[i];
            r = scan_from(inv, o, b, &p->path, &ps, &ctl);
            if (r == 0 && ps.stopped && ps.stop_rec.start_lsn < b->stop_lsn) {
                b = NULL; /* a commit after T happened while this backup ran */
                continue;
            }
            break;
        }
        if (!b) {
            char when[32], tu[TIMEFMT_US_LEN];
            timefmt_utc(when, sizeof(when), cand[0]->stop_time + 1);
            timefmt_utc_us(tu, sizeof(tu), o->time_us);
            log_error("target unreachable: %s is before the end of the oldest usable backup", tu);
            log_hint("the earliest reachable target is --target-time '%s' (end of backup %s)",
                     when, cand[0]->label);
            ret = RS_NOT_FOUND;
            goto out;
        }
        break;
    }
    case TARGET_XID:
    case TARGET_NAME: {
        /* find the record first, then the newest backup consistent before it */
        r = scan_from(inv, o, cand[0], &p->path, &ps, &ctl);
        if (r == 0 && ps.stopped) {
            uint64_t at = ps.before ? ps.stop_rec.start_lsn : ps.stop_rec.end_lsn;
            for (size_t i = ncand; i-- > 0;)
                if (cand[i]->stop_lsn <= at) {
                    b = cand[i];
                    break;
                }
            if (!b) {
                log_error("target unreachable: %s %s lies before the end of the oldest backup",
                          target_word(o->kind), o->target_str);
                ret = RS_NOT_FOUND;
                goto out;
            }
            if (b != cand[0])
                r = scan_from(inv, o, b, &p->path, &ps, &ctl);
        } else {
            b = cand[0];
        }
        break;
    }
    default:
        log_error("no recovery target given");
        goto out;
    }

    if (r == RS_NOT_FOUND) {
        seg_name(inv, name, ctl.gap_tli, ctl.gap_segno);
        log_error("target unreachable: WAL segment %s is missing from the repository", name);
        log_detail("backup %s needs every segment from its start to the target", b->label);
        nearest_hint(&ps);
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (r != 0) {
        ret = r == RS_MISMATCH ? RS_MISMATCH : -1;
        goto out;
    }
    if (ps.stopped && o->kind != TARGET_IMMEDIATE &&
        (ps.before ? ps.stop_rec.start_lsn : ps.stop_rec.end_lsn) < b->stop_lsn) {
        log_error("target unreachable: %s %s lies before the end of the oldest backup",
                  target_word(o->kind), o->target_str);
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (!ps.stopped && o->kind != TARGET_LATEST) {
        switch (o->kind) {
        case TARGET_TIME: {
            char tu[TIMEFMT_US_LEN];
            timefmt_utc_us(tu, sizeof(tu), o->time_us);
            log_error("target unreachable: no archived commit after %s", tu);
            log_detail("recovery must see a later commit to know it reached the target time; "
                       "PostgreSQL refuses to end recovery before the target");
            break;
        }
        case TARGET_XID:
            log_error("target unreachable: transaction %s has no commit or abort record in the "
                      "archived WAL of timeline %u from backup %s on",
                      o->target_str, p->tli, b->label);
            break;
        case TARGET_NAME:
            log_error("target unreachable: no restore point \"%s\" in the archived WAL of "
                      "timeline %u from backup %s on", o->name, p->tli, b->label);
            if (ps.rp_names[0])
                log_detail("restore points found: %s", ps.rp_names);
            break;
        case TARGET_LSN:
            log_error("target unreachable: lsn %s is beyond the archived WAL", o->target_str);
            break;
        case TARGET_IMMEDIATE:
            lsn_format(lsnbuf, b->stop_lsn);
            log_error("target unreachable: the archived WAL ends before backup %s is consistent "
                      "(%s)", b->label, lsnbuf);
            break;
        default:
            break;
        }
        nearest_hint(&ps);
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (o->kind == TARGET_LATEST && (!ps.have_last_rec || ps.last_rec.end_lsn < b->stop_lsn)) {
        lsn_format(lsnbuf, b->stop_lsn);
        log_error("target unreachable: the archived WAL ends before backup %s is consistent (%s)",
                  b->label, lsnbuf);
        ret = RS_NOT_FOUND;
        goto out;
    }

    p->backup = b;
    p->first_seg = b->start_lsn / inv->seg_size;
    if (ps.stopped)
        p->last_seg = (ps.stop_rec.end_lsn - 1) / inv->seg_size;
    else
        p->last_seg = ctl.last_seg;
    p->first_tli = timeline_path_tli_for_seg(&p->path, p->first_seg, inv->seg_size);
    p->last_tli = timeline_path_tli_for_seg(&p->path, p->last_seg, inv->seg_size);
    {
        /* a receiver's partial as the last segment replayed: ragsafe-restore serves it
         * (the same conditions as inventory_load's) */
        const wal_seg *ls = inventory_find(inv, p->last_tli, p->last_seg);
        if (ls && ls->streamed) {
            p->streamed = ls;
            p->stream_flush = ctl.stream_flush;
        }
    }
    for (uint64_t s = p->first_seg; s <= p->last_seg; s++) {
        const wal_seg *w =
            inventory_find(inv, timeline_path_tli_for_seg(&p->path, s, inv->seg_size), s);
        p->nsegs++;
        if (w)
            p->wal_bytes += (uint64_t)w->size;
    }
    p->wal_raw = p->nsegs * (uint64_t)inv->seg_size;
    if (ps.have_last_xact) {
        p->stop_time_us = ps.last_xact.time_us;
        p->stop_xid = ps.last_xact.xid;
    }
    if (ps.stopped) {
        p->stop_lsn = ps.before ? ps.stop_rec.start_lsn : ps.stop_rec.end_lsn;
        if (o->kind == TARGET_IMMEDIATE) {
            lsn_format(lsnbuf, b->stop_lsn);
            snprintf(p->stop_desc, sizeof(p->stop_desc),
                     "at the consistency point of backup %s (%s)", b->label, lsnbuf);
        } else if (is_xact(&ps.stop_rec)) {
            describe_xact(p->stop_desc, sizeof(p->stop_desc), ps.before ? "before " : "after ",
                          &ps.stop_rec);
        } else if (ps.stop_rec.kind == WALSCAN_RESTORE_POINT) {
            char ts[48];
            timefmt_utc_us(ts, sizeof(ts), ps.stop_rec.time_us);
            lsn_format(lsnbuf, ps.stop_rec.end_lsn);
            snprintf(p->stop_desc, sizeof(p->stop_desc),
                     "after restore point \"%s\" created at %s (lsn %s)", ps.stop_rec.name, ts,
                     lsnbuf);
        } else {
            lsn_format(lsnbuf, ps.stop_rec.start_lsn);
            snprintf(p->stop_desc, sizeof(p->stop_desc), "%s the record at %s",
                     ps.before ? "before" : "after", lsnbuf);
        }
    } else {
        p->stop_lsn = ps.last_rec.end_lsn;
        p->last_rec_lsn = ps.have_last_rec ? ps.last_rec.start_lsn : 0;
        lsn_format(lsnbuf, p->stop_lsn);
        snprintf(p->stop_desc, sizeof(p->stop_desc), "at the end of the %s WAL (%s)",
                 p->streamed ? "streamed" : "archived", lsnbuf);
    }
    p->est_seconds = (double)b->raw_bytes / EST_EXTRACT_BPS +
                     (double)(p->stop_lsn > b->start_lsn ? p->stop_lsn - b->start_lsn : 0) /
                         EST_REPLAY_BPS +
                     3.0;
    ret = 0;
out:
    free(cand);
    if (ret != 0)
        timeline_path_release(&p->path);
    return ret;
}

static void human(char *out, size_t len, uint64_t n)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void target_text(const pitr_opts *o, char *out, size_t len)
{
    switch (o->kind) {
    case TARGET_TIME: {
        char tu[TIMEFMT_US_LEN];
        timefmt_utc_us(tu, sizeof(tu), o->time_us);
        snprintf(out, len, "time '%s' = %s%s", o->target_str, tu, o->exclusive ? ", exclusive" : "");
        break;
    }
    case TARGET_LSN:
    case TARGET_XID:
        snprintf(out, len, "%s %s%s", target_word(o->kind), o->target_str,
                 o->exclusive ? ", exclusive" : "");
        break;
    case TARGET_NAME:
        snprintf(out, len, "restore point \"%s\"", o->name);
        break;
    default:
        snprintf(out, len, "%s", target_word(o->kind));
        break;
    }
}

/* ts_dest_of -- where tablespace t goes: its --tablespace-map DIR, else the location
 * backup.json records (restore checks it before writing; see cmd_restore). */
static const char *ts_dest_of(const pitr_opts *o, const backup_tablespace *t)
{
    for (size_t i = 0; i < o->ntsmap; i++)
        if (o->tsmap[i].oid == t->oid)
            return o->tsmap[i].dir;
    return t->location;
}

void plan_print(const inventory *inv, const pitr_opts *o, const plan *p)
{
    const backup_info *b = p->backup;
    char a[LSN_STR_LEN + 1], c[LSN_STR_LEN + 1], t1[32], t2[32], h1[32], h2[32], h3[32];
    char n1[WAL_NAME_LEN + 1], n2[WAL_NAME_LEN + 1], tgt[512];

    target_text(o, tgt, sizeof(tgt));
    printf("target:          %s\n", tgt);
    lsn_format(a, b->start_lsn);
    lsn_format(c, b->stop_lsn);
    timefmt_utc(t1, sizeof(t1), b->start_time);
    timefmt_utc(t2, sizeof(t2), b->stop_time);
    printf("backup:          %s (timeline %u, start %s at %s, consistent at %s, %s)\n", b->label,
           b->start_tli, a, t1, c, t2);
    printf("timeline path:  ");
    for (size_t i = 0; i < p->path.n; i++) {
        if (p->path.steps[i].end != TIMELINE_END) {
            lsn_format(a, p->path.steps[i].end);
            printf(" %u (until %s) ->", p->path.steps[i].tli, a);
        } else {
            printf(" %u\n", p->path.steps[i].tli);
        }
    }
    seg_name(inv, n1, p->first_tli, p->first_seg);
    seg_name(inv, n2, p->last_tli, p->last_seg);
    human(h1, sizeof(h1), p->wal_bytes);
    human(h2, sizeof(h2), p->wal_raw);
    printf("wal:             %s .. %s (%" PRIu64 " segment%s, %s stored, %s raw)\n", n1, n2,
           p->nsegs, PLURAL(p->nsegs), h1, h2);
    if (p->streamed) {
        char sn[WAL_NAME_LEN + 1], fl[LSN_STR_LEN + 1], st[32];
        seg_name(inv, sn, p->streamed->tli, p->streamed->segno);
        lsn_format(fl, p->stream_flush);
        timefmt_utc(st, sizeof(st), p->streamed->mtime);
        printf("streamed:        including a streamed partial segment %s (flushed up to %s, at "
               "%s)\n", sn, fl, st);
    }
    human(h2, sizeof(h2), b->raw_bytes);
    human(h3, sizeof(h3), b->stored_bytes);
    if (b->chunked) {
        /* stored_bytes is what the backup added to the shared chunks, not what it needs */
        human(h1, sizeof(h1), p->wal_bytes);
        printf("bytes to restore: %s raw in %" PRIu64 " chunks (the backup added %s to the "
               "repository), plus %s of WAL\n", h2, b->chunks, h3, h1);
    } else {
        human(h1, sizeof(h1), b->stored_bytes + p->wal_bytes);
        printf("bytes to restore: %s (backup %s raw, %s stored; plus WAL)\n", h1, h2, h3);
    }
    printf("recovery stops:  %s\n", p->stop_desc);
    if (p->stop_time_us) {
        char ts[48];
        timefmt_utc_us(ts, sizeof(ts), p->stop_time_us);
        printf("last replayed:   transaction %u at %s\n", p->stop_xid, ts);
    }
    for (size_t i = 0; i < b->ntablespaces; i++) {
        const char *d = ts_dest_of(o, &b->tablespaces[i]);
        printf("tablespace:      %u \"%s\" -> \"%s\"%s\n", b->tablespaces[i].oid,
               b->tablespaces[i].location, d,
               d != b->tablespaces[i].location ? " (--tablespace-map)" : "");
    }
    printf("estimate:        %.0f s to a running server\n", p->est_seconds);
}

void *plan_json(const inventory *inv, const pitr_opts *o, const plan *p)
{
    const backup_info *b = p->backup;
    char a[LSN_STR_LEN + 1], n[WAL_NAME_LEN + 1], ts[48];
    json_t *j = json_object(), *path = json_array(), *tgt = json_object();

    json_object_set_new(tgt, "kind", json_string(target_word(o->kind)));
    if (o->target_str)
        json_object_set_new(tgt, "value", json_string(o->target_str));
    if (o->kind == TARGET_TIME) {
        timefmt_utc_us(ts, sizeof(ts), o->time_us);
        json_object_set_new(tgt, "utc", json_string(ts));
    }
    json_object_set_new(tgt, "exclusive", json_boolean(o->exclusive));
    json_object_set_new(tgt, "timeline", json_integer(p->tli));
    json_object_set_new(j, "target", tgt);
    json_object_set_new(j, "backup", json_string(b->label));
    lsn_format(a, b->start_lsn);
    json_object_set_new(j, "backup_start_lsn", json_string(a));
    lsn_format(a, b->stop_lsn);
    json_object_set_new(j, "backup_stop_lsn", json_string(a));
    for (size_t i = 0; i < p->path.n; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "timeline", json_integer(p->path.steps[i].tli));
        lsn_format(a, p->path.steps[i].begin);
        json_object_set_new(s, "begin", json_string(a));
        if (p->path.steps[i].end != TIMELINE_END) {
            lsn_format(a, p->path.steps[i].end);
            json_object_set_new(s, "end", json_string(a));
        }
        json_array_append_new(path, s);
    }
    json_object_set_new(j, "timeline_path", path);
    seg_name(inv, n, p->first_tli, p->first_seg);
    json_object_set_new(j, "first_segment", json_string(n));
    seg_name(inv, n, p->last_tli, p->last_seg);
    json_object_set_new(j, "last_segment", json_string(n));
    json_object_set_new(j, "segments", json_integer((json_int_t)p->nsegs));
    if (p->streamed) {
        char fl[LSN_STR_LEN + 1], st[32];
        seg_name(inv, n, p->streamed->tli, p->streamed->segno);
        lsn_format(fl, p->stream_flush);
        timefmt_utc(st, sizeof(st), p->streamed->mtime);
        json_object_set_new(j, "streamed_partial",
                            json_pack("{s:s, s:s, s:s, s:s}", "segment", n, "key",
                                      p->streamed->key, "flushed_lsn", fl, "stored", st));
    } else {
        json_object_set_new(j, "streamed_partial", json_null());
    }
    json_object_set_new(j, "wal_stored_bytes", json_integer((json_int_t)p->wal_bytes));
    json_object_set_new(j, "backup_raw_bytes", json_integer((json_int_t)b->raw_bytes));
    json_object_set_new(j, "backup_stored_bytes", json_integer((json_int_t)b->stored_bytes));
    json_object_set_new(j, "bytes_to_restore",
                        json_integer((json_int_t)(b->stored_bytes + p->wal_bytes)));
    json_object_set_new(j, "stop", json_string(p->stop_desc));
    lsn_format(a, p->stop_lsn);
    json_object_set_new(j, "stop_lsn", json_string(a));
    if (p->stop_time_us) {
        timefmt_utc_us(ts, sizeof(ts), p->stop_time_us);
        json_object_set_new(j, "last_commit_time", json_string(ts));
        json_object_set_new(j, "last_commit_xid", json_integer(p->stop_xid));
    }
    json_object_set_new(j, "estimate_seconds", json_real(p->est_seconds));
    json_t *tsa = json_array();
    for (size_t i = 0; i < b->ntablespaces; i++) {
        json_t *t = json_object();
        const char *d = ts_dest_of(o, &b->tablespaces[i]);
        json_object_set_new(t, "oid", json_integer(b->tablespaces[i].oid));
        json_object_set_new(t, "location", json_string(b->tablespaces[i].location));
        json_object_set_new(t, "destination", json_string(d));
        json_object_set_new(t, "mapped", json_boolean(d != b->tablespaces[i].location));
        json_array_append_new(tsa, t);
    }
    json_object_set_new(j, "tablespaces", tsa);
    json_t *w = json_array();
    for (int i = 0; i < p->nwarn; i++)
        json_array_append_new(w, json_string(p->warn[i]));
    json_object_set_new(j, "warnings", w);
    return j;
}

int cmd_plan(const pitr_opts *o)
{
    inventory inv;
    plan p;
    int ret = EXIT_FAIL;

    int lr = inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    int r = plan_make(&inv, o, &p);
    if (r == RS_MISMATCH) {
        ret = EXIT_INTEGRITY;
        goto out;
    }
    if (r != 0)
        goto out;
    if (o->json) {
        json_t *j = plan_json(&inv, o, &p);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else {
        plan_print(&inv, o, &p);
    }
    plan_release(&p);
    ret = EXIT_OK;
out:
    inventory_release(&inv);
    return ret;
}
