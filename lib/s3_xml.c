/*
 * s3_xml.c -- S3's XML documents through libexpat; see s3_xml.h.
 *
 * One walker (walk) runs expat over a whole body and keeps the path of local names
 * from the root and, per open element, its own character data; the readers hook in
 * at element starts and ends.
 */
#include "s3_xml.h"

#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "timefmt.h"

_Static_assert(sizeof(XML_Char) == 1, "expat built for UTF-8 (char) output");

#define XML_MAX_DEPTH 16    /* S3's documents nest 4 deep */
#define XML_NS_SEP ' '      /* "URI localname": names hold no space, URIs none either */

typedef struct walk walk;
typedef int (*start_fn)(walk *w, const char *path, int depth);
typedef int (*end_fn)(walk *w, const char *path, int depth, const char *text, size_t len);

struct walk {
    XML_Parser p;
    char path[1024];
    size_t plen[XML_MAX_DEPTH + 1];  /* path length before each level's name */
    int depth;                       /* open elements */
    struct {
        char *s;
        size_t len, cap;
    } text[XML_MAX_DEPTH + 1];       /* each open element's own character data */
    start_fn on_start;
    end_fn on_end;
    void *arg;
    int failed;
    char why[S3_XML_WHY];
};

/* fail -- stop the parse with a reason (the first one wins). */
static void fail(walk *w, const char *why)
{
    if (!w->failed) {
        w->failed = 1;
        if (why != w->why)
            snprintf(w->why, sizeof(w->why), "%s", why);
    }
    XML_StopParser(w->p, XML_FALSE);
}

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    walk *w = arg;
    const char *local = strrchr(name, XML_NS_SEP);
    size_t at = w->depth ? w->plen[w->depth] : 0, nl;

    (void)attrs;
    if (w->failed)
        return;
    local = local ? local + 1 : name;
    nl = strlen(local);
    if (w->depth >= XML_MAX_DEPTH || at + nl + 2 > sizeof(w->path)) {
        fail(w, "elements nested too deep");
        return;
    }
    w->depth++;
    if (at)
        w->path[at++] = '/';
    memcpy(w->path + at, local, nl + 1);
    w->plen[w->depth] = at + nl;
    w->text[w->depth].len = 0;
    if (w->on_start && w->on_start(w, w->path, w->depth) != 0)
        fail(w, w->why[0] ? w->why : "unexpected element");
}

static void XMLCALL on_end(void *arg, const XML_Char *name)
{
    walk *w = arg;
    int d = w->depth;

    (void)name;
    if (w->failed || d < 1)
        return;
    w->path[w->plen[d]] = '\0';
    if (w->text[d].s)
        w->text[d].s[w->text[d].len] = '\0';
    if (w->on_end && w->on_end(w, w->path, d, w->text[d].s ? w->text[d].s : "", w->text[d].len) != 0) {
        fail(w, w->why[0] ? w->why : "unexpected content");
        return;
    }
    /* back to the parent's path: cut at the '/' before this level's name */
    {
        size_t at = d > 1 ? w->plen[d - 1] : 0;
        w->path[at] = '\0';
    }
    w->depth--;
}

static void XMLCALL on_text(void *arg, const XML_Char *s, int len)
{
    walk *w = arg;
    int d = w->depth;

    if (w->failed || d < 1 || len <= 0)
        return;
    if (w->text[d].len + (size_t)len + 1 > w->text[d].cap) {
        size_t cap = (w->text[d].len + (size_t)len + 1) * 2;
        char *n = realloc(w->text[d].s, cap);
        if (!n) {
            fail(w, "out of memory");
            return;
        }
        w->text[d].s = n;
        w->text[d].cap = cap;
    }
    memcpy(w->text[d].s + w->text[d].len, s, (size_t)len);
    w->text[d].len += (size_t)len;
}

static void XMLCALL on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail(arg, "a DOCTYPE (S3 sends none)");
}

/* walk_run -- parse xml[0..len) with w's hooks. 0 | -1 (w->why says why). */
static int walk_run(walk *w, const char *xml, size_t len)
{
    int ret = -1;

    while (len && (*xml == ' ' || *xml == '\t' || *xml == '\r' || *xml == '\n'))
        xml++, len--;
    w->depth = 0;
    w->path[0] = '\0';
    if (len > INT_MAX) {
        snprintf(w->why, sizeof(w->why), "document too large");
        return -1;
    }
    w->p = XML_ParserCreateNS(NULL, XML_NS_SEP);
    if (!w->p) {
        snprintf(w->why, sizeof(w->why), "out of memory");
        return -1;
    }
    XML_SetUserData(w->p, w);
    XML_SetElementHandler(w->p, on_start, on_end);
    XML_SetCharacterDataHandler(w->p, on_text);
    XML_SetStartDoctypeDeclHandler(w->p, on_doctype);
    if (XML_Parse(w->p, xml ? xml : "", (int)len, XML_TRUE) == XML_STATUS_OK && !w->failed)
        ret = 0;
    else if (!w->failed)
        snprintf(w->why, sizeof(w->why), "%s at line %lu",
                 XML_ErrorString(XML_GetErrorCode(w->p)),
                 (unsigned long)XML_GetCurrentLineNumber(w->p));
    XML_ParserFree(w->p);
    w->p = NULL;
    for (int i = 0; i <= XML_MAX_DEPTH; i++) {
        free(w->text[i].s);
        w->text[i].s = NULL;
        w->text[i].len = w->text[i].cap = 0;
    }
    return ret;
}

/* ---- the first text at given paths ------------------------------------------------- */

typedef struct find_state {
    const char *const *paths;
    char **texts;
    size_t n;
} find_state;

static int find_end(walk *w, const char *path, int depth, const char *text, size_t len)
{
    find_state *f = w->arg;
    (void)depth;
    for (size_t i = 0; i < f->n; i++) {
        if (!f->texts[i] && strcmp(path, f->paths[i]) == 0) {
            f->texts[i] = strndup(text, len);
            if (!f->texts[i]) {
                snprintf(w->why, sizeof(w->why), "out of memory");
                return -1;
            }
        }
    }
    return 0;
}

static int find_many(const char *xml, size_t len, const char *const *paths, char **texts,
                     size_t n, char *why, size_t whylen)
{
    find_state f = {paths, texts, n};
    walk w = {.on_end = find_end, .arg = &f};

    for (size_t i = 0; i < n; i++)
        texts[i] = NULL;
    if (walk_run(&w, xml, len) != 0) {
        for (size_t i = 0; i < n; i++) {
            free(texts[i]);
            texts[i] = NULL;
        }
        fixbuf_printf(why, whylen, "%s", w.why);
        return -1;
    }
    return 0;
}

int s3_xml_find(const char *xml, size_t len, const char *path, char **text, char *why,
                size_t whylen)
{
    const char *paths[1] = {path};

    if (find_many(xml, len, paths, text, 1, why, whylen) != 0)
        return -1;
    return *text ? 0 : 1;
}

int s3_xml_error(const char *xml, size_t len, char **code, char **message)
{
    static const char *const paths[2] = {"Error/Code", "Error/Message"};
    char *t[2];

    *code = *message = NULL;
    if (!xml || !len || find_many(xml, len, paths, t, 2, NULL, 0) != 0)
        return -1;
    *code = t[0];
    *message = t[1];
    return 0;
}

/* ---- ListObjectsV2 ----------------------------------------------------------------- */

#define LIST_ROOT "ListBucketResult"
#define LIST_OBJ LIST_ROOT "/Contents"

static int list_start(walk *w, const char *path, int depth)
{
    s3_xml_listing *l = w->arg;

    if (depth == 1 && strcmp(path, LIST_ROOT) != 0) {
        snprintf(w->why, sizeof(w->why), "<%s> where <" LIST_ROOT "> was expected", path);
        return -1;
    }
    if (depth == 2 && strcmp(path, LIST_OBJ) == 0) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            s3_xml_object *o = realloc(l->objects, cap * sizeof(*o));
            if (!o) {
                snprintf(w->why, sizeof(w->why), "out of memory");
                return -1;
            }
            l->objects = o;
            l->cap = cap;
        }
        memset(&l->objects[l->n++], 0, sizeof(s3_xml_object));
    }
    return 0;
}

static int list_end(walk *w, const char *path, int depth, const char *text, size_t len)
{
    s3_xml_listing *l = w->arg;
    s3_xml_object *o = l->n ? &l->objects[l->n - 1] : NULL;

    if (depth == 2 && strcmp(path, LIST_OBJ) == 0) {
        if (!o->key) {
            snprintf(w->why, sizeof(w->why), "a <Contents> without a <Key>");
            return -1;
        }
    } else if (depth == 3 && strcmp(path, LIST_OBJ "/Key") == 0) {
        free(o->key);
        if (!(o->key = strndup(text, len))) {
            snprintf(w->why, sizeof(w->why), "out of memory");
            return -1;
        }
    } else if (depth == 3 && strcmp(path, LIST_OBJ "/Size") == 0) {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (text[0] < '0' || text[0] > '9' || *end || errno) {
            snprintf(w->why, sizeof(w->why), "a <Size> that is not a number: \"%.40s\"", text);
            return -1;
        }
        o->size = v;
    } else if (depth == 3 && strcmp(path, LIST_OBJ "/LastModified") == 0) {
        int64_t us;
        o->mtime = timefmt_parse(text, &us, NULL) == 0 ? us / 1000000 : 0;
    } else if (depth == 2 && strcmp(path, LIST_ROOT "/IsTruncated") == 0) {
        l->truncated = strcmp(text, "true") == 0;
    } else if (depth == 2 && strcmp(path, LIST_ROOT "/NextContinuationToken") == 0) {
        free(l->next_token);
        if (!(l->next_token = strndup(text, len))) {
            snprintf(w->why, sizeof(w->why), "out of memory");
            return -1;
        }
    }
    return 0;
}

int s3_xml_listing_parse(const char *xml, size_t len, s3_xml_listing *out, char *why,
                         size_t whylen)
{
    walk w = {.on_start = list_start, .on_end = list_end, .arg = out};

    memset(out, 0, sizeof(*out));
    if (walk_run(&w, xml, len) != 0) {
        fixbuf_printf(why, whylen, "%s", w.why);
        return -1;
    }
    return 0;
}

void s3_xml_listing_free(s3_xml_listing *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->objects[i].key);
    free(l->objects);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}
