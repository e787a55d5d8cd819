/*
 * stream.c -- the BASE_BACKUP exchange, parsed as it streams.
 *
 * PostgreSQL 15 answers BASE_BACKUP with a result set (start position), a result set
 * (one row per tablespace), then ONE CopyOut stream whose CopyData messages start
 * with a type byte: 'n' a new archive begins (name NUL, tablespace path NUL), 'd'
 * data of the current archive (tar) or of the manifest, 'p' progress (Int64 bytes
 * done), 'm' the manifest begins; after the copy a result set (end position).
 *
 * Each archive goes through libarchive in pull mode: libarchive's read callback
 * (stream_read) is what pulls CopyData messages from libpq. It handles 'p' itself,
 * returns the bytes of 'd' messages, tees every raw byte into a zst_writer whose
 * sink is storage_write_data (so the stored file is the exact tar the server sent,
 * as a zst.h object), and reports end-of-file when the next 'n', 'm' or the end of
 * the copy arrives. Meanwhile the outer loop walks the tar entries and hashes each
 * regular file; the digests are compared with the manifest once it has arrived
 * (it comes after every archive).
 *
 * libarchive keeps a pointer to the buffer the callback returned until the callback
 * runs again, which is exactly how long we keep the libpq message.
 *
 * Compression runs in a thread of its own (one per archive), fed through a bounded
 * queue of the very libpq messages (reference-counted: libarchive's side and the
 * compressor's side each drop theirs), so receiving, tar parsing and hashing overlap
 * with compression and the server is not left waiting on a full socket while zstd
 * works. The compressor thread owns the zst_writer and, through its sink, the storage
 * write, from the first message to zst_writer_finish; the main thread touches neither
 * until it has joined the thread.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basebackup.h"
#include "common.h"
#include "log.h"
#include "pgconn.h"
#include "walname.h"
#include "zst.h"

enum stream_event { EV_NONE = 0, EV_ARCHIVE, EV_MANIFEST, EV_END, EV_ERROR };

#define QUEUE_LEN 256   /* messages of up to 32 kB: ~8 MB in flight at most */

/* msgref -- a libpq CopyData message shared by the parser and the compressor. */
typedef struct msgref {
    char *msg;
    size_t off, len;        /* the tar bytes: msg + off, len */
    atomic_int refs;
} msgref;

/* msgref_drop -- drop one reference; the last frees the libpq buffer. */
static void msgref_drop(msgref *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
        PQfreemem(m->msg);
        free(m);
    }
}

/* compressor -- the thread that turns one archive's bytes into the stored object. */
typedef struct compressor {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t can_pop, can_push;
    msgref *q[QUEUE_LEN];
    size_t head, count;
    int closed;             /* no more messages: finish */
    atomic_int failed;      /* the thread hit an error (reported) */
    /* owned by the thread while it runs */
    zst_writer *zw;
    zst_meta meta;
    int result;
} compressor;

/* stream_state -- one BASE_BACKUP exchange as the read callback and the loops see it. */
typedef struct stream_state {
    bb_stream *s;
    char *msg;              /* the current CopyData message (released on the next) */
    msgref *held;           /* when msg went to the compressor too: our reference */
    int msglen;
    int copy_done;          /* PQgetCopyData said -1 and the results were read */
    int failed;             /* an error was reported */
    char sqlstate[6];
    /* the archive being read */
    int in_archive;
    int archive_ended;
    enum stream_event pending;
    char *pending_name, *pending_path;
    bb_archive *cur;
    storage_write *w;
    compressor comp;
    sha256_ctx stored_hash;
    uint64_t raw, stored;
    progress pg;
} stream_state;

/* read_be64 -- Int64 in network order. */
static uint64_t read_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* parse_position -- a (recptr text, tli) result row. */
static int parse_position(const PGresult *res, const char *what, uint64_t *lsn, uint32_t *tli)
{
    char *end;
    unsigned long t;

    if (PQntuples(res) != 1 || PQnfields(res) < 2)
        return log_error("could not read the %s: got %d rows and %d fields, expected 1 row and 2 fields",
                         what, PQntuples(res), PQnfields(res));
    if (lsn_parse(PQgetvalue(res, 0, 0), lsn) != 0)
        return log_error("could not read the %s: bad WAL position \"%s\"", what, PQgetvalue(res, 0, 0));
    t = strtoul(PQgetvalue(res, 0, 1), &end, 10);
    if (*end || t == 0 || t > UINT32_MAX)
        return log_error("could not read the %s: bad timeline \"%s\"", what, PQgetvalue(res, 0, 1));
    *tli = (uint32_t)t;
    return 0;
}

/*
 * collect_results -- after the copy: the end-position result set and the command
 * completion, or the server's error (reported here, with its SQLSTATE kept).
 */
static int collect_results(stream_state *ss)
{
    PGresult *res;
    int have_end = 0, ret = 0;

    ss->copy_done = 1;
    while ((res = PQgetResult(ss->s->conn)) != NULL) {
        switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
            break;
        case PGRES_TUPLES_OK:
            if (!have_end && ret == 0) {
                if (parse_position(res, "end position of the backup", &ss->s->stop_lsn,
                                   &ss->s->stop_tli) != 0)
                    ret = -1;
                have_end = 1;
            }
            break;
        default:
            if (ret == 0)
                pgconn_report_result(ss->s->conn, res, "could not complete the base backup",
                                     ss->sqlstate);
            ret = -1;
            break;
        }
        PQclear(res);
    }
    if (ret == 0 && !have_end)
        ret = log_error("could not complete the base backup: the server sent no end position");
    if (ret != 0)
        ss->failed = 1;
    return ret;
}

/*
 * next_message -- the next CopyData message into ss->msg. Returns its type byte,
 * EV_END after the copy (results collected) or EV_ERROR (reported). 'p' messages are
 * consumed here.
 */
static int next_message(stream_state *ss)
{
    for (;;) {
        if (ss->held) {
            msgref_drop(ss->held);
            ss->held = NULL;
        } else if (ss->msg)
            PQfreemem(ss->msg);
        ss->msg = NULL;
        if (ss->failed)
            return EV_ERROR;
        if (ss->copy_done)
            return EV_END;
        ss->msglen = PQgetCopyData(ss->s->conn, &ss->msg, 0);
        if (ss->msglen == -1)
            return collect_results(ss) == 0 ? EV_END : EV_ERROR;
        if (ss->msglen < 0) {
            pgconn_report_result(ss->s->conn, NULL, "could not read COPY data", NULL);
            ss->failed = 1;
            return EV_ERROR;
        }
        if (ss->msglen < 1) {
            log_error("could not read COPY data: empty message");
            ss->failed = 1;
            return EV_ERROR;
        }
        if (ss->msg[0] == 'p') {
            if (ss->msglen < 9) {
                log_error("could not read COPY data: progress message of %d bytes", ss->msglen);
                ss->failed = 1;
                return EV_ERROR;
            }
            progress_set(&ss->pg, read_be64((const unsigned char *)ss->msg + 1));
            continue;
        }
        return (unsigned char)ss->msg[0];
    }
}

/* set_pending_archive -- remember the 'n' that ended an archive (or opened the first one). */
static int set_pending_archive(stream_state *ss)
{
    const char *name = ss->msg + 1, *path;
    size_t avail = (size_t)ss->msglen - 1, n1, n2;

    n1 = strnlen(name, avail);
    path = name + n1 + 1;
    n2 = n1 < avail ? strnlen(path, avail - n1 - 1) : 0;
    if (n1 == avail || n2 == avail - n1 - 1) {
        log_error("could not read COPY data: malformed new-archive message");
        ss->failed = 1;
        return -1;
    }
    free(ss->pending_name);
    free(ss->pending_path);
    ss->pending_name = strdup(name);
    ss->pending_path = strdup(path);
    if (!ss->pending_name || !ss->pending_path) {
        log_errno("could not allocate memory");
        ss->failed = 1;
        return -1;
    }
    ss->pending = EV_ARCHIVE;
    return 0;
}

/* store_sink -- zst_writer output: hash, count, and hand to the storage write. */
static int store_sink(void *arg, const void *buf, size_t len)
{
    stream_state *ss = arg;

    if (sha256_update(&ss->stored_hash, buf, len) != 0)
        return -1;
    ss->stored += len;
    return storage_write_data(ss->w, buf, len);
}

/* compressor_main -- pop messages, compress them, finish the object at the end. */
static void *compressor_main(void *arg)
{
    stream_state *ss = arg;
    compressor *c = &ss->comp;
    msgref *m;
    int failed = 0;

    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (c->count == 0 && !c->closed)
            pthread_cond_wait(&c->can_pop, &c->mu);
        if (c->count == 0) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        m = c->q[c->head];
        c->head = (c->head + 1) % QUEUE_LEN;
        c->count--;
        pthread_cond_signal(&c->can_push);
        pthread_mutex_unlock(&c->mu);
        /* after a failure keep draining, so the producer never blocks on us */
        if (!failed && zst_writer_write(c->zw, m->msg + m->off, m->len) != 0) {
            failed = 1;
            atomic_store(&c->failed, 1);
        }
        msgref_drop(m);
    }
    if (!failed && zst_writer_finish(c->zw, &c->meta) != 0) {
        failed = 1;
        atomic_store(&c->failed, 1);
    }
    c->result = failed ? -1 : 0;
    return NULL;
}

/* compressor_start -- the thread for one archive; zw already made. -1 reported. */
static int compressor_start(stream_state *ss)
{
    compressor *c = &ss->comp;
    int err;

    c->head = c->count = 0;
    c->closed = 0;
    c->result = -1;
    atomic_store(&c->failed, 0);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->can_pop, NULL);
    pthread_cond_init(&c->can_push, NULL);
    err = pthread_create(&c->thread, NULL, compressor_main, ss);
    if (err != 0) {
        pthread_cond_destroy(&c->can_push);
        pthread_cond_destroy(&c->can_pop);
        pthread_mutex_destroy(&c->mu);
        return log_errnum(err, "could not start the compression thread");
    }
    c->started = 1;
    return 0;
}

/* compressor_push -- hand one more reference of m to the thread (blocks when full). */
static void compressor_push(compressor *c, msgref *m)
{
    pthread_mutex_lock(&c->mu);
    while (c->count == QUEUE_LEN)
        pthread_cond_wait(&c->can_push, &c->mu);
    c->q[(c->head + c->count) % QUEUE_LEN] = m;
    c->count++;
    pthread_cond_signal(&c->can_pop);
    pthread_mutex_unlock(&c->mu);
}

/* compressor_stop -- no more input: let the thread finish and join it. Returns its
 * result (0, or -1 already reported). Safe when it never started. */
static int compressor_stop(compressor *c)
{
    if (!c->started)
        return -1;
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    pthread_cond_signal(&c->can_pop);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->can_push);
    pthread_cond_destroy(&c->can_pop);
    pthread_mutex_destroy(&c->mu);
    c->started = 0;
    return c->result;
}

/*
 * stream_read -- libarchive's read callback: bytes of the current archive, 0 at its
 * end (the next 'n' / 'm' / end of copy, remembered in ss->pending), -1 on error.
 */
static la_ssize_t stream_read(struct archive *a, void *arg, const void **buf)
{
    stream_state *ss = arg;
    int t;

    for (;;) {
        if (ss->archive_ended)
            return 0;
        t = next_message(ss);
        switch (t) {
        case 'd':
            if (ss->msglen == 1)
                continue;
            if (atomic_load(&ss->comp.failed)) {
                ss->failed = 1;
                goto fail;
            }
            ss->held = malloc(sizeof(*ss->held));
            if (!ss->held) {
                log_errno("could not allocate memory");
                ss->failed = 1;
                goto fail;
            }
            ss->held->msg = ss->msg;
            ss->held->off = 1;
            ss->held->len = (size_t)ss->msglen - 1;
            /* chunked: no tar is stored, only the parser reads the bytes */
            atomic_init(&ss->held->refs, ss->comp.started ? 2 : 1);
            if (ss->comp.started)
                compressor_push(&ss->comp, ss->held);
            ss->raw += (uint64_t)ss->msglen - 1;
            *buf = ss->msg + 1;
            return ss->msglen - 1;
        case 'n':
            ss->archive_ended = 1;
            if (set_pending_archive(ss) != 0)
                goto fail;
            return 0;
        case 'm':
            ss->archive_ended = 1;
            ss->pending = EV_MANIFEST;
            return 0;
        case EV_END:
            ss->archive_ended = 1;
            ss->pending = EV_END;
            return 0;
        case EV_ERROR:
            goto fail;
        default:
            log_error("could not read COPY data: unexpected message type '%c'", t);
            ss->failed = 1;
            goto fail;
        }
    }
fail:
    ss->archive_ended = 1;
    ss->pending = EV_ERROR;
    if (a)
        archive_set_error(a, EIO, "base backup stream failed");
    return -1;
}

/* add_member -- record a regular file's path, size and digest. */
static int add_member(bb_stream *s, const char *prefix, const char *name, uint64_t size,
                      const uint8_t sha[SHA256_LEN])
{
    bb_member *m;

    if (s->nmembers == s->members_cap) {
        size_t cap = s->members_cap ? s->members_cap * 2 : 1024;
        bb_member *p = realloc(s->members, cap * sizeof(*p));
        if (!p)
            return log_errno("could not allocate memory");
        s->members = p;
        s->members_cap = cap;
    }
    m = &s->members[s->nmembers];
    if (asprintf(&m->path, "%s%s", prefix, name) < 0)
        return log_errno("could not allocate memory");
    m->size = size;
    memcpy(m->sha256, sha, SHA256_LEN);
    s->nmembers++;
    return 0;
}

/* archive_name_ok -- "base.tar" or "<digits>.tar"; sets *oid for a tablespace. */
static int archive_name_ok(const char *name, uint32_t *oid)
{
    char *end;
    unsigned long v;

    *oid = 0;
    if (strcmp(name, "base.tar") == 0)
        return 1;
    if (name[0] < '1' || name[0] > '9')
        return 0;
    errno = 0;
    v = strtoul(name, &end, 10);
    if (errno || strcmp(end, ".tar") != 0 || v > UINT32_MAX)
        return 0;
    *oid = (uint32_t)v;
    return 1;
}

/*
 * read_entries -- walk the tar entries of the current archive through libarchive,
 * hashing each regular file. Returns 0 or -1 (reported).
 */
static int read_entries(stream_state *ss, const char *prefix)
{
    struct archive *a = archive_read_new();
    struct archive_entry *entry;
    sha256_ctx h = {0};
    int ret = -1, r;

    if (!a)
        return log_error("could not create a tar reader: out of memory");
    archive_read_support_format_tar(a);
    if (archive_read_open(a, ss, NULL, stream_read, NULL) != ARCHIVE_OK) {
        if (!ss->failed)
            log_error("could not read tar archive \"%s\": %s", ss->cur->file, archive_error_string(a));
        goto out;
    }
    while ((r = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(entry);
        const void *block;
        size_t len;
        la_int64_t off, expect = 0;
        uint8_t digest[SHA256_LEN];

        if (archive_entry_filetype(entry) != AE_IFREG) {
            if (ss->s->chunker && bb_chunker_other(ss->s->chunker, entry) != 0)
                goto out;
            continue;
        }
        if (!name) {
            log_error("could not read tar archive \"%s\": entry without a name", ss->cur->file);
            goto out;
        }
        if (sha256_init(&h) != 0)
            goto out;
        if (ss->s->chunker &&
            bb_chunker_file_begin(ss->s->chunker, name, archive_entry_perm(entry)) != 0)
            goto out;
        while ((r = archive_read_data_block(a, &block, &len, &off)) == ARCHIVE_OK) {
            if (off != expect) {
                log_error("could not read tar archive \"%s\": file \"%s\" has a hole", ss->cur->file, name);
                goto out;
            }
            if (sha256_update(&h, block, len) != 0)
                goto out;
            if (ss->s->chunker && bb_chunker_file_data(ss->s->chunker, block, len) != 0)
                goto out;
            expect += (la_int64_t)len;
        }
        if (r != ARCHIVE_EOF) {
            if (!ss->failed)
                log_error("could not read tar archive \"%s\" at \"%s\": %s", ss->cur->file, name,
                          archive_error_string(a));
            goto out;
        }
        if (sha256_final(&h, digest) != 0)
            goto out;
        sha256_release(&h);
        if (ss->s->chunker && bb_chunker_file_end(ss->s->chunker, (uint64_t)expect, digest) != 0)
            goto out;
        if (add_member(ss->s, prefix, name, (uint64_t)expect, digest) != 0)
            goto out;
    }
    if (r != ARCHIVE_EOF) {
        if (!ss->failed)
            log_error("could not read tar archive \"%s\": %s", ss->cur->file, archive_error_string(a));
        goto out;
    }
    ret = 0;
out:
    sha256_release(&h);
    archive_read_free(a);
    return ret;
}

/*
 * do_archive_chunked -- do_archive for --format chunked: the files' chunks go to the
 * chunk store as they are parsed, the archive becomes <prefix>/<name>.chunks.zst.
 */
static int do_archive_chunked(stream_state *ss, bb_archive *arc, const char *member_prefix)
{
    const void *dummy;
    int r;

    if (bb_chunker_archive_begin(ss->s->chunker, ss->pending_name) != 0)
        goto fail;
    ss->in_archive = 1;
    ss->archive_ended = 0;
    ss->pending = EV_NONE;
    if (read_entries(ss, member_prefix) != 0)
        goto fail;
    while ((r = (int)stream_read(NULL, ss, &dummy)) > 0)
        ;
    if (r < 0)
        goto fail;
    ss->in_archive = 0;
    if (bb_chunker_archive_end(ss->s->chunker, ss->s->st, ss->s->prefix, arc->file, &arc->raw_bytes,
                               &arc->stored_bytes, arc->stored_sha256) != 0)
        goto fail;
    return 0;
fail:
    ss->failed = 1;
    return -1;
}

/*
 * do_archive -- one archive from its 'n' to the message that ends it: stored as
 * <prefix>/<name>.zst and committed, members recorded.
 */
static int do_archive(stream_state *ss)
{
    bb_stream *s = ss->s;
    bb_archive *arc, *p;
    char key[1024], member_prefix[64];
    zst_meta meta;
    uint32_t oid;
    const void *dummy;
    int ret = -1, r;

    if (!archive_name_ok(ss->pending_name, &oid)) {
        ss->failed = 1;
        return log_error("could not store archive \"%s\": unexpected archive name", ss->pending_name);
    }
    p = realloc(s->archives, (s->narchives + 1) * sizeof(*p));
    if (!p)
        return log_errno("could not allocate memory");
    s->archives = p;
    arc = &s->archives[s->narchives++];
    memset(arc, 0, sizeof(*arc));
    arc->oid = oid;
    if ((s->chunker ? asprintf(&arc->file, "%.*s.chunks.zst",
                               (int)(strlen(ss->pending_name) - 4), ss->pending_name)
                    : asprintf(&arc->file, "%s.zst", ss->pending_name)) < 0) {
        arc->file = NULL;
        return log_errno("could not allocate memory");
    }
    if (oid != 0 && ss->pending_path[0] && !(arc->location = strdup(ss->pending_path)))
        return log_errno("could not allocate memory");
    ss->cur = arc;
    /* the manifest names tablespace files pg_tblspc/<oid>/<path in the tar> */
    if (oid != 0)
        snprintf(member_prefix, sizeof(member_prefix), "pg_tblspc/%" PRIu32 "/", oid);
    else
        member_prefix[0] = '\0';
    log_info("receiving \"%s\"%s%s", ss->pending_name, arc->location ? " for tablespace " : "",
             arc->location ? arc->location : "");

    if (s->chunker)
        return do_archive_chunked(ss, arc, member_prefix);
    snprintf(key, sizeof(key), "%s/%s", s->prefix, arc->file);
    ss->raw = ss->stored = 0;
    if (sha256_init(&ss->stored_hash) != 0)
        goto out;
    ss->w = storage_write_open(s->st, key);
    if (!ss->w)
        goto out;
    ss->comp.zw = zst_writer_new(s->level, s->workers, store_sink, ss);
    if (!ss->comp.zw)
        goto out;
    if (s->workers > 0)
        zst_writer_set_job_size(ss->comp.zw, 8u << 20); /* large tars: fewer, bigger jobs */
    if (compressor_start(ss) != 0)
        goto out;

    ss->in_archive = 1;
    ss->archive_ended = 0;
    ss->pending = EV_NONE;
    if (read_entries(ss, member_prefix) != 0)
        goto out;
    /* libarchive stops at the two zero blocks; store whatever the server sent after */
    while ((r = (int)stream_read(NULL, ss, &dummy)) > 0)
        ;
    if (r < 0)
        goto out;
    ss->in_archive = 0;

    if (compressor_stop(&ss->comp) != 0)
        goto out;
    meta = ss->comp.meta;
    if (meta.raw_size != ss->raw) {
        log_error("could not store \"%s\": %" PRIu64 " bytes compressed, %" PRIu64 " received",
                  key, meta.raw_size, ss->raw);
        goto out;
    }
    if (sha256_final(&ss->stored_hash, arc->stored_sha256) != 0)
        goto out;
    r = storage_write_commit(ss->w, 1);
    if (r == RS_EXISTS) {
        log_error("could not store \"%s\": it already exists", key);
        goto out;
    }
    if (r != 0)
        goto out;
    arc->raw_bytes = ss->raw;
    arc->stored_bytes = ss->stored;
    log_info("stored \"%s\": %" PRIu64 " byte%s, %" PRIu64 " compressed", key, ss->raw, PLURAL(ss->raw),
             ss->stored);
    ret = 0;
out:
    if (ret != 0)
        ss->failed = 1;
    /* the thread must be gone before the writer and the storage write are freed; the
     * message we still hold stays ours (the thread dropped its reference) */
    compressor_stop(&ss->comp);
    zst_writer_free(ss->comp.zw);
    ss->comp.zw = NULL;
    storage_write_free(ss->w);
    ss->w = NULL;
    sha256_release(&ss->stored_hash);
    return ret;
}

/* read_manifest -- the 'd' messages after 'm', up to the end of the copy. */
static int read_manifest(stream_state *ss)
{
    bb_stream *s = ss->s;
    int t;

    for (;;) {
        t = next_message(ss);
        if (t == EV_END)
            return 0;
        if (t == EV_ERROR)
            return -1;
        if (t != 'd') {
            ss->failed = 1;
            return log_error("could not read the backup manifest: unexpected message type '%c'", t);
        }
        if (s->manifest_len + (size_t)ss->msglen > s->manifest_cap) {
            size_t cap = s->manifest_cap ? s->manifest_cap * 2 : 1 << 20;
            char *p;

            while (cap < s->manifest_len + (size_t)ss->msglen)
                cap *= 2;
            p = realloc(s->manifest, cap);
            if (!p) {
                ss->failed = 1;
                return log_errno("could not allocate memory");
            }
            s->manifest = p;
            s->manifest_cap = cap;
        }
        memcpy(s->manifest + s->manifest_len, ss->msg + 1, (size_t)ss->msglen - 1);
        s->manifest_len += (size_t)ss->msglen - 1;
    }
}

/*
 * read_header_results -- the start position and the tablespace list, then the
 * CopyOut that carries everything else.
 */
static int read_header_results(stream_state *ss)
{
    bb_stream *s = ss->s;
    PGresult *res;
    int ret = -1;

    res = PQgetResult(s->conn);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_report_result(s->conn, res, "could not start the base backup", ss->sqlstate);
        goto out;
    }
    if (parse_position(res, "start position of the backup", &s->start_lsn, &s->start_tli) != 0)
        goto out;
    PQclear(res);

    res = PQgetResult(s->conn);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_report_result(s->conn, res, "could not read the tablespace list", ss->sqlstate);
        goto out;
    }
    if (PQnfields(res) < 3) {
        log_error("could not read the tablespace list: %d fields, expected 3", PQnfields(res));
        goto out;
    }
    s->estimate = 0;
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, 2))
            s->estimate += strtoull(PQgetvalue(res, i, 2), NULL, 10) * 1024;
    PQclear(res);

    res = PQgetResult(s->conn);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        pgconn_report_result(s->conn, res, "could not get the COPY data stream", ss->sqlstate);
        goto out;
    }
    ret = 0;
out:
    PQclear(res);
    return ret;
}

/* bb_stream_run -- see basebackup.h. */
int bb_stream_run(bb_stream *s, const char *command)
{
    stream_state ss;
    int ev, ret = -1;

    memset(&ss, 0, sizeof(ss));
    ss.s = s;
    progress_init(&ss.pg, s->progress, "backup", 0);
    if (!PQsendQuery(s->conn, command)) {
        pgconn_report_result(s->conn, NULL, "could not send the BASE_BACKUP command", NULL);
        goto out;
    }
    if (read_header_results(&ss) != 0)
        goto out;
    progress_set_total(&ss.pg, s->estimate);
    log_info("backup started at WAL position %X/%X on timeline %" PRIu32,
             (unsigned)(s->start_lsn >> 32), (unsigned)s->start_lsn, s->start_tli);

    ev = next_message(&ss);
    for (;;) {
        if (ev == EV_END)
            break;
        if (ev == EV_ERROR)
            goto out;
        if (ev == 'n' || ev == EV_ARCHIVE) {
            if (ev == 'n' && set_pending_archive(&ss) != 0)
                goto out;
            if (do_archive(&ss) != 0)
                goto out;
            ev = ss.pending;
        } else if (ev == 'm' || ev == EV_MANIFEST) {
            if (read_manifest(&ss) != 0)
                goto out;
            ev = EV_END;
        } else {
            log_error("could not read COPY data: unexpected message type '%c' outside an archive", ev);
            goto out;
        }
    }
    if (ss.failed)
        goto out;
    if (s->narchives == 0) {
        log_error("could not complete the base backup: the server sent no archive");
        goto out;
    }
    if (!s->manifest) {
        log_error("could not complete the base backup: the server sent no backup manifest");
        goto out;
    }
    progress_finish(&ss.pg);
    ret = 0;
out:
    progress_release(&ss.pg);
    if (ss.held)
        msgref_drop(ss.held);
    else if (ss.msg)
        PQfreemem(ss.msg);
    free(ss.pending_name);
    free(ss.pending_path);
    if (ret != 0 && strcmp(ss.sqlstate, PGCONN_SQLSTATE_DATA_CORRUPTED) == 0) {
        log_error("the server found data-page checksum failures: the data directory has corrupt blocks");
        log_hint("see the server's WARNING lines above (and its log) for the files and blocks");
        ret = RS_MISMATCH;
    }
    return ret;
}

/*
 * bb_stream_check_manifest -- every regular file in the archives must match its
 * manifest entry (size and SHA-256), and every manifest entry must have been seen.
 * Files the manifest does not list are not PostgreSQL's concern (pg_wal/ contents, a
 * file created by hand); pg_wal/ is skipped quietly, anything else warned about.
 */
int bb_stream_check_manifest(const bb_stream *s, const manifest *m)
{
    unsigned char *seen = calloc(m->nfiles + 1, 1);
    int bad = 0;
    char h1[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1];

    if (!seen)
        return log_errno("could not allocate memory");
    for (size_t i = 0; i < s->nmembers; i++) {
        const bb_member *mb = &s->members[i];
        const manifest_file *f = manifest_find(m, mb->path);

        if (!f) {
            if (strncmp(mb->path, "pg_wal/", 7) == 0)
                log_debug("\"%s\" is not in the manifest (WAL comes from the archive)", mb->path);
            else
                log_warning("file \"%s\" is in the backup but not in the manifest", mb->path);
            continue;
        }
        seen[f - m->files] = 1;
        if (f->size != mb->size) {
            log_error("file \"%s\" has size %" PRIu64 " in the backup, %" PRIu64 " in the manifest",
                      mb->path, mb->size, f->size);
            bad++;
        } else if (f->has_sha256 && memcmp(f->sha256, mb->sha256, SHA256_LEN) != 0) {
            sha256_to_hex(mb->sha256, h1);
            sha256_to_hex(f->sha256, h2);
            log_error("checksum mismatch for file \"%s\"", mb->path);
            log_detail("received %s, the manifest says %s", h1, h2);
            bad++;
        }
    }
    for (size_t i = 0; i < m->nfiles; i++)
        if (!seen[i]) {
            log_error("file \"%s\" is in the manifest but not in the backup", m->files[i].path);
            bad++;
        }
    free(seen);
    if (bad) {
        log_error("%d file%s of the backup failed verification against the manifest", bad,
                  bad == 1 ? "" : "s");
        return RS_MISMATCH;
    }
    log_info("%zu file%s match%s the backup manifest", s->nmembers, PLURAL(s->nmembers),
             s->nmembers == 1 ? "es" : "");
    return 0;
}

/* bb_stream_release -- free what bb_stream_run collected. */
void bb_stream_release(bb_stream *s)
{
    for (size_t i = 0; s->archives && i < s->narchives; i++) {
        free(s->archives[i].file);
        free(s->archives[i].location);
    }
    free(s->archives);
    for (size_t i = 0; s->members && i < s->nmembers; i++)
        free(s->members[i].path);
    free(s->members);
    free(s->manifest);
    s->archives = NULL;
    s->members = NULL;
    s->manifest = NULL;
    s->narchives = s->nmembers = s->members_cap = 0;
    s->manifest_len = s->manifest_cap = 0;
}
