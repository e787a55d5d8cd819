/*
 * s3_list.c -- listing (ListObjectsV2 pages with continuation tokens, read by
 * s3_xml.c), deleting (DeleteObjects in batches, commit objects first) and
 * rename_prefix (server-side copies) on S3.
 */
#include "s3_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "s3_xml.h"

/* list_raw -- every object key under the full prefix okp (ListObjectsV2 with
 * continuation); cb gets the key relative to the repository root. */
typedef int (*raw_fn)(void *arg, const char *key, int64_t size, int64_t mtime);

static int list_raw(s3_storage *st, const char *okp, raw_fn cb, void *arg)
{
    char *token = NULL, *eprefix = s3_uri_encode(okp, 0), *q = NULL, what[600];
    char why[S3_XML_WHY];
    size_t root = *st->prefix ? strlen(st->prefix) + 1 : 0, okl = strlen(okp);
    s3_xml_listing page = {0};
    s3_resp r = {0};
    int ret = -1;

    if (!eprefix)
        return log_error("out of memory");
    snprintf(what, sizeof(what), "list \"%s/%s\"", st->location, okp + root);
    for (;;) {
        char *etok = token ? s3_uri_encode(token, 0) : NULL;
        size_t n = strlen(eprefix) + (etok ? strlen(etok) : 0) + 96;

        free(q);
        q = malloc(n);
        if (!q || (token && !etok)) {
            free(etok);
            log_error("out of memory");
            goto out;
        }
        /* parameters in canonical (sorted) order: SigV4 signs the query as sent */
        snprintf(q, n, "%s%s%slist-type=2&prefix=%s", etok ? "continuation-token=" : "",
                 etok ? etok : "", etok ? "&" : "", eprefix);
        free(etok);
        s3_req rq = {.method = "GET", .query = q, .range_from = -1, .range_to = -1};
        s3_resp_release(&r);
        if (s3_call(st, &rq, &r, what) != 0)
            goto out;
        if (r.status != 200) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
        /* the whole page is read before any callback: a malformed page delivers nothing */
        s3_xml_listing_free(&page);
        if (s3_xml_listing_parse(r.body, r.len, &page, why, sizeof(why)) != 0) {
            s3_bad_answer(what, why);
            goto out;
        }
        s3_resp_release(&r); /* the page holds what is needed; cb may make requests */
        for (size_t i = 0; i < page.n; i++) {
            const s3_xml_object *o = &page.objects[i];
            int rr;
            if (strlen(o->key) < root || strncmp(o->key, okp, okl) != 0) {
                log_error("could not %s: the answer holds \"%s\", outside the prefix", what,
                          o->key);
                goto out;
            }
            if (!storage_key_valid(o->key + root))
                continue;
            rr = cb(arg, o->key + root, o->size, o->mtime);
            if (rr != 0) {
                ret = rr;
                goto out;
            }
        }
        free(token);
        token = NULL;
        if (!page.truncated)
            break;
        if (!page.next_token || !*page.next_token) {
            log_error("could not %s: truncated answer without a continuation token", what);
            goto out;
        }
        token = page.next_token;
        page.next_token = NULL;
    }
    ret = 0;
out:
    s3_xml_listing_free(&page);
    free(token);
    free(q);
    free(eprefix);
    s3_resp_release(&r);
    return ret;
}

/* prefix_okey -- the full-key prefix for a storage prefix ("" or "a/b" or "a/b/"): a
 * folder, so it always ends in '/' (except the bare root of an unprefixed bucket). */
static char *prefix_okey(const s3_storage *st, const char *prefix)
{
    size_t n = strlen(prefix), m = strlen(st->prefix) + n + 3;
    char *p;

    if (n) {
        char tmp[4096];
        if (n >= sizeof(tmp))
            return NULL;
        memcpy(tmp, prefix, n + 1);
        if (tmp[n - 1] == '/')
            tmp[n - 1] = '\0';
        if (!storage_key_valid(tmp))
            return NULL;
    }
    p = malloc(m);
    if (!p)
        return NULL;
    snprintf(p, m, "%s%s%s%s", st->prefix, *st->prefix ? "/" : "", prefix,
             n && prefix[n - 1] != '/' ? "/" : "");
    return p;
}

int s3_storage_list(s3_storage *st, const char *prefix, storage_list_fn cb, void *arg)
{
    char *okp = prefix_okey(st, prefix);
    int ret;

    if (!okp)
        return s3_bad_key(prefix);
    ret = list_raw(st, okp, cb, arg);
    free(okp);
    return ret;
}

int s3_storage_remove(s3_storage *st, const char *key)
{
    char *okey, what[600];
    s3_req rq = {.method = "DELETE", .range_from = -1, .range_to = -1};
    s3_resp r;
    int ret = -1;

    if (!storage_key_valid(key))
        return s3_bad_key(key);
    if (!(okey = s3_okey(st, key)))
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "remove \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) == 0) {
        int nk = r.status == 404 ? s3_is_no_such_key(st, &r) : 0;
        if (r.status == 204 || r.status == 200 || nk > 0)
            ret = 0;
        else if (nk < 0)
            ret = -1;
        else
            s3_fail(&r, "could not %s", what);
        s3_resp_release(&r);
    }
    free(okey);
    return ret;
}

typedef struct key_list {
    char **keys;
    size_t n, cap;
} key_list;

static int collect(void *arg, const char *key, int64_t size, int64_t mtime)
{
    key_list *l = arg;
    (void)size;
    (void)mtime;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **k = realloc(l->keys, cap * sizeof(char *));
        if (!k)
            return log_error("out of memory");
        l->keys = k;
        l->cap = cap;
    }
    if (!(l->keys[l->n] = strdup(key)))
        return log_error("out of memory");
    l->n++;
    return 0;
}

static void key_list_free(key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    memset(l, 0, sizeof(*l));
}

static int is_commit(const char *key)
{
    const char *base = strrchr(key, '/');
    return strcmp(base ? base + 1 : key, S3_COMMIT_NAME) == 0;
}

/* delete_batch -- DeleteObjects of keys[0..n) (repository keys). */
static int delete_batch(s3_storage *st, char **keys, size_t n)
{
    size_t cap = 128, used = 0;
    char *body = NULL, what[600];
    s3_req rq = {.method = "POST", .query = "delete=", .range_from = -1, .range_to = -1,
                 .hdrs = {"Content-Type: application/xml"}};
    s3_resp r = {0};
    int ret = -1;

    for (size_t i = 0; i < n; i++)
        cap += strlen(st->prefix) + strlen(keys[i]) * 6 + 40;
    body = malloc(cap);
    if (!body)
        return log_error("out of memory");
    used = (size_t)snprintf(body, cap, "<Delete><Quiet>true</Quiet>");
    for (size_t i = 0; i < n; i++) {
        /* keys are storage_key_valid; only '&', '<', '>' could need escaping */
        used += (size_t)snprintf(body + used, cap - used, "<Object><Key>%s%s", st->prefix,
                                 *st->prefix ? "/" : "");
        for (const char *c = keys[i]; *c; c++) {
            const char *e = *c == '&' ? "&amp;" : *c == '<' ? "&lt;" : *c == '>' ? "&gt;" : NULL;
            if (e)
                used += (size_t)snprintf(body + used, cap - used, "%s", e);
            else
                body[used++] = *c;
        }
        used += (size_t)snprintf(body + used, cap - used, "</Key></Object>");
    }
    used += (size_t)snprintf(body + used, cap - used, "</Delete>");
    rq.body = body;
    rq.body_len = used;
    snprintf(what, sizeof(what), "remove %zu objects from \"%s\"", n, st->location);
    if (s3_call(st, &rq, &r, what) != 0)
        goto out;
    if (r.status != 200) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    if (r.len > 0) { /* Quiet: only the failures are listed */
        static const char *const paths[] = {"DeleteResult/Error/Key", "DeleteResult/Error/Code",
                                            "DeleteResult/Error/Message", "Error"};
        char *t[4] = {NULL}, why[S3_XML_WHY];
        int bad = 0;
        for (size_t i = 0; i < ARRAY_LEN(paths) && !bad; i++) {
            int f = s3_xml_find(r.body, r.len, paths[i], &t[i], why, sizeof(why));
            if (f < 0)
                bad = s3_bad_answer(what, why);
        }
        if (!bad && t[3]) { /* a 200 whose body is an <Error> */
            s3_fail(&r, "could not %s", what);
            bad = -1;
        } else if (!bad && (t[0] || t[1])) {
            /* the key is the store's: the full key, prefix included */
            log_error("could not remove \"s3://%s/%s\": %s%s%s", st->bucket, t[0] ? t[0] : "?",
                      t[1] ? t[1] : "error", t[2] ? ": " : "", t[2] ? t[2] : "");
            bad = -1;
        }
        for (size_t i = 0; i < ARRAY_LEN(t); i++)
            free(t[i]);
        if (bad)
            goto out;
    }
    ret = 0;
out:
    free(body);
    s3_resp_release(&r);
    return ret;
}

/* delete_all -- commit objects first (one by one), then the rest in batches. */
static int delete_all(s3_storage *st, key_list *l)
{
    char **rest = malloc((l->n ? l->n : 1) * sizeof(char *));
    size_t nrest = 0;
    int ret = -1;

    if (!rest)
        return log_error("out of memory");
    for (size_t i = 0; i < l->n; i++) {
        if (is_commit(l->keys[i])) {
            if (s3_storage_remove(st, l->keys[i]) != 0)
                goto out;
        } else {
            rest[nrest++] = l->keys[i];
        }
    }
    for (size_t i = 0; i < nrest; i += S3_DELETE_BATCH) {
        size_t n = nrest - i < S3_DELETE_BATCH ? nrest - i : S3_DELETE_BATCH;
        if (delete_batch(st, rest + i, n) != 0)
            goto out;
    }
    ret = 0;
out:
    free(rest);
    return ret;
}

int s3_storage_remove_prefix(s3_storage *st, const char *prefix)
{
    key_list l = {0};
    int ret = -1;

    if (!*prefix)
        return s3_bad_key(prefix);
    if (s3_storage_list(st, prefix, collect, &l) != 0)
        goto out;
    ret = delete_all(st, &l);
out:
    key_list_free(&l);
    return ret;
}

static int any_key(void *arg, const char *key, int64_t size, int64_t mtime)
{
    (void)arg;
    (void)key;
    (void)size;
    (void)mtime;
    return 1;
}

/* copy_object -- server-side copy of one repository key to another. */
static int copy_object(s3_storage *st, const char *from, const char *to)
{
    char *src = s3_okey(st, from), *dst = s3_okey(st, to), *esrc = NULL, *hdr = NULL;
    char what[1200];
    s3_req rq = {.method = "PUT", .range_from = -1, .range_to = -1};
    s3_resp r = {0};
    int ret = -1;
    size_t n;

    if (!src || !dst)
        goto out;
    esrc = s3_uri_encode(src, 1);
    n = esrc ? strlen(esrc) + strlen(st->bucket) + 40 : 0;
    hdr = esrc ? malloc(n) : NULL;
    if (!hdr) {
        log_error("out of memory");
        goto out;
    }
    snprintf(hdr, n, "x-amz-copy-source: /%s/%s", st->bucket, esrc);
    rq.okey = dst;
    rq.hdrs[0] = hdr;
    rq.hdrs[1] = "x-amz-metadata-directive: COPY";
    snprintf(what, sizeof(what), "copy \"%s/%s\" to \"%s\"", st->location, from, to);
    if (s3_call(st, &rq, &r, what) != 0)
        goto out;
    if (r.status != 200) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    /* CopyObject can answer 200 and still fail (an <Error> body). */
    {
        char *root = NULL, why[S3_XML_WHY];
        int f = s3_xml_find(r.body, r.len, "CopyObjectResult", &root, why, sizeof(why));
        free(root);
        if (f < 0) {
            s3_bad_answer(what, why);
            goto out;
        }
        if (f != 0) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
    }
    ret = 0;
out:
    s3_resp_release(&r);
    free(src);
    free(dst);
    free(esrc);
    free(hdr);
    return ret;
}

int s3_storage_rename_prefix(s3_storage *st, const char *from, const char *to)
{
    key_list l = {0};
    size_t fl = strlen(from);
    char *dst = NULL;
    int ret = -1, pass;

    if (!storage_key_valid(from))
        return s3_bad_key(from);
    if (!storage_key_valid(to))
        return s3_bad_key(to);
    ret = s3_storage_list(st, to, any_key, NULL);
    if (ret != 0)
        return ret < 0 ? -1 : RS_EXISTS;
    ret = -1;
    if (s3_storage_list(st, from, collect, &l) != 0)
        goto out;
    if (l.n == 0) {
        log_error("could not rename \"%s/%s\" to \"%s\": no such prefix", st->location, from, to);
        goto out;
    }
    /* pass 0: every object but the commit objects; pass 1: the commit objects. The
     * target set becomes visible as complete only with the last copy. */
    for (pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < l.n; i++) {
            if (is_commit(l.keys[i]) != pass)
                continue;
            free(dst);
            dst = malloc(strlen(to) + strlen(l.keys[i]) + 2);
            if (!dst) {
                log_error("out of memory");
                goto out;
            }
            sprintf(dst, "%s%s", to, l.keys[i] + fl);
            if (copy_object(st, l.keys[i], dst) != 0)
                goto out;
        }
    }
    ret = delete_all(st, &l);
out:
    free(dst);
    key_list_free(&l);
    return ret;
}
