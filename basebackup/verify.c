/*
 * verify.c -- ragsafe-basebackup --verify LABEL: re-read a stored backup and check it.
 *
 * For every file backup.json lists: the SHA-256 and size of the stored bytes; for a
 * .tar.zst also a full decompression checked against the object's own trailer (size
 * and SHA-256 of the tar) and against backup.json's raw size; backup_manifest must
 * parse with a valid Manifest-Checksum. Nothing is written. The restore-side
 * verification of each data file lives in ragsafe-pitr; this is the quick check
 * that what ragsafe-basebackup stored is still what it stored.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backupinfo.h"
#include "basebackup.h"
#include "common.h"
#include "log.h"
#include "manifest.h"
#include "object.h"
#include "repo.h"

/* check_stored -- SHA-256 and size of the bytes as they lie in the repository. */
static int check_stored(storage *st, const char *key, const backup_file *f)
{
    storage_read *rd = NULL;
    sha256_ctx h = {0};
    uint8_t got[SHA256_LEN];
    char h1[SHA256_HEX_LEN + 1], h2[SHA256_HEX_LEN + 1];
    uint64_t total = 0;
    const void *buf;
    ssize_t n;
    int ret = -1, r;

    r = storage_read_open(st, key, &rd);
    if (r == RS_NOT_FOUND) {
        log_error("could not verify \"%s\": it is missing", key);
        return RS_MISMATCH;
    }
    if (r != 0)
        return -1;
    if (sha256_init(&h) != 0)
        goto out;
    while ((n = storage_read_data(rd, &buf)) > 0) {
        if (sha256_update(&h, buf, (size_t)n) != 0)
            goto out;
        total += (uint64_t)n;
    }
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    if (sha256_final(&h, got) != 0)
        goto out;
    if (total != f->stored_bytes) {
        log_error("size mismatch for \"%s\": %" PRIu64 " bytes stored, backup.json says %" PRIu64, key,
                  total, f->stored_bytes);
        ret = RS_MISMATCH;
        goto out;
    }
    if (memcmp(got, f->sha256, SHA256_LEN) != 0) {
        sha256_to_hex(got, h1);
        sha256_to_hex(f->sha256, h2);
        log_error("checksum mismatch for \"%s\"", key);
        log_detail("stored bytes hash to %s, backup.json says %s", h1, h2);
        ret = RS_MISMATCH;
        goto out;
    }
    ret = 0;
out:
    sha256_release(&h);
    storage_read_free(rd);
    return ret;
}

/* bb_verify -- see basebackup.h. 0 | RS_MISMATCH | -1. */
int bb_verify(const char *repo_location, const char *label)
{
    repo *r = NULL;
    backup_info bi;
    manifest m;
    char key[256], *buf = NULL;
    size_t len;
    int ret = -1, rr, bad = 0;

    memset(&bi, 0, sizeof(bi));
    memset(&m, 0, sizeof(m));
    r = repo_open_checked(repo_location, NULL, 0, &ret);
    if (!r)
        goto out;
    rr = backupinfo_load(r->st, label, &bi);
    if (rr == RS_NOT_FOUND) {
        log_error("could not find backup \"%s\" in \"%s\"", label, storage_location(r->st));
        goto out;
    }
    if (rr != 0) {
        ret = rr == RS_MISMATCH ? RS_MISMATCH : -1; /* a damaged backup.json is damage */
        goto out;
    }
    for (size_t i = 0; i < bi.nfiles; i++) {
        const backup_file *f = &bi.files[i];
        size_t n = strlen(f->name);
        zst_meta meta;

        snprintf(key, sizeof(key), "backups/%s/%s", label, f->name);
        rr = check_stored(r->st, key, f);
        if (rr < 0)
            goto out;
        if (rr != 0) {
            bad++;
            continue;
        }
        if (n > 4 && strcmp(f->name + n - 4, ".zst") == 0) {
            rr = object_get_fd(r->st, key, -1, &meta);
            if (rr == RS_MISMATCH || rr == RS_NOT_FOUND) {
                bad++;
                continue;
            }
            if (rr != 0)
                goto out;
            if (meta.raw_size != f->raw_bytes) {
                log_error("size mismatch for \"%s\": %" PRIu64 " bytes inside, backup.json says %" PRIu64,
                          key, meta.raw_size, f->raw_bytes);
                bad++;
                continue;
            }
        } else if (strcmp(f->name, "backup_manifest") == 0) {
            rr = storage_get(r->st, key, 1u << 30, &buf, &len);
            if (rr == RS_MISMATCH) {
                bad++;
                continue;
            }
            if (rr != 0)
                goto out;
            if (manifest_parse(buf, len, &m) != 0)
                bad++;
            manifest_release(&m);
            free(buf);
            buf = NULL;
        }
        log_info("\"%s\" is intact", key);
    }
    if (bad) {
        log_error("backup \"%s\" failed verification: %d file%s damaged", label, bad, bad == 1 ? "" : "s");
        ret = RS_MISMATCH;
        goto out;
    }
    log_notice("backup \"%s\" verified: %zu file%s intact", label, bi.nfiles, PLURAL(bi.nfiles));
    ret = 0;
out:
    free(buf);
    manifest_release(&m);
    backupinfo_release(&bi);
    repo_free(r);
    return ret;
}
