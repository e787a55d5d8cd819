/*
 * receive.c -- the streaming loop of ragsafe-receive (see receive.h for the spool and
 * repository layout).
 *
 * The exchange is the one PostgreSQL's pg_receivewal speaks (receivelog.c):
 * IDENTIFY_SYSTEM, READ_REPLICATION_SLOT, TIMELINE_HISTORY for a timeline above 1,
 * START_REPLICATION [SLOT s] PHYSICAL X/Y TIMELINE t, then CopyBoth: 'w' XLogData
 * (start, server WAL end, send time, bytes) and 'k' keepalives (server WAL end, send
 * time, reply requested) from the server; 'r' standby status updates (write, flush,
 * apply, time, reply requested) from us. When the server ends a timeline (its
 * CopyDone), it answers our CopyDone with the next timeline and where it starts;
 * streaming goes on there.
 *
 * Order of durability, which makes the receiver usable as a synchronous standby:
 * every message available is written to the spool file, then the file is
 * fdatasync'd, and only then is the flush position reported. A completed segment is
 * renamed to its final spool name (directory fsync'd) before its end is reported, so
 * the server may recycle it only once the spool holds it for good. Storing in the
 * repository comes after the report: a commit never waits for the repository.
 *
 * Streaming always starts at the beginning of a segment (as pg_receivewal does): at
 * the spool's .partial segment when there is one, else at the slot's restart_lsn,
 * else at the server's current position. The server then sends again what the spool
 * already holds; each such byte must equal the spooled one or the spooled one must
 * be zero (never written, or lost unflushed): otherwise the spool is not this
 * server's history and the receiver stops (exit 3) rather than mix two.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "receive.h"

#include "common.h"
#include "durable.h"
#include "le.h"
#include "log.h"
#include "pgconn.h"
#include "repo.h"
#include "storage.h"
#include "strbuf.h"
#include "timefmt.h"
#include "uring.h"
#include "walname.h"
#include "walstore.h"

#define PG_EPOCH_OFFSET_US 946684800000000LL /* 2000-01-01 in Unix microseconds */

/* What ended one streaming session. */
enum {
    SESSION_STOP = 0,     /* SIGTERM / SIGINT */
    SESSION_RETRY = 1,    /* the connection was lost, the server went away: reconnect */
    SESSION_FATAL = 2,    /* reported; exit with r->fatal */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct receiver {
    const receiver_opts *o;
    uring *ur;
    repo *r;
    repo_info pin;           /* the server's identity, for walstore_put and repo.json */
    uint32_t seg_size;
    PGconn *conn;
    int fatal;               /* exit status after SESSION_FATAL */
    int synchronous;         /* -1 unknown, else named in synchronous_standby_names */
    char host[256];

    /* the segment in progress */
    uint32_t tli;            /* timeline being streamed */
    uint64_t segno;
    int fd;                  /* spool file, -1 when none is open */
    uint8_t *buf;            /* what this session received of it (seg_size bytes) */
    uint8_t *old;            /* a resumed segment's spooled bytes, to check against */
    uint64_t verify_end;     /* LSN up to which old holds bytes (0: nothing resumed) */
    uint64_t written, flushed; /* LSNs */
    int64_t flush_time;      /* Unix seconds of the last flush advance */
    uint64_t stored;         /* flushed position last stored as a partial */
    uint32_t stored_tli;
    uint64_t server_lsn;
    int completed_pending;   /* completed segments in the spool to store */
    int64_t last_store_us, last_status_us, last_reply_us;
} receiver;

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t get_be64(const char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | (uint8_t)p[i];
    return v;
}

static void put_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

/* spool_path -- DIR/name into out (PATH_MAX). -1 reported when too long. */
static int spool_path(const receiver *r, const char *name, char *out)
{
    if (snprintf(out, PATH_MAX, "%s/%s", r->o->spool, name) >= PATH_MAX)
        return log_error("spool path \"%s/%s\" is too long", r->o->spool, name);
    return 0;
}

/* partial_key -- stream/<TTTTTTTT>/<segment>.partial (a zst.h object like wal/ ones) */
static void partial_key(const receiver *r, uint32_t tli, uint64_t segno, char *out, size_t len)
{
    char name[WAL_NAME_LEN + 1];

    walname_format(name, tli, segno, r->seg_size);
    snprintf(out, len, "stream/%08X/%s.partial", tli, name);
}

/*
 * send_feedback -- a standby status update: written, flushed, apply 0 (nothing is
 * replayed here; pg_receivewal sends the same). 0 | -1 reported.
 */
static int send_feedback(receiver *r, int reply_requested)
{
    char msg[1 + 8 + 8 + 8 + 8 + 1];

    msg[0] = 'r';
    put_be64(msg + 1, r->written);
    put_be64(msg + 9, r->flushed);
    put_be64(msg + 17, 0);
    put_be64(msg + 25, (uint64_t)(now_us() - PG_EPOCH_OFFSET_US));
    msg[33] = reply_requested ? 1 : 0;
    if (PQputCopyData(r->conn, msg, sizeof(msg)) <= 0 || PQflush(r->conn) != 0)
        return log_error("could not send a standby status update: %s", PQerrorMessage(r->conn));
    r->last_reply_us = now_us();
    log_debug("status update: write %" PRIX64 " flush %" PRIX64, r->written, r->flushed);
    return 0;
}

/*
 * segment_close -- close the spool file (its contents stay). The buffer is kept.
 */
static void segment_close(receiver *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/*
 * segment_open -- open (resume) or create DIR/<segment>.partial for (tli, segno),
 * full size, fsync'd with its directory entry. A resumed file's bytes are loaded into
 * the buffer and recorded in verify_end: what the server sends again is checked
 * against them. 0 | -1 reported.
 */
static int segment_open(receiver *r, uint32_t tli, uint64_t segno)
{
    char name[WAL_NAME_LEN + 16], path[PATH_MAX];
    struct stat st;
    size_t done = 0;
    int fd = -1;

    walname_format(name, tli, segno, r->seg_size);
    strcat(name, ".partial");
    if (spool_path(r, name, path) != 0)
        return -1;
    /* buf starts zeroed even when resuming: a partial stored before the server has sent
     * the spooled bytes again holds nothing but what it confirmed */
    memset(r->buf, 0, r->seg_size);
    r->verify_end = 0;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (fstat(fd, &st) != 0) {
            log_errno("could not stat \"%s\"", path);
            goto fail;
        }
        if ((uint64_t)st.st_size != r->seg_size) {
            log_error("spooled \"%s\" is %jd bytes, not one segment (%u)", path, (intmax_t)st.st_size,
                      r->seg_size);
            log_hint("remove it: the server sends the segment again from its start");
            goto fail;
        }
        while (done < r->seg_size) {
            ssize_t n = pread(fd, r->old + done, r->seg_size - done, (off_t)done);
            if (n <= 0) {
                if (n < 0)
                    log_errno("could not read \"%s\"", path);
                else
                    log_error("could not read \"%s\": unexpected end of file", path);
                goto fail;
            }
            done += (size_t)n;
        }
        r->verify_end = segno * r->seg_size + r->seg_size;
        log_info("resuming spooled segment \"%s\"", name);
    } else if (errno == ENOENT) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return log_errno("could not create \"%s\"", path);
        if (ftruncate(fd, (off_t)r->seg_size) != 0 || fsync(fd) != 0) {
            log_errno("could not size \"%s\"", path);
            goto fail;
        }
        if (durable_fsync_path(r->o->spool) != 0)
            goto fail;
    } else {
        return log_errno("could not open \"%s\"", path);
    }
    r->fd = fd;
    r->tli = tli;
    r->segno = segno;
    return 0;
fail:
    close(fd);
    return -1;
}

/*
 * segment_complete -- the last byte of the segment arrived: fdatasync, rename to the
 * final spool name, fsync the directory. Only then may its end be reported flushed.
 * The repository gets it later (store_completed). 0 | -1 reported.
 */
static int segment_complete(receiver *r)
{
    char name[WAL_NAME_LEN + 1], part[WAL_NAME_LEN + 16], from[PATH_MAX], to[PATH_MAX];

    walname_format(name, r->tli, r->segno, r->seg_size);
    snprintf(part, sizeof(part), "%s.partial", name);
    if (spool_path(r, part, from) != 0 || spool_path(r, name, to) != 0)
        return -1;
    if (fdatasync(r->fd) != 0)
        return log_errno("could not fsync \"%s\"", from);
    segment_close(r);
    if (durable_rename(from, to) != 0)
        return -1;
    r->flushed = r->written;
    r->flush_time = now_us() / 1000000;
    r->completed_pending = 1;
    log_debug("received segment \"%s\"", name);
    return 0;
}

/*
 * write_data -- XLogData at LSN start. Bytes are written in the spool file of their
 * segment (opened as needed; the stream starts at a segment boundary and is
 * contiguous). 0 | -1 reported (r->fatal set for a spool that disagrees).
 */
static int write_data(receiver *r, uint64_t start, const char *data, size_t len)
{
    if (start != r->written) {
        r->fatal = EXIT_FAIL;
        return log_error("received WAL at %" PRIX64 ", expected it at %" PRIX64, start, r->written);
    }
    while (len > 0) {
        uint64_t segno = start / r->seg_size;
        size_t off = (size_t)(start % r->seg_size), n = r->seg_size - off;

        if (n > len)
            n = len;
        if (r->fd < 0 && segment_open(r, r->tli, segno) != 0)
            return -1;
        if (segno != r->segno) {
            r->fatal = EXIT_FAIL;
            return log_error("received WAL for segment %" PRIX64 " while segment %" PRIX64 " is open",
                             segno, r->segno);
        }
        if (start < r->verify_end && memcmp(r->old + off, data, n) != 0) {
            for (size_t i = 0; i < n; i++) {
                if (r->old[off + i] != 0 && r->old[off + i] != (uint8_t)data[i]) {
                    char lsn[LSN_STR_LEN + 1];
                    lsn_format(lsn, start + i);
                    r->fatal = EXIT_INTEGRITY;
                    log_error("the spooled WAL differs from the server's at %s (timeline %u)", lsn, r->tli);
                    log_detail("the spool \"%s\" holds WAL of another history than this server's",
                               r->o->spool);
                    log_hint("if the server was restored or promoted, move the spool's files aside "
                             "and start again");
                    return -1;
                }
            }
        }
        memcpy(r->buf + off, data, n);
        for (size_t done = 0; done < n;) {
            ssize_t w = pwrite(r->fd, data + done, n - done, (off_t)(off + done));
            if (w < 0)
                return log_errno("could not write to the spool file of segment %" PRIX64, segno);
            done += (size_t)w;
        }
        start += n;
        data += n;
        len -= n;
        r->written = start;
        if (off + n == r->seg_size && segment_complete(r) != 0)
            return -1;
    }
    return 0;
}

/*
 * flush -- fdatasync what was written and not yet flushed. 0 | -1 reported.
 */
static int flush(receiver *r)
{
    if (r->written <= r->flushed)
        return 0;
    if (r->fd >= 0 && fdatasync(r->fd) != 0)
        return log_errno("could not fsync the spool file of segment %" PRIX64, r->segno);
    r->flushed = r->written;
    r->flush_time = now_us() / 1000000;
    return 0;
}

/*
 * remove_old_partials -- segment segno of tli is in wal/: its partial and every older
 * one of that timeline go. 0 | -1 reported.
 */
typedef struct partial_sweep {
    receiver *r;
    uint64_t upto;
    strbuf keys;   /* NUL-separated */
} partial_sweep;

static int sweep_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    partial_sweep *ps = arg;
    const char *base = strrchr(key, '/');
    uint32_t tli;
    uint64_t segno;

    (void)size;
    (void)mtime;
    base = base ? base + 1 : key;
    if (strlen(base) != WAL_NAME_LEN + strlen(".partial") ||
        strcmp(base + WAL_NAME_LEN, ".partial") != 0 ||
        walname_parse(base, ps->r->seg_size, &tli, &segno) != 0 || segno > ps->upto)
        return 0;
    return strbuf_appendn(&ps->keys, key, strlen(key) + 1);
}

static int remove_old_partials(receiver *r, uint32_t tli, uint64_t segno)
{
    partial_sweep ps = {r, segno, {0}};
    char prefix[32];
    int ret = -1;

    strbuf_init(&ps.keys);
    snprintf(prefix, sizeof(prefix), "stream/%08X/", tli);
    if (storage_list(r->r->st, prefix, sweep_cb, &ps) != 0)
        goto out;
    for (size_t off = 0; off < ps.keys.len; off += strlen(ps.keys.buf + off) + 1)
        if (storage_remove(r->r->st, ps.keys.buf + off) != 0)
            goto out;
    ret = 0;
out:
    strbuf_release(&ps.keys);
    return ret;
}

/*
 * store_file -- one spooled file into wal/ (walstore_put), then removed from the
 * spool. 0 | -1 reported (kept for a retry) | RS_MISMATCH (reported; r->fatal).
 */
static int store_file(receiver *r, const char *name)
{
    char path[PATH_MAX];
    int ret;

    if (spool_path(r, name, path) != 0)
        return -1;
    ret = walstore_put(r->o->loc, &r->r, r->ur, path, name, &r->o->oo, &r->pin);
    if (ret == RS_MISMATCH) {
        r->fatal = EXIT_INTEGRITY;
        return RS_MISMATCH;
    }
    if (ret != 0) {
        log_detail("\"%s\" stays in the spool; storing it is tried again", path);
        return -1;
    }
    if (unlink(path) != 0)
        return log_errno("could not remove \"%s\"", path);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * store_completed -- every completed segment and history file in the spool into the
 * repository, oldest first, then the stream partials they make obsolete. 0 | -1
 * (reported; the files stay for the next try) | RS_MISMATCH.
 */
static int store_completed(receiver *r)
{
    DIR *d = opendir(r->o->spool);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int ret = -1;

    if (!d)
        return log_errno("could not open the spool \"%s\"", r->o->spool);
    while ((errno = 0, de = readdir(d)) != NULL) {
        walfile_kind k = walname_classify(de->d_name);
        if (k != WALFILE_SEGMENT && k != WALFILE_HISTORY)
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
            if (!nn) {
                log_error("out of memory");
                goto out;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            log_error("out of memory");
            goto out;
        }
        n++;
    }
    if (errno) {
        log_errno("could not read the spool \"%s\"", r->o->spool);
        goto out;
    }
    /* history files ("0000000N.history") sort before their timeline's segments */
    qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        uint32_t tli;
        uint64_t segno;
        int rc = store_file(r, names[i]);
        if (rc != 0) {
            ret = rc;
            goto out;
        }
        if (walname_classify(names[i]) == WALFILE_SEGMENT &&
            walname_parse(names[i], r->seg_size, &tli, &segno) == 0 &&
            remove_old_partials(r, tli, segno) != 0)
            goto out;
    }
    r->completed_pending = 0;
    ret = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return ret;
}

/*
 * store_status -- stream/status.json (see the README). 0 | -1 reported.
 */
static int store_status(receiver *r)
{
    char sysid[24], flush_lsn[LSN_STR_LEN + 1], server_lsn[LSN_STR_LEN + 1];
    char flush_time[TIMEFMT_LEN], updated[TIMEFMT_LEN], seg[WAL_NAME_LEN + 1];
    json_t *j;
    char *text = NULL;
    int ret = -1;

    snprintf(sysid, sizeof(sysid), "%" PRIu64, r->pin.sysid);
    lsn_format(flush_lsn, r->flushed);
    lsn_format(server_lsn, r->server_lsn);
    if (timefmt_utc(flush_time, sizeof(flush_time), r->flush_time) != 0 ||
        timefmt_utc(updated, sizeof(updated), now_us() / 1000000) != 0)
        return log_error("could not format a time");
    walname_format(seg, r->tli, r->flushed / r->seg_size, r->seg_size);
    j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:s}",
                  "format", 1, "system_identifier", sysid, "slot", r->o->slot ? r->o->slot : "",
                  "application_name", r->o->appname, "timeline", (json_int_t)r->tli,
                  "flush_lsn", flush_lsn, "flush_time", flush_time, "segment", seg,
                  "pid", (json_int_t)getpid(), "host", r->host, "updated", updated,
                  "server_lsn", server_lsn);
    if (!j)
        return log_error("out of memory");
    if (r->synchronous >= 0 && json_object_set_new(j, "synchronous", json_boolean(r->synchronous)) != 0) {
        log_error("out of memory");
        goto out;
    }
    text = json_dumps(j, JSON_COMPACT);
    if (!text) {
        log_error("out of memory");
        goto out;
    }
    ret = storage_put(r->r->st, RECEIVE_STATUS_KEY, text, strlen(text), 0);
out:
    free(text);
    json_decref(j);
    return ret;
}

/*
 * store_partial -- the segment in progress (zero past the flushed position: the
 * buffer holds nothing unflushed when this runs) as stream/<tli>/<seg>.partial,
 * replaced in place, then the status. Nothing when nothing moved since the last
 * one, unless force. 0 | -1 reported.
 */
static int store_partial(receiver *r, int force)
{
    char key[96];
    int64_t t = now_us();

    if (!r->r || !r->seg_size || !r->pin.sysid)
        return 0;
    if (r->fd >= 0 && r->flushed > r->segno * r->seg_size &&
        (force || r->flushed != r->stored || r->tli != r->stored_tli)) {
        partial_key(r, r->tli, r->segno, key, sizeof(key));
        if (r->written != r->flushed)
            return log_error("internal error: a partial with unflushed bytes");
        if (object_put_buf(r->r->st, key, r->buf, r->seg_size, &r->o->oo, 0, NULL) != 0)
            return -1;
        r->stored = r->flushed;
        r->stored_tli = r->tli;
        log_debug("stored \"%s\" up to %" PRIX64, key, r->flushed);
    } else if (!force && t - r->last_status_us < 10 * 1000000LL) {
        r->last_store_us = t;
        return 0;
    }
    r->last_store_us = t;
    r->last_status_us = t;
    return store_status(r);
}

/*
 * connect_server -- a replication connection under the application name.
 */
static PGconn *connect_server(const receiver *r)
{
    const char *keys[5], *vals[5];
    int n = 0;
    PGconn *conn;

    if (r->o->conninfo && r->o->conninfo[0]) {
        keys[n] = "dbname";
        vals[n++] = r->o->conninfo;
    }
    keys[n] = "replication";
    vals[n++] = "true";
    keys[n] = "application_name";
    vals[n++] = r->o->appname;
    keys[n] = NULL;
    vals[n] = NULL;
    conn = PQconnectdbParams(keys, vals, 1);
    if (!conn) {
        log_error("could not connect to the server: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char *msg = PQerrorMessage(conn), *nl;
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", msg);
        while ((nl = strchr(buf, '\n')) != NULL)
            *nl = nl[1] ? ' ' : '\0';
        log_error("could not connect to the server in replication mode: %s", buf);
        pgconn_hint(buf);
        PQfinish(conn);
        return NULL;
    }
    pgconn_route_notices(conn);
    return conn;
}

/*
 * is_synchronous -- is appname named in synchronous_standby_names (or '*')? Not
 * whether the server currently counts it synchronous: that only pg_stat_replication
 * says, which a replication connection cannot query. -1 when unknown.
 */
static int is_synchronous(PGconn *conn, const char *appname)
{
    char *v = NULL, *p;
    size_t alen = strlen(appname);
    int ret = 0;

    if (pgconn_show(conn, "synchronous_standby_names", &v) != 0)
        return -1;
    for (p = v; *p; p++) {
        if (*p == '*' ) {
            ret = 1;
            break;
        }
        if (strncasecmp(p, appname, alen) == 0 && (p == v || strchr(" ,(\"", p[-1])) &&
            (p[alen] == '\0' || strchr(" ,)\"", p[alen]))) {
            ret = 1;
            break;
        }
    }
    free(v);
    return ret;
}

/*
 * read_slot -- READ_REPLICATION_SLOT: *found, restart_lsn and its timeline (0 when
 * the slot has none yet). 0 | -1 reported.
 */
static int read_slot(receiver *r, int *found, uint64_t *lsn, uint32_t *tli)
{
    char sql[128];
    PGresult *res;
    int ret = -1;

    *found = 0;
    *lsn = 0;
    *tli = 0;
    snprintf(sql, sizeof(sql), "READ_REPLICATION_SLOT %s", r->o->slot);
    res = PQexec(r->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 3) {
        pgconn_report_result(r->conn, res, "could not read the replication slot", NULL);
        goto out;
    }
    if (!PQgetisnull(res, 0, 0)) {
        if (strcmp(PQgetvalue(res, 0, 0), "physical") != 0) {
            log_error("replication slot \"%s\" is a %s slot, not a physical one", r->o->slot,
                      PQgetvalue(res, 0, 0));
            r->fatal = EXIT_USAGE;
            goto out;
        }
        *found = 1;
        if (!PQgetisnull(res, 0, 1) && lsn_parse(PQgetvalue(res, 0, 1), lsn) != 0) {
            log_error("could not parse the slot's restart_lsn \"%s\"", PQgetvalue(res, 0, 1));
            goto out;
        }
        if (!PQgetisnull(res, 0, 2))
            *tli = (uint32_t)strtoul(PQgetvalue(res, 0, 2), NULL, 10);
    }
    ret = 0;
out:
    PQclear(res);
    return ret;
}

/* create_slot -- CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL; one that exists is fine. */
static int create_slot(receiver *r)
{
    char sql[160], state[6];
    PGresult *res;
    int ret = 0;

    snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", r->o->slot);
    res = PQexec(r->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "42710") == 0) { /* duplicate_object */
            log_debug("replication slot \"%s\" exists", r->o->slot);
        } else {
            ret = pgconn_report_result(r->conn, res, "could not create the replication slot", state);
        }
    } else {
        log_info("created replication slot \"%s\"", r->o->slot);
    }
    PQclear(res);
    return ret;
}

/*
 * fetch_history -- TIMELINE_HISTORY tli into the spool, then the repository (as
 * ragsafe-archive stores a history file: never overwritten; identical is fine).
 * 0 | -1 reported | RS_MISMATCH.
 */
static int fetch_history(receiver *r, uint32_t tli)
{
    char sql[64], name[32], path[PATH_MAX];
    PGresult *res;
    int ret = -1;

    snprintf(sql, sizeof(sql), "TIMELINE_HISTORY %u", tli);
    res = PQexec(r->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2) {
        pgconn_report_result(r->conn, res, "could not fetch the timeline history file", NULL);
        goto out;
    }
    walname_history(name, tli);
    if (strcmp(PQgetvalue(res, 0, 0), name) != 0) {
        log_error("the server sent history file \"%s\" for timeline %u", PQgetvalue(res, 0, 0), tli);
        goto out;
    }
    if (spool_path(r, name, path) != 0)
        goto out;
    if (durable_write_file(path, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), 0600, 0) != 0)
        goto out;
    ret = store_file(r, name);
out:
    PQclear(res);
    return ret;
}

/*
 * spool_resume_point -- the highest DIR/<segment>.partial: 1 and (tli, segno), or 0
 * when there is none. -1 reported.
 */
static int spool_resume_point(receiver *r, uint32_t *tli, uint64_t *segno)
{
    DIR *d = opendir(r->o->spool);
    struct dirent *de;
    int found = 0;

    if (!d)
        return log_errno("could not open the spool \"%s\"", r->o->spool);
    while ((errno = 0, de = readdir(d)) != NULL) {
        uint32_t t;
        uint64_t s;
        if (walname_classify(de->d_name) != WALFILE_PARTIAL ||
            walname_parse(de->d_name, r->seg_size, &t, &s) != 0)
            continue;
        if (!found || s > *segno || (s == *segno && t > *tli)) {
            *tli = t;
            *segno = s;
            found = 1;
        }
    }
    if (errno) {
        found = log_errno("could not read the spool \"%s\"", r->o->spool);
    }
    closedir(d);
    return found;
}

/*
 * identify -- IDENTIFY_SYSTEM and wal_segment_size, checked against repo.json (and
 * against what this process saw before a reconnect). 0 | -1 reported (r->fatal set
 * for another cluster).
 */
static int identify(receiver *r, pgconn_identity *id)
{
    char *v = NULL;
    uint64_t seg = 0;
    int ret;

    if (pgconn_identify(r->conn, id) != 0)
        return -1;
    if (pgconn_show(r->conn, "wal_segment_size", &v) != 0)
        return -1;
    ret = pgconn_parse_size(v, &seg);
    free(v);
    if (ret != 0 || !walname_seg_size_valid(seg))
        return log_error("could not read the server's wal_segment_size");
    if (r->pin.sysid && (r->pin.sysid != id->sysid || r->pin.seg_size != seg)) {
        r->fatal = EXIT_INTEGRITY;
        return log_error("the server is now another database system (system identifier %" PRIu64
                         ", was %" PRIu64 ")", id->sysid, r->pin.sysid);
    }
    if (!r->r && !(r->r = repo_open(r->o->loc, r->ur, 1)))
        return -1;
    ret = r->r->have_info ? 0 : repo_load_info(r->r);
    if (ret == 0 && (r->r->info.sysid != id->sysid || r->r->info.seg_size != seg)) {
        r->fatal = EXIT_INTEGRITY;
        log_error("refusing to stream from a server of another database system into \"%s\"",
                  storage_location(r->r->st));
        log_detail("the server's system identifier is %" PRIu64 " (segment size %" PRIu64 "); "
                   "the repository's is %" PRIu64 " (segment size %u)", id->sysid, seg,
                   r->r->info.sysid, r->r->info.seg_size);
        log_hint("point --dbname at the cluster this repository backs up, or use another repository");
        return -1;
    }
    if (ret == RS_MISMATCH) {
        r->fatal = EXIT_INTEGRITY;
        return -1;
    }
    if (ret < 0)
        return -1;
    r->pin.format = REPO_FORMAT;
    r->pin.sysid = id->sysid;
    r->pin.seg_size = (uint32_t)seg;
    r->pin.wal_magic = WAL_MAGIC_PG15;
    r->pin.pg_version = (uint32_t)(PQserverVersion(r->conn) / 10000);
    if (r->pin.pg_version != 15) {
        r->fatal = EXIT_FAIL;
        return log_error("the server is PostgreSQL %u; ragsafe-receive speaks to PostgreSQL 15",
                         r->pin.pg_version);
    }
    if (!r->buf) {
        r->buf = malloc(seg);
        r->old = malloc(seg);
        if (!r->buf || !r->old) {
            r->fatal = EXIT_FAIL;
            return log_error("out of memory");
        }
    }
    r->seg_size = (uint32_t)seg;
    return 0;
}

/*
 * start_streaming -- START_REPLICATION at (tli, lsn). 0 | -1 reported.
 */
static int start_streaming(receiver *r, uint32_t tli, uint64_t lsn)
{
    char sql[256], pos[LSN_STR_LEN + 1];
    PGresult *res;

    lsn_format(pos, lsn);
    if (r->o->slot)
        snprintf(sql, sizeof(sql), "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %u", r->o->slot,
                 pos, tli);
    else
        snprintf(sql, sizeof(sql), "START_REPLICATION PHYSICAL %s TIMELINE %u", pos, tli);
    res = PQexec(r->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        pgconn_report_result(r->conn, res, "could not start streaming WAL", NULL);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    log_info("streaming from %s on timeline %u", pos, tli);
    r->tli = tli;
    r->written = r->flushed = lsn;
    r->last_reply_us = 0;
    return 0;
}

/*
 * wait_socket -- wait for the server or until timeout_us. 0 | -1 reported.
 * A signal ends the wait early (0).
 */
static int wait_socket(receiver *r, int64_t timeout_us)
{
    int sock = PQsocket(r->conn);
    fd_set rfds;
    struct timeval tv;

    if (sock < 0)
        return log_error("lost the connection to the server");
    if (timeout_us < 0)
        timeout_us = 0;
    FD_ZERO(&rfds);
    FD_SET(sock, &rfds);
    tv.tv_sec = (time_t)(timeout_us / 1000000);
    tv.tv_usec = (suseconds_t)(timeout_us % 1000000);
    if (select(sock + 1, &rfds, NULL, NULL, &tv) < 0 && errno != EINTR)
        return log_errno("could not wait for the server");
    return 0;
}

/*
 * end_of_copy -- the server ended the copy stream. A timeline ended: *next_tli and
 * *next_lsn (1); the server stopped streaming otherwise (0); -1 reported.
 */
static int end_of_copy(receiver *r, uint32_t *next_tli, uint64_t *next_lsn)
{
    PGresult *res;
    int ret = 0;

    if (PQputCopyEnd(r->conn, NULL) <= 0 || PQflush(r->conn) != 0)
        return log_error("could not end the copy stream: %s", PQerrorMessage(r->conn));
    res = PQgetResult(r->conn);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        if (PQnfields(res) < 2 || PQntuples(res) != 1 ||
            lsn_parse(PQgetvalue(res, 0, 1), next_lsn) != 0) {
            log_error("unexpected result set after the end of timeline %u", r->tli);
            PQclear(res);
            return -1;
        }
        *next_tli = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        res = PQgetResult(r->conn);
        ret = 1;
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ret = pgconn_report_result(r->conn, res, "the WAL stream ended with an error", NULL);
    }
    PQclear(res);
    while ((res = PQgetResult(r->conn)) != NULL)
        PQclear(res);
    return ret;
}

/*
 * new_timeline -- the server ended timeline r->tli at next_lsn and goes on with
 * next_tli: the old timeline's last partial is stored one final time and leaves the
 * spool (the new timeline's file of that segment holds the same bytes up to the
 * switch point: the server copied them there), the new history file is stored, and
 * streaming restarts at the beginning of the segment of next_lsn on next_tli.
 * 0 | -1 reported | RS_MISMATCH.
 */
static int new_timeline(receiver *r, uint32_t next_tli, uint64_t next_lsn)
{
    char name[WAL_NAME_LEN + 16], path[PATH_MAX];
    int rc;

    if (next_tli <= r->tli) {
        r->fatal = EXIT_FAIL;
        return log_error("server reported unexpected next timeline %u, following timeline %u",
                         next_tli, r->tli);
    }
    if (next_lsn > r->flushed) {
        r->fatal = EXIT_FAIL;
        return log_error("server stopped streaming timeline %u at %" PRIX64 ", but reported next "
                         "timeline %u to begin at %" PRIX64, r->tli, r->flushed, next_tli, next_lsn);
    }
    log_info("timeline %u ended; following timeline %u", r->tli, next_tli);
    if (r->fd >= 0) {
        if (store_partial(r, 1) != 0)
            return -1;
        segment_close(r);
        walname_format(name, r->tli, r->segno, r->seg_size);
        strcat(name, ".partial");
        if (spool_path(r, name, path) != 0)
            return -1;
        if (unlink(path) != 0)
            return log_errno("could not remove \"%s\"", path);
    }
    rc = fetch_history(r, next_tli);
    if (rc != 0)
        return rc;
    return start_streaming(r, next_tli, next_lsn - next_lsn % r->seg_size);
}

/*
 * stream -- one session: identify, choose the start, stream until stopped or the
 * connection is lost. Returns a SESSION_* code.
 */
static int stream(receiver *r)
{
    pgconn_identity id;
    uint32_t tli = 0, slot_tli = 0;
    uint64_t segno = 0, start, slot_lsn = 0;
    int found = 0, slot_found = 0, rc;
    int64_t interval_us = (int64_t)(r->o->partial_interval * 1e6);

    r->conn = connect_server(r);
    if (!r->conn)
        return SESSION_RETRY;
    if (identify(r, &id) != 0)
        return r->fatal ? SESSION_FATAL : SESSION_RETRY;
    r->synchronous = is_synchronous(r->conn, r->o->appname);
    /* what a previous run left complete goes in first */
    rc = store_completed(r);
    if (rc == RS_MISMATCH)
        return SESSION_FATAL;
    if (r->o->slot) {
        if (r->o->create_slot && create_slot(r) != 0)
            return SESSION_RETRY;
        if (read_slot(r, &slot_found, &slot_lsn, &slot_tli) != 0)
            return r->fatal ? SESSION_FATAL : SESSION_RETRY;
        if (!slot_found) {
            log_error("replication slot \"%s\" does not exist", r->o->slot);
            log_hint("create it with --create-slot, or name an existing physical slot");
            r->fatal = EXIT_USAGE;
            return SESSION_FATAL;
        }
    }
    found = spool_resume_point(r, &tli, &segno);
    if (found < 0)
        return SESSION_RETRY;
    if (found) {
        start = segno * r->seg_size;
    } else if (slot_found && slot_lsn) {
        tli = slot_tli ? slot_tli : id.tli;
        start = slot_lsn - slot_lsn % r->seg_size;
    } else {
        tli = id.tli;
        start = id.xlogpos - id.xlogpos % r->seg_size;
    }
    if (tli > 1) {
        rc = fetch_history(r, tli);
        if (rc == RS_MISMATCH)
            return SESSION_FATAL;
        if (rc != 0)
            return SESSION_RETRY;
    }
    if (start_streaming(r, tli, start) != 0)
        return SESSION_RETRY;

    for (;;) {
        char *msg = NULL;
        int n, reply = 0;
        int64_t t, wait;

        if (stop_requested)
            return SESSION_STOP;
        /* take every message already here, then flush once and answer */
        while ((n = PQgetCopyData(r->conn, &msg, 1)) > 0) {
            if (msg[0] == 'w' && n >= 25) {
                uint64_t dstart = get_be64(msg + 1), wal_end = get_be64(msg + 9);
                if (wal_end > r->server_lsn)
                    r->server_lsn = wal_end;
                if (write_data(r, dstart, msg + 25, (size_t)n - 25) != 0) {
                    PQfreemem(msg);
                    return r->fatal ? SESSION_FATAL : SESSION_RETRY;
                }
            } else if (msg[0] == 'k' && n >= 18) {
                uint64_t wal_end = get_be64(msg + 1);
                if (wal_end > r->server_lsn)
                    r->server_lsn = wal_end;
                if (msg[17])
                    reply = 1;
            } else {
                log_error("unexpected message type \"%c\" (%d bytes) in the WAL stream", msg[0], n);
                PQfreemem(msg);
                return SESSION_RETRY;
            }
            PQfreemem(msg);
            msg = NULL;
        }
        if (n == -2) {
            log_error("could not read the WAL stream: %s", PQerrorMessage(r->conn));
            return SESSION_RETRY;
        }
        if (n == -1) {
            uint32_t next_tli = 0;
            uint64_t next_lsn = 0;
            if (flush(r) != 0)
                return SESSION_FATAL;
            rc = end_of_copy(r, &next_tli, &next_lsn);
            if (rc == 0) {
                log_info("the server stopped streaming");
                return SESSION_RETRY;
            }
            if (rc < 0)
                return SESSION_RETRY;
            rc = new_timeline(r, next_tli, next_lsn);
            if (rc != 0)
                return r->fatal ? SESSION_FATAL : SESSION_RETRY;
            continue;
        }
        /* n == 0: nothing more buffered */
        t = now_us();
        if (r->written > r->flushed) {
            if (flush(r) != 0) {
                r->fatal = EXIT_FAIL;
                return SESSION_FATAL;
            }
            reply = 1;
        }
        if (reply || t - r->last_reply_us >= RECEIVE_STATUS_INTERVAL_US) {
            if (send_feedback(r, 0) != 0)
                return SESSION_RETRY;
        }
        if (r->completed_pending) {
            rc = store_completed(r);
            if (rc == RS_MISMATCH)
                return SESSION_FATAL;
        }
        if (t - r->last_store_us >= interval_us && store_partial(r, 0) != 0)
            log_detail("storing the partial segment is tried again");
        t = now_us();
        wait = interval_us - (t - r->last_store_us);
        if (RECEIVE_STATUS_INTERVAL_US - (t - r->last_reply_us) < wait)
            wait = RECEIVE_STATUS_INTERVAL_US - (t - r->last_reply_us);
        if (wait_socket(r, wait) != 0)
            return SESSION_RETRY;
        if (PQconsumeInput(r->conn) == 0) {
            log_error("could not read the WAL stream: %s", PQerrorMessage(r->conn));
            return SESSION_RETRY;
        }
    }
}

/*
 * session_end -- after a session: what was written is flushed, the partial stored
 * once more, the connection closed, the spool file closed (the next session resumes
 * it from the spool).
 */
static void session_end(receiver *r)
{
    if (r->fd >= 0 && flush(r) == 0 && r->conn && PQstatus(r->conn) == CONNECTION_OK)
        send_feedback(r, 0);
    if (r->fd >= 0 || r->r) {
        if (store_partial(r, 1) != 0)
            log_detail("the spool keeps it; the next run stores it");
    }
    if (r->completed_pending)
        store_completed(r);
    segment_close(r);
    pgconn_close(r->conn);
    r->conn = NULL;
}

/* sleep_ms -- interrupted by a signal: returns early. */
static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* receiver_run -- see receive.h. */
int receiver_run(const receiver_opts *o)
{
    receiver r = {0};
    struct sigaction sa = {0};
    int status = EXIT_FAIL, backoff = 0;

    r.o = o;
    r.fd = -1;
    r.synchronous = -1;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a signal ends select() and sleeps */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (gethostname(r.host, sizeof(r.host)) != 0)
        snprintf(r.host, sizeof(r.host), "unknown");
    r.host[sizeof(r.host) - 1] = '\0';
    r.ur = uring_new(64);
    if (!r.ur) {
        log_error("out of memory");
        goto out;
    }
    for (;;) {
        uint64_t before = r.flushed;
        int rc = stream(&r);

        session_end(&r);
        if (rc == SESSION_STOP) {
            log_info("stopped; flushed up to %" PRIX64 " on timeline %u", r.flushed, r.tli);
            status = EXIT_OK;
            break;
        }
        if (rc == SESSION_FATAL) {
            status = r.fatal ? r.fatal : EXIT_FAIL;
            break;
        }
        if (stop_requested) {
            status = EXIT_OK;
            break;
        }
        /* progress resets the backoff: 0.2 s, then doubling up to 5 s */
        backoff = r.flushed != before ? 200 : backoff ? backoff * 2 : 200;
        if (backoff > RECEIVE_BACKOFF_MAX_MS)
            backoff = RECEIVE_BACKOFF_MAX_MS;
        log_info("reconnecting in %d.%d s", backoff / 1000, (backoff % 1000) / 100);
        sleep_ms(backoff);
        if (stop_requested) {
            status = EXIT_OK;
            break;
        }
    }
out:
    free(r.buf);
    free(r.old);
    repo_free(r.r);
    uring_free(r.ur);
    return status;
}
