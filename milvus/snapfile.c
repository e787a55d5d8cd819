/*
 * snapfile.c -- the snapshot manifest in and out of JSON (format in milvus.h), and the
 * path checks that keep a restore inside its target directories.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "milvus.h"
#include "object.h"
#include "repo.h"
#include "timefmt.h"
#include "tree.h"

#define MV_FORMAT 1

void mv_volume_release(mv_volume *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++) {
        free(v->entries[i].path);
        free(v->entries[i].target);
        free(v->entries[i].chunks);
    }
    free(v->entries);
    free(v->name);
    free(v->dir);
    memset(v, 0, sizeof(*v));
}

void mv_snapshot_release(mv_snapshot *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nvols; i++)
        mv_volume_release(&s->vols[i]);
    free(s->vols);
    mv_collections_free(s->colls, s->ncolls);
    free(s->label);
    free(s->stack_version);
    free(s->milvus_url);
    free(s->milvus_db);
    free(s->pg_restore_point);
    free(s->pg_lsn);
    memset(s, 0, sizeof(*s));
}

int mv_volume_add(mv_volume *v, mv_entry *e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        mv_entry *p = realloc(v->entries, cap * sizeof(*p));
        if (p == NULL)
            return log_errno("could not grow the entry list of volume \"%s\"", v->name);
        v->entries = p;
        v->cap = cap;
    }
    v->entries[v->n++] = *e;
    return 0;
}

/* mv_label_valid -- labels become storage keys and PostgreSQL restore point names:
 * tree_label_valid's characters, at most 63 of them (restore point names are limited
 * to 63 bytes plus the NUL), and not starting with '-' either. */
int mv_label_valid(const char *label)
{
    return label[0] != '-' && tree_label_valid(label, 63);
}

int mv_snapshot_key(const char *label, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s" MV_MANIFEST_SUFFIX, MV_SNAPSHOT_PREFIX, label);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

static const char *mv_type_name(int t)
{
    return t == MV_DIR ? "dir" : t == MV_LINK ? "symlink" : "file";
}

/* mv_json_set -- json_object_set_new that turns a NULL value (allocation failure)
 * into a failure of the whole build. */
static int mv_json_set(json_t *obj, const char *key, json_t *val)
{
    if (val == NULL)
        return -1;
    return json_object_set_new(obj, key, val);
}

static json_t *mv_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *mv_entry_json(const mv_entry *e)
{
    json_t *o = json_object();
    int bad = (o == NULL);

    if (bad)
        return NULL;
    bad |= mv_json_set(o, "path", json_string(e->path));
    bad |= mv_json_set(o, "type", json_string(mv_type_name(e->type)));
    if (e->type != MV_LINK)
        bad |= mv_json_set(o, "mode", json_integer(e->mode));
    bad |= mv_json_set(o, "uid", json_integer(e->uid));
    bad |= mv_json_set(o, "gid", json_integer(e->gid));
    bad |= mv_json_set(o, "mtime_ns", json_integer(e->mtime_ns));
    if (e->type == MV_FILE) {
        char hex[SHA256_HEX_LEN + 1];
        sha256_to_hex(e->sha, hex);
        bad |= mv_json_set(o, "size", json_integer((json_int_t)e->size));
        bad |= mv_json_set(o, "sha256", json_string(hex));
        bad |= mv_json_set(o, "ino", json_integer((json_int_t)e->ino));
        bad |= mv_json_set(o, "ctime_ns", json_integer(e->ctime_ns));
        if (e->nchunks > 0) {
            json_t *ch = json_array();
            bad |= (ch == NULL);
            for (uint32_t i = 0; ch && i < e->nchunks; i++) {
                sha256_to_hex(e->chunks[i], hex);
                bad |= json_array_append_new(ch, json_string(hex));
            }
            bad |= mv_json_set(o, "chunk_size", json_integer(e->chunk_size));
            bad |= mv_json_set(o, "chunks", ch);
        }
    } else if (e->type == MV_LINK) {
        bad |= mv_json_set(o, "target", json_string(e->target));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int mv_snapshot_to_json(const mv_snapshot *s, char **buf, size_t *len)
{
    json_t *root = json_object(), *vols = json_array(), *st = json_object();
    json_t *milvus = NULL, *pg = NULL;
    char t1[32], t2[32];
    int bad = (root == NULL || vols == NULL || st == NULL);
    int ret = -1;

    if (bad)
        goto out;
    timefmt_utc(t1, sizeof(t1), s->started);
    timefmt_utc(t2, sizeof(t2), s->finished);
    bad |= mv_json_set(root, "format", json_integer(MV_FORMAT));
    bad |= mv_json_set(root, "tool", json_string("ragsafe-milvus"));
    bad |= mv_json_set(root, "tool_version", json_string(RAGSAFE_VERSION));
    bad |= mv_json_set(root, "label", json_string(s->label));
    bad |= mv_json_set(root, "started", json_string(t1));
    bad |= mv_json_set(root, "finished", json_string(t2));
    bad |= mv_json_set(root, "started_unix", json_integer(s->started));
    bad |= mv_json_set(root, "walk_started_ns", json_integer(s->walk_started_ns));
    bad |= mv_json_set(root, "downtime_ms", json_integer(s->downtime_ms));
    bad |= mv_json_set(root, "stack_version", mv_str_or_null(s->stack_version));
    if (s->have_milvus) {
        json_t *colls = json_array();
        milvus = json_object();
        bad |= (milvus == NULL || colls == NULL);
        for (size_t i = 0; !bad && i < s->ncolls; i++) {
            json_t *c = json_object();
            bad |= (c == NULL);
            if (c) {
                bad |= mv_json_set(c, "name", json_string(s->colls[i].name));
                bad |= mv_json_set(c, "rows", json_integer(s->colls[i].rows));
                bad |= json_array_append_new(colls, c);
            }
        }
        if (milvus) {
            bad |= mv_json_set(milvus, "url", mv_str_or_null(s->milvus_url));
            bad |= mv_json_set(milvus, "db", mv_str_or_null(s->milvus_db));
            bad |= mv_json_set(milvus, "collections", colls);
        } else {
            json_decref(colls);
        }
    }
    bad |= mv_json_set(root, "milvus", milvus ? milvus : json_null());
    milvus = NULL;
    if (s->pg_restore_point != NULL) {
        pg = json_object();
        bad |= (pg == NULL);
        if (pg) {
            bad |= mv_json_set(pg, "restore_point", json_string(s->pg_restore_point));
            bad |= mv_json_set(pg, "lsn", mv_str_or_null(s->pg_lsn));
        }
    }
    bad |= mv_json_set(root, "pg", pg ? pg : json_null());
    pg = NULL;
    bad |= mv_json_set(st, "files", json_integer((json_int_t)s->stats.files));
    bad |= mv_json_set(st, "dirs", json_integer((json_int_t)s->stats.dirs));
    bad |= mv_json_set(st, "symlinks", json_integer((json_int_t)s->stats.symlinks));
    bad |= mv_json_set(st, "bytes", json_integer((json_int_t)s->stats.bytes));
    bad |= mv_json_set(st, "new_objects", json_integer((json_int_t)s->stats.new_objects));
    bad |= mv_json_set(st, "new_bytes", json_integer((json_int_t)s->stats.new_bytes));
    bad |= mv_json_set(st, "stored_bytes", json_integer((json_int_t)s->stats.stored_bytes));
    bad |= mv_json_set(st, "reused_bytes", json_integer((json_int_t)s->stats.reused_bytes));
    bad |= mv_json_set(root, "stats", st);
    st = NULL;
    for (size_t i = 0; !bad && i < s->nvols; i++) {
        const mv_volume *v = &s->vols[i];
        json_t *vo = json_object(), *ents = json_array();
        bad |= (vo == NULL || ents == NULL);
        for (size_t j = 0; !bad && j < v->n; j++)
            bad |= json_array_append_new(ents, mv_entry_json(&v->entries[j]));
        if (vo == NULL) {
            json_decref(ents);
            break;
        }
        bad |= mv_json_set(vo, "name", json_string(v->name));
        bad |= mv_json_set(vo, "path", json_string(v->dir));
        bad |= mv_json_set(vo, "mode", json_integer(v->mode));
        bad |= mv_json_set(vo, "uid", json_integer(v->uid));
        bad |= mv_json_set(vo, "gid", json_integer(v->gid));
        bad |= mv_json_set(vo, "mtime_ns", json_integer(v->mtime_ns));
        bad |= mv_json_set(vo, "entries", ents);
        bad |= json_array_append_new(vols, vo);
    }
    bad |= mv_json_set(root, "volumes", vols);
    vols = NULL;
    if (bad) {
        log_error("could not build the snapshot manifest: out of memory");
        goto out;
    }
    *buf = json_dumps(root, JSON_COMPACT);
    if (*buf == NULL) {
        log_error("could not serialize the snapshot manifest");
        goto out;
    }
    *len = strlen(*buf);
    ret = 0;
out:
    json_decref(root);
    json_decref(vols);
    json_decref(st);
    return ret;
}

/* ---- parsing ---- */

/* A set of entries keyed by path (open addressing). It keeps pointers into the
 * volume's entry array, which the parser allocates once and never moves. */
typedef struct mv_strset {
    const mv_entry **slots;
    size_t cap, count;
} mv_strset;

static uint64_t mv_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* mv_strset_add -- 1 added, 0 present, -1 out of memory. */
static int mv_strset_add(mv_strset *set, const mv_entry *e)
{
    if ((set->count + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 1024;
        const mv_entry **n = calloc(cap, sizeof(*n));
        if (n == NULL)
            return -1;
        for (size_t i = 0; i < set->cap; i++) {
            if (set->slots[i] == NULL)
                continue;
            const char *p = set->slots[i]->path;
            size_t j = mv_hash(p, strlen(p)) & (cap - 1);
            while (n[j] != NULL)
                j = (j + 1) & (cap - 1);
            n[j] = set->slots[i];
        }
        free(set->slots);
        set->slots = n;
        set->cap = cap;
    }
    size_t i = mv_hash(e->path, strlen(e->path)) & (set->cap - 1);
    while (set->slots[i] != NULL) {
        if (strcmp(set->slots[i]->path, e->path) == 0)
            return 0;
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = e;
    set->count++;
    return 1;
}

/* mv_strset_find -- the entry whose path is the len bytes at s, or NULL. */
static const mv_entry *mv_strset_find(const mv_strset *set, const char *s, size_t len)
{
    if (set->cap == 0)
        return NULL;
    size_t i = mv_hash(s, len) & (set->cap - 1);
    while (set->slots[i] != NULL) {
        const char *p = set->slots[i]->path;
        if (strncmp(p, s, len) == 0 && p[len] == '\0')
            return set->slots[i];
        i = (i + 1) & (set->cap - 1);
    }
    return NULL;
}

static int mv_get_int(json_t *o, const char *key, int64_t *out, int required)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = 0;
        return required ? -1 : 0;
    }
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int mv_get_str(json_t *o, const char *key, char **out, int required)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return required ? -1 : 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    *out = strdup(json_string_value(v));
    return *out ? 0 : -1;
}

/* mv_parse_volume -- one volume object; checks paths and the pre-order. */
static int mv_parse_volume(json_t *vo, const char *what, mv_volume *v)
{
    json_t *ents = json_object_get(vo, "entries");
    mv_strset dirs = {0}, seen = {0};
    int64_t x;
    int ret = -1;

    if (mv_get_str(vo, "name", &v->name, 1) != 0 || mv_get_str(vo, "path", &v->dir, 1) != 0 ||
        !json_is_array(ents) || !mv_label_valid(v->name)) {
        log_error("invalid snapshot manifest \"%s\": malformed volume", what);
        goto out;
    }
    if (mv_get_int(vo, "mode", &x, 0) != 0) goto bad;
    v->mode = (uint32_t)x & 07777;
    if (mv_get_int(vo, "uid", &x, 0) != 0) goto bad;
    v->uid = (uint32_t)x;
    if (mv_get_int(vo, "gid", &x, 0) != 0) goto bad;
    v->gid = (uint32_t)x;
    if (mv_get_int(vo, "mtime_ns", &v->mtime_ns, 0) != 0) goto bad;

    size_t n = json_array_size(ents);
    v->entries = calloc(n ? n : 1, sizeof(*v->entries));
    if (v->entries == NULL) {
        log_errno("could not allocate entries");
        goto out;
    }
    v->cap = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *eo = json_array_get(ents, i);
        mv_entry *e = &v->entries[v->n];
        char *type = NULL;
        if (!json_is_object(eo) || mv_get_str(eo, "path", &e->path, 1) != 0 ||
            mv_get_str(eo, "type", &type, 1) != 0) {
            free(e->path);
            e->path = NULL;
            free(type);
            goto bad;
        }
        v->n++;
        e->type = strcmp(type, "dir") == 0 ? MV_DIR
                  : strcmp(type, "symlink") == 0 ? MV_LINK
                  : strcmp(type, "file") == 0 ? MV_FILE : -1;
        free(type);
        if (e->type < 0)
            goto bad;
        if (!tree_path_valid(e->path)) {
            log_error("snapshot manifest \"%s\" holds an unsafe path \"%s\" in volume \"%s\"",
                      what, e->path, v->name);
            log_detail("paths must be relative and may not contain \"..\" or \".\" components");
            goto out;
        }
        /* the parent must be the root or a directory listed earlier: a path can then
         * never lead through a symlink or a file, whatever the manifest says */
        const char *slash = strrchr(e->path, '/');
        const mv_entry *parent = NULL;
        if (slash != NULL &&
            (parent = mv_strset_find(&dirs, e->path, (size_t)(slash - e->path))) == NULL) {
            log_error("snapshot manifest \"%s\": the parent of \"%s\" in volume \"%s\" is not "
                      "a directory listed before it", what, e->path, v->name);
            goto out;
        }
        e->parent = parent ? parent - v->entries : -1;
        int added = mv_strset_add(&seen, e);
        if (added < 0) {
            log_errno("could not allocate");
            goto out;
        }
        if (added == 0) {
            log_error("snapshot manifest \"%s\" lists \"%s\" twice in volume \"%s\"", what,
                      e->path, v->name);
            goto out;
        }
        if (e->type == MV_DIR && mv_strset_add(&dirs, e) < 0) {
            log_errno("could not allocate");
            goto out;
        }
        if (mv_get_int(eo, "mode", &x, e->type != MV_LINK) != 0) goto bad;
        e->mode = (uint32_t)x & 07777;
        if (mv_get_int(eo, "uid", &x, 0) != 0) goto bad;
        e->uid = (uint32_t)x;
        if (mv_get_int(eo, "gid", &x, 0) != 0) goto bad;
        e->gid = (uint32_t)x;
        if (mv_get_int(eo, "mtime_ns", &e->mtime_ns, 0) != 0) goto bad;
        if (e->type == MV_FILE) {
            char *hex = NULL;
            if (mv_get_int(eo, "size", &x, 1) != 0 || x < 0) goto bad;
            e->size = (uint64_t)x;
            if (mv_get_int(eo, "ino", &x, 0) != 0) goto bad;
            e->ino = (uint64_t)x;
            if (mv_get_int(eo, "ctime_ns", &e->ctime_ns, 0) != 0) goto bad;
            if (mv_get_str(eo, "sha256", &hex, 1) != 0 || strlen(hex) != SHA256_HEX_LEN ||
                sha256_from_hex(hex, e->sha) != 0) {
                free(hex);
                goto bad;
            }
            free(hex);
            json_t *ch = json_object_get(eo, "chunks");
            if (ch != NULL) {
                int64_t cs;
                if (!json_is_array(ch) || mv_get_int(eo, "chunk_size", &cs, 1) != 0 ||
                    cs <= 0 || cs > (64 << 20) ||
                    json_array_size(ch) != (e->size + (uint64_t)cs - 1) / (uint64_t)cs)
                    goto bad;
                e->chunk_size = (uint32_t)cs;
                e->nchunks = (uint32_t)json_array_size(ch);
                e->chunks = calloc(e->nchunks + 1, SHA256_LEN);
                if (e->chunks == NULL) {
                    log_errno("could not allocate");
                    goto out;
                }
                for (uint32_t c = 0; c < e->nchunks; c++) {
                    json_t *h = json_array_get(ch, c);
                    if (!json_is_string(h) || json_string_length(h) != SHA256_HEX_LEN ||
                        sha256_from_hex(json_string_value(h), e->chunks[c]) != 0)
                        goto bad;
                }
            }
        } else if (e->type == MV_LINK) {
            if (mv_get_str(eo, "target", &e->target, 1) != 0 || e->target[0] == '\0')
                goto bad;
        }
    }
    ret = 0;
    goto out;
bad:
    log_error("invalid snapshot manifest \"%s\": malformed entry %zu of volume \"%s\"", what,
              v->n, v->name ? v->name : "?");
out:
    free(dirs.slots);
    free(seen.slots);
    return ret;
}

int mv_snapshot_parse(const char *buf, size_t len, const char *what, mv_snapshot *s)
{
    json_error_t jerr;
    int64_t t0 = mv_now_ms();
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *x;
    int64_t fmt;
    int ret = -1;

    log_debug("manifest: %lld ms to parse %zu bytes of JSON", (long long)(mv_now_ms() - t0), len);

    memset(s, 0, sizeof(*s));
    if (root == NULL) {
        log_error("could not parse snapshot manifest \"%s\": %s (line %d)", what, jerr.text,
                  jerr.line);
        return -1;
    }
    if (mv_get_int(root, "format", &fmt, 1) != 0 || fmt != MV_FORMAT) {
        log_error("snapshot manifest \"%s\" has an unsupported format", what);
        goto out;
    }
    if (mv_get_str(root, "label", &s->label, 1) != 0 || !mv_label_valid(s->label) ||
        mv_get_int(root, "started_unix", &s->started, 1) != 0 ||
        mv_get_int(root, "walk_started_ns", &s->walk_started_ns, 0) != 0 ||
        mv_get_int(root, "downtime_ms", &s->downtime_ms, 0) != 0 ||
        mv_get_str(root, "stack_version", &s->stack_version, 0) != 0) {
        log_error("invalid snapshot manifest \"%s\": malformed header", what);
        goto out;
    }
    x = json_object_get(root, "milvus");
    if (json_is_object(x)) {
        json_t *colls = json_object_get(x, "collections");
        s->have_milvus = 1;
        if (mv_get_str(x, "url", &s->milvus_url, 0) != 0 ||
            mv_get_str(x, "db", &s->milvus_db, 0) != 0 || !json_is_array(colls)) {
            log_error("invalid snapshot manifest \"%s\": malformed milvus section", what);
            goto out;
        }
        s->colls = calloc(json_array_size(colls) + 1, sizeof(*s->colls));
        if (s->colls == NULL) {
            log_errno("could not allocate");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(colls); i++) {
            json_t *c = json_array_get(colls, i);
            mv_collection *mc = &s->colls[s->ncolls];
            if (!json_is_object(c) || mv_get_str(c, "name", &mc->name, 1) != 0 ||
                mv_get_int(c, "rows", &mc->rows, 1) != 0) {
                free(mc->name);
                mc->name = NULL;
                log_error("invalid snapshot manifest \"%s\": malformed collection", what);
                goto out;
            }
            s->ncolls++;
        }
    }
    x = json_object_get(root, "pg");
    if (json_is_object(x) && (mv_get_str(x, "restore_point", &s->pg_restore_point, 1) != 0 ||
                              mv_get_str(x, "lsn", &s->pg_lsn, 0) != 0)) {
        log_error("invalid snapshot manifest \"%s\": malformed pg section", what);
        goto out;
    }
    x = json_object_get(root, "stats");
    if (json_is_object(x)) {
        int64_t v;
#define MV_STAT(f) if (mv_get_int(x, #f, &v, 0) == 0) s->stats.f = (uint64_t)v
        MV_STAT(files); MV_STAT(dirs); MV_STAT(symlinks); MV_STAT(bytes);
        MV_STAT(new_objects); MV_STAT(new_bytes); MV_STAT(stored_bytes); MV_STAT(reused_bytes);
#undef MV_STAT
    }
    x = json_object_get(root, "volumes");
    if (!json_is_array(x) || json_array_size(x) == 0) {
        log_error("invalid snapshot manifest \"%s\": no volumes", what);
        goto out;
    }
    s->vols = calloc(json_array_size(x), sizeof(*s->vols));
    if (s->vols == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(x); i++) {
        json_t *vo = json_array_get(x, i);
        s->nvols++;
        if (!json_is_object(vo)) {
            log_error("invalid snapshot manifest \"%s\": malformed volume", what);
            goto out;
        }
        if (mv_parse_volume(vo, what, &s->vols[i]) != 0)
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->vols[j].name, s->vols[i].name) == 0) {
                log_error("snapshot manifest \"%s\" names volume \"%s\" twice", what,
                          s->vols[i].name);
                goto out;
            }
        }
    }
    ret = 0;
    log_debug("manifest: %lld ms to the checked entries", (long long)(mv_now_ms() - t0));
out:
    json_decref(root);
    if (ret != 0)
        mv_snapshot_release(s);
    log_debug("manifest: %lld ms to the freed JSON", (long long)(mv_now_ms() - t0));
    return ret;
}

int mv_snapshot_load(storage *st, const char *label, mv_snapshot *s)
{
    char key[256];
    char *buf = NULL;
    size_t len = 0;
    int r;

    memset(s, 0, sizeof(*s));
    if (!mv_label_valid(label) || mv_snapshot_key(label, key, sizeof(key)) != 0)
        return log_error("invalid snapshot label \"%s\"", label);
    /* a stored object like any other: decompressed and checked against its SHA-256 */
    int64_t t0 = mv_now_ms();
    r = object_get_buf(st, key, MV_MANIFEST_MAX, &buf, &len, NULL);
    log_debug("manifest: %lld ms to read and check \"%s\"", (long long)(mv_now_ms() - t0), key);
    /* -1 on a manifest that is there: zstd could not decode it (a damaged frame is
     * reported as -1 by zst.h, a damaged content as RS_MISMATCH): integrity either way */
    if (r < 0 && storage_stat(st, key, NULL, NULL) == 0)
        r = RS_MISMATCH;
    if (r == RS_MISMATCH)
        log_error("snapshot manifest \"%s\" is corrupt", key);
    if (r != 0)
        return r;
    r = mv_snapshot_parse(buf, len, key, s);
    free(buf);
    if (r == 0 && strcmp(s->label, label) != 0) {
        log_error("snapshot manifest \"%s\" holds label \"%s\"", key, s->label);
        mv_snapshot_release(s);
        return -1;
    }
    return r;
}

/* mv_snapshot_labels -- oldest first by storage mtime, then label; keys whose label
 * mv_label_valid refuses are not ours (lib/tree.h) */
int mv_snapshot_labels(storage *st, char ***labels, size_t *n)
{
    return tree_labels(st, MV_SNAPSHOT_PREFIX, MV_MANIFEST_SUFFIX, mv_label_valid, 1, labels, n);
}
