/* walgen.c -- see walgen.h */
#include "testutil.h"
#include "walgen.h"

#include "crc32c.h"
#include "walname.h"

/* A tiny WAL writer: records are laid out the way PostgreSQL lays them out
 * (MAXALIGN'd starts, page headers interleaved, contrecord flags and rem_len). */

void put16(uint8_t *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; }
void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xFFFF); put16(p + 2, v >> 16); }
void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

uint8_t *at(wbuf *w, uint64_t lsn)
{
    uint64_t s = lsn / SEG - w->first_segno;
    ck_assert_uint_lt(s, 4);
    return w->seg[s] + lsn % SEG;
}

/* page_header -- write the header of the page at lsn (rem_len: continuation bytes) */
size_t page_header(wbuf *w, uint64_t lsn, uint32_t rem_len)
{
    uint8_t *p = at(w, lsn);
    int lng = lsn % SEG == 0;
    put16(p, WAL_MAGIC_PG15);
    put16(p + 2, (uint16_t)((lng ? 2 : 0) | (rem_len ? 1 : 0)));
    put32(p + 4, 1);
    put64(p + 8, lsn);
    put32(p + 16, rem_len);
    if (lng) {
        put64(p + 24, 7000000000000000001ull);
        put32(p + 32, SEG);
        put32(p + 36, PAGE);
        return 40;
    }
    return 24;
}

void wbuf_init(wbuf *w, uint64_t first_segno)
{
    memset(w, 0, sizeof(*w));
    w->first_segno = first_segno;
    for (int i = 0; i < 4; i++)
        w->seg[i] = calloc(1, SEG);
    w->pos = first_segno * SEG;
    w->pos += page_header(w, w->pos, 0);
}

void wbuf_free(wbuf *w)
{
    for (int i = 0; i < 4; i++)
        free(w->seg[i]);
}

/* emit -- lay a whole record (header included) out at w->pos; returns its LSN. */
uint64_t emit(wbuf *w, uint8_t *rec, uint32_t len)
{
    uint32_t c = crc32c_update(CRC32C_INIT, rec + 24, len - 24);
    put32(rec + 20, crc32c_final(crc32c_update(c, rec, 20)));
    uint64_t start = w->pos, lsn = w->pos;
    uint32_t done = 0;
    while (done < len) {
        if (lsn % PAGE == 0)
            lsn += page_header(w, lsn, len - done);
        uint32_t room = (uint32_t)(PAGE - lsn % PAGE);
        uint32_t n = len - done < room ? len - done : room;
        memcpy(at(w, lsn), rec + done, n);
        done += n;
        lsn += n;
    }
    lsn = (lsn + 7) & ~7ull;
    if (lsn % PAGE == 0 && (lsn / SEG - w->first_segno) < 4)
        lsn += page_header(w, lsn, 0);
    w->pos = lsn;
    return start;
}

uint32_t rec_header(uint8_t *r, uint32_t tot, uint32_t xid, uint8_t info, uint8_t rmid)
{
    memset(r, 0, 24);
    put32(r, tot);
    put32(r + 4, xid);
    r[16] = info;
    r[17] = rmid;
    return 24;
}


/* emit_filler -- a heap-like record of len bytes (block reference, never decoded) */
uint64_t emit_filler(wbuf *w, uint32_t len)
{
    uint8_t *r = calloc(1, len);
    rec_header(r, len, 99, 0x00, 10);
    r[24] = 0; /* block id 0 */
    uint64_t l = emit(w, r, len);
    free(r);
    return l;
}

/* fill_until -- filler records so that the next record starts exactly at target
 * (target not on a page boundary, 8-aligned) */
void fill_until(wbuf *w, uint64_t target)
{
    while (w->pos + 3 * PAGE < target)
        emit_filler(w, 2 * PAGE);
    uint64_t d = target - w->pos;
    uint64_t pages = target / PAGE - w->pos / PAGE;
    emit_filler(w, (uint32_t)(d - 24 * pages - (target % SEG < PAGE && pages ? 16 : 0)));
    ck_assert_uint_eq(w->pos, target);
}

