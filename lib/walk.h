/*
 * walk.h -- the one directory-tree walker of ragsafe (Milvus volumes, ragsafe-files
 * snapshots): pre-order, each directory's names in strcmp order, so manifests come out
 * the same every time and a parent always precedes its children.
 *
 *     walk_dir(dfd, root, fn, arg)
 *
 * Contract:
 * - dfd is an open directory (consumed: closed on every path); root is its path, used
 *   only in messages ("root/rel").
 * - fn(arg, &entry) is called once for every entry below dfd (not for dfd itself), with
 *   entry.rel the path relative to dfd ("a/b"), entry.name its last component,
 *   entry.st its lstat (symbolic links are never followed) and entry.dirfd its parent
 *   directory (for readlinkat / openat; valid during the call only).
 * - fn returns 0 to go on (into a directory: its entries come next), WALK_PRUNE to skip
 *   a directory's contents, or -1 (already reported) to stop the walk.
 * - A subdirectory is opened with openat(O_NOFOLLOW | O_DIRECTORY) from its parent: an
 *   entry swapped for a symbolic link after its lstat is not followed.
 * - Errors (open, read or stat of an entry; allocation) are reported with the entry's
 *   path and stop the walk. An entry that vanishes between readdir and lstat is an
 *   error too: the callers record trees that nothing writes to.
 * Returns 0, or -1 (reported).
 */
#ifndef RAGSAFE_WALK_H
#define RAGSAFE_WALK_H

#include <sys/stat.h>

#define WALK_PRUNE 1

typedef struct walk_entry {
    const char *rel;
    const char *name;
    const struct stat *st;
    int dirfd;
} walk_entry;

typedef int (*walk_fn)(void *arg, const walk_entry *e);

int walk_dir(int dfd, const char *root, walk_fn fn, void *arg);

#endif
