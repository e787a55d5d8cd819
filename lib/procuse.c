/*
 * procuse.c -- live processes using a directory (see procuse.h).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "procuse.h"

/* procuse_ppid -- parent of pid from /proc/<pid>/stat, 0 when unknown */
static pid_t procuse_ppid(pid_t pid)
{
    char path[64], buf[1024], *p;
    FILE *f;
    size_t n;
    long ppid = 0;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid": comm may hold spaces and ')', take the last ')' */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

static void procuse_comm(pid_t pid, char *out, size_t outlen)
{
    char path[64];
    FILE *f;

    snprintf(out, outlen, "?");
    snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return;
    if (fgets(out, (int)outlen, f) == NULL)
        snprintf(out, outlen, "?");
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* procuse_under -- the directory of dirs[] that link (a /proc link's text) lies in */
static const char *procuse_under(const char *link, char *const *dirs, size_t ndirs)
{
    for (size_t i = 0; i < ndirs; i++) {
        size_t l = strlen(dirs[i]);
        if (strncmp(link, dirs[i], l) == 0 &&
            (link[l] == '\0' || link[l] == '/' || strcmp(dirs[i], "/") == 0))
            return dirs[i];
    }
    return NULL;
}

/* procuse_pid -- 1 when pid uses one of dirs (reported), 0 when not */
static int procuse_pid(pid_t pid, char *const *dirs, size_t ndirs)
{
    static const char *const what[] = {"cwd", "root"};
    char path[96], link[PATH_MAX], comm[64];
    const char *dir = NULL, *how = NULL;
    ssize_t n;
    DIR *d;
    struct dirent *de;

    for (int i = 0; i < 2 && dir == NULL; i++) {
        snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, what[i]);
        n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        dir = procuse_under(link, dirs, ndirs);
        how = i == 0 ? "its working directory" : "its root directory";
    }
    if (dir == NULL) {
        snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
        d = opendir(path);
        while (d != NULL && dir == NULL && (de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/%ld/fd/%.20s", (long)pid, de->d_name);
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            dir = procuse_under(link, dirs, ndirs);
            how = "an open file";
        }
        if (d != NULL)
            closedir(d);
    }
    if (dir == NULL)
        return 0;
    procuse_comm(pid, comm, sizeof(comm));
    log_error("\"%s\" is in use by process %ld (%s): %s \"%s\"", dir, (long)pid, comm, how, link);
    return 1;
}

int procuse_check(const char *const *dirs, size_t ndirs)
{
    char **real = calloc(ndirs + 1, sizeof(*real));
    pid_t skip[64];
    size_t nskip = 0;
    DIR *d = NULL;
    struct dirent *de;
    int found = 0;

    if (real == NULL)
        return log_errno("could not allocate");
    /* /proc links show resolved paths: compare with the resolved directory */
    for (size_t i = 0; i < ndirs; i++) {
        real[i] = realpath(dirs[i], NULL);
        if (real[i] == NULL)
            real[i] = strdup(dirs[i]);
        if (real[i] == NULL) {
            found = log_errno("could not allocate");
            goto out;
        }
    }
    for (pid_t p = getpid(); p > 1 && nskip < sizeof(skip) / sizeof(skip[0]); p = procuse_ppid(p))
        skip[nskip++] = p;
    d = opendir("/proc");
    if (d == NULL) {
        found = log_errno("could not read \"/proc\" to find processes using the restore targets");
        goto out;
    }
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        int self = 0;
        if (*end != '\0' || pid <= 0)
            continue;
        for (size_t i = 0; i < nskip; i++)
            self |= (skip[i] == (pid_t)pid);
        if (!self)
            found += procuse_pid((pid_t)pid, real, ndirs);
    }
out:
    if (d != NULL)
        closedir(d);
    for (size_t i = 0; i < ndirs; i++)
        free(real[i]);
    free(real);
    return found;
}
