/*
 * manifest.c -- PostgreSQL's backup_manifest (version 1), parsed and checked.
 *
 * The text is JSON (jansson parses it); the Manifest-Checksum is checked on the raw
 * bytes first, the same way pg_verifybackup does: it covers everything up to and
 * including the newline that ends the line before the "Manifest-Checksum" line.
 */
#include "manifest.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "log.h"
#include "walname.h"

/*
 * manifest_check_checksum -- verify the SHA-256 in the last line of the manifest.
 * PostgreSQL writes the checksum line last, after a newline, followed by "}\n":
 * the digest covers the bytes before that line.
 */
static int manifest_check_checksum(const char *buf, size_t len)
{
    size_t end = len, start;
    const char *line, *p, *q;
    uint8_t want[SHA256_LEN], got[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    static const char key[] = "\"Manifest-Checksum\"";

    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r'))
        end--;
    start = end;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    if (start == 0)
        return log_error("could not parse backup manifest: no line holds the manifest checksum");
    line = buf + start;
    if ((size_t)(end - start) < sizeof(key) - 1 || memcmp(line, key, sizeof(key) - 1) != 0)
        return log_error("could not parse backup manifest: last line is not \"Manifest-Checksum\"");
    p = memchr(line + sizeof(key) - 1, '"', end - start - (sizeof(key) - 1));
    if (!p)
        return log_error("could not parse backup manifest: manifest checksum has no value");
    p++;
    q = memchr(p, '"', (size_t)(buf + end - p));
    if (!q || q - p != SHA256_HEX_LEN)
        return log_error("could not parse backup manifest: manifest checksum is not 64 hex digits");
    memcpy(hex, p, SHA256_HEX_LEN);
    hex[SHA256_HEX_LEN] = '\0';
    if (sha256_from_hex(hex, want) != 0)
        return log_error("could not parse backup manifest: manifest checksum is not 64 hex digits");
    if (sha256_buffer(buf, start, got) != 0)
        return -1;
    if (memcmp(want, got, SHA256_LEN) != 0) {
        char gothex[SHA256_HEX_LEN + 1];

        sha256_to_hex(got, gothex);
        log_error("backup manifest checksum mismatch");
        log_detail("manifest says %s, its contents hash to %s", hex, gothex);
        return -1;
    }
    return 0;
}

/* decode_path -- Encoded-Path: two hex digits per byte, no NUL byte. malloc'd string
 * or NULL. */
static char *decode_path(const char *hex)
{
    size_t n = strlen(hex);
    char *out;

    if (n % 2 != 0)
        return NULL;
    out = malloc(n / 2 + 1);
    if (!out)
        return NULL;
    if (hex_decode(hex, n, (uint8_t *)out) != 0 || memchr(out, '\0', n / 2)) {
        free(out);
        return NULL;
    }
    out[n / 2] = '\0';
    return out;
}

/* file_cmp -- strcmp order of paths, for qsort and bsearch. */
static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const manifest_file *)a)->path, ((const manifest_file *)b)->path);
}

/* manifest_parse_file -- one entry of "Files". */
static int manifest_parse_file(json_t *jf, size_t idx, manifest_file *f)
{
    json_t *jpath = json_object_get(jf, "Path");
    json_t *jenc = json_object_get(jf, "Encoded-Path");
    json_t *jsize = json_object_get(jf, "Size");
    json_t *jalg = json_object_get(jf, "Checksum-Algorithm");
    json_t *jsum = json_object_get(jf, "Checksum");

    if (!json_is_object(jf))
        return log_error("could not parse backup manifest: file entry %zu is not an object", idx);
    if (json_is_string(jpath))
        f->path = strdup(json_string_value(jpath));
    else if (json_is_string(jenc)) {
        f->path = decode_path(json_string_value(jenc));
        if (!f->path)
            return log_error("could not parse backup manifest: file entry %zu has a bad \"Encoded-Path\"",
                             idx);
    } else
        return log_error("could not parse backup manifest: file entry %zu has no path", idx);
    if (!f->path)
        return log_errno("could not allocate memory");
    if (!json_is_integer(jsize) || json_integer_value(jsize) < 0)
        return log_error("could not parse backup manifest: file \"%s\" has no valid \"Size\"", f->path);
    f->size = (uint64_t)json_integer_value(jsize);
    if (jalg && !json_is_string(jalg))
        return log_error("could not parse backup manifest: file \"%s\" has a bad \"Checksum-Algorithm\"",
                         f->path);
    if (jalg && strcmp(json_string_value(jalg), "SHA256") == 0) {
        if (!json_is_string(jsum) || sha256_from_hex(json_string_value(jsum), f->sha256) != 0)
            return log_error("could not parse backup manifest: file \"%s\" has a bad SHA-256 checksum",
                             f->path);
        f->has_sha256 = 1;
    }
    return 0;
}

/* manifest_parse_range -- one entry of "WAL-Ranges". */
static int manifest_parse_range(json_t *jr, size_t idx, manifest_wal_range *r)
{
    json_t *jtli = json_object_get(jr, "Timeline");
    json_t *jstart = json_object_get(jr, "Start-LSN");
    json_t *jend = json_object_get(jr, "End-LSN");

    if (!json_is_integer(jtli) || json_integer_value(jtli) < 1 ||
        json_integer_value(jtli) > UINT32_MAX)
        return log_error("could not parse backup manifest: WAL range %zu has a bad \"Timeline\"", idx);
    r->tli = (uint32_t)json_integer_value(jtli);
    if (!json_is_string(jstart) || lsn_parse(json_string_value(jstart), &r->start_lsn) != 0)
        return log_error("could not parse backup manifest: WAL range %zu has a bad \"Start-LSN\"", idx);
    if (!json_is_string(jend) || lsn_parse(json_string_value(jend), &r->end_lsn) != 0)
        return log_error("could not parse backup manifest: WAL range %zu has a bad \"End-LSN\"", idx);
    return 0;
}

/*
 * manifest_parse -- check the manifest checksum, then parse the JSON into out.
 * out is zeroed first and released on failure.
 */
int manifest_parse(const char *buf, size_t len, manifest *out)
{
    json_t *root = NULL, *jfiles, *jranges, *jver;
    json_error_t jerr;
    int ret = -1;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (manifest_check_checksum(buf, len) != 0)
        goto out;
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        log_error("could not parse backup manifest: %s (line %d)", jerr.text, jerr.line);
        goto out;
    }
    jver = json_object_get(root, "PostgreSQL-Backup-Manifest-Version");
    if (!json_is_integer(jver) || json_integer_value(jver) != 1) {
        log_error("could not parse backup manifest: unsupported \"PostgreSQL-Backup-Manifest-Version\"");
        goto out;
    }
    jfiles = json_object_get(root, "Files");
    if (!json_is_array(jfiles)) {
        log_error("could not parse backup manifest: no \"Files\" array");
        goto out;
    }
    out->nfiles = json_array_size(jfiles);
    out->files = calloc(out->nfiles ? out->nfiles : 1, sizeof(*out->files));
    if (!out->files) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (i = 0; i < out->nfiles; i++)
        if (manifest_parse_file(json_array_get(jfiles, i), i, &out->files[i]) != 0)
            goto out;
    qsort(out->files, out->nfiles, sizeof(*out->files), file_cmp);
    for (i = 1; i < out->nfiles; i++)
        if (strcmp(out->files[i - 1].path, out->files[i].path) == 0) {
            log_error("could not parse backup manifest: file \"%s\" is listed twice", out->files[i].path);
            goto out;
        }
    jranges = json_object_get(root, "WAL-Ranges");
    if (jranges && !json_is_array(jranges)) {
        log_error("could not parse backup manifest: \"WAL-Ranges\" is not an array");
        goto out;
    }
    out->nranges = jranges ? json_array_size(jranges) : 0;
    out->ranges = calloc(out->nranges ? out->nranges : 1, sizeof(*out->ranges));
    if (!out->ranges) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (i = 0; i < out->nranges; i++)
        if (manifest_parse_range(json_array_get(jranges, i), i, &out->ranges[i]) != 0)
            goto out;
    ret = 0;
out:
    json_decref(root);
    if (ret != 0)
        manifest_release(out);
    return ret;
}

/* manifest_find -- the entry for a data-directory-relative path, or NULL. */
const manifest_file *manifest_find(const manifest *m, const char *path)
{
    manifest_file key;

    if (!m->files || m->nfiles == 0)
        return NULL;
    key.path = (char *)path;
    return bsearch(&key, m->files, m->nfiles, sizeof(*m->files), file_cmp);
}

/* manifest_release -- free everything; safe on a zeroed or released manifest. */
void manifest_release(manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->files && i < m->nfiles; i++)
        free(m->files[i].path);
    free(m->files);
    free(m->ranges);
    memset(m, 0, sizeof(*m));
}
