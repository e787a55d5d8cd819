/*
 * check_walk.c -- unit tests for lib/walk: pre-order with sorted names, symbolic links
 * reported and never followed, WALK_PRUNE, a callback's -1 stops the walk.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "walk.h"

struct seen {
    char buf[1024];
    const char *prune;
    const char *stop;
};

static int record(void *arg, const walk_entry *e)
{
    struct seen *s = arg;
    char kind = S_ISDIR(e->st->st_mode) ? 'd' : S_ISLNK(e->st->st_mode) ? 'l' : 'f';

    ck_assert_str_eq(e->name, strrchr(e->rel, '/') ? strrchr(e->rel, '/') + 1 : e->rel);
    snprintf(s->buf + strlen(s->buf), sizeof(s->buf) - strlen(s->buf), "%c:%s ", kind, e->rel);
    if (s->stop && strcmp(e->rel, s->stop) == 0)
        return -1;
    return s->prune && strcmp(e->rel, s->prune) == 0 ? WALK_PRUNE : 0;
}

static void make_tree(void)
{
    ck_assert_int_eq(mkdir("t", 0755), 0);
    ck_assert_int_eq(mkdir("t/b", 0755), 0);
    ck_assert_int_eq(mkdir("t/b/c", 0755), 0);
    ck_assert_int_eq(mkdir("outside", 0755), 0);
    tu_write_file("t/a", "1", 1);
    tu_write_file("t/b/z", "2", 1);
    tu_write_file("t/b/c/y", "3", 1);
    tu_write_file("t/c", "4", 1);
    tu_write_file("outside/secret", "5", 1);
    ck_assert_int_eq(symlink("../outside", "t/b/link"), 0);
}

static int walk(const char *dir, struct seen *s)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return walk_dir(fd, dir, record, s);
}

START_TEST(test_order)
{
    struct seen s = {"", NULL, NULL};

    make_tree();
    ck_assert_int_eq(walk("t", &s), 0);
    ck_assert_str_eq(s.buf, "f:a d:b d:b/c f:b/c/y l:b/link f:b/z f:c ");
}
END_TEST

START_TEST(test_prune_and_stop)
{
    struct seen s = {"", "b", NULL};

    make_tree();
    ck_assert_int_eq(walk("t", &s), 0);
    ck_assert_str_eq(s.buf, "f:a d:b f:c ");
    memset(&s, 0, sizeof(s));
    s.stop = "b/c";
    ck_assert_int_eq(walk("t", &s), -1);
    ck_assert_str_eq(s.buf, "f:a d:b d:b/c ");
}
END_TEST

START_TEST(test_empty)
{
    struct seen s = {"", NULL, NULL};

    ck_assert_int_eq(mkdir("e", 0755), 0);
    ck_assert_int_eq(walk("e", &s), 0);
    ck_assert_str_eq(s.buf, "");
}
END_TEST

static Suite *walk_suite(void)
{
    Suite *s = suite_create("walk");
    TCase *tc = tcase_create("walk");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_order);
    tcase_add_test(tc, test_prune_and_stop);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(walk_suite());
}
