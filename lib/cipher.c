/*
 * cipher.c -- AES-256-GCM frames for objects at rest; see cipher.h for the format.
 */
#include "cipher.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "hex.h"
#include "le.h"
#include "log.h"

struct cipher_key {
    uint8_t enc[CIPHER_KEY_LEN];  /* HMAC(master, "ragsafe-encrypt") */
    uint8_t mac[CIPHER_KEY_LEN];  /* HMAC(master, "ragsafe-digest") */
};

static int ssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    return log_error("could not %s: %s", what, buf);
}

cipher_key *cipher_key_from_bytes(const uint8_t raw[CIPHER_KEY_LEN])
{
    cipher_key *k = calloc(1, sizeof(*k));
    unsigned int n = 0;

    if (!k) {
        log_error("out of memory");
        return NULL;
    }
    if (!HMAC(EVP_sha256(), raw, CIPHER_KEY_LEN, (const unsigned char *)"ragsafe-encrypt", 15,
              k->enc, &n) ||
        n != CIPHER_KEY_LEN ||
        !HMAC(EVP_sha256(), raw, CIPHER_KEY_LEN, (const unsigned char *)"ragsafe-digest", 14,
              k->mac, &n) ||
        n != CIPHER_KEY_LEN) {
        ssl_error("derive the cipher keys");
        cipher_key_free(k);
        return NULL;
    }
    return k;
}

void cipher_key_free(cipher_key *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

/*
 * read_key_file -- the whole of fd (at most cap bytes) into buf, reading until EOF.
 * A file longer than cap is an error (no key file is): *len = cap + 1. -1 reported.
 */
static int read_key_file(int fd, const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    size_t got = 0;
    uint8_t extra;

    for (;;) {
        ssize_t n = got < cap ? read(fd, buf + got, cap - got) : read(fd, &extra, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return log_errno("could not read cipher key file \"%s\"", path);
        if (n == 0)
            break;
        if (got == cap) {
            explicit_bzero(&extra, sizeof(extra));
            got = cap + 1;
            break;
        }
        got += (size_t)n;
    }
    *len = got;
    return 0;
}

int cipher_key_load(const char *path, cipher_key **out)
{
    uint8_t buf[130], raw[CIPHER_KEY_LEN];
    struct stat sb;
    size_t len = 0;
    int fd = -1, ret = -1;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return log_errno("could not open cipher key file \"%s\"", path);
    if (fstat(fd, &sb) != 0) {
        log_errno("could not stat cipher key file \"%s\"", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        log_error("cipher key file \"%s\" is not a regular file", path);
        goto out;
    }
    /* a key anyone else can read protects nothing: refuse it, as ssh refuses a
     * private key file other users can read */
    if (sb.st_mode & 077) {
        log_error("cipher key file \"%s\" has mode %04o: it must be 0600 or stricter", path,
                  (unsigned)(sb.st_mode & 07777));
        log_hint("chmod 600 \"%s\"", path);
        goto out;
    }
    if (read_key_file(fd, path, buf, sizeof(buf), &len) != 0)
        goto out;
    if (len == CIPHER_KEY_LEN) {
        memcpy(raw, buf, CIPHER_KEY_LEN);
    } else {
        while (len && len <= sizeof(buf) && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        if (len != 2 * CIPHER_KEY_LEN) {
            log_error("cipher key file \"%s\" must hold 32 bytes or 64 hex digits", path);
            goto out;
        }
        if (hex_decode((const char *)buf, 2 * CIPHER_KEY_LEN, raw) != 0) {
            log_error("cipher key file \"%s\" must hold 32 bytes or 64 hex digits", path);
            goto out;
        }
    }
    *out = cipher_key_from_bytes(raw);
    ret = *out ? 0 : -1;
out:
    if (fd >= 0)
        close(fd);
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(raw, sizeof(raw));
    return ret;
}

int cipher_keyed_digest(const cipher_key *k, const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), k->mac, CIPHER_KEY_LEN, data, len, out, &n) || n != 32)
        return ssl_error("compute a keyed digest");
    return 0;
}

uint64_t cipher_plain_size_max(uint64_t stored_size)
{
    if (stored_size < CIPHER_TAIL_SIZE)
        return 0;
    return stored_size - CIPHER_OVERHEAD; /* every object has at least one frame */
}

/*
 * seal -- one frame: header, fresh nonce, AES-256-GCM of plain (padded to pad_to
 * when larger than len) with header + name as AAD, tag; to sink.
 */
static int seal(const cipher_key *k, const char *name, int final, uint64_t index,
                uint64_t offset, const uint8_t *plain, size_t len, size_t pad_to,
                uint8_t *scratch, cipher_sink_fn sink, void *arg)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t *hdr = scratch, *nonce = scratch + CIPHER_HEADER, *ct = nonce + CIPHER_NONCE;
    size_t clen = pad_to > len ? pad_to : len;
    uint8_t pad[CIPHER_TAIL_PLAIN] = {0};
    int n = 0, ret = -1;

    if (!c)
        return log_error("out of memory");
    memcpy(hdr, "RGSE", 4);
    hdr[4] = 1;
    hdr[5] = final ? 1 : 0;
    hdr[6] = hdr[7] = 0;
    le32_store(hdr + 8, (uint32_t)len);
    le64_store(hdr + 12, index);
    le64_store(hdr + 20, offset);
    if (RAND_bytes(nonce, CIPHER_NONCE) != 1) {
        ssl_error("make a nonce");
        goto out;
    }
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CIPHER_NONCE, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, k->enc, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, hdr, CIPHER_HEADER) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const uint8_t *)name, (int)strlen(name)) != 1 ||
        (len && EVP_EncryptUpdate(c, ct, &n, plain, (int)len) != 1) ||
        (clen > len && EVP_EncryptUpdate(c, ct + len, &n, pad, (int)(clen - len)) != 1) ||
        EVP_EncryptFinal_ex(c, ct + clen, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CIPHER_TAG, ct + clen) != 1) {
        ssl_error("encrypt");
        goto out;
    }
    ret = sink(arg, scratch, CIPHER_OVERHEAD + clen);
out:
    EVP_CIPHER_CTX_free(c);
    return ret;
}

/*
 * open_frame -- verify and decrypt one whole frame (f, flen) into plain (room for
 * its plaintext length). RS_MISMATCH (reported) when the tag does not verify.
 */
static int open_frame(const cipher_key *k, const char *name, const uint8_t *f, size_t flen,
                      uint8_t *plain)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    const uint8_t *nonce = f + CIPHER_HEADER, *ct = nonce + CIPHER_NONCE;
    size_t clen = flen - CIPHER_OVERHEAD;
    int n = 0, ret = -1;

    if (!c)
        return log_error("out of memory");
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, CIPHER_NONCE, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, k->enc, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, f, CIPHER_HEADER) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, (const uint8_t *)name, (int)strlen(name)) != 1 ||
        (clen && EVP_DecryptUpdate(c, plain, &n, ct, (int)clen) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CIPHER_TAG, (void *)(ct + clen)) != 1) {
        ssl_error("decrypt");
        goto out;
    }
    if (EVP_DecryptFinal_ex(c, plain + clen, &n) != 1) {
        ERR_clear_error();
        ret = RS_MISMATCH;
        goto out;
    }
    ret = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return ret;
}

static int mismatch(const char *name, const char *why)
{
    log_error("could not decrypt \"%s\": wrong key or damaged object", name);
    log_detail("%s", why);
    return RS_MISMATCH;
}

/* ---- encrypting -------------------------------------------------------------------- */

struct cipher_enc {
    const cipher_key *k;
    char *name;
    cipher_sink_fn sink;
    void *arg;
    uint8_t *buf;          /* plaintext held back: up to CIPHER_FRAME + CIPHER_TAIL_PLAIN */
    size_t len;
    uint8_t *scratch;      /* one sealed frame */
    uint64_t index, offset;
    int finished, failed;
};

cipher_enc *cipher_enc_new(const cipher_key *k, const char *name, cipher_sink_fn sink, void *arg)
{
    cipher_enc *e = calloc(1, sizeof(*e));

    if (!e || !(e->name = strdup(name)) ||
        !(e->buf = malloc(CIPHER_FRAME + CIPHER_TAIL_PLAIN)) ||
        !(e->scratch = malloc(CIPHER_FRAME + CIPHER_OVERHEAD + CIPHER_TAIL_PLAIN))) {
        log_error("out of memory");
        cipher_enc_free(e);
        return NULL;
    }
    e->k = k;
    e->sink = sink;
    e->arg = arg;
    return e;
}

static int emit(cipher_enc *e, size_t n, int final)
{
    int r = seal(e->k, e->name, final, e->index, e->offset, e->buf, n,
                 final ? CIPHER_TAIL_PLAIN : 0, e->scratch, e->sink, e->arg);
    if (r != 0) {
        e->failed = 1;
        return -1;
    }
    e->index++;
    e->offset += n;
    memmove(e->buf, e->buf + n, e->len - n);
    e->len -= n;
    return 0;
}

int cipher_enc_write(cipher_enc *e, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (e->failed || e->finished)
        return log_error("could not encrypt \"%s\": the stream is closed", e->name);
    while (len > 0) {
        size_t room = CIPHER_FRAME + CIPHER_TAIL_PLAIN - e->len, n = len < room ? len : room;
        memcpy(e->buf + e->len, p, n);
        e->len += n;
        p += n;
        len -= n;
        /* a full frame and the tail's worth held back: the frame can go */
        if (e->len == CIPHER_FRAME + CIPHER_TAIL_PLAIN && emit(e, CIPHER_FRAME, 0) != 0)
            return -1;
    }
    return 0;
}

int cipher_enc_finish(cipher_enc *e)
{
    if (e->failed || e->finished)
        return log_error("could not encrypt \"%s\": the stream is closed", e->name);
    if (e->len > CIPHER_TAIL_PLAIN && emit(e, e->len - CIPHER_TAIL_PLAIN, 0) != 0)
        return -1;
    if (emit(e, e->len, 1) != 0)
        return -1;
    e->finished = 1;
    return 0;
}

void cipher_enc_free(cipher_enc *e)
{
    if (!e)
        return;
    if (e->buf)
        OPENSSL_cleanse(e->buf, CIPHER_FRAME + CIPHER_TAIL_PLAIN);
    free(e->buf);
    free(e->scratch);
    free(e->name);
    free(e);
}

/* ---- decrypting -------------------------------------------------------------------- */

struct cipher_dec {
    const cipher_key *k;
    char *name;
    cipher_sink_fn sink;
    void *arg;
    uint8_t *frame;        /* the frame being assembled */
    size_t have;
    uint8_t *plain;
    uint64_t index, offset;
    int final_seen, failed;
};

cipher_dec *cipher_dec_new(const cipher_key *k, const char *name, cipher_sink_fn sink, void *arg)
{
    cipher_dec *d = calloc(1, sizeof(*d));

    if (!d || !(d->name = strdup(name)) ||
        !(d->frame = malloc(CIPHER_FRAME + CIPHER_OVERHEAD)) ||
        !(d->plain = malloc(CIPHER_FRAME))) {
        log_error("out of memory");
        cipher_dec_free(d);
        return NULL;
    }
    d->k = k;
    d->sink = sink;
    d->arg = arg;
    return d;
}

/* frame_len -- the whole length of the frame whose header is h, or 0 if malformed. */
static size_t frame_len(const uint8_t *h, int *final)
{
    uint32_t plen = le32_load(h + 8);
    if (memcmp(h, "RGSE", 4) != 0 || h[4] != 1 || h[5] > 1 || h[6] || h[7])
        return 0;
    *final = h[5];
    if (*final) {
        if (plen > CIPHER_TAIL_PLAIN)
            return 0;
        return CIPHER_TAIL_SIZE;
    }
    if (plen == 0 || plen > CIPHER_FRAME)
        return 0;
    return CIPHER_OVERHEAD + plen;
}

int cipher_dec_write(cipher_dec *d, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (d->failed)
        return -1;
    while (len > 0) {
        size_t want = CIPHER_HEADER, n;
        int final = 0, r;
        if (d->final_seen) {
            d->failed = 1;
            return mismatch(d->name, "data after the final frame");
        }
        if (d->have >= CIPHER_HEADER) {
            want = frame_len(d->frame, &final);
            if (!want) {
                d->failed = 1;
                return mismatch(d->name, "not an encrypted ragsafe object, or a damaged frame header");
            }
        }
        n = want - d->have < len ? want - d->have : len;
        memcpy(d->frame + d->have, p, n);
        d->have += n;
        p += n;
        len -= n;
        if (d->have < want || want == CIPHER_HEADER)
            continue;
        /* a whole frame: in place, in order, authentic? */
        if (le64_load(d->frame + 12) != d->index || le64_load(d->frame + 20) != d->offset) {
            d->failed = 1;
            return mismatch(d->name, "a frame is missing, repeated or out of place");
        }
        r = open_frame(d->k, d->name, d->frame, d->have, d->plain);
        if (r != 0) {
            d->failed = 1;
            return r == RS_MISMATCH ? mismatch(d->name, "a frame does not authenticate") : -1;
        }
        {
            uint32_t plen = le32_load(d->frame + 8);
            if (plen && d->sink && d->sink(d->arg, d->plain, plen) != 0) {
                d->failed = 1;
                return -1;
            }
            d->index++;
            d->offset += plen;
        }
        d->final_seen = final;
        d->have = 0;
    }
    return 0;
}

int cipher_dec_finish(cipher_dec *d)
{
    if (d->failed)
        return -1;
    if (!d->final_seen || d->have) {
        d->failed = 1;
        return mismatch(d->name, "truncated: the final frame is missing");
    }
    return 0;
}

uint64_t cipher_dec_size(const cipher_dec *d) { return d->offset; }

void cipher_dec_free(cipher_dec *d)
{
    if (!d)
        return;
    if (d->plain)
        OPENSSL_cleanse(d->plain, CIPHER_FRAME);
    free(d->plain);
    free(d->frame);
    free(d->name);
    free(d);
}

int cipher_tail_open(const cipher_key *k, const char *name, const uint8_t tail[CIPHER_TAIL_SIZE],
                     uint8_t plain[CIPHER_TAIL_PLAIN], size_t *plain_len, uint64_t *total)
{
    int final = 0, r;
    uint32_t plen;

    if (frame_len(tail, &final) != CIPHER_TAIL_SIZE || !final)
        return mismatch(name, "the object does not end with a final frame");
    r = open_frame(k, name, tail, CIPHER_TAIL_SIZE, plain);
    if (r != 0)
        return r == RS_MISMATCH ? mismatch(name, "the final frame does not authenticate") : -1;
    plen = le32_load(tail + 8);
    *plain_len = plen;
    *total = le64_load(tail + 20) + plen;
    return 0;
}

int cipher_tail_fits(const cipher_key *k, const char *name, const uint8_t tail[CIPHER_TAIL_SIZE])
{
    uint8_t plain[CIPHER_TAIL_PLAIN];
    int final = 0, r;

    if (frame_len(tail, &final) != CIPHER_TAIL_SIZE || !final)
        return 0;
    r = open_frame(k, name, tail, CIPHER_TAIL_SIZE, plain);
    OPENSSL_cleanse(plain, sizeof(plain));
    return r == 0 ? 1 : r == RS_MISMATCH ? 0 : -1;
}

/* ---- wrapping a key under another ------------------------------------------------- */

#define WRAP_NAME "ragsafe key wrap"
#define WRAP_MAX 512

struct wrap_buf {
    uint8_t b[WRAP_MAX];
    size_t len;
};

static int wrap_sink(void *arg, const void *buf, size_t len)
{
    struct wrap_buf *w = arg;
    if (w->len + len > sizeof(w->b))
        return log_error("internal error: a wrapped key is too large");
    memcpy(w->b + w->len, buf, len);
    w->len += len;
    return 0;
}

int cipher_key_wrap(const cipher_key *wrapping, const cipher_key *k, char **hex)
{
    struct wrap_buf w = {.len = 0};
    cipher_enc *e = cipher_enc_new(wrapping, WRAP_NAME, wrap_sink, &w);
    int ret = -1;

    *hex = NULL;
    if (!e)
        return -1;
    if (cipher_enc_write(e, k, sizeof(*k)) != 0 || cipher_enc_finish(e) != 0)
        goto out;
    if (!(*hex = malloc(2 * w.len + 1))) {
        log_error("out of memory");
        goto out;
    }
    hex_encode(w.b, w.len, *hex);
    ret = 0;
out:
    cipher_enc_free(e);
    return ret;
}

int cipher_key_unwrap(const cipher_key *wrapping, const char *hex, cipher_key **out)
{
    struct wrap_buf raw = {.len = 0}, plain = {.len = 0};
    size_t n = strlen(hex);
    cipher_dec *d = NULL;
    int ret = -1;

    *out = NULL;
    if (n % 2 || n / 2 > sizeof(raw.b))
        return log_error("a wrapped key is malformed");
    if (hex_decode(hex, n, raw.b) != 0)
        return log_error("a wrapped key is malformed");
    raw.len = n / 2;
    if (!(d = cipher_dec_new(wrapping, WRAP_NAME, wrap_sink, &plain)))
        return -1;
    ret = cipher_dec_write(d, raw.b, raw.len);
    if (ret == 0)
        ret = cipher_dec_finish(d);
    if (ret == 0 && plain.len != sizeof(cipher_key))
        ret = log_error("a wrapped key is malformed");
    if (ret == 0) {
        if (!(*out = calloc(1, sizeof(cipher_key))))
            ret = log_error("out of memory");
        else
            memcpy(*out, plain.b, sizeof(cipher_key));
    }
    OPENSSL_cleanse(plain.b, sizeof(plain.b));
    cipher_dec_free(d);
    return ret;
}

int cipher_key_equal(const cipher_key *a, const cipher_key *b)
{
    return CRYPTO_memcmp(a, b, sizeof(*a)) == 0;
}
