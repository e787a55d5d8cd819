/*
 * pitr.h -- internal interface between the files of ragsafe-pitr.
 *
 * main.c parses options into pitr_opts and calls one cmd_* function per subcommand;
 * each returns an EXIT_* status (only main exits). inventory.c loads what a
 * repository holds (backups, WAL segments per timeline, the timeline graph);
 * scan.c walks WAL along a timeline path; plan.c turns a target into a plan;
 * extract.c unpacks or verifies a backup's tar objects.
 */
#ifndef RAGSAFE_PITR_H
#define RAGSAFE_PITR_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "backupinfo.h"
#include "manifest.h"
#include "progress.h"
#include "repo.h"
#include "storage.h"
#include "timeline.h"
#include "walscan.h"

enum target_kind {
    TARGET_NONE = 0,
    TARGET_TIME,
    TARGET_LSN,
    TARGET_XID,
    TARGET_NAME,
    TARGET_LATEST,
    TARGET_IMMEDIATE,
};

typedef struct tsmap_entry {
    uint32_t oid;
    const char *dir;
} tsmap_entry;

/* Where `verify` records its last result for `info --prometheus`. */
#define PITR_VERIFY_STATUS_KEY "status/verify.json"
/* Where `expire` records the first segment point-in-time recovery needs from there on
 * (expire.c): below it, only the segments a backup needs to be consistent are kept. */
#define PITR_RETENTION_KEY "status/retention.json"

typedef struct pitr_opts {
    const char *repo;
    int json;
    int prometheus;           /* info: node_exporter textfile format */
    /* target */
    enum target_kind kind;
    const char *target_str;   /* as typed */
    int64_t time_us;          /* TARGET_TIME: Unix microseconds */
    uint64_t lsn;
    uint32_t xid;
    const char *name;
    uint32_t tli;             /* 0: latest */
    int exclusive;
    /* restore */
    const char *pgdata;
    const char *action;       /* promote | pause | shutdown */
    int force;
    tsmap_entry *tsmap;
    size_t ntsmap;
    int start;
    int eor_checkpoint;       /* --end-of-recovery-checkpoint: --start lets recovery end
                               * by itself (promote), not paused and promoted (restore.c) */
    const char *owner;
    const char *pg_bin;
    int64_t timeout;
    int archive_preserve;     /* --archive-mode preserve (default off) */
    const char **sets;        /* --set NAME=VALUE and --port N ("port=N"), in order */
    size_t nsets;
    int standby;              /* --type standby: standby.signal, no recovery target */
    struct wal_handover *handover; /* restore: the plan spools the WAL it verifies (handover.c) */
    const char *wal_filter_db; /* dump: the handover keeps this database's page records
                                * (and postgres's, the shared catalogs'), handover_filter */
    const volatile sig_atomic_t *stop; /* restore: the plan's walk gives up (-1, not reported)
                                        * once *stop is non-zero (a signal); NULL: never */
    int no_space_check;       /* --no-space-check: statvfs under-reports (compressed FS) */
    int jobs;                 /* --jobs N: restore/extract of a chunked backup (0: cores) */
    const char *extract_label, *extract_dir; /* extract LABEL DIR */
    int delta;                /* --delta: over a stale copy of the same cluster, keeping
                               * the files that match backup_manifest */
    const char *config_path;  /* absolute path of the config file named by --config or
                               * $RAGSAFE_CONFIG (the written restore_command reads it) */
    int dump_scratch;         /* restore called by dump: no report, no restore record */
    const uint32_t *db_include; /* dump: only these databases' relation files are written
                                 * (0: all); the others hollow (db_file_hollow) */
    size_t ndb_include;
    const struct given_plan *given_plan; /* dump: restore uses this plan, makes none */
    /* dump (dump.c) */
    const char *dump_file;
    const char **dump_tables, **dump_schemas;
    size_t ndump_tables, ndump_schemas;
    int dump_schema_only, dump_data_only, dump_jobs, keep_scratch;
    const char *dump_format;  /* custom | plain | directory */
    const char *scratch;      /* --scratch DIR: where the private directory is made */
    /* expire */
    int64_t keep_window;
    int64_t keep_backups;     /* < 0: off (the default with --keep-daily) */
    long min_backups;
    long keep_daily;          /* --keep-daily N; -1: not given (the count-based policy) */
    int64_t now;              /* --now: decide as if run at this Unix time (0: now) */
    int dry_run;
    const char *new_key_file; /* rekey */
    int progress;             /* PROGRESS_AUTO | PROGRESS_ON | PROGRESS_OFF */
    /* check (check.c parses these; NULL: the config file's key, else the default) */
    const struct config *cfg; /* the loaded config file (objectives) */
    const char *conninfo;     /* -d: check's server; init: the cluster whose identity to record */
    const char *chk_min_free, *chk_rpo, *chk_max_backup_age, *chk_max_milvus_age,
        *chk_switch_timeout, *chk_max_slot_wal;
} pitr_opts;

typedef struct wal_seg {
    uint32_t tli;
    uint64_t segno;
    int64_t size;     /* stored bytes */
    int64_t mtime;
    walfile_kind kind;
    int streamed;     /* a receiver's partial (stream/), counted as the segment itself */
    char key[96];
} wal_seg;

/*
 * The receiver's objects (ragsafe-receive, receive/). The segment in progress of a
 * timeline is an ordinary WAL object (object.h) under
 *     stream/<TTTTTTTT>/<segment>.partial
 * one whole segment long, its bytes past the flushed position zero, replaced in place
 * every --partial-interval; once complete the segment goes to wal/ as ragsafe-archive
 * stores it and the older partials of that timeline are deleted. The receiver's state
 * is stream/status.json (an ordinary object, JSON): format, system_identifier, slot,
 * application_name, timeline, flush_lsn, flush_time, segment, pid, host, updated,
 * server_lsn, synchronous.
 *
 * A partial extends the end of a timeline's archive only (inventory_load puts it in
 * segs, streamed set): when it is the segment right after the last one archived on
 * that timeline's path, no segment of that timeline is archived beyond it, and no later
 * timeline exists (ragsafe-restore serves it under the same conditions). Its zero tail
 * ends the records like the recycled tail of a last segment (walscan: WALSCAN_END).
 */
#define PITR_STREAM_PREFIX "stream/"
#define PITR_STREAM_STATUS_KEY "stream/status.json"
/* A receiver status older than this is stale (info, check). */
#define PITR_STREAM_STALE_SECONDS 60

/* An object judged damaged while loading the inventory (reported then): it is left
 * out, everything else is used. */
typedef struct damaged_obj {
    char key[160];     /* its key in the repository */
    char why[128];
} damaged_obj;

typedef struct inventory {
    repo *r;
    storage *st;
    storage_lock *lock; /* the shared retention lock, held until inventory_release */
    uint32_t seg_size;
    backup_info *backups;     /* sorted by stop_lsn, oldest first */
    size_t nbackups;
    wal_seg *segs;            /* WALFILE_SEGMENT only, sorted by (tli, segno) */
    size_t nsegs;
    wal_seg *others;          /* .partial and .backup files */
    size_t nothers;
    wal_seg *stream;          /* every receiver partial under stream/, used or not,
                               * sorted by (tli, segno) */
    size_t nstream;
    size_t nhistory;
    timeline_set ts;
    damaged_obj *damaged;     /* backup.json and history files that could not be used */
    size_t ndamaged;
    int retention_loaded;     /* pitr_retention_load ran */
    uint64_t pitr_from;       /* PITR_RETENTION_KEY's segment number (0: none recorded) */
} inventory;

/* 0 | RS_MISMATCH (reported: repo.json damaged) | -1 (reported). A damaged backup.json
 * or history file does not fail it: it is reported, listed in inv->damaged, and left
 * out (a damaged backup is never planned with; a damaged timeline cannot be followed). */
int inventory_load(inventory *inv, const char *repo_path);
/* inventory_load without the shared retention lock: for expire, which holds it
 * exclusive already. */
int inventory_load_unlocked(inventory *inv, const char *repo_path);

/* The exit status of a failed step: 3 for an integrity failure (RS_MISMATCH), else 1. */
static inline int pitr_status(int r)
{
    return r == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
}
void inventory_release(inventory *inv);
const wal_seg *inventory_find(const inventory *inv, uint32_t tli, uint64_t segno);
/* The receiver partial that ends timeline tli's archive (in segs, streamed), or NULL. */
const wal_seg *inventory_streamed(const inventory *inv, uint32_t tli);
/* Highest segno of timeline tli within [lo, hi]; 0 with *found 0 when none. */
uint64_t inventory_last_seg(const inventory *inv, uint32_t tli, uint64_t lo, uint64_t hi, int *found);
/* Last segment on a path (the chosen timeline's file for each segment). */
int inventory_path_end(const inventory *inv, const timeline_path *p, uint64_t *segno);
void seg_name(const inventory *inv, char *out, uint32_t tli, uint64_t segno);
/* The segment stored as name must be that segment of this repository (page header
 * against name, repo.json and history; raw_size 0: length not checked).
 * 0 | RS_MISMATCH (reported). */
int inventory_check_seg(const inventory *inv, const char *name, const void *buf, size_t len,
                        uint64_t raw_size);

/* Walk records along path from segment first_seg on. cb as for walscan; it stops
 * the walk by returning non-zero (that value is returned). Reaching the end of the
 * archived WAL returns 0 with *end_segno the last segment read. A missing segment
 * followed by later ones on the path is a gap: RS_NOT_FOUND with *gap_tli /
 * *gap_segno naming it (not reported). -1: reported (unreadable, corrupt). */
typedef struct scan_ctl {
    uint64_t last_seg;      /* out: last segment read */
    int read_any;
    uint32_t gap_tli;       /* out on RS_NOT_FOUND */
    uint64_t gap_segno;
    uint64_t stop_seg;      /* in: do not read beyond this segment (UINT64_MAX: all) */
    uint64_t prefetch_to;   /* in: segments up to here are surely needed: a second thread
                             * reads and verifies them ahead (0: none) */
    uint64_t bytes;         /* out: raw bytes read */
    uint64_t nread;         /* out: segments read */
    uint64_t stream_flush;  /* out: a streamed partial was read: the LSN after its last
                             * non-zero byte (what the receiver had flushed); else 0 */
    /* in, optional: called with each segment verified (SHA-256 against its object,
     * page header) once the walk has read it (not one the walk found damaged); returns
     * 1 when it keeps buf (it frees it), 0 when the caller is to free it */
    int (*verified)(void *arg, const char *name, char *buf, size_t len,
                    const uint8_t *sha256);
    void *verified_arg;
} scan_ctl;
int pitr_scan(inventory *inv, const timeline_path *p, uint64_t first_seg, walscan_fn cb,
              void *arg, scan_ctl *ctl);

#define PLAN_MAX_WARNINGS 4

typedef struct plan {
    const backup_info *backup;
    uint32_t tli;             /* target timeline */
    timeline_path path;
    uint64_t first_seg, last_seg;
    uint32_t first_tli, last_tli;
    uint64_t nsegs;
    uint64_t wal_bytes;       /* stored bytes of the segments */
    uint64_t wal_raw;
    int64_t stop_time_us;     /* last commit replayed (0 unknown) */
    uint32_t stop_xid;
    uint64_t stop_lsn;        /* end of the last record replayed */
    uint64_t last_rec_lsn;    /* TARGET_LATEST: where the last record replayed begins (0:
                               * unknown): --start's recovery_target_lsn (restore.c) */
    char stop_desc[256];
    double est_seconds;
    char time_conf[64];       /* TARGET_TIME: the value written into recovery_target_time */
    char warn[PLAN_MAX_WARNINGS][2048]; /* warnings about the timeline "latest" chose */
    int nwarn;                /* (logged by plan_make, listed by plan_json) */
    const wal_seg *streamed;  /* the plan replays a receiver's partial (its last segment),
                               * or NULL */
    uint64_t stream_flush;    /* its flushed position (see scan_ctl) */
} plan;

/* 0: plan made | RS_NOT_FOUND: unreachable (reported with reason and nearest target) |
 * -1 reported */
int plan_make(inventory *inv, const pitr_opts *o, plan *p);
/* The backup plan_make will choose when that is known before its walk of the WAL
 * (latest, immediate, lsn; time: the newest backup ending before T, which the walk may
 * still reject for an older one), so restore can extract it while the plan runs; NULL
 * when only the walk can tell (xid, name) or no backup fits. Nothing logged. */
const backup_info *plan_guess(inventory *inv, const pitr_opts *o);
void plan_release(plan *p);
void plan_print(const inventory *inv, const pitr_opts *o, const plan *p);
void *plan_json(const inventory *inv, const pitr_opts *o, const plan *p); /* json_t* */

/*
 * handover.c -- the WAL the plan verified, handed to restore_command (see there).
 *
 *     h = handover_new(pgdata, reserve);          NULL: no handover (said why)
 *     o.handover = h; plan_make(...);              handover_put spools each verified segment
 *     bytes = handover_keep(h, inv, &p, &n);       only the plan's segments stay
 *     ... write the data directory ...
 *     handover_commit(h, pgdata, uid, gid);        into pg_wal/ragsafe-prefetch; -1 reported:
 *                                                  the restore goes on without it
 *     handover_free(h);                            removes the spool unless committed
 */
typedef struct wal_handover wal_handover;
wal_handover *handover_new(const char *pgdata, uint64_t reserve);
int handover_put(void *arg, const char *name, char *buf, size_t len, const uint8_t *sha);
uint64_t handover_keep(wal_handover *h, const inventory *inv, const plan *p, uint64_t *nsegs);
int handover_commit(wal_handover *h, const char *pgdata, uid_t uid, gid_t gid);
void handover_free(wal_handover *h);
/* a dump's filter (walfilter.h): from the first scan's backup b on, each segment spooled
 * has the page records of b's databases other than dbname and postgres turned into
 * no-ops (none when b records no database list or not dbname). The set, and after
 * handover_keep the counts (records looked at, rewritten, their bytes, records joined
 * across segment boundaries), for the dump's check and its -v line. */
void handover_filter(wal_handover *h, const backup_info *b, const char *dbname);
const uint32_t *handover_filter_set(const wal_handover *h, size_t *n, uint64_t *records,
                                    uint64_t *rewritten, uint64_t *bytes, uint64_t *joined,
                                    const char **why);

/* A plan made by the caller of cmd_restore (dump.c), which keeps them: restore neither
 * loads an inventory nor plans, and releases none of these (the shared lock stays the
 * caller's). h (NULL: none) is the handover plan_make spooled into, handover_keep'd;
 * restore commits it into the data directory, the caller frees it. */
typedef struct given_plan {
    inventory *inv;
    const plan *p;
    wal_handover *h;
} given_plan;

/* extract / verify a .tar.zst object */
typedef struct extract_opts {
    const char *dest;          /* NULL: verify only */
    const manifest *m;
    const char *mprefix;       /* manifest path prefix: "" or "pg_tblspc/OID/" */
    unsigned char *seen;       /* m->nfiles flags, set for every file found */
    const uint8_t *stored_sha; /* expected SHA-256 of the stored object, or NULL */
    int delta;                 /* dest holds a stale copy: a file whose size and SHA-256
                                * already match its manifest entry is kept (not written),
                                * anything else in its place is replaced; the directories
                                * of the tar are listed in extract_stats.dirs */
    progress *pg;              /* the tar's bytes are added as they are read, or NULL */
    const uint32_t *db_include; /* ndb_include > 0: the relation files of other databases
                                 * are restored hollow (db_file_hollow) */
    size_t ndb_include;
    const char *only;          /* not NULL: only this manifest path is written (the others
                                * are read and checked, not written) */
    int no_writeback;          /* no early writeback: a dump's scratch copy, never fsync'd */
    int jobs;                  /* chunked backups: threads reading packs (0: 1) */
    int no_links;              /* extract: pg_tblspc/OID links not made (the tablespaces
                                * go there as plain directories) */
    const volatile sig_atomic_t *stop; /* not NULL: give up (-1, not reported) once *stop
                                        * is non-zero (restore: a signal, a refused plan) */
} extract_opts;

/* db_file_hollow -- the manifest path is a relation file of a database not in inc
 * (base/OID/... or pg_tblspc/TS/PG_.../OID/..., not PG_VERSION or pg_filenode.map): it
 * is restored as a sparse file of its size, zeroes (see dump.c). */
int db_file_hollow(const char *mpath, const uint32_t *inc, size_t n);

typedef struct extract_stats {
    uint64_t files;            /* regular files in the backup (written + kept) */
    uint64_t bytes;
    uint64_t stored;
    uint64_t bad;
    uint64_t kept, kept_bytes; /* delta: files left as they were */
    uint64_t hollow, hollow_bytes; /* db_include: relation files restored hollow */
    char **dirs;               /* delta: the tar's directories (relative, no prefix) */
    size_t ndirs, dircap;
} extract_stats;

/* Free extract_stats.dirs. */
void extract_stats_release(extract_stats *s);
/* A directory of the extracted tree, recorded in s (copied). 0 | -1 reported. */
int extract_stats_add_dir(extract_stats *s, const char *rel);

/* backups/<label>/backup_manifest as restore and verify both accept it: present, the
 * SHA-256 backup.json records, parses with its own checksum. On 0 the caller releases
 * m and, when text is not NULL, frees *text (the manifest as stored, *len bytes).
 * 0 | RS_MISMATCH (reported: missing or damaged) | -1 (reported: I/O). */
int backup_manifest_load(storage *st, const backup_info *b, manifest *m, char **text,
                         size_t *len);

/* 0 | RS_MISMATCH (reported) | -1 (reported). A key ending in ".chunks.zst" (a chunked
 * backup's archive) goes to chunked_extract. */
/* Every directory of rel under dest (0700; include_last: rel's last part too), never
 * through anything that is not a real directory. 0 | -1 reported. */
int extract_make_dirs(const char *dest, const char *rel, int include_last);
int extract_object(storage *st, const char *key, const extract_opts *eo, extract_stats *stats);

/* chunked.c: chunked base backups (ragsafe-basebackup --format chunked).
 * chunked_extract: extract_object for one archive's chunk manifest; with dest NULL
 * (verify) the manifest is checked against backup_manifest but the chunks are left to
 * chunked_verify. chunked_verify: every chunk the chunked backups among b[0..nb) name,
 * each read once; bad[i] set for each backup with a damaged or missing chunk or chunk
 * manifest (each reported with the backups and files that use it). 0 | -1 (I/O).
 * chunked_sweep: expire's mark and sweep of chunk packs (caller holds the exclusive
 * "backup" and retention locks). 0 | RS_MISMATCH (a manifest is damaged: nothing
 * swept, reported) | -1. */
int chunked_extract(storage *st, const char *key, const extract_opts *eo, extract_stats *stats);
int chunked_verify(storage *st, const backup_info *b, size_t nb, unsigned char *bad, progress *pg);
int chunked_sweep(storage *st, int dry_run, uint64_t *packs_deleted, uint64_t *bytes_deleted);
int chunked_key(const char *key);
int cmd_extract(const pitr_opts *o);

/*
 * record.c -- restore records and the timeline tree.
 *
 * Every restore that wrote a data directory leaves a record in the repository,
 * restores/<UTC stamp>-<random>.json, written through the storage layer (sealed in an
 * encrypted repository, a PUT on S3). With --start it is written before the server
 * starts (state "starting") and rewritten under the same key once recovery stopped, with
 * the new timeline when the server promoted. A record that cannot be written is a
 * warning: a restore from a read-only repository must still work.
 *
 *     restore_outcome ro = {.pgdata = ..., .started = ...};
 *     record_restore(&inv, o, &p, &ro);      0 | -1 (warned, never an error)
 */
typedef struct restore_outcome {
    const char *pgdata;        /* absolute */
    const char *old_contents;  /* the directory moved aside by --force, or NULL */
    int64_t started;           /* Unix seconds the restore began */
    int start_ran;             /* --start ran and returned */
    int start_failed;
    int promoted, paused, shutdown;
    const char *replay_ts;     /* last replayed commit timestamp ("" / NULL: unknown) */
    const char *replay_lsn;    /* pg_last_wal_replay_lsn() at the stop */
    char key[128];             /* in/out: "" makes a new record, else rewrites this one */
} restore_outcome;
int record_restore(inventory *inv, const pitr_opts *o, const plan *p, restore_outcome *out);

/* A restore record as read back (for info and plan). */
typedef struct restore_rec {
    char id[64];               /* "<stamp>-<random>" */
    char user[64], host[128], started[32], backup[64], state[24], archive_mode[16];
    char target[256];          /* e.g. "time '2026-11-26 14:03:00+01'" */
    char pgdata[512];
    uint32_t target_tli;       /* recovery_target_timeline written */
    uint32_t stop_tli;         /* the timeline at the planned stop point */
    uint64_t stop_lsn;         /* planned stop point (0 unknown) */
    uint64_t replay_lsn;       /* where the started server stopped (0 unknown) */
    uint32_t new_tli;          /* the timeline it promoted to (0: none / unknown) */
    int latest;                /* target latest: recovery ran to the end of the archive */
    void *json;                /* the record as stored (json_t *) */
} restore_rec;

/* One timeline of the repository's tree. */
typedef struct tl_node {
    uint32_t tli;
    uint32_t parent;           /* 0 for the root */
    uint64_t fork;             /* switch point off the parent */
    int leaf;                  /* a branch tip: nothing forked off it, or its WAL goes on
                                * past its last fork */
    int own_segs;              /* segments archived on this timeline */
    int fresh;                 /* a history file but no WAL of its own yet: not a gap */
    int have_commit;           /* newest archived commit along its history */
    walscan_record commit;
    const restore_rec *creator; /* the restore that made it, if known */
} tl_node;

typedef struct tl_tree {
    tl_node *nodes;            /* sorted by tli */
    size_t n;
    restore_rec *recs;         /* sorted by id (oldest first) */
    size_t nrecs;
    size_t nleaves;
} tl_tree;

/* Timelines (1 and every history file), their leaves, the restore records and which
 * made which timeline; with_commits also scans the newest archived commit of each
 * (at most 32 segments each). 0 | -1 reported. */
int tltree_load(inventory *inv, tl_tree *t, int with_commits);
void tltree_release(tl_tree *t);
const tl_node *tltree_get(const tl_tree *t, uint32_t tli);
/* The newest commit/abort archived on path between segments lo and end (scans
 * backwards, at most 32 segments). 0 | RS_NOT_FOUND | -1 reported. */
int pitr_last_commit(inventory *inv, const timeline_path *p, uint64_t lo, uint64_t end,
                     walscan_record *out);
/* "restore ID (user@host at TIME, backup L, target ...)" */
void record_describe(char *out, size_t len, const restore_rec *r);

/* helpers (util in main.c) */
double now_seconds(void);

int cmd_info(const pitr_opts *o);
/* info.c: the Milvus snapshot manifests of a repository (info --prometheus, check):
 * how many, and the key and mtime of the newest. 0 | -1 (reported). */
typedef struct milvus_scan {
    char newest[512];
    int64_t newest_mtime;
    uint64_t count;
} milvus_scan;
int milvus_scan_snapshots(storage *st, milvus_scan *sc);
/* info.c: the receiver's status (stream/status.json, see PITR_STREAM_STATUS_KEY), for
 * info and check. Stored as plain JSON or as a WAL-style object (zstd): both are read.
 * Times are Unix seconds (0: absent); lag_seconds is now - flush_time, or now - updated
 * when the receiver had flushed all the server had written (an idle server is not
 * lagging); lag_bytes is server_lsn - flush_lsn (have_server_lsn). stale: updated is
 * older than PITR_STREAM_STALE_SECONDS (or absent).
 * 0 | RS_NOT_FOUND (no receiver status) | RS_MISMATCH (reported: not the contract's
 * JSON) | -1 (reported). */
typedef struct stream_status {
    char slot[128], app[128], host[256], segment[WAL_NAME_LEN + 1];
    long long pid;
    uint32_t tli;
    uint64_t sysid;
    uint64_t flush_lsn, server_lsn;
    int have_flush_lsn, have_server_lsn;
    int64_t flush_time, updated;
    int synchronous;          /* 1 | 0 | -1 absent */
    int64_t lag_seconds, age_seconds;
    uint64_t lag_bytes;
    int stale;
} stream_status;
int stream_status_load(storage *st, int64_t now, stream_status *ss);
int cmd_plan(const pitr_opts *o);
int cmd_restore(const pitr_opts *o);
int cmd_dump(const pitr_opts *o);
/* restore.c: the PostgreSQL bin directory (--pg-bin, pg_config --bindir, or 15's) */
int find_pg_bin(const pitr_opts *o, char *out, size_t len);
int cmd_verify(const pitr_opts *o);
int cmd_expire(const pitr_opts *o);
/* expire.c: the record the last expire left (PITR_RETENTION_KEY) into inv->pitr_from,
 * once; a missing or unreadable record leaves it 0 (unreadable: reported). */
void pitr_retention_load(inventory *inv);
/* 1 when segno is a hole expire made on purpose: below inv->pitr_from and inside no
 * backup's start..stop (no restore can need it); verify and info do not count it as
 * missing. Call pitr_retention_load first. */
int pitr_wal_expired(const inventory *inv, uint64_t segno);
int cmd_rekey(const pitr_opts *o);
/* check: Nagios-style statuses (EXIT_OK, then these; a usage error is EXIT_USAGE = 2) */
enum { EXIT_CHECK_WARNING = 1, EXIT_CHECK_CRITICAL = 2 };
int cmd_check(const pitr_opts *o);
/* init.c: create the repository (root, repo.json or the encryption record) */
int cmd_init(const pitr_opts *o);

#endif
