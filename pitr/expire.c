/*
 * expire.c -- retention: delete backups outside the policy and the WAL that no kept
 * backup needs.
 *
 * The policy itself is lib/retention (pure functions over stop times and segment
 * numbers, unit-tested there). Without --keep-daily (the count-based policy): every
 * backup that ended inside the window (now - keep_window .. now), the newest one that
 * ended before the window starts (without it the first instants of the window could
 * not be restored), every backup younger than keep_backups, and the newest
 * min_backups are kept, and WAL is deleted only below the start segment of the oldest
 * kept backup. With --keep-daily N: the window's backups and the one before it, the
 * newest backup of each of the last N UTC days, always the newest backup; WAL is kept
 * from the start of the backup before the window on (point-in-time recovery to any
 * instant of the window) and, for each older kept backup, from its start to its stop
 * (what it needs to be consistent); the WAL between those islands goes. Either way
 * segment numbers are judged on every timeline (segments, .partial and .backup files)
 * and history files are never deleted. --now T decides as if run at T (tests, a DBA's
 * dry run; a T in the future only with --dry-run). Everything runs under the exclusive "backup" repository
 * lock, the one ragsafe-basebackup holds, so an expire never races a backup or
 * another expire, and under the exclusive "retention" lock readers hold shared (it
 * waits up to $RAGSAFE_LOCK_TIMEOUT s, default 60, for them, then exits 1 having
 * deleted nothing). A backup folder an interrupted expire left half-deleted (hidden as
 * backups/.<label>.deleting/) is removed first.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"
#include "pitr.h"
#include "retention.h"
#include "timefmt.h"

/* WAL segments deleted: consecutive numbers on one timeline, for the report */
typedef struct removed_range {
    uint32_t tli;
    uint64_t first, last;
    uint64_t files;
} removed_range;

void pitr_retention_load(inventory *inv)
{
    char *buf = NULL;
    size_t len;

    if (inv->retention_loaded)
        return;
    inv->retention_loaded = 1;
    if (storage_get(inv->st, PITR_RETENTION_KEY, 1 << 20, &buf, &len) != 0)
        return;
    json_t *m = json_loadb(buf, len, 0, NULL);
    json_t *v = m ? json_object_get(m, "pitr_from_segno") : NULL;
    if (json_is_integer(v) && json_integer_value(v) > 0)
        inv->pitr_from = (uint64_t)json_integer_value(v);
    else
        log_warning("\"%s\" is damaged; ignored (the next expire rewrites it)", PITR_RETENTION_KEY);
    json_decref(m);
    free(buf);
}

int pitr_wal_expired(const inventory *inv, uint64_t segno)
{
    if (segno >= inv->pitr_from)
        return 0;
    for (size_t i = 0; i < inv->nbackups; i++)
        if (segno >= inv->backups[i].start_lsn / inv->seg_size &&
            segno <= inv->backups[i].stop_lsn / inv->seg_size)
            return 0;
    return 1;
}

/* write_record -- PITR_RETENTION_KEY: where point-in-time recovery's WAL starts now
 * (verify and info then know the holes below it are expire's). 0 | -1 reported. */
static int write_record(inventory *inv, const char *first, uint64_t segno)
{
    json_t *j = json_pack("{s:i, s:I, s:s, s:I}", "format", 1, "time", (json_int_t)time(NULL),
                          "pitr_from", first, "pitr_from_segno", (json_int_t)segno);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    int r = -1;
    if (!text)
        log_error("out of memory");
    else
        r = storage_put(inv->st, PITR_RETENTION_KEY, text, strlen(text), 0);
    free(text);
    json_decref(j);
    return r;
}

/* expire_chunks -- the chunk packs no backup names any more (chunked.c's mark and
 * sweep, under the locks cmd_expire holds). A damaged chunk manifest leaves every pack
 * in place (reported) without failing the rest of expire. 0 | -1. */
static int expire_chunks(storage *st, const pitr_opts *o, json_t *j)
{
    uint64_t packs = 0, bytes = 0;
    int r = chunked_sweep(st, o->dry_run, &packs, &bytes);

    if (r == -1)
        return -1;
    if (j) {
        json_object_set_new(j, "chunk_packs_deleted", json_integer((json_int_t)packs));
        json_object_set_new(j, "chunk_bytes_deleted", json_integer((json_int_t)bytes));
    } else if (packs) {
        printf("chunk packs: %s %" PRIu64 " (%" PRIu64 " byte%s)\n",
               o->dry_run ? "would delete" : "deleted", packs, bytes, PLURAL(bytes));
    }
    return 0;
}

int cmd_expire(const pitr_opts *o)
{
    inventory inv;
    storage *st = NULL;
    storage_lock *lk = NULL, *rlk = NULL;
    int ret = EXIT_FAIL, r;
    retention_backup *rb = NULL;
    retention_range *kr = NULL;
    size_t nkr = 0, nrm = 0;
    removed_range *rm = NULL;
    json_t *j = NULL, *jb = NULL, *jw = NULL, *jk = NULL, *jr = NULL;

    memset(&inv, 0, sizeof(inv));
    /* a later --now expires what today's policy keeps: only a dry run may look ahead */
    if (o->now > (int64_t)time(NULL) && !o->dry_run) {
        char t[32];
        timefmt_utc(t, sizeof(t), o->now);
        log_error("--now %s is in the future: expire would delete backups and WAL the "
                  "policy keeps today", t);
        log_hint("add --dry-run to see what an expire at that time would delete");
        return EXIT_USAGE;
    }
    st = storage_open(o->repo, NULL, 0);
    if (!st)
        goto out;
    /* readers (restore, plan, verify, info, ragsafe-restore) hold the retention lock
     * shared: wait a bounded time for them, never delete under them. A dry run deletes
     * nothing and reads like any reader. Taken before the "backup" lock, so waiting for
     * readers never holds a base backup off. */
    if (!o->dry_run) {
        int t = storage_lock_timeout();
        r = storage_lock_take_timeout(st, STORAGE_RETENTION_LOCK, 1, t, &rlk);
        if (r == RS_EXISTS) {
            log_error("readers are active on repository \"%s\" (a restore, plan, verify, "
                      "WAL fetch or another expire holds the retention lock); waited %d s, nothing deleted",
                      storage_location(st), t);
            log_hint("run expire again when they have finished, or wait longer with "
                     "RAGSAFE_LOCK_TIMEOUT=<seconds>");
            goto out;
        }
        if (r != 0)
            goto out;
    }
    r = storage_lock_take(st, "backup", 1, 0, &lk);
    if (r == RS_EXISTS) {
        log_error("the repository is locked by a running backup or expire");
        log_hint("try again when it has finished");
        goto out;
    }
    if (r != 0)
        goto out;
    /* a killed expire left backups/.<label>.deleting/: invisible, a backup's worth of
     * space; finish removing it (under the lock every removal runs under) */
    if (!o->dry_run && storage_sweep_deleting(st, "backups/", NULL) != 0)
        goto out;
    int lr = o->dry_run ? inventory_load(&inv, o->repo) : inventory_load_unlocked(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }

    int64_t now = o->now ? o->now : (int64_t)time(NULL);
    size_t n = inv.nbackups;
    rb = calloc(n + 1, sizeof(*rb));
    if (!rb) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rb[i].stop_time = inv.backups[i].stop_time;
        rb[i].start_seg = inv.backups[i].start_lsn / inv.seg_size;
        rb[i].stop_seg = inv.backups[i].stop_lsn / inv.seg_size;
    }
    retention_policy pol = {.now = now, .window = o->keep_window, .keep_backups = o->keep_backups,
                            .min_backups = o->min_backups, .daily = o->keep_daily};
    retention_decide(&pol, rb, n);
    if (retention_wal_ranges(rb, n, &kr, &nkr) != 0)
        goto out;

    if (o->json) {
        j = json_object();
        jb = json_array();
        jw = json_array();
        jk = json_array();
        jr = json_array();
        if (!j || !jb || !jw || !jk || !jr) {
            log_error("out of memory");
            goto out;
        }
    } else if (o->now) {
        char t[32];
        timefmt_utc(t, sizeof(t), now);
        printf("as of %s (--now)\n", t);
    }
    const char *verb = o->dry_run ? "would delete" : "deleted";
    uint64_t del_backups = 0, del_wal = 0, del_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const backup_info *b = &inv.backups[i];
        char t[32], day[32] = "", why[96];
        timefmt_utc(t, sizeof(t), b->stop_time);
        if (rb[i].why == RETENTION_DAILY || rb[i].daily_too) {
            timefmt_utc(day, sizeof(day), rb[i].day * 86400);
            day[10] = '\0'; /* YYYY-MM-DD */
        }
        if (rb[i].why == RETENTION_DAILY)
            snprintf(why, sizeof(why), "daily %s", day);
        else if (rb[i].daily_too)
            snprintf(why, sizeof(why), "%s (also daily %s)", retention_why_text(rb[i].why), day);
        else
            snprintf(why, sizeof(why), "%s", retention_why_text(rb[i].why));
        if (jb) {
            json_t *x = json_object();
            json_object_set_new(x, "label", json_string(b->label));
            json_object_set_new(x, "stop_time", json_string(t));
            json_object_set_new(x, "keep", json_boolean(rb[i].keep));
            json_object_set_new(x, "why", json_string(retention_why_key(rb[i].why)));
            if (rb[i].keep) {
                json_object_set_new(x, "reason", json_string(why));
                json_object_set_new(x, "wal", json_string(rb[i].wal_to_end ? "to-end"
                                                                            : "start-to-stop"));
            }
            if (*day)
                json_object_set_new(x, "day", json_string(day));
            json_array_append_new(jb, x);
        } else if (rb[i].keep) {
            printf("backup %s (ended %s): keep, %s\n", b->label, t, why);
        } else {
            printf("backup %s (ended %s): expired, %s\n", b->label, t, verb);
        }
        if (rb[i].keep)
            continue;
        del_backups++;
        if (!o->dry_run) {
            char key[512];
            snprintf(key, sizeof(key), "backups/%s", b->label);
            if (storage_remove_prefix(inv.st, key) != 0)
                goto out;
            log_info("deleted backup %s", b->label);
        }
    }

    /* ---- chunk packs -------------------------------------------------------------
     * Chunked backups (ragsafe-basebackup --format chunked) share packs of chunks. The
     * expired backups are gone by now; the mark-and-sweep of the packs no kept backup
     * names is called here, still under both locks, honouring o->dry_run. */
    if (expire_chunks(inv.st, o, j) != 0)
        goto out;

    /* WAL: a segment (or .partial / .backup file) goes when no kept backup needs its
     * number, on any timeline; no kept backup at all: the WAL is left alone */
    for (int pass = 0; pass < 2 && nkr > 0; pass++) {
        wal_seg *arr = pass ? inv.others : inv.segs;
        size_t cnt = pass ? inv.nothers : inv.nsegs;
        for (size_t i = 0; i < cnt; i++) {
            if (retention_seg_kept(kr, nkr, arr[i].segno))
                continue;
            char name[64];
            if (repo_wal_name_from_key(arr[i].key, name, sizeof(name)) != 0)
                continue;
            del_wal++;
            del_bytes += (uint64_t)arr[i].size;
            if (!pass) {
                /* removed ranges: consecutive segments of one timeline */
                if (nrm > 0 && rm[nrm - 1].tli == arr[i].tli && rm[nrm - 1].last + 1 == arr[i].segno) {
                    rm[nrm - 1].last = arr[i].segno;
                    rm[nrm - 1].files++;
                } else {
                    removed_range *g = realloc(rm, (nrm + 1) * sizeof(*g));
                    if (!g) {
                        log_error("out of memory");
                        goto out;
                    }
                    rm = g;
                    rm[nrm++] = (removed_range){arr[i].tli, arr[i].segno, arr[i].segno, 1};
                }
            }
            if (jw)
                json_array_append_new(jw, json_string(name));
            else if (log_get_level() >= LOG_LEVEL_INFO)
                printf("wal %s: %s\n", name, verb);
            if (!o->dry_run && storage_remove(inv.st, arr[i].key) != 0)
                goto out;
        }
    }

    /* a kept range runs to the end (the backup the window starts from, the newest):
     * recorded for verify and info, which otherwise count the holes as missing */
    if (!o->dry_run && nkr > 0 && kr[nkr - 1].last == UINT64_MAX) {
        char name[WAL_NAME_LEN + 1];
        seg_name(&inv, name, inv.backups[kr[nkr - 1].from].start_tli, kr[nkr - 1].first);
        if (write_record(&inv, name, kr[nkr - 1].first) != 0)
            goto out;
    }

    /* the kept ranges, whole segment names (24 digits) on the timeline of the backup
     * that opens (ends) each; the same numbers are kept on every timeline */
    for (size_t i = 0; i < nkr; i++) {
        const backup_info *bf = &inv.backups[kr[i].from], *bt = &inv.backups[kr[i].to];
        char first[WAL_NAME_LEN + 1], last[WAL_NAME_LEN + 1] = "";
        seg_name(&inv, first, bf->start_tli, kr[i].first);
        if (kr[i].last != UINT64_MAX)
            seg_name(&inv, last, bt->stop_tli, kr[i].last);
        if (jk) {
            json_t *x = json_object();
            json_object_set_new(x, "first", json_string(first));
            json_object_set_new(x, "last", *last ? json_string(last) : json_null());
            json_object_set_new(x, "from_backup", json_string(bf->label));
            json_object_set_new(x, "to_backup", json_string(bt->label));
            json_object_set_new(x, "pitr", json_boolean(!*last));
            json_array_append_new(jk, x);
        } else if (!*last) {
            printf("wal kept from %s on: point-in-time recovery from the start of backup %s\n",
                   first, bf->label);
        } else if (bf == bt) {
            printf("wal kept %s to %s: backup %s, from its start to its stop (consistency)\n",
                   first, last, bf->label);
        } else {
            printf("wal kept %s to %s: backups %s to %s, each from its start to its stop "
                   "(consistency)\n", first, last, bf->label, bt->label);
        }
    }
    for (size_t i = 0; i < nrm; i++) {
        char first[WAL_NAME_LEN + 1], last[WAL_NAME_LEN + 1];
        seg_name(&inv, first, rm[i].tli, rm[i].first);
        seg_name(&inv, last, rm[i].tli, rm[i].last);
        if (jr) {
            json_t *x = json_object();
            json_object_set_new(x, "first", json_string(first));
            json_object_set_new(x, "last", json_string(last));
            json_object_set_new(x, "segments", json_integer((json_int_t)rm[i].files));
            json_array_append_new(jr, x);
        } else {
            printf("wal %s to %s: expired, %s (%" PRIu64 " segment%s)\n", first, last, verb,
                   rm[i].files, PLURAL(rm[i].files));
        }
    }

    /* the oldest kept segment, a whole name (24 digits); the same segment number is
     * kept on every timeline */
    char first[WAL_NAME_LEN + 1] = "";
    if (nkr > 0)
        seg_name(&inv, first, inv.backups[kr[0].from].start_tli, kr[0].first);
    if (j) {
        char t[32];
        timefmt_utc(t, sizeof(t), now);
        json_object_set_new(j, "dry_run", json_boolean(o->dry_run));
        json_object_set_new(j, "now", json_string(t));
        json_object_set_new(j, "keep_window_seconds", json_integer((json_int_t)o->keep_window));
        json_object_set_new(j, "keep_daily", o->keep_daily >= 0 ? json_integer(o->keep_daily)
                                                                : json_null());
        json_object_set_new(j, "backups", jb);
        json_object_set_new(j, "wal_kept", jk);
        json_object_set_new(j, "wal_removed", jr);
        json_object_set_new(j, "wal_deleted", jw);
        jb = jw = jk = jr = NULL;
        json_object_set_new(j, "wal_deleted_count", json_integer((json_int_t)del_wal));
        json_object_set_new(j, "wal_deleted_bytes", json_integer((json_int_t)del_bytes));
        json_object_set_new(j, "backups_deleted", json_integer((json_int_t)del_backups));
        json_object_set_new(j, "wal_kept_from", nkr > 0 ? json_string(first) : json_null());
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        printf("%s %" PRIu64 " backup%s and %" PRIu64 " WAL file%s (%" PRIu64 " byte%s)", verb,
               del_backups, PLURAL(del_backups), del_wal, PLURAL(del_wal), del_bytes, PLURAL(del_bytes));
        if (nkr == 1 && kr[0].last == UINT64_MAX)
            printf("; WAL kept from segment %s on (the start of backup %s), on every timeline\n",
                   first, inv.backups[kr[0].from].label);
        else if (nkr > 1)
            printf("; WAL kept in %zu ranges from segment %s on (listed above), on every "
                   "timeline\n", nkr, first);
        else
            printf("; no backup kept, WAL left alone\n");
    }
    ret = EXIT_OK;
out:
    json_decref(j);
    json_decref(jb);
    json_decref(jw);
    json_decref(jk);
    json_decref(jr);
    free(rb);
    free(kr);
    free(rm);
    inventory_release(&inv);
    storage_lock_release(rlk);
    storage_lock_release(lk);
    storage_free(st);
    return ret;
}
