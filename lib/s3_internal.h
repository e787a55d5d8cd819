/*
 * s3_internal.h -- what the pieces of the S3 backend share (not for callers: they use
 * storage.h, and storage_s3.h for its settings).
 *
 * The backend is split by concern:
 *     storage_s3.c    settings, credentials, s3_storage_open/free (the storage glue)
 *     s3_request.c    one signed request with retries (s3_call), errors, URI encoding
 *     s3_write.c      writes: one PUT, or a multipart upload completed on commit
 *     s3_read.c       the streaming GET with resume, HEAD, tails, stat
 *     s3_list.c       listing (ListObjectsV2 pages), deleting, rename_prefix
 *     s3_lock.c       lock and lease objects with conditional writes, the renewer
 *     s3_xml.c        the XML answers, through libexpat (s3_xml.h)
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4); s3_setup configures it.
 */
#ifndef RAGSAFE_S3_INTERNAL_H
#define RAGSAFE_S3_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "curl_dl.h" /* libcurl, loaded on first use */
#include "log.h"
#include "storage_s3.h"

#define S3_MAX_BODY (8u << 20)     /* largest non-streamed response we accept */
#define S3_READ_BUFFER (1u << 20)  /* streaming GET: pause the transfer above this */
#define S3_DELETE_BATCH 1000
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

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

/* ---- s3_request.c ------------------------------------------------------------------ */

/*
 * s3_call -- one request, retried on transport errors, 5xx, 429 and 408 within the
 * attempt and time bounds. 0: a response arrived (resp->status is the caller's to
 * judge, and may still be a 5xx once the retries are spent; release resp with
 * s3_resp_release); -1: no response (reported, naming what).
 */
int s3_call(s3_storage *st, const s3_req *rq, s3_resp *resp, const char *what);
void s3_resp_release(s3_resp *r);

/* s3_setup -- configure h for one request (the headers list in *hl is the caller's to
 * free after the transfer; body source and response sinks too). 0 | -1 reported. */
int s3_setup(s3_storage *st, CURL *h, const s3_req *rq, const char *sha_hex,
             const char *md5_b64, struct curl_slist **hl);
/* s3_parse_header -- one response header line into the fields it sets. */
void s3_parse_header(const char *line, size_t len, int64_t *clen, int64_t *total,
                     int64_t *mtime, char *etag, size_t etaglen, char *tail, size_t taillen);
void s3_backoff(int attempt);  /* sleep before retry number attempt (jittered) */
double s3_now(void);           /* monotonic seconds */
int s3_retryable(long status); /* 5xx, 429, 408 */

/* s3_fail -- report an unexpected status with the S3 error code and message. -1. */
int s3_fail(const s3_resp *r, const char *fmt, ...) LOG_PRINTF(2, 3);
/* s3_bad_answer -- report a 2xx whose XML could not be read (why: s3_xml.h's). -1. */
int s3_bad_answer(const char *what, const char *why);
/* s3_bad_key -- report an invalid repository key. -1. */
int s3_bad_key(const char *key);
/* s3_okey -- the object key of a repository key (prefix + "/" + key); NULL reported. */
char *s3_okey(const s3_storage *st, const char *key);
/*
 * s3_is_no_such_key -- a 404 about the object, not the bucket: 1 yes, 0 no, -1
 * (reported) when the bucket itself cannot be reached. A HEAD's 404 has no body to
 * tell NoSuchKey from NoSuchBucket: unless the bucket has already answered this
 * process, one listing settles it (only ever on a "not found", never on the hot path).
 */
int s3_is_no_such_key(s3_storage *st, const s3_resp *r);

#endif
