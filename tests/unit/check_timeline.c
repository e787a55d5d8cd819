/*
 * check_timeline.c -- unit tests for lib/timeline: paths built from history files
 * (oldest first, switch points as step bounds), the file PostgreSQL reads for each
 * segment (the newest timeline that began at or before it), membership of
 * (timeline, LSN) points, "latest" probing, and loading history objects from a
 * posix repository (a damaged one is recorded, the rest still loads).
 */
#include "testutil.h"
#include "object.h"
#include "repo.h"
#include "storage.h"
#include "timeline.h"

#define SEG (16u << 20)

static void add(timeline_set *ts, uint32_t tli, const char *text)
{
    walhistory h;
    ck_assert_int_eq(walhistory_parse(text, strlen(text), tli, &h), 0);
    ck_assert_int_eq(timeline_add(ts, &h), 0);
}

/* 1 -> 2 at 0/5000100 -> 3 at 0/7000200; 4 branches off 2 at 0/6000000 */
static void graph(timeline_set *ts)
{
    timeline_set_init(ts);
    add(ts, 3, "1\t0/5000100\tno recovery target specified\n"
               "2\t0/7000200\tno recovery target specified\n");
    add(ts, 2, "1\t0/5000100\tno recovery target specified\n");
    add(ts, 4, "1\t0/5000100\tx\n2\t0/6000000\tbefore 2000-01-01\n");
}

START_TEST(test_path_timeline_1)
{
    timeline_set ts;
    timeline_path p;
    timeline_set_init(&ts);
    ck_assert_int_eq(timeline_get_path(&ts, 1, &p), 0);
    ck_assert_uint_eq(p.n, 1);
    ck_assert_uint_eq(p.steps[0].tli, 1);
    ck_assert_uint_eq(p.steps[0].begin, 0);
    ck_assert(p.steps[0].end == TIMELINE_END);
    timeline_path_release(&p);
    ck_assert_int_eq(timeline_get_path(&ts, 2, &p), RS_NOT_FOUND);
    timeline_path_release(&p);
    timeline_set_release(&ts);
}
END_TEST

START_TEST(test_path_three)
{
    timeline_set ts;
    timeline_path p;
    graph(&ts);
    ck_assert_int_eq(timeline_get_path(&ts, 3, &p), 0);
    ck_assert_uint_eq(p.n, 3);
    ck_assert_uint_eq(p.steps[0].tli, 1);
    ck_assert_uint_eq(p.steps[0].end, 0x5000100);
    ck_assert_uint_eq(p.steps[1].tli, 2);
    ck_assert_uint_eq(p.steps[1].begin, 0x5000100);
    ck_assert_uint_eq(p.steps[1].end, 0x7000200);
    ck_assert_uint_eq(p.steps[2].tli, 3);
    ck_assert_uint_eq(p.steps[2].begin, 0x7000200);
    /* the segment holding a switch point is read from the child timeline */
    ck_assert_uint_eq(timeline_path_tli_for_seg(&p, 4, SEG), 1);
    ck_assert_uint_eq(timeline_path_tli_for_seg(&p, 5, SEG), 2);
    ck_assert_uint_eq(timeline_path_tli_for_seg(&p, 6, SEG), 2);
    ck_assert_uint_eq(timeline_path_tli_for_seg(&p, 7, SEG), 3);
    ck_assert_uint_eq(timeline_path_tli_for_seg(&p, 100, SEG), 3);
    ck_assert_uint_eq(timeline_path_tli_at(&p, 0x50000FF), 1);
    ck_assert_uint_eq(timeline_path_tli_at(&p, 0x5000100), 2);
    ck_assert_uint_eq(timeline_path_tli_at(&p, 0x9000000), 3);
    /* a backup of timeline 1 taken before the branch lies on the path, after it not */
    ck_assert_int_eq(timeline_path_contains(&p, 1, 0x2000028), 1);
    ck_assert_int_eq(timeline_path_contains(&p, 1, 0x6000028), 0);
    ck_assert_int_eq(timeline_path_contains(&p, 2, 0x6000028), 1);
    ck_assert_int_eq(timeline_path_contains(&p, 4, 0x6000028), 0);
    timeline_path_release(&p);
    timeline_set_release(&ts);
}
END_TEST

START_TEST(test_latest_and_exists)
{
    timeline_set ts;
    graph(&ts);
    ck_assert_int_eq(timeline_exists(&ts, 1), 1);
    ck_assert_int_eq(timeline_exists(&ts, 4), 1);
    ck_assert_int_eq(timeline_exists(&ts, 5), 0);
    ck_assert_uint_eq(timeline_latest(&ts, 1), 4);
    ck_assert_uint_eq(timeline_max(&ts), 4);
    ck_assert_ptr_null(timeline_history(&ts, 1));
    ck_assert_uint_eq(timeline_history(&ts, 3)->n, 2);
    timeline_set_release(&ts);

    /* a hole in the numbering stops PostgreSQL's probing */
    timeline_set_init(&ts);
    add(&ts, 2, "1\t0/3000000\tx\n");
    add(&ts, 4, "1\t0/3000000\tx\n2\t0/4000000\tx\n");
    ck_assert_uint_eq(timeline_latest(&ts, 1), 2);
    ck_assert_uint_eq(timeline_max(&ts), 4);
    timeline_set_release(&ts);
}
END_TEST

START_TEST(test_load)
{
    storage *st = storage_open(tu_repo("repo"), NULL, 1);
    char key[128];
    const char *h2 = "1\t0/5000100\tno recovery target specified\n";
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(repo_wal_key("00000002.history", key, sizeof(key)), 0);
    ck_assert_int_eq(object_put_buf(st, key, h2, strlen(h2), NULL, 1, NULL), 0);
    ck_assert_int_eq(repo_wal_key("000000010000000000000001", key, sizeof(key)), 0);
    ck_assert_int_eq(object_put_buf(st, key, "x", 1, NULL, 1, NULL), 0);
    timeline_set ts;
    timeline_set_init(&ts);
    ck_assert_int_eq(timeline_load(&ts, st), 0);
    ck_assert_uint_eq(ts.n, 1);
    ck_assert_uint_eq(ts.hist[0].tli, 2);
    ck_assert_uint_eq(ts.hist[0].entries[0].switchpoint, 0x5000100);
    timeline_set_release(&ts);

    /* a corrupt history object is judged alone: recorded as damaged, the load goes on,
     * and that timeline cannot be followed */
    ck_assert_int_eq(repo_wal_key("00000002.history", key, sizeof(key)), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", tu_path("repo"), key);
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "\x00\x01\x02", 3, 5), 3);
    close(fd);
    /* and one that is intact but does not parse */
    const char *bad3 = "garbage\n";
    ck_assert_int_eq(repo_wal_key("00000003.history", key, sizeof(key)), 0);
    ck_assert_int_eq(object_put_buf(st, key, bad3, strlen(bad3), NULL, 1, NULL), 0);
    timeline_set_init(&ts);
    ck_assert_int_eq(timeline_load(&ts, st), 0);
    ck_assert_uint_eq(ts.n, 0);
    ck_assert_uint_eq(ts.ndamaged, 2);
    ck_assert_ptr_nonnull(timeline_damaged(&ts, 2));
    ck_assert_ptr_nonnull(timeline_damaged(&ts, 3));
    ck_assert_ptr_null(timeline_damaged(&ts, 1));
    ck_assert_int_eq(timeline_exists(&ts, 2), 0);
    ck_assert_uint_eq(timeline_latest(&ts, 1), 3); /* walks through: a plan meets them */
    timeline_path p;
    ck_assert_int_eq(timeline_get_path(&ts, 2, &p), RS_MISMATCH);
    ck_assert_int_eq(timeline_get_path(&ts, 1, &p), 0);
    timeline_path_release(&p);
    timeline_set_release(&ts);
    storage_free(st);
}
END_TEST

static Suite *timeline_suite(void)
{
    Suite *s = suite_create("timeline");
    TCase *tc = tcase_create("graph");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_path_timeline_1);
    tcase_add_test(tc, test_path_three);
    tcase_add_test(tc, test_latest_and_exists);
    tcase_add_test(tc, test_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(timeline_suite());
}
