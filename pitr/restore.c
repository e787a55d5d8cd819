/*
 * restore.c -- carry out a plan: a data directory set up to recover to the target.
 *
 * Order: plan (refuses before anything is written) -> check the destinations ->
 * move a non-empty DIR aside (--force) -> extract base and tablespaces, checking
 * every file against backup_manifest -> tablespace_map, backup_manifest,
 * postgresql.auto.conf, recovery.signal -> owner and mode -> fsync everything.
 * A failure after the first write removes what was written and moves the old
 * contents back. Without tablespaces the copy is made in a private sibling of DIR
 * renamed into place at the end, and when the backup is known before the plan's walk
 * (plan_guess) it is extracted there beside the plan (see "The private sibling"). --delta updates a stale copy of the same cluster in place instead
 * (check_delta, delta_prune): a failure leaves it for another --delta. --start then
 * runs pg_ctl as the owner and follows recovery over libpq until it stops, reporting
 * where.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "pitr.h"
#include "strbuf.h"
#include "timefmt.h"
#include "walspool.h"

typedef struct ts_dest {
    uint32_t oid;
    const char *orig;
    char dir[PATH_MAX];
    char aside[PATH_MAX * 2];
    int moved;
    int created;
    int existed; /* an empty directory that was there: its own owner and mode are kept */
    char real[PATH_MAX]; /* dir through realpath of its nearest existing ancestor */
    const char *file;
} ts_dest;

/* dir_state -- 0 absent, 1 empty directory, 2 non-empty directory; -1 reported. */
static int dir_state(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return log_errno("could not stat \"%s\"", path);
    }
    if (!S_ISDIR(sb.st_mode))
        return log_error("\"%s\" exists and is not a directory", path);
    DIR *d = opendir(path);
    if (!d)
        return log_errno("could not open directory \"%s\"", path);
    struct dirent *de;
    int state = 1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            state = 2;
            break;
        }
    closedir(d);
    return state;
}

static int make_absolute(const char *in, char *out, size_t len)
{
    char cwd[PATH_MAX];
    int n;
    if (in[0] == '/') {
        n = snprintf(out, len, "%s", in);
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return log_errno("could not get the current directory");
        n = snprintf(out, len, "%s/%s", cwd, in);
    }
    if (n < 0 || (size_t)n >= len)
        return log_error("path too long: \"%s\"", in);
    while (strlen(out) > 1 && out[strlen(out) - 1] == '/')
        out[strlen(out) - 1] = '\0';
    return 0;
}

static uid_t g_uid;
static gid_t g_gid;
static int g_skip_top;

static int chown_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (g_skip_top && ftw->level == 0)
        return 0;
    if (lchown(path, g_uid, g_gid) != 0)
        return log_errno("could not change the owner of \"%s\"", path);
    return 0;
}

/* chown_tree -- lchown everything under path; path itself too unless skip_top (a
 * directory the restore did not create keeps its owner). */
static int chown_tree(const char *path, uid_t uid, gid_t gid, int skip_top)
{
    g_uid = uid;
    g_gid = gid;
    g_skip_top = skip_top;
    return nftw(path, chown_one, 32, FTW_PHYS) == 0 ? 0 : -1;
}

/* remove_contents -- rm -rf of everything inside dir, dir itself kept. */
static void remove_contents(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX * 2];
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        durable_remove_tree(path);
    }
    if (d)
        closedir(d);
}

/*
 * resolve_dest -- path (absolute) with its nearest existing ancestor through realpath
 * and the rest appended, into out: what a symlink on the way really points at. A "."
 * or ".." component is refused when strict (a location PostgreSQL records has none).
 * 0 | -1 (not reported).
 */
static int resolve_dest(const char *path, char *out, size_t len, int strict)
{
    char head[PATH_MAX], real[PATH_MAX];
    const char *tail = "";
    if (path[0] != '/')
        return -1;
    if (strict && (strstr(path, "/./") || strstr(path, "/../") ||
        (strlen(path) >= 2 && strcmp(path + strlen(path) - 2, "/.") == 0) ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0)))
        return -1;
    snprintf(head, sizeof(head), "%s", path);
    for (;;) {
        if (realpath(head, real))
            break;
        if (errno != ENOENT && errno != ENOTDIR)
            return -1;
        char *slash = strrchr(head, '/');
        if (!slash || slash == head) {
            snprintf(real, sizeof(real), "/");
            tail = path + 1;
            break;
        }
        *slash = '\0';
        tail = path + (slash - head) + 1;
    }
    int n = snprintf(out, len, "%s%s%s", real, strcmp(real, "/") == 0 || !*tail ? "" : "/", tail);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return 0;
}

/* under -- path equals dir or lies inside it (both resolved). */
static int under(const char *path, const char *dir)
{
    size_t l = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return 1;
    return strncmp(path, dir, l) == 0 && (path[l] == '\0' || path[l] == '/');
}

/* system_dir -- a resolved path a tablespace must never go to: the system's own
 * directories themselves, and anything under those holding the system. */
static int system_dir(const char *real)
{
    static const char *exact[] = {"/", "/var", "/var/lib", "/var/log", "/home", "/root", "/tmp",
                                  "/var/tmp", "/opt", "/srv", "/mnt", "/media"};
    static const char *tree[] = {"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                 "/libx32", "/boot", "/dev", "/proc", "/sys", "/run",
                                 "/var/lib/dpkg", "/var/lib/apt", "/var/run"};
    for (size_t i = 0; i < ARRAY_LEN(exact); i++)
        if (strcmp(real, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < ARRAY_LEN(tree); i++)
        if (under(real, tree[i]))
            return 1;
    return 0;
}

static int is_recovery_key(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    static const char *keys[] = {"restore_command", "recovery_target", "archive_cleanup_command",
                                 "recovery_end_command"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        size_t l = strlen(keys[i]);
        if (strncmp(line, keys[i], l) == 0 &&
            (strcmp(keys[i], "recovery_target") == 0 ||
             line[l] == ' ' || line[l] == '=' || line[l] == '\t'))
            return 1;
    }
    return 0;
}

/*
 * write_auto_conf -- postgresql.auto.conf: the backup's own lines minus any
 * recovery settings it carried, then ours (later lines win in PostgreSQL, so our
 * settings override the backup's). An empty or missing file gets ALTER SYSTEM's
 * header. 0 | -1 reported.
 */
static int write_auto_conf(const char *pgdata, const char *settings)
{
    char path[PATH_MAX + 32];
    char *line = NULL;
    size_t cap = 0;
    strbuf out;
    int ret = -1;
    FILE *f;

    strbuf_init(&out);
    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", pgdata);
    f = fopen(path, "r");
    if (f) {
        while (getline(&line, &cap, f) >= 0) {
            if (is_recovery_key(line))
                continue;
            if (strbuf_append(&out, line) != 0) {
                fclose(f);
                goto out;
            }
        }
        if (ferror(f)) {
            log_errno("could not read \"%s\"", path);
            fclose(f);
            goto out;
        }
        fclose(f);
    } else if (errno != ENOENT) {
        log_errno("could not open \"%s\"", path);
        goto out;
    }
    if (out.len == 0 && strbuf_append(&out, "# Do not edit this file manually!\n"
                                             "# It will be overwritten by the ALTER SYSTEM "
                                             "command.\n") != 0)
        goto out;
    if (out.buf[out.len - 1] != '\n' && strbuf_append(&out, "\n") != 0)
        goto out;
    if (strbuf_append(&out, settings) != 0)
        goto out;
    if (durable_write_file(path, out.buf, out.len, 0600, 0) != 0)
        goto out;
    ret = 0;
out:
    free(line);
    strbuf_release(&out);
    return ret;
}

int find_pg_bin(const pitr_opts *o, char *out, size_t len)
{
    if (o->pg_bin) {
        snprintf(out, len, "%s", o->pg_bin);
        return 0;
    }
    FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
    if (p) {
        if (fgets(out, (int)len, p)) {
            out[strcspn(out, "\n")] = '\0';
            pclose(p);
            char t[PATH_MAX + 16];
            snprintf(t, sizeof(t), "%s/pg_ctl", out);
            if (access(t, X_OK) == 0)
                return 0;
        } else {
            pclose(p);
        }
    }
    snprintf(out, len, "/usr/lib/postgresql/15/bin");
    return 0;
}

/*
 * child_become -- in a forked child: become uid/gid (as root, when it is not root) with
 * stdin and stdout on /dev/null. Exits 127 when the switch fails; never returns an error.
 */
static void child_become(uid_t uid, gid_t gid, const char *user)
{
    if (geteuid() == 0 && uid != 0) {
        if (initgroups(user, gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            perror("ragsafe-pitr: could not switch user");
            _exit(127);
        }
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
    }
}

/* run_as -- run argv as uid/gid (when different from ours); its exit status. */
static int run_as(uid_t uid, gid_t gid, const char *user, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return log_errno("could not fork");
    if (pid == 0) {
        child_become(uid, gid, user);
        execv(argv[0], argv);
        perror("ragsafe-pitr: could not run pg_ctl");
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return log_errno("could not wait for pg_ctl");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void tail_log(const char *path)
{
    FILE *f = fopen(path, "r");
    char lines[12][512];
    int n = 0;
    if (!f)
        return;
    while (fgets(lines[n % 12], sizeof(lines[0]), f))
        n++;
    fclose(f);
    for (int i = n > 12 ? n - 12 : 0; i < n; i++) {
        lines[i % 12][strcspn(lines[i % 12], "\n")] = '\0';
        log_detail("%s", lines[i % 12]);
    }
}

static int pid_alive(pid_t pid);

typedef struct start_result {
    char replay_ts[64];
    char replay_lsn[32];
    int promoted, paused, shutdown, standby;
    int fast;               /* promoted by us at the pause (use_fast_promote) */
    double seconds;
} start_result;

/*
 * use_fast_promote -- whether --start ends recovery paused at the target and then
 * promotes the server itself (pg_ctl promote), instead of recovery_target_action =
 * promote. A promotion PostgreSQL is asked for writes an end-of-recovery record and
 * accepts writes at once, with the checkpoint requested in the background (spread);
 * recovery that ends by itself (its target reached with action promote, or the end of
 * the WAL) first runs an immediate end-of-recovery checkpoint that writes every page
 * replay dirtied, and nobody can write until it is done: seconds for a large replay.
 * Every standby promotion takes the first way; the data are the target's either way
 * (recovery stopped there), and until that background checkpoint completes a crash
 * replays from the last restartpoint with the WAL still in pg_wal, as after any
 * promotion. --target-latest has no target to pause at: the plan's last record is
 * made one (recovery_target_lsn, inclusive). The plan saw every segment the archive
 * holds and its walk goes on past a segment's end, so WAL PostgreSQL would read
 * beyond that record is none; if it ends earlier, PostgreSQL stops with "recovery ended
 * before configured recovery target was reached" instead of promoting short (reported,
 * with the way to let it end by itself). A dump's scratch server is promoted so too
 * (dump.c). Not for --standby, another --target-action, --end-of-recovery-checkpoint,
 * --set hot_standby=off, or RAGSAFE_NO_FAST_PROMOTE=1 (measuring).
 */
static int use_fast_promote(const pitr_opts *o, const plan *p)
{
    if (!o->start || o->standby || o->eor_checkpoint ||
        strcmp(o->action, "promote") != 0)
        return 0;
    if (getenv("RAGSAFE_NO_FAST_PROMOTE") && *getenv("RAGSAFE_NO_FAST_PROMOTE"))
        return 0;
    /* the pause needs hot_standby, which a later --set may turn off (the last wins) */
    for (size_t i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], "hot_standby=", 12) == 0) {
            const char *v = o->sets[i] + 12;
            if (strcasecmp(v, "on") != 0 && strcasecmp(v, "true") != 0 &&
                strcasecmp(v, "yes") != 0 && strcmp(v, "1") != 0)
                return 0;
        }
    return o->kind != TARGET_LATEST || p->last_rec_lsn != 0;
}

/*
 * fatal_lines -- FATAL / PANIC lines the server wrote into its log after offset (only
 * those holding needle, unless NULL); report them as detail lines when report. Their
 * count.
 */
static int fatal_lines(const char *logf, long offset, int report, const char *needle)
{
    FILE *f = fopen(logf, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;

    if (!f)
        return 0;
    if (offset > 0)
        fseek(f, offset, SEEK_SET);
    while (getline(&line, &cap, f) >= 0) {
        if (!strstr(line, "FATAL:") && !strstr(line, "PANIC:"))
            continue;
        /* what clients (our own polling among them) are told while the server starts
         * or stops is not why it stopped */
        if (strstr(line, "FATAL:  the database system is ") || (needle && !strstr(line, needle)))
            continue;
        if (report && n < 10) {
            line[strcspn(line, "\n")] = '\0';
            log_detail("%s", line);
        }
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/*
 * start_and_follow -- pg_ctl start as the owner, then watch postmaster.pid and the
 * postmaster PID, and poll over libpq until recovery stops as asked (promoted /
 * paused / shut down; a standby: once it accepts connections). A server that exits
 * (FATAL/PANIC in its log, postmaster gone) is reported at once with those lines.
 * 0 | -1 reported.
 */
static int start_and_follow(const pitr_opts *o, const char *pgdata, uid_t uid, gid_t gid,
                            const char *user, int fast, start_result *res)
{
    char bin[PATH_MAX], pg_ctl[PATH_MAX + 16], logf[PATH_MAX + 32], pidf[PATH_MAX + 32];
    double t0 = now_seconds();
    PGconn *conn = NULL;
    int ret = -1;

    memset(res, 0, sizeof(*res));
    find_pg_bin(o, bin, sizeof(bin));
    snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", bin);
    snprintf(logf, sizeof(logf), "%s/ragsafe-start.log", pgdata);
    snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", pgdata);
    long log_off = file_size(logf); /* lines before this are not this start's */
    char *argv[] = {pg_ctl, "-D", (char *)pgdata, "-l", logf, "-W", "start", NULL};
    log_info("starting the server: %s -D %s -l %s start", pg_ctl, pgdata, logf);
    int st = run_as(uid, gid, user, argv);
    if (st != 0) {
        log_error("pg_ctl start failed with status %d", st);
        tail_log(logf);
        return -1;
    }
    int seen_pid = 0, started = 0, promote_sent = 0, promote_tried = 0;
    double t_promote = 0;
    pid_t pm = 0;
    while (now_seconds() - t0 < (double)o->timeout) {
        usleep(50 * 1000);
        FILE *pf = fopen(pidf, "r");
        char l[8][PATH_MAX];
        int n = 0;
        if (pf) {
            while (n < 8 && fgets(l[n], sizeof(l[n]), pf)) {
                l[n][strcspn(l[n], "\n")] = '\0';
                n++;
            }
            fclose(pf);
            if (n >= 1 && atol(l[0]) > 0)
                pm = (pid_t)atol(l[0]);
            /* line 8, the postmaster's status, is written once its sockets and shared
             * memory exist: only from then on did the server start (a socket lock clash
             * fails before it, even when lines 1-7 are already there) */
            if (n >= 8 && l[7][0])
                started = 1;
        }
        int gone = pm > 0 ? !pid_alive(pm) : !pf;
        if (gone) {
            if (seen_pid && strcmp(o->action, "shutdown") == 0 && !o->standby &&
                fatal_lines(logf, log_off, 0, NULL) == 0) {
                res->shutdown = 1;
                ret = 0;
                goto out;
            }
            if (fatal_lines(logf, log_off, 0, NULL) > 0) {
                /* the postmaster is gone and said why: report it now */
                log_error(started ? "the server stopped during recovery (postmaster PID %ld "
                                    "exited)"
                                  : "the server did not start%.0ld",
                          (long)pm);
                fatal_lines(logf, log_off, 1, NULL);
                log_detail("server log: \"%s\"", logf);
                if (fast && o->kind == TARGET_LATEST &&
                    fatal_lines(logf, log_off, 0, "recovery ended before configured recovery target"))
                    log_hint("the WAL PostgreSQL read ends before the last record the plan "
                             "found; restore again with --end-of-recovery-checkpoint to let "
                             "recovery end where PostgreSQL's reading of the WAL ends");
                goto out;
            }
            if (!seen_pid && now_seconds() - t0 < 30)
                continue;
            log_error(started ? "the server stopped during recovery"
                              : seen_pid ? "the server did not start"
                                         : "the server did not start within 30 s");
            tail_log(logf);
            goto out;
        }
        if (n < 5)
            continue;
        seen_pid = 1;
        if (!conn) {
            char ci[PATH_MAX * 3];
            const char *host = l[4][0] ? l[4] : (n >= 6 && l[5][0] && strcmp(l[5], "*") != 0
                                                     ? l[5] : "localhost");
            snprintf(ci, sizeof(ci), "host='%s' port=%s dbname=postgres user='%s' "
                     "connect_timeout=5 application_name=ragsafe-pitr", host, l[3], user);
            conn = PQconnectdb(ci);
            if (PQstatus(conn) != CONNECTION_OK) {
                log_debug("not connected yet: %s", PQerrorMessage(conn));
                PQfinish(conn);
                conn = NULL;
                continue;
            }
        }
        PGresult *r = PQexec(conn, "SELECT pg_is_in_recovery(),"
                                   /* raises "recovery is not in progress" once promoted */
                                   " CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,"
                                   /* microseconds, shown as RFC 3339 (timefmt_utc_us) */
                                   " (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::bigint,"
                                   " pg_last_wal_replay_lsn()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            log_debug("query failed: %s", PQerrorMessage(conn));
            PQclear(r);
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        int in_rec = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        int paused = strcmp(PQgetvalue(r, 0, 1), "paused") == 0;
        res->replay_ts[0] = '\0';
        if (!PQgetisnull(r, 0, 2))
            timefmt_utc_us(res->replay_ts, sizeof(res->replay_ts), strtoll(PQgetvalue(r, 0, 2), NULL, 10));
        snprintf(res->replay_lsn, sizeof(res->replay_lsn), "%s", PQgetvalue(r, 0, 3));
        PQclear(r);
        if (o->standby && in_rec) {
            res->standby = 1;
            ret = 0;
            goto out;
        }
        if (!in_rec) {
            res->promoted = 1;
            ret = 0;
            goto out;
        }
        if (fast && (paused ? !promote_sent || now_seconds() - t_promote > 5.0 : !promote_tried)) {
            /* Asked for as soon as the server is in recovery, not once it pauses: the
             * pause at the target checks for a promotion request when it begins and
             * then only every second (PostgreSQL 15 sleeps on a condition variable the
             * request does not wake), so a request sent at the pause waits a second
             * there. Outside standby mode a request is acted on only in that pause
             * (and the pause pg_wal_replay_pause asks for, which it ends: replay goes
             * on); recovery still runs to the target, and one that ends before the
             * target stops with FATAL, promoted or not. Tried once before the pause
             * (not again at every poll of a long replay if pg_ctl refuses), then at the
             * pause, and again if the server sits paused 5 s after it. */
            char *pargv[] = {pg_ctl, "-D", (char *)pgdata, "-W", "-s", "promote", NULL};
            int pst = run_as(uid, gid, user, pargv);
            promote_tried = 1;
            if (pst != 0 && paused) {
                log_error("pg_ctl promote failed with status %d: the server waits, paused "
                          "at the target", pst);
                log_hint("promote it: pg_ctl -D %s promote", pgdata);
                goto out;
            }
            if (pst == 0) {
                log_info("promotion requested (replay lsn %s): the server is promoted when "
                         "recovery pauses at the target", res->replay_lsn);
                promote_sent = 1;
                t_promote = now_seconds();
                res->fast = 1;
            }
        }
        if (paused && fast)
            continue; /* promotion under way */
        if (paused && o->kind != TARGET_LATEST) {
            res->paused = 1;
            ret = 0;
            goto out;
        }
    }
    if (ret != 0) {
        log_error("recovery did not finish within %lld s", (long long)o->timeout);
        if (fast)
            log_hint("the server goes on; once it pauses at the target, promote it: "
                     "pg_ctl -D %s promote", pgdata);
    }
out:
    res->seconds = now_seconds() - t0;
    if (conn)
        PQfinish(conn);
    return ret;
}

/*
 * move_aside -- rename dir to the name every tool's --force uses (cli_aside_pick:
 * DIR.ragsafe-old-TIME, with -2, -3 ... when that name is taken: two restores in one
 * second, or a name left from before). 0 | -1 reported.
 */
static int move_aside(const char *dir, char *aside, size_t len)
{
    if (cli_aside_pick(dir, aside, len) != 0)
        return -1;
    if (durable_rename(dir, aside) != 0)
        return -1;
    log_notice("moved the old contents of \"%s\" to \"%s\"", dir, aside);
    return 0;
}

/*
 * check_restore_command -- run the written restore_command once, exactly as the
 * server will (/bin/sh -c, in the data directory, as its owner), for seg, into a
 * temp file in pg_wal that is removed afterwards. 0 | -1 reported with the
 * command's exit status and stderr.
 */
static int check_restore_command(const char *pgdata, uid_t uid, gid_t gid, const char *user,
                                 const char *cmd, const char *seg)
{
    char rel[64], abspath[PATH_MAX + 64];
    strbuf line, err;
    int pfd[2] = {-1, -1}, ret = -1, status = 0;
    pid_t pid;

    strbuf_init(&line);
    strbuf_init(&err);
    snprintf(rel, sizeof(rel), "pg_wal/ragsafe-check-%ld.tmp", (long)getpid());
    snprintf(abspath, sizeof(abspath), "%s/%s", pgdata, rel);
    for (const char *c = cmd; *c; c++) {
        int r = 0;
        if (c[0] == '%' && c[1] == 'f') {
            r = strbuf_append(&line, seg);
            c++;
        } else if (c[0] == '%' && c[1] == 'p') {
            r = strbuf_append(&line, rel);
            c++;
        } else if (c[0] == '%' && c[1] == '%') {
            r = strbuf_append(&line, "%");
            c++;
        } else {
            r = strbuf_appendn(&line, c, 1);
        }
        if (r != 0)
            goto out;
    }
    log_info("checking the restore_command for %s: %s", seg, line.buf);
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        log_errno("could not create a pipe");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        log_errno("could not fork");
        goto out;
    }
    if (pid == 0) {
        if (chdir(pgdata) != 0) {
            perror("ragsafe-pitr: could not enter the data directory");
            _exit(127);
        }
        child_become(uid, gid, user);
        dup2(pfd[1], 2);
        execl("/bin/sh", "sh", "-c", line.buf, (char *)NULL);
        perror("ragsafe-pitr: could not run /bin/sh");
        _exit(127);
    }
    close(pfd[1]);
    pfd[1] = -1;
    for (;;) {
        char buf[4096];
        ssize_t n = read(pfd[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (err.len < 65536 && strbuf_appendn(&err, buf, (size_t)n) != 0)
            break;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            log_errno("could not wait for the restore_command");
            goto out;
        }
    unlink(abspath);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info("the restore_command works: it fetched %s", seg);
        ret = 0;
        goto out;
    }
    if (WIFEXITED(status))
        log_error("the restore_command failed for %s with exit status %d: recovery would stop "
                  "at its first WAL file", seg, WEXITSTATUS(status));
    else
        log_error("the restore_command for %s was killed by signal %d: recovery would stop "
                  "at its first WAL file", seg, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    log_detail("command (run as %s in \"%s\"): %s", user, pgdata, line.buf);
    for (char *l = err.buf, *nl; *l; l = nl + 1) {
        nl = strchr(l, '\n');
        if (!nl)
            nl = l + strlen(l) - 1;
        else
            *nl = '\0';
        log_detail("stderr: %s", l);
        if (!nl[1])
            break;
    }
out:
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    strbuf_release(&line);
    strbuf_release(&err);
    return ret;
}

/*
 * build_restore_command -- the restore_command line: ragsafe-restore with every
 * repository option this restore used, then %f %p. 0 | -1 reported.
 */
static int build_restore_command(const pitr_opts *o, storage *st, const char *restore_bin,
                                 strbuf *cmd)
{
    if (strbuf_append_shell_quoted(cmd, restore_bin) != 0 || strbuf_append(cmd, " --repo ") != 0 ||
        strbuf_append_shell_quoted(cmd, storage_location(st)) != 0)
        return -1;
    /* the config file this restore read (S3 credentials, key file, prefetch may be
     * there): the server's ragsafe-restore reads the same one */
    if (o->config_path && (strbuf_append(cmd, " --config ") != 0 ||
                           strbuf_append_shell_quoted(cmd, o->config_path) != 0))
        return -1;
    if (strncmp(storage_location(st), "s3://", 5) == 0) {
        /* The server's environment is not ours: carry the S3 settings on the
         * command line (credentials stay in the server's environment or in the
         * config file ragsafe-restore reads, never in postgresql.auto.conf). */
        static const struct { const char *env, *opt; } s3[] = {
            {"RAGSAFE_S3_ENDPOINT", "--s3-endpoint"},
            {"RAGSAFE_S3_REGION", "--s3-region"},
            {"RAGSAFE_S3_URI_STYLE", "--s3-uri-style"},
        };
        for (size_t i = 0; i < ARRAY_LEN(s3); i++) {
            const char *v = getenv(s3[i].env);
            if (!v || !*v)
                continue;
            if (strbuf_appendf(cmd, " %s ", s3[i].opt) != 0 ||
                strbuf_append_shell_quoted(cmd, v) != 0)
                return -1;
        }
    }
    if (storage_cipher(st) && getenv("RAGSAFE_CIPHER_KEY_FILE")) {
        /* the key file's path (absolute, repo_cli_setup), never the key */
        if (strbuf_append(cmd, " --cipher-key-file ") != 0 ||
            strbuf_append_shell_quoted(cmd, getenv("RAGSAFE_CIPHER_KEY_FILE")) != 0)
            return -1;
    }
    return strbuf_append(cmd, " %f %p");
}

/*
 * build_settings -- the lines appended to postgresql.auto.conf. 0 | -1 reported.
 */
static int build_settings(const pitr_opts *o, const plan *p, const strbuf *cmd, int fast,
                          strbuf *out)
{
    char stamp[32];

    timefmt_utc(stamp, sizeof(stamp), (int64_t)time(NULL));
    if (strbuf_appendf(out, "# recovery settings written by ragsafe-pitr restore at %s\n"
                            "restore_command = ", stamp) != 0 ||
        strbuf_append_conf_quoted(out, cmd->buf) != 0 || strbuf_append(out, "\n") != 0)
        return -1;
    if (!o->standby) {
        switch (o->kind) {
        case TARGET_TIME:
            if (strbuf_appendf(out, "recovery_target_time = '%s'\n", p->time_conf) != 0)
                return -1;
            break;
        case TARGET_LSN: {
            char l[LSN_STR_LEN + 1];
            lsn_format(l, o->lsn);
            if (strbuf_appendf(out, "recovery_target_lsn = '%s'\n", l) != 0)
                return -1;
            break;
        }
        case TARGET_XID:
            if (strbuf_appendf(out, "recovery_target_xid = '%u'\n", o->xid) != 0)
                return -1;
            break;
        case TARGET_NAME:
            if (strbuf_append(out, "recovery_target_name = ") != 0 ||
                strbuf_append_conf_quoted(out, o->name) != 0 || strbuf_append(out, "\n") != 0)
                return -1;
            break;
        case TARGET_IMMEDIATE:
            if (strbuf_append(out, "recovery_target = 'immediate'\n") != 0)
                return -1;
            break;
        default:
            break;
        }
        if (o->exclusive && strbuf_append(out, "recovery_target_inclusive = 'false'\n") != 0)
            return -1;
        if (strbuf_appendf(out, "recovery_target_timeline = '%u'\n", p->tli) != 0)
            return -1;
        if (fast) {
            /* use_fast_promote: paused at the target, then promoted by --start; a pause
             * needs hot_standby (without it PostgreSQL shuts down instead) */
            char l[LSN_STR_LEN + 1];
            uint64_t last = p->last_rec_lsn;
            /* tests: a plan whose last record lies beyond the WAL PostgreSQL reads */
            if (getenv("RAGSAFE_TEST_LAST_REC_PAST"))
                last += (uint64_t)16 << 20;
            lsn_format(l, last);
            if ((o->kind == TARGET_LATEST &&
                 strbuf_appendf(out, "recovery_target_lsn = '%s'  # the last record the plan "
                                     "found: --target-latest\n", l) != 0) ||
                strbuf_append(out, "recovery_target_action = 'pause'  # ragsafe-pitr restore "
                                   "--start promotes it there\nhot_standby = 'on'\n") != 0)
                return -1;
        } else if (o->kind != TARGET_LATEST &&
                   strbuf_appendf(out, "recovery_target_action = '%s'\n", o->action) != 0)
            return -1;
    } else if (o->tli ? strbuf_appendf(out, "recovery_target_timeline = '%u'\n", o->tli)
                      : strbuf_append(out, "recovery_target_timeline = 'latest'\n")) {
        /* a standby follows the newest timeline unless one was named */
        return -1;
    }
    /* a restored copy does not write into the repository unless told: archive_mode
     * off, not a failing archive_command (that would fill pg_wal) */
    if (!o->archive_preserve &&
        strbuf_append(out, "archive_mode = 'off'  # ragsafe-pitr restore --archive-mode off\n") != 0)
        return -1;
    if (o->nsets && strbuf_append(out, "# settings given to ragsafe-pitr restore (--set, --port)\n") != 0)
        return -1;
    for (size_t i = 0; i < o->nsets; i++) {
        const char *eq = strchr(o->sets[i], '=');
        if (strbuf_appendf(out, "%.*s = ", (int)(eq - o->sets[i]), o->sets[i]) != 0 ||
            strbuf_append_conf_quoted(out, eq + 1) != 0 || strbuf_append(out, "\n") != 0)
            return -1;
    }
    return 0;
}

/* pid_alive -- the process exists (ours or not). */
static int pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* read_small -- the first line (or the whole) of a small /proc or lock file. */
static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/*
 * pid_is_postgres -- pid is alive and runs PostgreSQL (comm or exe "postgres" or
 * "postmaster"). A reused PID of another program is not a server: a stale
 * postmaster.pid does not block a restore. Without /proc an alive PID counts.
 */
static int pid_is_postgres(pid_t pid)
{
    char path[64], buf[PATH_MAX];

    if (!pid_alive(pid))
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
    if (read_small(path, buf, sizeof(buf)) != 0)
        return access("/proc/self", F_OK) != 0;
    if (strncmp(buf, "postgres", 8) == 0 || strncmp(buf, "postmaster", 10) == 0)
        return 1;
    snprintf(path, sizeof(path), "/proc/%ld/exe", (long)pid);
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        const char *base = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
        return strcmp(base, "postgres") == 0 || strcmp(base, "postmaster") == 0;
    }
    return 0;
}

/* ppid_of -- the parent PID from /proc/PID/stat; 0 when unknown. */
static pid_t ppid_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (read_small(path, buf, sizeof(buf)) != 0)
        return 0;
    const char *p = strrchr(buf, ')'); /* comm may hold spaces */
    char st;
    long pp;
    if (!p || sscanf(p + 1, " %c %ld", &st, &pp) != 2)
        return 0;
    return (pid_t)pp;
}

typedef struct live_server {
    pid_t pid;
    char datadir[PATH_MAX];
    char how[4 * PATH_MAX];
} live_server;

/*
 * find_live_server -- is DIR used by a running PostgreSQL server? As a data
 * directory: its postmaster.pid names a live postgres process, or the socket lock
 * file that postmaster.pid lists is held by one for this directory, or a postmaster
 * has DIR as its working directory (postmaster.pid removed by hand). As a
 * tablespace (is_ts): a running postmaster's pg_tblspc links to DIR.
 * 1 found (*ls filled) | 0 none.
 */
static int find_live_server(const char *dir, int is_ts, live_server *ls)
{
    char path[PATH_MAX + 64], real[PATH_MAX];
    memset(ls, 0, sizeof(*ls));

    if (!is_ts) {
        FILE *f;
        snprintf(path, sizeof(path), "%s/postmaster.pid", dir);
        if ((f = fopen(path, "re")) != NULL) {
            char l[5][PATH_MAX];
            int n = 0;
            while (n < 5 && fgets(l[n], sizeof(l[n]), f)) {
                l[n][strcspn(l[n], "\n")] = '\0';
                n++;
            }
            fclose(f);
            pid_t pid = n >= 1 ? (pid_t)atol(l[0]) : 0;
            if (pid < 0)
                pid = -pid; /* a single-user backend writes -PID */
            if (pid_is_postgres(pid)) {
                ls->pid = pid;
                snprintf(ls->datadir, sizeof(ls->datadir), "%s", dir);
                snprintf(ls->how, sizeof(ls->how), "its postmaster.pid names PID %ld, alive",
                         (long)pid);
                return 1;
            }
            if (n >= 5 && l[4][0]) {
                char lock[2 * PATH_MAX + 32], lb[2 * PATH_MAX];
                snprintf(lock, sizeof(lock), "%s/.s.PGSQL.%s.lock", l[4], l[3]);
                if (read_small(lock, lb, sizeof(lb)) == 0) {
                    char *nl = strchr(lb, '\n');
                    pid_t lp = (pid_t)atol(lb);
                    char *ld = nl ? nl + 1 : NULL;
                    if (ld)
                        ld[strcspn(ld, "\n")] = '\0';
                    if (pid_is_postgres(lp) && ld && strcmp(ld, dir) == 0) {
                        ls->pid = lp;
                        snprintf(ls->datadir, sizeof(ls->datadir), "%s", dir);
                        snprintf(ls->how, sizeof(ls->how),
                                 "the socket lock file \"%s\" is held by PID %ld", lock, (long)lp);
                        return 1;
                    }
                }
            }
        }
    }
    if (!realpath(dir, real))
        return 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    int found = 0;
    while (d && !found && (de = readdir(d)) != NULL) {
        char cwd[PATH_MAX];
        pid_t pid = (pid_t)atol(de->d_name);
        if (pid <= 0 || !pid_is_postgres(pid) || pid_is_postgres(ppid_of(pid)))
            continue; /* postmasters only: their children share the cwd */
        snprintf(path, sizeof(path), "/proc/%ld/cwd", (long)pid);
        ssize_t n = readlink(path, cwd, sizeof(cwd) - 1);
        if (n <= 0)
            continue;
        cwd[n] = '\0';
        if (!is_ts) {
            if (strcmp(cwd, real) == 0) {
                found = 1;
                snprintf(ls->how, sizeof(ls->how), "postmaster PID %ld runs in it", (long)pid);
            }
        } else {
            char tsd[PATH_MAX + 64];
            snprintf(tsd, sizeof(tsd), "/proc/%ld/cwd/pg_tblspc", (long)pid);
            DIR *t = opendir(tsd);
            struct dirent *te;
            while (t && !found && (te = readdir(t)) != NULL) {
                char link[PATH_MAX + 400], target[PATH_MAX];
                if (te->d_name[0] == '.')
                    continue;
                snprintf(link, sizeof(link), "%s/%s", tsd, te->d_name);
                if (realpath(link, target) && strcmp(target, real) == 0) {
                    found = 1;
                    snprintf(ls->how, sizeof(ls->how), "it is tablespace %s of postmaster PID %ld",
                             te->d_name, (long)pid);
                }
            }
            if (t)
                closedir(t);
        }
        if (found) {
            ls->pid = pid;
            snprintf(ls->datadir, sizeof(ls->datadir), "%s", cwd);
        }
    }
    if (d)
        closedir(d);
    return found;
}

/*
 * refuse_if_live -- report and return -1 when a running server uses dir (what: "data
 * directory", "tablespace directory"); 0 when none does.
 */
static int refuse_if_live(const char *dir, const char *what, int is_ts)
{
    live_server ls;
    if (!find_live_server(dir, is_ts, &ls))
        return 0;
    log_error("%s \"%s\" is in use by a running PostgreSQL server (PID %ld): not restoring "
              "over it", what, dir, (long)ls.pid);
    log_detail("%s; nothing was moved or written", ls.how);
    log_hint("stop that server first, as its owner: pg_ctl -D %s stop (or restore into "
             "another directory)", ls.datadir);
    return -1;
}

/* mib -- bytes as MiB for messages. */
static double mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

/*
 * check_space -- before the first write: does each destination file system have
 * room for what goes there (the manifest's file sizes per destination, plus the WAL
 * the plan needs in pg_wal, plus 5 % and 64 MiB)? Destinations on one file system
 * add up. 0 | -1 reported, naming what is needed, available and missing.
 */
static int check_space(const char *pgdata, const ts_dest *ts, size_t nts, const manifest *m,
                       uint64_t wal, const pitr_opts *o)
{
    struct dest {
        const char *dir;
        uint64_t need;
        dev_t dev;
        uint64_t avail;
        char at[PATH_MAX];
    } *d = calloc(nts + 1, sizeof(*d));
    int ret = -1;

    if (!d)
        return log_error("out of memory");
    d[0].dir = pgdata;
    d[0].need = wal;
    for (size_t i = 0; i < m->nfiles; i++) {
        size_t k = 0;
        if (o->ndb_include && db_file_hollow(m->files[i].path, o->db_include, o->ndb_include))
            continue; /* a hole */
        for (size_t t = 0; t < nts && k == 0; t++) {
            char prefix[64];
            int pl = snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", ts[t].oid);
            if (strncmp(m->files[i].path, prefix, (size_t)pl) == 0)
                k = t + 1;
        }
        d[k].need += m->files[i].size;
    }
    for (size_t k = 0; k <= nts; k++) {
        struct stat sb;
        struct statvfs vfs;
        if (k > 0)
            d[k].dir = ts[k - 1].dir;
        /* the nearest existing ancestor: where the directory will be created */
        snprintf(d[k].at, sizeof(d[k].at), "%s", d[k].dir);
        while (stat(d[k].at, &sb) != 0) {
            char *slash = strrchr(d[k].at, '/');
            if (errno != ENOENT || !slash) {
                log_errno("could not stat \"%s\"", d[k].at);
                goto out;
            }
            if (slash == d[k].at)
                slash[1] = '\0';
            else
                *slash = '\0';
        }
        if (statvfs(d[k].at, &vfs) != 0) {
            log_errno("could not read the free space of \"%s\"", d[k].at);
            goto out;
        }
        d[k].dev = sb.st_dev;
        d[k].avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    }
    for (size_t k = 0; k <= nts; k++) {
        uint64_t need = 0, data = 0;
        int first = 1;
        for (size_t j = 0; j <= nts; j++)
            if (d[j].dev == d[k].dev) {
                first &= j >= k;
                data += d[j].need;
            }
        if (!first)
            continue; /* this file system was counted with an earlier destination */
        need = data + data / 20 + ((uint64_t)64 << 20);
        log_debug("space on \"%s\": need %llu, available %llu bytes", d[k].at,
                  (unsigned long long)need, (unsigned long long)d[k].avail);
        if (need > d[k].avail) {
            log_error("not enough space for the restore on the file system of \"%s\": need "
                      "%.1f MiB, available %.1f MiB, missing %.1f MiB", d[k].dir, mib(need),
                      mib(d[k].avail), mib(need - d[k].avail));
            log_detail("the backup's files%s (%.1f MiB) plus the WAL recovery needs in pg_wal "
                       "(%.1f MiB) plus a margin of 5 %% and 64 MiB; nothing was written",
                       nts ? " for the destinations on this file system" : "", mib(data - (d[0].dev == d[k].dev ? wal : 0)),
                       d[0].dev == d[k].dev ? mib(wal) : 0.0);
            log_hint("free %.1f MiB on \"%s\", or restore elsewhere (--pgdata, --tablespace-map)",
                     mib(need - d[k].avail), d[k].at);
            goto out;
        }
    }
    ret = 0;
out:
    free(d);
    return ret;
}

static const backup_file *find_file(const backup_info *b, const char *name)
{
    for (size_t i = 0; i < b->nfiles; i++)
        if (strcmp(b->files[i].name, name) == 0)
            return &b->files[i];
    return NULL;
}

/*
 * --delta: DIR holds a stale copy of the same cluster. check_delta refuses anything
 * else before a write; delta_prune removes every file and link the backup does not
 * have (postmaster.pid, postmaster.opts, socket lock files, all of pg_wal: stale WAL
 * could be replayed; the old recovery.signal and backup_manifest, written anew
 * later); extraction then keeps the files that match backup_manifest and replaces
 * the rest; delta_prune_dirs removes the directories the backup does not have.
 */
static int check_delta(const char *pgdata, const inventory *inv, const backup_info *b)
{
    repo_info ri;
    if (b->ntablespaces) {
        log_error("--delta does not restore backups with tablespaces (backup %s has %zu)",
                  b->label, b->ntablespaces);
        log_hint("restore it into an empty directory, or with --force to move \"%s\" aside",
                 pgdata);
        return -1;
    }
    int r = repo_info_from_pg_control(pgdata, &ri);
    if (r == RS_NOT_FOUND) {
        log_error("--delta: \"%s\" is not empty and has no global/pg_control: not a data "
                  "directory of this cluster", pgdata);
        log_hint("use a plain restore: into an empty directory, or with --force to move "
                 "\"%s\" aside", pgdata);
        return -1;
    }
    if (r != 0) {
        log_hint("use a plain restore with --force to move \"%s\" aside", pgdata);
        return -1;
    }
    if (inv->r->have_info && ri.sysid != inv->r->info.sysid) {
        log_error("--delta: \"%s\" is a data directory of another cluster (system "
                  "identifier %llu, the repository's is %llu)", pgdata,
                  (unsigned long long)ri.sysid, (unsigned long long)inv->r->info.sysid);
        log_hint("restore into another directory, or with --force to move \"%s\" aside",
                 pgdata);
        return -1;
    }
    return 0;
}

static const manifest *g_prune_m;
static size_t g_prune_root, g_pruned;
static const char *const *g_prune_dirs;
static size_t g_prune_ndirs;

static int prune_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DP || strlen(path) <= g_prune_root)
        return 0;
    if (flag == FTW_DNR || flag == FTW_NS) {
        log_error("could not read \"%s\"", path);
        return 1; /* reported */
    }
    const char *rel = path + g_prune_root;
    if (S_ISREG(sb->st_mode) && manifest_find(g_prune_m, rel))
        return 0;
    if (unlink(path) != 0) {
        log_errno("could not remove \"%s\"", path);
        return 1; /* reported */
    }
    log_debug("removed \"%s\" (not in the backup)", rel);
    g_pruned++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int prune_dir(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag != FTW_DP || strlen(path) <= g_prune_root)
        return 0;
    const char *rel = path + g_prune_root;
    if (g_prune_ndirs && bsearch(&rel, g_prune_dirs, g_prune_ndirs, sizeof(char *), cmp_str))
        return 0;
    if (rmdir(path) == 0) {
        log_debug("removed directory \"%s\" (not in the backup)", rel);
        g_pruned++;
    } else if (errno != ENOTEMPTY && errno != EEXIST) {
        log_errno("could not remove directory \"%s\"", path);
        return 1; /* reported */
    }
    return 0;
}

/* delta_prune -- remove the files and links under pgdata that m does not list. */
static int delta_prune(const char *pgdata, const manifest *m, size_t *removed)
{
    g_prune_m = m;
    g_prune_root = strlen(pgdata) + 1;
    g_pruned = 0;
    int r = nftw(pgdata, prune_file, 32, FTW_PHYS | FTW_DEPTH);
    *removed = g_pruned;
    if (r != 0)
        return r == 1 ? -1 : log_errno("could not walk \"%s\"", pgdata);
    return 0;
}

/* delta_prune_dirs -- remove the directories under pgdata that are not among dirs
 * (sorted here) and hold nothing of the backup. */
static int delta_prune_dirs(const char *pgdata, char **dirs, size_t ndirs, size_t *removed)
{
    if (ndirs)
        qsort(dirs, ndirs, sizeof(char *), cmp_str);
    g_prune_dirs = (const char *const *)dirs;
    g_prune_ndirs = ndirs;
    g_prune_root = strlen(pgdata) + 1;
    g_pruned = 0;
    int r = nftw(pgdata, prune_dir, 32, FTW_PHYS | FTW_DEPTH);
    *removed = g_pruned;
    if (r != 0)
        return r == 1 ? -1 : log_errno("could not walk \"%s\"", pgdata);
    return 0;
}

typedef struct restore_handover {
    wal_handover *h;
    uint64_t bytes, nsegs; /* what the plan spooled for it (bytes: on pgdata's file system) */
} restore_handover;

/*
 * plan_with_handover -- plan_make, spooling the WAL it verifies beside pgdata for the
 * restored server's restore_command (handover.c). The spool leaves the largest
 * backup's room free. Returns plan_make's result; *ho empty when there is no handover.
 */
static int plan_with_handover(inventory *inv, const pitr_opts *o, const char *pgdata, plan *p,
                              restore_handover *ho)
{
    pitr_opts oh = *o;
    uint64_t reserve = 0;
    int r;

    for (size_t i = 0; i < inv->nbackups; i++)
        if (inv->backups[i].raw_bytes > reserve)
            reserve = inv->backups[i].raw_bytes;
    reserve += reserve / 20 + ((uint64_t)64 << 20);
    memset(ho, 0, sizeof(*ho));
    ho->h = getenv("RAGSAFE_NO_HANDOVER") ? NULL : handover_new(pgdata, reserve);
    oh.handover = ho->h;
    r = plan_make(inv, &oh, p);
    if (r == 0 && ho->h) {
        ho->bytes = handover_keep(ho->h, inv, p, &ho->nsegs);
        log_info("the plan spooled %llu verified WAL segment%s for the handover",
                 (unsigned long long)ho->nsegs, PLURAL(ho->nsegs));
    }
    return r;
}

/* handover_leftovers -- once recovery ended, handed-over segments it did not ask for
 * (it stopped before them) are of no use. */
static void handover_leftovers(const char *pgdata)
{
    char spool[PATH_MAX + 64];
    struct stat sb;

    snprintf(spool, sizeof(spool), "%s/pg_wal/" WALSPOOL_DIR, pgdata);
    if (lstat(spool, &sb) == 0 && durable_remove_tree(spool) == 0)
        log_info("removed \"%s\": the handed-over segments recovery did not ask for", spool);
}

/* restore_sync_open -- durable_sync_open on the nearest existing ancestor of pgdata
 * (the data directory may not exist yet): one syncfs then makes the restored files
 * durable (lib/durable.c says why that suffices). */
static int restore_sync_open(const char *pgdata)
{
    char at[PATH_MAX];
    struct stat sb;

    snprintf(at, sizeof(at), "%s", pgdata);
    while (stat(at, &sb) != 0) {
        char *slash = strrchr(at, '/');
        if (!slash || slash == at)
            return -1;
        *slash = '\0';
    }
    return durable_sync_open(at);
}

/*
 * Signals. From the start of a restore until the data directory is complete, SIGINT,
 * SIGTERM and SIGHUP are noted in g_stop (the plan's walk and the extraction give up
 * at their next record, tar entry or chunk) and acted on by cmd_restore: what was
 * written is removed, as for any failure. g_stop -1: the plan refused, the extraction
 * running beside it gives up; -2: the extraction failed, the plan gives up.
 */
static volatile sig_atomic_t g_stop;
static const int stop_sigs[] = {SIGINT, SIGTERM, SIGHUP};

static void on_stop_signal(int sig)
{
    g_stop = sig;
}

/* split_parent -- parent directory and last component of an absolute path. 0 | -1. */
static int split_parent(const char *path, char *parent, size_t len, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (path[0] != '/' || !slash || !slash[1])
        return -1;
    *base = slash + 1;
    snprintf(parent, len, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return 0;
}

/*
 * The private sibling a restore extracts into: DIR/../.NAME.ragsafe-restore-XXXXXX
 * (mkdtemp, mode 0700), on DIR's file system, renamed to DIR once the plan has proved
 * the target reachable and the copy is complete (settings and recovery.signal
 * written, fsync'd), so DIR holds nothing or a whole restored copy. It is flock'ed while
 * its restore runs, like the WAL handover's spool (.NAME.ragsafe-wal-XXXXXX): a restore
 * killed with SIGKILL (or a crash) leaves them, and the next restore into DIR removes
 * every one no process holds (one that is held means another restore into DIR is
 * running: refused).
 */
#define SIBLING_TAG ".ragsafe-restore-"
#define SPOOL_TAG ".ragsafe-wal-"

/* sibling_usable -- DIR's parent exists and is writable by us, and DIR is absent, or a
 * directory (not a link) on its parent's file system (a mount point cannot be renamed
 * over). */
static int sibling_usable(const char *pgdata)
{
    char parent[PATH_MAX];
    const char *base;
    struct stat ps, ds;

    if (split_parent(pgdata, parent, sizeof(parent), &base) != 0 || stat(parent, &ps) != 0 ||
        !S_ISDIR(ps.st_mode) || access(parent, W_OK | X_OK) != 0)
        return 0;
    if (lstat(pgdata, &ds) != 0)
        return errno == ENOENT;
    return S_ISDIR(ds.st_mode) && ds.st_dev == ps.st_dev;
}

/* remove_stale_siblings -- see above. 0 | -1 reported (another restore is running). */
static int remove_stale_siblings(const char *pgdata)
{
    char parent[PATH_MAX], pre[2][PATH_MAX], path[2 * PATH_MAX];
    const char *base;
    DIR *d;
    struct dirent *de;
    int ret = 0;

    if (split_parent(pgdata, parent, sizeof(parent), &base) != 0 || !(d = opendir(parent)))
        return 0;
    snprintf(pre[0], sizeof(pre[0]), ".%s" SIBLING_TAG, base);
    snprintf(pre[1], sizeof(pre[1]), ".%s" SPOOL_TAG, base);
    while (ret == 0 && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, pre[0], strlen(pre[0])) != 0 &&
            strncmp(de->d_name, pre[1], strlen(pre[1])) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", strcmp(parent, "/") ? parent : "", de->d_name);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK) {
                log_error("another restore into \"%s\" is running", pgdata);
                log_detail("\"%s\" is in use by it", path);
                ret = -1;
            } else {
                ret = log_errno("could not lock \"%s\"", path);
            }
        } else if (durable_remove_tree(path) == 0) {
            log_notice("removed \"%s\", left by an interrupted restore", path);
        }
        close(fd);
    }
    closedir(d);
    return ret;
}

/* sibling_make -- the private sibling, flock'ed through *lockfd. 0 | -1 reported. */
static int sibling_make(const char *pgdata, char *out, size_t len, int *lockfd)
{
    char parent[PATH_MAX];
    const char *base;

    if (split_parent(pgdata, parent, sizeof(parent), &base) != 0)
        return log_error("cannot make a directory beside \"%s\"", pgdata);
    int l = snprintf(out, len, "%s/.%s" SIBLING_TAG "XXXXXX", strcmp(parent, "/") ? parent : "",
                     base);
    if (l <= 0 || (size_t)l >= len)
        return log_error("path too long: \"%s\"", pgdata);
    if (!mkdtemp(out)) {
        log_errno("could not create \"%s\"", out);
        out[0] = '\0';
        return -1;
    }
    *lockfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*lockfd < 0 || flock(*lockfd, LOCK_EX | LOCK_NB) != 0)
        return log_errno("could not lock \"%s\"", out);
    return 0;
}

/* The extraction of a backup's objects (base, then each tablespace): on the calling
 * thread, or on one of its own beside the plan (with its own storage). */
typedef struct xjob {
    storage *st;
    const backup_info *b;
    const char *dest;
    ts_dest *ts;
    size_t nts;
    const pitr_opts *o;
    const manifest *m;
    unsigned char *seen;
    int delta;
    progress *pg;
    extract_stats *stats;
    int result;             /* 0 | RS_MISMATCH | -1 (reported, or g_stop) */
    double seconds;
} xjob;

static const backup_file *find_file(const backup_info *b, const char *name);

static int xjob_run(xjob *x)
{
    const backup_info *b = x->b;
    char key[512];
    double t0 = now_seconds();
    int r;

    extract_opts eo = {.dest = x->dest, .m = x->m, .mprefix = "", .seen = x->seen,
                       .delta = x->delta, .pg = x->pg, .db_include = x->o->db_include,
                       .ndb_include = x->o->ndb_include, .no_writeback = x->o->dump_scratch,
                       .jobs = x->o->jobs, .stop = &g_stop};
    const backup_file *bf = find_file(b, backupinfo_base_file(b));
    eo.stored_sha = bf ? bf->sha256 : NULL;
    snprintf(key, sizeof(key), "backups/%s/%s", b->label, backupinfo_base_file(b));
    log_info("extracting \"%s\" into \"%s\"", key, x->dest);
    r = extract_object(x->st, key, &eo, x->stats);
    for (size_t k = 0; r == 0 && k < x->nts; k++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", x->ts[k].oid);
        eo.dest = x->ts[k].dir;
        eo.mprefix = prefix;
        bf = find_file(b, x->ts[k].file);
        eo.stored_sha = bf ? bf->sha256 : NULL;
        snprintf(key, sizeof(key), "backups/%s/%s", b->label, x->ts[k].file);
        log_info("extracting \"%s\" into \"%s\"", key, x->ts[k].dir);
        r = extract_object(x->st, key, &eo, x->stats);
    }
    x->seconds = now_seconds() - t0;
    return r;
}

static void *xjob_main(void *arg)
{
    xjob *x = arg;
    x->result = xjob_run(x);
    if (x->result != 0 && g_stop == 0)
        g_stop = -2; /* the plan beside it gives up: the restore fails anyway */
    return NULL;
}

/* wal_room -- after the extraction: room on dir's file system for the WAL recovery
 * fetches into pg_wal (what the handover does not hold), plus 5 % and 64 MiB.
 * 0 | -1 reported. */
static int wal_room(const char *dir, uint64_t wal)
{
    struct statvfs vfs;
    uint64_t need = wal + wal / 20 + ((uint64_t)64 << 20), avail;

    if (wal == 0)
        return 0;
    if (statvfs(dir, &vfs) != 0)
        return log_errno("could not read the free space of \"%s\"", dir);
    avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (need > avail) {
        log_error("not enough space for the WAL recovery needs in pg_wal on the file system of "
                  "\"%s\": need %.1f MiB, available %.1f MiB", dir, mib(need), mib(avail));
        log_hint("free %.1f MiB there, or restore elsewhere (--pgdata)", mib(need - avail));
        return -1;
    }
    return 0;
}

int cmd_restore(const pitr_opts *o)
{
    inventory inv;
    plan p;
    int have_plan = 0, ret = EXIT_FAIL, started_writing = 0, r;
    char pgdata[PATH_MAX], aside[PATH_MAX * 2], restore_bin[PATH_MAX + 32];
    int moved = 0, created = 0, state = 0, delta = 0;
    size_t pruned = 0, pruned_dirs = 0;
    ts_dest *ts = NULL;
    size_t nts = 0;
    manifest m;
    int have_m = 0;
    unsigned char *seen = NULL;
    char *mtext = NULL;
    size_t mlen = 0;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char user[256] = "";
    extract_stats stats;
    strbuf restore_cmd, settings, rollback;
    double t0 = now_seconds();
    progress pg;
    restore_handover ho = {0};
    int sfd = -1;
    const backup_info *b = NULL, *spec = NULL;
    pitr_opts oo = *o;
    struct sigaction old_sa[ARRAY_LEN(stop_sigs)];
    int have_sa = 0, sib_ok = 0, sib = 0, lockfd = -1, renamed = 0, plan_r = 0;
    char sibdir[PATH_MAX] = "";
    const char *dest = NULL;
    storage *xst = NULL;
    double t_plan = 0;
    int fast = 0; /* use_fast_promote */

    progress_init(&pg, PROGRESS_OFF, "restore", 0);
    strbuf_init(&restore_cmd);
    strbuf_init(&settings);
    strbuf_init(&rollback);

    memset(&stats, 0, sizeof(stats));
    memset(&m, 0, sizeof(m));
    memset(&inv, 0, sizeof(inv));
    int lr = o->given_plan ? 0 : inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    if (o->given_plan)
        inv = *o->given_plan->inv;
    if (make_absolute(o->pgdata, pgdata, sizeof(pgdata)) != 0)
        goto out;
    g_stop = 0;
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        for (size_t i = 0; i < ARRAY_LEN(stop_sigs); i++)
            sigaction(stop_sigs[i], &sa, &old_sa[i]);
        have_sa = 1;
    }
    oo.stop = &g_stop;
    state = dir_state(pgdata);
    if (state < 0)
        goto out;
    /* what a killed restore left beside DIR; another restore into DIR: refused */
    if (remove_stale_siblings(pgdata) != 0)
        goto out;
    /*
     * Overlap: when the backup the plan will pick is known before its walk of the WAL
     * (plan_guess), it is extracted into the private sibling (above) on a thread of its
     * own while the plan verifies and spools the WAL; nothing goes into DIR before the
     * plan has proved the target reachable (the sibling is renamed into place at the
     * end). A plan that picks another backup: the sibling is removed, and that backup
     * extracted after the plan. --delta (over a stale copy) and tablespaces (written
     * where they go) keep the serial order: plan, then extraction.
     */
    sib_ok = !(o->delta && state == 2) && sibling_usable(pgdata);
    if (sib_ok && !o->given_plan && !getenv("RAGSAFE_NO_RESTORE_OVERLAP"))
        spec = plan_guess(&inv, o);
    if (spec && spec->ntablespaces)
        spec = NULL;
    if (spec) {
        b = spec;
        log_info("backup %s is extracted while the plan verifies the WAL", b->label);
    } else {
        if (o->given_plan) {
            /* dump.c planned (and spooled the WAL its plan verified) before its scratch
             * work: the same plan, not made twice */
            p = *o->given_plan->p;
            ho.h = o->given_plan->h;
            ho.bytes = handover_keep(ho.h, &inv, &p, &ho.nsegs);
            r = 0;
        } else {
            r = plan_with_handover(&inv, &oo, pgdata, &p, &ho);
        }
        if (g_stop > 0)
            goto out;
        if (r == RS_MISMATCH) {
            ret = EXIT_INTEGRITY;
            goto out;
        }
        if (r != 0)
            goto out;
        have_plan = 1;
        b = p.backup;
        if (!o->given_plan)
            log_info("plan made in %.1f s", now_seconds() - t0);
    }

    /* the restore_command: ragsafe-restore next to this executable */
    {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0) {
            log_errno("could not read \"/proc/self/exe\"");
            goto out;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        *slash = '\0';
        snprintf(restore_bin, sizeof(restore_bin), "%s/ragsafe-restore", self);
        if (access(restore_bin, X_OK) != 0) {
            log_errno("could not find the restore command \"%s\"", restore_bin);
            goto out;
        }
        if (build_restore_command(o, inv.st, restore_bin, &restore_cmd) != 0)
            goto out;
    }

    /* owner */
    {
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", pgdata);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else
            *slash = '\0';
        struct stat sb;
        if (stat(parent, &sb) != 0) {
            log_errno("could not stat \"%s\"", parent);
            goto out;
        }
        if (o->owner) {
            struct passwd *pw = getpwnam(o->owner);
            if (!pw) {
                log_error("unknown user \"%s\"", o->owner);
                ret = EXIT_USAGE;
                goto out;
            }
            if (geteuid() != 0 && pw->pw_uid != geteuid()) {
                log_error("--owner %s needs root", o->owner);
                ret = EXIT_USAGE;
                goto out;
            }
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        } else if (geteuid() == 0 && sb.st_uid != 0) {
            uid = sb.st_uid;
            struct passwd *pw = getpwuid(uid);
            gid = pw ? pw->pw_gid : sb.st_gid;
        }
        struct passwd *pw = getpwuid(uid);
        snprintf(user, sizeof(user), "%s", pw ? pw->pw_name : "postgres");
        if (uid == 0 && o->start) {
            log_error("PostgreSQL cannot run as root: --start needs --owner USER");
            ret = EXIT_USAGE;
            goto out;
        }
        if (uid == 0)
            log_warning("the restored data directory will be owned by root");
        /* the restored server's restore_command reads the key file as that user */
        const char *kf = getenv("RAGSAFE_CIPHER_KEY_FILE");
        struct stat ks;
        if (storage_cipher(inv.st) && kf && uid != 0 && stat(kf, &ks) == 0) {
            gid_t groups[64];
            int ng = 64, in_group = 0;
            if (getgrouplist(user, gid, groups, &ng) < 0)
                ng = 0;
            for (int g = 0; g < ng; g++)
                in_group |= groups[g] == ks.st_gid;
            if (!((ks.st_uid == uid && (ks.st_mode & S_IRUSR)) ||
                  ((in_group || ks.st_gid == gid) && (ks.st_mode & S_IRGRP)) || (ks.st_mode & S_IROTH)))
                log_warning("the key file \"%s\" is not readable by %s, who will run the restored "
                            "server's restore_command: recovery would stop at its first WAL file", kf, user);
        }
    }

    /* destinations: all checked before the first write */
pick:
    /* never over a running server, --force or not (the moved-aside live directory
     * would be wrecked by the server writing into its replacement) */
    if (state == 2 && refuse_if_live(pgdata, "data directory", 0) != 0)
        goto out;
    /* --delta over an empty or absent DIR is a plain restore */
    delta = o->delta && state == 2;
    if (delta && check_delta(pgdata, &inv, b) != 0)
        goto out;
    if (state == 2 && !o->force && !delta) {
        log_error("data directory \"%s\" is not empty", pgdata);
        log_hint("use --force to move its contents aside to \"%s" CLI_ASIDE_TAG "TIME\"", pgdata);
        goto out;
    }
    for (size_t i = 0; i < o->ntsmap; i++) {
        int known = 0;
        for (size_t k = 0; k < b->ntablespaces; k++)
            known |= b->tablespaces[k].oid == o->tsmap[i].oid;
        if (!known) {
            log_error("--tablespace-map: backup %s has no tablespace %u", b->label,
                      o->tsmap[i].oid);
            ret = EXIT_USAGE;
            goto out;
        }
    }
    if (b->ntablespaces) {
        ts = calloc(b->ntablespaces, sizeof(*ts));
        if (!ts) {
            log_error("out of memory");
            goto out;
        }
    }
    /*
     * Tablespace destinations. backup.json lives in a repository the postgres user can
     * write, and a restore often runs as root: a location from it is not trusted. Each
     * destination (recorded, or --tablespace-map's, which goes through the same checks)
     * must be absolute, resolve (realpath of its nearest existing ancestor, so no
     * symlink dodges the checks) outside the data directory and the system's
     * directories, differ from the others, be absent or empty (non-empty only with
     * --force and no live server using it), and, when it exists, be owned by the
     * restore's owner: its own owner and mode are never changed (PostgreSQL needs the
     * directory owned by the server's user; chowning a directory someone else made is
     * the restore's call to make, not a backup.json's). Refusals exit 1: the backup
     * itself is restorable with --tablespace-map OID=DIR.
     */
    char pgreal[PATH_MAX];
    if (resolve_dest(pgdata, pgreal, sizeof(pgreal), 0) != 0) {
        log_error("could not resolve the data directory \"%s\"", pgdata);
        goto out;
    }
    for (size_t k = 0; k < b->ntablespaces; k++) {
        const char *dir = b->tablespaces[k].location;
        int mapped = 0;
        for (size_t i = 0; i < o->ntsmap; i++)
            if (o->tsmap[i].oid == b->tablespaces[k].oid) {
                dir = o->tsmap[i].dir;
                mapped = 1;
            }
        ts[k].oid = b->tablespaces[k].oid;
        ts[k].orig = b->tablespaces[k].location;
        ts[k].file = b->tablespaces[k].file;
        const char *why = NULL;
        if (dir[0] != '/')
            why = "is not an absolute path";
        else if (make_absolute(dir, ts[k].dir, sizeof(ts[k].dir)) != 0)
            goto out;
        else if (strchr(ts[k].dir, '\n'))
            why = "holds a newline";
        else if (resolve_dest(ts[k].dir, ts[k].real, sizeof(ts[k].real), 1) != 0)
            why = "holds a \".\" or \"..\" component, or cannot be resolved";
        else if (system_dir(ts[k].real))
            why = "is a system directory";
        else if (under(ts[k].real, pgreal) || under(pgreal, ts[k].real))
            why = "overlaps the data directory";
        for (size_t i = 0; !why && i < k; i++)
            if (under(ts[k].real, ts[i].real) || under(ts[i].real, ts[k].real))
                why = "overlaps the destination of another tablespace";
        if (why) {
            log_error("tablespace %u: destination \"%s\"%s %s", ts[k].oid, dir,
                      mapped ? " (--tablespace-map)" : "", why);
            if (!mapped)
                log_detail("the location recorded in backup %s's backup.json", b->label);
            log_hint("restore it elsewhere: --tablespace-map %u=/absolute/empty/dir", ts[k].oid);
            goto out;
        }
        int s = dir_state(ts[k].dir);
        if (s < 0)
            goto out;
        if (s == 2 && refuse_if_live(ts[k].dir, "tablespace directory", 1) != 0)
            goto out;
        if (s == 2 && !o->force) {
            log_error("tablespace directory \"%s\" (tablespace %u) is not empty", ts[k].dir,
                      ts[k].oid);
            log_hint("use --force to move it aside, or --tablespace-map %u=DIR", ts[k].oid);
            goto out;
        }
        if (s > 0) {
            struct stat sb;
            if (stat(ts[k].dir, &sb) != 0) {
                log_errno("could not stat \"%s\"", ts[k].dir);
                goto out;
            }
            if (sb.st_uid != uid) {
                struct passwd *pw = getpwuid(sb.st_uid);
                log_error("tablespace directory \"%s\" (tablespace %u) exists and is owned by "
                          "%s, not by %s who will run the restored server", ts[k].dir, ts[k].oid,
                          pw ? pw->pw_name : "another user", user);
                log_hint("if it is meant for it: chown %s \"%s\"; or --tablespace-map %u=DIR "
                         "(a new directory)", user, ts[k].dir, ts[k].oid);
                goto out;
            }
        }
        ts[k].moved = s == 2;
        ts[k].existed = s == 1;
        nts = k + 1;
    }
    r = backup_manifest_load(inv.st, b, &m, &mtext, &mlen); /* the same checks as verify */
    if (r != 0) {
        ret = pitr_status(r);
        goto out;
    }
    have_m = 1;
    seen = calloc(m.nfiles + 1, 1);
    if (!seen) {
        log_error("out of memory");
        goto out;
    }
    if (o->no_space_check)
        log_notice("free-space check skipped (--no-space-check)");
    else if (delta)
        log_notice("free-space check skipped (--delta rewrites the stale copy in place)");
    else if (check_space(pgdata, ts, nts, &m,
                         /* the handed-over WAL is on that file system already; before the
                          * plan it is not known (wal_room checks it after the plan) */
                         have_plan ? p.wal_raw - (ho.bytes < p.wal_raw ? ho.bytes : p.wal_raw) : 0,
                         o) != 0)
        goto out;
    sib = sib_ok && !delta && nts == 0;

    /* from here on we write; the file system's writeback errors count from here */
    sfd = restore_sync_open(pgdata);
    started_writing = 1;
    if (sib) {
        if (sibling_make(pgdata, sibdir, sizeof(sibdir), &lockfd) != 0)
            goto out;
        dest = sibdir;
    } else if (delta) {
        dest = pgdata;
        if (delta_prune(pgdata, &m, &pruned) != 0)
            goto out;
        log_info("removed %zu file%s not in the backup from \"%s\"", pruned, PLURAL(pruned), pgdata);
    } else {
        dest = pgdata;
        if (state == 2) {
            if (move_aside(pgdata, aside, sizeof(aside)) != 0)
                goto out;
            moved = 1;
        }
        if (state != 1 && durable_mkdirs(pgdata, 0700) != 0)
            goto out;
        created = 1;
    }
    for (size_t k = 0; k < nts; k++) {
        if (ts[k].moved && move_aside(ts[k].dir, ts[k].aside, sizeof(ts[k].aside)) != 0)
            goto out;
        if (!ts[k].existed && durable_mkdirs(ts[k].dir, 0700) != 0)
            goto out;
        ts[k].created = 1;
    }

    /* progress over the tars' bytes (backup.json's raw sizes) */
    {
        uint64_t total = 0;
        for (size_t k = 0; k < b->nfiles; k++)
            if (strcmp(b->files[k].name, "backup_manifest") != 0)
                total += b->files[k].raw_bytes;
        progress_release(&pg);
        progress_init(&pg, o->progress, "restore", total);
    }
    {
        xjob xj = {.st = inv.st, .b = b, .dest = dest, .ts = ts, .nts = nts, .o = o, .m = &m,
                   .seen = seen, .delta = delta, .pg = &pg, .stats = &stats};
        pthread_t th;
        int threaded = 0;
        if (!have_plan) {
            /* the extraction on a thread with its own storage, the plan here */
            xst = storage_open(storage_location(inv.st), NULL, 0);
            if (xst) {
                storage_set_cipher(xst, storage_cipher(inv.st));
                storage_set_cipher_old(xst, storage_cipher_old(inv.st));
                xj.st = xst;
                threaded = pthread_create(&th, NULL, xjob_main, &xj) == 0;
            }
            if (!threaded) {
                log_error("could not start the extracting thread");
                goto out;
            }
            double tp = now_seconds();
            plan_r = plan_with_handover(&inv, &oo, pgdata, &p, &ho);
            t_plan = now_seconds() - tp;
            if (plan_r != 0 && g_stop == 0)
                g_stop = -1; /* refused: the extraction gives up */
            pthread_join(th, NULL);
            r = xj.result;
            if (plan_r == 0)
                have_plan = 1;
            log_info("plan made in %.1f s, beside the extraction (%.1f s)", t_plan, xj.seconds);
            if (g_stop > 0)
                goto out;
            if (r != 0 && (plan_r == 0 || g_stop == -2)) {
                ret = pitr_status(r); /* the extraction failed (first) */
                goto out;
            }
            if (plan_r != 0) {
                ret = plan_r == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
                goto out;
            }
            if (p.backup != b) {
                /* the walk rejected the guess (a commit after T while it ran): start
                 * over with the plan's backup; nothing was written into DIR */
                log_notice("the plan needs backup %s, not %s extracted beside it: extracting "
                           "%s", p.backup->label, b->label, p.backup->label);
                durable_remove_tree(sibdir);
                sibdir[0] = '\0';
                close(lockfd);
                lockfd = -1;
                started_writing = 0;
                b = p.backup;
                free(ts);
                ts = NULL;
                nts = 0;
                manifest_release(&m);
                have_m = 0;
                free(seen);
                seen = NULL;
                free(mtext);
                mtext = NULL;
                extract_stats_release(&stats);
                memset(&stats, 0, sizeof(stats));
                durable_sync_close(sfd);
                sfd = -1;
                goto pick;
            }
            if (wal_room(sibdir, p.wal_raw - (ho.bytes < p.wal_raw ? ho.bytes : p.wal_raw)) != 0)
                goto out;
        } else {
            r = xjob_run(&xj);
            if (g_stop > 0)
                goto out;
            if (r != 0) {
                ret = pitr_status(r);
                goto out;
            }
        }
    }
    progress_finish(&pg);
    log_info("extracted %llu file%s (%llu byte%s) in %.1f s", (unsigned long long)stats.files,
             PLURAL(stats.files), (unsigned long long)stats.bytes, PLURAL(stats.bytes),
             now_seconds() - t0);
    if (stats.hollow)
        log_info("%llu relation file%s of other databases (%llu byte%s) restored hollow",
                 (unsigned long long)stats.hollow, PLURAL(stats.hollow),
                 (unsigned long long)stats.hollow_bytes, PLURAL(stats.hollow_bytes));
    if (delta) {
        if (delta_prune_dirs(pgdata, stats.dirs, stats.ndirs, &pruned_dirs) != 0)
            goto out;
        log_info("delta: kept %llu file%s (%llu byte%s) that matched backup_manifest, wrote %llu; "
                 "removed %zu director%s not in the backup", (unsigned long long)stats.kept,
                 PLURAL(stats.kept), (unsigned long long)stats.kept_bytes, PLURAL(stats.kept_bytes),
                 (unsigned long long)(stats.files - stats.kept), pruned_dirs,
                 pruned_dirs == 1 ? "y" : "ies");
    }
    {
        size_t missing = 0;
        for (size_t i = 0; i < m.nfiles; i++)
            if (!seen[i]) {
                if (missing++ < 10)
                    log_error("file \"%s\" listed in backup_manifest is missing from the "
                              "backup", m.files[i].path);
            }
        if (missing) {
            log_detail("%zu file%s missing", missing, PLURAL(missing));
            ret = EXIT_INTEGRITY;
            goto out;
        }
    }
    /* A cluster whose Unix socket lived in its data directory left the socket's lock
     * file in the backup (the server excludes postmaster.pid, not these). It names the
     * old postmaster's PID: once that PID is reused by any process, the restored
     * server refuses to start ("lock file already exists"). Runtime state, not data. */
    {
        DIR *d = opendir(dest);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            if (strncmp(de->d_name, ".s.PGSQL.", 9) != 0 || l < 14 || strcmp(de->d_name + l - 5, ".lock") != 0)
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                log_info("removed \"%s\", a socket lock file of the backed-up server", de->d_name);
        }
        if (d)
            closedir(d);
    }

    char path[PATH_MAX + 64];
    /* tablespace_map with the (possibly remapped) locations */
    if (nts) {
        strbuf tm;
        strbuf_init(&tm);
        r = 0;
        for (size_t k = 0; k < nts && r == 0; k++)
            r = strbuf_appendf(&tm, "%u %s\n", ts[k].oid, ts[k].dir);
        snprintf(path, sizeof(path), "%s/tablespace_map", dest);
        if (r == 0)
            r = durable_write_file(path, tm.buf, tm.len, 0600, 0);
        strbuf_release(&tm);
        if (r != 0)
            goto out;
    }
    snprintf(path, sizeof(path), "%s/backup_manifest", dest);
    if (durable_write_file(path, mtext, mlen, 0600, 0) != 0)
        goto out;
    {
        char walrel[] = "pg_wal/archive_status";
        snprintf(path, sizeof(path), "%s/%s", dest, walrel);
        if (durable_mkdirs(path, 0700) != 0)
            goto out;
    }

    /* recovery settings */
    fast = use_fast_promote(o, &p);
    if (build_settings(o, &p, &restore_cmd, fast, &settings) != 0 ||
        write_auto_conf(dest, settings.buf) != 0)
        goto out;
    snprintf(path, sizeof(path), "%s/%s", dest, o->standby ? "standby.signal" : "recovery.signal");
    if (durable_write_file(path, "", 0, 0600, 0) != 0)
        goto out;

    /* owner, mode, durability */
    if (geteuid() == 0) {
        if (chown_tree(dest, uid, gid, 0) != 0)
            goto out;
        for (size_t k = 0; k < nts; k++)
            if (chown_tree(ts[k].dir, uid, gid, ts[k].existed) != 0)
                goto out;
    }
    if (chmod(dest, 0700) != 0) {
        log_errno("could not change the mode of \"%s\"", dest);
        goto out;
    }
    for (size_t k = 0; k < nts; k++) /* not one that was there: its mode is its owner's */
        if (!ts[k].existed && chmod(ts[k].dir, 0700) != 0) {
            log_errno("could not change the mode of \"%s\"", ts[k].dir);
            goto out;
        }
    double t_sync = now_seconds();
    /* a dump's scratch copy is thrown away after use: no fsync (dump.c); delta wrote
     * few files: fsync'd one by one rather than the whole file system */
    if (!o->dump_scratch && durable_sync_tree(delta ? -1 : sfd, dest) != 0)
        goto out;
    for (size_t k = 0; !o->dump_scratch && k < nts; k++)
        if (durable_fsync_tree(ts[k].dir) != 0)
            goto out;
    if (!o->dump_scratch)
        log_info("fsync'd the restored files in %.1f s", now_seconds() - t_sync);
    /* the server's first fetch, tried now: a restore_command that cannot work fails the
     * restore here (and undoes it), not the recovery later */
    {
        char seg[64];
        seg_name(&inv, seg, p.first_tli, p.first_seg);
        if (check_restore_command(dest, uid, gid, user, restore_cmd.buf, seg) != 0)
            goto out;
    }
    /* the commit point: a signal until here undoes the restore; from here on it acts
     * as it would without us (DIR then holds the whole restored copy) */
    if (g_stop > 0)
        goto out;
    for (size_t i = 0; i < ARRAY_LEN(stop_sigs); i++)
        sigaction(stop_sigs[i], &old_sa[i], NULL);
    have_sa = 0;
    if (sib) {
        if (state == 2) {
            if (move_aside(pgdata, aside, sizeof(aside)) != 0)
                goto out;
            moved = 1;
        }
        /* over an empty DIR, or where none is; never over a non-empty one */
        if (durable_rename(sibdir, pgdata) != 0)
            goto out;
        renamed = 1;
        log_info("moved the restored copy \"%s\" to \"%s\"", sibdir, pgdata);
    }
    /* after the check, which would have taken the first segment out of the spool */
    if (ho.h && handover_commit(ho.h, pgdata, uid, gid) != 0) {
        log_notice("restore_command will fetch every segment from the repository");
        ho.nsegs = 0;
    }
    started_writing = 0; /* complete: nothing to undo from here on */

    /* how to undo it: the restored copy out of the way, the moved-aside contents back */
    if (moved || nts) {
        char pgctl[PATH_MAX], stamp[20];
        time_t tnow = time(NULL);
        struct tm tmv;
        gmtime_r(&tnow, &tmv);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tmv);
        find_pg_bin(o, pgctl, sizeof(pgctl));
        r = strbuf_appendf(&rollback, "%s/pg_ctl -D ", pgctl) |
            strbuf_append_shell_quoted(&rollback, pgdata) |
            strbuf_appendf(&rollback, " -m fast stop    # as %s, if it was started\n", user);
        struct { const char *dir, *aside; int moved; } mv[1 + 64];
        size_t nmv = 0;
        mv[nmv].dir = pgdata;
        mv[nmv].aside = aside;
        mv[nmv++].moved = moved;
        for (size_t k = 0; k < nts && nmv < ARRAY_LEN(mv); k++) {
            mv[nmv].dir = ts[k].dir;
            mv[nmv].aside = ts[k].aside;
            mv[nmv++].moved = ts[k].moved;
        }
        for (size_t k = 0; k < nmv; k++) {
            if (!mv[k].moved)
                continue;
            strbuf away;
            strbuf_init(&away);
            r |= strbuf_appendf(&away, "%s.ragsafe-restored-%s", mv[k].dir, stamp);
            r |= strbuf_append(&rollback, "mv ") | strbuf_append_shell_quoted(&rollback, mv[k].dir) |
                 strbuf_append(&rollback, " ") | strbuf_append_shell_quoted(&rollback, away.buf) |
                 strbuf_append(&rollback, "\n") |
                 strbuf_append(&rollback, "mv ") | strbuf_append_shell_quoted(&rollback, mv[k].aside) |
                 strbuf_append(&rollback, " ") | strbuf_append_shell_quoted(&rollback, mv[k].dir) |
                 strbuf_append(&rollback, "\n");
            strbuf_release(&away);
        }
        int any = moved;
        for (size_t k = 0; k < nts; k++)
            any |= ts[k].moved;
        if (r != 0 || !any)
            strbuf_reset(&rollback);
    }

    double t_restore = now_seconds() - t0;
    start_result sr;
    memset(&sr, 0, sizeof(sr));
    int start_failed = 0;
    if (!o->json && !o->dump_scratch) {
        plan_print(&inv, o, &p);
        printf("restored:        %s (%llu file%s, %llu byte%s) in %.1f s, owner %s\n", pgdata,
               (unsigned long long)stats.files, PLURAL(stats.files), (unsigned long long)stats.bytes,
               PLURAL(stats.bytes), t_restore, user);
        if (delta)
            printf("delta:           kept %llu file%s (%llu byte%s) that matched backup_manifest, "
                   "wrote %llu file%s (%llu byte%s), removed %zu file%s and %zu director%s not "
                   "in the backup\n", (unsigned long long)stats.kept, PLURAL(stats.kept),
                   (unsigned long long)stats.kept_bytes, PLURAL(stats.kept_bytes),
                   (unsigned long long)(stats.files - stats.kept), PLURAL(stats.files - stats.kept),
                   (unsigned long long)(stats.bytes - stats.kept_bytes),
                   PLURAL(stats.bytes - stats.kept_bytes), pruned, PLURAL(pruned), pruned_dirs,
                   pruned_dirs == 1 ? "y" : "ies");
        if (moved)
            printf("old contents:    %s (kept: the rollback)\n", aside);
        for (size_t k = 0; k < nts; k++)
            if (ts[k].moved)
                printf("old contents:    %s (tablespace %u, kept: the rollback)\n", ts[k].aside,
                       ts[k].oid);
        if (o->standby)
            printf("type:            standby (standby.signal): it follows the archive%s\n",
                   o->nsets ? " and any primary_conninfo given with --set" : "");
        if (ho.nsegs)
            printf("wal handover:    %llu segment%s (%.1f MiB) verified by the plan, in "
                   "pg_wal/" WALSPOOL_DIR ": restore_command takes each by rename\n",
                   (unsigned long long)ho.nsegs, PLURAL(ho.nsegs), mib(ho.bytes));
        if (o->archive_preserve)
            printf("archiving:       preserved (--archive-mode preserve): once promoted, the "
                   "restored server archives into the repository per its archive_command\n");
        else
            printf("archiving:       *** OFF in the restored copy (archive_mode = 'off'): it "
                   "will not write into the repository ***\n"
                   "                 to keep the backed-up server's archiving (a real "
                   "disaster recovery), restore with --archive-mode preserve\n");
        if (!o->start)
            printf("next:            start it as %s: pg_ctl -D %s start\n", user, pgdata);
        else if (fast)
            printf("promotion:       by this command once recovery pauses at the target (the "
                   "end-of-recovery\n"
                   "                 checkpoint then runs in the background); if it is "
                   "stopped before: pg_ctl -D %s promote\n", pgdata);
        fflush(stdout);
    }
    /* the restore record: before the server starts (a record even if recovery never
     * returns), then again with where it stopped */
    restore_outcome ro = {.pgdata = pgdata, .old_contents = moved ? aside : NULL,
                          .started = (int64_t)t0};
    /* a dump's scratch copy is no restore of the cluster: the repository stays
     * untouched (no record) */
    if (o->start && !o->dump_scratch)
        record_restore(&inv, o, &p, &ro);
    if (o->start) {
        if (start_and_follow(o, pgdata, uid, gid, user, fast, &sr) != 0)
            start_failed = 1;
        ro.start_ran = 1;
        ro.start_failed = start_failed;
        if (sr.promoted && ho.nsegs)
            handover_leftovers(pgdata);
        ro.promoted = sr.promoted;
        ro.paused = sr.paused;
        ro.shutdown = sr.shutdown;
        ro.replay_ts = sr.replay_ts;
        ro.replay_lsn = sr.replay_lsn;
    }
    if (!o->dump_scratch)
        record_restore(&inv, o, &p, &ro);
    if (o->dump_scratch) {
        /* dump.c reports: nothing on stdout */
    } else if (o->json) {
        json_t *j = plan_json(&inv, o, &p);
        json_object_set_new(j, "pgdata", json_string(pgdata));
        json_object_set_new(j, "files", json_integer((json_int_t)stats.files));
        json_object_set_new(j, "bytes", json_integer((json_int_t)stats.bytes));
        json_object_set_new(j, "restore_seconds", json_real(t_restore));
        json_object_set_new(j, "handover_segments", json_integer((json_int_t)ho.nsegs));
        if (delta) {
            json_t *d = json_object();
            json_object_set_new(d, "kept_files", json_integer((json_int_t)stats.kept));
            json_object_set_new(d, "kept_bytes", json_integer((json_int_t)stats.kept_bytes));
            json_object_set_new(d, "written_files",
                                json_integer((json_int_t)(stats.files - stats.kept)));
            json_object_set_new(d, "written_bytes",
                                json_integer((json_int_t)(stats.bytes - stats.kept_bytes)));
            json_object_set_new(d, "removed_files", json_integer((json_int_t)pruned));
            json_object_set_new(d, "removed_dirs", json_integer((json_int_t)pruned_dirs));
            json_object_set_new(j, "delta", d);
        }
        json_object_set_new(j, "owner", json_string(user));
        if (moved)
            json_object_set_new(j, "old_contents", json_string(aside));
        json_object_set_new(j, "archive_mode", json_string(o->archive_preserve ? "preserve" : "off"));
        json_object_set_new(j, "type", json_string(o->standby ? "standby" : "recovery"));
        if (rollback.len) {
            /* the shell lines that undo this restore, one string each */
            json_t *rb = json_array();
            for (char *l = rollback.buf, *nl; rb && (nl = strchr(l, '\n')) != NULL; l = nl + 1)
                json_array_append_new(rb, json_stringn(l, (size_t)(nl - l)));
            json_object_set_new(j, "rollback", rb);
        }
        if (o->start && !start_failed) {
            json_t *s = json_object();
            json_object_set_new(s, "state", json_string(sr.standby ? "standby"
                                                        : sr.promoted ? "promoted"
                                                        : sr.paused ? "paused" : "shutdown"));
            json_object_set_new(s, "last_replay_timestamp",
                                sr.replay_ts[0] ? json_string(sr.replay_ts) : json_null());
            json_object_set_new(s, "last_replay_lsn",
                                sr.replay_lsn[0] ? json_string(sr.replay_lsn) : json_null());
            json_object_set_new(s, "recovery_seconds", json_real(sr.seconds));
            if (sr.promoted)
                json_object_set_new(s, "promotion", json_string(sr.fast ? "at the pause"
                                                                         : "end-of-recovery checkpoint"));
            json_object_set_new(s, "total_seconds", json_real(now_seconds() - t0));
            json_object_set_new(j, "recovery", s);
        }
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else if (o->start && !start_failed) {
        if (sr.standby)
            printf("standby:         running and in recovery after %.1f s, replay lsn %s\n",
                   sr.seconds, sr.replay_lsn[0] ? sr.replay_lsn : "(none yet)");
        else
            printf("recovery:        %s after %.1f s (total %.1f s)\n",
                   sr.fast && sr.promoted ? "promoted at the target's pause (the end-of-recovery "
                                            "checkpoint runs in the background)"
                   : sr.promoted ? "promoted"
                   : sr.paused   ? "paused at the target"
                                 : "server shut down at the target",
                   sr.seconds, now_seconds() - t0);
        if (!sr.shutdown && !sr.standby)
            printf("stopped at:      last replayed commit %s, replay lsn %s\n",
                   sr.replay_ts[0] ? sr.replay_ts : "(none)",
                   sr.replay_lsn[0] ? sr.replay_lsn : "(none)");
    }
    if (!o->json && !o->dump_scratch && rollback.len) {
        printf("rollback:        to undo this restore and put the old contents back, run:\n");
        for (char *l = rollback.buf, *nl; (nl = strchr(l, '\n')) != NULL; l = nl + 1)
            printf("                   %.*s\n", (int)(nl - l), l);
    }
    ret = start_failed ? EXIT_FAIL : EXIT_OK;
out:
    if (g_stop > 0 && ret != EXIT_OK)
        log_error("restore interrupted by signal %d", (int)g_stop);
    if (started_writing && delta) {
        /* nothing was moved aside: what is there is a stale copy, part updated */
        log_notice("restore failed: \"%s\" is left as a partly updated stale copy", pgdata);
        log_hint("run the same restore --delta again to continue");
    } else if (started_writing) {
        /* the private sibling: nothing went into DIR */
        if (sibdir[0] && !renamed && durable_remove_tree(sibdir) == 0)
            log_info("removed the copy it was extracting, \"%s\": nothing was written into "
                     "\"%s\"", sibdir, pgdata);
        if (created || moved || nts)
            log_notice("restore failed: removing what it wrote");
        if (created) {
            durable_remove_tree(pgdata);
            if (state == 1 && mkdir(pgdata, 0700) != 0)
                log_errno("could not recreate \"%s\"", pgdata);
        }
        if (moved && durable_rename(aside, pgdata) == 0)
            log_notice("moved \"%s\" back to \"%s\"", aside, pgdata);
        for (size_t k = 0; k < nts; k++) {
            if (ts[k].created && ts[k].existed)
                remove_contents(ts[k].dir);
            else if (ts[k].created)
                durable_remove_tree(ts[k].dir);
            if (ts[k].moved && ts[k].aside[0])
                durable_rename(ts[k].aside, ts[k].dir);
        }
    }
    if (have_sa)
        for (size_t i = 0; i < ARRAY_LEN(stop_sigs); i++)
            sigaction(stop_sigs[i], &old_sa[i], NULL);
    if (!o->given_plan)
        handover_free(ho.h);
    if (lockfd >= 0)
        close(lockfd);
    storage_free(xst);
    durable_sync_close(sfd);
    progress_release(&pg);
    strbuf_release(&restore_cmd);
    strbuf_release(&settings);
    strbuf_release(&rollback);
    extract_stats_release(&stats);
    if (have_m)
        manifest_release(&m);
    free(seen);
    free(mtext);
    free(ts);
    if (have_plan && !o->given_plan)
        plan_release(&p);
    if (!o->given_plan)
        inventory_release(&inv);
    return ret;
}
