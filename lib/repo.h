/*
 * repo.h -- the repository: layout, repo.json, and the WAL object keys.
 *
 * Layout (keys in the storage):
 *     repo.json                                   this module
 *     cipher.json                                 encryption record without repo.json
 *     wal/<first 16 hex of name>/<segment>.zst    segments, .partial and .backup files
 *     wal/<TTTTTTTT>.history.zst                  timeline history, never overwritten
 *     backups/<label>/ and backups/<label>.partial/   ragsafe-basebackup
 *     milvus/objects/<ab>/<sha256>.zst, milvus/snapshots/<label>.json   ragsafe-milvus
 *     locks/<name>.lock                           storage_lock_take
 *
 * repo.json pins the repository to one cluster:
 *     {"format":1,"system_identifier":"7312...","wal_segment_size":16777216,
 *      "wal_magic":53520,"pg_version":15,"created":"2026-11-26T02:15:00Z"}
 * system_identifier is a string (uint64 does not fit a JSON double). pg_version is
 * the PostgreSQL major version, which a system identifier keeps for life (pg_upgrade
 * makes a new one): from the server (server_version_num / 10000) when connected, else
 * from the WAL page magic (0xD110: 15), which every writer sees, ragsafe-archive
 * included. The minor version changes with each update and belongs to each backup
 * (backup.json's server_version, 150018). Older versions wrote 0 (from WAL) or a
 * server_version_num; reading turns both into the major version. The
 * first WAL segment creates it from its page header; a history or backup file that
 * comes first (no system identifier in it) from the data directory's
 * global/pg_control (repo_info_from_pg_control).
 *
 *     repo *r = repo_open(location, ur, create);     NULL: reported
 *     repo_load_info(r)                               0 | RS_NOT_FOUND | -1
 *     repo_pin(r, &info)                              0 | RS_MISMATCH (reported) | -1
 *     repo_free(r);
 */
#ifndef RAGSAFE_REPO_H
#define RAGSAFE_REPO_H

#include <stddef.h>
#include <stdint.h>
#include "storage.h"

#define REPO_FORMAT 1
#define REPO_INFO_KEY "repo.json"
/* the encryption record of an encrypted repository that has no repo.json yet */
#define CIPHER_INFO_KEY "cipher.json"

typedef struct repo_info {
    int format;
    uint64_t sysid;
    uint32_t seg_size;
    uint32_t wal_magic;
    uint32_t pg_version;
    int encrypted;          /* "encryption" in repo.json: objects are sealed (cipher.h) */
    uint8_t key_check[32];  /* keyed digest of a fixed text: tells a wrong key at once */
    /* a key rotation in progress (ragsafe-pitr rekey): "rotation" in the record */
    int rotating;
    uint8_t new_key_check[32];
    char old_key_wrapped[1024]; /* the old key sealed under the new one (hex) */
} repo_info;

typedef struct repo {
    storage *st;
    repo_info info;
    int have_info;
    storage_lock *rekey_lock; /* an old key's holder during a rotation (shared) */
} repo;

/* The repository location every tool takes: --repo (flag), else $RAGSAFE_REPO, else
 * "repo" in the config file. Also applies the config file's S3 settings (s3-endpoint,
 * s3-region, s3-uri-style, credentials) for an s3:// repository. NULL, reported with a
 * hint, when there is none (a usage error). */
struct config;
const char *repo_location(const char *flag, const struct config *cfg);

/*
 * The repository options every tool takes, parsed alike:
 *     --repo LOCATION  --s3-endpoint URL  --s3-region R  --s3-uri-style path|host
 *     --cipher-key-file FILE
 * Tools take them through cli.h (CLI_LONG_OPTIONS, cli_getopt, cli_repo), which puts
 * REPO_LONG_OPTIONS in the getopt_long table, offers every option to repo_cli_option()
 * first, then calls repo_cli_setup() once the config file is loaded:
 * it applies the S3 settings (flag > environment > config file; they are exported as
 * RAGSAFE_S3_* so child processes and a written restore_command see them), loads the
 * key (flag > $RAGSAFE_CIPHER_KEY_FILE > "cipher-key-file" in the config; exported as
 * an absolute RAGSAFE_CIPHER_KEY_FILE) and makes it the default of every storage this
 * process opens (storage_set_default_cipher), and returns the location. NULL:
 * reported, a usage error. repo_cli_release() wipes the key at exit. REPO_OPTIONS_HELP
 * is their --help text, printed by cli_help_tail in every tool.
 */
enum {
    REPO_OPT_REPO = 0x1100,
    REPO_OPT_S3_ENDPOINT,
    REPO_OPT_S3_REGION,
    REPO_OPT_S3_URI_STYLE,
    REPO_OPT_CIPHER_KEY,
};
#define REPO_LONG_OPTIONS                                                  \
    {"repo", required_argument, NULL, REPO_OPT_REPO},                      \
    {"s3-endpoint", required_argument, NULL, REPO_OPT_S3_ENDPOINT},        \
    {"s3-region", required_argument, NULL, REPO_OPT_S3_REGION},            \
    {"s3-uri-style", required_argument, NULL, REPO_OPT_S3_URI_STYLE},      \
    {"cipher-key-file", required_argument, NULL, REPO_OPT_CIPHER_KEY}
#define REPO_OPTIONS_HELP                                                                 \
    "      --repo LOCATION        repository: a directory or s3://BUCKET/PREFIX\n"          \
    "                             (default: $RAGSAFE_REPO, then \"repo\" in the config)\n"  \
    "      --s3-endpoint URL      S3 endpoint (MinIO, Ceph RGW, ...; default: AWS)\n"       \
    "      --s3-region REGION     S3 region (default: us-east-1)\n"                          \
    "      --s3-uri-style STYLE   path or host (virtual-hosted) bucket addressing\n"         \
    "      --cipher-key-file FILE\n"                                                         \
    "                             the encryption key (32 bytes, raw or 64 hex digits)\n"

typedef struct repo_cli {
    const char *repo, *s3_endpoint, *s3_region, *s3_uri_style, *key_file;
} repo_cli;

/* 1: opt was one of REPO_LONG_OPTIONS (arg kept); 0: not ours. */
int repo_cli_option(repo_cli *c, int opt, const char *arg);
const char *repo_cli_setup(const repo_cli *c, const struct config *cfg);
void repo_cli_release(void);

repo *repo_open(const char *location, uring *ur, int create);
/* repo_open, then repo_load_info when repo.json exists (a repository may hold only
 * Milvus snapshots and no repo.json): a missing, wrong or unexpected key is refused
 * here, before anything is read or written. NULL: reported, and *why (may be NULL)
 * set to RS_MISMATCH for a key that does not fit, -1 otherwise. */
repo *repo_open_checked(const char *location, uring *ur, int create, int *why);
void repo_free(repo *r);

/* Read repo.json into r->info. RS_NOT_FOUND when absent; -1 (reported) when it
 * cannot be read or parsed; RS_MISMATCH (reported, with a hint) when the storage's
 * key does not fit: an encrypted repository opened without a key or with another
 * key, or a key given for a repository that is not encrypted. */
int repo_load_info(repo *r);

/* Make sure repo.json names this cluster: create it (no-replace; a concurrent
 * creator wins and is then compared; a storage with a key makes it an encrypted
 * repository) or compare. RS_MISMATCH (reported, naming both
 * system identifiers) for another cluster or another segment size. Fields of want
 * that are 0 are not compared; a pg_version learnt later is not written back. */
int repo_pin(repo *r, const repo_info *want);

/*
 * Key rotation (ragsafe-pitr rekey, pitr/rekey.c). While rotating, the encryption
 * record (repo.json "encryption", and cipher.json) is
 *     {"cipher":"aes-256-gcm","key_check":OLD,"rotation":{"new_key_check":NEW,
 *      "old_key":HEX}}
 * old_key is the old key sealed under the new one. A tool given the new key unwraps it
 * and reads objects sealed under either key (storage_set_cipher_old), writing with the
 * new key. A tool given the old key keeps working (reads of objects not yet re-sealed,
 * writes sealed with the old key) while holding the shared lock "rekey" for as long as
 * the repository is open: rekey takes it exclusively to finish, so no such writer is
 * in flight when the record drops the old key; it re-seals their objects afterwards.
 * repo_rekey_state: *state 0 (not rotating: the record is oldk's), 1 (rotating oldk ->
 * newk), 2 (done: the record is newk's alone). 0 | RS_NOT_FOUND (no record: not an
 * encrypted repository) | RS_MISMATCH (reported: the keys fit neither) | -1.
 * repo_rekey_mark: rewrite the record(s) as rotating (finish 0) or newk's alone
 * (finish 1), durably. 0 | -1.
 */
struct cipher_key;
int repo_rekey_state(repo *r, const struct cipher_key *oldk, const struct cipher_key *newk, int *state);
int repo_rekey_mark(repo *r, const struct cipher_key *oldk, const struct cipher_key *newk, int finish);

/* repo_rekey_refuse -- for the tools whose objects move during a rotation (content-
 * addressed by a keyed digest: ragsafe-milvus, ragsafe-files): -1, reported with the
 * hint to finish it, when the repository of st records a rotation in progress whose
 * old or new key is k (NULL: any); 0 when not (no record, not rotating, another key). */
int repo_rekey_refuse(storage *st, const struct cipher_key *k, const char *what);

/* The pin of the cluster whose data directory is datadir, read from its
 * global/pg_control (PostgreSQL 15's layout, CRC-32C checked): sysid, seg_size,
 * wal_magic (pg_version 0). History and backup-label files carry no system
 * identifier; ragsafe-archive pins a new repository from here when one comes first.
 * 0 | RS_NOT_FOUND (no global/pg_control there) | -1 (reported). */
int repo_info_from_pg_control(const char *datadir, repo_info *out);

/* Object key of a WAL-archive file name (segment, .partial, .backup, .history).
 * -1 (not reported) if name is not a WAL-archive name. out holds >= 64 bytes. */
int repo_wal_key(const char *name, char *out, size_t outlen);

/* The WAL file name back from a key under wal/ (strips the folder and ".zst");
 * -1 if key is not a WAL key. */
int repo_wal_name_from_key(const char *key, char *out, size_t outlen);

#endif
