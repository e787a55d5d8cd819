/*
 * restore.c -- ragsafe-files restore: a snapshot back under a target directory.
 *
 * All or nothing: every entry is first written and verified in a hidden staging
 * directory inside the target (same file system), and only when every object has
 * decrypted, authenticated and matched its address are the entries renamed into
 * place. A wrong key or a tampered object therefore leaves no file behind.
 * A non-empty target is refused unless force; then each existing entry that a
 * restored one replaces is moved aside to TARGET/.ragsafe-old-<time>/<path> (the
 * name of every tool's --force, cli.h, with -2, -3 ... when taken), and
 * everything else in the target is left alone (restoring .env into a project
 * directory does not move the project). A target that a live process uses (its
 * working directory, root or an open file under it) is refused before anything changes.
 * Modes come back without set-user-ID/set-group-ID bits; owners only as root, and only
 * with --same-owner or when the snapshot's top-level entries were owned by the target
 * directory's owner. A manifest knows no device files, FIFOs or sockets (manifest.c
 * refuses other types; a snapshot skips them with a warning).
 *
 * Paths come from an authenticated manifest and are still checked (manifest.c:
 * relative, no ".."); directories are created before files and symlinks last, so
 * no write goes through a link.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "durable.h"
#include "files.h"
#include "log.h"
#include "procuse.h"
#include "tree.h"

/* entry_meta -- what lib/tree.h restores of an entry */
static tree_meta entry_meta(const files_entry *e)
{
    tree_meta m = {e->mode, e->uid, e->gid, {(time_t)e->mtime, e->mtime_ns}};
    return m;
}

/* restore_owners -- give entries their recorded owners? (lib/tree.h) By default only
 * when every top-level entry was owned by the target directory's owner (the user
 * restoring, for a target not there yet) */
static int restore_owners(const files_manifest *m, const char *target, int same_owner)
{
    int owners = tree_owner_policy(same_owner);

    if (owners != TREE_OWNER_COMPARE)
        return owners;
    for (size_t i = 0; i < m->n; i++) {
        const files_entry *e = &m->v[i];
        if (strchr(e->path, '/') == NULL
            && !tree_owner_matches("", e->path, e->uid, e->gid, target))
            return 0;
    }
    return 1;
}

/*
 * stage_file -- decrypt and verify one object into path (created, must not exist).
 * 0 | RS_MISMATCH (reported) | -1.
 */
static int stage_file(files_ctx *x, const files_entry *e, const char *path, int owners)
{
    char key[512];
    uint64_t size = 0;
    tree_meta meta = entry_meta(e);
    int fd, ret = -1;

    if (cas_addr_key(x->c, e->addr, key, sizeof(key)) != 0)
        return log_error("could not name the object of \"%s\"", e->path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return log_errno("could not create \"%s\"", path);
    ret = cas_get_addr_fd(x->c, e->addr, fd, &size);
    if (ret == RS_NOT_FOUND) {
        log_error("could not restore \"%s\": its object \"%s\" is missing", e->path, key);
        ret = RS_MISMATCH;
        goto out;
    }
    if (ret != 0)
        goto out;
    if (size != e->size) {
        log_error("could not restore \"%s\": object \"%s\" holds %" PRIu64 " bytes, the manifest "
                  "says %" PRIu64, e->path, key, size, e->size);
        ret = RS_MISMATCH;
        goto out;
    }
    ret = -1;
    if (tree_restore_fd_meta(fd, path, e->path, &meta, owners) != 0)
        goto out;
    if (fsync(fd) != 0) {
        log_errno("could not fsync \"%s\"", path);
        goto out;
    }
    ret = 0;
out:
    if (close(fd) != 0 && ret == 0)
        ret = log_errno("could not close \"%s\"", path);
    return ret;
}

/* join -- "a/b" into a malloc'd string; NULL reported */
static char *join(const char *a, const char *b)
{
    char *s;

    if (asprintf(&s, "%s/%s", a, b) < 0) {
        log_error("out of memory");
        return NULL;
    }
    return s;
}

/* move_aside -- an existing target entry to ASIDE/<rel> (lib/tree.h) */
static int move_aside(const char *aside, const char *rel, const char *tp)
{
    char *dst = join(aside, rel);
    int ret = dst ? tree_move_aside(tp, dst) : -1;

    free(dst);
    return ret;
}

/*
 * files_restore -- snapshot label into target. 0 | RS_NOT_FOUND | RS_MISMATCH | -1.
 */
int files_restore(files_ctx *x, const char *label, const char *target, int force, int same_owner)
{
    files_manifest m;
    struct stat sb;
    char *stage = NULL, *sp = NULL, *tp = NULL, aside[4200] = "";
    const char *skip = NULL;  /* a directory moved in whole: its entries are done */
    size_t skiplen = 0, moved = 0;
    int created = 0, owners, ret;
    int r;

    ret = files_manifest_load(x, label, &m);
    if (ret != 0)
        return ret;
    ret = -1;
    owners = restore_owners(&m, target, same_owner);
    /* followed: the target itself may be a symlink to the project directory */
    r = tree_dir_state(target, 1);
    if (r < 0)
        goto out;
    if (r == TREE_NOT_DIR) {
        log_error("could not restore into \"%s\": not a directory", target);
        goto out;
    }
    if (r == TREE_FULL && !force) {
        log_error("could not restore into \"%s\": the directory is not empty", target);
        log_hint("use --force to move the entries the snapshot replaces aside");
        goto out;
    }
    if (r == TREE_ABSENT) {
        if (durable_mkdirs(target, 0755) != 0)
            goto out;
        created = 1;
    } else {
        /* never under a live process: it keeps files open and writes them by path */
        r = procuse_check(&target, 1);
        if (r != 0) {
            if (r > 0) {
                log_error("restore into \"%s\" refused: a live process uses it", target);
                log_hint("stop that process first (the service whose files these are), then "
                         "restore");
            }
            goto out;
        }
    }
    if (!(stage = join(target, ".ragsafe-restore-XXXXXX")))
        goto out;
    if (!mkdtemp(stage)) {
        log_errno("could not create a staging directory in \"%s\"", target);
        free(stage);
        stage = NULL;
        goto out;
    }

    /* 1: everything into the staging directory, verified */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < m.n; i++) {
            const files_entry *e = &m.v[i];
            if ((pass == 0) == (e->type == FILES_LNK))
                continue;
            free(sp);
            if (!(sp = join(stage, e->path)))
                goto out;
            if (e->type == FILES_DIR) {
                if (mkdir(sp, 0700) != 0) {
                    log_errno("could not create directory \"%s\"", sp);
                    goto out;
                }
            } else if (e->type == FILES_REG) {
                ret = stage_file(x, e, sp, owners);
                if (ret != 0)
                    goto out;
                ret = -1;
            } else {
                if (symlink(e->target, sp) != 0) {
                    log_errno("could not create symbolic link \"%s\"", sp);
                    goto out;
                }
                tree_meta lm = entry_meta(e);
                tree_restore_path_meta(sp, e->path, &lm, 1, owners, 0);
            }
        }
    }

    /* 2: into place, parents first */
    /* the name every tool's --force uses (cli.h), inside DIR: TARGET/.ragsafe-old-TIME */
    {
        char prefix[4200];
        if (snprintf(prefix, sizeof(prefix), "%s/", target) >= (int)sizeof(prefix)) {
            log_error("path too long: \"%s\"", target);
            goto out;
        }
        if (cli_aside_pick(prefix, aside, sizeof(aside)) != 0)
            goto out;
    }
    for (size_t i = 0; i < m.n; i++) {
        const files_entry *e = &m.v[i];
        if (skip && strncmp(e->path, skip, skiplen) == 0 && e->path[skiplen] == '/')
            continue;
        skip = NULL;
        free(sp);
        free(tp);
        tp = NULL;
        if (!(sp = join(stage, e->path)) || !(tp = join(target, e->path)))
            goto out;
        if (lstat(tp, &sb) == 0) {
            if (e->type == FILES_DIR && S_ISDIR(sb.st_mode))
                continue; /* merge into the existing directory */
            if (move_aside(aside, e->path, tp) != 0)
                goto out;
            moved++;
        } else if (errno != ENOENT) {
            log_errno("could not stat \"%s\"", tp);
            goto out;
        }
        if (rename(sp, tp) != 0) {
            log_errno("could not rename \"%s\" to \"%s\"", sp, tp);
            goto out;
        }
        if (e->type == FILES_DIR) {
            skip = e->path;
            skiplen = strlen(skip);
        }
    }

    /* 3: directory modes, owners and times, deepest first (creating entries changed
     * the times), then make the renames durable */
    for (size_t i = m.n; i-- > 0;) {
        const files_entry *e = &m.v[i];
        if (e->type != FILES_DIR)
            continue;
        free(tp);
        if (!(tp = join(target, e->path)))
            goto out;
        tree_meta dm = entry_meta(e);
        if (tree_restore_path_meta(tp, e->path, &dm, 0, owners, 0) != 0
            || durable_fsync_path(tp) != 0)
            goto out;
    }
    if (durable_remove_tree(stage) != 0)
        goto out;
    free(stage);
    stage = NULL;
    if (durable_fsync_path(target) != 0)
        goto out;
    if (moved)
        log_notice("%zu existing entr%s moved aside to \"%s\"", moved, moved == 1 ? "y" : "ies", aside);
    log_info("restored snapshot \"%s\" (%zu entr%s) into \"%s\"", m.label, m.n, m.n == 1 ? "y" : "ies",
             target);
    ret = 0;
out:
    if (stage) {
        /* staged files may be unwritable directories' children: modes are 0700 */
        durable_remove_tree(stage);
        free(stage);
        if (created)
            rmdir(target);
    }
    free(sp);
    free(tp);
    files_manifest_release(&m);
    return ret;
}
