/*
 * sha256.c -- SHA-256 through OpenSSL EVP; see sha256.h.
 */
#include "sha256.h"
#include "hex.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

#include "log.h"

static int openssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    return log_error("%s failed: %s", what, e ? buf : "unknown OpenSSL error");
}

int sha256_init(sha256_ctx *ctx)
{
    ctx->md = EVP_MD_CTX_new();
    if (!ctx->md)
        return openssl_error("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        sha256_release(ctx);
        return openssl_error("EVP_DigestInit_ex");
    }
    return 0;
}

int sha256_update(sha256_ctx *ctx, const void *buf, size_t len)
{
    if (len && EVP_DigestUpdate(ctx->md, buf, len) != 1)
        return openssl_error("EVP_DigestUpdate");
    return 0;
}

int sha256_final(sha256_ctx *ctx, uint8_t out[SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx->md, out, &n) != 1 || n != SHA256_LEN)
        return openssl_error("EVP_DigestFinal_ex");
    return 0;
}

void sha256_release(sha256_ctx *ctx)
{
    if (ctx && ctx->md) {
        EVP_MD_CTX_free(ctx->md);
        ctx->md = NULL;
    }
}

int sha256_buffer(const void *buf, size_t len, uint8_t out[SHA256_LEN])
{
    sha256_ctx c = {0};
    int ret = -1;
    if (sha256_init(&c) == 0 && sha256_update(&c, buf, len) == 0 && sha256_final(&c, out) == 0)
        ret = 0;
    sha256_release(&c);
    return ret;
}

void sha256_to_hex(const uint8_t d[SHA256_LEN], char out[SHA256_HEX_LEN + 1])
{
    hex_encode(d, SHA256_LEN, out);
}

int sha256_from_hex(const char *text, uint8_t out[SHA256_LEN])
{
    if (!text || strlen(text) != SHA256_HEX_LEN)
        return -1;
    return hex_decode(text, SHA256_HEX_LEN, out);
}
