/*
 * check_cipher.c -- AES-256-GCM frames (cipher.h): round trips at the frame
 * boundaries, a wrong key, a flipped bit anywhere, truncation, frames reordered or
 * moved to another object, the tail alone, key files.
 */
#include "cipher.h"
#include "testutil.h"

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static int sink(void *arg, const void *data, size_t len)
{
    struct buf *b = arg;
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static cipher_key *key_of(uint8_t seed)
{
    uint8_t raw[CIPHER_KEY_LEN];
    memset(raw, seed, sizeof(raw));
    return cipher_key_from_bytes(raw);
}

/* enc -- encrypt plain in chunks of step bytes. */
static struct buf enc(const cipher_key *k, const char *name, const uint8_t *plain, size_t len,
                      size_t step)
{
    struct buf out = {0};
    cipher_enc *e = cipher_enc_new(k, name, sink, &out);
    ck_assert_ptr_nonnull(e);
    for (size_t off = 0; off < len; off += step)
        ck_assert_int_eq(cipher_enc_write(e, plain + off, len - off < step ? len - off : step), 0);
    ck_assert_int_eq(cipher_enc_finish(e), 0);
    cipher_enc_free(e);
    return out;
}

/* dec -- decrypt in chunks of step; the result code of write/finish. */
static int dec(const cipher_key *k, const char *name, const struct buf *c, size_t step,
               struct buf *out)
{
    cipher_dec *d = cipher_dec_new(k, name, sink, out);
    int r = 0;
    ck_assert_ptr_nonnull(d);
    for (size_t off = 0; off < c->len && r == 0; off += step)
        r = cipher_dec_write(d, c->p + off, c->len - off < step ? c->len - off : step);
    if (r == 0)
        r = cipher_dec_finish(d);
    cipher_dec_free(d);
    return r;
}

static const size_t sizes[] = {0, 1, 55, 56, 57, 1000, CIPHER_FRAME - 1, CIPHER_FRAME,
                               CIPHER_FRAME + 56, CIPHER_FRAME + 57, 3 * CIPHER_FRAME + 12345};

START_TEST(test_round_trip)
{
    size_t len = sizes[_i];
    uint8_t *plain = malloc(len + 1);
    cipher_key *k = key_of(7);
    struct buf c, p = {0}, p2 = {0};
    uint8_t tail[CIPHER_TAIL_PLAIN];
    size_t tl;
    uint64_t total;

    tu_fill_random(plain, len, len + 1);
    c = enc(k, "wal/a.zst", plain, len, 4097);
    ck_assert_uint_ge(c.len, CIPHER_TAIL_SIZE);
    ck_assert_int_eq(dec(k, "wal/a.zst", &c, 1000, &p), 0);
    ck_assert_uint_eq(p.len, len);
    if (len)
        ck_assert_mem_eq(p.p, plain, len);
    /* byte by byte for the small ones */
    if (len < 2000) {
        ck_assert_int_eq(dec(k, "wal/a.zst", &c, 1, &p2), 0);
        ck_assert_uint_eq(p2.len, len);
    }
    /* the tail alone gives the end of the plaintext and its size */
    ck_assert_int_eq(cipher_tail_open(k, "wal/a.zst", c.p + c.len - CIPHER_TAIL_SIZE, tail, &tl,
                                      &total), 0);
    ck_assert_uint_eq(total, len);
    ck_assert_uint_eq(tl, len < CIPHER_TAIL_PLAIN ? len : CIPHER_TAIL_PLAIN);
    if (tl)
        ck_assert_mem_eq(tail, plain + len - tl, tl);
    ck_assert_uint_ge(cipher_plain_size_max(c.len), len);
    /* no plaintext in the clear: a 56-byte window of it is nowhere in the object */
    if (len >= 1000)
        ck_assert_ptr_null(memmem(c.p, c.len, plain + 500, 56));
    free(c.p);
    free(p.p);
    free(p2.p);
    free(plain);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_fresh_nonce)
{
    cipher_key *k = key_of(1);
    uint8_t plain[100] = {0};
    struct buf a = enc(k, "x", plain, sizeof(plain), 100), b = enc(k, "x", plain, sizeof(plain), 100);

    ck_assert_uint_eq(a.len, b.len);
    ck_assert(memcmp(a.p, b.p, a.len) != 0);
    free(a.p);
    free(b.p);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_wrong_key_and_name)
{
    cipher_key *k = key_of(1), *other = key_of(2);
    size_t len = CIPHER_FRAME + 5000;
    uint8_t *plain = malloc(len), tail[CIPHER_TAIL_PLAIN];
    struct buf c, p = {0};
    size_t tl;
    uint64_t total;

    tu_fill_random(plain, len, 3);
    c = enc(k, "wal/a", plain, len, 65536);
    ck_assert_int_eq(dec(other, "wal/a", &c, 65536, &p), RS_MISMATCH);
    ck_assert_uint_eq(p.len, 0); /* nothing unverified ever reaches the sink */
    ck_assert_int_eq(dec(k, "wal/b", &c, 65536, &p), RS_MISMATCH); /* moved object */
    ck_assert_int_eq(cipher_tail_open(other, "wal/a", c.p + c.len - CIPHER_TAIL_SIZE, tail, &tl,
                                      &total), RS_MISMATCH);
    free(c.p);
    free(p.p);
    free(plain);
    cipher_key_free(k);
    cipher_key_free(other);
}
END_TEST

/* test_tamper -- one flipped bit at many places, each refused. */
START_TEST(test_tamper)
{
    cipher_key *k = key_of(9);
    size_t len = 2 * CIPHER_FRAME + 777;
    uint8_t *plain = malloc(len);
    struct buf c;

    tu_fill_random(plain, len, 4);
    c = enc(k, "obj", plain, len, 300000);
    for (size_t at = 0; at < c.len; at += c.len / 37 + 1) {
        struct buf p = {0};
        c.p[at] ^= 0x10;
        ck_assert_msg(dec(k, "obj", &c, 70000, &p) == RS_MISMATCH, "flip at %zu accepted", at);
        c.p[at] ^= 0x10;
        free(p.p);
    }
    /* the last byte (final tag) too */
    {
        struct buf p = {0};
        c.p[c.len - 1] ^= 1;
        ck_assert_int_eq(dec(k, "obj", &c, 70000, &p), RS_MISMATCH);
        c.p[c.len - 1] ^= 1;
        free(p.p);
    }
    free(c.p);
    free(plain);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_truncated_and_reordered)
{
    cipher_key *k = key_of(5);
    size_t len = 3 * CIPHER_FRAME, flen = CIPHER_FRAME + CIPHER_OVERHEAD;
    uint8_t *plain = malloc(len), *tmp = malloc(flen);
    struct buf c, p = {0}, cut;

    tu_fill_random(plain, len, 5);
    c = enc(k, "obj", plain, len, 1 << 20);
    /* without the final frame, or cut anywhere */
    cut = c;
    cut.len = c.len - CIPHER_TAIL_SIZE;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = c.len - 1;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = 10;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = 0;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    /* the first two (full) frames swapped */
    memcpy(tmp, c.p, flen);
    memmove(c.p, c.p + flen, flen);
    memcpy(c.p + flen, tmp, flen);
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), RS_MISMATCH);
    /* data after the final frame */
    memcpy(tmp, c.p + flen, flen);
    memcpy(c.p + flen, c.p, flen);
    memcpy(c.p, tmp, flen);
    c.p = realloc(c.p, c.len + 10);
    memset(c.p + c.len, 0, 10);
    c.len += 10;
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), RS_MISMATCH);
    c.len -= 10;
    free(p.p);
    p = (struct buf){0};
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), 0);
    ck_assert_uint_eq(p.len, len);
    free(p.p);
    free(c.p);
    free(tmp);
    free(plain);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_key_file)
{
    cipher_key *k = NULL, *k2 = NULL;
    uint8_t raw[32], dg1[32], dg2[32];
    char hex[70];

    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", raw[i]);
    strcat(hex, "\n");
    tu_write_str(tu_path("hex.key"), hex);
    chmod(tu_path("hex.key"), 0600);
    tu_write_file(tu_path("raw.key"), raw, 32);
    chmod(tu_path("raw.key"), 0600);
    ck_assert_int_eq(cipher_key_load(tu_path("hex.key"), &k), 0);
    ck_assert_int_eq(cipher_key_load(tu_path("raw.key"), &k2), 0);
    /* the same key either way: equal keyed digests */
    ck_assert_int_eq(cipher_keyed_digest(k, "abc", 3, dg1), 0);
    ck_assert_int_eq(cipher_keyed_digest(k2, "abc", 3, dg2), 0);
    ck_assert_mem_eq(dg1, dg2, 32);
    cipher_key_free(k2);
    k2 = key_of(1);
    ck_assert_int_eq(cipher_keyed_digest(k2, "abc", 3, dg2), 0);
    ck_assert(memcmp(dg1, dg2, 32) != 0);
    cipher_key_free(k2);
    k2 = NULL;
    tu_write_str(tu_path("short.key"), "abcd\n");
    ck_assert_int_eq(cipher_key_load(tu_path("short.key"), &k2), -1);
    ck_assert_ptr_null(k2);
    hex[5] = 'x';
    tu_write_str(tu_path("bad.key"), hex);
    ck_assert_int_eq(cipher_key_load(tu_path("bad.key"), &k2), -1);
    ck_assert_int_eq(cipher_key_load(tu_path("none.key"), &k2), -1);
    cipher_key_free(k);
}
END_TEST

static Suite *cipher_suite(void)
{
    Suite *s = suite_create("cipher");
    TCase *tc = tcase_create("frames");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_loop_test(tc, test_round_trip, 0, (int)ARRAY_LEN(sizes));
    tcase_add_test(tc, test_fresh_nonce);
    tcase_add_test(tc, test_wrong_key_and_name);
    tcase_add_test(tc, test_tamper);
    tcase_add_test(tc, test_truncated_and_reordered);
    tcase_add_test(tc, test_key_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("check_cipher");
    return tu_main(cipher_suite());
}
