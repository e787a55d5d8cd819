/*
 * storage_s3.c -- the S3 backend of storage.h through libcurl; see storage_s3.h.
 *
 * This file: settings and credentials, opening and freeing a storage. The rest of the
 * backend is split by concern (s3_internal.h lists the files).
 */
#include "s3_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "zst.h"

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

    s3_resp_release(&r);
    free(q);
    free(ep);
    return st;
oom:
    log_error("out of memory");
fail:
    s3_resp_release(&r);
    free(q);
    free(ep);
    s3_storage_free(st);
    return NULL;
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
