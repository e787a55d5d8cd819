/*
 * walstore.c -- a WAL file stored in the repository exactly as ragsafe-archive
 * stores it (moved here from archive_cmd/main.c so ragsafe-receive stores its
 * completed segments through the very same code).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walstore.h"

#include "common.h"
#include "log.h"
#include "sha256.h"
#include "walname.h"


/*
 * file_digest -- SHA-256 of a whole file (for comparing with a stored duplicate).
 */
static int file_digest(uring *ur, int fd, const char *path, uint8_t out[SHA256_LEN])
{
    uring_reader *rd = uring_reader_new(ur, fd, 0, 1 << 20, 4);
    sha256_ctx c = {0};
    const void *buf;
    ssize_t n = 0;
    int ret = -1;

    if (!rd)
        return log_errno("could not read \"%s\"", path);
    if (sha256_init(&c) != 0)
        goto out;
    while ((n = uring_reader_next(rd, &buf)) > 0)
        if (sha256_update(&c, buf, (size_t)n) != 0)
            goto out;
    if (n < 0) {
        log_errnum((int)-n, "could not read \"%s\"", path);
        goto out;
    }
    ret = sha256_final(&c, out);
out:
    sha256_release(&c);
    uring_reader_free(rd);
    return ret;
}

/*
 * stored_digest -- read the stored object whole: decompress it and check it against
 * its trailer. 0: intact, *meta its content | RS_NOT_FOUND | RS_MISMATCH: damaged (not
 * a zstd stream, truncated, no trailer, its hash or size differ, or a sealed object
 * that does not authenticate; reported) | -1: it could not be read (I/O error, S3
 * 5xx; reported), which says nothing about its content.
 */
static int stored_digest(storage *st, const char *key, zst_meta *meta)
{
    storage_read *rd = NULL;
    zst_reader *zr = NULL;
    const void *buf;
    char what[512];
    ssize_t n;
    int ret = storage_read_open(st, key, &rd);

    if (ret != 0)
        return ret;
    ret = -1;
    zr = zst_reader_new(NULL, NULL);
    if (!zr) {
        log_error("out of memory");
        goto out;
    }
    /* a segment: hash on a second core while decompressing */
    if (storage_read_size(rd) >= (128 << 10) && zst_reader_hash_in_thread(zr) != 0)
        goto out;
    snprintf(what, sizeof(what), "object \"%s/%s\"", storage_location(st), key);
    zst_reader_set_name(zr, what);
    while ((n = storage_read_data(rd, &buf)) > 0) {
        if (zst_reader_write(zr, buf, (size_t)n) != 0) {
            ret = RS_MISMATCH;
            goto out;
        }
    }
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    ret = zst_reader_finish(zr, meta) == 0 ? 0 : RS_MISMATCH;
out:
    zst_reader_free(zr);
    storage_read_free(rd);
    return ret;
}

/*
 * settle_duplicate -- the key exists (stored: stored_digest's result and meta). The
 * offered file passed its checks (a segment of this cluster, or a history or backup
 * file), so a damaged stored copy is replaced by it: PostgreSQL removes its own copy
 * once we answer 0, and a damaged object must not be the last copy. Identical and
 * intact: 0. Intact and different: RS_MISMATCH, untouched. Unreadable: -1 (retry),
 * untouched. have_new: the offered file's digest when known.
 */
static int settle_duplicate(repo *r, uring *ur, const char *key, int fd, const char *path,
                            const char *name, int stored_ret, const zst_meta *stored,
                            const zst_meta *have_new, const object_opts *oo)
{
    zst_meta mine;
    char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];
    struct stat st;

    if (stored_ret == RS_NOT_FOUND || (stored_ret < 0 && stored_ret != RS_MISMATCH)) {
        log_detail("\"%s\" exists in the repository but could not be read; it was left untouched",
                   name);
        log_hint("PostgreSQL retries; check the repository's storage if this persists");
        return -1;
    }
    if (stored_ret == RS_MISMATCH) {
        if (object_put_fd(r->st, key, fd, path, oo, 0, &mine) != 0) {
            log_detail("the damaged object \"%s/%s\" is still in place", storage_location(r->st), key);
            return -1;
        }
        log_warning("the stored copy of \"%s\" was damaged; replaced \"%s/%s\" with \"%s\" "
                    "(%" PRIu64 " bytes)", name, storage_location(r->st), key, path, mine.raw_size);
        return 0;
    }
    if (have_new) {
        mine = *have_new;
    } else {
        if (fstat(fd, &st) != 0) {
            log_errno("could not stat \"%s\"", path);
            return -1;
        }
        mine.raw_size = (uint64_t)st.st_size;
        if (file_digest(ur, fd, path, mine.sha256) != 0)
            return -1;
    }
    if (stored->raw_size == mine.raw_size && memcmp(stored->sha256, mine.sha256, SHA256_LEN) == 0) {
        log_notice("\"%s\" was already archived with identical content", name);
        return 0;
    }
    sha256_to_hex(stored->sha256, a);
    sha256_to_hex(mine.sha256, b);
    log_error("\"%s\" is already archived with different content; refusing to overwrite it", name);
    log_detail("stored: %" PRIu64 " bytes, SHA-256 %s; offered: %" PRIu64 " bytes, SHA-256 %s",
               stored->raw_size, a, mine.raw_size, b);
    log_hint("a different cluster, or a restored copy of this one, may be archiving into \"%s\"",
             storage_location(r->st));
    return RS_MISMATCH;
}

/*
 * check_segment -- the long page header must be PostgreSQL 15's, its sizes must match
 * the file, and its page address the file name. Fills want (repo pin) from it.
 * 0 | RS_MISMATCH (reported) | -1.
 */
static int check_segment(int fd, const char *path, const char *name, repo_info *want)
{
    uint8_t page[WAL_LONG_HEADER_SIZE];
    walpage_info h;
    walpage_expect ex = {0};
    struct stat st;
    char why[256];
    ssize_t n;
    int res;

    if (fstat(fd, &st) != 0) {
        log_errno("could not stat \"%s\"", path);
        return -1;
    }
    n = pread(fd, page, sizeof(page), 0);
    if (n < 0) {
        log_errno("could not read \"%s\"", path);
        return -1;
    }
    ex.file_size = (uint64_t)st.st_size; /* the repository is pinned after this */
    res = walpage_check(page, (size_t)n, name, &ex, &h, why, sizeof(why));
    if (res != WALPAGE_OK) {
        log_error("refusing to archive \"%s\" as \"%s\": %s", path, name, why);
        return RS_MISMATCH;
    }
    want->sysid = h.sysid;
    want->seg_size = h.seg_size;
    want->wal_magic = h.magic;
    return 0;
}

/*
 * control_pin -- a history or backup-label file carries no system identifier; the
 * data directory it comes from does. %p is "pg_wal/NAME" (PostgreSQL runs
 * archive_command in the data directory) or ".../pg_wal/NAME": fill want from that
 * data directory's global/pg_control. 0 | RS_NOT_FOUND (not under a data
 * directory's pg_wal/) | -1 (reported).
 */
static int control_pin(const char *path, repo_info *want)
{
    const char *slash = strrchr(path, '/'), *prev;
    char dir[PATH_MAX];

    if (!slash)
        return RS_NOT_FOUND;
    for (prev = slash; prev > path && prev[-1] != '/'; prev--)
        ;
    if ((size_t)(slash - prev) != 6 || strncmp(prev, "pg_wal", 6) != 0)
        return RS_NOT_FOUND;
    if (prev == path)
        snprintf(dir, sizeof(dir), ".");
    else if (prev - 1 == path)
        snprintf(dir, sizeof(dir), "/");
    else if (snprintf(dir, sizeof(dir), "%.*s", (int)(prev - 1 - path), path) >= (int)sizeof(dir))
        return RS_NOT_FOUND;
    return repo_info_from_pg_control(dir, want);
}

/* walstore_put -- see walstore.h. */
int walstore_put(const char *loc, repo **rp, uring *ur, const char *path, const char *name,
                 const object_opts *oo, const repo_info *pin)
{
    repo_info want = {0};
    walfile_kind kind = walname_classify(name);
    char key[128];
    zst_meta meta, stored;
    int fd, ret, status = -1;
    repo *r;

    if (kind == WALFILE_INVALID || repo_wal_key(name, key, sizeof(key)) != 0) {
        log_error("refusing to archive \"%s\": not a WAL file name", name);
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_errno("could not open \"%s\"", path);
        return -1;
    }
    if (kind == WALFILE_SEGMENT || kind == WALFILE_PARTIAL) {
        status = check_segment(fd, path, name, &want);
        if (status != 0)
            goto out;
        status = -1;
    }
    if (!*rp && !(*rp = repo_open(loc, ur, 1)))
        goto out;
    r = *rp;
    if (!want.sysid) {
        /* A history or backup file first into a new repository (a promoted standby):
         * pin it now from pg_control, or ragsafe-restore could not serve it. */
        ret = r->have_info ? 0 : repo_load_info(r);
        if (ret == RS_NOT_FOUND && pin) {
            want = *pin;
        } else if (ret == RS_NOT_FOUND) {
            ret = control_pin(path, &want);
            if (ret == RS_NOT_FOUND) {
                log_error("refusing to archive \"%s\" into \"%s\": the repository has no repo.json yet, "
                          "and a %s file does not say which database system it belongs to", name,
                          storage_location(r->st), kind == WALFILE_HISTORY ? "history" : "backup");
                log_hint("run it as archive_command (%%p is pg_wal/%s under the data directory, whose "
                         "global/pg_control names the system), or archive a WAL segment first", name);
                goto out;
            }
            if (ret != 0)
                goto out;
        } else if (ret != 0) {
            status = ret == RS_MISMATCH ? RS_MISMATCH : -1;
            goto out;
        }
    }
    if (want.sysid) {
        ret = repo_pin(r, &want);
        if (ret != 0) {
            status = ret == RS_MISMATCH ? RS_MISMATCH : -1;
            goto out;
        }
    }

    /* Already there? Read it whole: only an intact identical copy is success. */
    ret = stored_digest(r->st, key, &stored);
    if (ret != RS_NOT_FOUND) {
        status = settle_duplicate(r, ur, key, fd, path, name, ret, &stored, NULL, oo);
        goto out;
    }
    ret = object_put_fd(r->st, key, fd, path, oo, 1, &meta);
    if (ret == RS_EXISTS) {
        /* Someone archived the same name between our check and our rename. */
        ret = stored_digest(r->st, key, &stored);
        status = settle_duplicate(r, ur, key, fd, path, name, ret, &stored, &meta, oo);
        goto out;
    }
    if (ret != 0)
        goto out;
    log_info("archived \"%s\" (%" PRIu64 " byte%s) as \"%s/%s\"", name, meta.raw_size, PLURAL(meta.raw_size),
             storage_location(r->st), key);
    status = 0;
out:
    close(fd);
    return status;
}
