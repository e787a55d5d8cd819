/*
 * s3_request.c -- one S3 request: URL, headers, libcurl's SigV4 signing, retries with
 * backoff, and the reading of error answers (see s3_internal.h).
 */
#include "s3_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <stdarg.h>

#include "common.h"
#include "hex.h"
#include "s3_xml.h"
#include "sha256.h"

/* ---- helpers ----------------------------------------------------------------------- */

char *s3_uri_encode(const char *s, int keep_slash)
{
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;

    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && keep_slash)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            hex_encode_upper(&c, 1, o); /* writes a NUL after, overwritten next */
            o += 2;
        }
    }
    *o = '\0';
    return out;
}

/* body_digests -- hex SHA-256 and base64 MD5 of a payload (x-amz-content-sha256,
 * Content-MD5). */
static int body_digests(const void *buf, size_t len, char sha_hex[SHA256_HEX_LEN + 1],
                        char md5_b64[32])
{
    uint8_t sha[SHA256_LEN], md5[16];
    unsigned int mlen = 0;

    if (sha256_buffer(buf ? buf : "", len, sha) != 0)
        return -1;
    sha256_to_hex(sha, sha_hex);
    if (EVP_Digest(buf ? buf : "", len, md5, &mlen, EVP_md5(), NULL) != 1 || mlen != 16)
        return log_error("could not compute an MD5 digest");
    EVP_EncodeBlock((unsigned char *)md5_b64, md5, 16);
    return 0;
}

/* ---- one request ------------------------------------------------------------------- */

void s3_resp_release(s3_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static size_t cb_body(char *p, size_t sz, size_t n, void *arg)
{
    s3_resp *r = arg;
    size_t len = sz * n;
    if (r->len + len > S3_MAX_BODY) {
        r->too_big = 1;
        return 0;
    }
    char *nb = realloc(r->body, r->len + len + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* header_value -- "Name: value\r\n" -> value (trimmed, copied into out) when the name
 * matches case-insensitively. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name), vl;
    const char *v;

    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    v = line + nl + 1;
    vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl >= outlen)
        vl = outlen - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

/* copy_str -- strlcpy. */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = strlen(src);
    if (l >= n)
        l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
}

void s3_parse_header(const char *line, size_t len, int64_t *clen, int64_t *total,
                     int64_t *mtime, char *etag, size_t etaglen, char *tail, size_t taillen)
{
    char v[256];

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        *clen = *total = -1; /* a new response (after a redirect or 100) */
        etag[0] = tail[0] = '\0';
        return;
    }
    if (header_value(line, len, "content-length", v, sizeof(v)))
        *clen = strtoll(v, NULL, 10);
    else if (header_value(line, len, "content-range", v, sizeof(v))) {
        const char *s = strchr(v, '/');
        if (s && s[1] != '*')
            *total = strtoll(s + 1, NULL, 10);
    } else if (header_value(line, len, "last-modified", v, sizeof(v)))
        *mtime = (int64_t)curl_getdate(v, NULL);
    else if (header_value(line, len, "etag", v, sizeof(v))) {
        copy_str(etag, etaglen, v);
    } else if (header_value(line, len, "x-amz-meta-ragsafe-tail", v, sizeof(v)))
        copy_str(tail, taillen, v);
}

static size_t cb_header(char *p, size_t sz, size_t n, void *arg)
{
    s3_resp *r = arg;
    s3_parse_header(p, sz * n, &r->content_length, &r->total_size, &r->mtime, r->etag,
                    sizeof(r->etag), r->tail_hex, sizeof(r->tail_hex));
    return sz * n;
}

struct upload_src {
    const char *p;
    size_t left;
};

static size_t cb_read(char *dst, size_t sz, size_t n, void *arg)
{
    struct upload_src *u = arg;
    size_t len = sz * n;
    if (len > u->left)
        len = u->left;
    memcpy(dst, u->p, len);
    u->p += len;
    u->left -= len;
    return len;
}

/* url_for -- the request URL of an object key (NULL: the bucket) and query. */
static char *url_for(const s3_storage *st, const char *okey, const char *query)
{
    char *ek = okey ? s3_uri_encode(okey, 1) : NULL, *url;
    size_t n;

    if (okey && !ek)
        return NULL;
    n = strlen(st->base) + (ek ? strlen(ek) : 0) + (query ? strlen(query) : 0) + 4;
    url = malloc(n);
    if (url)
        snprintf(url, n, "%s/%s%s%s", st->base, ek ? ek : "", query ? "?" : "", query ? query : "");
    free(ek);
    return url;
}

/*
 * s3_setup -- configure h for one request (headers list returned in *hl for the caller
 * to free after the transfer). The body source and response sinks are the caller's.
 */
int s3_setup(s3_storage *st, CURL *h, const s3_req *rq, const char *sha_hex,
             const char *md5_b64, struct curl_slist **hl)
{
    char line[256], *url = url_for(st, rq->okey, rq->query);
    struct curl_slist *l = NULL, *t;
    int ret = -1;

    *hl = NULL;
    if (!url)
        return log_error("out of memory");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_SHARE, st->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L); /* a stall: abort, then retry */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, st->sigv4);
    if (st->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, st->ca_file);
    curl_easy_setopt(h, CURLOPT_USERNAME, st->access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, st->secret);
    if (strcmp(rq->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(rq->method, "PUT") == 0)
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    else if (strcmp(rq->method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POST, 1L);
    else if (strcmp(rq->method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);

#define ADD(s)                                                                              \
    do {                                                                                    \
        if (!(t = curl_slist_append(l, (s)))) {                                             \
            log_error("out of memory");                                                     \
            goto out;                                                                       \
        }                                                                                   \
        l = t;                                                                              \
    } while (0)
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha_hex);
    ADD(line);
    if (md5_b64) {
        snprintf(line, sizeof(line), "Content-MD5: %s", md5_b64);
        ADD(line);
    }
    if (st->token_hdr)
        ADD(st->token_hdr);
    /* no 100-continue round trip: curl sends its "Expect: 100-continue" (unsigned) but
     * does not wait for the 100. Not "Expect:" to drop the header: libcurl before 8.3.0
     * then lists it in SigV4's SignedHeaders without sending it (curl issue 11664), a
     * signature that servers which check them refuse */
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    if (rq->range_from >= 0 && rq->range_to >= 0) {
        snprintf(line, sizeof(line), "Range: bytes=%" PRId64 "-%" PRId64, rq->range_from,
                 rq->range_to);
        ADD(line);
    }
    for (size_t i = 0; i < ARRAY_LEN(rq->hdrs) && rq->hdrs[i]; i++)
        ADD(rq->hdrs[i]);
#undef ADD
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    *hl = l;
    l = NULL;
    ret = 0;
out:
    curl_slist_free_all(l);
    free(url);
    return ret;
}

void s3_backoff(int attempt)
{
    long ms = 100L << (attempt < 5 ? attempt : 5);
    struct timespec ts;
    if (ms > 2000)
        ms = 2000;
    ms = ms / 2 + (long)(random() % (ms / 2 + 1));
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

double s3_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int s3_retryable(long status) { return status >= 500 || status == 429 || status == 408; }

/*
 * s3_call -- one request, retried on transport errors, 5xx, 429 and 408 within the
 * attempt and time bounds. 0: a response arrived (resp->status is the caller's to
 * judge, and may still be a 5xx once the retries are spent); -1: no response
 * (reported, naming what).
 */
int s3_call(s3_storage *st, const s3_req *rq, s3_resp *resp, const char *what)
{
    char sha_hex[SHA256_HEX_LEN + 1], md5_b64[32];
    double start = s3_now();
    int with_body = strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0;

    memset(resp, 0, sizeof(*resp));
    if (with_body) {
        if (body_digests(rq->body, rq->body_len, sha_hex, md5_b64) != 0)
            return -1;
    } else {
        strcpy(sha_hex, EMPTY_SHA256);
    }
    for (int attempt = 0;; attempt++) {
        struct curl_slist *hl = NULL;
        struct upload_src src = {rq->body ? rq->body : "", rq->body_len};
        CURLcode rc;

        s3_resp_release(resp);
        resp->content_length = resp->total_size = -1;
        if (s3_setup(st, st->h, rq, sha_hex, with_body ? md5_b64 : NULL, &hl) != 0)
            return -1;
        curl_easy_setopt(st->h, CURLOPT_ERRORBUFFER, resp->error);
        curl_easy_setopt(st->h, CURLOPT_WRITEFUNCTION, cb_body);
        curl_easy_setopt(st->h, CURLOPT_WRITEDATA, resp);
        curl_easy_setopt(st->h, CURLOPT_HEADERFUNCTION, cb_header);
        curl_easy_setopt(st->h, CURLOPT_HEADERDATA, resp);
        if (strcmp(rq->method, "PUT") == 0) {
            curl_easy_setopt(st->h, CURLOPT_READFUNCTION, cb_read);
            curl_easy_setopt(st->h, CURLOPT_READDATA, &src);
            curl_easy_setopt(st->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
        } else if (strcmp(rq->method, "POST") == 0) {
            curl_easy_setopt(st->h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
            curl_easy_setopt(st->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        }
        rc = curl_easy_perform(st->h);
        curl_slist_free_all(hl);
        if (rc == CURLE_OK)
            curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &resp->status);
        else if (!resp->error[0])
            snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(rc));
        if (resp->too_big) {
            return log_error("could not %s: the response is larger than %u bytes", what,
                             S3_MAX_BODY);
        }
        if (rc == CURLE_OK && resp->status >= 200 && resp->status < 300)
            st->bucket_ok = 1;
        if (rc == CURLE_OK && !s3_retryable(resp->status))
            return 0;
        if (attempt + 1 >= st->retries || s3_now() - start > (double)st->retry_time) {
            if (rc == CURLE_OK)
                return 0; /* the caller reports the status */
            return log_error("could not %s: %s", what, resp->error);
        }
        log_debug("%s: %s; retrying", what,
                  rc == CURLE_OK ? "server error" : resp->error);
        s3_backoff(attempt);
    }
}

/* s3_fail -- the S3 error Code and Message come from the body when it is XML. */
int s3_fail(const s3_resp *r, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    char *code, *msg;

    (void)s3_xml_error(r->body, r->len, &code, &msg); /* not XML (a proxy's page): none */
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    log_error("%s: HTTP %ld%s%s%s%s", what, r->status, code ? " " : "", code ? code : "",
              msg ? ": " : "", msg ? msg : "");
    free(code);
    free(msg);
    return -1;
}

/* s3_bad_answer -- a 2xx whose XML could not be read (why: s3_xml.h's reason). */
int s3_bad_answer(const char *what, const char *why)
{
    log_error("could not %s: malformed answer from the store: %s", what, why);
    log_hint("the endpoint may not be an S3 store, or a proxy in between changed the answer");
    return -1;
}

/* s3_okey -- prefix + "/" + key. */
char *s3_okey(const s3_storage *st, const char *key)
{
    size_t n = strlen(st->prefix) + strlen(key) + 2;
    char *k = malloc(n);
    if (!k) {
        log_error("out of memory");
        return NULL;
    }
    snprintf(k, n, "%s%s%s", st->prefix, *st->prefix ? "/" : "", key);
    return k;
}

int s3_bad_key(const char *key)
{
    return log_error("invalid repository key \"%s\"", key ? key : "");
}

/*
 * bucket_probe -- is the bucket there and ours to read? One listing of at most one
 * key under the prefix. 0 | -1 reported.
 */
static int bucket_probe(s3_storage *st)
{
    char *ep = s3_uri_encode(st->prefix, 0), *q = NULL, what[600];
    s3_resp r = {0};
    size_t n;
    int ret = -1;

    if (!ep)
        return log_error("out of memory");
    n = strlen(ep) + 64;
    q = malloc(n);
    if (!q) {
        log_error("out of memory");
        goto out;
    }
    snprintf(q, n, "list-type=2&max-keys=1&prefix=%s", ep);
    s3_req rq = {.method = "GET", .query = q, .range_from = -1, .range_to = -1};
    snprintf(what, sizeof(what), "open repository \"%s\"", st->location);
    if (s3_call(st, &rq, &r, what) != 0)
        goto out;
    if (r.status != 200) {
        s3_fail(&r, "could not open repository \"%s\"", st->location);
        goto out;
    }
    st->bucket_ok = 1;
    ret = 0;
out:
    s3_resp_release(&r);
    free(q);
    free(ep);
    return ret;
}

/* s3_is_no_such_key -- see s3_internal.h. */
int s3_is_no_such_key(s3_storage *st, const s3_resp *r)
{
    char *code, *msg;
    int yes;
    if (r->status != 404)
        return 0;
    if (!r->body || !r->len)
        return st->bucket_ok || bucket_probe(st) == 0 ? 1 : -1;
    (void)s3_xml_error(r->body, r->len, &code, &msg);
    free(msg);
    yes = !code || strcmp(code, "NoSuchBucket") != 0;
    free(code);
    return yes;
}
