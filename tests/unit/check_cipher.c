/*
 * check_cipher.c -- AES-256-GCM frames (cipher.h): round trips at the frame
 * boundaries, a wrong key, a flipped bit anywhere, truncation, frames reordered or
 * moved to another object, the tail alone, key files.
 */
#include "cas.h"
#include "cipher.h"
#include "object.h"
#include "repo.h"
#include "storage.h"
#include "testutil.h"

#include <sys/syscall.h>
#include <unistd.h>

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static int sink(void *arg, const void *data, size_t len)
{
    struct buf *b = arg;
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static cipher_key *key_of(uint8_t seed)
{
    uint8_t raw[CIPHER_KEY_LEN];
    memset(raw, seed, sizeof(raw));
    return cipher_key_from_bytes(raw);
}

/* enc -- encrypt plain in chunks of step bytes. */
static struct buf enc(const cipher_key *k, const char *name, const uint8_t *plain, size_t len,
                      size_t step)
{
    struct buf out = {0};
    cipher_enc *e = cipher_enc_new(k, name, sink, &out);
    ck_assert_ptr_nonnull(e);
    for (size_t off = 0; off < len; off += step)
        ck_assert_int_eq(cipher_enc_write(e, plain + off, len - off < step ? len - off : step), 0);
    ck_assert_int_eq(cipher_enc_finish(e), 0);
    cipher_enc_free(e);
    return out;
}

/* dec -- decrypt in chunks of step; the result code of write/finish. */
static int dec(const cipher_key *k, const char *name, const struct buf *c, size_t step,
               struct buf *out)
{
    cipher_dec *d = cipher_dec_new(k, name, sink, out);
    int r = 0;
    ck_assert_ptr_nonnull(d);
    for (size_t off = 0; off < c->len && r == 0; off += step)
        r = cipher_dec_write(d, c->p + off, c->len - off < step ? c->len - off : step);
    if (r == 0)
        r = cipher_dec_finish(d);
    cipher_dec_free(d);
    return r;
}

static const size_t sizes[] = {0, 1, 55, 56, 57, 1000, CIPHER_FRAME - 1, CIPHER_FRAME,
                               CIPHER_FRAME + 56, CIPHER_FRAME + 57, 3 * CIPHER_FRAME + 12345};

START_TEST(test_round_trip)
{
    size_t len = sizes[_i];
    uint8_t *plain = malloc(len + 1);
    cipher_key *k = key_of(7);
    struct buf c, p = {0}, p2 = {0};
    uint8_t tail[CIPHER_TAIL_PLAIN];
    size_t tl;
    uint64_t total;

    tu_fill_random(plain, len, len + 1);
    c = enc(k, "wal/a.zst", plain, len, 4097);
    ck_assert_uint_ge(c.len, CIPHER_TAIL_SIZE);
    ck_assert_int_eq(dec(k, "wal/a.zst", &c, 1000, &p), 0);
    ck_assert_uint_eq(p.len, len);
    if (len)
        ck_assert_mem_eq(p.p, plain, len);
    /* byte by byte for the small ones */
    if (len < 2000) {
        ck_assert_int_eq(dec(k, "wal/a.zst", &c, 1, &p2), 0);
        ck_assert_uint_eq(p2.len, len);
    }
    /* the tail alone gives the end of the plaintext and its size */
    ck_assert_int_eq(cipher_tail_open(k, "wal/a.zst", c.p + c.len - CIPHER_TAIL_SIZE, tail, &tl,
                                      &total), 0);
    ck_assert_uint_eq(total, len);
    ck_assert_uint_eq(tl, len < CIPHER_TAIL_PLAIN ? len : CIPHER_TAIL_PLAIN);
    if (tl)
        ck_assert_mem_eq(tail, plain + len - tl, tl);
    ck_assert_uint_ge(cipher_plain_size_max(c.len), len);
    /* no plaintext in the clear: a 56-byte window of it is nowhere in the object */
    if (len >= 1000)
        ck_assert_ptr_null(memmem(c.p, c.len, plain + 500, 56));
    free(c.p);
    free(p.p);
    free(p2.p);
    free(plain);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_fresh_nonce)
{
    cipher_key *k = key_of(1);
    uint8_t plain[100] = {0};
    struct buf a = enc(k, "x", plain, sizeof(plain), 100), b = enc(k, "x", plain, sizeof(plain), 100);

    ck_assert_uint_eq(a.len, b.len);
    ck_assert(memcmp(a.p, b.p, a.len) != 0);
    free(a.p);
    free(b.p);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_wrong_key_and_name)
{
    cipher_key *k = key_of(1), *other = key_of(2);
    size_t len = CIPHER_FRAME + 5000;
    uint8_t *plain = malloc(len), tail[CIPHER_TAIL_PLAIN];
    struct buf c, p = {0};
    size_t tl;
    uint64_t total;

    tu_fill_random(plain, len, 3);
    c = enc(k, "wal/a", plain, len, 65536);
    ck_assert_int_eq(dec(other, "wal/a", &c, 65536, &p), RS_MISMATCH);
    ck_assert_uint_eq(p.len, 0); /* nothing unverified ever reaches the sink */
    ck_assert_int_eq(dec(k, "wal/b", &c, 65536, &p), RS_MISMATCH); /* moved object */
    ck_assert_int_eq(cipher_tail_open(other, "wal/a", c.p + c.len - CIPHER_TAIL_SIZE, tail, &tl,
                                      &total), RS_MISMATCH);
    free(c.p);
    free(p.p);
    free(plain);
    cipher_key_free(k);
    cipher_key_free(other);
}
END_TEST

/* test_tamper -- one flipped bit at many places, each refused. */
START_TEST(test_tamper)
{
    cipher_key *k = key_of(9);
    size_t len = 2 * CIPHER_FRAME + 777;
    uint8_t *plain = malloc(len);
    struct buf c;

    tu_fill_random(plain, len, 4);
    c = enc(k, "obj", plain, len, 300000);
    for (size_t at = 0; at < c.len; at += c.len / 37 + 1) {
        struct buf p = {0};
        c.p[at] ^= 0x10;
        ck_assert_msg(dec(k, "obj", &c, 70000, &p) == RS_MISMATCH, "flip at %zu accepted", at);
        c.p[at] ^= 0x10;
        free(p.p);
    }
    /* the last byte (final tag) too */
    {
        struct buf p = {0};
        c.p[c.len - 1] ^= 1;
        ck_assert_int_eq(dec(k, "obj", &c, 70000, &p), RS_MISMATCH);
        c.p[c.len - 1] ^= 1;
        free(p.p);
    }
    free(c.p);
    free(plain);
    cipher_key_free(k);
}
END_TEST

START_TEST(test_truncated_and_reordered)
{
    cipher_key *k = key_of(5);
    size_t len = 3 * CIPHER_FRAME, flen = CIPHER_FRAME + CIPHER_OVERHEAD;
    uint8_t *plain = malloc(len), *tmp = malloc(flen);
    struct buf c, p = {0}, cut;

    tu_fill_random(plain, len, 5);
    c = enc(k, "obj", plain, len, 1 << 20);
    /* without the final frame, or cut anywhere */
    cut = c;
    cut.len = c.len - CIPHER_TAIL_SIZE;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = c.len - 1;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = 10;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    cut.len = 0;
    ck_assert_int_eq(dec(k, "obj", &cut, 1 << 16, &p), RS_MISMATCH);
    /* the first two (full) frames swapped */
    memcpy(tmp, c.p, flen);
    memmove(c.p, c.p + flen, flen);
    memcpy(c.p + flen, tmp, flen);
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), RS_MISMATCH);
    /* data after the final frame */
    memcpy(tmp, c.p + flen, flen);
    memcpy(c.p + flen, c.p, flen);
    memcpy(c.p, tmp, flen);
    c.p = realloc(c.p, c.len + 10);
    memset(c.p + c.len, 0, 10);
    c.len += 10;
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), RS_MISMATCH);
    c.len -= 10;
    free(p.p);
    p = (struct buf){0};
    ck_assert_int_eq(dec(k, "obj", &c, 1 << 16, &p), 0);
    ck_assert_uint_eq(p.len, len);
    free(p.p);
    free(c.p);
    free(tmp);
    free(plain);
    cipher_key_free(k);
}
END_TEST

/* A tiny read() shim: with short_reads set, every read returns at most 5 bytes (as a
 * network or FUSE file system may), so a loader that reads once sees a short key. */
static int short_reads;

ssize_t read(int fd, void *buf, size_t n)
{
    if (short_reads && n > 5)
        n = 5;
    return syscall(SYS_read, fd, buf, n);
}

/* stderr_to -- send stderr to path (returns the saved descriptor for stderr_back). */
static int stderr_to(const char *path)
{
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, 2), 2);
    close(fd);
    return saved;
}

static void stderr_back(int saved)
{
    ck_assert_int_eq(dup2(saved, 2), 2);
    close(saved);
}

START_TEST(test_key_file)
{
    cipher_key *k = NULL, *k2 = NULL;
    uint8_t raw[32], dg1[32], dg2[32];
    char hex[70];

    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", raw[i]);
    strcat(hex, "\n");
    tu_write_str(tu_path("hex.key"), hex);
    chmod(tu_path("hex.key"), 0600);
    tu_write_file(tu_path("raw.key"), raw, 32);
    chmod(tu_path("raw.key"), 0600);
    ck_assert_int_eq(cipher_key_load(tu_path("hex.key"), &k), 0);
    ck_assert_int_eq(cipher_key_load(tu_path("raw.key"), &k2), 0);
    /* the same key either way: equal keyed digests */
    ck_assert_int_eq(cipher_keyed_digest(k, "abc", 3, dg1), 0);
    ck_assert_int_eq(cipher_keyed_digest(k2, "abc", 3, dg2), 0);
    ck_assert_mem_eq(dg1, dg2, 32);
    cipher_key_free(k2);
    k2 = key_of(1);
    ck_assert_int_eq(cipher_keyed_digest(k2, "abc", 3, dg2), 0);
    ck_assert(memcmp(dg1, dg2, 32) != 0);
    cipher_key_free(k2);
    k2 = NULL;
    tu_write_str(tu_path("short.key"), "abcd\n");
    chmod(tu_path("short.key"), 0600);
    ck_assert_int_eq(cipher_key_load(tu_path("short.key"), &k2), -1);
    ck_assert_ptr_null(k2);
    hex[5] = 'x';
    tu_write_str(tu_path("bad.key"), hex);
    chmod(tu_path("bad.key"), 0600);
    ck_assert_int_eq(cipher_key_load(tu_path("bad.key"), &k2), -1);
    ck_assert_int_eq(cipher_key_load(tu_path("none.key"), &k2), -1);
    cipher_key_free(k);
}
END_TEST


/* A sealed storage: what is stored is cipher frames, what is read back is the exact
 * plaintext (streamed, whole, tail); root objects stay plain; another key, no key, a
 * flipped bit are errors. */
/* A key file readable or writable by group or others is refused, naming the fix. */
START_TEST(test_key_file_mode)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0660};
    cipher_key *k = NULL;
    char hex[70];
    size_t n;

    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", (unsigned)(i * 3));
    strcat(hex, "\n");
    tu_write_str(tu_path("k"), hex);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        ck_assert_int_eq(chmod(tu_path("k"), modes[i]), 0);
        int saved = stderr_to(tu_path("err"));
        int r = cipher_key_load(tu_path("k"), &k);
        stderr_back(saved);
        ck_assert_msg(r == -1, "mode %04o accepted", (unsigned)modes[i]);
        ck_assert_ptr_null(k);
        char *err = tu_read_file(tu_path("err"), &n);
        ck_assert_ptr_nonnull(strstr(err, "it must be 0600 or stricter"));
        ck_assert_ptr_nonnull(strstr(err, "hint: chmod 600 \""));
        free(err);
    }
    ck_assert_int_eq(chmod(tu_path("k"), 0400), 0);
    ck_assert_int_eq(cipher_key_load(tu_path("k"), &k), 0);
    cipher_key_free(k);
    /* not a regular file */
    ck_assert_int_eq(cipher_key_load(tu_dir, &k), -1);
    ck_assert_ptr_null(k);
}
END_TEST

/* The key file is read to its end, however short each read() is; a file longer than
 * any key is refused, not cut. */
START_TEST(test_key_file_short_reads)
{
    cipher_key *k = NULL, *k2 = NULL;
    uint8_t raw[32], dg1[32], dg2[32], big[300];
    char hex[70];

    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(255 - i);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", raw[i]);
    strcat(hex, "\r\n");
    tu_write_str(tu_path("hex.key"), hex);
    chmod(tu_path("hex.key"), 0600);
    tu_write_file(tu_path("raw.key"), raw, 32);
    chmod(tu_path("raw.key"), 0600);
    short_reads = 1;
    int r1 = cipher_key_load(tu_path("hex.key"), &k);
    int r2 = cipher_key_load(tu_path("raw.key"), &k2);
    short_reads = 0;
    ck_assert_int_eq(r1, 0);
    ck_assert_int_eq(r2, 0);
    ck_assert_int_eq(cipher_keyed_digest(k, "abc", 3, dg1), 0);
    ck_assert_int_eq(cipher_keyed_digest(k2, "abc", 3, dg2), 0);
    ck_assert_mem_eq(dg1, dg2, 32);
    cipher_key_free(k);
    cipher_key_free(k2);
    k = NULL;
    /* 64 hex digits followed by more text */
    memset(big, 'a', sizeof(big));
    tu_write_file(tu_path("long.key"), big, sizeof(big));
    chmod(tu_path("long.key"), 0600);
    ck_assert_int_eq(cipher_key_load(tu_path("long.key"), &k), -1);
    tu_write_file(tu_path("long.key"), big, 131);
    ck_assert_int_eq(cipher_key_load(tu_path("long.key"), &k), -1);
    ck_assert_ptr_null(k);
}
END_TEST

START_TEST(test_sealed_storage)
{
    cipher_key *k = key_of(7), *other = key_of(8);
    storage *st = storage_open(tu_repo("repo"), NULL, 1);
    static uint8_t data[3 * CIPHER_FRAME + 123];
    char *got = NULL;
    size_t len = 0;
    uint8_t tail[40];
    int64_t size = 0;
    zst_meta meta;

    ck_assert_ptr_nonnull(st);
    tu_fill_random(data, sizeof(data), 42);
    storage_set_cipher(st, k);
    ck_assert_int_eq(storage_put(st, "a/b.bin", data, sizeof(data), 1), 0);
    ck_assert_int_eq(storage_put(st, "top.json", "{}", 2, 1), 0);
    /* on disk: frames, not the data */
    size_t raw_len = 0;
    uint8_t *raw = (uint8_t *)tu_read_file(tu_path("repo/a/b.bin"), &raw_len);
    ck_assert_mem_eq(raw, "RGSE", 4);
    ck_assert_uint_gt(raw_len, sizeof(data));
    ck_assert_ptr_null(memmem(raw, raw_len, data + 1000, 64));
    free(raw);
    uint8_t *top = (uint8_t *)tu_read_file(tu_path("repo/top.json"), &raw_len);
    ck_assert_uint_eq(raw_len, 2);
    ck_assert_mem_eq(top, "{}", 2);
    free(top);
    /* read back */
    ck_assert_int_eq(storage_get(st, "a/b.bin", sizeof(data), &got, &len), 0);
    ck_assert_uint_eq(len, sizeof(data));
    ck_assert_mem_eq(got, data, sizeof(data));
    free(got);
    ck_assert_int_eq(storage_get(st, "a/b.bin", sizeof(data) - 1, &got, &len), -1);
    ck_assert_int_eq(storage_read_tail(st, "a/b.bin", tail, sizeof(tail), &size), 0);
    ck_assert_int_eq(size, (int64_t)sizeof(data));
    ck_assert_mem_eq(tail, data + sizeof(data) - sizeof(tail), sizeof(tail));
    /* zst objects: the trailer through the final frame alone */
    ck_assert_int_eq(object_put_buf(st, "w/x.zst", data, 5000, NULL, 1, &meta), 0);
    zst_meta m2;
    ck_assert_int_eq(object_meta(st, "w/x.zst", &m2), 0);
    ck_assert_mem_eq(m2.sha256, meta.sha256, SHA256_LEN);
    ck_assert_int_eq(object_get_fd(st, "w/x.zst", -1, &m2), 0);
    /* another key, no key */
    storage_set_cipher(st, other);
    ck_assert_int_eq(storage_get(st, "a/b.bin", sizeof(data), &got, &len), RS_MISMATCH);
    ck_assert_int_ne(object_meta(st, "w/x.zst", &m2), 0);
    storage_set_cipher(st, NULL);
    ck_assert_int_ne(object_get_fd(st, "w/x.zst", -1, &m2), 0);
    /* a flipped bit */
    storage_set_cipher(st, k);
    raw = (uint8_t *)tu_read_file(tu_path("repo/a/b.bin"), &raw_len);
    raw[raw_len / 2] ^= 1;
    tu_write_file(tu_path("repo/a/b.bin"), raw, raw_len);
    free(raw);
    ck_assert_int_eq(storage_get(st, "a/b.bin", sizeof(data), &got, &len), RS_MISMATCH);
    ck_assert_ptr_null(got);
    storage_free(st);
    cipher_key_free(k);
    cipher_key_free(other);
}
END_TEST

/* repo.json: created encrypted with a key check; a missing, wrong or unexpected key
 * is refused by repo_load_info. */
START_TEST(test_repo_key_check)
{
    cipher_key *k = key_of(7), *other = key_of(8);
    repo_info want = {.sysid = 7312345678901234567ULL, .seg_size = 16 << 20};
    repo *r = repo_open(tu_repo("enc"), NULL, 1);

    ck_assert_ptr_nonnull(r);
    storage_set_cipher(r->st, k);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    repo_free(r);
    size_t n = 0;
    char *text = (char *)tu_read_file(tu_path("enc/repo.json"), &n);
    ck_assert_ptr_nonnull(strstr(text, "aes-256-gcm"));
    free(text);
    const cipher_key *keys[] = {k, other, NULL};
    const int want_r[] = {0, RS_MISMATCH, RS_MISMATCH};
    for (int i = 0; i < 3; i++) {
        r = repo_open(tu_path("enc"), NULL, 0);
        storage_set_cipher(r->st, keys[i]);
        ck_assert_int_eq(repo_load_info(r), want_r[i]);
        repo_free(r);
    }
    r = repo_open(tu_repo("plain"), NULL, 1);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    storage_set_cipher(r->st, k);
    r->have_info = 0;
    ck_assert_int_eq(repo_pin(r, &want), RS_MISMATCH);
    repo_free(r);
    cipher_key_free(k);
    cipher_key_free(other);
}
END_TEST

/* A repository without repo.json (Milvus snapshots only) records its encryption in
 * cipher.json: later writers with no key or another key are refused, a key for one
 * holding plain objects is refused, and repo.json created later must agree. */
START_TEST(test_unpinned_key_check)
{
    cipher_key *k = key_of(7), *other = key_of(8);
    repo_info want = {.sysid = 7312345678901234567ULL, .seg_size = 16 << 20};
    int why = 0;
    repo *r;

    /* the first sealed writer records cipher.json */
    storage_set_default_cipher(k);
    r = repo_open_checked(tu_repo("m"), NULL, 1, &why);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(storage_put(r->st, "milvus/snapshots/a.json.zst", "x", 1, 1), 0);
    repo_free(r);
    ck_assert(tu_exists(tu_path("m/cipher.json")));
    /* no key, another key: refused */
    storage_set_default_cipher(NULL);
    ck_assert_ptr_null(repo_open_checked(tu_repo("m"), NULL, 1, &why));
    ck_assert_int_eq(why, RS_MISMATCH);
    storage_set_default_cipher(other);
    ck_assert_ptr_null(repo_open_checked(tu_path("m"), NULL, 0, &why));
    ck_assert_int_eq(why, RS_MISMATCH);
    /* repo.json created later: without the key refused, with it recorded */
    storage_set_default_cipher(NULL);
    r = repo_open(tu_path("m"), NULL, 0);
    ck_assert_int_eq(repo_pin(r, &want), RS_MISMATCH);
    repo_free(r);
    ck_assert(!tu_exists(tu_path("m/repo.json")));
    storage_set_default_cipher(k);
    r = repo_open(tu_path("m"), NULL, 0);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    repo_free(r);
    size_t n = 0;
    char *text = tu_read_file(tu_path("m/repo.json"), &n);
    ck_assert_ptr_nonnull(strstr(text, "aes-256-gcm"));
    free(text);
    /* plain objects, then a key: refused, nothing recorded */
    storage_set_default_cipher(NULL);
    r = repo_open_checked(tu_repo("p"), NULL, 1, &why);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(storage_put(r->st, "milvus/objects/ab/x.zst", "x", 1, 1), 0);
    repo_free(r);
    storage_set_default_cipher(k);
    ck_assert_ptr_null(repo_open_checked(tu_repo("p"), NULL, 1, &why));
    ck_assert_int_eq(why, RS_MISMATCH);
    ck_assert(!tu_exists(tu_path("p/cipher.json")));
    storage_set_default_cipher(NULL);
    cipher_key_free(k);
    cipher_key_free(other);
}
END_TEST

/* CAS in a sealed storage: addressed by the keyed digest (names reveal nothing,
 * identical content still stored once), read back by digest, checked by address,
 * swept by address; batch writes are sealed too. */
START_TEST(test_sealed_cas)
{
    cipher_key *k = key_of(9);
    storage *st = storage_open(tu_repo("repo"), NULL, 1);
    uint8_t a[70000], b[5000], da[SHA256_LEN], db[SHA256_LEN], addr[SHA256_LEN];
    char key[512], hex[SHA256_HEX_LEN + 1];
    uint64_t size = 0, removed = 0;

    tu_fill_random(a, sizeof(a), 1);
    tu_fill_random(b, sizeof(b), 2);
    storage_set_cipher(st, k);
    cas *c = cas_new(st, "objs", NULL);
    ck_assert_int_eq(sha256_buffer(a, sizeof(a), da), 0);
    ck_assert_int_eq(sha256_buffer(b, sizeof(b), db), 0);
    ck_assert_int_eq(cas_put_buf(c, a, sizeof(a), "a", da, NULL), 0);
    ck_assert_int_eq(cas_put_buf(c, a, sizeof(a), "a", da, NULL), RS_EXISTS);
    /* batch mode (local repository): sealed as well */
    cas_batch *bt = cas_batch_new(st);
    cas_use_batch(c, bt);
    ck_assert_int_eq(cas_put_buf(c, b, sizeof(b), "b", db, NULL), 0);
    ck_assert_int_eq(cas_batch_commit(bt), 0);
    cas_batch_free(bt);
    cas_use_batch(c, NULL);
    ck_assert_int_eq(cas_addr(c, da, addr), 0);
    ck_assert_mem_ne(addr, da, SHA256_LEN);
    sha256_to_hex(da, hex);
    ck_assert_int_eq(cas_key(c, da, key, sizeof(key)), 0);
    ck_assert_ptr_null(strstr(key, hex));
    size_t n = 0;
    char path[600];
    snprintf(path, sizeof(path), "repo/%s", key);
    uint8_t *raw = (uint8_t *)tu_read_file(tu_path(path), &n);
    ck_assert_mem_eq(raw, "RGSE", 4);
    free(raw);
    ck_assert_int_eq(cas_key(c, db, key, sizeof(key)), 0);
    snprintf(path, sizeof(path), "repo/%s", key);
    raw = (uint8_t *)tu_read_file(tu_path(path), &n);
    ck_assert_mem_eq(raw, "RGSE", 4);
    free(raw);
    ck_assert_int_eq(cas_get_fd(c, da, -1, &size), 0);
    ck_assert_uint_eq(size, sizeof(a));
    ck_assert_int_eq(cas_get_addr_fd(c, addr, -1, &size), 0);
    ck_assert_int_eq(cas_get_addr_fd(c, da, -1, &size), RS_NOT_FOUND);
    /* sweep keeps what is marked, by address */
    cas_set *keep = cas_set_new();
    cas_set_add(keep, addr);
    ck_assert_int_eq(cas_sweep(c, keep, 0, &removed, NULL), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_int_eq(cas_get_fd(c, da, -1, NULL), 0);
    ck_assert_int_eq(cas_get_fd(c, db, -1, NULL), RS_NOT_FOUND);
    cas_set_free(keep);
    cas_free(c);
    storage_free(st);
    cipher_key_free(k);
}
END_TEST


/* Key rotation pieces: a key sealed under another and back; which key sealed a tail. */
START_TEST(test_key_wrap)
{
    cipher_key *k = key_of(7), *w = key_of(9), *back = NULL;
    char *hex = NULL;
    static const uint8_t plain[100] = {1, 2, 3};

    ck_assert_int_eq(cipher_key_wrap(w, k, &hex), 0);
    ck_assert_ptr_nonnull(hex);
    ck_assert_int_eq(cipher_key_unwrap(w, hex, &back), 0);
    ck_assert_int_eq(cipher_key_equal(k, back), 1);
    ck_assert_int_eq(cipher_key_equal(w, back), 0);
    cipher_key_free(back);
    ck_assert_int_eq(cipher_key_unwrap(k, hex, &back), RS_MISMATCH);
    ck_assert_ptr_null(back);
    hex[10] = hex[10] == '0' ? '1' : '0';
    ck_assert_int_eq(cipher_key_unwrap(w, hex, &back), RS_MISMATCH);
    ck_assert_int_eq(cipher_key_unwrap(w, "zz", &back), -1);
    free(hex);
    struct buf c = enc(k, "a/b", plain, sizeof(plain), 7);
    ck_assert_uint_ge(c.len, CIPHER_TAIL_SIZE);
    const uint8_t *tail = c.p + c.len - CIPHER_TAIL_SIZE;
    ck_assert_int_eq(cipher_tail_fits(k, "a/b", tail), 1);
    ck_assert_int_eq(cipher_tail_fits(w, "a/b", tail), 0);
    ck_assert_int_eq(cipher_tail_fits(k, "a/c", tail), 0);
    free(c.p);
    cipher_key_free(k);
    cipher_key_free(w);
}
END_TEST

/* A rotation as rekey drives it: the record rotating, tools with the new key reading
 * objects of both keys, the old key still accepted, a third refused; finished, the old
 * key refused and old-sealed objects no longer open. */
START_TEST(test_rotation)
{
    cipher_key *k = key_of(7), *n = key_of(8), *third = key_of(9);
    repo_info want = {.sysid = 7312345678901234567ULL, .seg_size = 16 << 20};
    repo *r = repo_open(tu_repo("rot"), NULL, 1);
    char *got = NULL;
    size_t len = 0;
    int state = -1;

    storage_set_cipher(r->st, k);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    ck_assert_int_eq(storage_put(r->st, "wal/old.bin", "old data", 8, 1), 0);
    ck_assert_int_eq(repo_rekey_state(r, k, n, &state), 0);
    ck_assert_int_eq(state, 0);
    ck_assert_int_eq(repo_rekey_state(r, k, k, &state), RS_MISMATCH);
    ck_assert_int_eq(repo_rekey_state(r, third, n, &state), RS_MISMATCH);
    ck_assert_int_eq(repo_rekey_mark(r, k, n, 0), 0);
    ck_assert_int_eq(repo_rekey_state(r, k, n, &state), 0);
    ck_assert_int_eq(state, 1);
    ck_assert_int_eq(repo_rekey_state(r, k, third, &state), RS_MISMATCH);
    repo_free(r);

    /* the new key: reads both, writes new */
    r = repo_open(tu_path("rot"), NULL, 0);
    storage_set_cipher(r->st, n);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_ptr_nonnull(storage_cipher_old(r->st));
    ck_assert_int_eq(storage_get(r->st, "wal/old.bin", 100, &got, &len), 0);
    ck_assert_mem_eq(got, "old data", 8);
    free(got);
    ck_assert_int_eq(storage_sealed_by(r->st, "wal/old.bin"), 2);
    ck_assert_int_eq(storage_put(r->st, "wal/new.bin", "new data", 8, 1), 0);
    ck_assert_int_eq(storage_sealed_by(r->st, "wal/new.bin"), 1);
    uint8_t t[4];
    ck_assert_int_eq(storage_read_tail(r->st, "wal/old.bin", t, 4, NULL), 0);
    ck_assert_mem_eq(t, "data", 4);
    repo_free(r);
    repo_cli_release(); /* forget the unwrapped old key (process default) */

    /* the old key still opens it, holding the shared "rekey" lock; a third does not */
    r = repo_open(tu_path("rot"), NULL, 0);
    storage_set_cipher(r->st, k);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_ptr_nonnull(r->rekey_lock);
    ck_assert_int_eq(storage_get(r->st, "wal/new.bin", 100, &got, &len), RS_MISMATCH);
    storage_set_cipher(r->st, third);
    r->have_info = 0;
    ck_assert_int_eq(repo_load_info(r), RS_MISMATCH);
    repo_free(r);

    /* finished: only the new key */
    r = repo_open(tu_path("rot"), NULL, 0);
    ck_assert_int_eq(repo_rekey_mark(r, k, n, 1), 0);
    ck_assert_int_eq(repo_rekey_state(r, k, n, &state), 0);
    ck_assert_int_eq(state, 2);
    storage_set_cipher(r->st, k);
    r->have_info = 0;
    ck_assert_int_eq(repo_load_info(r), RS_MISMATCH);
    storage_set_cipher(r->st, n);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_ptr_null(storage_cipher_old(r->st));
    ck_assert_int_eq(storage_get(r->st, "wal/new.bin", 100, &got, &len), 0);
    free(got);
    ck_assert_int_eq(storage_get(r->st, "wal/old.bin", 100, &got, &len), RS_MISMATCH);
    ck_assert_int_eq(storage_sealed_by(r->st, "wal/old.bin"), 0);
    size_t tl = 0;
    char *text = (char *)tu_read_file(tu_path("rot/repo.json"), &tl);
    ck_assert_ptr_null(strstr(text, "rotation"));
    free(text);
    repo_free(r);
    cipher_key_free(k);
    cipher_key_free(n);
    cipher_key_free(third);
}
END_TEST

static Suite *cipher_suite(void)
{
    Suite *s = suite_create("cipher");
    TCase *tc = tcase_create("frames");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_loop_test(tc, test_round_trip, 0, (int)ARRAY_LEN(sizes));
    tcase_add_test(tc, test_fresh_nonce);
    tcase_add_test(tc, test_wrong_key_and_name);
    tcase_add_test(tc, test_tamper);
    tcase_add_test(tc, test_truncated_and_reordered);
    tcase_add_test(tc, test_key_file);
    tcase_add_test(tc, test_key_file_mode);
    tcase_add_test(tc, test_key_file_short_reads);
    tcase_add_test(tc, test_sealed_storage);
    tcase_add_test(tc, test_repo_key_check);
    tcase_add_test(tc, test_unpinned_key_check);
    tcase_add_test(tc, test_sealed_cas);
    tcase_add_test(tc, test_key_wrap);
    tcase_add_test(tc, test_rotation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("check_cipher");
    return tu_main(cipher_suite());
}
