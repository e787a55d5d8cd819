/*
 * snapshot.c -- ragsafe-milvus snapshot: a cold, consistent copy of every volume of a
 * standalone Milvus stack into the repository's content-addressed store.
 *
 * Order (DESIGN.md, "Milvus"): row counts and flush over REST while Milvus runs; stop
 * the stack; PostgreSQL restore point; walk every volume; store each file's content
 * once (worker threads hash, look the digest up, compress only what is new); start
 * the stack and wait for health; write the manifest last, the commit point. Once the
 * stop phase has begun the start command runs on every path, SIGINT/SIGTERM included:
 * the handlers only set a flag, the walk and the workers unwind, then start runs.
 *
 * Files larger than MV_CHUNK_MIN go in MV_CHUNK_SIZE chunks (milvus.h), so a file
 * changed in place costs only its changed chunks.
 *
 * Unchanged files are not even read: a file whose size, mtime, ctime and inode match
 * the previous snapshot's entry for the same path reuses that digest. Only entries whose
 * timestamps are older than the previous walk by more than a second are trusted (a file
 * rewritten within the same timestamp tick as that walk keeps its mtime: the "racy
 * git" problem), and ctime catches a rewrite that restored the old mtime.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cas.h"
#include "common.h"
#include "log.h"
#include "milvus.h"
#include "object.h"
#include "repo.h"
#include "timefmt.h"
#include "uring.h"

#define MV_BATCH 8

typedef struct mv_fileref {
    const mv_volume *v;
    mv_entry *e;
    const mv_entry *prev;   /* same path in the previous snapshot, or NULL */
} mv_fileref;

typedef struct mv_store_job {
    const char *location;
    object_opts oopts;
    mv_fileref *files;
    size_t nfiles;
    size_t next;
    int64_t trust_before_ns;
    pthread_mutex_t mu;
    cas_set *claimed;       /* digests some worker of this run has taken on */
    cas_batch *batch;       /* new objects become durable together, before the manifest */
    int failed;             /* -1 or RS_MISMATCH once any worker failed */
    mv_stats *wstats;       /* one per worker */
    progress pg;            /* bytes of the files stored */
} mv_store_job;

/* ---- previous snapshot: path -> entry ---- */

typedef struct mv_prev_map {
    const mv_entry **slots;
    size_t cap;
} mv_prev_map;

static uint64_t mv_str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static int mv_prev_map_build(mv_prev_map *m, const mv_volume *v)
{
    m->cap = 16;
    while (m->cap < v->n * 2)
        m->cap *= 2;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (m->slots == NULL)
        return log_errno("could not allocate");
    for (size_t i = 0; i < v->n; i++) {
        if (v->entries[i].type != MV_FILE)
            continue;
        size_t j = mv_str_hash(v->entries[i].path) & (m->cap - 1);
        while (m->slots[j] != NULL)
            j = (j + 1) & (m->cap - 1);
        m->slots[j] = &v->entries[i];
    }
    return 0;
}

static const mv_entry *mv_prev_map_get(const mv_prev_map *m, const char *path)
{
    if (m->slots == NULL)
        return NULL;
    size_t j = mv_str_hash(path) & (m->cap - 1);
    while (m->slots[j] != NULL) {
        if (strcmp(m->slots[j]->path, path) == 0)
            return m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

/* ---- workers ---- */

/* mv_claim -- 1 when this worker is the first of the run to take on digest (it must
 * make sure the object is stored), 0 when another one already has, -1 reported. */
static int mv_claim(mv_store_job *j, const uint8_t digest[SHA256_LEN])
{
    pthread_mutex_lock(&j->mu);
    int r = cas_set_add(j->claimed, digest);
    pthread_mutex_unlock(&j->mu);
    return r;
}

static int mv_open_ro(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* mv_need -- this run relies on digest d: 0 when it is (or is being) stored, 1 when the
 * caller must store it now, -1 reported. */
static int mv_need(mv_store_job *j, cas *c, const uint8_t d[SHA256_LEN])
{
    int r = mv_claim(j, d);

    if (r <= 0)
        return r;
    r = cas_exists(c, d, NULL);
    if (r == 0)
        return 0;
    return r == RS_NOT_FOUND ? 1 : -1;
}

/* mv_cached -- reuse the previous snapshot's digests for an unchanged file. 1 when
 * every object they name is stored (nothing to read), 0 when the file must be read,
 * -1 reported. */
static int mv_cached(mv_store_job *j, cas *c, mv_fileref *f, int chunked)
{
    mv_entry *e = f->e;
    const mv_entry *p = f->prev;

    if (p == NULL || p->size != e->size || p->mtime_ns != e->mtime_ns ||
        p->ctime_ns != e->ctime_ns || p->ino != e->ino || e->mtime_ns >= j->trust_before_ns ||
        e->ctime_ns >= j->trust_before_ns)
        return 0;
    if (chunked != (p->nchunks > 0) || (chunked && p->chunk_size != MV_CHUNK_SIZE))
        return 0;
    /* the previous snapshot's objects are committed: a plain existence check (no claim,
     * so a missing one is stored by the read path below like any new content) */
    for (uint32_t i = 0; i < (chunked ? p->nchunks : 1); i++) {
        int r = cas_exists(c, chunked ? p->chunks[i] : p->sha, NULL);
        if (r < 0)
            return -1;
        if (r == RS_NOT_FOUND) {
            log_warning("object for \"%s/%s\" is missing from the repository: storing it again",
                        f->v->dir, e->path);
            return 0;
        }
    }
    memcpy(e->sha, p->sha, SHA256_LEN);
    if (chunked)
        memcpy(e->chunks, p->chunks, (size_t)p->nchunks * SHA256_LEN);
    return 1;
}

/* mv_store_chunks -- a large file as MV_CHUNK_SIZE pieces, each stored unless known. */
static int mv_store_chunks(mv_store_job *j, cas *c, mv_stats *ws, mv_fileref *f, int fd,
                           const char *path, uint8_t *buf)
{
    mv_entry *e = f->e;
    sha256_ctx whole = {0};
    uint64_t off = 0;
    int ret = -1;

    if (sha256_init(&whole) != 0)
        goto out;
    for (uint32_t i = 0; i < e->nchunks; i++) {
        size_t want = e->size - off < MV_CHUNK_SIZE ? (size_t)(e->size - off) : MV_CHUNK_SIZE;
        size_t got = 0;
        char name[PATH_MAX + 32];
        while (got < want) {
            ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                log_errno("could not read \"%s\"", path);
                goto out;
            }
            if (n == 0) {
                log_error("\"%s\" changed during the snapshot", path);
                goto out;
            }
            got += (size_t)n;
        }
        if (sha256_buffer(buf, want, e->chunks[i]) != 0 || sha256_update(&whole, buf, want) != 0)
            goto out;
        int r = mv_need(j, c, e->chunks[i]);
        if (r < 0)
            goto out;
        if (r == 0) {
            ws->reused_bytes += want;
        } else {
            int64_t stored = 0;
            snprintf(name, sizeof(name), "chunk %u of \"%s\"", i, path);
            r = cas_put_buf(c, buf, want, name, e->chunks[i], &stored);
            if (r == RS_EXISTS) {
                ws->reused_bytes += want;
            } else if (r == 0) {
                ws->new_objects++;
                ws->new_bytes += want;
                ws->stored_bytes += (uint64_t)stored;
            } else {
                ret = r;
                goto out;
            }
        }
        off += want;
    }
    if (sha256_final(&whole, e->sha) != 0)
        goto out;
    ret = 0;
out:
    sha256_release(&whole);
    return ret;
}

/* mv_store_file -- make sure f's content is in the store and its digests in f->e. */
static int mv_store_file(mv_store_job *j, cas *c, mv_stats *ws, mv_fileref *f, uint8_t *buf)
{
    mv_entry *e = f->e;
    char path[PATH_MAX];
    struct stat sb;
    uint64_t size = 0;
    int chunked = e->size > MV_CHUNK_MIN;
    int fd = -1, r, ret = -1;

    snprintf(path, sizeof(path), "%s/%s", f->v->dir, e->path);
    if (chunked) {
        e->chunk_size = MV_CHUNK_SIZE;
        e->nchunks = (uint32_t)((e->size + MV_CHUNK_SIZE - 1) / MV_CHUNK_SIZE);
        e->chunks = calloc(e->nchunks, SHA256_LEN);
        if (e->chunks == NULL)
            return log_errno("could not allocate");
    }
    r = mv_cached(j, c, f, chunked);
    if (r != 0) {
        if (r > 0)
            ws->reused_bytes += e->size;
        return r > 0 ? 0 : -1;
    }

    fd = mv_open_ro(path);
    if (fd < 0) {
        log_errno("could not open \"%s\"", path);
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        log_errno("could not stat \"%s\"", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size ||
        (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec != e->mtime_ns) {
        log_error("\"%s\" changed during the snapshot", path);
        log_hint("is the stack really stopped? give --stop-cmd");
        goto out;
    }
    if (chunked) {
        ret = mv_store_chunks(j, c, ws, f, fd, path, buf);
        goto out;
    }
    if (cas_hash_fd(fd, path, e->sha, &size) != 0)
        goto out;
    if (size != e->size) {
        log_error("\"%s\" changed during the snapshot", path);
        goto out;
    }
    r = mv_need(j, c, e->sha);
    if (r <= 0) {
        if (r == 0)
            ws->reused_bytes += e->size;
        ret = r;
        goto out;
    }
    int64_t stored = 0;
    r = cas_put_fd(c, fd, path, e->sha, &stored);
    if (r == RS_EXISTS) {
        ws->reused_bytes += e->size;
    } else if (r == 0) {
        ws->new_objects++;
        ws->new_bytes += e->size;
        ws->stored_bytes += (uint64_t)stored;
    } else {
        ret = r;
        goto out;
    }
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    return ret;
}

static void mv_store_worker(void *arg, int i)
{
    mv_store_job *j = arg;
    uring *ur = uring_new(8);
    storage *st = storage_open(j->location, ur, 0);
    cas *c = st ? cas_new(st, MV_OBJECT_PREFIX, &j->oopts) : NULL;
    mv_stats *ws = &j->wstats[i];
    uint8_t *buf = malloc(MV_CHUNK_SIZE);
    int ret = 0;

    if (c == NULL || buf == NULL) {
        if (buf == NULL)
            log_errno("could not allocate");
        ret = -1;
        goto out;
    }
    cas_use_batch(c, j->batch);
    for (;;) {
        size_t from, to;
        pthread_mutex_lock(&j->mu);
        if (j->failed != 0 || j->next >= j->nfiles) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        from = j->next;
        to = from + MV_BATCH < j->nfiles ? from + MV_BATCH : j->nfiles;
        j->next = to;
        pthread_mutex_unlock(&j->mu);
        for (size_t k = from; k < to; k++) {
            if (mv_interrupted()) {
                ret = log_error("interrupted by signal %d", mv_interrupted());
                goto out;
            }
            int r = mv_store_file(j, c, ws, &j->files[k], buf);
            if (r != 0) {
                ret = r;
                goto out;
            }
            progress_add(&j->pg, j->files[k].e->size);
        }
    }
out:
    if (ret != 0) {
        pthread_mutex_lock(&j->mu);
        if (j->failed == 0 || ret == RS_MISMATCH)
            j->failed = ret;
        pthread_mutex_unlock(&j->mu);
    }
    free(buf);
    cas_free(c);
    storage_free(st);
    uring_free(ur);
}

static int mv_fileref_cmp(const void *a, const void *b)
{
    const mv_fileref *x = a, *y = b;
    /* biggest first: the long compressions start early and the small files fill in */
    if (x->e->size != y->e->size)
        return x->e->size > y->e->size ? -1 : 1;
    return 0;
}

/* mv_store_all -- walk result to stored objects, on o->jobs threads. */
static int mv_store_all(const mv_opts *o, storage *st, mv_snapshot *s, const mv_snapshot *prev)
{
    mv_store_job j;
    mv_prev_map *maps = NULL;
    int jobs = o->jobs > 0 ? o->jobs : mv_default_jobs();
    int ret = -1;

    memset(&j, 0, sizeof(j));
    pthread_mutex_init(&j.mu, NULL);
    progress_init(&j.pg, o->progress, "snapshot", s->stats.bytes);
    j.location = storage_location(st);
    j.oopts.level = o->level;
    j.trust_before_ns = prev ? prev->walk_started_ns - 1000000000LL : 0;
    j.claimed = cas_set_new();
    j.batch = cas_batch_new(st);
    maps = calloc(s->nvols, sizeof(*maps));
    if (j.claimed == NULL || j.batch == NULL || maps == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < s->nvols; i++) {
        const mv_volume *v = &s->vols[i];
        for (size_t k = 0; prev && k < prev->nvols; k++) {
            if (strcmp(prev->vols[k].name, v->name) == 0 && strcmp(prev->vols[k].dir, v->dir) == 0) {
                if (mv_prev_map_build(&maps[i], &prev->vols[k]) != 0)
                    goto out;
                break;
            }
        }
        for (size_t k = 0; k < v->n; k++)
            if (v->entries[k].type == MV_FILE)
                j.nfiles++;
    }
    j.files = calloc(j.nfiles + 1, sizeof(*j.files));
    j.wstats = calloc((size_t)jobs, sizeof(*j.wstats));
    if (j.files == NULL || j.wstats == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    size_t nf = 0;
    for (size_t i = 0; i < s->nvols; i++) {
        mv_volume *v = &s->vols[i];
        for (size_t k = 0; k < v->n; k++) {
            if (v->entries[k].type != MV_FILE)
                continue;
            j.files[nf].v = v;
            j.files[nf].e = &v->entries[k];
            j.files[nf].prev = mv_prev_map_get(&maps[i], v->entries[k].path);
            nf++;
        }
    }
    qsort(j.files, j.nfiles, sizeof(*j.files), mv_fileref_cmp);
    if ((size_t)jobs > j.nfiles)
        jobs = j.nfiles > 0 ? (int)j.nfiles : 1;
    log_info("storing %zu file%s on %d thread%s", j.nfiles, PLURAL(j.nfiles), jobs, PLURAL(jobs));
    int64_t ts = mv_now_ms();
    if (mv_parallel(jobs, mv_store_worker, &j) != 0)
        goto out;
    if (j.failed == 0 && !mv_interrupted())
        progress_finish(&j.pg);
    progress_end(&j.pg);
    log_info("files read, hashed and compressed in %lld ms", (long long)(mv_now_ms() - ts));
    if (j.failed != 0) {
        ret = j.failed;
        goto out;
    }
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto out;
    }
    int64_t tc = mv_now_ms();
    if (cas_batch_commit(j.batch) != 0)
        goto out;
    log_info("objects synced and in place in %lld ms", (long long)(mv_now_ms() - tc));
    for (int w = 0; w < jobs; w++) {
        s->stats.new_objects += j.wstats[w].new_objects;
        s->stats.new_bytes += j.wstats[w].new_bytes;
        s->stats.stored_bytes += j.wstats[w].stored_bytes;
        s->stats.reused_bytes += j.wstats[w].reused_bytes;
    }
    ret = 0;
out:
    for (size_t i = 0; maps && i < s->nvols; i++)
        free(maps[i].slots);
    free(maps);
    free(j.files);
    free(j.wstats);
    cas_set_free(j.claimed);
    cas_batch_free(j.batch);
    progress_release(&j.pg);
    pthread_mutex_destroy(&j.mu);
    return ret;
}

/* mv_load_previous -- the newest snapshot, for the unchanged-file cache. Problems
 * here only cost speed: they are warnings. */
static int mv_load_previous(storage *st, mv_snapshot *prev)
{
    char **labels = NULL;
    size_t n = 0;
    int have = 0;

    if (mv_snapshot_labels(st, &labels, &n) != 0)
        return 0;
    if (n > 0) {
        if (mv_snapshot_load(st, labels[n - 1], prev) == 0)
            have = 1;
        else
            log_warning("reading every file: the previous snapshot \"%s\" could not be loaded",
                        labels[n - 1]);
    }
    tree_labels_free(labels, n);
    return have;
}

static void mv_print_report(const mv_opts *o, const mv_snapshot *s, int64_t elapsed_ms,
                            int64_t healthy_ms, int committed)
{
    char b1[32], b2[32], b3[32], b4[32];

    if (o->json) {
        json_t *j = json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                              "label", s->label, "committed", committed,
                              "files", (json_int_t)s->stats.files,
                              "dirs", (json_int_t)s->stats.dirs,
                              "symlinks", (json_int_t)s->stats.symlinks,
                              "bytes", (json_int_t)s->stats.bytes,
                              "new_objects", (json_int_t)s->stats.new_objects,
                              "new_bytes", (json_int_t)s->stats.new_bytes,
                              "stored_bytes", (json_int_t)s->stats.stored_bytes,
                              "reused_bytes", (json_int_t)s->stats.reused_bytes,
                              "downtime_ms", (json_int_t)s->downtime_ms,
                              "elapsed_ms", (json_int_t)elapsed_ms,
                              "healthy_after_ms", (json_int_t)healthy_ms);
        if (j != NULL) {
            if (s->pg_lsn)
                json_object_set_new(j, "pg_lsn", json_string(s->pg_lsn));
            char *txt = json_dumps(j, JSON_COMPACT);
            if (txt)
                printf("%s\n", txt);
            free(txt);
            json_decref(j);
        }
        return;
    }
    printf("snapshot %s\n", s->label);
    printf("  files %llu, directories %llu, symlinks %llu, %s\n",
           (unsigned long long)s->stats.files, (unsigned long long)s->stats.dirs,
           (unsigned long long)s->stats.symlinks, mv_bytes(s->stats.bytes, b1));
    printf("  new: %llu object%s, %s (%s stored); reused: %s\n",
           (unsigned long long)s->stats.new_objects, PLURAL(s->stats.new_objects), mv_bytes(s->stats.new_bytes, b2),
           mv_bytes(s->stats.stored_bytes, b3), mv_bytes(s->stats.reused_bytes, b4));
    printf("  milvus down for %.1f s; total %.1f s\n", (double)s->downtime_ms / 1000.0,
           (double)elapsed_ms / 1000.0);
    if (s->pg_restore_point && s->pg_lsn)
        printf("  postgresql restore point \"%s\" at %s\n", s->pg_restore_point, s->pg_lsn);
    if (s->have_milvus)
        for (size_t i = 0; i < s->ncolls; i++)
            printf("  collection %s: %lld row%s\n", s->colls[i].name, (long long)s->colls[i].rows,
                   PLURAL(s->colls[i].rows));
    fflush(stdout);
}

int mv_snapshot_cmd(const mv_opts *o)
{
    mv_snapshot s, prev;
    repo *rp = NULL;
    uring *ur = NULL;
    storage_lock *lk = NULL;
    char key[256], stamp[32];
    char *json = NULL;
    size_t json_len = 0;
    int have_prev = 0, committed = 0, start_failed = 0, marked = 0, ret = -1, r;
    int64_t t0 = mv_now_ms(), t_down = 0, healthy_ms = -1;

    memset(&s, 0, sizeof(s));
    memset(&prev, 0, sizeof(prev));
    mv_signals_install();
    s.started = time(NULL);
    if (o->label != NULL) {
        s.label = strdup(o->label);
    } else {
        timefmt_stamp(stamp, sizeof(stamp), s.started);
        s.label = strdup(stamp);
    }
    if (s.label == NULL || !mv_label_valid(s.label)) {
        log_error("invalid snapshot label \"%s\"", s.label ? s.label : "");
        goto out;
    }
    s.vols = calloc(o->nvols, sizeof(*s.vols));
    if (s.vols == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < o->nvols; i++) {
        s.vols[i].name = strdup(o->vols[i].name);
        s.vols[i].dir = strdup(o->vols[i].dir);
        s.nvols++;
        if (!s.vols[i].name || !s.vols[i].dir) {
            log_errno("could not allocate");
            goto out;
        }
    }

    ur = uring_new(32);
    rp = mv_repo_open(o->repo, ur, 1, &ret);
    if (rp == NULL)
        goto out;
    r = storage_lock_take(rp->st, MV_LOCK_NAME, 1, 0, &lk);
    if (r == RS_EXISTS) {
        log_error("could not lock repository \"%s\": another ragsafe-milvus snapshot or expire "
                  "is running", storage_location(rp->st));
        goto out;
    }
    if (r != 0)
        goto out;
    /* a restore or snapshot killed before us: finish it, restart the stack */
    if (mv_recover(rp->st, o) != 0)
        goto out;
    if (mv_snapshot_key(s.label, key, sizeof(key)) != 0)
        goto out;
    r = storage_stat(rp->st, key, NULL, NULL);
    if (r == 0) {
        log_error("snapshot \"%s\" already exists in \"%s\"", s.label, storage_location(rp->st));
        goto out;
    }
    if (r < 0)
        goto out;
    have_prev = mv_load_previous(rp->st, &prev);

    if (o->version_cmd != NULL && mv_capture_cmd("version", o->version_cmd, &s.stack_version) != 0)
        goto out;
    if (o->milvus_url != NULL) {
        r = mv_milvus_rows(o, &s.colls, &s.ncolls);
        if (r == RS_NOT_FOUND) {
            log_warning("milvus at \"%s\" does not answer: row counts not recorded", o->milvus_url);
        } else if (r != 0) {
            goto out;
        } else {
            s.have_milvus = 1;
            s.milvus_url = strdup(o->milvus_url);
            s.milvus_db = strdup(o->milvus_db ? o->milvus_db : "default");
            if (mv_milvus_flush(o, s.colls, s.ncolls) != 0)
                goto out;
        }
    }
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto out;
    }

    /* From here on the stack may be down: every path runs the start command. */
    t_down = mv_now_ms();
    if (o->stop_cmd != NULL) {
        /* killed while the stack is down, the next command must know who stopped it */
        if (mv_stack_mark(rp->st, "snapshot") != 0)
            goto out;
        marked = 1;
        if (mv_run_cmd("stop", o->stop_cmd) != 0)
            goto restart;
        mv_test_point("stopped", 0);
        if (o->health_url != NULL && mv_health_ok(o->health_url)) {
            log_error("\"%s\" still answers after the stop command", o->health_url);
            goto restart;
        }
    } else if (o->health_url != NULL && mv_health_ok(o->health_url) && !o->assume_stopped) {
        log_error("milvus is running: \"%s\" answers", o->health_url);
        log_hint("give --stop-cmd to stop the stack for the snapshot, or --assume-stopped");
        goto out;
    }
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto restart;
    }
    if (o->pg != NULL) {
        s.pg_restore_point = strdup(s.label);
        if (s.pg_restore_point == NULL ||
            mv_pg_restore_point(o->pg, s.pg_restore_point, &s.pg_lsn) != 0)
            goto restart;
        log_info("postgresql restore point \"%s\" at %s", s.pg_restore_point, s.pg_lsn);
    }

    s.walk_started_ns = mv_realtime_ns();
    int64_t tw = mv_now_ms();
    for (size_t i = 0; i < s.nvols; i++) {
        mv_volume *v = &s.vols[i];
        if (mv_walk_volume(v) != 0)
            goto restart;
        for (size_t k = 0; k < v->n; k++) {
            if (v->entries[k].type == MV_FILE) {
                s.stats.files++;
                s.stats.bytes += v->entries[k].size;
            } else if (v->entries[k].type == MV_DIR) {
                s.stats.dirs++;
            } else {
                s.stats.symlinks++;
            }
        }
    }
    log_info("%llu file%s, %llu director%s, %llu symlink%s (walked in %lld ms)",
             (unsigned long long)s.stats.files, PLURAL(s.stats.files), (unsigned long long)s.stats.dirs,
             s.stats.dirs == 1 ? "y" : "ies", (unsigned long long)s.stats.symlinks,
             PLURAL(s.stats.symlinks), (long long)(mv_now_ms() - tw));
    r = mv_store_all(o, rp->st, &s, have_prev ? &prev : NULL);
    if (r != 0) {
        ret = r;
        goto restart;
    }
    ret = 0;

restart:
    if (o->start_cmd != NULL && mv_run_cmd("start", o->start_cmd) != 0)
        start_failed = 1;
    s.downtime_ms = mv_now_ms() - t_down;
    if (o->health_url != NULL && (o->start_cmd != NULL || o->stop_cmd != NULL)) {
        int64_t th = mv_now_ms();
        if (mv_wait_healthy(o->health_url, o->health_timeout) == 0) {
            healthy_ms = mv_now_ms() - th;
            s.downtime_ms = mv_now_ms() - t_down;
            log_info("milvus healthy again after %.1f s down", (double)s.downtime_ms / 1000.0);
        } else {
            start_failed = 1;
        }
    }
    if (marked && !start_failed && mv_stack_unmark(rp->st) != 0)
        start_failed = 1;
    object_opts mopts = {.level = o->level, .workers = 0};
    /* Every file is stored: record the snapshot even when the stack did not come back
     * (the copy was taken cold and is good), but fail. */
    if (ret == 0) {
        s.finished = time(NULL);
        if (mv_snapshot_to_json(&s, &json, &json_len) != 0 ||
            object_put_buf(rp->st, key, json, json_len, &mopts, 1, NULL) != 0) {
            log_error("could not record snapshot \"%s\"", s.label);
            ret = -1;
        } else {
            committed = 1;
        }
    }
    if (committed)
        mv_print_report(o, &s, mv_now_ms() - t0, healthy_ms, committed);
    if (ret == 0 && (start_failed || mv_interrupted()))
        ret = -1;
out:
    free(json);
    storage_lock_release(lk);
    mv_snapshot_release(&s);
    if (have_prev)
        mv_snapshot_release(&prev);
    repo_free(rp);
    uring_free(ur);
    return ret;
}
