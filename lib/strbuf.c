/*
 * strbuf.c -- a growing string (see strbuf.h for the contract).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static char strbuf_empty[1];

void strbuf_init(strbuf *sb)
{
    sb->buf = strbuf_empty;
    sb->len = 0;
    sb->alloc = 0;
}

void strbuf_release(strbuf *sb)
{
    if (sb->alloc)
        free(sb->buf);
    strbuf_init(sb);
}

void strbuf_reset(strbuf *sb)
{
    sb->len = 0;
    sb->buf[0] = '\0';
}

int strbuf_grow(strbuf *sb, size_t extra)
{
    size_t need, cap;
    char *n;

    if (extra > SIZE_MAX - sb->len - 1)
        return log_error("out of memory (a string of more than %zu bytes)", sb->len);
    need = sb->len + extra + 1;
    if (need <= sb->alloc)
        return 0;
    cap = sb->alloc ? sb->alloc : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    n = realloc(sb->alloc ? sb->buf : NULL, cap);
    if (!n)
        return log_error("out of memory (a string of %zu bytes)", cap);
    if (!sb->alloc)
        n[0] = '\0';
    sb->buf = n;
    sb->alloc = cap;
    return 0;
}

int strbuf_appendn(strbuf *sb, const char *s, size_t n)
{
    if (strbuf_grow(sb, n) != 0)
        return -1;
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
    return 0;
}

int strbuf_append(strbuf *sb, const char *s)
{
    return strbuf_appendn(sb, s, strlen(s));
}

int strbuf_vappendf(strbuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return log_error("could not format a string");
    if (strbuf_grow(sb, (size_t)n) != 0)
        return -1;
    /* the room was made for exactly n bytes: a second count that differs is a bug */
    if (vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap) != n) {
        sb->buf[sb->len] = '\0';
        return log_error("could not format a string");
    }
    sb->len += (size_t)n;
    return 0;
}

int strbuf_appendf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = strbuf_vappendf(sb, fmt, ap);
    va_end(ap);
    return r;
}

char *strbuf_detach(strbuf *sb, size_t *len)
{
    char *s;

    if (!sb->alloc && strbuf_grow(sb, 0) != 0)
        return NULL;
    s = sb->buf;
    if (len)
        *len = sb->len;
    strbuf_init(sb);
    return s;
}

/* append_quoted -- s between single quotes, each quote in s written as esc. Rolls back
 * on failure, so a failed quote leaves sb as it was (never half a word). */
static int append_quoted(strbuf *sb, const char *s, const char *esc)
{
    size_t start = sb->len;

    if (strbuf_append(sb, "'") != 0)
        goto fail;
    while (*s) {
        size_t n = strcspn(s, "'");
        if (strbuf_appendn(sb, s, n) != 0)
            goto fail;
        s += n;
        if (!*s)
            break;
        if (strbuf_append(sb, esc) != 0)
            goto fail;
        s++;
    }
    if (strbuf_append(sb, "'") != 0)
        goto fail;
    return 0;
fail:
    sb->len = start;
    sb->buf[start] = '\0';
    return -1;
}

int strbuf_append_shell_quoted(strbuf *sb, const char *s)
{
    return append_quoted(sb, s, "'\\''");
}

int strbuf_append_conf_quoted(strbuf *sb, const char *s)
{
    return append_quoted(sb, s, "''");
}

void fixbuf_printf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!buf || !len)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}
