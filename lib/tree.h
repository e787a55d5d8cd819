/*
 * tree.h -- the pieces of a directory-tree snapshot that ragsafe-milvus (volumes) and
 * ragsafe-files (config files and logs) share: one copy of each rule, whichever tool
 * stores the tree. Each tool keeps its own manifest format and storage layout; what
 * is here decides which names and paths are safe, what a walked entry is, whether a
 * restore target is empty, and how restored entries get their metadata back.
 *
 * Names and paths (pure functions, nothing reported):
 *     tree_label_valid(label, max)   a snapshot label: becomes a storage key
 *     tree_path_valid(path)          a manifest path: cannot leave its root
 *
 * The catalogue of snapshot manifests in a repository:
 *     tree_labels(st, "x/snapshots/", ".json", valid, by_time, &labels, &n);
 *     tree_labels_free(labels, n);
 *
 * Walking (lib/walk.h underneath):
 *     r = tree_entry_kind(st, root, rel);       TREE_FILE/DIR/LINK, or -1 (skipped,
 *                                               warned: sockets, FIFOs, devices)
 *     tree_read_link(dirfd, name, root, rel, &t);   a symbolic link's target, malloc'd
 *
 * Restoring:
 *     r = tree_dir_state(dir, follow);          TREE_ABSENT / TREE_EMPTY / TREE_FULL /
 *                                               TREE_NOT_DIR, or -1 reported
 *     m = tree_safe_mode(shown, mode);          without set-user/group-ID (warned)
 *     owners = tree_owner_policy(same_owner);   0 / 1 / TREE_OWNER_COMPARE
 *     owners = tree_owner_matches(kind, name, uid, gid, target);
 *     tree_restore_fd_meta(fd, path, shown, &meta, owners);
 *     tree_restore_path_meta(path, shown, &meta, is_link, owners, strict);
 *     tree_move_aside(from, to);                rename, the parent of `to` created
 *
 * Errors: functions that can fail return -1 once they have reported the failure
 * (log.h); the positive results are documented with each function.
 */
#ifndef RAGSAFE_TREE_H
#define RAGSAFE_TREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The longest relative path a manifest may hold (bytes, without the NUL) and the
 * longest component (NAME_MAX on Linux). */
#define TREE_PATH_MAX 4095
#define TREE_NAME_MAX 255

/* tree_label_valid -- 1 when label is 1..max characters of [A-Za-z0-9._-] not
 * starting with '.', else 0. A label names a storage key ("<prefix>/<label>.json"):
 * no '/', no control character, no hidden or "." / ".." name. A tool may add rules of
 * its own (ragsafe-milvus also refuses a leading '-', its labels become PostgreSQL
 * restore point names). */
int tree_label_valid(const char *label, size_t max);

/* tree_path_valid -- 1 when path is a relative path that cannot leave the directory
 * it is joined to, else 0: not empty, no leading '/', no trailing '/', no empty, "."
 * or ".." component, at most TREE_PATH_MAX bytes and TREE_NAME_MAX per component.
 * Control characters are allowed: a file name may hold them, and a manifest must be
 * able to record every file a walk finds. */
int tree_path_valid(const char *path);

struct storage;

/* tree_labels -- the labels of every manifest key "<dir><label><suffix>" in st (dir
 * ends with '/'; keys deeper down or with another ending are not manifests), sorted by
 * label, or when by_time oldest first by (storage mtime, label). valid (may be NULL):
 * a label it refuses is left out, quietly (no tool could have written that key).
 * *labels (an array of n malloc'd strings) is freed by tree_labels_free.
 * 0 | -1 (reported). */
int tree_labels(struct storage *st, const char *dir, const char *suffix,
                int (*valid)(const char *label), int by_time, char ***labels, size_t *n);
/* Frees what tree_labels returned (or any such array); NULL is fine. */
void tree_labels_free(char **labels, size_t n);

/* Entry kinds of a walked tree. */
enum { TREE_FILE = 0, TREE_DIR = 1, TREE_LINK = 2 };

/* Messages name a walked entry "root/rel" (the walk's root and the entry's path below
 * it, walk.h), or "rel" when root is NULL. */

/* tree_entry_kind -- what a snapshot records of an entry with lstat st: TREE_FILE,
 * TREE_DIR or TREE_LINK, or -1 for anything else (a socket, FIFO or device node: no
 * place in a snapshot), skipped with a warning. Nothing to clean up. */
int tree_entry_kind(const struct stat *st, const char *root, const char *rel);

/* tree_read_link -- the target of symbolic link name in dirfd (AT_FDCWD: name is a
 * path) into *target (malloc'd, caller frees). A target longer than the buffer is an
 * error, never a truncated link. 0 | -1 (reported). */
int tree_read_link(int dirfd, const char *name, const char *root, const char *rel,
                   char **target);

/* tree_dir_state results */
enum { TREE_ABSENT = 0, TREE_EMPTY = 1, TREE_FULL = 2, TREE_NOT_DIR = 3 };

/* tree_dir_state -- is dir (a restore target) absent, an empty directory, a directory
 * with entries, or something else (TREE_NOT_DIR, not reported: the caller says it in
 * its own words)? follow: stat, so a symbolic link to a directory counts as that
 * directory; else lstat, so it is TREE_NOT_DIR. -1 reported (stat or read failed). */
int tree_dir_state(const char *dir, int follow);

/* tree_safe_mode -- mode (permission bits) without set-user-ID and set-group-ID: a
 * restore (often as root) never creates a set-id program from repository content.
 * Warns, naming shown, when it drops a bit. */
mode_t tree_safe_mode(const char *shown, mode_t mode);

/* tree_owner_policy -- give restored entries their recorded owners? same_owner 1
 * (--same-owner): yes, 0 (--no-same-owner): no, -1: TREE_OWNER_COMPARE, the caller
 * decides with tree_owner_matches. Only root can: not root, it is 0 (and
 * --same-owner is warned about). */
#define TREE_OWNER_COMPARE 2
int tree_owner_policy(int same_owner);

/* tree_owner_matches -- the default of tree_owner_policy: 1 when uid:gid, recorded for
 * name (a top-level entry, kind "", or a volume root, kind "volume "), is the owner of
 * target now (or, for a target not there yet, the user restoring); else 0, with a
 * notice and a hint to give --same-owner. A snapshot from another machine must not
 * hand files to whoever has those ids here. */
int tree_owner_matches(const char *kind, const char *name, uid_t uid, gid_t gid,
                       const char *target);

/* What a restored entry gets back. */
typedef struct tree_meta {
    mode_t mode;       /* permission bits as recorded (set-id bits are dropped) */
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
} tree_meta;

/* tree_restore_fd_meta -- a restored file's owner (when owners), mode (tree_safe_mode)
 * and times (atime = mtime), through its descriptor. Owner first: chown clears the
 * set-id bits. path names the file in error messages, shown (where it is going) in
 * the set-id warning. 0 | -1 (reported). */
int tree_restore_fd_meta(int fd, const char *path, const char *shown, const tree_meta *m,
                         int owners);

/* tree_restore_path_meta -- the same for a directory or (is_link: no mode, nothing
 * followed) a symbolic link, by path. strict: a failure to set the owner or the times
 * fails (ragsafe-milvus: its trees are still staging, nothing is in place yet); else
 * only a failed chmod does and the others are warnings (ragsafe-files sets directory
 * metadata after its entries are in place). 0 | -1 (reported). */
int tree_restore_path_meta(const char *path, const char *shown, const tree_meta *m, int is_link,
                           int owners, int strict);

/* tree_move_aside -- rename from to to (the --force of a restore: an entry the
 * snapshot replaces is moved, never deleted), creating to's parent directories first.
 * Not made durable here: the caller syncs once after all its renames. 0 | -1
 * (reported). */
int tree_move_aside(const char *from, const char *to);

#endif
