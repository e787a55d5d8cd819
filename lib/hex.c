/*
 * hex.c -- hexadecimal encoding and decoding (see hex.h).
 */
#include "hex.h"

static void encode(const uint8_t *in, size_t n, char *out, const char *digits)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
    encode(in, n, out, "0123456789abcdef");
}

void hex_encode_upper(const uint8_t *in, size_t n, char *out)
{
    encode(in, n, out, "0123456789ABCDEF");
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 2 != 0)
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_digit(in[2 * i]), lo = hex_digit(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
