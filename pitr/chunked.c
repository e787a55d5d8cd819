/*
 * chunked.c -- the reading side of chunked base backups (ragsafe-basebackup
 * --format chunked; the format is in basebackup/chunked.c and lib/chunkstore.h).
 *
 *  chunked_extract   restore / extract / dump: one archive's manifest (base.chunks.zst
 *                    or <oid>.chunks.zst) into a directory. Every entry is checked
 *                    against backup_manifest and every chunk a file needs is looked up
 *                    in the pack indexes before anything is written (a missing chunk:
 *                    refused, naming file and chunk). Then the packs are read on
 *                    --jobs threads, each chunk checked against its SHA-256 before it
 *                    is written in place (pwrite at its offset, through a small cache
 *                    of open files per thread); a complete file has its writeback
 *                    started (the caller's final syncfs then finds little to do). A
 *                    file is not read back: see "why no read-back" below.
 *                    A damaged chunk: every file that needs it is removed and named,
 *                    RS_MISMATCH. --delta: a chunk whose bytes are already in the
 *                    target file (same SHA-256) is not fetched.
 *  chunked_verify    verify: every chunk every kept chunked backup names, each read once;
 *                    a damaged or missing chunk is reported with every backup and file
 *                    that uses it.
 *  chunked_sweep     expire: mark (every chunk manifest under backups/) and sweep packs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "chunkstore.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "pitr.h"

#define CMANIFEST_MAX (1u << 30)

enum { CE_FILE, CE_DIR, CE_LINK };

typedef struct centry {
    char *path;
    int type;
    unsigned mode;
    uint64_t size;
    uint8_t sha[SHA256_LEN];
    size_t nchunks;
    uint8_t (*chunks)[SHA256_LEN];
    char *target;
} centry;

typedef struct cmanifest {
    centry *e;
    size_t n;
    uint32_t chunk_size;
    uint64_t stored;
} cmanifest;

static void cmanifest_release(cmanifest *cm)
{
    for (size_t i = 0; i < cm->n; i++) {
        free(cm->e[i].path);
        free(cm->e[i].chunks);
        free(cm->e[i].target);
    }
    free(cm->e);
    memset(cm, 0, sizeof(*cm));
}

/* rel_ok -- a relative path of plain components. */
static int rel_ok(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* parse_entry -- one "entries" element. 0 | -1 (not reported: the caller names it). */
static int parse_entry(json_t *v, uint32_t chunk_size, centry *ce)
{
    const char *path = json_string_value(json_object_get(v, "path"));
    const char *type = json_string_value(json_object_get(v, "type"));

    if (!path || !type || !rel_ok(path) || !(ce->path = strdup(path)))
        return -1;
    if (strcmp(type, "dir") == 0) {
        ce->type = CE_DIR;
        ce->mode = (unsigned)json_integer_value(json_object_get(v, "mode")) & 07777;
        return 0;
    }
    if (strcmp(type, "link") == 0) {
        const char *t = json_string_value(json_object_get(v, "target"));
        ce->type = CE_LINK;
        return t && (ce->target = strdup(t)) ? 0 : -1;
    }
    if (strcmp(type, "file") != 0)
        return -1;
    ce->type = CE_FILE;
    ce->mode = (unsigned)json_integer_value(json_object_get(v, "mode")) & 07777;
    json_t *sz = json_object_get(v, "size"), *ch = json_object_get(v, "chunks");
    const char *sha = json_string_value(json_object_get(v, "sha256"));
    if (!json_is_integer(sz) || json_integer_value(sz) < 0 || !sha ||
        sha256_from_hex(sha, ce->sha) != 0 || !json_is_array(ch))
        return -1;
    ce->size = (uint64_t)json_integer_value(sz);
    ce->nchunks = json_array_size(ch);
    if (ce->nchunks != (ce->size + chunk_size - 1) / chunk_size)
        return -1;
    if (ce->nchunks && !(ce->chunks = malloc(ce->nchunks * SHA256_LEN)))
        return -1;
    for (size_t i = 0; i < ce->nchunks; i++) {
        const char *h = json_string_value(json_array_get(ch, i));
        if (!h || sha256_from_hex(h, ce->chunks[i]) != 0)
            return -1;
    }
    return 0;
}

/*
 * cmanifest_load -- an archive's chunk manifest: its stored bytes against stored_sha
 * (backup.json's digest; NULL: not checked), decompressed, parsed.
 * 0 | RS_MISMATCH (reported: missing or damaged) | -1 (reported).
 */
static int cmanifest_load(storage *st, const char *key, const uint8_t *stored_sha,
                          cmanifest *cm)
{
    char *buf = NULL, *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *arr;
    uint8_t d[SHA256_LEN];
    int ret = -1;

    memset(cm, 0, sizeof(*cm));
    int r = storage_get(st, key, CMANIFEST_MAX, &buf, &len);
    if (r == RS_NOT_FOUND) {
        log_error("chunk manifest \"%s\" is missing", key);
        return RS_MISMATCH;
    }
    if (r != 0)
        return r;
    if (sha256_buffer(buf, len, d) != 0)
        goto out;
    if (stored_sha && memcmp(d, stored_sha, SHA256_LEN) != 0) {
        log_error("checksum mismatch for chunk manifest \"%s\" (backup.json)", key);
        ret = RS_MISMATCH;
        goto out;
    }
    unsigned long long raw = ZSTD_getFrameContentSize(buf, len);
    if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN || raw > CMANIFEST_MAX)
        goto bad;
    if (!(text = malloc(raw + 1))) {
        log_errno("could not allocate memory");
        goto out;
    }
    size_t z = ZSTD_decompress(text, raw, buf, len);
    if (ZSTD_isError(z) || z != raw)
        goto bad;
    root = json_loadb(text, raw, 0, NULL);
    json_t *cs = json_object_get(root, "chunk_size");
    if (!json_is_object(root) ||
        strcmp(json_string_value(json_object_get(root, "format")) ?: "", "ragsafe-chunks") != 0 ||
        json_integer_value(json_object_get(root, "version")) != 1 || !json_is_integer(cs) ||
        json_integer_value(cs) < 1 || json_integer_value(cs) > CHUNKSTORE_CHUNK_MAX)
        goto bad;
    cm->chunk_size = (uint32_t)json_integer_value(cs);
    arr = json_object_get(root, "entries");
    if (!json_is_array(arr))
        goto bad;
    if (!(cm->e = calloc(json_array_size(arr) + 1, sizeof(*cm->e)))) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *path = json_string_value(json_object_get(json_array_get(arr, i), "path"));
        cm->n = i + 1;
        if (path && !rel_ok(path)) {
            log_error("refusing entry \"%s\" in chunk manifest \"%s\": not a relative path inside "
                      "the target", path, key);
            ret = RS_MISMATCH;
            goto out;
        }
        if (parse_entry(json_array_get(arr, i), cm->chunk_size, &cm->e[i]) != 0) {
            log_error("chunk manifest \"%s\": entry %zu is invalid", key, i);
            ret = RS_MISMATCH;
            goto out;
        }
    }
    cm->stored = len;
    ret = 0;
    goto out;
bad:
    log_error("chunk manifest \"%s\" is damaged", key);
    ret = RS_MISMATCH;
out:
    if (ret != 0)
        cmanifest_release(cm);
    json_decref(root);
    free(text);
    free(buf);
    return ret;
}

/* ---- restore ---------------------------------------------------------------------- */

typedef struct target {
    const uint8_t *digest;
    uint32_t file;          /* index into the manifest's entries */
    uint64_t offset;
    uint32_t len;
} target;

typedef struct ufile {
    char path[PATH_MAX];
    char mpath[PATH_MAX];
    atomic_size_t pending;  /* chunks still to write */
    atomic_int bad;
    int write;              /* fetched and written (not kept, hollow or skipped) */
} ufile;

typedef struct restore_job {
    storage *st;
    const cmanifest *cm;
    ufile *files;
    target *t;              /* sorted by digest */
    size_t nt;
    size_t *uniq;           /* start of each distinct digest in t */
    size_t nuniq;
    chunk_loc *loc;         /* per distinct digest */
    atomic_int *done;       /* per distinct digest: 1 written, 2 damaged */
    uint32_t *packs;
    size_t npacks;
    atomic_size_t next_pack;
    const chunkstore *cs;
    progress *pg;
    const volatile sig_atomic_t *stop; /* extract_opts.stop */
    int no_writeback;       /* extract_opts.no_writeback */
    pthread_mutex_t mu;
    int failed;             /* an I/O error (reported) */
    /* per-thread: the pack being read */
} restore_job;

/* a thread's open target files: consecutive chunks of a pack mostly go to one file */
#define FDCACHE_N 8

typedef struct worker {
    restore_job *j;
    uint32_t pack;
    storage *st;
    struct { uint32_t file; int fd; } fdc[FDCACHE_N];
    unsigned fdc_next;      /* the slot to reuse next (round robin) */
} worker;

static int cmp_target(const void *a, const void *b)
{
    const target *x = a, *y = b;
    int c = memcmp(x->digest, y->digest, SHA256_LEN);
    if (c)
        return c;
    return x->file < y->file ? -1 : x->file > y->file ? 1 : (x->offset > y->offset) - (x->offset < y->offset);
}

/* uniq_find -- binary search of d among the nuniq distinct digests (in order) of a
 * sorted array; digest_at(arr, i) is element i's digest. The distinct-digest number,
 * or -1. Shared by restore (targets) and verify (users). */
static ssize_t uniq_find(const void *arr, const uint8_t *(*digest_at)(const void *, size_t),
                         const size_t *uniq, size_t nuniq, const uint8_t *d)
{
    size_t lo = 0, hi = nuniq;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(digest_at(arr, uniq[mid]), d, SHA256_LEN);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static const uint8_t *target_digest(const void *arr, size_t i)
{
    return ((const target *)arr)[i].digest;
}

/* find_uniq -- the distinct-digest number of d, or -1. */
static ssize_t find_uniq(const restore_job *j, const uint8_t *d)
{
    return uniq_find(j->t, target_digest, j->uniq, j->nuniq, d);
}

static int want_cb(void *arg, const uint8_t *d)
{
    worker *w = arg;
    ssize_t u = find_uniq(w->j, d);
    return u >= 0 && w->j->loc[u].pack == w->pack && atomic_load(&w->j->done[u]) == 0;
}

/*
 * Why no read-back. Every byte a restore writes is a chunk whose SHA-256 was checked
 * after decompression (chunkstore_read_pack) against the digest the chunk manifest
 * lists for that offset; the chunk manifest is checked against backup.json's digest
 * before anything is written (cmanifest_load), and each of its entries' size and
 * SHA-256 against backup_manifest's (step 1 below); the backup made the chunk list and
 * the file's SHA-256 from the same bytes in one pass (basebackup/stream.c). Reading
 * each file back to hash it again would only re-read the page cache (not the disk), at
 * the cost of a second SHA-256 pass over everything. An empty file (no chunk) is
 * checked by file_check, which costs nothing.
 */

/* file_check -- a complete file read back against backup_manifest's SHA-256. */
static int file_check(ufile *f, const centry *ce)
{
    int fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret = -1;
    sha256_ctx h = {0};
    uint8_t d[SHA256_LEN];
    char *buf = malloc(1 << 20);
    uint64_t total = 0;

    if (fd < 0 || !buf) {
        log_errno("could not read back \"%s\"", f->path);
        goto out;
    }
    if (sha256_init(&h) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_errno("could not read back \"%s\"", f->path);
            goto out;
        }
        if (n == 0)
            break;
        if (sha256_update(&h, buf, (size_t)n) != 0)
            goto out;
        total += (uint64_t)n;
    }
    if (sha256_final(&h, d) != 0)
        goto out;
    if (total != ce->size || memcmp(d, ce->sha, SHA256_LEN) != 0) {
        log_error("file \"%s\" as restored does not match its SHA-256 in backup_manifest", f->mpath);
        ret = RS_MISMATCH;
        goto out;
    }
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    sha256_release(&h);
    return ret;
}

/* fd_get -- file t's descriptor from the thread's cache (opened and cached on a miss).
 * -1 reported. */
static int fd_get(worker *w, uint32_t file)
{
    for (int i = 0; i < FDCACHE_N; i++)
        if (w->fdc[i].fd >= 0 && w->fdc[i].file == file)
            return w->fdc[i].fd;
    const ufile *f = &w->j->files[file];
    int fd = open(f->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return log_errno("could not open \"%s\"", f->path);
    unsigned slot = w->fdc_next++ % FDCACHE_N;
    if (w->fdc[slot].fd >= 0 && close(w->fdc[slot].fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        w->fdc[slot].fd = -1;
        return log_errno("could not close \"%s\"", w->j->files[w->fdc[slot].file].path);
    }
    w->fdc[slot].file = file;
    w->fdc[slot].fd = fd;
    return fd;
}

/* fd_done -- file is complete: its writeback started (unless no_writeback) and the
 * cached descriptor closed. -1 reported. */
static int fd_done(worker *w, uint32_t file)
{
    for (int i = 0; i < FDCACHE_N; i++) {
        if (w->fdc[i].fd < 0 || w->fdc[i].file != file)
            continue;
        if (!w->j->no_writeback)
            (void)sync_file_range(w->fdc[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        int r = close(w->fdc[i].fd);
        w->fdc[i].fd = -1;
        if (r != 0)
            return log_errno("could not close \"%s\"", w->j->files[file].path);
    }
    return 0;
}

/* fd_close_all -- the thread's cache emptied. -1 reported (the first failure). */
static int fd_close_all(worker *w)
{
    int ret = 0;
    for (int i = 0; i < FDCACHE_N; i++) {
        if (w->fdc[i].fd < 0)
            continue;
        if (close(w->fdc[i].fd) != 0 && ret == 0)
            ret = log_errno("could not close \"%s\"", w->j->files[w->fdc[i].file].path);
        w->fdc[i].fd = -1;
    }
    return ret;
}

static int got_cb(void *arg, const uint8_t *d, const void *data, size_t len, int status)
{
    worker *w = arg;
    restore_job *j = w->j;
    ssize_t u = find_uniq(j, d);
    int expect = 0;

    if (j->stop && *j->stop)
        return -1; /* told to stop: the rest of this pack is not written */
    if (u < 0 || !atomic_compare_exchange_strong(&j->done[u], &expect, status ? 2 : 1))
        return 0;
    if (status)
        return 0; /* reported by the reader; the files are named at the end */
    size_t end = (size_t)u + 1 < j->nuniq ? j->uniq[u + 1] : j->nt;
    for (size_t k = j->uniq[u]; k < end; k++) {
        const target *t = &j->t[k];
        ufile *f = &j->files[t->file];
        if (len != t->len) {
            char hex[SHA256_HEX_LEN + 1];
            sha256_to_hex(d, hex);
            log_error("chunk %s has %zu bytes, file \"%s\" needs %" PRIu32 " at offset %" PRIu64,
                      hex, len, f->mpath, t->len, t->offset);
            atomic_store(&f->bad, 1);
            continue;
        }
        int fd = fd_get(w, t->file);
        if (fd < 0)
            return -1;
        const char *p = data;
        size_t left = len;
        off_t off = (off_t)t->offset;
        while (left > 0) {
            ssize_t n = pwrite(fd, p, left, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return log_errno("could not write \"%s\"", f->path);
            p += n;
            left -= (size_t)n;
            off += n;
        }
        if (j->pg)
            progress_add(j->pg, len);
        if (atomic_fetch_sub(&f->pending, 1) == 1 && fd_done(w, t->file) != 0)
            return -1;
    }
    return 0;
}

/* job_fail -- note an I/O failure (reported) of a thread. */
static void job_fail(restore_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->failed = 1;
    pthread_mutex_unlock(&j->mu);
}

/*
 * run_split -- fewer packs than threads (a backup of up to CHUNKSTORE_PACK_TARGET
 * compressed bytes is one pack): each pack in turn is read by this thread and its
 * chunks decompressed, checked and written on jobs threads (chunkstore_read_pack_par),
 * so one pack does not leave the other cores idle.
 */
static int run_split(restore_job *j, int jobs)
{
    worker *w = calloc((size_t)jobs, sizeof(*w));
    void **args = calloc((size_t)jobs, sizeof(*args));
    int ret = -1;

    if (!w || !args) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (int i = 0; i < jobs; i++) {
        w[i].j = j;
        for (int k = 0; k < FDCACHE_N; k++)
            w[i].fdc[k].fd = -1;
        args[i] = &w[i];
    }
    ret = 0;
    for (size_t i = 0; i < j->npacks && ret == 0; i++) {
        if (j->stop && *j->stop) { /* restore: a signal, a refused plan (it says so) */
            ret = -1;
            break;
        }
        worker want = {.j = j, .pack = j->packs[i]};
        for (int k = 0; k < jobs; k++)
            w[k].pack = j->packs[i];
        const char *key = chunkstore_pack_key(j->cs, j->packs[i]);
        log_debug("pack \"%s\": read on one thread, its chunks decoded and written on %d", key,
                  jobs);
        int r = chunkstore_read_pack_par(j->st, key, want_cb, &want, got_cb, args, jobs);
        if (r == RS_NOT_FOUND)
            log_error("chunk pack \"%s\" is missing", key);
        else if (r == -1)
            ret = -1;
        /* RS_MISMATCH: the chunks not handed over are named at the end */
    }
    for (int i = 0; i < jobs; i++)
        if (fd_close_all(&w[i]) != 0)
            ret = -1;
out:
    free(w);
    free(args);
    return ret;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    restore_job *j = w->j;

    for (int i = 0; i < FDCACHE_N; i++)
        w->fdc[i].fd = -1;

    for (;;) {
        size_t i = atomic_fetch_add(&j->next_pack, 1);
        if (i >= j->npacks)
            break;
        if (j->stop && *j->stop) { /* restore: a signal, a refused plan (it says so) */
            pthread_mutex_lock(&j->mu);
            j->failed = 1;
            pthread_mutex_unlock(&j->mu);
            break;
        }
        w->pack = j->packs[i];
        const char *key = chunkstore_pack_key(j->cs, w->pack);
        int r = chunkstore_read_pack(w->st, key, want_cb, got_cb, w);
        if (r == RS_NOT_FOUND)
            log_error("chunk pack \"%s\" is missing", key);
        else if (r == -1) {
            pthread_mutex_lock(&j->mu);
            j->failed = 1;
            pthread_mutex_unlock(&j->mu);
            break;
        }
        /* RS_MISMATCH: the chunks not handed over are named at the end */
    }
    if (fd_close_all(w) != 0)
        job_fail(j);
    return NULL;
}

/* run_workers -- read every pack of the job on jobs threads (own storage each). */
static int online_cpus(void);

static int run_workers(restore_job *j, int jobs)
{
    if (jobs < 1)
        jobs = online_cpus();
    if (jobs > 1 && (size_t)jobs > j->npacks && j->npacks > 0 && !getenv("RAGSAFE_NO_PACK_SPLIT"))
        return run_split(j, jobs);
    if ((size_t)jobs > j->npacks)
        jobs = j->npacks ? (int)j->npacks : 1;
    worker *w = calloc((size_t)jobs, sizeof(*w));
    pthread_t *th = calloc((size_t)jobs, sizeof(*th));
    int started = 0, ret = -1;

    if (!w || !th) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (int i = 0; i < jobs; i++) {
        w[i].j = j;
        w[i].st = i == 0 ? j->st : storage_open(storage_location(j->st), NULL, 0);
        if (!w[i].st)
            goto join;
        if (i > 0) {
            storage_set_cipher(w[i].st, storage_cipher(j->st));
            storage_set_cipher_old(w[i].st, storage_cipher_old(j->st));
        }
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) {
            log_error("could not start a reading thread");
            if (i > 0)
                storage_free(w[i].st);
            w[i].st = NULL;
            goto join;
        }
        started++;
    }
    ret = 0;
join:
    if (ret != 0)
        atomic_store(&j->next_pack, j->npacks); /* the started ones stop early */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    for (int i = 1; i < started; i++)
        storage_free(w[i].st);
    if (j->failed)
        ret = -1;
out:
    free(w);
    free(th);
    return ret;
}

/* delta_chunks -- for --delta: which chunks of the file already at f->path are right.
 * keep[i] = 1 for those; the file is made a regular file we may write in place.
 * *all: every chunk and the size match. 0 | -1 reported. */
static int delta_chunks(ufile *f, const centry *ce, uint32_t chunk_size, unsigned char *keep,
                        int *all)
{
    struct stat sb;
    *all = 0;
    if (lstat(f->path, &sb) != 0)
        return errno == ENOENT ? 0 : log_errno("could not stat \"%s\"", f->path);
    if (S_ISDIR(sb.st_mode))
        return durable_remove_tree(f->path);
    if (!S_ISREG(sb.st_mode)) {
        if (unlink(f->path) != 0)
            return log_errno("could not remove \"%s\"", f->path);
        return 0;
    }
    int fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret = -1;
    char *buf = malloc(chunk_size);
    size_t nkeep = 0;
    if (fd < 0 || !buf) {
        log_errno("could not read \"%s\"", f->path);
        goto out;
    }
    for (size_t i = 0; i < ce->nchunks; i++) {
        uint64_t off = (uint64_t)i * chunk_size;
        size_t want = ce->size - off < chunk_size ? (size_t)(ce->size - off) : chunk_size;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0) {
            log_errno("could not read \"%s\"", f->path);
            goto out;
        }
        uint8_t d[SHA256_LEN];
        if ((size_t)n != want)
            break;
        if (sha256_buffer(buf, want, d) != 0)
            goto out;
        if (memcmp(d, ce->chunks[i], SHA256_LEN) == 0) {
            keep[i] = 1;
            nkeep++;
        }
    }
    *all = nkeep == ce->nchunks && (uint64_t)sb.st_size == ce->size;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return ret;
}

/* chunked_key -- 1 when key names a chunked backup's archive manifest. */
int chunked_key(const char *key)
{
    size_t n = strlen(key), sl = strlen(".chunks.zst");
    return n > sl && strcmp(key + n - sl, ".chunks.zst") == 0;
}

/* chunked_extract -- see pitr.h. */
int chunked_extract(storage *st, const char *key, const extract_opts *eo, extract_stats *stats)
{
    cmanifest cm;
    chunkstore *cs = NULL;
    restore_job j;
    ufile *files = NULL;
    unsigned char *keep = NULL;
    int ret = -1, bad = 0;

    memset(&j, 0, sizeof(j));
    int r = cmanifest_load(st, key, eo->stored_sha, &cm);
    if (r != 0)
        return r;
    stats->stored += cm.stored;

    /* 1. every entry against backup_manifest */
    for (size_t i = 0; i < cm.n; i++) {
        const centry *ce = &cm.e[i];
        char mpath[PATH_MAX];
        if (ce->type != CE_FILE)
            continue;
        snprintf(mpath, sizeof(mpath), "%s%s", eo->mprefix ? eo->mprefix : "", ce->path);
        const manifest_file *mf = eo->m ? manifest_find(eo->m, mpath) : NULL;
        if (eo->m && !mf) {
            log_error("file \"%s\" is in the backup but not in its backup_manifest", mpath);
            bad = 1;
            continue;
        }
        if (!mf)
            continue;
        if (eo->seen) {
            if (eo->seen[mf - eo->m->files]) {
                log_error("entry \"%s\" appears twice in \"%s\"", ce->path, key);
                bad = 1;
                continue;
            }
            eo->seen[mf - eo->m->files] = 1;
        }
        if (mf->size != ce->size || (mf->has_sha256 && memcmp(mf->sha256, ce->sha, SHA256_LEN) != 0)) {
            log_error("file \"%s\" in \"%s\" does not match backup_manifest (size or SHA-256)", mpath,
                      key);
            bad = 1;
        }
    }
    if (bad) {
        ret = RS_MISMATCH;
        goto out;
    }
    if (!eo->dest) {
        /* verify: the chunks themselves are checked once for all backups (chunked_verify) */
        for (size_t i = 0; i < cm.n; i++)
            if (cm.e[i].type == CE_FILE) {
                stats->files++;
                stats->bytes += cm.e[i].size;
                if (eo->pg)
                    progress_add(eo->pg, cm.e[i].size);
            }
        ret = 0;
        goto out;
    }

    /* 2. what to write, and every chunk it needs must be in a pack: refuse before writing */
    if (!(cs = chunkstore_open(st, 0)))
        goto out;
    if (!(files = calloc(cm.n + 1, sizeof(*files))) || !(keep = calloc(1, 1))) {
        log_errno("could not allocate memory");
        goto out;
    }
    size_t ntarget = 0;
    for (size_t i = 0; i < cm.n; i++) {
        const centry *ce = &cm.e[i];
        ufile *f = &files[i];
        snprintf(f->mpath, sizeof(f->mpath), "%s%s", eo->mprefix ? eo->mprefix : "", ce->path);
        if (snprintf(f->path, sizeof(f->path), "%s/%s", eo->dest, ce->path) >= (int)sizeof(f->path)) {
            log_error("path too long: \"%s/%s\"", eo->dest, ce->path);
            goto out;
        }
        if (ce->type != CE_FILE)
            continue;
        int hollow = eo->ndb_include && db_file_hollow(f->mpath, eo->db_include, eo->ndb_include);
        int skip = eo->only && strcmp(f->mpath, eo->only) != 0;
        f->write = !hollow && !skip;
        if (!f->write)
            continue;
        for (size_t c = 0; c < ce->nchunks; c++) {
            if (!chunkstore_find(cs, ce->chunks[c], NULL)) {
                char hex[SHA256_HEX_LEN + 1];
                sha256_to_hex(ce->chunks[c], hex);
                log_error("file \"%s\": chunk %s (at offset %" PRIu64 ") is missing from the repository",
                          f->mpath, hex, (uint64_t)c * cm.chunk_size);
                bad = 1;
                break;
            }
        }
        ntarget += ce->nchunks;
    }
    if (bad) {
        log_error("refusing to restore \"%s\": chunks are missing (nothing written)", key);
        ret = RS_MISMATCH;
        goto out;
    }

    /* 3. the tree: directories, links, files at their size (holes to fill) */
    if (!(j.t = malloc((ntarget + 1) * sizeof(*j.t)))) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t i = 0; i < cm.n; i++) {
        const centry *ce = &cm.e[i];
        ufile *f = &files[i];
        if (ce->type == CE_DIR) {
            if (extract_make_dirs(eo->dest, ce->path, 1) != 0)
                goto out;
            if (eo->delta && extract_stats_add_dir(stats, ce->path) != 0)
                goto out;
            continue;
        }
        if (extract_make_dirs(eo->dest, ce->path, 0) != 0)
            goto out;
        if (ce->type == CE_LINK) {
            const char *slash = strchr(ce->path, '/');
            if (strncmp(ce->path, "pg_tblspc/", 10) != 0 || strchr(slash + 1, '/') ||
                ce->target[0] != '/') {
                log_error("refusing symbolic link entry \"%s\" in \"%s\"", ce->path, key);
                ret = RS_MISMATCH;
                goto out;
            }
            if (eo->no_links)
                continue;
            if (eo->delta)
                (void)unlink(f->path);
            if (symlink(ce->target, f->path) != 0) {
                log_errno("could not create symbolic link \"%s\"", f->path);
                goto out;
            }
            continue;
        }
        int skip = eo->only && strcmp(f->mpath, eo->only) != 0;
        if (skip)
            continue;
        int hollow = eo->ndb_include && db_file_hollow(f->mpath, eo->db_include, eo->ndb_include);
        mode_t mode = ce->mode & 0777 ? ce->mode & 0777 : 0600;
        int all = 0, fd;
        unsigned char *k = keep;
        if (eo->delta) {
            if (!(k = calloc(ce->nchunks + 1, 1))) {
                log_errno("could not allocate memory");
                goto out;
            }
            if (!hollow && delta_chunks(f, ce, cm.chunk_size, k, &all) != 0) {
                free(k);
                goto out;
            }
            fd = open(f->path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
        } else {
            fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        }
        if (fd < 0) {
            log_errno("could not create \"%s\"", f->path);
            if (k != keep)
                free(k);
            goto out;
        }
        if ((eo->delta && fchmod(fd, mode) != 0) || ftruncate(fd, (off_t)ce->size) != 0) {
            log_errno("could not size \"%s\"", f->path);
            close(fd);
            if (k != keep)
                free(k);
            goto out;
        }
        close(fd);
        stats->files++;
        stats->bytes += ce->size;
        if (hollow) {
            stats->hollow++;
            stats->hollow_bytes += ce->size;
        }
        if (all) {
            stats->kept++;
            stats->kept_bytes += ce->size;
        }
        size_t pending = 0;
        for (size_t c = 0; f->write && !all && c < ce->nchunks; c++) {
            uint64_t off = (uint64_t)c * cm.chunk_size;
            if (eo->delta && k[c])
                continue;
            target *t = &j.t[j.nt++];
            t->digest = ce->chunks[c];
            t->file = (uint32_t)i;
            t->offset = off;
            t->len = ce->size - off < cm.chunk_size ? (uint32_t)(ce->size - off) : cm.chunk_size;
            pending++;
        }
        if (k != keep)
            free(k);
        atomic_init(&f->pending, pending);
        atomic_init(&f->bad, 0);
        if (eo->pg && !f->write)
            progress_add(eo->pg, ce->size);
        /* an empty file: its SHA-256 against backup_manifest's (no chunk vouches for
         * it); a delta file with nothing to fetch was read whole already (all) */
        if (f->write && pending == 0 && !all && ce->size == 0 && file_check(f, ce) != 0)
            goto out;
    }

    /* 4. the chunks, pack by pack, on --jobs threads */
    qsort(j.t, j.nt, sizeof(*j.t), cmp_target);
    j.uniq = malloc((j.nt + 1) * sizeof(*j.uniq));
    j.loc = malloc((j.nt + 1) * sizeof(*j.loc));
    j.done = calloc(j.nt + 1, sizeof(*j.done));
    j.packs = malloc((chunkstore_npacks(cs) + 1) * sizeof(*j.packs));
    unsigned char *pneed = calloc(chunkstore_npacks(cs) + 1, 1);
    if (!j.uniq || !j.loc || !j.done || !j.packs || !pneed) {
        free(pneed);
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t k = 0; k < j.nt; k++) {
        if (k > 0 && memcmp(j.t[k].digest, j.t[k - 1].digest, SHA256_LEN) == 0)
            continue;
        chunkstore_find(cs, j.t[k].digest, &j.loc[j.nuniq]);
        pneed[j.loc[j.nuniq].pack] = 1;
        j.uniq[j.nuniq++] = k;
    }
    for (size_t p = 0; p < chunkstore_npacks(cs); p++)
        if (pneed[p])
            j.packs[j.npacks++] = (uint32_t)p;
    free(pneed);
    j.st = st;
    j.cm = &cm;
    j.files = files;
    j.cs = cs;
    j.pg = eo->pg;
    j.stop = eo->stop;
    j.no_writeback = eo->no_writeback;
    pthread_mutex_init(&j.mu, NULL);
    atomic_init(&j.next_pack, 0);
    log_debug("%zu chunk%s to fetch (%zu distinct) from %zu pack%s", j.nt, PLURAL(j.nt), j.nuniq,
              j.npacks, PLURAL(j.npacks));
    if (eo->delta)
        log_notice("delta: %zu of %zu chunk%s of \"%s\" to fetch, the others are in place", j.nt,
                   ntarget, PLURAL(ntarget), key);
    r = run_workers(&j, eo->jobs);
    pthread_mutex_destroy(&j.mu);
    if (r != 0)
        goto out;

    /* 5. damaged or undelivered chunks: every file that needs one is removed, named */
    for (size_t u = 0; u < j.nuniq; u++) {
        if (atomic_load(&j.done[u]) == 1)
            continue;
        char hex[SHA256_HEX_LEN + 1];
        sha256_to_hex(j.t[j.uniq[u]].digest, hex);
        size_t end = u + 1 < j.nuniq ? j.uniq[u + 1] : j.nt;
        for (size_t k = j.uniq[u]; k < end; k++) {
            ufile *f = &files[j.t[k].file];
            log_error("file \"%s\": chunk %s (offset %" PRIu64 ", in \"%s\") is %s", f->mpath, hex,
                      j.t[k].offset, chunkstore_pack_key(cs, j.loc[u].pack),
                      atomic_load(&j.done[u]) == 2 ? "damaged" : "missing from its pack");
            atomic_store(&f->bad, 1);
        }
    }
    for (size_t i = 0; i < cm.n; i++)
        if (cm.e[i].type == CE_FILE && atomic_load(&files[i].bad)) {
            bad = 1;
            if (unlink(files[i].path) != 0 && errno != ENOENT)
                log_errno("could not remove \"%s\"", files[i].path);
            else
                log_error("\"%s\" not restored: its data is damaged in the repository", files[i].mpath);
        }
    ret = bad ? RS_MISMATCH : 0;
out:
    free(j.t);
    free(j.uniq);
    free(j.loc);
    free(j.done);
    free(j.packs);
    free(files);
    free(keep);
    chunkstore_free(cs);
    cmanifest_release(&cm);
    return ret;
}

/* ---- verify ------------------------------------------------------------------------ */

typedef struct user {
    uint8_t digest[SHA256_LEN];
    uint32_t backup;
    const char *path;       /* into the loaded manifests */
    const char *prefix;
} user;

typedef struct vjob {
    user *u;
    size_t nu;
    size_t *uniq;
    size_t nuniq;
    chunk_loc *loc;
    atomic_int *done;
    uint32_t *packs;
    size_t npacks;
    atomic_size_t next_pack;
    const chunkstore *cs;
    storage *st;
    progress *pg;
    atomic_int failed;
} vjob;

typedef struct vworker {
    vjob *j;
    uint32_t pack;
    storage *st;
} vworker;

static int cmp_user(const void *a, const void *b)
{
    const user *x = a, *y = b;
    int c = memcmp(x->digest, y->digest, SHA256_LEN);
    return c ? c : (x->backup > y->backup) - (x->backup < y->backup);
}

static const uint8_t *user_digest(const void *arr, size_t i)
{
    return ((const user *)arr)[i].digest;
}

static ssize_t vfind(const vjob *j, const uint8_t *d)
{
    return uniq_find(j->u, user_digest, j->uniq, j->nuniq, d);
}

static int vwant(void *arg, const uint8_t *d)
{
    vworker *w = arg;
    ssize_t u = vfind(w->j, d);
    return u >= 0 && w->j->loc[u].pack == w->pack && atomic_load(&w->j->done[u]) == 0;
}

static int vgot(void *arg, const uint8_t *d, const void *data, size_t len, int status)
{
    vworker *w = arg;
    ssize_t u = vfind(w->j, d);
    int expect = 0;
    (void)data;
    if (u >= 0 && atomic_compare_exchange_strong(&w->j->done[u], &expect, status ? 2 : 1) &&
        w->j->pg)
        progress_add(w->j->pg, len);
    return 0;
}

static void *vworker_main(void *arg)
{
    vworker *w = arg;
    vjob *j = w->j;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next_pack, 1);
        if (i >= j->npacks)
            break;
        w->pack = j->packs[i];
        const char *key = chunkstore_pack_key(j->cs, w->pack);
        int r = chunkstore_read_pack(w->st, key, vwant, vgot, w);
        if (r == RS_NOT_FOUND)
            log_error("chunk pack \"%s\" is missing", key);
        else if (r == -1)
            atomic_store(&j->failed, 1);
    }
    return NULL;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* chunked_verify -- see pitr.h. */
int chunked_verify(storage *st, const backup_info *b, size_t nb, unsigned char *bad, progress *pg)
{
    cmanifest *cms = NULL;
    size_t ncm = 0, capcm = 0;
    uint32_t *cm_backup = NULL;
    char **cm_prefix = NULL;
    chunkstore *cs = NULL;
    vjob j;
    int ret = -1;

    memset(&j, 0, sizeof(j));
    size_t nneed = 0;
    for (size_t i = 0; i < nb; i++)
        if (b[i].chunked)
            nneed++;
    if (nneed == 0)
        return 0;
    /* every archive manifest of every chunked backup */
    for (size_t i = 0; i < nb; i++) {
        if (!b[i].chunked)
            continue;
        for (size_t a = 0; a <= b[i].ntablespaces; a++) {
            const char *file = a == 0 ? backupinfo_base_file(&b[i]) : b[i].tablespaces[a - 1].file;
            const uint8_t *sha = NULL;
            char key[512], prefix[64] = "";
            for (size_t k = 0; k < b[i].nfiles; k++)
                if (strcmp(b[i].files[k].name, file) == 0)
                    sha = b[i].files[k].sha256;
            if (a > 0)
                snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", b[i].tablespaces[a - 1].oid);
            if (ncm == capcm) {
                size_t nc = capcm ? capcm * 2 : 16;
                cmanifest *p = realloc(cms, nc * sizeof(*p));
                uint32_t *q = realloc(cm_backup, nc * sizeof(*q));
                char **s = q ? realloc(cm_prefix, nc * sizeof(*s)) : NULL;
                if (p)
                    cms = p;
                if (q)
                    cm_backup = q;
                if (s)
                    cm_prefix = s;
                if (!p || !q || !s) {
                    log_errno("could not allocate memory");
                    goto out;
                }
                capcm = nc;
            }
            snprintf(key, sizeof(key), "backups/%s/%s", b[i].label, file);
            int r = cmanifest_load(st, key, sha, &cms[ncm]);
            if (r == RS_MISMATCH) {
                bad[i] = 1;
                continue;
            }
            if (r != 0)
                goto out;
            cm_backup[ncm] = (uint32_t)i;
            if (!(cm_prefix[ncm] = strdup(prefix))) {
                cmanifest_release(&cms[ncm]);
                log_errno("could not allocate memory");
                goto out;
            }
            ncm++;
        }
    }
    /* who uses what */
    size_t nu = 0;
    for (size_t m = 0; m < ncm; m++)
        for (size_t e = 0; e < cms[m].n; e++)
            nu += cms[m].e[e].nchunks;
    if (!(j.u = malloc((nu + 1) * sizeof(*j.u)))) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t m = 0; m < ncm; m++)
        for (size_t e = 0; e < cms[m].n; e++)
            for (size_t c = 0; c < cms[m].e[e].nchunks; c++) {
                user *x = &j.u[j.nu++];
                memcpy(x->digest, cms[m].e[e].chunks[c], SHA256_LEN);
                x->backup = cm_backup[m];
                x->path = cms[m].e[e].path;
                x->prefix = cm_prefix[m];
            }
    qsort(j.u, j.nu, sizeof(*j.u), cmp_user);
    if (!(cs = chunkstore_open(st, 0))) {
        ret = RS_MISMATCH; /* a damaged index: reported */
        for (size_t i = 0; i < nb; i++)
            if (b[i].chunked)
                bad[i] = 1;
        goto out;
    }
    j.uniq = malloc((j.nu + 1) * sizeof(*j.uniq));
    j.loc = malloc((j.nu + 1) * sizeof(*j.loc));
    j.done = calloc(j.nu + 1, sizeof(*j.done));
    j.packs = malloc((chunkstore_npacks(cs) + 1) * sizeof(*j.packs));
    unsigned char *pneed = calloc(chunkstore_npacks(cs) + 1, 1);
    if (!j.uniq || !j.loc || !j.done || !j.packs || !pneed) {
        free(pneed);
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t k = 0; k < j.nu; k++) {
        if (k > 0 && memcmp(j.u[k].digest, j.u[k - 1].digest, SHA256_LEN) == 0)
            continue;
        if (chunkstore_find(cs, j.u[k].digest, &j.loc[j.nuniq]))
            pneed[j.loc[j.nuniq].pack] = 1;
        else
            j.loc[j.nuniq].pack = UINT32_MAX; /* missing */
        j.uniq[j.nuniq++] = k;
    }
    for (size_t p = 0; p < chunkstore_npacks(cs); p++)
        if (pneed[p])
            j.packs[j.npacks++] = (uint32_t)p;
    free(pneed);
    j.cs = cs;
    j.st = st;
    j.pg = pg;
    atomic_init(&j.next_pack, 0);
    atomic_init(&j.failed, 0);
    {
        int jobs = online_cpus();
        if ((size_t)jobs > j.npacks)
            jobs = j.npacks ? (int)j.npacks : 1;
        vworker *w = calloc((size_t)jobs, sizeof(*w));
        pthread_t *th = calloc((size_t)jobs, sizeof(*th));
        int started = 0;
        for (int i = 0; w && th && i < jobs; i++) {
            w[i].j = &j;
            w[i].st = i == 0 ? st : storage_open(storage_location(st), NULL, 0);
            if (!w[i].st)
                break;
            if (i > 0) {
                storage_set_cipher(w[i].st, storage_cipher(st));
                storage_set_cipher_old(w[i].st, storage_cipher_old(st));
            }
            if (pthread_create(&th[i], NULL, vworker_main, &w[i]) != 0) {
                if (i > 0)
                    storage_free(w[i].st);
                break;
            }
            started++;
        }
        if (started == 0)
            atomic_store(&j.failed, 1);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        for (int i = 1; i < started; i++)
            storage_free(w[i].st);
        free(w);
        free(th);
        if (started == 0)
            log_error("could not start the verifying threads");
    }
    if (atomic_load(&j.failed))
        goto out;
    /* every chunk not verified, with every backup and file that uses it */
    uint64_t nbad = 0;
    for (size_t u = 0; u < j.nuniq; u++) {
        if (atomic_load(&j.done[u]) == 1)
            continue;
        char hex[SHA256_HEX_LEN + 1];
        sha256_to_hex(j.u[j.uniq[u]].digest, hex);
        nbad++;
        if (j.loc[u].pack == UINT32_MAX)
            log_error("chunk %s is missing from the repository", hex);
        else
            log_error("chunk %s in \"%s\" is %s", hex, chunkstore_pack_key(cs, j.loc[u].pack),
                      atomic_load(&j.done[u]) == 2 ? "damaged" : "missing from its pack");
        size_t end = u + 1 < j.nuniq ? j.uniq[u + 1] : j.nu;
        for (size_t k = j.uniq[u]; k < end; k++) {
            if (k > j.uniq[u] && j.u[k].backup == j.u[k - 1].backup && j.u[k].path == j.u[k - 1].path)
                continue;
            log_detail("used by backup %s, file \"%s%s\"", b[j.u[k].backup].label, j.u[k].prefix,
                       j.u[k].path);
            bad[j.u[k].backup] = 1;
        }
    }
    log_info("chunks: %zu distinct chunk%s of %zu chunked backup%s checked in %zu pack%s, %" PRIu64
             " bad", j.nuniq, PLURAL(j.nuniq), nneed, PLURAL(nneed), j.npacks, PLURAL(j.npacks), nbad);
    ret = 0;
out:
    for (size_t m = 0; m < ncm; m++) {
        cmanifest_release(&cms[m]);
        free(cm_prefix[m]);
    }
    free(cms);
    free(cm_backup);
    free(cm_prefix);
    free(j.u);
    free(j.uniq);
    free(j.loc);
    free(j.done);
    free(j.packs);
    chunkstore_free(cs);
    return ret;
}

/* ---- expire ------------------------------------------------------------------------ */

typedef struct mark_ctx {
    storage *st;
    cas_set *keep;
    size_t manifests;
    int damaged;
} mark_ctx;

static int mark_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    mark_ctx *mc = arg;
    size_t n = strlen(key), sl = strlen(".chunks.zst");
    cmanifest cm;
    (void)size;
    (void)mtime;
    if (n <= sl || strcmp(key + n - sl, ".chunks.zst") != 0)
        return 0;
    int r = cmanifest_load(mc->st, key, NULL, &cm);
    if (r == RS_MISMATCH) {
        mc->damaged = 1;
        return 0;
    }
    if (r != 0)
        return -1;
    mc->manifests++;
    for (size_t e = 0; e < cm.n && r == 0; e++)
        for (size_t c = 0; c < cm.e[e].nchunks; c++)
            if (cas_set_add(mc->keep, cm.e[e].chunks[c]) < 0) {
                r = -1;
                break;
            }
    cmanifest_release(&cm);
    return r;
}

/* chunked_sweep -- see pitr.h. */
int chunked_sweep(storage *st, int dry_run, uint64_t *packs_deleted, uint64_t *bytes_deleted)
{
    mark_ctx mc = {.st = st};
    chunkstore *cs = NULL;
    uint64_t kept = 0;
    int ret = -1;

    *packs_deleted = *bytes_deleted = 0;
    if (storage_any(st, CHUNKSTORE_PREFIX "/") == 0)
        return 0;
    if (!(mc.keep = cas_set_new()))
        return -1;
    /* mark: every chunk manifest under backups/, kept backups and whatever else is
     * there (a leftover .partial keeps its chunks until the next backup removes it) */
    if (storage_list(st, "backups/", mark_cb, &mc) != 0)
        goto out;
    if (mc.damaged) {
        log_error("chunk packs not swept: a chunk manifest is damaged, so which chunks are "
                  "still needed is unknown");
        log_hint("run ragsafe-pitr verify to see which backup; expire it, then expire again");
        ret = RS_MISMATCH;
        goto out;
    }
    if (!(cs = chunkstore_open(st, 0)))
        goto out;
    if (chunkstore_sweep(cs, mc.keep, dry_run, packs_deleted, bytes_deleted, &kept) != 0)
        goto out;
    log_info("chunk packs: %" PRIu64 " %s (%" PRIu64 " bytes), %" PRIu64 " kept for %zu manifest%s "
             "(%zu chunk%s); a pack with any live chunk is kept whole", *packs_deleted,
             dry_run ? "to delete" : "deleted", *bytes_deleted, kept, mc.manifests,
             PLURAL(mc.manifests), cas_set_count(mc.keep), PLURAL(cas_set_count(mc.keep)));
    ret = 0;
out:
    chunkstore_free(cs);
    cas_set_free(mc.keep);
    return ret;
}

/* ---- extract ----------------------------------------------------------------------- */

/* dir_usable -- 0 when path is absent (made here, *made 1) or an empty directory;
 * -1 reported otherwise. */
static int dir_usable(const char *path, int *made)
{
    struct stat sb;
    *made = 0;
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT)
            return log_errno("could not stat \"%s\"", path);
        if (durable_mkdirs(path, 0700) != 0)
            return -1;
        *made = 1;
        return 0;
    }
    if (!S_ISDIR(sb.st_mode))
        return log_error("\"%s\" exists and is not a directory", path);
    DIR *d = opendir(path);
    struct dirent *de;
    int empty = 1;
    if (!d)
        return log_errno("could not open directory \"%s\"", path);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    if (!empty) {
        log_error("refusing to extract into \"%s\": it is not empty", path);
        log_hint("give an empty or absent directory");
        return -1;
    }
    return 0;
}

/*
 * cmd_extract -- ragsafe-pitr extract LABEL DIR: the backup's plain data directory
 * (either format), every file checked against backup_manifest, the tablespaces as plain
 * directories DIR/pg_tblspc/<oid> (no links to their original places), backup_manifest
 * beside them, so `pg_verifybackup -n DIR` checks it. No recovery is set up.
 */
int cmd_extract(const pitr_opts *o)
{
    inventory inv;
    manifest m;
    char *mtext = NULL, path[PATH_MAX + 64], key[512];
    size_t mlen = 0;
    unsigned char *seen = NULL;
    extract_stats stats;
    progress pg;
    const backup_info *b = NULL;
    int ret = EXIT_FAIL, made = 0, have_m = 0, r;

    memset(&stats, 0, sizeof(stats));
    progress_init(&pg, PROGRESS_OFF, "extract", 0);
    int lr = inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    for (size_t i = 0; i < inv.nbackups; i++)
        if (strcmp(inv.backups[i].label, o->extract_label) == 0)
            b = &inv.backups[i];
    if (!b) {
        log_error("backup \"%s\" is not in the repository", o->extract_label);
        log_hint("ragsafe-pitr info lists the backups");
        goto out;
    }
    if (o->extract_dir[0] != '/') {
        log_error("extract needs an absolute DIR, not \"%s\"", o->extract_dir);
        ret = EXIT_USAGE;
        goto out;
    }
    r = backup_manifest_load(inv.st, b, &m, &mtext, &mlen);
    if (r != 0) {
        ret = pitr_status(r);
        goto out;
    }
    have_m = 1;
    if (!(seen = calloc(m.nfiles + 1, 1))) {
        log_errno("could not allocate memory");
        goto out;
    }
    if (dir_usable(o->extract_dir, &made) != 0)
        goto out;
    {
        uint64_t total = 0;
        for (size_t k = 0; k < b->nfiles; k++)
            if (strcmp(b->files[k].name, "backup_manifest") != 0)
                total += b->files[k].raw_bytes;
        progress_release(&pg);
        progress_init(&pg, o->progress, "extract", total);
    }
    for (size_t a = 0; a <= b->ntablespaces; a++) {
        const char *file = a == 0 ? backupinfo_base_file(b) : b->tablespaces[a - 1].file;
        char prefix[64] = "", dest[PATH_MAX];
        const uint8_t *sha = NULL;
        for (size_t k = 0; k < b->nfiles; k++)
            if (strcmp(b->files[k].name, file) == 0)
                sha = b->files[k].sha256;
        snprintf(dest, sizeof(dest), "%s", o->extract_dir);
        if (a > 0) {
            snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", b->tablespaces[a - 1].oid);
            snprintf(dest, sizeof(dest), "%s/pg_tblspc/%u", o->extract_dir, b->tablespaces[a - 1].oid);
            if (durable_mkdirs(dest, 0700) != 0)
                goto out;
        }
        extract_opts eo = {.dest = dest, .m = &m, .mprefix = prefix, .seen = seen,
                           .stored_sha = sha, .pg = &pg, .jobs = o->jobs ? o->jobs : online_cpus(),
                           .no_links = 1};
        snprintf(key, sizeof(key), "backups/%s/%s", b->label, file);
        log_info("extracting \"%s\" into \"%s\"", key, dest);
        r = extract_object(inv.st, key, &eo, &stats);
        if (r != 0) {
            ret = pitr_status(r);
            goto out;
        }
    }
    progress_finish(&pg);
    size_t missing = 0;
    for (size_t i = 0; i < m.nfiles; i++)
        if (!seen[i] && missing++ < 10)
            log_error("file \"%s\" listed in backup_manifest is missing from the backup",
                      m.files[i].path);
    if (missing) {
        ret = EXIT_INTEGRITY;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/backup_manifest", o->extract_dir);
    if (durable_write_file(path, mtext, mlen, 0600, 0) != 0 ||
        durable_fsync_tree(o->extract_dir) != 0)
        goto out;
    printf("extracted backup %s into %s: %" PRIu64 " file%s, %" PRIu64 " byte%s\n", b->label,
           o->extract_dir, stats.files, PLURAL(stats.files), stats.bytes, PLURAL(stats.bytes));
    ret = EXIT_OK;
out:
    if (ret != EXIT_OK && made) {
        log_notice("removing \"%s\", which this extract created", o->extract_dir);
        (void)durable_remove_tree(o->extract_dir);
    }
    progress_release(&pg);
    extract_stats_release(&stats);
    if (have_m)
        manifest_release(&m);
    free(mtext);
    free(seen);
    inventory_release(&inv);
    return ret;
}
