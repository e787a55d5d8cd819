/*
 * main.c -- ragsafe-milvus: consistent, deduplicated snapshots of a standalone Milvus
 * stack's volumes (etcd, MinIO, Milvus) in a ragsafe repository.
 *
 *   ragsafe-milvus snapshot --volume NAME=DIR ... [--stop-cmd CMD] [--start-cmd CMD]
 *                           [--health-url URL] [--milvus-url URL] [--pg CONNINFO] [--label L]
 *   ragsafe-milvus restore LABEL [--volume NAME=DIR ...] [--force] [stack options]
 *   ragsafe-milvus list | verify [LABEL] | expire --keep-last N [--keep-daily D]
 *
 * A restore or snapshot killed halfway is finished or undone by the next command
 * (journal.c): snapshot and restore do it under their lock, list, verify and expire
 * through mv_recover_cmd before their own work.
 *
 * Exit status: 0 ok; 1 failure; 2 usage or configuration; 3 integrity (a corrupt or
 * missing object, row counts that differ after a restore, another stack version).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "repo.h"
#include "milvus.h"
#include "progress.h"

enum { C_SNAP = 1, C_RESTORE = 2, C_LIST = 4, C_VERIFY = 8, C_EXPIRE = 16, C_ALL = 31 };
#define C_STACK (C_SNAP | C_RESTORE)

enum {
    O_JSON = 256, O_VOLUME, O_STOP, O_START, O_HEALTH, O_HEALTH_TIMEOUT,
    O_MURL, O_MDB, O_MTOKEN, O_PG, O_LABEL, O_ASSUME, O_FORCE, O_LEVEL, O_JOBS, O_KEEP_LAST,
    O_KEEP_DAILY, O_DRY, O_VERSION_CMD, O_IGNORE_VERSION, O_SAME_OWNER, O_NO_SAME_OWNER,
    O_MTOKEN_FILE, O_PROGRESS, O_NO_PROGRESS,
};

static const struct option mv_longopts[] = {
    {"json", no_argument, NULL, O_JSON},
    {"volume", required_argument, NULL, O_VOLUME},
    {"stop-cmd", required_argument, NULL, O_STOP},
    {"start-cmd", required_argument, NULL, O_START},
    {"health-url", required_argument, NULL, O_HEALTH},
    {"health-timeout", required_argument, NULL, O_HEALTH_TIMEOUT},
    {"milvus-url", required_argument, NULL, O_MURL},
    {"milvus-db", required_argument, NULL, O_MDB},
    {"milvus-token", required_argument, NULL, O_MTOKEN},   /* refused: see main() */
    {"milvus-token-file", required_argument, NULL, O_MTOKEN_FILE},
    {"pg", required_argument, NULL, O_PG},
    {"label", required_argument, NULL, O_LABEL},
    {"assume-stopped", no_argument, NULL, O_ASSUME},
    {"force", no_argument, NULL, O_FORCE},
    {"compress-level", required_argument, NULL, O_LEVEL},
    {"jobs", required_argument, NULL, O_JOBS},
    {"keep-last", required_argument, NULL, O_KEEP_LAST},
    {"keep-daily", required_argument, NULL, O_KEEP_DAILY},
    {"dry-run", no_argument, NULL, O_DRY},
    {"version-cmd", required_argument, NULL, O_VERSION_CMD},
    {"ignore-version", no_argument, NULL, O_IGNORE_VERSION},
    {"same-owner", no_argument, NULL, O_SAME_OWNER},
    {"no-same-owner", no_argument, NULL, O_NO_SAME_OWNER},
    {"progress", no_argument, NULL, O_PROGRESS},
    {"no-progress", no_argument, NULL, O_NO_PROGRESS},
    CLI_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* which subcommands take which option */
static int mv_opt_cmds(int opt)
{
    switch (opt) {
    case O_VOLUME: case O_STOP: case O_START: case O_HEALTH: case O_HEALTH_TIMEOUT:
    case O_MURL: case O_MDB: case O_MTOKEN: case O_MTOKEN_FILE: case O_ASSUME: case O_VERSION_CMD:
        return C_STACK;
    case O_PG: case O_LABEL: case O_LEVEL:
        return C_SNAP;
    case O_FORCE: case O_IGNORE_VERSION: case O_SAME_OWNER: case O_NO_SAME_OWNER:
        return C_RESTORE;
    case O_KEEP_LAST: case O_KEEP_DAILY: case O_DRY:
        return C_EXPIRE;
    case O_JOBS: case O_PROGRESS: case O_NO_PROGRESS:
        return C_SNAP | C_RESTORE | C_VERIFY;
    default:
        return C_ALL;
    }
}

static void mv_usage(FILE *f)
{
    fprintf(f,
"Usage: ragsafe-milvus snapshot --volume NAME=DIR... [OPTION]...\n"
"  or:  ragsafe-milvus restore LABEL [--volume NAME=DIR]... [--force] [OPTION]...\n"
"  or:  ragsafe-milvus list [OPTION]...\n"
"  or:  ragsafe-milvus verify [LABEL] [OPTION]...\n"
"  or:  ragsafe-milvus expire --keep-last N [--keep-daily D] [--dry-run] [OPTION]...\n"
"Consistent, deduplicated snapshots of a standalone Milvus stack's volumes.\n"
"\n"
"A restore is staged beside its targets and swapped in under a journal in the\n"
"repository: a restore killed at any point is finished or undone by the next\n"
"ragsafe-milvus command, and a stack a killed run left stopped is started again by\n"
"the next command that has a start command (--start-cmd or start-cmd in the config).\n"
"\n"
"Snapshot and restore options:\n"
"      --volume NAME=DIR      a volume of the stack (etcd=volumes/etcd, minio=...,\n"
"                             milvus=...); restore without --volume writes back to the\n"
"                             recorded directories\n"
"      --stop-cmd CMD         stops the stack (/bin/sh -c), e.g.\n"
"                             'docker compose stop -t 300 standalone minio etcd'\n"
"      --start-cmd CMD        starts it again; runs on every exit path, signals included\n"
"      --health-url URL       e.g. http://localhost:9091/healthz; waited for after start\n"
"      --health-timeout SECONDS\n"
"                             bound of that wait (default 300)\n"
"      --assume-stopped       no stop command: the stack is known to be down\n"
"      --milvus-url URL       REST v2 endpoint (http://localhost:19530): row counts\n"
"                             recorded and flushed before a snapshot, compared after a\n"
"                             restore\n"
"      --milvus-db NAME       database (default \"default\")\n"
"      --milvus-token-file FILE\n"
"                             file holding the bearer token, \"user:password\" (mode 0600\n"
"                             or stricter; or the RAGSAFE_MILVUS_TOKEN environment variable)\n"
"      --version-cmd CMD      prints the stack's versions (image ids); recorded at\n"
"                             snapshot, and a restore refuses another output unless\n"
"                             --ignore-version\n"
"      --ignore-version       restore: accept a stack whose versions differ\n"
"      --pg CONNINFO          snapshot: create a PostgreSQL restore point named LABEL\n"
"                             while Milvus is down and record its LSN\n"
"      --label LABEL          snapshot label (default: UTC time, 20261126T021500Z)\n"
"      --compress-level N     zstd level (default 3)\n"
"      --force                restore: move non-empty targets aside to DIR" CLI_ASIDE_TAG "TIME\n"
"      --same-owner           restore: give files their recorded owners (as root);\n"
"                             default only when the volumes' recorded owners are the\n"
"                             targets' owners\n"
"      --no-same-owner        restore: files belong to the user restoring\n"
"\n"
"Expire options:\n"
"      --keep-last N          keep the N newest snapshots\n"
"      --keep-daily D         also keep the newest snapshot of each of the last D days\n"
"                             that have one\n"
"      --dry-run              only say what would be deleted\n"
"\n"
"Options:\n"
"      --json                 machine-readable output on stdout\n"
"      --jobs N               worker threads (default 4 per CPU)\n"
"      --progress             snapshot, restore, verify: progress on stderr even when it is\n"
"                             not a terminal (on a terminal: one line, redrawn)\n"
"      --no-progress          no progress line on a terminal either\n");
    cli_help_tail(f, CLI_KEY_NOTE CLI_S3_NOTE,
                  "Exit status: 0 ok, 1 failure, 2 usage, 3 integrity failure.\n",
                  "Milvus: ragsafe-milvus");
}

/* mv_abs_dir -- an absolute path for DIR: realpath when it must exist (snapshot), else
 * joined to the working directory. NULL reported. */
static char *mv_abs_dir(const char *dir, int must_exist)
{
    char cwd[PATH_MAX], *out;

    if (must_exist) {
        out = realpath(dir, NULL);
        if (out == NULL)
            log_errno("could not resolve volume directory \"%s\"", dir);
        return out;
    }
    if (dir[0] == '/')
        return strdup(dir);
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        log_errno("could not get the current directory");
        return NULL;
    }
    out = malloc(strlen(cwd) + strlen(dir) + 2);
    if (out != NULL)
        sprintf(out, "%s/%s", cwd, dir);
    return out;
}

static int mv_add_volume(mv_opts *o, const char *arg, int must_exist)
{
    const char *eq = strchr(arg, '=');
    char *name;

    if (eq == NULL || eq == arg || eq[1] == '\0') {
        log_error("invalid --volume \"%s\"", arg);
        log_hint("use --volume NAME=DIR, for example --volume etcd=/srv/milvus/volumes/etcd");
        return -1;
    }
    name = strndup(arg, (size_t)(eq - arg));
    if (name == NULL)
        return log_errno("could not allocate");
    if (!mv_label_valid(name)) {
        log_error("invalid volume name \"%s\": use letters, digits, '.', '_' and '-'", name);
        free(name);
        return -1;
    }
    for (size_t i = 0; i < o->nvols; i++) {
        if (strcmp(o->vols[i].name, name) == 0) {
            log_error("volume \"%s\" given twice", name);
            free(name);
            return -1;
        }
    }
    mv_vol_arg *p = realloc(o->vols, (o->nvols + 1) * sizeof(*p));
    if (p == NULL) {
        free(name);
        return log_errno("could not allocate");
    }
    o->vols = p;
    o->vols[o->nvols].name = name;
    o->vols[o->nvols].dir = mv_abs_dir(eq + 1, must_exist);
    if (o->vols[o->nvols].dir == NULL) {
        free(name);
        return -1;
    }
    o->nvols++;
    return 0;
}

/* mv_read_token -- the Milvus token from a file only its owner can read (trailing
 * newlines dropped). -1 reported. */
static int mv_read_token(const char *path, char **out)
{
    char buf[4096];
    struct stat sb;
    ssize_t n;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), ret = -1;

    *out = NULL;
    if (fd < 0)
        return log_errno("could not open Milvus token file \"%s\"", path);
    if (fstat(fd, &sb) != 0) {
        log_errno("could not stat \"%s\"", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        log_error("Milvus token file \"%s\" is not a regular file", path);
        goto out;
    }
    if (sb.st_mode & 077) {
        log_error("Milvus token file \"%s\" is accessible by group or others (mode %04o)", path,
                  (unsigned)(sb.st_mode & 07777));
        log_hint("chmod 600 \"%s\"", path);
        goto out;
    }
    while (len < sizeof(buf) - 1) {
        n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_errno("could not read \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (len == 0 || len == sizeof(buf) - 1 || strchr(buf, '\n') != NULL) {
        log_error("Milvus token file \"%s\" must hold one token on one line", path);
        goto out;
    }
    *out = strdup(buf);
    if (*out == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    ret = 0;
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return ret;
}

int main(int argc, char **argv)
{
    mv_opts o;
    config *cfg = NULL;
    static const cli_spec spec = {"ragsafe-milvus", mv_usage, EXIT_USAGE};
    cli cl;
    const char *cmdname, *opt_level = NULL;
    const char *opt_jobs = NULL, *opt_htimeout = NULL, *opt_stop = NULL, *opt_start = NULL;
    const char *opt_health = NULL, *opt_murl = NULL, *opt_mtoken = NULL, *opt_version = NULL;
    const char *opt_keep_last = NULL, *opt_keep_daily = NULL;
    const char **vol_args = NULL;
    size_t nvol_args = 0;
    int cmd, c, status = EXIT_USAGE, r;
    char *token = NULL;
    long v;

    cli_init(&cl, &spec, argv[0]);
    memset(&o, 0, sizeof(o));
    o.same_owner = -1;
    o.progress = PROGRESS_AUTO;
    cmd = 0;
    cmdname = argc >= 2 && argv[1][0] != '-' ? argv[1] : NULL;
    if (cmdname) {
        cmd = strcmp(cmdname, "snapshot") == 0 ? C_SNAP
              : strcmp(cmdname, "restore") == 0 ? C_RESTORE
              : strcmp(cmdname, "list") == 0 ? C_LIST
              : strcmp(cmdname, "verify") == 0 ? C_VERIFY
              : strcmp(cmdname, "expire") == 0 ? C_EXPIRE : 0;
        if (cmd == 0)
            return cli_usage_error(&cl, "unknown command \"%s\" (snapshot, restore, list, "
                                   "verify or expire)", cmdname);
        argv++;
        argc--;
    }
    while ((c = cli_getopt(&cl, argc, argv, "", mv_longopts)) != -1) {
        if (c == CLI_EXIT) {
            status = cl.status;
            goto out;
        }
        if (cmd == 0) {
            status = cli_usage_error(&cl, "the command comes first: ragsafe-milvus COMMAND [OPTION]...");
            goto out;
        }
        if (!(mv_opt_cmds(c) & cmd)) {
            log_error("option \"%s\" does not apply to %s", argv[optind - 1], cmdname);
            goto out;
        }
        switch (c) {
        case O_JSON: o.json = 1; break;
        case O_VOLUME: {
            const char **p = realloc(vol_args, (nvol_args + 1) * sizeof(*p));
            if (p == NULL) {
                log_errno("could not allocate");
                status = EXIT_FAIL;
                goto out;
            }
            vol_args = p;
            vol_args[nvol_args++] = optarg;
            break;
        }
        case O_STOP: opt_stop = optarg; break;
        case O_START: opt_start = optarg; break;
        case O_HEALTH: opt_health = optarg; break;
        case O_HEALTH_TIMEOUT: opt_htimeout = optarg; break;
        case O_MURL: opt_murl = optarg; break;
        case O_MDB: o.milvus_db = optarg; break;
        case O_MTOKEN:
            /* a command line is readable by every user of the host (ps, /proc) */
            log_error("--milvus-token is refused: a token on the command line is visible to "
                      "every user of the host");
            log_hint("put it in a file only you can read and give --milvus-token-file FILE, or "
                     "set RAGSAFE_MILVUS_TOKEN");
            goto out;
        case O_MTOKEN_FILE: opt_mtoken = optarg; break;
        case O_PG: o.pg = optarg; break;
        case O_LABEL: o.label = optarg; break;
        case O_ASSUME: o.assume_stopped = 1; break;
        case O_FORCE: o.force = 1; break;
        case O_LEVEL: opt_level = optarg; break;
        case O_JOBS: opt_jobs = optarg; break;
        case O_KEEP_LAST: opt_keep_last = optarg; break;
        case O_KEEP_DAILY: opt_keep_daily = optarg; break;
        case O_DRY: o.dry_run = 1; break;
        case O_VERSION_CMD: opt_version = optarg; break;
        case O_IGNORE_VERSION: o.ignore_version = 1; break;
        case O_SAME_OWNER: o.same_owner = 1; break;
        case O_NO_SAME_OWNER: o.same_owner = 0; break;
        case O_PROGRESS: o.progress = PROGRESS_ON; break;
        case O_NO_PROGRESS: o.progress = PROGRESS_OFF; break;
        default: goto out;
        }
    }
    if (cmd == 0) {
        status = cli_usage_error(&cl, "no command given");
        goto out;
    }

    /* positional: restore LABEL, verify [LABEL] */
    if (cmd == C_RESTORE) {
        if (optind != argc - 1) {
            log_error("restore needs exactly one snapshot label");
            goto out;
        }
        o.label = argv[optind];
    } else if (cmd == C_VERIFY) {
        if (optind < argc - 1) {
            log_error("too many arguments");
            goto out;
        }
        if (optind == argc - 1)
            o.label = argv[optind];
    } else if (optind != argc) {
        log_error("unexpected argument \"%s\"", argv[optind]);
        goto out;
    }
    if (o.label != NULL && !mv_label_valid(o.label)) {
        log_error("invalid snapshot label \"%s\": use letters, digits, '.', '_' and '-'", o.label);
        goto out;
    }

    cfg = cli_config(&cl);
    if (cfg == NULL)
        goto out;
    o.repo = cli_repo(&cl);
    if (o.repo == NULL)
        goto out;
    /* every command may have to start a stack a killed run left stopped: the start
     * command and health URL of the config file serve list, verify and expire too */
    o.start_cmd = config_resolve(opt_start, NULL, cfg, "start-cmd");
    o.health_url = config_resolve(opt_health, NULL, cfg, "health-url");
    o.health_timeout = 300;
    if (cmd & C_STACK) {
        o.stop_cmd = config_resolve(opt_stop, NULL, cfg, "stop-cmd");
        o.milvus_url = config_resolve(opt_murl, NULL, cfg, "milvus-url");
        const char *tf = config_resolve(opt_mtoken, NULL, cfg, "milvus-token-file");
        if (tf != NULL) {
            if (mv_read_token(tf, &token) != 0)
                goto out;
            o.milvus_token = token;
        } else {
            o.milvus_token = config_resolve(NULL, "RAGSAFE_MILVUS_TOKEN", cfg, "milvus-token");
        }
        o.version_cmd = config_resolve(opt_version, NULL, cfg, "version-cmd");
        const char *ht = config_resolve(opt_htimeout, NULL, cfg, "health-timeout");
        if (ht != NULL && config_parse_duration("--health-timeout", ht, &o.health_timeout) != 0)
            goto out;
    }
    if (cmd == C_SNAP) {
        const char *lv = config_resolve(opt_level, NULL, cfg, "compress-level");
        o.level = 3;
        if (lv != NULL) {
            if (config_parse_int("--compress-level", lv, 1, 19, &v) != 0)
                goto out;
            o.level = (int)v;
        }
    }
    if (opt_jobs != NULL) {
        if (config_parse_int("--jobs", opt_jobs, 1, 256, &v) != 0)
            goto out;
        o.jobs = (int)v;
    }
    if (cmd == C_EXPIRE) {
        if (opt_keep_last == NULL) {
            log_error("expire needs --keep-last N");
            goto out;
        }
        if (config_parse_int("--keep-last", opt_keep_last, 1, 1000000, &o.keep_last) != 0)
            goto out;
        if (opt_keep_daily != NULL &&
            config_parse_int("--keep-daily", opt_keep_daily, 0, 1000000, &o.keep_daily) != 0)
            goto out;
    }
    for (size_t i = 0; i < nvol_args; i++)
        if (mv_add_volume(&o, vol_args[i], cmd == C_SNAP) != 0)
            goto out;
    for (size_t i = 0; i < o.nvols; i++) {
        for (size_t k = 0; k < o.nvols; k++) {
            size_t l = strlen(o.vols[i].dir);
            if (i != k && strncmp(o.vols[i].dir, o.vols[k].dir, l) == 0 &&
                (o.vols[k].dir[l] == '/' || o.vols[k].dir[l] == '\0' ||
                 strcmp(o.vols[i].dir, "/") == 0)) {
                log_error("volume \"%s\" (\"%s\") overlaps volume \"%s\" (\"%s\")",
                          o.vols[k].name, o.vols[k].dir, o.vols[i].name, o.vols[i].dir);
                goto out;
            }
        }
    }
    if ((cmd & C_STACK) && o.stop_cmd != NULL && o.start_cmd == NULL) {
        log_error("--stop-cmd needs --start-cmd");
        log_hint("the stack is started again on every exit path: say how");
        goto out;
    }
    if (cmd == C_SNAP) {
        if (o.nvols == 0) {
            log_error("snapshot needs at least one --volume NAME=DIR");
            goto out;
        }
        if (o.stop_cmd == NULL && o.health_url == NULL && !o.assume_stopped) {
            log_error("no way to know the stack is stopped");
            log_hint("give --stop-cmd, or --health-url to check it, or --assume-stopped");
            goto out;
        }
    }

    /* list, verify, expire: first finish what a killed run left (snapshot and restore do
     * it under their own lock) */
    int recovered = 0;
    if (!(cmd & C_STACK)) {
        recovered = mv_recover_cmd(&o);
        if (recovered == RS_NOT_FOUND || recovered == RS_MISMATCH) {
            status = recovered == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
            goto out;
        }
    }
    switch (cmd) {
    case C_SNAP: r = mv_snapshot_cmd(&o); break;
    case C_RESTORE: r = mv_restore_cmd(&o); break;
    case C_LIST: r = mv_list_cmd(&o); break;
    case C_VERIFY: r = mv_verify_cmd(&o); break;
    default: r = mv_expire_cmd(&o); break;
    }
    status = r == 0 ? EXIT_OK : r == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
    if (status == EXIT_OK && recovered != 0)
        status = EXIT_FAIL;
out:
    fflush(stdout);
    for (size_t i = 0; i < o.nvols; i++) {
        free(o.vols[i].name);
        free(o.vols[i].dir);
    }
    free(o.vols);
    free(vol_args);
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    cli_release(&cl);
    return status;
}
