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
 *     ragsafe-pitr verify
 *     ragsafe-pitr expire  [--keep-window 7d] [--keep-backups 30d] [--min-backups N]
 *                          [--dry-run]
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

#include "common.h"
#include "config.h"
#include "log.h"
#include "pitr.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ragsafe-pitr SUBCOMMAND [OPTION]...\n"
            "Restorable window, recovery plans, point-in-time restores, verification and\n"
            "retention for a ragsafe repository.\n\n"
            "Subcommands:\n"
            "  init [--pgdata DIR | -d CONNINFO]   create the repository (its directory,\n"
            "                       repo.json with the cluster's identity, the encryption\n"
            "                       record with --cipher-key-file); the tools never create\n"
            "                       a repository's directory themselves\n"
            "  info                 backups, WAL per timeline, restorable window, RPO\n"
            "  plan TARGET          which backup and WAL a restore to TARGET needs\n"
            "  restore TARGET --pgdata DIR   restore a data directory set up to recover\n"
            "  verify               re-hash every object, check WAL continuity and backups\n"
            "  expire               delete backups and WAL outside the retention policy\n"
            "  rekey --new-cipher-key-file F   re-seal everything under a new key (resumable)\n\n"
            "Targets (one):\n"
            "      --target-time TS      ISO 8601 (an offset or Z; none: local time)\n"
            "      --target-lsn LSN      --target-xid XID     --target-name NAME\n"
            "      --target-latest       everything archived\n"
            "      --target-immediate    the backup's consistency point\n"
            "      --target-timeline N|latest (default latest)   --exclusive\n\n"
            "restore:\n"
            "  -D, --pgdata DIR          data directory to create (must be empty or absent)\n"
            "      --target-action A     promote (default), pause or shutdown\n"
            "      --force               move a non-empty DIR aside to DIR.ragsafe-old-TIME\n"
            "      --delta               DIR holds a stale copy of the same cluster: keep the\n"
            "                            files that match backup_manifest, replace the rest,\n"
            "                            remove what the backup does not have\n"
            "      --tablespace-map OID=DIR   restore tablespace OID into DIR\n"
            "      --owner USER          owner of the restored files (as root; default: the\n"
            "                            owner of DIR's parent)\n"
            "      --start               start the server, follow recovery, report the stop\n"
            "      --pg-bin DIR          PostgreSQL binaries (default: pg_config --bindir)\n"
            "      --timeout DURATION    how long --start waits for recovery (default 24h)\n"
            "      --archive-mode MODE   off (default): the restored copy does not archive\n"
            "                            (archive_mode = off); preserve: keep the backed-up\n"
            "                            server's archiving (a real disaster recovery)\n"
            "      --set NAME=VALUE      a setting for the restored postgresql.auto.conf\n"
            "                            (repeatable; e.g. unix_socket_directories=/tmp)\n"
            "      --port N              the restored server's port (--set port=N)\n"
            "      --type TYPE           recovery (default): recover to TARGET; standby: a\n"
            "                            standby (standby.signal) following the archive\n"
            "                            (primary_conninfo via --set)\n"
            "      --no-space-check      skip the free-space check (a file system whose free\n"
            "                            space statvfs under-reports: compressed, thin)\n\n"
            "init:\n"
            "  -D, --pgdata DIR          record the identity of the cluster in DIR\n"
            "                            (global/pg_control)\n"
            "  -d, --dbname CONNINFO     record the identity of this server (IDENTIFY_SYSTEM)\n"
            "      --owner USER          as root: owner of the new directory (postgres)\n\n"
            "expire:\n"
            "      --keep-window DURATION  every instant of this window stays restorable (7d)\n"
            "      --keep-backups DURATION keep backups younger than this (30d)\n"
            "      --min-backups N         keep at least N backups (1)\n"
            "      --dry-run               only say what would be deleted\n\n"
            "Common:\n"
            REPO_OPTIONS_HELP
            "      --config FILE         config file (default $RAGSAFE_CONFIG or %s)\n"
            "      --json                machine-readable output on stdout\n"
            "      --prometheus          info: node_exporter textfile metrics on stdout\n"
            "  -v, --verbose             more messages   -h, --help   -V, --version\n\n"
            "Exit status: 0 ok, 1 failure or unreachable target, 2 usage, 3 integrity failure.\n",
            CONFIG_DEFAULT_PATH);
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void format_time_iso(char *out, size_t len, int64_t unix_us)
{
    walscan_format_time(out, len, unix_us);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/*
 * parse_time -- ISO 8601 "YYYY-MM-DD[T| ]HH:MM[:SS[.frac]][Z|+HH[:MM]|-HH[:MM]]" (also a
 * bare date) into Unix microseconds. Without a zone the local zone applies
 * (*had_zone 0). -1 (not reported) when malformed.
 */
int parse_time(const char *s, int64_t *us, int *had_zone)
{
    const char *p = s;
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac = 0;
    int zone = 0, zsign = 1, zh = 0, zm = 0;

    memset(&tm, 0, sizeof(tm));
    while (*p == ' ')
        p++;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0;
                while (isdigit((unsigned char)*p)) {
                    if (nd < 6) {
                        frac = frac * 10 + (*p - '0');
                        nd++;
                    }
                    p++;
                }
                if (nd == 0)
                    return -1;
                while (nd++ < 6)
                    frac *= 10;
            }
        }
    }
    while (*p == ' ')
        p++;
    if (*p == 'Z' || *p == 'z') {
        zone = 1;
        p++;
    } else if (*p == '+' || *p == '-') {
        zone = 1;
        zsign = *p == '-' ? -1 : 1;
        p++;
        if (digits(&p, 2, &zh))
            return -1;
        if (*p == ':')
            p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &zm))
            return -1;
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || sec > 60 || zh > 15 || zm > 59)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t;
    if (zone) {
        t = timegm(&tm);
        t -= zsign * (zh * 3600 + zm * 60);
    } else {
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    if (t == (time_t)-1 && !(y == 1969))
        return -1;
    *us = (int64_t)t * 1000000 + frac;
    if (had_zone)
        *had_zone = zone;
    return 0;
}

enum {
    OPT_CONFIG = 256, OPT_JSON, OPT_PROMETHEUS, OPT_TTIME, OPT_TLSN, OPT_TXID, OPT_TNAME,
    OPT_TLATEST, OPT_TIMMEDIATE, OPT_TTLI, OPT_EXCL, OPT_ACTION, OPT_FORCE, OPT_TSMAP,
    OPT_START, OPT_OWNER, OPT_PGBIN, OPT_TIMEOUT, OPT_KEEPWIN, OPT_KEEPBK, OPT_MINBK, OPT_DRY,
    OPT_ARCHMODE, OPT_SET, OPT_PORT, OPT_TYPE, OPT_NOSPACE, OPT_NEWKEY, OPT_DELTA,
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
    static const struct option longopts[] = {
        REPO_LONG_OPTIONS,
        {"config", required_argument, NULL, OPT_CONFIG},
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
        {"dbname", required_argument, NULL, 'd'},
        {"target-action", required_argument, NULL, OPT_ACTION},
        {"force", no_argument, NULL, OPT_FORCE},
        {"tablespace-map", required_argument, NULL, OPT_TSMAP},
        {"start", no_argument, NULL, OPT_START},
        {"owner", required_argument, NULL, OPT_OWNER},
        {"pg-bin", required_argument, NULL, OPT_PGBIN},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"keep-window", required_argument, NULL, OPT_KEEPWIN},
        {"keep-backups", required_argument, NULL, OPT_KEEPBK},
        {"min-backups", required_argument, NULL, OPT_MINBK},
        {"dry-run", no_argument, NULL, OPT_DRY},
        {"archive-mode", required_argument, NULL, OPT_ARCHMODE},
        {"no-space-check", no_argument, NULL, OPT_NOSPACE},
        {"delta", no_argument, NULL, OPT_DELTA},
        {"set", required_argument, NULL, OPT_SET},
        {"port", required_argument, NULL, OPT_PORT},
        {"type", required_argument, NULL, OPT_TYPE},
        {"new-cipher-key-file", required_argument, NULL, OPT_NEWKEY},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    pitr_opts o;
    repo_cli rc = {0};
    const char *opt_config = NULL, *sub = NULL;
    const char *keep_window = NULL, *keep_backups = NULL, *min_backups = NULL;
    const char *ttli = NULL, *timeout = NULL;
    config *cfg = NULL;
    char portset[32], *cfg_abs = NULL;
    int verbose = 0, c, ret = EXIT_USAGE;
    long v;

    log_init(argv[0]);
    memset(&o, 0, sizeof(o));
    o.min_backups = 1;
    o.keep_window = 7 * 86400;
    o.keep_backups = 30 * 86400;
    o.timeout = 86400;

    if (argc >= 2 && argv[1][0] != '-') {
        sub = argv[1];
        argv++;
        argc--;
    }
    while ((c = getopt_long(argc, argv, "D:d:vhV", longopts, NULL)) != -1) {
        if (repo_cli_option(&rc, c, optarg))
            continue;
        switch (c) {
        case OPT_CONFIG: opt_config = optarg; break;
        case OPT_JSON: o.json = 1; break;
        case OPT_PROMETHEUS: o.prometheus = 1; break;
        case OPT_TTIME:
            if (set_target(&o, TARGET_TIME, optarg) != 0)
                goto out;
            if (parse_time(optarg, &o.time_us, NULL) != 0) {
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
        case 'd': o.conninfo = optarg; break;
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
        case OPT_OWNER: o.owner = optarg; break;
        case OPT_PGBIN: o.pg_bin = optarg; break;
        case OPT_TIMEOUT: timeout = optarg; break;
        case OPT_KEEPWIN: keep_window = optarg; break;
        case OPT_KEEPBK: keep_backups = optarg; break;
        case OPT_MINBK: min_backups = optarg; break;
        case OPT_DRY: o.dry_run = 1; break;
        case OPT_NOSPACE: o.no_space_check = 1; break;
        case OPT_DELTA: o.delta = 1; break;
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
        case 'v': verbose++; break;
        case 'h': usage(stdout); ret = EXIT_OK; goto out;
        case 'V': printf("ragsafe-pitr %s\n", RAGSAFE_VERSION); ret = EXIT_OK; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (!sub && optind < argc)
        sub = argv[optind++];
    if (optind < argc) {
        log_error("unexpected argument \"%s\"", argv[optind]);
        goto out;
    }
    log_set_level(LOG_LEVEL_NOTICE + verbose);
    if (!sub) {
        log_error("no subcommand given");
        usage(stderr);
        goto out;
    }

    cfg = config_load(opt_config);
    if (!cfg)
        goto out;
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
    o.repo = repo_cli_setup(&rc, cfg);
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
    if (strcmp(sub, "plan") == 0 || strcmp(sub, "restore") == 0) {
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
    } else if (strcmp(sub, "verify") == 0) {
        ret = cmd_verify(&o);
    } else if (strcmp(sub, "expire") == 0) {
        ret = cmd_expire(&o);
    } else if (strcmp(sub, "rekey") == 0) {
        ret = cmd_rekey(&o);
    } else {
        log_error("unknown subcommand \"%s\"", sub);
        usage(stderr);
        goto out;
    }
out:
    config_free(cfg);
    repo_cli_release();
    free(o.tsmap);
    free(o.sets);
    free(cfg_abs);
    fflush(stdout);
    return ret;
}
