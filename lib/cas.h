/*
 * cas.h -- a content-addressed file store on top of object.h.
 *
 * Each distinct content is stored once, as a verified zstd object (zst.h) under
 *     <prefix>/<first 2 hex of sha256>/<sha256 hex>.zst
 * so any number of snapshots can reference the same bytes. ragsafe-milvus keeps
 * Milvus volume files here ("milvus/objects"); other tools can use other prefixes.
 *
 *     cas *c = cas_new(st, "milvus/objects", &opts);          NULL: reported
 *     cas_hash_fd(fd, name, digest, &size);                   hash first (cheap) ...
 *     r = cas_exists(c, digest, &stored);                     ... skip what is stored
 *     r = cas_put_fd(c, fd, name, digest, &stored);           0 | RS_EXISTS | RS_MISMATCH | -1
 *     r = cas_get_fd(c, digest, out_fd, &size);               0 | RS_NOT_FOUND | RS_MISMATCH | -1
 *     cas_free(c);
 *
 * Garbage collection is mark and sweep: the caller marks the address (cas_addr) of
 * every digest its kept catalogues reference in a cas_set, then cas_sweep() removes
 * every other object.
 * The caller holds a storage lock that also excludes writers, or a sweep could remove
 * an object a concurrent writer is about to reference.
 *
 * Thread safety: a cas is used by one thread at a time (its storage may hold an
 * io_uring ring); give each worker thread its own storage and cas. A cas_set is not
 * locked either.
 */
#ifndef RAGSAFE_CAS_H
#define RAGSAFE_CAS_H

#include <stddef.h>
#include <stdint.h>
#include "object.h"
#include "sha256.h"
#include "storage.h"

typedef struct cas cas;

/* prefix: key prefix without a trailing '/', a valid storage key. opts may be NULL
 * (zstd level 3, single-threaded). The cas keeps st and does not free it. */
cas *cas_new(storage *st, const char *prefix, const object_opts *opts);
void cas_free(cas *c);

/* Address of a digest: the digest itself, or in an encrypted repository (the storage
 * has a key, storage.h) the keyed digest (cipher_keyed_digest), so that identical
 * content still deduplicates while the bucket's names reveal nothing about it.
 * Objects are stored and listed by address. 0 | -1 (reported). */
int cas_addr(const cas *c, const uint8_t digest[SHA256_LEN], uint8_t addr[SHA256_LEN]);

/* Key of a digest (of its address). out holds >= strlen(prefix) + 80 bytes; -1 (not
 * reported) when too small. */
int cas_key(const cas *c, const uint8_t digest[SHA256_LEN], char *out, size_t outlen);
/* Key of an address (what cas_list hands out). Same results as cas_key. */
int cas_addr_key(const cas *c, const uint8_t addr[SHA256_LEN], char *out, size_t outlen);
/* Address back from a key under the prefix; -1 (not reported) for anything else. */
int cas_digest_from_key(const cas *c, const char *key, uint8_t digest[SHA256_LEN]);


/* SHA-256 and size of the whole of fd, read from offset 0 (the position is left
 * alone). name is for messages. 0 | -1 (reported). */
int cas_hash_fd(int fd, const char *name, uint8_t digest[SHA256_LEN], uint64_t *size);

/* 0 when the object is stored (stored_size: its compressed size), RS_NOT_FOUND,
 * or -1 (reported). stored_size may be NULL. */
int cas_exists(cas *c, const uint8_t digest[SHA256_LEN], int64_t *stored_size);

/* Store the content of fd (read from offset 0 to EOF), which the caller has hashed
 * to digest. 0: stored now (stored_size: compressed bytes written); RS_EXISTS: the
 * object was already there (nothing written, stored_size 0); RS_MISMATCH (reported):
 * the content read now does not hash to digest, the file changed under us, nothing
 * left behind; -1 (reported). stored_size may be NULL. */
int cas_put_fd(cas *c, int fd, const char *name, const uint8_t digest[SHA256_LEN],
               int64_t *stored_size);

/* Store a buffer the caller has hashed to digest (a chunk of a large file); name is
 * for messages. Same results as cas_put_fd. */
int cas_put_buf(cas *c, const void *buf, size_t len, const char *name,
                const uint8_t digest[SHA256_LEN], int64_t *stored_size);

/* Write the object's original bytes to fd (from its current position; not fsync'd)
 * and verify them: the trailer must match the content and the key's digest.
 * fd -1: verify only. size: original size, may be NULL.
 * 0 | RS_NOT_FOUND | RS_MISMATCH (reported, naming the object) | -1 (reported).
 * On RS_MISMATCH / -1 fd may hold partial data. The data is written with pwrite from
 * fd's position, which is left where it was: a caller appending several objects to
 * one fd seeks past each. */
int cas_get_fd(cas *c, const uint8_t digest[SHA256_LEN], int fd, uint64_t *size);
/* The same by address (what cas_list hands out, what a caller that keeps addresses
 * recorded): the content's digest must have this address. */
int cas_get_addr_fd(cas *c, const uint8_t addr[SHA256_LEN], int fd, uint64_t *size);

/* Every object under the prefix: cb(arg, address, stored_size) (cas_addr: the digest
 * itself unless the repository is encrypted). Keys under the prefix that are not CAS
 * names are skipped with a warning. cb returns 0 to go on; anything
 * else stops the listing and is returned. */
typedef int (*cas_list_fn)(void *arg, const uint8_t digest[SHA256_LEN], int64_t stored_size);
int cas_list(cas *c, cas_list_fn cb, void *arg);

/* Batch mode: durability for a whole set of objects at the price of two syncs.
 *
 * A per-object durable write costs two fsyncs (file, directory), each a journal commit:
 * thousands of small Milvus objects spend most of a snapshot waiting on them. In batch
 * mode cas_put_fd writes each new object under a hidden temp name in its final
 * directory without fsync; cas_batch_commit() then syncs the file system once, renames
 * every temp into place (no-replace) and syncs again. An object therefore still appears
 * under its final name only complete and durable ("durable or absent"), and everything
 * put in the batch is durable when commit returns, before the caller writes the
 * manifest that references it. A batch not committed is rolled back by
 * cas_batch_free() (temps removed); temps left by a killed process are removed by the
 * next cas_sweep().
 *
 *     cas_batch *b = cas_batch_new(st);      NULL: reported
 *     cas_use_batch(worker_cas, b);          for each worker's cas (same repository)
 *     ... cas_put_fd() on any number of threads ...
 *     cas_batch_commit(b);                   0 | -1 (reported; an fsync error is final)
 *     cas_batch_free(b);
 *
 * Only for repositories that are local directories (storage_location() starts with
 * '/'; objects sealed with the storage's key like any other write); elsewhere
 * cas_batch_new() returns a batch that changes nothing (objects are durably written
 * one by one) so callers need no second path. Thread-safe. */
typedef struct cas_batch cas_batch;
cas_batch *cas_batch_new(storage *st);
void cas_use_batch(cas *c, cas_batch *b);
int cas_batch_commit(cas_batch *b);
void cas_batch_free(cas_batch *b);

/* A set of digests (open addressing; grows). */
typedef struct cas_set cas_set;
cas_set *cas_set_new(void);                   /* NULL: reported (out of memory) */
void cas_set_free(cas_set *s);
/* 1: added, 0: was present, -1: out of memory (reported). */
int cas_set_add(cas_set *s, const uint8_t digest[SHA256_LEN]);
int cas_set_has(const cas_set *s, const uint8_t digest[SHA256_LEN]);
size_t cas_set_count(const cas_set *s);

/* Remove every object whose address (cas_addr) is not in keep, and batch temps a
 * killed process left behind (local repositories). dry_run: count only.
 * removed / bytes (compressed bytes freed) may be NULL. 0 | -1 (reported; objects
 * removed before the failure stay removed). */
int cas_sweep(cas *c, const cas_set *keep, int dry_run, uint64_t *removed, uint64_t *bytes);

#endif
