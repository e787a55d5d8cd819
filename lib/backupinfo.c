/*
 * backupinfo.c -- backup.json: read, write, list (see backupinfo.h for the format).
 *
 * start_wal / stop_wal are derived when writing: start_wal is the segment that holds
 * start_lsn, stop_wal the last segment needed to reach stop_lsn (the segment holding
 * the byte before stop_lsn, as PostgreSQL's XLByteToPrevSeg). Parsing ignores them.
 */
#include "backupinfo.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"
#include "repo.h"
#include "timefmt.h"
#include "walname.h"

#define BACKUPINFO_FORMAT 1
#define BACKUPINFO_MAX (16u << 20)

/* get_u64 / get_u32 / get_str / get_lsn / get_time -- one required member of root,
 * reported naming the key when missing or malformed. */
static int get_u64(json_t *root, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(root, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return log_error("could not parse backup.json: bad or missing \"%s\"", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_u32(json_t *root, const char *key, uint32_t *out)
{
    uint64_t v;

    if (get_u64(root, key, UINT32_MAX, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* get_str -- malloc'd copy of a string member. */
static int get_str(json_t *root, const char *key, char **out)
{
    json_t *v = json_object_get(root, key);

    if (!json_is_string(v))
        return log_error("could not parse backup.json: bad or missing \"%s\"", key);
    *out = strdup(json_string_value(v));
    if (!*out)
        return log_errno("could not allocate memory");
    return 0;
}

static int get_lsn(json_t *root, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(root, key);

    if (!json_is_string(v) || lsn_parse(json_string_value(v), out) != 0)
        return log_error("could not parse backup.json: bad or missing \"%s\"", key);
    return 0;
}

/* get_time -- an RFC 3339 time (timefmt_parse; written with "Z", any zone read) in
 * whole seconds. A time without a zone is refused: stored times name their zone. */
static int get_time(json_t *root, const char *key, int64_t *out)
{
    json_t *v = json_object_get(root, key);
    int64_t us;
    int zone = 0;

    if (!json_is_string(v) || timefmt_parse(json_string_value(v), &us, &zone) != 0 || !zone)
        return log_error("could not parse backup.json: bad or missing \"%s\"", key);
    *out = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    return 0;
}

/* backupinfo_parse -- backup.json text into out (zeroed first, released on failure). */
/* parse_chunked -- "layout" (absent or "tar": a tar backup) and "chunks". -1 reported. */
static int parse_chunked(json_t *root, backup_info *out)
{
    json_t *l = json_object_get(root, "layout"), *c;
    uint64_t v;

    if (!l || (json_is_string(l) && strcmp(json_string_value(l), "tar") == 0))
        return 0;
    if (!json_is_string(l) || strcmp(json_string_value(l), "chunked") != 0) {
        log_error("could not parse backup.json: unsupported \"layout\"");
        return -1;
    }
    out->chunked = 1;
    c = json_object_get(root, "chunks");
    if (!json_is_object(c)) {
        log_error("could not parse backup.json: bad or missing \"chunks\"");
        return -1;
    }
    if (get_u64(c, "chunk_size", UINT32_MAX, &v) != 0)
        return -1;
    out->chunk_size = (uint32_t)v;
    if (get_u64(c, "count", UINT64_MAX, &out->chunks) != 0 ||
        get_u64(c, "new", UINT64_MAX, &out->new_chunks) != 0 ||
        get_u64(c, "packs_written", UINT64_MAX, &out->packs_written) != 0)
        return -1;
    return 0;
}

int backupinfo_parse(const char *json, size_t len, backup_info *out)
{
    json_t *root = NULL, *v, *arr;
    json_error_t jerr;
    int ret = -1;
    uint64_t u;
    char *s = NULL, *end;
    size_t i;

    memset(out, 0, sizeof(*out));
    root = json_loadb(json, len, 0, &jerr);
    if (!root) {
        log_error("could not parse backup.json: %s (line %d)", jerr.text, jerr.line);
        goto out;
    }
    if (!json_is_object(root)) {
        log_error("could not parse backup.json: not a JSON object");
        goto out;
    }
    if (get_u64(root, "format", UINT32_MAX, &u) != 0)
        goto out;
    if (u != BACKUPINFO_FORMAT) {
        log_error("could not parse backup.json: unsupported format %" PRIu64, u);
        goto out;
    }
    if (get_str(root, "label", &out->label) != 0 || get_str(root, "tool_version", &out->tool_version) != 0)
        goto out;
    if (get_str(root, "system_identifier", &s) != 0)
        goto out;
    errno = 0;
    out->sysid = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        log_error("could not parse backup.json: bad or missing \"system_identifier\"");
        goto out;
    }
    if (get_u32(root, "server_version", &out->server_version) != 0 ||
        get_lsn(root, "start_lsn", &out->start_lsn) != 0 ||
        get_u32(root, "start_tli", &out->start_tli) != 0 ||
        get_lsn(root, "stop_lsn", &out->stop_lsn) != 0 ||
        get_u32(root, "stop_tli", &out->stop_tli) != 0 ||
        get_time(root, "start_time", &out->start_time) != 0 ||
        get_time(root, "stop_time", &out->stop_time) != 0 ||
        get_u32(root, "wal_segment_size", &out->seg_size) != 0 ||
        get_u64(root, "raw_bytes", UINT64_MAX, &out->raw_bytes) != 0 ||
        get_u64(root, "stored_bytes", UINT64_MAX, &out->stored_bytes) != 0)
        goto out;
    if (!walname_seg_size_valid(out->seg_size)) {
        log_error("could not parse backup.json: bad \"wal_segment_size\" %" PRIu32, out->seg_size);
        goto out;
    }
    if (out->start_tli == 0 || out->stop_tli == 0 || out->stop_lsn < out->start_lsn) {
        log_error("could not parse backup.json: inconsistent start and stop positions");
        goto out;
    }

    arr = json_object_get(root, "tablespaces");
    if (!json_is_array(arr)) {
        log_error("could not parse backup.json: bad or missing \"tablespaces\"");
        goto out;
    }
    out->tablespaces = calloc(json_array_size(arr) + 1, sizeof(*out->tablespaces));
    if (!out->tablespaces) {
        log_errno("could not allocate memory");
        goto out;
    }
    json_array_foreach(arr, i, v) {
        backup_tablespace *t = &out->tablespaces[i];

        out->ntablespaces = i + 1;
        if (!json_is_object(v) || get_u32(v, "oid", &t->oid) != 0 ||
            get_str(v, "location", &t->location) != 0 || get_str(v, "file", &t->file) != 0) {
            log_detail("in tablespace entry %zu", i);
            goto out;
        }
    }

    /* optional: absent in older backups */
    arr = json_object_get(root, "databases");
    if (arr) {
        if (!json_is_array(arr)) {
            log_error("could not parse backup.json: bad \"databases\"");
            goto out;
        }
        out->databases = calloc(json_array_size(arr) + 1, sizeof(*out->databases));
        if (!out->databases) {
            log_errno("could not allocate memory");
            goto out;
        }
        json_array_foreach(arr, i, v) {
            backup_database *d = &out->databases[i];

            out->ndatabases = i + 1;
            if (!json_is_object(v) || get_u32(v, "oid", &d->oid) != 0 ||
                get_str(v, "name", &d->name) != 0 ||
                get_u32(v, "tablespace", &d->tablespace) != 0) {
                log_detail("in database entry %zu", i);
                goto out;
            }
        }
    }

    arr = json_object_get(root, "files");
    if (!json_is_array(arr)) {
        log_error("could not parse backup.json: bad or missing \"files\"");
        goto out;
    }
    out->files = calloc(json_array_size(arr) + 1, sizeof(*out->files));
    if (!out->files) {
        log_errno("could not allocate memory");
        goto out;
    }
    json_array_foreach(arr, i, v) {
        backup_file *f = &out->files[i];
        json_t *h;

        out->nfiles = i + 1;
        if (!json_is_object(v) || get_str(v, "name", &f->name) != 0 ||
            get_u64(v, "raw_bytes", UINT64_MAX, &f->raw_bytes) != 0 ||
            get_u64(v, "stored_bytes", UINT64_MAX, &f->stored_bytes) != 0) {
            log_detail("in file entry %zu", i);
            goto out;
        }
        h = json_object_get(v, "sha256");
        if (!json_is_string(h) || sha256_from_hex(json_string_value(h), f->sha256) != 0) {
            log_error("could not parse backup.json: bad or missing \"sha256\" of file \"%s\"", f->name);
            goto out;
        }
    }
    if (parse_chunked(root, out) != 0)
        goto out;
    /* every object a restore reads must have its digest here: restore and verify
     * check each against it, and accept or refuse the same backups */
    for (i = 0; i <= out->ntablespaces + 1; i++) {
        const char *need = i == 0 ? backupinfo_base_file(out)
                         : i == 1 ? "backup_manifest" : out->tablespaces[i - 2].file;
        size_t k;
        for (k = 0; k < out->nfiles && strcmp(out->files[k].name, need) != 0; k++)
            ;
        if (k == out->nfiles) {
            log_error("could not parse backup.json: \"files\" lacks \"%s\"", need);
            goto out;
        }
    }
    ret = 0;
out:
    free(s);
    json_decref(root);
    if (ret != 0)
        backupinfo_release(out);
    return ret;
}

/* set_new -- json_object_set_new that notices a failed allocation of the value. */
static int set_new(json_t *obj, const char *key, json_t *val)
{
    if (!val || json_object_set_new(obj, key, val) != 0)
        return -1;
    return 0;
}

/* backupinfo_base_file -- see backupinfo.h. */
const char *backupinfo_base_file(const backup_info *bi)
{
    return bi->chunked ? "base.chunks.zst" : "base.tar.zst";
}

/* emit_chunked -- "layout" and "chunks" of a chunked backup. -1 on a failed allocation. */
static int emit_chunked(json_t *root, const backup_info *bi)
{
    if (!bi->chunked)
        return 0;
    if (set_new(root, "layout", json_string("chunked")) != 0)
        return -1;
    return set_new(root, "chunks", json_pack("{s:I, s:I, s:I, s:I}", "chunk_size",
                                             (json_int_t)bi->chunk_size, "count",
                                             (json_int_t)bi->chunks, "new",
                                             (json_int_t)bi->new_chunks, "packs_written",
                                             (json_int_t)bi->packs_written));
}

/* backupinfo_to_json -- malloc'd pretty JSON with a trailing newline; NULL reported. */
char *backupinfo_to_json(const backup_info *bi)
{
    json_t *root = json_object(), *arr, *o;
    char sysid[24], lsn[LSN_STR_LEN + 1], wal[WAL_NAME_LEN + 1], tbuf[32];
    char hex[SHA256_HEX_LEN + 1];
    char *text = NULL, *ret = NULL;
    int bad = 0;
    uint64_t stop_segno;

    if (!root)
        goto oom;
    snprintf(sysid, sizeof(sysid), "%" PRIu64, bi->sysid);
    bad |= set_new(root, "format", json_integer(BACKUPINFO_FORMAT));
    bad |= set_new(root, "label", json_string(bi->label ? bi->label : ""));
    bad |= set_new(root, "tool_version", json_string(bi->tool_version ? bi->tool_version : RAGSAFE_VERSION));
    bad |= set_new(root, "system_identifier", json_string(sysid));
    bad |= set_new(root, "server_version", json_integer(bi->server_version));
    lsn_format(lsn, bi->start_lsn);
    bad |= set_new(root, "start_lsn", json_string(lsn));
    bad |= set_new(root, "start_tli", json_integer(bi->start_tli));
    lsn_format(lsn, bi->stop_lsn);
    bad |= set_new(root, "stop_lsn", json_string(lsn));
    bad |= set_new(root, "stop_tli", json_integer(bi->stop_tli));
    if (walname_seg_size_valid(bi->seg_size)) {
        walname_format(wal, bi->start_tli, lsn_segno(bi->start_lsn, bi->seg_size), bi->seg_size);
        bad |= set_new(root, "start_wal", json_string(wal));
        stop_segno = bi->stop_lsn > 0 ? lsn_segno(bi->stop_lsn - 1, bi->seg_size) : 0;
        if (stop_segno < lsn_segno(bi->start_lsn, bi->seg_size))
            stop_segno = lsn_segno(bi->start_lsn, bi->seg_size);
        walname_format(wal, bi->stop_tli, stop_segno, bi->seg_size);
        bad |= set_new(root, "stop_wal", json_string(wal));
    }
    timefmt_utc(tbuf, sizeof(tbuf), bi->start_time);
    bad |= set_new(root, "start_time", json_string(tbuf));
    timefmt_utc(tbuf, sizeof(tbuf), bi->stop_time);
    bad |= set_new(root, "stop_time", json_string(tbuf));
    bad |= set_new(root, "wal_segment_size", json_integer(bi->seg_size));
    bad |= set_new(root, "raw_bytes", json_integer((json_int_t)bi->raw_bytes));
    bad |= set_new(root, "stored_bytes", json_integer((json_int_t)bi->stored_bytes));

    arr = json_array();
    bad |= set_new(root, "tablespaces", arr);
    for (size_t i = 0; arr && i < bi->ntablespaces; i++) {
        const backup_tablespace *t = &bi->tablespaces[i];

        o = json_object();
        if (!o || json_array_append_new(arr, o) != 0)
            goto oom;
        bad |= set_new(o, "oid", json_integer(t->oid));
        bad |= set_new(o, "location", json_string(t->location ? t->location : ""));
        bad |= set_new(o, "file", json_string(t->file ? t->file : ""));
    }
    if (bi->databases) {
        arr = json_array();
        bad |= set_new(root, "databases", arr);
        for (size_t i = 0; arr && i < bi->ndatabases; i++) {
            const backup_database *d = &bi->databases[i];

            o = json_object();
            if (!o || json_array_append_new(arr, o) != 0)
                goto oom;
            bad |= set_new(o, "oid", json_integer(d->oid));
            bad |= set_new(o, "name", json_string(d->name ? d->name : ""));
            bad |= set_new(o, "tablespace", json_integer(d->tablespace));
        }
    }
    arr = json_array();
    bad |= set_new(root, "files", arr);
    for (size_t i = 0; arr && i < bi->nfiles; i++) {
        const backup_file *f = &bi->files[i];

        o = json_object();
        if (!o || json_array_append_new(arr, o) != 0)
            goto oom;
        bad |= set_new(o, "name", json_string(f->name ? f->name : ""));
        bad |= set_new(o, "raw_bytes", json_integer((json_int_t)f->raw_bytes));
        bad |= set_new(o, "stored_bytes", json_integer((json_int_t)f->stored_bytes));
        sha256_to_hex(f->sha256, hex);
        bad |= set_new(o, "sha256", json_string(hex));
    }
    bad |= emit_chunked(root, bi);
    if (bad)
        goto oom;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        goto oom;
    ret = malloc(strlen(text) + 2);
    if (!ret)
        goto oom;
    strcpy(ret, text);
    strcat(ret, "\n");
    goto out;
oom:
    log_error("could not build backup.json: out of memory or invalid text");
out:
    free(text);
    json_decref(root);
    return ret;
}

/* backupinfo_release -- free everything; safe on a zeroed or released backup_info. */
void backupinfo_release(backup_info *bi)
{
    if (!bi)
        return;
    free(bi->label);
    free(bi->tool_version);
    for (size_t i = 0; bi->tablespaces && i < bi->ntablespaces; i++) {
        free(bi->tablespaces[i].location);
        free(bi->tablespaces[i].file);
    }
    free(bi->tablespaces);
    for (size_t i = 0; bi->files && i < bi->nfiles; i++)
        free(bi->files[i].name);
    free(bi->files);
    for (size_t i = 0; bi->databases && i < bi->ndatabases; i++)
        free(bi->databases[i].name);
    free(bi->databases);
    memset(bi, 0, sizeof(*bi));
}

/* backupinfo_load -- backups/<label>/backup.json. 0 | RS_NOT_FOUND | -1. */
/* load_one -- backupinfo_load, with why (whylen bytes) saying what is damaged. */
static int load_one(storage *st, const char *label, backup_info *out, char *why, size_t whylen)
{
    char key[512];
    char *buf = NULL;
    size_t len = 0;
    int r;

    memset(out, 0, sizeof(*out));
    if ((size_t)snprintf(key, sizeof(key), "backups/%s/backup.json", label) >= sizeof(key))
        return log_error("backup label too long: \"%s\"", label);
    r = storage_get(st, key, BACKUPINFO_MAX, &buf, &len);
    if (r == RS_MISMATCH)
        snprintf(why, whylen, "backup.json does not authenticate");
    if (r != 0)
        return r;
    r = backupinfo_parse(buf, len, out);
    if (r != 0) {
        log_detail("in \"%s\"", key);
        snprintf(why, whylen, "backup.json does not parse");
        r = RS_MISMATCH;
    } else if (strcmp(out->label, label) != 0) {
        log_error("backup \"%s\" has backup.json of label \"%s\"", label, out->label);
        snprintf(why, whylen, "backup.json names another label");
        backupinfo_release(out);
        r = RS_MISMATCH;
    }
    free(buf);
    return r;
}

int backupinfo_load(storage *st, const char *label, backup_info *out)
{
    char why[64];
    return load_one(st, label, out, why, sizeof(why));
}

/* label_list -- labels found by backupinfo_list before their backup.json is read. */
typedef struct label_list {
    char **labels;
    size_t n, cap;
} label_list;

/* list_cb -- collect <label> of every key "backups/<label>/backup.json". */
static int list_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    label_list *ll = arg;
    const char *rest = key + strlen("backups/");
    const char *slash = strchr(rest, '/');
    size_t n;
    char *label;

    (void)size;
    (void)mtime;
    if (!slash || strcmp(slash, "/backup.json") != 0)
        return 0;
    n = (size_t)(slash - rest);
    if (n == 0 || (n >= 8 && memcmp(slash - 8, ".partial", 8) == 0))
        return 0;
    if (ll->n == ll->cap) {
        size_t cap = ll->cap ? ll->cap * 2 : 16;
        char **p = realloc(ll->labels, cap * sizeof(*p));
        if (!p)
            return log_errno("could not allocate memory");
        ll->labels = p;
        ll->cap = cap;
    }
    label = strndup(rest, n);
    if (!label)
        return log_errno("could not allocate memory");
    ll->labels[ll->n++] = label;
    return 0;
}

/* info_cmp -- by stop_lsn, then label: the order backupinfo_list promises. */
static int info_cmp(const void *a, const void *b)
{
    const backup_info *x = a, *y = b;

    if (x->stop_lsn != y->stop_lsn)
        return x->stop_lsn < y->stop_lsn ? -1 : 1;
    return strcmp(x->label, y->label);
}

/* backupinfo_list -- every complete backup, sorted by stop_lsn. */
int backupinfo_list(storage *st, backup_info **out, size_t *n, backupinfo_damaged_fn damaged,
                    void *arg)
{
    char why[64];
    label_list ll = {0};
    backup_info *list = NULL;
    size_t count = 0;
    int ret = -1, r;

    *out = NULL;
    *n = 0;
    if (storage_list(st, "backups/", list_cb, &ll) != 0)
        goto out;
    list = calloc(ll.n + 1, sizeof(*list));
    if (!list) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (size_t i = 0; i < ll.n; i++) {
        r = load_one(st, ll.labels[i], &list[count], why, sizeof(why));
        if (r == RS_NOT_FOUND)    /* removed while we listed (expire) */
            continue;
        if (r == RS_MISMATCH && damaged) { /* one damaged backup hides no other */
            if (damaged(arg, ll.labels[i], why) != 0)
                goto out;
            continue;
        }
        if (r != 0) {
            ret = r == RS_MISMATCH ? RS_MISMATCH : -1;
            goto out;
        }
        count++;
    }
    qsort(list, count, sizeof(*list), info_cmp);
    *out = list;
    *n = count;
    list = NULL;
    ret = 0;
out:
    if (list)
        backupinfo_list_free(list, count);
    for (size_t i = 0; i < ll.n; i++)
        free(ll.labels[i]);
    free(ll.labels);
    return ret;
}

/* backupinfo_list_free -- release each entry and the array; NULL is a no-op. */
void backupinfo_list_free(backup_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        backupinfo_release(&list[i]);
    free(list);
}
