/*
 * http.c -- libcurl behind http.h. See the header for the contract.
 */
#include "http.h"

#include "curl_dl.h" /* libcurl, loaded on first use */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc = CURLE_OK;

/* http_global_init -- curl_global_init exactly once per process (it is not thread-safe
 * in older libcurls; pthread_once makes the first call the only one). */
static void http_global_init(void)
{
    http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct http_buf {
    char *data;
    size_t len;
    size_t cap;
    int too_big;
} http_buf;

/* http_collect -- curl write callback: append to the body buffer, refusing more than
 * HTTP_MAX_BODY (returning a short count makes curl abort with CURLE_WRITE_ERROR). */
static size_t http_collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    http_buf *b = arg;
    size_t n = size * nmemb;

    if (b->len + n > HTTP_MAX_BODY) {
        b->too_big = 1;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* http_request -- one GET (json NULL) or POST of a JSON body. */
static int http_request(const char *url, const char *json, const http_opts *opts,
                        http_response *resp)
{
    static const http_opts defaults = {0};
    CURL *c = NULL;
    struct curl_slist *hdrs = NULL;
    http_buf b = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    char *auth = NULL;
    int ret = -1;

    if (opts == NULL)
        opts = &defaults;
    memset(resp, 0, sizeof(*resp));
    pthread_once(&http_once, http_global_init);
    if (http_init_rc != CURLE_OK) {
        snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(http_init_rc));
        goto fail;
    }
    c = curl_easy_init();
    if (c == NULL) {
        snprintf(resp->error, sizeof(resp->error), "out of memory");
        goto fail;
    }
    long timeout = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ragsafe/" "0.1");
    if (json != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Accept: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
    }
    if (opts->bearer != NULL && opts->bearer[0] != '\0') {
        size_t n = strlen(opts->bearer) + sizeof("Authorization: Bearer ");
        auth = malloc(n);
        if (auth == NULL) {
            snprintf(resp->error, sizeof(resp->error), "out of memory");
            goto fail;
        }
        snprintf(auth, n, "Authorization: Bearer %s", opts->bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        if (b.too_big)
            snprintf(resp->error, sizeof(resp->error), "response larger than %u bytes",
                     HTTP_MAX_BODY);
        else
            snprintf(resp->error, sizeof(resp->error), "%s",
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto fail;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    if (b.data == NULL) {
        b.data = calloc(1, 1);
        if (b.data == NULL) {
            snprintf(resp->error, sizeof(resp->error), "out of memory");
            goto fail;
        }
    }
    resp->body = b.data;
    resp->len = b.len;
    b.data = NULL;
    ret = 0;
    goto out;

fail:
    resp->status = 0;
    if (opts->quiet)
        log_debug("could not %s \"%s\": %s", json ? "post to" : "get", url, resp->error);
    else
        log_error("could not %s \"%s\": %s", json ? "post to" : "get", url, resp->error);
out:
    if (auth != NULL) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    curl_slist_free_all(hdrs);
    if (c != NULL)
        curl_easy_cleanup(c);
    free(b.data);
    return ret;
}

int http_get(const char *url, const http_opts *opts, http_response *resp)
{
    return http_request(url, NULL, opts, resp);
}

int http_post_json(const char *url, const char *json, const http_opts *opts,
                   http_response *resp)
{
    return http_request(url, json, opts, resp);
}

void http_response_release(http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}
