/*
 * durable.c -- temp file, fsync, rename, fsync directory; see durable.h.
 */
#include "durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

struct durable_file {
    char *path;
    char *tmp;
    int fd;
    int committed;
    uring *ur;
    uring *own_ur;       /* a fallback ring made when the caller passed none */
    uring_writer *w;
};

/* Split path into its directory (malloc'd) and base name pointer. */
static char *dir_of(const char *path)
{
    char *copy = strdup(path), *d;
    if (!copy)
        return NULL;
    d = strdup(dirname(copy));
    free(copy);
    return d;
}

int durable_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return log_errno("could not open \"%s\" to fsync it", path);
    if (fsync(fd) != 0)
        ret = log_errno("could not fsync \"%s\"", path);
    close(fd);
    return ret;
}

/*
 * open_temp -- create or take over "<dir>/.<name>.tmp" under an exclusive flock.
 * A temp left by a dead writer is truncated and reused (no litter after kill -9).
 * After locking, the path must still name the inode we hold (the previous holder may
 * have renamed it into place meanwhile). When a live writer holds that name, take a
 * private one instead, "<dir>/.<name>.<pid>.<n>.tmp": both writers go on, and the
 * no-replace rename at commit decides which content wins.
 */
static int open_temp(char *tmp, size_t tmpcap, size_t dirlen, const char *base, mode_t mode)
{
    static unsigned counter;

    for (int attempt = 0; attempt < 10; attempt++) {
        struct stat a, b;
        int fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
            return log_errno("could not create \"%s\"", tmp);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            close(fd);
            if (err != EWOULDBLOCK) {
                errno = err;
                return log_errno("could not lock \"%s\"", tmp);
            }
            snprintf(tmp + dirlen, tmpcap - dirlen, ".%s.%ld.%u.tmp", base, (long)getpid(), counter++);
            fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
            if (fd < 0)
                return log_errno("could not create \"%s\"", tmp);
            if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
                log_errno("could not lock \"%s\"", tmp);
                unlink(tmp);
                close(fd);
                return -1;
            }
            return fd;
        }
        if (fstat(fd, &a) == 0 && stat(tmp, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            if (ftruncate(fd, 0) != 0) {
                log_errno("could not truncate \"%s\"", tmp);
                close(fd);
                return -1;
            }
            return fd;
        }
        close(fd);
    }
    return log_error("could not create \"%s\": it keeps changing under us", tmp);
}

durable_file *durable_open(const char *path, uring *ur, mode_t mode)
{
    durable_file *f = calloc(1, sizeof(*f));
    const char *base = strrchr(path, '/');
    size_t dirlen, tmpcap;

    if (!f) {
        log_error("out of memory");
        return NULL;
    }
    f->fd = -1;
    base = base ? base + 1 : path;
    dirlen = (size_t)(base - path);
    f->path = strdup(path);
    tmpcap = strlen(path) + 48;
    f->tmp = malloc(tmpcap);
    if (!f->path || !f->tmp) {
        log_error("out of memory");
        goto fail;
    }
    sprintf(f->tmp, "%.*s.%s.tmp", (int)dirlen, path, base);
    f->fd = open_temp(f->tmp, tmpcap, dirlen, base, mode ? mode : 0640);
    if (f->fd < 0)
        goto fail;
    if (!ur) {
        ur = f->own_ur = uring_new_plain();
        if (!ur) {
            log_error("out of memory");
            goto fail;
        }
    }
    f->ur = ur;
    f->w = uring_writer_new(ur, f->fd, 1 << 20, 4);
    if (!f->w) {
        log_error("out of memory");
        goto fail;
    }
    return f;
fail:
    durable_free(f);
    return NULL;
}

int durable_write(durable_file *f, const void *buf, size_t len)
{
    int ret = uring_writer_write(f->w, buf, len);
    if (ret < 0)
        return log_errnum(ret, "could not write \"%s\"", f->tmp);
    return 0;
}

uint64_t durable_size(const durable_file *f) { return uring_writer_offset(f->w); }

/* -1: not decided yet; 1: behave as a file system without RENAME_NOREPLACE */
static atomic_int no_noreplace = -1;

void durable_set_no_rename_noreplace(int on)
{
    atomic_store(&no_noreplace, on ? 1 : 0);
}

static int noreplace_unsupported(void)
{
    int v = atomic_load(&no_noreplace);

    if (v < 0) {
        const char *e = getenv("RAGSAFE_NO_RENAME_NOREPLACE");
        v = e && strcmp(e, "1") == 0;
        atomic_store(&no_noreplace, v);
    }
    return v;
}

/*
 * durable_rename_noreplace -- the commit of everything that must never replace an
 * existing name. renameat2(RENAME_NOREPLACE) where the file system has it; NFS, many
 * FUSE file systems and some others answer EINVAL (ENOSYS on old kernels). Then:
 *  - a file: link(2) refuses an existing name just as atomically; the old name is
 *    unlinked afterwards (a crash in between leaves a temp name behind, which the
 *    next writer takes over or a listing skips, never a missing object);
 *  - a directory cannot be linked: check that the new name is absent, then rename(2).
 *    That is not atomic (rename(2) replaces an empty directory, and a name can appear
 *    between the check and the rename), the best POSIX offers; the callers that
 *    rename directories (the .partial -> final commit of a backup) hold the
 *    repository's exclusive backup lock, so no other ragsafe writer makes that name
 *    meanwhile.
 */
int durable_rename_noreplace(const char *oldpath, const char *newpath)
{
    struct stat st;

    if (!noreplace_unsupported()) {
        if (renameat2(AT_FDCWD, oldpath, AT_FDCWD, newpath, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EEXIST || errno == ENOTEMPTY)
            return RS_EXISTS;
        if (errno != EINVAL && errno != ENOSYS)
            return log_errno("could not rename \"%s\" to \"%s\"", oldpath, newpath);
    }
    if (lstat(oldpath, &st) != 0)
        return log_errno("could not rename \"%s\" to \"%s\"", oldpath, newpath);
    if (!S_ISDIR(st.st_mode)) {
        if (link(oldpath, newpath) != 0) {
            if (errno == EEXIST)
                return RS_EXISTS;
            return log_errno("could not link \"%s\" to \"%s\"", oldpath, newpath);
        }
        if (unlink(oldpath) != 0)
            log_warning("could not remove \"%s\" after linking it to \"%s\": %s", oldpath, newpath,
                        strerror(errno));
        return 0;
    }
    if (lstat(newpath, &st) == 0)
        return RS_EXISTS;
    if (errno != ENOENT)
        return log_errno("could not stat \"%s\"", newpath);
    if (rename(oldpath, newpath) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            return RS_EXISTS;
        return log_errno("could not rename \"%s\" to \"%s\"", oldpath, newpath);
    }
    return 0;
}

int durable_commit(durable_file *f, int flags)
{
    char *dir = NULL;
    int ret, dfd = -1;

    ret = uring_writer_finish(f->w, 1);
    if (ret < 0)
        return log_errnum(ret, "could not write \"%s\"", f->tmp);
    if (flags & DURABLE_NOREPLACE) {
        ret = durable_rename_noreplace(f->tmp, f->path);
        if (ret != 0)
            return ret; /* RS_EXISTS: durable_free removes the temp */
    } else if (rename(f->tmp, f->path) != 0) {
        return log_errno("could not rename \"%s\" to \"%s\"", f->tmp, f->path);
    }
    f->committed = 1;
    dir = dir_of(f->path);
    if (!dir)
        return log_error("out of memory");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        ret = log_errno("could not open directory \"%s\"", dir);
    } else if ((ret = uring_fsync(f->ur, dfd)) < 0) {
        ret = log_errnum(ret, "could not fsync directory \"%s\"", dir);
    }
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return ret < 0 ? -1 : 0;
}

void durable_free(durable_file *f)
{
    if (!f)
        return;
    uring_writer_free(f->w);
    if (f->fd >= 0) {
        if (!f->committed)
            unlink(f->tmp); /* still under our lock: nobody else uses this name */
        close(f->fd);
    }
    uring_free(f->own_ur);
    free(f->path);
    free(f->tmp);
    free(f);
}

int durable_write_file(const char *path, const void *buf, size_t len, mode_t mode, int flags)
{
    durable_file *f = durable_open(path, NULL, mode);
    int ret;

    if (!f)
        return -1;
    ret = durable_write(f, buf, len);
    if (ret == 0)
        ret = durable_commit(f, flags);
    durable_free(f);
    return ret;
}

int durable_mkdirs(const char *path, mode_t mode)
{
    return durable_mkdirs_owned(path, mode, (uid_t)-1, (gid_t)-1);
}

int durable_fchown(durable_file *f, uid_t uid, gid_t gid)
{
    if (uid == (uid_t)-1 || fchown(f->fd, uid, gid) == 0)
        return 0;
    return log_errno("could not change the owner of \"%s\"", f->tmp);
}

int durable_mkdirs_owned(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    char buf[PATH_MAX];
    struct stat st;
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return log_error("invalid directory path \"%s\"", path);
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
        return log_errno("could not create directory \"%s\"", path);
    }
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    /* Create each missing component, then fsync its parent so the new entry lasts. */
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) == 0) {
                char *parent = dir_of(buf);
                int ret = parent ? 0 : log_error("out of memory");
                if (ret == 0 && uid != (uid_t)-1 && chown(buf, uid, gid) != 0)
                    ret = log_errno("could not change the owner of \"%s\"", buf);
                if (ret == 0)
                    ret = durable_fsync_path(parent);
                free(parent);
                if (ret != 0)
                    return -1;
            } else if (errno != EEXIST) {
                return log_errno("could not create directory \"%s\"", buf);
            } else if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                errno = ENOTDIR;
                return log_errno("could not create directory \"%s\"", buf);
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

int durable_rename(const char *oldpath, const char *newpath)
{
    char *od = NULL, *nd = NULL;
    int ret = -1;

    if (rename(oldpath, newpath) != 0)
        return log_errno("could not rename \"%s\" to \"%s\"", oldpath, newpath);
    od = dir_of(oldpath);
    nd = dir_of(newpath);
    if (!od || !nd) {
        log_error("out of memory");
        goto out;
    }
    if (durable_fsync_path(nd) != 0)
        goto out;
    if (strcmp(od, nd) != 0 && durable_fsync_path(od) != 0)
        goto out;
    ret = 0;
out:
    free(od);
    free(nd);
    return ret;
}

/*
 * Why one syncfs(2) is as durable as an fsync of every file and directory, for a set of
 * files written at once (PostgreSQL's recovery_init_sync_method = syncfs makes the same
 * argument for a data directory):
 * - syncfs writes back every dirty page and inode of the file system and waits for it,
 *   and on journalling file systems (ext4, xfs) commits the journal: file contents,
 *   sizes, directory entries and new directories are then on disk, as after fsyncing
 *   each file and each directory.
 * - It reports failures: since Linux 5.8 syncfs returns a writeback error recorded on
 *   the file system (errseq) since its file descriptor was opened, so the descriptor is
 *   opened before the first write of the set (durable_sync_open), and an error while
 *   the kernel wrote back any of the files in between fails the sync. Older kernels
 *   return 0 whatever happened: there durable_sync_open returns -1 and the tree is
 *   fsync'd file by file.
 * - It covers one file system: a directory below path on another one (a mount point)
 *   is fsync'd file by file; symbolic links are not followed (as durable_fsync_tree).
 * The cost is that it also writes back other dirty data of that file system, which
 * would be written back within seconds anyway; the gain is one wait instead of a
 * journal commit per file (a data directory has a thousand and more).
 */
static int kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;

    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return 0;
    return ma > major || (ma == major && mi >= minor);
}

int durable_sync_open(const char *path)
{
    if (!kernel_at_least(5, 8) || getenv("RAGSAFE_NO_SYNCFS"))
        return -1;
    return open(path, O_RDONLY | O_CLOEXEC);
}

void durable_sync_close(int sfd)
{
    if (sfd >= 0)
        close(sfd);
}

static dev_t g_sync_dev;

/* other_fs -- fsync (file by file) the subtrees of path on another file system. */
static int other_fs(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int ret = 0;

    if (lstat(path, &st) != 0)
        return log_errno("could not stat \"%s\"", path);
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (st.st_dev != g_sync_dev)
        return durable_fsync_tree(path);
    d = opendir(path);
    if (!d)
        return log_errno("could not open directory \"%s\"", path);
    while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
        char child[PATH_MAX];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child)) {
            ret = log_error("path too long under \"%s\"", path);
            break;
        }
        ret = other_fs(child);
    }
    if (ret == 0 && errno != 0)
        ret = log_errno("could not read directory \"%s\"", path);
    closedir(d);
    return ret;
}

int durable_sync_tree(int sfd, const char *path)
{
    struct stat st;

    if (sfd < 0)
        return durable_fsync_tree(path);
    if (fstat(sfd, &st) != 0)
        return log_errno("could not stat the file system of \"%s\"", path);
    g_sync_dev = st.st_dev;
    if (other_fs(path) != 0)
        return -1;
    /* a failure is never retried: the page cache may have dropped the data */
    if (syncfs(sfd) != 0)
        return log_errno("could not sync the file system of \"%s\"", path);
    return 0;
}

static int remove_one(const char *path, int is_dir);

/*
 * walk_tree -- depth-first over path; fn(path, is_dir) after a directory's children.
 * Symbolic links are never followed; with links they are passed to fn as files.
 */
static int walk_tree(const char *path, int (*fn)(const char *, int), int links)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int ret = 0;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT && fn == remove_one)
            return 0;
        return log_errno("could not stat \"%s\"", path);
    }
    if (S_ISLNK(st.st_mode))
        return links ? fn(path, 0) : 0;
    if (!S_ISDIR(st.st_mode))
        return fn(path, 0);
    d = opendir(path);
    if (!d)
        return log_errno("could not open directory \"%s\"", path);
    while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
        char child[PATH_MAX];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) >= (int)sizeof(child)) {
            ret = log_error("path too long under \"%s\"", path);
            break;
        }
        ret = walk_tree(child, fn, links);
    }
    if (ret == 0 && errno != 0)
        ret = log_errno("could not read directory \"%s\"", path);
    closedir(d);
    return ret != 0 ? ret : fn(path, 1);
}

static int fsync_one(const char *path, int is_dir)
{
    (void)is_dir;
    return durable_fsync_path(path);
}

int durable_fsync_tree(const char *path) { return walk_tree(path, fsync_one, 0); }

static int remove_one(const char *path, int is_dir)
{
    if ((is_dir ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT)
        return log_errno("could not remove \"%s\"", path);
    return 0;
}

int durable_remove_tree(const char *path)
{
    return walk_tree(path, remove_one, 1);
}
