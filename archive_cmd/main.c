/*
 * ragsafe-archive -- PostgreSQL's archive_command.
 *
 *     archive_command = 'ragsafe-archive --repo /backups/pg %p %f'
 *
 * Exit 0 only once the file is durably in the repository (or an identical, intact
 * copy already was: a crash can fall between our rename and PostgreSQL's
 * bookkeeping). An existing object is read whole (decompressed and hashed), never
 * judged by its trailer: a damaged one is replaced by the offered file (atomically,
 * with a warning), since PostgreSQL drops its own copy once we answer 0.
 * Exit 1 on any failure (PostgreSQL retries), 2 on a usage or configuration error,
 * 3 on an integrity refusal: different content under an existing name (the stored
 * object is never touched), a segment from another database system, or a file under
 * a segment name that is not a valid segment. Never leaves a partial object under a
 * final name (durable.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "object.h"
#include "repo.h"
#include "storage_s3.h"
#include "archive.h"
#include "sha256.h"
#include "uring.h"
#include "walname.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ragsafe-archive [OPTION]... PATH NAME\n"
            "Archive one WAL file into a ragsafe repository (PostgreSQL's archive_command).\n\n"
            "  archive_command = 'ragsafe-archive --repo /backups/pg %%p %%f'\n\n"
            "Options:\n"
            "      --compress-level N     zstd level, 1..19 (default %d)\n"
            "      --compress-workers N   zstd worker threads (default: one per CPU, at most 4;\n"
            "                             0 compresses in the calling thread)\n"
            "      --look-ahead N         also archive other .ready segments, N threads, up to\n"
            "                             4N per call, and answer their own calls at once\n"
            "                             (default %d for s3:// repositories, 0 = off otherwise)\n",
            ZST_DEFAULT_LEVEL, AHEAD_DEFAULT);
    cli_help_tail(out,
                  CLI_KEY_NOTE
                  "An encrypted repository is made by the first write with a key.\n"
                  CLI_S3_NOTE,
                  "Exit status: 0 archived (or already archived with identical content), 1 failure\n"
                  "(PostgreSQL retries), 2 usage or configuration error, 3 integrity refusal.\n",
                  "ragsafe-archive (archive_command)");
}

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
 * intact: 0. Intact and different: 3, untouched. Unreadable: 1 (retry), untouched.
 * have_new: the offered file's digest when known. Returns an exit status.
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
        return EXIT_FAIL;
    }
    if (stored_ret == RS_MISMATCH) {
        if (object_put_fd(r->st, key, fd, path, oo, 0, &mine) != 0) {
            log_detail("the damaged object \"%s/%s\" is still in place", storage_location(r->st), key);
            return EXIT_FAIL;
        }
        log_warning("the stored copy of \"%s\" was damaged; replaced \"%s/%s\" with \"%s\" "
                    "(%" PRIu64 " bytes)", name, storage_location(r->st), key, path, mine.raw_size);
        return EXIT_OK;
    }
    if (have_new) {
        mine = *have_new;
    } else {
        if (fstat(fd, &st) != 0) {
            log_errno("could not stat \"%s\"", path);
            return EXIT_FAIL;
        }
        mine.raw_size = (uint64_t)st.st_size;
        if (file_digest(ur, fd, path, mine.sha256) != 0)
            return EXIT_FAIL;
    }
    if (stored->raw_size == mine.raw_size && memcmp(stored->sha256, mine.sha256, SHA256_LEN) == 0) {
        log_notice("\"%s\" was already archived with identical content", name);
        return EXIT_OK;
    }
    sha256_to_hex(stored->sha256, a);
    sha256_to_hex(mine.sha256, b);
    log_error("\"%s\" is already archived with different content; refusing to overwrite it", name);
    log_detail("stored: %" PRIu64 " bytes, SHA-256 %s; offered: %" PRIu64 " bytes, SHA-256 %s",
               stored->raw_size, a, mine.raw_size, b);
    log_hint("a different cluster, or a restored copy of this one, may be archiving into \"%s\"",
             storage_location(r->st));
    return EXIT_INTEGRITY;
}

/*
 * check_segment -- the long page header must be PostgreSQL 15's, its sizes must match
 * the file, and its page address the file name. Fills want (repo pin) from it.
 * Returns an exit status.
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
        return EXIT_FAIL;
    }
    n = pread(fd, page, sizeof(page), 0);
    if (n < 0) {
        log_errno("could not read \"%s\"", path);
        return EXIT_FAIL;
    }
    ex.file_size = (uint64_t)st.st_size; /* the repository is pinned after this */
    res = walpage_check(page, (size_t)n, name, &ex, &h, why, sizeof(why));
    if (res != WALPAGE_OK) {
        log_error("refusing to archive \"%s\" as \"%s\": %s", path, name, why);
        return EXIT_INTEGRITY;
    }
    want->sysid = h.sysid;
    want->seg_size = h.seg_size;
    want->wal_magic = h.magic;
    return EXIT_OK;
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

/*
 * archive_file -- archive one WAL file (path, name) into the repository at loc; *rp
 * is opened on first use and kept for the next call (a look-ahead worker archives
 * several). Returns an exit status (see the head of this file).
 */
int archive_file(const char *loc, repo **rp, uring *ur, const char *path, const char *name,
                 const object_opts *oo)
{
    repo_info want = {0};
    walfile_kind kind = walname_classify(name);
    char key[128];
    zst_meta meta, stored;
    int fd, ret, status = EXIT_FAIL;
    repo *r;

    if (kind == WALFILE_INVALID || repo_wal_key(name, key, sizeof(key)) != 0) {
        log_error("refusing to archive \"%s\": not a WAL file name", name);
        return EXIT_USAGE;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_errno("could not open \"%s\"", path);
        return EXIT_FAIL;
    }
    if (kind == WALFILE_SEGMENT || kind == WALFILE_PARTIAL) {
        status = check_segment(fd, path, name, &want);
        if (status != EXIT_OK)
            goto out;
        status = EXIT_FAIL;
    }
    if (!*rp && !(*rp = repo_open(loc, ur, 1)))
        goto out;
    r = *rp;
    if (!want.sysid) {
        /* A history or backup file first into a new repository (a promoted standby):
         * pin it now from pg_control, or ragsafe-restore could not serve it. */
        ret = r->have_info ? 0 : repo_load_info(r);
        if (ret == RS_NOT_FOUND) {
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
            status = ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
            goto out;
        }
    }
    if (want.sysid) {
        ret = repo_pin(r, &want);
        if (ret != 0) {
            status = ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
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
    status = EXIT_OK;
out:
    close(fd);
    return status;
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {"ragsafe-archive", usage, EXIT_USAGE};
    static const struct option opts[] = {
        {"compress-level", required_argument, NULL, 'l'},
        {"compress-workers", required_argument, NULL, 'w'},
        {"look-ahead", required_argument, NULL, 'A'},
        CLI_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *opt_level = NULL, *opt_workers = NULL, *opt_ahead = NULL;
    const char *path, *name, *loc, *s;
    int c, status = EXIT_FAIL;
    long level = ZST_DEFAULT_LEVEL, workers = sysconf(_SC_NPROCESSORS_ONLN), ahead_n = -1;
    config *cfg = NULL;
    uring *ur = NULL;
    repo *r = NULL;
    walfile_kind kind;
    char key[128];
    object_opts oo;
    ahead *ah = NULL;
    cli cl;

    cli_init(&cl, &spec, argv[0]);
    while ((c = cli_getopt(&cl, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'l': opt_level = optarg; break;
        case 'w': opt_workers = optarg; break;
        case 'A': opt_ahead = optarg; break;
        default: return cl.status;
        }
    }
    if (argc - optind != 2) {
        log_error("expected 2 arguments (PATH NAME, i.e. %%p %%f), got %d", argc - optind);
        log_hint("archive_command = 'ragsafe-archive --repo DIR %%p %%f'");
        return EXIT_USAGE;
    }
    path = argv[optind];
    name = argv[optind + 1];

    cfg = cli_config(&cl);
    if (!cfg)
        return EXIT_USAGE;
    status = EXIT_USAGE;
    loc = cli_repo(&cl);
    if (!loc)
        goto out;
    if ((s = config_resolve(opt_level, NULL, cfg, "compress-level")) &&
        config_parse_int("--compress-level", s, 1, 19, &level) != 0)
        goto out;
    if (workers < 1 || workers > 4)
        workers = workers < 1 ? 1 : 4;
    if ((s = config_resolve(opt_workers, NULL, cfg, "compress-workers")) &&
        config_parse_int("--compress-workers", s, 0, 64, &workers) != 0)
        goto out;
    kind = walname_classify(name);
    if (kind == WALFILE_INVALID || repo_wal_key(name, key, sizeof(key)) != 0) {
        log_error("refusing to archive \"%s\": not a WAL file name", name);
        log_hint("the second argument is the file name alone (%%f)");
        goto out;
    }

    oo.level = (int)level;
    oo.workers = (int)workers;
    if ((s = config_resolve(opt_ahead, NULL, cfg, "look-ahead")) &&
        config_parse_int("--look-ahead", s, 0, 64, &ahead_n) != 0)
        goto out;
    if (ahead_n < 0) /* default: on for S3, where every archive is a round trip away */
        ahead_n = strncmp(loc, "s3://", 5) == 0 ? AHEAD_DEFAULT : 0;

    status = EXIT_FAIL;
    if (ahead_n > 0 && kind == WALFILE_SEGMENT) {
        /* Uploaded by an earlier call's look-ahead (confirmed before it was recorded)? */
        if (ahead_consume(path, name, loc) == 1) {
            log_info("\"%s\" was archived ahead by an earlier call", name);
            status = EXIT_OK;
            goto out;
        }
    }
    ur = uring_new(64);
    if (!ur) {
        log_error("out of memory");
        goto out;
    }
    log_debug("io_uring %s", uring_active(ur) ? "in use" : "not available; plain syscalls");
    /* The others go up alongside N once repo.json is known (read here, one round
     * trip); a new repository gets its repo.json from N first, which concurrent first
     * writers would race for. They all finish (and are recorded) before we answer. */
    if (ahead_n > 0 && kind == WALFILE_SEGMENT && (r = repo_open(loc, ur, 1)) != NULL) {
        int li = repo_load_info(r);
        if (li == RS_MISMATCH || li < 0) {
            status = li == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
            goto out;
        }
        if (li == 0)
            ah = ahead_start(loc, path, name, &oo, (int)ahead_n);
    }
    status = archive_file(loc, &r, ur, path, name, &oo);
    if (status == EXIT_OK && ahead_n > 0 && kind == WALFILE_SEGMENT && !ah)
        ah = ahead_start(loc, path, name, &oo, (int)ahead_n);
    ahead_finish(ah);
    ah = NULL;
out:
    ahead_finish(ah);
    repo_free(r);
    uring_free(ur);
    cli_release(&cl);
    return status;
}
