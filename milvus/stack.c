/*
 * stack.c -- everything that talks to the Milvus stack and PostgreSQL: the stop and
 * start commands, signal handling, the health wait, Milvus' REST v2 API and the
 * PostgreSQL restore point; plus the small worker pool and formatting helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "http.h"
#include "log.h"
#include "milvus.h"

static volatile sig_atomic_t mv_signal;

/* mv_on_signal -- only records the signal: the walk and the workers look at the flag
 * between files and unwind, so the start command still runs. */
static void mv_on_signal(int signo)
{
    if (mv_signal == 0)
        mv_signal = signo;
}

void mv_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mv_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: sleeps and waits return early */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int mv_interrupted(void)
{
    return mv_signal;
}

int64_t mv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mv_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* mv_spawn -- fork /bin/sh -c cmd in its own process group (a Ctrl-C aimed at us must
 * not kill a half-run "docker compose start"), default signal dispositions, stdout to
 * out_fd (our stdout is for machine output). Returns the pid or -1 reported. */
static pid_t mv_spawn(const char *what, const char *cmd, int out_fd)
{
    pid_t pid = fork();

    if (pid < 0)
        return log_errno("could not fork for the %s command", what);
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(out_fd, STDOUT_FILENO) < 0)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* mv_reap -- wait for pid across EINTR (a signal must not make us forget the child). */
static int mv_reap(const char *what, pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return log_errno("could not wait for the %s command", what);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return log_error("%s command failed with exit status %d", what, WEXITSTATUS(status));
    return log_error("%s command was terminated by signal %d", what, WTERMSIG(status));
}

int mv_run_cmd(const char *what, const char *cmd)
{
    pid_t pid;

    log_debug("running %s command: %s", what, cmd); /* commands can hold secrets: -vv only */
    fflush(stdout);
    pid = mv_spawn(what, cmd, STDERR_FILENO);
    if (pid < 0)
        return -1;
    return mv_reap(what, pid);
}

int mv_capture_cmd(const char *what, const char *cmd, char **out)
{
    int p[2];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    pid_t pid;
    int ret = -1;

    *out = NULL;
    if (pipe2(p, O_CLOEXEC) != 0)
        return log_errno("could not create a pipe for the %s command", what);
    fflush(stdout);
    pid = mv_spawn(what, cmd, p[1]);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                log_errno("could not allocate");
                break;
            }
            buf = nb;
        }
        ssize_t n = read(p[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len > (1u << 20))
            break;
    }
    close(p[0]);
    if (mv_reap(what, pid) != 0 || buf == NULL)
        goto out;
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    *out = buf;
    buf = NULL;
    ret = 0;
out:
    free(buf);
    return ret;
}

int mv_health_ok(const char *url)
{
    http_opts ho = {.timeout_ms = 3000, .quiet = 1};
    http_response r;
    int ok = 0;

    if (http_get(url, &ho, &r) == 0)
        ok = (r.status == 200);
    log_debug("health \"%s\": status %ld", url, r.status);
    http_response_release(&r);
    return ok;
}

/* mv_sleep_ms -- sleep unless a signal arrives (nanosleep returns early on EINTR). */
static void mv_sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int mv_wait_healthy(const char *url, int64_t timeout)
{
    int64_t deadline = mv_now_ms() + timeout * 1000;

    for (;;) {
        if (mv_health_ok(url))
            return 0;
        if (mv_interrupted())
            return log_error("interrupted while waiting for \"%s\" to answer", url);
        if (mv_now_ms() >= deadline) {
            log_error("\"%s\" did not answer OK within %lld s", url, (long long)timeout);
            log_hint("raise --health-timeout, or check the stack's logs");
            return -1;
        }
        mv_sleep_ms(1000);
    }
}

/* ---- Milvus REST v2 ---- */

/* mv_milvus_post -- POST body to <url>/v2/vectordb/<path>; *data gets the "data" member
 * (a new reference, may be NULL). Milvus reports failures as HTTP 200 with a non-zero
 * "code"; success is 0 (2.4+) or 200 (2.3). Returns 0, RS_NOT_FOUND for HTTP 404 (an
 * older Milvus without the endpoint; quiet), 2 (quiet) for a transport failure when
 * quiet_down, else -1 reported. */
static int mv_milvus_post(const mv_opts *o, const char *path, json_t *body, json_t **data,
                          int quiet_down)
{
    char url[2048];
    http_opts ho = {.timeout_ms = 30000, .bearer = o->milvus_token, .quiet = quiet_down};
    http_response r = {0};
    json_t *root = NULL;
    char *text = NULL;
    int ret = -1;

    if (data != NULL)
        *data = NULL;
    size_t ul = strlen(o->milvus_url);
    while (ul > 0 && o->milvus_url[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof(url), "%.*s/v2/vectordb/%s", (int)ul, o->milvus_url, path);
    text = json_dumps(body, JSON_COMPACT);
    if (text == NULL) {
        log_error("could not build request for \"%s\"", url);
        goto out;
    }
    if (http_post_json(url, text, &ho, &r) != 0) {
        ret = quiet_down ? 2 : -1;
        goto out;
    }
    if (r.status == 404) {
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (r.status != 200) {
        log_error("milvus request \"%s\" failed with HTTP status %ld", url, r.status);
        goto out;
    }
    json_error_t jerr;
    root = json_loadb(r.body, r.len, 0, &jerr);
    if (!json_is_object(root)) {
        log_error("could not parse the answer of \"%s\": %s", url, root ? "not an object" : jerr.text);
        goto out;
    }
    json_t *code = json_object_get(root, "code");
    if (!json_is_integer(code) ||
        (json_integer_value(code) != 0 && json_integer_value(code) != 200)) {
        json_t *msg = json_object_get(root, "message");
        log_error("milvus request \"%s\" failed with code %lld: %s", url,
                  json_is_integer(code) ? (long long)json_integer_value(code) : -1LL,
                  json_is_string(msg) ? json_string_value(msg) : "(no message)");
        goto out;
    }
    if (data != NULL) {
        *data = json_object_get(root, "data");
        json_incref(*data);
    }
    ret = 0;
out:
    free(text);
    json_decref(root);
    http_response_release(&r);
    return ret;
}

void mv_collections_free(mv_collection *c, size_t n)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(c[i].name);
    free(c);
}

static int mv_coll_cmp(const void *a, const void *b)
{
    return strcmp(((const mv_collection *)a)->name, ((const mv_collection *)b)->name);
}

int mv_milvus_rows(const mv_opts *o, mv_collection **colls, size_t *n)
{
    const char *db = o->milvus_db ? o->milvus_db : "default";
    json_t *body = json_pack("{s:s}", "dbName", db), *data = NULL;
    mv_collection *c = NULL;
    size_t cnt = 0;
    int ret = -1, r;

    *colls = NULL;
    *n = 0;
    r = mv_milvus_post(o, "collections/list", body, &data, 1);
    if (r == 2) {
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (r == RS_NOT_FOUND) {
        log_error("milvus at \"%s\" has no REST v2 collections/list endpoint", o->milvus_url);
        goto out;
    }
    if (r != 0)
        goto out;
    if (!json_is_array(data)) {
        log_error("milvus collections/list answered without a list");
        goto out;
    }
    c = calloc(json_array_size(data) + 1, sizeof(*c));
    if (c == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *name = json_array_get(data, i), *st = NULL, *req;
        if (!json_is_string(name)) {
            log_error("milvus collections/list answered a non-string name");
            goto out;
        }
        req = json_pack("{s:s,s:s}", "dbName", db, "collectionName", json_string_value(name));
        r = mv_milvus_post(o, "collections/get_stats", req, &st, 0);
        json_decref(req);
        if (r != 0) {
            if (r == RS_NOT_FOUND)
                log_error("milvus has no collections/get_stats endpoint");
            json_decref(st);
            goto out;
        }
        json_t *rc = json_is_object(st) ? json_object_get(st, "rowCount") : NULL;
        int64_t rows = -1;
        if (json_is_integer(rc))
            rows = json_integer_value(rc);
        else if (json_is_string(rc))
            rows = strtoll(json_string_value(rc), NULL, 10);
        json_decref(st);
        if (rows < 0) {
            log_error("milvus get_stats for \"%s\" answered without a rowCount",
                      json_string_value(name));
            goto out;
        }
        c[cnt].name = strdup(json_string_value(name));
        if (c[cnt].name == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        c[cnt].rows = rows;
        cnt++;
    }
    qsort(c, cnt, sizeof(*c), mv_coll_cmp);
    *colls = c;
    *n = cnt;
    c = NULL;
    ret = 0;
out:
    mv_collections_free(c, cnt);
    json_decref(body);
    json_decref(data);
    return ret;
}

int mv_milvus_flush(const mv_opts *o, const mv_collection *colls, size_t n)
{
    const char *db = o->milvus_db ? o->milvus_db : "default";

    for (size_t i = 0; i < n; i++) {
        json_t *req = json_pack("{s:s,s:s}", "dbName", db, "collectionName", colls[i].name);
        int r = mv_milvus_post(o, "collections/flush", req, NULL, 0);
        json_decref(req);
        if (r == RS_NOT_FOUND) {
            log_info("milvus has no flush endpoint (older than 2.4): not flushing");
            return 0;
        }
        if (r != 0)
            return -1;
        log_info("flushed collection \"%s\"", colls[i].name);
    }
    return 0;
}

/* ---- PostgreSQL ---- */

int mv_pg_restore_point(const char *conninfo, const char *name, char **lsn)
{
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = NULL;
    const char *params[1] = {name};
    int ret = -1;

    *lsn = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        char *m = PQerrorMessage(conn);
        size_t l = strlen(m);
        while (l > 0 && m[l - 1] == '\n')
            m[--l] = '\0';
        log_error("could not connect to PostgreSQL: %s", m);
        goto out;
    }
    res = PQexecParams(conn, "SELECT pg_catalog.pg_create_restore_point($1)::text", 1, NULL,
                       params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        char *m = PQerrorMessage(conn);
        size_t l = strlen(m);
        while (l > 0 && m[l - 1] == '\n')
            m[--l] = '\0';
        log_error("could not create PostgreSQL restore point \"%s\": %s", name, m);
        goto out;
    }
    *lsn = strdup(PQgetvalue(res, 0, 0));
    if (*lsn == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    ret = 0;
out:
    PQclear(res);
    PQfinish(conn);
    return ret;
}

/* ---- worker pool ---- */

typedef struct mv_thread_arg {
    void (*fn)(void *, int);
    void *arg;
    int i;
} mv_thread_arg;

static void *mv_thread_main(void *p)
{
    mv_thread_arg *t = p;
    t->fn(t->arg, t->i);
    return NULL;
}

int mv_parallel(int n, void (*fn)(void *arg, int i), void *arg)
{
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    mv_thread_arg *ta = calloc((size_t)n, sizeof(*ta));
    sigset_t all, old;
    int started = 0, ret = 0;

    if (th == NULL || ta == NULL) {
        free(th);
        free(ta);
        return log_errno("could not allocate worker threads");
    }
    /* workers block the signals we handle: they land in the main thread, which is
     * only waiting in pthread_join; the flag is what the workers look at */
    sigemptyset(&all);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < n; i++) {
        ta[i].fn = fn;
        ta[i].arg = arg;
        ta[i].i = i;
        int e = pthread_create(&th[i], NULL, mv_thread_main, &ta[i]);
        if (e != 0) {
            ret = log_errnum(e, "could not start worker thread");
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(ta);
    return ret;
}

int mv_default_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    /* more threads than cores: per-object fsyncs wait on the disk, not the CPU, and
     * concurrent fsyncs share journal commits */
    n *= 4;
    return (int)(n > 32 ? 32 : n);
}

const char *mv_bytes(uint64_t n, char buf[32])
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, 32, "%.1f %s", v, units[u]);
    return buf;
}
