/*
 * ragsafe-receive -- WAL streaming into a ragsafe repository, for a recovery point of
 * zero: a service on the backup host that a primary can name in
 * synchronous_standby_names.
 *
 *     ragsafe-receive --repo /backups/pg --spool /var/lib/ragsafe/spool \
 *         -d "host=db user=replicator" --slot ragsafe --create-slot
 *
 * Runs until SIGTERM or SIGINT (exit 0, the segment in progress stored as a
 * partial). Exit 1 on a failure retrying cannot fix, 2 on a usage or configuration
 * error, 3 on an integrity refusal (a server of another cluster, a spool that
 * disagrees with the server, a segment stored with other content). Lost connections
 * and server restarts are retried, with backoff up to 5 s.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "receive.h"
#include "zst.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ragsafe-receive [OPTION]... --spool DIR\n"
            "Stream WAL into a ragsafe repository as a standby that can be synchronous.\n\n"
            "Options:\n"
            "  -d, --dbname CONNINFO      libpq connection string (default: PG* environment)\n"
            "      --slot NAME            physical replication slot to stream from\n"
            "      --create-slot          create the slot (RESERVE_WAL) unless it exists\n"
            "      --application-name NAME\n"
            "                             the name synchronous_standby_names lists\n"
            "                             (default %s)\n"
            "      --spool DIR            local directory for the segment in progress\n"
            "                             (absolute; required)\n"
            "      --partial-interval SECONDS\n"
            "                             store the segment in progress this often (default 1;\n"
            "                             fractions allowed)\n"
            "      --compress-level N     zstd level, 1..19 (default %d)\n"
            "      --compress-workers N   zstd worker threads (default: one per CPU, at most 4;\n"
            "                             0 compresses in the calling thread)\n",
            RECEIVE_DEFAULT_APPNAME, ZST_DEFAULT_LEVEL);
    cli_help_tail(out, CLI_KEY_NOTE CLI_S3_NOTE,
                  "Exit status: 0 stopped by SIGTERM or SIGINT, 1 failure, 2 usage or configuration\n"
                  "error, 3 integrity refusal (another cluster, a spool that disagrees).\n",
                  "Streaming WAL (ragsafe-receive)");
}

/* slot_name_ok -- PostgreSQL's rule: lower-case letters, digits, underscores, <= 63. */
static int slot_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {"ragsafe-receive", usage, EXIT_USAGE};
    static const struct option opts[] = {
        {"dbname", required_argument, NULL, 'd'},
        {"slot", required_argument, NULL, 1},
        {"create-slot", no_argument, NULL, 2},
        {"application-name", required_argument, NULL, 3},
        {"spool", required_argument, NULL, 4},
        {"partial-interval", required_argument, NULL, 5},
        {"compress-level", required_argument, NULL, 6},
        {"compress-workers", required_argument, NULL, 7},
        CLI_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *o_dbname = NULL, *o_slot = NULL, *o_app = NULL, *o_spool = NULL;
    const char *o_interval = NULL, *o_level = NULL, *o_workers = NULL, *s;
    long level = ZST_DEFAULT_LEVEL, workers = sysconf(_SC_NPROCESSORS_ONLN);
    int c, create = 0, status = EXIT_USAGE;
    receiver_opts o = {0};
    struct stat st;
    char *end;
    cli cl;

    cli_init(&cl, &spec, argv[0]);
    while ((c = cli_getopt(&cl, argc, argv, "d:", opts)) != -1) {
        switch (c) {
        case 'd': o_dbname = optarg; break;
        case 1: o_slot = optarg; break;
        case 2: create = 1; break;
        case 3: o_app = optarg; break;
        case 4: o_spool = optarg; break;
        case 5: o_interval = optarg; break;
        case 6: o_level = optarg; break;
        case 7: o_workers = optarg; break;
        default: return cl.status;
        }
    }
    if (optind < argc)
        return cli_usage_error(&cl, "too many command-line arguments (first is \"%s\")", argv[optind]);
    if (!cli_config(&cl))
        goto out;
    o.loc = cli_repo(&cl);
    if (!o.loc)
        goto out;
    o.conninfo = config_resolve(o_dbname, NULL, cl.cfg, "dbname");
    o.slot = config_resolve(o_slot, NULL, cl.cfg, "slot");
    o.appname = config_resolve(o_app, NULL, cl.cfg, "application-name");
    if (!o.appname)
        o.appname = RECEIVE_DEFAULT_APPNAME;
    o.spool = config_resolve(o_spool, NULL, cl.cfg, "spool");
    o.create_slot = create;
    if (o.slot && !slot_name_ok(o.slot)) {
        log_error("invalid replication slot name \"%s\"", o.slot);
        log_hint("a slot name has lower-case letters, digits and underscores only (63 at most)");
        goto out;
    }
    if (create && !o.slot) {
        log_error("--create-slot needs --slot NAME");
        goto out;
    }
    if (!o.spool) {
        log_error("no spool directory");
        log_hint("give --spool DIR (an absolute path on the backup host, e.g. /var/lib/ragsafe/spool)");
        goto out;
    }
    if (o.spool[0] != '/') {
        log_error("the spool directory \"%s\" is not an absolute path", o.spool);
        goto out;
    }
    if (stat(o.spool, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("the spool directory \"%s\" does not exist", o.spool);
        log_hint("create it (install -d -o postgres -m 0700 %s)", o.spool);
        goto out;
    }
    o.partial_interval = 1.0;
    if ((s = config_resolve(o_interval, NULL, cl.cfg, "partial-interval"))) {
        o.partial_interval = strtod(s, &end);
        if (end == s || *end || !(o.partial_interval >= 0.01 && o.partial_interval <= 3600)) {
            log_error("invalid --partial-interval \"%s\": seconds between 0.01 and 3600", s);
            goto out;
        }
    }
    if ((s = config_resolve(o_level, NULL, cl.cfg, "compress-level")) &&
        config_parse_int("--compress-level", s, 1, 19, &level) != 0)
        goto out;
    if (workers < 1 || workers > 4)
        workers = workers < 1 ? 1 : 4;
    if ((s = config_resolve(o_workers, NULL, cl.cfg, "compress-workers")) &&
        config_parse_int("--compress-workers", s, 0, 64, &workers) != 0)
        goto out;
    o.oo.level = (int)level;
    o.oo.workers = (int)workers;
    status = receiver_run(&o);
out:
    cli_release(&cl);
    return status;
}
