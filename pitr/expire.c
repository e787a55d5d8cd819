/*
 * expire.c -- retention: delete backups outside the policy and the WAL that no kept
 * backup needs.
 *
 * Kept backups: every backup that ended inside the window (now - keep_window .. now),
 * the newest one that ended before the window starts (without it the first instants
 * of the window could not be restored), every backup younger than keep_backups, and
 * the newest min_backups. WAL is deleted only below the start segment of the oldest
 * kept backup, on every timeline (segments, .partial and .backup files); history
 * files are never deleted. Everything runs under the exclusive "backup" repository
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
#include "timefmt.h"

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
    char *keep = NULL;
    const char **why = NULL;
    json_t *j = NULL, *jb = NULL, *jw = NULL;

    memset(&inv, 0, sizeof(inv));
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

    int64_t now = (int64_t)time(NULL);
    int64_t wstart = now - o->keep_window;
    size_t n = inv.nbackups;
    keep = calloc(n + 1, 1);
    why = calloc(n + 1, sizeof(*why));
    if (!keep || !why) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const backup_info *b = &inv.backups[i];
        if (b->stop_time >= wstart) {
            keep[i] = 1;
            why[i] = "inside the window";
        } else if (b->stop_time >= now - o->keep_backups) {
            keep[i] = 1;
            why[i] = "younger than --keep-backups";
        }
    }
    /* the newest backup that ended before the window opened */
    for (size_t i = n; i-- > 0;)
        if (inv.backups[i].stop_time < wstart) {
            if (!keep[i]) {
                keep[i] = 1;
                why[i] = "restores the start of the window";
            }
            break;
        }
    long mk = 0;
    for (size_t i = n; i-- > 0 && mk < o->min_backups; mk++)
        if (!keep[i]) {
            keep[i] = 1;
            why[i] = "--min-backups";
        }

    uint64_t cutoff = 0;
    uint32_t cutoff_tli = 0;
    const char *cutoff_label = NULL;
    int have_cutoff = 0;
    for (size_t i = 0; i < n; i++)
        if (keep[i] && (!have_cutoff || inv.backups[i].start_lsn / inv.seg_size < cutoff)) {
            cutoff = inv.backups[i].start_lsn / inv.seg_size;
            cutoff_tli = inv.backups[i].start_tli;
            cutoff_label = inv.backups[i].label;
            have_cutoff = 1;
        }

    if (o->json) {
        j = json_object();
        jb = json_array();
        jw = json_array();
    }
    const char *verb = o->dry_run ? "would delete" : "deleted";
    uint64_t del_backups = 0, del_wal = 0, del_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const backup_info *b = &inv.backups[i];
        char t[32];
        timefmt_utc(t, sizeof(t), b->stop_time);
        if (jb) {
            json_t *x = json_object();
            json_object_set_new(x, "label", json_string(b->label));
            json_object_set_new(x, "stop_time", json_string(t));
            json_object_set_new(x, "keep", json_boolean(keep[i]));
            if (keep[i])
                json_object_set_new(x, "reason", json_string(why[i]));
            json_array_append_new(jb, x);
        } else {
            printf("backup %s (ended %s): %s%s%s\n", b->label, t, keep[i] ? "keep, " : verb,
                   keep[i] ? why[i] : "", "");
        }
        if (keep[i])
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
    if (have_cutoff) {
        for (int pass = 0; pass < 2; pass++) {
            wal_seg *arr = pass ? inv.others : inv.segs;
            size_t cnt = pass ? inv.nothers : inv.nsegs;
            for (size_t i = 0; i < cnt; i++) {
                if (arr[i].segno >= cutoff)
                    continue;
                char name[64];
                if (repo_wal_name_from_key(arr[i].key, name, sizeof(name)) != 0)
                    continue;
                del_wal++;
                del_bytes += (uint64_t)arr[i].size;
                if (jw)
                    json_array_append_new(jw, json_string(name));
                else if (log_get_level() >= LOG_LEVEL_INFO)
                    printf("wal %s: %s\n", name, verb);
                if (!o->dry_run && storage_remove(inv.st, arr[i].key) != 0)
                    goto out;
            }
        }
    }
    if (expire_chunks(inv.st, o, j) != 0)
        goto out;
    /* the oldest kept backup's first segment, a whole name (24 digits); the same
     * segment number is kept on every timeline */
    char first[WAL_NAME_LEN + 1] = "";
    if (have_cutoff)
        seg_name(&inv, first, cutoff_tli, cutoff);
    if (j) {
        json_object_set_new(j, "dry_run", json_boolean(o->dry_run));
        json_object_set_new(j, "backups", jb);
        json_object_set_new(j, "wal_deleted", jw);
        jb = jw = NULL;
        json_object_set_new(j, "wal_deleted_count", json_integer((json_int_t)del_wal));
        json_object_set_new(j, "wal_deleted_bytes", json_integer((json_int_t)del_bytes));
        json_object_set_new(j, "backups_deleted", json_integer((json_int_t)del_backups));
        json_object_set_new(j, "wal_kept_from", have_cutoff ? json_string(first) : json_null());
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        printf("%s %" PRIu64 " backup%s and %" PRIu64 " WAL file%s (%" PRIu64 " byte%s)", verb,
               del_backups, PLURAL(del_backups), del_wal, PLURAL(del_wal), del_bytes, PLURAL(del_bytes));
        if (have_cutoff)
            printf("; WAL kept from segment %s on (the start of backup %s), on every timeline\n",
                   first, cutoff_label);
        else
            printf("; no backup kept, WAL left alone\n");
    }
    ret = EXIT_OK;
out:
    json_decref(j);
    json_decref(jb);
    json_decref(jw);
    free(keep);
    free(why);
    inventory_release(&inv);
    storage_lock_release(rlk);
    storage_lock_release(lk);
    storage_free(st);
    return ret;
}
