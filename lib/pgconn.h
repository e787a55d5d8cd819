/*
 * pgconn.h -- libpq connections for ragsafe tools: replication or normal, with the
 * server's usual refusals turned into messages with hints.
 *
 *     PGconn *c = pgconn_connect(conninfo_or_NULL, PGCONN_REPLICATION);  NULL: reported
 *     pgconn_identify(c, &id)                  IDENTIFY_SYSTEM; -1 reported
 *     pgconn_show(c, "archive_mode", &val)     SHOW; malloc'd value; -1 reported
 *     pgconn_close(c);
 *
 * conninfo is a libpq connection string or URI ("host=/run/pg user=postgres"); NULL
 * or "" means the PG* environment variables alone. For a replication connection,
 * replication=true is added after the caller's string (the caller's dbname is kept
 * but unused by a physical walsender). fallback_application_name is the program name.
 *
 * Server errors are reported as "could not ...: <server message>" plus a hint for the
 * refusals a DBA meets when setting up backups: max_wal_senders = 0, wal_level =
 * minimal, no REPLICATION attribute, pg_hba.conf without a replication line.
 * pgconn_report_result() does the same for a failed PGresult and returns the SQLSTATE
 * so a caller can tell data corruption (XX001) from other failures.
 */
#ifndef RAGSAFE_PGCONN_H
#define RAGSAFE_PGCONN_H

#include <libpq-fe.h>
#include <stdint.h>

enum { PGCONN_NORMAL = 0, PGCONN_REPLICATION = 1 };

#define PGCONN_SQLSTATE_DATA_CORRUPTED "XX001"

typedef struct pgconn_identity {
    uint64_t sysid;
    uint32_t tli;
    uint64_t xlogpos;
} pgconn_identity;

PGconn *pgconn_connect(const char *conninfo, int mode);
void pgconn_close(PGconn *conn);

/* IDENTIFY_SYSTEM on a replication connection. */
int pgconn_identify(PGconn *conn, pgconn_identity *id);

/* SHOW name; *value malloc'd. Works on replication connections too. */
int pgconn_show(PGconn *conn, const char *name, char **value);

/* Parse a GUC memory value as SHOW prints it ("16MB", "1GB", "8192") into bytes. */
int pgconn_parse_size(const char *s, uint64_t *bytes);

/* Log "what: <error>" for a failed result (or the connection's error when res is
 * NULL), plus a hint for the known refusals. Returns -1. If sqlstate is non-NULL it
 * receives the SQLSTATE (6 bytes incl. NUL; "" when unknown). */
int pgconn_report_result(PGconn *conn, const PGresult *res, const char *what, char *sqlstate);

/* Add a hint line for a server error message, if it is one we know. */
void pgconn_hint(const char *message);

/* Route server NOTICE / WARNING messages to log.h. */
void pgconn_route_notices(PGconn *conn);

#endif
