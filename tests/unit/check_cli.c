/*
 * check_cli.c -- unit tests for lib/cli: the common options taken by cli_getopt and the
 * tool's own handed back, an unknown option or a missing argument ending the parse with
 * the tool's usage status, and the --force move-aside names (the -2, -3 suffixes, the
 * first free name, a path too long).
 */
#include <string.h>
#include <time.h>

#include "cli.h"
#include "testutil.h"

static void no_usage(FILE *out) { (void)out; }

static const cli_spec spec = {"ragsafe-test", no_usage, 42};
static const struct option longopts[] = {
    {"level", required_argument, NULL, 'l'},
    {"dry-run", no_argument, NULL, 256},
    CLI_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* parse -- run cli_getopt over the NULL-terminated words; the tool options seen go to
 * seen ("l=3,256,"), the final return value is returned */
static int parse(cli *c, char **words, char *seen, size_t len)
{
    int argc = 0, opt;

    while (words[argc])
        argc++;
    optind = 0; /* a fresh getopt scan in this process */
    seen[0] = '\0';
    cli_init(c, &spec, "ragsafe-test");
    while ((opt = cli_getopt(c, argc, words, "l:", longopts)) != -1 && opt != CLI_EXIT) {
        size_t n = strlen(seen);
        if (opt == 'l')
            snprintf(seen + n, len - n, "l=%s,", optarg);
        else
            snprintf(seen + n, len - n, "%d,", opt);
    }
    return opt;
}

START_TEST(test_common_and_tool_options)
{
    char *w[] = {"t", "--repo", "/r", "-vv", "--level", "3", "--s3-region", "eu",
                 "--cipher-key-file", "k", "--config", "/c", "--dry-run", "-l4", "pos", NULL};
    char seen[128];
    cli c;

    ck_assert_int_eq(parse(&c, w, seen, sizeof(seen)), -1);
    ck_assert_str_eq(seen, "l=3,256,l=4,");
    ck_assert_str_eq(c.rc.repo, "/r");
    ck_assert_str_eq(c.rc.s3_region, "eu");
    ck_assert_str_eq(c.rc.key_file, "k");
    ck_assert_str_eq(c.config_path, "/c");
    ck_assert_int_eq(c.verbose, 2);
    ck_assert_int_eq(log_get_level(), LOG_LEVEL_NOTICE + 2);
    ck_assert_int_eq(optind, 14);
    ck_assert_str_eq(w[optind], "pos");
}
END_TEST

START_TEST(test_usage_errors)
{
    char *unknown[] = {"t", "--level", "1", "--nope", NULL};
    char *short_unknown[] = {"t", "-vQ", NULL};
    char *missing[] = {"t", "--repo", NULL};
    char seen[128];
    cli c;

    ck_assert_int_eq(parse(&c, unknown, seen, sizeof(seen)), CLI_EXIT);
    ck_assert_int_eq(c.status, 42);
    ck_assert_str_eq(seen, "l=1,");
    ck_assert_int_eq(parse(&c, short_unknown, seen, sizeof(seen)), CLI_EXIT);
    ck_assert_int_eq(c.status, 42);
    ck_assert_int_eq(parse(&c, missing, seen, sizeof(seen)), CLI_EXIT);
    ck_assert_int_eq(c.status, 42);
    ck_assert_int_eq(cli_usage_error(&c, "too many arguments"), 42);
}
END_TEST

START_TEST(test_aside_names)
{
    char out[64], stamp[CLI_STAMP_LEN];

    cli_aside_stamp((time_t)1795659300, stamp); /* 2026-11-26T02:15:00Z */
    ck_assert_str_eq(stamp, "20261126T021500Z");
    ck_assert_int_eq(cli_aside_name("/d", stamp, 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/d.ragsafe-old-20261126T021500Z");
    ck_assert_int_eq(cli_aside_name("/d", stamp, 3, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/d.ragsafe-old-20261126T021500Z-3");
    ck_assert_int_eq(cli_aside_name("/a/very/long/directory/name/indeed", stamp, 1, out, 40), -1);
}
END_TEST

/* the first free name: taken ones are skipped, a dangling symlink counts as taken */
START_TEST(test_aside_pick)
{
    char first[PATH_MAX], out[PATH_MAX], stamp[CLI_STAMP_LEN], two[PATH_MAX];
    time_t t0;

    ck_assert_int_eq(cli_aside_pick(tu_path("d"), first, sizeof(first)), 0);
    ck_assert_ptr_nonnull(strstr(first, "/d.ragsafe-old-"));
    ck_assert(!tu_exists(first));
    /* take the name and the -2 of this second and the next (the clock may tick) */
    t0 = time(NULL);
    for (int s = 0; s < 2; s++) {
        cli_aside_stamp(t0 + s, stamp);
        ck_assert_int_eq(cli_aside_name(tu_path("d"), stamp, 1, out, sizeof(out)), 0);
        ck_assert_int_eq(mkdir(out, 0700), 0);
        ck_assert_int_eq(cli_aside_name(tu_path("d"), stamp, 2, two, sizeof(two)), 0);
        ck_assert_int_eq(symlink("/nonexistent", two), 0);
    }
    ck_assert_int_eq(cli_aside_pick(tu_path("d"), out, sizeof(out)), 0);
    ck_assert(!tu_exists(out));
    ck_assert_str_eq(out + strlen(out) - 2, "-3");
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_common_and_tool_options);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_aside_names);
    tcase_add_test(tc, test_aside_pick);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(cli_suite());
}
