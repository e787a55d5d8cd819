/*
 * check_uring.c -- unit tests for lib/uring: the chunked reader and writer return and
 * store a file's exact bytes at every size around the chunk boundaries, the fault
 * hook sees and replaces results, on both the io_uring path and the fallback path
 * (RAGSAFE_NO_URING=1 before uring_new()).
 */
#include <liburing.h>

#include "testutil.h"
#include "uring.h"

#define CHUNK 65536

static const size_t sizes[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 37 * CHUNK + 5};

/* kernel_has_uring -- whether io_uring_setup works here, so the io_uring path can be
 * required to be active rather than silently falling back. */
static int kernel_has_uring(void)
{
    struct io_uring ring;

    if (io_uring_queue_init(4, &ring, 0) != 0)
        return 0;
    io_uring_queue_exit(&ring);
    return 1;
}

/* open_path -- uring on the io_uring path (use_fallback 0) or the fallback path. */
static uring *open_path(int use_fallback)
{
    uring *ur;

    if (use_fallback)
        setenv("RAGSAFE_NO_URING", "1", 1);
    else
        unsetenv("RAGSAFE_NO_URING");
    ur = uring_new(16);
    ck_assert_ptr_nonnull(ur);
    if (use_fallback)
        ck_assert_int_eq(uring_active(ur), 0);
    else if (kernel_has_uring())
        ck_assert_int_eq(uring_active(ur), 1);
    return ur;
}

static void fault_teardown(void)
{
    uring_set_fault(NULL);
    tu_teardown();
}

/* read_all -- the whole of fd from start through a reader; returns -errno or the
 * byte count, data in *out (malloc'd). */
static ssize_t read_all(uring *ur, int fd, off_t start, size_t chunk, unsigned depth,
                        uint8_t **out)
{
    uring_reader *r = uring_reader_new(ur, fd, start, chunk, depth);
    size_t len = 0, cap = 1;
    uint8_t *buf = malloc(cap);
    const void *p;
    ssize_t n;

    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(buf);
    while ((n = uring_reader_next(r, &p)) > 0) {
        ck_assert_uint_le((size_t)n, chunk);
        if (len + (size_t)n > cap) {
            while (cap < len + (size_t)n)
                cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        memcpy(buf + len, p, (size_t)n);
        len += (size_t)n;
    }
    uring_reader_free(r);
    *out = buf;
    return n < 0 ? n : (ssize_t)len;
}

START_TEST(test_reader_sizes)
{
    int fallback = _i % 2;
    size_t len = sizes[_i / 2];
    uint8_t *data = malloc(len + 1), *got = NULL;
    uring *ur = open_path(fallback);
    int fd;
    ssize_t n;

    tu_fill_random(data, len, len);
    tu_write_file(tu_path("f"), data, len);
    fd = open(tu_path("f"), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    n = read_all(ur, fd, 0, CHUNK, 4, &got);
    ck_assert_int_eq(n, (ssize_t)len);
    if (len > 0)
        ck_assert_mem_eq(got, data, len);
    free(got);

    /* depth 1 and an odd chunk size give the same bytes */
    n = read_all(ur, fd, 0, 4093, 1, &got);
    ck_assert_int_eq(n, (ssize_t)len);
    if (len > 0)
        ck_assert_mem_eq(got, data, len);
    free(got);

    /* from a start offset */
    if (len > 10) {
        n = read_all(ur, fd, 10, CHUNK, 3, &got);
        ck_assert_int_eq(n, (ssize_t)(len - 10));
        ck_assert_mem_eq(got, data + 10, len - 10);
        free(got);
    }
    close(fd);
    uring_free(ur);
    free(data);
}
END_TEST

/* write_all -- data through a writer in piece-sized calls; finish's result. */
static int write_all(uring *ur, int fd, const uint8_t *data, size_t len, size_t piece,
                     int do_fsync)
{
    uring_writer *w = uring_writer_new(ur, fd, CHUNK, 4);
    size_t off = 0;
    int ret = 0;

    ck_assert_ptr_nonnull(w);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;

        ret = uring_writer_write(w, data + off, n);
        if (ret != 0)
            break;
        off += n;
        ck_assert_uint_eq(uring_writer_offset(w), off);
    }
    if (ret == 0)
        ret = uring_writer_finish(w, do_fsync);
    else
        (void)uring_writer_finish(w, 0);
    uring_writer_free(w);
    return ret;
}

START_TEST(test_writer_sizes)
{
    int fallback = _i % 2;
    size_t len = sizes[_i / 2];
    uint8_t *data = malloc(len + 1);
    uring *ur = open_path(fallback);
    size_t pieces[] = {len ? len : 1, 1000, CHUNK, 3 * CHUNK + 7};

    tu_fill_random(data, len, len + 99);
    for (size_t k = 0; k < ARRAY_LEN(pieces); k++) {
        int fd = open(tu_path("w"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        size_t got_len;
        char *got;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write_all(ur, fd, data, len, pieces[k], (int)(k % 2)), 0);
        close(fd);
        got = tu_read_file(tu_path("w"), &got_len);
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(got_len, len);
        if (len > 0)
            ck_assert_mem_eq(got, data, len);
        free(got);
    }
    uring_free(ur);
    free(data);
}
END_TEST

START_TEST(test_fsync)
{
    uring *ur = open_path(_i);
    int fd = open(tu_path("s"), O_WRONLY | O_CREAT, 0644);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    ck_assert_int_eq(uring_fsync(ur, fd), 0);
    close(fd);
    /* a closed descriptor is -EBADF, not a report or a crash */
    ck_assert_int_eq(uring_fsync(ur, fd), -EBADF);
    uring_free(ur);
}
END_TEST

/* A read error on the reader's fd surfaces as -errno (here: a directory). */
START_TEST(test_reader_error)
{
    uring *ur = open_path(_i);
    int fd = open(tu_dir, O_RDONLY | O_DIRECTORY);
    uint8_t *got = NULL;
    ssize_t n;

    ck_assert_int_ge(fd, 0);
    n = read_all(ur, fd, 0, CHUNK, 2, &got);
    ck_assert_int_eq(n, -EISDIR);
    free(got);
    close(fd);
    uring_free(ur);
}
END_TEST

/* Writing to a read-only fd fails the writer with -EBADF. */
START_TEST(test_writer_error)
{
    uring *ur = open_path(_i);
    uint8_t data[CHUNK * 2];
    int fd;
    int ret;

    tu_write_str(tu_path("ro"), "");
    fd = open(tu_path("ro"), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    memset(data, 1, sizeof(data));
    ret = write_all(ur, fd, data, sizeof(data), sizeof(data), 1);
    ck_assert_int_eq(ret, -EBADF);
    close(fd);
    uring_free(ur);
}
END_TEST

/* ---- fault hook ------------------------------------------------------------------ */

static int seen[3];
static enum uring_op_kind fail_kind;
static int fail_res;
static int short_writes;

static int count_hook(enum uring_op_kind kind, int res)
{
    seen[kind]++;
    return res;
}

static int fail_hook(enum uring_op_kind kind, int res)
{
    seen[kind]++;
    if (kind == fail_kind)
        return fail_res;
    return res;
}

static int short_hook(enum uring_op_kind kind, int res)
{
    seen[kind]++;
    if (kind == URING_OP_WRITE && res > 1) {
        short_writes++;
        return res / 2;
    }
    return res;
}

START_TEST(test_hook_sees_ops)
{
    uring *ur = open_path(_i);
    size_t len = 5 * CHUNK + 3;
    uint8_t *data = malloc(len), *got = NULL;
    int fd;

    tu_fill_random(data, len, 5);
    uring_set_fault(count_hook);
    fd = open(tu_path("h"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(ur, fd, data, len, len, 1), 0);
    ck_assert_int_ge(seen[URING_OP_WRITE], 1);
    ck_assert_int_ge(seen[URING_OP_FSYNC], 1);
    ck_assert_int_eq(read_all(ur, fd, 0, CHUNK, 4, &got), (ssize_t)len);
    ck_assert_int_ge(seen[URING_OP_READ], 6);
    ck_assert_mem_eq(got, data, len);
    free(got);
    seen[URING_OP_FSYNC] = 0;
    ck_assert_int_eq(uring_fsync(ur, fd), 0);
    ck_assert_int_eq(seen[URING_OP_FSYNC], 1);
    close(fd);
    uring_free(ur);
    free(data);
}
END_TEST

START_TEST(test_fault_read_eio)
{
    uring *ur = open_path(_i);
    size_t len = 3 * CHUNK;
    uint8_t *data = malloc(len), *got = NULL;
    int fd;

    tu_fill_random(data, len, 6);
    tu_write_file(tu_path("r"), data, len);
    fd = open(tu_path("r"), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    fail_kind = URING_OP_READ;
    fail_res = -EIO;
    uring_set_fault(fail_hook);
    ck_assert_int_eq(read_all(ur, fd, 0, CHUNK, 2, &got), -EIO);
    free(got);
    /* hook removed: the same file reads fine again */
    uring_set_fault(NULL);
    ck_assert_int_eq(read_all(ur, fd, 0, CHUNK, 2, &got), (ssize_t)len);
    ck_assert_mem_eq(got, data, len);
    free(got);
    close(fd);
    uring_free(ur);
    free(data);
}
END_TEST

/* A failed write (ENOSPC, EIO) or a failed fsync fails the writer; a short write is
 * completed and the file is whole. */
START_TEST(test_fault_write)
{
    int fallback = _i % 2;
    int mode = _i / 2; /* 0 ENOSPC, 1 EIO, 2 short write, 3 fsync EIO */
    uring *ur = open_path(fallback);
    size_t len = 3 * CHUNK + 100;
    uint8_t *data = malloc(len);
    int fd, ret;

    tu_fill_random(data, len, 7);
    fd = open(tu_path("wf"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    switch (mode) {
    case 0: fail_kind = URING_OP_WRITE; fail_res = -ENOSPC; uring_set_fault(fail_hook); break;
    case 1: fail_kind = URING_OP_WRITE; fail_res = -EIO; uring_set_fault(fail_hook); break;
    case 2: uring_set_fault(short_hook); break;
    default: fail_kind = URING_OP_FSYNC; fail_res = -EIO; uring_set_fault(fail_hook); break;
    }
    ret = write_all(ur, fd, data, len, 10000, 1);
    if (mode == 2) {
        /* A short write is completed with plain pwrite (uring.h): the data is whole. */
        ck_assert_msg(ret == 0, "short writes: writer returned %d", ret);
        ck_assert_int_ge(short_writes, 1);
        uring_set_fault(NULL);
        size_t got_len;
        uint8_t *got = (uint8_t *)tu_read_file(tu_path("wf"), &got_len);
        ck_assert_uint_eq(got_len, len);
        ck_assert(memcmp(got, data, len) == 0);
        free(got);
    } else {
        ck_assert_msg(ret < 0, "mode %d: writer returned %d", mode, ret);
    }
    if (mode == 0)
        ck_assert_int_eq(ret, -ENOSPC);
    else if (mode == 1 || mode == 3)
        ck_assert_int_eq(ret, -EIO);
    if (mode == 3)
        ck_assert_int_ge(seen[URING_OP_FSYNC], 1);
    close(fd);

    /* uring_fsync goes through the hook too */
    if (mode == 3) {
        fd = open(tu_path("wf"), O_RDONLY);
        ck_assert_int_eq(uring_fsync(ur, fd), -EIO);
        close(fd);
    }
    uring_free(ur);
    free(data);
}
END_TEST

/* Without fsync requested, an fsync fault cannot fail finish (no fsync is issued). */
START_TEST(test_no_fsync_no_fsync_op)
{
    uring *ur = open_path(_i);
    uint8_t data[1000];
    int fd = open(tu_path("nf"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

    memset(data, 3, sizeof(data));
    fail_kind = URING_OP_FSYNC;
    fail_res = -EIO;
    uring_set_fault(fail_hook);
    ck_assert_int_eq(write_all(ur, fd, data, sizeof(data), 100, 0), 0);
    ck_assert_int_eq(seen[URING_OP_FSYNC], 0);
    ck_assert_int_ge(seen[URING_OP_WRITE], 1);
    close(fd);
    uring_free(ur);
}
END_TEST

START_TEST(test_free_null)
{
    uring_free(NULL);
    uring_reader_free(NULL);
    uring_writer_free(NULL);
}
END_TEST

static Suite *uring_suite(void)
{
    Suite *s = suite_create("uring");
    TCase *tc = tcase_create("io");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_loop_test(tc, test_reader_sizes, 0, 2 * (int)ARRAY_LEN(sizes));
    tcase_add_loop_test(tc, test_writer_sizes, 0, 2 * (int)ARRAY_LEN(sizes));
    tcase_add_loop_test(tc, test_fsync, 0, 2);
    tcase_add_loop_test(tc, test_reader_error, 0, 2);
    tcase_add_loop_test(tc, test_writer_error, 0, 2);
    tcase_add_test(tc, test_free_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("fault");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, tu_setup, fault_teardown);
    tcase_add_loop_test(tc, test_hook_sees_ops, 0, 2);
    tcase_add_loop_test(tc, test_fault_read_eio, 0, 2);
    tcase_add_loop_test(tc, test_fault_write, 0, 8);
    tcase_add_loop_test(tc, test_no_fsync_no_fsync_op, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(uring_suite());
}
