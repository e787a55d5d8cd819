/*
 * http.h -- a tiny HTTP client (libcurl) for health checks and JSON REST calls.
 *
 * One request per call, no connection reuse: the callers (ragsafe-milvus's health
 * polls and a handful of REST calls per snapshot) make few requests. Redirects are not
 * followed; proxies from the environment are ignored (the endpoints are local).
 *
 *     http_response r;
 *     if (http_get(url, &opts, &r) == 0) { ... r.status, r.body (NUL-terminated) ... }
 *     http_response_release(&r);
 *     http_post_json(url, "{\"dbName\":\"default\"}", &opts, &r);
 *
 * Result: 0 when an HTTP response arrived, whatever its status (the caller judges the
 * status code and body); -1 on a transport failure (connection refused, timeout,
 * malformed URL, response larger than HTTP_MAX_BODY). A transport failure is reported
 * through log.h unless opts->quiet is set (health polls: refusing connections is the
 * expected state of a stopped service); either way r->error holds the reason.
 * http_response_release is safe on a zeroed or released response, and after -1.
 */
#ifndef RAGSAFE_HTTP_H
#define RAGSAFE_HTTP_H

#include <stddef.h>

#define HTTP_MAX_BODY (16u << 20)

typedef struct http_opts {
    long timeout_ms;     /* whole request, connect included; 0: 10 s */
    const char *bearer;  /* "Authorization: Bearer <bearer>" when non-NULL and non-empty */
    int quiet;           /* transport failures: debug level only */
} http_opts;

typedef struct http_response {
    long status;         /* HTTP status code, 0 when no response */
    char *body;          /* malloc'd, NUL-terminated (may be "" but never NULL after 0) */
    size_t len;          /* body length without the NUL */
    char error[256];     /* transport failure reason, "" otherwise */
} http_response;

int http_get(const char *url, const http_opts *opts, http_response *resp);
int http_post_json(const char *url, const char *json, const http_opts *opts,
                   http_response *resp);
void http_response_release(http_response *resp);

#endif
