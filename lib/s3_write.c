/*
 * s3_write.c -- writes to S3: buffered up to one part, then a multipart upload whose
 * parts go out as the data comes, completed only on commit (see storage_s3.h).
 */
#include "s3_internal.h"
#include "strbuf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "hex.h"
#include "s3_xml.h"
#include "sha256.h"
#include "zst.h"

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
        s3_bad_key(key);
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->key = strdup(key)) || !(w->okey = s3_okey(st, key))) {
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
        s3_bad_answer(what, why);
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
    s3_resp_release(&r);
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
    s3_resp_release(&r);
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
    else if ((ret = s3_is_no_such_key(st, &r)) != 0)
        ret = ret < 0 ? -1 : 0;
    else
        ret = s3_fail(&r, "could not %s", what);
    s3_resp_release(&r);
    return ret;
}

static int multipart_complete(s3_write *w, int noreplace)
{
    char *eid = NULL, q[1024], what[600], why[S3_XML_WHY];
    strbuf body;
    s3_req rq = {.method = "POST", .okey = w->okey, .query = q, .range_from = -1,
                 .range_to = -1, .hdrs = {"Content-Type: application/xml",
                                          noreplace ? "If-None-Match: *" : NULL}};
    s3_resp r = {0};
    int ret = -1;

    strbuf_init(&body);
    eid = s3_uri_encode(w->upload_id, 0);
    if (!eid) {
        log_error("out of memory");
        goto out;
    }
    if (strbuf_append(&body, "<CompleteMultipartUpload>") != 0)
        goto out;
    for (size_t i = 0; i < w->nparts; i++)
        if (strbuf_appendf(&body, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>",
                           i + 1, w->etags[i]) != 0)
            goto out;
    if (strbuf_append(&body, "</CompleteMultipartUpload>") != 0)
        goto out;
    snprintf(q, sizeof(q), "uploadId=%s", eid);
    rq.body = body.buf;
    rq.body_len = body.len;
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
            s3_bad_answer(what, why);
            goto out;
        }
        if (f == 0) {
            s3_fail(&r, "could not %s", what);
            goto out;
        }
    }
    ret = 0;
out:
    s3_resp_release(&r);
    strbuf_release(&body);
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
        s3_resp_release(&r);
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
        s3_now() - w->st->absent_at < 10.0) {
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
    s3_resp_release(&r);
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
