/*
 * milvus.h -- internals of ragsafe-milvus shared by its source files (never included
 * from lib/ or another tool).
 *
 *   main.c      options, subcommands, exit statuses
 *   snapshot.c  stop, restore point, walk, store (worker threads), start, manifest
 *   restore.c   manifest check, targets, parallel extraction, metadata, row counts
 *   catalog.c   list, expire (mark and sweep), verify
 *   snapfile.c  the snapshot manifest (JSON) in and out, path checks
 *   walk.c      one volume's tree: files, directories, symlinks and their metadata
 *   stack.c     stop/start commands, signals, health wait, Milvus REST, PostgreSQL
 *   journal.c   the restore journal and the stopped-stack marker: what a killed run
 *               left behind, finished or undone by the next command
 *
 * Snapshot manifest ("milvus/snapshots/<label>.json.zst": JSON stored like every other
 * object, zstd with the SHA-256 trailer, so `zstd -dc` reads it and every load checks
 * it), written last:
 *   {"format":1,"tool":"ragsafe-milvus","label":L,"started":"...Z","finished":"...Z",
 *    "walk_started_ns":N,"downtime_ms":N,"stack_version":S|null,
 *    "milvus":{"url":U,"db":D,"collections":[{"name":C,"rows":N}...]}|null,
 *    "pg":{"restore_point":L,"lsn":"0/3000028"}|null,
 *    "stats":{"files":..,"dirs":..,"symlinks":..,"bytes":..,"new_objects":..,
 *             "new_bytes":..,"stored_bytes":..,"reused_bytes":..},
 *    "volumes":[{"name":"etcd","path":"/abs","mode":..,"uid":..,"gid":..,"mtime_ns":..,
 *                "entries":[{"path":"member/snap/db","type":"file","mode":384,"uid":0,
 *                            "gid":0,"mtime_ns":..,"ctime_ns":..,"ino":..,"size":..,
 *                            "sha256":"hex"[,"chunk_size":N,"chunks":["hex",...]]} |
 *                           {"type":"dir",...} |
 *                           {"type":"symlink","target":"..."}, ...]}]}
 * A file with "chunks" is stored as those objects, concatenated; otherwise as the one
 * object named by its sha256. Entries come in pre-order (a directory before everything in it); paths are relative
 * to the volume root. ino and ctime_ns only serve the next snapshot's unchanged-file
 * cache.
 */
#ifndef RAGSAFE_MILVUS_H
#define RAGSAFE_MILVUS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "progress.h"
#include "sha256.h"
#include "storage.h"
#include "tree.h"

#define MV_OBJECT_PREFIX "milvus/objects"
#define MV_SNAPSHOT_PREFIX "milvus/snapshots/"
#define MV_MANIFEST_SUFFIX ".json.zst"
#define MV_LOCK_NAME "milvus"
#define MV_JOURNAL_KEY "milvus/journal/restore.json"
#define MV_STOPPED_KEY "milvus/journal/stack-stopped.json"
#define MV_MANIFEST_MAX ((size_t)2 << 30)
/* Files larger than MV_CHUNK_MIN are stored as MV_CHUNK_SIZE chunks, each its own
 * object: a file rewritten in place (etcd's bbolt db) or appended to (a WAL, RocksMQ's
 * MANIFEST) then costs only its changed chunks in the next snapshot. */
#define MV_CHUNK_SIZE (512u << 10)
#define MV_CHUNK_MIN ((uint64_t)4 << 20)

/* the kinds of lib/tree.h's walk (tree_entry_kind) */
enum mv_type { MV_FILE = TREE_FILE, MV_DIR = TREE_DIR, MV_LINK = TREE_LINK };

typedef struct mv_entry {
    char *path;        /* relative to the volume root, no leading '/' */
    int type;          /* enum mv_type */
    uint32_t mode;     /* st_mode & 07777 */
    uint32_t uid, gid;
    int64_t mtime_ns;
    int64_t ctime_ns;
    uint64_t ino;
    uint64_t size;
    uint8_t sha[SHA256_LEN];     /* of the whole file */
    uint32_t chunk_size;         /* 0: stored as one object named by sha */
    uint32_t nchunks;
    uint8_t (*chunks)[SHA256_LEN];
    char *target;      /* symlink target */
} mv_entry;

typedef struct mv_volume {
    char *name;
    char *dir;         /* absolute */
    uint32_t mode, uid, gid;
    int64_t mtime_ns;
    mv_entry *entries;
    size_t n, cap;
} mv_volume;

typedef struct mv_collection {
    char *name;
    int64_t rows;
} mv_collection;

typedef struct mv_stats {
    uint64_t files, dirs, symlinks, bytes;
    uint64_t new_objects, new_bytes, stored_bytes, reused_bytes;
} mv_stats;

typedef struct mv_snapshot {
    char *label;
    int64_t started;          /* unix seconds */
    int64_t finished;
    int64_t walk_started_ns;  /* CLOCK_REALTIME when the walk began */
    int64_t downtime_ms;
    char *stack_version;
    int have_milvus;
    char *milvus_url, *milvus_db;
    mv_collection *colls;
    size_t ncolls;
    char *pg_restore_point, *pg_lsn;
    mv_stats stats;
    mv_volume *vols;
    size_t nvols;
} mv_snapshot;

/* Options of every subcommand (main.c fills what applies). */
typedef struct mv_vol_arg {
    char *name;
    char *dir;
} mv_vol_arg;

typedef struct mv_opts {
    const char *repo;
    int json;
    mv_vol_arg *vols;
    size_t nvols;
    const char *label;
    const char *stop_cmd, *start_cmd, *version_cmd;
    const char *health_url;
    int64_t health_timeout;   /* seconds */
    const char *milvus_url, *milvus_db, *milvus_token;
    const char *pg;
    int assume_stopped;
    int force;
    int ignore_version;
    int level;
    int jobs;
    long keep_last, keep_daily;
    int dry_run;
    int same_owner;           /* -1: decide from the roots' owners, 0 no, 1 yes */
    int progress;             /* PROGRESS_AUTO | PROGRESS_ON | PROGRESS_OFF */
} mv_opts;

/* A restore target and the names of its swap (journal.c). Its state before the
 * restore is tree_dir_state's (lib/tree.h): TREE_ABSENT, TREE_EMPTY or TREE_FULL. */
typedef struct mv_swap {
    const char *name;
    const char *dir;     /* absolute, no trailing '/' */
    int before;          /* TREE_ABSENT / TREE_EMPTY / TREE_FULL */
    char *staging;       /* DIR.ragsafe-staging-ID */
    char *aside;         /* DIR.ragsafe-old-ID (used when before == MV_T_FULL) */
} mv_swap;

/* snapshot.c / restore.c / catalog.c: 0 | -1 | RS_MISMATCH (exit 3) */
int mv_snapshot_cmd(const mv_opts *o);
int mv_restore_cmd(const mv_opts *o);
int mv_list_cmd(const mv_opts *o);
int mv_expire_cmd(const mv_opts *o);
int mv_verify_cmd(const mv_opts *o);

/* journal.c */
/* RAGSAFE_MILVUS_TEST_KILL=POINT[:N]: SIGKILL ourselves at that point (tests only). */
void mv_test_point(const char *point, long n);
int mv_swap_names(mv_swap *t, const char *id);   /* fills staging and aside */
void mv_swap_release(mv_swap *t, size_t n);
/* state "staging" or "swapping"; durable in the repository once it returns 0 */
int mv_journal_write(storage *st, const char *label, const char *id, const char *state,
                     const mv_swap *t, size_t n);
int mv_journal_remove(storage *st);
/* Swap every staging tree in (idempotent: steps already done are skipped), then fsync
 * the parents; renames counts the renames done. mv_swap_back undoes it. -1 reported. */
int mv_swap_forward(const mv_swap *t, size_t n, int *renames);
int mv_swap_back(const mv_swap *t, size_t n);
/* The stack is being stopped by this process (command names it) / was started again. */
int mv_stack_mark(storage *st, const char *command);
int mv_stack_unmark(storage *st);
/* Under the exclusive lock: finish or undo an interrupted restore, then restart a stack
 * an interrupted run left stopped (o->start_cmd) or say loudly that it is down. */
int mv_recover(storage *st, const mv_opts *o);
/* For list, verify, expire: mv_recover when the lock is free, else only report.
 * 0 | -1 (recovery failed, reported) | RS_NOT_FOUND or RS_MISMATCH: the repository
 * could not be opened (reported; do not run the command). */
int mv_recover_cmd(const mv_opts *o);
/* repo_open_checked, and refused (NULL, *why -1, reported) while a key rotation is in
 * progress: its objects are moving to new addresses (repo_rekey_refuse). */
struct repo;
struct uring;
struct repo *mv_repo_open(const char *location, struct uring *ur, int create, int *why);

/* snapfile.c */
void mv_snapshot_release(mv_snapshot *s);
void mv_volume_release(mv_volume *v);
int mv_volume_add(mv_volume *v, mv_entry *e);   /* takes ownership of e's strings */
int mv_snapshot_to_json(const mv_snapshot *s, char **buf, size_t *len);
/* Parse and check (paths relative, no "..", parents listed first, no duplicates).
 * what names the manifest in messages. -1 reported. */
int mv_snapshot_parse(const char *buf, size_t len, const char *what, mv_snapshot *s);
/* Load milvus/snapshots/<label>.json.zst. 0 | RS_NOT_FOUND | RS_MISMATCH (corrupt,
 * reported) | -1. */
int mv_snapshot_load(storage *st, const char *label, mv_snapshot *s);
/* Labels of every manifest, sorted oldest first by (storage mtime, label); freed by
 * tree_labels_free. */
int mv_snapshot_labels(storage *st, char ***labels, size_t *n);
int mv_label_valid(const char *label);
int mv_snapshot_key(const char *label, char *out, size_t outlen);

/* walk.c: fill v->entries from v->dir (and the root's metadata). Stops with -1
 * (reported) when mv_interrupted(). */
int mv_walk_volume(mv_volume *v);

/* stack.c */
void mv_signals_install(void);
int mv_interrupted(void);         /* the signal number that asked us to stop, or 0 */
int64_t mv_now_ms(void);          /* monotonic */
int64_t mv_realtime_ns(void);
/* /bin/sh -c cmd, own process group, stdout to stderr; waits even across signals.
 * 0 | -1 (reported, naming what). */
int mv_run_cmd(const char *what, const char *cmd);
/* Run cmd and capture its stdout (trimmed). -1 reported. */
int mv_capture_cmd(const char *what, const char *cmd, char **out);
/* 1 when url answers 200, 0 otherwise (quiet). */
int mv_health_ok(const char *url);
/* Poll url every second until it answers 200; timeout seconds. 0 | -1 (reported). */
int mv_wait_healthy(const char *url, int64_t timeout);
/* Milvus REST v2: collections and their row counts. RS_NOT_FOUND when the server does
 * not answer at all (quiet). 0 | RS_NOT_FOUND | -1 (reported). */
int mv_milvus_rows(const mv_opts *o, mv_collection **colls, size_t *n);
/* Flush every collection (404: tolerated). 0 | -1. */
int mv_milvus_flush(const mv_opts *o, const mv_collection *colls, size_t n);
void mv_collections_free(mv_collection *c, size_t n);
/* pg_create_restore_point(name) over libpq; lsn malloc'd. -1 reported. */
int mv_pg_restore_point(const char *conninfo, const char *name, char **lsn);

/* Worker pool: run fn(arg, i) on n threads (i = 0..n-1) and join. -1 reported when a
 * thread could not start (the ones that started are joined). */
int mv_parallel(int n, void (*fn)(void *arg, int i), void *arg);
int mv_default_jobs(void);

/* "1.2 GiB" style, for messages. */
const char *mv_bytes(uint64_t n, char buf[32]);

#endif
