/*
 * s3_read.c -- reads from S3: the streaming GET (a curl multi handle pumped from
 * storage_read_data, resumed with a Range request), HEAD, tails and stat.
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
#include "hex.h"

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
    s3_parse_header(p, sz * n, &rd->clen, &rd->total, &rd->mtime, rd->etag, sizeof(rd->etag),
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
    if (s3_setup(rd->st, rd->h, &rq, EMPTY_SHA256, NULL, &rd->hl) != 0)
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
 * errors and s3_retryable statuses. 0 ok (data buffered or a clean end), RS_NOT_FOUND
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
                int nk = s3_is_no_such_key(rd->st, &r);
                if (nk != 0)
                    return nk < 0 ? -1 : RS_NOT_FOUND;
            }
            if (!s3_retryable(status)) {
                if (status == 412 && rd->from > 0)
                    return log_error("could not read \"%s/%s\": it changed while being read",
                                     rd->st->location, rd->key);
                return s3_fail(&r, "could not read \"%s/%s\"", rd->st->location, rd->key);
            }
        }
        if (!rd->done)
            continue;
        /* a transport error or a s3_retryable status: resume, if we may */
        if (rd->attempt + 1 >= rd->st->retries ||
            s3_now() - rd->start > (double)rd->st->retry_time) {
            if (rd->result != CURLE_OK)
                return log_error("could not read \"%s/%s\": %s", rd->st->location, rd->key,
                                 rd->errbuf[0] ? rd->errbuf : curl_easy_strerror(rd->result));
            s3_resp r = {.status = status, .body = rd->err, .len = rd->errlen};
            return s3_fail(&r, "could not read \"%s/%s\"", rd->st->location, rd->key);
        }
        log_debug("reading \"%s/%s\": %s; retrying from byte %" PRId64, rd->st->location,
                  rd->key, rd->result != CURLE_OK ? (rd->errbuf[0] ? rd->errbuf : "transport error")
                                                  : "server error", rd->delivered);
        s3_backoff(rd->attempt++);
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
        return s3_bad_key(key);
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return log_error("out of memory");
    rd->st = st;
    rd->size = -1;
    rd->start = s3_now();
    if (!(rd->key = strdup(key)) || !(rd->okey = s3_okey(st, key)) ||
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
        return s3_bad_key(key);
    if (!(okey = s3_okey(st, key)))
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "stat \"%s/%s\"", st->location, key);
    ret = s3_call(st, &rq, r, what);
    free(okey);
    if (ret != 0)
        return -1;
    if (r->status == 200)
        return 0;
    if ((ret = s3_is_no_such_key(st, r)) != 0) {
        if (ret < 0)
            return -1;
        /* remembered for a no-replace write of this key that follows (commit) */
        free(st->absent_key);
        st->absent_key = strdup(key);
        st->absent_at = s3_now();
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
    s3_resp_release(&r);
    if (!(okey = s3_okey(st, key)))
        goto out;
    {
        s3_req rq = {.method = "GET", .okey = okey, .range_from = total - (int64_t)len,
                     .range_to = total - 1};
        snprintf(what, sizeof(what), "read the end of \"%s/%s\"", st->location, key);
        if (s3_call(st, &rq, &r, what) != 0)
            goto out;
        if ((ret = s3_is_no_such_key(st, &r)) != 0) {
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
    s3_resp_release(&r);
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
    s3_resp_release(&r);
    return ret;
}
