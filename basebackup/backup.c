/*
 * backup.c -- one base backup, from the checks to the commit of backups/<label>/.
 *
 * Order (each step durable before the next):
 *   1. connect in replication mode; IDENTIFY_SYSTEM; server version, segment size,
 *      archive_mode; refuse what cannot give a restorable backup
 *   2. open the repository, pin it to this cluster (repo.json), take the exclusive
 *      "backup" lock (ragsafe-pitr expire takes it too), remove stale *.partial
 *   3. backups/<label>.partial/in-progress (a marker: it makes the folder visible to
 *      storage_list even while only temp files are in it, so a killed run's leftovers
 *      are found and removed by the next run)
 *   4. BASE_BACKUP: <archive>.tar.zst files streamed and committed (stream.c)
 *   5. the member files checked against the manifest; backup_manifest stored
 *   6. wait until every WAL segment from start to stop is in the repository
 *   7. backup.json, marker removed, rename backups/<label>.partial -> backups/<label>
 *
 * In an S3 repository there is no rename: copying every object of a backup (CopyObject,
 * at most 5 GiB each) would double its upload cost. There the set is written under its
 * final name backups/<label>/ and backup.json, one atomic PUT, is its commit: a backup
 * exists for every reader (backupinfo_list) exactly when its backup.json does. Under the
 * exclusive "backup" lock any backups/<x>/ without a backup.json is therefore the
 * leftover of an interrupted run, removed like a stale .partial.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backupinfo.h"
#include "basebackup.h"
#include "common.h"
#include "log.h"
#include "pgconn.h"
#include "progress.h"
#include "repo.h"
#include "timefmt.h"
#include "walname.h"

#define MARKER_NAME "in-progress"

/* bb_label_valid -- a simple name: [A-Za-z0-9_.-], not starting with '.' or '-',
 * at most BB_LABEL_MAX bytes, not ending in ".partial". */
int bb_label_valid(const char *label)
{
    size_t n = strlen(label);

    if (n == 0 || n > BB_LABEL_MAX || label[0] == '.' || label[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)label[i]) && label[i] != '_' && label[i] != '-' && label[i] != '.')
            return 0;
    if (n >= 8 && strcmp(label + n - 8, ".partial") == 0)
        return 0;
    return 1;
}

typedef struct backup_dir {
    char *prefix; /* "backups/<x>" */
    int complete; /* holds backup.json */
} backup_dir;

typedef struct partial_list {
    backup_dir *v;
    size_t n;
} partial_list;

/* partial_cb -- collect every "backups/<x>" (once each), noting which hold backup.json. */
static int partial_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    partial_list *pl = arg;
    const char *rest = key + strlen("backups/"), *slash = strchr(rest, '/');
    size_t n, i;

    (void)size;
    (void)mtime;
    if (!slash)
        return 0;
    n = (size_t)(slash - key);
    for (i = 0; i < pl->n; i++)
        if (strlen(pl->v[i].prefix) == n && memcmp(pl->v[i].prefix, key, n) == 0)
            break;
    if (i == pl->n) {
        backup_dir *v = realloc(pl->v, (pl->n + 1) * sizeof(*v));
        if (!v)
            return log_errno("could not allocate memory");
        pl->v = v;
        if (!(v[i].prefix = strndup(key, n)))
            return log_errno("could not allocate memory");
        v[i].complete = 0;
        pl->n++;
    }
    if (strcmp(slash + 1, "backup.json") == 0)
        pl->v[i].complete = 1;
    return 0;
}

/* remove_stale -- every backups/<x>.partial, and every backups/<x>/ without a
 * backup.json (S3: see the top), left by an interrupted run. The caller holds the
 * exclusive backup lock: no backup is in progress. */
static int remove_stale(storage *st)
{
    partial_list pl = {0};
    int ret = -1;

    if (storage_sweep_deleting(st, "backups/", NULL) != 0) /* a killed expire's */
        goto out;
    if (storage_list(st, "backups/", partial_cb, &pl) != 0)
        goto out;
    for (size_t i = 0; i < pl.n; i++) {
        const char *p = pl.v[i].prefix;
        size_t n = strlen(p);
        if (pl.v[i].complete && !(n > 8 && strcmp(p + n - 8, ".partial") == 0))
            continue;
        log_notice("removing \"%s\" left by an interrupted backup", p);
        if (storage_remove_prefix(st, p) != 0)
            goto out;
    }
    ret = 0;
out:
    for (size_t i = 0; i < pl.n; i++)
        free(pl.v[i].prefix);
    free(pl.v);
    return ret;
}

/* check_server -- version, archive_mode, standby or not. */
static int check_server(PGconn *conn, int *standby)
{
    const char *hs = PQparameterStatus(conn, "in_hot_standby");
    char *mode = NULL;
    int ret = -1;

    if (PQserverVersion(conn) < 150000) {
        log_error("server version %d is not supported: ragsafe-basebackup needs PostgreSQL 15 or later",
                  PQserverVersion(conn));
        return -1;
    }
    *standby = hs && strcmp(hs, "on") == 0;
    if (pgconn_show(conn, "archive_mode", &mode) != 0)
        goto out;
    if (strcmp(mode, "off") == 0) {
        if (*standby) {
            /* the primary may archive into the same repository: let the WAL wait judge */
            log_warning("archive_mode is off on this standby: its WAL must reach the repository "
                        "through the primary's archive_command");
        } else {
            log_error("could not take a base backup: archive_mode is off on the server");
            log_detail("the backup's WAL comes from the archive; with archive_mode off it never "
                       "reaches the repository and the backup could never be restored");
            log_hint("set archive_mode = on and archive_command = 'ragsafe-archive --repo REPO %%p %%f' "
                     "in postgresql.conf, then restart the server");
            goto out;
        }
    }
    ret = 0;
out:
    free(mode);
    return ret;
}

/* server_seg_size -- SHOW wal_segment_size ("16MB"). */
static int server_seg_size(PGconn *conn, uint32_t *seg_size)
{
    char *v = NULL;
    uint64_t bytes;
    int ret = -1;

    if (pgconn_show(conn, "wal_segment_size", &v) != 0)
        return -1;
    if (pgconn_parse_size(v, &bytes) != 0 || !walname_seg_size_valid(bytes))
        log_error("could not use wal_segment_size \"%s\" of the server", v);
    else {
        *seg_size = (uint32_t)bytes;
        ret = 0;
    }
    free(v);
    return ret;
}

/* build_command -- the BASE_BACKUP command (the label is a simple name: no quoting needed). */
static void build_command(char *out, size_t outlen, const char *label, const bb_opts *o)
{
    int n;

    n = snprintf(out, outlen,
                 "BASE_BACKUP ( LABEL 'ragsafe %s', PROGRESS, CHECKPOINT '%s', WAIT false, "
                 "MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256', TABLESPACE_MAP",
                 label, o->fast_checkpoint ? "fast" : "spread");
    if (o->max_rate_kb > 0 && n > 0 && (size_t)n < outlen)
        n += snprintf(out + n, outlen - (size_t)n, ", MAX_RATE %ld", o->max_rate_kb);
    if (n > 0 && (size_t)n < outlen)
        snprintf(out + n, outlen - (size_t)n, " )");
}

/* fill_info -- backup.json from what the stream brought. */
static int fill_info(backup_info *bi, const bb_stream *s, const char *label, uint64_t sysid,
                     uint32_t server_version, uint32_t seg_size, int64_t t_start, int64_t t_stop,
                     uint64_t manifest_len, const uint8_t manifest_sha[SHA256_LEN])
{
    memset(bi, 0, sizeof(*bi));
    bi->label = strdup(label);
    bi->tool_version = strdup(RAGSAFE_VERSION);
    bi->sysid = sysid;
    bi->server_version = server_version;
    bi->start_lsn = s->start_lsn;
    bi->start_tli = s->start_tli;
    bi->stop_lsn = s->stop_lsn;
    bi->stop_tli = s->stop_tli;
    bi->start_time = t_start;
    bi->stop_time = t_stop;
    bi->seg_size = seg_size;
    bi->tablespaces = calloc(s->narchives + 1, sizeof(*bi->tablespaces));
    bi->files = calloc(s->narchives + 2, sizeof(*bi->files));
    if (!bi->label || !bi->tool_version || !bi->tablespaces || !bi->files)
        return log_errno("could not allocate memory");
    for (size_t i = 0; i < s->narchives; i++) {
        const bb_archive *a = &s->archives[i];
        backup_file *f = &bi->files[bi->nfiles++];

        if (!(f->name = strdup(a->file)))
            return log_errno("could not allocate memory");
        f->raw_bytes = a->raw_bytes;
        f->stored_bytes = a->stored_bytes;
        memcpy(f->sha256, a->stored_sha256, SHA256_LEN);
        bi->raw_bytes += a->raw_bytes;
        bi->stored_bytes += a->stored_bytes;
        if (a->oid != 0) {
            backup_tablespace *t = &bi->tablespaces[bi->ntablespaces++];

            t->oid = a->oid;
            t->location = strdup(a->location ? a->location : "");
            t->file = strdup(a->file);
            if (!t->location || !t->file)
                return log_errno("could not allocate memory");
        }
    }
    {
        backup_file *f = &bi->files[bi->nfiles++];

        if (!(f->name = strdup("backup_manifest")))
            return log_errno("could not allocate memory");
        f->raw_bytes = f->stored_bytes = manifest_len;
        memcpy(f->sha256, manifest_sha, SHA256_LEN);
        bi->raw_bytes += manifest_len;
        bi->stored_bytes += manifest_len;
    }
    return 0;
}

/* fill_chunked -- backup.json's "layout" and "chunks" of a chunked backup; its
 * stored_bytes become what this backup added: the manifests (fill_info) plus the new
 * chunks' compressed bytes. Each entry of "files" keeps its own object's size. */
static void fill_chunked(backup_info *bi, const bb_chunker *c)
{
    uint64_t new_bytes;

    bi->chunked = 1;
    bb_chunker_summary(c, &bi->chunks, &bi->new_chunks, &new_bytes, &bi->packs_written,
                       &bi->chunk_size);
    bi->stored_bytes += new_bytes;
    log_info("chunks: %" PRIu64 " named, %" PRIu64 " new (%" PRIu64 " compressed bytes) in %" PRIu64
             " new pack%s", bi->chunks, bi->new_chunks, new_bytes, bi->packs_written,
             PLURAL(bi->packs_written));
}

/* mono_seconds -- monotonic clock, for the summary's duration and rate. */
static double mono_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * summary -- one line on stderr whatever stderr is (a cron log keeps it): label, size,
 * duration, rate and the WAL range the backup needs. stdout keeps only the label (or
 * backup.json) for scripts.
 */
static void summary(const backup_info *bi, uint32_t seg_size, double seconds)
{
    char size[PROGRESS_FMT_LEN], stored[PROGRESS_FMT_LEN], dur[PROGRESS_FMT_LEN];
    char rate[PROGRESS_FMT_LEN], first[WAL_NAME_LEN + 1], last[WAL_NAME_LEN + 1];
    uint64_t first_seg = lsn_segno(bi->start_lsn, seg_size);
    uint64_t last_seg = bi->stop_lsn > 0 ? lsn_segno(bi->stop_lsn - 1, seg_size) : first_seg;

    if (last_seg < first_seg) /* the same rule as bb_wal_wait */
        last_seg = first_seg;
    walname_format(first, bi->start_tli, first_seg, seg_size);
    walname_format(last, bi->stop_tli, last_seg, seg_size);
    log_notice("backup \"%s\" done: %s (%s stored) in %s (%s/s), WAL %s .. %s", bi->label,
               progress_fmt_bytes(size, (double)bi->raw_bytes),
               progress_fmt_bytes(stored, (double)bi->stored_bytes),
               progress_fmt_duration(dur, seconds),
               progress_fmt_bytes(rate, seconds > 0 ? (double)bi->raw_bytes / seconds : 0), first,
               last);
}

/* online_cpus -- zstd worker threads to use by default. */
static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* bb_run -- see the top of this file. */
int bb_run(const bb_opts *o)
{
    PGconn *conn = NULL;
    pgconn_identity id;
    uring *ur = NULL;
    repo *r = NULL;
    storage_lock *lk = NULL;
    bb_stream s;
    backup_info bi;
    manifest m;
    repo_info want;
    bb_dblist dbl = {0};
    char label[BB_LABEL_MAX + 1], prefix[BB_LABEL_MAX + 32], final_prefix[BB_LABEL_MAX + 32];
    char key[BB_LABEL_MAX + 64], command[512];
    uint8_t manifest_sha[SHA256_LEN];
    uint32_t seg_size = 0;
    int standby = 0, ret = -1, rr, created_partial = 0, direct = 0;
    int64_t t_start, t_stop;
    double t0 = mono_seconds();
    char *json = NULL;

    memset(&s, 0, sizeof(s));
    memset(&bi, 0, sizeof(bi));
    memset(&m, 0, sizeof(m));
    t_start = (int64_t)time(NULL);
    if (o->label)
        snprintf(label, sizeof(label), "%s", o->label);
    else
        timefmt_stamp(label, sizeof(label), (int64_t)t_start);
    snprintf(prefix, sizeof(prefix), "backups/%s.partial", label);
    snprintf(final_prefix, sizeof(final_prefix), "backups/%s", label);

    /* 1. the server */
    conn = pgconn_connect(o->conninfo, PGCONN_REPLICATION);
    if (!conn)
        goto out;
    pgconn_route_notices(conn);
    if (pgconn_identify(conn, &id) != 0 || check_server(conn, &standby) != 0 ||
        server_seg_size(conn, &seg_size) != 0)
        goto out;
    log_info("cluster %" PRIu64 ", timeline %" PRIu32 ", server version %d%s", id.sysid, id.tli,
             PQserverVersion(conn), standby ? " (standby)" : "");

    /* 2. the repository */
    ur = uring_new(64);
    r = repo_open(o->repo, ur, 1);
    if (!r)
        goto out;
    memset(&want, 0, sizeof(want));
    want.format = REPO_FORMAT;
    want.sysid = id.sysid;
    want.seg_size = seg_size;
    want.wal_magic = WAL_MAGIC_PG15;
    want.pg_version = (uint32_t)PQserverVersion(conn);
    rr = repo_pin(r, &want);
    if (rr != 0) {
        ret = rr == RS_MISMATCH ? RS_MISMATCH : -1;
        goto out;
    }
    rr = storage_lock_take(r->st, "backup", 1, 0, &lk);
    if (rr == RS_EXISTS) {
        log_error("could not lock the repository \"%s\": another backup or expire is running",
                  storage_location(r->st));
        goto out;
    }
    if (rr != 0)
        goto out;
    if (remove_stale(r->st) != 0)
        goto out;
    direct = strncmp(storage_location(r->st), "s3://", 5) == 0;
    if (direct)
        snprintf(prefix, sizeof(prefix), "%s", final_prefix);
    snprintf(key, sizeof(key), "%s/", final_prefix);
    rr = storage_any(r->st, key);
    if (rr < 0)
        goto out;
    if (rr != 0) {
        log_error("could not take backup \"%s\": a backup of that label already exists", label);
        log_hint("choose another --label");
        goto out;
    }

    /* 3. the marker */
    snprintf(key, sizeof(key), "%s/%s", prefix, MARKER_NAME);
    if (storage_put(r->st, key, label, strlen(label), 0) != 0)
        goto out;
    created_partial = 1;

    /* 4. the stream */
    bb_dblist_start(&dbl, o->conninfo);
    build_command(command, sizeof(command), label, o);
    log_debug("sending %s", command);
    s.conn = conn;
    s.st = r->st;
    s.prefix = prefix;
    s.level = o->level;
    s.workers = o->workers < 0 ? online_cpus() : o->workers;
    s.progress = o->progress;
    if (o->chunked && !(s.chunker = bb_chunker_new(r->st, o->level)))
        goto out;
    rr = bb_stream_run(&s, command);
    if (rr != 0) {
        ret = rr;
        goto out;
    }
    t_stop = (int64_t)time(NULL);
    pgconn_close(conn);
    conn = NULL;

    /* 5. the manifest */
    if (manifest_parse(s.manifest, s.manifest_len, &m) != 0) {
        ret = RS_MISMATCH;
        goto out;
    }
    rr = bb_stream_check_manifest(&s, &m);
    if (rr != 0) {
        ret = rr;
        goto out;
    }
    if (m.nranges > 0 && m.ranges[0].start_lsn != s.start_lsn)
        log_warning("the manifest's WAL range starts at a different position than the backup");
    if (sha256_buffer(s.manifest, s.manifest_len, manifest_sha) != 0)
        goto out;
    snprintf(key, sizeof(key), "%s/backup_manifest", prefix);
    if (storage_put(r->st, key, s.manifest, s.manifest_len, 1) != 0)
        goto out;

    /* 6. the WAL */
    {
        bb_walwait w = {
            .st = r->st, .conninfo = o->conninfo, .standby = standby, .seg_size = seg_size,
            .start_lsn = s.start_lsn, .stop_lsn = s.stop_lsn, .start_tli = s.start_tli,
            .stop_tli = s.stop_tli, .timeout = o->wal_timeout,
        };
        if (bb_wal_wait(&w) != 0)
            goto out;
    }

    /* 7. backup.json and the commit */
    if (fill_info(&bi, &s, label, id.sysid, (uint32_t)want.pg_version, seg_size, t_start, t_stop,
                  s.manifest_len, manifest_sha) != 0)
        goto out;
    bb_dblist_finish(&dbl, o->conninfo, &bi);
    if (s.chunker)
        fill_chunked(&bi, s.chunker);
    json = backupinfo_to_json(&bi);
    if (!json)
        goto out;
    snprintf(key, sizeof(key), "%s/%s", prefix, MARKER_NAME);
    if (direct && storage_remove(r->st, key) != 0)
        goto out;
    snprintf(key, sizeof(key), "%s/backup.json", prefix);
    if (storage_put(r->st, key, json, strlen(json), 1) != 0)
        goto out;
    /* direct: that was the commit */
    snprintf(key, sizeof(key), "%s/%s", prefix, MARKER_NAME);
    if (!direct && storage_remove(r->st, key) != 0)
        goto out;
    rr = direct ? 0 : storage_rename_prefix(r->st, prefix, final_prefix);
    if (rr == RS_EXISTS) {
        log_error("could not commit backup \"%s\": \"%s\" already exists", label, final_prefix);
        goto out;
    }
    if (rr != 0)
        goto out;
    created_partial = 0;
    summary(&bi, seg_size, mono_seconds() - t0);
    if (o->json)
        fputs(json, stdout);
    else
        printf("%s\n", label);
    if (fflush(stdout) != 0) {
        log_errno("could not write to standard output");
        goto out;
    }
    ret = 0;
out:
    /* A failed backup's folder goes now when we can; a killed one goes next run. */
    if (created_partial && r && storage_remove_prefix(r->st, prefix) != 0)
        log_warning("could not remove \"%s\": the next backup will", prefix);
    free(json);
    bb_dblist_release(&dbl);
    backupinfo_release(&bi);
    manifest_release(&m);
    bb_stream_release(&s);
    bb_chunker_free(s.chunker);
    if (lk)
        storage_lock_release(lk);
    pgconn_close(conn);
    repo_free(r);
    uring_free(ur);
    return ret;
}
