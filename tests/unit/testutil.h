/*
 * testutil.h -- shared helpers for the check suites in tests/unit (header only).
 *
 * Every suite runs its tests with CK_FORK, each in a fresh temp directory:
 *     tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
 * tu_setup() makes "<base>/t.XXXXXX" and chdir()s into it; tu_dir holds its absolute
 * path and tu_path() joins a name onto it. tu_teardown() removes it again. The
 * fixture runs inside the forked child, so nothing leaks between tests. A failed
 * assertion ends the child before its teardown, so tu_main() makes the base
 * "/tmp/ragsafe-unit.XXXXXX" before the run and removes it, whatever is left in it,
 * afterwards.
 *
 * tu_write_file / tu_read_file / tu_exists do plain-syscall file I/O, independent of
 * the lib modules under test. tu_fill_random makes reproducible pseudo-random bytes.
 * tu_main() runs one suite and maps the result to the exit status tests/run.sh reads.
 */
#ifndef RAGSAFE_TESTUTIL_H
#define RAGSAFE_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

static char tu_dir[512];
static char tu_base[256];

static inline int tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        (void)rmdir(path);
    else
        (void)unlink(path);
    return 0;
}

/* tu_rm_rf -- remove a tree with nftw (never follows symlinks); absent is fine. */
static inline void tu_rm_rf(const char *path)
{
    (void)nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void tu_setup(void)
{
    char tmpl[300];

    snprintf(tmpl, sizeof(tmpl), "%s/t.XXXXXX", tu_base[0] ? tu_base : "/tmp");
    umask(022);
    if (mkdtemp(tmpl) == NULL)
        ck_abort_msg("mkdtemp: %s", strerror(errno));
    snprintf(tu_dir, sizeof(tu_dir), "%s", tmpl);
    if (chdir(tu_dir) != 0)
        ck_abort_msg("chdir %s: %s", tu_dir, strerror(errno));
}

static inline void tu_teardown(void)
{
    if (tu_dir[0] != '\0') {
        (void)chdir("/");
        tu_rm_rf(tu_dir);
        tu_dir[0] = '\0';
    }
}

/* tu_path -- "<tu_dir>/<name>" in a static ring of buffers (8 live at a time). */
static inline const char *tu_path(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, PATH_MAX, "%s/%s", tu_dir, name);
    return b;
}

/* tu_repo -- tu_path(name), made as a directory first (mode 0750, an existing one is
 * fine): storage_open never creates a repository's root. */
static inline const char *tu_repo(const char *name)
{
    const char *p = tu_path(name);

    if (mkdir(p, 0750) != 0 && errno != EEXIST)
        ck_abort_msg("mkdir %s: %s", p, strerror(errno));
    return p;
}

static inline void tu_write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char *p = buf;

    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        ck_assert_msg(n > 0, "write %s: %s", path, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    ck_assert_int_eq(close(fd), 0);
}

static inline void tu_write_str(const char *path, const char *s)
{
    tu_write_file(path, s, strlen(s));
}

/* tu_read_file -- the whole file, malloc'd and NUL-terminated; NULL when it cannot be
 * opened (errno set). */
static inline char *tu_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    size_t got = 0;

    if (fd < 0)
        return NULL;
    ck_assert_int_eq(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        ck_assert_msg(n >= 0, "read %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

static inline int tu_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* tu_count_entries -- number of directory entries other than "." and ".."; -1 if the
 * directory cannot be opened. */
static inline int tu_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* tu_fill_random -- xorshift64* bytes from seed: incompressible and reproducible. */
static inline void tu_fill_random(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
        }
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> (8 * (i % 8)));
    }
}

/* tu_fill_text -- compressible bytes: numbered lines of repetitive text. */
static inline void tu_fill_text(void *buf, size_t len)
{
    char *p = buf;
    size_t off = 0;
    unsigned line = 0;

    while (off < len) {
        char tmp[96];
        int n = snprintf(tmp, sizeof(tmp), "line %08u: the quick brown fox jumps over it\n",
                         line++);
        size_t k = (size_t)n < len - off ? (size_t)n : len - off;
        memcpy(p + off, tmp, k);
        off += k;
    }
}

/* tu_main -- run one suite (fork mode comes from CK_FORK) and return the exit status. */
static inline int tu_main(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    log_init("unit");
    snprintf(tu_base, sizeof(tu_base), "/tmp/ragsafe-unit.XXXXXX");
    if (mkdtemp(tu_base) == NULL || chmod(tu_base, 0755) != 0) {
        fprintf(stderr, "could not make \"%s\": %s\n", tu_base, strerror(errno));
        return EXIT_FAILURE;
    }
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_rm_rf(tu_base);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
