/*
 * check_manifest.c -- unit tests for lib/manifest: a manifest in PostgreSQL 15's exact
 * layout parses (Path and Encoded-Path, SHA256 and other algorithms, WAL ranges), files
 * come back sorted and findable; a wrong or missing Manifest-Checksum, a bad version,
 * a duplicate path, a bad Encoded-Path or a bad LSN are refused.
 */
#include "testutil.h"
#include "manifest.h"
#include "sha256.h"

#define SUM_A "0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9fa"
#define SUM_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

/* with_checksum -- body + the Manifest-Checksum line PostgreSQL would append. */
static char *with_checksum(const char *body)
{
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1], *out;

    ck_assert_int_eq(sha256_buffer(body, strlen(body), d), 0);
    sha256_to_hex(d, hex);
    ck_assert_int_ge(asprintf(&out, "%s\"Manifest-Checksum\": \"%s\"}\n", body, hex), 0);
    return out;
}

/* "pg_tblspc/16384/PG_15_202209061/5/16385" hex-encoded */
#define ENC_PATH "70675f74626c7370632f31363338342f50475f31355f3230323230393036312f352f3136333835"

static const char body_ok[] =
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n"
    "\"Files\": [\n"
    "{ \"Path\": \"global/pg_control\", \"Size\": 8192, \"Last-Modified\": \"2026-11-26 02:15:00 GMT\", "
    "\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"" SUM_A "\" },\n"
    "{ \"Path\": \"backup_label\", \"Size\": 225, \"Last-Modified\": \"2026-11-26 02:15:00 GMT\", "
    "\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"" SUM_B "\" },\n"
    "{ \"Encoded-Path\": \"" ENC_PATH "\", \"Size\": 0, \"Last-Modified\": \"2026-11-26 02:15:00 GMT\", "
    "\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"" SUM_A "\" },\n"
    "{ \"Path\": \"base/1/1259\", \"Size\": 106496, \"Last-Modified\": \"2026-11-26 02:15:00 GMT\", "
    "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"0a1b2c3d\" }\n"
    "],\n"
    "\"WAL-Ranges\": [\n"
    "{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000138\" }\n"
    "],\n";

START_TEST(test_parse_ok)
{
    char *text = with_checksum(body_ok);
    manifest m;
    const manifest_file *f;
    uint8_t want[SHA256_LEN];

    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), 0);
    ck_assert_uint_eq(m.nfiles, 4);
    /* sorted by path */
    for (size_t i = 1; i < m.nfiles; i++)
        ck_assert_int_lt(strcmp(m.files[i - 1].path, m.files[i].path), 0);

    f = manifest_find(&m, "global/pg_control");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->size, 8192);
    ck_assert_int_eq(f->has_sha256, 1);
    ck_assert_int_eq(sha256_from_hex(SUM_A, want), 0);
    ck_assert_mem_eq(f->sha256, want, SHA256_LEN);

    f = manifest_find(&m, "backup_label");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->size, 225);

    f = manifest_find(&m, "pg_tblspc/16384/PG_15_202209061/5/16385");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->size, 0);

    f = manifest_find(&m, "base/1/1259");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->has_sha256, 0);

    ck_assert_ptr_null(manifest_find(&m, "base/1/1260"));
    ck_assert_ptr_null(manifest_find(&m, ""));

    ck_assert_uint_eq(m.nranges, 1);
    ck_assert_uint_eq(m.ranges[0].tli, 1);
    ck_assert_uint_eq(m.ranges[0].start_lsn, 0x2000028);
    ck_assert_uint_eq(m.ranges[0].end_lsn, 0x2000138);
    manifest_release(&m);
    manifest_release(&m); /* twice is harmless */
    free(text);
}
END_TEST

/* Every single-byte change in the body is caught by the Manifest-Checksum. */
START_TEST(test_checksum_mismatch)
{
    char *text = with_checksum(body_ok);
    size_t body_len = strlen(body_ok);
    manifest m;

    for (size_t i = 0; i < body_len; i += 61) {
        char saved = text[i];

        text[i] = saved == 'x' ? 'y' : 'x';
        ck_assert_int_eq(manifest_parse(text, strlen(text), &m), -1);
        ck_assert_ptr_null(m.files);
        text[i] = saved;
    }
    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), 0);
    manifest_release(&m);
    free(text);
}
END_TEST

START_TEST(test_no_checksum_line)
{
    char *text;
    manifest m;

    ck_assert_int_ge(asprintf(&text, "%s\"Other\": 1}\n", body_ok), 0);
    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), -1);
    free(text);
    ck_assert_int_eq(manifest_parse("{}", 2, &m), -1);
    ck_assert_int_eq(manifest_parse("", 0, &m), -1);
    /* a checksum that is not 64 hex digits */
    ck_assert_int_ge(asprintf(&text, "%s\"Manifest-Checksum\": \"abc\"}\n", body_ok), 0);
    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), -1);
    free(text);
}
END_TEST

/* Bodies that are well-checksummed but wrong in content. */
static const char *bad_bodies[] = {
    /* version 2 */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"Files\": [],\n",
    /* no Files */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n",
    /* duplicate path */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Path\": \"a\", \"Size\": 1 },\n{ \"Path\": \"a\", \"Size\": 2 }\n],\n",
    /* odd-length Encoded-Path */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Encoded-Path\": \"616\", \"Size\": 1 }\n],\n",
    /* non-hex Encoded-Path */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Encoded-Path\": \"zz\", \"Size\": 1 }\n],\n",
    /* Encoded-Path holding a NUL byte */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Encoded-Path\": \"6100\", \"Size\": 1 }\n],\n",
    /* negative size */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Path\": \"a\", \"Size\": -1 }\n],\n",
    /* SHA256 with a short checksum */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
    "{ \"Path\": \"a\", \"Size\": 1, \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"ab\" }\n],\n",
    /* bad LSN */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [],\n\"WAL-Ranges\": [\n"
    "{ \"Timeline\": 1, \"Start-LSN\": \"nope\", \"End-LSN\": \"0/1\" }\n],\n",
    /* timeline 0 */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [],\n\"WAL-Ranges\": [\n"
    "{ \"Timeline\": 0, \"Start-LSN\": \"0/1\", \"End-LSN\": \"0/1\" }\n],\n",
    /* a file entry without a path */
    "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{ \"Size\": 1 }\n],\n",
};

START_TEST(test_bad_content)
{
    char *text = with_checksum(bad_bodies[_i]);
    manifest m;

    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), -1);
    ck_assert_uint_eq(m.nfiles, 0);
    free(text);
}
END_TEST

START_TEST(test_empty_files)
{
    char *text = with_checksum("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [],\n");
    manifest m;

    ck_assert_int_eq(manifest_parse(text, strlen(text), &m), 0);
    ck_assert_uint_eq(m.nfiles, 0);
    ck_assert_uint_eq(m.nranges, 0);
    ck_assert_ptr_null(manifest_find(&m, "a"));
    manifest_release(&m);
    free(text);
}
END_TEST

static Suite *manifest_suite(void)
{
    Suite *s = suite_create("manifest");
    TCase *tc = tcase_create("parse");

    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_parse_ok);
    tcase_add_test(tc, test_checksum_mismatch);
    tcase_add_test(tc, test_no_checksum_line);
    tcase_add_loop_test(tc, test_bad_content, 0, (int)ARRAY_LEN(bad_bodies));
    tcase_add_test(tc, test_empty_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(manifest_suite());
}
