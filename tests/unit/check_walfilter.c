/*
 * check_walfilter.c -- unit tests for lib/walfilter (and lib/crc32c) over synthetic
 * PostgreSQL 15 WAL (walgen.c): a heap record of an excluded database becomes an
 * XLOG_NOOP of the same length with a valid CRC, one of a kept database or of the shared
 * catalogs stays byte for byte, a record with block references in both stays, a record
 * that crosses pages is rewritten across them, a long one gets the long data header,
 * page images with a compressed hole parse, commits and other resource managers stay,
 * a CRC mismatch ends the walk with nothing after it changed, a record running into the
 * next segment and the continuation of one from the previous segment are left alone,
 * and walscan still walks the result. The hardware and table CRC-32C agree.
 */
#include "testutil.h"
#include "walgen.h"

#include "crc32c.h"
#include "le.h"
#include "walfilter.h"
#include "walscan.h"

#define RM_HEAP 10
#define RM_BTREE 11
#define RM_STORAGE 2

static const uint32_t EXCL[] = {16384, 16390};

/* blk -- one block reference at r+off: (id, fork flags, data length, db, image?) */
static size_t blk(uint8_t *r, size_t off, uint8_t id, uint8_t flags, uint16_t dlen, uint32_t db,
                  int image, int compressed_hole)
{
    r[off++] = id;
    r[off++] = flags | (image ? 0x10 : 0);
    put16(r + off, dlen);
    off += 2;
    if (image) {
        put16(r + off, 100); /* image bytes */
        put16(r + off + 2, 40);
        r[off + 4] = compressed_hole ? 0x01 | 0x10 : 0x02;
        off += 5;
        if (compressed_hole) {
            put16(r + off, 1000);
            off += 2;
        }
    }
    if (!(flags & 0x80)) {
        put32(r + off, 1663);
        put32(r + off + 4, db);
        put32(r + off + 8, 24000 + id);
        off += 12;
    }
    put32(r + off, 7); /* block number */
    return off + 4;
}

/* rec_with -- a record: header, the given block headers (already at r+24..hend), a main
 * data header of mlen, then payload bytes (a pattern) to make tot */
static uint32_t finish(uint8_t *r, size_t hend, uint32_t payload, uint8_t mlen, uint8_t info,
                       uint8_t rmid)
{
    r[hend] = 0xFF;
    r[hend + 1] = mlen;
    uint32_t tot = (uint32_t)hend + 2 + payload + mlen;
    for (uint32_t i = (uint32_t)hend + 2; i < tot; i++)
        r[i] = (uint8_t)(i * 7 + 3);
    rec_header(r, tot, 900, info, rmid);
    return tot;
}

/* a heap insert into one relation of database db, with a payload of dlen bytes */
static uint64_t emit_heap(wbuf *w, uint32_t db, uint16_t dlen, uint32_t *tot_out)
{
    uint8_t *r = calloc(1, 70000);
    size_t h = blk(r, 24, 0, 0, dlen, db, 0, 0);
    uint32_t tot = finish(r, h, dlen, 3, 0x00, RM_HEAP);
    uint64_t l = emit(w, r, tot);
    if (tot_out)
        *tot_out = tot;
    free(r);
    return l;
}

static void read_rec(wbuf *w, uint64_t lsn, uint8_t *out, uint32_t n)
{
    uint64_t p = lsn;
    for (uint32_t i = 0; i < n; i++) {
        if (p % PAGE == 0)
            p += (p % SEG == 0) ? 40 : 24;
        out[i] = *at(w, p++);
    }
}

/* the record at lsn as it is now: its CRC valid, and its rmid/info */
static void check_rec(wbuf *w, uint64_t lsn, uint32_t tot, uint8_t rmid, uint8_t info)
{
    uint8_t *r = malloc(tot);
    read_rec(w, lsn, r, tot);
    ck_assert_uint_eq(le32_load(r), tot);
    uint32_t c = crc32c_update(CRC32C_INIT, r + 24, tot - 24);
    ck_assert_uint_eq(crc32c_final(crc32c_update(c, r, 20)), le32_load(r + 20));
    ck_assert_uint_eq(r[17], rmid);
    ck_assert_uint_eq(r[16], info);
    if (rmid == 0 && info == 0x20) { /* one main-data fragment, the rest of the record */
        if (r[24] == 0xFF)
            ck_assert_uint_eq(r[25], tot - 26);
        else {
            ck_assert_uint_eq(r[24], 0xFE);
            ck_assert_uint_eq(le32_load(r + 25), tot - 29);
            ck_assert_uint_gt(tot - 29, 255);
        }
        ck_assert_uint_eq(le32_load(r + 4), 900); /* xl_xid kept */
    }
    free(r);
}

START_TEST(test_crc32c)
{
    ck_assert_uint_eq(crc32c("123456789", 9), 0xE3069283u);
    uint8_t buf[4099];
    tu_fill_random(buf, sizeof(buf), 5);
    for (size_t n = 0; n < sizeof(buf); n += 251)
        ck_assert_uint_eq(crc32c_update(CRC32C_INIT, buf + 1, n),
                          crc32c_update_table(CRC32C_INIT, buf + 1, n));
    uint32_t c = crc32c_update(CRC32C_INIT, buf, 1000);
    ck_assert_uint_eq(crc32c_final(crc32c_update(c, buf + 1000, 3099)), crc32c(buf, 4099));
}
END_TEST

START_TEST(test_excluded_kept_shared)
{
    wbuf w;
    walfilter_stats st;
    uint32_t t1, t2, t3, t4;
    wbuf_init(&w, 3);
    uint64_t a = emit_heap(&w, 16384, 60, &t1);   /* excluded */
    uint64_t b = emit_heap(&w, 16385, 60, &t2);   /* kept */
    uint64_t c = emit_heap(&w, 0, 60, &t3);       /* shared catalogs */
    uint64_t d = emit_heap(&w, 16390, 60, &t4);   /* excluded */
    uint8_t before[200];
    read_rec(&w, b, before, t2);
    uint32_t dbs[] = {16384, 16390, 0};
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, dbs, 3, &st), 2);
    ck_assert_str_eq(st.why, "");
    ck_assert_uint_eq(st.records, 4);
    ck_assert_uint_eq(st.bytes, t1 + t4);
    check_rec(&w, a, t1, 0, 0x20);
    check_rec(&w, b, t2, RM_HEAP, 0x00);
    check_rec(&w, c, t3, RM_HEAP, 0x00);
    check_rec(&w, d, t4, 0, 0x20);
    uint8_t after[200];
    read_rec(&w, b, after, t2);
    ck_assert_mem_eq(before, after, t2);
    /* no database given: nothing changes */
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, dbs, 0, &st), 0);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_mixed_and_kinds)
{
    wbuf w;
    walfilter_stats st;
    uint8_t r[4096];
    wbuf_init(&w, 3);
    /* two blocks of one excluded relation (the second SAME_REL), images: rewritten */
    size_t h = blk(r, 24, 0, 0, 10, 16384, 1, 1);
    h = blk(r, h, 1, 0x80, 5, 0, 1, 0);
    uint32_t t1 = finish(r, h, 10 + 5 + 100 + 100, 8, 0x10, RM_BTREE);
    uint64_t a = emit(&w, r, t1);
    /* blocks in an excluded and a kept database: stays */
    memset(r, 0, sizeof(r));
    h = blk(r, 24, 0, 0, 10, 16384, 0, 0);
    h = blk(r, h, 1, 0, 10, 16385, 0, 0);
    uint32_t t2 = finish(r, h, 20, 8, 0x00, RM_HEAP);
    uint64_t b = emit(&w, r, t2);
    /* an smgr record naming an excluded relation in its block header shape: other rmgr,
     * stays */
    memset(r, 0, sizeof(r));
    h = blk(r, 24, 0, 0, 0, 16384, 0, 0);
    uint32_t t3 = finish(r, h, 0, 8, 0x10, RM_STORAGE);
    uint64_t c = emit(&w, r, t3);
    /* XLOG_FPI of an excluded relation: rewritten; XLOG_NOOP-like other XLOG: stays */
    memset(r, 0, sizeof(r));
    h = blk(r, 24, 0, 0, 0, 16390, 1, 0);
    uint32_t t4 = finish(r, h, 100, 0, 0xB0, 0);
    uint64_t d = emit(&w, r, t4);
    memset(r, 0, sizeof(r));
    h = blk(r, 24, 0, 0, 0, 16390, 0, 0);
    uint32_t t5 = finish(r, h, 0, 16, 0x30, 0); /* NEXTOID shape */
    uint64_t e = emit(&w, r, t5);
    /* a heap record without a block reference (main data only): stays */
    memset(r, 0, sizeof(r));
    uint32_t t6 = finish(r, 24, 0, 40, 0x30, RM_HEAP);
    uint64_t f = emit(&w, r, t6);
    /* lengths that do not add up: stays (DecodeXLogRecord would refuse it anyway) */
    memset(r, 0, sizeof(r));
    h = blk(r, 24, 0, 0, 50, 16384, 0, 0);
    uint32_t t7 = finish(r, h, 10, 8, 0x00, RM_HEAP);
    uint64_t g = emit(&w, r, t7);
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, EXCL, 2, &st), 2);
    ck_assert_str_eq(st.why, "");
    check_rec(&w, a, t1, 0, 0x20);
    check_rec(&w, b, t2, RM_HEAP, 0x00);
    check_rec(&w, c, t3, RM_STORAGE, 0x10);
    check_rec(&w, d, t4, 0, 0x20);
    check_rec(&w, e, t5, 0, 0x30);
    check_rec(&w, f, t6, RM_HEAP, 0x30);
    check_rec(&w, g, t7, RM_HEAP, 0x00);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_cross_page_and_long)
{
    wbuf w;
    walfilter_stats st;
    uint32_t t1, t2, t3;
    wbuf_init(&w, 3);
    fill_until(&w, 3 * (uint64_t)SEG + PAGE - 16); /* the next header straddles a page */
    uint64_t a = emit_heap(&w, 16384, 3000, &t1);
    uint64_t b = emit_heap(&w, 16384, 20000, &t2); /* three pages */
    uint64_t c = emit_heap(&w, 16385, 9000, &t3);
    ck_assert_uint_gt(walfilter_segment(w.seg[0], SEG, 3, EXCL, 2, &st), 1);
    ck_assert_str_eq(st.why, "");
    check_rec(&w, a, t1, 0, 0x20);
    check_rec(&w, b, t2, 0, 0x20);
    check_rec(&w, c, t3, RM_HEAP, 0x00);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_bad_crc_stops)
{
    wbuf w;
    walfilter_stats st;
    uint32_t t1, t2, t3;
    wbuf_init(&w, 3);
    uint64_t a = emit_heap(&w, 16384, 60, &t1);
    uint64_t b = emit_heap(&w, 16384, 60, &t2);
    uint64_t c = emit_heap(&w, 16384, 60, &t3);
    *at(&w, b + 30) ^= 1; /* a flipped bit in the second record */
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, EXCL, 2, &st), 1);
    ck_assert_ptr_nonnull(strstr(st.why, "CRC mismatch"));
    check_rec(&w, a, t1, 0, 0x20);
    check_rec(&w, c, t3, RM_HEAP, 0x00); /* after it: untouched */
    uint8_t r[200];
    read_rec(&w, b, r, t2);
    ck_assert_uint_eq(r[17], RM_HEAP);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_segment_edges)
{
    wbuf w;
    walfilter_stats st;
    uint32_t t1, t2, t3, t4;
    wbuf_init(&w, 3);
    fill_until(&w, 3 * (uint64_t)SEG + SEG - 5 * PAGE + 64);
    uint64_t a = emit_heap(&w, 16384, 100, &t1);
    uint64_t b = emit_heap(&w, 16384, 50000, &t2); /* ends in segment 4 */
    uint64_t c = emit_heap(&w, 16384, 100, &t3);
    uint64_t d = emit_heap(&w, 16385, 100, &t4);
    ck_assert_uint_eq(b / SEG, 3);
    ck_assert_uint_eq(c / SEG, 4);
    uint8_t before[200];
    read_rec(&w, b, before, 64);
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, EXCL, 2, &st), 1);
    ck_assert_str_eq(st.why, "");
    check_rec(&w, a, t1, 0, 0x20);
    uint8_t after[200];
    read_rec(&w, b, after, 64);
    ck_assert_mem_eq(before, after, 64); /* crosses into segment 4: left alone */
    ck_assert_uint_eq(st.tail_off, b % SEG);
    size_t tail = st.tail_off;
    /* segment 4 starts with b's continuation: skipped, then c is rewritten */
    ck_assert_uint_eq(walfilter_segment(w.seg[1], SEG, 4, EXCL, 2, &st), 1);
    ck_assert_str_eq(st.why, "");
    check_rec(&w, c, t3, 0, 0x20);
    check_rec(&w, d, t4, RM_HEAP, 0x00);
    check_rec(&w, b, t2, RM_HEAP, 0x00);
    /* ... until both segments are given */
    ck_assert_int_eq(walfilter_boundary(w.seg[0], w.seg[1], SEG, 3, tail, EXCL, 2, &st), 1);
    ck_assert_str_eq(st.why, "");
    check_rec(&w, b, t2, 0, 0x20);
    check_rec(&w, c, t3, 0, 0x20);
    /* a record running over three segments: not looked at */
    wbuf w3;
    wbuf_init(&w3, 3);
    fill_until(&w3, 3 * (uint64_t)SEG + SEG - 2 * PAGE + 64);
    uint64_t g = emit_heap(&w3, 16384, 60000, &t1); /* 60 kB */
    uint8_t *huge = calloc(1, 2 * SEG);
    size_t hb = blk(huge, 24, 0, 0, 0, 16384, 0, 0);
    huge[hb] = 0xFE;
    put32(huge + hb + 1, 2 * SEG - 20000);
    rec_header(huge, (uint32_t)(hb + 5 + 2 * SEG - 20000), 900, 0, RM_HEAP);
    uint64_t hh = emit(&w3, huge, (uint32_t)(hb + 5 + 2 * SEG - 20000));
    free(huge);
    ck_assert_uint_eq(hh / SEG, 4);
    ck_assert_uint_eq(walfilter_segment(w3.seg[0], SEG, 3, EXCL, 2, &st), 0);
    ck_assert_uint_eq(st.tail_off, g % SEG);
    ck_assert_int_eq(walfilter_boundary(w3.seg[0], w3.seg[1], SEG, 3, g % SEG, EXCL, 2, &st), 1);
    walfilter_segment(w3.seg[1], SEG, 4, EXCL, 2, &st);
    ck_assert_uint_eq(st.tail_off, hh % SEG);
    ck_assert_int_eq(walfilter_boundary(w3.seg[1], w3.seg[2], SEG, 4, hh % SEG, EXCL, 2, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.why, "more than two"));
    wbuf_free(&w3);
    /* the wrong segment number: the page addresses do not match, nothing changes */
    wbuf w2;
    wbuf_init(&w2, 3);
    uint64_t e = emit_heap(&w2, 16384, 100, &t1);
    ck_assert_uint_eq(walfilter_segment(w2.seg[0], SEG, 5, EXCL, 2, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.why, "not this segment's"));
    check_rec(&w2, e, t1, RM_HEAP, 0x00);
    wbuf_free(&w2);
    wbuf_free(&w);
}
END_TEST

static int count_commits(void *arg, const walscan_record *r)
{
    if (r->kind == WALSCAN_COMMIT)
        ++*(int *)arg;
    return 0;
}

START_TEST(test_walscan_after)
{
    wbuf w;
    walfilter_stats st;
    uint8_t r[64];
    int n = 0;
    wbuf_init(&w, 3);
    for (int i = 0; i < 200; i++) {
        emit_heap(&w, i % 2 ? 16384 : 16385, (uint16_t)(100 + i * 37), NULL);
        memset(r, 0, sizeof(r));
        rec_header(r, 38, 700 + i, XLOG_XACT_COMMIT, RM_XACT_ID);
        r[24] = 0xFF;
        r[25] = 12;
        emit(&w, r, 38);
    }
    ck_assert_uint_eq(walfilter_segment(w.seg[0], SEG, 3, EXCL, 2, &st), 100);
    ck_assert_uint_eq(st.records, 400);
    walscan *ws = walscan_new(SEG, count_commits, &n);
    ck_assert_int_eq(walscan_feed(ws, 1, 3, w.seg[0], SEG), WALSCAN_END);
    ck_assert_int_eq(n, 200);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

static Suite *walfilter_suite(void)
{
    Suite *s = suite_create("walfilter");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_crc32c);
    tcase_add_test(tc, test_excluded_kept_shared);
    tcase_add_test(tc, test_mixed_and_kinds);
    tcase_add_test(tc, test_cross_page_and_long);
    tcase_add_test(tc, test_bad_crc_stops);
    tcase_add_test(tc, test_segment_edges);
    tcase_add_test(tc, test_walscan_after);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(walfilter_suite());
}
