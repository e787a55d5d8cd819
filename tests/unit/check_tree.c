/*
 * check_tree.c -- unit tests for lib/tree: the label and path validators (every
 * refusal), entry kinds and symbolic links of a walk, the state of a restore target,
 * set-id bits, the owner policy, a file's restored metadata and moving aside.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "storage.h"
#include "testutil.h"
#include "tree.h"

START_TEST(test_label_valid)
{
    char max[101], over[102];

    ck_assert_int_eq(tree_label_valid("20261126T010000Z", 100), 1);
    ck_assert_int_eq(tree_label_valid("config-a.b_c", 100), 1);
    ck_assert_int_eq(tree_label_valid("-dash", 100), 1); /* a tool may refuse it itself */
    ck_assert_int_eq(tree_label_valid("a..b", 100), 1);  /* no '/': stays one key */
    memset(max, 'a', 100);
    max[100] = '\0';
    ck_assert_int_eq(tree_label_valid(max, 100), 1);
    memset(over, 'a', 101);
    over[101] = '\0';
    ck_assert_int_eq(tree_label_valid(over, 100), 0);    /* too long */
    ck_assert_int_eq(tree_label_valid(max, 63), 0);
    ck_assert_int_eq(tree_label_valid("", 100), 0);      /* empty */
    ck_assert_int_eq(tree_label_valid(".", 100), 0);
    ck_assert_int_eq(tree_label_valid("..", 100), 0);
    ck_assert_int_eq(tree_label_valid(".hidden", 100), 0);
    ck_assert_int_eq(tree_label_valid("a/b", 100), 0);
    ck_assert_int_eq(tree_label_valid("/abs", 100), 0);
    ck_assert_int_eq(tree_label_valid("../x", 100), 0);
    ck_assert_int_eq(tree_label_valid("a b", 100), 0);
    ck_assert_int_eq(tree_label_valid("a\nb", 100), 0);  /* control characters */
    ck_assert_int_eq(tree_label_valid("a\tb", 100), 0);
    ck_assert_int_eq(tree_label_valid("a\x7f", 100), 0);
    ck_assert_int_eq(tree_label_valid("\xc3\xa9t\xc3\xa9", 100), 0); /* not ASCII */
    ck_assert_int_eq(tree_label_valid("a*b", 100), 0);
    ck_assert_int_eq(tree_label_valid("a\\b", 100), 0);
}
END_TEST

START_TEST(test_path_valid)
{
    char p[TREE_PATH_MAX + 2], name[TREE_NAME_MAX + 2];

    ck_assert_int_eq(tree_path_valid("a"), 1);
    ck_assert_int_eq(tree_path_valid("backend/alembic.ini"), 1);
    ck_assert_int_eq(tree_path_valid(".env"), 1);
    ck_assert_int_eq(tree_path_valid("a/..b/c.."), 1);
    ck_assert_int_eq(tree_path_valid("a\nb"), 1);        /* a file name may hold one */
    ck_assert_int_eq(tree_path_valid(""), 0);            /* empty */
    ck_assert_int_eq(tree_path_valid("/etc/passwd"), 0); /* absolute */
    ck_assert_int_eq(tree_path_valid("/"), 0);
    ck_assert_int_eq(tree_path_valid(".."), 0);
    ck_assert_int_eq(tree_path_valid("../x"), 0);
    ck_assert_int_eq(tree_path_valid("a/../../x"), 0);
    ck_assert_int_eq(tree_path_valid("a/.."), 0);
    ck_assert_int_eq(tree_path_valid("."), 0);
    ck_assert_int_eq(tree_path_valid("./a"), 0);
    ck_assert_int_eq(tree_path_valid("a/./b"), 0);
    ck_assert_int_eq(tree_path_valid("a//b"), 0);        /* empty component */
    ck_assert_int_eq(tree_path_valid("a/"), 0);          /* trailing slash */
    /* too long: the whole path, one component */
    memset(p, 'a', TREE_PATH_MAX);
    for (size_t i = 200; i < TREE_PATH_MAX; i += 201)
        p[i] = '/';
    p[TREE_PATH_MAX] = '\0';
    ck_assert_int_eq(tree_path_valid(p), 1);
    p[TREE_PATH_MAX] = 'a';
    p[TREE_PATH_MAX + 1] = '\0';
    ck_assert_int_eq(tree_path_valid(p), 0);
    memset(name, 'n', TREE_NAME_MAX);
    name[TREE_NAME_MAX] = '\0';
    ck_assert_int_eq(tree_path_valid(name), 1);
    name[TREE_NAME_MAX] = 'n';
    name[TREE_NAME_MAX + 1] = '\0';
    ck_assert_int_eq(tree_path_valid(name), 0);
}
END_TEST

START_TEST(test_entry_kind_and_link)
{
    struct stat sb;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char *target = NULL, longt[4096];
    int s, dfd;

    tu_write_str("f", "x");
    ck_assert_int_eq(mkdir("d", 0755), 0);
    ck_assert_int_eq(symlink("f", "l"), 0);
    ck_assert_int_eq(mkfifo("p", 0644), 0);
    ck_assert_int_eq(lstat("f", &sb), 0);
    ck_assert_int_eq(tree_entry_kind(&sb, NULL, "f"), TREE_FILE);
    ck_assert_int_eq(lstat("d", &sb), 0);
    ck_assert_int_eq(tree_entry_kind(&sb, NULL, "d"), TREE_DIR);
    ck_assert_int_eq(lstat("l", &sb), 0);
    ck_assert_int_eq(tree_entry_kind(&sb, NULL, "l"), TREE_LINK);
    ck_assert_int_eq(lstat("p", &sb), 0);
    ck_assert_int_eq(tree_entry_kind(&sb, NULL, "p"), -1);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "sock");
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(lstat("sock", &sb), 0);
    ck_assert_int_eq(tree_entry_kind(&sb, "root", "sock"), -1);
    close(s);

    /* by path and by directory descriptor */
    ck_assert_int_eq(tree_read_link(AT_FDCWD, "l", NULL, "l", &target), 0);
    ck_assert_str_eq(target, "f");
    free(target);
    dfd = open(".", O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    ck_assert_int_eq(tree_read_link(dfd, "l", ".", "l", &target), 0);
    ck_assert_str_eq(target, "f");
    free(target);
    ck_assert_int_eq(tree_read_link(dfd, "f", ".", "f", &target), -1); /* not a link */
    ck_assert_ptr_null(target);
    close(dfd);
    /* the longest target Linux allows (4095 bytes) comes back whole */
    memset(longt, 'x', sizeof(longt) - 1);
    for (size_t i = 200; i < sizeof(longt) - 1; i += 201)
        longt[i] = '/';
    longt[4095] = '\0';
    ck_assert_int_eq(symlink(longt, "just"), 0);
    ck_assert_int_eq(tree_read_link(AT_FDCWD, "just", NULL, "just", &target), 0);
    ck_assert_uint_eq(strlen(target), 4095);
    free(target);
}
END_TEST

START_TEST(test_dir_state)
{
    ck_assert_int_eq(tree_dir_state("absent", 0), TREE_ABSENT);
    ck_assert_int_eq(tree_dir_state("absent", 1), TREE_ABSENT);
    ck_assert_int_eq(mkdir("e", 0755), 0);
    ck_assert_int_eq(tree_dir_state("e", 0), TREE_EMPTY);
    ck_assert_int_eq(mkdir("full", 0755), 0);
    tu_write_str("full/.hidden", "x"); /* a dot file counts */
    ck_assert_int_eq(tree_dir_state("full", 0), TREE_FULL);
    tu_write_str("file", "x");
    ck_assert_int_eq(tree_dir_state("file", 0), TREE_NOT_DIR);
    ck_assert_int_eq(tree_dir_state("file", 1), TREE_NOT_DIR);
    /* a symbolic link to a directory: that directory with follow, else not one */
    ck_assert_int_eq(symlink("full", "tofull"), 0);
    ck_assert_int_eq(tree_dir_state("tofull", 1), TREE_FULL);
    ck_assert_int_eq(tree_dir_state("tofull", 0), TREE_NOT_DIR);
    ck_assert_int_eq(symlink("absent", "dangling"), 0);
    ck_assert_int_eq(tree_dir_state("dangling", 1), TREE_ABSENT);
    ck_assert_int_eq(tree_dir_state("dangling", 0), TREE_NOT_DIR);
    /* a stat failure other than ENOENT is an error */
    ck_assert_int_eq(tree_dir_state("file/x", 0), -1);
}
END_TEST

START_TEST(test_safe_mode)
{
    ck_assert_uint_eq(tree_safe_mode("a", 0644), 0644);
    ck_assert_uint_eq(tree_safe_mode("a", 01777), 01777); /* sticky stays */
    ck_assert_uint_eq(tree_safe_mode("a", 04755), 0755);
    ck_assert_uint_eq(tree_safe_mode("a", 02755), 0755);
    ck_assert_uint_eq(tree_safe_mode("a", 06711), 0711);
}
END_TEST

START_TEST(test_owner_policy)
{
    ck_assert_int_eq(tree_owner_policy(0), 0);
    if (geteuid() == 0) {
        ck_assert_int_eq(tree_owner_policy(1), 1);
        ck_assert_int_eq(tree_owner_policy(-1), TREE_OWNER_COMPARE);
    } else {
        ck_assert_int_eq(tree_owner_policy(1), 0);
        ck_assert_int_eq(tree_owner_policy(-1), 0);
    }
    /* the target's owner when it exists, else the user restoring */
    ck_assert_int_eq(mkdir("t", 0755), 0);
    ck_assert_int_eq(tree_owner_matches("", "x", geteuid(), getegid(), "t"), 1);
    ck_assert_int_eq(tree_owner_matches("", "x", geteuid(), getegid(), "absent"), 1);
    ck_assert_int_eq(tree_owner_matches("", "x", geteuid() + 1, getegid(), "t"), 0);
    ck_assert_int_eq(tree_owner_matches("volume ", "x", geteuid(), getegid() + 1, "absent"), 0);
}
END_TEST

START_TEST(test_restore_fd_meta)
{
    tree_meta m = {.mode = 04751, .uid = geteuid(), .gid = getegid(),
                   .mtime = {1700000000, 123456789}};
    struct stat sb;
    int fd = open("f", O_WRONLY | O_CREAT | O_EXCL, 0600);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(tree_restore_fd_meta(fd, "f", "shown/f", &m, geteuid() == 0), 0);
    ck_assert_int_eq(fstat(fd, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0751);
    ck_assert_int_eq(sb.st_mtim.tv_sec, 1700000000);
    ck_assert_int_eq(sb.st_mtim.tv_nsec, 123456789);
    ck_assert_int_eq(sb.st_atim.tv_sec, 1700000000);
    close(fd);
    /* as root, the recorded owner */
    if (geteuid() == 0) {
        m.uid = 12345;
        fd = open("f", O_RDONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(tree_restore_fd_meta(fd, "f", "f", &m, 1), 0);
        ck_assert_int_eq(fstat(fd, &sb), 0);
        ck_assert_int_eq(sb.st_uid, 12345);
        close(fd);
    }
    /* a failure is reported */
    ck_assert_int_eq(tree_restore_fd_meta(-1, "f", "f", &m, 0), -1);
}
END_TEST

START_TEST(test_restore_path_meta)
{
    tree_meta m = {.mode = 02750, .uid = geteuid(), .gid = getegid(),
                   .mtime = {1600000000, 5}};
    struct stat sb;

    ck_assert_int_eq(mkdir("d", 0700), 0);
    ck_assert_int_eq(symlink("nowhere", "l"), 0);
    ck_assert_int_eq(tree_restore_path_meta("d", "d", &m, 0, geteuid() == 0, 1), 0);
    ck_assert_int_eq(lstat("d", &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0750); /* set-group-ID dropped */
    ck_assert_int_eq(sb.st_mtim.tv_sec, 1600000000);
    ck_assert_int_eq(sb.st_mtim.tv_nsec, 5);
    /* a link: its own times, nothing followed, no mode */
    ck_assert_int_eq(tree_restore_path_meta("l", "l", &m, 1, 0, 1), 0);
    ck_assert_int_eq(lstat("l", &sb), 0);
    ck_assert_int_eq(sb.st_mtim.tv_sec, 1600000000);
    ck_assert_int_eq(tu_exists("nowhere"), 0);
    /* a failed chmod fails either way; a failed utimensat only when strict */
    ck_assert_int_eq(tree_restore_path_meta("absent", "absent", &m, 0, 0, 1), -1);
    ck_assert_int_eq(tree_restore_path_meta("absent", "absent", &m, 0, 0, 0), -1);
    ck_assert_int_eq(tree_restore_path_meta("absent", "absent", &m, 1, 0, 1), -1);
    ck_assert_int_eq(tree_restore_path_meta("absent", "absent", &m, 1, 0, 0), 0);
}
END_TEST

START_TEST(test_move_aside)
{
    char *old;

    ck_assert_int_eq(mkdir("t", 0755), 0);
    tu_write_str("t/.env", "OLD=1");
    ck_assert_int_eq(mkdir("t/sub", 0755), 0);
    tu_write_str("t/sub/x", "x");
    /* the aside's parents are created */
    ck_assert_int_eq(tree_move_aside("t/.env", "t/.ragsafe-old-1/.env"), 0);
    ck_assert_int_eq(tree_move_aside("t/sub/x", "t/.ragsafe-old-1/sub/x"), 0);
    ck_assert_int_eq(tu_exists("t/.env"), 0);
    ck_assert_int_eq(tu_exists("t/sub/x"), 0);
    old = tu_read_file("t/.ragsafe-old-1/.env", NULL);
    ck_assert_str_eq(old, "OLD=1");
    free(old);
    ck_assert_int_eq(tu_exists("t/.ragsafe-old-1/sub/x"), 1);
    /* a whole directory, beside itself */
    ck_assert_int_eq(tree_move_aside("t", "t.ragsafe-old-2"), 0);
    ck_assert_int_eq(tu_exists("t.ragsafe-old-2/sub"), 1);
    /* nothing to move, or a parent that is a file: reported */
    ck_assert_int_eq(tree_move_aside("t", "elsewhere"), -1);
    tu_write_str("file", "x");
    ck_assert_int_eq(tree_move_aside("t.ragsafe-old-2", "file/x"), -1);
    ck_assert_int_eq(tu_exists("t.ragsafe-old-2"), 1);
}
END_TEST

static int no_dash(const char *label)
{
    return label[0] != '-';
}

START_TEST(test_labels)
{
    storage *st = storage_open(tu_repo("repo"), NULL, 1);
    struct timespec ts[2] = {{0, 0}, {0, 0}};
    char **l = NULL;
    size_t n = 9;

    ck_assert_ptr_nonnull(st);
    /* none yet */
    ck_assert_int_eq(tree_labels(st, "x/snapshots/", ".json", NULL, 0, &l, &n), 0);
    ck_assert_uint_eq(n, 0);
    tree_labels_free(l, n);
    ck_assert_int_eq(storage_put(st, "x/snapshots/b.json", "{}", 2, 1), 0);
    ck_assert_int_eq(storage_put(st, "x/snapshots/a.json", "{}", 2, 1), 0);
    ck_assert_int_eq(storage_put(st, "x/snapshots/-c.json", "{}", 2, 1), 0);
    ck_assert_int_eq(storage_put(st, "x/snapshots/d.json.zst", "{}", 2, 1), 0); /* other end */
    ck_assert_int_eq(storage_put(st, "x/snapshots/sub/e.json", "{}", 2, 1), 0);  /* deeper */
    ck_assert_int_eq(storage_put(st, "x/snapshots/json", "{}", 2, 1), 0);        /* no label */
    ck_assert_int_eq(storage_put(st, "x/other/f.json", "{}", 2, 1), 0);
    /* b older than a: by time b comes first */
    ts[0].tv_sec = ts[1].tv_sec = 1000000000;
    ck_assert_int_eq(utimensat(AT_FDCWD, tu_path("repo/x/snapshots/b.json"), ts, 0), 0);
    ts[0].tv_sec = ts[1].tv_sec = 1100000000;
    ck_assert_int_eq(utimensat(AT_FDCWD, tu_path("repo/x/snapshots/-c.json"), ts, 0), 0);
    ck_assert_int_eq(tree_labels(st, "x/snapshots/", ".json", NULL, 0, &l, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(l[0], "-c");
    ck_assert_str_eq(l[1], "a");
    ck_assert_str_eq(l[2], "b");
    tree_labels_free(l, n);
    ck_assert_int_eq(tree_labels(st, "x/snapshots/", ".json", no_dash, 1, &l, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(l[0], "b");
    ck_assert_str_eq(l[1], "a");
    tree_labels_free(l, n);
    ck_assert_int_eq(tree_labels(st, "x/snapshots/", ".json.zst", NULL, 1, &l, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(l[0], "d");
    tree_labels_free(l, n);
    tree_labels_free(NULL, 0);
    storage_free(st);
}
END_TEST

static Suite *tree_suite(void)
{
    Suite *s = suite_create("tree");
    TCase *tc = tcase_create("tree");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    /* test_labels writes durably (an fsync a key): a loaded machine needs more than 4 s */
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_label_valid);
    tcase_add_test(tc, test_path_valid);
    tcase_add_test(tc, test_entry_kind_and_link);
    tcase_add_test(tc, test_dir_state);
    tcase_add_test(tc, test_safe_mode);
    tcase_add_test(tc, test_owner_policy);
    tcase_add_test(tc, test_restore_fd_meta);
    tcase_add_test(tc, test_restore_path_meta);
    tcase_add_test(tc, test_move_aside);
    tcase_add_test(tc, test_labels);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(tree_suite());
}
