/*
 * storage_s3.c -- the S3 backend of storage.h through libcurl; see storage_s3.h.
 *
 * Layers, bottom up: settings and credentials; one request with retries
 * (s3_call: small bodies in and out of memory); the streaming GET (s3_read, a curl
 * multi handle pumped from storage_read_data); the object calls. The XML answers
 * (ListObjectsV2, InitiateMultipartUpload, CompleteMultipartUpload, CopyObject,
 * DeleteObjects, Error) are read by s3_xml.c (libexpat).
 */
#include "storage_s3.h"

#include "curl_dl.h" /* libcurl, loaded on first use */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "hex.h"
#include "log.h"
#include "s3_xml.h"
#include "sha256.h"
#include "zst.h"

#define S3_MAX_BODY (8u << 20)     /* largest non-streamed response we accept */
#define S3_READ_BUFFER (1u << 20)  /* streaming GET: pause the transfer above this */
#define S3_DELETE_BATCH 1000
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

_Static_assert(S3_TAIL_META >= ZST_TRAILER_SIZE, "the tail metadata holds a zst trailer");

/* ---- settings ---------------------------------------------------------------------- */

static char *cfg_key, *cfg_secret, *cfg_token;  /* from the config file (s3_config_apply) */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static void set_from(const char *env, const char *flag, const config *cfg, const char *key)
{
    const char *v = flag;
    if (!v) {
        const char *e = getenv(env);
        if (e && *e)
            return;
        v = cfg ? config_get(cfg, key) : NULL;
    }
    if (v && *v)
        setenv(env, v, 1);
}

static void keep(char **slot, const config *cfg, const char *key)
{
    const char *v = cfg ? config_get(cfg, key) : NULL;
    if (*slot) {
        explicit_bzero(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
    if (v && *v)
        *slot = strdup(v);
}

int s3_config_apply(const config *cfg, const char *endpoint, const char *region,
                    const char *uri_style)
{
    const char *style;

    set_from("RAGSAFE_S3_ENDPOINT", endpoint, cfg, "s3-endpoint");
    set_from("RAGSAFE_S3_REGION", region, cfg, "s3-region");
    set_from("RAGSAFE_S3_URI_STYLE", uri_style, cfg, "s3-uri-style");
    style = getenv("RAGSAFE_S3_URI_STYLE");
    if (style && *style && strcmp(style, "path") != 0 && strcmp(style, "host") != 0)
        return log_error("invalid S3 URI style \"%s\": use \"path\" or \"host\"", style);
    keep(&cfg_key, cfg, "s3-key");
    keep(&cfg_secret, cfg, "s3-key-secret");
    keep(&cfg_token, cfg, "s3-token");
    return 0;
}

static long env_long(const char *name, long def, long min, long max)
{
    const char *s = getenv(name);
    char *end;
    long v;

    if (!s || !*s)
        return def;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) {
        log_warning("ignoring %s=\"%s\": not a number in [%ld, %ld]", name, s, min, max);
        return def;
    }
    return v;
}

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

int s3_parse_location(const char *location, char **bucket, char **prefix)
{
    const char *b, *slash;
    size_t blen, plen;

    *bucket = *prefix = NULL;
    if (strncmp(location, "s3://", 5) != 0)
        return -1;
    b = location + 5;
    slash = strchr(b, '/');
    blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen < 3 || blen > 63 || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") < blen)
        return -1;
    const char *p = slash ? slash + 1 : "";
    while (*p == '/')
        p++;
    plen = strlen(p);
    while (plen && p[plen - 1] == '/')
        plen--;
    *bucket = strndup(b, blen);
    *prefix = strndup(p, plen);
    if (!*bucket || !*prefix || (plen && !storage_key_valid(*prefix))) {
        free(*bucket);
        free(*prefix);
        *bucket = *prefix = NULL;
        return -1;
    }
    return 0;
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

/* ---- the storage and one request --------------------------------------------------- */

struct s3_storage {
    char *location;      /* "s3://bucket/prefix" for messages */
    char *bucket, *prefix;
    char *base;          /* "http://host:port/bucket" or "https://bucket.host" (no '/') */
    char *sigv4;         /* "aws:amz:REGION:s3" */
    char *access_key, *secret;  /* wiped on free */
    char *token_hdr;     /* "x-amz-security-token: ..." or NULL */
    char *ca_file;       /* RAGSAFE_S3_CA_FILE: trust this CA bundle (a private endpoint) */
    long retries, retry_time;
    size_t part_size;
    int bucket_ok;       /* the bucket has answered a request with a 2xx */
    char *absent_key;    /* the last key a HEAD found absent, and when (see commit) */
    double absent_at;
    CURL *h;
    CURLSH *share;
};

typedef struct s3_req {
    const char *method;        /* GET HEAD PUT POST DELETE */
    const char *okey;          /* full object key (prefix applied), NULL: the bucket */
    const char *query;         /* canonical query (sorted, encoded), no '?' */
    const void *body;
    size_t body_len;
    const char *hdrs[8];       /* extra "Name: value" lines */
    int64_t range_from, range_to;  /* both >= 0: a Range request */
} s3_req;

typedef struct s3_resp {
    long status;
    char *body;
    size_t len;
    int64_t content_length;    /* -1 unknown */
    int64_t total_size;        /* from Content-Range, -1 unknown */
    int64_t mtime;
    char etag[128];
    char tail_hex[2 * S3_TAIL_META + 1];
    char error[CURL_ERROR_SIZE];
    int too_big;
} s3_resp;

static void resp_release(s3_resp *r)
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

static void parse_header(const char *line, size_t len, int64_t *clen, int64_t *total,
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
    parse_header(p, sz * n, &r->content_length, &r->total_size, &r->mtime, r->etag,
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
 * setup -- configure h for one request (headers list returned in *hl for the caller
 * to free after the transfer). The body source and response sinks are the caller's.
 */
static int setup(s3_storage *st, CURL *h, const s3_req *rq, const char *sha_hex,
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

static void backoff(int attempt)
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

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int retryable(long status) { return status >= 500 || status == 429 || status == 408; }

/*
 * s3_call -- one request, retried on transport errors, 5xx, 429 and 408 within the
 * attempt and time bounds. 0: a response arrived (resp->status is the caller's to
 * judge, and may still be a 5xx once the retries are spent); -1: no response
 * (reported, naming what).
 */
static int s3_call(s3_storage *st, const s3_req *rq, s3_resp *resp, const char *what)
{
    char sha_hex[SHA256_HEX_LEN + 1], md5_b64[32];
    double start = now_sec();
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

        resp_release(resp);
        resp->content_length = resp->total_size = -1;
        if (setup(st, st->h, rq, sha_hex, with_body ? md5_b64 : NULL, &hl) != 0)
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
        if (rc == CURLE_OK && !retryable(resp->status))
            return 0;
        if (attempt + 1 >= st->retries || now_sec() - start > (double)st->retry_time) {
            if (rc == CURLE_OK)
                return 0; /* the caller reports the status */
            return log_error("could not %s: %s", what, resp->error);
        }
        log_debug("%s: %s; retrying", what,
                  rc == CURLE_OK ? "server error" : resp->error);
        backoff(attempt);
    }
}

/* s3_fail -- report an unexpected status with the S3 error code and message. */
static int s3_fail(const s3_resp *r, const char *fmt, ...) LOG_PRINTF(2, 3);
static int s3_fail(const s3_resp *r, const char *fmt, ...)
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

/* bad_answer -- a 2xx whose XML could not be read (why: s3_xml.h's reason). */
static int bad_answer(const char *what, const char *why)
{
    log_error("could not %s: malformed answer from the store: %s", what, why);
    log_hint("the endpoint may not be an S3 store, or a proxy in between changed the answer");
    return -1;
}

/* okey_of -- prefix + "/" + key. */
static char *okey_of(const s3_storage *st, const char *key)
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

static int bad_key(const char *key)
{
    return log_error("invalid repository key \"%s\"", key ? key : "");
}

static int bucket_probe(s3_storage *st);

/*
 * is_no_such_key -- a 404 about the object, not the bucket: 1 yes, 0 no, -1 (reported)
 * when the bucket itself cannot be reached. A HEAD's 404 has no body to tell
 * NoSuchKey from NoSuchBucket: unless the bucket has already answered this process,
 * one listing settles it (only ever on a "not found", never on the hot path).
 */
static int is_no_such_key(s3_storage *st, const s3_resp *r)
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

s3_storage *s3_storage_open(const char *location, int create)
{
    s3_storage *st = calloc(1, sizeof(*st));
    const char *endpoint = getenv("RAGSAFE_S3_ENDPOINT"), *region = getenv("RAGSAFE_S3_REGION");
    const char *style = getenv("RAGSAFE_S3_URI_STYLE");
    const char *key = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    char *q = NULL, *ep = NULL;
    s3_resp r = {0};
    size_t n;

    (void)create; /* buckets are never created; a prefix needs no creating */
    if (!st) {
        log_error("out of memory");
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ok) {
        log_error("could not initialize libcurl");
        goto fail;
    }
    if (s3_parse_location(location, &st->bucket, &st->prefix) != 0) {
        log_error("invalid S3 repository \"%s\"", location);
        log_hint("use s3://BUCKET or s3://BUCKET/PREFIX (bucket names: a-z, 0-9, '.', '-')");
        goto fail;
    }
    if (!region || !*region)
        region = "us-east-1";
    if (!key || !*key) {
        key = cfg_key;
        secret = cfg_secret;
        token = cfg_token;
    }
    if (!key || !*key || !secret || !*secret) {
        log_error("no S3 credentials for \"%s\"", location);
        log_hint("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or s3-key and s3-key-secret in the config file");
        goto fail;
    }
    if (endpoint && *endpoint) {
        ep = strdup(endpoint);
        if (!style || !*style)
            style = "path";
    } else {
        n = strlen(region) + 32;
        ep = malloc(n);
        if (ep)
            snprintf(ep, n, "https://s3.%s.amazonaws.com", region);
        if (!style || !*style)
            style = "host";
    }
    if (!ep)
        goto oom;
    n = strlen(ep);
    while (n && ep[n - 1] == '/')
        ep[--n] = '\0';
    if (strcmp(style, "path") != 0 && strcmp(style, "host") != 0) {
        log_error("invalid S3 URI style \"%s\": use \"path\" or \"host\"", style);
        goto fail;
    }
    {
        const char *hs = strstr(ep, "://");
        if (!hs || !hs[3]) {
            log_error("invalid S3 endpoint \"%s\": expected http(s)://HOST[:PORT]", ep);
            goto fail;
        }
        n = strlen(ep) + strlen(st->bucket) + 2;
        st->base = malloc(n);
        if (!st->base)
            goto oom;
        if (strcmp(style, "path") == 0)
            snprintf(st->base, n, "%s/%s", ep, st->bucket);
        else
            snprintf(st->base, n, "%.*s%s.%s", (int)(hs + 3 - ep), ep, st->bucket, hs + 3);
    }
    n = strlen(region) + 16;
    st->sigv4 = malloc(n);
    if (!st->sigv4)
        goto oom;
    snprintf(st->sigv4, n, "aws:amz:%s:s3", region);
    if (!(st->access_key = strdup(key)) || !(st->secret = strdup(secret)))
        goto oom;
    if (token && *token) {
        n = strlen(token) + 32;
        st->token_hdr = malloc(n);
        if (!st->token_hdr)
            goto oom;
        snprintf(st->token_hdr, n, "x-amz-security-token: %s", token);
    }
    n = strlen(st->bucket) + strlen(st->prefix) + 8;
    st->location = malloc(n);
    if (!st->location)
        goto oom;
    snprintf(st->location, n, "s3://%s%s%s", st->bucket, *st->prefix ? "/" : "", st->prefix);
    {
        const char *ca = getenv("RAGSAFE_S3_CA_FILE");
        if (ca && *ca && !(st->ca_file = strdup(ca)))
            goto oom;
    }
    st->retries = env_long("RAGSAFE_S3_RETRIES", 5, 1, 100);
    st->retry_time = env_long("RAGSAFE_S3_RETRY_TIME", 60, 1, 86400);
    st->part_size = (size_t)env_long("RAGSAFE_S3_PART_SIZE", S3_DEFAULT_PART, S3_MIN_PART, 1L << 30);
    st->h = curl_easy_init();
    st->share = curl_share_init();
    if (!st->h || !st->share)
        goto oom;
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    srandom((unsigned)(getpid() ^ time(NULL)));

    resp_release(&r);
    free(q);
    free(ep);
    return st;
oom:
    log_error("out of memory");
fail:
    resp_release(&r);
    free(q);
    free(ep);
    s3_storage_free(st);
    return NULL;
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
    resp_release(&r);
    free(q);
    free(ep);
    return ret;
}

void s3_storage_free(s3_storage *st)
{
    if (!st)
        return;
    if (st->h)
        curl_easy_cleanup(st->h);
    if (st->share)
        curl_share_cleanup(st->share);
    if (st->secret) {
        explicit_bzero(st->secret, strlen(st->secret));
        free(st->secret);
    }
    free(st->access_key);
    if (st->token_hdr) {
        explicit_bzero(st->token_hdr, strlen(st->token_hdr));
        free(st->token_hdr);
    }
    free(st->ca_file);
    free(st->absent_key);
    free(st->location);
    free(st->bucket);
    free(st->prefix);
    free(st->base);
    free(st->sigv4);
    free(st);
}

const char *s3_storage_location(const s3_storage *st) { return st->location; }

/* ---- writes ------------------------------------------------------------------------ */

struct s3_write {
    s3_storage *st;
    char *key, *okey;
    char *buf;
    size_t len, cap;
    char *upload_id;     /* multipart in progress */
    char **etags;
    size_t nparts;
    uint64_t total;
    int failed, committed;
};

s3_write *s3_storage_write_open(s3_storage *st, const char *key)
{
    s3_write *w;

    if (!storage_key_valid(key)) {
        bad_key(key);
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->key = strdup(key)) || !(w->okey = okey_of(st, key))) {
        log_error("out of memory");
        s3_storage_write_free(w);
        return NULL;
    }
    w->st = st;
    return w;
}

/* multipart_start -- CreateMultipartUpload. */
static int multipart_start(s3_write *w)
{
    s3_req rq = {.method = "POST", .okey = w->okey, .query = "uploads=", .range_from = -1,
                 .range_to = -1, .hdrs = {"Content-Type: application/octet-stream"}};
    s3_resp r;
    char what[600], why[S3_XML_WHY];
    int ret = -1;

    snprintf(what, sizeof(what), "start uploading \"%s/%s\"", w->st->location, w->key);
    if (s3_call(w->st, &rq, &r, what) != 0)
        return -1;
    if (r.status != 200) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    if (s3_xml_find(r.body, r.len, "InitiateMultipartUploadResult/UploadId", &w->upload_id, why,
                    sizeof(why)) < 0) {
        bad_answer(what, why);
        goto out;
    }
    if (!w->upload_id || !*w->upload_id) {
        free(w->upload_id);
        w->upload_id = NULL;
        log_error("could not %s: no UploadId in the answer", what);
        goto out;
    }
    ret = 0;
out:
    resp_release(&r);
    return ret;
}

/* multipart_part -- UploadPart of the buffer; remembers the part's ETag. */
static int multipart_part(s3_write *w)
{
    char q[1024], what[600], **e;
    char *eid = s3_uri_encode(w->upload_id, 0);
    s3_req rq = {.method = "PUT", .okey = w->okey, .query = q, .body = w->buf,
                 .body_len = w->len, .range_from = -1, .range_to = -1};
    s3_resp r = {0};
    int ret = -1;

    if (!eid)
        return log_error("out of memory");
    snprintf(q, sizeof(q), "partNumber=%zu&uploadId=%s", w->nparts + 1, eid);
    free(eid);
    snprintf(what, sizeof(what), "upload part %zu of \"%s/%s\"", w->nparts + 1, w->st->location,
             w->key);
    if (s3_call(w->st, &rq, &r, what) != 0)
        return -1;
    if (r.status != 200 || !r.etag[0]) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    e = realloc(w->etags, (w->nparts + 1) * sizeof(char *));
    if (!e) {
        log_error("out of memory");
        goto out;
    }
    w->etags = e;
    if (!(w->etags[w->nparts] = strdup(r.etag))) {
        log_error("out of memory");
        goto out;
    }
    w->nparts++;
    w->len = 0;
    ret = 0;
out:
    resp_release(&r);
    return ret;
}

int s3_storage_write_data(s3_write *w, const void *buf, size_t len)
{
    const char *p = buf;

    if (w->failed)
        return log_error("could not write \"%s/%s\": an earlier write failed", w->st->location,
                         w->key);
    while (len > 0) {
        size_t room, n;
        if (w->cap < w->st->part_size) {
            size_t cap = w->cap ? w->cap * 2 : 64u << 10;
            while (cap < w->len + len && cap < w->st->part_size)
                cap *= 2;
            if (cap > w->st->part_size)
                cap = w->st->part_size;
            if (cap > w->cap) {
                char *nb = realloc(w->buf, cap);
                if (!nb) {
                    w->failed = 1;
                    return log_error("out of memory");
                }
                w->buf = nb;
                w->cap = cap;
            }
        }
        room = w->cap - w->len;
        n = len < room ? len : room;
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        w->total += n;
        p += n;
        len -= n;
        if (w->len == w->st->part_size && len > 0) {
            /* A full part and more to come: this object goes multipart. The last part
             * is kept for the commit, so a part is never empty. */
            if ((!w->upload_id && multipart_start(w) != 0) || multipart_part(w) != 0) {
                w->failed = 1;
                return -1;
            }
        }
    }
    return 0;
}

/* head_exists -- 0 absent, 1 present, -1 reported. */
static int head_exists(s3_storage *st, const char *okey, const char *key)
{
    s3_req rq = {.method = "HEAD", .okey = okey, .range_from = -1, .range_to = -1};
    s3_resp r;
    char what[600];
    int ret;

    snprintf(what, sizeof(what), "check \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) != 0)
        return -1;
    if (r.status == 200)
        ret = 1;
    else if ((ret = is_no_such_key(st, &r)) != 0)
        ret = ret < 0 ? -1 : 0;
    else
        ret = s3_fail(&r, "could not %s", what);
    resp_release(&r);
    return ret;
}

static int multipart_complete(s3_write *w, int noreplace)
{
    char *body = NULL, *eid = NULL, q[1024], what[600], why[S3_XML_WHY];
    size_t cap = 128 + w->nparts * 200, used;
    s3_req rq = {.method = "POST", .okey = w->okey, .query = q, .range_from = -1,
                 .range_to = -1, .hdrs = {"Content-Type: application/xml",
                                          noreplace ? "If-None-Match: *" : NULL}};
    s3_resp r = {0};
    int ret = -1;

    body = malloc(cap);
    eid = s3_uri_encode(w->upload_id, 0);
    if (!body || !eid) {
        log_error("out of memory");
        goto out;
    }
    used = (size_t)snprintf(body, cap, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < w->nparts; i++)
        used += (size_t)snprintf(body + used, cap - used,
                                 "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1,
                                 w->etags[i]);
    used += (size_t)snprintf(body + used, cap - used, "</CompleteMultipartUpload>");
    snprintf(q, sizeof(q), "uploadId=%s", eid);
    rq.body = body;
    rq.body_len = used;
    snprintf(what, sizeof(what), "complete the upload of \"%s/%s\"", w->st->location, w->key);
    if (s3_call(w->st, &rq, &r, what) != 0)
        goto out;
    if (r.status == 412) {
        ret = RS_EXISTS;
        goto out;
    }
    if (r.status != 200) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    /* CompleteMultipartUpload can answer 200 with an <Error> body. */
    if (r.len > 0) {
        char *root = NULL;
        int f = s3_xml_find(r.body, r.len, "Error", &root, why, sizeof(why));
        free(root);
        if (f < 0) {
            bad_answer(what, why);
            goto out;
        }
        if (f == 0) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
    }
    ret = 0;
out:
    resp_release(&r);
    free(body);
    free(eid);
    return ret;
}

static void multipart_abort(s3_write *w)
{
    char q[1024], what[600], *eid = s3_uri_encode(w->upload_id, 0);
    s3_req rq = {.method = "DELETE", .okey = w->okey, .query = q, .range_from = -1,
                 .range_to = -1};
    s3_resp r;

    if (!eid)
        return;
    snprintf(q, sizeof(q), "uploadId=%s", eid);
    free(eid);
    snprintf(what, sizeof(what), "abort the upload of \"%s/%s\"", w->st->location, w->key);
    if (s3_call(w->st, &rq, &r, what) == 0) {
        if (r.status == 405 || r.status == 501)
            log_debug("the store cannot abort uploads; \"%s/%s\" leaves its parts behind",
                      w->st->location, w->key);
        else if (r.status != 204 && r.status != 200 && r.status != 404)
            log_warning("could not abort the upload of \"%s/%s\": HTTP %ld", w->st->location,
                        w->key, r.status);
        resp_release(&r);
    }
    free(w->upload_id);
    w->upload_id = NULL;
}

int s3_storage_write_commit(s3_write *w, int noreplace)
{
    char tail_hdr[64 + 2 * S3_TAIL_META], sha_hdr[64 + 2 * S3_TAIL_META], what[600];
    s3_req rq = {.method = "PUT", .okey = w->okey, .range_from = -1, .range_to = -1};
    s3_resp r = {0};
    int ret = -1, k = 0;

    if (w->failed)
        return log_error("could not write \"%s/%s\": an earlier write failed", w->st->location,
                         w->key);
    if (noreplace && w->st->absent_key && strcmp(w->st->absent_key, w->key) == 0 &&
        now_sec() - w->st->absent_at < 10.0) {
        /* this process's HEAD found the key absent a moment ago (ragsafe-archive's
         * duplicate check): another HEAD would be just as racy, and "If-None-Match"
         * still guards stores that honour it */
        ;
    } else if (noreplace) {
        ret = head_exists(w->st, w->okey, w->key);
        if (ret != 0) {
            ret = ret == 1 ? RS_EXISTS : -1;
            goto out;
        }
        ret = -1;
    }
    if (w->upload_id) {
        if (w->len > 0 && multipart_part(w) != 0)
            goto out;
        ret = multipart_complete(w, noreplace);
        if (ret == 0) {
            free(w->upload_id); /* completed: nothing to abort any more */
            w->upload_id = NULL;
            w->committed = 1;
        }
        goto out; /* refused or failed: write_free aborts the upload */
    }
    rq.hdrs[k++] = "Content-Type: application/octet-stream";
    if (noreplace)
        rq.hdrs[k++] = "If-None-Match: *";
    if (w->len > 0) {
        size_t tl = w->len < S3_TAIL_META ? w->len : S3_TAIL_META;
        const uint8_t *tail = (const uint8_t *)w->buf + w->len - tl;
        zst_meta m;
        char hex[2 * S3_TAIL_META + 1];
        hex_encode(tail, tl, hex);
        snprintf(tail_hdr, sizeof(tail_hdr), "x-amz-meta-ragsafe-tail: %s", hex);
        rq.hdrs[k++] = tail_hdr;
        if (tl >= ZST_TRAILER_SIZE &&
            zst_trailer_decode(tail + tl - ZST_TRAILER_SIZE, &m) == 0) {
            sha256_to_hex(m.sha256, hex);
            snprintf(sha_hdr, sizeof(sha_hdr), "x-amz-meta-ragsafe-sha256: %s", hex);
            rq.hdrs[k++] = sha_hdr;
        }
    }
    rq.body = w->buf;
    rq.body_len = w->len;
    snprintf(what, sizeof(what), "write \"%s/%s\"", w->st->location, w->key);
    if (s3_call(w->st, &rq, &r, what) != 0)
        goto out;
    if (r.status == 412) {
        ret = RS_EXISTS;
        goto out;
    }
    if (r.status != 200) {
        s3_fail(&r, "could not %s", what);
        goto out;
    }
    w->committed = 1;
    ret = 0;
out:
    resp_release(&r);
    if (ret < 0)
        w->failed = 1;
    if (w->st->absent_key && strcmp(w->st->absent_key, w->key) == 0) {
        free(w->st->absent_key);
        w->st->absent_key = NULL;
    }
    return ret;
}

void s3_storage_write_free(s3_write *w)
{
    if (!w)
        return;
    if (w->upload_id)
        multipart_abort(w);
    for (size_t i = 0; i < w->nparts; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->buf);
    free(w->key);
    free(w->okey);
    free(w);
}

int s3_storage_put(s3_storage *st, const char *key, const void *buf, size_t len, int noreplace)
{
    s3_write *w = s3_storage_write_open(st, key);
    int ret;

    if (!w)
        return -1;
    ret = s3_storage_write_data(w, buf, len);
    if (ret == 0)
        ret = s3_storage_write_commit(w, noreplace);
    s3_storage_write_free(w);
    return ret;
}

/* ---- reads ------------------------------------------------------------------------- */

/*
 * A streaming GET: a curl multi handle driven from s3_storage_read_data. The write
 * callback fills buf; above S3_READ_BUFFER it pauses the transfer until the caller
 * has taken the data. A transfer cut off mid-way resumes with a Range request pinned
 * to the first response's ETag.
 */
struct s3_read {
    s3_storage *st;
    char *key, *okey;
    CURLM *m;
    CURL *h;
    struct curl_slist *hl;
    char *buf;                /* being filled by the transfer */
    size_t len, cap;
    char *out;                /* handed to the caller by the last read_data */
    size_t out_cap;
    int paused, done, attempt;
    CURLcode result;
    long status;
    int64_t size, delivered, received;  /* received: bytes of the current transfer */
    int64_t from;             /* where the current transfer started */
    int64_t clen, total, mtime;
    char etag[128], tail[2 * S3_TAIL_META + 1];
    char *err;                /* error response body */
    size_t errlen;
    char errbuf[CURL_ERROR_SIZE];
    char ifmatch[160];
    char range[80];
    double start;
};

static size_t rd_header(char *p, size_t sz, size_t n, void *arg)
{
    s3_read *rd = arg;
    char etag[128];
    strcpy(etag, rd->etag);
    parse_header(p, sz * n, &rd->clen, &rd->total, &rd->mtime, rd->etag, sizeof(rd->etag),
                 rd->tail, sizeof(rd->tail));
    if (!rd->etag[0] && etag[0] && rd->delivered > 0)
        strcpy(rd->etag, etag); /* keep the first response's ETag across resumes */
    return sz * n;
}

static size_t rd_body(char *p, size_t sz, size_t n, void *arg)
{
    s3_read *rd = arg;
    size_t len = sz * n;
    long status = 0;

    curl_easy_getinfo(rd->h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 206) {
        if (rd->errlen + len < 65536) {
            char *nb = realloc(rd->err, rd->errlen + len + 1);
            if (!nb)
                return 0;
            rd->err = nb;
            memcpy(rd->err + rd->errlen, p, len);
            rd->errlen += len;
            rd->err[rd->errlen] = '\0';
        }
        return len;
    }
    if (rd->len > 0 && rd->len + len > S3_READ_BUFFER) {
        rd->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (rd->len + len > rd->cap) {
        size_t cap = (rd->len + len) * 2;
        char *nb = realloc(rd->buf, cap);
        if (!nb)
            return 0;
        rd->buf = nb;
        rd->cap = cap;
    }
    memcpy(rd->buf + rd->len, p, len);
    rd->len += len;
    rd->received += (int64_t)len;
    return len;
}

/* rd_start -- (re)issue the GET from rd->delivered. */
static int rd_start(s3_read *rd)
{
    s3_req rq = {.method = "GET", .okey = rd->okey, .range_from = -1, .range_to = -1};
    int k = 0;

    if (rd->h) {
        curl_multi_remove_handle(rd->m, rd->h);
    } else if (!(rd->h = curl_easy_init())) {
        return log_error("out of memory");
    }
    curl_slist_free_all(rd->hl);
    rd->hl = NULL;
    rd->from = rd->delivered;
    if (rd->delivered > 0) {
        snprintf(rd->range, sizeof(rd->range), "Range: bytes=%" PRId64 "-", rd->delivered);
        rq.hdrs[k++] = rd->range;
        if (rd->etag[0]) {
            snprintf(rd->ifmatch, sizeof(rd->ifmatch), "If-Match: %s", rd->etag);
            rq.hdrs[k++] = rd->ifmatch;
        }
    }
    if (setup(rd->st, rd->h, &rq, EMPTY_SHA256, NULL, &rd->hl) != 0)
        return -1;
    rd->errbuf[0] = '\0';
    free(rd->err);
    rd->err = NULL;
    rd->errlen = 0;
    rd->done = rd->paused = 0;
    rd->received = 0;
    rd->status = 0;
    curl_easy_setopt(rd->h, CURLOPT_ERRORBUFFER, rd->errbuf);
    curl_easy_setopt(rd->h, CURLOPT_WRITEFUNCTION, rd_body);
    curl_easy_setopt(rd->h, CURLOPT_WRITEDATA, rd);
    curl_easy_setopt(rd->h, CURLOPT_HEADERFUNCTION, rd_header);
    curl_easy_setopt(rd->h, CURLOPT_HEADERDATA, rd);
    if (curl_multi_add_handle(rd->m, rd->h) != CURLM_OK)
        return log_error("could not start reading \"%s/%s\"", rd->st->location, rd->key);
    return 0;
}

/* rd_pump -- run the transfer until data is buffered or it is done. */
static int rd_pump(s3_read *rd)
{
    while (rd->len == 0 && !rd->done) {
        int running = 0, left;
        CURLMsg *msg;
        if (rd->paused) {
            rd->paused = 0;
            curl_easy_pause(rd->h, CURLPAUSE_CONT);
            if (rd->len > 0 || rd->paused)
                break;
        }
        if (curl_multi_perform(rd->m, &running) != CURLM_OK)
            return log_error("could not read \"%s/%s\": transfer failed", rd->st->location,
                             rd->key);
        while ((msg = curl_multi_info_read(rd->m, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                rd->done = 1;
                rd->result = msg->data.result;
                curl_easy_getinfo(rd->h, CURLINFO_RESPONSE_CODE, &rd->status);
            }
        }
        if (rd->len > 0 || rd->done)
            break;
        if (curl_multi_poll(rd->m, NULL, 0, 1000, NULL) != CURLM_OK)
            return log_error("could not read \"%s/%s\": poll failed", rd->st->location,
                             rd->key);
    }
    return 0;
}

/* rd_status -- after the first bytes or the end: the response's status. */
static long rd_code(s3_read *rd)
{
    long status = rd->status;
    if (!status)
        curl_easy_getinfo(rd->h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/*
 * rd_settle -- drive the current transfer until it has either produced body bytes
 * with a 2xx status, or ended. Retries (restarting from rd->delivered) on transport
 * errors and retryable statuses. 0 ok (data buffered or a clean end), RS_NOT_FOUND
 * (404 on the first request), -1 reported.
 */
static int rd_settle(s3_read *rd)
{
    for (;;) {
        long status;
        if (rd_pump(rd) != 0)
            return -1;
        status = rd_code(rd);
        if (rd->from > 0 && status == 200)
            return log_error("could not read \"%s/%s\": the store ignored the range of a resumed read",
                             rd->st->location, rd->key);
        if (rd->len > 0 && (status == 200 || status == 206))
            return 0;
        if (rd->done && rd->result == CURLE_OK) {
            s3_resp r = {.status = status, .body = rd->err, .len = rd->errlen};
            if (status == 200 || status == 206)
                return 0;
            if (status == 404 && rd->from == 0) {
                int nk = is_no_such_key(rd->st, &r);
                if (nk != 0)
                    return nk < 0 ? -1 : RS_NOT_FOUND;
            }
            if (!retryable(status)) {
                if (status == 412 && rd->from > 0)
                    return log_error("could not read \"%s/%s\": it changed while being read",
                                     rd->st->location, rd->key);
                return s3_fail(&r, "could not read \"%s/%s\"", rd->st->location, rd->key);
            }
        }
        if (!rd->done)
            continue;
        /* a transport error or a retryable status: resume, if we may */
        if (rd->attempt + 1 >= rd->st->retries ||
            now_sec() - rd->start > (double)rd->st->retry_time) {
            if (rd->result != CURLE_OK)
                return log_error("could not read \"%s/%s\": %s", rd->st->location, rd->key,
                                 rd->errbuf[0] ? rd->errbuf : curl_easy_strerror(rd->result));
            s3_resp r = {.status = status, .body = rd->err, .len = rd->errlen};
            return s3_fail(&r, "could not read \"%s/%s\"", rd->st->location, rd->key);
        }
        log_debug("reading \"%s/%s\": %s; retrying from byte %" PRId64, rd->st->location,
                  rd->key, rd->result != CURLE_OK ? (rd->errbuf[0] ? rd->errbuf : "transport error")
                                                  : "server error", rd->delivered);
        backoff(rd->attempt++);
        rd->len = 0;
        if (rd_start(rd) != 0)
            return -1;
    }
}

int s3_storage_read_open(s3_storage *st, const char *key, s3_read **out)
{
    s3_read *rd;
    int ret = -1;

    *out = NULL;
    if (!storage_key_valid(key))
        return bad_key(key);
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return log_error("out of memory");
    rd->st = st;
    rd->size = -1;
    rd->start = now_sec();
    if (!(rd->key = strdup(key)) || !(rd->okey = okey_of(st, key)) ||
        !(rd->m = curl_multi_init())) {
        log_error("out of memory");
        goto out;
    }
    if (rd_start(rd) != 0)
        goto out;
    ret = rd_settle(rd);
    if (ret != 0)
        goto out;
    rd->size = rd->total >= 0 ? rd->total : rd->clen;
    *out = rd;
    rd = NULL;
out:
    s3_storage_read_free(rd);
    return ret;
}

ssize_t s3_storage_read_data(s3_read *rd, const void **buf)
{
    ssize_t n;

    if (rd->len == 0) {
        if (rd->done && rd->result == CURLE_OK) {
            if (rd->size >= 0 && rd->delivered != rd->size)
                return log_error("could not read \"%s/%s\": got %" PRId64 " of %" PRId64 " bytes",
                                 rd->st->location, rd->key, rd->delivered, rd->size);
            return 0;
        }
        if (rd_settle(rd) != 0)
            return -1;
        if (rd->len == 0)
            return s3_storage_read_data(rd, buf);
    }
    /* Hand the filled buffer out and fill the other one next: the caller's data
     * stays intact until its next call. */
    {
        char *t = rd->out;
        size_t c = rd->out_cap;
        n = (ssize_t)rd->len;
        rd->out = rd->buf;
        rd->out_cap = rd->cap;
        rd->buf = t;
        rd->cap = c;
        rd->len = 0;
        *buf = rd->out;
    }
    rd->delivered += n;
    return n;
}

int64_t s3_storage_read_size(const s3_read *rd) { return rd->size; }

void s3_storage_read_free(s3_read *rd)
{
    if (!rd)
        return;
    if (rd->h) {
        if (rd->m)
            curl_multi_remove_handle(rd->m, rd->h);
        curl_easy_cleanup(rd->h);
    }
    if (rd->m)
        curl_multi_cleanup(rd->m);
    curl_slist_free_all(rd->hl);
    free(rd->buf);
    free(rd->out);
    free(rd->err);
    free(rd->key);
    free(rd->okey);
    free(rd);
}

int s3_storage_get(s3_storage *st, const char *key, size_t max, char **buf, size_t *len)
{
    s3_read *rd;
    const void *chunk;
    ssize_t n;
    size_t used = 0, cap;
    char *b = NULL;
    int ret = s3_storage_read_open(st, key, &rd);

    *buf = NULL;
    if (ret != 0)
        return ret;
    ret = -1;
    if (rd->size >= 0 && (uint64_t)rd->size > max) {
        log_error("\"%s/%s\" is too large (%" PRId64 " bytes)", st->location, key, rd->size);
        goto out;
    }
    cap = (rd->size >= 0 ? (size_t)rd->size : 4096) + 1;
    if (!(b = malloc(cap))) {
        log_error("out of memory");
        goto out;
    }
    while ((n = s3_storage_read_data(rd, &chunk)) > 0) {
        if (used + (size_t)n > max) {
            log_error("\"%s/%s\" is too large", st->location, key);
            goto out;
        }
        if (used + (size_t)n + 1 > cap) {
            char *nb = realloc(b, (used + (size_t)n + 1) * 2);
            if (!nb) {
                log_error("out of memory");
                goto out;
            }
            b = nb;
            cap = (used + (size_t)n + 1) * 2;
        }
        memcpy(b + used, chunk, (size_t)n);
        used += (size_t)n;
    }
    if (n < 0)
        goto out;
    b[used] = '\0';
    *buf = b;
    b = NULL;
    if (len)
        *len = used;
    ret = 0;
out:
    free(b);
    s3_storage_read_free(rd);
    return ret;
}

/* head -- HEAD an object: 0 (r filled) | RS_NOT_FOUND | -1. */
static int head(s3_storage *st, const char *key, s3_resp *r)
{
    char *okey, what[600];
    s3_req rq = {.method = "HEAD", .range_from = -1, .range_to = -1};
    int ret;

    if (!storage_key_valid(key))
        return bad_key(key);
    if (!(okey = okey_of(st, key)))
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "stat \"%s/%s\"", st->location, key);
    ret = s3_call(st, &rq, r, what);
    free(okey);
    if (ret != 0)
        return -1;
    if (r->status == 200)
        return 0;
    if ((ret = is_no_such_key(st, r)) != 0) {
        if (ret < 0)
            return -1;
        /* remembered for a no-replace write of this key that follows (commit) */
        free(st->absent_key);
        st->absent_key = strdup(key);
        st->absent_at = now_sec();
        return RS_NOT_FOUND;
    }
    return s3_fail(r, "could not %s", what);
}

int s3_storage_read_tail(s3_storage *st, const char *key, void *buf, size_t len, int64_t *size)
{
    s3_resp r = {0};
    char *okey = NULL, what[600];
    uint8_t tail[S3_TAIL_META];
    int64_t total;
    int ret = head(st, key, &r);

    if (ret != 0)
        goto out;
    ret = -1;
    total = r.content_length;
    if (total < 0) {
        log_error("could not stat \"%s/%s\": no Content-Length", st->location, key);
        goto out;
    }
    if ((uint64_t)total < len) {
        log_error("\"%s/%s\" is truncated (%" PRId64 " bytes)", st->location, key, total);
        goto out;
    }
    if (size)
        *size = total;
    {
        /* the object's last bytes, recorded in its metadata when it was written */
        size_t tl = strlen(r.tail_hex) / 2;
        if (len <= tl && tl <= S3_TAIL_META && (tl == S3_TAIL_META || (int64_t)tl == total) &&
            hex_decode(r.tail_hex, 2 * tl, tail) == 0) {
            memcpy(buf, tail + tl - len, len);
            ret = 0;
            goto out;
        }
    }
    if (len == 0) {
        ret = 0;
        goto out;
    }
    resp_release(&r);
    if (!(okey = okey_of(st, key)))
        goto out;
    {
        s3_req rq = {.method = "GET", .okey = okey, .range_from = total - (int64_t)len,
                     .range_to = total - 1};
        snprintf(what, sizeof(what), "read the end of \"%s/%s\"", st->location, key);
        if (s3_call(st, &rq, &r, what) != 0)
            goto out;
        if ((ret = is_no_such_key(st, &r)) != 0) {
            ret = ret < 0 ? -1 : RS_NOT_FOUND;
            goto out;
        }
        ret = -1;
        if ((r.status != 206 && r.status != 200) ||
            (r.status == 200 && r.len != (size_t)total) || (r.status == 206 && r.len != len)) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
        memcpy(buf, r.body + (r.status == 200 ? r.len - len : 0), len);
    }
    ret = 0;
out:
    free(okey);
    resp_release(&r);
    return ret;
}

int s3_storage_stat(s3_storage *st, const char *key, int64_t *size, int64_t *mtime)
{
    s3_resp r = {0};
    int ret = head(st, key, &r);

    if (ret == 0) {
        if (size)
            *size = r.content_length;
        if (mtime)
            *mtime = r.mtime;
    }
    resp_release(&r);
    return ret;
}

/* ---- listing and deleting ---------------------------------------------------------- */

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
        resp_release(&r);
        if (s3_call(st, &rq, &r, what) != 0)
            goto out;
        if (r.status != 200) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
        /* the whole page is read before any callback: a malformed page delivers nothing */
        s3_xml_listing_free(&page);
        if (s3_xml_listing_parse(r.body, r.len, &page, why, sizeof(why)) != 0) {
            bad_answer(what, why);
            goto out;
        }
        resp_release(&r); /* the page holds what is needed; cb may make requests */
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
    resp_release(&r);
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
        return bad_key(prefix);
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
        return bad_key(key);
    if (!(okey = okey_of(st, key)))
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "remove \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) == 0) {
        int nk = r.status == 404 ? is_no_such_key(st, &r) : 0;
        if (r.status == 204 || r.status == 200 || nk > 0)
            ret = 0;
        else if (nk < 0)
            ret = -1;
        else
            s3_fail(&r, "could not %s", what);
        resp_release(&r);
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
                bad = bad_answer(what, why);
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
    resp_release(&r);
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
        return bad_key(prefix);
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
    char *src = okey_of(st, from), *dst = okey_of(st, to), *esrc = NULL, *hdr = NULL;
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
            bad_answer(what, why);
            goto out;
        }
        if (f != 0) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
    }
    ret = 0;
out:
    resp_release(&r);
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
        return bad_key(from);
    if (!storage_key_valid(to))
        return bad_key(to);
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

/* ---- locks ------------------------------------------------------------------------- */

struct s3_lock {
    s3_storage *st;        /* the holder's storage (requests from this thread) */
    s3_storage *renew_st;  /* the renewer thread's own storage */
    char *key;
    char owner[160];
    char etag[128];        /* of our last write: renewals are conditional on it */
    pthread_t thread;
    int have_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

/* lock_body -- "owner=...\nexpires=...\n". */
static void lock_body(char *out, size_t n, const char *owner)
{
    snprintf(out, n, "owner=%s\nexpires=%" PRId64 "\n", owner, (int64_t)time(NULL) + S3_LOCK_TTL);
}

/* lock_get -- GET a lock object: 0 (owner, expiry and, when etag, its ETag filled) |
 * RS_NOT_FOUND | -1 (reported). */
static int lock_get(s3_storage *st, const char *key, char *owner, size_t olen, int64_t *expires,
                    char *etag, size_t elen)
{
    char *okey = okey_of(st, key), what[600], *o, *e;
    s3_req rq = {.method = "GET", .range_from = -1, .range_to = -1};
    s3_resp r;
    int ret = -1, nk;

    if (!okey)
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "read the lock \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) != 0) {
        free(okey);
        return -1;
    }
    if (r.status == 200) {
        owner[0] = '\0';
        *expires = 0;
        if (etag)
            snprintf(etag, elen, "%s", r.etag);
        if (r.body && (o = strstr(r.body, "owner=")) != NULL) {
            size_t n = strcspn(o + 6, "\n");
            snprintf(owner, olen, "%.*s", (int)n, o + 6);
        }
        if (r.body && (e = strstr(r.body, "expires=")) != NULL)
            *expires = strtoll(e + 8, NULL, 10);
        ret = 0;
    } else if (r.status == 404 && (nk = is_no_such_key(st, &r)) != 0) {
        ret = nk > 0 ? RS_NOT_FOUND : -1;
    } else {
        s3_fail(&r, "could not %s", what);
    }
    resp_release(&r);
    free(okey);
    return ret;
}

static int lock_read(s3_storage *st, const char *key, char *owner, size_t olen, int64_t *expires)
{
    return lock_get(st, key, owner, olen, expires, NULL, 0);
}

/* lock_put -- PUT a lock object under a condition ("If-None-Match: *", "If-Match:
 * <etag>" or NULL); its new ETag into etag. 0 | RS_EXISTS (412: the condition failed) |
 * -1 (reported). */
static int lock_put(s3_storage *st, const char *key, const char *body, const char *cond,
                    char *etag, size_t elen)
{
    char *okey = okey_of(st, key), what[600];
    s3_req rq = {.method = "PUT", .range_from = -1, .range_to = -1,
                 .hdrs = {"Content-Type: text/plain", cond}};
    s3_resp r;
    int ret = -1;

    if (!okey)
        return -1;
    rq.okey = okey;
    rq.body = body;
    rq.body_len = strlen(body);
    snprintf(what, sizeof(what), "write the lock \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) != 0) {
        free(okey);
        return -1;
    }
    if (r.status == 200) {
        snprintf(etag, elen, "%s", r.etag);
        ret = 0;
    } else if (r.status == 412 || r.status == 409) {
        ret = RS_EXISTS; /* 409: a concurrent conditional write (AWS) */
    } else {
        s3_fail(&r, "could not %s", what);
    }
    resp_release(&r);
    free(okey);
    return ret;
}

/* live_lock -- 1 when key holds a live lock of someone else, 0 absent, 2 expired or
 * ours (etag: the object's ETag, the condition its takeover is written under), -1
 * reported. */
static int live_lock(s3_storage *st, const char *key, const char *me, char *etag, size_t elen)
{
    char owner[160];
    int64_t exp;
    int r = lock_get(st, key, owner, sizeof(owner), &exp, etag, elen);

    if (r == RS_NOT_FOUND)
        return 0;
    if (r != 0)
        return -1;
    if (strcmp(owner, me) == 0 || exp < (int64_t)time(NULL))
        return 2;
    return 1;
}

struct shared_scan {
    s3_storage *st;
    const char *name, *me;
    int live;
};

static int shared_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    struct shared_scan *s = arg;
    const char *base = key + strlen("locks/");
    size_t nl = strlen(s->name), bl = strlen(base);
    int r;
    (void)size;
    (void)mtime;
    if (strncmp(base, s->name, nl) != 0 || base[nl] != '.' || bl < 7 ||
        strcmp(base + bl - 7, ".shared") != 0)
        return 0;
    r = live_lock(s->st, key, s->me, NULL, 0);
    if (r < 0)
        return -1;
    s->live += r == 1;
    return 0;
}

static void *renew_main(void *arg)
{
    s3_lock *lk = arg;
    char body[256], cond[160], etag[128];
    int r;

    pthread_mutex_lock(&lk->mu);
    while (!lk->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += S3_LOCK_TTL / 4;
        pthread_cond_timedwait(&lk->cv, &lk->mu, &ts);
        if (lk->stop)
            break;
        pthread_mutex_unlock(&lk->mu);
        lock_body(body, sizeof(body), lk->owner);
        /* only while it is still ours: an expired lock someone took over stays theirs */
        if (lk->etag[0])
            snprintf(cond, sizeof(cond), "If-Match: %s", lk->etag);
        r = lock_put(lk->renew_st, lk->key, body, lk->etag[0] ? cond : NULL, etag, sizeof(etag));
        if (r == RS_EXISTS) {
            log_warning("lost the lock \"%s\": it expired and was taken over", lk->key);
            pthread_mutex_lock(&lk->mu);
            break;
        }
        if (r != 0)
            log_warning("could not renew the lock \"%s\"", lk->key);
        pthread_mutex_lock(&lk->mu);
        if (r == 0)
            snprintf(lk->etag, sizeof(lk->etag), "%s", etag);
    }
    pthread_mutex_unlock(&lk->mu);
    return NULL;
}

int s3_storage_lock_take(s3_storage *st, const char *name, int exclusive, int wait,
                         s3_lock **out)
{
    char key[512], excl_key[300], body[256], host[64] = "host", owner[160];
    s3_lock *lk = NULL;
    int64_t exp;
    int ret = -1;

    *out = NULL;
    if (snprintf(excl_key, sizeof(excl_key), "locks/%s.lock", name) >= (int)sizeof(excl_key) ||
        !storage_key_valid(excl_key))
        return bad_key(name);
    gethostname(host, sizeof(host) - 1);
    lk = calloc(1, sizeof(*lk));
    if (!lk)
        return log_error("out of memory");
    pthread_mutex_init(&lk->mu, NULL);
    pthread_cond_init(&lk->cv, NULL);
    lk->st = st;
    snprintf(lk->owner, sizeof(lk->owner), "%s:%ld:%08lx%08lx", host, (long)getpid(),
             (unsigned long)random(), (unsigned long)random());
    for (size_t i = 0; lk->owner[i]; i++)
        if (lk->owner[i] == '/' || lk->owner[i] == '.')
            lk->owner[i] = '_';
    if (exclusive)
        snprintf(key, sizeof(key), "%s", excl_key);
    else
        snprintf(key, sizeof(key), "locks/%s.%s.shared", name, lk->owner);
    if (!(lk->key = strdup(key))) {
        log_error("out of memory");
        goto out;
    }
    for (;;) {
        char seen[128] = "", cond[160];
        int state = live_lock(st, excl_key, lk->owner, seen, sizeof(seen)), busy = state == 1;
        if (state < 0)
            goto out;
        if (!busy && exclusive) {
            struct shared_scan s = {st, name, lk->owner, 0};
            if (s3_storage_list(st, "locks/", shared_cb, &s) != 0)
                goto out;
            busy = s.live > 0;
        }
        if (!busy) {
            int r;
            const char *c = NULL;
            lock_body(body, sizeof(body), lk->owner);
            /* exclusive: created only if absent (If-None-Match: *), an expired lock
             * replaced only if unchanged since it was read (If-Match: its ETag), so of
             * two takers on a store that honours the conditions exactly one wins. A
             * shared lease has a key of its own. */
            if (exclusive && state == 0)
                c = "If-None-Match: *";
            else if (exclusive && seen[0]) {
                snprintf(cond, sizeof(cond), "If-Match: %s", seen);
                c = cond;
            }
            r = lock_put(st, key, body, c, lk->etag, sizeof(lk->etag));
            if (r < 0)
                goto out;
            /* read back, even after a 412 (a retried write may have found its own first
             * attempt): on a store that ignores the conditions the last writer wins, and
             * the read-back narrows but does not close that race (see the README) */
            r = lock_get(st, key, owner, sizeof(owner), &exp, lk->etag, sizeof(lk->etag));
            if (r < 0)
                goto out;
            if (r == 0 && strcmp(owner, lk->owner) == 0) {
                /* look again at the other side, now that ours is visible: a reader and
                 * an expire that checked each other before either wrote both see the
                 * other now (S3 reads after writes are consistent), and both back off */
                int other;
                if (exclusive) {
                    struct shared_scan s2 = {st, name, lk->owner, 0};
                    if (s3_storage_list(st, "locks/", shared_cb, &s2) != 0)
                        goto out;
                    other = s2.live > 0;
                } else {
                    other = live_lock(st, excl_key, lk->owner, NULL, 0);
                    if (other < 0)
                        goto out;
                    other = other == 1;
                }
                if (!other)
                    break;
                if (s3_storage_remove(st, key) != 0)
                    goto out;
            }
            lk->etag[0] = '\0';
        }
        if (!wait) {
            ret = RS_EXISTS;
            goto out;
        }
        sleep(1);
    }
    /* the renewer: its own storage, so the holder's thread keeps st to itself */
    lk->renew_st = s3_storage_open(st->location, 0);
    if (lk->renew_st && pthread_create(&lk->thread, NULL, renew_main, lk) == 0)
        lk->have_thread = 1;
    else
        log_warning("could not start renewing the lock \"%s\"; it expires in %d s", key,
                    S3_LOCK_TTL);
    *out = lk;
    lk = NULL;
    ret = 0;
out:
    if (lk) {
        s3_storage_free(lk->renew_st);
        pthread_mutex_destroy(&lk->mu);
        pthread_cond_destroy(&lk->cv);
        free(lk->key);
        free(lk);
    }
    return ret;
}

void s3_storage_lock_release(s3_lock *lk)
{
    char owner[160];
    int64_t exp;

    if (!lk)
        return;
    if (lk->have_thread) {
        pthread_mutex_lock(&lk->mu);
        lk->stop = 1;
        pthread_cond_signal(&lk->cv);
        pthread_mutex_unlock(&lk->mu);
        pthread_join(lk->thread, NULL);
    }
    /* remove it only while it is still ours */
    if (lock_read(lk->st, lk->key, owner, sizeof(owner), &exp) == 0 &&
        strcmp(owner, lk->owner) == 0)
        (void)s3_storage_remove(lk->st, lk->key);
    s3_storage_free(lk->renew_st);
    pthread_mutex_destroy(&lk->mu);
    pthread_cond_destroy(&lk->cv);
    free(lk->key);
    free(lk);
}
