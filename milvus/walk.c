/*
 * walk.c -- one volume's tree as a list of entries, in pre-order with each directory's
 * names sorted (deterministic manifests; a parent always precedes its children), by
 * lib/walk.h's walker.
 * Symbolic links are recorded, never followed. Sockets, FIFOs and device nodes have
 * no place in a Milvus volume: they are skipped with a warning (lib/tree.h, the rules
 * ragsafe-files walks by too).
 */
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
#include "tree.h"
#include "walk.h"

static int64_t mv_ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

/* mv_walk_entry -- one entry below the volume's root into v (walk.h's callback) */
static int mv_walk_entry(void *arg, const walk_entry *w)
{
    mv_volume *v = arg;
    const struct stat *sb = w->st;
    mv_entry e = {0};

    if (mv_interrupted())
        return log_error("interrupted by signal %d", mv_interrupted());
    e.type = tree_entry_kind(sb, v->dir, w->rel);
    if (e.type < 0)
        return 0; /* skipped, warned */
    e.path = strdup(w->rel);
    if (e.path == NULL) {
        log_errno("could not allocate");
        return -1;
    }
    e.mode = sb->st_mode & 07777;
    e.uid = sb->st_uid;
    e.gid = sb->st_gid;
    e.mtime_ns = mv_ts_ns(&sb->st_mtim);
    e.ctime_ns = mv_ts_ns(&sb->st_ctim);
    e.ino = sb->st_ino;
    if (e.type == MV_FILE)
        e.size = (uint64_t)sb->st_size;
    if (e.type == MV_LINK && tree_read_link(w->dirfd, w->name, v->dir, e.path, &e.target) != 0) {
        free(e.path);
        return -1;
    }
    if (mv_volume_add(v, &e) != 0) {
        free(e.path);
        free(e.target);
        return -1;
    }
    return 0;
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
    if (mv_interrupted()) {
        close(fd);
        return log_error("interrupted by signal %d", mv_interrupted());
    }
    return walk_dir(fd, v->dir, mv_walk_entry, v);
}
