/*
 * ahead.c -- ragsafe-archive's look-ahead: archive other ready segments in parallel
 * and record the confirmed ones; see archive.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "common.h"
#include "log.h"
#include "walname.h"

#define AHEAD_MAX_THREADS 16

struct ahead {
    char *loc;
    char wal_dir[PATH_MAX];
    object_opts oo;
    char **names;         /* the queue */
    size_t n, next;
    pthread_mutex_t mu;
    pthread_t threads[AHEAD_MAX_THREADS];
    int nthreads;
    int done_ok;
};

/* wal_dir_of -- the directory holding path ("pg_wal/X" -> "pg_wal"; "X" -> "."). */
static void wal_dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == path)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(slash - path), path);
}

/* marker_text -- "inode size mtime_ns\nrepository\n": the file uploaded, and where
 * to (a record never answers for another repository); -1 when it cannot be stat'd. */
static int marker_text(const char *path, const char *loc, char *out, size_t n)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    snprintf(out, n, "%ju %jd %jd.%09ld\n%s\n", (uintmax_t)sb.st_ino, (intmax_t)sb.st_size,
             (intmax_t)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, loc);
    return 0;
}

/* read_marker -- the marker's text into out; -1 when there is none. */
static int read_marker(const char *marker, char *out, size_t n)
{
    int fd = open(marker, O_RDONLY | O_CLOEXEC);
    ssize_t got;

    if (fd < 0)
        return -1;
    got = read(fd, out, n - 1);
    close(fd);
    if (got <= 0)
        return -1;
    out[got] = '\0';
    return 0;
}

int ahead_consume(const char *path, const char *name, const char *loc)
{
    char dir[PATH_MAX], marker[PATH_MAX + 64], want[PATH_MAX + 128], got[PATH_MAX + 128];
    int ret = 0;

    wal_dir_of(path, dir, sizeof(dir));
    snprintf(marker, sizeof(marker), "%s/%s/%s.done", dir, AHEAD_DIR, name);
    if (read_marker(marker, got, sizeof(got)) != 0)
        return 0;
    /* the file PostgreSQL hands us must be the one that was uploaded, to this
     * repository */
    if (marker_text(path, loc, want, sizeof(want)) == 0 && strcmp(want, got) == 0)
        ret = 1;
    else
        log_debug("ignoring the look-ahead record of \"%s\": another file or repository", name);
    (void)unlink(marker);
    return ret;
}

/* record -- the marker of a confirmed upload (temp + rename: whole or absent). */
static void record(const ahead *a, const char *name, const char *path)
{
    char marker[PATH_MAX + 64], tmp[PATH_MAX + 80], id[PATH_MAX + 128];
    int fd, written;

    if (marker_text(path, a->loc, id, sizeof(id)) != 0)
        return;
    snprintf(marker, sizeof(marker), "%s/%s/%s.done", a->wal_dir, AHEAD_DIR, name);
    snprintf(tmp, sizeof(tmp), "%s/%s/.%s.tmp", a->wal_dir, AHEAD_DIR, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    /* close on every path: a failed or short write (ENOSPC) must not leak the fd */
    written = write(fd, id, strlen(id)) == (ssize_t)strlen(id);
    if (close(fd) != 0)
        written = 0;
    if (!written || rename(tmp, marker) != 0)
        (void)unlink(tmp);
}

static void *worker(void *arg)
{
    ahead *a = arg;
    uring *ur = uring_new_opt_in(16); /* as main.c's, for the same reason */
    repo *r = NULL;

    if (!ur)
        return NULL;
    for (;;) {
        char path[PATH_MAX + 64];
        const char *name;
        int status;

        pthread_mutex_lock(&a->mu);
        name = a->next < a->n ? a->names[a->next++] : NULL;
        pthread_mutex_unlock(&a->mu);
        if (!name)
            break;
        snprintf(path, sizeof(path), "%s/%s", a->wal_dir, name);
        status = archive_file(a->loc, &r, ur, path, name, &a->oo);
        if (status == EXIT_OK) {
            record(a, name, path);
            pthread_mutex_lock(&a->mu);
            a->done_ok++;
            pthread_mutex_unlock(&a->mu);
        } else {
            /* PostgreSQL will ask for it; that call reports and decides */
            log_debug("look-ahead: \"%s\" not archived (status %d)", name, status);
        }
    }
    repo_free(r);
    uring_free(ur);
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

ahead *ahead_start(const char *loc, const char *path, const char *name,
                   const object_opts *oo, int workers)
{
    char status_dir[PATH_MAX + 32], mdir[PATH_MAX + 32], f[PATH_MAX + 128], text[PATH_MAX + 128];
    ahead *a = calloc(1, sizeof(*a));
    DIR *d = NULL;
    struct dirent *de;
    size_t cap = 0, want;

    if (!a)
        return NULL;
    pthread_mutex_init(&a->mu, NULL);
    if (workers > AHEAD_MAX_THREADS)
        workers = AHEAD_MAX_THREADS;
    want = (size_t)workers * AHEAD_QUEUE;
    wal_dir_of(path, a->wal_dir, sizeof(a->wal_dir));
    snprintf(status_dir, sizeof(status_dir), "%s/archive_status", a->wal_dir);
    snprintf(mdir, sizeof(mdir), "%s/%s", a->wal_dir, AHEAD_DIR);
    if (mkdir(mdir, 0700) != 0 && errno != EEXIST)
        goto none;
    d = opendir(status_dir);
    if (!d)
        goto none;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char seg[64];
        if (l != 24 + 6 || strcmp(de->d_name + 24, ".ready") != 0)
            continue;
        memcpy(seg, de->d_name, 24);
        seg[24] = '\0';
        if (strcmp(seg, name) == 0 || walname_classify(seg) != WALFILE_SEGMENT)
            continue;
        snprintf(f, sizeof(f), "%s/%s.done", mdir, seg);
        if (read_marker(f, text, sizeof(text)) == 0) {
            const char *nl = strchr(text, '\n');
            if (nl && strncmp(nl + 1, loc, strlen(loc)) == 0 && nl[1 + strlen(loc)] == '\n')
                continue; /* done ahead already; PostgreSQL has yet to ask */
            (void)unlink(f); /* a record for another repository */
        }
        if (a->n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = realloc(a->names, nc * sizeof(char *));
            if (!nn)
                break;
            a->names = nn;
            cap = nc;
        }
        if (!(a->names[a->n] = strdup(seg)))
            break;
        a->n++;
    }
    closedir(d);
    d = NULL;
    /* markers whose segment PostgreSQL no longer lists as ready are stale */
    if ((d = opendir(mdir)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            struct stat sb;
            if (l != 24 + 5 || strcmp(de->d_name + 24, ".done") != 0)
                continue;
            snprintf(f, sizeof(f), "%s/%.24s.ready", status_dir, de->d_name);
            if (stat(f, &sb) != 0 && errno == ENOENT) {
                (void)unlinkat(dirfd(d), de->d_name, 0);
            }
        }
        closedir(d);
        d = NULL;
    }
    if (a->n == 0)
        goto none;
    /* PostgreSQL archives the oldest first: those are the next calls */
    qsort(a->names, a->n, sizeof(char *), cmp_names);
    if (a->n > want) {
        for (size_t i = want; i < a->n; i++)
            free(a->names[i]);
        a->n = want;
    }
    if (!(a->loc = strdup(loc)))
        goto none;
    a->oo = *oo;
    a->oo.workers = 0; /* the parallelism is the threads */
    for (int i = 0; i < workers && (size_t)i < a->n; i++) {
        if (pthread_create(&a->threads[i], NULL, worker, a) != 0)
            break;
        a->nthreads++;
    }
    if (a->nthreads == 0)
        goto none;
    log_debug("look-ahead: archiving %zu more ready segments with %d threads", a->n,
              a->nthreads);
    return a;
none:
    if (d)
        closedir(d);
    ahead_finish(a);
    return NULL;
}

void ahead_finish(ahead *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->nthreads; i++)
        pthread_join(a->threads[i], NULL);
    if (a->nthreads)
        log_debug("look-ahead: %d of %zu segments archived ahead", a->done_ok, a->n);
    for (size_t i = 0; i < a->n; i++)
        free(a->names[i]);
    free(a->names);
    free(a->loc);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
