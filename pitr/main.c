/*
 * ragsafe-pitr -- the DBA's point-in-time-recovery tool.
 *
 *     ragsafe-pitr init    [--cipher-key-file F] [--pgdata DIR | -d CONNINFO] [--owner USER]
 *     ragsafe-pitr info    [--json]
 *     ragsafe-pitr plan    TARGET
 *     ragsafe-pitr restore TARGET --pgdata DIR [--target-action A] [--force | --delta]
 *                          [--tablespace-map OID=DIR]... [--owner USER] [--start]
 *                          [--archive-mode off|preserve] [--set NAME=VALUE]... [--port N]
 *                          [--type recovery|standby]
 *     ragsafe-pitr dump    TARGET --dbname DB --file OUT [--table T]... [--schema S]...
 *                          [--schema-only | --data-only] [--format custom|plain|directory]
 *                          [--jobs N] [--scratch DIR] [--keep-scratch]   (dump.c)
 *     ragsafe-pitr verify
 *     ragsafe-pitr extract LABEL DIR [--jobs N]                       (chunked.c)
 *     ragsafe-pitr check   -d CONNINFO [--min-free SIZE] [--rpo DUR] [--max-backup-age DUR]
 *                          [--max-milvus-age DUR] [--switch-timeout DUR]
 *                          [--max-slot-wal SIZE]   (check.c)
 *     ragsafe-pitr expire  [--keep-window 7d] [--keep-daily N] [--keep-backups 30d]
 *                          [--min-backups N] [--now TIME] [--dry-run]
 *
 * TARGET: --target-time TS | --target-lsn LSN | --target-xid XID | --target-name NAME |
 * --target-latest | --target-immediate, with --target-timeline N|latest, --exclusive.
 *
 * Exit status: 0 ok; 1 failure or unreachable target; 2 usage; 3 integrity failure.
 */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "pitr.h"
#include "timefmt.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ragsafe-pitr SUBCOMMAND [OPTION]...\n"
            "Point-in-time recovery from a ragsafe repository, its verification and retention.\n\n"
            "Subcommands:\n"
            "  init                       create the repository: its directory, repo.json with\n"
            "                             the cluster's identity (--pgdata or -d), the encryption\n"
            "                             record (--cipher-key-file); no tool creates a\n"
            "                             repository's directory by itself\n"
            "  info                       backups, WAL per timeline, restorable window, RPO\n"
            "  plan TARGET                which backup and WAL a restore to TARGET needs\n"
            "  restore TARGET --pgdata DIR\n"
            "                             restore a data directory set up to recover\n"
            "  dump TARGET --dbname DB --file OUT\n"
            "                             pg_dump of DB as of TARGET, from the repository alone\n"
            "  verify                     re-hash every object, check WAL continuity and backups\n"
            "  extract LABEL DIR          write backup LABEL as a plain data directory into the\n"
            "                             empty or absent DIR (no recovery set up)\n"
            "  expire                     delete backups and WAL outside the retention policy\n"
            "  rekey --new-cipher-key-file FILE\n"
            "                             re-seal everything under a new key (resumable)\n"
            "  check -d CONNINFO          every archiving/backup prerequisite at once, ok or FAILED\n\n"
            "Targets (one):\n"
            "      --target-time TS       ISO 8601 (an offset or Z; none: local time)\n"
            "      --target-lsn LSN       a WAL location (0/3000000)\n"
            "      --target-xid XID       a transaction ID\n"
            "      --target-name NAME     a restore point (pg_create_restore_point)\n"
            "      --target-latest        everything archived\n"
            "      --target-immediate     the backup's consistency point\n"
            "      --target-timeline TLI  N or latest (default latest)\n"
            "      --exclusive            stop just before the target, not after it\n\n"
            "Restore options:\n"
            "  -D, --pgdata DIR           data directory to create (must be empty or absent)\n"
            "      --target-action ACTION\n"
            "                             promote (default), pause or shutdown\n"
            "      --force                move a non-empty DIR aside to DIR" CLI_ASIDE_TAG "TIME\n"
            "      --delta                DIR holds a stale copy of the same cluster: keep the\n"
            "                             files that match backup_manifest, replace the rest,\n"
            "                             remove what the backup does not have\n"
            "      --tablespace-map OID=DIR\n"
            "                             restore tablespace OID into DIR\n"
            "      --owner USER           owner of the restored files (as root; default: the\n"
            "                             owner of DIR's parent)\n"
            "      --start                start the server, follow recovery, report the stop;\n"
            "                             it pauses at the target and is promoted at once\n"
            "                             (the end-of-recovery checkpoint in the background)\n"
            "      --end-of-recovery-checkpoint\n"
            "                             with --start: let recovery end by itself, promoting\n"
            "                             after PostgreSQL's end-of-recovery checkpoint\n"
            "      --pg-bin DIR           PostgreSQL binaries (default: pg_config --bindir)\n"
            "      --timeout DURATION     how long --start waits for recovery (default 24h)\n"
            "      --archive-mode MODE    off (default): the restored copy does not archive\n"
            "                             (archive_mode = off); preserve: keep the backed-up\n"
            "                             server's archiving (a real disaster recovery)\n"
            "      --set NAME=VALUE       a setting for the restored postgresql.auto.conf\n"
            "                             (repeatable; e.g. unix_socket_directories=/tmp)\n"
            "      --port N               the restored server's port (--set port=N)\n"
            "      --type TYPE            recovery (default): recover to TARGET; standby: a\n"
            "                             standby (standby.signal) following the archive\n"
            "                             (primary_conninfo via --set)\n"
            "      --no-space-check       skip the free-space check (a file system whose free\n"
            "                             space statvfs under-reports: compressed, thin)\n"
            "                             (--jobs N, below: threads reading a chunked backup)\n\n"
            "Dump options (and --owner, --pg-bin, --timeout, --set, --no-space-check;\n"
            "-d, --dbname DB: the database to dump):\n"
            "      --file OUT             the dump (written under a temporary name, renamed)\n"
            "      --table T              only table T (repeatable; pg_dump -t)\n"
            "      --schema S             only schema S (repeatable; pg_dump -n)\n"
            "      --schema-only          definitions only\n"
            "      --data-only            data only\n"
            "      --format FORMAT        custom (default), plain or directory\n"
            "      --jobs N               parallel pg_dump (--format directory); restore, dump,\n"
            "                             extract of a chunked backup: threads reading chunk\n"
            "                             packs (default: the number of cores)\n"
            "      --scratch DIR          where the private scratch copy is made (default\n"
            "                             $TMPDIR or /var/tmp); removed on every exit\n"
            "      --keep-scratch         leave the scratch directory (its server stopped)\n\n"
            "Expire options (DURATION: 90m, 36h, 7d, 2w):\n"
            "      --keep-window DURATION\n"
            "                             every instant of this window stays restorable (7d)\n"
            "      --keep-daily N         also keep the newest backup of each of the last N\n"
            "                             UTC days (today first; the newest holds the day's\n"
            "                             work) with only the WAL it needs to be consistent:\n"
            "                             the WAL between these and the window goes; always\n"
            "                             keeps the newest backup; --keep-backups is then off\n"
            "                             unless given\n"
            "      --keep-backups DURATION\n"
            "                             keep backups younger than this (30d)\n"
            "      --min-backups N        keep at least N backups (1)\n"
            "      --now TIME             decide as if run at TIME (RFC 3339; tests, dry runs;\n"
            "                             a TIME in the future only with --dry-run)\n"
            "      --dry-run              only say what would be deleted\n\n"
            "Rekey options:\n"
            "      --new-cipher-key-file FILE\n"
            "                             the new key (the current one: --cipher-key-file)\n\n"
            "Init options (-D, --pgdata DIR: record the identity of the cluster in DIR, from\n"
            "global/pg_control; -d, --dbname CONNINFO: of this server, IDENTIFY_SYSTEM;\n"
            "--owner USER: as root, the owner of the new directory, default postgres)\n\n"
            "Check options (exit 0 all ok, 1 a warning, 2 a failure or a usage error):\n"
            "  -d, --dbname CONNINFO      the server (libpq string; default: \"dbname\" in the\n"
            "                             config, then PG* variables), as a superuser or a\n"
            "                             role with REPLICATION, pg_monitor and EXECUTE on\n"
            "                             pg_switch_wal()\n"
            "      --min-free SIZE        free space the repository needs (50G)\n"
            "      --rpo DURATION         recovery point objective (5m): archive_timeout and\n"
            "                             the newest segment's age\n"
            "      --max-backup-age DURATION\n"
            "                             oldest the newest base backup may be (30h)\n"
            "      --max-milvus-age DURATION\n"
            "                             oldest the newest Milvus snapshot may be (30h)\n"
            "      --switch-timeout DURATION\n"
            "                             wait for the forced segment switch (60s)\n"
            "      --max-slot-wal SIZE    most WAL a replication slot may hold back (1G)\n"
            "                             (each also from the config file: rpo, min-free, ...)\n\n"
            "Options:\n"
            "      --json                 machine-readable output on stdout\n"
            "      --prometheus           info: node_exporter textfile metrics on stdout\n"
            "      --progress             restore, verify: progress on stderr even when it is\n"
            "                             not a terminal (on a terminal: one line, redrawn)\n"
            "      --no-progress          no progress line on a terminal either\n");
    cli_help_tail(out, CLI_KEY_NOTE CLI_S3_NOTE,
                  "Exit status: 0 ok, 1 failure or unreachable target, 2 usage, 3 integrity failure.\n",
                  "Point-in-time recovery: ragsafe-pitr");
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

enum {
    OPT_JSON = 256, OPT_PROMETHEUS, OPT_TTIME, OPT_TLSN, OPT_TXID, OPT_TNAME,
    OPT_TLATEST, OPT_TIMMEDIATE, OPT_TTLI, OPT_EXCL, OPT_ACTION, OPT_FORCE, OPT_TSMAP,
    OPT_START, OPT_OWNER, OPT_PGBIN, OPT_TIMEOUT, OPT_KEEPWIN, OPT_KEEPBK, OPT_MINBK, OPT_DRY, OPT_KEEPDAILY, OPT_NOW,
    OPT_ARCHMODE, OPT_SET, OPT_PORT, OPT_TYPE, OPT_NOSPACE, OPT_NEWKEY, OPT_DELTA,
    OPT_PROGRESS, OPT_NOPROGRESS, OPT_TABLE, OPT_SCHEMA, OPT_SCHEMAONLY, OPT_DATAONLY,
    OPT_FORMAT, OPT_JOBS, OPT_FILE, OPT_SCRATCH, OPT_KEEPSCRATCH, OPT_MINFREE, OPT_RPO, OPT_MAXBKAGE, OPT_MAXMVAGE, OPT_SWTIMEOUT, OPT_MAXSLOTWAL,
    OPT_EORCKPT,
};

/* valid_set -- NAME=VALUE with NAME a GUC name and a value postgresql.conf can hold. */
static int valid_set(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !(islower((unsigned char)arg[0]) || arg[0] == '_')) {
        log_error("invalid --set \"%s\": want NAME=VALUE with NAME like [a-z_][a-z0-9_.]*",
                  arg);
        return -1;
    }
    for (const char *c = arg; c < eq; c++)
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_' ||
              *c == '.')) {
            log_error("invalid --set \"%s\": the setting name may hold a-z, 0-9, _ and . only",
                      arg);
            return -1;
        }
    if (strpbrk(eq + 1, "\n\r")) {
        log_error("invalid --set \"%.*s\": the value may not hold a line break", (int)(eq - arg),
                  arg);
        return -1;
    }
    return 0;
}

static int add_set(pitr_opts *o, const char *s)
{
    const char **n = realloc(o->sets, (o->nsets + 1) * sizeof(*n));
    if (!n)
        return log_error("out of memory");
    o->sets = n;
    o->sets[o->nsets++] = s;
    return 0;
}

static int set_target(pitr_opts *o, enum target_kind k, const char *arg)
{
    if (o->kind != TARGET_NONE && o->kind != k) {
        log_error("only one recovery target may be given");
        return -1;
    }
    o->kind = k;
    o->target_str = arg;
    return 0;
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {"ragsafe-pitr", usage, EXIT_USAGE};
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"prometheus", no_argument, NULL, OPT_PROMETHEUS},
        {"target-time", required_argument, NULL, OPT_TTIME},
        {"target-lsn", required_argument, NULL, OPT_TLSN},
        {"target-xid", required_argument, NULL, OPT_TXID},
        {"target-name", required_argument, NULL, OPT_TNAME},
        {"target-latest", no_argument, NULL, OPT_TLATEST},
        {"target-immediate", no_argument, NULL, OPT_TIMMEDIATE},
        {"target-timeline", required_argument, NULL, OPT_TTLI},
        {"exclusive", no_argument, NULL, OPT_EXCL},
        {"pgdata", required_argument, NULL, 'D'},
        {"target-action", required_argument, NULL, OPT_ACTION},
        {"force", no_argument, NULL, OPT_FORCE},
        {"tablespace-map", required_argument, NULL, OPT_TSMAP},
        {"start", no_argument, NULL, OPT_START},
        {"end-of-recovery-checkpoint", no_argument, NULL, OPT_EORCKPT},
        {"owner", required_argument, NULL, OPT_OWNER},
        {"pg-bin", required_argument, NULL, OPT_PGBIN},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"keep-window", required_argument, NULL, OPT_KEEPWIN},
        {"keep-backups", required_argument, NULL, OPT_KEEPBK},
        {"min-backups", required_argument, NULL, OPT_MINBK},
        {"keep-daily", required_argument, NULL, OPT_KEEPDAILY},
        {"now", required_argument, NULL, OPT_NOW},
        {"dry-run", no_argument, NULL, OPT_DRY},
        {"archive-mode", required_argument, NULL, OPT_ARCHMODE},
        {"no-space-check", no_argument, NULL, OPT_NOSPACE},
        {"delta", no_argument, NULL, OPT_DELTA},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NOPROGRESS},
        {"set", required_argument, NULL, OPT_SET},
        {"port", required_argument, NULL, OPT_PORT},
        {"type", required_argument, NULL, OPT_TYPE},
        {"new-cipher-key-file", required_argument, NULL, OPT_NEWKEY},
        {"dbname", required_argument, NULL, 'd'},
        {"table", required_argument, NULL, OPT_TABLE},
        {"schema", required_argument, NULL, OPT_SCHEMA},
        {"schema-only", no_argument, NULL, OPT_SCHEMAONLY},
        {"data-only", no_argument, NULL, OPT_DATAONLY},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"file", required_argument, NULL, OPT_FILE},
        {"scratch", required_argument, NULL, OPT_SCRATCH},
        {"keep-scratch", no_argument, NULL, OPT_KEEPSCRATCH},
        {"min-free", required_argument, NULL, OPT_MINFREE},
        {"rpo", required_argument, NULL, OPT_RPO},
        {"max-backup-age", required_argument, NULL, OPT_MAXBKAGE},
        {"max-milvus-age", required_argument, NULL, OPT_MAXMVAGE},
        {"switch-timeout", required_argument, NULL, OPT_SWTIMEOUT},
        {"max-slot-wal", required_argument, NULL, OPT_MAXSLOTWAL},
        CLI_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    pitr_opts o;
    cli cl;
    const char *opt_config, *sub = NULL;
    const char *keep_window = NULL, *keep_backups = NULL, *min_backups = NULL;
    const char *keep_daily = NULL;
    const char *ttli = NULL, *timeout = NULL;
    config *cfg = NULL;
    char portset[32], *cfg_abs = NULL;
    int c, ret = EXIT_USAGE;
    long v;

    cli_init(&cl, &spec, argv[0]);
    memset(&o, 0, sizeof(o));
    o.min_backups = 1;
    o.keep_window = 7 * 86400;
    o.keep_backups = 30 * 86400;
    o.keep_daily = -1;
    o.timeout = 86400;
    o.progress = PROGRESS_AUTO;

    if (argc >= 2 && argv[1][0] != '-') {
        sub = argv[1];
        argv++;
        argc--;
    }
    while ((c = cli_getopt(&cl, argc, argv, "D:d:", longopts)) != -1) {
        switch (c) {
        case OPT_JSON: o.json = 1; break;
        case OPT_PROMETHEUS: o.prometheus = 1; break;
        case OPT_TTIME:
            if (set_target(&o, TARGET_TIME, optarg) != 0)
                goto out;
            if (timefmt_parse(optarg, &o.time_us, NULL) != 0) {
                log_error("invalid --target-time \"%s\"", optarg);
                log_hint("use ISO 8601, e.g. 2026-11-26T02:15:00Z or 2026-11-26 03:15:00+01");
                goto out;
            }
            break;
        case OPT_TLSN:
            if (set_target(&o, TARGET_LSN, optarg) != 0)
                goto out;
            if (lsn_parse(optarg, &o.lsn) != 0) {
                log_error("invalid --target-lsn \"%s\"", optarg);
                goto out;
            }
            break;
        case OPT_TXID:
            if (set_target(&o, TARGET_XID, optarg) != 0 ||
                config_parse_int("--target-xid", optarg, 3, UINT32_MAX, &v) != 0)
                goto out;
            o.xid = (uint32_t)v;
            break;
        case OPT_TNAME:
            if (set_target(&o, TARGET_NAME, optarg) != 0)
                goto out;
            if (strlen(optarg) == 0 || strlen(optarg) >= 64) {
                log_error("invalid --target-name: 1 to 63 bytes");
                goto out;
            }
            o.name = optarg;
            break;
        case OPT_TLATEST:
            if (set_target(&o, TARGET_LATEST, NULL) != 0)
                goto out;
            break;
        case OPT_TIMMEDIATE:
            if (set_target(&o, TARGET_IMMEDIATE, NULL) != 0)
                goto out;
            break;
        case OPT_TTLI: ttli = optarg; break;
        case OPT_EXCL: o.exclusive = 1; break;
        case 'D': o.pgdata = optarg; break;
        case OPT_ACTION: o.action = optarg; break;
        case OPT_FORCE: o.force = 1; break;
        case OPT_TSMAP: {
            const char *eq = strchr(optarg, '=');
            char oidbuf[16];
            if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof(oidbuf) || eq[1] != '/') {
                log_error("invalid --tablespace-map \"%s\": want OID=/absolute/dir", optarg);
                goto out;
            }
            memcpy(oidbuf, optarg, (size_t)(eq - optarg));
            oidbuf[eq - optarg] = '\0';
            if (config_parse_int("--tablespace-map OID", oidbuf, 1, UINT32_MAX, &v) != 0)
                goto out;
            tsmap_entry *n = realloc(o.tsmap, (o.ntsmap + 1) * sizeof(*n));
            if (!n) {
                log_error("out of memory");
                ret = EXIT_FAIL;
                goto out;
            }
            o.tsmap = n;
            o.tsmap[o.ntsmap].oid = (uint32_t)v;
            o.tsmap[o.ntsmap].dir = eq + 1;
            o.ntsmap++;
            break;
        }
        case OPT_START: o.start = 1; break;
        case OPT_EORCKPT: o.eor_checkpoint = 1; break;
        case OPT_OWNER: o.owner = optarg; break;
        case OPT_PGBIN: o.pg_bin = optarg; break;
        case OPT_TIMEOUT: timeout = optarg; break;
        case OPT_KEEPWIN: keep_window = optarg; break;
        case OPT_KEEPBK: keep_backups = optarg; break;
        case OPT_MINBK: min_backups = optarg; break;
        case OPT_KEEPDAILY: keep_daily = optarg; break;
        case OPT_NOW: {
            int64_t us;
            if (timefmt_parse(optarg, &us, NULL) != 0) {
                log_error("invalid --now \"%s\"", optarg);
                log_hint("use RFC 3339, e.g. 2026-11-26T02:15:00Z");
                goto out;
            }
            o.now = us / 1000000;
            break;
        }
        case OPT_DRY: o.dry_run = 1; break;
        case OPT_NOSPACE: o.no_space_check = 1; break;
        case OPT_DELTA: o.delta = 1; break;
        case OPT_PROGRESS: o.progress = PROGRESS_ON; break;
        case OPT_NOPROGRESS: o.progress = PROGRESS_OFF; break;
        case OPT_ARCHMODE:
            if (strcmp(optarg, "off") != 0 && strcmp(optarg, "preserve") != 0) {
                log_error("invalid --archive-mode \"%s\": off or preserve", optarg);
                goto out;
            }
            o.archive_preserve = strcmp(optarg, "preserve") == 0;
            break;
        case OPT_SET:
            if (valid_set(optarg) != 0)
                goto out;
            if (add_set(&o, optarg) != 0) {
                ret = EXIT_FAIL;
                goto out;
            }
            break;
        case OPT_PORT:
            if (config_parse_int("--port", optarg, 1, 65535, &v) != 0)
                goto out;
            snprintf(portset, sizeof(portset), "port=%ld", v);
            if (add_set(&o, portset) != 0) {
                ret = EXIT_FAIL;
                goto out;
            }
            break;
        case OPT_TYPE:
            if (strcmp(optarg, "recovery") != 0 && strcmp(optarg, "standby") != 0) {
                log_error("invalid --type \"%s\": recovery or standby", optarg);
                goto out;
            }
            o.standby = strcmp(optarg, "standby") == 0;
            break;
        case OPT_NEWKEY: o.new_key_file = optarg; break;
        case 'd': o.conninfo = optarg; break;
        case OPT_TABLE:
        case OPT_SCHEMA: {
            const char ***l = c == OPT_TABLE ? &o.dump_tables : &o.dump_schemas;
            size_t *n = c == OPT_TABLE ? &o.ndump_tables : &o.ndump_schemas;
            const char **nl = realloc(*l, (*n + 1) * sizeof(*nl));
            if (!nl) {
                log_error("out of memory");
                ret = EXIT_FAIL;
                goto out;
            }
            *l = nl;
            nl[(*n)++] = optarg;
            break;
        }
        case OPT_SCHEMAONLY: o.dump_schema_only = 1; break;
        case OPT_DATAONLY: o.dump_data_only = 1; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "custom") != 0 && strcmp(optarg, "plain") != 0 &&
                strcmp(optarg, "directory") != 0) {
                log_error("invalid --format \"%s\": custom, plain or directory", optarg);
                goto out;
            }
            o.dump_format = optarg;
            break;
        case OPT_JOBS:
            if (config_parse_int("--jobs", optarg, 1, 256, &v) != 0)
                goto out;
            o.dump_jobs = (int)v;
            o.jobs = (int)v;
            break;
        case OPT_FILE: o.dump_file = optarg; break;
        case OPT_SCRATCH: o.scratch = optarg; break;
        case OPT_KEEPSCRATCH: o.keep_scratch = 1; break;
        case OPT_MINFREE: o.chk_min_free = optarg; break;
        case OPT_RPO: o.chk_rpo = optarg; break;
        case OPT_MAXBKAGE: o.chk_max_backup_age = optarg; break;
        case OPT_MAXMVAGE: o.chk_max_milvus_age = optarg; break;
        case OPT_SWTIMEOUT: o.chk_switch_timeout = optarg; break;
        case OPT_MAXSLOTWAL: o.chk_max_slot_wal = optarg; break;
        default: ret = cl.status; goto out;
        }
    }
    if (!sub && optind < argc)
        sub = argv[optind++];
    if (sub && strcmp(sub, "extract") == 0 && optind + 2 <= argc) {
        o.extract_label = argv[optind++];
        o.extract_dir = argv[optind++];
    }
    if (optind < argc) {
        ret = cli_usage_error(&cl, "unexpected argument \"%s\"", argv[optind]);
        goto out;
    }
    if (!sub) {
        ret = cli_usage_error(&cl, "no subcommand given");
        goto out;
    }

    cfg = cli_config(&cl);
    if (!cfg)
        goto out;
    opt_config = cl.config_path;
    /* the restore_command pitr restore writes must read the same file */
    if (!opt_config && getenv("RAGSAFE_CONFIG") && *getenv("RAGSAFE_CONFIG"))
        opt_config = getenv("RAGSAFE_CONFIG");
    if (opt_config) {
        cfg_abs = realpath(opt_config, NULL);
        if (!cfg_abs) {
            log_errno("could not resolve the config file \"%s\"", opt_config);
            ret = EXIT_FAIL;
            goto out;
        }
        o.config_path = cfg_abs;
    }
    o.repo = cli_repo(&cl);
    if (!o.repo)
        goto out;
    if (ttli && strcmp(ttli, "latest") != 0) {
        if (config_parse_int("--target-timeline", ttli, 1, UINT32_MAX, &v) != 0)
            goto out;
        o.tli = (uint32_t)v;
    }
    if (!keep_window)
        keep_window = config_get(cfg, "keep-window");
    if (!keep_backups)
        keep_backups = config_get(cfg, "keep-backups");
    if (!min_backups)
        min_backups = config_get(cfg, "min-backups");
    if (!keep_daily)
        keep_daily = config_get(cfg, "keep-daily");
    if (keep_daily) {
        if (config_parse_int("--keep-daily", keep_daily, 0, 100000, &v) != 0)
            goto out;
        o.keep_daily = v;
        /* the daily policy: --keep-backups only when asked for, the newest backup is
         * kept anyway (reported as "newest") */
        if (!keep_backups)
            o.keep_backups = -1;
        if (!min_backups)
            o.min_backups = 0;
    }
    if (keep_window && config_parse_duration("--keep-window", keep_window, &o.keep_window) != 0)
        goto out;
    if (keep_backups &&
        config_parse_duration("--keep-backups", keep_backups, &o.keep_backups) != 0)
        goto out;
    if (min_backups) {
        if (config_parse_int("--min-backups", min_backups, 0, 1000000, &v) != 0)
            goto out;
        o.min_backups = v;
    }
    if (timeout && config_parse_duration("--timeout", timeout, &o.timeout) != 0)
        goto out;
    if (o.action && strcmp(o.action, "promote") != 0 && strcmp(o.action, "pause") != 0 &&
        strcmp(o.action, "shutdown") != 0) {
        log_error("invalid --target-action \"%s\": promote, pause or shutdown", o.action);
        goto out;
    }
    if (!o.action)
        o.action = "promote";

    if (o.eor_checkpoint && (strcmp(sub, "restore") != 0 || !o.start)) {
        log_error("--end-of-recovery-checkpoint is an option of restore --start");
        log_hint("without --start the server's recovery ends by itself, with that checkpoint");
        goto out;
    }
    if (o.delta && o.force) {
        log_error("--delta and --force do not go together");
        log_hint("--delta updates DIR in place; --force moves it aside and restores anew");
        goto out;
    }
    if (o.standby && strcmp(sub, "restore") == 0) {
        /* a standby follows the archive (and its primary): no recovery target */
        if (o.kind != TARGET_NONE && o.kind != TARGET_LATEST) {
            log_error("--type standby takes no recovery target (it follows the archive)");
            log_hint("drop %s, or use --target-latest", o.target_str ? o.target_str : "the target");
            goto out;
        }
        o.kind = TARGET_LATEST;
    }
    if (strcmp(sub, "plan") == 0 || strcmp(sub, "restore") == 0 || strcmp(sub, "dump") == 0) {
        if (o.kind == TARGET_NONE) {
            log_error("%s needs a recovery target", sub);
            log_hint("--target-time, --target-lsn, --target-xid, --target-name, "
                     "--target-latest or --target-immediate");
            goto out;
        }
        if (o.exclusive && (o.kind == TARGET_NAME || o.kind == TARGET_LATEST ||
                            o.kind == TARGET_IMMEDIATE)) {
            log_error("--exclusive applies to --target-time, --target-lsn and --target-xid only");
            goto out;
        }
    }
    if (strcmp(sub, "init") == 0) {
        ret = cmd_init(&o);
    } else if (strcmp(sub, "info") == 0) {
        ret = cmd_info(&o);
    } else if (strcmp(sub, "plan") == 0) {
        ret = cmd_plan(&o);
    } else if (strcmp(sub, "restore") == 0) {
        if (!o.pgdata) {
            log_error("restore needs --pgdata DIR");
            goto out;
        }
        ret = cmd_restore(&o);
    } else if (strcmp(sub, "dump") == 0) {
        if (!o.conninfo || !o.dump_file) {
            log_error("dump needs --dbname DB and --file OUT");
            goto out;
        }
        if (o.dump_schema_only && o.dump_data_only) {
            log_error("--schema-only and --data-only do not go together");
            goto out;
        }
        if (!o.dump_format)
            o.dump_format = "custom";
        if (o.dump_jobs > 1 && strcmp(o.dump_format, "directory") != 0) {
            log_error("--jobs needs --format directory (pg_dump dumps in parallel only then)");
            goto out;
        }
        ret = cmd_dump(&o);
    } else if (strcmp(sub, "verify") == 0) {
        ret = cmd_verify(&o);
    } else if (strcmp(sub, "extract") == 0) {
        if (!o.extract_label) {
            ret = cli_usage_error(&cl, "extract needs LABEL and DIR");
            goto out;
        }
        ret = cmd_extract(&o);
    } else if (strcmp(sub, "expire") == 0) {
        ret = cmd_expire(&o);
    } else if (strcmp(sub, "rekey") == 0) {
        ret = cmd_rekey(&o);
    } else if (strcmp(sub, "check") == 0) {
        o.cfg = cfg;
        ret = cmd_check(&o);
    } else {
        ret = cli_usage_error(&cl, "unknown subcommand \"%s\"", sub);
        goto out;
    }
out:
    cli_release(&cl);
    free(o.tsmap);
    free(o.sets);
    free(o.dump_tables);
    free(o.dump_schemas);
    free(cfg_abs);
    fflush(stdout);
    return ret;
}
