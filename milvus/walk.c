/*
 * walk.c -- one volume's tree as a list of entries, in pre-order with each directory's
 * names sorted (deterministic manifests; a parent always precedes its children).
 * Symbolic links are recorded, never followed. Sockets, FIFOs and device nodes have
 * no place in a Milvus volume: they are skipped with a warning.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "milvus.h"

static int64_t mv_ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static int mv_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* mv_walk_dir -- add the entries of directory dfd (relative path rel, "" for the root),
 * recursing into subdirectories. Consumes dfd. */
static int mv_walk_dir(mv_volume *v, int dfd, const char *rel)
{
    DIR *d = NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int ret = -1;

    if (mv_interrupted()) {
        close(dfd);
        return log_error("interrupted by signal %d", mv_interrupted());
    }
    d = fdopendir(dfd);
    if (d == NULL) {
        log_errno("could not open directory \"%s/%s\"", v->dir, rel);
        close(dfd);
        goto out;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                log_errno("could not read directory \"%s/%s\"", v->dir, rel);
                goto out;
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof(*p));
            if (p == NULL) {
                log_errno("could not allocate");
                goto out;
            }
            names = p;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), mv_name_cmp);

    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        mv_entry e = {0};
        size_t plen = strlen(rel) + strlen(names[i]) + 2;

        if (fstatat(dirfd(d), names[i], &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            log_errno("could not stat \"%s/%s%s%s\"", v->dir, rel, rel[0] ? "/" : "",
                      names[i]);
            goto out;
        }
        e.path = malloc(plen);
        if (e.path == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        snprintf(e.path, plen, "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
        e.mode = sb.st_mode & 07777;
        e.uid = sb.st_uid;
        e.gid = sb.st_gid;
        e.mtime_ns = mv_ts_ns(&sb.st_mtim);
        e.ctime_ns = mv_ts_ns(&sb.st_ctim);
        e.ino = sb.st_ino;
        if (S_ISREG(sb.st_mode)) {
            e.type = MV_FILE;
            e.size = (uint64_t)sb.st_size;
        } else if (S_ISDIR(sb.st_mode)) {
            e.type = MV_DIR;
        } else if (S_ISLNK(sb.st_mode)) {
            char buf[4096];
            ssize_t l = readlinkat(dirfd(d), names[i], buf, sizeof(buf) - 1);
            if (l < 0) {
                log_errno("could not read symbolic link \"%s/%s\"", v->dir, e.path);
                free(e.path);
                goto out;
            }
            buf[l] = '\0';
            e.type = MV_LINK;
            e.target = strdup(buf);
            if (e.target == NULL) {
                log_errno("could not allocate");
                free(e.path);
                goto out;
            }
        } else {
            log_warning("skipping \"%s/%s\": not a regular file, directory or symbolic link",
                        v->dir, e.path);
            free(e.path);
            continue;
        }
        if (mv_volume_add(v, &e) != 0) {
            free(e.path);
            free(e.target);
            goto out;
        }
        if (e.type == MV_DIR) {
            /* e.path lives on in v->entries; v->entries may move, so copy the name */
            char *sub = strdup(e.path);
            if (sub == NULL) {
                log_errno("could not allocate");
                goto out;
            }
            int fd = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                log_errno("could not open directory \"%s/%s\"", v->dir, sub);
                free(sub);
                goto out;
            }
            int r = mv_walk_dir(v, fd, sub);
            free(sub);
            if (r != 0)
                goto out;
        }
    }
    ret = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d != NULL)
        closedir(d);
    return ret;
}

int mv_walk_volume(mv_volume *v)
{
    struct stat sb;
    int fd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return log_errno("could not open volume \"%s\" directory \"%s\"", v->name, v->dir);
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return log_errno("could not stat \"%s\"", v->dir);
    }
    v->mode = sb.st_mode & 07777;
    v->uid = sb.st_uid;
    v->gid = sb.st_gid;
    v->mtime_ns = mv_ts_ns(&sb.st_mtim);
    return mv_walk_dir(v, fd, "");
}
