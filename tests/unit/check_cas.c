/*
 * check_cas.c -- unit tests for lib/cas: the content-addressed store. Keys and their
 * parsing; put by digest, get verified against the name; a changed source is refused;
 * batch mode (nothing under a final name before commit, everything after, rollback
 * on free); digest sets; mark and sweep (including leftover batch temps).
 */
#include "cas.h"
#include "durable.h"
#include "testutil.h"

static storage *st;
static cas *c;

static void cs_setup(void)
{
    tu_setup();
    st = storage_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(st);
    c = cas_new(st, "milvus/objects", NULL);
    ck_assert_ptr_nonnull(c);
}

static void cs_teardown(void)
{
    cas_free(c);
    storage_free(st);
    c = NULL;
    st = NULL;
    tu_teardown();
}

/* a file with content, open at offset 0, and its digest */
static int make_src(const char *name, const void *data, size_t len, uint8_t d[SHA256_LEN])
{
    tu_write_file(tu_path(name), data, len);
    int fd = open(tu_path(name), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint64_t size = 0;
    ck_assert_int_eq(cas_hash_fd(fd, name, d, &size), 0);
    ck_assert_uint_eq(size, len);
    return fd;
}

START_TEST(test_key_roundtrip)
{
    uint8_t d[SHA256_LEN], back[SHA256_LEN];
    char key[512], hex[SHA256_HEX_LEN + 1];

    ck_assert_int_eq(sha256_buffer("abc", 3, d), 0);
    ck_assert_int_eq(cas_key(c, d, key, sizeof(key)), 0);
    sha256_to_hex(d, hex);
    char want[600];
    snprintf(want, sizeof(want), "milvus/objects/%.2s/%s.zst", hex, hex);
    ck_assert_str_eq(key, want);
    ck_assert_int_eq(cas_digest_from_key(c, key, back), 0);
    ck_assert_mem_eq(d, back, SHA256_LEN);
    /* not object names */
    ck_assert_int_eq(cas_digest_from_key(c, "milvus/objects/ab/xyz.zst", back), -1);
    want[15] = want[15] == 'a' ? 'b' : 'a'; /* folder no longer matches the name */
    ck_assert_int_eq(cas_digest_from_key(c, want, back), -1);
    ck_assert_int_eq(cas_digest_from_key(c, "wal/00/x.zst", back), -1);
    ck_assert_int_eq(cas_key(c, d, key, 20), -1);
}
END_TEST

START_TEST(test_put_get)
{
    size_t len = 300000;
    uint8_t *data = malloc(len), d[SHA256_LEN];
    int64_t stored = -1;
    uint64_t size = 0;

    tu_fill_text(data, len);
    int fd = make_src("src", data, len, d);
    ck_assert_int_eq(cas_exists(c, d, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(cas_put_fd(c, fd, "src", d, &stored), 0);
    ck_assert_int_gt(stored, 0);
    ck_assert_int_lt(stored, (int64_t)len); /* compressed */
    ck_assert_int_eq(cas_exists(c, d, &stored), 0);
    ck_assert_int_eq(cas_put_fd(c, fd, "src", d, &stored), RS_EXISTS);
    ck_assert_int_eq(stored, 0);
    close(fd);

    int out = open(tu_path("out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(out, 0);
    ck_assert_int_eq(cas_get_fd(c, d, out, &size), 0);
    close(out);
    ck_assert_uint_eq(size, len);
    size_t got = 0;
    char *back = tu_read_file(tu_path("out"), &got);
    ck_assert_uint_eq(got, len);
    ck_assert_mem_eq(back, data, len);
    ck_assert_int_eq(cas_get_fd(c, d, -1, NULL), 0);
    free(back);
    free(data);
}
END_TEST

START_TEST(test_put_buf_and_missing)
{
    uint8_t d[SHA256_LEN], other[SHA256_LEN];

    ck_assert_int_eq(sha256_buffer("chunk", 5, d), 0);
    ck_assert_int_eq(cas_put_buf(c, "chunk", 5, "chunk", d, NULL), 0);
    ck_assert_int_eq(cas_get_fd(c, d, -1, NULL), 0);
    ck_assert_int_eq(sha256_buffer("absent", 6, other), 0);
    ck_assert_int_eq(cas_get_fd(c, other, -1, NULL), RS_NOT_FOUND);
    /* a buffer that does not hash to the digest given is refused, nothing kept */
    ck_assert_int_eq(cas_put_buf(c, "chunk!", 6, "bad", other, NULL), RS_MISMATCH);
    ck_assert_int_eq(cas_exists(c, other, NULL), RS_NOT_FOUND);
}
END_TEST

START_TEST(test_changed_source)
{
    uint8_t d[SHA256_LEN];
    int fd = make_src("src", "first content", 13, d);

    tu_write_str(tu_path("src"), "other content");
    ck_assert_int_eq(cas_put_fd(c, fd, "src", d, NULL), RS_MISMATCH);
    ck_assert_int_eq(cas_exists(c, d, NULL), RS_NOT_FOUND);
    close(fd);
}
END_TEST

/* an object whose content is fine but sits under another digest's name */
START_TEST(test_wrong_name)
{
    uint8_t a[SHA256_LEN], b[SHA256_LEN];
    char ka[512], kb[512], pa[1100], pb[1100];

    ck_assert_int_eq(sha256_buffer("aaa", 3, a), 0);
    ck_assert_int_eq(sha256_buffer("bbb", 3, b), 0);
    ck_assert_int_eq(cas_put_buf(c, "aaa", 3, "a", a, NULL), 0);
    cas_key(c, a, ka, sizeof(ka));
    cas_key(c, b, kb, sizeof(kb));
    snprintf(pa, sizeof(pa), "%s/repo/%s", tu_dir, ka);
    snprintf(pb, sizeof(pb), "%s/repo/%s", tu_dir, kb);
    char *dir = strdup(pb);
    *strrchr(dir, '/') = '\0';
    mkdir(dir, 0755);
    free(dir);
    ck_assert_int_eq(link(pa, pb), 0);
    ck_assert_int_eq(cas_get_fd(c, b, -1, NULL), RS_MISMATCH);
}
END_TEST

static int count_cb(void *arg, const uint8_t d[SHA256_LEN], int64_t size)
{
    (void)d;
    (void)size;
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_batch)
{
    uint8_t d[4][SHA256_LEN];
    char data[4][64];
    cas_batch *b = cas_batch_new(st);
    int n = 0;

    /* _i 1: as on NFS / FUSE, without RENAME_NOREPLACE (durable.h) */
    durable_set_no_rename_noreplace(_i);
    ck_assert_ptr_nonnull(b);
    cas_use_batch(c, b);
    for (int i = 0; i < 4; i++) {
        snprintf(data[i], sizeof(data[i]), "batch object %d", i);
        ck_assert_int_eq(sha256_buffer(data[i], strlen(data[i]), d[i]), 0);
        ck_assert_int_eq(cas_put_buf(c, data[i], strlen(data[i]), "x", d[i], NULL), 0);
        /* durable or absent: nothing under the final name before the commit */
        ck_assert_int_eq(cas_exists(c, d[i], NULL), RS_NOT_FOUND);
    }
    ck_assert_int_eq(cas_list(c, count_cb, &n), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(cas_batch_commit(b), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(cas_get_fd(c, d[i], -1, NULL), 0);
    ck_assert_int_eq(cas_list(c, count_cb, &n), 0);
    ck_assert_int_eq(n, 4);

    /* a batch freed without commit leaves nothing behind */
    uint8_t e[SHA256_LEN];
    ck_assert_int_eq(sha256_buffer("rolled back", 11, e), 0);
    ck_assert_int_eq(cas_put_buf(c, "rolled back", 11, "x", e, NULL), 0);
    cas_use_batch(c, NULL);
    cas_batch_free(b);
    ck_assert_int_eq(cas_exists(c, e, NULL), RS_NOT_FOUND);
    char key[512], dir[1100];
    cas_key(c, e, key, sizeof(key));
    snprintf(dir, sizeof(dir), "%s/repo/%s", tu_dir, key);
    *strrchr(dir, '/') = '\0';
    ck_assert_int_eq(tu_count_entries(dir), 0);
}
END_TEST

START_TEST(test_set)
{
    cas_set *s = cas_set_new();
    uint8_t d[SHA256_LEN];

    ck_assert_ptr_nonnull(s);
    for (unsigned i = 0; i < 5000; i++) {
        ck_assert_int_eq(sha256_buffer(&i, sizeof(i), d), 0);
        ck_assert_int_eq(cas_set_add(s, d), 1);
    }
    for (unsigned i = 0; i < 5000; i++) {
        ck_assert_int_eq(sha256_buffer(&i, sizeof(i), d), 0);
        ck_assert_int_eq(cas_set_add(s, d), 0);
        ck_assert(cas_set_has(s, d));
    }
    unsigned x = 99999;
    ck_assert_int_eq(sha256_buffer(&x, sizeof(x), d), 0);
    ck_assert(!cas_set_has(s, d));
    ck_assert_uint_eq(cas_set_count(s), 5000);
    cas_set_free(s);
    cas_set_free(NULL);
}
END_TEST

START_TEST(test_sweep)
{
    uint8_t d[6][SHA256_LEN];
    cas_set *keep = cas_set_new();
    uint64_t removed = 0, bytes = 0;

    for (int i = 0; i < 6; i++) {
        char s[32];
        snprintf(s, sizeof(s), "object %d", i);
        ck_assert_int_eq(sha256_buffer(s, strlen(s), d[i]), 0);
        ck_assert_int_eq(cas_put_buf(c, s, strlen(s), "x", d[i], NULL), 0);
        if (i % 2 == 0)
            ck_assert_int_eq(cas_set_add(keep, d[i]), 1);
    }
    /* a batch temp a killed process left behind */
    char key[512], tmp[1200];
    cas_key(c, d[0], key, sizeof(key));
    snprintf(tmp, sizeof(tmp), "%s/repo/%s", tu_dir, key);
    *strrchr(tmp, '/') = '\0';
    strcat(tmp, "/.deadbeef.zst.batch");
    tu_write_str(tmp, "partial");

    ck_assert_int_eq(cas_sweep(c, keep, 1, &removed, &bytes), 0);
    ck_assert_uint_eq(removed, 3);
    ck_assert(tu_exists(tmp));
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(cas_exists(c, d[i], NULL), 0);
    ck_assert_int_eq(cas_sweep(c, keep, 0, &removed, &bytes), 0);
    ck_assert_uint_eq(removed, 3);
    ck_assert_uint_gt(bytes, 0);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(cas_exists(c, d[i], NULL), i % 2 == 0 ? 0 : RS_NOT_FOUND);
    ck_assert(!tu_exists(tmp));
    cas_set_free(keep);
}
END_TEST

static Suite *cas_suite(void)
{
    Suite *s = suite_create("cas");
    TCase *tc = tcase_create("store");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, cs_setup, cs_teardown);
    tcase_add_test(tc, test_key_roundtrip);
    tcase_add_test(tc, test_put_get);
    tcase_add_test(tc, test_put_buf_and_missing);
    tcase_add_test(tc, test_changed_source);
    tcase_add_test(tc, test_wrong_name);
    tcase_add_loop_test(tc, test_batch, 0, 2);
    tcase_add_test(tc, test_set);
    tcase_add_test(tc, test_sweep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(cas_suite());
}
