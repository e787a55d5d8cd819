/*
 * check_backupinfo.c -- unit tests for lib/backupinfo: backup.json round-trips through
 * backupinfo_to_json / backupinfo_parse with every field (a system identifier above
 * 2^63 included), start_wal / stop_wal are derived as documented, malformed documents
 * are refused, and load / list read a posix repository: complete backups only (no
 * *.partial), sorted by stop_lsn, RS_NOT_FOUND for a missing label. The optional
 * "databases" list: absent stays absent, present round-trips and is checked.
 */
#include <jansson.h>

#include "testutil.h"
#include "backupinfo.h"
#include "storage.h"

/* sample -- a filled backup_info (heap strings, release with backupinfo_release). */
static void sample(backup_info *bi, const char *label, uint64_t stop_lsn)
{
    memset(bi, 0, sizeof(*bi));
    bi->label = strdup(label);
    bi->tool_version = strdup("0.1.0");
    bi->sysid = 18400000000000000123ull; /* > 2^63 */
    bi->server_version = 150018;
    bi->start_lsn = 0x2000028;
    bi->start_tli = 1;
    bi->stop_lsn = stop_lsn;
    bi->stop_tli = 2;
    bi->start_time = 1795659300; /* 2026-11-26T02:15:00Z */
    bi->stop_time = 1795659309;
    bi->seg_size = 16u << 20;
    bi->raw_bytes = 123456789012ull;
    bi->stored_bytes = 4567;
    bi->ntablespaces = 1;
    bi->tablespaces = calloc(1, sizeof(*bi->tablespaces));
    bi->tablespaces[0].oid = 16384;
    bi->tablespaces[0].location = strdup("/srv/ts \"one\"");
    bi->tablespaces[0].file = strdup("16384.tar.zst");
    bi->nfiles = 3;
    bi->files = calloc(3, sizeof(*bi->files));
    bi->files[0].name = strdup("base.tar.zst");
    bi->files[0].raw_bytes = 100;
    bi->files[0].stored_bytes = 10;
    memset(bi->files[0].sha256, 0xab, SHA256_LEN);
    bi->files[1].name = strdup("backup_manifest");
    bi->files[1].raw_bytes = 7;
    bi->files[1].stored_bytes = 7;
    memset(bi->files[1].sha256, 0x01, SHA256_LEN);
    bi->files[2].name = strdup("16384.tar.zst");
    bi->files[2].raw_bytes = 9;
    bi->files[2].stored_bytes = 8;
    memset(bi->files[2].sha256, 0x02, SHA256_LEN);
}

START_TEST(test_roundtrip)
{
    backup_info a, b;
    char *text;

    sample(&a, "20261126T021500Z", 0x3000000 + 0x138);
    text = backupinfo_to_json(&a);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), 0);
    ck_assert_str_eq(b.label, a.label);
    ck_assert_str_eq(b.tool_version, "0.1.0");
    ck_assert_uint_eq(b.sysid, a.sysid);
    ck_assert_uint_eq(b.server_version, 150018);
    ck_assert_uint_eq(b.start_lsn, a.start_lsn);
    ck_assert_uint_eq(b.stop_lsn, a.stop_lsn);
    ck_assert_uint_eq(b.start_tli, 1);
    ck_assert_uint_eq(b.stop_tli, 2);
    ck_assert_int_eq(b.start_time, a.start_time);
    ck_assert_int_eq(b.stop_time, a.stop_time);
    ck_assert_uint_eq(b.seg_size, a.seg_size);
    ck_assert_uint_eq(b.raw_bytes, a.raw_bytes);
    ck_assert_uint_eq(b.stored_bytes, a.stored_bytes);
    ck_assert_uint_eq(b.ntablespaces, 1);
    ck_assert_uint_eq(b.tablespaces[0].oid, 16384);
    ck_assert_str_eq(b.tablespaces[0].location, "/srv/ts \"one\"");
    ck_assert_str_eq(b.tablespaces[0].file, "16384.tar.zst");
    ck_assert_uint_eq(b.nfiles, 3);
    ck_assert_str_eq(b.files[0].name, "base.tar.zst");
    ck_assert_uint_eq(b.files[0].raw_bytes, 100);
    ck_assert_uint_eq(b.files[0].stored_bytes, 10);
    ck_assert_mem_eq(b.files[0].sha256, a.files[0].sha256, SHA256_LEN);
    ck_assert_mem_eq(b.files[1].sha256, a.files[1].sha256, SHA256_LEN);
    backupinfo_release(&a);
    backupinfo_release(&b);
    backupinfo_release(&b); /* twice is harmless */
    free(text);
}
END_TEST

/* "databases" is optional: absent (older backups, or not recorded) it stays absent
 * and parses as NULL; present it round-trips. */
START_TEST(test_databases)
{
    backup_info a, b;
    char *text;

    sample(&a, "L1", 0x3000000);
    text = backupinfo_to_json(&a);
    ck_assert_ptr_null(strstr(text, "\"databases\""));
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), 0);
    ck_assert_ptr_null(b.databases);
    ck_assert_uint_eq(b.ndatabases, 0);
    backupinfo_release(&b);
    free(text);

    a.ndatabases = 2;
    a.databases = calloc(2, sizeof(*a.databases));
    a.databases[0].oid = 5;
    a.databases[0].name = strdup("postgres");
    a.databases[0].tablespace = 1663;
    a.databases[1].oid = 16390;
    a.databases[1].name = strdup("rag \"platform\"");
    a.databases[1].tablespace = 16384;
    text = backupinfo_to_json(&a);
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), 0);
    ck_assert_ptr_nonnull(b.databases);
    ck_assert_uint_eq(b.ndatabases, 2);
    ck_assert_uint_eq(b.databases[0].oid, 5);
    ck_assert_str_eq(b.databases[0].name, "postgres");
    ck_assert_uint_eq(b.databases[0].tablespace, 1663);
    ck_assert_uint_eq(b.databases[1].oid, 16390);
    ck_assert_str_eq(b.databases[1].name, "rag \"platform\"");
    ck_assert_uint_eq(b.databases[1].tablespace, 16384);
    backupinfo_release(&b);
    free(text);

    /* recorded but empty stays recorded */
    for (size_t i = 0; i < a.ndatabases; i++)
        free(a.databases[i].name);
    a.ndatabases = 0;
    text = backupinfo_to_json(&a);
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), 0);
    ck_assert_ptr_nonnull(b.databases);
    ck_assert_uint_eq(b.ndatabases, 0);
    backupinfo_release(&b);
    free(text);
    backupinfo_release(&a);
}
END_TEST

/* A chunked backup: "layout" and "chunks" round-trip, the base object is
 * base.chunks.zst and must be in "files"; an unknown layout is refused. */
START_TEST(test_chunked)
{
    backup_info a, b;
    char *text, *p;

    sample(&a, "c1", 0x3000000);
    ck_assert_str_eq(backupinfo_base_file(&a), "base.tar.zst");
    a.chunked = 1;
    a.chunk_size = 32768;
    a.chunks = 5957;
    a.new_chunks = 487;
    a.packs_written = 1;
    text = backupinfo_to_json(&a);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"layout\": \"chunked\""));
    /* files name base.tar.zst, not base.chunks.zst: refused */
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), -1);
    free(text);
    free(a.files[0].name);
    a.files[0].name = strdup("base.chunks.zst");
    text = backupinfo_to_json(&a);
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), 0);
    ck_assert_int_eq(b.chunked, 1);
    ck_assert_uint_eq(b.chunk_size, 32768);
    ck_assert_uint_eq(b.chunks, 5957);
    ck_assert_uint_eq(b.new_chunks, 487);
    ck_assert_uint_eq(b.packs_written, 1);
    ck_assert_str_eq(backupinfo_base_file(&b), "base.chunks.zst");
    backupinfo_release(&b);
    p = strstr(text, "\"chunked\"");
    memcpy(p, "\"chunky\" ", 9); /* same length, still valid JSON */
    ck_assert_int_eq(backupinfo_parse(text, strlen(text), &b), -1);
    free(text);
    backupinfo_release(&a);
}
END_TEST

/* The documented text: field names, string sysid, times with Z, derived WAL names. */
START_TEST(test_json_fields)
{
    backup_info a;
    char *text;
    json_t *root;
    json_error_t err;

    /* stop exactly on a segment boundary: the last needed segment is the one before */
    sample(&a, "L1", 0x5000000);
    text = backupinfo_to_json(&a);
    root = json_loads(text, 0, &err);
    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "format")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(root, "system_identifier")), "18400000000000000123");
    ck_assert_str_eq(json_string_value(json_object_get(root, "start_lsn")), "0/2000028");
    ck_assert_str_eq(json_string_value(json_object_get(root, "stop_lsn")), "0/5000000");
    ck_assert_str_eq(json_string_value(json_object_get(root, "start_wal")), "000000010000000000000002");
    ck_assert_str_eq(json_string_value(json_object_get(root, "stop_wal")), "000000020000000000000004");
    ck_assert_str_eq(json_string_value(json_object_get(root, "start_time")), "2026-11-26T02:15:00Z");
    ck_assert_str_eq(json_string_value(json_object_get(root, "stop_time")), "2026-11-26T02:15:09Z");
    ck_assert_int_eq(json_integer_value(json_object_get(root, "wal_segment_size")), 16 << 20);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(root, "files"), 0),
                                                       "sha256")),
                     "abababababababababababababababababababababababababababababababab");
    json_decref(root);
    free(text);
    backupinfo_release(&a);
}
END_TEST

/* Times are read by the one RFC 3339 parser (timefmt_parse): any zone, fractions. */
START_TEST(test_time_zones)
{
    backup_info a, b;
    char *text, *mut;
    json_t *root;
    json_error_t err;

    sample(&a, "L1", 0x3000000);
    text = backupinfo_to_json(&a);
    root = json_loads(text, 0, &err);
    ck_assert_ptr_nonnull(root);
    json_object_set_new(root, "start_time", json_string("2026-11-26T03:15:00.5+01:00"));
    json_object_set_new(root, "stop_time", json_string("2026-11-26t02:15:09z"));
    mut = json_dumps(root, 0);
    ck_assert_int_eq(backupinfo_parse(mut, strlen(mut), &b), 0);
    ck_assert_int_eq(b.start_time, 1795659300);
    ck_assert_int_eq(b.stop_time, 1795659309);
    backupinfo_release(&b);
    free(mut);
    free(text);
    json_decref(root);
    backupinfo_release(&a);
}
END_TEST

/* Each mutation of a valid document must be refused. */
static const struct {
    const char *key;
    const char *json_value; /* NULL: delete the key */
} mutations[] = {
    {"format", "2"},
    {"label", NULL},
    {"system_identifier", "7312"},          /* a number, not a string */
    {"system_identifier", "\"73x2\""},
    {"system_identifier", "\"-1\""},
    {"start_lsn", "\"0/zz\""},
    {"stop_lsn", NULL},
    {"start_tli", "0"},
    {"start_time", "\"2026-11-26 02:15:00\""},
    {"wal_segment_size", "1000"},
    {"raw_bytes", "-5"},
    {"tablespaces", "{}"},
    {"tablespaces", "[{\"oid\":1}]"},
    /* optional, but checked when there */
    {"databases", "{}"},
    {"databases", "[{\"oid\":5,\"name\":\"postgres\"}]"},
    {"databases", "[{\"oid\":-5,\"name\":\"postgres\",\"tablespace\":1663}]"},
    {"files", NULL},
    {"files", "[{\"name\":\"a\",\"raw_bytes\":1,\"stored_bytes\":1,\"sha256\":\"ab\"}]"},
    /* an object restore reads without a digest to check it against */
    {"files", "[{\"name\":\"base.tar.zst\",\"raw_bytes\":1,\"stored_bytes\":1,\"sha256\":"
              "\"" "0000000000000000000000000000000000000000000000000000000000000000" "\"},"
              "{\"name\":\"backup_manifest\",\"raw_bytes\":1,\"stored_bytes\":1,\"sha256\":"
              "\"" "0000000000000000000000000000000000000000000000000000000000000000" "\"}]"},
    {"files", "[{\"name\":\"16384.tar.zst\",\"raw_bytes\":1,\"stored_bytes\":1,\"sha256\":"
              "\"" "0000000000000000000000000000000000000000000000000000000000000000" "\"},"
              "{\"name\":\"backup_manifest\",\"raw_bytes\":1,\"stored_bytes\":1,\"sha256\":"
              "\"" "0000000000000000000000000000000000000000000000000000000000000000" "\"}]"},
};

START_TEST(test_malformed)
{
    backup_info a, b;
    char *text, *mut;
    json_t *root;
    json_error_t err;

    sample(&a, "L1", 0x3000000);
    text = backupinfo_to_json(&a);
    root = json_loads(text, 0, &err);
    ck_assert_ptr_nonnull(root);
    if (mutations[_i].json_value)
        json_object_set_new(root, mutations[_i].key, json_loads(mutations[_i].json_value,
                                                                JSON_DECODE_ANY, &err));
    else
        json_object_del(root, mutations[_i].key);
    mut = json_dumps(root, 0);
    ck_assert_int_eq(backupinfo_parse(mut, strlen(mut), &b), -1);
    ck_assert_ptr_null(b.label);
    ck_assert_int_eq(backupinfo_parse("not json", 8, &b), -1);
    ck_assert_int_eq(backupinfo_parse("[]", 2, &b), -1);
    free(mut);
    json_decref(root);
    free(text);
    backupinfo_release(&a);
}
END_TEST

static void put_info(storage *st, const char *dir, const char *label, uint64_t stop_lsn)
{
    backup_info a;
    char key[256], *text;

    sample(&a, label, stop_lsn);
    text = backupinfo_to_json(&a);
    snprintf(key, sizeof(key), "backups/%s/backup.json", dir);
    ck_assert_int_eq(storage_put(st, key, text, strlen(text), 0), 0);
    free(text);
    backupinfo_release(&a);
}

static int damaged_seen;
static int count_damaged(void *arg, const char *label, const char *why)
{
    (void)arg;
    ck_assert(strcmp(label, "F") == 0 || strcmp(label, "H") == 0);
    ck_assert_ptr_nonnull(why);
    damaged_seen++;
    return 0;
}

START_TEST(test_load_list)
{
    storage *st = storage_open(tu_repo("repo"), NULL, 1);
    backup_info bi, *list;
    size_t n;

    ck_assert_ptr_nonnull(st);
    /* empty repository */
    ck_assert_int_eq(backupinfo_list(st, &list, &n, NULL, NULL), 0);
    ck_assert_uint_eq(n, 0);
    backupinfo_list_free(list, n);

    put_info(st, "B", "B", 0x9000000);
    put_info(st, "A", "A", 0x4000000);
    put_info(st, "C", "C", 0x6000000);
    put_info(st, "D.partial", "D", 0x1000000);      /* in progress: not listed */
    ck_assert_int_eq(storage_put(st, "backups/E/base.tar.zst", "x", 1, 0), 0); /* no backup.json */

    ck_assert_int_eq(backupinfo_load(st, "A", &bi), 0);
    ck_assert_str_eq(bi.label, "A");
    ck_assert_uint_eq(bi.stop_lsn, 0x4000000);
    backupinfo_release(&bi);
    ck_assert_int_eq(backupinfo_load(st, "nope", &bi), RS_NOT_FOUND);
    ck_assert_int_eq(backupinfo_load(st, "E", &bi), RS_NOT_FOUND);

    ck_assert_int_eq(backupinfo_list(st, &list, &n, NULL, NULL), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(list[0].label, "A");
    ck_assert_str_eq(list[1].label, "C");
    ck_assert_str_eq(list[2].label, "B");
    backupinfo_list_free(list, n);
    backupinfo_list_free(NULL, 0);

    /* a folder whose backup.json names another label is damaged */
    put_info(st, "F", "G", 0x7000000);
    ck_assert_int_eq(backupinfo_load(st, "F", &bi), RS_MISMATCH);
    ck_assert_int_eq(backupinfo_list(st, &list, &n, NULL, NULL), RS_MISMATCH);

    /* a corrupt backup.json is damage, not silently skipped */
    ck_assert_int_eq(storage_put(st, "backups/H/backup.json", "{", 1, 0), 0);
    ck_assert_int_eq(backupinfo_load(st, "H", &bi), RS_MISMATCH);

    /* with a callback each damaged one is reported alone and the rest listed */
    damaged_seen = 0;
    ck_assert_int_eq(backupinfo_list(st, &list, &n, count_damaged, NULL), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(damaged_seen, 2);
    backupinfo_list_free(list, n);
    storage_free(st);
}
END_TEST

static Suite *backupinfo_suite(void)
{
    Suite *s = suite_create("backupinfo");
    TCase *tc = tcase_create("json");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_chunked);
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_databases);
    tcase_add_test(tc, test_time_zones);
    tcase_add_loop_test(tc, test_malformed, 0, (int)ARRAY_LEN(mutations));
    suite_add_tcase(s, tc);

    tc = tcase_create("storage");
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_load_list);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(backupinfo_suite());
}
