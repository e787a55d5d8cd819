/*
 * pgconn.c -- libpq connections with hints for the usual server refusals.
 */
#include "pgconn.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* trim_message -- copy of a libpq message without its trailing newline(s). */
static void trim_message(const char *msg, char *out, size_t outlen)
{
    size_t n;

    snprintf(out, outlen, "%s", msg ? msg : "");
    n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    /* libpq prefixes server errors with their severity; log.h adds its own */
    if (strncmp(out, "ERROR:  ", 8) == 0 || strncmp(out, "FATAL:  ", 8) == 0)
        memmove(out, out + 8, strlen(out + 8) + 1);
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/*
 * pgconn_hint -- a hint for a refusal a DBA meets when setting up base backups.
 * The matches are on PostgreSQL 15's English messages; a localized server gets no
 * hint, only its own message.
 */
void pgconn_hint(const char *message)
{
    if (!message)
        return;
    if (strstr(message, "max_wal_senders"))
        log_hint("set max_wal_senders to at least 2 and wal_level to replica (or logical) in "
                 "postgresql.conf, then restart the server");
    else if (strstr(message, "WAL level not sufficient") || strstr(message, "wal_level"))
        log_hint("set wal_level = replica (or logical) and max_wal_senders > 0 in postgresql.conf, "
                 "then restart the server");
    else if (strstr(message, "replication role") || strstr(message, "REPLICATION attribute") ||
             strstr(message, "permission denied to start WAL sender"))
        log_hint("give the role the REPLICATION attribute: ALTER ROLE name REPLICATION;");
    else if (strstr(message, "pg_hba.conf") && strstr(message, "replication"))
        log_hint("add a line for the \"replication\" pseudo-database to pg_hba.conf (e.g. "
                 "\"local replication name peer\" or \"host replication name addr/32 scram-sha-256\"), "
                 "then reload the server");
    else if (strstr(message, "password authentication failed") ||
             strstr(message, "no password supplied"))
        log_hint("check the password (PGPASSWORD, ~/.pgpass or the connection string)");
    else if (strstr(message, "Connection refused") || strstr(message, "No such file or directory"))
        log_hint("is the server running, and are host and port right?");
}

/* pgconn_connect -- connect; replication=true added for PGCONN_REPLICATION. */
PGconn *pgconn_connect(const char *conninfo, int mode)
{
    const char *keys[4], *vals[4];
    int n = 0;
    PGconn *conn;
    char msg[1024];

    if (conninfo && conninfo[0]) {
        keys[n] = "dbname";
        vals[n++] = conninfo;
    }
    if (mode == PGCONN_REPLICATION) {
        keys[n] = "replication";
        vals[n++] = "true";
    }
    keys[n] = "fallback_application_name";
    vals[n++] = log_progname();
    keys[n] = NULL;
    vals[n] = NULL;
    conn = PQconnectdbParams(keys, vals, 1);
    if (!conn) {
        log_error("could not connect to the server: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        trim_message(PQerrorMessage(conn), msg, sizeof(msg));
        log_error("could not connect to the server%s: %s",
                  mode == PGCONN_REPLICATION ? " in replication mode" : "", msg);
        pgconn_hint(msg);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* pgconn_close -- PQfinish; NULL is a no-op. */
void pgconn_close(PGconn *conn)
{
    if (conn)
        PQfinish(conn);
}

/* pgconn_report_result -- see pgconn.h. */
int pgconn_report_result(PGconn *conn, const PGresult *res, const char *what, char *sqlstate)
{
    char msg[2048];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (primary)
        trim_message(primary, msg, sizeof(msg));
    else if (res && PQresultErrorMessage(res)[0])
        trim_message(PQresultErrorMessage(res), msg, sizeof(msg));
    else
        trim_message(PQerrorMessage(conn), msg, sizeof(msg));
    if (!msg[0])
        snprintf(msg, sizeof(msg), "unexpected result status %s",
                 res ? PQresStatus(PQresultStatus(res)) : "(none)");
    log_error("%s: %s", what, msg);
    if (detail)
        log_detail("%s", detail);
    pgconn_hint(msg);
    if (sqlstate)
        snprintf(sqlstate, 6, "%s", state ? state : "");
    return -1;
}

/* pgconn_identify -- IDENTIFY_SYSTEM: systemid, timeline, xlogpos. */
int pgconn_identify(PGconn *conn, pgconn_identity *id)
{
    PGresult *res = PQexec(conn, "IDENTIFY_SYSTEM");
    int ret = -1;
    char *end;
    const char *pos;
    unsigned hi, lo;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgconn_report_result(conn, res, "could not identify the system", NULL);
        goto out;
    }
    if (PQntuples(res) != 1 || PQnfields(res) < 3) {
        log_error("could not identify the system: got %d rows and %d fields, expected 1 row and "
                  "at least 3 fields", PQntuples(res), PQnfields(res));
        goto out;
    }
    errno = 0;
    id->sysid = strtoull(PQgetvalue(res, 0, 0), &end, 10);
    if (errno || *end) {
        log_error("could not identify the system: bad system identifier \"%s\"", PQgetvalue(res, 0, 0));
        goto out;
    }
    id->tli = (uint32_t)strtoul(PQgetvalue(res, 0, 1), &end, 10);
    if (*end || id->tli == 0) {
        log_error("could not identify the system: bad timeline \"%s\"", PQgetvalue(res, 0, 1));
        goto out;
    }
    pos = PQgetvalue(res, 0, 2);
    if (sscanf(pos, "%X/%X", &hi, &lo) != 2) {
        log_error("could not identify the system: bad WAL position \"%s\"", pos);
        goto out;
    }
    id->xlogpos = ((uint64_t)hi << 32) | lo;
    ret = 0;
out:
    PQclear(res);
    return ret;
}

/* pgconn_show -- the value of one setting. */
int pgconn_show(PGconn *conn, const char *name, char **value)
{
    char sql[128], what[160];
    PGresult *res;
    int ret = -1;

    *value = NULL;
    snprintf(sql, sizeof(sql), "SHOW %s", name);
    snprintf(what, sizeof(what), "could not read setting \"%s\"", name);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 1) {
        pgconn_report_result(conn, res, what, NULL);
        goto out;
    }
    *value = strdup(PQgetvalue(res, 0, 0));
    if (!*value) {
        log_errno("could not allocate memory");
        goto out;
    }
    ret = 0;
out:
    PQclear(res);
    return ret;
}

/* pgconn_parse_size -- "16MB" / "1GB" / "8kB" / "8192" to bytes. */
int pgconn_parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    uint64_t v, mult = 1;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end == '\0' || strcmp(end, "B") == 0)
        mult = 1;
    else if (strcmp(end, "kB") == 0)
        mult = 1024;
    else if (strcmp(end, "MB") == 0)
        mult = 1024 * 1024;
    else if (strcmp(end, "GB") == 0)
        mult = 1024ull * 1024 * 1024;
    else if (strcmp(end, "TB") == 0)
        mult = 1024ull * 1024 * 1024 * 1024;
    else
        return -1;
    *bytes = v * mult;
    return 0;
}

/* notice_cb -- server messages: WARNINGs (e.g. checksum failures) as warnings. */
static void notice_cb(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char msg[2048];

    (void)arg;
    trim_message(primary ? primary : PQresultErrorMessage(res), msg, sizeof(msg));
    /* a Unix socket in the data directory: harmless, and said once per pass */
    if (strncmp(msg, "skipping special file", 21) == 0)
        log_debug("server: %s", msg);
    else if (sev && strcmp(sev, "WARNING") == 0)
        log_warning("server: %s", msg);
    else
        log_info("server: %s", msg);
}

/* pgconn_route_notices -- server NOTICE / WARNING through log.h instead of libpq's stderr. */
void pgconn_route_notices(PGconn *conn)
{
    PQsetNoticeReceiver(conn, notice_cb, NULL);
}
