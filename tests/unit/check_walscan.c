/*
 * check_walscan.c -- unit tests for lib/walscan: the record walker over synthetic
 * PostgreSQL 15 WAL built here byte by byte (1 MiB segments): commits, aborts and
 * restore points are decoded with their time, xid and LSNs; records that cross a
 * page and a segment boundary are reassembled; a stream that starts mid-record skips
 * the continuation; XLOG_SWITCH skips the rest of a segment; a zero length and a
 * stale page address end the WAL; a bad page magic and a too-short record length are
 * errors; the callback's non-zero result stops the walk; time formatting.
 */
#include "testutil.h"
#include "walname.h"
#include "walscan.h"
#include "walgen.h"

static int64_t pg_time(int64_t unix_us) { return unix_us - PG_EPOCH_OFFSET_US; }

static uint64_t emit_commit(wbuf *w, uint32_t xid, int64_t unix_us, uint8_t op)
{
    uint8_t r[64];
    uint32_t tot = 24 + 2 + 12;
    rec_header(r, tot, xid, op, RM_XACT_ID);
    r[24] = 0xFF;
    r[25] = 12;
    put64(r + 26, (uint64_t)pg_time(unix_us));
    put32(r + 34, 0);
    return emit(w, r, tot);
}

static uint64_t emit_rp(wbuf *w, const char *name, int64_t unix_us)
{
    uint8_t r[128];
    uint32_t tot = 24 + 2 + 72;
    rec_header(r, tot, 0, XLOG_RESTORE_POINT, RM_XLOG_ID);
    r[24] = 0xFF;
    r[25] = 72;
    put64(r + 26, (uint64_t)pg_time(unix_us));
    memset(r + 34, 0, 64);
    strncpy((char *)r + 34, name, 63);
    return emit(w, r, tot);
}

static uint64_t emit_switch(wbuf *w)
{
    uint8_t r[24];
    rec_header(r, 24, 0, XLOG_SWITCH, RM_XLOG_ID);
    uint64_t l = emit(w, r, 24);
    /* the insert position moves to the next segment */
    w->pos = (l / SEG + 1) * SEG;
    w->pos += page_header(w, w->pos, 0);
    return l;
}

typedef struct seen {
    int n;
    walscan_record r[64];
    int stop_after;
} seen;

static int collect(void *arg, const walscan_record *rec)
{
    seen *s = arg;
    if (rec->kind != WALSCAN_OTHER && s->n < 64)
        s->r[s->n++] = *rec;
    if (s->stop_after && s->n == s->stop_after)
        return 77;
    return 0;
}

static const int64_t T0 = INT64_C(1795659300000000); /* 2026-11-26T02:15:00Z */

START_TEST(test_commit_abort_rp)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    uint64_t l1 = emit_commit(&w, 700, T0 + 123456, XLOG_XACT_COMMIT);
    uint64_t l2 = emit_commit(&w, 701, T0 + 2000000, XLOG_XACT_ABORT);
    uint64_t l3 = emit_rp(&w, "before_upgrade", T0 + 3000000);
    uint64_t l4 = emit_commit(&w, 702, T0 + 4000000, XLOG_XACT_COMMIT_PREPARED);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 4);
    ck_assert_int_eq(s.r[0].kind, WALSCAN_COMMIT);
    ck_assert_uint_eq(s.r[0].xid, 700);
    ck_assert_int_eq(s.r[0].time_us, T0 + 123456);
    ck_assert_uint_eq(s.r[0].start_lsn, l1);
    ck_assert_uint_eq(s.r[0].end_lsn, l1 + 38);
    ck_assert_uint_eq(s.r[0].start_lsn, 2 * SEG + 40);
    ck_assert_int_eq(s.r[1].kind, WALSCAN_ABORT);
    ck_assert_uint_eq(s.r[1].start_lsn, l2);
    ck_assert_int_eq(s.r[2].kind, WALSCAN_RESTORE_POINT);
    ck_assert_str_eq(s.r[2].name, "before_upgrade");
    ck_assert_int_eq(s.r[2].time_us, T0 + 3000000);
    ck_assert_uint_eq(s.r[2].start_lsn, l3);
    ck_assert_int_eq(s.r[3].kind, WALSCAN_COMMIT);
    ck_assert_int_eq(s.r[3].prepared, 1);
    ck_assert_uint_eq(s.r[3].start_lsn, l4);
    ck_assert_uint_eq(walscan_next_lsn(ws), w.pos);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_cross_page)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    /* fill so the next record header straddles the first page boundary */
    emit_filler(&w, PAGE - 40 - 16);
    uint64_t l = emit_commit(&w, 800, T0, XLOG_XACT_COMMIT);
    ck_assert_uint_eq(l / PAGE, (l + 38 + 24) / PAGE - 1); /* it does cross */
    emit_filler(&w, 3 * PAGE + 100);     /* a record over several pages */
    uint64_t l2 = emit_commit(&w, 801, T0 + 1, XLOG_XACT_COMMIT);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 2);
    ck_assert_uint_eq(s.r[0].xid, 800);
    ck_assert_int_eq(s.r[0].time_us, T0);
    ck_assert_uint_eq(s.r[0].start_lsn, l);
    ck_assert_uint_eq(s.r[0].end_lsn, l + 38 + 24); /* the page header sits inside */
    ck_assert_uint_eq(s.r[1].xid, 801);
    ck_assert_uint_eq(s.r[1].start_lsn, l2);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_cross_segment)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    /* a big record that ends in the next segment, then a commit right after it */
    fill_until(&w, 3ull * SEG - 200);
    uint64_t big = emit_filler(&w, 3 * PAGE);
    uint64_t l = emit_commit(&w, 900, T0 + 5, XLOG_XACT_COMMIT);
    ck_assert_uint_eq(big / SEG, 2);
    ck_assert_uint_eq(l / SEG, 3);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), 0);
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_eq(walscan_feed(ws, 1, 3, w.seg[1], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.r[0].start_lsn, l);
    ck_assert_uint_eq(s.r[0].segno, 3);

    /* a fresh stream starting at segment 3 skips the continuation and finds it too */
    seen s2 = {0};
    walscan *ws2 = walscan_new(SEG, collect, &s2);
    ck_assert_int_eq(walscan_feed(ws2, 1, 3, w.seg[1], SEG), WALSCAN_END);
    ck_assert_int_eq(s2.n, 1);
    ck_assert_uint_eq(s2.r[0].start_lsn, l);
    ck_assert_uint_eq(s2.r[0].xid, 900);
    walscan_free(ws);
    walscan_free(ws2);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_commit_straddles_segments)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    /* the commit itself starts 16 bytes before the end of segment 2 */
    fill_until(&w, 3ull * SEG - 16);
    uint64_t l = emit_commit(&w, 950, T0 + 9, XLOG_XACT_COMMIT);
    ck_assert_uint_eq(l, 3ull * SEG - 16);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), 0);
    ck_assert_int_eq(walscan_feed(ws, 1, 3, w.seg[1], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.r[0].start_lsn, l);
    ck_assert_uint_eq(s.r[0].end_lsn, 3ull * SEG + 40 + 22);
    ck_assert_int_eq(s.r[0].time_us, T0 + 9);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_switch)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    emit_commit(&w, 1, T0, XLOG_XACT_COMMIT);
    emit_switch(&w);
    /* garbage after the switch in the same segment must be ignored */
    memset(w.seg[0] + 2 * PAGE + 100, 0xAB, 64);
    uint64_t l = emit_commit(&w, 2, T0 + 1, XLOG_XACT_COMMIT);
    ck_assert_uint_eq(l, 3ull * SEG + 40);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), 0);
    ck_assert_int_eq(walscan_feed(ws, 1, 3, w.seg[1], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 2);
    ck_assert_uint_eq(s.r[1].start_lsn, l);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_stale_page_ends)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    emit_commit(&w, 1, T0, XLOG_XACT_COMMIT);
    /* page 1 left from a recycled segment: right magic, old address */
    put16(w.seg[0] + PAGE, WAL_MAGIC_PG15);
    put64(w.seg[0] + PAGE + 8, 5ull * SEG + PAGE);
    put32(w.seg[0] + PAGE + 24, 77);
    walscan *ws = walscan_new(SEG, collect, &s);
    /* the commit is followed by zeros on page 0: end there */
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), WALSCAN_END);
    ck_assert_int_eq(s.n, 1);
    walscan_free(ws);

    /* a record that runs into the stale page: end, record not reported */
    wbuf w2;
    seen s2 = {0};
    wbuf_init(&w2, 2);
    emit_filler(&w2, PAGE);
    put64(w2.seg[0] + PAGE + 8, 5ull * SEG + PAGE);
    ws = walscan_new(SEG, collect, &s2);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w2.seg[0], SEG), WALSCAN_END);
    ck_assert_int_eq(s2.n, 0);
    walscan_free(ws);
    wbuf_free(&w);
    wbuf_free(&w2);
}
END_TEST

START_TEST(test_errors)
{
    wbuf w;
    seen s = {0};
    wbuf_init(&w, 2);
    emit_commit(&w, 1, T0, XLOG_XACT_COMMIT);
    walscan *ws = walscan_new(SEG, collect, &s);
    uint8_t *copy = malloc(SEG);
    memcpy(copy, w.seg[0], SEG);
    put16(copy, 0xD10D);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, copy, SEG), -1);
    ck_assert_ptr_nonnull(strstr(walscan_error(ws), "magic"));
    memcpy(copy, w.seg[0], SEG);
    put32(copy + 40, 12); /* record length below the header size */
    ck_assert_int_eq(walscan_feed(ws, 1, 2, copy, SEG), -1);
    ck_assert_ptr_nonnull(strstr(walscan_error(ws), "record length"));
    free(copy);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_callback_stops)
{
    wbuf w;
    seen s = {0};
    s.stop_after = 2;
    wbuf_init(&w, 2);
    for (uint32_t i = 0; i < 5; i++)
        emit_commit(&w, 10 + i, T0 + i, XLOG_XACT_COMMIT);
    walscan *ws = walscan_new(SEG, collect, &s);
    ck_assert_int_eq(walscan_feed(ws, 1, 2, w.seg[0], SEG), 77);
    ck_assert_int_eq(s.n, 2);
    ck_assert_uint_eq(s.r[1].xid, 11);
    walscan_free(ws);
    wbuf_free(&w);
}
END_TEST

START_TEST(test_format_time)
{
    char b[48];
    walscan_format_time(b, sizeof(b), T0 + 123456);
    ck_assert_str_eq(b, "2026-11-26 02:15:00.123456+00");
    walscan_format_time(b, sizeof(b), 0);
    ck_assert_str_eq(b, "1970-01-01 00:00:00.000000+00");
}
END_TEST

static Suite *walscan_suite(void)
{
    Suite *s = suite_create("walscan");
    TCase *tc = tcase_create("records");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_commit_abort_rp);
    tcase_add_test(tc, test_cross_page);
    tcase_add_test(tc, test_cross_segment);
    tcase_add_test(tc, test_commit_straddles_segments);
    tcase_add_test(tc, test_switch);
    tcase_add_test(tc, test_stale_page_ends);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_callback_stops);
    tcase_add_test(tc, test_format_time);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(walscan_suite());
}
