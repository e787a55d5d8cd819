/*
 * catalog.c -- ragsafe-files list, verify and expire.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "files.h"
#include "log.h"
#include "tree.h"

/* totals -- regular files and their bytes in m */
static void totals(const files_manifest *m, size_t *files, uint64_t *bytes)
{
    *files = 0;
    *bytes = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].type == FILES_REG) {
            (*files)++;
            *bytes += m->v[i].size;
        }
    }
}

/* print_json -- j (taken) on stdout, one line. 0 | -1 reported. */
static int print_json(json_t *j)
{
    int r = j ? json_dumpf(j, stdout, JSON_COMPACT) : -1;

    json_decref(j);
    if (r != 0)
        return log_error("out of memory");
    putchar('\n');
    return 0;
}

/*
 * files_list -- one line per snapshot, "label created files bytes" (or a JSON array).
 * Reading a manifest needs the key: a wrong key is RS_MISMATCH.
 */
int files_list(files_ctx *x)
{
    char **labels = NULL;
    size_t n = 0, nf;
    uint64_t bytes;
    json_t *arr = NULL;
    int ret;

    if (files_labels(x, &labels, &n) != 0)
        return -1;
    if (x->json && !(arr = json_array())) {
        tree_labels_free(labels, n);
        return log_error("out of memory");
    }
    ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        files_manifest m;
        ret = files_manifest_load(x, labels[i], &m);
        if (ret != 0)
            break;
        totals(&m, &nf, &bytes);
        if (arr)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I}", "label", m.label,
                                                 "created", m.created, "entries",
                                                 (json_int_t)m.n, "files", (json_int_t)nf,
                                                 "bytes", (json_int_t)bytes));
        else
            printf("%s\t%s\t%zu file%s\t%llu byte%s\n", m.label, m.created, nf, PLURAL(nf),
                   (unsigned long long)bytes, PLURAL(bytes));
        files_manifest_release(&m);
    }
    if (arr && ret == 0) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s)
            printf("%s\n", s);
        free(s);
    }
    json_decref(arr);
    tree_labels_free(labels, n);
    return ret;
}

/* verify_manifest -- decrypt and check every object m references (fd -1: no output) */
static int verify_manifest(files_ctx *x, const files_manifest *m, cas_set *done, size_t *bad)
{
    char key[512];
    uint64_t size;

    for (size_t i = 0; i < m->n; i++) {
        const files_entry *e = &m->v[i];
        int r;
        if (e->type != FILES_REG)
            continue;
        r = cas_set_add(done, e->addr);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        if (cas_addr_key(x->c, e->addr, key, sizeof(key)) != 0)
            return log_error("could not name the object of \"%s\"", e->path);
        r = cas_get_addr_fd(x->c, e->addr, -1, &size);
        if (r == RS_NOT_FOUND) {
            log_error("snapshot \"%s\": object \"%s\" of \"%s\" is missing", m->label, key, e->path);
            (*bad)++;
            continue;
        }
        if (r == RS_MISMATCH) {
            (*bad)++;
            continue;
        }
        if (r != 0)
            return -1;
        if (size != e->size) {
            log_error("snapshot \"%s\": object \"%s\" of \"%s\" holds other content", m->label,
                      key, e->path);
            (*bad)++;
        }
    }
    return 0;
}

/*
 * files_verify -- decrypt and authenticate label's manifest and objects (every
 * snapshot when label is NULL). 0 | RS_NOT_FOUND | RS_MISMATCH (every problem
 * reported first) | -1.
 */
int files_verify(files_ctx *x, const char *label)
{
    char **labels = NULL;
    size_t n = 0, bad = 0, objects = 0;
    cas_set *done = NULL;
    int ret = -1;

    if (!(done = cas_set_new()))
        return -1;
    if (label) {
        if (!(labels = malloc(sizeof(*labels))) || !(labels[0] = strdup(label))) {
            free(labels);
            labels = NULL;
            log_error("out of memory");
            goto out;
        }
        n = 1;
    } else if (files_labels(x, &labels, &n) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        files_manifest m;
        int r = files_manifest_load(x, labels[i], &m);
        if (r == RS_NOT_FOUND && label) {
            ret = r;
            goto out;
        }
        if (r == RS_MISMATCH || r == RS_NOT_FOUND) {
            bad++;
            continue;
        }
        if (r != 0)
            goto out;
        r = verify_manifest(x, &m, done, &bad);
        files_manifest_release(&m);
        if (r != 0)
            goto out;
    }
    objects = cas_set_count(done);
    if (bad) {
        log_error("verify found %zu problem%s in %zu snapshot%s", bad, PLURAL(bad), n, PLURAL(n));
        ret = RS_MISMATCH;
        goto out;
    }
    if (x->json) {
        if (print_json(json_pack("{s:I, s:I, s:b}", "snapshots", (json_int_t)n, "objects",
                                 (json_int_t)objects, "ok", 1)) != 0)
            goto out;
    } else
        printf("ok: %zu snapshot%s, %zu object%s verified\n", n, PLURAL(n), objects, PLURAL(objects));
    ret = 0;
out:
    cas_set_free(done);
    tree_labels_free(labels, n);
    return ret;
}

/* created_cmp -- oldest first, label as the tie-break */
static int created_cmp(const void *a, const void *b)
{
    const files_manifest *ma = a, *mb = b;

    if (ma->created_t != mb->created_t)
        return ma->created_t < mb->created_t ? -1 : 1;
    return strcmp(ma->label, mb->label);
}

/*
 * files_expire -- keep the keep_last newest snapshots (by creation time; among those
 * whose label starts with prefix when it is not NULL), remove the
 * others' manifests, then sweep objects no kept snapshot references. Under the
 * exclusive lock, so no snapshot is being written meanwhile. Every kept manifest must
 * decrypt first, or nothing is removed (a sweep without its references would delete
 * live objects). 0 | RS_MISMATCH | -1.
 */
int files_expire(files_ctx *x, const char *prefix, long keep_last, int dry_run)
{
    char **labels = NULL, key[256];
    size_t n = 0, nm = 0, removed_snaps = 0;
    long newer = 0;
    files_manifest *ms = NULL;
    cas_set *keep = NULL;
    storage_lock *lk = NULL;
    uint64_t removed = 0, freed = 0;
    int ret = -1, r;

    r = storage_lock_take(x->st, FILES_LOCK, 1, 1, &lk);
    if (r != 0)
        return -1;
    if (files_labels(x, &labels, &n) != 0)
        goto out;
    if (n && !(ms = calloc(n, sizeof(*ms)))) {
        log_error("out of memory");
        goto out;
    }
    for (nm = 0; nm < n; nm++) {
        r = files_manifest_load(x, labels[nm], &ms[nm]);
        if (r != 0) {
            log_error("expire stopped: snapshot \"%s\" cannot be read, nothing removed",
                      labels[nm]);
            ret = r == RS_MISMATCH ? RS_MISMATCH : -1;
            goto out;
        }
    }
    if (nm)
        qsort(ms, nm, sizeof(*ms), created_cmp);
    if (!(keep = cas_set_new()))
        goto out;
    /* newest first: the first keep_last matching snapshots stay */
    for (size_t i = nm; i-- > 0;) {
        int matches = !prefix || strncmp(ms[i].label, prefix, strlen(prefix)) == 0;
        int expired = matches && newer >= keep_last;
        newer += matches;
        if (expired) {
            printf("%s %s\n", dry_run ? "would remove" : "removed", ms[i].label);
            removed_snaps++;
            if (!dry_run) {
                snprintf(key, sizeof(key), "%s/%s.json", FILES_SNAPSHOTS, ms[i].label);
                if (storage_remove(x->st, key) != 0)
                    goto out;
            }
            continue;
        }
        for (size_t j = 0; j < ms[i].n; j++)
            if (ms[i].v[j].type == FILES_REG && cas_set_add(keep, ms[i].v[j].addr) < 0)
                goto out;
    }
    if (cas_sweep(x->c, keep, dry_run, &removed, &freed) != 0)
        goto out;
    log_info("%s %zu snapshot%s and %llu object%s (%llu byte%s)", dry_run ? "would remove" : "removed",
             removed_snaps, PLURAL(removed_snaps), (unsigned long long)removed, PLURAL(removed),
             (unsigned long long)freed, PLURAL(freed));
    ret = 0;
out:
    for (size_t i = 0; i < nm; i++)
        files_manifest_release(&ms[i]);
    free(ms);
    cas_set_free(keep);
    tree_labels_free(labels, n);
    storage_lock_release(lk);
    return ret;
}
