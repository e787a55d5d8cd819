/*
 * chunked.c -- the chunked backup format (--format chunked): as stream.c parses each
 * tar archive, every regular file is cut into fixed-size chunks stored once in the
 * repository's chunk store (lib/chunkstore.h), and each archive becomes a manifest
 * instead of a tar:
 *
 *     backups/<label>/base.chunks.zst      (and <oid>.chunks.zst per tablespace)
 *
 * one zstd frame of JSON:
 *     {"format":"ragsafe-chunks","version":1,"archive":"base.tar","chunk_size":32768,
 *      "entries":[{"path":"base","type":"dir","mode":448},
 *                 {"path":"PG_VERSION","type":"file","mode":384,"size":3,
 *                  "sha256":"<hex>","chunks":["<hex sha256 of chunk 0>", ...]},
 *                 {"path":"pg_tblspc/16385","type":"link","target":"/srv/ts"}]}
 * Paths are the tar's (relative, no trailing '/'); chunk i of a file holds its bytes
 * from i * chunk_size, the last one shorter. The packs holding the chunks are
 * committed before the manifest, the manifest before backup.json.
 *
 * The per-chunk work (SHA-256, the index lookup, zstd) runs on worker threads so that
 * the thread parsing the tar only copies bytes: the parser fills the chunk slots of a
 * ring in order, the workers take them in order, and the parser retires them in order
 * (chunkstore_add into the open pack, the digest into its file's chunk list) when it
 * needs a slot and, all of them, before the archive's packs are committed. The packs,
 * their indexes and the manifests are thus written in the same order, by the same
 * thread, as without workers.
 */
#include <archive_entry.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "basebackup.h"
#include "chunkstore.h"
#include "common.h"
#include "log.h"

#define WAKE_BATCH 8

/* a chunk on its way: filled by the parser, hashed (and compressed when new) by a
 * worker, retired by the parser */
typedef struct cslot {
    uint8_t *raw, *rec;
    size_t len, rec_len;
    uint8_t digest[SHA256_LEN];
    json_t *chunks;         /* its file's chunk list (a reference) ... */
    size_t index;           /* ... and its place there (a null until retired) */
    int done, known, failed;
} cslot;

struct bb_chunker {
    chunkstore *cs;
    size_t chunk_size;
    json_t *entries;        /* of the current archive */
    char *archive;
    /* the current file */
    json_t *file, *chunks;
    cslot *cur;             /* the slot being filled, NULL between chunks */
    uint64_t new_bytes;     /* stored by the current archive */
    uint64_t total_new;
    /* the ring: slots head..., taken by workers from take, retired from tail */
    cslot *ring;
    size_t nring;
    uint64_t head, take, tail;
    pthread_t *threads;
    int nthreads, started, stop;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
};

/* chunk_size_setting -- CHUNKSTORE_CHUNK_SIZE, or $RAGSAFE_CHUNK_SIZE (bytes, a
 * multiple of 8192 up to 1 MiB: the measurement hook of the README's figures). */
static size_t chunk_size_setting(void)
{
    const char *v = getenv("RAGSAFE_CHUNK_SIZE");
    char *end;
    unsigned long n;

    if (!v || !*v)
        return CHUNKSTORE_CHUNK_SIZE;
    n = strtoul(v, &end, 10);
    if (*end || n < 8192 || n > CHUNKSTORE_CHUNK_MAX || n % 8192 != 0) {
        log_warning("ignoring RAGSAFE_CHUNK_SIZE=\"%s\": expected a multiple of 8192 up to %u", v,
                    CHUNKSTORE_CHUNK_MAX);
        return CHUNKSTORE_CHUNK_SIZE;
    }
    return n;
}

/* workers_setting -- $RAGSAFE_CHUNK_THREADS (1-64), else the cores (at least 1). */
static int workers_setting(void)
{
    const char *v = getenv("RAGSAFE_CHUNK_THREADS");
    long n;

    if (v && *v) {
        char *end;
        n = strtol(v, &end, 10);
        if (!*end && n >= 1 && n <= 64)
            return (int)n;
        log_warning("ignoring RAGSAFE_CHUNK_THREADS=\"%s\": expected 1 to 64", v);
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* worker_main -- hash each slot in turn, compress it unless a pack holds it. */
static void *worker_main(void *arg)
{
    bb_chunker *c = arg;
    chunk_encoder *enc = chunk_encoder_new(chunkstore_level(c->cs));

    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->stop && c->take == c->head)
            pthread_cond_wait(&c->work, &c->mu);
        if (c->stop) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        cslot *sl = &c->ring[c->take++ % c->nring];
        pthread_mutex_unlock(&c->mu);

        int failed = !enc || sha256_buffer(sl->raw, sl->len, sl->digest) != 0;
        if (!failed && !(sl->known = chunkstore_known(c->cs, sl->digest))) {
            if (!sl->rec && !(sl->rec = malloc(chunkstore_record_bound(c->chunk_size)))) {
                log_errno("could not allocate memory");
                failed = 1;
            } else {
                sl->rec_len = chunk_encode(enc, sl->raw, sl->len, sl->digest, sl->rec,
                                           chunkstore_record_bound(c->chunk_size));
                failed = sl->rec_len == 0;
            }
        }
        pthread_mutex_lock(&c->mu);
        sl->failed = failed;
        sl->done = 1;
        pthread_cond_broadcast(&c->done);
        pthread_mutex_unlock(&c->mu);
    }
    chunk_encoder_free(enc);
    return NULL;
}

/* bb_chunker_new -- see basebackup.h. */
bb_chunker *bb_chunker_new(storage *st, int level)
{
    bb_chunker *c = calloc(1, sizeof(*c));
    int err, ok = 0;

    if (!c) {
        log_errno("could not allocate memory");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    c->started = 1;
    c->chunk_size = chunk_size_setting();
    c->nthreads = workers_setting();
    /* enough slots to keep every worker busy while the parser retires: 8 MiB of chunks */
    c->nring = (8u << 20) / c->chunk_size;
    if (c->nring < 4 * (size_t)c->nthreads)
        c->nring = 4 * (size_t)c->nthreads;
    c->ring = calloc(c->nring, sizeof(*c->ring));
    c->threads = calloc((size_t)c->nthreads, sizeof(*c->threads));
    if (!c->ring || !c->threads) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t i = 0; i < c->nring; i++)
        if (!(c->ring[i].raw = malloc(c->chunk_size))) {
            log_errno("could not allocate memory");
            goto out;
        }
    if (!(c->cs = chunkstore_open(st, level)))
        goto out;
    for (int i = 0; i < c->nthreads; i++) {
        if ((err = pthread_create(&c->threads[i], NULL, worker_main, c)) != 0) {
            c->nthreads = i;
            log_errnum(err, "could not start a chunk thread");
            goto out;
        }
    }
    log_info("chunked backup: %zu-byte chunks, %d thread%s", c->chunk_size, c->nthreads,
             PLURAL(c->nthreads));
    ok = 1;
out:
    if (!ok) {
        bb_chunker_free(c);
        return NULL;
    }
    return c;
}

void bb_chunker_free(bb_chunker *c)
{
    if (!c)
        return;
    if (c->threads) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->work);
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < c->nthreads; i++)
            pthread_join(c->threads[i], NULL);
    }
    for (uint64_t q = c->tail; q < c->head; q++)
        json_decref(c->ring[q % c->nring].chunks);
    for (size_t i = 0; c->ring && i < c->nring; i++) {
        free(c->ring[i].raw);
        free(c->ring[i].rec);
    }
    free(c->ring);
    free(c->threads);
    if (c->started) {
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->work);
        pthread_mutex_destroy(&c->mu);
    }
    chunkstore_free(c->cs);
    json_decref(c->entries);
    json_decref(c->file);
    json_decref(c->chunks);
    free(c->archive);
    free(c);
}

/* retire -- wait for the oldest slot, store its chunk and name it in its file's list. */
static int retire(bb_chunker *c)
{
    cslot *sl = &c->ring[c->tail % c->nring];
    char hex[SHA256_HEX_LEN + 1];
    uint64_t stored;
    int ret = -1;

    pthread_mutex_lock(&c->mu);
    if (!sl->done)
        pthread_cond_broadcast(&c->work);
    while (!sl->done)
        pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (sl->failed)
        goto out;
    if (chunkstore_add(c->cs, sl->digest, sl->known ? NULL : sl->rec, sl->rec_len, &stored) != 0)
        goto out;
    c->new_bytes += stored;
    c->total_new += stored;
    sha256_to_hex(sl->digest, hex);
    if (json_array_set_new(sl->chunks, sl->index, json_string(hex)) != 0) {
        log_error("could not build the chunk manifest: out of memory");
        goto out;
    }
    ret = 0;
out:
    json_decref(sl->chunks);
    sl->chunks = NULL;
    c->tail++;
    return ret;
}

/* drain -- retire every slot handed to the workers. */
static int drain(bb_chunker *c)
{
    while (c->tail < c->head)
        if (retire(c) != 0)
            return -1;
    return 0;
}

/* bb_chunker_archive_begin -- a new archive ("base.tar", "16384.tar"). */
int bb_chunker_archive_begin(bb_chunker *c, const char *archive)
{
    json_decref(c->entries);
    free(c->archive);
    c->entries = json_array();
    c->archive = strdup(archive);
    c->new_bytes = 0;
    if (!c->entries || !c->archive)
        return log_errno("could not allocate memory");
    return 0;
}

/* clean_path -- the tar name without "./" in front and '/' at the end. */
static int clean_path(const char *name, char *out, size_t len)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] == '/')
        n--;
    if (n == 0 || n >= len)
        return log_error("could not record tar entry \"%s\": bad name", name);
    memcpy(out, name, n);
    out[n] = '\0';
    return 0;
}

/* append_entry -- add obj to the archive's entries (takes the reference). */
static int append_entry(bb_chunker *c, json_t *obj)
{
    if (!obj || json_array_append_new(c->entries, obj) != 0)
        return log_error("could not build the chunk manifest: out of memory");
    return 0;
}

/* bb_chunker_other -- a directory or symbolic link entry; others are refused. */
int bb_chunker_other(bb_chunker *c, struct archive_entry *e)
{
    char path[4096];
    const char *name = archive_entry_pathname(e);

    if (!name)
        return log_error("could not record a tar entry without a name");
    if (clean_path(name, path, sizeof(path)) != 0)
        return -1;
    switch (archive_entry_filetype(e)) {
    case AE_IFDIR:
        return append_entry(c, json_pack("{s:s, s:s, s:i}", "path", path, "type", "dir", "mode",
                                         (int)(archive_entry_perm(e) & 07777)));
    case AE_IFLNK: {
        const char *t = archive_entry_symlink(e);
        if (!t)
            return log_error("could not record symbolic link \"%s\": no target", path);
        return append_entry(c, json_pack("{s:s, s:s, s:s}", "path", path, "type", "link",
                                         "target", t));
    }
    default:
        return log_error("could not record tar entry \"%s\": unsupported type", path);
    }
}

/* bb_chunker_file_begin -- a regular file starts. */
int bb_chunker_file_begin(bb_chunker *c, const char *name, unsigned mode)
{
    char path[4096];

    if (clean_path(name, path, sizeof(path)) != 0)
        return -1;
    json_decref(c->file);
    json_decref(c->chunks);
    c->chunks = json_array();
    c->file = json_pack("{s:s, s:s, s:i}", "path", path, "type", "file", "mode", (int)(mode & 07777));
    c->cur = NULL;
    if (!c->file || !c->chunks) {
        json_decref(c->chunks);
        c->chunks = NULL;
        return log_error("could not build the chunk manifest: out of memory");
    }
    return 0;
}

/* submit -- hand the filled slot to the workers, a null in its file's list meanwhile. */
static int submit(bb_chunker *c)
{
    cslot *sl = c->cur;

    sl->index = json_array_size(c->chunks);
    if (json_array_append_new(c->chunks, json_null()) != 0)
        return log_error("could not build the chunk manifest: out of memory");
    sl->chunks = json_incref(c->chunks);
    sl->done = sl->known = sl->failed = 0;
    sl->rec_len = 0;
    c->cur = NULL;
    pthread_mutex_lock(&c->mu);
    c->head++;
    /* workers are woken a batch at a time (retire wakes them for any rest): a wake-up
     * per chunk cost a third more system time than the chunks' work saved */
    if (c->head - c->take >= WAKE_BATCH)
        pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* bb_chunker_file_data -- the next bytes of the file. */
int bb_chunker_file_data(bb_chunker *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        if (!c->cur) {
            /* a free slot: the oldest is retired when the ring is full */
            if (c->head - c->tail == c->nring && retire(c) != 0)
                return -1;
            c->cur = &c->ring[c->head % c->nring];
            c->cur->len = 0;
        }
        cslot *sl = c->cur;
        size_t n = c->chunk_size - sl->len;
        if (n > len)
            n = len;
        memcpy(sl->raw + sl->len, p, n);
        sl->len += n;
        p += n;
        len -= n;
        if (sl->len == c->chunk_size && submit(c) != 0)
            return -1;
    }
    return 0;
}

/* bb_chunker_file_end -- the file is complete: size and SHA-256 as stream.c hashed it. */
int bb_chunker_file_end(bb_chunker *c, uint64_t size, const uint8_t sha[SHA256_LEN])
{
    char hex[SHA256_HEX_LEN + 1];
    int bad = 0;

    if (c->cur && c->cur->len > 0 && submit(c) != 0)
        return -1;
    c->cur = NULL;
    sha256_to_hex(sha, hex);
    bad |= json_object_set_new(c->file, "size", json_integer((json_int_t)size));
    bad |= json_object_set_new(c->file, "sha256", json_string(hex));
    bad |= json_object_set(c->file, "chunks", c->chunks);
    json_decref(c->chunks);
    c->chunks = NULL;
    if (bad)
        return log_error("could not build the chunk manifest: out of memory");
    json_t *f = c->file;
    c->file = NULL;
    return append_entry(c, f);
}

/* bb_chunker_archive_end -- commit the packs, then store the archive's manifest as
 * <prefix>/<file> (a zstd frame of JSON). *raw: bytes of the files; *stored and sha:
 * of the manifest as stored (the new chunks are counted for the whole backup,
 * bb_chunker_summary). */
int bb_chunker_archive_end(bb_chunker *c, storage *st, const char *prefix, const char *file,
                           uint64_t *raw, uint64_t *stored, uint8_t sha[SHA256_LEN])
{
    json_t *root = NULL;
    char *text = NULL, key[1024];
    void *z = NULL;
    size_t i;
    json_t *e;
    int ret = -1;

    /* every chunk in its list before the packs are committed and the manifest made */
    if (drain(c) != 0)
        return -1;
    *raw = 0;
    json_array_foreach(c->entries, i, e) {
        json_t *s = json_object_get(e, "size");
        if (json_is_integer(s))
            *raw += (uint64_t)json_integer_value(s);
    }
    if (chunkstore_flush(c->cs) != 0)
        return -1;
    root = json_pack("{s:s, s:i, s:s, s:I, s:O}", "format", "ragsafe-chunks", "version", 1,
                     "archive", c->archive, "chunk_size", (json_int_t)c->chunk_size, "entries",
                     c->entries);
    text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!text) {
        log_error("could not build the chunk manifest: out of memory");
        goto out;
    }
    size_t len = strlen(text), bound = ZSTD_compressBound(len);
    if (!(z = malloc(bound))) {
        log_errno("could not allocate memory");
        goto out;
    }
    size_t zl = ZSTD_compress(z, bound, text, len, 9);
    if (ZSTD_isError(zl)) {
        log_error("could not compress the chunk manifest: %s", ZSTD_getErrorName(zl));
        goto out;
    }
    if (sha256_buffer(z, zl, sha) != 0)
        goto out;
    snprintf(key, sizeof(key), "%s/%s", prefix, file);
    int r = storage_put(st, key, z, zl, 1);
    if (r == RS_EXISTS)
        log_error("could not store \"%s\": it already exists", key);
    if (r != 0)
        goto out;
    *stored = zl;
    log_info("stored \"%s\": %" PRIu64 " byte%s of files, %" PRIu64 " new compressed chunk bytes",
             key, *raw, PLURAL(*raw), c->new_bytes);
    ret = 0;
out:
    free(z);
    free(text);
    json_decref(root);
    return ret;
}

/* bb_chunker_summary -- chunk counters for backup.json and the log. */
void bb_chunker_summary(const bb_chunker *c, uint64_t *chunks, uint64_t *new_chunks,
                        uint64_t *new_bytes, uint64_t *packs, uint32_t *chunk_size)
{
    chunkstore_stats s;

    chunkstore_get_stats(c->cs, &s);
    *chunks = s.chunks;
    *new_chunks = s.new_chunks;
    *new_bytes = s.new_bytes;
    *packs = s.packs;
    *chunk_size = (uint32_t)c->chunk_size;
}
