/*
 * storage.h -- where repository objects live, behind one small interface.
 *
 * A storage is addressed by keys: '/'-separated relative paths ("wal/0000000100000000/
 * 000000010000000000000001.zst"). Keys never start with '/', never contain "..", "."
 * or empty components, and no component starts with '.' (such names are internal temp
 * files): storage_key_valid() checks this and every entry point refuses a bad key.
 * Backends: posix (a directory; every write through durable.h). S3 comes later behind
 * the same calls, which is why there is no "open a path" here.
 *
 * Writing an object:
 *     storage_write *w = storage_write_open(st, key);           NULL: reported
 *     storage_write_data(w, buf, len) ...                       -1: reported
 *     r = storage_write_commit(w, noreplace);                   0 | RS_EXISTS | -1
 *     storage_write_free(w);        aborts (removes the temp) unless committed
 *
 * Reading an object:
 *     r = storage_read_open(st, key, &rd);                      0 | RS_NOT_FOUND | -1
 *     while ((n = storage_read_data(rd, &buf)) > 0) ...         -1: reported
 *     storage_read_free(rd);
 * RS_NOT_FOUND means exactly "this key does not exist while the storage itself is
 * reachable". A missing or unreadable repository root, EACCES, EIO etc. are -1:
 * callers (ragsafe-restore) must never take an error for "not found".
 */
#ifndef RAGSAFE_STORAGE_H
#define RAGSAFE_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "uring.h"

typedef struct storage storage;
typedef struct storage_write storage_write;
typedef struct storage_read storage_read;

/* location: an absolute directory path or an s3:// URL. A relative path is refused
 * (archive_command runs in the data directory: it would land inside PGDATA), and the
 * root is never created here: it must exist (install -d or ragsafe-pitr init), so a
 * typo fails instead of starting a new repository; folders below it are made as
 * needed. create: the caller means to write (kept for the callers; S3 ignores it too).
 * Checks the root is a reachable directory. NULL: reported. ur may be NULL.
 * Run as root on a root owned by another user, everything the storage creates
 * (folders, objects, lock files) is chown'ed to the root's owner and group. */
storage *storage_open(const char *location, uring *ur, int create);
/* The owner new files must get: 1 and *uid and *gid when this process is root on a
 * repository of another user, else 0 (uid/gid (uid_t)-1). For code that writes below
 * the root itself (cas.c's batches). storage_chown: lchown path to that owner (a
 * no-op when there is none). 0 | -1 (reported). */
int storage_owner(const storage *st, uid_t *uid, gid_t *gid);
int storage_chown(const storage *st, const char *path);
void storage_free(storage *st);
/* Absolute path / URL of the root, for messages and for the restore_command line. */
const char *storage_location(const storage *st);
uring *storage_uring(const storage *st);

int storage_key_valid(const char *key);

/*
 * Encryption at rest (cipher.h). With a key set, every object below the root is
 * stored as AES-256-GCM frames named by its key: storage_write_* and storage_put
 * encrypt, storage_read_*, storage_get and storage_read_tail (len <= 56) decrypt and
 * authenticate (a wrong key or a tampered, truncated or moved object is an error,
 * reported, never data). Objects at the root (repo.json) stay plain: they say what
 * the repository is. Sizes from storage_stat, storage_list and storage_read_size are
 * stored (encrypted) bytes. An object that does not authenticate is RS_MISMATCH from
 * storage_get and storage_read_tail (storage_read_mismatch after a read's -1).
 * storage_open takes the process's default key, which a tool sets once from
 * --cipher-key-file (repo_cli_setup) so that every storage its threads open is sealed
 * alike. The key must outlive the storages.
 */
struct cipher_key;
void storage_set_default_cipher(const struct cipher_key *k);
void storage_set_cipher(storage *st, const struct cipher_key *k);
const struct cipher_key *storage_cipher(const storage *st);
/*
 * Key rotation (ragsafe-pitr rekey): while a rotation is in progress a storage also
 * holds the key being replaced; reads of a sealed object take whichever of the two
 * keys its final frame authenticates under (one extra tail read per object), writes
 * always seal with storage_cipher's key. storage_sealed_by: 1 sealed under the
 * storage's key, 2 under the old key, 0 under neither (another key or damaged),
 * RS_NOT_FOUND | -1 (reported).
 */
void storage_set_default_cipher_old(const struct cipher_key *k);
void storage_set_cipher_old(storage *st, const struct cipher_key *k);
const struct cipher_key *storage_cipher_old(const storage *st);
int storage_sealed_by(storage *st, const char *key);

storage_write *storage_write_open(storage *st, const char *key);
int storage_write_data(storage_write *w, const void *buf, size_t len);
int storage_write_commit(storage_write *w, int noreplace);
void storage_write_free(storage_write *w);

/* Whole small object in one call (repo.json, manifests). */
int storage_put(storage *st, const char *key, const void *buf, size_t len, int noreplace);

int storage_read_open(storage *st, const char *key, storage_read **out);
ssize_t storage_read_data(storage_read *rd, const void **buf);
int64_t storage_read_size(const storage_read *rd);
/* After storage_read_data's -1: 1 when it was a sealed object that did not
 * authenticate (a wrong key, a tampered or truncated object), 0 for an I/O error. */
int storage_read_mismatch(const storage_read *rd);
void storage_read_free(storage_read *rd);

/* Whole object into a malloc'd NUL-terminated buffer (*len excludes the NUL).
 * 0 | RS_NOT_FOUND | RS_MISMATCH (sealed, reported) | -1. max: refuse objects larger
 * than this. */
int storage_get(storage *st, const char *key, size_t max, char **buf, size_t *len);

/* The last len bytes of an object and its total size. 0 | RS_NOT_FOUND |
 * RS_MISMATCH (sealed, reported) | -1 (an object shorter than len is -1, reported as
 * truncated). */
int storage_read_tail(storage *st, const char *key, void *buf, size_t len, int64_t *size);

/* 0 | RS_NOT_FOUND | -1; size and mtime (seconds) may be NULL. */
int storage_stat(storage *st, const char *key, int64_t *size, int64_t *mtime);

/* Every object under prefix ("" for all; "wal/" for a folder), recursively, in
 * no particular order. cb returns 0 to go on, anything else stops the walk and is
 * returned. A missing prefix lists nothing. */
typedef int (*storage_list_fn)(void *arg, const char *key, int64_t size, int64_t mtime);
int storage_list(storage *st, const char *prefix, storage_list_fn cb, void *arg);
/* 1 when at least one object is under prefix, 0 when none, -1 (reported). */
int storage_any(storage *st, const char *prefix);

/* Remove an object (absent: 0) / everything under a prefix (absent: 0). */
int storage_remove(storage *st, const char *key);
int storage_remove_prefix(storage *st, const char *prefix);
/* Finish what a killed storage_remove_prefix left: posix hides a folder as
 * "<dir>/.<name>.deleting" before removing it, invisible to listings; remove every such
 * folder directly under prefix (a folder, e.g. "backups/"). The caller holds the lock
 * the removals run under. *n (may be NULL) gets how many. S3: nothing to do (0). */
int storage_sweep_deleting(storage *st, const char *prefix, size_t *n);

/* Rename a whole prefix ("backups/L.partial" -> "backups/L"); the commit point of a
 * multi-object set. RS_EXISTS if the target exists. posix: one rename(2). S3 has no
 * rename: a server-side copy of every object (commit objects last), then deletes;
 * CopyObject takes at most 5 GiB per object, so large sets are better written under
 * their final names with a commit object last (ragsafe-basebackup does that on S3). */
int storage_rename_prefix(storage *st, const char *from, const char *to);

/* Repository lock (flock on "<root>/locks/<name>.lock" in posix). exclusive: writer
 * lock. wait: block, else RS_EXISTS when held by someone else. posix, shared: a
 * repository this user cannot write is locked through a read-only descriptor;
 * RS_NOT_FOUND (not reported) when the lock file can be neither created nor opened. */
typedef struct storage_lock storage_lock;
int storage_lock_take(storage *st, const char *name, int exclusive, int wait, storage_lock **out);
void storage_lock_release(storage_lock *lk);

/* storage_lock_take, retrying every 100 ms (S3: 1 s) for up to timeout_s seconds;
 * RS_EXISTS (not reported) when still held then. */
int storage_lock_take_timeout(storage *st, const char *name, int exclusive, int timeout_s,
                              storage_lock **out);

/* The retention lock. Readers (ragsafe-pitr restore/plan/verify/info, ragsafe-restore
 * on posix, ragsafe-files restore/verify) hold it shared; ragsafe-pitr expire holds it
 * exclusive while it deletes. Writers (ragsafe-archive, ragsafe-basebackup) never take
 * it, so a reader never blocks archiving. posix: flock; S3: one lease object per
 * reader ("locks/retention.<owner>.shared", expiring, renewed by a thread). */
#define STORAGE_RETENTION_LOCK "retention"
/* How long a lock waits: $RAGSAFE_LOCK_TIMEOUT seconds, default 60. */
int storage_lock_timeout(void);
/* Take the retention lock shared, waiting up to storage_lock_timeout() for a running
 * expire. 0 (*out may stay NULL: a posix repository whose lock file this user can
 * neither create nor open; warned, the reader goes on unprotected) | RS_EXISTS (reported: an
 * expire still holds it) | -1 (reported). Test hook: $RAGSAFE_TEST_READER_SLEEP seconds
 * of sleep once the lock is held. */
int storage_reader_lock(storage *st, storage_lock **out);
/* 1 when st is an S3 location. */
int storage_is_s3(const storage *st);

#endif
