/*
 * walk.c -- the sorted pre-order directory walker (see walk.h).
 */
#include "walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* read_names -- the names in d except . and .., sorted; *out malloc'd (with each name). */
static int read_names(DIR *d, const char *root, const char *rel, char ***out, size_t *nout)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;

    for (;;) {
        errno = 0;
        if ((de = readdir(d)) == NULL) {
            if (errno == 0)
                break;
            log_errno("could not read directory \"%s%s%s\"", root, rel[0] ? "/" : "", rel);
            goto fail;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            char **v = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*v));
            if (!v) {
                log_error("out of memory");
                goto fail;
            }
            names = v;
        }
        if (!(names[n] = strdup(de->d_name))) {
            log_error("out of memory");
            goto fail;
        }
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    *out = names;
    *nout = n;
    return 0;
fail:
    while (n)
        free(names[--n]);
    free(names);
    return -1;
}

/* walk_level -- the entries of dfd (path rel below root, "" for the root); consumes dfd */
static int walk_level(int dfd, const char *root, const char *rel, walk_fn fn, void *arg)
{
    DIR *d = fdopendir(dfd);
    char **names = NULL, *child = NULL;
    size_t n = 0;
    int ret = -1;

    if (!d) {
        log_errno("could not open directory \"%s%s%s\"", root, rel[0] ? "/" : "", rel);
        close(dfd);
        return -1;
    }
    if (read_names(d, root, rel, &names, &n) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        walk_entry e;
        int r;

        free(child);
        if (asprintf(&child, "%s%s%s", rel, rel[0] ? "/" : "", names[i]) < 0) {
            child = NULL;
            log_error("out of memory");
            goto out;
        }
        if (fstatat(dirfd(d), names[i], &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            log_errno("could not stat \"%s/%s\"", root, child);
            goto out;
        }
        e = (walk_entry){.rel = child, .name = names[i], .st = &sb, .dirfd = dirfd(d)};
        if ((r = fn(arg, &e)) < 0)
            goto out;
        if (S_ISDIR(sb.st_mode) && r != WALK_PRUNE) {
            int fd = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                log_errno("could not open directory \"%s/%s\"", root, child);
                goto out;
            }
            if (walk_level(fd, root, child, fn, arg) != 0)
                goto out;
        }
    }
    ret = 0;
out:
    free(child);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return ret;
}

int walk_dir(int dfd, const char *root, walk_fn fn, void *arg)
{
    return walk_level(dfd, root, "", fn, arg);
}
