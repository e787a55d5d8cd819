/*
 * check_timefmt.c -- unit tests for lib/hex, lib/le.h and lib/timefmt: the shared
 * encoders every module uses (round trips, either case, malformed input refused,
 * RFC 3339 output with "Z", zones and fractions parsed, bad dates refused).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "le.h"
#include "testutil.h"
#include "timefmt.h"

START_TEST(test_hex_roundtrip)
{
    const uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff};
    char out[9];
    uint8_t back[4];

    hex_encode(in, 4, out);
    ck_assert_str_eq(out, "00ab7fff");
    hex_encode_upper(in, 4, out);
    ck_assert_str_eq(out, "00AB7FFF");
    ck_assert_int_eq(hex_decode("00aB7Fff", 8, back), 0);
    ck_assert(memcmp(in, back, 4) == 0);
    ck_assert_int_eq(hex_decode("00ab7ff", 7, back), -1);  /* odd */
    ck_assert_int_eq(hex_decode("00ag7fff", 8, back), -1); /* not a digit */
    ck_assert_int_eq(hex_digit('F'), 15);
    ck_assert_int_eq(hex_digit('/'), -1);
}
END_TEST

START_TEST(test_le)
{
    uint8_t b[8];
    le64_store(b, 0x0102030405060708ull);
    ck_assert_uint_eq(b[0], 0x08);
    ck_assert_uint_eq(b[7], 0x01);
    ck_assert_uint_eq(le64_load(b), 0x0102030405060708ull);
    ck_assert_uint_eq(le32_load(b), 0x05060708u);
    ck_assert_uint_eq(le16_load(b), 0x0708u);
}
END_TEST

START_TEST(test_parse)
{
    int64_t us;
    int zone = -1;

    ck_assert_int_eq(timefmt_parse("2026-12-01T21:40:05Z", &us, &zone), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000);
    ck_assert_int_eq(zone, 1);
    ck_assert_int_eq(timefmt_parse("2026-12-01T21:40:05.000Z", &us, NULL), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000);
    ck_assert_int_eq(timefmt_parse("2026-12-01 22:40:05.25+01:00", &us, NULL), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000 + 250000);
    ck_assert_int_eq(timefmt_parse("2026-12-01T19:40:05-02", &us, NULL), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000);
    setenv("TZ", "UTC", 1);
    ck_assert_int_eq(timefmt_parse("2026-12-01", &us, &zone), 0);
    ck_assert_int_eq(zone, 0);
    ck_assert_int_eq(us, 1796083200LL * 1000000);
    ck_assert_int_eq(timefmt_parse("2026-13-01T00:00:00Z", &us, NULL), -1);
    ck_assert_int_eq(timefmt_parse("2026-12-01T21:40:05Zjunk", &us, NULL), -1);
    ck_assert_int_eq(timefmt_parse("yesterday", &us, NULL), -1);
}
END_TEST

START_TEST(test_format)
{
    char out[TIMEFMT_LEN], stamp[TIMEFMT_STAMP_LEN], small[10];
    int64_t us;

    ck_assert_int_eq(timefmt_utc(out, sizeof(out), 1796161205), 0);
    ck_assert_str_eq(out, "2026-12-01T21:40:05Z");
    ck_assert_int_eq(timefmt_parse(out, &us, NULL), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000);
    ck_assert_int_eq(timefmt_stamp(stamp, sizeof(stamp), 1796161205), 0);
    ck_assert_str_eq(stamp, "20261201T214005Z");
    ck_assert_int_eq(timefmt_utc(small, sizeof(small), 0), -1);
}
END_TEST

START_TEST(test_format_us)
{
    char out[TIMEFMT_US_LEN], small[TIMEFMT_US_LEN - 1];
    int64_t us;

    ck_assert_int_eq(timefmt_utc_us(out, sizeof(out), 1796161205LL * 1000000 + 250), 0);
    ck_assert_str_eq(out, "2026-12-01T21:40:05.000250Z");
    ck_assert_int_eq(timefmt_parse(out, &us, NULL), 0);
    ck_assert_int_eq(us, 1796161205LL * 1000000 + 250);
    ck_assert_int_eq(timefmt_utc_us(out, sizeof(out), -1), 0); /* before 1970: fraction stays positive */
    ck_assert_str_eq(out, "1969-12-31T23:59:59.999999Z");
    ck_assert_int_eq(timefmt_utc_us(small, sizeof(small), 0), -1);
}
END_TEST

static Suite *timefmt_suite(void)
{
    Suite *s = suite_create("timefmt");
    TCase *tc = tcase_create("timefmt");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_hex_roundtrip);
    tcase_add_test(tc, test_le);
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_format_us);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(timefmt_suite());
}
