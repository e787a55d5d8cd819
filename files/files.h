/*
 * files.h -- ragsafe-files: encrypted snapshots of config files and log directories.
 *
 * Storage, in the repository:
 *     files/objects/<ab>/<address>.zst   one object per distinct content (lib/cas.h names)
 *     files/snapshots/<label>.json       the snapshot manifest
 * The storage is sealed with the key file (storage_set_cipher, storage.h): every object
 * is a zst object (zst.h) in AES-256-GCM frames (cipher.h) bound to its storage key, and
 * so is the manifest (it names the files). An object's address is cas_addr: the
 * HMAC-SHA256 (cipher_keyed_digest, a subkey of the key file) of the SHA-256 of its
 * plaintext: identical contents deduplicate, while
 * nobody without the key can test a guess of a file's content against the names.
 *
 * Results: 0; -1 reported; RS_NOT_FOUND (no such snapshot, reported); RS_MISMATCH
 * (reported): a wrong key, a tampered or missing object, an unsafe manifest.
 */
#ifndef RAGSAFE_FILES_H
#define RAGSAFE_FILES_H

#include <stdint.h>
#include <sys/types.h>

#include "cas.h"
#include "cipher.h"
#include "storage.h"

#define FILES_OBJECTS "files/objects"
#define FILES_SNAPSHOTS "files/snapshots"
#define FILES_LOCK "files"
#define FILES_LABEL_MAX 100

enum { FILES_REG = 'f', FILES_DIR = 'd', FILES_LNK = 'l' };

typedef struct files_entry {
    char *path;        /* relative, validated */
    int type;          /* FILES_REG / FILES_DIR / FILES_LNK */
    mode_t mode;       /* permission bits (07777) */
    int64_t mtime;     /* seconds */
    long mtime_ns;
    uid_t uid;
    gid_t gid;
    uint64_t size;     /* FILES_REG */
    uint8_t addr[SHA256_LEN]; /* FILES_REG: keyed address */
    char *target;      /* FILES_LNK */
} files_entry;

typedef struct files_manifest {
    char label[FILES_LABEL_MAX + 1];
    char created[32];  /* "2026-11-26T01:00:00Z" */
    int64_t created_t;
    char *base;        /* directory the paths were relative to, informative */
    files_entry *v;
    size_t n, cap;
} files_manifest;

typedef struct files_ctx {
    storage *st;
    cas *c;
    cipher_key *k;
    int json;
} files_ctx;

/* key.c */
int files_keygen(const char *path);
/* Load the key; refuses (reported) a file readable or writable by group or others. */
int files_key_load(const char *path, cipher_key **out);

/* manifest.c (labels and paths are checked by lib/tree.h: tree_label_valid with
 * FILES_LABEL_MAX, tree_path_valid) */
void files_manifest_release(files_manifest *m);
files_entry *files_manifest_add(files_manifest *m);
int files_manifest_save(files_ctx *x, const files_manifest *m);
int files_manifest_load(files_ctx *x, const char *label, files_manifest *m);
/* Labels of every stored snapshot, sorted; *labels freed by tree_labels_free. */
int files_labels(files_ctx *x, char ***labels, size_t *n);

/* snapshot.c */
int files_snapshot(files_ctx *x, const char *label, char *const *paths, size_t npaths);
/* catalog.c */
int files_list(files_ctx *x);
int files_verify(files_ctx *x, const char *label);
/* prefix NULL: every snapshot; else only labels starting with it are counted and
 * expired (objects the others reference are kept all the same). */
int files_expire(files_ctx *x, const char *prefix, long keep_last, int dry_run);
/* restore.c */
/* same_owner: 1 restore recorded owners (as root), 0 never, -1 when the snapshot's
 * top-level entries were owned by the target's owner (restore.c) */
int files_restore(files_ctx *x, const char *label, const char *target, int force, int same_owner);

#endif
