/*
 * check_repo.c -- unit tests for lib/repo: repo.json pins one cluster (create,
 * compare, refuse another system identifier or segment size), and the WAL object
 * keys both ways.
 */
#include <jansson.h>

#include "repo.h"
#include "testutil.h"

#define SYSID 7312345678901234567ull
#define BIG_SYSID 0xF00000000000000Full /* above INT64_MAX and 2^53 */

static repo_info info(uint64_t sysid, uint32_t seg_size, uint32_t pg_version)
{
    repo_info i;

    memset(&i, 0, sizeof(i));
    i.format = REPO_FORMAT;
    i.sysid = sysid;
    i.seg_size = seg_size;
    i.wal_magic = 0xD110;
    i.pg_version = pg_version;
    return i;
}

static json_t *load_json(void)
{
    json_error_t err;
    json_t *j = json_load_file(tu_path("repo/repo.json"), 0, &err);

    ck_assert_msg(j != NULL, "repo.json: %s", err.text);
    return j;
}

START_TEST(test_open)
{
    repo *r;

    ck_assert_ptr_null(repo_open(tu_path("missing"), NULL, 0));
    r = repo_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(r->st);
    ck_assert(tu_exists(tu_path("repo")));
    ck_assert_int_eq(repo_load_info(r), RS_NOT_FOUND);
    ck_assert_int_eq(r->have_info, 0);
    repo_free(r);
    repo_free(NULL);
}
END_TEST

START_TEST(test_pin_creates)
{
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    repo_info want = info(SYSID, 16u << 20, 150018);
    json_t *j;

    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    ck_assert(tu_exists(tu_path("repo/repo.json")));
    j = load_json();
    ck_assert_int_eq(json_integer_value(json_object_get(j, "format")), 1);
    ck_assert(json_is_string(json_object_get(j, "system_identifier")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "system_identifier")),
                     "7312345678901234567");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "wal_segment_size")), 16 << 20);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "wal_magic")), 0xD110);
    /* the major version: server_version_num / 10000 */
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pg_version")), 15);
    ck_assert(json_is_string(json_object_get(j, "created")));
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "created"))), 20);
    ck_assert_int_eq(json_string_value(json_object_get(j, "created"))[19], 'Z');
    json_decref(j);
    repo_free(r);

    /* another process reads it back */
    r = repo_open(tu_path("repo"), NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_int_eq(r->have_info, 1);
    ck_assert_int_eq(r->info.format, 1);
    ck_assert_uint_eq(r->info.sysid, SYSID);
    ck_assert_uint_eq(r->info.seg_size, 16u << 20);
    ck_assert_uint_eq(r->info.wal_magic, 0xD110);
    ck_assert_uint_eq(r->info.pg_version, 15);
    repo_free(r);
}
END_TEST

START_TEST(test_pin_compare)
{
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    repo_info want = info(SYSID, 16u << 20, 0), other;
    size_t len0, len1;
    char *before, *after;

    ck_assert_int_eq(repo_pin(r, &want), 0);
    before = tu_read_file(tu_path("repo/repo.json"), &len0);

    /* same cluster: 0 (same handle and a fresh one) */
    ck_assert_int_eq(repo_pin(r, &want), 0);
    repo_free(r);
    r = repo_open(tu_path("repo"), NULL, 0);
    ck_assert_int_eq(repo_pin(r, &want), 0);

    /* another system identifier */
    other = info(SYSID + 1, 16u << 20, 0);
    ck_assert_int_eq(repo_pin(r, &other), RS_MISMATCH);
    /* another segment size */
    other = info(SYSID, 64u << 20, 0);
    ck_assert_int_eq(repo_pin(r, &other), RS_MISMATCH);
    /* zero fields are not compared */
    other = info(0, 16u << 20, 0);
    ck_assert_int_eq(repo_pin(r, &other), 0);
    other = info(SYSID, 0, 0);
    ck_assert_int_eq(repo_pin(r, &other), 0);
    other = info(0, 64u << 20, 0);
    ck_assert_int_eq(repo_pin(r, &other), RS_MISMATCH);
    /* a pg_version learnt later is fine and not written back */
    other = info(SYSID, 16u << 20, 150018);
    ck_assert_int_eq(repo_pin(r, &other), 0);

    /* repo.json is unchanged by all of this */
    after = tu_read_file(tu_path("repo/repo.json"), &len1);
    ck_assert_uint_eq(len0, len1);
    ck_assert_mem_eq(before, after, len0);
    free(before);
    free(after);
    repo_free(r);
}
END_TEST

START_TEST(test_pin_big_sysid)
{
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    repo_info want = info(BIG_SYSID, 1u << 30, 150018), other;

    ck_assert_int_eq(repo_pin(r, &want), 0);
    repo_free(r);
    r = repo_open(tu_path("repo"), NULL, 0);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_uint_eq(r->info.sysid, BIG_SYSID);
    ck_assert_uint_eq(r->info.seg_size, 1u << 30);
    ck_assert_int_eq(repo_pin(r, &want), 0);
    /* differs only in the low bit: a double would lose that */
    other = info(BIG_SYSID ^ 1, 1u << 30, 0);
    ck_assert_int_eq(repo_pin(r, &other), RS_MISMATCH);
    repo_free(r);
}
END_TEST

/* A damaged repo.json is an error, never silently re-created. */
START_TEST(test_bad_repo_json)
{
    static const char *bad[] = {
        "not json",
        "{\"format\":1,\"wal_segment_size\":16777216}", /* no system identifier */
        "{\"format\":1,\"system_identifier\":\"abc\",\"wal_segment_size\":16777216}",
    };
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    repo_info want = info(SYSID, 16u << 20, 0);

    tu_write_str(tu_path("repo/repo.json"), bad[_i]);
    ck_assert_int_eq(repo_load_info(r), -1);
    ck_assert_int_ne(repo_pin(r, &want), 0);
    ck_assert_int_ne(repo_pin(r, &want), RS_NOT_FOUND);
    {
        size_t len;
        char *now = tu_read_file(tu_path("repo/repo.json"), &len);

        ck_assert_str_eq(now, bad[_i]);
        free(now);
    }
    repo_free(r);
}
END_TEST

/* ---- WAL keys ------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *key;
} wal_keys[] = {
    {"000000010000000000000001", "wal/0000000100000000/000000010000000000000001.zst"},
    {"0000000A0000001F000000FE", "wal/0000000A0000001F/0000000A0000001F000000FE.zst"},
    {"00000002.history", "wal/00000002.history.zst"},
    {"000000010000000000000002.00000028.backup",
     "wal/0000000100000000/000000010000000000000002.00000028.backup.zst"},
    {"000000010000000000000003.partial",
     "wal/0000000100000000/000000010000000000000003.partial.zst"},
};

START_TEST(test_wal_key)
{
    char key[128], name[64];

    ck_assert_int_eq(repo_wal_key(wal_keys[_i].name, key, sizeof(key)), 0);
    ck_assert_str_eq(key, wal_keys[_i].key);
    ck_assert(storage_key_valid(key));
    ck_assert_int_eq(repo_wal_name_from_key(key, name, sizeof(name)), 0);
    ck_assert_str_eq(name, wal_keys[_i].name);
}
END_TEST

START_TEST(test_wal_key_invalid)
{
    static const char *bad[] = {
        "", "RECOVERYXLOG", "RECOVERYHISTORY", "../000000010000000000000001",
        "00000001000000000000001", "000000010000000000000001.zst", "00000001000000000000000a",
        "pg_wal/000000010000000000000001", "00000002.history.tmp", "archive_status",
    };
    char key[128];

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(repo_wal_key(bad[i], key, sizeof(key)) == -1, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_wal_name_from_key_invalid)
{
    static const char *bad[] = {
        "repo.json",
        "backups/L/base.tar.zst",
        "wal/0000000100000000/000000010000000000000001",  /* no .zst */
        "wal/0000000100000000/junk.zst",
        "wal/0000000100000000/.000000010000000000000001.zst.tmp",
        "wal/.zst",
        "milvus/objects/ab/000000010000000000000001.zst",
        "",
    };
    char name[64];

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(repo_wal_name_from_key(bad[i], name, sizeof(name)) == -1,
                      "accepted \"%s\"", bad[i]);
}
END_TEST

/* pg_version: ragsafe-archive knows no server version, only WAL: the page magic gives
 * the major version; what older versions wrote (0, or 150018) reads as the major. */
START_TEST(test_pg_version)
{
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    repo_info want = info(SYSID, 16u << 20, 0);
    json_t *j;

    ck_assert_int_eq(repo_pin(r, &want), 0);
    repo_free(r);
    j = load_json();
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pg_version")), 15);
    json_decref(j);

    static const char *old[] = {
        "{\"format\":1,\"system_identifier\":\"7312\",\"wal_segment_size\":16777216,"
        "\"wal_magic\":53520,\"pg_version\":0}\n",
        "{\"format\":1,\"system_identifier\":\"7312\",\"wal_segment_size\":16777216,"
        "\"wal_magic\":53520,\"pg_version\":150018}\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(old); i++) {
        tu_write_file(tu_path("repo/repo.json"), old[i], strlen(old[i]));
        r = repo_open(tu_path("repo"), NULL, 0);
        ck_assert_int_eq(repo_load_info(r), 0);
        ck_assert_uint_eq(r->info.pg_version, 15);
        repo_free(r);
    }
}
END_TEST

/* The first 292 bytes of a real PostgreSQL 15.18 pg_control (initdb --wal-segsize=64;
 * pg_controldata: system identifier 7714409773660871057, 67108864 bytes per segment),
 * up to and with its CRC-32C. */
static const char control_hex[] =
    "9199db02d1160f6b1405000025770d0c0100000000000000d2160f6b00000000"
    "1807500400000000180750040000000001000000010000000100000000000000"
    "d402000000000000043500000100000000000000cc0200000100000001000000"
    "0100000000000000d2160f6b0000000000000000000000000000000000000000"
    "e803000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000010000000000000064000000080000000a000000"
    "000000004000000000000000080000000000000087d632410020000000000200"
    "00200000000000044000000020000000cc070000000800000100000000000000"
    "4f44481ed5c57b8a1c58b79b985212b1775881c23c881484109c35ad1ba929e7"
    "2f46d2d7";

static void write_control(const char *datadir, size_t flip)
{
    uint8_t buf[8192] = {0};
    char path[600];

    for (size_t i = 0; i < sizeof(control_hex) / 2; i++)
        ck_assert_int_eq(sscanf(control_hex + 2 * i, "%2hhx", &buf[i]), 1);
    if (flip < sizeof(buf))
        buf[flip] ^= 0x01;
    snprintf(path, sizeof(path), "%s/global", datadir);
    ck_assert_int_eq(mkdir(datadir, 0700) == 0 || errno == EEXIST, 1);
    ck_assert_int_eq(mkdir(path, 0700) == 0 || errno == EEXIST, 1);
    snprintf(path, sizeof(path), "%s/global/pg_control", datadir);
    tu_write_file(path, buf, sizeof(buf));
}

START_TEST(test_pg_control)
{
    repo_info i;

    write_control(tu_path("data"), (size_t)-1);
    ck_assert_int_eq(repo_info_from_pg_control(tu_path("data"), &i), 0);
    ck_assert_uint_eq(i.sysid, 7714409773660871057ull);
    ck_assert_uint_eq(i.seg_size, 64u << 20);
    ck_assert_uint_eq(i.wal_magic, 0xD110);
    ck_assert_int_eq(i.format, REPO_FORMAT);
    /* it pins a fresh repository like a segment would */
    repo *r = repo_open(tu_repo("repo"), NULL, 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(repo_pin(r, &i), 0);
    repo_free(r);
    r = repo_open(tu_path("repo"), NULL, 0);
    ck_assert_int_eq(repo_load_info(r), 0);
    ck_assert_uint_eq(r->info.sysid, 7714409773660871057ull);
    ck_assert_uint_eq(r->info.seg_size, 64u << 20);
    repo_free(r);

    ck_assert_int_eq(repo_info_from_pg_control(tu_path("nodata"), &i), RS_NOT_FOUND);
    write_control(tu_path("bad-sysid"), 3);         /* one bit of the identifier */
    ck_assert_int_eq(repo_info_from_pg_control(tu_path("bad-sysid"), &i), -1);
    write_control(tu_path("bad-crc"), 289);         /* the CRC itself */
    ck_assert_int_eq(repo_info_from_pg_control(tu_path("bad-crc"), &i), -1);
    write_control(tu_path("short"), (size_t)-1);
    ck_assert_int_eq(truncate(tu_path("short/global/pg_control"), 200), 0);
    ck_assert_int_eq(repo_info_from_pg_control(tu_path("short"), &i), -1);
}
END_TEST

static Suite *repo_suite(void)
{
    Suite *s = suite_create("repo");
    TCase *tc = tcase_create("info");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_open);
    tcase_add_test(tc, test_pin_creates);
    tcase_add_test(tc, test_pin_compare);
    tcase_add_test(tc, test_pin_big_sysid);
    tcase_add_loop_test(tc, test_bad_repo_json, 0, 3);
    tcase_add_test(tc, test_pg_control);
    tcase_add_test(tc, test_pg_version);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_loop_test(tc, test_wal_key, 0, (int)ARRAY_LEN(wal_keys));
    tcase_add_test(tc, test_wal_key_invalid);
    tcase_add_test(tc, test_wal_name_from_key_invalid);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(repo_suite());
}
