/*
 * main.c -- ragsafe-basebackup: options, configuration, exit statuses.
 *
 *     ragsafe-basebackup [-d CONNINFO] --repo DIR [options]     take a base backup
 *     ragsafe-basebackup --repo DIR --verify LABEL              check a stored backup
 *
 * Exit: 0 done (the label, or backup.json with --json, on stdout); 1 failure; 2 usage
 * or configuration; 3 integrity (another cluster's repository, checksum mismatch,
 * data-page checksum failures on the server).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basebackup.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "repo.h"
#include "zst.h"

/* usage -- --help text. */
static void usage(FILE *f)
{
    fprintf(f,
            "%s takes a base backup of a PostgreSQL 15 cluster over the replication protocol\n"
            "into a ragsafe repository.\n\n"
            "Usage:\n"
            "  %s [OPTION]...                 take a backup\n"
            "  %s --verify LABEL [OPTION]...  check a stored backup's checksums\n\n"
            "Options:\n"
            "  -d, --dbname=CONNINFO      libpq connection string (default: PG* environment)\n"
            "  -r, --repo=LOCATION        repository (or $RAGSAFE_REPO, or \"repo\" in the config)\n"
            REPO_OPTIONS_HELP
            "      --config=FILE          config file (default $RAGSAFE_CONFIG or %s)\n"
            "  -l, --label=NAME           backup label (default: UTC time YYYYMMDDTHHMMSSZ)\n"
            "  -c, --checkpoint=fast|spread  checkpoint mode (default spread)\n"
            "      --max-rate=RATE        server transfer limit in kB/s (suffix k or M; 32k..1024M)\n"
            "  -Z, --compress-level=N     zstd level 1..19 (default %d)\n"
            "      --compress-workers=N   zstd worker threads (default: one per CPU; 0: compress\n"
            "                             in the streaming thread, byte-identical to one-thread zstd)\n"
            "      --wal-timeout=SECONDS  wait at most this long for the archiver (default 60)\n"
            "      --json                 print backup.json on stdout instead of the label\n"
            "      --verify=LABEL         verify a stored backup instead of taking one\n"
            PROGRESS_OPTIONS_HELP
            "  -v, --verbose              more messages (twice: debug)\n"
            "  -V, --version              print the version and exit\n"
            "  -h, --help                 print this help and exit\n\n"
            "Exit status: 0 ok, 1 failure, 2 usage or configuration, 3 integrity (wrong cluster,\n"
            "checksum mismatch, data-page checksum failure).\n",
            log_progname(), log_progname(), log_progname(), CONFIG_DEFAULT_PATH, ZST_DEFAULT_LEVEL);
}

/* parse_rate -- "1000", "100k", "10M" (kB/s) into kB/s; the server's range 32..1048576. */
static int parse_rate(const char *s, long *kb)
{
    char *end;
    long v = strtol(s, &end, 10), mult = 1;

    if (end == s || v <= 0)
        goto bad;
    if (*end == 'k' || *end == 'K')
        end++;
    else if (*end == 'M') {
        mult = 1024;
        end++;
    }
    if (*end != '\0' || v > 1048576 / mult || v * mult < 32)
        goto bad;
    *kb = v * mult;
    return 0;
bad:
    return log_error("invalid --max-rate \"%s\": expected 32k..1024M (kB per second)", s);
}

/* main -- options (flags > environment > config file), then bb_run or bb_verify. */
int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dbname", required_argument, NULL, 'd'},
        REPO_LONG_OPTIONS,
        {"config", required_argument, NULL, 1},
        {"label", required_argument, NULL, 'l'},
        {"checkpoint", required_argument, NULL, 'c'},
        {"max-rate", required_argument, NULL, 2},
        {"compress-level", required_argument, NULL, 'Z'},
        {"wal-timeout", required_argument, NULL, 3},
        {"json", no_argument, NULL, 4},
        {"verify", required_argument, NULL, 5},
        {"compress-workers", required_argument, NULL, 6},
        {"progress", no_argument, NULL, 7},
        {"no-progress", no_argument, NULL, 8},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    repo_cli rc = {0};
    const char *o_dbname = NULL, *o_config = NULL, *o_label = NULL;
    const char *o_checkpoint = NULL, *o_rate = NULL, *o_level = NULL, *o_timeout = NULL;
    const char *o_verify = NULL, *o_workers = NULL, *v;
    int verbose = 0, json = 0, c, ret, status = EXIT_USAGE, progress = PROGRESS_AUTO;
    long level, workers;
    config *cfg = NULL;
    bb_opts o;

    log_init(argv[0]);
    while ((c = getopt_long(argc, argv, "d:r:l:c:Z:vVh", longopts, NULL)) != -1) {
        if (repo_cli_option(&rc, c == 'r' ? REPO_OPT_REPO : c, optarg))
            continue;
        switch (c) {
        case 'd': o_dbname = optarg; break;
        case 1: o_config = optarg; break;
        case 'l': o_label = optarg; break;
        case 'c': o_checkpoint = optarg; break;
        case 2: o_rate = optarg; break;
        case 'Z': o_level = optarg; break;
        case 3: o_timeout = optarg; break;
        case 4: json = 1; break;
        case 5: o_verify = optarg; break;
        case 6: o_workers = optarg; break;
        case 7: progress = PROGRESS_ON; break;
        case 8: progress = PROGRESS_OFF; break;
        case 'v': verbose++; break;
        case 'V': printf("ragsafe-basebackup %s\n", RAGSAFE_VERSION); return EXIT_OK;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            fprintf(stderr, "Try \"%s --help\" for more information.\n", log_progname());
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        log_error("too many command-line arguments (first is \"%s\")", argv[optind]);
        fprintf(stderr, "Try \"%s --help\" for more information.\n", log_progname());
        return EXIT_USAGE;
    }
    log_set_level(LOG_LEVEL_NOTICE + verbose);

    cfg = config_load(o_config);
    if (!cfg)
        goto out;
    memset(&o, 0, sizeof(o));
    o.repo = repo_cli_setup(&rc, cfg);
    if (!o.repo)
        goto out;
    if (o_verify) {
        if (!bb_label_valid(o_verify)) {
            log_error("invalid backup label \"%s\"", o_verify);
            goto out;
        }
        ret = bb_verify(o.repo, o_verify, progress);
        status = ret == 0 ? EXIT_OK : ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
        goto out;
    }

    o.conninfo = config_resolve(o_dbname, NULL, cfg, "dbname");
    o.label = o_label;
    if (o.label && !bb_label_valid(o.label)) {
        log_error("invalid backup label \"%s\"", o.label);
        log_detail("a label is 1 to %d characters of letters, digits, '_', '-' and '.', not starting "
                   "with '.' or '-' and not ending in \".partial\"", BB_LABEL_MAX);
        goto out;
    }
    v = config_resolve(o_checkpoint, NULL, cfg, "checkpoint");
    if (!v || strcmp(v, "spread") == 0)
        o.fast_checkpoint = 0;
    else if (strcmp(v, "fast") == 0)
        o.fast_checkpoint = 1;
    else {
        log_error("invalid --checkpoint \"%s\": expected fast or spread", v);
        goto out;
    }
    v = config_resolve(o_rate, NULL, cfg, "max-rate");
    if (v && parse_rate(v, &o.max_rate_kb) != 0)
        goto out;
    v = config_resolve(o_level, NULL, cfg, "compress-level");
    level = ZST_DEFAULT_LEVEL;
    if (v && config_parse_int("--compress-level", v, 1, 19, &level) != 0)
        goto out;
    o.level = (int)level;
    v = config_resolve(o_workers, NULL, cfg, "compress-workers");
    workers = -1;
    if (v && config_parse_int("--compress-workers", v, 0, 64, &workers) != 0)
        goto out;
    o.workers = (int)workers;
    v = config_resolve(o_timeout, NULL, cfg, "wal-timeout");
    o.wal_timeout = 60;
    if (v && config_parse_duration("--wal-timeout", v, &o.wal_timeout) != 0)
        goto out;
    o.json = json;
    o.progress = progress;

    ret = bb_run(&o);
    status = ret == 0 ? EXIT_OK : ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
out:
    config_free(cfg);
    repo_cli_release();
    return status;
}
