/*
 * check_object.c -- unit tests for lib/object: files and buffers in and out of a
 * storage as verified zstd objects; no-replace; a damaged stored object never comes
 * back as good data (object_get_seg, the one-buffer path, included); object_meta reads
 * the trailer alone.
 */
#include <zstd.h>

#include "object.h"
#include "testutil.h"

static storage *st;

static void ob_setup(void)
{
    tu_setup();
    st = storage_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(st);
}

static void ob_teardown(void)
{
    storage_free(st);
    st = NULL;
    tu_teardown();
}

#define KEY "wal/0000000100000000/000000010000000000000001.zst"

static const struct {
    size_t len;
    int text;
    int workers;
} cases[] = {
    {0, 0, 0}, {1, 0, 0}, {100000, 0, 0}, {3u << 20, 1, 0}, {3u << 20, 0, 2}, {16u << 20, 1, 2},
};

static uint8_t *make_data(size_t len, int text)
{
    uint8_t *d = malloc(len + 1);

    ck_assert_ptr_nonnull(d);
    if (text)
        tu_fill_text(d, len);
    else
        tu_fill_random(d, len, len + 5);
    return d;
}

/* src_fd -- a file holding data, open for reading at offset 0. */
static int src_fd(const char *name, const void *data, size_t len)
{
    int fd;

    tu_write_file(tu_path(name), data, len);
    fd = open(tu_path(name), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static int dst_fd(const char *name)
{
    int fd = open(tu_path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);

    ck_assert_int_ge(fd, 0);
    return fd;
}

static void assert_file(const char *name, const void *data, size_t len)
{
    size_t got_len;
    char *got = tu_read_file(tu_path(name), &got_len);

    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got_len, len);
    if (len)
        ck_assert_mem_eq(got, data, len);
    free(got);
}

START_TEST(test_put_get_fd)
{
    size_t len = cases[_i].len;
    uint8_t *data = make_data(len, cases[_i].text);
    object_opts opts = {0, cases[_i].workers};
    uint8_t digest[SHA256_LEN];
    zst_meta pm, gm, mm;
    int in = src_fd("src", data, len), out = dst_fd("dst");
    int64_t stored;

    ck_assert_int_eq(sha256_buffer(data, len, digest), 0);
    ck_assert_int_eq(object_put_fd(st, KEY, in, "src", &opts, 1, &pm), 0);
    ck_assert_uint_eq(pm.raw_size, len);
    ck_assert_mem_eq(pm.sha256, digest, SHA256_LEN);
    ck_assert_int_eq(storage_stat(st, KEY, &stored, NULL), 0);
    if (cases[_i].text && len > 100000)
        ck_assert_int_lt(stored, (int64_t)len / 4);

    ck_assert_int_eq(object_get_fd(st, KEY, out, &gm), 0);
    ck_assert_uint_eq(gm.raw_size, len);
    ck_assert_mem_eq(gm.sha256, digest, SHA256_LEN);
    close(out);
    assert_file("dst", data, len);

    ck_assert_int_eq(object_meta(st, KEY, &mm), 0);
    ck_assert_uint_eq(mm.raw_size, len);
    ck_assert_mem_eq(mm.sha256, digest, SHA256_LEN);

    /* verify only */
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), 0);
    close(in);
    free(data);
}
END_TEST

/* The stored bytes are a plain zstd stream: stock ZSTD_decompress gives the file. */
START_TEST(test_stored_is_plain_zstd)
{
    size_t len = 1u << 20;
    uint8_t *data = make_data(len, 1), *out = malloc(len + 1);
    char *raw = NULL;
    size_t raw_len = 0, got;

    ck_assert_int_eq(object_put_buf(st, KEY, data, len, NULL, 1, NULL), 0);
    ck_assert_int_eq(storage_get(st, KEY, 64u << 20, &raw, &raw_len), 0);
    got = ZSTD_decompress(out, len + 1, raw, raw_len);
    ck_assert_msg(!ZSTD_isError(got), "%s", ZSTD_getErrorName(got));
    ck_assert_uint_eq(got, len);
    ck_assert_mem_eq(out, data, len);
    free(raw);
    free(out);
    free(data);
}
END_TEST

START_TEST(test_put_get_buf)
{
    const char *text = "0/3000060\tno recovery target specified\n";
    char *buf = NULL;
    size_t len = 0;
    zst_meta m;
    uint8_t digest[SHA256_LEN];

    ck_assert_int_eq(object_put_buf(st, "wal/00000002.history.zst", text, strlen(text), NULL, 1,
                                    &m),
                     0);
    ck_assert_int_eq(sha256_buffer(text, strlen(text), digest), 0);
    ck_assert_mem_eq(m.sha256, digest, SHA256_LEN);
    ck_assert_int_eq(object_get_buf(st, "wal/00000002.history.zst", 1000, &buf, &len, &m), 0);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_str_eq(buf, text);
    ck_assert_uint_eq(m.raw_size, strlen(text));
    free(buf);
    buf = NULL;
    /* larger than max: refused */
    ck_assert_int_eq(object_get_buf(st, "wal/00000002.history.zst", 10, &buf, &len, NULL), -1);
    ck_assert_int_eq(object_get_buf(st, "wal/00000003.history.zst", 1000, &buf, &len, NULL),
                     RS_NOT_FOUND);
}
END_TEST

START_TEST(test_noreplace)
{
    size_t len = 200000;
    uint8_t *a = make_data(len, 0), *b = make_data(len, 1);
    uint8_t db[SHA256_LEN];
    zst_meta m;
    int fa = src_fd("a", a, len), fb = src_fd("b", b, len), out;

    ck_assert_int_eq(object_put_fd(st, KEY, fa, "a", NULL, 1, NULL), 0);
    memset(&m, 0, sizeof(m));
    ck_assert_int_eq(object_put_fd(st, KEY, fb, "b", NULL, 1, &m), RS_EXISTS);
    /* meta holds the digest of what fd had */
    ck_assert_int_eq(sha256_buffer(b, len, db), 0);
    ck_assert_mem_eq(m.sha256, db, SHA256_LEN);
    ck_assert_uint_eq(m.raw_size, len);
    /* the stored object is still a */
    out = dst_fd("out");
    ck_assert_int_eq(object_get_fd(st, KEY, out, NULL), 0);
    close(out);
    assert_file("out", a, len);
    /* nothing else left in the folder (no temp) */
    ck_assert_int_eq(tu_count_entries(tu_path("repo/wal/0000000100000000")), 1);

    /* buffers too; and replace when asked */
    ck_assert_int_eq(object_put_buf(st, KEY, b, len, NULL, 1, NULL), RS_EXISTS);
    ck_assert_int_eq(object_put_buf(st, KEY, b, len, NULL, 0, NULL), 0);
    out = dst_fd("out");
    ck_assert_int_eq(object_get_fd(st, KEY, out, NULL), 0);
    close(out);
    assert_file("out", b, len);
    close(fa);
    close(fb);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_get_missing)
{
    int out = dst_fd("out");
    zst_meta m;
    struct stat sb;

    ck_assert_int_eq(object_get_fd(st, KEY, out, &m), RS_NOT_FOUND);
    ck_assert_int_eq(fstat(out, &sb), 0);
    ck_assert_int_eq(sb.st_size, 0); /* nothing written */
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(object_meta(st, KEY, &m), RS_NOT_FOUND);
    close(out);
}
END_TEST

/* corrupt -- flip one byte of the stored object at pos (negative: from the end). */
static void corrupt(const char *key, long pos)
{
    char path[1024];
    int fd;
    struct stat sb;
    uint8_t c;
    off_t off;

    snprintf(path, sizeof(path), "%s/%s", storage_location(st), key);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &sb), 0);
    off = pos >= 0 ? pos : sb.st_size + pos;
    ck_assert_int_eq(pread(fd, &c, 1, off), 1);
    c ^= 0xFF;
    ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* A corrupted stored object is RS_MISMATCH or -1, never 0 (nor RS_NOT_FOUND). */
START_TEST(test_corrupt_body)
{
    size_t len = 500000;
    uint8_t *data = make_data(len, _i);
    int64_t size;

    ck_assert_int_eq(object_put_buf(st, KEY, data, len, NULL, 1, NULL), 0);
    ck_assert_int_eq(storage_stat(st, KEY, &size, NULL), 0);
    for (int k = 1; k <= 5; k++) {
        long pos = (long)((size - ZST_TRAILER_SIZE) * k / 6);
        int out = dst_fd("out");
        char *buf = NULL;
        size_t blen;
        int r;

        corrupt(KEY, pos);
        r = object_get_fd(st, KEY, out, NULL);
        ck_assert_msg(r == RS_MISMATCH || r == -1, "byte %ld flipped: object_get_fd %d", pos, r);
        r = object_get_fd(st, KEY, -1, NULL);
        ck_assert_msg(r == RS_MISMATCH || r == -1, "byte %ld flipped: verify %d", pos, r);
        r = object_get_buf(st, KEY, len + 1, &buf, &blen, NULL);
        ck_assert_msg(r == RS_MISMATCH || r == -1, "byte %ld flipped: object_get_buf %d", pos, r);
        if (r == 0)
            free(buf);
        buf = NULL;
        r = object_get_seg(st, KEY, len, &buf, &blen, NULL);
        ck_assert_msg(r == RS_MISMATCH || r == -1, "byte %ld flipped: object_get_seg %d", pos, r);
        ck_assert_ptr_null(buf);
        corrupt(KEY, pos); /* flip back */
        close(out);
    }
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), 0);
    free(data);
}
END_TEST

/* object_get_seg: a segment's object into one buffer of its size, NUL after it;
 * one byte more than the bound is refused as damage */
START_TEST(test_get_seg)
{
    size_t len = 3u << 20;
    uint8_t *data = make_data(len, 1);
    char *buf = NULL;
    size_t blen = 0;
    zst_meta m;

    ck_assert_int_eq(object_put_buf(st, KEY, data, len, NULL, 1, NULL), 0);
    ck_assert_int_eq(object_get_seg(st, KEY, len, &buf, &blen, &m), 0);
    ck_assert_uint_eq(blen, len);
    ck_assert_uint_eq(m.raw_size, len);
    ck_assert_mem_eq(buf, data, len);
    ck_assert_int_eq(buf[len], '\0');
    free(buf);
    buf = NULL;
    ck_assert_int_eq(object_get_seg(st, KEY, len - 1, &buf, &blen, NULL), RS_MISMATCH);
    ck_assert_ptr_null(buf);
    ck_assert_int_eq(object_get_seg(st, "wal/nope.zst", len, &buf, &blen, NULL), RS_NOT_FOUND);
    free(data);
}
END_TEST

START_TEST(test_corrupt_trailer)
{
    size_t len = 100000;
    uint8_t *data = make_data(len, 0);
    zst_meta m;
    int out;

    ck_assert_int_eq(object_put_buf(st, KEY, data, len, NULL, 1, NULL), 0);
    corrupt(KEY, -1); /* the last byte of the digest */
    out = dst_fd("out");
    ck_assert_int_eq(object_get_fd(st, KEY, out, NULL), RS_MISMATCH);
    close(out);
    char *buf = NULL;
    size_t blen;
    ck_assert_int_eq(object_get_seg(st, KEY, len, &buf, &blen, NULL), RS_MISMATCH);
    ck_assert_ptr_null(buf);
    corrupt(KEY, -1);
    corrupt(KEY, -(ZST_TRAILER_SIZE - 16)); /* the size field */
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), RS_MISMATCH);
    ck_assert_int_eq(object_get_seg(st, KEY, len, &buf, &blen, NULL), RS_MISMATCH);
    corrupt(KEY, -(ZST_TRAILER_SIZE - 16));
    corrupt(KEY, -(ZST_TRAILER_SIZE - 8)); /* "RGSF": no trailer: damage, not I/O */
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), RS_MISMATCH);
    ck_assert_int_eq(object_meta(st, KEY, &m), -1);
    free(data);
}
END_TEST

/* A truncated stored object, and one that is not an object at all: damage
 * (RS_MISMATCH, exit 3 in every tool), not an I/O failure. */
START_TEST(test_truncated_and_foreign)
{
    size_t len = 100000;
    uint8_t *data = make_data(len, 0);
    char path[1024];
    int64_t size;
    zst_meta m;

    ck_assert_int_eq(object_put_buf(st, KEY, data, len, NULL, 1, NULL), 0);
    ck_assert_int_eq(storage_stat(st, KEY, &size, NULL), 0);
    snprintf(path, sizeof(path), "%s/%s", storage_location(st), KEY);
    ck_assert_int_eq(truncate(path, size - 1), 0);
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), RS_MISMATCH);
    ck_assert_int_eq(object_meta(st, KEY, &m), -1);
    ck_assert_int_eq(truncate(path, size / 2), 0);
    ck_assert_int_eq(object_get_fd(st, KEY, -1, NULL), RS_MISMATCH);

    ck_assert_int_eq(storage_put(st, "plain", "not zstd at all", 15, 0), 0);
    ck_assert_int_eq(object_get_fd(st, "plain", -1, NULL), RS_MISMATCH);
    ck_assert_int_eq(object_meta(st, "plain", &m), -1);
    ck_assert_int_eq(storage_put(st, "empty", "", 0, 0), 0);
    ck_assert_int_eq(object_get_fd(st, "empty", -1, NULL), RS_MISMATCH);
    ck_assert_int_eq(object_meta(st, "empty", &m), -1);
    free(data);
}
END_TEST

/* put_fd reads from offset 0 whatever the fd's position. */
START_TEST(test_put_fd_from_start)
{
    const char *text = "0123456789abcdef";
    int in = src_fd("s", text, 16);
    char *buf = NULL;
    size_t len;

    ck_assert_int_eq(lseek(in, 10, SEEK_SET), 10);
    ck_assert_int_eq(object_put_fd(st, "k", in, "s", NULL, 1, NULL), 0);
    ck_assert_int_eq(object_get_buf(st, "k", 100, &buf, &len, NULL), 0);
    ck_assert_str_eq(buf, text);
    free(buf);
    close(in);
}
END_TEST

/* get_fd writes from the fd's current position. */
START_TEST(test_get_fd_position)
{
    int out = dst_fd("out");

    ck_assert_int_eq(object_put_buf(st, "k", "payload", 7, NULL, 1, NULL), 0);
    ck_assert_int_eq(write(out, "head:", 5), 5);
    ck_assert_int_eq(object_get_fd(st, "k", out, NULL), 0);
    close(out);
    assert_file("out", "head:payload", 12);
}
END_TEST

START_TEST(test_bad_key)
{
    int in = src_fd("s", "x", 1);
    zst_meta m;

    ck_assert_int_eq(object_put_fd(st, "../escape", in, "s", NULL, 0, NULL), -1);
    ck_assert_int_eq(object_put_buf(st, "/abs", "x", 1, NULL, 0, NULL), -1);
    ck_assert_int_eq(object_get_fd(st, "a/../b", -1, NULL), -1);
    ck_assert_int_eq(object_meta(st, ".hidden", &m), -1);
    ck_assert(!tu_exists(tu_path("escape")));
    close(in);
}
END_TEST

static Suite *object_suite(void)
{
    Suite *s = suite_create("object");
    TCase *tc = tcase_create("roundtrip");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, ob_setup, ob_teardown);
    tcase_add_loop_test(tc, test_put_get_fd, 0, (int)ARRAY_LEN(cases));
    tcase_add_test(tc, test_stored_is_plain_zstd);
    tcase_add_test(tc, test_put_get_buf);
    tcase_add_test(tc, test_noreplace);
    tcase_add_test(tc, test_get_missing);
    tcase_add_test(tc, test_put_fd_from_start);
    tcase_add_test(tc, test_get_fd_position);
    tcase_add_test(tc, test_bad_key);
    tcase_add_test(tc, test_get_seg);
    suite_add_tcase(s, tc);

    tc = tcase_create("damage");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, ob_setup, ob_teardown);
    tcase_add_loop_test(tc, test_corrupt_body, 0, 2);
    tcase_add_test(tc, test_corrupt_trailer);
    tcase_add_test(tc, test_truncated_and_foreign);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(object_suite());
}
