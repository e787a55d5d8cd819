/*
 * hex.h -- the one hexadecimal encoder and decoder of ragsafe.
 *
 *     hex_encode(bytes, n, out);            out: 2n + 1 bytes, lowercase, NUL-terminated
 *     if (hex_decode(text, 2n, bytes) != 0) malformed (not reported)
 *
 * Every module that writes or reads hex (digests, Encoded-Path in backup_manifest,
 * wrapped keys, key files, S3 signatures) goes through these two functions.
 */
#ifndef RAGSAFE_HEX_H
#define RAGSAFE_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of n bytes into out (2 * n + 1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Uppercase variant (URI percent-encoding wants "%2F"). */
void hex_encode_upper(const uint8_t *in, size_t n, char *out);

/* Value of one hex digit (either case), or -1. */
int hex_digit(char c);

/* Decode exactly len hex characters (len even; either case) into len / 2 bytes at out.
 * -1 (not reported) when len is odd or a character is not a hex digit; out may then
 * hold a partial result. */
int hex_decode(const char *in, size_t len, uint8_t *out);

#endif
