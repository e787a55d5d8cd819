/*
 * check.c -- ragsafe-pitr check: is this server archiving into this repository, and
 * would a restore work today? Like `pgbackrest check` and `barman check`, every check
 * runs whatever the others found, and each is reported as one line
 *
 *     "  name: ok (detail)" | "  name: WARNING (detail)" | "  name: FAILED (detail)"
 *
 * a warning or failure followed by a "    hint: ..." line naming the fix, then one
 * summary line (--json: an array of {name, status, detail, hint} instead).
 *
 * The checks, in the order printed (critical: FAILED; soft: WARNING):
 *   server             connects; PostgreSQL 15                                critical
 *   system_identifier  the server's = repo.json's                             critical
 *   archive_mode       on or always (a standby with on: warning)              critical
 *   wal_level          replica or logical                                     critical
 *   archive_command    runs ragsafe-archive by an absolute path, into this
 *                      repository (--repo after realpath, the same s3:// location,
 *                      or a --config file naming it), with %p %f             critical
 *                      (a command that does not run ragsafe-archive itself, e.g. a
 *                      wrapper script: warning; wal_switch tells whether it works)
 *   archive_timeout    set and <= the RPO objective                           warning
 *   archiver           pg_stat_archiver: the last failure is not newer than the
 *                      last success                                           critical
 *   wal_switch         a forced segment switch (after a small write) is archived
 *                      into the repository within --switch-timeout and reads back
 *                      intact (the read and page-header check of pitr verify)  critical
 *   replication        the role may take base backups (REPLICATION or
 *                      superuser) and a replication connection is accepted    critical
 *   max_wal_senders    a WAL sender is free for a base backup                 critical
 *   replication_slots  no inactive slot, none retaining more WAL than
 *                      --max-slot-wal (1G): each named with what it holds back  warning
 *   repository         readable, repo.json; posix: the root owned by the
 *                      server's OS user, nothing below it (two levels) owned by
 *                      another user, nothing group/other-writable            critical
 *                      (others may read an unencrypted repository: warning)
 *   cipher_key         an encrypted repository's key is not kept inside it    critical
 *   free_space         posix: free space >= --min-free (S3: n/a)              critical
 *   backup_age         a base backup exists, newer than --max-backup-age      critical
 *   wal_age            the newest archived segment (before the switch) is newer
 *                      than the RPO                                           warning
 *   last_verify        the last `pitr verify` found the repository intact    critical
 *                      (never verified: warning)
 *   milvus_age         the newest Milvus snapshot, if any, is newer than
 *                      --max-milvus-age                                       critical
 *   receiver           the receiver's status (stream/status.json), if any, is
 *                      fresh (updated in the last 60 s), of this cluster, and
 *                      its lag within the RPO   critical when stale and synchronous
 *                      (commits wait for it), else warning
 *
 * Exit status (Nagios): 0 all ok, 1 a warning and no failure, 2 a failure; a usage
 * error is 2 too, with its message on stderr. The objectives come from the options,
 * else the config file (keys rpo, max-backup-age, max-milvus-age, min-free,
 * switch-timeout, max-slot-wal, dbname), else the defaults (RPO 5m, as restore-drill.sh; backups
 * and Milvus snapshots 30h: a daily job that missed one day fails).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "object.h"
#include "pgconn.h"
#include "pitr.h"
#include "strbuf.h"
#include "timefmt.h"

enum { CK_OK = 0, CK_WARN = 1, CK_FAIL = 2 };

enum {
    C_SERVER, C_SYSID, C_ARCHIVE_MODE, C_WAL_LEVEL, C_ARCHIVE_COMMAND, C_ARCHIVE_TIMEOUT,
    C_ARCHIVER, C_WAL_SWITCH, C_REPLICATION, C_WAL_SENDERS, C_SLOTS, C_REPOSITORY,
    C_CIPHER_KEY, C_FREE_SPACE, C_BACKUP_AGE, C_WAL_AGE, C_VERIFY, C_MILVUS_AGE, C_RECEIVER,
    C_COUNT
};

static const char *const check_names[C_COUNT] = {
    "server", "system_identifier", "archive_mode", "wal_level", "archive_command",
    "archive_timeout", "archiver", "wal_switch", "replication", "max_wal_senders",
    "replication_slots", "repository", "cipher_key", "free_space", "backup_age", "wal_age",
    "last_verify", "milvus_age", "receiver",
};

typedef struct ck {
    int status;
    int done;
    strbuf detail;
    strbuf hint;
} ck;

typedef struct cctx {
    const pitr_opts *o;
    ck c[C_COUNT];
    PGconn *conn;
    const char *conninfo;
    int in_recovery;
    char role[128];
    inventory inv;
    int have_inv;
    const char *loc;          /* the repository as given */
    char *loc_real;           /* posix: its realpath (NULL: S3 or unresolvable) */
    char bindir[PATH_MAX];    /* where this executable lives: ragsafe-archive's sibling */
    int64_t rpo, max_backup_age, max_milvus_age, switch_timeout;
    uint64_t min_free;
    uint64_t max_slot_wal;    /* a slot holding back more WAL than this: warning */
    int archive_off;          /* archive_mode off / archive_command empty: nothing archives */
} cctx;

/* ck_set -- the outcome of one check; hint may be NULL (ok), fmt the detail. */
static void ck_set(ck *c, int status, const char *hint, const char *fmt, ...) LOG_PRINTF(4, 5);
static void ck_set(ck *c, int status, const char *hint, const char *fmt, ...)
{
    va_list ap;
    strbuf_reset(&c->detail);
    strbuf_reset(&c->hint);
    c->status = status;
    c->done = 1;
    va_start(ap, fmt);
    (void)strbuf_vappendf(&c->detail, fmt, ap); /* on OOM (reported) the line says less */
    va_end(ap);
    if (hint)
        (void)strbuf_append(&c->hint, hint);
}

/* ck_hintf -- replace a check's hint with a formatted one. */
static void ck_hintf(ck *c, const char *fmt, ...) LOG_PRINTF(2, 3);
static void ck_hintf(ck *c, const char *fmt, ...)
{
    va_list ap;
    strbuf_reset(&c->hint);
    va_start(ap, fmt);
    (void)strbuf_vappendf(&c->hint, fmt, ap);
    va_end(ap);
}

/* one_line -- a server message as one line, without its trailing newline. */
static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    if (strncmp(s, "ERROR:  ", 8) == 0 || strncmp(s, "FATAL:  ", 8) == 0)
        memmove(s, s + 8, strlen(s + 8) + 1);
}

static void fmt_bytes(char *out, size_t len, uint64_t b)
{
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%" PRIu64 " bytes", b);
    else
        snprintf(out, len, "%.1f %s", v, unit[u]);
}

static void fmt_age(char *out, size_t len, int64_t s)
{
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, len, "%lld s", (long long)s);
    else if (s < 7200)
        snprintf(out, len, "%lld min", (long long)(s / 60));
    else if (s < 2 * 86400)
        snprintf(out, len, "%.1f h", (double)s / 3600);
    else
        snprintf(out, len, "%.1f days", (double)s / 86400);
}

/*
 * parse_size -- "50G", "100M", "1.5T", "4096" (bytes); K/M/G/T may be followed by
 * "B" or "iB": powers of 1024 either way (as df -h counts). -1 reported.
 */
static int parse_size(const char *what, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    uint64_t mult = 1;
    if (errno || end == s || v < 0)
        goto bad;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    case 't': case 'T': mult = 1ull << 40; end++; break;
    default: goto bad;
    }
    if (mult > 1 && (strcmp(end, "B") == 0 || strcmp(end, "iB") == 0))
        end += strlen(end);
    if (*end || v * (double)mult > 1.8e19)
        goto bad;
    *out = (uint64_t)(v * (double)mult);
    return 0;
bad:
    log_error("invalid %s \"%s\"", what, s);
    log_hint("a size such as 50G, 500M or a number of bytes");
    return -1;
}

/* ---- the server --------------------------------------------------------------- */

/* query -- run sql; the result on success, else NULL with the server's message in err. */
static PGresult *query(cctx *x, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(x->conn, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(x->conn));
    one_line(err);
    PQclear(res);
    return NULL;
}

/* setting -- a setting's value from pg_settings (malloc'd; NULL: not visible). reset_val:
 * the value as configured (archive_command reads "(disabled)" while archive_mode is off). */
static char *setting_col(cctx *x, const char *name, const char *col)
{
    char sql[256], err[512];
    char *v = NULL;
    snprintf(sql, sizeof(sql), "select %s from pg_settings where name = '%s'", col, name);
    PGresult *res = query(x, sql, err, sizeof(err));
    if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static char *setting(cctx *x, const char *name)
{
    return setting_col(x, name, "setting");
}

/* connect_with -- a connection, or NULL with libpq's message in err (never logged:
 * the check's line carries it). */
static PGconn *connect_with(const char *conninfo, int replication, char *err, size_t errlen)
{
    const char *keys[5], *vals[5];
    int n = 0;
    keys[n] = "connect_timeout"; /* before the caller's string, which may override it */
    vals[n++] = "10";
    if (conninfo && *conninfo) {
        keys[n] = "dbname";
        vals[n++] = conninfo;
    }
    if (replication) {
        keys[n] = "replication";
        vals[n++] = "true";
    }
    keys[n] = "fallback_application_name";
    vals[n++] = log_progname();
    keys[n] = NULL;
    vals[n] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c && PQstatus(c) == CONNECTION_OK)
        return c;
    snprintf(err, errlen, "%s", c ? PQerrorMessage(c) : "out of memory");
    one_line(err);
    PQfinish(c);
    return NULL;
}

static void check_server(cctx *x)
{
    char err[1024];
    ck *c = &x->c[C_SERVER];

    x->conn = connect_with(x->conninfo, 0, err, sizeof(err));
    if (!x->conn) {
        ck_set(c, CK_FAIL,
               strstr(err, "password") ? "check the password (PGPASSWORD, ~/.pgpass or -d)"
                                       : "is the server running, and do -d CONNINFO's host, port "
                                         "and user name it?",
               "could not connect: %s", err);
        return;
    }
    const char *ver = PQparameterStatus(x->conn, "server_version");
    PGresult *res = query(x, "select pg_is_in_recovery(), current_user", err, sizeof(err));
    if (res && PQntuples(res) == 1) {
        x->in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        snprintf(x->role, sizeof(x->role), "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    if (PQserverVersion(x->conn) / 10000 != 15) {
        ck_set(c, CK_FAIL, "ragsafe reads PostgreSQL 15's WAL and backup formats: point -d at "
                           "a PostgreSQL 15 server",
               "PostgreSQL %s: not 15", ver ? ver : "?");
        return;
    }
    ck_set(c, CK_OK, NULL, "PostgreSQL %s, %s, role %s", ver ? ver : "?",
           x->in_recovery ? "standby" : "primary", x->role);
}

static void check_settings(cctx *x)
{
    char *mode = setting(x, "archive_mode"), *level = setting(x, "wal_level");
    char *tmo = setting(x, "archive_timeout");
    ck *c;

    c = &x->c[C_ARCHIVE_MODE];
    if (!mode)
        ck_set(c, CK_FAIL, "grant the role pg_read_all_settings or run check as a superuser",
               "could not read archive_mode");
    else if (x->in_recovery && strcmp(mode, "on") == 0)
        ck_set(c, CK_WARN, "set archive_mode = always to archive from this standby, or run "
                           "check against the primary",
               "on, and the server is a standby: it archives nothing until promoted");
    else if (strcmp(mode, "on") == 0 || strcmp(mode, "always") == 0)
        ck_set(c, CK_OK, NULL, "%s", mode);
    else {
        x->archive_off = 1;
        ck_set(c, CK_FAIL, NULL, "archive_mode is %s: no WAL is archived", mode);
        ck_hintf(c, "set archive_mode = on and archive_command = '%s/ragsafe-archive --repo %s "
                    "%%p %%f' in postgresql.conf, then restart the server",
                 x->bindir, x->loc);
    }

    c = &x->c[C_WAL_LEVEL];
    if (!level)
        ck_set(c, CK_FAIL, "grant the role pg_read_all_settings or run check as a superuser",
               "could not read wal_level");
    else if (strcmp(level, "replica") == 0 || strcmp(level, "logical") == 0)
        ck_set(c, CK_OK, NULL, "%s", level);
    else
        ck_set(c, CK_FAIL, "set wal_level = replica in postgresql.conf, then restart the server",
               "wal_level is %s: base backups and archive recovery need replica or logical",
               level);

    c = &x->c[C_ARCHIVE_TIMEOUT];
    long t = tmo ? strtol(tmo, NULL, 10) : -1;
    char rpo[32];
    fmt_age(rpo, sizeof(rpo), x->rpo);
    if (t < 0)
        ck_set(c, CK_WARN, "grant the role pg_read_all_settings or run check as a superuser",
               "could not read archive_timeout");
    else if (t == 0)
        ck_set(c, CK_WARN, NULL,
               "archive_timeout is 0 (off): a quiet server can keep a partly filled segment "
               "unarchived for longer than the RPO of %s", rpo);
    else if (t > x->rpo)
        ck_set(c, CK_WARN, NULL,
               "archive_timeout is %ld s, above the RPO of %s: a quiet server can lose more",
               t, rpo);
    else
        ck_set(c, CK_OK, NULL, "%ld s, within the RPO of %s", t, rpo);
    if (c->status == CK_WARN && t >= 0)
        ck_hintf(c, "set archive_timeout = %lld in postgresql.conf (or --rpo to the objective "
                    "you have), then SELECT pg_reload_conf()",
                 (long long)(x->rpo < 60 ? 60 : x->rpo));
    free(mode);
    free(level);
    free(tmo);
}

/* ---- archive_command ---------------------------------------------------------- */

typedef struct words {
    char **w;
    size_t n;
} words;

static void words_free(words *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        free(ws->w[i]);
    free(ws->w);
    ws->w = NULL;
    ws->n = 0;
}

static int words_push(words *ws, strbuf *sb)
{
    char **n = realloc(ws->w, (ws->n + 1) * sizeof(*n));
    if (!n)
        return log_error("out of memory");
    ws->w = n;
    ws->w[ws->n] = strbuf_detach(sb, NULL);
    if (!ws->w[ws->n])
        return -1;
    ws->n++;
    return 0;
}

/*
 * sh_split -- the words /bin/sh would make of s: blanks separate, '...' literal,
 * "..." with \ escaping " \ $ `, a bare \ escaping the next character; ; & | < > ( )
 * end a word and are words of their own. Expansions are not performed ($VAR stays as
 * written). 0 | -1 reported.
 */
static int sh_split(const char *s, words *ws)
{
    strbuf sb;
    int in_word = 0, ret = -1;
    strbuf_init(&sb);
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            if (in_word && words_push(ws, &sb) != 0)
                goto out;
            in_word = 0;
        } else if (strchr(";&|<>()", *p)) {
            if (in_word && words_push(ws, &sb) != 0)
                goto out;
            in_word = 0;
            if (strbuf_appendn(&sb, p, 1) != 0 || words_push(ws, &sb) != 0)
                goto out;
        } else if (*p == '\'') {
            const char *e = strchr(p + 1, '\'');
            size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
            if (strbuf_appendn(&sb, p + 1, n) != 0)
                goto out;
            p += n + (e ? 1 : 0);
            in_word = 1;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                    p++;
                if (strbuf_appendn(&sb, p, 1) != 0)
                    goto out;
            }
            if (!*p)
                p--;
            in_word = 1;
        } else {
            if (*p == '\\' && p[1])
                p++;
            if (strbuf_appendn(&sb, p, 1) != 0)
                goto out;
            in_word = 1;
        }
    }
    if (in_word && words_push(ws, &sb) != 0)
        goto out;
    ret = 0;
out:
    strbuf_release(&sb);
    return ret;
}

/* the options of ragsafe-archive that take an argument */
static int archive_opt_takes_arg(const char *w)
{
    static const char *const with_arg[] = {"--repo", "--s3-endpoint", "--s3-region",
                                           "--s3-uri-style", "--cipher-key-file", "--config",
                                           "--compress-level", "--compress-workers",
                                           "--look-ahead"};
    for (size_t i = 0; i < ARRAY_LEN(with_arg); i++)
        if (strcmp(w, with_arg[i]) == 0)
            return 1;
    return 0;
}

/* s3_norm -- "s3://bucket/prefix" without trailing slashes, into out. */
static void s3_norm(const char *s, char *out, size_t len)
{
    snprintf(out, len, "%s", s);
    size_t n = strlen(out);
    while (n > 5 && out[n - 1] == '/')
        out[--n] = '\0';
}

/*
 * same_repo -- does the location an archive_command names (its) reach this
 * repository? 1 yes, 0 no (why says how it differs), -1 reported.
 */
static int same_repo(cctx *x, const char *its, char *why, size_t whylen)
{
    int ours_s3 = strncmp(x->loc, "s3://", 5) == 0, its_s3 = strncmp(its, "s3://", 5) == 0;
    if (ours_s3 || its_s3) {
        char a[1024], b[1024];
        s3_norm(x->loc, a, sizeof(a));
        s3_norm(its, b, sizeof(b));
        if (strcmp(a, b) == 0)
            return 1;
        snprintf(why, whylen, "it archives into \"%s\", not into this repository \"%s\"", its,
                 x->loc);
        return 0;
    }
    if (its[0] != '/') {
        snprintf(why, whylen, "it names the repository \"%s\" by a relative path (PostgreSQL "
                              "runs archive_command in the data directory)", its);
        return 0;
    }
    char *r = realpath(its, NULL);
    if (!r) {
        if (errno == ENOENT)
            snprintf(why, whylen, "it names the repository \"%s\", which does not exist", its);
        else
            snprintf(why, whylen, "it names the repository \"%s\", which cannot be reached (%s)",
                     its, strerror(errno));
        return 0;
    }
    int same = x->loc_real && strcmp(r, x->loc_real) == 0;
    if (!same)
        snprintf(why, whylen, "it archives into \"%s\", not into this repository \"%s\"", its,
                 x->loc);
    free(r);
    return same;
}

/* repo_of_config -- the "repo" a config file names (malloc'd), or NULL with why. */
static char *repo_of_config(const char *file, char *why, size_t whylen)
{
    config *cfg = config_load(file);
    char *r = NULL;
    if (!cfg) {
        snprintf(why, whylen, "its config file \"%s\" could not be read (the error above says "
                              "why)", file);
        return NULL;
    }
    const char *v = config_get(cfg, "repo");
    if (v)
        r = strdup(v);
    else
        snprintf(why, whylen, "its config file \"%s\" names no repo", file);
    config_free(cfg);
    return r;
}

static void check_archive_command(cctx *x)
{
    ck *c = &x->c[C_ARCHIVE_COMMAND];
    char *cmd = setting_col(x, "archive_command", "reset_val"), *lib = setting(x, "archive_library");
    char why[2048] = "", fix[PATH_MAX * 2 + 64];
    words ws = {NULL, 0};
    const char *env_repo = NULL, *env_config = NULL, *opt_repo = NULL, *opt_config = NULL;
    const char *pos[3] = {NULL, NULL, NULL};
    size_t npos = 0, exe = SIZE_MAX;
    char *cfg_repo = NULL;

    snprintf(fix, sizeof(fix), "archive_command = '%s/ragsafe-archive --repo %s %%p %%f', then "
                               "SELECT pg_reload_conf()", x->bindir, x->loc);
    if (!cmd) {
        ck_set(c, CK_FAIL, "grant the role pg_read_all_settings or run check as a superuser",
               "could not read archive_command");
        goto out;
    }
    if (lib && *lib) {
        ck_set(c, CK_FAIL, "set archive_library = '' so that archive_command is used",
               "archive_library is \"%s\": archive_command is not used", lib);
        goto out;
    }
    if (!*cmd) {
        x->archive_off = 1;
        ck_set(c, CK_FAIL, fix, "archive_command is empty: nothing is archived and pg_wal grows");
        goto out;
    }
    if (sh_split(cmd, &ws) != 0) {
        ck_set(c, CK_FAIL, fix, "could not parse archive_command");
        goto out;
    }
    for (size_t i = 0; i < ws.n; i++) {
        const char *b = strrchr(ws.w[i], '/');
        b = b ? b + 1 : ws.w[i];
        if (strcmp(b, "ragsafe-archive") == 0) {
            exe = i;
            break;
        }
        if (strncmp(ws.w[i], "RAGSAFE_REPO=", 13) == 0)
            env_repo = ws.w[i] + 13;
        else if (strncmp(ws.w[i], "RAGSAFE_CONFIG=", 15) == 0)
            env_config = ws.w[i] + 15;
    }
    if (exe == SIZE_MAX) {
        ck_set(c, CK_WARN, NULL,
               "archive_command \"%s\" does not run ragsafe-archive itself: whether it reaches "
               "this repository only wal_switch can tell", cmd);
        ck_hintf(c, "%s (or make sure the script it runs calls ragsafe-archive with this "
                    "repository)", fix);
        goto out;
    }
    for (size_t i = exe + 1; i < ws.n && !strchr(";&|<>()", ws.w[i][0]); i++) {
        const char *w = ws.w[i];
        if (strncmp(w, "--repo=", 7) == 0)
            opt_repo = w + 7;
        else if (strncmp(w, "--config=", 9) == 0)
            opt_config = w + 9;
        else if (archive_opt_takes_arg(w) && i + 1 < ws.n) {
            if (strcmp(w, "--repo") == 0)
                opt_repo = ws.w[i + 1];
            else if (strcmp(w, "--config") == 0)
                opt_config = ws.w[i + 1];
            i++;
        } else if (w[0] != '-' && npos < 3) {
            pos[npos++] = w;
        }
    }
    const char *exe_path = ws.w[exe];
    if (exe_path[0] != '/') {
        ck_set(c, CK_FAIL, fix, "archive_command runs \"%s\" by a relative name: the server's "
                                "PATH and working directory decide what runs", exe_path);
        goto out;
    }
    if (access(exe_path, X_OK) != 0) {
        ck_set(c, CK_FAIL, fix, "archive_command runs \"%s\": %s", exe_path, strerror(errno));
        goto out;
    }
    if (npos != 2 || strcmp(pos[0], "%p") != 0 || strcmp(pos[1], "%f") != 0) {
        ck_set(c, CK_FAIL, fix, "archive_command does not pass %%p %%f (in that order) to "
                                "ragsafe-archive: \"%s\"", cmd);
        goto out;
    }
    const char *its = opt_repo ? opt_repo : env_repo, *via = "";
    if (!its) {
        const char *file = opt_config ? opt_config : env_config;
        struct stat sb;
        if (!file && stat(CONFIG_DEFAULT_PATH, &sb) == 0)
            file = CONFIG_DEFAULT_PATH;
        if (!file) {
            ck_set(c, CK_FAIL, fix, "archive_command names no repository (no --repo, no "
                                    "--config): it depends on the server's environment");
            goto out;
        }
        if (file[0] != '/') {
            ck_set(c, CK_FAIL, fix, "archive_command names its config file \"%s\" by a relative "
                                    "path (PostgreSQL runs it in the data directory)", file);
            goto out;
        }
        cfg_repo = repo_of_config(file, why, sizeof(why));
        if (!cfg_repo) {
            ck_set(c, CK_FAIL, fix, "%s", why);
            goto out;
        }
        its = cfg_repo;
        via = file;
    }
    int r = same_repo(x, its, why, sizeof(why));
    if (r != 1) {
        ck_set(c, CK_FAIL, fix, "%s%s%s%s", why, *via ? " (from \"" : "", via, *via ? "\")" : "");
        goto out;
    }
    ck_set(c, CK_OK, NULL, "%s into %s%s%s%s", exe_path, its, *via ? " (from \"" : "", via,
           *via ? "\")" : "");
out:
    words_free(&ws);
    free(cfg_repo);
    free(cmd);
    free(lib);
}

/* ---- pg_stat_archiver and the forced switch ----------------------------------- */

static void check_archiver(cctx *x)
{
    ck *c = &x->c[C_ARCHIVER];
    char err[1024];
    PGresult *res = query(x,
                          "select archived_count, coalesce(last_archived_wal, ''), failed_count, "
                          "coalesce(last_failed_wal, ''), "
                          "coalesce(to_char(last_failed_time at time zone 'UTC', "
                          "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
                          "last_failed_time > coalesce(last_archived_time, '-infinity') "
                          "from pg_stat_archiver",
                          err, sizeof(err));
    if (!res || PQntuples(res) != 1) {
        ck_set(c, CK_FAIL, "grant the role pg_monitor or run check as a superuser",
               "could not read pg_stat_archiver: %s", res ? "no row" : err);
        PQclear(res);
        return;
    }
    const char *archived = PQgetvalue(res, 0, 0), *last = PQgetvalue(res, 0, 1);
    const char *failed = PQgetvalue(res, 0, 2), *lfw = PQgetvalue(res, 0, 3);
    const char *lft = PQgetvalue(res, 0, 4);
    if (strcmp(PQgetvalue(res, 0, 5), "t") == 0)
        ck_set(c, CK_FAIL,
               "the server log says why archive_command failed (ragsafe-archive names the "
               "problem); fix it and the archiver retries by itself",
               "archiving is failing: %s failures, the last for %s at %s, none archived since",
               failed, lfw, lft);
    else if (strcmp(failed, "0") != 0)
        ck_set(c, CK_OK, NULL, "%s archived, last %s (%s earlier failures, the last at %s)",
               archived, *last ? last : "none", failed, lft);
    else
        ck_set(c, CK_OK, NULL, "%s archived, last %s, no failures", archived,
               *last ? last : "none");
    PQclear(res);
}

static void check_switch(cctx *x)
{
    ck *c = &x->c[C_WAL_SWITCH];
    char err[1024], name[64], key[128], t[32];
    PGresult *res = NULL;
    char *buf = NULL;
    size_t len = 0;

    fmt_age(t, sizeof(t), x->switch_timeout);
    if (x->archive_off) {
        ck_set(c, CK_FAIL, "fix archive_mode and archive_command first",
               "not tried: the server archives nothing");
        return;
    }
    if (x->in_recovery) {
        ck_set(c, CK_WARN, "run check against the primary",
               "not tried: a standby cannot switch segments (pg_switch_wal)");
        return;
    }
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not tried: the repository could not be read");
        return;
    }
    /* something to switch: a transaction with an xid writes a commit record */
    res = query(x, "select txid_current()", err, sizeof(err));
    if (res) {
        PQclear(res);
        res = query(x, "select pg_walfile_name(pg_switch_wal())", err, sizeof(err));
    }
    if (!res || PQntuples(res) != 1) {
        ck_set(c, CK_FAIL, NULL, "could not force a segment switch: %s", res ? "no row" : err);
        ck_hintf(c, "run check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() TO "
                    "%s", x->role[0] ? x->role : "the role");
        PQclear(res);
        return;
    }
    snprintf(name, sizeof(name), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (repo_wal_key(name, key, sizeof(key)) != 0) {
        ck_set(c, CK_FAIL, "is -d a PostgreSQL 15 server?", "the server switched to \"%s\", not a segment name", name);
        return;
    }
    double t0 = now_seconds(), waited;
    int r;
    for (;;) {
        r = storage_stat(x->inv.st, key, NULL, NULL);
        waited = now_seconds() - t0;
        if (r != RS_NOT_FOUND || waited >= (double)x->switch_timeout)
            break;
        struct timespec ts = {0, waited < 2 ? 100000000L : 500000000L};
        nanosleep(&ts, NULL);
    }
    if (r == RS_NOT_FOUND) {
        ck_set(c, CK_FAIL,
               "see the archiver and archive_command checks and the server log; a busy archiver "
               "may need a longer --switch-timeout",
               "segment %s was not archived into this repository within %s", name, t);
        return;
    }
    if (r != 0) {
        ck_set(c, CK_FAIL, "the error above names the problem",
               "could not look for segment %s in the repository", name);
        return;
    }
    /* read back as pitr verify and ragsafe-restore do: decompress, SHA-256 against the
     * trailer (authenticated when sealed), then the long page header against the name
     * and repo.json */
    r = object_get_buf(x->inv.st, key, (size_t)x->inv.seg_size + 1, &buf, &len, NULL);
    if (r == 0)
        r = inventory_check_seg(&x->inv, name, buf, len, len);
    free(buf);
    if (r == RS_MISMATCH)
        ck_set(c, CK_FAIL, "run ragsafe-pitr verify on the repository; the error above names "
                           "the damage",
               "segment %s was archived but does not read back intact", name);
    else if (r != 0)
        ck_set(c, CK_FAIL, "the error above names the problem",
               "segment %s was archived but could not be read back", name);
    else
        ck_set(c, CK_OK, NULL, "segment %s archived and read back intact in %.1f s", name, waited);
}

/* ---- base backup prerequisites ------------------------------------------------ */

static void check_replication(cctx *x)
{
    ck *c = &x->c[C_REPLICATION];
    char err[1024];
    PGresult *res = query(x, "select rolreplication or rolsuper from pg_roles "
                             "where rolname = current_user", err, sizeof(err));
    if (!res || PQntuples(res) != 1) {
        ck_set(c, CK_FAIL, "run check as the role that takes base backups",
               "could not read the role's attributes: %s", res ? "no row" : err);
        PQclear(res);
        return;
    }
    int priv = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!priv) {
        ck_set(c, CK_FAIL, NULL, "role %s has neither REPLICATION nor SUPERUSER: "
                                 "ragsafe-basebackup would be refused", x->role);
        ck_hintf(c, "ALTER ROLE %s REPLICATION; (or give -d the role the base backups use)",
                 x->role);
        return;
    }
    /* the privilege alone is not enough: pg_hba.conf must let it in as "replication" */
    PGconn *rc = connect_with(x->conninfo, 1, err, sizeof(err));
    if (!rc) {
        ck_set(c, CK_FAIL,
               strstr(err, "pg_hba.conf")
                   ? "add a \"replication\" line for the role to pg_hba.conf, then SELECT "
                     "pg_reload_conf()"
                   : "the message names the refusal; ragsafe-basebackup connects the same way",
               "a replication connection was refused: %s", err);
        return;
    }
    PQfinish(rc);
    ck_set(c, CK_OK, NULL, "role %s may take base backups; a replication connection works",
           x->role);
}

static void check_wal_senders(cctx *x)
{
    ck *c = &x->c[C_WAL_SENDERS];
    char err[1024];
    PGresult *res = query(x, "select current_setting('max_wal_senders')::int, "
                             "(select count(*) from pg_stat_activity "
                             "where backend_type = 'walsender')",
                          err, sizeof(err));
    if (!res || PQntuples(res) != 1) {
        ck_set(c, CK_FAIL, "grant the role pg_monitor or run check as a superuser",
               "could not count the WAL senders: %s", res ? "no row" : err);
        PQclear(res);
        return;
    }
    long max = strtol(PQgetvalue(res, 0, 0), NULL, 10), used = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (max <= used)
        ck_set(c, CK_FAIL,
               "raise max_wal_senders in postgresql.conf (each base backup takes one), then "
               "restart the server",
               "max_wal_senders is %ld and %ld in use: a base backup gets none", max, used);
    else
        ck_set(c, CK_OK, NULL, "%ld of %ld in use", used, max);
}

/*
 * check_slots -- every replication slot that holds WAL back in pg_wal: an inactive one
 * (a stopped ragsafe-receive, a standby gone) keeps everything from its restart_lsn
 * until the disk fills and the primary stops; an active one far behind does too. Each
 * is named with what it retains, with the two fixes: start its consumer, or drop it.
 */
static void check_slots(cctx *x)
{
    ck *c = &x->c[C_SLOTS];
    char err[1024], b[32], lim[32];
    strbuf names;
    size_t nbad = 0, nslots = 0;
    const char *first = NULL;
    char *first_copy = NULL;
    PGresult *res = query(x, "select slot_name, coalesce(pg_wal_lsn_diff(case when "
                             "pg_is_in_recovery() then pg_last_wal_replay_lsn() else "
                             "pg_current_wal_lsn() end, restart_lsn), 0)::bigint, active, "
                             "slot_type from pg_replication_slots order by 2 desc",
                          err, sizeof(err));
    if (!res) {
        ck_set(c, CK_WARN, "grant the role pg_monitor or run check as a superuser",
               "could not read pg_replication_slots: %s", err);
        return;
    }
    strbuf_init(&names);
    fmt_bytes(lim, sizeof(lim), x->max_slot_wal);
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t held = strtoull(PQgetvalue(res, i, 1), NULL, 10);
        int active = strcmp(PQgetvalue(res, i, 2), "t") == 0;
        nslots++;
        if (active && held <= x->max_slot_wal)
            continue;
        fmt_bytes(b, sizeof(b), held);
        (void)strbuf_appendf(&names, "%s%s (%s%s, retains %s)", nbad ? ", " : "",
                             PQgetvalue(res, i, 0), active ? "" : "inactive, ",
                             PQgetvalue(res, i, 3), b);
        if (!first)
            first = PQgetvalue(res, i, 0);
        nbad++;
    }
    first_copy = first ? strdup(first) : NULL;
    PQclear(res);
    if (nbad) {
        ck_set(c, CK_WARN, NULL,
               "%zu slot%s holding back WAL in pg_wal (an inactive slot, or one over %s: "
               "--max-slot-wal): %s", nbad, nbad == 1 ? "" : "s", lim, names.buf);
        ck_hintf(c, "start the slot's consumer (ragsafe-receive: systemctl start "
                    "ragsafe-receive), or, if it is gone for good, drop the slot: SELECT "
                    "pg_drop_replication_slot('%s')", first_copy ? first_copy : "name");
    } else {
        ck_set(c, CK_OK, NULL, "%zu slot%s, none inactive or retaining over %s", nslots,
               nslots == 1 ? "" : "s", lim);
    }
    free(first_copy);
    strbuf_release(&names);
}

static void check_sysid(cctx *x)
{
    ck *c = &x->c[C_SYSID];
    char err[1024];
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    PGresult *res = query(x, "select system_identifier::text from pg_control_system()", err,
                          sizeof(err));
    if (!res || PQntuples(res) != 1) {
        ck_set(c, CK_WARN, "run check as a superuser",
               "could not read the server's system identifier: %s", res ? "no row" : err);
        PQclear(res);
        return;
    }
    uint64_t srv = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (srv != x->inv.r->info.sysid)
        ck_set(c, CK_FAIL,
               "a repository holds one cluster: give this server a repository of its own "
               "(--repo and archive_command)",
               "the server is %" PRIu64 ", the repository holds %" PRIu64, srv,
               x->inv.r->info.sysid);
    else
        ck_set(c, CK_OK, NULL, "%" PRIu64, srv);
}

/* not_checked -- every check that needs the server, when there is none. */
static void not_checked(cctx *x)
{
    static const int need[] = {C_SYSID, C_ARCHIVE_MODE, C_WAL_LEVEL, C_ARCHIVE_COMMAND,
                               C_ARCHIVE_TIMEOUT, C_ARCHIVER, C_WAL_SWITCH, C_REPLICATION,
                               C_WAL_SENDERS, C_SLOTS};
    for (size_t i = 0; i < ARRAY_LEN(need); i++)
        ck_set(&x->c[need[i]], CK_FAIL, "fix the server check first",
               "not checked: no connection to the server");
}

/* ---- the repository ------------------------------------------------------------ */

/* server_uid -- the OS user the server runs as: the owner of its data directory
 * (PostgreSQL refuses to start otherwise), else, over a Unix socket, of this backend's
 * process. -1 when unknown (a remote server, no right to read data_directory). */
static long server_uid(cctx *x, const char **how)
{
    char err[512], path[64];
    struct stat sb;
    long uid = -1;
    PGresult *res = query(x, "select current_setting('data_directory'), pg_backend_pid()", err,
                          sizeof(err));
    if (res && PQntuples(res) == 1 && stat(PQgetvalue(res, 0, 0), &sb) == 0) {
        uid = (long)sb.st_uid;
        *how = "the owner of its data directory";
    } else if (PQhost(x->conn) && PQhost(x->conn)[0] == '/') {
        PQclear(res);
        res = query(x, "select pg_backend_pid()", err, sizeof(err));
        snprintf(path, sizeof(path), "/proc/%s", res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "0");
        if (res && stat(path, &sb) == 0) {
            uid = (long)sb.st_uid;
            *how = "the owner of its process";
        }
    }
    PQclear(res);
    return uid;
}

static const char *user_name(uid_t uid, char *buf, size_t len)
{
    struct passwd *pw = getpwuid(uid);
    if (pw)
        snprintf(buf, len, "%s", pw->pw_name);
    else
        snprintf(buf, len, "uid %lu", (unsigned long)uid);
    return buf;
}

typedef struct own_scan {
    uid_t want;
    size_t n, foreign, writable;
    char foreign_ex[PATH_MAX], writable_ex[PATH_MAX];
    uid_t foreign_uid;
    mode_t writable_mode;
} own_scan;

static void own_note(own_scan *s, const char *path, const struct stat *sb)
{
    s->n++;
    if (sb->st_uid != s->want && !s->foreign++) {
        snprintf(s->foreign_ex, sizeof(s->foreign_ex), "%s", path);
        s->foreign_uid = sb->st_uid;
    }
    if (!S_ISLNK(sb->st_mode) && (sb->st_mode & (S_IWGRP | S_IWOTH)) && !s->writable++) {
        snprintf(s->writable_ex, sizeof(s->writable_ex), "%s", path);
        s->writable_mode = sb->st_mode & 07777;
    }
}

/* own_walk -- note dir's entries, and theirs down to depth levels below. Bounded:
 * a big repository has millions of segments in wal/<16 hex>/, whose folders this
 * reaches (what a root run or a wrong umask leaves is there too). */
static void own_walk(own_scan *s, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) && s->n < 200000) {
        char p[PATH_MAX];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= sizeof(p) ||
            lstat(p, &sb) != 0)
            continue;
        own_note(s, p, &sb);
        if (depth > 1 && S_ISDIR(sb.st_mode))
            own_walk(s, p, depth - 1);
    }
    closedir(d);
}

static void check_repository(cctx *x)
{
    ck *c = &x->c[C_REPOSITORY];
    char u1[64], u2[64];
    struct stat sb;

    if (!x->have_inv) {
        ck_set(c, CK_FAIL, NULL, "could not read the repository \"%s\" (the error above says why)",
               x->loc);
        ck_hintf(c, "create it as the server's user (install -d -o postgres -m 0750 DIR, or "
                    "ragsafe-pitr init --repo %s) and point archive_command at it", x->loc);
        return;
    }
    if (storage_is_s3(x->inv.st)) {
        ck_set(c, CK_OK, NULL, "%s: repo.json read (S3: ownership n/a)", x->loc);
        return;
    }
    const char *root = storage_location(x->inv.st);
    if (stat(root, &sb) != 0) {
        ck_set(c, CK_FAIL, "the error names the problem", "could not stat \"%s\": %s", root,
               strerror(errno));
        return;
    }
    const char *how = NULL;
    long suid = x->conn ? server_uid(x, &how) : -1;
    if (suid >= 0 && (uid_t)suid != sb.st_uid) {
        ck_set(c, CK_FAIL, NULL, "\"%s\" is owned by %s, the server runs as %s (%s): "
                                 "archive_command cannot write it",
               root, user_name(sb.st_uid, u1, sizeof(u1)), user_name((uid_t)suid, u2, sizeof(u2)),
               how);
        ck_hintf(c, "chown -R %s: %s", u2, root);
        return;
    }
    own_scan s;
    memset(&s, 0, sizeof(s));
    s.want = sb.st_uid;
    own_note(&s, root, &sb);
    own_walk(&s, root, 2);
    user_name(sb.st_uid, u1, sizeof(u1));
    if (s.foreign) {
        ck_set(c, CK_FAIL, NULL, "%zu entr%s not owned by %s, the repository's owner, e.g. \"%s\" "
                                 "(%s): runs as %s fail on them",
               s.foreign, s.foreign == 1 ? "y" : "ies", u1, s.foreign_ex,
               user_name(s.foreign_uid, u2, sizeof(u2)), u1);
        ck_hintf(c, "chown -R %s: %s, and run every tool as %s", u1, root, u1);
        return;
    }
    if (s.writable) {
        ck_set(c, CK_FAIL, NULL, "\"%s\" is writable by %s (mode %04o): others can alter or "
                                 "delete backups",
               s.writable_ex, s.writable_mode & S_IWOTH ? "everyone" : "its group",
               (unsigned)s.writable_mode);
        ck_hintf(c, "chmod -R go-w %s", root);
        return;
    }
    if ((sb.st_mode & (S_IROTH | S_IXOTH)) && !x->inv.r->info.encrypted) {
        ck_set(c, CK_WARN, NULL, "others can read \"%s\" (mode %04o), and it is not encrypted: "
                                 "the backups hold every row",
               root, (unsigned)(sb.st_mode & 07777));
        ck_hintf(c, "chmod o-rwx %s", root);
        return;
    }
    ck_set(c, CK_OK, NULL, "%s, owned by %s%s, mode %04o", root, u1,
           suid >= 0 ? " (the server's user)" : " (the server's user is unknown here)",
           (unsigned)(sb.st_mode & 07777));
}

static void check_cipher_key(cctx *x)
{
    ck *c = &x->c[C_CIPHER_KEY];
    const char *kf = getenv("RAGSAFE_CIPHER_KEY_FILE"); /* absolute: repo_cli_setup */
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    if (!x->inv.r->info.encrypted) {
        ck_set(c, CK_OK, NULL, "n/a: the repository is not encrypted");
        return;
    }
    if (!kf || !*kf) { /* inventory_load refuses this: defensive */
        ck_set(c, CK_FAIL, "give --cipher-key-file FILE", "an encrypted repository and no key");
        return;
    }
    size_t n = x->loc_real ? strlen(x->loc_real) : 0;
    if (n && strncmp(kf, x->loc_real, n) == 0 && (kf[n] == '/' || kf[n] == '\0')) {
        ck_set(c, CK_FAIL, "keep the key outside the repository (and a copy off this host)",
               "the key \"%s\" is inside the repository: whoever has the backups has the key",
               kf);
        return;
    }
    /* a key others can read is refused when it is loaded (cipher_key_load) */
    ck_set(c, CK_OK, NULL, "\"%s\", outside the repository, mode 0600 or stricter", kf);
}

static void check_free_space(cctx *x)
{
    ck *c = &x->c[C_FREE_SPACE];
    struct statvfs vs;
    char a[32], b[32];
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    if (storage_is_s3(x->inv.st)) {
        ck_set(c, CK_OK, NULL, "n/a: an S3 repository");
        return;
    }
    const char *root = storage_location(x->inv.st);
    if (statvfs(root, &vs) != 0) {
        ck_set(c, CK_FAIL, "the error names the problem", "could not statvfs \"%s\": %s", root,
               strerror(errno));
        return;
    }
    uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    fmt_bytes(a, sizeof(a), avail);
    fmt_bytes(b, sizeof(b), x->min_free);
    if (avail < x->min_free)
        ck_set(c, CK_FAIL,
               "free space on the repository's file system (ragsafe-pitr expire removes what "
               "the retention policy allows), or grow it; archiving stops when it is full",
               "%s free on \"%s\", below the minimum of %s (--min-free)", a, root, b);
    else
        ck_set(c, CK_OK, NULL, "%s free, minimum %s", a, b);
}

static void check_backup_age(cctx *x)
{
    ck *c = &x->c[C_BACKUP_AGE];
    char a[32], m[32], t[32];
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    const backup_info *newest = NULL;
    for (size_t i = 0; i < x->inv.nbackups; i++)
        if (!newest || x->inv.backups[i].stop_time > newest->stop_time)
            newest = &x->inv.backups[i];
    if (!newest) {
        ck_set(c, CK_FAIL, NULL, "no base backup in the repository: nothing can be restored");
        ck_hintf(c, "take one: %s/ragsafe-basebackup -d CONNINFO --repo %s (install-cron.sh "
                    "schedules it daily)", x->bindir, x->loc);
        return;
    }
    int64_t age = (int64_t)time(NULL) - newest->stop_time;
    fmt_age(a, sizeof(a), age);
    fmt_age(m, sizeof(m), x->max_backup_age);
    timefmt_utc(t, sizeof(t), newest->stop_time);
    if (age > x->max_backup_age) {
        ck_set(c, CK_FAIL, NULL, "the newest backup, %s, ended %s ago (%s), over the objective "
                                 "of %s (--max-backup-age)",
               newest->label, a, t, m);
        ck_hintf(c, "take a base backup now (%s/ragsafe-basebackup -d CONNINFO --repo %s) and "
                    "look at why the scheduled one did not run (its job log)", x->bindir, x->loc);
    } else {
        ck_set(c, CK_OK, NULL, "%s, ended %s ago; objective %s", newest->label, a, m);
    }
}

static void check_wal_age(cctx *x)
{
    ck *c = &x->c[C_WAL_AGE];
    char a[32], m[32], name[WAL_NAME_LEN + 1] = "";
    int64_t newest = 0;
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    for (size_t i = 0; i < x->inv.nsegs; i++)
        if (!x->inv.segs[i].streamed && x->inv.segs[i].mtime >= newest) {
            newest = x->inv.segs[i].mtime;
            seg_name(&x->inv, name, x->inv.segs[i].tli, x->inv.segs[i].segno);
        }
    fmt_age(m, sizeof(m), x->rpo);
    if (!name[0]) {
        ck_set(c, CK_WARN, "see archive_command, archiver and wal_switch",
               "no WAL segment archived yet (before this check's switch)");
        return;
    }
    int64_t age = (int64_t)time(NULL) - newest;
    fmt_age(a, sizeof(a), age);
    if (age > x->rpo)
        ck_set(c, CK_WARN,
               "archiving stalled or the server wrote nothing for that long: see archiver; "
               "archive_timeout <= the RPO makes a quiet server switch segments",
               "the newest segment, %s, was archived %s before this check, over the RPO of %s",
               name, a, m);
    else
        ck_set(c, CK_OK, NULL, "%s, archived %s ago; RPO %s", name, a, m);
}

static void check_verify(cctx *x)
{
    ck *c = &x->c[C_VERIFY];
    char *buf = NULL, a[32], t[32];
    size_t len;
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    int r = storage_get(x->inv.st, PITR_VERIFY_STATUS_KEY, 1 << 20, &buf, &len);
    if (r == RS_NOT_FOUND) {
        ck_set(c, CK_WARN, NULL, "never verified");
        ck_hintf(c, "run %s/ragsafe-pitr verify --repo %s (install-cron.sh runs it daily)",
                 x->bindir, x->loc);
        return;
    }
    if (r != 0) {
        ck_set(c, CK_FAIL, "the error above names the problem",
               "could not read the last verify result (%s)", PITR_VERIFY_STATUS_KEY);
        return;
    }
    json_t *j = json_loadb(buf, len, 0, NULL);
    free(buf);
    json_t *when = json_object_get(j, "time"), *intact = json_object_get(j, "intact");
    if (!json_is_integer(when) || !json_is_boolean(intact)) {
        ck_set(c, CK_WARN, NULL, "the last verify result (%s) is unreadable",
               PITR_VERIFY_STATUS_KEY);
        ck_hintf(c, "run %s/ragsafe-pitr verify --repo %s", x->bindir, x->loc);
        json_decref(j);
        return;
    }
    int64_t w = (int64_t)json_integer_value(when);
    fmt_age(a, sizeof(a), (int64_t)time(NULL) - w);
    timefmt_utc(t, sizeof(t), w);
    if (json_is_true(intact)) {
        ck_set(c, CK_OK, NULL, "intact, %s ago (%s)", a, t);
    } else {
        ck_set(c, CK_FAIL, NULL, "the last verify, %s ago (%s), found damage: %lld corrupt "
                                 "objects, %lld missing segments, %lld damaged backups",
               a, t, (long long)json_integer_value(json_object_get(j, "corrupt_objects")),
               (long long)json_integer_value(json_object_get(j, "missing_segments")),
               (long long)json_integer_value(json_object_get(j, "damaged_backups")));
        ck_hintf(c, "run %s/ragsafe-pitr verify --repo %s for the details; take a new base "
                    "backup if one is damaged", x->bindir, x->loc);
    }
    json_decref(j);
}

static void check_milvus(cctx *x)
{
    ck *c = &x->c[C_MILVUS_AGE];
    milvus_scan sc;
    char *buf = NULL, a[32], m[32];
    size_t len;
    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    if (milvus_scan_snapshots(x->inv.st, &sc) != 0) {
        ck_set(c, CK_FAIL, "the error above names the problem", "could not list the Milvus snapshots");
        return;
    }
    if (!sc.count) {
        ck_set(c, CK_OK, NULL, "n/a: no Milvus snapshot in the repository");
        return;
    }
    int64_t started = sc.newest_mtime;
    if (object_get_buf(x->inv.st, sc.newest, 256u << 20, &buf, &len, NULL) == 0) {
        json_t *j = json_loadb(buf, len, 0, NULL);
        json_t *s = json_object_get(j, "started_unix");
        if (json_is_integer(s))
            started = (int64_t)json_integer_value(s);
        json_decref(j);
    }
    free(buf);
    int64_t age = (int64_t)time(NULL) - started;
    fmt_age(a, sizeof(a), age);
    fmt_age(m, sizeof(m), x->max_milvus_age);
    const char *label = sc.newest + strlen("milvus/snapshots/");
    int ll = (int)(strlen(label) - 9);
    if (age > x->max_milvus_age)
        ck_set(c, CK_FAIL,
               "take a snapshot (ragsafe-milvus snapshot) and look at why the scheduled one did "
               "not run (its job log)",
               "the newest Milvus snapshot, %.*s, started %s ago, over the objective of %s "
               "(--max-milvus-age)", ll, label, a, m);
    else
        ck_set(c, CK_OK, NULL, "%.*s, started %s ago; objective %s", ll, label, a, m);
}

/*
 * check_receiver -- a repository with a receiver's status expects it running: stale
 * (no update for PITR_STREAM_STALE_SECONDS) means the streamed recovery point stopped
 * moving, and a synchronous receiver that is down makes every commit wait. n/a when
 * there is no status (no receiver deployed).
 */
static void check_receiver(cctx *x)
{
    ck *c = &x->c[C_RECEIVER];
    stream_status ss;
    char a[32], l[LSN_STR_LEN + 1], m[32];

    if (!x->have_inv) {
        ck_set(c, CK_FAIL, "fix the repository first", "not checked: the repository could not be read");
        return;
    }
    int r = stream_status_load(x->inv.st, (int64_t)time(NULL), &ss);
    if (r == RS_NOT_FOUND) {
        ck_set(c, CK_OK, NULL, "n/a: no receiver status in the repository (%s)",
               PITR_STREAM_STATUS_KEY);
        return;
    }
    if (r != 0) {
        ck_set(c, CK_WARN, "the error above names the problem; is ragsafe-receive the same "
                           "version as ragsafe-pitr?",
               "could not read the receiver status (%s)", PITR_STREAM_STATUS_KEY);
        return;
    }
    fmt_age(a, sizeof(a), ss.age_seconds);
    lsn_format(l, ss.flush_lsn);
    if (ss.sysid && ss.sysid != x->inv.r->info.sysid) {
        ck_set(c, CK_FAIL, "a repository holds one cluster: point the receiver (-d) at this "
                           "repository's cluster, or give it a repository of its own",
               "the receiver streams system %" PRIu64 ", the repository holds %" PRIu64,
               ss.sysid, x->inv.r->info.sysid);
        return;
    }
    if (ss.stale) {
        ck_set(c, ss.synchronous > 0 ? CK_FAIL : CK_WARN, NULL,
               "the receiver (slot %s on %s, pid %lld) last updated its status %s ago%s; "
               "flushed up to %s", ss.slot, ss.host, ss.pid, a,
               ss.synchronous > 0 ? ", as a synchronous standby: commits wait for it" : "", l);
        ck_hintf(c, "start ragsafe-receive (systemctl start ragsafe-receive; its journal says "
                    "why it stopped); if it is retired for good, remove %s from the repository "
                    "and drop its slot: SELECT pg_drop_replication_slot('%s')",
                 PITR_STREAM_STATUS_KEY, ss.slot[0] ? ss.slot : "name");
        return;
    }
    fmt_age(m, sizeof(m), x->rpo);
    char lag[32];
    fmt_age(lag, sizeof(lag), ss.lag_seconds);
    if (ss.lag_seconds > x->rpo) {
        ck_set(c, CK_WARN, "the receiver cannot keep up: see its log, the network and the "
                           "repository's write speed",
               "the receiver (slot %s) is %s behind, over the RPO of %s; flushed up to %s",
               ss.slot, lag, m, l);
        return;
    }
    ck_set(c, CK_OK, NULL, "slot %s on %s, flushed up to %s, %s behind%s, updated %s ago",
           ss.slot, ss.host, l, lag, ss.synchronous > 0 ? ", synchronous" : "", a);
}

/* ---- the report ------------------------------------------------------------------ */

static const char *status_word(int s, int json)
{
    if (json)
        return s == CK_OK ? "ok" : s == CK_WARN ? "warning" : "failed";
    return s == CK_OK ? "ok" : s == CK_WARN ? "WARNING" : "FAILED";
}

static void report(cctx *x, int *nwarn, int *nfail)
{
    strbuf failed, warned;
    json_t *arr = x->o->json ? json_array() : NULL;
    int nok = 0;

    strbuf_init(&failed);
    strbuf_init(&warned);
    *nwarn = *nfail = 0;
    for (int i = 0; i < C_COUNT; i++) {
        ck *c = &x->c[i];
        if (!c->done) /* every path sets it: defensive */
            ck_set(c, CK_FAIL, "report this as a bug", "not run");
        if (c->status == CK_FAIL) {
            (*nfail)++;
            (void)strbuf_appendf(&failed, "%s%s", failed.len ? ", " : "", check_names[i]);
        } else if (c->status == CK_WARN) {
            (*nwarn)++;
            (void)strbuf_appendf(&warned, "%s%s", warned.len ? ", " : "", check_names[i]);
        } else {
            nok++;
        }
        if (arr) {
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:o}", "name", check_names[i],
                                                 "status", status_word(c->status, 1), "detail",
                                                 c->detail.buf,
                                                 "hint", c->hint.len ? json_string(c->hint.buf)
                                                                     : json_null()));
            continue;
        }
        printf("  %s: %s%s%s%s\n", check_names[i], status_word(c->status, 0),
               c->detail.len ? " (" : "", c->detail.buf, c->detail.len ? ")" : "");
        if (c->status != CK_OK && c->hint.len)
            printf("    hint: %s\n", c->hint.buf);
    }
    if (arr) {
        json_dumpf(arr, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(arr);
    } else {
        printf("%d ok, %d warning%s, %d failed%s%s%s\n", nok, *nwarn, *nwarn == 1 ? "" : "s",
               *nfail, *nfail ? " (" : "", failed.buf, *nfail ? ")" : "");
    }
    fflush(stdout);
    /* for the job wrapper's status line and notification (ragsafe-job.sh) */
    if (*nfail)
        log_error("check: %d failed: %s%s%s", *nfail, failed.buf, *nwarn ? "; warnings: " : "",
                  warned.buf);
    else if (*nwarn)
        log_warning("check: %d warning%s: %s", *nwarn, *nwarn == 1 ? "" : "s", warned.buf);
    strbuf_release(&failed);
    strbuf_release(&warned);
}

/* objective -- flag, else the config file's key, else def; a duration. -1 reported. */
static int objective(const pitr_opts *o, const char *flag, const char *key, const char *def,
                     int64_t *out)
{
    char what[64];
    const char *v = config_resolve(flag, NULL, o->cfg, key);
    snprintf(what, sizeof(what), "--%s", key);
    if (config_parse_duration(what, v ? v : def, out) != 0)
        return -1;
    return 0;
}

int cmd_check(const pitr_opts *o)
{
    cctx x;
    int ret = EXIT_USAGE, nwarn, nfail;
    const char *mf;

    memset(&x, 0, sizeof(x));
    for (int i = 0; i < C_COUNT; i++) {
        strbuf_init(&x.c[i].detail);
        strbuf_init(&x.c[i].hint);
    }
    x.o = o;
    x.loc = o->repo;
    if (objective(o, o->chk_rpo, "rpo", "5m", &x.rpo) != 0 ||
        objective(o, o->chk_max_backup_age, "max-backup-age", "30h", &x.max_backup_age) != 0 ||
        objective(o, o->chk_max_milvus_age, "max-milvus-age", "30h", &x.max_milvus_age) != 0 ||
        objective(o, o->chk_switch_timeout, "switch-timeout", "60", &x.switch_timeout) != 0)
        goto out;
    mf = config_resolve(o->chk_min_free, NULL, o->cfg, "min-free");
    if (parse_size("--min-free", mf ? mf : "50G", &x.min_free) != 0)
        goto out;
    mf = config_resolve(o->chk_max_slot_wal, NULL, o->cfg, "max-slot-wal");
    if (parse_size("--max-slot-wal", mf ? mf : "1G", &x.max_slot_wal) != 0)
        goto out;
    x.conninfo = config_resolve(o->conninfo, NULL, o->cfg, "dbname");
    ret = EXIT_CHECK_CRITICAL;

    {
        ssize_t n = readlink("/proc/self/exe", x.bindir, sizeof(x.bindir) - 1);
        char *slash;
        x.bindir[n > 0 ? n : 0] = '\0';
        if ((slash = strrchr(x.bindir, '/')))
            *slash = '\0';
        else
            snprintf(x.bindir, sizeof(x.bindir), "/usr/local/bin");
    }
    if (strncmp(x.loc, "s3://", 5) != 0)
        x.loc_real = realpath(x.loc, NULL);

    /* the repository as it was before this check's segment switch. Without the shared
     * retention lock: check only reads (an expire running meanwhile changes nothing it
     * relies on), never waits for an expire, and creates no lock file (run as root, it
     * would leave one owned by root, which the repository check then reports) */
    x.have_inv = inventory_load_unlocked(&x.inv, o->repo) == 0;
    check_server(&x);
    check_repository(&x);
    check_cipher_key(&x);
    check_free_space(&x);
    check_backup_age(&x);
    check_wal_age(&x);
    check_verify(&x);
    check_milvus(&x);
    check_receiver(&x);

    if (x.conn) {
        check_sysid(&x);
        check_settings(&x);
        check_archive_command(&x);
        check_switch(&x);
        check_archiver(&x); /* after the switch: a failing command has failed by then */
        check_wal_senders(&x); /* first: replication's own walsender may linger a moment */
        check_replication(&x);
        check_slots(&x);
    } else {
        not_checked(&x);
    }

    report(&x, &nwarn, &nfail);
    ret = nfail ? EXIT_CHECK_CRITICAL : nwarn ? EXIT_CHECK_WARNING : EXIT_OK;
out:
    pgconn_close(x.conn);
    if (x.have_inv)
        inventory_release(&x.inv);
    free(x.loc_real);
    for (int i = 0; i < C_COUNT; i++) {
        strbuf_release(&x.c[i].detail);
        strbuf_release(&x.c[i].hint);
    }
    return ret;
}
