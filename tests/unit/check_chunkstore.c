/*
 * check_chunkstore.c -- unit tests for lib/chunkstore: chunks stored once across opens
 * (dedup by SHA-256, within a pack and against committed packs), nothing visible before
 * a flush, a pack read back hands over exactly the wanted chunks verified, a damaged
 * record is RS_MISMATCH for that chunk only, a damaged index fails the open, and the
 * sweep removes dead packs and packs without an index but keeps every pack with a live
 * chunk.
 */
#include "chunkstore.h"
#include "testutil.h"

static storage *st;

static void cs_setup(void)
{
    tu_setup();
    st = storage_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(st);
}

static void cs_teardown(void)
{
    storage_free(st);
    st = NULL;
    tu_teardown();
}

/* chunk n: 32 KiB of reproducible bytes */
static void chunk(uint8_t *buf, uint64_t n)
{
    tu_fill_random(buf, CHUNKSTORE_CHUNK_SIZE, n + 1);
}

/* count_ext -- objects under chunks/ ending in ext */
static int count_ext(const char *ext)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/chunks", tu_repo("repo"));
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] != '.' && l > strlen(ext) && strcmp(de->d_name + l - strlen(ext), ext) == 0)
            n++;
    }
    closedir(d);
    return n;
}

START_TEST(test_dedup)
{
    static uint8_t buf[CHUNKSTORE_CHUNK_SIZE];
    uint8_t d[SHA256_LEN], d2[SHA256_LEN];
    uint64_t stored;
    chunkstore_stats s;

    chunkstore *cs = chunkstore_open(st, 3);
    ck_assert_ptr_nonnull(cs);
    chunk(buf, 1);
    ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), d, &stored), 0);
    ck_assert_uint_gt(stored, 0);
    ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), d2, &stored), 0);
    ck_assert_uint_eq(stored, 0); /* same pack, not yet committed: still once */
    ck_assert_mem_eq(d, d2, SHA256_LEN);
    ck_assert_int_eq(chunkstore_find(cs, d, NULL), 0); /* not committed yet */
    ck_assert_int_eq(count_ext(".pack"), 0);
    ck_assert_int_eq(chunkstore_flush(cs), 0);
    ck_assert_int_eq(count_ext(".pack"), 1);
    ck_assert_int_eq(count_ext(".idx"), 1);
    ck_assert_int_eq(chunkstore_find(cs, d, NULL), 1);
    chunkstore_get_stats(cs, &s);
    ck_assert_uint_eq(s.chunks, 2);
    ck_assert_uint_eq(s.new_chunks, 1);
    ck_assert_uint_eq(s.packs, 1);
    chunkstore_free(cs);

    /* a second writer: the committed chunk is known, a new one is stored */
    cs = chunkstore_open(st, 3);
    ck_assert_ptr_nonnull(cs);
    ck_assert_int_eq(chunkstore_find(cs, d, NULL), 1);
    ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), d2, &stored), 0);
    ck_assert_uint_eq(stored, 0);
    chunk(buf, 2);
    ck_assert_int_eq(chunkstore_put(cs, buf, 100, d2, &stored), 0);
    ck_assert_uint_gt(stored, 0);
    ck_assert_int_eq(chunkstore_flush(cs), 0);
    ck_assert_int_eq(count_ext(".pack"), 2);
    chunkstore_free(cs);
    /* an unflushed pack is dropped: nothing written */
    cs = chunkstore_open(st, 3);
    chunk(buf, 3);
    ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), d2, &stored), 0);
    chunkstore_free(cs);
    ck_assert_int_eq(count_ext(".pack"), 2);
}
END_TEST

/* a record made elsewhere (the backup's worker threads): known while open, stored
 * once, read back the same as chunkstore_put's; a NULL record for an unknown chunk is
 * refused */
START_TEST(test_add_encoded)
{
    static uint8_t buf[CHUNKSTORE_CHUNK_SIZE];
    uint8_t d[SHA256_LEN], d2[SHA256_LEN];
    uint64_t stored;
    chunkstore_stats s;
    size_t cap = chunkstore_record_bound(sizeof(buf));
    uint8_t *rec = malloc(cap);

    chunkstore *cs = chunkstore_open(st, 3);
    chunk_encoder *e = chunk_encoder_new(chunkstore_level(cs));
    ck_assert_ptr_nonnull(cs);
    ck_assert_ptr_nonnull(e);
    chunk(buf, 7);
    ck_assert_int_eq(sha256_buffer(buf, sizeof(buf), d), 0);
    ck_assert_int_eq(chunkstore_known(cs, d), 0);
    ck_assert_int_eq(chunkstore_add(cs, d, NULL, 0, &stored), -1);
    size_t n = chunk_encode(e, buf, sizeof(buf), d, rec, cap);
    ck_assert_uint_gt(n, CHUNKSTORE_REC_HDR);
    ck_assert_int_eq(chunk_encode(e, buf, sizeof(buf), d, rec, cap - 1), 0);
    n = chunk_encode(e, buf, sizeof(buf), d, rec, cap);
    ck_assert_int_eq(chunkstore_add(cs, d, rec, n, &stored), 0);
    ck_assert_uint_eq(stored, n);
    ck_assert_int_eq(chunkstore_known(cs, d), 1); /* the open pack counts */
    ck_assert_int_eq(chunkstore_add(cs, d, rec, n, &stored), 0);
    ck_assert_uint_eq(stored, 0);
    ck_assert_int_eq(chunkstore_add(cs, d, NULL, 0, &stored), 0);
    ck_assert_uint_eq(stored, 0);
    ck_assert_int_eq(chunkstore_flush(cs), 0);
    chunkstore_get_stats(cs, &s);
    ck_assert_uint_eq(s.chunks, 4);
    ck_assert_uint_eq(s.new_chunks, 1);
    chunkstore_free(cs);
    /* chunkstore_put of the same bytes in a new writer: known, nothing stored */
    cs = chunkstore_open(st, 3);
    ck_assert_int_eq(chunkstore_find(cs, d, NULL), 1);
    ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), d2, &stored), 0);
    ck_assert_uint_eq(stored, 0);
    chunkstore_free(cs);
    chunk_encoder_free(e);
    free(rec);
}
END_TEST

typedef struct rd {
    uint8_t want[4][SHA256_LEN];
    int nwant, got, bad;
    size_t lens;
} rd;

static int want_cb(void *arg, const uint8_t *d)
{
    rd *r = arg;
    for (int i = 0; i < r->nwant; i++)
        if (memcmp(r->want[i], d, SHA256_LEN) == 0)
            return 1;
    return 0;
}

static int got_cb(void *arg, const uint8_t *d, const void *data, size_t len, int status)
{
    rd *r = arg;
    uint8_t h[SHA256_LEN];
    if (status) {
        r->bad++;
        ck_assert_ptr_null(data);
        return 0;
    }
    ck_assert_int_eq(sha256_buffer(data, len, h), 0);
    ck_assert_mem_eq(h, d, SHA256_LEN);
    r->got++;
    r->lens += len;
    return 0;
}

/* store chunks 1..n in one pack; digests out */
static const char *one_pack(int n, uint8_t (*d)[SHA256_LEN])
{
    static uint8_t buf[CHUNKSTORE_CHUNK_SIZE];
    uint64_t stored;
    chunkstore *cs = chunkstore_open(st, 3);
    ck_assert_ptr_nonnull(cs);
    for (int i = 0; i < n; i++) {
        chunk(buf, (uint64_t)i + 10);
        ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf) - (size_t)i, d[i], &stored), 0);
    }
    ck_assert_int_eq(chunkstore_flush(cs), 0);
    static char key[128];
    snprintf(key, sizeof(key), "%s", chunkstore_pack_key(cs, 0));
    chunkstore_free(cs);
    return key;
}

START_TEST(test_read_pack)
{
    uint8_t d[4][SHA256_LEN];
    const char *key = one_pack(4, d);
    rd r = {.nwant = 2};
    memcpy(r.want[0], d[1], SHA256_LEN);
    memcpy(r.want[1], d[3], SHA256_LEN);
    ck_assert_int_eq(chunkstore_read_pack(st, key, want_cb, got_cb, &r), 0);
    ck_assert_int_eq(r.got, 2);
    ck_assert_int_eq(r.bad, 0);
    ck_assert_uint_eq(r.lens, 2 * CHUNKSTORE_CHUNK_SIZE - 1 - 3);
    ck_assert_int_eq(chunkstore_read_pack(st, "chunks/00000000000000000000000000000000.pack",
                                          want_cb, got_cb, &r), RS_NOT_FOUND);
}
END_TEST

START_TEST(test_damaged_record)
{
    uint8_t d[4][SHA256_LEN];
    const char *key = one_pack(4, d);
    char path[1024];
    size_t len;
    snprintf(path, sizeof(path), "%s/%s", tu_repo("repo"), key);
    uint8_t *p = (uint8_t *)tu_read_file(path, &len);
    /* the second record: flip a byte of its compressed data */
    chunkstore *cs = chunkstore_open(st, 3);
    chunk_loc loc;
    ck_assert_int_eq(chunkstore_find(cs, d[1], &loc), 1);
    chunkstore_free(cs);
    p[loc.offset + CHUNKSTORE_REC_HDR + 20] ^= 0xff;
    tu_write_file(path, p, len);
    free(p);
    rd r = {.nwant = 3};
    memcpy(r.want[0], d[0], SHA256_LEN);
    memcpy(r.want[1], d[1], SHA256_LEN);
    memcpy(r.want[2], d[2], SHA256_LEN);
    ck_assert_int_eq(chunkstore_read_pack(st, key, want_cb, got_cb, &r), 0);
    ck_assert_int_eq(r.got, 2);  /* the others still come out */
    ck_assert_int_eq(r.bad, 1);
}
END_TEST

START_TEST(test_damaged_index)
{
    uint8_t d[2][SHA256_LEN];
    const char *key = one_pack(2, d);
    char path[1024];
    size_t len;
    snprintf(path, sizeof(path), "%s/%.*s.idx", tu_repo("repo"), (int)(strlen(key) - 5), key);
    uint8_t *p = (uint8_t *)tu_read_file(path, &len);
    p[20] ^= 1;
    tu_write_file(path, p, len);
    free(p);
    ck_assert_ptr_null(chunkstore_open(st, 3));
}
END_TEST

START_TEST(test_sweep)
{
    uint8_t a[2][SHA256_LEN], b[2][SHA256_LEN];
    const char *ka = one_pack(2, a);
    char keya[128];
    snprintf(keya, sizeof(keya), "%s", ka);
    /* a second pack with other chunks */
    static uint8_t buf[CHUNKSTORE_CHUNK_SIZE];
    uint64_t stored, rem, bytes, kept;
    chunkstore *cs = chunkstore_open(st, 3);
    for (int i = 0; i < 2; i++) {
        chunk(buf, (uint64_t)i + 100);
        ck_assert_int_eq(chunkstore_put(cs, buf, sizeof(buf), b[i], &stored), 0);
    }
    ck_assert_int_eq(chunkstore_flush(cs), 0);
    chunkstore_free(cs);
    /* an orphan pack (no index), as a killed writer leaves it */
    char orphan[1024];
    snprintf(orphan, sizeof(orphan), "%s/chunks/0123456789abcdef0123456789abcdef.pack", tu_repo("repo"));
    tu_write_file(orphan, "x", 1);
    ck_assert_int_eq(count_ext(".pack"), 3);

    cas_set *keep = cas_set_new();
    ck_assert_int_eq(cas_set_add(keep, a[1]), 1); /* one live chunk keeps pack a whole */
    cs = chunkstore_open(st, 3);
    ck_assert_ptr_nonnull(cs);
    ck_assert_int_eq(chunkstore_sweep(cs, keep, 1, &rem, &bytes, &kept), 0); /* dry run */
    ck_assert_uint_eq(rem, 2);
    ck_assert_int_eq(count_ext(".pack"), 3);
    ck_assert_int_eq(chunkstore_sweep(cs, keep, 0, &rem, &bytes, &kept), 0);
    ck_assert_uint_eq(rem, 2);
    ck_assert_uint_eq(kept, 1);
    chunkstore_free(cs);
    ck_assert_int_eq(count_ext(".pack"), 1);
    ck_assert_int_eq(count_ext(".idx"), 1);
    ck_assert(!tu_exists(orphan));
    cs = chunkstore_open(st, 3);
    ck_assert_int_eq(chunkstore_find(cs, a[0], NULL), 1);
    ck_assert_int_eq(chunkstore_find(cs, b[0], NULL), 0);
    ck_assert_str_eq(chunkstore_pack_key(cs, 0), keya);
    chunkstore_free(cs);
    cas_set_free(keep);
}
END_TEST

static Suite *chunkstore_suite(void)
{
    Suite *s = suite_create("chunkstore");
    TCase *tc = tcase_create("store");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, cs_setup, cs_teardown);
    tcase_add_test(tc, test_dedup);
    tcase_add_test(tc, test_add_encoded);
    tcase_add_test(tc, test_read_pack);
    tcase_add_test(tc, test_damaged_record);
    tcase_add_test(tc, test_damaged_index);
    tcase_add_test(tc, test_sweep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(chunkstore_suite());
}
