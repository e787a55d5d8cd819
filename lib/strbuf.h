/*
 * strbuf.h -- a growing string: text of unknown length without fixed buffers.
 *
 * Calling sequence (git's strbuf, PostgreSQL's StringInfo):
 *     strbuf sb;
 *     strbuf_init(&sb);                      sb.buf is "" (never NULL), sb.len 0
 *     if (strbuf_appendf(&sb, "%s=%d\n", k, v) != 0) goto out;   reported
 *     ... use sb.buf / sb.len ...
 *     strbuf_release(&sb);                   frees; sb is empty again and reusable
 *
 * Errors: every append returns 0, or -1 after reporting "out of memory" (or a
 * formatting error). A failed append leaves the string as it was before the call:
 * the text is never truncated. strbuf_release may be called on a strbuf that only had
 * strbuf_init, any number of times.
 */
#ifndef RAGSAFE_STRBUF_H
#define RAGSAFE_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

#include "log.h"

typedef struct strbuf {
    char *buf;     /* NUL-terminated; points at a static "" until the first append */
    size_t len;    /* bytes before the NUL */
    size_t alloc;  /* bytes allocated (0: buf is the static "") */
} strbuf;

void strbuf_init(strbuf *sb);
void strbuf_release(strbuf *sb);
/* Make room for extra more bytes (plus the NUL). 0 | -1 reported. */
int strbuf_grow(strbuf *sb, size_t extra);
int strbuf_append(strbuf *sb, const char *s);
int strbuf_appendn(strbuf *sb, const char *s, size_t n);
int strbuf_appendf(strbuf *sb, const char *fmt, ...) LOG_PRINTF(2, 3);
int strbuf_vappendf(strbuf *sb, const char *fmt, va_list ap) LOG_PRINTF(2, 0);
/* Format into a fixed buffer (why-strings and the like): does nothing when buf is NULL
 * or len 0; truncates to len - 1 bytes. Not for text of unknown length. */
void fixbuf_printf(char *buf, size_t len, const char *fmt, ...) LOG_PRINTF(3, 4);
/* Drop the contents, keep the memory. */
void strbuf_reset(strbuf *sb);
/* Hand the buffer over: a malloc'd string the caller frees (NULL: reported OOM);
 * sb is empty again. */
char *strbuf_detach(strbuf *sb, size_t *len);

/* s as a /bin/sh single-quoted word: 'it'\''s'. */
int strbuf_append_shell_quoted(strbuf *sb, const char *s);
/* s as a postgresql.conf single-quoted string: 'it''s'. */
int strbuf_append_conf_quoted(strbuf *sb, const char *s);

#endif
