/*
 * catalog.c -- ragsafe-milvus list, expire and verify: the snapshots in a repository
 * and the object store they share.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cas.h"
#include "common.h"
#include "log.h"
#include "milvus.h"
#include "progress.h"
#include "repo.h"
#include "timefmt.h"

/* mv_load_all -- every snapshot manifest, oldest first by start time. A manifest that
 * cannot be loaded fails the whole call (expire must not sweep what it may reference).
 * bad_ok: instead report it, count it in *bad and go on (list, verify: one damaged
 * manifest must not hide the good snapshots). */
static int mv_load_all(storage *st, mv_snapshot **out, size_t *n, int bad_ok, size_t *bad)
{
    char **labels = NULL;
    size_t nl = 0, cnt = 0;
    mv_snapshot *s = NULL;
    int ret = -1;

    *out = NULL;
    *n = 0;
    if (mv_snapshot_labels(st, &labels, &nl) != 0)
        return -1;
    s = calloc(nl + 1, sizeof(*s));
    if (s == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < nl; i++) {
        if (mv_snapshot_load(st, labels[i], &s[cnt]) != 0) {
            if (!bad_ok)
                goto out;
            log_error("snapshot \"%s\" is left out: its manifest cannot be used", labels[i]);
            (*bad)++;
            continue;
        }
        cnt++;
    }
    /* insertion sort by started, then label: a handful to a few hundred entries */
    for (size_t i = 1; i < cnt; i++) {
        mv_snapshot x = s[i];
        size_t k = i;
        while (k > 0 && (s[k - 1].started > x.started ||
                         (s[k - 1].started == x.started && strcmp(s[k - 1].label, x.label) > 0))) {
            s[k] = s[k - 1];
            k--;
        }
        s[k] = x;
    }
    *out = s;
    *n = cnt;
    s = NULL;
    ret = 0;
out:
    if (s != NULL) {
        for (size_t i = 0; i < cnt; i++)
            mv_snapshot_release(&s[i]);
        free(s);
    }
    tree_labels_free(labels, nl);
    return ret;
}

static void mv_free_all(mv_snapshot *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        mv_snapshot_release(&s[i]);
    free(s);
}

/* mv_print_json -- j (taken) on stdout, one line. 0 | -1 reported. */
static int mv_print_json(json_t *j)
{
    int r = j ? json_dumpf(j, stdout, JSON_COMPACT) : -1;

    json_decref(j);
    if (r != 0)
        return log_error("could not build the JSON output");
    putchar('\n');
    return 0;
}

int mv_list_cmd(const mv_opts *o)
{
    int ret = -1;
    repo *rp = mv_repo_open(o->repo, NULL, 0, &ret);
    mv_snapshot *s = NULL;
    size_t n = 0, bad = 0;
    json_t *arr = NULL;

    if (rp == NULL)
        return ret;
    if (mv_load_all(rp->st, &s, &n, 1, &bad) != 0)
        goto out;
    if (bad)
        log_hint("%zu damaged snapshot manifest%s left out of the list; ragsafe-milvus verify "
                 "checks the repository", bad, bad == 1 ? "" : "s");
    if (o->json) {
        arr = json_array();
        for (size_t i = 0; arr && i < n; i++) {
            char t[32];
            json_t *vols = json_array();
            timefmt_utc(t, sizeof(t), s[i].started);
            for (size_t k = 0; vols && k < s[i].nvols; k++)
                json_array_append_new(vols, json_pack("{s:s,s:s}", "name", s[i].vols[k].name,
                                                      "path", s[i].vols[k].dir));
            json_t *colls = json_array();
            for (size_t k = 0; colls && k < s[i].ncolls; k++)
                json_array_append_new(colls, json_pack("{s:s,s:I}", "name", s[i].colls[k].name,
                                                       "rows", (json_int_t)s[i].colls[k].rows));
            json_t *e = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o*,s:s?,s:s?}",
                                  "label", s[i].label, "started", t,
                                  "files", (json_int_t)s[i].stats.files,
                                  "bytes", (json_int_t)s[i].stats.bytes,
                                  "new_bytes", (json_int_t)s[i].stats.new_bytes,
                                  "stored_bytes", (json_int_t)s[i].stats.stored_bytes,
                                  "reused_bytes", (json_int_t)s[i].stats.reused_bytes,
                                  "downtime_ms", (json_int_t)s[i].downtime_ms,
                                  "volumes", vols,
                                  "collections", s[i].have_milvus ? colls : NULL,
                                  "pg_restore_point", s[i].pg_restore_point,
                                  "pg_lsn", s[i].pg_lsn);
            if (!s[i].have_milvus)
                json_decref(colls);
            if (e == NULL || json_array_append_new(arr, e) != 0) {
                log_error("could not build the listing");
                goto out;
            }
        }
        char *txt = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        if (txt == NULL) {
            log_error("could not build the listing");
            goto out;
        }
        printf("%s\n", txt);
        free(txt);
    } else {
        printf("%-20s %-20s %8s %10s %10s %9s  %s\n", "label", "started", "files", "size",
               "new", "downtime", "volumes");
        for (size_t i = 0; i < n; i++) {
            char t[32], b1[32], b2[32], vols[256] = "";
            size_t vl = 0;
            timefmt_utc(t, sizeof(t), s[i].started);
            for (size_t k = 0; k < s[i].nvols && vl < sizeof(vols); k++)
                vl += (size_t)snprintf(vols + vl, sizeof(vols) - vl, "%s%s", k ? "," : "",
                                       s[i].vols[k].name);
            printf("%-20s %-20s %8llu %10s %10s %8.1fs  %s\n", s[i].label, t,
                   (unsigned long long)s[i].stats.files, mv_bytes(s[i].stats.bytes, b1),
                   mv_bytes(s[i].stats.new_bytes, b2), (double)s[i].downtime_ms / 1000.0, vols);
        }
    }
    ret = 0;
out:
    json_decref(arr);
    mv_free_all(s, n);
    repo_free(rp);
    return ret;
}

/* mv_mark -- the addresses (cas_addr) of every object snapshot s references. */
static int mv_mark(cas *c, cas_set *set, const mv_snapshot *s)
{
    uint8_t a[SHA256_LEN];

    for (size_t k = 0; k < s->nvols; k++) {
        for (size_t e = 0; e < s->vols[k].n; e++) {
            const mv_entry *en = &s->vols[k].entries[e];
            if (en->type != MV_FILE)
                continue;
            for (uint32_t ci = 0; ci < (en->nchunks ? en->nchunks : 1); ci++)
                if (cas_addr(c, en->nchunks ? en->chunks[ci] : en->sha, a) != 0 ||
                    cas_set_add(set, a) < 0)
                    return -1;
        }
    }
    return 0;
}

int mv_expire_cmd(const mv_opts *o)
{
    repo *rp = NULL;
    storage_lock *lk = NULL;
    mv_snapshot *s = NULL;
    size_t n = 0, nexp = 0;
    int *keep = NULL;
    cas *c = NULL;
    cas_set *mark = NULL;
    uint64_t removed = 0, freed = 0;
    int ret = -1, r;

    rp = mv_repo_open(o->repo, NULL, 0, &ret);
    if (rp == NULL)
        goto out;
    r = storage_lock_take(rp->st, MV_LOCK_NAME, 1, 0, &lk);
    if (r == RS_EXISTS) {
        log_error("could not lock repository \"%s\": a ragsafe-milvus snapshot, restore or "
                  "verify is running", storage_location(rp->st));
        goto out;
    }
    if (r != 0)
        goto out;
    if (mv_load_all(rp->st, &s, &n, 0, NULL) != 0) {
        log_hint("expire removes nothing while a manifest cannot be read");
        goto out;
    }
    keep = calloc(n + 1, sizeof(*keep));
    mark = cas_set_new();
    c = cas_new(rp->st, MV_OBJECT_PREFIX, NULL);
    if (keep == NULL || mark == NULL || c == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < n && (long)i < o->keep_last; i++)
        keep[n - 1 - i] = 1;
    {
        long days = 0;
        int64_t last_day = INT64_MIN;
        for (size_t i = n; i-- > 0 && days < o->keep_daily;) {
            int64_t day = s[i].started / 86400;
            if (day != last_day) {
                keep[i] = 1;
                last_day = day;
                days++;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        char key[256];
        if (keep[i])
            continue;
        if (mv_snapshot_key(s[i].label, key, sizeof(key)) != 0)
            goto out;
        if (!o->dry_run && storage_remove(rp->st, key) != 0)
            goto out;
        nexp++;
        if (!o->json)
            printf("%s snapshot %s\n", o->dry_run ? "would expire" : "expired", s[i].label);
    }
    for (size_t i = 0; i < n; i++)
        if (keep[i] && mv_mark(c, mark, &s[i]) != 0)
            goto out;
    if (cas_sweep(c, mark, o->dry_run, &removed, &freed) != 0)
        goto out;
    {
        char b[32];
        if (o->json) {
            if (mv_print_json(json_pack("{s:I, s:I, s:I, s:I, s:b}", "expired", (json_int_t)nexp,
                                        "kept", (json_int_t)(n - nexp), "objects_removed",
                                        (json_int_t)removed, "bytes_freed", (json_int_t)freed,
                                        "dry_run", o->dry_run)) != 0)
                goto out;
        } else
            printf("%s %zu snapshot%s, kept %zu; %s %llu unreferenced object%s, %s\n",
                   o->dry_run ? "would expire" : "expired", nexp, PLURAL(nexp), n - nexp,
                   o->dry_run ? "would remove" : "removed", (unsigned long long)removed,
                   PLURAL(removed), mv_bytes(freed, b));
    }
    ret = 0;
out:
    cas_free(c);
    cas_set_free(mark);
    free(keep);
    mv_free_all(s, n);
    storage_lock_release(lk);
    repo_free(rp);
    return ret;
}

/* ---- verify ---- */

typedef struct mv_digest_list {
    uint8_t (*d)[SHA256_LEN];
    int64_t *size;
    size_t n, cap;
    cas_set *set;
} mv_digest_list;

static int mv_collect_digest(void *arg, const uint8_t digest[SHA256_LEN], int64_t size)
{
    mv_digest_list *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        void *p = realloc(l->d, cap * SHA256_LEN);
        void *q = realloc(l->size, cap * sizeof(*l->size));
        if (p)
            l->d = p;
        if (q)
            l->size = q;
        if (p == NULL || q == NULL)
            return log_errno("could not allocate");
        l->cap = cap;
    }
    memcpy(l->d[l->n], digest, SHA256_LEN);
    l->size[l->n] = size;
    l->n++;
    return cas_set_add(l->set, digest) < 0 ? -1 : 0;
}

typedef struct mv_verify_job {
    const char *location;
    mv_digest_list *todo;
    const cas_set *only;    /* verify only these (one snapshot), or NULL: all */
    uint64_t *raw;          /* per todo entry: its content's size (UINT64_MAX: unknown) */
    size_t next;
    pthread_mutex_t mu;
    uint64_t checked, bad, bytes;
    cas_set *damaged;       /* addresses of the objects found corrupt or missing */
    progress pg;            /* stored bytes read */
    int error;
} mv_verify_job;

static void mv_verify_worker(void *arg, int i)
{
    mv_verify_job *j = arg;
    storage *st = storage_open(j->location, NULL, 0);
    cas *c = st ? cas_new(st, MV_OBJECT_PREFIX, NULL) : NULL;

    (void)i;
    if (c == NULL) {
        pthread_mutex_lock(&j->mu);
        j->error = 1;
        pthread_mutex_unlock(&j->mu);
        goto out;
    }
    for (;;) {
        size_t k;
        pthread_mutex_lock(&j->mu);
        k = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (k >= j->todo->n || mv_interrupted())
            break;
        if (j->only != NULL && !cas_set_has(j->only, j->todo->d[k]))
            continue;
        uint64_t size = 0;
        int r = cas_get_addr_fd(c, j->todo->d[k], -1, &size);
        progress_add(&j->pg, j->todo->size[k] > 0 ? (uint64_t)j->todo->size[k] : 0);
        pthread_mutex_lock(&j->mu);
        j->checked++;
        j->bytes += size;
        if (r == 0)
            j->raw[k] = size;
        if (r != 0) {
            char key[512];
            cas_addr_key(c, j->todo->d[k], key, sizeof(key));
            log_error("object \"%s\" is %s", key, r == RS_NOT_FOUND ? "missing" : "corrupt");
            j->bad++;
            if (cas_set_add(j->damaged, j->todo->d[k]) < 0)
                j->error = 1;
        }
        pthread_mutex_unlock(&j->mu);
    }
out:
    cas_free(c);
    storage_free(st);
}

/* addr_cmp -- order of the stored objects' addresses (for bsearch by address). */
static const mv_digest_list *sort_list;
static int addr_cmp(const void *a, const void *b)
{
    return memcmp(sort_list->d[*(const size_t *)a], sort_list->d[*(const size_t *)b], SHA256_LEN);
}

/*
 * mv_check_sizes -- every file of a manifest must have the size its objects hold:
 * restore refuses a file whose object does not (and verify must say so first).
 * Objects not read (missing, corrupt, another snapshot's) are not compared. Returns
 * the number of files that disagree (reported), or -1.
 */
static long mv_check_sizes(cas *c, const mv_snapshot *x, const mv_digest_list *have,
                           const uint64_t *raw)
{
    size_t *idx = malloc((have->n + 1) * sizeof(*idx));
    long bad = 0;

    if (idx == NULL)
        return log_errno("could not allocate");
    for (size_t k = 0; k < have->n; k++)
        idx[k] = k;
    sort_list = have;
    qsort(idx, have->n, sizeof(*idx), addr_cmp);
    for (size_t v = 0; v < x->nvols; v++) {
        for (size_t e = 0; e < x->vols[v].n; e++) {
            const mv_entry *en = &x->vols[v].entries[e];
            uint64_t off = 0;
            if (en->type != MV_FILE)
                continue;
            for (uint32_t ci = 0; ci < (en->nchunks ? en->nchunks : 1); ci++) {
                const uint8_t *d = en->nchunks ? en->chunks[ci] : en->sha;
                uint64_t want = en->nchunks ? (en->size - off < en->chunk_size ? en->size - off
                                                                               : en->chunk_size)
                                            : en->size;
                size_t lo = 0, hi = have->n;
                uint8_t a[SHA256_LEN];
                if (cas_addr(c, d, a) != 0) {
                    free(idx);
                    return -1;
                }
                while (lo < hi) { /* first index whose address is >= a */
                    size_t mid = (lo + hi) / 2;
                    if (memcmp(have->d[idx[mid]], a, SHA256_LEN) < 0)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                off += want;
                if (lo == have->n || memcmp(have->d[idx[lo]], a, SHA256_LEN) != 0 ||
                    raw[idx[lo]] == UINT64_MAX || raw[idx[lo]] == want)
                    continue;
                log_error("snapshot \"%s\": \"%s/%s\" is %llu bytes%s in the manifest, its "
                          "object holds %llu", x->label, x->vols[v].name, en->path,
                          (unsigned long long)want, en->nchunks ? " (this chunk)" : "",
                          (unsigned long long)raw[idx[lo]]);
                bad++;
            }
        }
    }
    free(idx);
    return bad;
}

/*
 * mv_name_damaged -- every file of a manifest that needs a damaged object, once per
 * file (its chunks may need the object more than once): what a user restoring that
 * snapshot would lose. One damaged object shared by many snapshots (deduplication)
 * names them all. Returns the number of files named, or -1.
 */
static long mv_name_damaged(cas *c, const mv_snapshot *x, const cas_set *damaged)
{
    long named = 0;

    for (size_t v = 0; v < x->nvols; v++) {
        for (size_t e = 0; e < x->vols[v].n; e++) {
            const mv_entry *en = &x->vols[v].entries[e];
            if (en->type != MV_FILE)
                continue;
            for (uint32_t ci = 0; ci < (en->nchunks ? en->nchunks : 1); ci++) {
                const uint8_t *d = en->nchunks ? en->chunks[ci] : en->sha;
                uint8_t a[SHA256_LEN];
                char key[512];
                if (cas_addr(c, d, a) != 0)
                    return -1;
                if (!cas_set_has(damaged, a))
                    continue;
                cas_key(c, d, key, sizeof(key));
                log_error("snapshot \"%s\": file \"%s/%s\" is damaged: it needs object \"%s\"",
                          x->label, x->vols[v].name, en->path, key);
                named++;
                break;
            }
        }
    }
    return named;
}

int mv_verify_cmd(const mv_opts *o)
{
    repo *rp = NULL;
    storage_lock *lk = NULL;
    mv_snapshot *s = NULL, one;
    size_t n = 0, bad_manifests = 0, missing = 0, wrong_size = 0;
    cas *c = NULL;
    cas_set *ref = NULL;
    mv_digest_list have = {0};
    mv_verify_job j;
    int ret = -1, r, have_one = 0;

    memset(&j, 0, sizeof(j));
    memset(&one, 0, sizeof(one));
    pthread_mutex_init(&j.mu, NULL);
    progress_init(&j.pg, PROGRESS_OFF, "verify", 0);
    mv_signals_install();
    rp = mv_repo_open(o->repo, NULL, 0, &ret);
    if (rp == NULL)
        goto out;
    r = storage_lock_take(rp->st, MV_LOCK_NAME, 0, 0, &lk);
    if (r == RS_EXISTS) {
        log_error("could not lock repository \"%s\": a ragsafe-milvus snapshot or expire is "
                  "running", storage_location(rp->st));
        goto out;
    }
    if (r != 0)
        goto out;
    if (o->label != NULL) {
        r = mv_snapshot_load(rp->st, o->label, &one);
        if (r == RS_NOT_FOUND) {
            log_error("snapshot \"%s\" not found in \"%s\"", o->label, storage_location(rp->st));
            goto out;
        }
        if (r != 0) {
            ret = RS_MISMATCH;
            goto out;
        }
        have_one = 1;
    } else if (mv_load_all(rp->st, &s, &n, 1, &bad_manifests) != 0) {
        goto out;
    }
    c = cas_new(rp->st, MV_OBJECT_PREFIX, NULL);
    ref = cas_set_new();
    have.set = cas_set_new();
    if (c == NULL || ref == NULL || have.set == NULL)
        goto out;
    if (cas_list(c, mv_collect_digest, &have) != 0)
        goto out;
    /* every object each manifest references must be there */
    for (size_t i = 0; i < (have_one ? 1 : n); i++) {
        const mv_snapshot *x = have_one ? &one : &s[i];
        for (size_t k = 0; k < x->nvols; k++) {
            for (size_t e = 0; e < x->vols[k].n; e++) {
                const mv_entry *en = &x->vols[k].entries[e];
                if (en->type != MV_FILE)
                    continue;
                for (uint32_t ci = 0; ci < (en->nchunks ? en->nchunks : 1); ci++) {
                    const uint8_t *d = en->nchunks ? en->chunks[ci] : en->sha;
                    uint8_t a[SHA256_LEN];
                    /* stored objects are listed by address (cas_addr) */
                    if (cas_addr(c, d, a) != 0 || cas_set_add(ref, a) < 0)
                        goto out;
                    if (!cas_set_has(have.set, a)) {
                        char key[512];
                        cas_key(c, d, key, sizeof(key));
                        log_error("snapshot \"%s\": object \"%s\" for \"%s/%s\" is missing",
                                  x->label, key, x->vols[k].name, en->path);
                        missing++;
                    }
                }
            }
        }
    }
    j.location = storage_location(rp->st);
    j.damaged = cas_set_new();
    if (j.damaged == NULL)
        goto out;
    j.todo = &have;
    j.only = have_one ? ref : NULL;
    j.raw = malloc((have.n + 1) * sizeof(*j.raw));
    if (j.raw == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t k = 0; k < have.n; k++)
        j.raw[k] = UINT64_MAX;
    {
        int jobs = o->jobs > 0 ? o->jobs : 2;
        uint64_t total = 0;
        for (size_t k = 0; k < have.n; k++)
            if (have.size[k] > 0 && (j.only == NULL || cas_set_has(j.only, have.d[k])))
                total += (uint64_t)have.size[k];
        progress_release(&j.pg);
        progress_init(&j.pg, o->progress, "verify", total);
        r = mv_parallel(jobs, mv_verify_worker, &j);
        if (r == 0 && !j.error && !mv_interrupted())
            progress_finish(&j.pg);
        progress_end(&j.pg);
        if (r != 0)
            goto out;
    }
    if (j.error)
        goto out;
    if (mv_interrupted()) {
        log_error("interrupted by signal %d", mv_interrupted());
        goto out;
    }
    for (size_t i = 0; i < (have_one ? 1 : n); i++) {
        long w = mv_check_sizes(c, have_one ? &one : &s[i], &have, j.raw);
        if (w < 0)
            goto out;
        wrong_size += (size_t)w;
    }
    /* each damaged object named once above; now what it takes away, snapshot by
     * snapshot */
    for (size_t i = 0; j.bad > 0 && i < (have_one ? 1 : n); i++)
        if (mv_name_damaged(c, have_one ? &one : &s[i], j.damaged) < 0)
            goto out;
    {
        char b[32];
        size_t unref = 0;
        for (size_t k = 0; k < have.n; k++)
            if (!cas_set_has(ref, have.d[k]))
                unref++;
        if (o->json) {
            if (mv_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "snapshots",
                                        (json_int_t)(have_one ? (size_t)1 : n), "objects_checked",
                                        (json_int_t)j.checked, "bytes", (json_int_t)j.bytes,
                                        "corrupt", (json_int_t)j.bad, "missing", (json_int_t)missing,
                                        "bad_manifests", (json_int_t)bad_manifests, "wrong_size",
                                        (json_int_t)wrong_size, "unreferenced",
                                        (json_int_t)(have_one ? (size_t)0 : unref))) != 0)
                goto out;
        } else
            printf("verified %zu snapshot%s, %llu object%s (%s): %llu corrupt, %zu missing, "
                   "%zu unreadable manifest%s, %zu file%s of the wrong size%s\n",
                   have_one ? (size_t)1 : n, PLURAL(have_one ? (size_t)1 : n),
                   (unsigned long long)j.checked, PLURAL(j.checked), mv_bytes(j.bytes, b),
                   (unsigned long long)j.bad, missing, bad_manifests, PLURAL(bad_manifests),
                   wrong_size, PLURAL(wrong_size),
                   (!have_one && unref) ? " (some objects unreferenced: expire removes them)" : "");
    }
    ret = (j.bad || missing || bad_manifests || wrong_size) ? RS_MISMATCH : 0;
out:
    free(j.raw);
    cas_set_free(j.damaged);
    progress_release(&j.pg);
    free(have.d);
    free(have.size);
    cas_set_free(have.set);
    cas_set_free(ref);
    cas_free(c);
    if (have_one)
        mv_snapshot_release(&one);
    mv_free_all(s, n);
    pthread_mutex_destroy(&j.mu);
    storage_lock_release(lk);
    repo_free(rp);
    return ret;
}
