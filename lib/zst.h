/*
 * zst.h -- the stored-object format: a plain zstd stream plus a metadata trailer.
 *
 * A stored object is one or more standard zstd frames holding the original bytes,
 * followed by one zstd *skippable* frame (ZST_TRAILER_SIZE bytes) that records the
 * original size and SHA-256. Stock `zstd -d` skips that frame and yields the
 * original bytes, so a DBA with nothing but the zstd CLI can get data out; our
 * readers check the SHA-256 on every read.
 *
 * Trailer layout (little-endian):
 *     u32 0x184D2A5E  skippable frame magic      u32 48  frame payload size
 *     "RGSF"          ragsafe magic              u32 1   trailer version
 *     u64             original size              32 B    SHA-256 of original bytes
 *
 * Writer: zst_writer_new(level, workers, sink, arg); zst_writer_write(...)*;
 * zst_writer_finish(w, &meta) (flushes, emits the trailer); zst_writer_free(w).
 * Compressed bytes go to sink as they are produced. workers > 0 uses zstd's worker
 * threads (ZSTD_c_nbWorkers).
 *
 * Reader (push model): zst_reader_new(sink, arg); zst_reader_write(compressed)*;
 * zst_reader_finish(r, &meta). The reader always holds back the last
 * ZST_TRAILER_SIZE bytes it was given, decompresses the rest to sink while hashing,
 * and at finish parses the held-back bytes as the trailer and compares size and
 * SHA-256. finish returns 0, RS_MISMATCH (reported: checksum or size differ) or -1
 * (reported: not a zstd stream, truncated, no trailer). sink may be NULL to verify
 * only. A sink returning -1 aborts (its error is already reported).
 */
#ifndef RAGSAFE_ZST_H
#define RAGSAFE_ZST_H

#include <stddef.h>
#include <stdint.h>
#include "sha256.h"

#define ZST_TRAILER_SIZE 56
#define ZST_DEFAULT_LEVEL 3
#define ZST_JOB_SIZE (2 << 20) /* bytes per zstd worker job */

typedef struct zst_meta {
    uint64_t raw_size;
    uint8_t sha256[SHA256_LEN];
} zst_meta;

typedef int (*zst_sink_fn)(void *arg, const void *buf, size_t len);

typedef struct zst_writer zst_writer;
zst_writer *zst_writer_new(int level, int workers, zst_sink_fn sink, void *arg);
/* With workers: bytes per worker job (default ZST_JOB_SIZE, right for 16 MiB WAL
 * segments; large tars compress a little better and cheaper with 8-16 MiB). */
void zst_writer_set_job_size(zst_writer *w, size_t bytes);
int zst_writer_write(zst_writer *w, const void *buf, size_t len);
int zst_writer_finish(zst_writer *w, zst_meta *meta);
void zst_writer_free(zst_writer *w);

typedef struct zst_reader zst_reader;
zst_reader *zst_reader_new(zst_sink_fn sink, void *arg);
/* Hash on a second thread while the caller's thread decompresses (large objects:
 * the hash of a 16 MiB segment costs about as much as its decompression). Call before
 * the first write; without a thread it stays inline. 0 | -1 (reported). */
int zst_reader_hash_in_thread(zst_reader *r);
/* Name used in the reader's messages ("object \"wal/...\""); copied. */
void zst_reader_set_name(zst_reader *r, const char *name);
int zst_reader_write(zst_reader *r, const void *buf, size_t len);
int zst_reader_finish(zst_reader *r, zst_meta *meta);
/* After a -1 from write / finish: 1 when the object itself is damaged (not a zstd
 * stream, cut short, no trailer) rather than the sink failing (I/O, memory). Callers
 * report that as an integrity failure, like RS_MISMATCH. */
int zst_reader_damaged(const zst_reader *r);
void zst_reader_free(zst_reader *r);

/* Encode / decode a trailer. decode returns 0, or -1 (not reported) if buf is not
 * a ragsafe trailer. */
void zst_trailer_encode(const zst_meta *meta, uint8_t out[ZST_TRAILER_SIZE]);
int zst_trailer_decode(const uint8_t buf[ZST_TRAILER_SIZE], zst_meta *meta);

#endif
