/*
 * dump.c -- ragsafe-pitr dump: pg_dump of one database (or some of its tables or
 * schemas) as of any target, from the repository alone; the live cluster is never
 * contacted.
 *
 * Order: plan (an unreachable target is refused, naming the nearest reachable one,
 * before anything is written) -> a private scratch directory (mkdtemp under --scratch,
 * $TMPDIR or /var/tmp) -> a worker process runs cmd_restore into SCRATCH/pgdata with
 * --start semantics (the restore's own free-space check, owner, restore_command and
 * recovery follow-up) -> pg_dump of the promoted server into a temporary name beside OUT
 * -> fsync -> the parent renames it to OUT -> the server is stopped and the scratch
 * removed. The parent only waits: SIGINT/SIGTERM/SIGHUP set a flag, the worker's
 * process group is killed, every postgres process running on the scratch directory is
 * stopped, the temporary output and the scratch are removed, on every exit path.
 *
 * The scratch server: its own socket directory (SCRATCH/sock, mode 0700, owner only),
 * listen_addresses = '' (no TCP), its own pg_hba.conf (local trust: only the socket's
 * owner and root can reach the socket), archive_mode = off (restore's default), the
 * restore_command restore writes (the repository, read), and
 * recovery paused at the target and promoted there before anything else connects
 * (restore --start's promotion, restore.c use_fast_promote: no end-of-recovery
 * checkpoint), default_transaction_read_only = on. Promoted, not left paused: a server paused at the target is still replaying, and
 * a transaction in flight at the target keeps the locks the startup process replayed
 * for it: a DROP TABLE,
 * TRUNCATE or ALTER committed just after the target (the very accident a dump is for)
 * leaves an AccessExclusiveLock that blocks pg_dump forever (test 086 hit it). Promoted,
 * those transactions are aborted and their locks gone, and the data are exactly those
 * of the target all the same (recovery stopped there). The promoted copy makes a
 * timeline of its own, but only in the scratch directory: archive_mode is off and the
 * repository only read (the new timeline's number is chosen by reading its history
 * files). The instant the dump stands for is pg_last_xact_replay_timestamp() and
 * pg_last_wal_replay_lsn(), which keep their values after the promotion.
 *
 * Selective restore, as pgBackRest's --db-include: only the global objects, the
 * chosen database and postgres (start_and_follow connects to it) get their relation
 * files; the other databases' relation files are restored hollow: sparse files of
 * their size, all zeroes, that take no space (PG_VERSION and pg_filenode.map are
 * written). Why hollow files and not none: recovery must replay WAL for every database.
 * Each page's first change after the backup's redo point carries a full-page image
 * (full_page_writes), which overwrites whatever is there, zeroes included; later
 * records then find that page. A page no record touches is never read. So replay of
 * the other databases works, and they end up unusable, which no one sees: autovacuum
 * is off in the scratch copy and nothing connects to them. Leaving the files out
 * altogether would behave the same for replay, but a sized file keeps smgr's view
 * (relation sizes, truncation records) the same as in a full restore, which is what
 * pgBackRest relies on. The OID of the database comes from the list of databases
 * backup.json records (basebackup/dblist.c: pg_database, equal before and after the
 * backup); a backup without one (older, or the databases changed while it ran) has its
 * pg_database read from the base tar (global/1262, a first pass over the tar that
 * writes nothing else: the OIDs of every tuple, live or dead, that carries the name;
 * more is harmless). A name the backup does not know, or a pg_database moved by VACUUM
 * FULL, falls back to a full restore.
 *
 * Databases created after the backup: their files are not in the tar, so nothing of
 * theirs is hollowed; they come whole from WAL replay (CREATE DATABASE's default
 * WAL_LOG strategy logs every page). But a name may stand for another database at the
 * target than in the backup (dropped and created again, renamed; or created with
 * STRATEGY FILE_COPY, whose replay copies its template's files, hollow ones
 * included): before anything connects to the database, restored_oid asks the scratch
 * server which OID the name has at the target, and if that is not a restored one the
 * worker exits DUMP_REDO_FULL and the dump starts over with a full restore. Hollowing
 * stays decided in one place, db_file_hollow (extract.c), for every reader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "strbuf.h"

static volatile sig_atomic_t g_signal;

/* the worker's exit status when the selective restore restored the wrong database:
 * the parent starts over with a full restore */
#define DUMP_REDO_FULL 42
/* ... when the scratch server could not replay the filtered WAL (walfilter.h): the
 * parent starts over without the filter */
#define DUMP_REDO_UNFILTERED 43

static void on_signal(int sig)
{
    g_signal = sig;
}

typedef struct dump_ctx {
    char scratch[PATH_MAX + 32];
    char pgdata[PATH_MAX + 64];
    char sock[PATH_MAX + 64];
    char tmp_out[PATH_MAX * 2 + 64];
    char result[PATH_MAX + 64];
    char user[256];
    uid_t uid;
    gid_t gid;
    int port;
} dump_ctx;

/* scratch_connect -- a connection to database dbname of the scratch server; NULL
 * reported. */
static PGconn *scratch_connect(const dump_ctx *d, const char *dbname)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", d->port);
    const char *kw[] = {"host", "port", "user", "dbname", "application_name", NULL};
    const char *val[] = {d->sock, port, d->user, dbname, "ragsafe-pitr-dump", NULL};
    PGconn *conn = PQconnectdbParams(kw, val, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_error("could not connect to the scratch server: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* cmdline_has -- /proc/PID/cmdline holds an argument naming a path inside dir. */
static int cmdline_has(pid_t pid, const char *dir)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t dl = strlen(dir);
    for (char *a = buf; a < buf + n; a += strlen(a) + 1)
        if (strncmp(a, dir, dl) == 0 && (a[dl] == '/' || a[dl] == '\0'))
            return 1;
    return 0;
}

/* scratch_pids -- the processes whose command line names the scratch directory (the
 * postmaster: pg_ctl starts it with -D SCRATCH/pgdata), plus the PID in
 * postmaster.pid. Their count (at most max). */
static size_t scratch_pids(const dump_ctx *d, pid_t *out, size_t max)
{
    size_t n = 0;
    char pidf[PATH_MAX + 128], line[64];
    snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", d->pgdata);
    FILE *f = fopen(pidf, "r");
    if (f) {
        if (fgets(line, sizeof(line), f) && atol(line) > 0 && kill((pid_t)atol(line), 0) == 0)
            out[n++] = (pid_t)atol(line);
        fclose(f);
    }
    DIR *dp = opendir("/proc");
    struct dirent *de;
    while (dp && (de = readdir(dp)) != NULL && n < max) {
        long pid = atol(de->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        if (!cmdline_has((pid_t)pid, d->scratch))
            continue;
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= out[i] == (pid_t)pid;
        if (!dup)
            out[n++] = (pid_t)pid;
    }
    if (dp)
        closedir(dp);
    return n;
}

/*
 * stop_scratch_server -- stop every process running on the scratch directory: sig
 * first (SIGINT: fast shutdown; SIGQUIT: immediate), SIGKILL after 30 s. Twice over,
 * a short while apart, unless once: a postmaster that pg_ctl forked just before its
 * worker was killed shows up late (once: the worker ended by itself, its pg_ctl long
 * done). 0 | -1 (a process survived SIGKILL; reported).
 */
static int stop_scratch_server(const dump_ctx *d, int sig, int once)
{
    pid_t pids[64];
    for (int round = 0; round < (once ? 1 : 2); round++) {
        size_t n = scratch_pids(d, pids, ARRAY_LEN(pids));
        if (n)
            log_info("stopping %zu process(es) of the scratch server", n);
        for (size_t i = 0; i < n; i++)
            kill(pids[i], sig);
        double t0 = now_seconds();
        int killed = 0;
        while (n) {
            size_t alive = 0;
            for (size_t i = 0; i < n; i++) {
                waitpid(pids[i], NULL, WNOHANG); /* reap if ours */
                if (kill(pids[i], 0) == 0 && cmdline_has(pids[i], d->scratch))
                    pids[alive++] = pids[i];
            }
            n = alive;
            if (!n)
                break;
            if (now_seconds() - t0 > 30 && !killed) {
                for (size_t i = 0; i < n; i++)
                    kill(pids[i], SIGKILL);
                killed = 1;
            } else if (now_seconds() - t0 > 40) {
                log_error("a process of the scratch server (PID %ld) would not stop",
                          (long)pids[0]);
                return -1;
            }
            usleep(100 * 1000);
        }
        if (round == 0 && !once)
            usleep(500 * 1000);
    }
    return 0;
}

static int write_owned(const dump_ctx *d, const char *path, const char *text)
{
    if (durable_write_file(path, text, strlen(text), 0600, 0) != 0)
        return -1;
    if (geteuid() == 0 && chown(path, d->uid, d->gid) != 0)
        return log_errno("could not change the owner of \"%s\"", path);
    return 0;
}

/* run_pg_dump -- pg_dump against the scratch server into d->tmp_out; its status. */
static int run_pg_dump(const pitr_opts *o, const dump_ctx *d, const char *bin)
{
    char pg_dump[PATH_MAX + 16], port[16], jobs[16];
    const char *argv[64 + 2 * 256];
    size_t n = 0;

    snprintf(pg_dump, sizeof(pg_dump), "%s/pg_dump", bin);
    snprintf(port, sizeof(port), "%d", d->port);
    argv[n++] = pg_dump;
    argv[n++] = "--host";
    argv[n++] = d->sock;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--username";
    argv[n++] = d->user;
    argv[n++] = "--dbname";
    argv[n++] = o->conninfo;
    argv[n++] = "--no-password";
    argv[n++] = "--format";
    argv[n++] = o->dump_format;
    if (o->dump_jobs > 1) {
        snprintf(jobs, sizeof(jobs), "%d", o->dump_jobs);
        argv[n++] = "--jobs";
        argv[n++] = jobs;
    }
    if (o->dump_schema_only)
        argv[n++] = "--schema-only";
    if (o->dump_data_only)
        argv[n++] = "--data-only";
    for (size_t i = 0; i < o->ndump_tables && n < ARRAY_LEN(argv) - 8; i++) {
        argv[n++] = "--table";
        argv[n++] = o->dump_tables[i];
    }
    for (size_t i = 0; i < o->ndump_schemas && n < ARRAY_LEN(argv) - 8; i++) {
        argv[n++] = "--schema";
        argv[n++] = o->dump_schemas[i];
    }
    argv[n++] = "--file";
    argv[n++] = d->tmp_out;
    argv[n] = NULL;
    log_info("running %s against the scratch server (database \"%s\")", pg_dump, o->conninfo);
    pid_t pid = fork();
    if (pid < 0)
        return log_errno("could not fork");
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execv(pg_dump, (char *const *)argv);
        perror("ragsafe-pitr: could not run pg_dump");
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return log_errno("could not wait for pg_dump");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_error("pg_dump failed (status %d)", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
        return -1;
    }
    return 0;
}

/*
 * describe -- what the dump stands for, from the scratch server: the last replayed
 * commit and its time, and the tables of the selection with their row counts.
 * A JSON object, or NULL (reported).
 */
static json_t *describe(const pitr_opts *o, const dump_ctx *d)
{
    json_t *j = NULL, *tabs;
    PGresult *r = NULL;
    strbuf tl, sl;
    PGconn *conn;

    strbuf_init(&tl);
    strbuf_init(&sl);
    conn = scratch_connect(d, o->conninfo);
    if (!conn)
        goto out;
    r = PQexec(conn, "SELECT pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn(),"
                     " pg_is_in_recovery()");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("query failed: %s", PQerrorMessage(conn));
        goto out;
    }
    j = json_object();
    json_object_set_new(j, "database", json_string(o->conninfo));
    json_object_set_new(j, "last_replay_timestamp",
                        PQgetisnull(r, 0, 0) ? json_null() : json_string(PQgetvalue(r, 0, 0)));
    json_object_set_new(j, "last_replay_lsn",
                        PQgetisnull(r, 0, 1) ? json_null() : json_string(PQgetvalue(r, 0, 1)));
    json_object_set_new(j, "state", json_string(strcmp(PQgetvalue(r, 0, 2), "t") == 0
                                                    ? "in recovery" : "promoted"));
    PQclear(r);
    r = NULL;
    for (size_t i = 0; i < o->ndump_tables; i++)
        if (strbuf_appendf(&tl, "%s\n", o->dump_tables[i]) != 0)
            goto fail;
    for (size_t i = 0; i < o->ndump_schemas; i++)
        if (strbuf_appendf(&sl, "%s\n", o->dump_schemas[i]) != 0)
            goto fail;
    /* the tables pg_dump takes: --table names (as to_regclass resolves them, no
     * patterns), else those of the --schema schemas, else every user table */
    const char *params[] = {tl.len ? tl.buf : "", sl.len ? sl.buf : ""};
    r = PQexecParams(conn,
                     "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                     " ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
                     " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                     " AND n.nspname NOT LIKE 'pg_toast%'"
                     " AND ($1 = '' OR c.oid IN (SELECT to_regclass(x) FROM"
                     "      unnest(string_to_array(rtrim($1, E'\\n'), E'\\n')) x))"
                     " AND ($2 = '' OR n.nspname = ANY (string_to_array(rtrim($2, E'\\n'), E'\\n')))"
                     " ORDER BY 1, 2",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("could not list the tables: %s", PQerrorMessage(conn));
        goto fail;
    }
    tabs = json_array();
    json_object_set_new(j, "tables", tabs);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *ns = PQgetvalue(r, i, 0), *rel = PQgetvalue(r, i, 1);
        char *qn = PQescapeIdentifier(conn, ns, strlen(ns));
        char *qr = PQescapeIdentifier(conn, rel, strlen(rel));
        strbuf q;
        strbuf_init(&q);
        int e = !qn || !qr || strbuf_appendf(&q, "SELECT count(*) FROM %s.%s", qn, qr) != 0;
        PQfreemem(qn);
        PQfreemem(qr);
        if (e) {
            strbuf_release(&q);
            log_error("out of memory");
            goto fail;
        }
        PGresult *c = PQexec(conn, q.buf);
        strbuf_release(&q);
        json_t *t = json_object();
        char full[256];
        snprintf(full, sizeof(full), "%s.%s", ns, rel);
        json_object_set_new(t, "table", json_string(full));
        if (PQresultStatus(c) == PGRES_TUPLES_OK)
            json_object_set_new(t, "rows", json_integer(atoll(PQgetvalue(c, 0, 0))));
        else
            json_object_set_new(t, "rows", json_null());
        PQclear(c);
        json_array_append_new(tabs, t);
    }
    goto out;
fail:
    json_decref(j);
    j = NULL;
out:
    PQclear(r);
    PQfinish(conn);
    strbuf_release(&tl);
    strbuf_release(&sl);
    return j;
}

/*
 * restored_oid -- the database named o->conninfo at the target is one of those whose
 * relation files were restored (o->db_include). A name that came to another database
 * since the backup (dropped and created again, renamed) would otherwise be read from
 * hollow files: the connection fails on them (the older dump met "PANIC: could not open
 * critical system index 2662" in test 086's case), and zero pages no catalog needs
 * would read as empty tables. Asked of postgres (always restored), never of the
 * database itself. 0 | 1 (another database: restore the whole cluster) | -1 reported.
 */
static int restored_oid(const pitr_opts *o, const dump_ctx *d)
{
    int ret = -1;
    PGresult *r = NULL;
    PGconn *conn = scratch_connect(d, "postgres");
    if (!conn)
        goto out;
    const char *params[] = {o->conninfo};
    r = PQexecParams(conn, "SELECT oid FROM pg_database WHERE datname = $1", 1, NULL, params,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("could not read pg_database: %s", PQerrorMessage(conn));
        goto out;
    }
    ret = 0;
    if (PQntuples(r) == 1) {
        uint32_t oid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        ret = 1;
        for (size_t i = 0; i < o->ndb_include; i++)
            if (o->db_include[i] == oid)
                ret = 0;
        if (ret)
            log_notice("database \"%s\" is OID %u at the target, not the backup's: it was "
                       "created or renamed since; the dump restores the whole cluster again",
                       o->conninfo, oid);
    } /* none: pg_dump says the database does not exist */
out:
    PQclear(r);
    PQfinish(conn);
    return ret;
}

/*
 * filter_failed -- the restore failed with the WAL filter on (o->given_plan's handover
 * filtered) and its server log has a PANIC: what replay of a filter that left a change
 * of a page whose earlier changes it had turned into no-ops would end in ("WAL
 * contains references to invalid pages" on a hollow page, "invalid lp" on an older
 * one, ...). The handover hands over filtered WAL only whole (walfilter.h), so this
 * is a fallback, not a path: the filter can cost the dump time, never the dump.
 */
static int filter_failed(const pitr_opts *o, const dump_ctx *d)
{
    size_t n = 0;
    uint64_t a, b, c, e;
    const char *why;
    char logf[PATH_MAX + 96], line[1024];
    int found = 0;

    if (!o->given_plan || !o->given_plan->h ||
        (handover_filter_set(o->given_plan->h, &n, &a, &b, &c, &e, &why), n == 0))
        return 0;
    snprintf(logf, sizeof(logf), "%s/ragsafe-start.log", d->pgdata);
    FILE *f = fopen(logf, "r");
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, " PANIC: ") != NULL;
    if (f)
        fclose(f);
    return found;
}

/* worker_run -- in the forked child: restore, start, dump, describe. Its exit status. */
static int worker_run(const pitr_opts *o, const dump_ctx *d)
{
    pitr_opts ro = *o;
    char bin[PATH_MAX], hba[PATH_MAX + 64];
    char s_sock[PATH_MAX + 128], s_port[32], s_hba[PATH_MAX + 128];
    const char **sets = calloc(o->nsets + 16, sizeof(*sets));
    size_t ns = 0;

    if (!sets)
        return log_error("out of memory"), EXIT_FAIL;
    /* a disposable server: its data directory is removed after the dump, and a crash
     * (of it, or of the machine) only loses a dump not yet renamed into place; nothing
     * it writes needs to survive one. fsync = off: no fsync at restartpoints, the
     * end-of-recovery checkpoint or commits; synchronous_commit = off likewise
     * (full_page_writes only matters for crash recovery of its own: left as it is).
     * A larger shared_buffers keeps the replayed pages in memory, and a long
     * checkpoint distance spares restartpoints during replay. First: --set overrides
     * them (postgresql.auto.conf: the last line of a name wins). */
    sets[ns++] = "fsync=off";
    sets[ns++] = "synchronous_commit=off";
    sets[ns++] = "shared_buffers=256MB";
    sets[ns++] = "max_wal_size=8GB";
    sets[ns++] = "checkpoint_timeout=1h";
    for (size_t i = 0; i < o->nsets; i++)
        sets[ns++] = o->sets[i];
    snprintf(hba, sizeof(hba), "%s/pg_hba.conf", d->scratch);
    /* only the owner of the 0700 socket directory (and root) reach the socket */
    if (write_owned(d, hba, "# ragsafe-pitr dump: the scratch server's private socket only\n"
                            "local all all trust\n") != 0)
        return EXIT_FAIL;
    snprintf(s_sock, sizeof(s_sock), "unix_socket_directories=%s", d->sock);
    snprintf(s_port, sizeof(s_port), "port=%d", d->port);
    snprintf(s_hba, sizeof(s_hba), "hba_file=%s", hba);
    sets[ns++] = "listen_addresses=";
    sets[ns++] = s_sock;
    sets[ns++] = s_port;
    sets[ns++] = s_hba;
    sets[ns++] = "default_transaction_read_only=on";
    sets[ns++] = "autovacuum=off";
    sets[ns++] = "logging_collector=off";
    ro.sets = sets;
    ro.nsets = ns;
    ro.pgdata = d->pgdata;
    /* promoted at the pause by restore --start (use_fast_promote): no immediate
     * end-of-recovery checkpoint, which would write every page replay dirtied, the other
     * databases' too: into their hollow files, scattered, which also makes removing them
     * slow (a freed extent each, and a discard each on a file system mounted with
     * discard); the checkpoint the promotion asks for is a spread one (a few pages a
     * second while pg_dump runs) */
    ro.action = "promote";
    ro.start = 1;
    ro.standby = 0;
    ro.delta = 0;
    ro.force = 0;
    ro.archive_preserve = 0;
    ro.json = 0;
    ro.dump_scratch = 1;
    ro.owner = d->user;
    double t0 = now_seconds();
    int r = cmd_restore(&ro);
    free(sets);
    if (r != EXIT_OK && filter_failed(o, d))
        return DUMP_REDO_UNFILTERED;
    if (r != EXIT_OK)
        return r;
    double t_restore = now_seconds() - t0;
    /* -v: the server's own account of the replay (part of t_restore) */
    {
        char logf[PATH_MAX + 96], line[1024];
        snprintf(logf, sizeof(logf), "%s/ragsafe-start.log", d->pgdata);
        FILE *f = fopen(logf, "r");
        while (f && fgets(line, sizeof(line), f)) {
            char *m = strstr(line, "redo done at");
            if (m) {
                m[strcspn(m, "\n")] = '\0';
                log_info("scratch server: %s", m);
            }
        }
        if (f)
            fclose(f);
    }
    /* before anything connects to it: the database must be one whose files were
     * restored (see restored_oid) */
    if (o->ndb_include) {
        r = restored_oid(o, d);
        if (r != 0)
            return r < 0 ? EXIT_FAIL : DUMP_REDO_FULL;
    }
    t0 = now_seconds();
    json_t *j = describe(o, d);
    if (!j)
        return EXIT_FAIL;
    double t_describe = now_seconds() - t0;
    find_pg_bin(o, bin, sizeof(bin));
    t0 = now_seconds();
    if (run_pg_dump(o, d, bin) != 0) {
        json_decref(j);
        return EXIT_FAIL;
    }
    double t_pg_dump = now_seconds() - t0;
    /* durable before the parent renames it into place: the output is the one file of
     * a dump that must survive a crash */
    t0 = now_seconds();
    if (durable_fsync_tree(d->tmp_out) != 0) {
        json_decref(j);
        return EXIT_FAIL;
    }
    json_t *tm = json_object();
    json_object_set_new(j, "timing", tm);
    json_object_set_new(tm, "restore_and_recovery", json_real(t_restore));
    json_object_set_new(tm, "row_counts", json_real(t_describe));
    json_object_set_new(tm, "pg_dump", json_real(t_pg_dump));
    json_object_set_new(tm, "fsync_output", json_real(now_seconds() - t0));
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (!text || durable_write_file(d->result, text, strlen(text), 0600, 0) != 0) {
        free(text);
        return EXIT_FAIL;
    }
    free(text);
    return EXIT_OK;
}

/*
 * filter_fits -- the handover's filter (handover_filter: chosen from the backup of the
 * plan's first scan) turned only databases into no-ops whose relation files this
 * restore leaves hollow: none of inc, and a selective restore at all (ninc > 0). Says
 * what the filter did (-v). 1 | 0.
 */
static int filter_fits(const wal_handover *ho, const uint32_t *inc, size_t ninc)
{
    size_t n;
    uint64_t records = 0, rewritten = 0, bytes = 0, joined = 0;
    const char *why = "";
    const uint32_t *set = handover_filter_set(ho, &n, &records, &rewritten, &bytes, &joined, &why);

    if (n == 0)
        return 1;
    if (ninc == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < ninc; k++)
            if (set[i] == inc[k])
                return 0;
    log_info("WAL filter: %llu of %llu records (%.1f MiB) of the %zu other database%s turned "
             "into no-ops for the scratch server's replay; %llu record%s joined across "
             "segment boundaries",
             (unsigned long long)rewritten, (unsigned long long)records,
             (double)bytes / (1 << 20), n, PLURAL(n), (unsigned long long)joined,
             PLURAL(joined));
    if (why && *why)
        log_info("WAL filter: stopped early in %s (past the WAL recovery replays: every "
                 "segment it replays was filtered whole)", why);
    return 1;
}

/*
 * worker -- worker_run under the retention lock (shared), taken again here when the
 * parent gives its plan (it released its own before fork(): a lock held across fork()
 * could leave the worker a copy of a mutex S3's renewal thread held at that instant),
 * and released before the exit (S3: the lock object would otherwise stay until it
 * expires). The plan's backup must still be there: an expire may have slipped in
 * between the parent's release and this.
 */
static int worker(const pitr_opts *o, const dump_ctx *d)
{
    inventory *inv = o->given_plan ? o->given_plan->inv : NULL;
    char bkey[512];
    int r;

    if (!inv)
        return worker_run(o, d);
    if (storage_reader_lock(inv->st, &inv->lock) != 0)
        return EXIT_FAIL;
    snprintf(bkey, sizeof(bkey), "backups/%s/%s", o->given_plan->p->backup->label,
             backupinfo_base_file(o->given_plan->p->backup));
    if (storage_stat(inv->st, bkey, NULL, NULL) != 0) {
        log_error("backup %s was removed while the dump planned (expire?)",
                  o->given_plan->p->backup->label);
        log_hint("run the dump again: it plans from the backups there are now");
        r = EXIT_FAIL;
    } else {
        r = worker_run(o, d);
    }
    storage_lock_release(inv->lock);
    inv->lock = NULL;
    return r;
}

static int64_t path_bytes(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    if (!S_ISDIR(sb.st_mode))
        return (int64_t)sb.st_size;
    int64_t total = 0;
    DIR *dp = opendir(path);
    struct dirent *de;
    while (dp && (de = readdir(dp)) != NULL) {
        char p[PATH_MAX * 3];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (int64_t)sb.st_size;
    }
    if (dp)
        closedir(dp);
    return total;
}

/*
 * pg_database_oids -- the OIDs of the tuples of a pg_database heap file named name
 * (oid is its first column, datname the second, since PostgreSQL 12). Appends to
 * inc (at most max). Their count.
 */
static size_t pg_database_oids(const unsigned char *f, size_t len, const char *name,
                               uint32_t *inc, size_t n, size_t max)
{
    const size_t bs = 8192;
    for (size_t pg = 0; pg + bs <= len; pg += bs) {
        const unsigned char *page = f + pg;
        uint16_t lower = (uint16_t)(page[12] | page[13] << 8);
        if (lower < 24 || lower > bs)
            continue;
        for (size_t lp = 24; lp + 4 <= lower; lp += 4) {
            uint32_t v = (uint32_t)page[lp] | (uint32_t)page[lp + 1] << 8 |
                         (uint32_t)page[lp + 2] << 16 | (uint32_t)page[lp + 3] << 24;
            uint32_t off = v & 0x7fff, flags = (v >> 15) & 3, tlen = v >> 17;
            if (flags != 1 || off + tlen > bs || tlen < 24)
                continue;
            const unsigned char *tup = page + off;
            unsigned hoff = tup[22];
            if (hoff < 23 || hoff + 4 + 64 > tlen)
                continue;
            uint32_t oid = (uint32_t)tup[hoff] | (uint32_t)tup[hoff + 1] << 8 |
                           (uint32_t)tup[hoff + 2] << 16 | (uint32_t)tup[hoff + 3] << 24;
            const char *dn = (const char *)tup + hoff + 4;
            if (strnlen(dn, 64) < 64 && strcmp(dn, name) == 0 && n < max) {
                int dup = 0;
                for (size_t i = 0; i < n; i++)
                    dup |= inc[i] == oid;
                if (!dup)
                    inc[n++] = oid;
            }
        }
    }
    return n;
}

/*
 * find_db_oids -- the databases whose relation files the scratch restore writes: name's
 * and postgres's, read from the backup's pg_database (a first pass over the base tar
 * writing only global/1262 into SCRATCH/probe). *n 0: a full restore (the name is not
 * in the backup's pg_database, or that file is not where it is expected).
 * 0 | -1 reported.
 */
static int find_db_oids(inventory *inv, const backup_info *b, const dump_ctx *d,
                        const char *name, uint32_t *inc, size_t *n)
{
    char probe[PATH_MAX + 64], file[PATH_MAX + 96], key[512];
    manifest m;
    extract_stats stats;
    unsigned char *buf = NULL;
    int ret = -1;

    *n = 0;
    memset(&stats, 0, sizeof(stats));
    if (b->databases) {
        /* recorded at backup time (basebackup/dblist.c): no pass over the tar */
        log_info("database list: from backup %s's backup.json (no first pass over the "
                 "base tar)", b->label);
        for (size_t i = 0; i < b->ndatabases; i++)
            if (strcmp(b->databases[i].name, name) == 0)
                if (*n < 32)
                    inc[(*n)++] = b->databases[i].oid; /* names are unique: one */
        for (size_t i = 0; *n && i < b->ndatabases; i++)
            if (strcmp(b->databases[i].name, "postgres") == 0 && b->databases[i].oid != inc[0])
                inc[(*n)++] = b->databases[i].oid;
        if (*n == 0)
            log_notice("database \"%s\" is not in backup %s's list of databases (created or "
                       "renamed since?): a full restore", name, b->label);
        else
            log_info("restoring the relation files of database \"%s\" (OID %u) and postgres "
                     "only", name, inc[0]);
        return 0;
    }
    log_info("database list: backup %s records none: reading its pg_database from the base "
             "tar (a first pass)", b->label);
    if (backup_manifest_load(inv->st, b, &m, NULL, NULL) != 0)
        return -1;
    if (!manifest_find(&m, "global/1262")) {
        log_notice("the backup has no global/1262 (pg_database moved): a full restore");
        manifest_release(&m);
        return 0;
    }
    snprintf(probe, sizeof(probe), "%s/probe", d->scratch);
    snprintf(key, sizeof(key), "backups/%s/%s", b->label, backupinfo_base_file(b));
    if (mkdir(probe, 0700) != 0) {
        log_errno("could not create \"%s\"", probe);
        manifest_release(&m);
        return -1;
    }
    extract_opts eo = {.dest = probe, .m = &m, .mprefix = "", .only = "global/1262"};
    double t0 = now_seconds();
    int r = extract_object(inv->st, key, &eo, &stats);
    manifest_release(&m);
    extract_stats_release(&stats);
    if (r != 0)
        goto out;
    snprintf(file, sizeof(file), "%s/global/1262", probe);
    FILE *f = fopen(file, "rb");
    if (!f) {
        log_errno("could not open \"%s\"", file);
        goto out;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !(buf = malloc((size_t)sb.st_size + 1)) ||
        fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        log_errno("could not read \"%s\"", file);
        fclose(f);
        goto out;
    }
    fclose(f);
    size_t k = pg_database_oids(buf, (size_t)sb.st_size, name, inc, 0, 32);
    if (k == 0) {
        log_notice("database \"%s\" is not in backup %s's pg_database (created or renamed "
                   "since?): a full restore", name, b->label);
    } else {
        *n = pg_database_oids(buf, (size_t)sb.st_size, "postgres", inc, k, 64);
        log_info("restoring the relation files of database \"%s\" (OID %u) and postgres "
                 "only (pg_database read in %.1f s)", name, inc[0], now_seconds() - t0);
    }
    ret = 0;
out:
    free(buf);
    durable_remove_tree(probe);
    return ret;
}

int cmd_dump(const pitr_opts *o)
{
    dump_ctx d;
    inventory inv;
    plan p;
    char out_abs[PATH_MAX * 2 + 16];
    int ret = EXIT_FAIL, made_scratch = 0, renamed = 0, r, have_inv = 0, sig_installed = 0;
    int worker_done = 0; /* the last worker exited by itself (not killed) */
    uint32_t inc[64];
    tsmap_entry *tsm = NULL;
    char *tsdirs = NULL;
    size_t ninc = 0;
    pitr_opts wo = *o, po = *o;
    struct sigaction sa, old_int, old_term, old_hup;
    pid_t pid = -1;
    json_t *res = NULL;
    double t0 = now_seconds(), t_plan = 0, t_list = 0, t_stop = 0, t_rm = 0;
    wal_handover *ho = NULL;
    given_plan gp;
    char sbase[PATH_MAX];

    memset(&d, 0, sizeof(d));
    memset(&sa, 0, sizeof(sa));
    /* the scratch base: $TMPDIR or /var/tmp unless --scratch (resolved again below) */
    snprintf(sbase, sizeof(sbase), "%s",
             o->scratch ? o->scratch
                        : getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
    /* the plan first: an unreachable target is refused before any scratch work. It is
     * the restore's plan too (given_plan: not made twice), and like the restore's it
     * spools the WAL it verifies for the scratch server's restore_command (handover.c),
     * here beside the scratch directory to come (SCRATCH_BASE/.ragsafe-dump.ragsafe-wal-
     * XXXXXX): a refused or failed plan removes it, and nothing else is written */
    r = inventory_load(&inv, o->repo);
    if (r != 0)
        return pitr_status(r);
    {
        char real[PATH_MAX], hint[PATH_MAX + 32];
        uint64_t reserve = 0;
        for (size_t i = 0; i < inv.nbackups; i++)
            if (inv.backups[i].raw_bytes > reserve)
                reserve = inv.backups[i].raw_bytes;
        reserve += reserve / 20 + ((uint64_t)64 << 20);
        if (realpath(sbase, real)) {
            snprintf(hint, sizeof(hint), "%s/ragsafe-dump", strcmp(real, "/") ? real : "");
            ho = handover_new(hint, reserve);
        }
    }
    po.handover = ho;
    /* the other databases' page records replay as no-ops (walfilter.h):
     * RAGSAFE_NO_WAL_FILTER=1 keeps them, to measure or to rule the filter out */
    if (!getenv("RAGSAFE_NO_WAL_FILTER") || !*getenv("RAGSAFE_NO_WAL_FILTER"))
        po.wal_filter_db = o->conninfo;
    r = plan_make(&inv, &po, &p);
    if (r != 0) {
        handover_free(ho);
        inventory_release(&inv);
        return pitr_status(r);
    }
    have_inv = 1;
    if (ho) {
        uint64_t nsegs;
        handover_keep(ho, &inv, &p, &nsegs);
        log_info("the plan spooled %llu verified WAL segment%s for the handover",
                 (unsigned long long)nsegs, PLURAL(nsegs));
    }
    gp.inv = &inv;
    gp.p = &p;
    gp.h = ho;

    /* OUT: its directory must exist; the temporary name sits beside it */
    {
        char dirbuf[PATH_MAX];
        snprintf(dirbuf, sizeof(dirbuf), "%s", o->dump_file);
        char *slash = strrchr(dirbuf, '/');
        const char *base = slash ? slash + 1 : dirbuf;
        if (!*base) {
            log_error("--file \"%s\" names a directory, not a dump", o->dump_file);
            {
                ret = EXIT_USAGE;
                goto early;
            }
        }
        char *dir = slash ? (slash == dirbuf ? "/" : (*slash = '\0', dirbuf)) : ".";
        char real[PATH_MAX];
        if (!realpath(dir, real)) {
            log_errno("could not resolve the directory of --file \"%s\"", o->dump_file);
            goto early;
        }
        snprintf(out_abs, sizeof(out_abs), "%s/%s", strcmp(real, "/") ? real : "", base);
        snprintf(d.tmp_out, sizeof(d.tmp_out), "%s/.%s.ragsafe-dump-%ld.tmp",
                 strcmp(real, "/") ? real : "", base, (long)getpid());
        struct stat sb;
        if (strcmp(o->dump_format, "directory") == 0 && lstat(out_abs, &sb) == 0) {
            log_error("--file \"%s\" exists: --format directory writes a new directory",
                      o->dump_file);
            log_hint("remove it or name another");
            goto early;
        }
    }

    /* the owner of the scratch server: --owner, else (as root) postgres, else us */
    {
        struct passwd *pw = o->owner ? getpwnam(o->owner)
                                     : geteuid() == 0 ? getpwnam("postgres") : getpwuid(geteuid());
        if (!pw) {
            log_error("unknown user \"%s\"", o->owner ? o->owner : "postgres");
            log_hint("name the user the scratch server runs as with --owner USER");
            {
                ret = EXIT_USAGE;
                goto early;
            }
        }
        if (pw->pw_uid == 0) {
            log_error("PostgreSQL cannot run as root: the scratch server needs --owner USER");
            {
                ret = EXIT_USAGE;
                goto early;
            }
        }
        if (geteuid() != 0 && pw->pw_uid != geteuid()) {
            log_error("--owner %s needs root", o->owner);
            {
                ret = EXIT_USAGE;
                goto early;
            }
        }
        d.uid = pw->pw_uid;
        d.gid = pw->pw_gid;
        snprintf(d.user, sizeof(d.user), "%s", pw->pw_name);
    }

    /* signals: noted, acted on by the wait below; the worker gets them from us */
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sig_installed = 1;

    /* the scratch directory */
    {
        const char *base = sbase;
        char real[PATH_MAX];
        if (!realpath(base, real)) {
            log_errno("could not resolve the scratch base directory \"%s\"", base);
            goto out;
        }
        snprintf(d.scratch, sizeof(d.scratch), "%s/ragsafe-dump-XXXXXX", real);
        if (!mkdtemp(d.scratch)) {
            log_errno("could not create a scratch directory under \"%s\"", real);
            goto out;
        }
        made_scratch = 1;
        snprintf(d.pgdata, sizeof(d.pgdata), "%s/pgdata", d.scratch);
        snprintf(d.sock, sizeof(d.sock), "%s/sock", d.scratch);
        snprintf(d.result, sizeof(d.result), "%s/result.json", d.scratch);
        if (mkdir(d.sock, 0700) != 0) {
            log_errno("could not create \"%s\"", d.sock);
            goto out;
        }
        if (geteuid() == 0 && (chown(d.scratch, d.uid, d.gid) != 0 ||
                               chown(d.sock, d.uid, d.gid) != 0)) {
            log_errno("could not give the scratch directory \"%s\" to %s", d.scratch, d.user);
            goto out;
        }
        /* any port: the socket lives in a private directory, there is no TCP */
        d.port = 20000 + (int)(getpid() % 30000);
        log_info("scratch directory \"%s\"", d.scratch);
    }
    t_plan = now_seconds() - t0;
    double t_list0 = now_seconds();
    if (find_db_oids(&inv, p.backup, &d, o->conninfo, inc, &ninc) != 0)
        goto out;
    t_list = now_seconds() - t_list0;
    if (ho && !filter_fits(ho, inc, ninc)) {
        /* the filter was chosen from the first scan's backup and would drop records of a
         * database this restore writes: the handed-over WAL goes, restore_command
         * fetches the original segments */
        log_info("WAL handover dropped: its filter does not match backup %s's database "
                 "list", p.backup->label);
        handover_free(ho);
        ho = NULL;
        gp.h = NULL;
    }
    /* tablespaces go into the scratch directory too (SCRATCH/tblspc/OID), never to the
     * locations backup.json records: those are the live cluster's */
    if (p.backup->ntablespaces) {
        size_t nb = p.backup->ntablespaces;
        tsm = calloc(nb + o->ntsmap, sizeof(*tsm));
        tsdirs = calloc(nb, PATH_MAX + 64);
        if (!tsm || !tsdirs) {
            log_error("out of memory");
            goto out;
        }
        size_t nt = 0;
        char tdir[PATH_MAX + 64];
        snprintf(tdir, sizeof(tdir), "%s/tblspc", d.scratch);
        /* the server's user must pass through it to its tablespaces */
        if (mkdir(tdir, 0700) != 0 ||
            (geteuid() == 0 && chown(tdir, d.uid, d.gid) != 0)) {
            log_errno("could not create \"%s\"", tdir);
            goto out;
        }
        for (size_t i = 0; i < o->ntsmap; i++)
            tsm[nt++] = o->tsmap[i];
        for (size_t k = 0; k < nb; k++) {
            int mapped = 0;
            for (size_t i = 0; i < o->ntsmap; i++)
                mapped |= o->tsmap[i].oid == p.backup->tablespaces[k].oid;
            if (mapped)
                continue;
            char *dir = tsdirs + k * (PATH_MAX + 64);
            snprintf(dir, PATH_MAX + 64, "%s/tblspc/%u", d.scratch, p.backup->tablespaces[k].oid);
            tsm[nt].oid = p.backup->tablespaces[k].oid;
            tsm[nt++].dir = dir;
        }
        wo.tsmap = tsm;
        wo.ntsmap = nt;
    }
    if (ninc) {
        wo.db_include = inc;
        wo.ndb_include = ninc;
    }
    wo.given_plan = &gp;
    /* the worker takes the retention lock again (see worker) */
    storage_lock_release(inv.lock);
    inv.lock = NULL;

    int status = 0, signalled = 0;
redo:
    worker_done = 0;
    if (g_signal)
        goto out;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        log_errno("could not fork");
        goto out;
    }
    if (pid == 0) {
        setpgid(0, 0);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        fflush(stdout);
        _exit(worker(&wo, &d));
    }
    setpgid(pid, pid);
    double t_kill = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, signalled ? WNOHANG : 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            log_errno("could not wait for the dump worker");
            goto out;
        }
        if (g_signal && !signalled) {
            log_error("interrupted by signal %d: stopping the dump", (int)g_signal);
            kill(-pid, SIGTERM);
            signalled = 1;
            t_kill = now_seconds();
        }
        if (signalled) {
            if (now_seconds() - t_kill > 10)
                kill(-pid, SIGKILL);
            usleep(50 * 1000);
        }
    }
    pid = -1;
    worker_done = !signalled && WIFEXITED(status);
    if (g_signal) {
        if (!signalled)
            log_error("interrupted by signal %d", (int)g_signal);
        goto out;
    }
    int redo_full = WIFEXITED(status) && WEXITSTATUS(status) == DUMP_REDO_FULL && ninc;
    int redo_plain = WIFEXITED(status) && WEXITSTATUS(status) == DUMP_REDO_UNFILTERED &&
                     wo.given_plan;
    if (redo_full || redo_plain) {
        if (redo_plain)
            log_notice("the scratch server could not replay the filtered WAL (a PANIC, "
                       "above): the dump starts over without the filter");
        /* the server, its data directory and its tablespaces go; the scratch stays */
        if (o->ntsmap) {
            log_error("could not dump database \"%s\" %s, and a second restore would write "
                      "into the --tablespace-map directories again", o->conninfo,
                      redo_full ? "from a selective restore" : "from the filtered WAL");
            log_hint("empty them and run the dump again%s",
                     redo_full ? "" : " with RAGSAFE_NO_WAL_FILTER=1");
            goto out;
        }
        if (stop_scratch_server(&d, SIGQUIT, 0) != 0 || durable_remove_tree(d.pgdata) != 0)
            goto out;
        /* the worker used the repository's connections, the plan's handover went into
         * the removed data directory: the next worker loads and plans again itself
         * (with no WAL filter: wo has none) */
        wo.given_plan = NULL;
        for (size_t k = 0; tsdirs && k < wo.ntsmap; k++)
            if (durable_remove_tree(wo.tsmap[k].dir) != 0)
                goto out;
        if (redo_full) {
            ninc = 0;
            wo.db_include = NULL;
            wo.ndb_include = 0;
        }
        goto redo;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != EXIT_OK) {
        ret = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAIL;
        if (ret == EXIT_OK)
            ret = EXIT_FAIL;
        log_error("the dump failed");
        goto out;
    }
    {
        json_error_t je;
        res = json_load_file(d.result, 0, &je);
        if (!res) {
            log_error("could not read the dump's result \"%s\": %s", d.result, je.text);
            goto out;
        }
    }
    if (durable_rename(d.tmp_out, out_abs) != 0)
        goto out;
    renamed = 1;
    ret = EXIT_OK;
out:
    if (pid > 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (have_inv) {
early:
        handover_free(ho); /* removes the spool unless the worker moved it into pg_wal */
        ho = NULL;
        plan_release(&p);
        inventory_release(&inv);
        have_inv = 0;
    }
    if (made_scratch) {
        /* immediate (SIGQUIT) unless the scratch is kept: a fast shutdown's checkpoint
         * would write out every page replay dirtied, into files about to be removed */
        double t1 = now_seconds();
        int stop_failed =
            stop_scratch_server(&d, g_signal || !o->keep_scratch ? SIGQUIT : SIGINT,
                                worker_done) != 0;
        if (stop_failed)
            ret = EXIT_FAIL;
        t_stop = now_seconds() - t1;
        if (!renamed && d.tmp_out[0])
            durable_remove_tree(d.tmp_out); /* a partial dump never stays */
        t1 = now_seconds();
        if (o->keep_scratch) {
            log_notice("scratch directory kept (--keep-scratch): \"%s\"", d.scratch);
        } else if (stop_failed) {
            log_notice("scratch directory kept: its server did not stop: \"%s\"", d.scratch);
        } else if (durable_remove_tree(d.scratch) != 0) {
            log_error("could not remove the scratch directory \"%s\"", d.scratch);
            ret = EXIT_FAIL;
        }
        t_rm = now_seconds() - t1;
    }
    if (ret == EXIT_OK && res) {
        /* where the time went (-v; "timing" in --json) */
        json_t *tm = json_object_get(res, "timing");
        if (!tm)
            json_object_set_new(res, "timing", tm = json_object());
        json_object_set_new(tm, "plan", json_real(t_plan));
        json_object_set_new(tm, "database_list", json_real(t_list));
        json_object_set_new(tm, "server_stop", json_real(t_stop));
        json_object_set_new(tm, "scratch_removal", json_real(t_rm));
        log_info("time: plan %.1f s, database list %.1f s, restore and recovery %.1f s, row "
                 "counts %.1f s, pg_dump %.1f s, fsync of the dump %.1f s, server stop %.1f s, "
                 "scratch removal %.1f s; total %.1f s", t_plan, t_list,
                 json_real_value(json_object_get(tm, "restore_and_recovery")),
                 json_real_value(json_object_get(tm, "row_counts")),
                 json_real_value(json_object_get(tm, "pg_dump")),
                 json_real_value(json_object_get(tm, "fsync_output")), t_stop, t_rm,
                 now_seconds() - t0);
    }
    if (sig_installed) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
    }
    if (ret == EXIT_OK && res) {
        json_object_set_new(res, "file", json_string(out_abs));
        json_object_set_new(res, "format", json_string(o->dump_format));
        json_object_set_new(res, "bytes", json_integer(path_bytes(out_abs)));
        json_object_set_new(res, "seconds", json_real(now_seconds() - t0));
        json_t *oids = json_array();
        for (size_t i = 0; i < ninc; i++)
            json_array_append_new(oids, json_integer(inc[i]));
        /* [] : a full restore */
        json_object_set_new(res, "restored_database_oids", oids);
        if (o->json) {
            json_dumpf(res, stdout, JSON_INDENT(2));
            putchar('\n');
        } else {
            json_t *ts = json_object_get(res, "last_replay_timestamp");
            json_t *lsn = json_object_get(res, "last_replay_lsn");
            printf("dumped:          database \"%s\" into %s (format %s, %lld bytes) in %.1f s\n",
                   o->conninfo, out_abs, o->dump_format,
                   (long long)json_integer_value(json_object_get(res, "bytes")),
                   now_seconds() - t0);
            printf("as of:           last replayed commit %s, replay lsn %s (scratch server %s)\n",
                   json_is_string(ts) ? json_string_value(ts) : "(none)",
                   json_is_string(lsn) ? json_string_value(lsn) : "(none)",
                   json_string_value(json_object_get(res, "state")));
            if (ninc)
                printf("restored:        only the relation files of database \"%s\" (OID %u) "
                       "and postgres; the other databases' hollow (sparse, no disk blocks)\n",
                       o->conninfo, inc[0]);
            else
                printf("restored:        the whole cluster (database \"%s\" is not in the "
                       "backup under that name)\n", o->conninfo);
            size_t i;
            json_t *t;
            json_array_foreach(json_object_get(res, "tables"), i, t) {
                json_t *rows = json_object_get(t, "rows");
                printf("table:           %s: %s%lld rows\n",
                       json_string_value(json_object_get(t, "table")),
                       json_is_integer(rows) ? "" : "? ",
                       (long long)json_integer_value(rows));
            }
        }
    }
    json_decref(res);
    free(tsm);
    free(tsdirs);
    return ret;
}
