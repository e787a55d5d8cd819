/*
 * journal.c -- what ragsafe-milvus leaves behind when it is killed, and how the next
 * ragsafe-milvus command finishes or undoes it.
 *
 * Two small JSON objects in the repository:
 *
 *   milvus/journal/restore.json   a restore in progress:
 *     {"format":1,"tool":"ragsafe-milvus","label":L,"id":ID,"host":H,"pid":N,
 *      "started":"...Z","state":"staging"|"swapping",
 *      "targets":[{"name":"etcd","dir":"/abs","before":"absent"|"empty"|"full"}...]}
 *   Every target is restored into DIR.ragsafe-staging-ID (same file system), made
 *   durable, and only then swapped in: DIR moved aside to DIR.ragsafe-old-ID (when it
 *   held something), DIR.ragsafe-staging-ID renamed to DIR. The journal is written
 *   (durably) as "staging" before the first staging directory exists and as
 *   "swapping" once every staging tree is durable and the stack is stopped: the commit
 *   point. Found by a later command: "staging" is rolled back (the staging
 *   directories removed, the targets were never touched), "swapping" rolled forward
 *   (each step is checked against the file system, so finishing is idempotent). The
 *   staging and aside names are derived from DIR and ID, never read from the journal:
 *   a repository writer cannot make us rename anything else.
 *
 *   milvus/journal/stack-stopped.json   the stack was stopped by a ragsafe-milvus
 *     command: {"host":H,"pid":N,"command":"snapshot","stopped":"...Z"}, written
 *     before the stop command runs, removed once the start command (and the health
 *     wait) succeeded. A later command that finds it with its owner gone runs its own
 *     start command (never one from the repository) or says loudly that the stack is
 *     down and who stopped it.
 *
 * Recovery acts only under the exclusive repository lock (so the owner is gone) and
 * only for journals written on this host.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "milvus.h"
#include "procuse.h"
#include "repo.h"
#include "timefmt.h"
#include "tree.h"

#define MV_JOURNAL_MAX (1u << 20)

/* indexed by TREE_ABSENT (0), TREE_EMPTY (1), TREE_FULL (2) */
static const char *const mv_before_names[] = {"absent", "empty", "full"};

void mv_test_point(const char *point, long n)
{
    /* RAGSAFE_MILVUS_TEST_KILL=POINT[:N]: SIGKILL ourselves there, as kill -9 would
     * (integration tests only; see 052_milvus_restore_safety.sh) */
    const char *want = getenv("RAGSAFE_MILVUS_TEST_KILL");
    size_t l = strlen(point);

    if (want == NULL || strncmp(want, point, l) != 0)
        return;
    if (want[l] == '\0' || (want[l] == ':' && strtol(want + l + 1, NULL, 10) == n)) {
        fprintf(stderr, "%s: test hook: killed at %s:%ld\n", log_progname(), point, n);
        kill(getpid(), SIGKILL);
    }
}

static int mv_put_json(storage *st, const char *key, json_t *j)
{
    char *text;
    int r;

    if (j == NULL)
        return log_error("could not build \"%s\"", key);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text == NULL)
        return log_error("could not build \"%s\"", key);
    r = storage_put(st, key, text, strlen(text), 0);
    free(text);
    if (r != 0)
        return log_error("could not write \"%s\" in \"%s\"", key, storage_location(st));
    return 0;
}

/* mv_get_json -- 0 and *out, RS_NOT_FOUND, or -1 reported (unreadable or not JSON) */
static int mv_get_json(storage *st, const char *key, json_t **out)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t err;
    int r;

    *out = NULL;
    r = storage_get(st, key, MV_JOURNAL_MAX, &buf, &len);
    if (r == RS_NOT_FOUND)
        return r;
    if (r != 0)
        return log_error("could not read \"%s\" in \"%s\"", key, storage_location(st));
    *out = json_loadb(buf, len, 0, &err);
    free(buf);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return log_error("could not parse \"%s\" in \"%s\": %s", key, storage_location(st),
                         err.text);
    }
    return 0;
}

static const char *mv_jstr(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void mv_hostname(char *out, size_t outlen)
{
    if (gethostname(out, outlen) != 0)
        snprintf(out, outlen, "?");
    out[outlen - 1] = '\0';
}

/* ---- the restore journal ---- */

int mv_swap_names(mv_swap *t, const char *id)
{
    free(t->staging);
    free(t->aside);
    t->staging = t->aside = NULL;
    if (asprintf(&t->staging, "%s.ragsafe-staging-%s", t->dir, id) < 0) {
        t->staging = NULL;
        return log_errno("could not allocate");
    }
    /* id is a move-aside stamp (mv_pick_id): the name every tool's --force uses */
    if (asprintf(&t->aside, "%s" CLI_ASIDE_TAG "%s", t->dir, id) < 0) {
        t->aside = NULL;
        return log_errno("could not allocate");
    }
    return 0;
}

void mv_swap_release(mv_swap *t, size_t n)
{
    for (size_t i = 0; t != NULL && i < n; i++) {
        free(t[i].staging);
        free(t[i].aside);
    }
}

int mv_journal_write(storage *st, const char *label, const char *id, const char *state,
                     const mv_swap *t, size_t n)
{
    char host[256], when[32];
    json_t *j, *arr = json_array();

    mv_hostname(host, sizeof(host));
    timefmt_utc(when, sizeof(when), (int64_t)time(NULL));
    for (size_t i = 0; arr != NULL && i < n; i++)
        if (json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "name", t[i].name, "dir",
                                                 t[i].dir, "before",
                                                 mv_before_names[t[i].before])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    if (arr == NULL)
        return log_error("could not build the restore journal");
    j = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:o}", "format", 1, "tool", "ragsafe-milvus",
                  "label", label, "id", id, "host", host, "pid", (json_int_t)getpid(),
                  "started", when, "state", state, "targets", arr);
    return mv_put_json(st, MV_JOURNAL_KEY, j);
}

int mv_journal_remove(storage *st)
{
    if (storage_remove(st, MV_JOURNAL_KEY) != 0)
        return log_error("could not remove the restore journal \"%s\" in \"%s\"", MV_JOURNAL_KEY,
                         storage_location(st));
    return 0;
}

static int mv_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int mv_fsync_parent(const char *path)
{
    char *copy = strdup(path);
    int r;

    if (copy == NULL)
        return log_errno("could not allocate");
    r = durable_fsync_path(dirname(copy));
    free(copy);
    return r;
}

int mv_swap_forward(const mv_swap *t, size_t n, int *renames)
{
    for (size_t i = 0; i < n; i++) {
        if (!mv_exists(t[i].staging)) {
            if (!mv_exists(t[i].dir))
                return log_error("neither \"%s\" nor its staging directory \"%s\" exists",
                                 t[i].dir, t[i].staging);
            continue;   /* swapped already */
        }
        if (t[i].before == TREE_FULL && mv_exists(t[i].dir) && !mv_exists(t[i].aside)) {
            if (tree_move_aside(t[i].dir, t[i].aside) != 0)
                return -1;
            (*renames)++;
            mv_test_point("rename", *renames);
        }
        /* onto an absent or empty directory: rename(2) replaces an empty one */
        if (rename(t[i].staging, t[i].dir) != 0)
            return log_errno("could not rename \"%s\" to \"%s\"", t[i].staging, t[i].dir);
        (*renames)++;
        mv_test_point("rename", *renames);
    }
    for (size_t i = 0; i < n; i++)
        if (mv_fsync_parent(t[i].dir) != 0)
            return -1;
    return 0;
}

int mv_swap_back(const mv_swap *t, size_t n)
{
    int ret = 0;

    for (size_t i = n; i-- > 0;) {
        if (!mv_exists(t[i].staging) && mv_exists(t[i].dir) &&
            (t[i].before != TREE_FULL || mv_exists(t[i].aside)) &&
            rename(t[i].dir, t[i].staging) != 0)
            ret = log_errno("could not move \"%s\" back to \"%s\"", t[i].dir, t[i].staging);
        if (t[i].before == TREE_FULL && !mv_exists(t[i].dir) && mv_exists(t[i].aside) &&
            rename(t[i].aside, t[i].dir) != 0)
            ret = log_errno("could not put \"%s\" back to \"%s\"", t[i].aside, t[i].dir);
        if (t[i].before == TREE_EMPTY && !mv_exists(t[i].dir) && mkdir(t[i].dir, 0700) != 0)
            ret = log_errno("could not recreate empty directory \"%s\"", t[i].dir);
        if (ret == 0 && mv_fsync_parent(t[i].dir) != 0)
            ret = -1;
    }
    return ret;
}

/* mv_journal_load -- the targets of a journal, checked: names, absolute paths without
 * "..", this host. -1 reported. */
static int mv_journal_load(json_t *j, mv_swap **out, size_t *n, const char **state)
{
    char host[256];
    const char *id = mv_jstr(j, "id"), *h = mv_jstr(j, "host");
    json_t *arr = json_object_get(j, "targets");
    mv_swap *t = NULL;
    size_t cnt = 0;

    *out = NULL;
    *n = 0;
    *state = mv_jstr(j, "state");
    mv_hostname(host, sizeof(host));
    if (id == NULL || !mv_label_valid(id) || *state == NULL || !json_is_array(arr) ||
        (strcmp(*state, "staging") != 0 && strcmp(*state, "swapping") != 0))
        return log_error("restore journal \"%s\" is damaged", MV_JOURNAL_KEY);
    if (h == NULL || strcmp(h, host) != 0) {
        log_error("an interrupted restore on host \"%s\" left the journal \"%s\"",
                  h ? h : "?", MV_JOURNAL_KEY);
        log_hint("run ragsafe-milvus on that host to finish or undo it");
        return -1;
    }
    t = calloc(json_array_size(arr) + 1, sizeof(*t));
    if (t == NULL)
        return log_errno("could not allocate");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        const char *name = mv_jstr(o, "name"), *dir = mv_jstr(o, "dir");
        const char *before = mv_jstr(o, "before");
        int b = -1;
        for (int k = 0; before != NULL && k < 3; k++)
            if (strcmp(before, mv_before_names[k]) == 0)
                b = k;
        if (name == NULL || dir == NULL || b < 0 || dir[0] != '/' || strstr(dir, "/..") ||
            strlen(dir) < 2 || dir[strlen(dir) - 1] == '/') {
            log_error("restore journal \"%s\" is damaged", MV_JOURNAL_KEY);
            goto fail;
        }
        t[cnt].name = name;
        t[cnt].dir = dir;
        t[cnt].before = b;
        cnt++;
        if (mv_swap_names(&t[cnt - 1], id) != 0)
            goto fail;
    }
    *out = t;
    *n = cnt;
    return 0;
fail:
    mv_swap_release(t, cnt);
    free(t);
    return -1;
}

/* mv_journal_recover -- finish (state swapping) or undo (staging) a restore that did
 * not end. 0 (nothing left) | -1 reported. */
static int mv_journal_recover(storage *st)
{
    json_t *j = NULL;
    mv_swap *t = NULL;
    size_t n = 0;
    const char *state, *label;
    const char **dirs = NULL;
    int r, renames = 0, ret = -1;

    r = mv_get_json(st, MV_JOURNAL_KEY, &j);
    if (r == RS_NOT_FOUND)
        return 0;
    if (r != 0)
        return -1;
    if (mv_journal_load(j, &t, &n, &state) != 0)
        goto out;
    label = mv_jstr(j, "label");
    log_warning("restore of snapshot \"%s\" (pid %lld, started %s) did not finish",
                label ? label : "?", (long long)json_integer_value(json_object_get(j, "pid")),
                mv_jstr(j, "started") ? mv_jstr(j, "started") : "?");
    dirs = calloc(n + 1, sizeof(*dirs));
    if (dirs == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        dirs[i] = t[i].dir;
    if (strcmp(state, "staging") == 0) {
        for (size_t i = 0; i < n; i++) {
            if (mv_exists(t[i].staging) && durable_remove_tree(t[i].staging) != 0)
                goto out;
        }
        log_warning("rolled back: its staging directories are removed, the targets were not "
                    "touched");
    } else {
        r = procuse_check(dirs, n);
        if (r != 0) {
            if (r > 0)
                log_error("could not finish the interrupted restore: its targets are in use");
            log_hint("stop what uses them and run ragsafe-milvus again: it finishes the swap");
            goto out;
        }
        if (mv_swap_forward(t, n, &renames) != 0) {
            log_hint("fix that and run ragsafe-milvus again: it finishes the swap");
            goto out;
        }
        log_warning("rolled forward: the volumes now hold snapshot \"%s\"", label ? label : "?");
        for (size_t i = 0; i < n; i++)
            if (t[i].before == TREE_FULL && mv_exists(t[i].aside))
                log_notice("  %s -> %s (old contents in %s)", t[i].name, t[i].dir, t[i].aside);
    }
    if (mv_journal_remove(st) != 0)
        goto out;
    ret = 0;
out:
    free(dirs);
    mv_swap_release(t, n);
    free(t);
    json_decref(j);
    return ret;
}

/* ---- the stopped-stack marker ---- */

int mv_stack_mark(storage *st, const char *command)
{
    char host[256], when[32];

    mv_hostname(host, sizeof(host));
    timefmt_utc(when, sizeof(when), (int64_t)time(NULL));
    return mv_put_json(st, MV_STOPPED_KEY,
                       json_pack("{s:s,s:I,s:s,s:s}", "host", host, "pid", (json_int_t)getpid(),
                                 "command", command, "stopped", when));
}

int mv_stack_unmark(storage *st)
{
    if (storage_remove(st, MV_STOPPED_KEY) != 0)
        return log_error("could not remove \"%s\" in \"%s\"", MV_STOPPED_KEY, storage_location(st));
    return 0;
}

/* mv_pid_alive -- 1 when pid runs ragsafe-milvus on this host */
static int mv_pid_alive(long pid)
{
    char path[64], comm[64] = "";
    FILE *f;

    if (pid <= 0 || kill((pid_t)pid, 0) != 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fgets(comm, sizeof(comm), f) == NULL)
        comm[0] = '\0';
    fclose(f);
    return strncmp(comm, "ragsafe-milvus", 14) == 0;
}

/* mv_stack_recover -- act on a stopped-stack marker. act: we hold the exclusive lock
 * (its owner is gone); else only report. 0 | -1 (the start command failed). */
static int mv_stack_recover(storage *st, const mv_opts *o, int act)
{
    char host[256];
    json_t *j = NULL;
    const char *h, *cmd, *when;
    long pid;
    int r, ret = 0;

    r = mv_get_json(st, MV_STOPPED_KEY, &j);
    if (r != 0)
        return r == RS_NOT_FOUND ? 0 : -1;
    mv_hostname(host, sizeof(host));
    h = mv_jstr(j, "host");
    cmd = mv_jstr(j, "command");
    when = mv_jstr(j, "stopped");
    pid = (long)json_integer_value(json_object_get(j, "pid"));
    if (!act && h != NULL && strcmp(h, host) == 0 && mv_pid_alive(pid)) {
        log_info("the milvus stack is stopped by ragsafe-milvus %s (pid %ld), still running",
                 cmd ? cmd : "?", pid);
        goto out;
    }
    log_warning("THE MILVUS STACK MAY BE DOWN: ragsafe-milvus %s (pid %ld on %s) stopped it at "
                "%s and did not start it again", cmd ? cmd : "?", pid, h ? h : "?",
                when ? when : "?");
    if (!act || h == NULL || strcmp(h, host) != 0 || o->start_cmd == NULL) {
        log_hint("start the stack (your start command, e.g. 'docker compose start'), or give "
                 "--start-cmd (or \"start-cmd\" in the config file) and ragsafe-milvus starts "
                 "it and forgets this");
        goto out;
    }
    log_warning("starting it again with the start command");
    if (mv_run_cmd("start", o->start_cmd) != 0 ||
        (o->health_url != NULL && mv_wait_healthy(o->health_url, o->health_timeout) != 0)) {
        ret = -1;
        goto out;
    }
    ret = mv_stack_unmark(st);
out:
    json_decref(j);
    return ret;
}

int mv_recover(storage *st, const mv_opts *o)
{
    /* the volumes first (rolled forward while the stack is still down), then the stack */
    int r = mv_journal_recover(st);
    if (mv_stack_recover(st, o, 1) != 0)
        r = -1;
    return r;
}

repo *mv_repo_open(const char *location, uring *ur, int create, int *why)
{
    /* before the key check: given the old key, that would join the rotation (take the
     * "rekey" lock shared) */
    repo *rp = repo_open(location, ur, create);
    int r = rp ? repo_rekey_refuse(rp->st, NULL, "ragsafe-milvus") : -1;

    repo_free(rp);
    if (r != 0) {
        if (why)
            *why = -1;
        return NULL;
    }
    return repo_open_checked(location, ur, create, why);
}

int mv_recover_cmd(const mv_opts *o)
{
    repo *rp;
    storage_lock *lk = NULL;
    int why = -1, r, ret = 0;

    rp = mv_repo_open(o->repo, NULL, 0, &why);
    if (rp == NULL)
        return why == RS_MISMATCH ? RS_MISMATCH : RS_NOT_FOUND;
    /* the lock only when there is something to do: a list run by monitoring must not
     * make a snapshot starting at that moment find the repository locked */
    if (storage_stat(rp->st, MV_JOURNAL_KEY, NULL, NULL) == RS_NOT_FOUND &&
        storage_stat(rp->st, MV_STOPPED_KEY, NULL, NULL) == RS_NOT_FOUND) {
        repo_free(rp);
        return 0;
    }
    r = storage_lock_take(rp->st, MV_LOCK_NAME, 1, 0, &lk);
    if (r == 0) {
        ret = mv_recover(rp->st, o);
        storage_lock_release(lk);
    } else {
        /* someone else works on the repository: only say what we see */
        json_t *j = NULL;
        if (mv_get_json(rp->st, MV_JOURNAL_KEY, &j) == 0)
            log_notice("a restore of snapshot \"%s\" is in progress (or was interrupted)",
                       mv_jstr(j, "label") ? mv_jstr(j, "label") : "?");
        json_decref(j);
        mv_stack_recover(rp->st, o, 0);
    }
    repo_free(rp);
    return ret;
}
