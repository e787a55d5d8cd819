/*
 * snapfile.c -- the snapshot manifest in and out of JSON (format in milvus.h), and the
 * path checks that keep a restore inside its target directories.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"
#include "milvus.h"
#include "object.h"
#include "repo.h"
#include "strbuf.h"
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

/* mv_strset_reserve -- room for n entries without growing (each growth rehashes every
 * path): 0 | -1 out of memory */
static int mv_strset_reserve(mv_strset *set, size_t n)
{
    size_t cap = 1024;

    while (cap < (n + 1) * 2)
        cap *= 2;
    set->slots = calloc(cap, sizeof(*set->slots));
    set->cap = set->slots ? cap : 0;
    return set->slots ? 0 : -1;
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

/* ---- the manifest reader ----
 *
 * A manifest is JSON. Its header, milvus, pg and stats members, and each volume's own
 * members, are read by jansson; the volumes' entry lists (22,000 entries for the
 * 302 MiB benchmark volumes, nearly all of the 4.5 MB) are read here, straight into
 * mv_entry, before any of the restore can start: jansson's tree of them took 110-150 ms
 * to build (most of it faulting in 30 MB on a VM), 40-50 ms to walk and 20-25 ms to
 * free; this reads them in 40 ms and checks them in 12 (issue 16; -vv prints both).
 * What it accepts is what jansson with JSON_REJECT_DUPLICATES accepts (RFC 8259, UTF-8
 * checked, no \u0000, no duplicate key in any object, integers within int64, nothing
 * after the top-level object; one difference: a number of 512 characters or more is
 * refused). The checks of each entry then run in the same order as before, on what was
 * read (mvj_raw), once the whole text has parsed: a syntax error anywhere refuses the
 * manifest before any entry is looked at, as jansson's whole-document parse did. */

enum { MVJ_ABSENT, MVJ_NULL, MVJ_INT, MVJ_STR, MVJ_ARR, MVJ_OTHER };
enum {
    F_PATH, F_TYPE, F_MODE, F_UID, F_GID, F_MTIME, F_SIZE, F_INO, F_CTIME, F_SHA,
    F_CHUNK_SIZE, F_CHUNKS, F_TARGET, F_N
};
static const char *const mvj_fields[F_N] = {
    "path", "type", "mode", "uid", "gid", "mtime_ns", "size", "ino", "ctime_ns", "sha256",
    "chunk_size", "chunks", "target"};

#define MVJ_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct mvj_raw {    /* one entry as read, before its checks */
    uint8_t kind[F_N];      /* MVJ_* of each member */
    uint8_t not_object;     /* the array element is not an object */
    uint8_t sha_ok;         /* sha256 is 64 hex digits (in e->sha) */
    uint8_t chunks_ok;      /* every chunk is 64 hex digits (in e->chunks) */
    int8_t type;            /* MV_*, or -1 for another string */
    int64_t num[F_N];       /* the integer members */
} mvj_raw;

typedef struct mvj_vol {    /* one element of "volumes" */
    json_t *hdr;            /* its members but "entries"; NULL: not an object */
    int entries_kind;
    mv_entry *ents;
    mvj_raw *raw;
    size_t n, cap;
} mvj_vol;

typedef struct mvj {
    const char *p, *start, *end;
    const char *err, *errat;  /* the first syntax error, and where */
    strbuf s;                 /* the last string read, decoded */
    mvj_vol *vols;
    size_t nvols, capvols;
    size_t max_objects;       /* '{' in the text: no array of objects can be longer */
    int vols_kind;            /* of the top-level "volumes" */
} mvj;

static int mvj_fail(mvj *j, const char *msg)
{
    if (j->err == NULL) {
        j->err = msg;
        j->errat = j->p;
    }
    return -1;
}

static void mvj_ws(mvj *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

static int mvj_lit(mvj *j, const char *w, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return mvj_fail(j, "invalid token");
    j->p += n;
    return 0;
}

static int mvj_put(mvj *j, const char *b, size_t n)
{
    return strbuf_appendn(&j->s, b, n) == 0 ? 0 : mvj_fail(j, "out of memory");
}

static int mvj_hex4(const char *p, unsigned *u)
{
    *u = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *u = *u << 4 | (unsigned)d;
    }
    return 0;
}

/* mvj_utf8 -- the length of the valid UTF-8 sequence at p (not past end), or 0 */
static size_t mvj_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], min, cp;
    size_t n;

    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* mvj_string -- the string at p (at its '"'), decoded, into j->s */
static int mvj_string(mvj *j)
{
    const char *p = ++j->p, *run = p;

    j->s.len = 0;   /* reused for every string: its buffer stays */
    if (j->s.alloc > 0)
        j->s.buf[0] = '\0';
    for (;;) {
        if (p >= j->end) {
            j->p = p;
            return mvj_fail(j, "premature end of input");
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20) {
            j->p = p;
            return mvj_fail(j, "control character in a string");
        }
        if (c >= 0x80) {
            size_t n = mvj_utf8((const unsigned char *)p, (const unsigned char *)j->end);
            if (n == 0) {
                j->p = p;
                return mvj_fail(j, "invalid UTF-8 in a string");
            }
            p += n;
            continue;
        }
        if (c != '\\') {
            p++;
            continue;
        }
        if (mvj_put(j, run, (size_t)(p - run)) != 0)
            return -1;
        j->p = p;
        if (p + 1 >= j->end)
            return mvj_fail(j, "premature end of input");
        char out[4];
        size_t olen = 1;
        switch (p[1]) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (j->end - p < 6 || mvj_hex4(p + 2, &u) != 0)
                return mvj_fail(j, "invalid escape");
            if (u >= 0xdc00 && u <= 0xdfff)
                return mvj_fail(j, "invalid Unicode escape");
            if (u >= 0xd800 && u <= 0xdbff) {
                if (j->end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
                    mvj_hex4(p + 8, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return mvj_fail(j, "invalid Unicode escape");
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (u == 0)
                return mvj_fail(j, "\\u0000 is not allowed");
            if (u < 0x80) {
                out[0] = (char)u;
            } else if (u < 0x800) {
                out[0] = (char)(0xc0 | u >> 6);
                out[1] = (char)(0x80 | (u & 0x3f));
                olen = 2;
            } else if (u < 0x10000) {
                out[0] = (char)(0xe0 | u >> 12);
                out[1] = (char)(0x80 | (u >> 6 & 0x3f));
                out[2] = (char)(0x80 | (u & 0x3f));
                olen = 3;
            } else {
                out[0] = (char)(0xf0 | u >> 18);
                out[1] = (char)(0x80 | (u >> 12 & 0x3f));
                out[2] = (char)(0x80 | (u >> 6 & 0x3f));
                out[3] = (char)(0x80 | (u & 0x3f));
                olen = 4;
            }
            p += 4;
            break;
        }
        default:
            return mvj_fail(j, "invalid escape");
        }
        if (mvj_put(j, out, olen) != 0)
            return -1;
        p += 2;
        run = p;
    }
    if (mvj_put(j, run, (size_t)(p - run)) != 0)
        return -1;
    j->p = p + 1;
    return 0;
}

/* mvj_number -- the number at p; *is_int and *v when it is an integer (no fraction,
 * no exponent: jansson's json_integer), which must fit int64 as in jansson */
static int mvj_number(mvj *j, int *is_int, int64_t *v)
{
    const char *p = j->p, *b = p;
    char tmp[512];

    *is_int = 1;
    if (p < j->end && *p == '-')
        p++;
    if (p < j->end && *p == '0') {
        p++;
    } else if (p < j->end && *p >= '1' && *p <= '9') {
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return mvj_fail(j, "invalid token");
    }
    if (p < j->end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return mvj_fail(j, "invalid number");
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return mvj_fail(j, "invalid number");
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if ((size_t)(p - b) >= sizeof(tmp))
        return mvj_fail(j, "number too long");
    memcpy(tmp, b, (size_t)(p - b));
    tmp[p - b] = '\0';
    errno = 0;
    if (*is_int) {
        long long x = strtoll(tmp, NULL, 10);
        if (errno == ERANGE)
            return mvj_fail(j, "too big integer");
        *v = x;
    } else {
        double d = strtod(tmp, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            return mvj_fail(j, "real number overflow");
    }
    j->p = p;
    return 0;
}

typedef struct mvj_keys {   /* the keys of one object, to refuse a duplicate */
    char **k;
    size_t n, cap;
} mvj_keys;

static void mvj_keys_release(mvj_keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        free(ks->k[i]);
    free(ks->k);
}

/* mvj_keys_add -- the key in j->s; fails on a duplicate */
static int mvj_keys_add(mvj *j, mvj_keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->k[i], j->s.buf) == 0)
            return mvj_fail(j, "duplicate object key");
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 8;
        char **k = realloc(ks->k, cap * sizeof(*k));
        if (k == NULL)
            return mvj_fail(j, "out of memory");
        ks->k = k;
        ks->cap = cap;
    }
    if ((ks->k[ks->n] = strdup(j->s.buf)) == NULL)
        return mvj_fail(j, "out of memory");
    ks->n++;
    return 0;
}

/* mvj_key -- at an object's key: read it, its ':', and the whitespace after */
static int mvj_key(mvj *j)
{
    mvj_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return mvj_fail(j, "string or '}' expected");
    if (mvj_string(j) != 0)
        return -1;
    mvj_ws(j);
    if (j->p >= j->end || *j->p != ':')
        return mvj_fail(j, "':' expected");
    j->p++;
    mvj_ws(j);
    return 0;
}

/* mvj_next -- after a member or element: 1 on ',', 0 on close, -1 otherwise */
static int mvj_next(mvj *j, char close)
{
    mvj_ws(j);
    if (j->p < j->end && *j->p == ',') {
        j->p++;
        return 1;
    }
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    return mvj_fail(j, close == '}' ? "',' or '}' expected" : "',' or ']' expected");
}

/* mvj_skip -- any value at p, checked and passed over; its MVJ_* kind */
static int mvj_skip(mvj *j, int depth)
{
    int is_int, r;
    int64_t v;

    mvj_ws(j);
    if (j->p >= j->end)
        return mvj_fail(j, "premature end of input");
    if (depth > MVJ_MAX_DEPTH)
        return mvj_fail(j, "maximum parsing depth reached");
    switch (*j->p) {
    case '"':
        return mvj_string(j) == 0 ? MVJ_STR : -1;
    case 'n':
        return mvj_lit(j, "null", 4) == 0 ? MVJ_NULL : -1;
    case 't':
        return mvj_lit(j, "true", 4) == 0 ? MVJ_OTHER : -1;
    case 'f':
        return mvj_lit(j, "false", 5) == 0 ? MVJ_OTHER : -1;
    case '[':
        j->p++;
        mvj_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return MVJ_ARR;
        }
        do {
            if (mvj_skip(j, depth + 1) < 0)
                return -1;
        } while ((r = mvj_next(j, ']')) == 1);
        return r == 0 ? MVJ_ARR : -1;
    case '{': {
        mvj_keys ks = {0};
        j->p++;
        mvj_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return MVJ_OTHER;
        }
        do {
            if (mvj_key(j) != 0 || mvj_keys_add(j, &ks) != 0 || mvj_skip(j, depth + 1) < 0) {
                mvj_keys_release(&ks);
                return -1;
            }
        } while ((r = mvj_next(j, '}')) == 1);
        mvj_keys_release(&ks);
        return r == 0 ? MVJ_OTHER : -1;
    }
    default:
        if (mvj_number(j, &is_int, &v) != 0)
            return -1;
        return is_int ? MVJ_INT : MVJ_OTHER;
    }
}

/* mvj_span -- the value at p through jansson (a member other than the entries) */
static json_t *mvj_span(mvj *j, int depth)
{
    json_error_t jerr;
    const char *b;
    json_t *v;

    mvj_ws(j);
    b = j->p;
    if (mvj_skip(j, depth) < 0)
        return NULL;
    v = json_loadb(b, (size_t)(j->p - b), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        j->p = b;
        mvj_fail(j, "invalid value");
    }
    return v;
}

static int mvj_field(const char *k, size_t len)
{
    for (int f = 0; f < F_N; f++)
        if (strlen(mvj_fields[f]) == len && memcmp(mvj_fields[f], k, len) == 0)
            return f;
    return -1;
}

static int mvj_hexdigest(const mvj *j, uint8_t out[SHA256_LEN])
{
    return j->s.len == SHA256_HEX_LEN && sha256_from_hex(j->s.buf, out) == 0;
}

/* mvj_chunks -- a "chunks" array into e->chunks, r->chunks_ok */
static int mvj_chunks(mvj *j, mv_entry *e, mvj_raw *r, int depth)
{
    size_t cap = 0;
    int k;

    j->p++;   /* '[' */
    r->chunks_ok = 1;
    mvj_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    do {
        mvj_ws(j);
        if (j->p < j->end && *j->p == '"') {
            if (mvj_string(j) != 0)
                return -1;
            if (e->nchunks == cap) {
                size_t nc = cap ? cap * 2 : 8;
                void *c = realloc(e->chunks, (nc + 1) * SHA256_LEN);
                if (c == NULL)
                    return mvj_fail(j, "out of memory");
                e->chunks = c;
                cap = nc;
            }
            if (mvj_hexdigest(j, e->chunks[e->nchunks]))
                e->nchunks++;
            else
                r->chunks_ok = 0;
        } else {
            if (mvj_skip(j, depth + 1) < 0)
                return -1;
            r->chunks_ok = 0;
        }
    } while ((k = mvj_next(j, ']')) == 1);
    return k == 0 ? 0 : -1;
}

/* mvj_entry -- one element of an entries array into e and r (no checks but syntax) */
static int mvj_entry(mvj *j, mv_entry *e, mvj_raw *r, int depth)
{
    mvj_keys other = {0};
    int k, ret = -1;

    mvj_ws(j);
    if (j->p >= j->end || *j->p != '{') {
        r->not_object = 1;
        return mvj_skip(j, depth) < 0 ? -1 : 0;
    }
    j->p++;
    mvj_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    do {
        int f, kind, is_int;
        int64_t v;
        if (mvj_key(j) != 0)
            goto out;
        f = mvj_field(j->s.buf, j->s.len);
        if (f < 0) {
            if (mvj_keys_add(j, &other) != 0 || mvj_skip(j, depth + 1) < 0)
                goto out;
            continue;
        }
        if (r->kind[f] != MVJ_ABSENT) {
            mvj_fail(j, "duplicate object key");
            goto out;
        }
        if (j->p >= j->end) {
            mvj_fail(j, "premature end of input");
            goto out;
        }
        if (*j->p == '"') {
            if (mvj_string(j) != 0)
                goto out;
            kind = MVJ_STR;
            if (f == F_PATH || f == F_TARGET) {
                char *d = malloc(j->s.len + 1);
                if (d == NULL) {
                    mvj_fail(j, "out of memory");
                    goto out;
                }
                memcpy(d, j->s.buf, j->s.len + 1);
                *(f == F_PATH ? &e->path : &e->target) = d;
            } else if (f == F_TYPE) {
                r->type = strcmp(j->s.buf, "dir") == 0 ? MV_DIR
                          : strcmp(j->s.buf, "symlink") == 0 ? MV_LINK
                          : strcmp(j->s.buf, "file") == 0 ? MV_FILE : -1;
            } else if (f == F_SHA) {
                r->sha_ok = (uint8_t)mvj_hexdigest(j, e->sha);
            }
        } else if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
            if (mvj_number(j, &is_int, &v) != 0)
                goto out;
            kind = is_int ? MVJ_INT : MVJ_OTHER;
            r->num[f] = is_int ? v : 0;
        } else if (*j->p == '[' && f == F_CHUNKS) {
            if (depth + 1 > MVJ_MAX_DEPTH) {
                mvj_fail(j, "maximum parsing depth reached");
                goto out;
            }
            if (mvj_chunks(j, e, r, depth + 1) != 0)
                goto out;
            kind = MVJ_ARR;
        } else if ((kind = mvj_skip(j, depth + 1)) < 0) {
            goto out;
        }
        r->kind[f] = (uint8_t)kind;
    } while ((k = mvj_next(j, '}')) == 1);
    if (k == 0)
        ret = 0;
out:
    mvj_keys_release(&other);
    return ret;
}

/* mvj_entries -- a volume's "entries" array */
static int mvj_entries(mvj *j, mvj_vol *vol, int depth)
{
    int k;

    j->p++;   /* '[' */
    mvj_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    do {
        if (vol->n == vol->cap) {
            /* at once the most there can be: pages never written cost nothing, and
             * growing 22,000 entries by doubling copied and faulted in 8 MB */
            size_t cap = vol->cap ? vol->cap * 2 : j->max_objects + 1;
            mv_entry *e = realloc(vol->ents, cap * sizeof(*e));
            if (e != NULL)
                vol->ents = e;
            mvj_raw *r = realloc(vol->raw, cap * sizeof(*r));
            if (r != NULL)
                vol->raw = r;
            if (e == NULL || r == NULL)
                return mvj_fail(j, "out of memory");
            vol->cap = cap;
        }
        memset(&vol->ents[vol->n], 0, sizeof(*vol->ents));
        memset(&vol->raw[vol->n], 0, sizeof(*vol->raw));
        vol->n++;   /* counted before it is read: its strings are freed on failure */
        if (mvj_entry(j, &vol->ents[vol->n - 1], &vol->raw[vol->n - 1], depth + 1) != 0)
            return -1;
    } while ((k = mvj_next(j, ']')) == 1);
    return k == 0 ? 0 : -1;
}

/* mvj_volume -- one element of "volumes" */
static int mvj_volume(mvj *j, mvj_vol *vol, int depth)
{
    int k, seen_entries = 0;

    mvj_ws(j);
    vol->entries_kind = MVJ_ABSENT;
    if (j->p >= j->end || *j->p != '{')
        return mvj_skip(j, depth) < 0 ? -1 : 0;   /* hdr NULL: not an object */
    if ((vol->hdr = json_object()) == NULL)
        return mvj_fail(j, "out of memory");
    j->p++;
    mvj_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    do {
        if (mvj_key(j) != 0)
            return -1;
        if (strcmp(j->s.buf, "entries") == 0) {
            if (seen_entries++)
                return mvj_fail(j, "duplicate object key");
            if (j->p < j->end && *j->p == '[') {
                if (depth + 1 > MVJ_MAX_DEPTH)
                    return mvj_fail(j, "maximum parsing depth reached");
                if (mvj_entries(j, vol, depth + 1) != 0)
                    return -1;
                vol->entries_kind = MVJ_ARR;
            } else if ((vol->entries_kind = mvj_skip(j, depth + 1)) < 0) {
                return -1;
            }
            continue;
        }
        if (json_object_get(vol->hdr, j->s.buf) != NULL)
            return mvj_fail(j, "duplicate object key");
        char *key = strdup(j->s.buf);
        json_t *v = key ? mvj_span(j, depth + 1) : NULL;
        if (key == NULL || v == NULL) {
            free(key);
            return mvj_fail(j, "out of memory");
        }
        k = json_object_set_new(vol->hdr, key, v);
        free(key);
        if (k != 0)
            return mvj_fail(j, "out of memory");
    } while ((k = mvj_next(j, '}')) == 1);
    return k == 0 ? 0 : -1;
}

/* mvj_volumes -- the top-level "volumes" array */
static int mvj_volumes(mvj *j)
{
    int k;

    j->p++;   /* '[' */
    mvj_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    do {
        if (j->nvols == j->capvols) {
            size_t cap = j->capvols ? j->capvols * 2 : 4;
            mvj_vol *v = realloc(j->vols, cap * sizeof(*v));
            if (v == NULL)
                return mvj_fail(j, "out of memory");
            j->vols = v;
            j->capvols = cap;
        }
        memset(&j->vols[j->nvols], 0, sizeof(*j->vols));
        j->nvols++;
        if (mvj_volume(j, &j->vols[j->nvols - 1], 2) != 0)
            return -1;
    } while ((k = mvj_next(j, ']')) == 1);
    return k == 0 ? 0 : -1;
}

/* mvj_parse -- the whole manifest: *root gets every top-level member but "volumes" */
static int mvj_parse(mvj *j, json_t **root)
{
    int k, seen_vols = 0;

    *root = json_object();
    if (*root == NULL)
        return mvj_fail(j, "out of memory");
    for (const char *c = j->p; (c = memchr(c, '{', (size_t)(j->end - c))) != NULL; c++)
        j->max_objects++;
    j->vols_kind = MVJ_ABSENT;
    mvj_ws(j);
    if (j->p >= j->end || *j->p != '{')
        return mvj_fail(j, "'{' expected");
    j->p++;
    mvj_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
    } else {
        do {
            if (mvj_key(j) != 0)
                return -1;
            if (strcmp(j->s.buf, "volumes") == 0) {
                if (seen_vols++)
                    return mvj_fail(j, "duplicate object key");
                if (j->p < j->end && *j->p == '[') {
                    if (mvj_volumes(j) != 0)
                        return -1;
                    j->vols_kind = MVJ_ARR;
                } else if ((j->vols_kind = mvj_skip(j, 1)) < 0) {
                    return -1;
                }
                continue;
            }
            if (json_object_get(*root, j->s.buf) != NULL)
                return mvj_fail(j, "duplicate object key");
            char *key = strdup(j->s.buf);
            json_t *v = key ? mvj_span(j, 1) : NULL;
            if (key == NULL || v == NULL) {
                free(key);
                return mvj_fail(j, "out of memory");
            }
            k = json_object_set_new(*root, key, v);
            free(key);
            if (k != 0)
                return mvj_fail(j, "out of memory");
        } while ((k = mvj_next(j, '}')) == 1);
        if (k != 0)
            return -1;
    }
    mvj_ws(j);
    if (j->p != j->end)
        return mvj_fail(j, "end of file expected");
    return 0;
}

/* mvj_vol_release -- what the checks did not take: the entries from `from` on, and
 * the array too unless a volume took it */
static void mvj_vol_release(mvj_vol *vol, size_t from, int array)
{
    for (size_t i = from; i < vol->n; i++) {
        free(vol->ents[i].path);
        free(vol->ents[i].target);
        free(vol->ents[i].chunks);
    }
    if (array)
        free(vol->ents);
    free(vol->raw);
    json_decref(vol->hdr);
    memset(vol, 0, sizeof(*vol));
}

/* mvj_int -- mv_get_int on a member read by mvj_entry */
static int mvj_int(const mvj_raw *r, int f, int64_t *out, int required)
{
    *out = 0;
    if (r->kind[f] == MVJ_ABSENT || r->kind[f] == MVJ_NULL)
        return required ? -1 : 0;
    if (r->kind[f] != MVJ_INT)
        return -1;
    *out = r->num[f];
    return 0;
}

/* mv_parse_volume -- one volume as read; checks paths and the pre-order. Takes the
 * entries mvj_entry read (vol keeps nothing). */
static int mv_parse_volume(mvj_vol *vol, const char *what, mv_volume *v)
{
    json_t *vo = vol->hdr;
    mv_strset dirs = {0}, seen = {0};
    int64_t x;
    int ret = -1;

    if (mv_get_str(vo, "name", &v->name, 1) != 0 || mv_get_str(vo, "path", &v->dir, 1) != 0 ||
        vol->entries_kind != MVJ_ARR || !mv_label_valid(v->name)) {
        log_error("invalid snapshot manifest \"%s\": malformed volume", what);
        mvj_vol_release(vol, 0, 1);
        return -1;
    }
    if (mv_get_int(vo, "mode", &x, 0) != 0) goto bad;
    v->mode = (uint32_t)x & 07777;
    if (mv_get_int(vo, "uid", &x, 0) != 0) goto bad;
    v->uid = (uint32_t)x;
    if (mv_get_int(vo, "gid", &x, 0) != 0) goto bad;
    v->gid = (uint32_t)x;
    if (mv_get_int(vo, "mtime_ns", &v->mtime_ns, 0) != 0) goto bad;

    size_t n = vol->n;
    if (mv_strset_reserve(&seen, n) != 0 || mv_strset_reserve(&dirs, n) != 0) {
        log_errno("could not allocate");
        goto out;
    }
    if (vol->ents == NULL && (vol->ents = calloc(1, sizeof(*vol->ents))) == NULL) {
        log_errno("could not allocate entries");
        goto out;
    }
    /* the volume owns entries [0, v->n) from here; mvj_vol_release the rest */
    v->entries = vol->ents;
    v->cap = vol->cap ? vol->cap : 1;
    for (size_t i = 0; i < n; i++) {
        const mvj_raw *r = &vol->raw[i];
        mv_entry *e = &v->entries[v->n];
        if (r->not_object || r->kind[F_PATH] != MVJ_STR || r->kind[F_TYPE] != MVJ_STR)
            goto bad;
        v->n++;
        e->type = r->type;
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
        if (slash != NULL && mv_strset_find(&dirs, e->path, (size_t)(slash - e->path)) == NULL) {
            log_error("snapshot manifest \"%s\": the parent of \"%s\" in volume \"%s\" is not "
                      "a directory listed before it", what, e->path, v->name);
            goto out;
        }
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
        if (mvj_int(r, F_MODE, &x, e->type != MV_LINK) != 0) goto bad;
        e->mode = (uint32_t)x & 07777;
        if (mvj_int(r, F_UID, &x, 0) != 0) goto bad;
        e->uid = (uint32_t)x;
        if (mvj_int(r, F_GID, &x, 0) != 0) goto bad;
        e->gid = (uint32_t)x;
        if (mvj_int(r, F_MTIME, &e->mtime_ns, 0) != 0) goto bad;
        if (e->type != MV_LINK) {
            free(e->target);
            e->target = NULL;
        }
        if (e->type != MV_FILE || r->kind[F_CHUNKS] == MVJ_ABSENT) {
            free(e->chunks);   /* only a file's chunks count */
            e->chunks = NULL;
            e->nchunks = 0;
        }
        if (e->type == MV_FILE) {
            if (mvj_int(r, F_SIZE, &x, 1) != 0 || x < 0) goto bad;
            e->size = (uint64_t)x;
            if (mvj_int(r, F_INO, &x, 0) != 0) goto bad;
            e->ino = (uint64_t)x;
            if (mvj_int(r, F_CTIME, &e->ctime_ns, 0) != 0) goto bad;
            if (r->kind[F_SHA] != MVJ_STR || !r->sha_ok) goto bad;
            if (r->kind[F_CHUNKS] != MVJ_ABSENT) {
                int64_t cs;
                if (r->kind[F_CHUNKS] != MVJ_ARR || !r->chunks_ok ||
                    mvj_int(r, F_CHUNK_SIZE, &cs, 1) != 0 || cs <= 0 || cs > (64 << 20) ||
                    e->nchunks != (e->size + (uint64_t)cs - 1) / (uint64_t)cs)
                    goto bad;
                e->chunk_size = (uint32_t)cs;
                if (e->chunks == NULL && (e->chunks = calloc(1, SHA256_LEN)) == NULL) {
                    log_errno("could not allocate");
                    goto out;
                }
            }
        } else if (e->type == MV_LINK) {
            if (r->kind[F_TARGET] != MVJ_STR || e->target[0] == '\0')
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
    mvj_vol_release(vol, v->entries ? v->n : 0, v->entries == NULL);
    return ret;
}

int mv_snapshot_parse(const char *buf, size_t len, const char *what, mv_snapshot *s)
{
    mvj j = {.p = buf, .start = buf, .end = buf + len};
    json_t *root = NULL, *x;
    int64_t fmt, t0 = mv_now_ms();
    int ret = -1;

    memset(s, 0, sizeof(*s));
    strbuf_init(&j.s);
    if (mvj_parse(&j, &root) != 0) {
        int line = 1;
        for (const char *c = buf; c < j.errat; c++)
            line += *c == '\n';
        log_error("could not parse snapshot manifest \"%s\": %s (line %d)", what, j.err, line);
        goto out;
    }
    log_debug("manifest: %lld ms to parse %zu bytes of JSON", (long long)(mv_now_ms() - t0), len);
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
    if (j.vols_kind != MVJ_ARR || j.nvols == 0) {
        log_error("invalid snapshot manifest \"%s\": no volumes", what);
        goto out;
    }
    s->vols = calloc(j.nvols, sizeof(*s->vols));
    if (s->vols == NULL) {
        log_errno("could not allocate");
        goto out;
    }
    for (size_t i = 0; i < j.nvols; i++) {
        s->nvols++;
        if (j.vols[i].hdr == NULL) {
            log_error("invalid snapshot manifest \"%s\": malformed volume", what);
            goto out;
        }
        if (mv_parse_volume(&j.vols[i], what, &s->vols[i]) != 0)
            goto out;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s->vols[k].name, s->vols[i].name) == 0) {
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
    for (size_t i = 0; i < j.nvols; i++)
        mvj_vol_release(&j.vols[i], 0, 1);   /* those the checks did not reach */
    free(j.vols);
    strbuf_release(&j.s);
    if (ret != 0)
        mv_snapshot_release(s);
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
