/*
 * cipher.h -- encryption at rest: AES-256-GCM through OpenSSL EVP, in frames, for any
 * stored object (WAL, base backup tars, Milvus files, manifests).
 *
 * Key: a file (--cipher-key-file) holding 32 random bytes, raw or as 64 hex digits
 * (a trailing newline allowed), e.g. `openssl rand -hex 32 > key`. The key is never
 * logged; it is wiped when freed. Two subkeys are derived from it with HMAC-SHA256:
 * one encrypts, one makes keyed digests (cipher_keyed_digest: a content-addressed
 * store addresses objects by the keyed hash of their plaintext, so identical files
 * still deduplicate while the names reveal nothing to whoever reads the bucket).
 *
 * Object format: frames, each
 *     header (28 B): "RGSE" | u8 version 1 | u8 flags (1: final) | u16 0 |
 *                    u32 plaintext length | u64 frame index | u64 plaintext offset
 *     nonce (12 B, fresh from RAND_bytes for every frame) | ciphertext | tag (16 B)
 * all little-endian. The additional authenticated data of every frame is its header
 * and the object's name (the storage key): a frame moved to another position or
 * another object, a dropped or reordered frame, a flipped bit anywhere fail the tag.
 * Data frames hold up to CIPHER_FRAME plaintext bytes. The last CIPHER_TAIL_PLAIN
 * plaintext bytes always go in the final frame, padded to that size, so the final
 * frame is always the last CIPHER_TAIL_SIZE bytes of the object: a reader that wants
 * only the end of the plaintext (the zst trailer: object_meta) decrypts just those
 * (cipher_tail_open). Truncation after any frame is caught: the final frame is
 * missing. An object is never smaller than CIPHER_TAIL_SIZE.
 *
 * Encrypting: e = cipher_enc_new(key, name, sink, arg); cipher_enc_write(e, ...)*;
 * cipher_enc_finish(e); cipher_enc_free(e). Ciphertext goes to sink as frames fill.
 * Decrypting (push model, like zst_reader): d = cipher_dec_new(key, name, sink, arg);
 * cipher_dec_write(d, ciphertext...)*; cipher_dec_finish(d); cipher_dec_free(d).
 * Plaintext reaches sink only after its frame's tag was verified.
 * Wired in: the storage layer (storage_set_cipher, storage.h) seals every object below
 * a repository's root with these calls, for every tool.
 *
 * Results: 0; -1 reported (out of memory, OpenSSL failure, a sink's -1);
 * RS_MISMATCH reported ("could not decrypt "name": wrong key or damaged object"):
 * a wrong key, a tampered, truncated or misplaced object. Never garbage.
 */
#ifndef RAGSAFE_CIPHER_H
#define RAGSAFE_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#define CIPHER_KEY_LEN 32
#define CIPHER_FRAME (1u << 20)
#define CIPHER_HEADER 28
#define CIPHER_NONCE 12
#define CIPHER_TAG 16
#define CIPHER_OVERHEAD (CIPHER_HEADER + CIPHER_NONCE + CIPHER_TAG)
#define CIPHER_TAIL_PLAIN 56 /* ZST_TRAILER_SIZE */
#define CIPHER_TAIL_SIZE (CIPHER_OVERHEAD + CIPHER_TAIL_PLAIN)

typedef struct cipher_key cipher_key;
typedef int (*cipher_sink_fn)(void *arg, const void *buf, size_t len);

/* Load a key file (read to its end; every copy of the key is wiped). -1 reported:
 * missing, unreadable, not a regular file, not 32 bytes / 64 hex digits, or readable
 * or writable by group or others (refused with the hint "chmod 600 FILE"). */
int cipher_key_load(const char *path, cipher_key **out);
/* From raw bytes (tests). NULL when out of memory (reported). */
cipher_key *cipher_key_from_bytes(const uint8_t raw[CIPHER_KEY_LEN]);
void cipher_key_free(cipher_key *k);

/* HMAC-SHA256 under the digest subkey of data (e.g. a plaintext's SHA-256). */
int cipher_keyed_digest(const cipher_key *k, const void *data, size_t len, uint8_t out[32]);

typedef struct cipher_enc cipher_enc;
cipher_enc *cipher_enc_new(const cipher_key *k, const char *name, cipher_sink_fn sink, void *arg);
int cipher_enc_write(cipher_enc *e, const void *buf, size_t len);
int cipher_enc_finish(cipher_enc *e);
void cipher_enc_free(cipher_enc *e);

typedef struct cipher_dec cipher_dec;
cipher_dec *cipher_dec_new(const cipher_key *k, const char *name, cipher_sink_fn sink, void *arg);
int cipher_dec_write(cipher_dec *d, const void *buf, size_t len);
int cipher_dec_finish(cipher_dec *d);
/* Plaintext bytes delivered so far. */
uint64_t cipher_dec_size(const cipher_dec *d);
void cipher_dec_free(cipher_dec *d);

/* The end of an object's plaintext from its last CIPHER_TAIL_SIZE bytes alone: up to
 * CIPHER_TAIL_PLAIN bytes into plain, their count in *plain_len, and the object's
 * plaintext size in *total. 0 | RS_MISMATCH (reported) | -1. */
int cipher_tail_open(const cipher_key *k, const char *name, const uint8_t tail[CIPHER_TAIL_SIZE],
                     uint8_t plain[CIPHER_TAIL_PLAIN], size_t *plain_len, uint64_t *total);

/* Quietly: 1 when the final frame tail authenticates under k for name, 0 when not
 * (another key, damaged), -1 (reported) on an OpenSSL failure. Tells which of two
 * keys sealed an object (key rotation). */
int cipher_tail_fits(const cipher_key *k, const char *name, const uint8_t tail[CIPHER_TAIL_SIZE]);

/* Key rotation (ragsafe-pitr rekey): k sealed under wrapping, as hex (malloc'd), and
 * back. unwrap: 0 | RS_MISMATCH (reported: another wrapping key) | -1. */
int cipher_key_wrap(const cipher_key *wrapping, const cipher_key *k, char **hex);
int cipher_key_unwrap(const cipher_key *wrapping, const char *hex, cipher_key **out);
/* 1 when a and b are the same key (constant time). */
int cipher_key_equal(const cipher_key *a, const cipher_key *b);

/* The plaintext size of an object of stored_size bytes is at most this. */
uint64_t cipher_plain_size_max(uint64_t stored_size);

#endif
