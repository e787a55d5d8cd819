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
#include "cli.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "repo.h"
#include "zst.h"

/* usage -- --help text. */
static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ragsafe-basebackup [OPTION]...                 take a base backup\n"
            "  or:  ragsafe-basebackup --verify LABEL [OPTION]...  check a stored backup\n"
            "Take a base backup of a PostgreSQL 15 cluster into a ragsafe repository.\n\n"
            "Options:\n"
            "  -d, --dbname CONNINFO      libpq connection string (default: PG* environment)\n"
            "  -r LOCATION                short for --repo\n"
            "  -l, --label NAME           backup label (default: UTC time YYYYMMDDTHHMMSSZ)\n"
            "  -c, --checkpoint MODE      fast or spread (default spread)\n"
            "      --max-rate RATE        server transfer limit in kB/s (suffix k or M; 32k..1024M)\n"
            "  -Z, --compress-level N     zstd level 1..19 (default %d)\n"
            "      --compress-workers N   zstd worker threads of --format tar (default: one per\n"
            "                             CPU; 0: compress in the streaming thread, byte-identical\n"
            "                             to one-thread zstd)\n"
            "      --wal-timeout SECONDS  wait at most this long for the archiver (default 60)\n"
            "  -F, --format FORMAT        chunked (deduplicated chunks shared by all backups;\n"
            "                             ragsafe-pitr extract writes the data directory) or tar\n"
            "                             (one base.tar.zst, stock tar reads it) (default chunked)\n"
            "      --json                 print backup.json on stdout instead of the label\n"
            "      --verify LABEL         verify a stored backup instead of taking one\n"
            PROGRESS_OPTIONS_HELP,
            ZST_DEFAULT_LEVEL);
    cli_help_tail(f, CLI_KEY_NOTE CLI_S3_NOTE,
                  "Exit status: 0 ok, 1 failure, 2 usage or configuration, 3 integrity (wrong cluster,\n"
                  "checksum mismatch, data-page checksum failure).\n",
                  "Base backups: ragsafe-basebackup");
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
    static const cli_spec spec = {"ragsafe-basebackup", usage, EXIT_USAGE};
    static const struct option longopts[] = {
        {"dbname", required_argument, NULL, 'd'},
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
        {"format", required_argument, NULL, 'F'},
        CLI_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *o_dbname = NULL, *o_label = NULL;
    const char *o_checkpoint = NULL, *o_rate = NULL, *o_level = NULL, *o_timeout = NULL;
    const char *o_verify = NULL, *o_workers = NULL, *o_format = NULL, *v;
    int json = 0, c, ret, status = EXIT_USAGE, progress = PROGRESS_AUTO;
    long level, workers;
    config *cfg = NULL;
    bb_opts o;
    cli cl;

    cli_init(&cl, &spec, argv[0]);
    while ((c = cli_getopt(&cl, argc, argv, "d:r:l:c:Z:F:", longopts)) != -1) {
        switch (c) {
        case 'd': o_dbname = optarg; break;
        case 'r': cl.rc.repo = optarg; break;
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
        case 'F': o_format = optarg; break;
        default: return cl.status;
        }
    }
    if (optind < argc)
        return cli_usage_error(&cl, "too many command-line arguments (first is \"%s\")", argv[optind]);

    cfg = cli_config(&cl);
    if (!cfg)
        goto out;
    memset(&o, 0, sizeof(o));
    o.repo = cli_repo(&cl);
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
    v = config_resolve(o_format, NULL, cfg, "format");
    if (!v || strcmp(v, "chunked") == 0)
        o.chunked = 1;
    else if (strcmp(v, "tar") == 0)
        o.chunked = 0;
    else {
        log_error("invalid --format \"%s\": expected tar or chunked", v);
        goto out;
    }

    ret = bb_run(&o);
    status = ret == 0 ? EXIT_OK : ret == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
out:
    cli_release(&cl);
    return status;
}
