/*
 * dblist.c -- the databases of the cluster (pg_database's oid, datname, dattablespace)
 * recorded in backup.json, so that ragsafe-pitr dump knows which OID a name stands for
 * without a pass over the base tar.
 *
 * Which instant: the list must be that of the backup's end (the tar's global/1262 with
 * the WAL up to stop_lsn replayed: what a restore of the backup starts from). A plain
 * SQL query cannot run on the replication connection and, on a normal connection, sees
 * one instant that is not the backup's end: a CREATE, DROP, RENAME or SET TABLESPACE
 * of a database can commit between the query and BASE_BACKUP, or during it. So the
 * list is read twice, once before BASE_BACKUP is sent and once after the backup ended
 * (and its WAL is archived), and recorded only when both reads are equal: then no
 * database came, went, changed name or default tablespace in between (OIDs are not
 * reused within the time a backup takes), and the list holds at every instant of the
 * backup, its end included. When they differ, or a read fails (pg_hba.conf may allow
 * this role only replication connections), nothing is recorded and dump reads the
 * tar's pg_database as before: a missing list is never wrong, only slower.
 * Parsing global/1262 out of the tar stream would give the same bytes dump reads
 * today, but that copy is itself taken at some instant during the backup (a database
 * created after the copy is missing, and pages may be torn until replay), so it needs
 * the same care, and it would tie this to the stream parser.
 */
#include <stdlib.h>
#include <string.h>

#include "basebackup.h"
#include "log.h"

/* dblist_read -- pg_database, ordered by oid, into *out (malloc'd, *n entries).
 * 0 | 1 (could not read it: noted, not an error: the backup goes on without a list). */
static int dblist_read(const char *conninfo, backup_database **out, size_t *n)
{
    const char *keys[3], *vals[3];
    PGconn *c = NULL;
    PGresult *res = NULL;
    backup_database *v = NULL;
    int k = 0, ret = 1, rows = 0;

    *out = NULL;
    *n = 0;
    if (conninfo && conninfo[0]) {
        keys[k] = "dbname";
        vals[k++] = conninfo;
    }
    keys[k] = "fallback_application_name";
    vals[k++] = log_progname();
    keys[k] = vals[k] = NULL;
    c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        log_info("could not read the list of databases (dump will read the backup's "
                 "pg_database instead): %s", c ? strtok(PQerrorMessage(c), "\n") : "out of memory");
        goto out;
    }
    res = PQexec(c, "SELECT oid, datname, dattablespace FROM pg_catalog.pg_database ORDER BY oid");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_info("could not read the list of databases (dump will read the backup's "
                 "pg_database instead): %s", strtok(PQerrorMessage(c), "\n"));
        goto out;
    }
    rows = PQntuples(res);
    v = calloc((size_t)rows + 1, sizeof(*v));
    if (!v)
        goto out;
    for (int i = 0; i < rows; i++) {
        v[i].oid = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
        v[i].tablespace = (uint32_t)strtoul(PQgetvalue(res, i, 2), NULL, 10);
        if (!(v[i].name = strdup(PQgetvalue(res, i, 1))))
            goto out;
        *n = (size_t)i + 1;
    }
    *out = v;
    v = NULL;
    ret = 0;
out:
    if (v) {
        for (size_t i = 0; i < *n; i++)
            free(v[i].name);
        free(v);
        *n = 0;
    }
    PQclear(res);
    if (c)
        PQfinish(c);
    return ret;
}

static void dblist_free(backup_database *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].name);
    free(v);
}

void bb_dblist_start(bb_dblist *l, const char *conninfo)
{
    memset(l, 0, sizeof(*l));
    l->ok = dblist_read(conninfo, &l->v, &l->n) == 0;
}

void bb_dblist_finish(bb_dblist *l, const char *conninfo, backup_info *bi)
{
    backup_database *v = NULL;
    size_t n = 0;
    int same;

    if (!l->ok || dblist_read(conninfo, &v, &n) != 0)
        goto out;
    same = n == l->n;
    for (size_t i = 0; same && i < n; i++)
        same = v[i].oid == l->v[i].oid && v[i].tablespace == l->v[i].tablespace &&
               strcmp(v[i].name, l->v[i].name) == 0;
    if (!same) {
        log_info("the databases changed during the backup: no list recorded (dump will read "
                 "the backup's pg_database instead)");
        goto out;
    }
    dblist_free(bi->databases, bi->ndatabases);
    bi->databases = v;
    bi->ndatabases = n;
    v = NULL;
    n = 0;
    log_debug("recorded %zu database(s) in backup.json", bi->ndatabases);
out:
    dblist_free(v, n);
    bb_dblist_release(l);
}

void bb_dblist_release(bb_dblist *l)
{
    dblist_free(l->v, l->n);
    memset(l, 0, sizeof(*l));
}
