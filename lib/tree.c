/*
 * tree.c -- the directory-tree snapshot rules ragsafe-milvus and ragsafe-files share
 * (tree.h). Each was written twice before, once per tool; where the two copies
 * differed, the stricter or clearer one is kept (named at each function).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "log.h"
#include "storage.h"
#include "tree.h"

/* tree_label_valid -- a label is a storage key component: plain characters only */
int tree_label_valid(const char *label, size_t max)
{
    size_t n = strlen(label);

    if (n == 0 || n > max || label[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = label[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* tree_path_valid -- every component a plain name. ragsafe-files allowed 3999 bytes
 * and components of any length, ragsafe-milvus 4095 and 255: 4095 keeps every existing
 * manifest of either readable, and no file system has a component over 255 bytes. */
int tree_path_valid(const char *path)
{
    const char *p = path;
    size_t n = strlen(path);

    if (n == 0 || n > TREE_PATH_MAX || path[0] == '/')
        return 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > TREE_NAME_MAX || (len == 1 && p[0] == '.')
            || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (slash == NULL)
            break;
        p = slash + 1;
        if (*p == '\0')
            return 0; /* trailing slash */
    }
    return 1;
}

typedef struct tree_label_item {
    char *label;
    int64_t mtime;
} tree_label_item;

typedef struct tree_label_list {
    const char *dir, *suffix;
    int (*valid)(const char *label);
    tree_label_item *items;
    size_t n, cap;
} tree_label_list;

/* tree_label_collect -- storage_list callback: "<dir><label><suffix>" keys */
static int tree_label_collect(void *arg, const char *key, int64_t size, int64_t mtime)
{
    tree_label_list *l = arg;
    const char *name = key + strlen(l->dir);
    size_t n = strlen(name), sl = strlen(l->suffix);
    char *label;

    (void)size;
    if (strchr(name, '/') != NULL || n <= sl || strcmp(name + n - sl, l->suffix) != 0)
        return 0;
    if ((label = strndup(name, n - sl)) == NULL)
        return log_error("out of memory");
    if (l->valid != NULL && !l->valid(label)) {
        free(label);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        tree_label_item *p = realloc(l->items, cap * sizeof(*p));
        if (p == NULL) {
            free(label);
            return log_error("out of memory");
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n].label = label;
    l->items[l->n].mtime = mtime;
    l->n++;
    return 0;
}

static int tree_label_cmp(const void *a, const void *b)
{
    return strcmp(((const tree_label_item *)a)->label, ((const tree_label_item *)b)->label);
}

static int tree_label_time_cmp(const void *a, const void *b)
{
    const tree_label_item *x = a, *y = b;

    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(x->label, y->label);
}

/* tree_labels -- ragsafe-files sorted by label and kept every key, ragsafe-milvus sorted
 * by time and left out labels it refuses: both kept, as each tool's choice */
int tree_labels(storage *st, const char *dir, const char *suffix,
                int (*valid)(const char *label), int by_time, char ***labels, size_t *n)
{
    tree_label_list l = {dir, suffix, valid, NULL, 0, 0};
    int ret = -1;

    *labels = NULL;
    *n = 0;
    if (storage_list(st, dir, tree_label_collect, &l) != 0)
        goto out;
    if (l.n > 1)
        qsort(l.items, l.n, sizeof(*l.items), by_time ? tree_label_time_cmp : tree_label_cmp);
    if ((*labels = calloc(l.n + 1, sizeof(char *))) == NULL) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        (*labels)[i] = l.items[i].label;
        l.items[i].label = NULL;
    }
    *n = l.n;
    ret = 0;
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.items[i].label);
    free(l.items);
    return ret;
}

void tree_labels_free(char **labels, size_t n)
{
    if (labels == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
}

/* tree_entry_kind -- the wording of ragsafe-milvus ("regular file", "symbolic link") */
int tree_entry_kind(const struct stat *st, const char *root, const char *rel)
{
    if (S_ISREG(st->st_mode))
        return TREE_FILE;
    if (S_ISDIR(st->st_mode))
        return TREE_DIR;
    if (S_ISLNK(st->st_mode))
        return TREE_LINK;
    log_warning("skipping \"%s%s%s\": not a regular file, directory or symbolic link",
                root ? root : "", root ? "/" : "", rel);
    return -1;
}

/* tree_read_link -- both copies read into 4096 bytes and stored a target that filled
 * the buffer as it came, possibly cut short; a full buffer is refused here */
int tree_read_link(int dirfd, const char *name, const char *root, const char *rel,
                   char **target)
{
    const char *sep = root ? "/" : "";
    char buf[4096];
    ssize_t l;

    *target = NULL;
    l = readlinkat(dirfd, name, buf, sizeof(buf));
    if (l < 0)
        return log_errno("could not read symbolic link \"%s%s%s\"", root ? root : "", sep, rel);
    if ((size_t)l >= sizeof(buf))
        return log_error("could not read symbolic link \"%s%s%s\": its target is longer than "
                         "%zu bytes", root ? root : "", sep, rel, sizeof(buf) - 1);
    buf[l] = '\0';
    if ((*target = strdup(buf)) == NULL)
        return log_error("out of memory");
    return 0;
}

int tree_dir_state(const char *dir, int follow)
{
    struct stat sb;
    struct dirent *de;
    DIR *d;
    int state = TREE_EMPTY;

    if ((follow ? stat(dir, &sb) : lstat(dir, &sb)) != 0) {
        if (errno == ENOENT)
            return TREE_ABSENT;
        return log_errno("could not stat \"%s\"", dir);
    }
    if (!S_ISDIR(sb.st_mode))
        return TREE_NOT_DIR;
    if ((d = opendir(dir)) == NULL)
        return log_errno("could not open directory \"%s\"", dir);
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            state = TREE_FULL;
            break;
        }
    }
    /* both copies took a read error for "empty": a target then looked safe to use */
    if (de == NULL && errno != 0)
        state = log_errno("could not read directory \"%s\"", dir);
    closedir(d);
    return state;
}

mode_t tree_safe_mode(const char *shown, mode_t mode)
{
    mode_t setid = (mode_t)(S_ISUID | S_ISGID);

    if (mode & setid)
        log_warning("\"%s\": set-user-ID/set-group-ID bits not restored (mode %04o recorded, "
                    "%04o restored)", shown, (unsigned)mode, (unsigned)(mode & ~setid));
    return mode & ~setid;
}

int tree_owner_policy(int same_owner)
{
    if (same_owner == 0)
        return 0;
    if (geteuid() != 0) {
        if (same_owner == 1)
            log_warning("--same-owner: only root can restore owners; files will be yours");
        return 0;
    }
    return same_owner == 1 ? 1 : TREE_OWNER_COMPARE;
}

int tree_owner_matches(const char *kind, const char *name, uid_t uid, gid_t gid,
                       const char *target)
{
    struct stat sb;
    uid_t tuid = geteuid();
    gid_t tgid = getegid();

    if (stat(target, &sb) == 0) {
        tuid = sb.st_uid;
        tgid = sb.st_gid;
    }
    if (uid == tuid && gid == tgid)
        return 1;
    log_notice("owners not restored: %s\"%s\" was owned by %u:%u, \"%s\" is %u:%u", kind, name,
               (unsigned)uid, (unsigned)gid, target, (unsigned)tuid, (unsigned)tgid);
    log_hint("give --same-owner to restore the recorded owners anyway");
    return 0;
}

/* tree_restore_fd_meta -- the wording of ragsafe-files ("the owner of") */
int tree_restore_fd_meta(int fd, const char *path, const char *shown, const tree_meta *m,
                         int owners)
{
    struct timespec ts[2] = {m->mtime, m->mtime};

    if (owners && fchown(fd, m->uid, m->gid) != 0)
        return log_errno("could not change the owner of \"%s\"", path);
    if (fchmod(fd, tree_safe_mode(shown, m->mode)) != 0)
        return log_errno("could not change the mode of \"%s\"", path);
    if (futimens(fd, ts) != 0)
        return log_errno("could not set the times of \"%s\"", path);
    return 0;
}

int tree_restore_path_meta(const char *path, const char *shown, const tree_meta *m, int is_link,
                           int owners, int strict)
{
    struct timespec ts[2] = {m->mtime, m->mtime};

    if (owners && lchown(path, m->uid, m->gid) != 0) {
        if (strict)
            return log_errno("could not change the owner of \"%s\"", path);
        log_warning("could not change the owner of \"%s\": %s", path, strerror(errno));
    }
    if (!is_link && chmod(path, tree_safe_mode(shown, m->mode)) != 0)
        return log_errno("could not change the mode of \"%s\"", path);
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) {
        if (strict)
            return log_errno("could not set the times of \"%s\"", path);
        log_warning("could not set the times of \"%s\": %s", path, strerror(errno));
    }
    return 0;
}

int tree_move_aside(const char *from, const char *to)
{
    char *dir = strdup(to);
    int ret = -1;

    if (dir == NULL)
        return log_error("out of memory");
    if (durable_mkdirs(dirname(dir), 0700) != 0)
        goto out;
    if (rename(from, to) != 0) {
        log_errno("could not move \"%s\" aside to \"%s\"", from, to);
        goto out;
    }
    log_info("moved \"%s\" aside to \"%s\"", from, to);
    ret = 0;
out:
    free(dir);
    return ret;
}
