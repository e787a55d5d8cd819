/*
 * object.c -- files to and from verified zst objects; see object.h.
 */
#include "object.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

#define CHUNK (1u << 20)
#define HASH_THREAD_MIN (128 << 10) /* stored bytes */

static int g_hash_thread = 1;

void object_set_hash_thread(int on)
{
    g_hash_thread = on;
}

static int sink_storage(void *arg, const void *buf, size_t len)
{
    return storage_write_data(arg, buf, len);
}

static zst_writer *writer_for(const object_opts *opts, storage_write *w)
{
    int level = opts && opts->level ? opts->level : ZST_DEFAULT_LEVEL;
    int workers = opts ? opts->workers : 0;
    return zst_writer_new(level, workers, sink_storage, w);
}

int object_put_fd(storage *st, const char *key, int fd, const char *src_name,
                  const object_opts *opts, int noreplace, zst_meta *meta)
{
    storage_write *w = NULL;
    zst_writer *zw = NULL;
    uring_reader *rd = NULL;
    const void *buf;
    ssize_t n;
    int ret = -1;

    w = storage_write_open(st, key);
    if (!w)
        goto out;
    zw = writer_for(opts, w);
    if (!zw)
        goto out;
    rd = uring_reader_new(storage_uring(st), fd, 0, CHUNK, 4);
    if (!rd) {
        log_errno("could not read \"%s\"", src_name);
        goto out;
    }
    /* The read of the next chunks is in flight while this one is hashed and
     * compressed. */
    while ((n = uring_reader_next(rd, &buf)) > 0)
        if (zst_writer_write(zw, buf, (size_t)n) != 0)
            goto out;
    if (n < 0) {
        log_errnum((int)-n, "could not read \"%s\"", src_name);
        goto out;
    }
    if (zst_writer_finish(zw, meta) != 0)
        goto out;
    ret = storage_write_commit(w, noreplace);
out:
    uring_reader_free(rd);
    zst_writer_free(zw);
    storage_write_free(w);
    return ret;
}

int object_put_buf(storage *st, const char *key, const void *buf, size_t len,
                   const object_opts *opts, int noreplace, zst_meta *meta)
{
    storage_write *w = storage_write_open(st, key);
    zst_writer *zw = NULL;
    int ret = -1;

    if (!w)
        return -1;
    zw = writer_for(opts, w);
    if (zw && zst_writer_write(zw, buf, len) == 0 && zst_writer_finish(zw, meta) == 0)
        ret = storage_write_commit(w, noreplace);
    zst_writer_free(zw);
    storage_write_free(w);
    return ret;
}

struct fd_sink {
    uring_writer *w;
    int fd;
    int failed;
};

static int sink_fd(void *arg, const void *buf, size_t len)
{
    struct fd_sink *s = arg;
    int ret = uring_writer_write(s->w, buf, len);
    if (ret < 0) {
        s->failed = ret;
        return log_errnum(ret, "could not write the restored file");
    }
    return 0;
}

/*
 * get_stream -- decompress key through sink (may be NULL), verifying the trailer.
 */
static int get_stream(storage *st, const char *key, zst_sink_fn sink, void *arg, zst_meta *meta)
{
    storage_read *rd = NULL;
    zst_reader *zr = NULL;
    const void *buf;
    ssize_t n;
    char name[512];
    int ret = storage_read_open(st, key, &rd);

    if (ret != 0)
        return ret;
    ret = -1;
    zr = zst_reader_new(sink, arg);
    if (!zr)
        goto out;
    /* A WAL segment or larger: hash on a second core while decompressing. */
    if (g_hash_thread && storage_read_size(rd) >= HASH_THREAD_MIN &&
        zst_reader_hash_in_thread(zr) != 0)
        goto out;
    snprintf(name, sizeof(name), "object \"%s/%s\"", storage_location(st), key);
    zst_reader_set_name(zr, name);
    while ((n = storage_read_data(rd, &buf)) > 0)
        if (zst_reader_write(zr, buf, (size_t)n) != 0)
            goto out;
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    ret = zst_reader_finish(zr, meta);
out:
    if (ret == -1 && zr && zst_reader_damaged(zr))
        ret = RS_MISMATCH; /* a damaged object is damage (exit 3), not an I/O failure */
    zst_reader_free(zr);
    storage_read_free(rd);
    return ret;
}

int object_get_fd(storage *st, const char *key, int fd, zst_meta *meta)
{
    struct fd_sink s = {NULL, fd, 0};
    int ret, fret;

    if (fd < 0)
        return get_stream(st, key, NULL, NULL, meta);
    s.w = uring_writer_new(storage_uring(st), fd, CHUNK, 4);
    if (!s.w)
        return log_errno("could not set up writing the restored file");
    ret = get_stream(st, key, sink_fd, &s, meta);
    /* Restored files are not fsync'd here: the caller decides (recovery re-fetches
     * a file lost in a crash; a data-directory restore fsyncs the whole tree). */
    fret = uring_writer_finish(s.w, 0);
    uring_writer_free(s.w);
    if (ret == 0 && fret < 0)
        return log_errnum(fret, "could not write the restored file");
    return ret;
}

struct buf_sink {
    char *buf;
    size_t len, cap, max;
};

static int sink_buf(void *arg, const void *data, size_t len)
{
    struct buf_sink *b = arg;
    if (b->len + len > b->max)
        return log_error("object is larger than %zu bytes", b->max);
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        /* a small bound (a WAL segment): its whole size at once, so the object is not
         * copied by every realloc as it grows (untouched pages cost nothing) */
        if (b->max <= ((size_t)64 << 20) && cap < b->max + 1)
            cap = b->max + 1;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return log_error("out of memory");
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return 0;
}

int object_get_buf(storage *st, const char *key, size_t max, char **buf, size_t *len,
                   zst_meta *meta)
{
    struct buf_sink b = {NULL, 0, 0, max};
    int ret = get_stream(st, key, sink_buf, &b, meta);

    if (ret == 0 && !b.buf && !(b.buf = malloc(1)))
        ret = log_error("out of memory");
    if (ret != 0) {
        free(b.buf);
        *buf = NULL;
        return ret;
    }
    b.buf[b.len] = '\0';
    *buf = b.buf;
    if (len)
        *len = b.len;
    return 0;
}

int object_meta(storage *st, const char *key, zst_meta *meta)
{
    uint8_t tail[ZST_TRAILER_SIZE];
    int ret = storage_read_tail(st, key, tail, sizeof(tail), NULL);

    if (ret != 0)
        return ret;
    if (zst_trailer_decode(tail, meta) != 0)
        return log_error("object \"%s/%s\" lacks its ragsafe trailer", storage_location(st), key);
    return 0;
}
