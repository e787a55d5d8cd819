/*
 * check_storage.c -- unit tests for lib/storage (posix backend): key validation at
 * every entry point, put/get/stat/list/remove/rename, streaming reads and writes,
 * read_tail, "not found" versus "storage unreachable", and repository locks.
 */
#include <pwd.h>
#include <sys/wait.h>
#include <time.h>

#include "durable.h"
#include "storage.h"
#include "testutil.h"

static storage *st;

static void st_setup(void)
{
    tu_setup();
    st = storage_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(st);
}

static void st_teardown(void)
{
    storage_free(st);
    st = NULL;
    tu_teardown();
}

static void put_str(const char *key, const char *s)
{
    ck_assert_int_eq(storage_put(st, key, s, strlen(s), 0), 0);
}

static void assert_get(const char *key, const void *data, size_t len)
{
    char *buf = NULL;
    size_t got = 0;

    ck_assert_int_eq(storage_get(st, key, len + 1000, &buf, &got), 0);
    ck_assert_uint_eq(got, len);
    if (len > 0)
        ck_assert_mem_eq(buf, data, len);
    ck_assert_int_eq(buf[len], '\0');
    free(buf);
}

/* ---- open ----------------------------------------------------------------------- */

START_TEST(test_open)
{
    storage *s2;

    /* a missing root is an error, with or without create: never made (a typo'd
     * path must not become a new repository) */
    ck_assert_ptr_null(storage_open(tu_path("nope"), NULL, 0));
    ck_assert(!tu_exists(tu_path("nope")));
    ck_assert_ptr_null(storage_open(tu_path("made/deep"), NULL, 1));
    ck_assert(!tu_exists(tu_path("made")));
    s2 = storage_open(tu_repo("made"), NULL, 1);
    ck_assert_ptr_nonnull(s2);
    ck_assert_str_eq(storage_location(s2), tu_path("made"));
    storage_free(s2);

    /* a relative location is refused (archive_command runs in PGDATA), even when it
     * exists (the fixture chdir'd into tu_dir, which holds "repo"), and nothing is made */
    ck_assert_ptr_null(storage_open("repo", NULL, 0));
    ck_assert_ptr_null(storage_open("rel/x", NULL, 1));
    ck_assert(!tu_exists(tu_path("rel")));

    /* a file is not a storage root */
    tu_write_str(tu_path("plain"), "x");
    ck_assert_ptr_null(storage_open(tu_path("plain"), NULL, 0));
    ck_assert_ptr_null(storage_open(tu_path("plain"), NULL, 1));
    storage_free(NULL);
}
END_TEST


/* root on a repository another user owns: what it creates (folders, objects, lock
 * files) belongs to the root's owner and group */
START_TEST(test_owner_of_root)
{
    storage *s2;
    storage_lock *lk = NULL;
    struct stat sb;
    uid_t uid;
    gid_t gid;
    const uid_t nobody = 65534;
    const gid_t nogroup = 65534;

    if (geteuid() != 0)
        return; /* only root can give files away */
    ck_assert_int_eq(chown(tu_repo("owned"), nobody, nogroup), 0);
    s2 = storage_open(tu_path("owned"), NULL, 1);
    ck_assert_ptr_nonnull(s2);
    ck_assert_int_eq(storage_owner(s2, &uid, &gid), 1);
    ck_assert_uint_eq(uid, nobody);
    ck_assert_int_eq(storage_put(s2, "a/b/c.zst", "x", 1, 1), 0);
    ck_assert_int_eq(storage_lock_take(s2, "backup", 1, 0, &lk), 0);
    storage_lock_release(lk);
    ck_assert_int_eq(storage_lock_take(s2, STORAGE_RETENTION_LOCK, 0, 0, &lk), 0);
    storage_lock_release(lk);
    const char *paths[] = {"owned/a", "owned/a/b", "owned/a/b/c.zst", "owned/locks",
                           "owned/locks/backup.lock", "owned/locks/retention.lock"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        ck_assert_msg(lstat(tu_path(paths[i]), &sb) == 0, "%s: %s", paths[i], strerror(errno));
        ck_assert_msg(sb.st_uid == nobody && sb.st_gid == nogroup, "%s is %u:%u", paths[i],
                      (unsigned)sb.st_uid, (unsigned)sb.st_gid);
    }
    storage_free(s2);

    /* root's own repository: nothing to give away */
    ck_assert_int_eq(storage_owner(st, &uid, &gid), 0);
    ck_assert_int_eq(storage_put(st, "d/e", "x", 1, 1), 0);
    ck_assert_int_eq(lstat(tu_path("repo/d/e"), &sb), 0);
    ck_assert_uint_eq(sb.st_uid, 0);
}
END_TEST

/* ---- keys ----------------------------------------------------------------------- */

static const char *good_keys[] = {
    "a", "repo.json", "wal/0000000100000000/000000010000000000000001.zst",
    "backups/20261126T021500Z.partial/base.tar.zst", "a.b/c..d/e.", "x-y_z/1",
};

static const char *bad_keys[] = {
    "",      "/abs",      "/",     "..",      "../x",   "a/../b", "a/..", ".",
    "./a",   "a/./b",     "a/.",   "a//b",    "a/",     "//a",    ".hidden",
    "a/.tmp", "a/.x.tmp", "..a",
};

START_TEST(test_key_valid)
{
    for (size_t i = 0; i < ARRAY_LEN(good_keys); i++)
        ck_assert_msg(storage_key_valid(good_keys[i]), "refused \"%s\"", good_keys[i]);
    for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++)
        ck_assert_msg(!storage_key_valid(bad_keys[i]), "accepted \"%s\"", bad_keys[i]);
}
END_TEST

static int count_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    (void)key;
    (void)size;
    (void)mtime;
    (*(int *)arg)++;
    return 0;
}

/* Every entry point refuses a bad key with -1 (never RS_NOT_FOUND, never a file
 * outside the root). */
START_TEST(test_bad_key_everywhere)
{
    const char *key = bad_keys[_i];
    char *buf = NULL;
    size_t len;
    int64_t size;
    storage_read *rd = NULL;
    uint8_t tail[4];
    int n = 0;

    put_str("a/b", "inside"); /* so "a/../b"-style keys would find something */
    ck_assert_int_eq(storage_put(st, key, "x", 1, 0), -1);
    ck_assert_int_eq(storage_put(st, key, "x", 1, 1), -1);
    ck_assert_ptr_null(storage_write_open(st, key));
    ck_assert_int_eq(storage_get(st, key, 100, &buf, &len), -1);
    ck_assert_int_eq(storage_read_open(st, key, &rd), -1);
    ck_assert_int_eq(storage_stat(st, key, &size, NULL), -1);
    ck_assert_int_eq(storage_read_tail(st, key, tail, sizeof(tail), &size), -1);
    ck_assert_int_eq(storage_remove(st, key), -1);
    /* "" (everything) and "a/" (a folder) are valid prefixes, not keys */
    if (strcmp(key, "") != 0 && strcmp(key, "a/") != 0) {
        ck_assert_int_eq(storage_remove_prefix(st, key), -1);
        ck_assert_int_eq(storage_rename_prefix(st, key, "zz"), -1);
        ck_assert_int_eq(storage_rename_prefix(st, "a", key), -1);
    }
    /* nothing was written anywhere: the root still holds exactly a/b, and nothing
     * appeared next to the root */
    ck_assert_int_eq(storage_list(st, "", count_cb, &n), 0);
    ck_assert_int_eq(n, 1);
    assert_get("a/b", "inside", 6);
    ck_assert_int_eq(tu_count_entries(tu_dir), 1);
    ck_assert(!tu_exists("/x"));
}
END_TEST

/* ---- put / get / stat ----------------------------------------------------------- */

START_TEST(test_put_get)
{
    const char *a = "first", *b = "second version";
    size_t big_len = 300001;
    uint8_t *big = malloc(big_len);
    char *buf = NULL;
    size_t len = 0;

    put_str("repo.json", a);
    assert_get("repo.json", a, strlen(a));
    ck_assert(tu_exists(tu_path("repo/repo.json")));

    /* nested keys make their folders */
    tu_fill_random(big, big_len, 3);
    ck_assert_int_eq(storage_put(st, "wal/0000000100000000/x.zst", big, big_len, 1), 0);
    assert_get("wal/0000000100000000/x.zst", big, big_len);

    /* noreplace keeps the old bytes */
    ck_assert_int_eq(storage_put(st, "repo.json", b, strlen(b), 1), RS_EXISTS);
    assert_get("repo.json", a, strlen(a));
    ck_assert_int_eq(storage_put(st, "repo.json", b, strlen(b), 0), 0);
    assert_get("repo.json", b, strlen(b));

    /* empty object */
    ck_assert_int_eq(storage_put(st, "empty", "", 0, 1), 0);
    assert_get("empty", "", 0);

    /* missing; and larger than max is refused */
    ck_assert_int_eq(storage_get(st, "missing", 100, &buf, &len), RS_NOT_FOUND);
    ck_assert_int_eq(storage_get(st, "wal/nope/x", 100, &buf, &len), RS_NOT_FOUND);
    ck_assert_int_eq(storage_get(st, "wal/0000000100000000/x.zst", 1000, &buf, &len), -1);
    ck_assert_int_eq(storage_get(st, "wal/0000000100000000/x.zst", big_len, &buf, &len), 0);
    ck_assert_uint_eq(len, big_len);
    free(buf);
    free(big);
}
END_TEST

START_TEST(test_stat)
{
    int64_t size = -1, mtime = -1;
    time_t now = time(NULL);

    put_str("dir/obj", "12345");
    ck_assert_int_eq(storage_stat(st, "dir/obj", &size, &mtime), 0);
    ck_assert_int_eq(size, 5);
    ck_assert_int_ge(mtime, (int64_t)now - 5);
    ck_assert_int_le(mtime, (int64_t)now + 5);
    ck_assert_int_eq(storage_stat(st, "dir/obj", NULL, NULL), 0);
    ck_assert_int_eq(storage_stat(st, "dir/none", &size, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(storage_stat(st, "nodir/none", NULL, NULL), RS_NOT_FOUND);
}
END_TEST

/* ---- streaming write / read ----------------------------------------------------- */

START_TEST(test_stream_write_read)
{
    size_t len = (1u << 20) + 12345;
    uint8_t *data = malloc(len), *got = malloc(len);
    storage_write *w;
    storage_read *rd = NULL;
    const void *p;
    ssize_t n;
    int64_t size = 0;
    size_t off = 0;

    tu_fill_random(data, len, 9);
    w = storage_write_open(st, "wal/big");
    ck_assert_ptr_nonnull(w);
    for (size_t o = 0; o < len; o += 4099)
        ck_assert_int_eq(storage_write_data(w, data + o, len - o < 4099 ? len - o : 4099), 0);
    /* nothing visible before commit */
    ck_assert_int_eq(storage_stat(st, "wal/big", NULL, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(storage_write_commit(w, 1), 0);
    storage_write_free(w);

    ck_assert_int_eq(storage_read_open(st, "wal/big", &rd), 0);
    ck_assert_ptr_nonnull(rd);
    ck_assert_int_eq(storage_read_size(rd), (int64_t)len);
    while ((n = storage_read_data(rd, &p)) > 0) {
        ck_assert_uint_le(off + (size_t)n, len);
        memcpy(got + off, p, (size_t)n);
        off += (size_t)n;
    }
    ck_assert_int_eq(n, 0);
    storage_read_free(rd);
    ck_assert_uint_eq(off, len);
    ck_assert_mem_eq(got, data, len);

    /* commit noreplace onto an existing key: RS_EXISTS, old bytes kept */
    w = storage_write_open(st, "wal/big");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(storage_write_data(w, "other", 5), 0);
    ck_assert_int_eq(storage_write_commit(w, 1), RS_EXISTS);
    storage_write_free(w);
    ck_assert_int_eq(storage_stat(st, "wal/big", &size, NULL), 0);
    ck_assert_int_eq(size, (int64_t)len);
    ck_assert_int_eq(tu_count_entries(tu_path("repo/wal")), 1);
    free(data);
    free(got);
}
END_TEST

START_TEST(test_write_abort)
{
    storage_write *w = storage_write_open(st, "wal/aborted");
    int n = 0;

    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(storage_write_data(w, "partial", 7), 0);
    storage_write_free(w);
    ck_assert_int_eq(storage_stat(st, "wal/aborted", NULL, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(storage_list(st, "", count_cb, &n), 0);
    ck_assert_int_eq(n, 0);
    /* no temp file left in the folder either */
    ck_assert_int_le(tu_count_entries(tu_path("repo/wal")), 0);
    storage_write_free(NULL);
}
END_TEST

START_TEST(test_read_missing)
{
    storage_read *rd = NULL;

    ck_assert_int_eq(storage_read_open(st, "missing", &rd), RS_NOT_FOUND);
    ck_assert_int_eq(storage_read_open(st, "no/such/folder/key", &rd), RS_NOT_FOUND);
    storage_read_free(NULL);
}
END_TEST

/* The root removed under an open storage: every read is -1, never RS_NOT_FOUND. */
START_TEST(test_read_root_removed)
{
    storage_read *rd = NULL;
    char *buf = NULL;
    size_t len;
    int64_t size;
    uint8_t tail[8];

    put_str("wal/x", "data");
    ck_assert_int_eq(durable_remove_tree(tu_path("repo")), 0);
    ck_assert_int_eq(storage_read_open(st, "wal/x", &rd), -1);
    ck_assert_int_eq(storage_read_open(st, "missing", &rd), -1);
    ck_assert_int_eq(storage_get(st, "missing", 100, &buf, &len), -1);
    ck_assert_int_eq(storage_stat(st, "missing", &size, NULL), -1);
    ck_assert_int_eq(storage_read_tail(st, "missing", tail, sizeof(tail), &size), -1);
}
END_TEST

/* The root replaced by a file: also -1. */
START_TEST(test_read_root_not_dir)
{
    storage_read *rd = NULL;

    ck_assert_int_eq(durable_remove_tree(tu_path("repo")), 0);
    tu_write_str(tu_path("repo"), "not a directory");
    ck_assert_int_eq(storage_read_open(st, "missing", &rd), -1);
    ck_assert_int_eq(storage_read_open(st, "wal/x", &rd), -1);
}
END_TEST

/* An unreadable root (EACCES) is -1, not RS_NOT_FOUND. Root ignores permissions, so
 * the check runs in a child that drops to the postgres user; the parent keeps root
 * to clean up. */
START_TEST(test_read_root_unreadable)
{
    struct passwd *pw = getpwnam("postgres");
    pid_t pid;
    int status;

    if (pw == NULL || getuid() != 0) {
        /* cannot drop privileges here: nothing meaningful to test */
        ck_assert_msg(getuid() != 0, "running as root but there is no postgres user");
        return;
    }
    put_str("wal/x", "data");
    ck_assert_int_eq(chmod(tu_dir, 0755), 0);
    ck_assert_int_eq(chmod(tu_path("repo"), 0700), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        storage_read *rd = NULL;
        char *buf = NULL;
        size_t len;
        int code = 0;

        if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            _exit(90);
        if (access(tu_path("repo/wal/x"), R_OK) == 0)
            _exit(91); /* the drop did not take */
        if (storage_read_open(st, "wal/x", &rd) != -1)
            code |= 1;
        if (storage_read_open(st, "wal/missing", &rd) != -1)
            code |= 2;
        if (storage_read_open(st, "missing", &rd) != -1)
            code |= 4;
        if (storage_get(st, "missing", 100, &buf, &len) != -1)
            code |= 8;
        if (storage_stat(st, "wal/missing", NULL, NULL) != -1)
            code |= 16;
        _exit(code);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == 0,
                  "unreadable root: child status %d (1 read_open existing, 2 read_open "
                  "missing in folder, 4 read_open missing, 8 get, 16 stat did not return -1)",
                  WEXITSTATUS(status));
}
END_TEST

START_TEST(test_read_tail)
{
    uint8_t data[1000], tail[56];
    int64_t size = -1;

    tu_fill_random(data, sizeof(data), 4);
    ck_assert_int_eq(storage_put(st, "obj", data, sizeof(data), 0), 0);
    ck_assert_int_eq(storage_read_tail(st, "obj", tail, sizeof(tail), &size), 0);
    ck_assert_int_eq(size, 1000);
    ck_assert_mem_eq(tail, data + 1000 - 56, 56);
    ck_assert_int_eq(storage_read_tail(st, "obj", tail, 1, &size), 0);
    ck_assert_uint_eq(tail[0], data[999]);

    /* exactly the whole object; shorter than asked: -1 */
    ck_assert_int_eq(storage_put(st, "small", data, 56, 0), 0);
    ck_assert_int_eq(storage_read_tail(st, "small", tail, 56, &size), 0);
    ck_assert_int_eq(size, 56);
    ck_assert_mem_eq(tail, data, 56);
    ck_assert_int_eq(storage_put(st, "tiny", data, 55, 0), 0);
    ck_assert_int_eq(storage_read_tail(st, "tiny", tail, 56, &size), -1);
    ck_assert_int_eq(storage_read_tail(st, "missing", tail, 56, &size), RS_NOT_FOUND);
}
END_TEST

/* ---- list / remove / rename ------------------------------------------------------- */

typedef struct seen {
    int n;
    char keys[16][128];
    int64_t sizes[16];
    int stop_at;
} seen;

static int seen_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    seen *s = arg;

    (void)mtime;
    ck_assert_int_lt(s->n, 16);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->sizes[s->n] = size;
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static int64_t seen_size(const seen *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->sizes[i];
    return -1;
}

START_TEST(test_list)
{
    seen s;

    put_str("repo.json", "{}");
    put_str("wal/0000000100000000/a.zst", "aaaa");
    put_str("wal/0000000100000000/b.zst", "bb");
    put_str("wal/00000002.history.zst", "h");
    put_str("backups/L/base.tar.zst", "base");
    /* internal temp files are never listed */
    tu_write_str(tu_path("repo/wal/.c.zst.tmp"), "temp");
    tu_write_str(tu_path("repo/.repo.json.tmp"), "temp");

    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 5);
    ck_assert_int_eq(seen_size(&s, "repo.json"), 2);
    ck_assert_int_eq(seen_size(&s, "wal/0000000100000000/a.zst"), 4);
    ck_assert_int_eq(seen_size(&s, "wal/0000000100000000/b.zst"), 2);
    ck_assert_int_eq(seen_size(&s, "wal/00000002.history.zst"), 1);
    ck_assert_int_eq(seen_size(&s, "backups/L/base.tar.zst"), 4);

    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "wal/", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(seen_size(&s, "wal/00000002.history.zst"), 1);
    ck_assert_int_eq(seen_size(&s, "repo.json"), -1);

    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "wal/0000000100000000/", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 2);

    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "nothing/", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 0);

    /* a callback's non-zero result stops the walk and is returned */
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    ck_assert_int_eq(storage_list(st, "", seen_cb, &s), 7);
    ck_assert_int_eq(s.n, 2);
}
END_TEST

START_TEST(test_remove)
{
    seen s;

    put_str("wal/a", "1");
    put_str("wal/sub/b", "2");
    put_str("walrus", "3");
    put_str("keep/c", "4");
    ck_assert_int_eq(storage_remove(st, "wal/a"), 0);
    ck_assert_int_eq(storage_stat(st, "wal/a", NULL, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(storage_remove(st, "wal/a"), 0); /* absent: 0 */
    ck_assert_int_eq(storage_remove(st, "no/such"), 0);

    ck_assert_int_eq(storage_remove_prefix(st, "wal/"), 0);
    ck_assert_int_eq(storage_stat(st, "wal/sub/b", NULL, NULL), RS_NOT_FOUND);
    ck_assert_int_eq(storage_remove_prefix(st, "wal/"), 0);
    ck_assert_int_eq(storage_remove_prefix(st, "absent/"), 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(seen_size(&s, "walrus"), 1);
    ck_assert_int_eq(seen_size(&s, "keep/c"), 1);
}
END_TEST

/* A removal killed after hiding its folder: the next sweep removes the leftover, and
 * nothing else. */
START_TEST(test_sweep_deleting)
{
    char path[PATH_MAX];
    size_t n = 99;
    struct stat sb;

    put_str("backups/L/backup.json", "{}");
    snprintf(path, sizeof(path), "%s/backups/.hidden-file", storage_location(st));
    ck_assert_int_eq(durable_write_file(path, "x", 1, 0600, 0), 0);
    snprintf(path, sizeof(path), "%s/backups/.K.deleting/sub", storage_location(st));
    ck_assert_int_eq(durable_mkdirs(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/backups/.K.deleting/sub/f", storage_location(st));
    ck_assert_int_eq(durable_write_file(path, "data", 4, 0600, 0), 0);
    ck_assert_int_eq(storage_sweep_deleting(st, "backups/", &n), 0);
    ck_assert_uint_eq(n, 1);
    snprintf(path, sizeof(path), "%s/backups/.K.deleting", storage_location(st));
    ck_assert_int_ne(stat(path, &sb), 0);
    ck_assert_int_eq(storage_stat(st, "backups/L/backup.json", NULL, NULL), 0);
    snprintf(path, sizeof(path), "%s/backups/.hidden-file", storage_location(st));
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(storage_sweep_deleting(st, "backups/", &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(storage_sweep_deleting(st, "absent/", &n), 0);
}
END_TEST

START_TEST(test_rename_prefix)
{
    seen s;

    /* _i 1: as on NFS / FUSE, without RENAME_NOREPLACE (durable.h) */
    durable_set_no_rename_noreplace(_i);
    put_str("backups/L.partial/base.tar.zst", "base");
    put_str("backups/L.partial/backup_manifest", "manifest");
    put_str("backups/M/backup_manifest", "other");
    ck_assert_int_eq(storage_rename_prefix(st, "backups/L.partial", "backups/L"), 0);
    assert_get("backups/L/base.tar.zst", "base", 4);
    assert_get("backups/L/backup_manifest", "manifest", 8);
    ck_assert_int_eq(storage_stat(st, "backups/L.partial/base.tar.zst", NULL, NULL),
                     RS_NOT_FOUND);

    /* target exists: RS_EXISTS, both left as they were */
    put_str("backups/N.partial/x", "n");
    ck_assert_int_eq(storage_rename_prefix(st, "backups/N.partial", "backups/M"), RS_EXISTS);
    assert_get("backups/N.partial/x", "n", 1);
    assert_get("backups/M/backup_manifest", "other", 5);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(storage_list(st, "backups/M", seen_cb, &s), 0);
    ck_assert_int_eq(s.n, 1);
}
END_TEST

/* ---- locks ------------------------------------------------------------------------ */

/* try_in_child -- storage_lock_take in another process; its result. */
static int try_in_child(const char *name, int exclusive)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        storage *s2 = storage_open(tu_path("repo"), NULL, 0);
        storage_lock *lk = NULL;
        int r;

        if (s2 == NULL)
            _exit(99);
        r = storage_lock_take(s2, name, exclusive, 0, &lk);
        _exit(r < 0 ? 98 : r);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(test_lock)
{
    storage_lock *lk = NULL, *sh = NULL;

    ck_assert_int_eq(storage_lock_take(st, "archive", 1, 0, &lk), 0);
    ck_assert_ptr_nonnull(lk);
    ck_assert(tu_exists(tu_path("repo/locks/archive.lock")));
    ck_assert_int_eq(try_in_child("archive", 1), RS_EXISTS);
    ck_assert_int_eq(try_in_child("archive", 0), RS_EXISTS);
    ck_assert_int_eq(try_in_child("other", 1), 0); /* names are independent */
    storage_lock_release(lk);
    ck_assert_int_eq(try_in_child("archive", 1), 0);

    /* shared locks coexist; a shared lock keeps writers out */
    ck_assert_int_eq(storage_lock_take(st, "archive", 0, 0, &sh), 0);
    ck_assert_int_eq(try_in_child("archive", 0), 0);
    ck_assert_int_eq(try_in_child("archive", 1), RS_EXISTS);
    storage_lock_release(sh);
    ck_assert_int_eq(try_in_child("archive", 1), 0);

    storage_lock_release(NULL);
}
END_TEST

/* wait: a blocked taker gets the lock once the holder releases it. The child is
 * forked before the lock is taken so it does not inherit the holder's descriptor. */
START_TEST(test_lock_wait)
{
    storage_lock *lk = NULL;
    int go[2], ready[2];
    pid_t pid;
    int status;
    char c;

    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(ready), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        storage *s2 = storage_open(tu_path("repo"), NULL, 0);
        storage_lock *l2 = NULL;

        if (s2 == NULL || read(go[0], &c, 1) != 1)
            _exit(99);
        if (storage_lock_take(s2, "w", 1, 0, &l2) != RS_EXISTS)
            _exit(2);
        if (write(ready[1], "r", 1) != 1)
            _exit(99);
        _exit(storage_lock_take(s2, "w", 1, 1, &l2) == 0 ? 0 : 1);
    }
    ck_assert_int_eq(storage_lock_take(st, "w", 1, 0, &lk), 0);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    usleep(200000);
    ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0); /* still waiting */
    storage_lock_release(lk);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* test_lock_timeout -- a bounded take gives up (RS_EXISTS) after its timeout, and takes
 * the lock once the holder lets go within it; the retention lock: readers together,
 * expire apart; RAGSAFE_LOCK_TIMEOUT parsed, nonsense ignored. */
START_TEST(test_lock_timeout)
{
    storage_lock *lk = NULL, *r1 = NULL, *r2 = NULL;
    struct timespec t0, t1;
    int go[2], status;
    pid_t pid;
    char c;

    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        storage *s2 = storage_open(tu_path("repo"), NULL, 0);
        storage_lock *l2 = NULL;
        if (s2 == NULL || storage_lock_take(s2, STORAGE_RETENTION_LOCK, 1, 0, &l2) != 0 ||
            write(go[1], "g", 1) != 1)
            _exit(99);
        usleep(1500000);
        storage_lock_release(l2);
        _exit(0);
    }
    ck_assert_int_eq(read(go[0], &c, 1), 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(storage_lock_take_timeout(st, STORAGE_RETENTION_LOCK, 0, 1, &lk), RS_EXISTS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_ge(t1.tv_sec - t0.tv_sec, 1);
    ck_assert_ptr_null(lk);
    ck_assert_int_eq(storage_lock_take_timeout(st, STORAGE_RETENTION_LOCK, 0, 10, &lk), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    storage_lock_release(lk);

    ck_assert_int_eq(storage_reader_lock(st, &r1), 0);
    ck_assert_ptr_nonnull(r1);
    ck_assert_int_eq(storage_reader_lock(st, &r2), 0);
    storage_lock_release(r2);
    storage_lock_release(r1);

    unsetenv("RAGSAFE_LOCK_TIMEOUT");
    ck_assert_int_eq(storage_lock_timeout(), 60);
    setenv("RAGSAFE_LOCK_TIMEOUT", "5", 1);
    ck_assert_int_eq(storage_lock_timeout(), 5);
    setenv("RAGSAFE_LOCK_TIMEOUT", "5x", 1);
    ck_assert_int_eq(storage_lock_timeout(), 60);
    unsetenv("RAGSAFE_LOCK_TIMEOUT");
}
END_TEST

START_TEST(test_with_uring)
{
    uring *ur;
    storage *s2;
    size_t len = 700001;
    uint8_t *data = malloc(len);

    if (_i)
        setenv("RAGSAFE_NO_URING", "1", 1);
    else
        unsetenv("RAGSAFE_NO_URING");
    ur = uring_new(16);
    ck_assert_ptr_nonnull(ur);
    s2 = storage_open(tu_repo("repo2"), ur, 1);
    ck_assert_ptr_nonnull(s2);
    ck_assert_ptr_eq(storage_uring(s2), ur);
    tu_fill_random(data, len, 77);
    ck_assert_int_eq(storage_put(s2, "k/v", data, len, 1), 0);
    {
        char *buf = NULL;
        size_t got = 0;

        ck_assert_int_eq(storage_get(s2, "k/v", len, &buf, &got), 0);
        ck_assert_uint_eq(got, len);
        ck_assert_mem_eq(buf, data, len);
        free(buf);
    }
    storage_free(s2);
    uring_free(ur);
    free(data);
}
END_TEST

static Suite *storage_suite(void)
{
    Suite *s = suite_create("storage");
    TCase *tc = tcase_create("keys");

    tcase_add_checked_fixture(tc, st_setup, st_teardown);
    tcase_add_test(tc, test_open);
    tcase_add_test(tc, test_owner_of_root);
    tcase_add_test(tc, test_key_valid);
    tcase_add_loop_test(tc, test_bad_key_everywhere, 0, (int)ARRAY_LEN(bad_keys));
    suite_add_tcase(s, tc);

    tc = tcase_create("objects");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, st_setup, st_teardown);
    tcase_add_test(tc, test_put_get);
    tcase_add_test(tc, test_stat);
    tcase_add_test(tc, test_stream_write_read);
    tcase_add_test(tc, test_write_abort);
    tcase_add_test(tc, test_read_missing);
    tcase_add_test(tc, test_read_root_removed);
    tcase_add_test(tc, test_read_root_not_dir);
    tcase_add_test(tc, test_read_root_unreadable);
    tcase_add_test(tc, test_read_tail);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_remove);
    tcase_add_test(tc, test_sweep_deleting);
    tcase_add_loop_test(tc, test_rename_prefix, 0, 2);
    tcase_add_loop_test(tc, test_with_uring, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("locks");
    tcase_add_checked_fixture(tc, st_setup, st_teardown);
    tcase_add_test(tc, test_lock);
    tcase_add_test(tc, test_lock_wait);
    tcase_add_test(tc, test_lock_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(storage_suite());
}
