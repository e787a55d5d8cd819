/*
 * walgen.h -- a tiny PostgreSQL 15 WAL writer for the unit tests (check_walscan,
 * check_walfilter): records laid out the way PostgreSQL lays them out (MAXALIGN'd
 * starts, page headers interleaved, contrecord flags and rem_len), each with its
 * CRC-32C, in up to four 1 MiB segments.
 */
#ifndef RAGSAFE_TEST_WALGEN_H
#define RAGSAFE_TEST_WALGEN_H

#include <stddef.h>
#include <stdint.h>

#define SEG (1u << 20)
#define PAGE 8192u

typedef struct wbuf {
    uint8_t *seg[4];
    uint64_t first_segno;
    uint64_t pos;        /* next record LSN */
} wbuf;

void put16(uint8_t *p, uint16_t v);
void put32(uint8_t *p, uint32_t v);
void put64(uint8_t *p, uint64_t v);
/* the byte at lsn (in one of the four segments) */
uint8_t *at(wbuf *w, uint64_t lsn);
/* the header of the page at lsn (rem_len: continuation bytes); its size */
size_t page_header(wbuf *w, uint64_t lsn, uint32_t rem_len);
void wbuf_init(wbuf *w, uint64_t first_segno);
void wbuf_free(wbuf *w);
/* a whole record (header included) at w->pos, its CRC set; returns its LSN */
uint64_t emit(wbuf *w, uint8_t *rec, uint32_t len);
uint32_t rec_header(uint8_t *r, uint32_t tot, uint32_t xid, uint8_t info, uint8_t rmid);
/* a heap-like record of len bytes (block reference, never decoded) */
uint64_t emit_filler(wbuf *w, uint32_t len);
/* filler records so that the next record starts exactly at target (not on a page
 * boundary, 8-aligned) */
void fill_until(wbuf *w, uint64_t target);

#endif
