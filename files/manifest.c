/*
 * manifest.c -- the sealed snapshot manifest of ragsafe-files.
 *
 * Plaintext: JSON
 *     {"format":1,"label":"L","created":"2026-11-26T01:00:00Z","created_t":N,"base":"/opt/rag",
 *      "files":[{"path":"backend/alembic.ini","type":"f","mode":420,"mtime":N,"mtime_ns":N,
 *                "uid":0,"gid":0,"size":N,"addr":"<hex>"}, {"path":"logs","type":"d",...},
 *               {"path":"logs/cur","type":"l","target":"app.log",...}]}
 * stored under files/snapshots/<label>.json as cipher frames (cipher.h) whose name is
 * that key, so a manifest cannot be swapped for another snapshot's either.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "files.h"
#include "log.h"
#include "tree.h"

#define FILES_MANIFEST_MAX (256u << 20)

void files_manifest_release(files_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].path);
        free(m->v[i].target);
    }
    free(m->v);
    free(m->base);
    memset(m, 0, sizeof(*m));
}

/* files_manifest_add -- a zeroed new entry, or NULL (reported). */
files_entry *files_manifest_add(files_manifest *m)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        files_entry *v = realloc(m->v, cap * sizeof(*v));
        if (!v) {
            log_error("out of memory");
            return NULL;
        }
        m->v = v;
        m->cap = cap;
    }
    memset(&m->v[m->n], 0, sizeof(m->v[0]));
    return &m->v[m->n++];
}

/* snapshot_key -- storage key of a label's manifest */
static void snapshot_key(char *out, size_t len, const char *label)
{
    snprintf(out, len, "%s/%s.json", FILES_SNAPSHOTS, label);
}

/* entry_json -- one entry as a JSON object, NULL when out of memory */
static json_t *entry_json(const files_entry *e)
{
    char hex[SHA256_HEX_LEN + 1], type[2] = {(char)e->type, 0};
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "path", e->path, "type", type,
                          "mode", (json_int_t)e->mode, "mtime", (json_int_t)e->mtime,
                          "mtime_ns", (json_int_t)e->mtime_ns, "uid", (json_int_t)e->uid,
                          "gid", (json_int_t)e->gid);
    if (!o)
        return NULL;
    if (e->type == FILES_REG) {
        sha256_to_hex(e->addr, hex);
        if (json_object_set_new(o, "size", json_integer((json_int_t)e->size)) != 0
            || json_object_set_new(o, "addr", json_string(hex)) != 0) {
            json_decref(o);
            return NULL;
        }
    } else if (e->type == FILES_LNK) {
        if (json_object_set_new(o, "target", json_string(e->target)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/*
 * files_manifest_save -- seal and store the manifest (no-replace: a label is written
 * once). 0 | RS_EXISTS (reported) | -1.
 */
int files_manifest_save(files_ctx *x, const files_manifest *m)
{
    json_t *root = NULL, *arr = NULL;
    char *text = NULL, key[256];
    int ret = -1;

    snapshot_key(key, sizeof(key), m->label);
    root = json_pack("{s:i, s:s, s:s, s:I, s:s, s:[]}", "format", 1, "label", m->label,
                     "created", m->created, "created_t", (json_int_t)m->created_t,
                     "base", m->base ? m->base : "", "files");
    if (!root)
        goto oom;
    arr = json_object_get(root, "files");
    for (size_t i = 0; i < m->n; i++) {
        json_t *o = entry_json(&m->v[i]);
        if (!o || json_array_append_new(arr, o) != 0)
            goto oom;
    }
    text = json_dumps(root, JSON_COMPACT);
    if (!text)
        goto oom;
    if (strlen(text) + 1 > FILES_MANIFEST_MAX) {
        log_error("manifest larger than %u bytes", FILES_MANIFEST_MAX);
        goto out;
    }
    ret = storage_put(x->st, key, text, strlen(text), 1); /* sealed by the storage */
    if (ret == RS_EXISTS)
        log_error("could not store snapshot \"%s\": a snapshot of that label exists", m->label);
    goto out;
oom:
    log_error("out of memory");
out:
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    json_decref(root);
    return ret;
}

/* parse one entry; -1 (not reported) when malformed */
static int entry_parse(json_t *o, files_entry *e)
{
    const char *path, *type, *addr = NULL, *target = NULL;
    json_int_t mode, mtime, ns, uid, gid, size = 0;

    if (json_unpack(o, "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s?I, s?s, s?s}", "path", &path,
                    "type", &type, "mode", &mode, "mtime", &mtime, "mtime_ns", &ns, "uid", &uid,
                    "gid", &gid, "size", &size, "addr", &addr, "target", &target) != 0)
        return -1;
    if (!tree_path_valid(path) || strlen(type) != 1 || mode < 0 || mode > 07777 || ns < 0
        || ns > 999999999 || uid < 0 || gid < 0 || size < 0)
        return -1;
    e->type = type[0];
    if (e->type == FILES_REG) {
        if (!addr || sha256_from_hex(addr, e->addr) != 0)
            return -1;
    } else if (e->type == FILES_LNK) {
        if (!target || !*target || !(e->target = strdup(target)))
            return -1;
    } else if (e->type != FILES_DIR) {
        return -1;
    }
    if (!(e->path = strdup(path)))
        return -1;
    e->mode = (mode_t)mode;
    e->mtime = mtime;
    e->mtime_ns = (long)ns;
    e->uid = (uid_t)uid;
    e->gid = (gid_t)gid;
    e->size = (uint64_t)size;
    return 0;
}

/*
 * files_manifest_load -- fetch, authenticate and parse a snapshot manifest.
 * 0 | RS_NOT_FOUND (reported) | RS_MISMATCH (reported: wrong key, tampered, or a
 * manifest that would write outside the target) | -1.
 */
int files_manifest_load(files_ctx *x, const char *label, files_manifest *m)
{
    char key[256], *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *arr, *o;
    json_error_t jerr;
    const char *lbl, *created, *base;
    json_int_t fmt, created_t;
    size_t i;
    int ret;

    memset(m, 0, sizeof(*m));
    if (!tree_label_valid(label, FILES_LABEL_MAX)) {
        log_error("invalid snapshot label \"%s\"", label);
        return -1;
    }
    snapshot_key(key, sizeof(key), label);
    /* sealed: a wrong key, a tampered, truncated or swapped manifest is RS_MISMATCH */
    ret = storage_get(x->st, key, FILES_MANIFEST_MAX, &text, &len);
    if (ret == RS_NOT_FOUND) {
        log_error("could not find snapshot \"%s\" in \"%s\"", label, storage_location(x->st));
        goto out;
    }
    if (ret != 0)
        goto out;
    ret = RS_MISMATCH;
    root = json_loadb(text, len, 0, &jerr);
    if (!root || json_unpack(root, "{s:I, s:s, s:s, s:I, s:s, s:o}", "format", &fmt, "label", &lbl,
                             "created", &created, "created_t", &created_t, "base", &base,
                             "files", &arr) != 0
        || fmt != 1 || !json_is_array(arr) || strcmp(lbl, label) != 0
        || strlen(created) >= sizeof(m->created)) {
        log_error("snapshot \"%s\" has a malformed manifest", label);
        goto out;
    }
    snprintf(m->label, sizeof(m->label), "%s", lbl);
    snprintf(m->created, sizeof(m->created), "%s", created);
    m->created_t = created_t;
    if (!(m->base = strdup(base))) {
        ret = log_error("out of memory");
        goto out;
    }
    json_array_foreach(arr, i, o) {
        files_entry *e = files_manifest_add(m);
        if (!e) {
            ret = -1;
            goto out;
        }
        if (entry_parse(o, e) != 0) {
            log_error("snapshot \"%s\" has a malformed or unsafe entry %zu", label, i);
            goto out;
        }
    }
    ret = 0;
out:
    if (ret != 0)
        files_manifest_release(m);
    json_decref(root);
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    return ret;
}

/* files_labels -- every stored snapshot label, sorted by label (lib/tree.h). 0 | -1. */
int files_labels(files_ctx *x, char ***labels, size_t *n)
{
    return tree_labels(x->st, FILES_SNAPSHOTS "/", ".json", NULL, 0, labels, n);
}
