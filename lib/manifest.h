/*
 * manifest.h -- PostgreSQL's backup_manifest (version 1), parsed and checked.
 *
 *     {"PostgreSQL-Backup-Manifest-Version": 1,
 *      "Files": [{"Path"|"Encoded-Path": ..., "Size": N, "Last-Modified": "...",
 *                 "Checksum-Algorithm": "SHA256", "Checksum": "hex"}, ...],
 *      "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}],
 *      "Manifest-Checksum": "hex"}
 * Manifest-Checksum is the SHA-256 of every byte before the line that holds it:
 * manifest_parse verifies it and fails on a mismatch.
 *
 *     manifest m; if (manifest_parse(buf, len, &m) != 0) ...   -1 reported
 *     const manifest_file *f = manifest_find(&m, "base/1/1259");
 *     manifest_release(&m);
 */
#ifndef RAGSAFE_MANIFEST_H
#define RAGSAFE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "sha256.h"

typedef struct manifest_file {
    char *path;              /* decoded (Encoded-Path is hex) */
    uint64_t size;
    int has_sha256;          /* Checksum-Algorithm SHA256 */
    uint8_t sha256[SHA256_LEN];
} manifest_file;

typedef struct manifest_wal_range {
    uint32_t tli;
    uint64_t start_lsn, end_lsn;
} manifest_wal_range;

typedef struct manifest {
    size_t nfiles;
    manifest_file *files;    /* sorted by path */
    size_t nranges;
    manifest_wal_range *ranges;
} manifest;

int manifest_parse(const char *buf, size_t len, manifest *out);
const manifest_file *manifest_find(const manifest *m, const char *path);
void manifest_release(manifest *m);

#endif
