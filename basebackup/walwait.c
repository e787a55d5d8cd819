/*
 * walwait.c -- a base backup is usable only with the WAL from its start to its stop
 * position; ours is not embedded, it comes from the archive. Wait, bounded, until
 * every segment is in the repository.
 *
 * BASE_BACKUP on a primary ends with a WAL switch (do_pg_backup_stop), so the stop
 * segment is complete and handed to the archiver at once; we ask the server not to
 * wait for the archiver itself (WAIT false) because its wait never times out: a broken
 * archive_command would hang the backup forever. Here the wait is --wal-timeout.
 *
 * On a standby there is no WAL switch: the stop segment reaches the repository when
 * the primary's archiver (or the standby's, with archive_mode = always) ships it,
 * which is when the primary fills or switches that segment. With a quiet primary that
 * can take up to its archive_timeout; on timeout the hint says to run
 * pg_switch_wal() on the primary.
 *
 * A backup whose timeline changed while it ran (a standby promoted) needs the
 * segments before the switch on the old timeline and after it on the new one; we
 * accept each segment under any timeline from start_tli to stop_tli.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basebackup.h"
#include "common.h"
#include "log.h"
#include "pgconn.h"
#include "repo.h"
#include "walname.h"

/* segment_present -- 1 present, 0 not yet, -1 reported. name gets the start_tli name. */
static int segment_present(const bb_walwait *w, uint64_t segno, char *name)
{
    char key[128], nm[WAL_NAME_LEN + 1];
    int r;

    for (uint32_t tli = w->stop_tli; tli >= w->start_tli && tli > 0; tli--) {
        walname_format(nm, tli, segno, w->seg_size);
        if (tli == w->stop_tli)
            memcpy(name, nm, sizeof(nm));
        if (repo_wal_key(nm, key, sizeof(key)) != 0)
            return log_error("could not build the repository key of WAL segment \"%s\"", nm);
        r = storage_stat(w->st, key, NULL, NULL);
        if (r == 0)
            return 1;
        if (r != RS_NOT_FOUND)
            return -1;
    }
    return 0;
}

/* report_archiver -- pg_stat_archiver as a detail line, over a normal connection. */
static void report_archiver(const bb_walwait *w)
{
    PGconn *c;
    PGresult *res;

    const char *keys[3], *vals[3];
    int n = 0;

    if (w->conninfo && w->conninfo[0]) {
        keys[n] = "dbname";
        vals[n++] = w->conninfo;
    }
    keys[n] = "fallback_application_name";
    vals[n++] = log_progname();
    keys[n] = vals[n] = NULL;
    c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        log_detail("could not connect to read pg_stat_archiver: %s",
                   c ? strtok(PQerrorMessage(c), "\n") : "out of memory");
        goto out;
    }
    res = PQexec(c, "SELECT archived_count, coalesce(last_archived_wal, '(none)'), "
                    "coalesce(last_archived_time::text, '-'), failed_count, "
                    "coalesce(last_failed_wal, '(none)'), coalesce(last_failed_time::text, '-'), "
                    "current_setting('archive_command') FROM pg_stat_archiver");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        log_detail("pg_stat_archiver: %s archived, last \"%s\" at %s; %s failed, last failed \"%s\" at %s",
                   PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                   PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5));
        log_detail("archive_command = '%s'", PQgetvalue(res, 0, 6));
    } else
        log_detail("could not read pg_stat_archiver: %s", strtok(PQerrorMessage(c), "\n"));
    PQclear(res);
out:
    if (c)
        PQfinish(c);
}

/* bb_wal_wait -- see basebackup.h. Polls every 200 ms, segments in order. */
int bb_wal_wait(const bb_walwait *w)
{
    uint64_t first = lsn_segno(w->start_lsn, w->seg_size);
    uint64_t last = w->stop_lsn > 0 ? lsn_segno(w->stop_lsn - 1, w->seg_size) : first;
    uint64_t segno;
    char name[WAL_NAME_LEN + 1] = "", first_name[WAL_NAME_LEN + 1], last_name[WAL_NAME_LEN + 1];
    struct timespec t0, t, pause = {0, 200 * 1000 * 1000};
    int announced = 0, r;

    if (last < first)
        last = first;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (segno = first; segno <= last;) {
        r = segment_present(w, segno, name);
        if (r < 0)
            return -1;
        if (r == 1) {
            segno++;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= w->timeout) {
            log_error("WAL segment \"%s\" was not archived within %" PRId64 " seconds", name, w->timeout);
            walname_format(first_name, w->start_tli, first, w->seg_size);
            walname_format(last_name, w->stop_tli, last, w->seg_size);
            log_detail("the backup needs every WAL segment from \"%s\" to \"%s\"; without them it "
                       "cannot be restored, so it is not kept", first_name, last_name);
            report_archiver(w);
            if (w->standby)
                log_hint("on a standby the segment is archived once the primary fills or switches it: "
                         "run SELECT pg_switch_wal(); on the primary, or raise --wal-timeout");
            else
                log_hint("check archive_command and the server log; raise --wal-timeout if the archiver "
                         "is just slow");
            return -1;
        }
        if (!announced && t.tv_sec - t0.tv_sec >= 2) {
            log_info("waiting for WAL segment \"%s\" to be archived", name);
            announced = 1;
        }
        nanosleep(&pause, NULL);
    }
    log_info("all WAL segments of the backup are in the repository");
    return 0;
}
