/*
 * backupinfo.h -- backup.json, the description of one base backup in the repository.
 *
 * A complete backup is the folder backups/<label>/ (a backup in progress is
 * backups/<label>.partial/, renamed when complete; see ragsafe-basebackup):
 *     base.tar.zst          the main data directory, plain tar in a zst.h object
 *     <oid>.tar.zst         one per tablespace
 *     backup_manifest       PostgreSQL's manifest, stored as the server sent it
 *     backup.json           this module; written last, before the rename
 *
 * backup.json:
 * {"format":1,"label":"20261126T021500Z","tool_version":"0.1.0",
 *  "system_identifier":"7312...","server_version":150018,
 *  "start_lsn":"0/2000028","start_tli":1,"stop_lsn":"0/2000138","stop_tli":1,
 *  "start_wal":"000000010000000000000002","stop_wal":"000000010000000000000002",
 *  "start_time":"2026-11-26T02:15:00Z","stop_time":"2026-11-26T02:15:09Z",
 *  "wal_segment_size":16777216,"raw_bytes":123,"stored_bytes":45,
 *  "tablespaces":[{"oid":16384,"location":"/srv/ts1","file":"16384.tar.zst"}],
 *  "databases":[{"oid":5,"name":"postgres","tablespace":1663}, ...],
 *  "files":[{"name":"base.tar.zst","raw_bytes":1,"stored_bytes":1,"sha256":"ab.."},
 *           {"name":"backup_manifest","raw_bytes":1,"stored_bytes":1,"sha256":"..."}]}
 * Times are UTC with 'Z'. raw_bytes: tar bytes before compression; sha256 in "files"
 * is of the stored file as it lies in the repository (for .tar.zst that is the
 * compressed object; the object's own trailer covers the raw tar).
 * A backup is consistent from stop_lsn / stop_time on: the restorable window of a
 * backup starts there.
 * "databases" is optional (older backups, or a list that could not be read for sure:
 * see basebackup/dblist.c): pg_database's (oid, datname, dattablespace) at the end of
 * the backup. databases == NULL: not recorded; ndatabases counts the entries.
 */
#ifndef RAGSAFE_BACKUPINFO_H
#define RAGSAFE_BACKUPINFO_H

#include <stddef.h>
#include <stdint.h>
#include "sha256.h"
#include "storage.h"

typedef struct backup_tablespace {
    uint32_t oid;
    char *location;
    char *file;
} backup_tablespace;

typedef struct backup_database {
    uint32_t oid;
    char *name;
    uint32_t tablespace; /* the default tablespace, dattablespace */
} backup_database;

typedef struct backup_file {
    char *name;
    uint64_t raw_bytes;
    uint64_t stored_bytes;
    uint8_t sha256[SHA256_LEN];
} backup_file;

typedef struct backup_info {
    char *label;
    char *tool_version;
    uint64_t sysid;
    uint32_t server_version;
    uint64_t start_lsn, stop_lsn;
    uint32_t start_tli, stop_tli;
    int64_t start_time, stop_time;    /* seconds since the epoch */
    uint32_t seg_size;
    uint64_t raw_bytes, stored_bytes;
    size_t ntablespaces;
    backup_tablespace *tablespaces;
    size_t nfiles;
    backup_file *files;
    size_t ndatabases;
    backup_database *databases; /* NULL: not recorded (optional in backup.json) */
    /* "layout": "chunked" (--format chunked; absent: tar). Then "files" names
     * base.chunks.zst and <oid>.chunks.zst (chunk manifests, see ragsafe-basebackup's
     * chunked.c) instead of tars, and "chunks" says how it was cut: */
    int chunked;
    uint32_t chunk_size;
    uint64_t chunks, new_chunks, packs_written; /* chunks named, stored new, packs written */
} backup_info;

/* "base.chunks.zst" for a chunked backup, else "base.tar.zst": the object restore
 * reads for the main data directory. */
const char *backupinfo_base_file(const backup_info *bi);

/* Parse backup.json text. -1 reported (names the first bad field). */
int backupinfo_parse(const char *json, size_t len, backup_info *out);
/* malloc'd JSON text (pretty, newline-terminated). NULL reported. */
char *backupinfo_to_json(const backup_info *bi);
void backupinfo_release(backup_info *bi);

/* Load backups/<label>/backup.json. 0 | RS_NOT_FOUND | RS_MISMATCH (reported: the
 * file is damaged: fails its seal, does not parse, names another label) | -1 (I/O). */
int backupinfo_load(storage *st, const char *label, backup_info *out);

/* A backup whose backup.json is damaged: label, and why in a few words. Return 0 to
 * carry on, -1 to fail the list. */
typedef int (*backupinfo_damaged_fn)(void *arg, const char *label, const char *why);

/* Every complete backup (folders without .partial that hold a backup.json), sorted
 * by stop_lsn, oldest first. *out malloc'd array; free with backupinfo_list_free.
 * A backup with a damaged backup.json is judged alone: left out of the list and
 * passed to damaged (when NULL, it fails the list with RS_MISMATCH). 0 | RS_MISMATCH |
 * -1. */
int backupinfo_list(storage *st, backup_info **out, size_t *n, backupinfo_damaged_fn damaged,
                    void *arg);
void backupinfo_list_free(backup_info *list, size_t n);

#endif
