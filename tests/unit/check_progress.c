/*
 * check_progress.c -- unit tests for lib/progress: the units, rates, ETAs and
 * durations it prints, the report line in each of its shapes, and what reaches stderr
 * for each option on a file (nothing unless --progress; then plain lines) and on a
 * terminal (a pseudo-terminal: one line redrawn with "\r" and clear-to-EOL, rate
 * limited, ended by a newline; a log message first clears it).
 */
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "progress.h"
#include "testutil.h"

START_TEST(test_bytes)
{
    char b[PROGRESS_FMT_LEN];

    ck_assert_str_eq(progress_fmt_bytes(b, 0), "0 B");
    ck_assert_str_eq(progress_fmt_bytes(b, 1023), "1023 B");
    ck_assert_str_eq(progress_fmt_bytes(b, 1024), "1.0 KiB");
    ck_assert_str_eq(progress_fmt_bytes(b, 1536), "1.5 KiB");
    ck_assert_str_eq(progress_fmt_bytes(b, 86.0 * 1024 * 1024), "86 MiB");
    ck_assert_str_eq(progress_fmt_bytes(b, 1.2 * 1024 * 1024 * 1024), "1.2 GiB");
    /* 9.97 MiB rounds to 10, so it gets no decimal */
    ck_assert_str_eq(progress_fmt_bytes(b, 9.97 * 1024 * 1024), "10 MiB");
    ck_assert_str_eq(progress_fmt_bytes(b, 1023.0 * 1024), "1023 KiB");
    ck_assert_str_eq(progress_fmt_bytes(b, 3.0 * 1024 * 1024 * 1024 * 1024), "3.0 TiB");
    ck_assert_str_eq(progress_fmt_bytes(b, -5), "0 B");
}
END_TEST

START_TEST(test_eta_duration)
{
    char b[PROGRESS_FMT_LEN];

    ck_assert_str_eq(progress_fmt_eta(b, 0), "0:00");
    ck_assert_str_eq(progress_fmt_eta(b, 26.4), "0:26");
    ck_assert_str_eq(progress_fmt_eta(b, 725), "12:05");
    ck_assert_str_eq(progress_fmt_eta(b, 3723), "1:02:03");
    ck_assert_str_eq(progress_fmt_eta(b, -1), "--:--");
    ck_assert_str_eq(progress_fmt_eta(b, 1e12), "--:--");
    ck_assert_str_eq(progress_fmt_duration(b, 0.31), "0.3 s");
    ck_assert_str_eq(progress_fmt_duration(b, 14.2), "14.2 s");
    ck_assert_str_eq(progress_fmt_duration(b, 95), "95.0 s");
    ck_assert_str_eq(progress_fmt_duration(b, 312), "312 s");
    ck_assert_str_eq(progress_fmt_duration(b, 725), "12 min 5 s");
    ck_assert_str_eq(progress_fmt_duration(b, 3723), "1 h 2 min");
}
END_TEST

START_TEST(test_format)
{
    char line[256];
    const uint64_t MiB = 1024 * 1024;

    /* 35 % of 100 MiB at 10 MiB/s: 6.5 s left */
    progress_format(line, sizeof(line), "restore", 35 * MiB, 100 * MiB, 3.5, 0);
    ck_assert_str_eq(line, "restore: 35 MiB of 100 MiB (35%), 10 MiB/s, ETA 0:07");
    /* total unknown: no percentage, no ETA */
    progress_format(line, sizeof(line), "verify", 35 * MiB, 0, 3.5, 0);
    ck_assert_str_eq(line, "verify: 35 MiB, 10 MiB/s");
    /* too early for a rate */
    progress_format(line, sizeof(line), "backup", 1 * MiB, 100 * MiB, 0.1, 0);
    ck_assert_str_eq(line, "backup: 1.0 MiB of 100 MiB (1%)");
    progress_format(line, sizeof(line), "backup", 1 * MiB, 0, 0.1, 0);
    ck_assert_str_eq(line, "backup: 1.0 MiB");
    /* done past an estimate that was short: the total follows it */
    progress_format(line, sizeof(line), "backup", 120 * MiB, 100 * MiB, 12, 0);
    ck_assert_str_eq(line, "backup: 120 MiB of 120 MiB (100%), 10 MiB/s, ETA 0:00");
    /* the last line */
    progress_format(line, sizeof(line), "backup", (uint64_t)(1.2 * 1024 * MiB), 0, 14.2, 1);
    ck_assert_str_eq(line, "backup: 1.2 GiB in 14.2 s (87 MiB/s)");
    progress_format(line, sizeof(line), "backup", 10, 0, 0.01, 1);
    ck_assert_str_eq(line, "backup: 10 B in 0.0 s");
    /* a short buffer truncates, never overflows */
    progress_format(line, 8, "restore", 35 * MiB, 100 * MiB, 3.5, 0);
    ck_assert_str_eq(line, "restore");
}
END_TEST

/* stderr into the file "err" for the length of fn; returns what was written */
static char *capture_stderr(void (*fn)(int), int opt)
{
    int saved = dup(2), fd = open("err", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *buf = NULL;
    size_t len = 0;

    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
    fn(opt);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    buf = tu_read_file("err", &len);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static void run_work(int opt)
{
    progress p;

    progress_init(&p, opt, "work", 1000);
    for (int i = 0; i < 10; i++)
        progress_add(&p, 100);
    progress_finish(&p);
    progress_release(&p);
}

START_TEST(test_not_a_terminal)
{
    char *s;

    s = capture_stderr(run_work, PROGRESS_AUTO);
    ck_assert_str_eq(s, ""); /* nothing unless asked */
    free(s);
    s = capture_stderr(run_work, PROGRESS_OFF);
    ck_assert_str_eq(s, "");
    free(s);
    /* asked: plain lines (here only the last one: the work took under the interval) */
    log_init("prog");
    s = capture_stderr(run_work, PROGRESS_ON);
    ck_assert_msg(strncmp(s, "prog: progress: work: 1000 B in ", 32) == 0, "got \"%s\"", s);
    ck_assert_ptr_null(strchr(s, '\r'));
    ck_assert_ptr_nonnull(strchr(s, '\n'));
    ck_assert_ptr_eq(strchr(s, '\n'), s + strlen(s) - 1); /* one line */
    free(s);
}
END_TEST

/* stderr on a pseudo-terminal: what the slave side received */
static char *on_pty(void (*fn)(int), int opt)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY), s, saved = dup(2), fl;
    static char buf[65536];
    size_t len = 0;
    ssize_t n;
    struct termios tio;

    ck_assert_int_ge(m, 0);
    ck_assert_int_eq(grantpt(m), 0);
    ck_assert_int_eq(unlockpt(m), 0);
    s = open(ptsname(m), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(s, 0);
    /* raw output: "\n" stays "\n" */
    ck_assert_int_eq(tcgetattr(s, &tio), 0);
    cfmakeraw(&tio);
    ck_assert_int_eq(tcsetattr(s, TCSANOW, &tio), 0);
    fflush(stderr);
    dup2(s, 2);
    close(s);
    fn(opt);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fl = fcntl(m, F_GETFL);
    fcntl(m, F_SETFL, fl | O_NONBLOCK);
    while (len < sizeof(buf) - 1 && (n = read(m, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(m);
    return buf;
}

static void run_slow(int opt)
{
    progress p;

    progress_init(&p, opt, "work", 4000);
    for (int i = 0; i < 40; i++) {
        progress_add(&p, 100);
        if (i == 20)
            log_error("oops");
        usleep(25 * 1000); /* 1 s in all: about 4 redraws */
    }
    progress_finish(&p);
    progress_release(&p);
}

START_TEST(test_terminal)
{
    const char *s;
    int redraws = 0;

    log_init("prog");
    s = on_pty(run_slow, PROGRESS_AUTO);
    for (const char *q = s; (q = strstr(q, "\rwork: ")) != NULL; q++)
        redraws++;
    /* rate limited: 40 updates over about 1 s give about 4 redraws, plus the last one */
    ck_assert_msg(redraws >= 2 && redraws <= 8, "%d redraws in \"%s\"", redraws, s);
    ck_assert_ptr_nonnull(strstr(s, "\033[K"));
    /* the error message starts a line of its own: the line was cleared before it */
    ck_assert_ptr_nonnull(strstr(s, "\r\033[Kprog: error: oops\n"));
    /* the last report, ended by a newline */
    ck_assert_ptr_nonnull(strstr(s, "\rwork: 3.9 KiB in "));
    ck_assert_int_eq(s[strlen(s) - 1], '\n');
    ck_assert_ptr_nonnull(strstr(s, "of 3.9 KiB ("));

    s = on_pty(run_slow, PROGRESS_OFF);
    ck_assert_msg(strstr(s, "work:") == NULL, "got \"%s\"", s);
    ck_assert_ptr_nonnull(strstr(s, "prog: error: oops\n"));
}
END_TEST

static Suite *progress_suite(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("progress");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_bytes);
    tcase_add_test(tc, test_eta_duration);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_not_a_terminal);
    tcase_add_test(tc, test_terminal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(progress_suite());
}
