/*
 * zst.c -- zstd streams with the ragsafe trailer; see zst.h for the format.
 */
#include "zst.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common.h"
#include "le.h"
#include "log.h"

#define TRAILER_MAGIC 0x184D2A5Eu
#define TRAILER_PAYLOAD 48u
#define TRAILER_VERSION 1u

void zst_trailer_encode(const zst_meta *meta, uint8_t out[ZST_TRAILER_SIZE])
{
    le32_store(out, TRAILER_MAGIC);
    le32_store(out + 4, TRAILER_PAYLOAD);
    memcpy(out + 8, "RGSF", 4);
    le32_store(out + 12, TRAILER_VERSION);
    le64_store(out + 16, meta->raw_size);
    memcpy(out + 24, meta->sha256, SHA256_LEN);
}

int zst_trailer_decode(const uint8_t buf[ZST_TRAILER_SIZE], zst_meta *meta)
{
    if (le32_load(buf) != TRAILER_MAGIC || le32_load(buf + 4) != TRAILER_PAYLOAD ||
        memcmp(buf + 8, "RGSF", 4) != 0 || le32_load(buf + 12) != TRAILER_VERSION)
        return -1;
    meta->raw_size = le64_load(buf + 16);
    memcpy(meta->sha256, buf + 24, SHA256_LEN);
    return 0;
}

/* ---- writer ---- */

struct zst_writer {
    ZSTD_CCtx *cctx;
    sha256_ctx sha;
    uint64_t raw;
    zst_sink_fn sink;
    void *arg;
    size_t outcap;
    uint8_t *out;
    int failed;
};

zst_writer *zst_writer_new(int level, int workers, zst_sink_fn sink, void *arg)
{
    zst_writer *w = calloc(1, sizeof(*w));
    size_t r;

    if (!w) {
        log_error("out of memory");
        return NULL;
    }
    w->sink = sink;
    w->arg = arg;
    w->outcap = ZSTD_CStreamOutSize() * 4;
    w->out = malloc(w->outcap);
    w->cctx = ZSTD_createCCtx();
    if (!w->out || !w->cctx) {
        log_error("out of memory");
        goto fail;
    }
    if (sha256_init(&w->sha) != 0)
        goto fail;
    r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level ? level : ZST_DEFAULT_LEVEL);
    if (!ZSTD_isError(r) && workers > 0) {
        /* Without multithread support in libzstd this fails: run single-threaded. */
        if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, workers)))
            log_debug("zstd worker threads unavailable; compressing in one thread");
        /* Small jobs keep every worker busy on a 16 MiB segment (the default job
         * size at level 3 would be 8 MiB: two jobs, one core idle half the time). */
        else
            ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_jobSize, ZST_JOB_SIZE);
    }
    /* A content checksum per frame lets stock `zstd -t` catch a damaged object too
     * (our trailer's SHA-256 stays the check that counts). */
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(r)) {
        log_error("invalid zstd compression level %d: %s", level, ZSTD_getErrorName(r));
        goto fail;
    }
    return w;
fail:
    zst_writer_free(w);
    return NULL;
}

/*
 * compress -- feed input through the context with mode, handing every produced
 * byte to the sink, until the input is consumed (and, for flush/end, until done).
 */
static int compress(zst_writer *w, const void *buf, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, len, 0};

    for (;;) {
        ZSTD_outBuffer out = {w->out, w->outcap, 0};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem))
            return log_error("zstd compression failed: %s", ZSTD_getErrorName(rem));
        if (out.pos && w->sink(w->arg, w->out, out.pos) != 0)
            return -1;
        if (mode == ZSTD_e_continue ? in.pos == in.size : rem == 0)
            return 0;
    }
}

void zst_writer_set_job_size(zst_writer *w, size_t bytes)
{
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_jobSize, (int)bytes);
}

int zst_writer_write(zst_writer *w, const void *buf, size_t len)
{
    if (w->failed)
        return -1;
    if (sha256_update(&w->sha, buf, len) != 0 || compress(w, buf, len, ZSTD_e_continue) != 0) {
        w->failed = 1;
        return -1;
    }
    w->raw += len;
    return 0;
}

int zst_writer_finish(zst_writer *w, zst_meta *meta)
{
    zst_meta m;
    uint8_t trailer[ZST_TRAILER_SIZE];

    if (w->failed)
        return -1;
    w->failed = 1; /* finish runs once */
    if (compress(w, NULL, 0, ZSTD_e_end) != 0)
        return -1;
    m.raw_size = w->raw;
    if (sha256_final(&w->sha, m.sha256) != 0)
        return -1;
    zst_trailer_encode(&m, trailer);
    if (w->sink(w->arg, trailer, sizeof(trailer)) != 0)
        return -1;
    if (meta)
        *meta = m;
    return 0;
}

void zst_writer_free(zst_writer *w)
{
    if (!w)
        return;
    ZSTD_freeCCtx(w->cctx);
    sha256_release(&w->sha);
    free(w->out);
    free(w);
}

/* ---- reader ---- */

/*
 * A hashing thread for large reads: SHA-256 of a 16 MiB segment costs about as much as
 * writing it, so ragsafe-restore hashes chunk k on a second core while chunk k+1 is
 * decompressed. Buffers cycle through a small ring: filled by the reader, hashed by
 * the thread, then free for the reader again, in order.
 */
#define HASH_BUFS 4

struct hasher {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[HASH_BUFS];
    size_t len[HASH_BUFS];
    int queued[HASH_BUFS];
    unsigned head, tail;   /* next to hash, next to fill */
    int stop, err;
    sha256_ctx *sha;
};

static void *hasher_main(void *arg)
{
    struct hasher *h = arg;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->queued[h->head] && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->queued[h->head])
            break; /* stopped and drained */
        unsigned k = h->head;
        pthread_mutex_unlock(&h->mu);
        int bad = !h->err && sha256_update(h->sha, h->buf[k], h->len[k]) != 0;
        pthread_mutex_lock(&h->mu);
        if (bad)
            h->err = 1;
        h->queued[k] = 0;
        h->head = (k + 1) % HASH_BUFS;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

struct zst_reader {
    ZSTD_DCtx *dctx;
    sha256_ctx sha;
    struct hasher *hasher;   /* NULL: hash in the calling thread */
    uint64_t raw;
    uint64_t fed;          /* compressed bytes given to zstd */
    size_t last_ret;       /* ZSTD_decompressStream's last hint: 0 = frame complete */
    zst_sink_fn sink;
    void *arg;
    uint8_t *out;
    size_t outcap;
    uint8_t tail[ZST_TRAILER_SIZE];
    size_t tail_len;
    char *name;
    int failed;
    int damaged;           /* the failure was the object's: not zstd, cut short, no trailer */
};

zst_reader *zst_reader_new(zst_sink_fn sink, void *arg)
{
    zst_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        log_error("out of memory");
        return NULL;
    }
    r->sink = sink;
    r->arg = arg;
    r->outcap = ZSTD_DStreamOutSize() * 4;
    r->out = malloc(r->outcap);
    r->dctx = ZSTD_createDCtx();
    if (!r->out || !r->dctx) {
        log_error("out of memory");
        goto fail;
    }
    if (sha256_init(&r->sha) != 0)
        goto fail;
    return r;
fail:
    zst_reader_free(r);
    return NULL;
}

void zst_reader_set_name(zst_reader *r, const char *name)
{
    free(r->name);
    r->name = name ? strdup(name) : NULL;
}

static const char *rname(const zst_reader *r) { return r->name ? r->name : "zstd stream"; }

/* hasher_stop -- drain and join the thread; -1 if hashing failed. */
static int hasher_stop(zst_reader *r)
{
    struct hasher *h = r->hasher;
    int err;

    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    err = h->err;
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    for (int i = 0; i < HASH_BUFS; i++)
        free(h->buf[i]);
    free(h);
    r->hasher = NULL;
    return err ? -1 : 0;
}

int zst_reader_hash_in_thread(zst_reader *r)
{
    struct hasher *h;

    if (r->hasher || r->raw)
        return 0;
    h = calloc(1, sizeof(*h));
    if (!h)
        return log_error("out of memory");
    for (int i = 0; i < HASH_BUFS; i++)
        if (!(h->buf[i] = malloc(r->outcap))) {
            for (int j = 0; j < i; j++)
                free(h->buf[j]);
            free(h);
            return log_error("out of memory");
        }
    h->sha = &r->sha;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->th, NULL, hasher_main, h) != 0) {
        /* No thread: hash inline, as without this call. */
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        for (int i = 0; i < HASH_BUFS; i++)
            free(h->buf[i]);
        free(h);
        return 0;
    }
    r->hasher = h;
    return 0;
}

/* out_buffer -- where the next decompressed bytes go: the ring's next free buffer
 * (waiting for the hasher if it is behind), or the reader's own buffer. */
static uint8_t *out_buffer(zst_reader *r)
{
    struct hasher *h = r->hasher;
    uint8_t *b;

    if (!h)
        return r->out;
    pthread_mutex_lock(&h->mu);
    while (h->queued[h->tail])
        pthread_cond_wait(&h->cv, &h->mu);
    b = h->buf[h->tail];
    pthread_mutex_unlock(&h->mu);
    return b;
}

/* consume -- hash and pass on n bytes just decompressed into buf. */
static int consume(zst_reader *r, uint8_t *buf, size_t n)
{
    struct hasher *h = r->hasher;

    r->raw += n;
    if (r->sink && r->sink(r->arg, buf, n) != 0)
        return -1;
    if (!h)
        return sha256_update(&r->sha, buf, n);
    pthread_mutex_lock(&h->mu);
    h->len[h->tail] = n;
    h->queued[h->tail] = 1;
    h->tail = (h->tail + 1) % HASH_BUFS;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int decompress(zst_reader *r, const uint8_t *buf, size_t len)
{
    ZSTD_inBuffer in = {buf, len, 0};
    int out_full = 0;

    /* Loop until the input is consumed and zstd has nothing left to flush: a full
     * output buffer means it may hold more, unless the frame just ended (0), where a
     * further call would only start waiting for the next frame's header. */
    while (in.pos < in.size || (out_full && r->last_ret != 0)) {
        uint8_t *b = out_buffer(r);
        ZSTD_outBuffer out = {b, r->outcap, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            r->damaged = 1;
            return log_error("could not decompress %s: %s", rname(r), ZSTD_getErrorName(ret));
        }
        r->last_ret = ret;
        if (out.pos && consume(r, b, out.pos) != 0)
            return -1;
        out_full = out.pos == out.size;
    }
    r->fed += len;
    return 0;
}

int zst_reader_write(zst_reader *r, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    size_t total = r->tail_len + len, process, from_tail, from_buf;

    if (r->failed)
        return -1;
    if (total <= ZST_TRAILER_SIZE) {
        memcpy(r->tail + r->tail_len, b, len);
        r->tail_len = total;
        return 0;
    }
    process = total - ZST_TRAILER_SIZE;
    from_tail = process < r->tail_len ? process : r->tail_len;
    from_buf = process - from_tail;
    if ((from_tail && decompress(r, r->tail, from_tail) != 0) ||
        (from_buf && decompress(r, b, from_buf) != 0)) {
        r->failed = 1;
        return -1;
    }
    memmove(r->tail, r->tail + from_tail, r->tail_len - from_tail);
    r->tail_len -= from_tail;
    memcpy(r->tail + r->tail_len, b + from_buf, len - from_buf);
    r->tail_len += len - from_buf;
    return 0;
}

int zst_reader_finish(zst_reader *r, zst_meta *meta)
{
    zst_meta want;
    uint8_t got[SHA256_LEN];
    char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];

    if (r->failed)
        return -1;
    r->failed = 1;
    if (r->tail_len < ZST_TRAILER_SIZE || zst_trailer_decode(r->tail, &want) != 0) {
        r->damaged = 1;
        return log_error("%s is truncated or lacks its ragsafe trailer", rname(r));
    }
    if (r->fed == 0 || r->last_ret != 0) {
        r->damaged = 1;
        return log_error("%s is truncated: the zstd stream ends mid-frame", rname(r));
    }
    if (hasher_stop(r) != 0 || sha256_final(&r->sha, got) != 0)
        return -1;
    if (meta)
        *meta = want;
    if (want.raw_size != r->raw) {
        log_error("size mismatch in %s: %llu bytes decompressed, trailer records %llu", rname(r),
                  (unsigned long long)r->raw, (unsigned long long)want.raw_size);
        return RS_MISMATCH;
    }
    if (memcmp(want.sha256, got, SHA256_LEN) != 0) {
        sha256_to_hex(got, a);
        sha256_to_hex(want.sha256, b);
        log_error("checksum mismatch in %s", rname(r));
        log_detail("SHA-256 of the content is %s, the trailer records %s", a, b);
        return RS_MISMATCH;
    }
    return 0;
}

int zst_reader_damaged(const zst_reader *r)
{
    return r->damaged;
}

void zst_reader_free(zst_reader *r)
{
    if (!r)
        return;
    hasher_stop(r);
    ZSTD_freeDCtx(r->dctx);
    sha256_release(&r->sha);
    free(r->out);
    free(r->name);
    free(r);
}
