/*
 * restore.c -- carry out a plan: a data directory set up to recover to the target.
 *
 * Order: plan (refuses before anything is written) -> check the destinations ->
 * move a non-empty DIR aside (--force) -> extract base and tablespaces, checking
 * every file against backup_manifest -> tablespace_map, backup_manifest,
 * postgresql.auto.conf, recovery.signal -> owner and mode -> fsync everything.
 * A failure after the first write removes what was written and moves the old
 * contents back. --start then runs pg_ctl as the owner and follows recovery over
 * libpq until it stops, reporting where.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "durable.h"
#include "log.h"
#include "pitr.h"

typedef struct ts_dest {
    uint32_t oid;
    const char *orig;
    char dir[PATH_MAX];
    char aside[PATH_MAX * 2];
    int moved;
    int created;
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

static int chown_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (lchown(path, g_uid, g_gid) != 0)
        return log_errno("could not change the owner of \"%s\"", path);
    return 0;
}

static int chown_tree(const char *path, uid_t uid, gid_t gid)
{
    g_uid = uid;
    g_gid = gid;
    return nftw(path, chown_one, 32, FTW_PHYS) == 0 ? 0 : -1;
}

/* conf_quote -- a postgresql.conf single-quoted string. */
static void conf_quote(char *out, size_t len, const char *s)
{
    size_t o = 0;
    if (len < 3)
        return;
    out[o++] = '\'';
    for (; *s && o + 3 < len; s++) {
        if (*s == '\'')
            out[o++] = '\'';
        out[o++] = *s;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

/* shell_quote -- a /bin/sh single-quoted word. */
static void shell_quote(char *out, size_t len, const char *s)
{
    size_t o = 0;
    out[o++] = '\'';
    for (; *s && o + 6 < len; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
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
 * recovery settings it carried, then ours.
 */
static int write_auto_conf(const char *pgdata, const char *settings)
{
    char path[PATH_MAX + 32];
    char *old = NULL, *buf = NULL;
    size_t oldlen = 0, used = 0;
    int ret = -1;
    FILE *f;

    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", pgdata);
    f = fopen(path, "r");
    if (f) {
        char line[4096];
        size_t cap = 4096;
        old = malloc(cap);
        if (!old) {
            fclose(f);
            return log_error("out of memory");
        }
        old[0] = '\0';
        while (fgets(line, sizeof(line), f)) {
            if (is_recovery_key(line))
                continue;
            size_t l = strlen(line);
            if (oldlen + l + 1 > cap) {
                cap = (oldlen + l + 1) * 2;
                char *n = realloc(old, cap);
                if (!n) {
                    fclose(f);
                    log_error("out of memory");
                    goto out;
                }
                old = n;
            }
            memcpy(old + oldlen, line, l + 1);
            oldlen += l;
        }
        fclose(f);
    } else if (errno != ENOENT) {
        return log_errno("could not open \"%s\"", path);
    }
    used = oldlen + strlen(settings) + 64;
    buf = malloc(used);
    if (!buf) {
        log_error("out of memory");
        goto out;
    }
    int n = snprintf(buf, used, "%s%s%s",
                     oldlen ? old : "# Do not edit this file manually!\n"
                                    "# It will be overwritten by the ALTER SYSTEM command.\n",
                     oldlen && old[oldlen - 1] != '\n' ? "\n" : "", settings);
    if (durable_write_file(path, buf, (size_t)n, 0600, 0) != 0)
        goto out;
    ret = 0;
out:
    free(old);
    free(buf);
    return ret;
}

static int find_pg_bin(const pitr_opts *o, char *out, size_t len)
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

/* run_as -- run argv as uid/gid (when different from ours); its exit status. */
static int run_as(uid_t uid, gid_t gid, const char *user, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return log_errno("could not fork");
    if (pid == 0) {
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

typedef struct start_result {
    char replay_ts[64];
    char replay_lsn[32];
    int promoted, paused, shutdown;
    double seconds;
} start_result;

/*
 * start_and_follow -- pg_ctl start as the owner, then poll over libpq until recovery
 * stops as asked (promoted / paused / shut down). 0 | -1 reported.
 */
static int start_and_follow(const pitr_opts *o, const char *pgdata, uid_t uid, gid_t gid,
                            const char *user, start_result *res)
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
    char *argv[] = {pg_ctl, "-D", (char *)pgdata, "-l", logf, "-W", "start", NULL};
    log_info("starting the server: %s -D %s -l %s start", pg_ctl, pgdata, logf);
    int st = run_as(uid, gid, user, argv);
    if (st != 0) {
        log_error("pg_ctl start failed with status %d", st);
        tail_log(logf);
        return -1;
    }
    int seen_pid = 0;
    while (now_seconds() - t0 < (double)o->timeout) {
        usleep(300 * 1000);
        FILE *pf = fopen(pidf, "r");
        if (!pf) {
            if (!seen_pid && now_seconds() - t0 < 30)
                continue;
            if (strcmp(o->action, "shutdown") == 0 && seen_pid) {
                res->shutdown = 1;
                ret = 0;
                goto out;
            }
            log_error("the server stopped during recovery");
            tail_log(logf);
            goto out;
        }
        char l[6][PATH_MAX];
        int n = 0;
        while (n < 6 && fgets(l[n], sizeof(l[n]), pf)) {
            l[n][strcspn(l[n], "\n")] = '\0';
            n++;
        }
        fclose(pf);
        if (n < 5)
            continue;
        seen_pid = 1;
        pid_t pid = (pid_t)atol(l[0]);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            if (strcmp(o->action, "shutdown") == 0) {
                res->shutdown = 1;
                ret = 0;
                goto out;
            }
            log_error("the server stopped during recovery");
            tail_log(logf);
            goto out;
        }
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
                                   " pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            log_debug("query failed: %s", PQerrorMessage(conn));
            PQclear(r);
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        int in_rec = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        int paused = strcmp(PQgetvalue(r, 0, 1), "paused") == 0;
        snprintf(res->replay_ts, sizeof(res->replay_ts), "%s", PQgetvalue(r, 0, 2));
        snprintf(res->replay_lsn, sizeof(res->replay_lsn), "%s", PQgetvalue(r, 0, 3));
        PQclear(r);
        if (!in_rec) {
            res->promoted = 1;
            ret = 0;
            goto out;
        }
        if (paused && o->kind != TARGET_LATEST) {
            res->paused = 1;
            ret = 0;
            goto out;
        }
    }
    if (ret != 0)
        log_error("recovery did not finish within %lld s", (long long)o->timeout);
out:
    res->seconds = now_seconds() - t0;
    if (conn)
        PQfinish(conn);
    return ret;
}

static int move_aside(const char *dir, char *aside, size_t len)
{
    char stamp[20];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    int n = snprintf(aside, len, "%s.ragsafe-old-%s", dir, stamp);
    if (n < 0 || (size_t)n >= len)
        return log_error("path too long: \"%s\"", dir);
    if (access(aside, F_OK) == 0)
        return log_error("could not move \"%s\" aside: \"%s\" exists", dir, aside);
    if (durable_rename(dir, aside) != 0)
        return -1;
    log_notice("moved the old contents of \"%s\" to \"%s\"", dir, aside);
    return 0;
}

static const backup_file *find_file(const backup_info *b, const char *name)
{
    for (size_t i = 0; i < b->nfiles; i++)
        if (strcmp(b->files[i].name, name) == 0)
            return &b->files[i];
    return NULL;
}

int cmd_restore(const pitr_opts *o)
{
    inventory inv;
    plan p;
    int have_plan = 0, ret = EXIT_FAIL, started_writing = 0, r;
    char pgdata[PATH_MAX], aside[PATH_MAX * 2], restore_bin[PATH_MAX + 32], key[512];
    int moved = 0, created = 0, state = 0;
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
    double t0 = now_seconds();

    memset(&stats, 0, sizeof(stats));
    memset(&m, 0, sizeof(m));
    int lr = inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    r = plan_make(&inv, o, &p);
    if (r == RS_MISMATCH) {
        ret = EXIT_INTEGRITY;
        goto out;
    }
    if (r != 0)
        goto out;
    have_plan = 1;
    const backup_info *b = p.backup;
    log_info("plan made in %.1f s", now_seconds() - t0);

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
    }

    if (make_absolute(o->pgdata, pgdata, sizeof(pgdata)) != 0)
        goto out;
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
    state = dir_state(pgdata);
    if (state < 0)
        goto out;
    if (state == 2 && !o->force) {
        log_error("data directory \"%s\" is not empty", pgdata);
        log_hint("use --force to move its contents aside to \"%s.ragsafe-old-TIME\"", pgdata);
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
    for (size_t k = 0; k < b->ntablespaces; k++) {
        const char *dir = b->tablespaces[k].location;
        for (size_t i = 0; i < o->ntsmap; i++)
            if (o->tsmap[i].oid == b->tablespaces[k].oid)
                dir = o->tsmap[i].dir;
        ts[k].oid = b->tablespaces[k].oid;
        ts[k].orig = b->tablespaces[k].location;
        ts[k].file = b->tablespaces[k].file;
        if (make_absolute(dir, ts[k].dir, sizeof(ts[k].dir)) != 0)
            goto out;
        if (strchr(ts[k].dir, '\n')) {
            log_error("invalid tablespace directory \"%s\"", ts[k].dir);
            goto out;
        }
        int s = dir_state(ts[k].dir);
        if (s < 0)
            goto out;
        if (s == 2 && !o->force) {
            log_error("tablespace directory \"%s\" (tablespace %u) is not empty", ts[k].dir,
                      ts[k].oid);
            log_hint("use --force to move it aside, or --tablespace-map %u=DIR", ts[k].oid);
            goto out;
        }
        ts[k].moved = s == 2;
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

    /* from here on we write */
    started_writing = 1;
    if (state == 2) {
        if (move_aside(pgdata, aside, sizeof(aside)) != 0)
            goto out;
        moved = 1;
    }
    if (state != 1 && durable_mkdirs(pgdata, 0700) != 0)
        goto out;
    created = 1;
    for (size_t k = 0; k < nts; k++) {
        if (ts[k].moved && move_aside(ts[k].dir, ts[k].aside, sizeof(ts[k].aside)) != 0)
            goto out;
        if (durable_mkdirs(ts[k].dir, 0700) != 0)
            goto out;
        ts[k].created = 1;
    }

    extract_opts eo = {.dest = pgdata, .m = &m, .mprefix = "", .seen = seen};
    const backup_file *bf = find_file(b, "base.tar.zst");
    eo.stored_sha = bf ? bf->sha256 : NULL;
    snprintf(key, sizeof(key), "backups/%s/base.tar.zst", b->label);
    log_info("extracting \"%s\" into \"%s\"", key, pgdata);
    r = extract_object(inv.st, key, &eo, &stats);
    if (r != 0) {
        ret = pitr_status(r);
        goto out;
    }
    for (size_t k = 0; k < nts; k++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", ts[k].oid);
        eo.dest = ts[k].dir;
        eo.mprefix = prefix;
        bf = find_file(b, ts[k].file);
        eo.stored_sha = bf ? bf->sha256 : NULL;
        snprintf(key, sizeof(key), "backups/%s/%s", b->label, ts[k].file);
        log_info("extracting \"%s\" into \"%s\"", key, ts[k].dir);
        r = extract_object(inv.st, key, &eo, &stats);
        if (r != 0) {
            ret = pitr_status(r);
            goto out;
        }
    }
    log_info("extracted %llu files (%llu bytes) in %.1f s", (unsigned long long)stats.files,
             (unsigned long long)stats.bytes, now_seconds() - t0);
    {
        size_t missing = 0;
        for (size_t i = 0; i < m.nfiles; i++)
            if (!seen[i]) {
                if (missing++ < 10)
                    log_error("file \"%s\" listed in backup_manifest is missing from the "
                              "backup", m.files[i].path);
            }
        if (missing) {
            log_detail("%zu files missing", missing);
            ret = EXIT_INTEGRITY;
            goto out;
        }
    }
    /* A cluster whose Unix socket lived in its data directory left the socket's lock
     * file in the backup (the server excludes postmaster.pid, not these). It names the
     * old postmaster's PID: once that PID is reused by any process, the restored
     * server refuses to start ("lock file already exists"). Runtime state, not data. */
    {
        DIR *d = opendir(pgdata);
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
        size_t cap = 64 + nts * (PATH_MAX + 16), used = 0;
        char *tm = malloc(cap);
        if (!tm) {
            log_error("out of memory");
            goto out;
        }
        for (size_t k = 0; k < nts; k++)
            used += (size_t)snprintf(tm + used, cap - used, "%u %s\n", ts[k].oid, ts[k].dir);
        snprintf(path, sizeof(path), "%s/tablespace_map", pgdata);
        r = durable_write_file(path, tm, used, 0600, 0);
        free(tm);
        if (r != 0)
            goto out;
    }
    snprintf(path, sizeof(path), "%s/backup_manifest", pgdata);
    if (durable_write_file(path, mtext, mlen, 0600, 0) != 0)
        goto out;
    {
        char walrel[] = "pg_wal/archive_status";
        snprintf(path, sizeof(path), "%s/%s", pgdata, walrel);
        if (durable_mkdirs(path, 0700) != 0)
            goto out;
    }

    /* recovery settings */
    {
        char cmd[PATH_MAX * 3], q1[PATH_MAX + 16], q2[PATH_MAX + 16], conf[PATH_MAX * 4];
        char settings[PATH_MAX * 6], val[256], stamp[32];
        size_t n = 0;
        shell_quote(q1, sizeof(q1), restore_bin);
        shell_quote(q2, sizeof(q2), storage_location(inv.st));
        size_t cn = (size_t)snprintf(cmd, sizeof(cmd), "%s --repo %s", q1, q2);
        if (strncmp(storage_location(inv.st), "s3://", 5) == 0) {
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
                char qv[PATH_MAX + 16];
                if (!v || !*v)
                    continue;
                shell_quote(qv, sizeof(qv), v);
                cn += (size_t)snprintf(cmd + cn, sizeof(cmd) - cn, " %s %s", s3[i].opt, qv);
            }
        }
        if (storage_cipher(inv.st) && getenv("RAGSAFE_CIPHER_KEY_FILE")) {
            /* the key file's path (absolute, repo_cli_setup), never the key */
            char qk[PATH_MAX + 16];
            shell_quote(qk, sizeof(qk), getenv("RAGSAFE_CIPHER_KEY_FILE"));
            cn += (size_t)snprintf(cmd + cn, sizeof(cmd) - cn, " --cipher-key-file %s", qk);
        }
        snprintf(cmd + cn, sizeof(cmd) - cn, " %%f %%p");
        conf_quote(conf, sizeof(conf), cmd);
        repo_format_time(stamp, sizeof(stamp), (int64_t)time(NULL));
        n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                              "# recovery settings written by ragsafe-pitr restore at %s\n"
                              "restore_command = %s\n", stamp, conf);
        switch (o->kind) {
        case TARGET_TIME:
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target_time = '%s'\n", p.time_conf);
            break;
        case TARGET_LSN: {
            char l[LSN_STR_LEN + 1];
            lsn_format(l, o->lsn);
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target_lsn = '%s'\n", l);
            break;
        }
        case TARGET_XID:
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target_xid = '%u'\n", o->xid);
            break;
        case TARGET_NAME:
            conf_quote(val, sizeof(val), o->name);
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target_name = %s\n", val);
            break;
        case TARGET_IMMEDIATE:
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target = 'immediate'\n");
            break;
        default:
            break;
        }
        if (o->exclusive)
            n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                                  "recovery_target_inclusive = 'false'\n");
        n += (size_t)snprintf(settings + n, sizeof(settings) - n,
                              "recovery_target_timeline = '%u'\n", p.tli);
        if (o->kind != TARGET_LATEST)
            snprintf(settings + n, sizeof(settings) - n, "recovery_target_action = '%s'\n",
                     o->action);
        if (write_auto_conf(pgdata, settings) != 0)
            goto out;
    }
    snprintf(path, sizeof(path), "%s/recovery.signal", pgdata);
    if (durable_write_file(path, "", 0, 0600, 0) != 0)
        goto out;

    /* owner, mode, durability */
    if (geteuid() == 0) {
        if (chown_tree(pgdata, uid, gid) != 0)
            goto out;
        for (size_t k = 0; k < nts; k++)
            if (chown_tree(ts[k].dir, uid, gid) != 0)
                goto out;
    }
    if (chmod(pgdata, 0700) != 0) {
        log_errno("could not change the mode of \"%s\"", pgdata);
        goto out;
    }
    for (size_t k = 0; k < nts; k++)
        if (chmod(ts[k].dir, 0700) != 0) {
            log_errno("could not change the mode of \"%s\"", ts[k].dir);
            goto out;
        }
    double t_sync = now_seconds();
    if (durable_fsync_tree(pgdata) != 0)
        goto out;
    for (size_t k = 0; k < nts; k++)
        if (durable_fsync_tree(ts[k].dir) != 0)
            goto out;
    started_writing = 0; /* complete: nothing to undo from here on */
    log_info("fsync'd the restored files in %.1f s", now_seconds() - t_sync);

    double t_restore = now_seconds() - t0;
    start_result sr;
    memset(&sr, 0, sizeof(sr));
    int start_failed = 0;
    if (!o->json) {
        plan_print(&inv, o, &p);
        printf("restored:        %s (%llu files, %llu bytes) in %.1f s, owner %s\n", pgdata,
               (unsigned long long)stats.files, (unsigned long long)stats.bytes, t_restore, user);
        if (moved)
            printf("old contents:    %s\n", aside);
        if (!o->start)
            printf("next:            start it as %s: pg_ctl -D %s start\n", user, pgdata);
        fflush(stdout);
    }
    /* the restore record: before the server starts (a record even if recovery never
     * returns), then again with where it stopped */
    restore_outcome ro = {.pgdata = pgdata, .old_contents = moved ? aside : NULL,
                          .started = (int64_t)t0};
    if (o->start)
        record_restore(&inv, o, &p, &ro);
    if (o->start) {
        if (start_and_follow(o, pgdata, uid, gid, user, &sr) != 0)
            start_failed = 1;
        ro.start_ran = 1;
        ro.start_failed = start_failed;
        ro.promoted = sr.promoted;
        ro.paused = sr.paused;
        ro.shutdown = sr.shutdown;
        ro.replay_ts = sr.replay_ts;
        ro.replay_lsn = sr.replay_lsn;
    }
    record_restore(&inv, o, &p, &ro);
    if (o->json) {
        json_t *j = plan_json(&inv, o, &p);
        json_object_set_new(j, "pgdata", json_string(pgdata));
        json_object_set_new(j, "files", json_integer((json_int_t)stats.files));
        json_object_set_new(j, "bytes", json_integer((json_int_t)stats.bytes));
        json_object_set_new(j, "restore_seconds", json_real(t_restore));
        json_object_set_new(j, "owner", json_string(user));
        if (moved)
            json_object_set_new(j, "old_contents", json_string(aside));
        if (o->start && !start_failed) {
            json_t *s = json_object();
            json_object_set_new(s, "state", json_string(sr.promoted ? "promoted"
                                                        : sr.paused ? "paused" : "shutdown"));
            json_object_set_new(s, "last_replay_timestamp",
                                sr.replay_ts[0] ? json_string(sr.replay_ts) : json_null());
            json_object_set_new(s, "last_replay_lsn",
                                sr.replay_lsn[0] ? json_string(sr.replay_lsn) : json_null());
            json_object_set_new(s, "recovery_seconds", json_real(sr.seconds));
            json_object_set_new(s, "total_seconds", json_real(now_seconds() - t0));
            json_object_set_new(j, "recovery", s);
        }
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else if (o->start && !start_failed) {
        printf("recovery:        %s after %.1f s (total %.1f s)\n",
               sr.promoted ? "promoted" : sr.paused ? "paused at the target"
                                                    : "server shut down at the target",
               sr.seconds, now_seconds() - t0);
        if (!sr.shutdown)
            printf("stopped at:      last replayed commit %s, replay lsn %s\n",
                   sr.replay_ts[0] ? sr.replay_ts : "(none)",
                   sr.replay_lsn[0] ? sr.replay_lsn : "(none)");
    }
    ret = start_failed ? EXIT_FAIL : EXIT_OK;
out:
    if (started_writing) {
        log_notice("restore failed: removing what it wrote");
        if (created) {
            durable_remove_tree(pgdata);
            if (state == 1 && mkdir(pgdata, 0700) != 0)
                log_errno("could not recreate \"%s\"", pgdata);
        }
        if (moved && durable_rename(aside, pgdata) == 0)
            log_notice("moved \"%s\" back to \"%s\"", aside, pgdata);
        for (size_t k = 0; k < nts; k++) {
            if (ts[k].created)
                durable_remove_tree(ts[k].dir);
            if (ts[k].moved && ts[k].aside[0])
                durable_rename(ts[k].aside, ts[k].dir);
        }
    }
    if (have_m)
        manifest_release(&m);
    free(seen);
    free(mtext);
    free(ts);
    if (have_plan)
        plan_release(&p);
    inventory_release(&inv);
    return ret;
}
