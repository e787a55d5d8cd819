/*
 * basebackup.h -- the parts of ragsafe-basebackup (private to this directory).
 *
 *     main.c      options, configuration, exit statuses
 *     backup.c    orchestration: checks, repository, lock, commit of the backup folder
 *     stream.c    the BASE_BACKUP exchange: tar streams parsed, hashed and stored
 *     chunked.c   --format chunked: files cut into deduplicated chunks (chunkstore.h)
 *     walwait.c   wait until the backup's WAL is in the repository
 *     dblist.c    the databases recorded in backup.json (for ragsafe-pitr dump)
 *     verify.c    --verify LABEL: re-read a stored backup and check every checksum
 *
 * Results follow the house rule: 0, -1 (reported), RS_MISMATCH (reported; main()
 * exits with EXIT_INTEGRITY: wrong cluster, checksum mismatch, corrupt data pages).
 */
#ifndef RAGSAFE_BASEBACKUP_H
#define RAGSAFE_BASEBACKUP_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "backupinfo.h"
#include "manifest.h"
#include "progress.h"
#include "sha256.h"
#include "storage.h"

#define BB_LABEL_MAX 64

typedef struct bb_opts {
    const char *conninfo;   /* NULL: PG* environment */
    const char *repo;
    const char *label;      /* NULL: UTC time YYYYMMDDTHHMMSSZ */
    int fast_checkpoint;
    long max_rate_kb;       /* 0: unlimited */
    int level;              /* zstd level */
    int workers;            /* zstd worker threads; -1: one per online CPU */
    int64_t wal_timeout;    /* seconds */
    int json;
    int progress;           /* PROGRESS_AUTO | PROGRESS_ON | PROGRESS_OFF */
    int chunked;            /* --format chunked (else tar) */
} bb_opts;

/* backup.c */
int bb_label_valid(const char *label);
int bb_run(const bb_opts *o);

/* dblist.c: pg_database read before and after the backup, recorded in backup.json
 * only when both reads agree (see dblist.c). Never fails the backup.
 *     bb_dblist l; bb_dblist_start(&l, conninfo);   before BASE_BACKUP
 *     bb_dblist_finish(&l, conninfo, &bi);          after, into bi (releases l)
 *     bb_dblist_release(&l);                        on an error path (no-op when done) */
typedef struct bb_dblist {
    int ok;
    size_t n;
    backup_database *v;
} bb_dblist;
void bb_dblist_start(bb_dblist *l, const char *conninfo);
void bb_dblist_finish(bb_dblist *l, const char *conninfo, backup_info *bi);
void bb_dblist_release(bb_dblist *l);

/* verify.c */
int bb_verify(const char *repo_location, const char *label, int progress);

/* stream.c ----------------------------------------------------------------- */

/* One tar archive as stored. */
typedef struct bb_archive {
    char *file;             /* "base.tar.zst", "16384.tar.zst" */
    char *location;         /* tablespace directory; NULL for the main data dir */
    uint32_t oid;           /* 0 for the main data dir */
    uint64_t raw_bytes, stored_bytes;
    uint8_t stored_sha256[SHA256_LEN];
} bb_archive;

/* One regular file seen in the tar streams, path as the manifest names it. */
typedef struct bb_member {
    char *path;
    uint64_t size;
    uint8_t sha256[SHA256_LEN];
} bb_member;

typedef struct bb_stream {
    /* in */
    PGconn *conn;
    storage *st;
    const char *prefix;     /* "backups/<label>.partial" */
    int level, workers;
    int progress;           /* PROGRESS_AUTO | PROGRESS_ON | PROGRESS_OFF */
    struct bb_chunker *chunker; /* --format chunked: files go here, no tar is stored */
    /* out */
    uint64_t start_lsn, stop_lsn;
    uint32_t start_tli, stop_tli;
    uint64_t estimate;      /* bytes, from the tablespace result set */
    size_t narchives;
    bb_archive *archives;
    size_t nmembers, members_cap;
    bb_member *members;
    char *manifest;
    size_t manifest_len, manifest_cap;
} bb_stream;

/* Send command (a BASE_BACKUP) and consume the whole exchange, storing each archive
 * under prefix. 0 | RS_MISMATCH (data-page checksum failure, SQLSTATE XX001) | -1. */
int bb_stream_run(bb_stream *s, const char *command);
/* Compare the members' sizes and SHA-256 with the manifest. 0 | RS_MISMATCH. */
int bb_stream_check_manifest(const bb_stream *s, const manifest *m);
void bb_stream_release(bb_stream *s);

/* chunked.c ---------------------------------------------------------------- */

struct archive_entry;
typedef struct bb_chunker bb_chunker;
/* Opens the repository's chunk store (every pack index). NULL reported. */
bb_chunker *bb_chunker_new(storage *st, int level);
void bb_chunker_free(bb_chunker *c);
int bb_chunker_archive_begin(bb_chunker *c, const char *archive);
int bb_chunker_other(bb_chunker *c, struct archive_entry *e);
int bb_chunker_file_begin(bb_chunker *c, const char *name, unsigned mode);
int bb_chunker_file_data(bb_chunker *c, const void *data, size_t len);
int bb_chunker_file_end(bb_chunker *c, uint64_t size, const uint8_t sha[SHA256_LEN]);
int bb_chunker_archive_end(bb_chunker *c, storage *st, const char *prefix, const char *file,
                           uint64_t *raw, uint64_t *stored, uint8_t sha[SHA256_LEN]);
void bb_chunker_summary(const bb_chunker *c, uint64_t *chunks, uint64_t *new_chunks,
                        uint64_t *new_bytes, uint64_t *packs, uint32_t *chunk_size);

/* walwait.c ---------------------------------------------------------------- */

typedef struct bb_walwait {
    storage *st;
    const char *conninfo;   /* for pg_stat_archiver on timeout */
    int standby;
    uint32_t seg_size;
    uint64_t start_lsn, stop_lsn;
    uint32_t start_tli, stop_tli;
    int64_t timeout;        /* seconds */
} bb_walwait;

/* 0 when every segment is in the repository; -1 reported (names the missing one). */
int bb_wal_wait(const bb_walwait *w);

#endif
