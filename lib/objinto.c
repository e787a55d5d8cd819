/*
 * objinto.c -- a WAL segment's object decompressed straight into one buffer, hashed
 * and (for ragsafe-restore) written from there, in parallel; see object.h
 * (object_get_into). Used by ragsafe-restore per call and by ragsafe-pitr's plan for
 * every segment it verifies.
 *
 * Where the time of a call went (perf, 16 MiB pgbench segment, zstd 3, posix): zstd's
 * streaming decoder decompresses into its own window buffer and copies every byte out
 * to ours (a memmove of 16 MiB), each buffer touched for the first time costs a page
 * fault per 4 KiB (expensive in this VM: a third of the call was the kernel, mostly
 * faults), and the io_uring writer copied each chunk once more into its own buffers
 * before the kernel copied it into the page cache. Here:
 *  - the output is one buffer of the segment's size, faulted in at once (huge pages
 *    where the kernel gives them, MADV_POPULATE_WRITE otherwise one fault per page
 *    up front, in one call);
 *  - zstd decompresses into it directly (ZSTD_d_stableOutBuffer: no window buffer,
 *    no copy out), fed the compressed stream in small slices so the output grows
 *    by a few hundred KiB at a time;
 *  - two threads follow the output as it grows: one hashes (SHA-256 of the original
 *    bytes, the trailer's, checked before we return 0), one writes it to the file
 *    (pwrite from the buffer: the only copy left is the kernel's into the page cache).
 * Every byte is still hashed and compared with the trailer, and nothing is renamed
 * into place by the caller before that: only the order of the work changed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* ZSTD_d_stableOutBuffer is in zstd's "experimental" section (since 1.4.4, unchanged
 * since); a libzstd that refuses it at run time makes us take the streaming path. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "sha256.h"
#include "zst.h"

#define SLICE (32u << 10)      /* compressed bytes per decompression call */
#define STEP (1u << 20)        /* bytes a follower hashes or writes at a time */
#define HUGE_PAGE (2u << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

typedef struct fetch {
    uint8_t *out;            /* the segment, as it is decompressed */
    size_t cap;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t produced;         /* bytes of out that are final */
    int ended;               /* produced will not grow: stop at it */
    /* the hasher */
    sha256_ctx sha;
    int sha_err;
    /* the writer */
    int fd;
    int write_err;           /* an errno */
} fetch;

/* wait_for -- block until more than pos bytes are produced or the end; the bytes
 * available from pos (0: the end). */
static size_t wait_for(fetch *f, size_t pos)
{
    size_t avail;

    pthread_mutex_lock(&f->mu);
    while (f->produced <= pos && !f->ended)
        pthread_cond_wait(&f->cv, &f->mu);
    avail = f->produced > pos ? f->produced - pos : 0;
    pthread_mutex_unlock(&f->mu);
    return avail > STEP ? STEP : avail;
}

static void *hasher(void *arg)
{
    fetch *f = arg;
    size_t pos = 0, n;

    while ((n = wait_for(f, pos)) > 0) {
        if (!f->sha_err && sha256_update(&f->sha, f->out + pos, n) != 0)
            f->sha_err = 1;
        pos += n;
    }
    return NULL;
}

static void *writer(void *arg)
{
    fetch *f = arg;
    size_t pos = 0, n;

    while ((n = wait_for(f, pos)) > 0) {
        size_t done = 0;
        while (!f->write_err && done < n) {
            ssize_t w = pwrite(f->fd, f->out + pos + done, n - done, (off_t)(pos + done));
            if (w < 0 && errno != EINTR)
                f->write_err = errno;
            else if (w > 0)
                done += (size_t)w;
        }
        pos += n;
    }
    return NULL;
}

static void publish(fetch *f, size_t produced, int ended)
{
    pthread_mutex_lock(&f->mu);
    f->produced = produced;
    f->ended |= ended;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

uint8_t *object_into_alloc(size_t cap)
{
    void *p = NULL;

    if (posix_memalign(&p, HUGE_PAGE, cap + 1) != 0)
        return NULL;
    /* both advisory: without them the pages fault in one by one as zstd writes */
    (void)madvise(p, cap + 1, MADV_HUGEPAGE);
    (void)madvise(p, cap + 1, MADV_POPULATE_WRITE);
    return p;
}

int object_get_into(storage *st, const char *key, uint8_t *outbuf, size_t cap, int fd,
                    size_t *len, zst_meta *meta)
{
    fetch f = {.fd = fd};
    storage_read *rd = NULL;
    ZSTD_DCtx *dctx = NULL;
    ZSTD_outBuffer out;
    pthread_t th[2];
    int nth = 0, ret, sha_ok = 0;
    size_t last_ret = 1, tail_len = 0;
    uint64_t fed = 0;
    uint8_t tail[ZST_TRAILER_SIZE], got[SHA256_LEN];
    const void *buf;
    ssize_t n;
    zst_meta want;
    char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];

    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    ret = OBJECT_INTO_UNSUPPORTED;
    f.out = outbuf;
    f.cap = cap;
    dctx = ZSTD_createDCtx();
    if (!dctx || ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_stableOutBuffer, 1))) {
        log_debug("decompressing into one buffer is not possible here: streaming");
        goto out;
    }
    ret = storage_read_open(st, key, &rd);
    if (ret != 0)
        goto out;
    ret = -1;
    if (sha256_init(&f.sha) != 0)
        goto out;
    sha_ok = 1;
    if (pthread_create(&th[0], NULL, hasher, &f) != 0) {
        log_error("could not start a thread");
        goto out;
    }
    nth = 1;
    if (fd >= 0) {
        if (pthread_create(&th[1], NULL, writer, &f) != 0) {
            log_error("could not start a thread");
            goto out;
        }
        nth = 2;
    }
    out = (ZSTD_outBuffer){f.out, cap, 0};
    /* The last ZST_TRAILER_SIZE bytes of the stream are the trailer, never fed to
     * zstd: hold back that many from each chunk until the next one comes. */
    while ((n = storage_read_data(rd, &buf)) > 0) {
        const uint8_t *p = buf;
        size_t len = (size_t)n, total = tail_len + len, process, from_tail;

        if (total <= ZST_TRAILER_SIZE) {
            memcpy(tail + tail_len, p, len);
            tail_len = total;
            continue;
        }
        process = total - ZST_TRAILER_SIZE;
        from_tail = process < tail_len ? process : tail_len;
        for (int part = 0; part < 2; part++) {
            const uint8_t *src = part == 0 ? tail : p;
            size_t srclen = part == 0 ? from_tail : process - from_tail;
            for (size_t off = 0; off < srclen;) {
                ZSTD_inBuffer in = {src + off, srclen - off > SLICE ? SLICE : srclen - off, 0};
                while (in.pos < in.size) {
                    size_t before = out.pos, in_before = in.pos;
                    size_t r = ZSTD_decompressStream(dctx, &out, &in);
                    if (ZSTD_isError(r) && ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall) {
                        log_error("could not decompress object \"%s/%s\": %s", storage_location(st),
                                  key, ZSTD_getErrorName(r));
                        ret = RS_MISMATCH;
                        goto out;
                    }
                    last_ret = r;
                    if (ZSTD_isError(r) || (out.pos == before && in.pos == in_before)) {
                        /* the buffer is full and zstd needs more room */
                        log_error("object \"%s/%s\" holds more than %zu bytes: not a WAL segment "
                                  "of this repository", storage_location(st), key, cap);
                        ret = RS_MISMATCH;
                        goto out;
                    }
                    if (out.pos != before)
                        publish(&f, out.pos, 0);
                }
                off += in.size;
                fed += in.size;
            }
        }
        memmove(tail, tail + from_tail, tail_len - from_tail);
        tail_len -= from_tail;
        memcpy(tail + tail_len, p + (process - from_tail), len - (process - from_tail));
        tail_len += len - (process - from_tail);
    }
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    if (tail_len < ZST_TRAILER_SIZE || zst_trailer_decode(tail, &want) != 0) {
        log_error("object \"%s/%s\" is truncated or lacks its ragsafe trailer", storage_location(st), key);
        ret = RS_MISMATCH;
        goto out;
    }
    if (fed == 0 || last_ret != 0) {
        log_error("object \"%s/%s\" is truncated: the zstd stream ends mid-frame", storage_location(st), key);
        ret = RS_MISMATCH;
        goto out;
    }
    publish(&f, out.pos, 1);
    while (nth > 0)
        pthread_join(th[--nth], NULL);
    if (f.write_err) {
        errno = f.write_err;
        log_errno("could not write the restored file");
        goto out;
    }
    if (f.sha_err || sha256_final(&f.sha, got) != 0)
        goto out;
    if (meta)
        *meta = want;
    if (len)
        *len = out.pos;
    if (want.raw_size != out.pos) {
        log_error("size mismatch in object \"%s/%s\": %zu bytes decompressed, trailer records %llu",
                  storage_location(st), key, out.pos, (unsigned long long)want.raw_size);
        ret = RS_MISMATCH;
        goto out;
    }
    if (memcmp(want.sha256, got, SHA256_LEN) != 0) {
        sha256_to_hex(got, a);
        sha256_to_hex(want.sha256, b);
        log_error("checksum mismatch in object \"%s/%s\"", storage_location(st), key);
        log_detail("SHA-256 of the content is %s, the trailer records %s", a, b);
        ret = RS_MISMATCH;
        goto out;
    }
    ret = 0;
out:
    if (nth > 0) {
        publish(&f, 0, 1); /* the followers stop where they are */
        while (nth > 0)
            pthread_join(th[--nth], NULL);
    }
    if (sha_ok)
        sha256_release(&f.sha);
    ZSTD_freeDCtx(dctx);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
    storage_read_free(rd);
    return ret;
}

int object_get_seg(storage *st, const char *key, size_t cap, char **buf, size_t *len,
                   zst_meta *meta)
{
    uint8_t *out = cap <= OBJECT_INTO_MAX ? object_into_alloc(cap) : NULL;
    size_t n = 0;
    int ret;

    if (!out)
        return object_get_buf(st, key, cap, buf, len, meta);
    ret = object_get_into(st, key, out, cap, -1, &n, meta);
    if (ret == OBJECT_INTO_UNSUPPORTED) {
        free(out);
        return object_get_buf(st, key, cap, buf, len, meta);
    }
    if (ret != 0) {
        free(out);
        *buf = NULL;
        return ret;
    }
    out[n] = '\0';
    *buf = (char *)out;
    if (len)
        *len = n;
    return 0;
}
