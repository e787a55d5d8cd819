/*
 * restore.c -- ragsafe-milvus restore: a snapshot back into its volume directories.
 *
 * Before anything changes: the manifest parses and every path in it is a plain
 * relative path whose parents are directories listed before it (snapfile.c), every
 * snapshot volume has a target, and each target is absent, empty, or (--force) to be
 * moved aside to DIR.ragsafe-old-ID rather than deleted. Without a stop command, no
 * live process may have its working directory, root or an open file under a target.
 * Modes come back without set-user-ID/set-group-ID bits; owners only with
 * --same-owner or when the volumes' recorded owners are the targets' (mv_same_owner).
 * The manifest knows no device files, FIFOs or sockets (a snapshot skips them).
 *
 * Then every volume is restored into a staging directory beside its target,
 * DIR.ragsafe-staging-ID (same file system), while the stack still runs: directories,
 * files on worker threads (every object re-hashed against its name and trailer while
 * it is written: a corrupt object fails the restore naming it), symbolic links last
 * (so no path can be written through one), owners, modes and mtimes (directories
 * deepest first), and the file systems synced. Only then is the stack stopped and the
 * three targets swapped in one short step of renames, driven by a journal in the
 * repository (journal.c): killed at any point, the targets stay wholly old or wholly
 * new, and the next ragsafe-milvus command finishes or undoes the swap. ID is the
 * time, our pid and, if needed, a counter: names never collide with a rerun's.
 * A failed restore leaves the targets untouched (the partial staging tree kept as
 * DIR.ragsafe-failed-ID) and starts the stack again. With --milvus-url the
 * collections' row counts must then match the snapshot's.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cas.h"
#include "cli.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "milvus.h"
#include "object.h"
#include "procuse.h"
#include "progress.h"
#include "repo.h"
#include "tree.h"
#include "uring.h"

typedef struct mv_target {
    const mv_volume *v;
    const char *dir;    /* where this run writes: the staging directory */
    mv_swap *sw;        /* the target, its state before, its staging and aside names */
    int sfd;            /* durable_sync_open of the staging directory, before any write */
} mv_target;

typedef struct mv_restore_job {
    const char *location;
    mv_target *targets;
    size_t ntargets;
    struct { const mv_target *t; const mv_entry *e; } *files;
    size_t nfiles, next;
    int as_root;
    pthread_mutex_t mu;
    int failed;
    uint64_t bytes;
    long done;
    /* A damaged object is reported once, however many files (or chunks, or workers at
     * the same moment) need it: a worker waits while another reads the same object,
     * then skips it silently when that one found it damaged. */
    pthread_cond_t cv;
    int nworkers;
    uint8_t (*reading)[SHA256_LEN]; /* per worker: the object it reads */
    unsigned char *is_reading;
    cas_set *damaged;               /* digests found corrupt or missing */
    progress pg;
} mv_restore_job;

static struct timespec mv_ts(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    return ts;
}

static void mv_restore_file_done(mv_restore_job *j, int r, uint64_t size)
{
    long done;

    pthread_mutex_lock(&j->mu);
    if (r != 0 && (j->failed == 0 || r == RS_MISMATCH))
        j->failed = r;
    j->bytes += size;
    done = ++j->done;
    pthread_mutex_unlock(&j->mu);
    mv_test_point("extract", done);
}

/* mv_claim -- worker w is about to read object d: wait while another worker reads it.
 * 1: it was found damaged already (reported then; say nothing more), else 0 with d
 * marked as w's until mv_unclaim. */
static int mv_claim(mv_restore_job *j, int w, const uint8_t *d)
{
    int busy, bad;

    pthread_mutex_lock(&j->mu);
    do {
        busy = 0;
        for (int k = 0; k < j->nworkers; k++)
            if (k != w && j->is_reading[k] && memcmp(j->reading[k], d, SHA256_LEN) == 0)
                busy = 1;
        if (busy)
            pthread_cond_wait(&j->cv, &j->mu);
    } while (busy);
    bad = cas_set_has(j->damaged, d);
    if (!bad) {
        memcpy(j->reading[w], d, SHA256_LEN);
        j->is_reading[w] = 1;
    }
    pthread_mutex_unlock(&j->mu);
    return bad;
}

/* mv_unclaim -- w is done reading d (damaged: 1 when it found it so, and reported). */
static void mv_unclaim(mv_restore_job *j, int w, const uint8_t *d, int damaged)
{
    pthread_mutex_lock(&j->mu);
    j->is_reading[w] = 0;
    if (damaged)
        (void)cas_set_add(j->damaged, d); /* out of memory: reported; it may be named twice */
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* mv_restore_file -- one file from its object (or its chunks, in order); metadata from
 * the manifest. Worker w of job j. */
static int mv_restore_file(mv_restore_job *j, int w, cas *c, const mv_target *t,
                           const mv_entry *e)
{
    int as_root = j->as_root;
    char path[PATH_MAX], shown[PATH_MAX], key[512];
    uint64_t size = 0, off = 0;
    int fd, r, ret = -1;

    snprintf(path, sizeof(path), "%s/%s", t->dir, e->path);
    /* messages about the content name the file where it is going */
    snprintf(shown, sizeof(shown), "%s/%s", t->sw->dir, e->path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return log_errno("could not create \"%s\"", path);
    for (uint32_t i = 0; i < (e->nchunks ? e->nchunks : 1); i++) {
        const uint8_t *d = e->nchunks ? e->chunks[i] : e->sha;
        uint64_t want = e->nchunks ? (e->size - off < e->chunk_size ? e->size - off : e->chunk_size)
                                   : e->size;
        cas_key(c, d, key, sizeof(key));
        /* cas_get_fd writes from the position and leaves it: step past each chunk */
        if (lseek(fd, (off_t)off, SEEK_SET) < 0) {
            log_errno("could not seek in \"%s\"", path);
            goto out;
        }
        if (mv_claim(j, w, d)) {
            ret = RS_MISMATCH; /* reported by the worker that found it */
            goto out;
        }
        r = cas_get_fd(c, d, fd, &size);
        if (r == RS_NOT_FOUND) {
            log_error("could not restore \"%s\": object \"%s\" is missing from the repository",
                      shown, key);
            ret = RS_MISMATCH;
        } else if (r == RS_MISMATCH) {
            log_error("could not restore \"%s\": object \"%s\" is corrupt", shown, key);
            ret = RS_MISMATCH;
        } else if (r != 0) {
            /* -1: a write error here, or an object zstd cannot even decode. Tell them
             * apart by checking the object alone. */
            if (cas_get_fd(c, d, -1, NULL) != 0) {
                log_error("could not restore \"%s\": object \"%s\" is corrupt", shown, key);
                ret = RS_MISMATCH;
            }
        }
        mv_unclaim(j, w, d, ret == RS_MISMATCH);
        if (r != 0)
            goto out;
        progress_add(&j->pg, size);
        if (size != want) {
            log_error("could not restore \"%s\": object \"%s\" holds %llu bytes, the manifest "
                      "says %llu", shown, key, (unsigned long long)size, (unsigned long long)want);
            ret = RS_MISMATCH;
            goto out;
        }
        off += size;
    }
    /* start writing it back now, while the other files are restored: the final
     * syncfs then waits for less (it alone is what makes the tree durable) */
    if (e->size > 0)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    tree_meta meta = {e->mode, e->uid, e->gid, mv_ts(e->mtime_ns)};
    if (tree_restore_fd_meta(fd, path, shown, &meta, as_root) != 0)
        goto out;
    ret = 0;
out:
    if (close(fd) != 0 && ret == 0)
        ret = log_errno("could not close \"%s\"", path);
    return ret;
}

static void mv_restore_worker(void *arg, int i)
{
    mv_restore_job *j = arg;
    /* plain read/write: MinIO objects average 52 KiB, and for files that small the
     * ring's io-wq hand-offs and wake-ups cost more CPU than they overlap (2-core VM,
     * cold cache, RAGSAFE_NO_URING=1 against the ring: 0.2-0.4 s less system time and
     * 0.1-0.4 s less wall time over the 302 MiB volumes, six of six pairs at --jobs 2,
     * 4 and 8) */
    uring *ur = uring_new_plain();
    storage *st = storage_open(j->location, ur, 0);
    cas *c = st ? cas_new(st, MV_OBJECT_PREFIX, NULL) : NULL;

    if (c == NULL) {
        mv_restore_file_done(j, -1, 0);
        goto out;
    }
    for (;;) {
        size_t k;
        pthread_mutex_lock(&j->mu);
        if (j->failed != 0 || j->next >= j->nfiles) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        k = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (mv_interrupted()) {
            mv_restore_file_done(j, log_error("interrupted by signal %d", mv_interrupted()), 0);
            break;
        }
        int r = mv_restore_file(j, i, c, j->files[k].t, j->files[k].e);
        mv_restore_file_done(j, r, r == 0 ? j->files[k].e->size : 0);
        if (r != 0)
            break;
    }
out:
    cas_free(c);
    storage_free(st);
    uring_free(ur);
}

/* mv_set_meta -- owner, mode, times of a directory or (nofollow) a symlink, in the
 * staging tree: any failure fails the restore (lib/tree.h, strict). */
static int mv_set_meta(const char *path, uint32_t mode, uint32_t uid, uint32_t gid,
                       int64_t mtime_ns, int is_link, int as_root)
{
    tree_meta m = {mode, uid, gid, mv_ts(mtime_ns)};

    return tree_restore_path_meta(path, path, &m, is_link, as_root, 1);
}

/* Directories: created parents first and given their metadata deepest first, each
 * depth on all workers (thousands of MinIO object directories would otherwise cost one
 * thread a syscall after another: mkdir, then chown, chmod, utimensat). A level starts
 * only once the one before it is done: a directory is created after its parent and
 * gets its times and mode after everything below it (a mode without x or w would
 * stop the rest; a child created later would move its mtime). */
typedef struct mv_dir_item {
    const mv_target *t;
    const mv_entry *e;
    unsigned depth;
    size_t seq;         /* volume order, then manifest order */
} mv_dir_item;

typedef struct mv_dir_job {
    mv_dir_item *items;
    size_t lo, hi, next;
    int meta, as_root, failed;
    pthread_mutex_t mu;
} mv_dir_job;

static int mv_dir_one(const mv_dir_job *dj, const mv_dir_item *d)
{
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", d->t->dir, d->e->path) >= sizeof(path))
        return log_error("path too long: \"%s/%s\"", d->t->dir, d->e->path);
    if (dj->meta)
        return mv_set_meta(path, d->e->mode, d->e->uid, d->e->gid, d->e->mtime_ns, 0,
                           dj->as_root);
    if (mkdir(path, 0700) != 0)
        return log_errno("could not create directory \"%s\"", path);
    return 0;
}

static void mv_dir_worker(void *arg, int w)
{
    mv_dir_job *dj = arg;
    enum { BATCH = 16 };

    (void)w;
    for (;;) {
        size_t k, end;
        pthread_mutex_lock(&dj->mu);
        if (dj->failed || dj->next >= dj->hi) {
            pthread_mutex_unlock(&dj->mu);
            return;
        }
        k = dj->next;
        end = dj->hi - k > BATCH ? k + BATCH : dj->hi;
        dj->next = end;
        pthread_mutex_unlock(&dj->mu);
        for (; k < end; k++) {
            if (mv_dir_one(dj, &dj->items[k]) != 0) {
                pthread_mutex_lock(&dj->mu);
                dj->failed = 1;
                pthread_mutex_unlock(&dj->mu);
                return;
            }
        }
    }
}

static int mv_dir_depth_cmp(const void *a, const void *b)
{
    const mv_dir_item *x = a, *y = b;

    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    /* the manifest's order within a level: messages come out as before */
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* mv_dirs_collect -- every directory entry of every target, shallowest first. */
static int mv_dirs_collect(const mv_target *t, size_t nt, mv_dir_item **out, size_t *n)
{
    size_t cnt = 0, k = 0;
    mv_dir_item *items;

    for (size_t i = 0; i < nt; i++)
        for (size_t e = 0; e < t[i].v->n; e++)
            cnt += t[i].v->entries[e].type == MV_DIR;
    items = calloc(cnt + 1, sizeof(*items));
    if (items == NULL)
        return log_errno("could not allocate");
    for (size_t i = 0; i < nt; i++) {
        for (size_t e = 0; e < t[i].v->n; e++) {
            const mv_entry *en = &t[i].v->entries[e];
            if (en->type != MV_DIR)
                continue;
            unsigned depth = 0;
            for (const char *c = en->path; *c; c++)
                depth += *c == '/';
            items[k] = (mv_dir_item){&t[i], en, depth, k};
            k++;
        }
    }
    qsort(items, cnt, sizeof(*items), mv_dir_depth_cmp);
    *out = items;
    *n = cnt;
    return 0;
}

/* mv_dirs_run -- mkdir (meta 0, shallowest level first) or metadata (meta 1, deepest
 * level first) of every directory, one level at a time, each on up to jobs workers. */
static int mv_dirs_run(mv_dir_item *items, size_t n, int meta, int as_root, int jobs)
{
    mv_dir_job dj;
    int ret = 0;

    memset(&dj, 0, sizeof(dj));
    dj.items = items;
    dj.meta = meta;
    dj.as_root = as_root;
    pthread_mutex_init(&dj.mu, NULL);
    for (size_t done = 0; done < n && ret == 0;) {
        /* the next level: from the front for mkdir, from the back for metadata */
        size_t lo, hi;
        if (!meta) {
            lo = done;
            for (hi = lo; hi < n && items[hi].depth == items[lo].depth; hi++)
                ;
        } else {
            hi = n - done;
            for (lo = hi - 1; lo > 0 && items[lo - 1].depth == items[hi - 1].depth; lo--)
                ;
        }
        done += hi - lo;
        if (mv_interrupted()) {
            ret = log_error("interrupted by signal %d", mv_interrupted());
            break;
        }
        dj.lo = dj.next = lo;
        dj.hi = hi;
        size_t w = (hi - lo) / 64;   /* threads only for levels worth them */
        if (w <= 1) {
            mv_dir_worker(&dj, 0);
        } else if (mv_parallel(w < (size_t)jobs ? (int)w : jobs, mv_dir_worker, &dj) != 0) {
            ret = -1;
        }
        if (dj.failed)
            ret = -1;
    }
    pthread_mutex_destroy(&dj.mu);
    return ret;
}

/* mv_restore_links -- symbolic links last (no file is written through one), then the
 * volume roots' metadata comes after their directories' (mv_dirs_run). */
static int mv_restore_links(const mv_target *t, int as_root)
{
    char path[PATH_MAX];

    for (size_t k = 0; k < t->v->n; k++) {
        const mv_entry *e = &t->v->entries[k];
        if (e->type != MV_LINK)
            continue;
        snprintf(path, sizeof(path), "%s/%s", t->dir, e->path);
        if (symlink(e->target, path) != 0)
            return log_errno("could not create symbolic link \"%s\"", path);
        if (mv_set_meta(path, 0, e->uid, e->gid, e->mtime_ns, 1, as_root) != 0)
            return -1;
    }
    return 0;
}

/* mv_sync_targets -- make every restored tree durable: one syncfs per file system
 * instead of durable_fsync_tree's fsync per file (thousands of small MinIO objects
 * would each cost a journal commit), on a descriptor opened right after the staging
 * directory was made, before any write into it, so a writeback error of any restored
 * file is reported (lib/durable.c: why that is as durable; without syncfs error
 * reporting, kernels before 5.8, the tree is fsync'd file by file). The staging trees
 * are directories we just made: no other file system is mounted below them. */
static int mv_sync_targets(const mv_target *t, size_t n)
{
    dev_t seen[16];
    size_t nseen = 0;

    for (size_t k = 0; k < n; k++) {
        struct stat sb;
        int dup = 0;
        if (t[k].sfd < 0) {
            if (durable_fsync_tree(t[k].dir) != 0)
                return -1;
            continue;
        }
        if (fstat(t[k].sfd, &sb) != 0)
            return log_errno("could not stat \"%s\"", t[k].dir);
        for (size_t i = 0; i < nseen; i++)
            dup |= (seen[i] == sb.st_dev);
        if (dup)
            continue;
        if (syncfs(t[k].sfd) != 0)
            return log_errno("could not sync the file system of \"%s\"", t[k].dir);
        if (nseen < ARRAY_LEN(seen))
            seen[nseen++] = sb.st_dev;
    }
    return 0;
}

/* mv_same_owner -- restore recorded owners (lib/tree.h)? Only as root, and only when asked
 * (--same-owner) or, by default, when each volume's recorded root owner is the
 * target root's owner now (or, for a target not there yet, the user restoring): a
 * snapshot from another machine must not hand files to whoever has those ids here. */
static int mv_same_owner(const mv_opts *o, const mv_swap *sw, const mv_snapshot *s)
{
    int owners = tree_owner_policy(o->same_owner);

    if (owners != TREE_OWNER_COMPARE)
        return owners;
    for (size_t k = 0; k < s->nvols; k++)
        if (!tree_owner_matches("volume ", s->vols[k].name, s->vols[k].uid, s->vols[k].gid,
                                sw[k].dir))
            return 0;
    return 1;
}

/* mv_discard_staging -- a failed restore: each staging tree kept aside for inspection
 * as DIR.ragsafe-failed-ID (the targets were not touched). */
static void mv_discard_staging(const mv_swap *sw, size_t n, const char *id)
{
    char failed[PATH_MAX];
    struct stat sb;

    for (size_t k = 0; k < n; k++) {
        if (lstat(sw[k].staging, &sb) != 0)
            continue;
        snprintf(failed, sizeof(failed), "%s.ragsafe-failed-%s", sw[k].dir, id);
        if (durable_rename(sw[k].staging, failed) == 0)
            log_notice("partial restore of \"%s\" kept as \"%s\"", sw[k].dir, failed);
    }
}

/* mv_pick_id -- an id no staging, aside or failed name of any target uses yet: the
 * time, and -2, -3 ... while that is taken, so the aside names are the ones every tool's
 * --force uses (cli.h: DIR.ragsafe-old-TIME[-N]) and never collide with a rerun. */
static int mv_pick_id(mv_swap *sw, size_t n, char *id, size_t idlen)
{
    char stamp[CLI_STAMP_LEN], failed[PATH_MAX];
    struct stat sb;

    cli_aside_stamp(time(NULL), stamp);
    for (int attempt = 1; attempt < 1000; attempt++) {
        int taken = 0;
        if (attempt == 1)
            snprintf(id, idlen, "%s", stamp);
        else
            snprintf(id, idlen, "%s-%d", stamp, attempt);
        for (size_t k = 0; k < n && !taken; k++) {
            if (mv_swap_names(&sw[k], id) != 0)
                return -1;
            snprintf(failed, sizeof(failed), "%s.ragsafe-failed-%s", sw[k].dir, id);
            taken = lstat(sw[k].staging, &sb) == 0 || lstat(sw[k].aside, &sb) == 0 ||
                    lstat(failed, &sb) == 0;
        }
        if (!taken)
            return 0;
    }
    return log_error("could not find an unused name beside the restore targets");
}

static int mv_compare_rows(const mv_opts *o, const mv_snapshot *s)
{
    mv_collection *now = NULL;
    size_t n = 0;
    int bad = 0, r;

    r = mv_milvus_rows(o, &now, &n);
    if (r == RS_NOT_FOUND)
        return log_error("milvus at \"%s\" does not answer: row counts not compared",
                         o->milvus_url);
    if (r != 0)
        return -1;
    for (size_t i = 0; i < s->ncolls; i++) {
        const mv_collection *want = &s->colls[i];
        size_t k;
        for (k = 0; k < n && strcmp(now[k].name, want->name) != 0; k++)
            ;
        if (k == n) {
            log_error("collection \"%s\" is missing after the restore", want->name);
            bad = 1;
        } else if (now[k].rows != want->rows) {
            log_error("collection \"%s\" has %lld row%s after the restore, the snapshot had %lld",
                      want->name, (long long)now[k].rows, PLURAL(now[k].rows), (long long)want->rows);
            bad = 1;
        } else {
            log_info("collection \"%s\": %lld row%s, as in the snapshot", want->name,
                     (long long)want->rows, PLURAL(want->rows));
        }
    }
    mv_collections_free(now, n);
    return bad ? RS_MISMATCH : 0;
}

int mv_restore_cmd(const mv_opts *o)
{
    mv_snapshot s;
    repo *rp = NULL;
    storage_lock *lk = NULL;
    mv_target *t = NULL;
    mv_swap *sw = NULL;
    mv_restore_job j;
    mv_dir_item *dirs = NULL;
    size_t ndirs = 0;
    int jobs;
    char id[64] = "";
    char *version = NULL;
    int loaded = 0, journal = 0, stopped = 0, marked = 0, start_failed = 0, keep_down = 0;
    int renames = 0, ret = -1, r;
    int64_t t0 = mv_now_ms();

    memset(&s, 0, sizeof(s));
    memset(&j, 0, sizeof(j));
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    progress_init(&j.pg, PROGRESS_OFF, "restore", 0);
    mv_signals_install();
    rp = mv_repo_open(o->repo, NULL, 0, &ret);
    if (rp == NULL)
        goto out;
    /* exclusive: the restore journal and the stack are ours until we are done */
    r = storage_lock_take(rp->st, MV_LOCK_NAME, 1, 0, &lk);
    if (r == RS_EXISTS) {
        log_error("could not lock repository \"%s\": another ragsafe-milvus snapshot, restore "
                  "or expire is running", storage_location(rp->st));
        goto out;
    }
    if (r != 0)
        goto out;
    if (mv_recover(rp->st, o) != 0)
        goto out;
    log_debug("restore: %lld ms to the locked repository", (long long)(mv_now_ms() - t0));
    r = mv_snapshot_load(rp->st, o->label, &s);
    if (r == RS_NOT_FOUND) {
        log_error("snapshot \"%s\" not found in \"%s\"", o->label, storage_location(rp->st));
        goto out;
    }
    if (r != 0) {
        ret = r == RS_MISMATCH ? RS_MISMATCH : -1;
        goto out;
    }
    loaded = 1;
    log_debug("restore: %lld ms to the loaded manifest", (long long)(mv_now_ms() - t0));

    /* targets: each snapshot volume exactly once */
    t = calloc(s.nvols, sizeof(*t));
    sw = calloc(s.nvols, sizeof(*sw));
    if (t == NULL || sw == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t k = 0; k < s.nvols; k++)
        t[k].sfd = -1;
    j.ntargets = s.nvols;
    for (size_t i = 0; i < o->nvols; i++) {
        size_t k;
        for (k = 0; k < s.nvols && strcmp(s.vols[k].name, o->vols[i].name) != 0; k++)
            ;
        if (k == s.nvols) {
            log_error("snapshot \"%s\" has no volume \"%s\"", s.label, o->vols[i].name);
            goto out;
        }
    }
    for (size_t k = 0; k < s.nvols; k++) {
        const char *dir = NULL;
        char *d;
        for (size_t i = 0; i < o->nvols; i++)
            if (strcmp(s.vols[k].name, o->vols[i].name) == 0)
                dir = o->vols[i].dir;
        if (dir == NULL && o->nvols > 0) {
            log_error("no target for volume \"%s\" of snapshot \"%s\"", s.vols[k].name, s.label);
            log_hint("restore every volume together (--volume %s=DIR): the three stores must "
                     "come from the same instant", s.vols[k].name);
            goto out;
        }
        if (dir == NULL)
            dir = s.vols[k].dir;   /* no --volume at all: back where they came from */
        if (dir[0] != '/') {
            log_error("restore target \"%s\" is not an absolute path", dir);
            goto out;
        }
        t[k].v = &s.vols[k];
        t[k].sw = &sw[k];
        sw[k].name = s.vols[k].name;
        sw[k].dir = d = strdup(dir);
        if (d == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/')
            d[--l] = '\0';
        if (strcmp(d, "/") == 0) {
            log_error("restore target \"/\" refused");
            goto out;
        }
        r = tree_dir_state(d, 0);
        if (r < 0)
            goto out;
        if (r == TREE_NOT_DIR) {
            log_error("restore target \"%s\" is not a directory", d);
            goto out;
        }
        sw[k].before = r;
        if (r == TREE_FULL && !o->force) {
            log_error("restore target \"%s\" is not empty", d);
            log_hint("restore into empty directories, or give --force to move it aside");
            goto out;
        }
        for (size_t i = 0; i < k; i++) {
            if (strcmp(sw[i].dir, d) == 0) {
                log_error("volumes \"%s\" and \"%s\" have the same target \"%s\"",
                          sw[i].name, sw[k].name, d);
                goto out;
            }
        }
    }

    if (o->version_cmd != NULL && s.stack_version != NULL) {
        if (mv_capture_cmd("version", o->version_cmd, &version) != 0)
            goto out;
        if (strcmp(version, s.stack_version) != 0) {
            if (!o->ignore_version) {
                log_error("stack version differs from snapshot \"%s\"'s", s.label);
                log_detail("snapshot: %s", s.stack_version);
                log_detail("now: %s", version);
                log_hint("restore with the same Milvus, etcd and MinIO images, or give "
                         "--ignore-version");
                ret = RS_MISMATCH;
                goto out;
            }
            log_warning("stack version differs from the snapshot's: going on (--ignore-version)");
        }
    }
    if (o->stop_cmd == NULL && o->health_url != NULL && !o->assume_stopped &&
        mv_health_ok(o->health_url)) {
        log_error("milvus is running: \"%s\" answers", o->health_url);
        log_hint("give --stop-cmd to stop the stack for the restore, or --assume-stopped");
        goto out;
    }
    /* never under a live process: with no stop command, nothing stops what runs there
     * (Milvus keeps its files open and writes them by path) */
    if (o->stop_cmd == NULL) {
        const char **dirs = calloc(s.nvols + 1, sizeof(*dirs));
        size_t nd = 0;
        if (dirs == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        for (size_t k = 0; k < s.nvols; k++)
            if (sw[k].before != TREE_ABSENT)
                dirs[nd++] = sw[k].dir;
        r = procuse_check(dirs, nd);
        free(dirs);
        if (r != 0) {
            if (r > 0) {
                log_error("restore refused: a live process uses the restore targets");
                log_hint("stop it first, or give --stop-cmd (and --start-cmd) so the stack is "
                         "stopped for the swap");
            }
            goto out;
        }
    }
    log_debug("restore: %lld ms to the checked targets", (long long)(mv_now_ms() - t0));
    if (mv_interrupted())
        goto out;

    /* staging trees beside the targets (same file system: the swap is renames); the
     * journal names them before the first one exists */
    if (mv_pick_id(sw, s.nvols, id, sizeof(id)) != 0)
        goto out;
    for (size_t k = 0; k < s.nvols; k++) {
        char *parent = strdup(sw[k].dir);
        if (parent == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        r = durable_mkdirs(dirname(parent), 0755);
        free(parent);
        if (r != 0)
            goto out;
    }
    if (mv_journal_write(rp->st, s.label, id, "staging", sw, s.nvols) != 0)
        goto out;
    journal = 1;
    log_debug("restore: %lld ms to the first directory", (long long)(mv_now_ms() - t0));
    for (size_t k = 0; k < s.nvols; k++) {
        if (mkdir(sw[k].staging, 0700) != 0) {
            log_errno("could not create directory \"%s\"", sw[k].staging);
            goto fail;
        }
        t[k].dir = sw[k].staging;
        t[k].sfd = durable_sync_open(sw[k].staging);
        for (size_t e = 0; e < s.vols[k].n; e++)
            if (s.vols[k].entries[e].type == MV_FILE)
                j.nfiles++;
    }

    jobs = o->jobs > 0 ? o->jobs : mv_default_jobs();
    if (mv_dirs_collect(t, s.nvols, &dirs, &ndirs) != 0 ||
        mv_dirs_run(dirs, ndirs, 0, 0, jobs) != 0)
        goto fail;
    log_debug("restore: %lld ms to the last directory", (long long)(mv_now_ms() - t0));
    j.files = calloc(j.nfiles + 1, sizeof(*j.files));
    if (j.files == NULL) {
        log_errno("could not allocate");
        goto fail;
    }
    j.nfiles = 0;
    for (size_t k = 0; k < s.nvols; k++)
        for (size_t e = 0; e < s.vols[k].n; e++)
            if (s.vols[k].entries[e].type == MV_FILE) {
                j.files[j.nfiles].t = &t[k];
                j.files[j.nfiles].e = &s.vols[k].entries[e];
                j.nfiles++;
            }
    j.location = storage_location(rp->st);
    j.targets = t;
    j.as_root = mv_same_owner(o, sw, &s);
    {
        int fjobs = jobs;
        uint64_t total = 0;
        if ((size_t)fjobs > j.nfiles)
            fjobs = j.nfiles > 0 ? (int)j.nfiles : 1;
        j.nworkers = fjobs;
        j.reading = calloc((size_t)fjobs, sizeof(*j.reading));
        j.is_reading = calloc((size_t)fjobs, 1);
        j.damaged = cas_set_new();
        if (j.reading == NULL || j.is_reading == NULL) {
            log_errno("could not allocate");
            goto fail;
        }
        if (j.damaged == NULL)
            goto fail;
        for (size_t k = 0; k < j.nfiles; k++)
            total += j.files[k].e->size;
        progress_release(&j.pg);
        progress_init(&j.pg, o->progress, "restore", total);
        log_debug("restore: %lld ms to the first file", (long long)(mv_now_ms() - t0));
        if (fjobs > 1)
            object_set_hash_thread(0);   /* the workers keep the cores busy */
        r = mv_parallel(fjobs, mv_restore_worker, &j);
        if (j.failed == 0 && r == 0)
            progress_finish(&j.pg);
        progress_end(&j.pg);
        if (r != 0)
            goto fail;
    }
    if (j.failed != 0) {
        ret = j.failed;
        goto fail;
    }
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto fail;
    }
    log_debug("restore: %lld ms to the last file", (long long)(mv_now_ms() - t0));
    for (size_t k = 0; k < s.nvols; k++)
        if (mv_restore_links(&t[k], j.as_root) != 0)
            goto fail;
    if (mv_dirs_run(dirs, ndirs, 1, j.as_root, jobs) != 0)
        goto fail;
    for (size_t k = 0; k < s.nvols; k++)
        if (mv_set_meta(t[k].dir, s.vols[k].mode, s.vols[k].uid, s.vols[k].gid,
                        s.vols[k].mtime_ns, 0, j.as_root) != 0)
            goto fail;
    log_debug("restore: %lld ms to the last metadata", (long long)(mv_now_ms() - t0));
    if (mv_sync_targets(t, s.nvols) != 0)
        goto fail;
    log_debug("restore: %lld ms to the sync", (long long)(mv_now_ms() - t0));
    mv_test_point("staged", 0);

    /* stop the stack: only now, the staging ran while it served */
    if (o->stop_cmd != NULL) {
        if (mv_stack_mark(rp->st, "restore") != 0)
            goto fail;
        marked = stopped = 1;
        if (mv_run_cmd("stop", o->stop_cmd) != 0)
            goto fail;
        if (o->health_url != NULL && mv_health_ok(o->health_url)) {
            log_error("\"%s\" still answers after the stop command", o->health_url);
            goto fail;
        }
        mv_test_point("stopped", 0);
    }
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto fail;
    }

    /* the commit point: from here a later command finishes the swap */
    if (mv_journal_write(rp->st, s.label, id, "swapping", sw, s.nvols) != 0)
        goto fail;
    mv_test_point("swapping", 0);
    if (mv_swap_forward(sw, s.nvols, &renames) != 0) {
        if (mv_swap_back(sw, s.nvols) != 0) {
            log_error("THE RESTORE TARGETS ARE HALF SWAPPED and could not be put back");
            log_hint("fix the error above and run ragsafe-milvus again: it finishes the swap "
                     "(journal \"%s\")", MV_JOURNAL_KEY);
            journal = 0;     /* keep it: the next command rolls forward */
            keep_down = 1;   /* never start a stack over mixed volumes */
            goto restart;
        }
        log_notice("the targets are back as they were");
        goto fail;
    }
    /* a journal that cannot be removed is harmless: the next command finds the swap
     * done and removes it */
    mv_journal_remove(rp->st);
    journal = 0;
    ret = 0;
    goto restart;

fail:
    if (ret == 0)
        ret = -1;
    mv_discard_staging(sw, s.nvols, id);
    if (journal && mv_journal_remove(rp->st) == 0)
        journal = 0;

restart:
    /* start what we stopped; with a start command and no stop command (the stack was
     * down already) start it too */
    if (!keep_down && (stopped || (o->stop_cmd == NULL && o->start_cmd != NULL))) {
        if (o->start_cmd != NULL && mv_run_cmd("start", o->start_cmd) != 0)
            start_failed = 1;
        if (o->health_url != NULL && mv_wait_healthy(o->health_url, o->health_timeout) != 0)
            start_failed = 1;
        if (!start_failed && marked && mv_stack_unmark(rp->st) != 0)
            start_failed = 1;
    } else if (keep_down) {
        log_error("THE MILVUS STACK IS LEFT STOPPED: its volumes are half swapped");
    }
    if (ret == 0 && start_failed)
        ret = -1;
    if (ret == 0 && o->milvus_url != NULL && s.have_milvus)
        ret = mv_compare_rows(o, &s);
    if (ret == 0) {
        char b[32];
        if (o->json) {
            json_t *out = json_pack("{s:s, s:I, s:I, s:I}", "label", s.label, "files",
                                    (json_int_t)j.nfiles, "bytes", (json_int_t)j.bytes, "elapsed_ms",
                                    (json_int_t)(mv_now_ms() - t0));
            if (!out || json_dumpf(out, stdout, JSON_COMPACT) != 0) {
                log_error("could not build the JSON output");
                ret = -1;
            } else {
                putchar('\n');
            }
            json_decref(out);
        } else {
            printf("restored snapshot %s: %zu file%s, %s in %.1f s\n", s.label, j.nfiles, PLURAL(j.nfiles),
                   mv_bytes(j.bytes, b), (double)(mv_now_ms() - t0) / 1000.0);
            for (size_t k = 0; k < s.nvols; k++) {
                if (sw[k].before == TREE_FULL)
                    printf("  %s -> %s (old contents in %s)\n", s.vols[k].name, sw[k].dir,
                           sw[k].aside);
                else
                    printf("  %s -> %s\n", s.vols[k].name, sw[k].dir);
            }
            if (s.pg_restore_point)
                printf("  postgresql: recover to restore point \"%s\" (%s) for the same instant\n",
                       s.pg_restore_point, s.pg_lsn ? s.pg_lsn : "?");
        }
    }
out:
    if (sw != NULL) {
        for (size_t k = 0; k < j.ntargets; k++)
            free((char *)sw[k].dir);
        mv_swap_release(sw, j.ntargets);
        free(sw);
    }
    for (size_t k = 0; t != NULL && k < s.nvols; k++)
        durable_sync_close(t[k].sfd);
    free(t);
    free(j.files);
    free(dirs);
    free(version);
    free(j.reading);
    free(j.is_reading);
    cas_set_free(j.damaged);
    progress_release(&j.pg);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    storage_lock_release(lk);
    if (loaded)
        mv_snapshot_release(&s);
    repo_free(rp);
    return ret;
}
