/*
 * check_durable.c -- unit tests for lib/durable: "durable or absent". A committed file
 * has the exact bytes; before commit, after an abort, after an injected I/O fault
 * (ENOSPC, EIO, short write, fsync EIO through uring_set_fault) there is no final
 * file and no temp; NOREPLACE keeps what is there; a dead writer's temp is taken
 * over. Every I/O test runs on the io_uring path and on the fallback path.
 */
#include <signal.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "durable.h"
#include "testutil.h"

/* uring for path p: 0 io_uring, 1 fallback (RAGSAFE_NO_URING=1), 2 none (NULL). */
static uring *path_uring(int p)
{
    uring *ur;

    if (p == 2)
        return NULL;
    if (p == 1)
        setenv("RAGSAFE_NO_URING", "1", 1);
    else
        unsetenv("RAGSAFE_NO_URING");
    ur = uring_new(16);
    ck_assert_ptr_nonnull(ur);
    if (p == 1)
        ck_assert_int_eq(uring_active(ur), 0);
    return ur;
}

static void fault_teardown(void)
{
    uring_set_fault(NULL);
    tu_teardown();
}

/* write_durable -- open, write data in piece-sized calls, commit with flags. */
static int write_durable(const char *path, uring *ur, const void *data, size_t len,
                         size_t piece, int flags)
{
    durable_file *f = durable_open(path, ur, 0640);
    const uint8_t *p = data;
    size_t off = 0;
    int ret = 0;

    ck_assert_ptr_nonnull(f);
    while (off < len && ret == 0) {
        size_t n = len - off < piece ? len - off : piece;

        ret = durable_write(f, p + off, n);
        off += n;
        if (ret == 0)
            ck_assert_uint_eq(durable_size(f), off);
    }
    if (ret == 0)
        ret = durable_commit(f, flags);
    durable_free(f);
    return ret;
}

static void assert_file(const char *path, const void *data, size_t len)
{
    size_t got_len;
    char *got = tu_read_file(path, &got_len);

    ck_assert_msg(got != NULL, "\"%s\" missing", path);
    ck_assert_uint_eq(got_len, len);
    if (len > 0)
        ck_assert_mem_eq(got, data, len);
    free(got);
}

static const size_t sizes[] = {0, 1, 4096, 1000003};

/* _i: path * ARRAY_LEN(sizes) + size index */
START_TEST(test_commit_exact)
{
    int p = _i / (int)ARRAY_LEN(sizes);
    size_t len = sizes[_i % (int)ARRAY_LEN(sizes)];
    uring *ur = path_uring(p);
    uint8_t *data = malloc(len + 1);
    struct stat st;

    tu_fill_random(data, len, len * 3 + 1);
    ck_assert_int_eq(write_durable(tu_path("seg"), ur, data, len, 7777, 0), 0);
    assert_file(tu_path("seg"), data, len);
    ck_assert_int_eq(stat(tu_path("seg"), &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0640);
    /* only the final file is left in the directory */
    ck_assert_int_eq(tu_count_entries(tu_dir), 1);
    ck_assert(!tu_exists(tu_path(".seg.tmp")));
    uring_free(ur);
    free(data);
}
END_TEST

START_TEST(test_nothing_before_commit)
{
    uring *ur = path_uring(_i);
    uint8_t data[20000];
    durable_file *f;

    memset(data, 'x', sizeof(data));
    f = durable_open(tu_path("obj"), ur, 0640);
    ck_assert_ptr_nonnull(f);
    ck_assert(!tu_exists(tu_path("obj")));
    ck_assert(tu_exists(tu_path(".obj.tmp")));
    ck_assert_int_eq(durable_write(f, data, sizeof(data)), 0);
    ck_assert(!tu_exists(tu_path("obj")));
    ck_assert_int_eq(durable_commit(f, DURABLE_NOREPLACE), 0);
    ck_assert(tu_exists(tu_path("obj")));
    ck_assert(!tu_exists(tu_path(".obj.tmp")));
    durable_free(f);
    assert_file(tu_path("obj"), data, sizeof(data));
    uring_free(ur);
}
END_TEST

START_TEST(test_free_aborts)
{
    uring *ur = path_uring(_i);
    uint8_t data[100000];
    durable_file *f;

    memset(data, 'y', sizeof(data));
    f = durable_open(tu_path("gone"), ur, 0640);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(durable_write(f, data, sizeof(data)), 0);
    durable_free(f);
    ck_assert_int_eq(tu_count_entries(tu_dir), 0);

    /* and with nothing written at all */
    f = durable_open(tu_path("gone"), ur, 0640);
    ck_assert_ptr_nonnull(f);
    durable_free(f);
    ck_assert_int_eq(tu_count_entries(tu_dir), 0);
    durable_free(NULL);
    uring_free(ur);
}
END_TEST

START_TEST(test_noreplace)
{
    uring *ur = path_uring(_i);
    const char *old = "the original content\n";
    uint8_t data[70000];

    memset(data, 'n', sizeof(data));
    tu_write_str(tu_path("taken"), old);
    ck_assert_int_eq(write_durable(tu_path("taken"), ur, data, sizeof(data), 65536,
                                   DURABLE_NOREPLACE),
                     RS_EXISTS);
    assert_file(tu_path("taken"), old, strlen(old));
    ck_assert_int_eq(tu_count_entries(tu_dir), 1); /* temp removed */

    /* without NOREPLACE the file is replaced */
    ck_assert_int_eq(write_durable(tu_path("taken"), ur, data, sizeof(data), 65536, 0), 0);
    assert_file(tu_path("taken"), data, sizeof(data));
    ck_assert_int_eq(tu_count_entries(tu_dir), 1);
    uring_free(ur);
}
END_TEST

START_TEST(test_write_file)
{
    const char *a = "{\"format\":1}\n", *b = "something else";

    ck_assert_int_eq(durable_write_file(tu_path("repo.json"), a, strlen(a), 0600, 0), 0);
    assert_file(tu_path("repo.json"), a, strlen(a));
    ck_assert_int_eq(durable_write_file(tu_path("repo.json"), b, strlen(b), 0600,
                                        DURABLE_NOREPLACE),
                     RS_EXISTS);
    assert_file(tu_path("repo.json"), a, strlen(a));
    ck_assert_int_eq(durable_write_file(tu_path("repo.json"), b, strlen(b), 0600, 0), 0);
    assert_file(tu_path("repo.json"), b, strlen(b));
    ck_assert_int_eq(tu_count_entries(tu_dir), 1);
    /* into a missing directory: -1, nothing created */
    ck_assert_int_eq(durable_write_file(tu_path("no/such/x"), a, strlen(a), 0600, 0), -1);
    ck_assert(!tu_exists(tu_path("no")));
}
END_TEST

/* A temp left by a writer killed with -9 is taken over and truncated. */
START_TEST(test_stale_temp_dead_writer)
{
    uring *ur = path_uring(_i);
    uint8_t stale[50000], fresh[1000];
    int pfd[2];
    pid_t pid;
    int status;
    char c;

    memset(stale, 'S', sizeof(stale));
    memset(fresh, 'F', sizeof(fresh));
    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        durable_file *f = durable_open(tu_path("wal"), NULL, 0640);

        if (f == NULL || durable_write(f, stale, sizeof(stale)) != 0)
            _exit(1);
        if (write(pfd[1], "k", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(pfd[1]);
    ck_assert_int_eq(read(pfd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(tu_exists(tu_path(".wal.tmp")));
    ck_assert(!tu_exists(tu_path("wal")));

    ck_assert_int_eq(write_durable(tu_path("wal"), ur, fresh, sizeof(fresh), 333,
                                   DURABLE_NOREPLACE),
                     0);
    assert_file(tu_path("wal"), fresh, sizeof(fresh));
    ck_assert_int_eq(tu_count_entries(tu_dir), 1);
    uring_free(ur);
}
END_TEST

/* A temp nobody holds a lock on (left by a crash) is taken over as well. */
START_TEST(test_stale_temp_unlocked)
{
    const char *fresh = "fresh";

    tu_write_str(tu_path(".x.tmp"), "stale stale stale stale stale");
    ck_assert_int_eq(write_durable(tu_path("x"), NULL, fresh, strlen(fresh), 100, 0), 0);
    assert_file(tu_path("x"), fresh, strlen(fresh));
    ck_assert(!tu_exists(tu_path(".x.tmp")));
}
END_TEST

/* A live concurrent writer of the same name does not disturb the writer that holds
 * the shared temp name: the second one writes a private temp, and with NOREPLACE the
 * first commit wins while the other gets RS_EXISTS and leaves nothing behind. */
START_TEST(test_live_writer_conflict)
{
    uring *ur = path_uring(_i);
    uint8_t data[30000], other[5000];
    durable_file *f, *g;
    pid_t pid;
    int status;

    memset(data, 'L', sizeof(data));
    memset(other, 'O', sizeof(other));
    f = durable_open(tu_path("busy"), ur, 0640);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(durable_write(f, data, 10000), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* another process: commits first */
        g = durable_open(tu_path("busy"), NULL, 0640);
        if (!g || durable_write(g, other, sizeof(other)) != 0)
            _exit(1);
        _exit(durable_commit(g, DURABLE_NOREPLACE) == 0 ? 0 : 2);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "a second writer could not write beside a live one (status %d)", status);
    assert_file(tu_path("busy"), other, sizeof(other));
    /* the same process, another open file description: refused at commit */
    g = durable_open(tu_path("busy"), ur, 0640);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(durable_write(g, other, 100), 0);
    ck_assert_int_eq(durable_commit(g, DURABLE_NOREPLACE), RS_EXISTS);
    durable_free(g);
    /* the first writer was not disturbed: it loses the no-replace race too */
    ck_assert_int_eq(durable_write(f, data + 10000, sizeof(data) - 10000), 0);
    ck_assert_int_eq(durable_commit(f, DURABLE_NOREPLACE), RS_EXISTS);
    durable_free(f);
    assert_file(tu_path("busy"), other, sizeof(other));
    ck_assert_int_eq(tu_count_entries(tu_dir), 1); /* no temp left behind */
    uring_free(ur);
}
END_TEST

START_TEST(test_open_missing_dir)
{
    ck_assert_ptr_null(durable_open(tu_path("nodir/file"), NULL, 0640));
    ck_assert(!tu_exists(tu_path("nodir")));
}
END_TEST

/* ---- injected faults ---------------------------------------------------------- */

static int fault_mode; /* 0 ENOSPC write, 1 EIO write, 2 short write, 3 fsync EIO */
static int fault_hits;

static int fault_hook(enum uring_op_kind kind, int res)
{
    switch (fault_mode) {
    case 0:
        if (kind == URING_OP_WRITE) {
            fault_hits++;
            return -ENOSPC;
        }
        break;
    case 1:
        if (kind == URING_OP_WRITE) {
            fault_hits++;
            return -EIO;
        }
        break;
    case 2:
        if (kind == URING_OP_WRITE && res > 1) {
            fault_hits++;
            return res / 2;
        }
        break;
    default:
        if (kind == URING_OP_FSYNC) {
            fault_hits++;
            return -EIO;
        }
        break;
    }
    return res;
}

/* _i: mode * 2 + path (0 io_uring, 1 fallback); with a small and a multi-chunk file. */
START_TEST(test_fault)
{
    int p = _i % 2;
    size_t lens[] = {100, 3u << 20};

    fault_mode = _i / 2;
    for (size_t k = 0; k < ARRAY_LEN(lens); k++) {
        uring *ur = path_uring(p);
        size_t len = lens[k];
        uint8_t *data = malloc(len);
        int ret;

        tu_fill_random(data, len, k);
        fault_hits = 0;
        uring_set_fault(fault_hook);
        ret = write_durable(tu_path("f"), ur, data, len, 100000, DURABLE_NOREPLACE);
        uring_set_fault(NULL);
        ck_assert_int_ge(fault_hits, 1);
        if (fault_mode == 2) {
            /* Short writes are completed (uring.h): the file is whole and committed. */
            ck_assert_msg(ret == 0, "short writes, path %d len %zu: result %d", p, len, ret);
            assert_file(tu_path("f"), data, len);
            ck_assert_int_eq(unlink(tu_path("f")), 0);
            uring_free(ur);
            free(data);
            continue;
        }
        ck_assert_msg(ret == -1, "mode %d path %d len %zu: result %d", fault_mode, p, len, ret);
        ck_assert_msg(!tu_exists(tu_path("f")), "final file after a failed write");
        ck_assert_msg(tu_count_entries(tu_dir) == 0, "temp left after a failed write");

        /* without the fault the same write goes through */
        ck_assert_int_eq(write_durable(tu_path("f"), ur, data, len, 100000, DURABLE_NOREPLACE),
                         0);
        assert_file(tu_path("f"), data, len);
        ck_assert_int_eq(unlink(tu_path("f")), 0);
        uring_free(ur);
        free(data);
    }
}
END_TEST

/* A failed write makes durable_write or durable_commit fail; committing after a
 * reported write failure must not produce a file either. */
START_TEST(test_fault_then_commit)
{
    uring *ur = path_uring(_i);
    size_t len = 2u << 20;
    uint8_t *data = malloc(len);
    durable_file *f;
    int wret = 0, cret;

    tu_fill_random(data, len, 11);
    fault_mode = 1;
    uring_set_fault(fault_hook);
    f = durable_open(tu_path("g"), ur, 0640);
    ck_assert_ptr_nonnull(f);
    for (size_t off = 0; off < len; off += 65536)
        if (durable_write(f, data + off, 65536) != 0)
            wret = -1;
    cret = durable_commit(f, 0);
    durable_free(f);
    uring_set_fault(NULL);
    ck_assert_msg(wret == -1 || cret == -1, "write %d commit %d", wret, cret);
    ck_assert_int_ne(cret, 0);
    ck_assert(!tu_exists(tu_path("g")));
    ck_assert_int_eq(tu_count_entries(tu_dir), 0);
    uring_free(ur);
    free(data);
}
END_TEST

/* ---- directories ------------------------------------------------------------- */

START_TEST(test_mkdirs)
{
    struct stat st;

    ck_assert_int_eq(durable_mkdirs(tu_path("a/b/c"), 0750), 0);
    ck_assert_int_eq(stat(tu_path("a/b/c"), &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0750);
    ck_assert_int_eq(stat(tu_path("a"), &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0750);
    /* existing: fine; trailing slash: fine */
    ck_assert_int_eq(durable_mkdirs(tu_path("a/b/c"), 0750), 0);
    ck_assert_int_eq(durable_mkdirs(tu_path("a/b/d/"), 0750), 0);
    ck_assert_int_eq(stat(tu_path("a/b/d"), &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(durable_mkdirs(tu_dir, 0750), 0);
    /* a file in the way */
    tu_write_str(tu_path("a/file"), "x");
    ck_assert_int_eq(durable_mkdirs(tu_path("a/file/sub"), 0750), -1);
    ck_assert_int_eq(durable_mkdirs(tu_path("a/file"), 0750), -1);
}
END_TEST

START_TEST(test_remove_tree)
{
    char outside[600];

    ck_assert_int_eq(durable_mkdirs(tu_path("t/x/y/z"), 0755), 0);
    ck_assert_int_eq(durable_mkdirs(tu_path("keep"), 0755), 0);
    tu_write_str(tu_path("t/f1"), "1");
    tu_write_str(tu_path("t/x/.hidden"), "2");
    tu_write_str(tu_path("t/x/y/z/f3"), "3");
    tu_write_str(tu_path("keep/precious"), "do not delete");
    snprintf(outside, sizeof(outside), "%s", tu_path("keep"));
    /* symlinks are removed, never followed */
    ck_assert_int_eq(symlink(outside, tu_path("t/x/link")), 0);
    ck_assert_int_eq(symlink(tu_path("keep/precious"), tu_path("t/flink")), 0);
    ck_assert_int_eq(durable_remove_tree(tu_path("t")), 0);
    ck_assert(!tu_exists(tu_path("t")));
    assert_file(tu_path("keep/precious"), "do not delete", 13);
    /* absent: fine; a plain file: removed */
    ck_assert_int_eq(durable_remove_tree(tu_path("t")), 0);
    ck_assert_int_eq(durable_remove_tree(tu_path("keep/precious")), 0);
    ck_assert(!tu_exists(tu_path("keep/precious")));
    ck_assert(tu_exists(tu_path("keep")));
}
END_TEST

START_TEST(test_rename_and_fsync)
{
    tu_write_str(tu_path("old"), "content");
    ck_assert_int_eq(durable_mkdirs(tu_path("sub"), 0755), 0);
    ck_assert_int_eq(durable_rename(tu_path("old"), tu_path("sub/new")), 0);
    ck_assert(!tu_exists(tu_path("old")));
    assert_file(tu_path("sub/new"), "content", 7);
    ck_assert_int_eq(durable_rename(tu_path("old"), tu_path("sub/other")), -1);

    ck_assert_int_eq(durable_fsync_path(tu_path("sub/new")), 0);
    ck_assert_int_eq(durable_fsync_path(tu_path("sub")), 0);
    ck_assert_int_eq(durable_fsync_path(tu_path("missing")), -1);
    ck_assert_int_eq(durable_mkdirs(tu_path("tree/a/b"), 0755), 0);
    tu_write_str(tu_path("tree/a/f"), "f");
    tu_write_str(tu_path("tree/a/b/g"), "g");
    ck_assert_int_eq(durable_fsync_tree(tu_path("tree")), 0);
    ck_assert_int_eq(durable_fsync_tree(tu_path("missing")), -1);
}
END_TEST

/* durable_sync_tree: one syncfs (the descriptor opened before the writes) or, with
 * none, the per-file fsyncs; a missing tree fails either way. */
START_TEST(test_sync_tree)
{
    int sfd = durable_sync_open(tu_dir);
    struct utsname u;
    int ma = 0, mi = 0;

    ck_assert(uname(&u) == 0 && sscanf(u.release, "%d.%d", &ma, &mi) == 2);
    /* usable exactly where syncfs reports writeback errors */
    ck_assert_int_eq(sfd >= 0, ma > 5 || (ma == 5 && mi >= 8));
    ck_assert_int_eq(durable_mkdirs(tu_path("tree/a/b"), 0755), 0);
    tu_write_str(tu_path("tree/a/f"), "f");
    tu_write_str(tu_path("tree/a/b/g"), "g");
    ck_assert_int_eq(durable_sync_tree(sfd, tu_path("tree")), 0);
    ck_assert_int_eq(durable_sync_tree(-1, tu_path("tree")), 0);
    ck_assert_int_eq(durable_sync_tree(sfd, tu_path("missing")), -1);
    ck_assert_int_eq(durable_sync_tree(-1, tu_path("missing")), -1);
    durable_sync_close(sfd);
    setenv("RAGSAFE_NO_SYNCFS", "1", 1);
    ck_assert_int_eq(durable_sync_open(tu_dir), -1);
    unsetenv("RAGSAFE_NO_SYNCFS");
}
END_TEST

/* durable_rename_noreplace, natively (_i 0) and with RENAME_NOREPLACE forced off
 * (_i 1: the link() / check-then-rename fallback of NFS and FUSE), for files and
 * directories; and a durable_commit through it. */
START_TEST(test_rename_noreplace)
{
    durable_file *f;

    durable_set_no_rename_noreplace(_i);
    /* a file onto a free name */
    tu_write_str(tu_path("a"), "first");
    ck_assert_int_eq(durable_rename_noreplace(tu_path("a"), tu_path("b")), 0);
    ck_assert(!tu_exists(tu_path("a")));
    assert_file(tu_path("b"), "first", 5);
    /* a file onto an existing name: EEXIST, both left as they were */
    tu_write_str(tu_path("c"), "second");
    ck_assert_int_eq(durable_rename_noreplace(tu_path("c"), tu_path("b")), RS_EXISTS);
    assert_file(tu_path("b"), "first", 5);
    assert_file(tu_path("c"), "second", 6);
    /* a missing source */
    ck_assert_int_eq(durable_rename_noreplace(tu_path("none"), tu_path("d")), -1);
    ck_assert(!tu_exists(tu_path("d")));

    /* a directory onto a free name */
    ck_assert_int_eq(durable_mkdirs(tu_path("L.partial"), 0755), 0);
    tu_write_str(tu_path("L.partial/base"), "base");
    ck_assert_int_eq(durable_rename_noreplace(tu_path("L.partial"), tu_path("L")), 0);
    ck_assert(!tu_exists(tu_path("L.partial")));
    assert_file(tu_path("L/base"), "base", 4);
    /* onto an existing directory, full or empty (rename(2) would replace an empty one) */
    ck_assert_int_eq(durable_mkdirs(tu_path("M.partial"), 0755), 0);
    tu_write_str(tu_path("M.partial/x"), "m");
    ck_assert_int_eq(durable_rename_noreplace(tu_path("M.partial"), tu_path("L")), RS_EXISTS);
    assert_file(tu_path("L/base"), "base", 4);
    assert_file(tu_path("M.partial/x"), "m", 1);
    ck_assert_int_eq(durable_mkdirs(tu_path("empty"), 0755), 0);
    ck_assert_int_eq(durable_rename_noreplace(tu_path("M.partial"), tu_path("empty")), RS_EXISTS);
    assert_file(tu_path("M.partial/x"), "m", 1);
    ck_assert(tu_exists(tu_path("empty")));
    ck_assert_int_eq(tu_count_entries(tu_path("empty")), 0);
    /* onto an existing file */
    ck_assert_int_eq(durable_rename_noreplace(tu_path("M.partial"), tu_path("b")), RS_EXISTS);
    assert_file(tu_path("b"), "first", 5);

    /* durable_commit with DURABLE_NOREPLACE goes the same way */
    f = durable_open(tu_path("obj"), NULL, 0640);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(durable_write(f, "one", 3), 0);
    ck_assert_int_eq(durable_commit(f, DURABLE_NOREPLACE), 0);
    durable_free(f);
    f = durable_open(tu_path("obj"), NULL, 0640);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(durable_write(f, "two", 3), 0);
    ck_assert_int_eq(durable_commit(f, DURABLE_NOREPLACE), RS_EXISTS);
    durable_free(f);
    assert_file(tu_path("obj"), "one", 3);
    /* no temp left: only the names made above */
    ck_assert_int_eq(tu_count_entries(tu_dir), 6); /* b c L M.partial empty obj */
    durable_set_no_rename_noreplace(0);
}
END_TEST

static Suite *durable_suite(void)
{
    Suite *s = suite_create("durable");
    TCase *tc = tcase_create("file");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_loop_test(tc, test_commit_exact, 0, 3 * (int)ARRAY_LEN(sizes));
    tcase_add_loop_test(tc, test_nothing_before_commit, 0, 3);
    tcase_add_loop_test(tc, test_free_aborts, 0, 3);
    tcase_add_loop_test(tc, test_noreplace, 0, 3);
    tcase_add_test(tc, test_write_file);
    tcase_add_loop_test(tc, test_stale_temp_dead_writer, 0, 3);
    tcase_add_test(tc, test_stale_temp_unlocked);
    tcase_add_loop_test(tc, test_live_writer_conflict, 0, 3);
    tcase_add_test(tc, test_open_missing_dir);
    suite_add_tcase(s, tc);

    tc = tcase_create("fault");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tu_setup, fault_teardown);
    tcase_add_loop_test(tc, test_fault, 0, 8);
    tcase_add_loop_test(tc, test_fault_then_commit, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("dirs");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_mkdirs);
    tcase_add_test(tc, test_remove_tree);
    tcase_add_test(tc, test_rename_and_fsync);
    tcase_add_test(tc, test_sync_tree);
    tcase_add_loop_test(tc, test_rename_noreplace, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(durable_suite());
}
