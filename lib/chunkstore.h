/*
 * chunkstore.h -- a deduplicating store of file chunks, packed many to an object.
 *
 * Chunked base backups (ragsafe-basebackup --format chunked) cut every file into
 * fixed-size pieces and keep each distinct piece once, shared by every backup that
 * names it. Thousands of small objects would make an S3 repository slow and costly,
 * so chunks are packed: a pack holds up to CHUNKSTORE_PACK_TARGET bytes of compressed
 * chunks and comes with an index (SHA-256 of each chunk -> where it lies in the pack).
 *
 *     chunks/<32 hex, random>.pack     records, never modified once written
 *     chunks/<same id>.idx             the pack's index, written after the pack
 *
 * A pack record is a zstd skippable frame (magic 0x184D2A5E, 40 bytes: u32 raw length,
 * u32 compressed length, the chunk's SHA-256) followed by the chunk as one zstd frame,
 * so `zstd -dc x.pack` yields the raw chunks one after the other. An index is
 * "RSCIDX01", u32 count, u32 0, then per chunk SHA-256, u64 record offset, u32 record
 * length, u32 raw length, then the SHA-256 of everything before it (little-endian).
 * In an encrypted repository both are sealed by the storage like every object; names
 * are random, so no name says anything about the content, and rotating the key
 * (ragsafe-pitr rekey) only re-seals them.
 *
 * Crash safety: a pack is committed (durable) before its index, the index before any
 * manifest that names its chunks. An index therefore always describes a complete pack;
 * a pack without an index (a killed writer) is never used and is removed by the sweep.
 *
 *     chunkstore *cs = chunkstore_open(st, level);       loads every index; NULL reported
 *     chunkstore_put(cs, buf, len, digest, &stored)      stores buf unless known
 *     chunkstore_flush(cs)                               commits the open pack
 *
 * or, with the hashing and compression on worker threads (each its own encoder):
 *     sha256_buffer(buf, len, digest);                   any thread
 *     if (!chunkstore_known(cs, digest))                 any thread
 *         rec_len = chunk_encode(enc, buf, len, digest, rec, cap);   any thread
 *     chunkstore_add(cs, digest, known ? NULL : rec, rec_len, &stored)   the writer
 *     chunkstore_find(cs, digest, &loc)                  1 found, 0 not
 *     chunkstore_read_pack(st, key, want, got, arg)      stream a pack (any thread)
 *     chunkstore_sweep(cs, keep, dry_run, ...)           mark and sweep
 *     chunkstore_free(cs)                                an unflushed pack is dropped
 *
 * Writers and the sweep hold the exclusive "backup" repository lock; readers the
 * shared retention lock (storage.h). A chunkstore is used by one thread at a time,
 * except chunkstore_known, which any thread may call while the writer adds;
 * chunkstore_read_pack takes its own storage and may run on many threads.
 */
#ifndef RAGSAFE_CHUNKSTORE_H
#define RAGSAFE_CHUNKSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "cas.h"
#include "sha256.h"
#include "storage.h"

#define CHUNKSTORE_PREFIX "chunks"
#define CHUNKSTORE_CHUNK_SIZE (32u << 10)      /* default chunk size (see README) */
#define CHUNKSTORE_CHUNK_MAX (1u << 20)
#define CHUNKSTORE_PACK_TARGET (32u << 20)     /* a pack is closed past this many bytes */
#define CHUNKSTORE_REC_HDR 48

typedef struct chunkstore chunkstore;

typedef struct chunk_loc {
    uint32_t pack;      /* index into the pack list (chunkstore_pack_key) */
    uint32_t rec_len;   /* header + compressed bytes */
    uint32_t raw_len;
    uint64_t offset;    /* of the record in the pack */
} chunk_loc;

/* Load every index under chunks/. level: zstd level for new chunks. NULL reported
 * (an index that does not authenticate or parse is reported and fails the open:
 * a writer must not store a chunk twice, a reader must not miss one). */
chunkstore *chunkstore_open(storage *st, int level);
void chunkstore_free(chunkstore *cs);

/* SHA-256 of buf into digest; when no committed or open pack holds it, append it to
 * the open pack (committed, with its index, once past CHUNKSTORE_PACK_TARGET).
 * *stored: compressed bytes added (0 when known). 0 | -1 reported. */
int chunkstore_put(chunkstore *cs, const void *buf, size_t len, uint8_t digest[SHA256_LEN],
                   uint64_t *stored);
/* Bytes a pack record of a len-byte chunk may take (chunk_encode's cap). */
size_t chunkstore_record_bound(size_t len);
/* The zstd level new chunks are stored at. */
int chunkstore_level(const chunkstore *cs);
/* 1 when a committed or the open pack holds the chunk (then chunkstore_add stores
 * nothing), 0 when not. Safe on any thread while one thread adds. */
int chunkstore_known(chunkstore *cs, const uint8_t digest[SHA256_LEN]);
/* One pack record (header + zstd frame) of buf into rec (cap >= chunkstore_record_bound
 * (len)); an encoder is used by one thread at a time. Returns the record length, 0
 * reported. */
typedef struct chunk_encoder chunk_encoder;
chunk_encoder *chunk_encoder_new(int level);
void chunk_encoder_free(chunk_encoder *e);
size_t chunk_encode(chunk_encoder *e, const void *buf, size_t len,
                    const uint8_t digest[SHA256_LEN], uint8_t *rec, size_t cap);
/* chunkstore_put with the digest and record made elsewhere: stores rec unless a
 * pack holds the digest already (rec may be NULL when chunkstore_known said so).
 * *stored as chunkstore_put. 0 | -1 reported. */
int chunkstore_add(chunkstore *cs, const uint8_t digest[SHA256_LEN], const uint8_t *rec,
                   size_t rec_len, uint64_t *stored);
/* Commit the open pack and its index (nothing to do when empty). 0 | -1 reported. */
int chunkstore_flush(chunkstore *cs);

/* Counters since open: chunks put, new chunks, new compressed bytes, packs written. */
typedef struct chunkstore_stats {
    uint64_t chunks, new_chunks, new_bytes, packs;
} chunkstore_stats;
void chunkstore_get_stats(const chunkstore *cs, chunkstore_stats *out);

/* 1 and *loc when a committed pack holds the chunk, 0 when not. */
int chunkstore_find(const chunkstore *cs, const uint8_t digest[SHA256_LEN], chunk_loc *loc);
size_t chunkstore_npacks(const chunkstore *cs);
/* "chunks/<id>.pack" of a pack number. */
const char *chunkstore_pack_key(const chunkstore *cs, uint32_t pack);
uint64_t chunkstore_pack_size(const chunkstore *cs, uint32_t pack);

/*
 * Stream a pack and hand over the chunks wanted: want(arg, digest) 1 to take it;
 * got(arg, digest, data, len, status) with status 0 (data decompressed and its
 * SHA-256 checked) or RS_MISMATCH (the record is damaged: data NULL; reported). got
 * returns 0 to go on, anything else stops the read and is returned. A damaged record
 * header stops the read: RS_MISMATCH (reported, the wanted chunks after it are never
 * handed over: the caller counts what it did not get). RS_NOT_FOUND (not reported)
 * when the pack is missing; -1 reported.
 */
typedef int (*chunk_want_fn)(void *arg, const uint8_t digest[SHA256_LEN]);
typedef int (*chunk_got_fn)(void *arg, const uint8_t digest[SHA256_LEN], const void *data,
                            size_t len, int status);
int chunkstore_read_pack(storage *st, const char *key, chunk_want_fn want, chunk_got_fn got,
                         void *arg);
/*
 * chunkstore_read_pack with the work spread over nthreads threads: this thread reads
 * the pack and calls want(want_arg, ...) on each record; the wanted records go in
 * batches of about 1 MiB to nthreads decoding threads, thread i decompressing, checking
 * and calling got(args[i], ...) (got must be safe on several threads at once; each
 * args[i] is used by one thread). Chunks of one pack thus reach got in no set order.
 * Results as chunkstore_read_pack; a damaged record header: the batches before it are
 * still handed over.
 */
int chunkstore_read_pack_par(storage *st, const char *key, chunk_want_fn want, void *want_arg,
                             chunk_got_fn got, void **args, int nthreads);

/*
 * Remove every pack none of whose chunks is in keep (index first, then pack), every
 * pack without an index and (local repositories) writers' temps. Packs with some live
 * chunks are kept whole (no repacking yet). The caller holds the exclusive "backup"
 * lock and the exclusive retention lock. removed / bytes may be NULL. 0 | -1.
 */
int chunkstore_sweep(chunkstore *cs, const cas_set *keep, int dry_run, uint64_t *removed,
                     uint64_t *bytes, uint64_t *kept_packs);

#endif
