/*
 * uring.c -- sequential reads and writes through io_uring, or plain syscalls when
 * the kernel refuses it; see uring.h.
 *
 * Every submitted operation carries a `struct uop` as user_data; waiting for one
 * operation reaps completions of any others on the way, so readers and writers can
 * share one ring. Buffers owned by an in-flight operation are never freed before it
 * completes.
 */
#include "uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct uring {
    struct io_uring ring;
    int active;
};

struct uop {
    int inflight;
    int res;
};

static uring_fault_fn fault_hook;

void uring_set_fault(uring_fault_fn fn) { fault_hook = fn; }

static int apply_fault(enum uring_op_kind kind, int res)
{
    return fault_hook ? fault_hook(kind, res) : res;
}

uring *uring_new(unsigned entries)
{
    uring *ur = calloc(1, sizeof(*ur));
    const char *no = getenv("RAGSAFE_NO_URING");
    int ret;

    if (!ur)
        return NULL;
    if (no && *no && strcmp(no, "0") != 0) {
        log_debug("io_uring disabled by RAGSAFE_NO_URING; using plain syscalls");
        return ur;
    }
    ret = io_uring_queue_init(entries ? entries : 64, &ur->ring, 0);
    if (ret < 0) {
        /* Docker's default seccomp profile answers EPERM, old kernels ENOSYS. */
        log_debug("io_uring unavailable (%s); using plain syscalls", strerror(-ret));
        return ur;
    }
    ur->active = 1;
    return ur;
}

uring *uring_new_plain(void) { return calloc(1, sizeof(uring)); }

uring *uring_new_opt_in(unsigned entries)
{
    const char *on = getenv("RAGSAFE_URING");
    if (on && *on && strcmp(on, "0") != 0)
        return uring_new(entries); /* RAGSAFE_NO_URING still wins there */
    return uring_new_plain();
}

void uring_free(uring *ur)
{
    if (!ur)
        return;
    if (ur->active)
        io_uring_queue_exit(&ur->ring);
    free(ur);
}

int uring_active(const uring *ur) { return ur && ur->active; }

static struct io_uring_sqe *get_sqe(uring *ur)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ur->ring);
    if (!sqe) {
        io_uring_submit(&ur->ring);
        sqe = io_uring_get_sqe(&ur->ring);
    }
    return sqe;
}

/*
 * wait_op -- reap completions until op has completed. -errno if the ring fails.
 */
static int wait_op(uring *ur, struct uop *op)
{
    while (op->inflight) {
        struct io_uring_cqe *cqe;
        int ret = io_uring_wait_cqe(&ur->ring, &cqe);
        if (ret == -EINTR)
            continue;
        if (ret < 0)
            return ret;
        struct uop *done = io_uring_cqe_get_data(cqe);
        if (done) {
            done->res = cqe->res;
            done->inflight = 0;
        }
        io_uring_cqe_seen(&ur->ring, cqe);
    }
    return 0;
}

/* pread / pwrite until len bytes or EOF / error; returns bytes or -errno. */
static ssize_t full_pread(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static ssize_t full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* ---- reader ---- */

struct rslot {
    struct uop op;
    uint8_t *buf;
    off_t off;
    size_t len;
};

struct uring_reader {
    uring *ur;
    int fd;
    size_t chunk;
    unsigned depth;
    off_t size;       /* fstat size at open: the reader's EOF */
    off_t next_off;   /* next offset to submit */
    unsigned cur;     /* slot to hand out next */
    int handed;       /* the slot before cur was handed out and may be reused */
    int err;
    struct rslot *slots;
};

static void reader_submit(uring_reader *r, struct rslot *s)
{
    s->off = r->next_off;
    s->len = r->size - r->next_off < (off_t)r->chunk ? (size_t)(r->size - r->next_off) : r->chunk;
    r->next_off += (off_t)s->len;
    if (s->len == 0 || !r->ur->active)
        return;
    struct io_uring_sqe *sqe = get_sqe(r->ur);
    if (!sqe) {
        s->op.res = -EBUSY;
        return;
    }
    io_uring_prep_read(sqe, r->fd, s->buf, (unsigned)s->len, (uint64_t)s->off);
    io_uring_sqe_set_data(sqe, &s->op);
    s->op.inflight = 1;
    s->op.res = 0;
}

uring_reader *uring_reader_new(uring *ur, int fd, off_t start, size_t chunk, unsigned depth)
{
    uring_reader *r = calloc(1, sizeof(*r));
    struct stat st;

    if (!r)
        return NULL;
    if (fstat(fd, &st) != 0) {
        free(r);
        return NULL;
    }
    r->ur = ur;
    r->fd = fd;
    r->chunk = chunk ? chunk : 1 << 20;
    r->depth = ur->active ? (depth ? depth : 4) : 1;
    r->size = st.st_size;
    r->next_off = start;
    r->slots = calloc(r->depth, sizeof(*r->slots));
    if (!r->slots)
        goto fail;
    for (unsigned i = 0; i < r->depth; i++) {
        r->slots[i].buf = malloc(r->chunk);
        if (!r->slots[i].buf)
            goto fail;
    }
    for (unsigned i = 0; i < r->depth; i++)
        reader_submit(r, &r->slots[i]);
    if (ur->active)
        io_uring_submit(&ur->ring);
    return r;
fail:
    uring_reader_free(r);
    errno = ENOMEM;
    return NULL;
}

ssize_t uring_reader_next(uring_reader *r, const void **buf)
{
    struct rslot *s;
    ssize_t res;

    if (r->err)
        return r->err;
    if (r->handed) {
        /* The caller is done with the previous chunk: reuse its slot for read-ahead. */
        unsigned prev = (r->cur + r->depth - 1) % r->depth;
        reader_submit(r, &r->slots[prev]);
        if (r->ur->active)
            io_uring_submit(&r->ur->ring);
        r->handed = 0;
    }
    s = &r->slots[r->cur];
    if (s->len == 0)
        return 0;
    if (r->ur->active) {
        int ret = wait_op(r->ur, &s->op);
        if (ret < 0)
            return r->err = ret;
        res = apply_fault(URING_OP_READ, s->op.res);
        if (res >= 0 && (size_t)res < s->len) {
            /* A short read before the size fstat reported: finish it plainly. */
            ssize_t more = full_pread(r->fd, s->buf + res, s->len - (size_t)res, s->off + res);
            res = more < 0 ? more : res + more;
        }
    } else {
        res = apply_fault(URING_OP_READ, (int)full_pread(r->fd, s->buf, s->len, s->off));
    }
    if (res < 0)
        return r->err = (int)res;
    if ((size_t)res < s->len)
        return r->err = -ENODATA; /* the file shrank under us */
    *buf = s->buf;
    r->cur = (r->cur + 1) % r->depth;
    r->handed = 1;
    return res;
}

void uring_reader_free(uring_reader *r)
{
    if (!r)
        return;
    if (r->slots) {
        for (unsigned i = 0; i < r->depth; i++) {
            if (r->slots[i].op.inflight)
                wait_op(r->ur, &r->slots[i].op);
            free(r->slots[i].buf);
        }
    }
    free(r->slots);
    free(r);
}

/* ---- writer ---- */

/* A slot is filling (len > 0, !busy), in flight or awaiting its check (busy), or
 * free (len == 0, !busy). */
struct wslot {
    struct uop op;
    uint8_t *buf;
    off_t off;
    size_t len;
    int busy;
};

struct uring_writer {
    uring *ur;
    int fd;
    size_t chunk;
    unsigned depth;
    off_t start;
    uint64_t offset;  /* bytes accepted */
    unsigned cur;     /* slot being filled */
    int err;
    struct wslot *slots;
};

uring_writer *uring_writer_new(uring *ur, int fd, size_t chunk, unsigned depth)
{
    uring_writer *w = calloc(1, sizeof(*w));
    off_t pos;

    if (!w)
        return NULL;
    pos = lseek(fd, 0, SEEK_CUR);
    w->ur = ur;
    w->fd = fd;
    w->start = pos < 0 ? 0 : pos;
    w->chunk = chunk ? chunk : 1 << 20;
    w->depth = ur->active ? (depth ? depth : 4) : 1;
    w->slots = calloc(w->depth, sizeof(*w->slots));
    if (!w->slots)
        goto fail;
    for (unsigned i = 0; i < w->depth; i++) {
        w->slots[i].buf = malloc(w->chunk);
        if (!w->slots[i].buf)
            goto fail;
    }
    return w;
fail:
    uring_writer_free(w);
    errno = ENOMEM;
    return NULL;
}

/*
 * slot_result -- wait for a busy slot's write and check it wrote everything; a
 * short write (a nearly full disk) is finished with plain pwrite, which then reports
 * ENOSPC itself. Frees the slot.
 */
static int slot_result(uring_writer *w, struct wslot *s)
{
    int ret = 0;

    if (!s->busy)
        return 0;
    if (s->op.inflight)
        ret = wait_op(w->ur, &s->op);
    if (ret == 0)
        ret = apply_fault(URING_OP_WRITE, s->op.res);
    if (ret >= 0 && (size_t)ret < s->len) {
        ssize_t more = full_pwrite(w->fd, s->buf + ret, s->len - (size_t)ret, s->off + ret);
        ret = more < 0 ? (int)more : 0;
    }
    s->busy = 0;
    s->len = 0;
    return ret < 0 ? ret : 0;
}

/*
 * flush_slot -- start writing a filled slot; on the fallback path write it now.
 * link: chain the next SQE (the fsync) behind this write.
 */
static int flush_slot(uring_writer *w, struct wslot *s, int link)
{
    if (!w->ur->active) {
        s->op.res = (int)full_pwrite(w->fd, s->buf, s->len, s->off);
        s->busy = 1;
        return slot_result(w, s);
    }
    struct io_uring_sqe *sqe = get_sqe(w->ur);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_write(sqe, w->fd, s->buf, (unsigned)s->len, (uint64_t)s->off);
    io_uring_sqe_set_data(sqe, &s->op);
    if (link)
        sqe->flags |= IOSQE_IO_LINK;
    s->op.inflight = 1;
    s->op.res = 0;
    s->busy = 1;
    if (!link)
        io_uring_submit(&w->ur->ring);
    return 0;
}

int uring_writer_write(uring_writer *w, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int ret;

    if (w->err)
        return w->err;
    while (len) {
        struct wslot *s = &w->slots[w->cur];
        size_t n;
        if (s->busy && (ret = slot_result(w, s)) < 0)
            return w->err = ret;
        if (s->len == 0)
            s->off = w->start + (off_t)w->offset;
        n = w->chunk - s->len < len ? w->chunk - s->len : len;
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        w->offset += n;
        p += n;
        len -= n;
        if (s->len == w->chunk) {
            if ((ret = flush_slot(w, s, 0)) < 0)
                return w->err = ret;
            w->cur = (w->cur + 1) % w->depth;
        }
    }
    return 0;
}

int uring_writer_finish(uring_writer *w, int do_fsync)
{
    struct wslot *last = &w->slots[w->cur];
    struct uop fsync_op = {0, 0};
    int ret, first_err = 0;

    if (w->err)
        return w->err;
    /* Every earlier write completes first, so the fsync linked behind the last
     * write covers them all. */
    for (unsigned i = 0; i < w->depth; i++) {
        if (&w->slots[i] != last && (ret = slot_result(w, &w->slots[i])) < 0 && !first_err)
            first_err = ret;
    }
    if (first_err)
        return w->err = first_err;
    if (!w->ur->active) {
        if (last->len && (ret = flush_slot(w, last, 0)) < 0)
            return w->err = ret;
        if (do_fsync && (ret = apply_fault(URING_OP_FSYNC, fsync(w->fd) == 0 ? 0 : -errno)) < 0)
            return w->err = ret;
        return 0;
    }
    if (last->len && !last->busy && (ret = flush_slot(w, last, do_fsync)) < 0)
        return w->err = ret;
    if (do_fsync) {
        struct io_uring_sqe *sqe = get_sqe(w->ur);
        if (!sqe)
            return w->err = -EBUSY;
        io_uring_prep_fsync(sqe, w->fd, 0);
        io_uring_sqe_set_data(sqe, &fsync_op);
        fsync_op.inflight = 1;
    }
    io_uring_submit(&w->ur->ring);
    first_err = slot_result(w, last);
    if (do_fsync) {
        ret = wait_op(w->ur, &fsync_op);
        if (ret == 0)
            ret = fsync_op.res;
        if (ret == -ECANCELED && first_err == 0) {
            /* The linked write came up short and was finished by hand; the fsync
             * chained to it was cancelled, so run it now. */
            ret = fsync(w->fd) == 0 ? 0 : -errno;
        }
        ret = apply_fault(URING_OP_FSYNC, ret);
        if (ret < 0 && !first_err)
            first_err = ret;
    }
    return w->err = first_err;
}

uint64_t uring_writer_offset(const uring_writer *w) { return w->offset; }

void uring_writer_free(uring_writer *w)
{
    if (!w)
        return;
    if (w->slots) {
        for (unsigned i = 0; i < w->depth; i++) {
            if (w->slots[i].op.inflight)
                wait_op(w->ur, &w->slots[i].op);
            free(w->slots[i].buf);
        }
    }
    free(w->slots);
    free(w);
}

int uring_fsync(uring *ur, int fd)
{
    struct uop op = {0, 0};
    int ret;

    if (!ur || !ur->active)
        return apply_fault(URING_OP_FSYNC, fsync(fd) == 0 ? 0 : -errno);
    struct io_uring_sqe *sqe = get_sqe(ur);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_fsync(sqe, fd, 0);
    io_uring_sqe_set_data(sqe, &op);
    op.inflight = 1;
    io_uring_submit(&ur->ring);
    ret = wait_op(ur, &op);
    return apply_fault(URING_OP_FSYNC, ret < 0 ? ret : op.res);
}
