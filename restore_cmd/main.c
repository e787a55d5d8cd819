/*
 * ragsafe-restore -- PostgreSQL's restore_command.
 *
 *     restore_command = 'ragsafe-restore --repo /backups/pg %f %p'
 *
 * Exit 0: PATH holds the file, decompressed and its SHA-256 checked before it was
 * renamed into place. Exit 1: the file is not in the repository (PostgreSQL asks for
 * files that do not exist; this is quiet). Every other failure exits 128: a status
 * above 125 makes PostgreSQL abort recovery with FATAL, where a 1 would make it take
 * a damaged or unreachable repository for the end of the archive, end recovery early
 * and promote, losing every later transaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "restore.h"
#include "uring.h"
#include "walname.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ragsafe-restore [OPTION]... NAME PATH\n"
            "Fetch one WAL file from a ragsafe repository (PostgreSQL's restore_command).\n\n"
            "  restore_command = 'ragsafe-restore --repo /backups/pg %%f %%p'\n\n"
            "Options:\n"
            "      --prefetch N           also fetch the next N segments in parallel into\n"
            "                             pg_wal/ragsafe-prefetch (default %d for s3://, 0 otherwise)\n",
            PREFETCH_DEFAULT);
    cli_help_tail(out, CLI_KEY_NOTE CLI_S3_NOTE,
                  "Exit status: 0 restored, 1 not in the repository, 128 any other failure, usage\n"
                  "errors included (PostgreSQL then stops recovery instead of promoting early).\n",
                  "ragsafe-restore (restore_command)");
}

/*
 * restore_check_segment -- a restored segment (or .partial) must be the one its name
 * says, of the repository's cluster: the long page header's system identifier,
 * segment size, page address and timeline (the name's, or an ancestor's per the
 * name's history file, fetched only then), and one segment long (walpage_check).
 * A segment under another segment's name would end recovery early at "unexpected
 * pageaddr" and promote. 0 | -1 reported.
 */
int restore_check_segment(int fd, const char *tmp, const char *name, uint64_t raw_size,
                          storage *st, const repo_info *info)
{
    uint8_t page[WAL_LONG_HEADER_SIZE];
    walpage_expect ex = {.sysid = info->sysid, .seg_size = info->seg_size,
                         .file_size = raw_size, .check_tli = 1};
    walhistory hist = {0};
    walpage_info h;
    char why[256], hname[17], key[128], *text = NULL;
    ssize_t n = pread(fd, page, sizeof(page), 0);
    size_t len;
    uint32_t tli;
    int res, ret = -1;

    if (n < 0)
        return log_errno("could not read \"%s\"", tmp);
    res = walpage_check(page, (size_t)n, name, &ex, &h, why, sizeof(why));
    if (res == WALPAGE_WRONG_TIMELINE &&
        walname_parse(name, info->seg_size ? info->seg_size : h.seg_size, &tli, NULL) == 0 &&
        h.tli < tli) {
        /* the first segment of a timeline starts with an ancestor's pages */
        walname_history(hname, tli);
        if (repo_wal_key(hname, key, sizeof(key)) != 0)
            goto bad;
        int r = object_get_buf(st, key, 1 << 20, &text, &len, NULL);
        if (r == RS_NOT_FOUND) {
            log_error("stored \"%s\" holds pages of timeline %u, and the repository has no %s to "
                      "tell whether that is an ancestor", name, h.tli, hname);
            goto out;
        }
        if (r != 0) {
            log_detail("while checking the timeline of \"%s\"", name);
            goto out;
        }
        if (walhistory_parse(text, len, tli, &hist) != 0) {
            log_error("could not parse \"%s\" from the repository (damaged)", hname);
            goto out;
        }
        ex.history = &hist;
        res = walpage_check(page, (size_t)n, name, &ex, &h, why, sizeof(why));
    }
bad:
    if (res != WALPAGE_OK) {
        log_error("stored \"%s\" is not that WAL segment: %s", name, why);
        log_hint("the object is damaged or was stored under the wrong name; "
                 "run ragsafe-pitr verify on the repository");
        goto out;
    }
    ret = 0;
out:
    walhistory_release(&hist);
    free(text);
    return ret;
}

/*
 * stream_partial -- the segment name is not in wal/: serve ragsafe-receive's
 * stream/<TTTTTTTT>/<name>.partial instead (decompressed and verified into fd, as any
 * object), but only at the very end of the archive: no later segment of that
 * timeline in wal/ and no history file of the next timeline. Anywhere else a partial
 * is stale (the full segment or a later history superseded it) and serving it would
 * end recovery early. Cheap: a HEAD for the partial, one for the next history file,
 * and a listing of the segment's folder and the next one, not of all of wal/.
 * 0 (served) | RS_NOT_FOUND | RS_MISMATCH / -1 (reported).
 */
typedef struct later_seg {
    uint32_t tli, seg_size;
    uint64_t segno;
} later_seg;

static int later_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    const later_seg *ls = arg;
    char name[64];
    uint32_t tli;
    uint64_t segno;

    (void)size;
    (void)mtime;
    if (repo_wal_name_from_key(key, name, sizeof(name)) != 0 ||
        walname_classify(name) != WALFILE_SEGMENT ||
        walname_parse(name, ls->seg_size, &tli, &segno) != 0)
        return 0;
    return tli == ls->tli && segno > ls->segno ? 1 : 0;
}

static int stream_partial(storage *st, const repo_info *info, const char *name, int fd,
                          zst_meta *meta)
{
    later_seg ls = {0, info->seg_size, 0};
    char pkey[96], hname[17], hkey[128], prefix[64];
    uint64_t per_log;
    int ret;

    if (!info->seg_size || walname_parse(name, info->seg_size, &ls.tli, &ls.segno) != 0)
        return RS_NOT_FOUND;
    snprintf(pkey, sizeof(pkey), "stream/%08X/%s.partial", ls.tli, name);
    ret = storage_stat(st, pkey, NULL, NULL);
    if (ret != 0)
        return ret;
    walname_history(hname, ls.tli + 1);
    if (repo_wal_key(hname, hkey, sizeof(hkey)) != 0)
        return RS_NOT_FOUND;
    ret = storage_stat(st, hkey, NULL, NULL);
    if (ret == 0) {
        log_debug("not serving \"%s\": timeline %u exists", pkey, ls.tli + 1);
        return RS_NOT_FOUND;
    }
    if (ret != RS_NOT_FOUND)
        return ret;
    per_log = 0x100000000ull / info->seg_size;
    for (uint64_t log = ls.segno / per_log; log <= ls.segno / per_log + 1; log++) {
        snprintf(prefix, sizeof(prefix), "wal/%08X%08X/", ls.tli, (uint32_t)log);
        ret = storage_list(st, prefix, later_cb, &ls);
        if (ret == 1) {
            log_debug("not serving \"%s\": a later segment of timeline %u is archived", pkey, ls.tli);
            return RS_NOT_FOUND;
        }
        if (ret != 0)
            return -1;
    }
    ret = object_get_fd(st, pkey, fd, meta);
    if (ret == 0)
        log_notice("\"%s\" is not archived: served the streamed partial segment \"%s\" "
                   "(ragsafe-receive; the end of the archive)", name, pkey);
    return ret;
}

int main(int argc, char **argv)
{
    /* a usage error must not read as "not found" either: recovery would end */
    static const cli_spec spec = {"ragsafe-restore", usage, EXIT_RESTORE_FATAL};
    static const struct option opts[] = {
        {"prefetch", required_argument, NULL, 'P'},
        CLI_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *name, *path, *loc, *opt_prefetch = NULL, *s;
    long prefetch_n = -1;
    prefetch *pf = NULL;
    int c, status = EXIT_RESTORE_FATAL, fd = -1, ret;
    config *cfg = NULL;
    uring *ur = NULL;
    repo *r = NULL;
    storage_lock *lk = NULL;
    walfile_kind kind;
    char key[128], *tmp = NULL;
    zst_meta meta;
    cli cl;

    cli_init(&cl, &spec, argv[0]);
    while ((c = cli_getopt(&cl, argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'P': opt_prefetch = optarg; break;
        default: return cl.status;
        }
    }
    if (argc - optind != 2) {
        log_error("expected 2 arguments (NAME PATH, i.e. %%f %%p), got %d", argc - optind);
        log_hint("restore_command = 'ragsafe-restore --repo DIR %%f %%p'");
        return EXIT_RESTORE_FATAL;
    }
    name = argv[optind];
    path = argv[optind + 1];
    kind = walname_classify(name);
    if (kind == WALFILE_INVALID || repo_wal_key(name, key, sizeof(key)) != 0) {
        log_error("refusing to restore \"%s\": not a WAL file name", name);
        return EXIT_RESTORE_FATAL;
    }

    cfg = cli_config(&cl);
    if (!cfg)
        goto out;
    loc = cli_repo(&cl);
    if (!loc)
        goto out;
    if ((s = config_resolve(opt_prefetch, NULL, cfg, "prefetch")) &&
        config_parse_int("--prefetch", s, 0, 16, &prefetch_n) != 0)
        goto out;
    if (prefetch_n < 0) /* default: on for S3, where every fetch is a round trip away */
        prefetch_n = strncmp(loc, "s3://", 5) == 0 ? PREFETCH_DEFAULT : 0;
    /* a spooled copy (prefetched, or handed over verified by ragsafe-pitr restore) is
     * taken whatever --prefetch says */
    if (kind == WALFILE_SEGMENT && prefetch_take(path, name) == 1) {
        status = EXIT_OK;
        goto out;
    }
    /* Plain syscalls, not io_uring: the call reads one compressed object (about
     * 1.3 MiB for a 16 MiB pgbench segment) and writes from one buffer
     * (object_get_into, lib/objinto.c); a ring's setup and its io-wq worker threads
     * cost more than they overlap (bench-wal: 13 % more CPU per call, median wall 10 %
     * longer). */
    ur = uring_new_opt_in(64); /* RAGSAFE_URING=1 opts in */
    if (!ur) {
        log_error("out of memory");
        goto out;
    }
    r = repo_open(loc, ur, 0);
    if (!r) {
        log_detail("while restoring \"%s\"", name);
        goto out;
    }
    ret = repo_load_info(r);
    if (ret == RS_NOT_FOUND) {
        /* An empty directory (an unmounted volume, a wrong path) must not answer
         * "not found" for every file. */
        log_error("\"%s\" is not a ragsafe repository: it has no %s", storage_location(r->st), REPO_INFO_KEY);
        log_detail("while restoring \"%s\"", name);
        goto out;
    }
    if (ret != 0) {
        log_detail("while restoring \"%s\"", name);
        goto out;
    }
    /* posix: the retention lock, shared (one flock, microseconds), so a running
     * ragsafe-pitr expire is waited for and never deletes what is being fetched. S3: no
     * lease per segment (a PUT and a DELETE per call); ragsafe-pitr restore holds one
     * for the whole recovery. */
    if (!storage_is_s3(r->st) && storage_reader_lock(r->st, &lk) != 0) {
        log_detail("while restoring \"%s\"", name);
        goto out;
    }

    /* The next segments are fetched alongside this one (no round trip to ask whether
     * it exists first: the fetch itself answers "not found"). */
    if (prefetch_n > 0 && kind == WALFILE_SEGMENT)
        pf = prefetch_start(loc, path, name, &r->info, (int)prefetch_n);

    tmp = malloc(strlen(path) + 16);
    if (!tmp) {
        log_error("out of memory");
        goto out;
    }
    sprintf(tmp, "%s.ragsafe-tmp", path);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_errno("could not create \"%s\"", tmp);
        goto out;
    }
    ret = OBJECT_INTO_UNSUPPORTED;
    /* the one-call fast path (object.h): one buffer of the segment's size; larger
     * segments (wal_segment_size goes to 1 GiB) stream, one buffer of their size would
     * double the memory a call holds */
    if (kind == WALFILE_SEGMENT && r->info.seg_size && r->info.seg_size <= OBJECT_INTO_MAX) {
        uint8_t *seg = object_into_alloc(r->info.seg_size);
        if (seg)
            ret = object_get_into(r->st, key, seg, r->info.seg_size, fd, NULL, &meta);
        free(seg);
    }
    if (ret == OBJECT_INTO_UNSUPPORTED) /* no buffer, or a libzstd that cannot: stream */
        ret = object_get_fd(r->st, key, fd, &meta);
    if (ret == RS_NOT_FOUND && kind == WALFILE_SEGMENT)
        ret = stream_partial(r->st, &r->info, name, fd, &meta);
    if (ret == RS_NOT_FOUND) {
        log_debug("\"%s\" is not in the repository", name);
        /* a missing segment: recovery is about to end or switch timelines, nothing
         * spooled is wanted; a missing history file: the end of a recovery to a target
         * (the new timeline's number is chosen), or only a probe at start-up (a server
         * following "latest" asks for the next timeline's): what was handed over stays */
        prefetch_finish(pf);
        pf = NULL;
        prefetch_clear(path, kind != WALFILE_SEGMENT);
        status = EXIT_FAIL;
        goto out;
    }
    if (ret != 0) {
        log_detail("while restoring \"%s\"; nothing was written to \"%s\"", name, path);
        goto out;
    }
    if ((kind == WALFILE_SEGMENT || kind == WALFILE_PARTIAL) &&
        restore_check_segment(fd, tmp, name, meta.raw_size, r->st, &r->info) != 0)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        log_errno("could not write \"%s\"", tmp);
        goto out;
    }
    fd = -1;
    /* No fsync: a file lost in a crash during recovery is simply fetched again. */
    if (rename(tmp, path) != 0) {
        log_errno("could not rename \"%s\" to \"%s\"", tmp, path);
        goto out;
    }
    free(tmp);
    tmp = NULL;
    log_info("restored \"%s\" (%" PRIu64 " byte%s) to \"%s\"", name, meta.raw_size, PLURAL(meta.raw_size),
             path);
    status = EXIT_OK;
out:
    prefetch_finish(pf);
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(tmp);
    storage_lock_release(lk);
    repo_free(r);
    uring_free(ur);
    cli_release(&cl);
    return status;
}
