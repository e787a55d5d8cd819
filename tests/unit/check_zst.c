/*
 * check_zst.c -- unit tests for lib/zst: the stored-object format round trip with and
 * without worker threads, the trailer, corruption and truncation, odd-sized feeding
 * of the reader, and that stock libzstd alone decodes what we write.
 */
#include <zstd.h>

#include "testutil.h"
#include "zst.h"

typedef struct buf {
    uint8_t *p;
    size_t len;
    size_t cap;
    int fail_after; /* sink returns -1 on this call (1-based); 0: never */
    int calls;
} buf;

static int buf_sink(void *arg, const void *data, size_t len)
{
    buf *b = arg;

    b->calls++;
    if (b->fail_after > 0 && b->calls >= b->fail_after)
        return -1;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;

        while (cap < b->len + len)
            cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static void buf_release(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* compress -- the whole input through a writer fed in piece-sized writes. */
static void compress(const void *data, size_t len, int workers, size_t piece, buf *out,
                     zst_meta *meta)
{
    zst_writer *w = zst_writer_new(ZST_DEFAULT_LEVEL, workers, buf_sink, out);
    const uint8_t *p = data;
    size_t off = 0;

    ck_assert_ptr_nonnull(w);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;

        ck_assert_int_eq(zst_writer_write(w, p + off, n), 0);
        off += n;
    }
    ck_assert_int_eq(zst_writer_finish(w, meta), 0);
    zst_writer_free(w);
}

/* decompress -- feed the object to a reader in piece-sized writes; the first failing
 * result (write -1, or whatever finish returns). */
static int threaded; /* hash on the reader's second thread */

static int decompress(const void *obj, size_t len, size_t piece, buf *out, zst_meta *meta)
{
    zst_reader *r = zst_reader_new(out ? buf_sink : NULL, out);
    const uint8_t *p = obj;
    size_t off = 0;
    int ret = 0;

    ck_assert_ptr_nonnull(r);
    if (threaded)
        ck_assert_int_eq(zst_reader_hash_in_thread(r), 0);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;

        ret = zst_reader_write(r, p + off, n);
        if (ret != 0)
            break;
        off += n;
    }
    if (ret == 0)
        ret = zst_reader_finish(r, meta);
    zst_reader_free(r);
    return ret;
}

static uint8_t *make_data(size_t len, int compressible)
{
    uint8_t *d = malloc(len ? len : 1);

    ck_assert_ptr_nonnull(d);
    if (compressible)
        tu_fill_text(d, len);
    else
        tu_fill_random(d, len, len + 1);
    return d;
}

/* roundtrip cases: size, compressible, workers */
static const struct {
    size_t len;
    int text;
    int workers;
} cases[] = {
    {0, 0, 0},           {0, 0, 2},           {1, 0, 0},           {1000, 1, 0},
    {1000, 0, 2},        {5u << 20, 0, 0},    {5u << 20, 0, 2},    {12u << 20, 1, 0},
    {12u << 20, 1, 2},   {131072, 0, 0},      {131073, 1, 2},
    {16u << 20, 1, 0}, /* a WAL segment: raw size a multiple of any power-of-two buffer */
};

START_TEST(test_roundtrip)
{
    size_t len = cases[_i].len;
    uint8_t *data = make_data(len, cases[_i].text);
    uint8_t digest[SHA256_LEN];
    buf obj = {0}, plain = {0};
    zst_meta wmeta, rmeta, tmeta;

    memset(&wmeta, 0xEE, sizeof(wmeta));
    memset(&rmeta, 0xEE, sizeof(rmeta));
    compress(data, len, cases[_i].workers, 65536 + 3, &obj, &wmeta);
    ck_assert_int_eq(sha256_buffer(data, len, digest), 0);
    ck_assert_uint_eq(wmeta.raw_size, len);
    ck_assert_mem_eq(wmeta.sha256, digest, SHA256_LEN);
    ck_assert_uint_ge(obj.len, ZST_TRAILER_SIZE + 9);
    if (cases[_i].text && len > 100000)
        ck_assert_uint_lt(obj.len, len / 4); /* it did compress */

    /* the last ZST_TRAILER_SIZE bytes are the trailer */
    ck_assert_int_eq(zst_trailer_decode(obj.p + obj.len - ZST_TRAILER_SIZE, &tmeta), 0);
    ck_assert_uint_eq(tmeta.raw_size, len);
    ck_assert_mem_eq(tmeta.sha256, digest, SHA256_LEN);

    ck_assert_int_eq(decompress(obj.p, obj.len, 1u << 20, &plain, &rmeta), 0);
    ck_assert_uint_eq(plain.len, len);
    if (len > 0)
        ck_assert_mem_eq(plain.p, data, len);
    ck_assert_uint_eq(rmeta.raw_size, len);
    ck_assert_mem_eq(rmeta.sha256, digest, SHA256_LEN);

    /* verify-only reader (NULL sink) */
    ck_assert_int_eq(decompress(obj.p, obj.len, 1u << 20, NULL, NULL), 0);

    buf_release(&obj);
    buf_release(&plain);
    free(data);
}
END_TEST

/* Stock libzstd alone: ZSTD_decompress over the whole object (our trailer is a
 * skippable frame) gives exactly the original bytes. */
START_TEST(test_stock_zstd_decodes)
{
    size_t len = cases[_i].len;
    uint8_t *data = make_data(len, cases[_i].text);
    buf obj = {0};
    zst_meta meta;
    size_t cap = len + 1;
    uint8_t *out = malloc(cap);
    size_t got;

    ck_assert_ptr_nonnull(out);
    compress(data, len, cases[_i].workers, 100000, &obj, &meta);
    got = ZSTD_decompress(out, cap, obj.p, obj.len);
    ck_assert_msg(!ZSTD_isError(got), "ZSTD_decompress: %s", ZSTD_getErrorName(got));
    ck_assert_uint_eq(got, len);
    if (len > 0)
        ck_assert_mem_eq(out, data, len);
    /* the trailer by itself is one whole frame that decodes to nothing */
    ck_assert_uint_eq(ZSTD_findFrameCompressedSize(obj.p + obj.len - ZST_TRAILER_SIZE,
                                                   ZST_TRAILER_SIZE),
                      ZST_TRAILER_SIZE);
    ck_assert_uint_eq(ZSTD_decompress(out, cap, obj.p + obj.len - ZST_TRAILER_SIZE,
                                      ZST_TRAILER_SIZE),
                      0);
    buf_release(&obj);
    free(out);
    free(data);
}
END_TEST

START_TEST(test_trailer_layout)
{
    zst_meta meta, back;
    uint8_t t[ZST_TRAILER_SIZE];
    static const uint8_t head[16] = {0x5E, 0x2A, 0x4D, 0x18, 48, 0, 0, 0,
                                     'R',  'G',  'S',  'F',  1,  0, 0, 0};

    meta.raw_size = 0x0102030405060708ull;
    for (int i = 0; i < SHA256_LEN; i++)
        meta.sha256[i] = (uint8_t)(0xA0 + i);
    zst_trailer_encode(&meta, t);
    ck_assert_mem_eq(t, head, sizeof(head));
    ck_assert_uint_eq(t[16], 0x08);
    ck_assert_uint_eq(t[23], 0x01);
    ck_assert_mem_eq(t + 24, meta.sha256, SHA256_LEN);
    memset(&back, 0, sizeof(back));
    ck_assert_int_eq(zst_trailer_decode(t, &back), 0);
    ck_assert_uint_eq(back.raw_size, meta.raw_size);
    ck_assert_mem_eq(back.sha256, meta.sha256, SHA256_LEN);
}
END_TEST

START_TEST(test_trailer_decode_bad)
{
    zst_meta meta, back;
    uint8_t t[ZST_TRAILER_SIZE], bad[ZST_TRAILER_SIZE];
    static const int flip[] = {0, 3, 4, 8, 11, 12};

    memset(&meta, 0x11, sizeof(meta));
    zst_trailer_encode(&meta, t);
    memset(bad, 0, sizeof(bad));
    ck_assert_int_eq(zst_trailer_decode(bad, &back), -1);
    /* skippable-frame magic, frame size, "RGSF", version: each must be checked */
    for (size_t i = 0; i < ARRAY_LEN(flip); i++) {
        memcpy(bad, t, sizeof(t));
        bad[flip[i]] ^= 0x40;
        ck_assert_msg(zst_trailer_decode(bad, &back) == -1, "byte %d flipped accepted", flip[i]);
    }
    /* the tail of a real zstd frame is not a trailer */
    {
        uint8_t *data = make_data(10000, 0);
        buf obj = {0};
        zst_meta m;
        zst_writer *w = zst_writer_new(ZST_DEFAULT_LEVEL, 0, buf_sink, &obj);

        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(zst_writer_write(w, data, 10000), 0);
        ck_assert_int_eq(zst_writer_finish(w, &m), 0);
        zst_writer_free(w);
        ck_assert_int_eq(zst_trailer_decode(obj.p + obj.len - 2 * ZST_TRAILER_SIZE, &back), -1);
        ck_assert_int_eq(zst_trailer_decode(obj.p, &back), -1);
        buf_release(&obj);
        free(data);
    }
}
END_TEST

/* One flipped byte anywhere must never verify. Trailer size/digest bytes are a
 * content mismatch (RS_MISMATCH); compressed-part damage may also be -1. */
START_TEST(test_flip_compressed)
{
    size_t len = 300000;
    uint8_t *data = make_data(len, _i);
    buf obj = {0};
    zst_meta meta;
    size_t body;

    compress(data, len, 0, len, &obj, &meta);
    body = obj.len - ZST_TRAILER_SIZE;
    for (int k = 1; k <= 7; k++) {
        size_t pos = body * (size_t)k / 8;
        buf plain = {0};
        int ret;

        obj.p[pos] ^= 0xFF;
        ret = decompress(obj.p, obj.len, 8192, &plain, NULL);
        ck_assert_msg(ret == RS_MISMATCH || ret == -1, "flip at %zu of %zu: result %d", pos,
                      obj.len, ret);
        obj.p[pos] ^= 0xFF;
        buf_release(&plain);
    }
    /* and unflipped it verifies again */
    ck_assert_int_eq(decompress(obj.p, obj.len, 8192, NULL, NULL), 0);
    buf_release(&obj);
    free(data);
}
END_TEST

START_TEST(test_flip_trailer)
{
    size_t len = 50000;
    uint8_t *data = make_data(len, 1);
    buf obj = {0};
    zst_meta meta;
    size_t t0;

    compress(data, len, 0, len, &obj, &meta);
    t0 = obj.len - ZST_TRAILER_SIZE;
    /* size (offset 16..23) and digest (24..55): RS_MISMATCH */
    for (size_t off = 16; off < ZST_TRAILER_SIZE; off += 5) {
        int ret;

        obj.p[t0 + off] ^= 0x01;
        ret = decompress(obj.p, obj.len, 4096, NULL, NULL);
        ck_assert_msg(ret == RS_MISMATCH, "trailer byte %zu flipped: result %d", off, ret);
        obj.p[t0 + off] ^= 0x01;
    }
    /* framing (magic, frame size, "RGSF", version): not a trailer, -1 */
    for (size_t off = 0; off < 16; off += 3) {
        int ret;

        obj.p[t0 + off] ^= 0x01;
        ret = decompress(obj.p, obj.len, 4096, NULL, NULL);
        ck_assert_msg(ret == -1 || ret == RS_MISMATCH, "trailer byte %zu flipped: result %d",
                      off, ret);
        obj.p[t0 + off] ^= 0x01;
    }
    ck_assert_int_eq(decompress(obj.p, obj.len, 4096, NULL, NULL), 0);
    buf_release(&obj);
    free(data);
}
END_TEST

START_TEST(test_truncated)
{
    size_t len = 200000;
    uint8_t *data = make_data(len, 0);
    buf obj = {0};
    zst_meta meta;
    size_t cuts[8];
    size_t ncut = 0;

    compress(data, len, 0, len, &obj, &meta);
    cuts[ncut++] = 0;
    cuts[ncut++] = 1;
    cuts[ncut++] = ZST_TRAILER_SIZE;
    cuts[ncut++] = obj.len / 2;
    cuts[ncut++] = obj.len - ZST_TRAILER_SIZE - 1;
    cuts[ncut++] = obj.len - ZST_TRAILER_SIZE; /* the trailer dropped */
    cuts[ncut++] = obj.len - ZST_TRAILER_SIZE + 1;
    cuts[ncut++] = obj.len - 1;
    for (size_t i = 0; i < ncut; i++) {
        int ret = decompress(obj.p, cuts[i], 3000, NULL, NULL);

        ck_assert_msg(ret == -1, "cut to %zu of %zu bytes: result %d", cuts[i], obj.len, ret);
    }
    buf_release(&obj);
    free(data);
}
END_TEST

/* An empty object (no bytes at all) and a trailer alone are not valid objects;
 * trailing garbage after a good object is refused. */
START_TEST(test_not_an_object)
{
    uint8_t junk[4096];
    zst_meta meta;
    uint8_t t[ZST_TRAILER_SIZE];
    buf obj = {0};
    uint8_t *data = make_data(5000, 1);
    uint8_t *big;

    tu_fill_random(junk, sizeof(junk), 7);
    ck_assert_int_eq(decompress(junk, sizeof(junk), 1000, NULL, NULL), -1);

    /* right digest for "", but no zstd frame before it */
    meta.raw_size = 0;
    ck_assert_int_eq(sha256_buffer("", 0, meta.sha256), 0);
    zst_trailer_encode(&meta, t);
    /* a bare trailer is not an object: every object holds at least one zstd frame (even
     * for empty content), so one without is refused as truncated */
    ck_assert_int_eq(decompress(t, sizeof(t), 7, NULL, NULL), -1);

    compress(data, 5000, 0, 5000, &obj, &meta);
    big = malloc(obj.len + 100);
    ck_assert_ptr_nonnull(big);
    memcpy(big, obj.p, obj.len);
    memset(big + obj.len, 0x5A, 100);
    ck_assert_int_ne(decompress(big, obj.len + 100, 1000, NULL, NULL), 0);
    free(big);
    buf_release(&obj);
    free(data);
}
END_TEST

/* The reader fed in odd-sized pieces gives the same bytes; for small inputs one byte
 * at a time (so the held-back trailer straddles every write boundary). */
static const size_t pieces[] = {1, 2, 7, 55, 56, 57, 4093, 65537};

START_TEST(test_odd_pieces)
{
    size_t piece = pieces[_i];
    size_t len = piece < 100 ? 20000 : 3u << 20;
    uint8_t *data = make_data(len, piece % 2);
    buf obj = {0}, plain = {0};
    zst_meta wmeta, rmeta;

    compress(data, len, 0, piece < 100 ? piece : 1u << 20, &obj, &wmeta);
    ck_assert_int_eq(decompress(obj.p, obj.len, piece, &plain, &rmeta), 0);
    ck_assert_uint_eq(plain.len, len);
    ck_assert_mem_eq(plain.p, data, len);
    ck_assert_uint_eq(rmeta.raw_size, len);
    ck_assert_mem_eq(rmeta.sha256, wmeta.sha256, SHA256_LEN);
    buf_release(&obj);
    buf_release(&plain);
    free(data);
}
END_TEST

/* Objects written one byte at a time and with many tiny writes decode the same. */
START_TEST(test_writer_byte_at_a_time)
{
    size_t len = 3000;
    uint8_t *data = make_data(len, 1);
    buf a = {0}, b = {0}, plain = {0};
    zst_meta ma, mb;

    compress(data, len, 0, 1, &a, &ma);
    compress(data, len, 0, len, &b, &mb);
    ck_assert_mem_eq(ma.sha256, mb.sha256, SHA256_LEN);
    ck_assert_int_eq(decompress(a.p, a.len, 1, &plain, NULL), 0);
    ck_assert_uint_eq(plain.len, len);
    ck_assert_mem_eq(plain.p, data, len);
    buf_release(&a);
    buf_release(&b);
    buf_release(&plain);
    free(data);
}
END_TEST

/* A sink returning -1 aborts writer and reader with -1. */
START_TEST(test_sink_failure)
{
    size_t len = 4u << 20;
    uint8_t *data = make_data(len, 0);
    buf obj = {0}, failing = {0};
    zst_meta meta;
    zst_writer *w;
    int ret = 0;

    failing.fail_after = 1;
    w = zst_writer_new(ZST_DEFAULT_LEVEL, 0, buf_sink, &failing);
    ck_assert_ptr_nonnull(w);
    for (size_t off = 0; off < len && ret == 0; off += 65536)
        ret = zst_writer_write(w, data + off, 65536);
    if (ret == 0)
        ret = zst_writer_finish(w, &meta);
    zst_writer_free(w);
    ck_assert_int_eq(ret, -1);
    ck_assert_int_ge(failing.calls, 1);

    compress(data, len, 0, len, &obj, &meta);
    memset(&failing, 0, sizeof(failing));
    failing.fail_after = 2;
    ck_assert_int_eq(decompress(obj.p, obj.len, 65536, &failing, NULL), -1);
    buf_release(&obj);
    buf_release(&failing);
    free(data);
}
END_TEST

/* Two objects concatenated are not one object (the first trailer sits in the middle);
 * the digest over both can never match the second trailer. */
START_TEST(test_concatenated_objects)
{
    uint8_t *d1 = make_data(4000, 1), *d2 = make_data(5000, 0);
    buf a = {0}, b = {0};
    zst_meta m;
    uint8_t *both;
    int ret;

    compress(d1, 4000, 0, 4000, &a, &m);
    compress(d2, 5000, 0, 5000, &b, &m);
    both = malloc(a.len + b.len);
    ck_assert_ptr_nonnull(both);
    memcpy(both, a.p, a.len);
    memcpy(both + a.len, b.p, b.len);
    ret = decompress(both, a.len + b.len, 999, NULL, NULL);
    ck_assert_msg(ret != 0, "two concatenated objects verified as one");
    free(both);
    buf_release(&a);
    buf_release(&b);
    free(d1);
    free(d2);
}
END_TEST

/* The same checks with the SHA-256 computed on the reader's hashing thread: exact
 * output, the digest checked, a flipped body or digest byte caught. */
START_TEST(test_threaded_hash)
{
    static const size_t lens[] = {0, 1000, 3u << 20, 5u << 20};

    threaded = 1;
    for (size_t k = 0; k < ARRAY_LEN(lens); k++) {
        size_t len = lens[k];
        uint8_t *data = make_data(len, k % 2);
        buf obj = {0}, plain = {0};
        zst_meta meta, got;

        compress(data, len, 0, 65536, &obj, &meta);
        ck_assert_int_eq(decompress(obj.p, obj.len, 65537, &plain, &got), 0);
        ck_assert_uint_eq(plain.len, len);
        ck_assert(len == 0 || memcmp(plain.p, data, len) == 0);
        ck_assert(memcmp(got.sha256, meta.sha256, SHA256_LEN) == 0);
        buf_release(&plain);

        obj.p[obj.len - 1] ^= 0x01; /* last byte of the recorded digest */
        ck_assert_int_eq(decompress(obj.p, obj.len, 65537, NULL, NULL), RS_MISMATCH);
        obj.p[obj.len - 1] ^= 0x01;
        if (obj.len > ZST_TRAILER_SIZE + 64) {
            size_t pos = (obj.len - ZST_TRAILER_SIZE) / 2;
            obj.p[pos] ^= 0xFF;
            int ret = decompress(obj.p, obj.len, 65537, NULL, NULL);
            ck_assert_msg(ret == RS_MISMATCH || ret == -1, "flip: result %d", ret);
            obj.p[pos] ^= 0xFF;
        }
        ck_assert_int_eq(decompress(obj.p, obj.len, 1 << 20, NULL, NULL), 0);
        buf_release(&obj);
        free(data);
    }
    threaded = 0;
}
END_TEST

static Suite *zst_suite(void)
{
    Suite *s = suite_create("zst");
    TCase *tc = tcase_create("roundtrip");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_roundtrip, 0, (int)ARRAY_LEN(cases));
    tcase_add_loop_test(tc, test_stock_zstd_decodes, 0, (int)ARRAY_LEN(cases));
    tcase_add_loop_test(tc, test_odd_pieces, 0, (int)ARRAY_LEN(pieces));
    tcase_add_test(tc, test_writer_byte_at_a_time);
    suite_add_tcase(s, tc);

    tc = tcase_create("trailer");
    tcase_add_test(tc, test_trailer_layout);
    tcase_add_test(tc, test_trailer_decode_bad);
    suite_add_tcase(s, tc);

    tc = tcase_create("damage");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_flip_compressed, 0, 2);
    tcase_add_test(tc, test_flip_trailer);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_not_an_object);
    tcase_add_test(tc, test_sink_failure);
    tcase_add_test(tc, test_concatenated_objects);
    tcase_add_test(tc, test_threaded_hash);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(zst_suite());
}
