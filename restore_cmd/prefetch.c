/*
 * prefetch.c -- ragsafe-restore fetches the next segments in parallel; see restore.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "restore.h"
#include "sha256.h"
#include "walname.h"
#include "walspool.h"

#define PREFETCH_MAX 16

struct prefetch {
    char *loc;
    char spool[PATH_MAX];
    repo_info info;
    char names[PREFETCH_MAX][32];
    int n, next, ok;
    pthread_mutex_t mu;
    pthread_t threads[PREFETCH_MAX];
    int nthreads;
};

static void spool_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, "%s", PREFETCH_DIR);
    else
        snprintf(out, n, "%.*s/%s", (int)(slash - path), path, PREFETCH_DIR);
}

/* file_sum -- "<sha256 hex> <size>\n" of a file; -1 when it cannot be read. */
static int file_sum(const char *path, char *out, size_t n)
{
    uint8_t buf[1 << 16], d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256_ctx c = {0};
    uint64_t size = 0;
    ssize_t got;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret = -1;

    if (fd < 0)
        return -1;
    if (sha256_init(&c) != 0)
        goto out;
    while ((got = read(fd, buf, sizeof(buf))) > 0) {
        if (sha256_update(&c, buf, (size_t)got) != 0)
            goto out;
        size += (uint64_t)got;
    }
    if (got < 0 || sha256_final(&c, d) != 0)
        goto out;
    sha256_to_hex(d, hex);
    snprintf(out, n, "%s %ju\n", hex, (uintmax_t)size);
    ret = 0;
out:
    sha256_release(&c);
    close(fd);
    return ret;
}

/*
 * prefetch_take -- a spooled copy is used only if it is still what was verified when
 * it was fetched or handed over (X.sum, written before X; the format is walspool.h's).
 * Spool files are not fsync'd, so only the same boot vouches for their contents: when
 * the file is the one written (same inode, size and mtime) and the machine has not
 * restarted since, it is taken as is; otherwise (a crash in between, a file replaced
 * or written to) it is re-hashed, and a copy that no longer hashes to the record is
 * removed and the call fetches from the repository.
 */
int prefetch_take(const char *path, const char *name)
{
    char spool[PATH_MAX], f[PATH_MAX + 64], sum[PATH_MAX + 64], want[512], got[128], id[128];
    char hid[96];
    const char *handover = NULL;
    ssize_t n;
    int fd, ok = 0;

    spool_of(path, spool, sizeof(spool));
    snprintf(f, sizeof(f), "%s/%s", spool, name);
    snprintf(sum, sizeof(sum), "%s/%s.sum", spool, name);
    fd = open(sum, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        (void)unlink(f); /* no record, no use */
        return 0;
    }
    n = read(fd, want, sizeof(want) - 1);
    close(fd);
    if (n > 0) {
        char *nl, *h;
        want[n] = '\0';
        /* "handover <restore id>": the plan of ragsafe-pitr restore verified it */
        if ((h = strstr(want, "\nhandover ")) != NULL) {
            snprintf(hid, sizeof(hid), "%.*s", (int)strcspn(h + 1, "\n"), h + 1);
            handover = hid;
        }
        nl = strchr(want, '\n');
        if (nl && nl[1] && walspool_identity_like(f, nl + 1, id, sizeof(id)) == 0 &&
            strncmp(nl + 1, id, strlen(id)) == 0 &&
            nl[1 + strlen(id)] == '\n') {
            ok = 1; /* the very file verified, this boot */
        } else if (nl) {
            nl[1] = '\0';
            ok = file_sum(f, got, sizeof(got)) == 0 && strcmp(want, got) == 0;
        }
    }
    if (ok && rename(f, path) == 0) {
        (void)unlink(sum);
        if (handover)
            log_info("restored \"%s\" from the WAL ragsafe-pitr restore verified (%s)", name,
                     handover);
        else
            log_info("restored \"%s\" from the prefetched copy", name);
        return 1;
    }
    if (n > 0 && !ok)
        log_warning("ignoring the %s copy of \"%s\": it changed since it was verified",
                    handover ? "handed-over" : "prefetched", name);
    (void)unlink(f);
    (void)unlink(sum);
    return 0;
}

static void fetch_one(prefetch *p, repo *r, const char *name)
{
    char key[128], tmp[PATH_MAX + 64], dst[PATH_MAX + 64], hex[SHA256_HEX_LEN + 1];
    zst_meta m;
    int fd, ret;

    if (repo_wal_key(name, key, sizeof(key)) != 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", p->spool, name);
    snprintf(dst, sizeof(dst), "%s/%s", p->spool, name);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ret = object_get_fd(r->st, key, fd, &m);
    if (ret == 0)
        ret = restore_check_segment(fd, tmp, name, m.raw_size, r->st, &p->info);
    if (close(fd) != 0)
        ret = -1;
    /* the verified digest first, then the file: a spooled file is never without it */
    if (ret == 0) {
        char id[128];
        sha256_to_hex(m.sha256, hex);
        if (walspool_identity(tmp, 0, id, sizeof(id)) != 0) /* renamed next: no ctime */
            id[0] = '\0';
        ret = walspool_write_sum(p->spool, name, hex, m.raw_size, id, NULL);
    }
    if (ret == 0 && rename(tmp, dst) == 0) {
        pthread_mutex_lock(&p->mu);
        p->ok++;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    (void)unlink(tmp);
}

static void *worker(void *arg)
{
    prefetch *p = arg;
    uring *ur = uring_new(16);
    repo *r = ur ? repo_open(p->loc, ur, 0) : NULL;

    for (;;) {
        const char *name;
        pthread_mutex_lock(&p->mu);
        name = p->next < p->n ? p->names[p->next++] : NULL;
        pthread_mutex_unlock(&p->mu);
        if (!name || !r)
            break;
        fetch_one(p, r, name);
    }
    repo_free(r);
    uring_free(ur);
    return NULL;
}

prefetch *prefetch_start(const char *loc, const char *path, const char *name,
                         const repo_info *info, int k)
{
    prefetch *p = calloc(1, sizeof(*p));
    uint32_t tli;
    uint64_t segno;
    DIR *d;
    struct dirent *de;

    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    if (k > PREFETCH_MAX)
        k = PREFETCH_MAX;
    if (!info->seg_size || walname_parse(name, info->seg_size, &tli, &segno) != 0)
        goto none;
    spool_of(path, p->spool, sizeof(p->spool));
    if (mkdir(p->spool, 0700) != 0 && errno != EEXIST)
        goto none;
    /* spooled segments before this one will not be asked for any more; temp files
     * are a killed run's */
    if ((d = opendir(p->spool)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            char f[PATH_MAX + 300];
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            /* X or X.sum; the last 16 hex digits of X are the position, whatever
             * the timeline */
            size_t l = strlen(de->d_name);
            if (de->d_name[0] == '.' || (l != 24 && (l != 28 || strcmp(de->d_name + 24, ".sum"))) ||
                strncmp(de->d_name + 8, name + 8, 16) <= 0) {
                snprintf(f, sizeof(f), "%s/%s", p->spool, de->d_name);
                (void)unlink(f);
            }
        }
        closedir(d);
    }
    for (int i = 1; i <= k; i++) {
        char f[PATH_MAX + 64];
        struct stat sb;
        walname_format(p->names[p->n], tli, segno + (uint64_t)i, info->seg_size);
        snprintf(f, sizeof(f), "%s/%s", p->spool, p->names[p->n]);
        if (stat(f, &sb) == 0)
            continue; /* spooled by an earlier call */
        p->n++;
    }
    if (p->n == 0 || !(p->loc = strdup(loc)))
        goto none;
    p->info = *info;
    for (int i = 0; i < p->n && i < PREFETCH_THREADS; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0)
        goto none;
    return p;
none:
    prefetch_finish(p);
    return NULL;
}

/* is_handover -- the spool's record for base (base.sum) says ragsafe-pitr restore
 * handed the file over */
static int is_handover(const char *spool, const char *base)
{
    char sum[PATH_MAX + 300], buf[512];
    ssize_t n;
    int fd;

    snprintf(sum, sizeof(sum), "%s/%s.sum", spool, base);
    fd = open(sum, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strstr(buf, "\nhandover ") != NULL;
}

void prefetch_clear(const char *path, int keep_handover)
{
    char spool[PATH_MAX], f[PATH_MAX + 300], base[NAME_MAX + 1];
    DIR *d;
    struct dirent *de;

    spool_of(path, spool, sizeof(spool));
    d = opendir(spool);
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        /* X and X.sum stay together when X was handed over */
        snprintf(base, sizeof(base), "%.*s",
                 (int)(len > 4 && strcmp(de->d_name + len - 4, ".sum") == 0 ? len - 4 : len),
                 de->d_name);
        if (keep_handover && is_handover(spool, base))
            continue;
        snprintf(f, sizeof(f), "%s/%s", spool, de->d_name);
        (void)unlink(f);
    }
    closedir(d);
    (void)rmdir(spool); /* only when empty */
}

void prefetch_finish(prefetch *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->nthreads)
        log_debug("prefetch: %d of %d segments spooled", p->ok, p->n);
    free(p->loc);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
