/*
 * sha256.h -- SHA-256 through OpenSSL EVP (uses SHA-NI where the CPU has it).
 *
 * sha256_init / sha256_update / sha256_final, then sha256_release (safe on a
 * zeroed or released ctx). Errors from OpenSSL are reported and return -1.
 */
#ifndef RAGSAFE_SHA256_H
#define RAGSAFE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_HEX_LEN 64

typedef struct sha256_ctx {
    void *md; /* EVP_MD_CTX */
} sha256_ctx;

int sha256_init(sha256_ctx *ctx);
int sha256_update(sha256_ctx *ctx, const void *buf, size_t len);
int sha256_final(sha256_ctx *ctx, uint8_t out[SHA256_LEN]);
void sha256_release(sha256_ctx *ctx);

/* One-shot digest of a buffer. */
int sha256_buffer(const void *buf, size_t len, uint8_t out[SHA256_LEN]);

/* Lowercase hex, NUL-terminated (out has SHA256_HEX_LEN + 1 bytes). */
void sha256_to_hex(const uint8_t digest[SHA256_LEN], char out[SHA256_HEX_LEN + 1]);
/* Parse 64 hex digits (either case); -1 (not reported) when malformed. */
int sha256_from_hex(const char *hex, uint8_t out[SHA256_LEN]);

#endif
