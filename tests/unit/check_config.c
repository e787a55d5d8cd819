/*
 * check_config.c -- unit tests for lib/config: the "key = value" file (comments,
 * quotes, spaces, malformed lines), where the file comes from, flag > env > file,
 * integer / duration parsing, and the refusal of a config file others could change.
 */
#include "config.h"
#include "testutil.h"

#include <unistd.h>

static void cfg_setup(void)
{
    tu_setup();
    unsetenv("RAGSAFE_CONFIG");
    unsetenv("RAGSAFE_TEST_REPO");
}

static config *load_text(const char *text)
{
    tu_write_str(tu_path("ragsafe.conf"), text);
    return config_load(tu_path("ragsafe.conf"));
}

START_TEST(test_parse_file)
{
    config *cfg = load_text("# ragsafe configuration\n"
                            "\n"
                            "repo = /backups/pg\n"
                            "   compress-level=5   \n"
                            "\tlabel\t=\tnightly\t\n"
                            "    # an indented comment\n"
                            "name = \"with spaces # and a hash\"\n"
                            "empty-quoted = \"\"\n"
                            "some-unknown-key = allowed\n");

    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(config_get(cfg, "repo"), "/backups/pg");
    ck_assert_str_eq(config_get(cfg, "compress-level"), "5");
    ck_assert_str_eq(config_get(cfg, "label"), "nightly");
    ck_assert_str_eq(config_get(cfg, "name"), "with spaces # and a hash");
    ck_assert_str_eq(config_get(cfg, "empty-quoted"), "");
    ck_assert_str_eq(config_get(cfg, "some-unknown-key"), "allowed");
    ck_assert_ptr_null(config_get(cfg, "missing"));
    ck_assert_ptr_null(config_get(cfg, "# ragsafe configuration"));
    ck_assert_ptr_null(config_get(cfg, "Repo")); /* keys are exact */
    config_free(cfg);
}
END_TEST

/* '#' starts a comment after a value too (outside quotes). */
START_TEST(test_trailing_comment)
{
    config *cfg = load_text("repo = /backups/pg # the repository\n"
                            "level = 3# tight\n"
                            "quoted = \"a # b\" # c\n");

    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(config_get(cfg, "repo"), "/backups/pg");
    ck_assert_str_eq(config_get(cfg, "level"), "3");
    ck_assert_str_eq(config_get(cfg, "quoted"), "a # b");
    config_free(cfg);
}
END_TEST

START_TEST(test_no_final_newline)
{
    config *cfg = load_text("a = 1\nb = two");

    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(config_get(cfg, "a"), "1");
    ck_assert_str_eq(config_get(cfg, "b"), "two");
    config_free(cfg);
}
END_TEST

START_TEST(test_empty_file)
{
    config *cfg = load_text("");

    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(config_get(cfg, "repo"));
    config_free(cfg);
    config_free(NULL);
}
END_TEST

static const char *malformed[] = {
    "repo = /x\njust some words\n",
    "repo /backups/pg\n",
    "= value\n",
    "name = \"unterminated\n",
    "name = \"a\" trailing\n",
};

START_TEST(test_malformed)
{
    ck_assert_msg(load_text(malformed[_i]) == NULL, "accepted \"%s\"", malformed[_i]);
}
END_TEST

START_TEST(test_missing_explicit)
{
    ck_assert_ptr_null(config_load(tu_path("no-such.conf")));
    /* $RAGSAFE_CONFIG names a file explicitly too */
    setenv("RAGSAFE_CONFIG", tu_path("no-such.conf"), 1);
    ck_assert_ptr_null(config_load(NULL));
}
END_TEST

START_TEST(test_env_config_path)
{
    config *cfg;

    tu_write_str(tu_path("env.conf"), "repo = /from/env/file\n");
    setenv("RAGSAFE_CONFIG", tu_path("env.conf"), 1);
    cfg = config_load(NULL);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(config_get(cfg, "repo"), "/from/env/file");
    config_free(cfg);
}
END_TEST

/* No path, no $RAGSAFE_CONFIG, the default file absent: not an error. */
START_TEST(test_default_absent)
{
    config *cfg;

    if (tu_exists(CONFIG_DEFAULT_PATH))
        return; /* a machine with a real config: nothing to check here */
    cfg = config_load(NULL);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(config_get(cfg, "repo"));
    config_free(cfg);
}
END_TEST

START_TEST(test_resolve_order)
{
    config *cfg = load_text("repo = /from/file\n");

    ck_assert_ptr_nonnull(cfg);
    setenv("RAGSAFE_TEST_REPO", "/from/env", 1);
    ck_assert_str_eq(config_resolve("/from/flag", "RAGSAFE_TEST_REPO", cfg, "repo"),
                     "/from/flag");
    ck_assert_str_eq(config_resolve(NULL, "RAGSAFE_TEST_REPO", cfg, "repo"), "/from/env");
    setenv("RAGSAFE_TEST_REPO", "", 1); /* set but empty: skipped */
    ck_assert_str_eq(config_resolve(NULL, "RAGSAFE_TEST_REPO", cfg, "repo"), "/from/file");
    unsetenv("RAGSAFE_TEST_REPO");
    ck_assert_str_eq(config_resolve(NULL, "RAGSAFE_TEST_REPO", cfg, "repo"), "/from/file");
    ck_assert_str_eq(config_resolve(NULL, NULL, cfg, "repo"), "/from/file");
    ck_assert_ptr_null(config_resolve(NULL, "RAGSAFE_TEST_REPO", cfg, "other"));
    ck_assert_ptr_null(config_resolve(NULL, "RAGSAFE_TEST_REPO", NULL, "repo"));
    setenv("RAGSAFE_TEST_REPO", "/from/env", 1);
    ck_assert_str_eq(config_resolve(NULL, "RAGSAFE_TEST_REPO", NULL, "repo"), "/from/env");
    /* an empty flag was given on purpose: it wins */
    ck_assert_str_eq(config_resolve("", "RAGSAFE_TEST_REPO", cfg, "repo"), "");
    config_free(cfg);
}
END_TEST

/* load_err -- config_load(path) with stderr captured into *err (malloc'd). */
static config *load_err(const char *path, char **err)
{
    int saved = dup(2), fd = open(tu_path("stderr"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    config *cfg;

    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, 2), 2);
    close(fd);
    cfg = config_load(path);
    ck_assert_int_eq(dup2(saved, 2), 2);
    close(saved);
    *err = tu_read_file(tu_path("stderr"), NULL);
    ck_assert_ptr_nonnull(*err);
    return cfg;
}

/* A config file group or others can write, or owned by another user, is refused with
 * the fix named; 0644 or 0600 owned by root (or the running user) is fine. */
static const struct {
    mode_t mode;
    uid_t uid;
    const char *hint;
} perms[] = {
    {0664, 0, "chmod go-w"},
    {0646, 0, "chmod go-w"},
    {0666, 0, "chmod go-w"},
    {0620, 0, "chmod go-w"},
    {0644, 65534, "chown root"},
    {0600, 65534, "chown root"},
    {0644, 0, NULL},
    {0600, 0, NULL},
    {0400, 0, NULL},
};

START_TEST(test_file_permissions)
{
    const char *p = tu_path("ragsafe.conf");
    char *err = NULL;
    config *cfg;

    if (geteuid() != 0 && perms[_i].uid != 0)
        return; /* chown needs root; the suite runs as root in CI */
    tu_write_str(p, "repo = /backups/pg\nstop-cmd = systemctl stop x\n");
    ck_assert_int_eq(chown(p, perms[_i].uid ? perms[_i].uid : geteuid(), (gid_t)-1), 0);
    ck_assert_int_eq(chmod(p, perms[_i].mode), 0);
    cfg = load_err(p, &err);
    if (perms[_i].hint) {
        ck_assert_msg(cfg == NULL, "mode %04o uid %u accepted", (unsigned)perms[_i].mode,
                      (unsigned)perms[_i].uid);
        ck_assert_ptr_nonnull(strstr(err, "refusing config file"));
        ck_assert_msg(strstr(err, perms[_i].hint) != NULL, "no \"%s\" in: %s", perms[_i].hint, err);
    } else {
        ck_assert_msg(cfg != NULL, "mode %04o refused: %s", (unsigned)perms[_i].mode, err);
        ck_assert_str_eq(config_get(cfg, "repo"), "/backups/pg");
    }
    config_free(cfg);
    free(err);
}
END_TEST

/* A directory on the path that group or others can write is refused (they could
 * replace the file), unless it is sticky like /tmp. */
START_TEST(test_dir_permissions)
{
    char sub[PATH_MAX], conf[PATH_MAX + 32], *err = NULL;
    config *cfg;

    snprintf(sub, sizeof(sub), "%s", tu_path("etc"));
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(conf, sizeof(conf), "%s/ragsafe.conf", sub);
    tu_write_str(conf, "repo = /r\n");
    chmod(conf, 0600);
    cfg = load_err(conf, &err);
    ck_assert_ptr_nonnull(cfg);
    config_free(cfg);
    free(err);

    ck_assert_int_eq(chmod(sub, 0775), 0);
    cfg = load_err(conf, &err);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(err, "is writable by group or others"));
    ck_assert_ptr_nonnull(strstr(err, "chmod go-w"));
    ck_assert_ptr_nonnull(strstr(err, sub));
    free(err);

    /* the parent of the parent counts too */
    ck_assert_int_eq(chmod(sub, 0755), 0);
    ck_assert_int_eq(chmod(tu_dir, 0777), 0);
    cfg = load_err(conf, &err);
    ck_assert_ptr_null(cfg);
    free(err);

    /* sticky, like /tmp: others cannot replace what they do not own */
    ck_assert_int_eq(chmod(tu_dir, 01777), 0);
    cfg = load_err(conf, &err);
    ck_assert_msg(cfg != NULL, "sticky directory refused: %s", err);
    config_free(cfg);
    free(err);
    chmod(tu_dir, 0700);
}
END_TEST

/* /dev/null is an empty config (tests and scripts use --config /dev/null). */
START_TEST(test_dev_null)
{
    config *cfg = config_load("/dev/null");
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(config_get(cfg, "repo"));
    config_free(cfg);
}
END_TEST

START_TEST(test_parse_int)
{
    long v = -99;

    ck_assert_int_eq(config_parse_int("level", "42", 1, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(config_parse_int("level", "1", 1, 100, &v), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(config_parse_int("level", "100", 1, 100, &v), 0);
    ck_assert_int_eq(v, 100);
    ck_assert_int_eq(config_parse_int("n", "-5", -10, 10, &v), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(config_parse_int("n", "0", 0, 0, &v), 0);
    ck_assert_int_eq(v, 0);
}
END_TEST

static const char *bad_ints[] = {
    "", "abc", "12x", "1.5", "0x10", "101", "0", "-1", "99999999999999999999", "4 2",
};

START_TEST(test_parse_int_bad)
{
    long v = 7;

    ck_assert_msg(config_parse_int("level", bad_ints[_i], 1, 100, &v) == -1, "accepted \"%s\"",
                  bad_ints[_i]);
}
END_TEST

START_TEST(test_parse_duration)
{
    static const struct {
        const char *s;
        int64_t secs;
    } ok[] = {
        {"90", 90},       {"0", 0},          {"30s", 30},         {"15m", 900},
        {"12h", 43200},   {"7d", 604800},    {"2w", 1209600},     {"1d", 86400},
        {"365d", 31536000},
    };

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        int64_t v = -1;

        ck_assert_msg(config_parse_duration("retention", ok[i].s, &v) == 0, "refused \"%s\"",
                      ok[i].s);
        ck_assert_int_eq(v, ok[i].secs);
    }
}
END_TEST

static const char *bad_durations[] = {
    "", "abc", "5x", "m", "5mm", "1.5h", "-1d", "7 d", "d7", "99999999999999999999w",
    "9999999999999999w",
};

START_TEST(test_parse_duration_bad)
{
    int64_t v = 5;

    ck_assert_msg(config_parse_duration("retention", bad_durations[_i], &v) == -1,
                  "accepted \"%s\" as %lld", bad_durations[_i], (long long)v);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("file");

    tcase_add_checked_fixture(tc, cfg_setup, tu_teardown);
    tcase_add_test(tc, test_parse_file);
    tcase_add_test(tc, test_trailing_comment);
    tcase_add_test(tc, test_no_final_newline);
    tcase_add_test(tc, test_empty_file);
    tcase_add_loop_test(tc, test_malformed, 0, (int)ARRAY_LEN(malformed));
    tcase_add_test(tc, test_missing_explicit);
    tcase_add_test(tc, test_env_config_path);
    tcase_add_test(tc, test_default_absent);
    tcase_add_test(tc, test_resolve_order);
    tcase_add_loop_test(tc, test_file_permissions, 0, (int)ARRAY_LEN(perms));
    tcase_add_test(tc, test_dir_permissions);
    tcase_add_test(tc, test_dev_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_test(tc, test_parse_int);
    tcase_add_loop_test(tc, test_parse_int_bad, 0, (int)ARRAY_LEN(bad_ints));
    tcase_add_test(tc, test_parse_duration);
    tcase_add_loop_test(tc, test_parse_duration_bad, 0, (int)ARRAY_LEN(bad_durations));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(config_suite());
}
