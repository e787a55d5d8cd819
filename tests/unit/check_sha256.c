/*
 * check_sha256.c -- unit tests for lib/sha256: the FIPS 180-2 test vectors one-shot
 * and incremental, and the hex encoding both ways.
 */
#include "testutil.h"
#include "sha256.h"

#define MSG448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"

static const struct {
    const char *msg;
    const char *hex;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {MSG448, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
};

#define MILLION_A_HEX "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

START_TEST(test_vectors_buffer)
{
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];

    ck_assert_int_eq(sha256_buffer(vectors[_i].msg, strlen(vectors[_i].msg), d), 0);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, vectors[_i].hex);
}
END_TEST

START_TEST(test_vectors_ctx)
{
    sha256_ctx ctx = {0};
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];

    ck_assert_int_eq(sha256_init(&ctx), 0);
    ck_assert_int_eq(sha256_update(&ctx, vectors[_i].msg, strlen(vectors[_i].msg)), 0);
    ck_assert_int_eq(sha256_final(&ctx, d), 0);
    sha256_release(&ctx);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, vectors[_i].hex);
}
END_TEST

START_TEST(test_million_a)
{
    size_t n = 1000000;
    char *buf = malloc(n);
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256_ctx ctx = {0};

    ck_assert_ptr_nonnull(buf);
    memset(buf, 'a', n);
    ck_assert_int_eq(sha256_buffer(buf, n, d), 0);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, MILLION_A_HEX);

    /* the same million fed 1000 'a' at a time */
    ck_assert_int_eq(sha256_init(&ctx), 0);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(sha256_update(&ctx, buf, 1000), 0);
    memset(d, 0, sizeof(d));
    ck_assert_int_eq(sha256_final(&ctx, d), 0);
    sha256_release(&ctx);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, MILLION_A_HEX);
    free(buf);
}
END_TEST

/* Incremental updates in uneven pieces (including empty ones) equal the one-shot
 * digest, for data crossing many 64-byte block boundaries. */
START_TEST(test_incremental_equals_oneshot)
{
    static const size_t pieces[] = {0, 1, 3, 63, 64, 65, 127, 1000, 4096, 7};
    size_t n = 300 * 1000 + 17;
    uint8_t *buf = malloc(n);
    uint8_t one[SHA256_LEN], inc[SHA256_LEN];
    sha256_ctx ctx = {0};
    size_t off = 0, k = 0;

    ck_assert_ptr_nonnull(buf);
    tu_fill_random(buf, n, 42);
    ck_assert_int_eq(sha256_buffer(buf, n, one), 0);
    ck_assert_int_eq(sha256_init(&ctx), 0);
    while (off < n) {
        size_t len = pieces[k++ % ARRAY_LEN(pieces)];

        if (len > n - off)
            len = n - off;
        ck_assert_int_eq(sha256_update(&ctx, buf + off, len), 0);
        off += len;
    }
    ck_assert_int_eq(sha256_final(&ctx, inc), 0);
    sha256_release(&ctx);
    ck_assert_mem_eq(one, inc, SHA256_LEN);

    /* a one-byte difference changes the digest */
    buf[n / 2] ^= 1;
    ck_assert_int_eq(sha256_buffer(buf, n, inc), 0);
    ck_assert_mem_ne(one, inc, SHA256_LEN);
    free(buf);
}
END_TEST

/* release is safe on a zeroed ctx and twice; a ctx can be reused after release. */
START_TEST(test_release_safe)
{
    sha256_ctx ctx;
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];

    memset(&ctx, 0, sizeof(ctx));
    sha256_release(&ctx);
    ck_assert_int_eq(sha256_init(&ctx), 0);
    ck_assert_int_eq(sha256_update(&ctx, "ab", 2), 0);
    sha256_release(&ctx);
    sha256_release(&ctx);
    ck_assert_int_eq(sha256_init(&ctx), 0);
    ck_assert_int_eq(sha256_update(&ctx, "abc", 3), 0);
    ck_assert_int_eq(sha256_final(&ctx, d), 0);
    sha256_release(&ctx);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, vectors[1].hex);
}
END_TEST

START_TEST(test_hex_roundtrip)
{
    uint8_t d[SHA256_LEN], back[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    char upper[SHA256_HEX_LEN + 1];

    for (int i = 0; i < SHA256_LEN; i++)
        d[i] = (uint8_t)(i * 37 + 5);
    d[0] = 0x00;
    d[1] = 0xFF;
    sha256_to_hex(d, hex);
    ck_assert_uint_eq(strlen(hex), SHA256_HEX_LEN);
    ck_assert_str_eq(hex, "00ff4f7499bee308"
                          "2d52779cc1e60b30"
                          "557a9fc4e90e3358"
                          "7da2c7ec11365b80");
    memset(back, 0, sizeof(back));
    ck_assert_int_eq(sha256_from_hex(hex, back), 0);
    ck_assert_mem_eq(d, back, SHA256_LEN);

    for (int i = 0; i <= SHA256_HEX_LEN; i++)
        upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 'a' + 'A' : hex[i]);
    memset(back, 0, sizeof(back));
    ck_assert_int_eq(sha256_from_hex(upper, back), 0);
    ck_assert_mem_eq(d, back, SHA256_LEN);
}
END_TEST

START_TEST(test_hex_malformed)
{
    char hex[SHA256_HEX_LEN + 2];
    uint8_t out[SHA256_LEN];

    ck_assert_int_eq(sha256_from_hex("", out), -1);
    memcpy(hex, vectors[1].hex, SHA256_HEX_LEN + 1);
    hex[63] = '\0'; /* 63 digits */
    ck_assert_int_eq(sha256_from_hex(hex, out), -1);
    memcpy(hex, vectors[1].hex, SHA256_HEX_LEN + 1);
    hex[10] = 'g';
    ck_assert_int_eq(sha256_from_hex(hex, out), -1);
    memcpy(hex, vectors[1].hex, SHA256_HEX_LEN + 1);
    hex[0] = ' ';
    ck_assert_int_eq(sha256_from_hex(hex, out), -1);
    memcpy(hex, vectors[1].hex, SHA256_HEX_LEN + 1);
    hex[63] = 'z';
    ck_assert_int_eq(sha256_from_hex(hex, out), -1);
}
END_TEST

static Suite *sha256_suite(void)
{
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("digest");

    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_vectors_buffer, 0, (int)ARRAY_LEN(vectors));
    tcase_add_loop_test(tc, test_vectors_ctx, 0, (int)ARRAY_LEN(vectors));
    tcase_add_test(tc, test_million_a);
    tcase_add_test(tc, test_incremental_equals_oneshot);
    tcase_add_test(tc, test_release_safe);
    suite_add_tcase(s, tc);

    tc = tcase_create("hex");
    tcase_add_test(tc, test_hex_roundtrip);
    tcase_add_test(tc, test_hex_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(sha256_suite());
}
