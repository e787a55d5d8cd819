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
#include "walstore.h"

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
 * archive_file -- archive one WAL file (path, name) into the repository at loc; *rp
 * is opened on first use and kept for the next call (a look-ahead worker archives
 * several). The work is walstore_put's (shared with ragsafe-receive). Returns an
 * exit status (see the head of this file).
 */
int archive_file(const char *loc, repo **rp, uring *ur, const char *path, const char *name,
                 const object_opts *oo)
{
    char key[128];
    walfile_kind kind = walname_classify(name);
    int ret;

    if (kind == WALFILE_INVALID || repo_wal_key(name, key, sizeof(key)) != 0) {
        log_error("refusing to archive \"%s\": not a WAL file name", name);
        return EXIT_USAGE;
    }
    ret = walstore_put(loc, rp, ur, path, name, oo, NULL);
    return ret == 0 ? EXIT_OK : ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
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
    /* Plain syscalls, not io_uring: on this kind of machine (a VM, 2 cores) the ring's
     * setup and its io-wq worker threads cost more than the read-ahead overlaps: 15 %
     * more CPU per 16 MiB segment and a longer median call, idle and loaded alike
     * (bench-wal's RAGSAFE_NO_URING row, 2026-11-27 and 2026-12-02). RAGSAFE_URING=1
     * opts in where the storage makes the overlap pay. */
    ur = uring_new_opt_in(64);
    if (!ur) {
        log_error("out of memory");
        goto out;
    }
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
