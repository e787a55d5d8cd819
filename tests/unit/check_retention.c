/*
 * check_retention.c -- unit tests for lib/retention: which backups expire keeps (the
 * window, the one before it, the newest of each of the last N UTC days, the newest),
 * and which WAL ranges (point-in-time recovery from the backup before the window on,
 * start to stop for older kept backups, merged), on made-up calendars real backups
 * cannot give a test (backups on different days).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retention.h"
#include "testutil.h"

/* 2026-12-01T00:00:00Z */
#define D0 1796083200LL
#define H 3600LL
#define DAY 86400LL

static void fill(retention_backup *b, const int64_t *stops, size_t n)
{
    memset(b, 0, n * sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        b[i].stop_time = stops[i];
        b[i].start_seg = 10 * (i + 1);     /* backup i: segments 10(i+1) .. 10(i+1)+1 */
        b[i].stop_seg = 10 * (i + 1) + 1;
    }
}

/* six-hourly backups over three days, run at 22:00 on the third with a 1 h window */
START_TEST(test_daily_newest_of_each_day)
{
    int64_t s[] = {D0 + 1 * H, D0 + 7 * H, D0 + 13 * H, D0 + 19 * H,           /* day 1 */
                   D0 + DAY + 1 * H, D0 + DAY + 7 * H, D0 + DAY + 13 * H, D0 + DAY + 19 * H,
                   D0 + 2 * DAY + 1 * H, D0 + 2 * DAY + 7 * H, D0 + 2 * DAY + 13 * H,
                   D0 + 2 * DAY + 19 * H};
    retention_backup b[12];
    retention_policy p = {.now = D0 + 2 * DAY + 22 * H, .window = H, .keep_backups = -1,
                          .min_backups = 0, .daily = 2};
    fill(b, s, 12);
    retention_decide(&p, b, 12);
    for (size_t i = 0; i < 12; i++) {
        int want = i == 7 || i == 11;
        ck_assert_msg(b[i].keep == want, "backup %zu keep %d", i, b[i].keep);
    }
    /* the newest of the third day is daily and opens the window's WAL */
    ck_assert_int_eq(b[11].why, RETENTION_DAILY);
    ck_assert_int_eq(b[11].day, (D0 + 2 * DAY) / DAY);
    ck_assert_int_eq(b[11].wal_to_end, 1);
    /* the newest of the second day, not its oldest: start to stop only */
    ck_assert_int_eq(b[7].why, RETENTION_DAILY);
    ck_assert_int_eq(b[7].day, (D0 + DAY) / DAY);
    ck_assert_int_eq(b[7].wal_to_end, 0);

    /* three days: the first day's 19:00 too */
    p.daily = 3;
    retention_decide(&p, b, 12);
    ck_assert_int_eq(b[3].keep, 1);
    ck_assert_int_eq(b[3].why, RETENTION_DAILY);
    ck_assert_int_eq(b[0].keep + b[1].keep + b[2].keep, 0);

    retention_range *r;
    size_t nr;
    ck_assert_int_eq(retention_wal_ranges(b, 12, &r, &nr), 0);
    ck_assert_uint_eq(nr, 3);
    ck_assert_uint_eq(r[0].first, 40);
    ck_assert_uint_eq(r[0].last, 41);
    ck_assert_uint_eq(r[1].first, 80);
    ck_assert_uint_eq(r[1].last, 81);
    ck_assert_uint_eq(r[2].first, 120);
    ck_assert(r[2].last == UINT64_MAX);
    ck_assert_uint_eq(r[2].from, 11);
    ck_assert_int_eq(retention_seg_kept(r, nr, 39), 0);
    ck_assert_int_eq(retention_seg_kept(r, nr, 41), 1);
    ck_assert_int_eq(retention_seg_kept(r, nr, 42), 0);
    ck_assert_int_eq(retention_seg_kept(r, nr, 119), 0);
    ck_assert_int_eq(retention_seg_kept(r, nr, 5000), 1);
    free(r);
}
END_TEST

/* the window keeps its backups and the one before it, whose WAL runs to the end */
START_TEST(test_window_and_daily)
{
    int64_t s[] = {D0 - DAY + 12 * H, D0 + 1 * H, D0 + 7 * H, D0 + 13 * H, D0 + 19 * H};
    retention_backup b[5];
    /* window 8 h at 20:00: opens at 12:00, so 13:00 and 19:00 inside, 07:00 before it */
    retention_policy p = {.now = D0 + 20 * H, .window = 8 * H, .keep_backups = -1,
                          .min_backups = 0, .daily = 2};
    fill(b, s, 5);
    retention_decide(&p, b, 5);
    ck_assert_int_eq(b[0].keep, 1);
    ck_assert_int_eq(b[0].why, RETENTION_DAILY); /* yesterday's only backup */
    ck_assert_int_eq(b[0].wal_to_end, 0);
    ck_assert_int_eq(b[1].keep, 0);             /* today's oldest: not the newest */
    ck_assert_int_eq(b[2].keep, 1);
    ck_assert_int_eq(b[2].why, RETENTION_WINDOW_START);
    ck_assert_int_eq(b[2].wal_to_end, 1);
    ck_assert_int_eq(b[3].why, RETENTION_WINDOW);
    ck_assert_int_eq(b[4].why, RETENTION_WINDOW);
    ck_assert_int_eq(b[4].daily_too, 1);        /* today's newest, in the window */
    ck_assert_int_eq(b[4].day, D0 / DAY);

    retention_range *r;
    size_t nr;
    ck_assert_int_eq(retention_wal_ranges(b, 5, &r, &nr), 0);
    ck_assert_uint_eq(nr, 2);
    ck_assert_uint_eq(r[0].first, 10);
    ck_assert_uint_eq(r[0].last, 11);
    ck_assert_uint_eq(r[1].first, 30);          /* from the start of the 07:00 backup */
    ck_assert(r[1].last == UINT64_MAX);
    ck_assert_uint_eq(r[1].from, 2);
    free(r);
}
END_TEST

/* UTC days: 23:59:59 and 00:00:00 are two days; a tie goes to the later backup; a
 * backup after now is no day's choice (it is in the window) */
START_TEST(test_day_edges)
{
    int64_t s[] = {D0 - 1, D0, D0, D0 + 5 * H};
    retention_backup b[4];
    retention_policy p = {.now = D0 + 1 * H, .window = 1, .keep_backups = -1,
                          .min_backups = 0, .daily = 2};
    fill(b, s, 4);
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[0].keep, 1);
    ck_assert_int_eq(b[0].why, RETENTION_DAILY);
    ck_assert_int_eq(b[0].day, D0 / DAY - 1);
    ck_assert_int_eq(b[1].keep, 0);              /* tie: b[2] is later */
    ck_assert_int_eq(b[2].why, RETENTION_DAILY);
    ck_assert_int_eq(b[2].day, D0 / DAY);
    ck_assert_int_eq(b[2].wal_to_end, 1);        /* also the window's start */
    ck_assert_int_eq(b[3].why, RETENTION_WINDOW);/* after now */
    ck_assert_int_eq(b[3].daily_too, 0);

    /* one day only: yesterday's goes */
    p.daily = 1;
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[0].keep, 0);
    /* none: the newest is still kept, and the one before the window */
    p.daily = 0;
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[0].keep + b[1].keep, 0);
    ck_assert_int_eq(b[2].why, RETENTION_WINDOW_START);
    ck_assert_int_eq(b[3].keep, 1);
}
END_TEST

/* the daily policy always keeps the newest backup, even with no window and no days */
START_TEST(test_newest_always)
{
    int64_t s[] = {D0 + 2 * H, D0 + 1 * H}; /* out of time order (another timeline) */
    retention_backup b[2];
    retention_policy p = {.now = D0 + 10 * DAY, .window = 0, .keep_backups = -1,
                          .min_backups = 0, .daily = 0};
    fill(b, s, 2);
    retention_decide(&p, b, 2);
    ck_assert_int_eq(b[1].keep, 1);
    ck_assert_int_eq(b[1].wal_to_end, 1);
    ck_assert_int_eq(b[0].keep, 0);
    p.window = 10 * DAY;                      /* no backup before the window: both in it */
    retention_decide(&p, b, 2);
    ck_assert_int_eq(b[0].why, RETENTION_WINDOW);
    ck_assert_int_eq(b[0].wal_to_end, 1);
    ck_assert_int_eq(b[1].why, RETENTION_WINDOW);
    ck_assert_int_eq(retention_wal_ranges(b, 0, &(retention_range *){NULL}, &(size_t){1}), 0);
}
END_TEST

/* --min-backups and --keep-backups under the daily policy: kept, start to stop only */
START_TEST(test_daily_with_counts)
{
    int64_t s[] = {D0 + 1 * H, D0 + 2 * H, D0 + 3 * H, D0 + 4 * H};
    retention_backup b[4];
    retention_policy p = {.now = D0 + 4 * H + 30 * 60, .window = 10 * 60, .keep_backups = -1,
                          .min_backups = 3, .daily = 0};
    fill(b, s, 4);
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[0].keep, 0);
    ck_assert_int_eq(b[1].why, RETENTION_MIN_BACKUPS);
    ck_assert_int_eq(b[1].wal_to_end, 0);
    ck_assert_int_eq(b[2].why, RETENTION_MIN_BACKUPS);
    ck_assert_int_eq(b[3].why, RETENTION_WINDOW_START);
    /* islands 20-21, 30-31 and 40 on; b[2] stopping in 39 makes the last two adjacent:
     * they merge */
    b[2].stop_seg = 39;
    retention_range *r;
    size_t nr;
    ck_assert_int_eq(retention_wal_ranges(b, 4, &r, &nr), 0);
    ck_assert_uint_eq(nr, 2);
    ck_assert_uint_eq(r[0].first, 20);
    ck_assert_uint_eq(r[0].last, 21);
    ck_assert_uint_eq(r[1].first, 30);
    ck_assert(r[1].last == UINT64_MAX);
    ck_assert_uint_eq(r[1].from, 2);
    ck_assert_uint_eq(r[1].to, 3);
    free(r);

    p.min_backups = 0;
    p.keep_backups = 2 * H;                   /* stop >= 02:30: b[2] */
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[1].keep, 0);
    ck_assert_int_eq(b[2].why, RETENTION_KEEP_BACKUPS);
    ck_assert_int_eq(b[2].wal_to_end, 0);
}
END_TEST

/* without --keep-daily, the policy of earlier versions: every kept backup keeps its WAL
 * to the end, reasons in the old order, min_backups 0 may keep nothing */
START_TEST(test_count_policy)
{
    int64_t s[] = {D0 + 1 * H, D0 + 2 * H, D0 + 3 * H, D0 + 4 * H};
    retention_backup b[4];
    retention_policy p = {.now = D0 + 5 * H, .window = 90 * 60, .keep_backups = 150 * 60,
                          .min_backups = 1, .daily = -1};
    fill(b, s, 4);
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[0].keep, 0);
    ck_assert_int_eq(b[1].keep, 0);
    ck_assert_int_eq(b[2].why, RETENTION_KEEP_BACKUPS); /* 03:00 >= 02:30, before 03:30 */
    ck_assert_int_eq(b[3].why, RETENTION_WINDOW);
    ck_assert_int_eq(b[2].wal_to_end, 1);
    retention_range *r;
    size_t nr;
    ck_assert_int_eq(retention_wal_ranges(b, 4, &r, &nr), 0);
    ck_assert_uint_eq(nr, 1);
    ck_assert_uint_eq(r[0].first, 30);
    ck_assert(r[0].last == UINT64_MAX);
    free(r);

    p.keep_backups = 0;
    retention_decide(&p, b, 4);
    ck_assert_int_eq(b[2].why, RETENTION_WINDOW_START);
    p.now = D0 + 100 * H;
    p.min_backups = 0;
    retention_decide(&p, b, 4);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(b[i].keep, 0);
    ck_assert_int_eq(b[3].why, RETENTION_WINDOW_START);
    p.window = 200 * H;                       /* all in the window, none before it */
    retention_decide(&p, b, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(b[i].why, RETENTION_WINDOW);
}
END_TEST

START_TEST(test_no_backup_no_range)
{
    retention_backup b[1];
    retention_range *r = (retention_range *)1;
    size_t nr = 7;
    retention_policy p = {.now = D0, .window = 1, .keep_backups = -1, .min_backups = 0,
                          .daily = -1};
    int64_t s[] = {D0 - DAY};
    fill(b, s, 1);
    p.keep_backups = 0;
    retention_decide(&p, b, 1);
    /* the count policy keeps the one before the window */
    ck_assert_int_eq(b[0].keep, 1);
    b[0].keep = 0;
    ck_assert_int_eq(retention_wal_ranges(b, 1, &r, &nr), 0);
    ck_assert_uint_eq(nr, 0);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(retention_why_key(RETENTION_WINDOW_START), "window-start");
    ck_assert_str_eq(retention_why_text(RETENTION_EXPIRED), "expired");
}
END_TEST

static Suite *retention_suite(void)
{
    Suite *s = suite_create("retention");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_daily_newest_of_each_day);
    tcase_add_test(tc, test_window_and_daily);
    tcase_add_test(tc, test_day_edges);
    tcase_add_test(tc, test_newest_always);
    tcase_add_test(tc, test_daily_with_counts);
    tcase_add_test(tc, test_count_policy);
    tcase_add_test(tc, test_no_backup_no_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(retention_suite());
}
