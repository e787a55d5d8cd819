/*
 * info.c -- what can be restored: backups, the WAL archive per timeline with its
 * gaps, the restorable window per timeline, and the age of the newest segment.
 *
 * The window of timeline T runs from the end of the oldest backup on T's history
 * whose WAL reaches T's last archived segment without a gap, to the last commit
 * archived on T (found by reading the last segments' records).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "pitr.h"
#include "timefmt.h"

typedef struct tl_report {
    uint32_t tli;
    uint32_t parent;
    uint64_t switchpoint;
    uint64_t nsegs;
    int have_segs;
    uint64_t first, last;      /* this timeline's own segments */
    char gaps[1024];
    json_t *gaps_json;         /* [{"first":NAME,"last":NAME,"segments":N}], oldest first */
    uint64_t ngaps;
    const backup_info *window_backup;
    int have_end;
    walscan_record end;
    int fresh;                 /* promoted, no WAL of its own archived yet: not a gap */
} tl_report;

/* missing segments along p in [from, to], as text ranges and (when arr) JSON range
 * objects; count returned */
static uint64_t path_gaps(const inventory *inv, const timeline_path *p, uint64_t from,
                          uint64_t to, char *out, size_t len, json_t *arr, uint64_t *last_missing)
{
    uint64_t n = 0;
    size_t l = 0;
    out[0] = '\0';
    for (uint64_t s = from; s <= to; s++) {
        uint32_t tli = timeline_path_tli_for_seg(p, s, inv->seg_size);
        if (inventory_find(inv, tli, s) || pitr_wal_expired(inv, s))
            continue;
        uint64_t e = s;
        while (e + 1 <= to &&
               !inventory_find(inv, timeline_path_tli_for_seg(p, e + 1, inv->seg_size), e + 1) &&
               !pitr_wal_expired(inv, e + 1))
            e++;
        char a[WAL_NAME_LEN + 1], b[WAL_NAME_LEN + 1];
        seg_name(inv, a, tli, s);
        seg_name(inv, b, timeline_path_tli_for_seg(p, e, inv->seg_size), e);
        if (l < len)
            l += (size_t)snprintf(out + l, len - l, "%s%s%s%s", l ? ", " : "", a,
                                  e > s ? ".." : "", e > s ? b : "");
        if (arr)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "first", a, "last", b,
                                                 "segments", (json_int_t)(e - s + 1)));
        n += e - s + 1;
        *last_missing = e;
        s = e;
    }
    return n;
}

static int report_timeline(inventory *inv, uint32_t tli, tl_report *t)
{
    timeline_path p;
    int ret = -1;
    memset(t, 0, sizeof(*t));
    t->tli = tli;
    t->gaps_json = json_array();
    if (!t->gaps_json)
        return log_error("out of memory");
    if (timeline_get_path(&inv->ts, tli, &p) != 0)
        return -1;
    if (p.n > 1) {
        t->parent = p.steps[p.n - 2].tli;
        t->switchpoint = p.steps[p.n - 1].begin;
    }
    for (size_t i = 0; i < inv->nsegs; i++)
        if (inv->segs[i].tli == tli) {
            if (!t->have_segs)
                t->first = inv->segs[i].segno;
            t->last = inv->segs[i].segno;
            t->have_segs = 1;
            t->nsegs++;
        }
    uint64_t end;
    if (!inventory_path_end(inv, &p, &end)) {
        ret = 0;
        goto out;
    }
    /* A timeline just promoted (a restored copy that archives) has its history file
     * and no segment yet: the segment holding its fork point is still being written.
     * Its history up to the fork is its parent's; nothing of its own is missing. */
    if (t->parent && !t->have_segs) {
        uint64_t fs = t->switchpoint / inv->seg_size;
        t->fresh = 1;
        if (fs == 0) {
            ret = 0;
            goto out;
        }
        if (end >= fs)
            end = fs - 1;
    }
    pitr_retention_load(inv); /* holes expire made on purpose are not gaps */
    /* gaps from the oldest backup on the path (or the first archived segment) on */
    uint64_t from = UINT64_MAX;
    for (size_t i = 0; i < inv->nbackups; i++)
        if (timeline_path_contains(&p, inv->backups[i].start_tli, inv->backups[i].start_lsn) &&
            inv->backups[i].start_lsn / inv->seg_size < from)
            from = inv->backups[i].start_lsn / inv->seg_size;
    if (from == UINT64_MAX)
        from = t->have_segs ? t->first : end;
    uint64_t last_missing = 0;
    t->ngaps = from <= end ? path_gaps(inv, &p, from, end, t->gaps, sizeof(t->gaps), t->gaps_json,
                                       &last_missing)
                           : 0;
    if (t->fresh) {
        ret = 0; /* no restorable window of its own yet */
        goto out;
    }
    for (size_t i = 0; i < inv->nbackups; i++) {
        const backup_info *b = &inv->backups[i];
        if (!timeline_path_contains(&p, b->start_tli, b->start_lsn) ||
            !timeline_path_contains(&p, b->stop_tli, b->stop_lsn))
            continue;
        if (t->ngaps && b->start_lsn / inv->seg_size <= last_missing)
            continue;
        if (b->start_lsn / inv->seg_size < inv->pitr_from)
            continue; /* kept by expire with the WAL to its stop only */
        if (b->stop_lsn / inv->seg_size > end)
            continue;
        t->window_backup = b;
        break;
    }
    if (t->window_backup) {
        int r = pitr_last_commit(inv, &p, t->window_backup->start_lsn / inv->seg_size, end, &t->end);
        if (r != 0 && r != RS_NOT_FOUND)
            goto out;
        t->have_end = r == 0;
    }
    ret = 0;
out:
    timeline_path_release(&p);
    return ret;
}

/* ---- the receiver (ragsafe-receive's stream/status.json) ---- */

static void status_str(json_t *j, const char *key, char *out, size_t len)
{
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(out, len, "%s", v ? v : "");
}

/* status_time -- an RFC 3339 field as Unix seconds; 0 when absent, -1 malformed. */
static int64_t status_time(json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    int64_t us;
    int zone = 0;
    if (!v)
        return 0;
    if (timefmt_parse(v, &us, &zone) != 0 || !zone)
        return -1;
    return us / 1000000;
}

/* status_lsn -- an "X/Y" field: 1 found, 0 absent, -1 malformed. */
static int status_lsn(json_t *j, const char *key, uint64_t *lsn)
{
    const char *v = json_string_value(json_object_get(j, key));
    if (!v)
        return 0;
    return lsn_parse(v, lsn) == 0 ? 1 : -1;
}

/*
 * stream_status_load -- see pitr.h. The receiver writes it every second or so; a
 * status that does not parse is reported (the receiver and this tool disagree on the
 * contract), never taken for an absent receiver.
 */
int stream_status_load(storage *st, int64_t now, stream_status *ss)
{
    char *buf = NULL;
    size_t len = 0;
    json_t *j = NULL;
    const char *why = NULL;
    int r, ret = RS_MISMATCH;

    memset(ss, 0, sizeof(*ss));
    ss->synchronous = -1;
    r = storage_get(st, PITR_STREAM_STATUS_KEY, 1 << 20, &buf, &len);
    if (r != 0)
        return r == RS_NOT_FOUND ? RS_NOT_FOUND : r == RS_MISMATCH ? RS_MISMATCH : -1;
    if (len && buf[strspn(buf, " \t\r\n")] != '{') {
        /* not plain JSON: stored as an object (zstd, SHA-256 trailer) */
        free(buf);
        buf = NULL;
        r = object_get_buf(st, PITR_STREAM_STATUS_KEY, 1 << 20, &buf, &len, NULL);
        if (r != 0)
            return r == RS_NOT_FOUND ? RS_NOT_FOUND : r == RS_MISMATCH ? RS_MISMATCH : -1;
    }
    j = json_loadb(buf, len, 0, NULL);
    if (!json_is_object(j)) {
        why = "not a JSON object";
        goto out;
    }
    status_str(j, "slot", ss->slot, sizeof(ss->slot));
    status_str(j, "application_name", ss->app, sizeof(ss->app));
    status_str(j, "host", ss->host, sizeof(ss->host));
    status_str(j, "segment", ss->segment, sizeof(ss->segment));
    ss->pid = json_is_integer(json_object_get(j, "pid"))
                  ? (long long)json_integer_value(json_object_get(j, "pid")) : 0;
    ss->tli = json_is_integer(json_object_get(j, "timeline"))
                  ? (uint32_t)json_integer_value(json_object_get(j, "timeline")) : 0;
    const char *sid = json_string_value(json_object_get(j, "system_identifier"));
    ss->sysid = sid ? strtoull(sid, NULL, 10) : 0;
    json_t *sy = json_object_get(j, "synchronous");
    if (json_is_boolean(sy))
        ss->synchronous = json_is_true(sy);
    int a = status_lsn(j, "flush_lsn", &ss->flush_lsn);
    int b = status_lsn(j, "server_lsn", &ss->server_lsn);
    ss->flush_time = status_time(j, "flush_time");
    ss->updated = status_time(j, "updated");
    if (a < 0 || b < 0) {
        why = "flush_lsn or server_lsn is not an LSN (X/Y)";
        goto out;
    }
    if (ss->flush_time < 0 || ss->updated < 0) {
        why = "flush_time or updated is not an RFC 3339 time with a zone";
        goto out;
    }
    if (!json_is_integer(json_object_get(j, "format")) || !ss->updated) {
        why = "no format or updated field";
        goto out;
    }
    ss->have_flush_lsn = a > 0;
    ss->have_server_lsn = b > 0;
    ss->age_seconds = now - ss->updated;
    ss->stale = ss->age_seconds > PITR_STREAM_STALE_SECONDS;
    if (ss->have_flush_lsn && ss->have_server_lsn && ss->server_lsn > ss->flush_lsn)
        ss->lag_bytes = ss->server_lsn - ss->flush_lsn;
    /* caught up when it last looked: its lag is the age of that look */
    ss->lag_seconds = now - (ss->lag_bytes == 0 || !ss->flush_time ? ss->updated : ss->flush_time);
    if (ss->lag_seconds < 0)
        ss->lag_seconds = 0;
    ret = 0;
out:
    if (why)
        log_error("the receiver status \"%s\" is invalid: %s", PITR_STREAM_STATUS_KEY, why);
    json_decref(j);
    free(buf);
    return ret;
}

static json_t *receiver_json(const stream_status *ss)
{
    char l[LSN_STR_LEN + 1], t[32];
    json_t *x = json_object();
    json_object_set_new(x, "slot", json_string(ss->slot));
    json_object_set_new(x, "application_name", json_string(ss->app));
    json_object_set_new(x, "host", json_string(ss->host));
    json_object_set_new(x, "pid", json_integer(ss->pid));
    json_object_set_new(x, "timeline", json_integer(ss->tli));
    lsn_format(l, ss->flush_lsn);
    json_object_set_new(x, "flush_lsn", ss->have_flush_lsn ? json_string(l) : json_null());
    timefmt_utc(t, sizeof(t), ss->flush_time);
    json_object_set_new(x, "flush_time", ss->flush_time ? json_string(t) : json_null());
    json_object_set_new(x, "segment", ss->segment[0] ? json_string(ss->segment) : json_null());
    lsn_format(l, ss->server_lsn);
    json_object_set_new(x, "server_lsn", ss->have_server_lsn ? json_string(l) : json_null());
    json_object_set_new(x, "synchronous",
                        ss->synchronous < 0 ? json_null() : json_boolean(ss->synchronous));
    timefmt_utc(t, sizeof(t), ss->updated);
    json_object_set_new(x, "updated", json_string(t));
    json_object_set_new(x, "age_seconds", json_integer(ss->age_seconds));
    json_object_set_new(x, "lag_seconds", json_integer(ss->lag_seconds));
    json_object_set_new(x, "lag_bytes",
                        ss->have_server_lsn ? json_integer((json_int_t)ss->lag_bytes) : json_null());
    json_object_set_new(x, "stale", json_boolean(ss->stale));
    return x;
}

static void receiver_print(const stream_status *ss)
{
    char l[LSN_STR_LEN + 1], t[32];
    printf("\nreceiver: slot %s, application_name %s, on %s (pid %lld)%s\n",
           ss->slot[0] ? ss->slot : "?", ss->app[0] ? ss->app : "?",
           ss->host[0] ? ss->host : "?", ss->pid,
           ss->synchronous > 0 ? ", synchronous" : ss->synchronous == 0 ? ", asynchronous" : "");
    lsn_format(l, ss->flush_lsn);
    timefmt_utc(t, sizeof(t), ss->flush_time);
    printf("  timeline %u, flushed up to %s%s%s%s%s\n", ss->tli, ss->have_flush_lsn ? l : "?",
           ss->flush_time ? " at " : "", ss->flush_time ? t : "",
           ss->segment[0] ? ", segment " : "", ss->segment);
    printf("  lag: %lld s", (long long)ss->lag_seconds);
    if (ss->have_server_lsn) {
        lsn_format(l, ss->server_lsn);
        printf(", %" PRIu64 " bytes (the server is at %s)", ss->lag_bytes, l);
    }
    timefmt_utc(t, sizeof(t), ss->updated);
    printf("\n  status updated %s, %lld s ago%s\n", t, (long long)ss->age_seconds,
           ss->stale ? ": STALE (is ragsafe-receive running? see its service log)" : "");
}

/* ---- node_exporter textfile format ---- */

/* snap_cb -- one manifest of ragsafe-milvus, "milvus/snapshots/<label>.json.zst"; the
 * newest by mtime is kept. */
static int snap_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    milvus_scan *sc = arg;
    size_t n = strlen(key);
    (void)size;
    if (n < 9 || strcmp(key + n - 9, ".json.zst") != 0 || strchr(key + strlen("milvus/snapshots/"), '/'))
        return 0;
    sc->count++;
    if (mtime >= sc->newest_mtime && n < sizeof(sc->newest)) {
        sc->newest_mtime = mtime;
        memcpy(sc->newest, key, n + 1);
    }
    return 0;
}

int milvus_scan_snapshots(storage *st, milvus_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    return storage_list(st, "milvus/snapshots/", snap_cb, sc);
}

static int bytes_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    (void)key;
    (void)mtime;
    *(uint64_t *)arg += (uint64_t)size;
    return 0;
}

static void metric(const char *name, const char *type, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * print_prometheus -- the metrics a monitoring system alerts on. Every sample carries
 * the repository as a label; the repo path is escaped as the text format requires.
 */
static int print_prometheus(inventory *inv, const tl_report *tl, uint32_t maxtli, int64_t newest_wal,
                            const stream_status *rcv)
{
    char repo_label[4096 * 2 + 16], *q = repo_label;
    const char *loc = storage_location(inv->st);
    int64_t now = (int64_t)time(NULL);
    milvus_scan sc;
    uint64_t repo_bytes = 0;
    char *vbuf = NULL;
    size_t vlen;

    q += sprintf(q, "repo=\"");
    for (const char *c = loc; *c && q < repo_label + sizeof(repo_label) - 8; c++) {
        if (*c == '"' || *c == '\\')
            *q++ = '\\';
        *q++ = *c == '\n' ? ' ' : *c;
    }
    sprintf(q, "\"");
    if (milvus_scan_snapshots(inv->st, &sc) != 0 ||
        storage_list(inv->st, "", bytes_cb, &repo_bytes) != 0)
        return -1;

    metric("ragsafe_wal_newest_age_seconds", "gauge",
           "Seconds since the newest WAL file was archived (the recovery point objective now).");
    if (newest_wal)
        printf("ragsafe_wal_newest_age_seconds{%s} %lld\n", repo_label, (long long)(now - newest_wal));
    metric("ragsafe_backup_count", "gauge", "Complete base backups in the repository.");
    printf("ragsafe_backup_count{%s} %zu\n", repo_label, inv->nbackups);
    if (inv->nbackups) {
        const backup_info *b = &inv->backups[inv->nbackups - 1];
        metric("ragsafe_backup_newest_age_seconds", "gauge", "Seconds since the newest base backup ended.");
        printf("ragsafe_backup_newest_age_seconds{%s} %lld\n", repo_label, (long long)(now - b->stop_time));
        metric("ragsafe_backup_newest_stored_bytes", "gauge", "Stored (compressed) size of the newest base backup.");
        printf("ragsafe_backup_newest_stored_bytes{%s} %" PRIu64 "\n", repo_label, b->stored_bytes);
        metric("ragsafe_backup_newest_raw_bytes", "gauge", "Size of the newest base backup before compression.");
        printf("ragsafe_backup_newest_raw_bytes{%s} %" PRIu64 "\n", repo_label, b->raw_bytes);
    }
    metric("ragsafe_window_start_timestamp_seconds", "gauge",
           "Unix time of the oldest instant that can be restored, per timeline.");
    for (uint32_t t = 1; t <= maxtli; t++)
        if (tl[t].window_backup)
            printf("ragsafe_window_start_timestamp_seconds{%s,timeline=\"%u\"} %lld\n", repo_label, t,
                   (long long)tl[t].window_backup->stop_time);
    metric("ragsafe_window_end_timestamp_seconds", "gauge",
           "Unix time of the last archived commit that can be restored, per timeline.");
    for (uint32_t t = 1; t <= maxtli; t++)
        if (tl[t].window_backup && tl[t].have_end)
            printf("ragsafe_window_end_timestamp_seconds{%s,timeline=\"%u\"} %.6f\n", repo_label, t,
                   (double)tl[t].end.time_us / 1e6);
    metric("ragsafe_wal_missing_segments", "gauge", "WAL segments missing inside the archive, per timeline.");
    for (uint32_t t = 1; t <= maxtli; t++)
        if (tl[t].tli)
            printf("ragsafe_wal_missing_segments{%s,timeline=\"%u\"} %" PRIu64 "\n", repo_label, t, tl[t].ngaps);
    metric("ragsafe_milvus_snapshot_count", "gauge", "Milvus snapshots in the repository.");
    printf("ragsafe_milvus_snapshot_count{%s} %" PRIu64 "\n", repo_label, sc.count);
    if (sc.count && object_get_buf(inv->st, sc.newest, 256u << 20, &vbuf, &vlen, NULL) == 0) {
        json_t *m = json_loadb(vbuf, vlen, 0, NULL);
        json_t *started = m ? json_object_get(m, "started_unix") : NULL;
        json_t *bytes = m ? json_object_get(json_object_get(m, "stats"), "bytes") : NULL;
        metric("ragsafe_milvus_snapshot_newest_age_seconds", "gauge", "Seconds since the newest Milvus snapshot started.");
        printf("ragsafe_milvus_snapshot_newest_age_seconds{%s} %lld\n", repo_label,
               (long long)(now - (json_is_integer(started) ? json_integer_value(started) : sc.newest_mtime)));
        if (json_is_integer(bytes)) {
            metric("ragsafe_milvus_snapshot_newest_bytes", "gauge", "Bytes in the newest Milvus snapshot's volumes.");
            printf("ragsafe_milvus_snapshot_newest_bytes{%s} %lld\n", repo_label, (long long)json_integer_value(bytes));
        }
        json_decref(m);
        free(vbuf);
        vbuf = NULL;
    }
    if (storage_get(inv->st, PITR_VERIFY_STATUS_KEY, 1 << 20, &vbuf, &vlen) == 0) {
        json_t *m = json_loadb(vbuf, vlen, 0, NULL);
        json_t *when = m ? json_object_get(m, "time") : NULL, *ok = m ? json_object_get(m, "intact") : NULL;
        if (json_is_integer(when) && json_is_boolean(ok)) {
            metric("ragsafe_verify_last_timestamp_seconds", "gauge", "Unix time of the last ragsafe-pitr verify.");
            printf("ragsafe_verify_last_timestamp_seconds{%s} %lld\n", repo_label, (long long)json_integer_value(when));
            metric("ragsafe_verify_last_success", "gauge", "1 when the last ragsafe-pitr verify found the repository intact.");
            printf("ragsafe_verify_last_success{%s} %d\n", repo_label, json_is_true(ok) ? 1 : 0);
        }
        json_decref(m);
        free(vbuf);
    }
    if (rcv) {
        metric("ragsafe_receive_up", "gauge",
               "1 when ragsafe-receive updated its status in the last 60 seconds, else 0.");
        printf("ragsafe_receive_up{%s} %d\n", repo_label, rcv->stale ? 0 : 1);
        metric("ragsafe_receive_status_age_seconds", "gauge",
               "Seconds since ragsafe-receive last updated its status.");
        printf("ragsafe_receive_status_age_seconds{%s} %lld\n", repo_label, (long long)rcv->age_seconds);
        metric("ragsafe_receive_flush_lag_seconds", "gauge",
               "Seconds of WAL the receiver has not flushed (0 while caught up with an idle server).");
        printf("ragsafe_receive_flush_lag_seconds{%s} %lld\n", repo_label, (long long)rcv->lag_seconds);
        if (rcv->have_server_lsn) {
            metric("ragsafe_receive_flush_lag_bytes", "gauge",
                   "Bytes of WAL the server had written that the receiver had not flushed.");
            printf("ragsafe_receive_flush_lag_bytes{%s} %" PRIu64 "\n", repo_label, rcv->lag_bytes);
        }
        if (rcv->flush_time) {
            metric("ragsafe_receive_last_flush_timestamp_seconds", "gauge",
                   "Unix time of the receiver's last flush.");
            printf("ragsafe_receive_last_flush_timestamp_seconds{%s} %lld\n", repo_label,
                   (long long)rcv->flush_time);
        }
        if (rcv->synchronous >= 0) {
            metric("ragsafe_receive_synchronous", "gauge",
                   "1 when the server counts the receiver as a synchronous standby.");
            printf("ragsafe_receive_synchronous{%s} %d\n", repo_label, rcv->synchronous);
        }
    }
    metric("ragsafe_damaged_objects", "gauge",
           "Objects the inventory found damaged and left out (backup.json, history files).");
    printf("ragsafe_damaged_objects{%s} %zu\n", repo_label, inv->ndamaged);
    metric("ragsafe_repository_bytes", "gauge", "Bytes stored in the repository.");
    printf("ragsafe_repository_bytes{%s} %" PRIu64 "\n", repo_label, repo_bytes);
    return 0;
}

/* print_tree -- the children of parent, indented by depth, oldest first. */
static void print_tree(const tl_tree *tr, uint32_t parent, int depth)
{
    char a[LSN_STR_LEN + 1];
    for (size_t i = 0; i < tr->n; i++) {
        const tl_node *n = &tr->nodes[i];
        if (n->parent != parent || (depth > 0 && !parent) || n->tli <= parent)
            continue; /* a child's number is always above its parent's */
        if (!parent) {
            printf("  %u", n->tli);
        } else {
            lsn_format(a, n->fork);
            printf("  %*s+- %u at %s", (depth - 1) * 3, "", n->tli, a);
        }
        if (n->leaf)
            printf(" (leaf)");
        if (n->fresh)
            printf(", new: no WAL archived yet");
        if (n->creator)
            printf(", made by restore %s", n->creator->id);
        printf("\n");
        print_tree(tr, n->tli, depth + 1);
    }
}

static json_t *commit_json(const walscan_record *r)
{
    char ts[48], l[LSN_STR_LEN + 1];
    json_t *x = json_object();
    timefmt_utc_us(ts, sizeof(ts), r->time_us);
    lsn_format(l, r->end_lsn);
    json_object_set_new(x, "time", json_string(ts));
    json_object_set_new(x, "xid", json_integer(r->xid));
    json_object_set_new(x, "lsn", json_string(l));
    json_object_set_new(x, "timeline", json_integer(r->tli));
    return x;
}

/* record_json -- a restore record as --json shows it: records written before every
 * time was RFC 3339 hold PostgreSQL's "2026-12-01 21:40:05.123456+00" in a few
 * places; shown in today's form ("2026-12-01T21:40:05.123456Z"). A new reference. */
static json_t *record_json(json_t *rec)
{
    json_t *j = json_deep_copy(rec);
    struct {
        const char *obj, *key;
    } times[] = {{"planned_stop", "last_commit_time"}, {"server", "replay_timestamp"},
                 {"target", "written"}};

    for (size_t i = 0; j && i < ARRAY_LEN(times); i++) {
        json_t *o = json_object_get(j, times[i].obj);
        json_t *v = json_object_get(o, times[i].key);
        char buf[TIMEFMT_US_LEN];
        int64_t us;
        int zone = 0;

        const char *kind = json_string_value(json_object_get(o, "kind"));
        if (i == 2 && (!kind || strcmp(kind, "time") != 0))
            continue;
        if (json_is_string(v) && timefmt_parse(json_string_value(v), &us, &zone) == 0 && zone &&
            timefmt_utc_us(buf, sizeof(buf), us) == 0)
            json_object_set_new(o, times[i].key, json_string(buf));
    }
    return j;
}

/* How many records the text output lists (--json lists all). */
#define INFO_RESTORES_SHOWN 10

int cmd_info(const pitr_opts *o)
{
    inventory inv;
    int ret = EXIT_FAIL;
    tl_report *tl = NULL;
    tl_tree tree;
    int have_tree = 0;
    uint32_t maxtli = 0;
    json_t *j = NULL, *jb = NULL, *jt = NULL;
    int64_t newest = 0;
    char newest_name[WAL_NAME_LEN + 1] = "";
    char a[LSN_STR_LEN + 1], c[LSN_STR_LEN + 1], t1[32], t2[32];

    stream_status rcv;
    int have_rcv = 0;

    int lr = inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    {
        int r = stream_status_load(inv.st, (int64_t)time(NULL), &rcv);
        if (r == -1)
            goto out;
        have_rcv = r == 0; /* an invalid one is reported and left out */
    }
    if (tltree_load(&inv, &tree, !o->prometheus) != 0)
        goto out;
    have_tree = 1;
    maxtli = timeline_max(&inv.ts);
    for (size_t i = 0; i < inv.nsegs; i++)
        if (inv.segs[i].tli > maxtli)
            maxtli = inv.segs[i].tli;
    if (maxtli > 65536) {
        log_error("timeline %u is out of range", maxtli);
        goto out;
    }
    tl = calloc(maxtli + 1, sizeof(*tl));
    if (!tl) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < inv.nsegs; i++)
        if (!inv.segs[i].streamed && inv.segs[i].mtime >= newest) {
            newest = inv.segs[i].mtime;
            seg_name(&inv, newest_name, inv.segs[i].tli, inv.segs[i].segno);
        }

    if (o->json || o->prometheus) {
        j = json_object();
        jb = json_array();
        jt = json_array();
    } else {
        printf("repository: %s (system identifier %" PRIu64 ", WAL segment size %u)\n\n",
               storage_location(inv.st), inv.r->info.sysid, inv.seg_size);
        printf("backups: %zu\n", inv.nbackups);
        if (inv.nbackups)
            printf("  %-20s %-20s %-20s %3s %-12s %-12s %12s %12s\n", "label", "start", "stop",
                   "tli", "start lsn", "stop lsn", "raw bytes", "stored");
    }
    for (size_t i = 0; i < inv.nbackups; i++) {
        const backup_info *b = &inv.backups[i];
        lsn_format(a, b->start_lsn);
        lsn_format(c, b->stop_lsn);
        timefmt_utc(t1, sizeof(t1), b->start_time);
        timefmt_utc(t2, sizeof(t2), b->stop_time);
        if (j) {
            json_t *x = json_object();
            json_object_set_new(x, "label", json_string(b->label));
            json_object_set_new(x, "start_time", json_string(t1));
            json_object_set_new(x, "stop_time", json_string(t2));
            json_object_set_new(x, "start_lsn", json_string(a));
            json_object_set_new(x, "stop_lsn", json_string(c));
            json_object_set_new(x, "timeline", json_integer(b->start_tli));
            json_object_set_new(x, "raw_bytes", json_integer((json_int_t)b->raw_bytes));
            json_object_set_new(x, "stored_bytes", json_integer((json_int_t)b->stored_bytes));
            json_array_append_new(jb, x);
        } else {
            printf("  %-20s %-20s %-20s %3u %-12s %-12s %12" PRIu64 " %12" PRIu64 "\n",
                   b->label, t1, t2, b->start_tli, a, c, b->raw_bytes, b->stored_bytes);
        }
    }
    if (!j) {
        printf("\ntimeline tree:\n");
        print_tree(&tree, 0, 0);
        printf("\ntimelines:\n");
    }
    for (uint32_t t = 1; t <= maxtli; t++) {
        int has_segs = 0;
        for (size_t i = 0; i < inv.nsegs && !has_segs; i++)
            has_segs = inv.segs[i].tli == t;
        if (!timeline_exists(&inv.ts, t) && !has_segs)
            continue;
        if (!timeline_exists(&inv.ts, t)) {
            log_warning("timeline %u has segments but no history file", t);
            continue;
        }
        if (report_timeline(&inv, t, &tl[t]) != 0)
            goto out;
        tl_report *r = &tl[t];
        char f[WAL_NAME_LEN + 1] = "", l[WAL_NAME_LEN + 1] = "", ws[32] = "", we[48] = "";
        if (r->have_segs) {
            seg_name(&inv, f, t, r->first);
            seg_name(&inv, l, t, r->last);
        }
        if (r->window_backup)
            timefmt_utc(ws, sizeof(ws), r->window_backup->stop_time);
        if (r->have_end)
            timefmt_utc_us(we, sizeof(we), r->end.time_us);
        lsn_format(a, r->switchpoint);
        if (j) {
            json_t *x = json_object();
            json_object_set_new(x, "timeline", json_integer(t));
            if (r->parent) {
                json_object_set_new(x, "parent", json_integer(r->parent));
                json_object_set_new(x, "switchpoint", json_string(a));
            }
            const tl_node *nd = tltree_get(&tree, t);
            json_t *kids = json_array();
            for (size_t k = 0; k < tree.n; k++)
                if (tree.nodes[k].parent == t)
                    json_array_append_new(kids, json_integer(tree.nodes[k].tli));
            json_object_set_new(x, "children", kids);
            json_object_set_new(x, "leaf", json_boolean(nd && nd->leaf));
            json_object_set_new(x, "new", json_boolean(r->fresh));
            json_object_set_new(x, "newest_commit", nd && nd->have_commit ? commit_json(&nd->commit)
                                                                          : json_null());
            json_object_set_new(x, "created_by", nd && nd->creator ? json_string(nd->creator->id)
                                                                   : json_null());
            json_object_set_new(x, "segments", json_integer((json_int_t)r->nsegs));
            json_object_set_new(x, "first_segment", r->have_segs ? json_string(f) : json_null());
            json_object_set_new(x, "last_segment", r->have_segs ? json_string(l) : json_null());
            json_object_set_new(x, "missing_segments", json_integer((json_int_t)r->ngaps));
            const wal_seg *sp = inventory_streamed(&inv, t);
            char spn[WAL_NAME_LEN + 1];
            if (sp)
                seg_name(&inv, spn, sp->tli, sp->segno);
            json_object_set_new(x, "streamed_partial", sp ? json_string(spn) : json_null());
            json_object_set_new(x, "gaps", r->gaps_json);
            r->gaps_json = NULL;
            json_t *w = json_object();
            json_object_set_new(w, "from", r->window_backup ? json_string(ws) : json_null());
            json_object_set_new(w, "from_backup", r->window_backup
                                                      ? json_string(r->window_backup->label)
                                                      : json_null());
            json_object_set_new(w, "to", r->have_end ? json_string(we) : json_null());
            if (r->have_end) {
                lsn_format(c, r->end.end_lsn);
                json_object_set_new(w, "to_lsn", json_string(c));
                json_object_set_new(w, "to_xid", json_integer(r->end.xid));
            }
            json_object_set_new(x, "window", w);
            json_array_append_new(jt, x);
        } else {
            printf("  timeline %u", t);
            if (r->parent)
                printf(" (branched off timeline %u at %s)", r->parent, a);
            const tl_node *nd = tltree_get(&tree, t);
            if (r->fresh)
                printf(": new, no WAL archived yet");
            else
                printf(": %" PRIu64 " segment%s", r->nsegs, PLURAL(r->nsegs));
            if (r->have_segs)
                printf(" %s .. %s", f, l);
            if (nd && nd->leaf)
                printf(" (leaf)");
            printf("\n");
            if (nd && nd->creator) {
                char d[1024];
                record_describe(d, sizeof(d), nd->creator);
                printf("    created by %s\n", d);
            }
            if (nd && nd->have_commit) {
                char ts[48];
                timefmt_utc_us(ts, sizeof(ts), nd->commit.time_us);
                lsn_format(c, nd->commit.end_lsn);
                printf("    newest archived commit: %s (transaction %u, lsn %s%s)\n", ts,
                       nd->commit.xid, c, r->fresh ? ", before the fork" : "");
            }
            const wal_seg *sp = inventory_streamed(&inv, t);
            if (sp) {
                char spn[WAL_NAME_LEN + 1], st[32];
                seg_name(&inv, spn, sp->tli, sp->segno);
                timefmt_utc(st, sizeof(st), sp->mtime);
                printf("    the last one, %s, is a streamed partial (stored %s)\n", spn, st);
            }
            if (r->ngaps)
                printf("    gaps: %" PRIu64 " missing: %s\n", r->ngaps, r->gaps);
            if (r->fresh)
                printf("    restorable window: none of its own yet (its history up to the fork "
                       "is timeline %u's)\n", r->parent);
            else if (r->window_backup)
                printf("    restorable window: %s (end of backup %s) .. %s\n", ws,
                       r->window_backup->label, r->have_end ? we : "(no archived commit yet)");
            else
                printf("    restorable window: none (no backup with unbroken WAL)\n");
        }
    }
    if (!j && inv.ndamaged) {
        printf("\ndamaged objects (left out; run ragsafe-pitr verify): %zu\n", inv.ndamaged);
        for (size_t i = 0; i < inv.ndamaged; i++)
            printf("  %s: %s\n", inv.damaged[i].key, inv.damaged[i].why);
    }
    int64_t age = newest ? (int64_t)time(NULL) - newest : -1;
    if (o->prometheus) {
        if (print_prometheus(&inv, tl, maxtli, newest, have_rcv ? &rcv : NULL) != 0)
            goto out;
    } else if (j) {
        json_object_set_new(j, "repository", json_string(storage_location(inv.st)));
        json_object_set_new(j, "backups", jb);
        json_object_set_new(j, "timelines", jt);
        json_t *jr = json_array();
        for (size_t i = 0; i < tree.nrecs; i++)
            json_array_append_new(jr, record_json((json_t *)tree.recs[i].json));
        json_object_set_new(j, "restores", jr);
        json_t *rpo = json_object();
        json_object_set_new(rpo, "newest_segment",
                            newest_name[0] ? json_string(newest_name) : json_null());
        json_object_set_new(rpo, "age_seconds", age >= 0 ? json_integer(age) : json_null());
        json_object_set_new(j, "rpo", rpo);
        json_object_set_new(j, "receiver", have_rcv ? receiver_json(&rcv) : json_null());
        json_t *jd = json_array();
        for (size_t i = 0; i < inv.ndamaged; i++)
            json_array_append_new(jd, json_pack("{s:s, s:s}", "key", inv.damaged[i].key, "why",
                                                inv.damaged[i].why));
        json_object_set_new(j, "damaged", jd);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        jb = jt = NULL;
    } else {
        printf("\nrestores: %zu recorded\n", tree.nrecs);
        size_t first = tree.nrecs > INFO_RESTORES_SHOWN ? tree.nrecs - INFO_RESTORES_SHOWN : 0;
        if (first)
            printf("  (%zu older not shown; --json lists all)\n", first);
        for (size_t i = first; i < tree.nrecs; i++) {
            const restore_rec *rr = &tree.recs[i];
            char d[1024];
            record_describe(d, sizeof(d), rr);
            if (rr->new_tli)
                printf("  %s: promoted to timeline %u, in %s\n", d, rr->new_tli, rr->pgdata);
            else
                printf("  %s: %s, in %s\n", d, rr->state, rr->pgdata);
        }
        if (newest_name[0])
            printf("\nnewest archived segment: %s, %lld s ago (the recovery point objective now)\n",
                   newest_name, (long long)age);
        else
            printf("\nno WAL archived yet\n");
        if (have_rcv)
            receiver_print(&rcv);
    }
    ret = EXIT_OK;
out:
    json_decref(j);
    json_decref(jb);
    json_decref(jt);
    for (uint32_t t = 0; tl && t <= maxtli; t++)
        json_decref(tl[t].gaps_json);
    free(tl);
    if (have_tree)
        tltree_release(&tree);
    inventory_release(&inv);
    return ret;
}
