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
#include <stdint.h>
#include <sys/types.h>

#include "backupinfo.h"
#include "manifest.h"
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
    const char *owner;
    const char *pg_bin;
    int64_t timeout;
    int archive_preserve;     /* --archive-mode preserve (default off) */
    const char **sets;        /* --set NAME=VALUE and --port N ("port=N"), in order */
    size_t nsets;
    int standby;              /* --type standby: standby.signal, no recovery target */
    const char *config_path;  /* absolute path of the config file named by --config or
                               * $RAGSAFE_CONFIG (the written restore_command reads it) */
    /* expire */
    int64_t keep_window;
    int64_t keep_backups;
    long min_backups;
    int dry_run;
} pitr_opts;

typedef struct wal_seg {
    uint32_t tli;
    uint64_t segno;
    int64_t size;     /* stored bytes */
    int64_t mtime;
    walfile_kind kind;
    char key[96];
} wal_seg;

typedef struct inventory {
    repo *r;
    storage *st;
    uint32_t seg_size;
    backup_info *backups;     /* sorted by stop_lsn, oldest first */
    size_t nbackups;
    wal_seg *segs;            /* WALFILE_SEGMENT only, sorted by (tli, segno) */
    size_t nsegs;
    wal_seg *others;          /* .partial and .backup files */
    size_t nothers;
    size_t nhistory;
    timeline_set ts;
} inventory;

/* 0 | RS_MISMATCH (reported: a key that does not fit the repository) | -1 (reported). */
int inventory_load(inventory *inv, const char *repo_path);

/* The exit status of a failed step: 3 for an integrity failure (RS_MISMATCH), else 1. */
static inline int pitr_status(int r)
{
    return r == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
}
void inventory_release(inventory *inv);
const wal_seg *inventory_find(const inventory *inv, uint32_t tli, uint64_t segno);
/* Highest segno of timeline tli within [lo, hi]; 0 with *found 0 when none. */
uint64_t inventory_last_seg(const inventory *inv, uint32_t tli, uint64_t lo, uint64_t hi, int *found);
/* Last segment on a path (the chosen timeline's file for each segment). */
int inventory_path_end(const inventory *inv, const timeline_path *p, uint64_t *segno);
void seg_name(const inventory *inv, char *out, uint32_t tli, uint64_t segno);

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
} scan_ctl;
int pitr_scan(inventory *inv, const timeline_path *p, uint64_t first_seg, walscan_fn cb,
              void *arg, scan_ctl *ctl);

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
    char stop_desc[256];
    double est_seconds;
    char time_conf[64];       /* TARGET_TIME: the value written into recovery_target_time */
} plan;

/* 0: plan made | RS_NOT_FOUND: unreachable (reported with reason and nearest target) |
 * -1 reported */
int plan_make(inventory *inv, const pitr_opts *o, plan *p);
void plan_release(plan *p);
void plan_print(const inventory *inv, const pitr_opts *o, const plan *p);
void *plan_json(const inventory *inv, const pitr_opts *o, const plan *p); /* json_t* */

/* extract / verify a .tar.zst object */
typedef struct extract_opts {
    const char *dest;          /* NULL: verify only */
    const manifest *m;
    const char *mprefix;       /* manifest path prefix: "" or "pg_tblspc/OID/" */
    unsigned char *seen;       /* m->nfiles flags, set for every file found */
    const uint8_t *stored_sha; /* expected SHA-256 of the stored object, or NULL */
} extract_opts;

typedef struct extract_stats {
    uint64_t files;
    uint64_t bytes;
    uint64_t stored;
    uint64_t bad;
} extract_stats;

/* 0 | RS_MISMATCH (reported) | -1 (reported) */
int extract_object(storage *st, const char *key, const extract_opts *eo, extract_stats *stats);

/* helpers (util in main.c) */
int parse_time(const char *s, int64_t *us, int *had_zone);
void format_time_iso(char *out, size_t len, int64_t unix_us);
double now_seconds(void);

int cmd_info(const pitr_opts *o);
int cmd_plan(const pitr_opts *o);
int cmd_restore(const pitr_opts *o);
int cmd_verify(const pitr_opts *o);
int cmd_expire(const pitr_opts *o);

#endif
