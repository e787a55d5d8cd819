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
static int check_stored(storage *st, const char *key, const backup_file *f, progress *pg)
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
        progress_add(pg, (uint64_t)n);
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

/*
 * bb_verify -- see basebackup.h. 0 | RS_MISMATCH | -1.
 *
 * The count it reports is of data files (backup_manifest's entries): what a user
 * compares with the cluster, not the handful of tar objects that hold them. Each is
 * covered by its tar's checks (stored SHA-256, and the decompressed tar's own).
 */
int bb_verify(const char *repo_location, const char *label, int progress_opt)
{
    repo *r = NULL;
    backup_info bi;
    manifest m;
    progress pg;
    char key[256], *buf = NULL, files[64];
    size_t len, nfiles = 0;
    uint64_t total = 0;
    int ret = -1, rr, bad = 0;

    memset(&bi, 0, sizeof(bi));
    memset(&m, 0, sizeof(m));
    progress_init(&pg, PROGRESS_OFF, "verify", 0);
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
    /* every stored byte is read once to hash it, a .zst once more to decompress it */
    for (size_t i = 0; i < bi.nfiles; i++) {
        const char *name = bi.files[i].name;
        size_t n = strlen(name);

        total += bi.files[i].stored_bytes * (n > 4 && strcmp(name + n - 4, ".zst") == 0 ? 2 : 1);
    }
    progress_release(&pg);
    progress_init(&pg, progress_opt, "verify", total);
    for (size_t i = 0; i < bi.nfiles; i++) {
        const backup_file *f = &bi.files[i];
        size_t n = strlen(f->name);
        zst_meta meta;

        snprintf(key, sizeof(key), "backups/%s/%s", label, f->name);
        rr = check_stored(r->st, key, f, &pg);
        if (rr < 0)
            goto out;
        if (rr != 0) {
            bad++;
            continue;
        }
        /* a chunked backup's manifests (.chunks.zst) are plain zstd frames, checked by
         * their stored SHA-256 above; their chunks are ragsafe-pitr verify's */
        if (n > 4 && strcmp(f->name + n - 4, ".zst") == 0 &&
            !(n > 11 && strcmp(f->name + n - 11, ".chunks.zst") == 0)) {
            rr = object_get_fd(r->st, key, -1, &meta);
            progress_add(&pg, f->stored_bytes);
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
            else
                nfiles = m.nfiles;
            manifest_release(&m);
            free(buf);
            buf = NULL;
        }
        log_info("\"%s\" is intact", key);
    }
    progress_finish(&pg);
    if (bad) {
        log_error("backup \"%s\" failed verification: %d file%s damaged", label, bad, bad == 1 ? "" : "s");
        ret = RS_MISMATCH;
        goto out;
    }
    if (nfiles > 0)
        snprintf(files, sizeof(files), "%zu file%s checked", nfiles, PLURAL(nfiles));
    else /* a backup.json without a backup_manifest: nothing counts the data files */
        snprintf(files, sizeof(files), "the data files not counted (no backup_manifest)");
    log_notice("backup \"%s\" verified: %s (%zu stored object%s intact)", label, files, bi.nfiles,
               PLURAL(bi.nfiles));
    ret = 0;
out:
    progress_release(&pg);
    free(buf);
    manifest_release(&m);
    backupinfo_release(&bi);
    repo_free(r);
    return ret;
}
