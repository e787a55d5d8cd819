/*
 * check_strbuf.c -- unit tests for lib/strbuf: appends that grow past every initial
 * size, formatted appends longer than any fixed buffer, quoting, detach/reset/release,
 * and the out-of-memory path (a failed append reports -1 and leaves the string whole).
 */
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "strbuf.h"
#include "testutil.h"

START_TEST(test_init_release)
{
    strbuf sb;
    strbuf_init(&sb);
    ck_assert_ptr_nonnull(sb.buf);
    ck_assert_str_eq(sb.buf, "");
    ck_assert_uint_eq(sb.len, 0);
    strbuf_release(&sb);
    strbuf_release(&sb); /* twice is fine */
    ck_assert_str_eq(sb.buf, "");
}
END_TEST

START_TEST(test_append_grows)
{
    strbuf sb;
    strbuf_init(&sb);
    for (int i = 0; i < 10000; i++)
        ck_assert_int_eq(strbuf_append(&sb, "abc"), 0);
    ck_assert_uint_eq(sb.len, 30000);
    ck_assert_uint_eq(strlen(sb.buf), 30000);
    ck_assert(memcmp(sb.buf + 29997, "abc", 4) == 0);
    ck_assert_int_eq(strbuf_appendn(&sb, "xyz", 2), 0);
    ck_assert_str_eq(sb.buf + 30000, "xy");
    strbuf_reset(&sb);
    ck_assert_str_eq(sb.buf, "");
    ck_assert_int_eq(strbuf_append(&sb, "again"), 0);
    ck_assert_str_eq(sb.buf, "again");
    strbuf_release(&sb);
}
END_TEST

/* a formatted append far longer than any fixed buffer the old code used */
START_TEST(test_appendf_long)
{
    strbuf sb;
    char big[20000];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    strbuf_init(&sb);
    ck_assert_int_eq(strbuf_appendf(&sb, "%s=%d\n", "port", 5433), 0);
    ck_assert_int_eq(strbuf_appendf(&sb, "<%s>", big), 0);
    ck_assert_uint_eq(sb.len, strlen("port=5433\n") + sizeof(big) - 1 + 2);
    ck_assert(strncmp(sb.buf, "port=5433\n<pp", 13) == 0);
    ck_assert_str_eq(sb.buf + sb.len - 2, "p>");
    ck_assert_int_eq(strbuf_appendf(&sb, "%s", ""), 0);
    ck_assert_uint_eq(sb.len, strlen(sb.buf));
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_quote)
{
    strbuf sb;
    strbuf_init(&sb);
    ck_assert_int_eq(strbuf_append_shell_quoted(&sb, "it's a 'x'"), 0);
    ck_assert_str_eq(sb.buf, "'it'\\''s a '\\''x'\\'''");
    strbuf_reset(&sb);
    ck_assert_int_eq(strbuf_append_shell_quoted(&sb, ""), 0);
    ck_assert_str_eq(sb.buf, "''");
    strbuf_reset(&sb);
    ck_assert_int_eq(strbuf_append_conf_quoted(&sb, "a'b''"), 0);
    ck_assert_str_eq(sb.buf, "'a''b'''''");
    strbuf_reset(&sb);
    /* no length limit: a 10000-byte value quoted whole */
    char big[10001];
    memset(big, '\'', 10000);
    big[10000] = '\0';
    ck_assert_int_eq(strbuf_append_conf_quoted(&sb, big), 0);
    ck_assert_uint_eq(sb.len, 20002);
    ck_assert_int_eq(strbuf_append_shell_quoted(&sb, big), 0);
    ck_assert_uint_eq(sb.len, 20002 + 40002);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_detach)
{
    strbuf sb;
    size_t len = 99;
    strbuf_init(&sb);
    char *s = strbuf_detach(&sb, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    ck_assert_uint_eq(len, 0);
    free(s);
    ck_assert_int_eq(strbuf_append(&sb, "hello"), 0);
    s = strbuf_detach(&sb, &len);
    ck_assert_str_eq(s, "hello");
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(sb.buf, "");
    free(s);
    strbuf_release(&sb);
}
END_TEST

/* a size that cannot be allocated: -1, the string unchanged (not truncated) */
START_TEST(test_oom_overflow)
{
    strbuf sb;
    strbuf_init(&sb);
    ck_assert_int_eq(strbuf_append(&sb, "kept"), 0);
    ck_assert_int_eq(strbuf_grow(&sb, SIZE_MAX - 2), -1);
    ck_assert_str_eq(sb.buf, "kept");
    ck_assert_int_eq(strbuf_grow(&sb, SIZE_MAX / 2), -1);
    ck_assert_str_eq(sb.buf, "kept");
    ck_assert_uint_eq(sb.len, 4);
    strbuf_release(&sb);
}
END_TEST

/* current address-space size from /proc/self/status (VmSize, kB), in bytes */
static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

/* realloc really failing (an address-space limit 48 MiB above what the process uses):
 * appendf and the quoting report -1 and leave the string as it was. Not under ASan,
 * whose shadow memory needs an unlimited address space. */
START_TEST(test_oom_rlimit)
{
#ifndef __SANITIZE_ADDRESS__
    strbuf sb;
    size_t lim = vm_size() + ((size_t)48 << 20);
    struct rlimit rl = {lim, lim};
    char *big = malloc(1 << 20);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', (1 << 20) - 1);
    big[(1 << 20) - 1] = '\0';
    strbuf_init(&sb);
    ck_assert_int_eq(strbuf_append(&sb, "kept"), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    ck_assert_int_eq(strbuf_appendf(&sb, "%*s", 64 << 20, "x"), -1); /* more than the limit leaves */
    ck_assert_str_eq(sb.buf, "kept");
    ck_assert_uint_eq(sb.len, 4);
    int failed = 0;
    for (int i = 0; i < 200 && !failed; i++)
        failed = strbuf_append_shell_quoted(&sb, big) != 0;
    ck_assert_int_eq(failed, 1);
    ck_assert_uint_eq(sb.len, strlen(sb.buf));
    ck_assert_uint_eq((sb.len - 4) % ((1 << 20) + 1), 0); /* whole words only */
    free(big);
    strbuf_release(&sb);
#endif
}
END_TEST

static Suite *strbuf_suite(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("strbuf");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_init_release);
    tcase_add_test(tc, test_append_grows);
    tcase_add_test(tc, test_appendf_long);
    tcase_add_test(tc, test_quote);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_oom_overflow);
    tcase_add_test(tc, test_oom_rlimit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(strbuf_suite());
}
