/*
 * snapshot.c -- ragsafe-files snapshot: files and directory trees into sealed objects
 * and one sealed manifest.
 *
 * Paths are taken relative to the working directory (main() changes to --base);
 * an absolute path under it is made relative, any other absolute path loses its
 * leading '/' (as tar does). Directories are walked without following symlinks;
 * symlinks are recorded as links; sockets, fifos and devices are skipped with a
 * warning (lib/tree.h: the rules ragsafe-milvus walks by too). The ancestors of every path are recorded too, so a restore recreates
 * them with their modes.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "files.h"
#include "log.h"
#include "repo.h"
#include "timefmt.h"
#include "tree.h"
#include "walk.h"

struct snap_stats {
    uint64_t files, bytes, new_objects, stored_bytes;
};

/* entry_from_stat -- mode, mtime and owner of an entry */
static void entry_from_stat(files_entry *e, const struct stat *sb)
{
    e->mode = sb->st_mode & 07777;
    e->mtime = sb->st_mtim.tv_sec;
    e->mtime_ns = sb->st_mtim.tv_nsec;
    e->uid = sb->st_uid;
    e->gid = sb->st_gid;
}

/*
 * store_file -- hash, address and (when new) store one regular file. A file that
 * changes between hashing and storing is hashed again (logs grow); after three
 * tries the snapshot fails rather than record an address that does not match.
 */
static int store_file(files_ctx *x, const char *path, files_entry *e, struct snap_stats *s)
{
    uint8_t sha[SHA256_LEN];
    char key[512];
    zst_meta meta;
    struct stat sb;
    int fd, ret = -1;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return log_errno("could not open \"%s\"", path);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (fstat(fd, &sb) != 0) {
            log_errno("could not stat \"%s\"", path);
            goto out;
        }
        entry_from_stat(e, &sb);
        if (cas_hash_fd(fd, path, sha, &e->size) != 0
            || cas_addr(x->c, sha, e->addr) != 0
            || cas_addr_key(x->c, e->addr, key, sizeof(key)) != 0)
            goto out;
        ret = storage_stat(x->st, key, NULL, NULL);
        if (ret == 0)
            break; /* deduplicated */
        if (ret != RS_NOT_FOUND)
            goto out;
        ret = object_put_fd(x->st, key, fd, path, NULL, 1, &meta);
        if (ret == RS_EXISTS) {
            ret = 0;
            break;
        }
        if (ret != 0)
            goto out;
        if (memcmp(meta.sha256, sha, SHA256_LEN) == 0 && meta.raw_size == e->size) {
            int64_t stored = 0;
            storage_stat(x->st, key, &stored, NULL);
            s->new_objects++;
            s->stored_bytes += (uint64_t)stored;
            break;
        }
        /* changed under us: the object holds other bytes than its address says */
        storage_remove(x->st, key);
        ret = -1;
        log_warning("\"%s\" changed while it was read; reading it again", path);
    }
    if (ret != 0) {
        log_error("could not store \"%s\": it keeps changing while it is read", path);
        goto out;
    }
    s->files++;
    s->bytes += e->size;
out:
    close(fd);
    return ret;
}

/* add_one -- the entry for path (lstat sb) and, for a regular file, its object; a
 * directory's contents are not walked here */
static int add_one(files_ctx *x, files_manifest *m, const char *path, const struct stat *sb,
                   struct snap_stats *s)
{
    files_entry *e;
    int kind = tree_entry_kind(sb, NULL, path);

    if (kind < 0)
        return 0; /* skipped, warned */
    if (!(e = files_manifest_add(m)))
        return -1;
    if (!(e->path = strdup(path))) {
        m->n--;
        return log_error("out of memory");
    }
    entry_from_stat(e, sb);
    if (kind == TREE_LINK) {
        e->type = FILES_LNK;
        return tree_read_link(AT_FDCWD, path, NULL, path, &e->target);
    }
    if (kind == TREE_DIR) {
        e->type = FILES_DIR;
        return 0;
    }
    e->type = FILES_REG;
    /* e may move when the array grows: store through the index */
    size_t idx = (size_t)(e - m->v);
    return store_file(x, path, &m->v[idx], s);
}

struct walk_ctx {
    files_ctx *x;
    files_manifest *m;
    struct snap_stats *s;
    const char *root;
};

/* add_walked -- one entry below a directory named on the command line (walk.h) */
static int add_walked(void *arg, const walk_entry *w)
{
    struct walk_ctx *c = arg;
    char *path;
    int ret;

    if (asprintf(&path, "%s/%s", c->root, w->rel) < 0)
        return log_error("out of memory");
    ret = add_one(c->x, c->m, path, w->st, c->s);
    free(path);
    return ret;
}

/* add_path -- one path (already normalised, relative) and, for a directory, its tree
 * (pre-order, sorted, symlinks not followed: lib/walk.h) */
static int add_path(files_ctx *x, files_manifest *m, const char *path, struct snap_stats *s)
{
    struct walk_ctx c = {x, m, s, path};
    struct stat sb;
    int fd;

    if (lstat(path, &sb) != 0)
        return log_errno("could not stat \"%s\"", path);
    if (add_one(x, m, path, &sb, s) != 0)
        return -1;
    if (!S_ISDIR(sb.st_mode))
        return 0;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return log_errno("could not open directory \"%s\"", path);
    return walk_dir(fd, path, add_walked, &c);
}

/* add_ancestors -- a directory entry for every ancestor of path not yet recorded */
static int add_ancestors(files_manifest *m, const char *path)
{
    char buf[4096];
    struct stat sb;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        int seen = 0;
        *p = '\0';
        for (size_t i = 0; i < m->n && !seen; i++)
            seen = strcmp(m->v[i].path, buf) == 0;
        if (!seen) {
            files_entry *e;
            if (lstat(buf, &sb) != 0)
                return log_errno("could not stat \"%s\"", buf);
            if (!S_ISDIR(sb.st_mode))
                return log_error("\"%s\" is not a directory", buf);
            if (!(e = files_manifest_add(m)))
                return -1;
            if (!(e->path = strdup(buf))) {
                m->n--;
                return log_error("out of memory");
            }
            e->type = FILES_DIR;
            entry_from_stat(e, &sb);
        }
        *p = '/';
    }
    return 0;
}

/* normalise -- the stored relative form of a command-line path into out; -1 reported */
static int normalise(const char *arg, const char *cwd, char *out, size_t outlen)
{
    size_t cl = strlen(cwd), n;
    const char *p = arg;

    if (p[0] == '/') {
        if (strncmp(p, cwd, cl) == 0 && (p[cl] == '/' || p[cl] == '\0') && cl > 1)
            p += cl;
        while (*p == '/')
            p++;
    }
    while (p[0] == '.' && p[1] == '/')
        for (p += 2; *p == '/'; p++)
            ;
    n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    if (n == 0 || n >= outlen)
        return log_error("invalid path \"%s\": name a file or directory below the base", arg);
    memcpy(out, p, n);
    out[n] = '\0';
    if (!tree_path_valid(out))
        return log_error("invalid path \"%s\": \"..\", \".\" and empty components are refused",
                         arg);
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const files_entry *)a)->path, ((const files_entry *)b)->path);
}

/*
 * files_snapshot -- store paths (relative to the working directory) as snapshot label
 * and print the label on stdout (a JSON summary with --json). 0 | -1.
 */
int files_snapshot(files_ctx *x, const char *label, char *const *paths, size_t npaths)
{
    files_manifest m;
    struct snap_stats s = {0, 0, 0, 0};
    storage_lock *lk = NULL;
    char cwd[4096], rel[4096];
    time_t now = time(NULL);
    size_t out_n;
    int ret = -1;

    memset(&m, 0, sizeof(m));
    if (!getcwd(cwd, sizeof(cwd)))
        return log_errno("could not get the current directory");
    if (label) {
        snprintf(m.label, sizeof(m.label), "%s", label);
    } else {
        timefmt_stamp(m.label, sizeof(m.label), (int64_t)now);
    }
    timefmt_utc(m.created, sizeof(m.created), (int64_t)now);
    m.created_t = (int64_t)now;
    if (!(m.base = strdup(cwd)))
        return log_error("out of memory");
    /* shared: snapshots may run together, expire's sweep excludes them */
    ret = storage_lock_take(x->st, FILES_LOCK, 0, 1, &lk);
    if (ret != 0) {
        ret = -1;
        goto out;
    }
    ret = -1;
    for (size_t i = 0; i < npaths; i++) {
        if (normalise(paths[i], cwd, rel, sizeof(rel)) != 0 || add_ancestors(&m, rel) != 0
            || add_path(x, &m, rel, &s) != 0)
            goto out;
    }
    /* sorted, parents first (a parent is a prefix); overlapping arguments leave
     * duplicates, dropped here */
    if (m.n)
        qsort(m.v, m.n, sizeof(*m.v), entry_cmp);
    out_n = 0;
    for (size_t i = 0; i < m.n; i++) {
        if (out_n > 0 && strcmp(m.v[out_n - 1].path, m.v[i].path) == 0) {
            free(m.v[i].path);
            free(m.v[i].target);
            continue;
        }
        m.v[out_n++] = m.v[i];
    }
    m.n = out_n;
    if (files_manifest_save(x, &m) != 0)
        goto out;
    if (x->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "label", m.label, "created",
                              m.created, "entries", (json_int_t)m.n, "files", (json_int_t)s.files,
                              "bytes", (json_int_t)s.bytes, "new_objects",
                              (json_int_t)s.new_objects, "stored_bytes", (json_int_t)s.stored_bytes);
        int r = j ? json_dumpf(j, stdout, JSON_COMPACT) : -1;
        json_decref(j);
        if (r != 0) {
            log_error("out of memory");
            goto out;
        }
        putchar('\n');
    } else {
        printf("%s\n", m.label);
    }
    log_info("snapshot \"%s\": %zu entr%s, %llu file%s, %llu byte%s, %llu new object%s", m.label,
             m.n, m.n == 1 ? "y" : "ies", (unsigned long long)s.files, PLURAL(s.files),
             (unsigned long long)s.bytes, PLURAL(s.bytes), (unsigned long long)s.new_objects,
             PLURAL(s.new_objects));
    ret = 0;
out:
    storage_lock_release(lk);
    files_manifest_release(&m);
    return ret;
}
