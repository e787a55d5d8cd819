/*
 * check_walname.c -- unit tests for lib/walname: segment names for every segment
 * size, LSN text and segment arithmetic, classification, the long page header and
 * timeline history files.
 */
#include "testutil.h"
#include "walname.h"

static const uint32_t seg_sizes[] = {1u << 20, 16u << 20, 64u << 20, 1u << 30};

/* ---- segment names ------------------------------------------------------------- */

START_TEST(test_format_known)
{
    char name[WAL_NAME_LEN + 1];

    walname_format(name, 1, 1, WAL_DEFAULT_SEG_SIZE);
    ck_assert_str_eq(name, "000000010000000000000001");
    /* 16 MiB: 256 segments per xlogid */
    walname_format(name, 0xA, 0x1234, 16u << 20);
    ck_assert_str_eq(name, "0000000A0000001200000034");
    walname_format(name, 0xA, 0x1234, 1u << 20); /* 4096 per xlogid */
    ck_assert_str_eq(name, "0000000A0000000100000234");
    walname_format(name, 1, 7, 1u << 30); /* 4 per xlogid */
    ck_assert_str_eq(name, "000000010000000100000003");
    walname_format(name, 0xFFFFFFFF, 0xFF, 16u << 20);
    ck_assert_str_eq(name, "FFFFFFFF00000000000000FF");
    walname_format(name, 2, 0x100, 16u << 20);
    ck_assert_str_eq(name, "000000020000000100000000");
}
END_TEST

START_TEST(test_parse_known)
{
    uint32_t tli = 0;
    uint64_t segno = 0;

    ck_assert_int_eq(walname_parse("000000010000000000000001", 16u << 20, &tli, &segno), 0);
    ck_assert_uint_eq(tli, 1);
    ck_assert_uint_eq(segno, 1);
    ck_assert_int_eq(walname_parse("0000000200000003000000FF", 16u << 20, &tli, &segno), 0);
    ck_assert_uint_eq(tli, 2);
    ck_assert_uint_eq(segno, 3 * 256 + 255);
    ck_assert_int_eq(walname_parse("000000010000000100000003", 1u << 30, &tli, &segno), 0);
    ck_assert_uint_eq(segno, 7);
    ck_assert_int_eq(walname_parse("0000000A0000000100000234", 1u << 20, &tli, &segno), 0);
    ck_assert_uint_eq(tli, 10);
    ck_assert_uint_eq(segno, 0x1234);
    /* the prefix of .partial and .backup names */
    ck_assert_int_eq(walname_parse("000000010000000000000003.partial", 16u << 20, &tli, &segno),
                     0);
    ck_assert_uint_eq(segno, 3);
    ck_assert_int_eq(
        walname_parse("000000010000000000000002.00000028.backup", 16u << 20, &tli, &segno), 0);
    ck_assert_uint_eq(segno, 2);
}
END_TEST

START_TEST(test_parse_low_part_range)
{
    uint32_t tli;
    uint64_t segno;

    /* 0x100 is out of range with 256 segments per xlogid, fine with 4096 */
    ck_assert_int_eq(walname_parse("000000010000000000000100", 16u << 20, &tli, &segno), -1);
    ck_assert_int_eq(walname_parse("000000010000000000000100", 1u << 20, &tli, &segno), 0);
    ck_assert_uint_eq(segno, 0x100);
    ck_assert_int_eq(walname_parse("0000000100000000000000FF", 16u << 20, &tli, &segno), 0);
    ck_assert_int_eq(walname_parse("000000010000000000000004", 1u << 30, &tli, &segno), -1);
    ck_assert_int_eq(walname_parse("000000010000000000000003", 1u << 30, &tli, &segno), 0);
    ck_assert_int_eq(walname_parse("0000000100000000FFFFFFFF", 1u << 20, &tli, &segno), -1);
}
END_TEST

START_TEST(test_parse_malformed)
{
    static const char *bad[] = {
        "",
        "00000001000000000000001",   /* 23 digits */
        "0000000100000000000000G1",  /* not hex */
        "0000000100000000 0000001",
        "RECOVERYXLOG",
        "00000002.history",
    };
    uint32_t tli;
    uint64_t segno;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(walname_parse(bad[i], 16u << 20, &tli, &segno) == -1, "accepted \"%s\"",
                      bad[i]);
}
END_TEST

/* Both directions for every segment size, across xlogid boundaries. */
START_TEST(test_roundtrip_seg_sizes)
{
    uint32_t seg_size = seg_sizes[_i];
    uint64_t per = 0x100000000ull / seg_size;
    uint64_t samples[] = {0, 1, per - 1, per, per + 1, 5 * per + 3, 0xFFFF * per + per - 1};

    for (size_t k = 0; k < ARRAY_LEN(samples); k++) {
        for (uint32_t tli = 1; tli <= 0x100; tli *= 0x10) {
            char name[WAL_NAME_LEN + 1];
            uint32_t t2 = 0;
            uint64_t s2 = 0;
            char expect[WAL_NAME_LEN + 1];

            walname_format(name, tli, samples[k], seg_size);
            snprintf(expect, sizeof(expect), "%08X%08X%08X", tli, (uint32_t)(samples[k] / per),
                     (uint32_t)(samples[k] % per));
            ck_assert_str_eq(name, expect);
            ck_assert_int_eq(walname_classify(name), WALFILE_SEGMENT);
            ck_assert_int_eq(walname_parse(name, seg_size, &t2, &s2), 0);
            ck_assert_uint_eq(t2, tli);
            ck_assert_uint_eq(s2, samples[k]);
        }
    }
}
END_TEST

START_TEST(test_seg_size_valid)
{
    ck_assert(walname_seg_size_valid(1u << 20));
    ck_assert(walname_seg_size_valid(16u << 20));
    ck_assert(walname_seg_size_valid(1u << 30));
    ck_assert(!walname_seg_size_valid(0));
    ck_assert(!walname_seg_size_valid(1u << 19));
    ck_assert(!walname_seg_size_valid(2ull << 30));
    ck_assert(!walname_seg_size_valid(3u << 20));
    ck_assert(!walname_seg_size_valid((1u << 20) + 1));
    ck_assert(!walname_seg_size_valid(1ull << 40));
    ck_assert(!walname_seg_size_valid((1ull << 32) + (16u << 20)));
}
END_TEST

/* ---- history names ----------------------------------------------------------- */

START_TEST(test_history_names)
{
    char name[17];
    uint32_t tli = 0;

    walname_history(name, 2);
    ck_assert_str_eq(name, "00000002.history");
    walname_history(name, 0x1A);
    ck_assert_str_eq(name, "0000001A.history");
    ck_assert_int_eq(walname_parse_history("0000001A.history", &tli), 0);
    ck_assert_uint_eq(tli, 0x1A);
    ck_assert_int_eq(walname_parse_history("00000002.history", &tli), 0);
    ck_assert_uint_eq(tli, 2);
    ck_assert_int_eq(walname_parse_history("00000002.histor", &tli), -1);
    ck_assert_int_eq(walname_parse_history("0000002.history", &tli), -1);
    ck_assert_int_eq(walname_parse_history("0000000X.history", &tli), -1);
    ck_assert_int_eq(walname_parse_history("00000002.history.zst", &tli), -1);
    ck_assert_int_eq(walname_parse_history("000000010000000000000001", &tli), -1);
    ck_assert_int_eq(walname_parse_history("", &tli), -1);
}
END_TEST

/* ---- classify ---------------------------------------------------------------- */

START_TEST(test_classify_valid)
{
    ck_assert_int_eq(walname_classify("000000010000000000000001"), WALFILE_SEGMENT);
    ck_assert_int_eq(walname_classify("FFFFFFFFFFFFFFFFFFFFFFFF"), WALFILE_SEGMENT);
    ck_assert_int_eq(walname_classify("00000002.history"), WALFILE_HISTORY);
    ck_assert_int_eq(walname_classify("0000001A.history"), WALFILE_HISTORY);
    ck_assert_int_eq(walname_classify("000000010000000000000002.00000028.backup"),
                     WALFILE_BACKUP);
    ck_assert_int_eq(walname_classify("000000010000000000000003.partial"), WALFILE_PARTIAL);
}
END_TEST

START_TEST(test_classify_invalid)
{
    static const char *bad[] = {
        "",
        "00000001000000000000001",                  /* 23 */
        "0000000100000000000000010",                /* 25 */
        "00000001000000000000000a",                 /* lowercase */
        "0000000100000000000000G1",
        "000000010000000000000001.zst",
        "000000010000000000000001.partial.tmp",
        "00000001000000000000001.partial",
        "0000000100000000000000010.partial",
        "00000002.historyx",
        "0000002.history",
        "00000002.HISTORY",
        "0000000g.history",
        "00000002history",
        "000000010000000000000002.0000028.backup",  /* 7-digit offset */
        "000000010000000000000002.00000028.backu",
        "000000010000000000000002.00000028backup",
        "000000010000000000000002.0000002Z.backup",
        "RECOVERYXLOG",
        "RECOVERYHISTORY",
        "archive_status",
        "wal/000000010000000000000001",
        "../000000010000000000000001",
        ".000000010000000000000001.tmp",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(walname_classify(bad[i]) == WALFILE_INVALID, "\"%s\" classified as %d",
                      bad[i], (int)walname_classify(bad[i]));
}
END_TEST

START_TEST(test_kind_names)
{
    walfile_kind kinds[] = {WALFILE_INVALID, WALFILE_SEGMENT, WALFILE_HISTORY, WALFILE_BACKUP,
                            WALFILE_PARTIAL};

    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        ck_assert_ptr_nonnull(walname_kind_name(kinds[i]));
        ck_assert(walname_kind_name(kinds[i])[0] != '\0');
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(walname_kind_name(kinds[i]), walname_kind_name(kinds[j]));
    }
}
END_TEST

/* ---- LSN --------------------------------------------------------------------- */

START_TEST(test_lsn_parse)
{
    uint64_t lsn = 1;

    ck_assert_int_eq(lsn_parse("0/0", &lsn), 0);
    ck_assert_uint_eq(lsn, 0);
    ck_assert_int_eq(lsn_parse("16/B374D848", &lsn), 0);
    ck_assert_uint_eq(lsn, 0x16B374D848ull);
    ck_assert_int_eq(lsn_parse("1/2", &lsn), 0);
    ck_assert_uint_eq(lsn, 0x100000002ull);
    ck_assert_int_eq(lsn_parse("0/3000028", &lsn), 0);
    ck_assert_uint_eq(lsn, 0x3000028);
    ck_assert_int_eq(lsn_parse("FFFFFFFF/FFFFFFFF", &lsn), 0);
    ck_assert_uint_eq(lsn, UINT64_MAX);
    ck_assert_int_eq(lsn_parse("ab/cdef", &lsn), 0); /* pg_lsn takes either case */
    ck_assert_uint_eq(lsn, 0xAB0000CDEFull);
}
END_TEST

START_TEST(test_lsn_parse_malformed)
{
    static const char *bad[] = {
        "", "1", "/1", "1/", "1/2/3", "G/1", "1/2x", "1 /2", "x1/2", "1//2",
        "123456789/0", /* a half wider than 32 bits */
        "0/123456789",
    };
    uint64_t lsn;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(lsn_parse(bad[i], &lsn) == -1, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_lsn_format)
{
    char s[LSN_STR_LEN + 1];
    uint64_t samples[] = {0, 1, 0x3000028, 0x16B374D848ull, 0xFFFFFFFFull, 0x100000000ull,
                          UINT64_MAX};

    lsn_format(s, 0x16B374D848ull);
    ck_assert_str_eq(s, "16/B374D848");
    lsn_format(s, 0);
    ck_assert_str_eq(s, "0/0");
    lsn_format(s, UINT64_MAX);
    ck_assert_str_eq(s, "FFFFFFFF/FFFFFFFF");
    for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
        uint64_t back = 0;

        lsn_format(s, samples[i]);
        ck_assert_int_eq(lsn_parse(s, &back), 0);
        ck_assert_uint_eq(back, samples[i]);
    }
}
END_TEST

START_TEST(test_lsn_segno)
{
    uint64_t lsn;
    char name[WAL_NAME_LEN + 1];

    ck_assert_int_eq(lsn_parse("0/3000028", &lsn), 0);
    ck_assert_uint_eq(lsn_segno(lsn, 16u << 20), 3);
    walname_format(name, 1, lsn_segno(lsn, 16u << 20), 16u << 20);
    ck_assert_str_eq(name, "000000010000000000000003");
    ck_assert_int_eq(lsn_parse("16/B374D848", &lsn), 0);
    ck_assert_uint_eq(lsn_segno(lsn, 16u << 20), 0x16B3);
    walname_format(name, 1, lsn_segno(lsn, 16u << 20), 16u << 20);
    ck_assert_str_eq(name, "0000000100000016000000B3");
    ck_assert_uint_eq(lsn_segno(lsn, 1u << 30), 0x5A);
    walname_format(name, 1, lsn_segno(lsn, 1u << 30), 1u << 30);
    ck_assert_str_eq(name, "000000010000001600000002");
    /* the last byte of a segment and the first of the next */
    ck_assert_uint_eq(lsn_segno((16u << 20) - 1, 16u << 20), 0);
    ck_assert_uint_eq(lsn_segno(16u << 20, 16u << 20), 1);
}
END_TEST

/* ---- page header --------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A PostgreSQL 15 long page header as found at the start of a segment. */
static void make_header(uint8_t *buf, uint16_t magic, uint16_t info, uint32_t seg_size,
                        uint32_t blcksz)
{
    memset(buf, 0, WAL_PAGE_SIZE);
    put16(buf + 0, magic);
    put16(buf + 2, info);
    put32(buf + 4, 3);                       /* xlp_tli */
    put64(buf + 8, 0x16B3000000ull);         /* xlp_pageaddr */
    put32(buf + 16, 0x1234);                 /* xlp_rem_len */
    put64(buf + 24, 7312345678901234567ull); /* xlp_sysid */
    put32(buf + 32, seg_size);
    put32(buf + 36, blcksz);
    memset(buf + 40, 0xAB, 64); /* record data follows */
}

START_TEST(test_page_good)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_info info;

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    memset(&info, 0xEE, sizeof(info));
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_OK);
    ck_assert_uint_eq(info.magic, 0xD110);
    ck_assert_uint_eq(info.info & 0x0002, 0x0002);
    ck_assert_uint_eq(info.tli, 3);
    ck_assert_uint_eq(info.pageaddr, 0x16B3000000ull);
    ck_assert_uint_eq(info.sysid, 7312345678901234567ull);
    ck_assert_uint_eq(info.seg_size, 16u << 20);
    ck_assert_uint_eq(info.blcksz, 8192);

    /* exactly the long header is enough; other info bits are allowed */
    make_header(buf, WAL_MAGIC_PG15, 0x0003, 1u << 30, 8192);
    ck_assert_int_eq(walpage_parse(buf, WAL_LONG_HEADER_SIZE, &info), WALPAGE_OK);
    ck_assert_uint_eq(info.seg_size, 1u << 30);
    make_header(buf, WAL_MAGIC_PG15, 0x0002, 1u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_OK);
    ck_assert_uint_eq(info.seg_size, 1u << 20);
}
END_TEST

START_TEST(test_page_truncated)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_info info;

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, WAL_LONG_HEADER_SIZE - 1, &info), WALPAGE_TRUNCATED);
    ck_assert_int_eq(walpage_parse(buf, 24, &info), WALPAGE_TRUNCATED);
    ck_assert_int_eq(walpage_parse(buf, 0, &info), WALPAGE_TRUNCATED);
}
END_TEST

START_TEST(test_page_bad_magic)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_info info;

    make_header(buf, 0xD10D, 0x0002, 16u << 20, 8192); /* PostgreSQL 14 */
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_BAD_MAGIC);
    make_header(buf, 0xD116, 0x0002, 16u << 20, 8192); /* PostgreSQL 17 */
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_BAD_MAGIC);
    memset(buf, 0, sizeof(buf));
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_BAD_MAGIC);
    /* big-endian magic is not ours either */
    make_header(buf, 0x10D1, 0x0002, 16u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_BAD_MAGIC);
}
END_TEST

START_TEST(test_page_not_long)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_info info;

    make_header(buf, WAL_MAGIC_PG15, 0x0000, 16u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_NOT_LONG);
    make_header(buf, WAL_MAGIC_PG15, 0x0001, 16u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_NOT_LONG);
    make_header(buf, WAL_MAGIC_PG15, 0x0004, 16u << 20, 8192);
    ck_assert_int_eq(walpage_parse(buf, sizeof(buf), &info), WALPAGE_NOT_LONG);
}
END_TEST

START_TEST(test_page_bad_sizes)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_info info;
    uint32_t bad_seg[] = {0, 3u << 20, 1u << 19, 2147483648u, (16u << 20) + 8192};
    uint32_t bad_blck[] = {0, 4096, 16384, 8193};

    for (size_t i = 0; i < ARRAY_LEN(bad_seg); i++) {
        make_header(buf, WAL_MAGIC_PG15, 0x0002, bad_seg[i], 8192);
        ck_assert_msg(walpage_parse(buf, sizeof(buf), &info) == WALPAGE_BAD_SIZES,
                      "seg size %u accepted", bad_seg[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad_blck); i++) {
        make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, bad_blck[i]);
        ck_assert_msg(walpage_parse(buf, sizeof(buf), &info) == WALPAGE_BAD_SIZES,
                      "block size %u accepted", bad_blck[i]);
    }
}
END_TEST

START_TEST(test_page_result_text)
{
    int results[] = {WALPAGE_OK, WALPAGE_TRUNCATED, WALPAGE_BAD_MAGIC, WALPAGE_NOT_LONG,
                     WALPAGE_BAD_SIZES, WALPAGE_BAD_NAME, WALPAGE_WRONG_SEG_SIZE,
                     WALPAGE_WRONG_SYSID, WALPAGE_WRONG_SEGMENT, WALPAGE_WRONG_TIMELINE,
                     WALPAGE_WRONG_FILE_SIZE};

    for (size_t i = 0; i < ARRAY_LEN(results); i++) {
        ck_assert_ptr_nonnull(walpage_result_text(results[i]));
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(walpage_result_text(results[i]), walpage_result_text(results[j]));
    }
}
END_TEST

/* ---- walpage_check: the header against the name and the repository ------------- */

/* make_header's page: timeline 3, page address 0x16B3000000 = segment 0x16B3 of 16 MiB
 * segments, named 00000003 00000016 000000B3. */
#define CK_NAME "00000003000000160000" "00B3"
#define CK_SYSID 7312345678901234567ull

START_TEST(test_check_good)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_expect ex = {.sysid = CK_SYSID, .seg_size = 16u << 20, .file_size = 16u << 20,
                         .check_tli = 1};
    walpage_info h;
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME, &ex, &h, why, sizeof(why)),
                     WALPAGE_OK);
    ck_assert_uint_eq(h.tli, 3);
    /* .partial of the same segment; zero fields are not checked */
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME ".partial", &ex, NULL, NULL, 0),
                     WALPAGE_OK);
    walpage_expect none = {0};
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME, &none, NULL, NULL, 0), WALPAGE_OK);
    /* a parse failure is passed through */
    ck_assert_int_eq(walpage_check(buf, 10, CK_NAME, &ex, NULL, why, sizeof(why)),
                     WALPAGE_TRUNCATED);
}
END_TEST

START_TEST(test_check_wrong_pageaddr)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_expect ex = {.sysid = CK_SYSID, .seg_size = 16u << 20, .check_tli = 1};
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    /* the next segment's name: a copy of B3 stored as B4 */
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000003000000160000" "00B4", &ex, NULL,
                                   why, sizeof(why)),
                     WALPAGE_WRONG_SEGMENT);
    ck_assert_ptr_nonnull(strstr(why, "16/B3000000"));
    ck_assert_ptr_nonnull(strstr(why, "16/B4000000"));
    /* the previous one, and a name that is no segment name */
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000003000000160000" "00B2", &ex, NULL,
                                   NULL, 0),
                     WALPAGE_WRONG_SEGMENT);
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "junk", &ex, NULL, why, sizeof(why)),
                     WALPAGE_BAD_NAME);
}
END_TEST

START_TEST(test_check_wrong_sysid)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_expect ex = {.sysid = CK_SYSID + 1, .seg_size = 16u << 20, .check_tli = 1};
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME, &ex, NULL, why, sizeof(why)),
                     WALPAGE_WRONG_SYSID);
    ck_assert_ptr_nonnull(strstr(why, "7312345678901234567"));
    ck_assert_ptr_nonnull(strstr(why, "7312345678901234568"));
}
END_TEST

START_TEST(test_check_wrong_seg_size)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walpage_expect ex = {.sysid = CK_SYSID, .seg_size = 64u << 20, .check_tli = 1};
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192);
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME, &ex, NULL, why, sizeof(why)),
                     WALPAGE_WRONG_SEG_SIZE);
    ck_assert_ptr_nonnull(strstr(why, "16777216"));
    /* the repository's size, but the file is not one segment long */
    ex.seg_size = 16u << 20;
    ex.file_size = 8192;
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), CK_NAME, &ex, NULL, why, sizeof(why)),
                     WALPAGE_WRONG_FILE_SIZE);
}
END_TEST

START_TEST(test_check_tli_ancestor)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walhistory h5;
    const char *text = "1\t0/3000000\tno recovery target\n3\t16/B3800000\tbefore 2000-01-01\n";
    walpage_expect ex = {.sysid = CK_SYSID, .seg_size = 16u << 20, .check_tli = 1};
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192); /* page timeline 3 */
    ck_assert_int_eq(walhistory_parse(text, strlen(text), 5, &h5), 0);
    ex.history = &h5;
    /* timeline 5's first segment begins with its ancestor 3's pages */
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000005000000160000" "00B3", &ex, NULL,
                                   why, sizeof(why)),
                     WALPAGE_OK);
    /* without the history no ancestor is accepted */
    ex.history = NULL;
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000005000000160000" "00B3", &ex, NULL,
                                   why, sizeof(why)),
                     WALPAGE_WRONG_TIMELINE);
    /* nor with another timeline's history */
    h5.tli = 6;
    ex.history = &h5;
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000005000000160000" "00B3", &ex, NULL,
                                   NULL, 0),
                     WALPAGE_WRONG_TIMELINE);
    /* check_tli 0 (ragsafe-archive) takes any */
    ex.check_tli = 0;
    ex.history = NULL;
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000005000000160000" "00B3", &ex, NULL,
                                   NULL, 0),
                     WALPAGE_OK);
    walhistory_release(&h5);
}
END_TEST

START_TEST(test_check_tli_unrelated)
{
    uint8_t buf[WAL_PAGE_SIZE];
    walhistory h4;
    const char *text = "1\t0/3000000\tx\n2\t16/B3800000\ty\n"; /* 4 <- 2 <- 1, not 3 */
    walpage_expect ex = {.sysid = CK_SYSID, .seg_size = 16u << 20, .check_tli = 1};
    char why[256];

    make_header(buf, WAL_MAGIC_PG15, 0x0002, 16u << 20, 8192); /* page timeline 3 */
    ck_assert_int_eq(walhistory_parse(text, strlen(text), 4, &h4), 0);
    ex.history = &h4;
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000004000000160000" "00B3", &ex, NULL,
                                   why, sizeof(why)),
                     WALPAGE_WRONG_TIMELINE);
    ck_assert_ptr_nonnull(strstr(why, "timeline 3"));
    /* a page of a later timeline under an older name */
    ck_assert_int_eq(walpage_check(buf, sizeof(buf), "00000002000000160000" "00B3", &ex, NULL,
                                   NULL, 0),
                     WALPAGE_WRONG_TIMELINE);
    walhistory_release(&h4);
}
END_TEST

/* ---- history files ------------------------------------------------------------- */

START_TEST(test_history_good)
{
    const char *text = "1\t0/3000060\tno recovery target specified\n"
                       "\n"
                       "# a comment line\n"
                       "2\t0/50000A0\tat restore point \"before_drop\"\n";
    walhistory h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(walhistory_parse(text, strlen(text), 3, &h), 0);
    ck_assert_uint_eq(h.tli, 3);
    ck_assert_uint_eq(h.n, 2);
    ck_assert_ptr_nonnull(h.entries);
    ck_assert_uint_eq(h.entries[0].tli, 1);
    ck_assert_uint_eq(h.entries[0].switchpoint, 0x3000060);
    ck_assert_uint_eq(h.entries[1].tli, 2);
    ck_assert_uint_eq(h.entries[1].switchpoint, 0x50000A0);
    walhistory_release(&h);
}
END_TEST

START_TEST(test_history_single_no_newline)
{
    const char *text = "1\t16/B374D848\tno recovery target specified";
    walhistory h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(walhistory_parse(text, strlen(text), 2, &h), 0);
    ck_assert_uint_eq(h.tli, 2);
    ck_assert_uint_eq(h.n, 1);
    ck_assert_uint_eq(h.entries[0].tli, 1);
    ck_assert_uint_eq(h.entries[0].switchpoint, 0x16B374D848ull);
    walhistory_release(&h);
}
END_TEST

/* text is bounded by len, not by a NUL: bytes after len must not be read. */
START_TEST(test_history_len_bounded)
{
    const char *text = "1\t0/3000060\treason\ngarbage that is not a history line";
    size_t len = strlen("1\t0/3000060\treason\n");
    walhistory h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(walhistory_parse(text, len, 2, &h), 0);
    ck_assert_uint_eq(h.n, 1);
    ck_assert_uint_eq(h.entries[0].switchpoint, 0x3000060);
    walhistory_release(&h);

    /* and the garbage line is refused when it is inside len */
    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(walhistory_parse(text, strlen(text), 2, &h), -1);
    walhistory_release(&h);
}
END_TEST

START_TEST(test_history_empty)
{
    walhistory h;

    memset(&h, 0, sizeof(h));
    ck_assert_int_eq(walhistory_parse("# nothing\n\n", 11, 1, &h), 0);
    ck_assert_uint_eq(h.n, 0);
    ck_assert_uint_eq(h.tli, 1);
    walhistory_release(&h);
}
END_TEST

START_TEST(test_history_bad)
{
    static const char *bad[] = {
        "x\t0/3000060\treason\n",                     /* tli not a number */
        "1\tnotanlsn\treason\n",                      /* bad switchpoint */
        "1\n",                                        /* no switchpoint */
        "1\t0/3000060\treason\n1\t0/4000000\tr\n",    /* parents not increasing */
        "2\t0/5000000\treason\n1\t0/6000000\tr\n",    /* decreasing */
        "1\t0/3000060\treason\nnonsense\n",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        walhistory h;

        memset(&h, 0, sizeof(h));
        ck_assert_msg(walhistory_parse(bad[i], strlen(bad[i]), 3, &h) == -1,
                      "accepted history \"%s\"", bad[i]);
        walhistory_release(&h);
    }
}
END_TEST

static Suite *walname_suite(void)
{
    Suite *s = suite_create("walname");
    TCase *tc = tcase_create("names");

    tcase_add_test(tc, test_format_known);
    tcase_add_test(tc, test_parse_known);
    tcase_add_test(tc, test_parse_low_part_range);
    tcase_add_test(tc, test_parse_malformed);
    tcase_add_loop_test(tc, test_roundtrip_seg_sizes, 0, (int)ARRAY_LEN(seg_sizes));
    tcase_add_test(tc, test_seg_size_valid);
    tcase_add_test(tc, test_history_names);
    tcase_add_test(tc, test_classify_valid);
    tcase_add_test(tc, test_classify_invalid);
    tcase_add_test(tc, test_kind_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("lsn");
    tcase_add_test(tc, test_lsn_parse);
    tcase_add_test(tc, test_lsn_parse_malformed);
    tcase_add_test(tc, test_lsn_format);
    tcase_add_test(tc, test_lsn_segno);
    suite_add_tcase(s, tc);

    tc = tcase_create("page");
    tcase_add_test(tc, test_page_good);
    tcase_add_test(tc, test_page_truncated);
    tcase_add_test(tc, test_page_bad_magic);
    tcase_add_test(tc, test_page_not_long);
    tcase_add_test(tc, test_page_bad_sizes);
    tcase_add_test(tc, test_page_result_text);
    tcase_add_test(tc, test_check_good);
    tcase_add_test(tc, test_check_wrong_pageaddr);
    tcase_add_test(tc, test_check_wrong_sysid);
    tcase_add_test(tc, test_check_wrong_seg_size);
    tcase_add_test(tc, test_check_tli_ancestor);
    tcase_add_test(tc, test_check_tli_unrelated);
    suite_add_tcase(s, tc);

    tc = tcase_create("history");
    tcase_add_test(tc, test_history_good);
    tcase_add_test(tc, test_history_single_no_newline);
    tcase_add_test(tc, test_history_len_bounded);
    tcase_add_test(tc, test_history_empty);
    tcase_add_test(tc, test_history_bad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(walname_suite());
}
