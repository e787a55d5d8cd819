/*
 * walfilter.c -- other databases' WAL records as XLOG_NOOP (see walfilter.h).
 *
 * Written from PostgreSQL 15's xlogrecord.h, xlog_internal.h, pg_control.h (XLOG_NOOP
 * 0x20, XLOG_FPI_FOR_HINT 0xA0, XLOG_FPI 0xB0, XLOG_SWITCH 0x40) and rmgrlist.h (the
 * resource manager numbers below), and from how xlogreader.c's DecodeXLogRecord reads a
 * record: a NOOP record with one main-data fragment decodes to no block references,
 * and xlog_redo does nothing for it.
 *
 * Why these resource managers and no others: heap, heap2, btree, hash, gin, gist,
 * sequence, spgist, brin and generic records act on the pages they reference (their
 * hot-standby conflict checks are per database, and nobody connects to a hollow one);
 * XLOG_FPI and XLOG_FPI_FOR_HINT are page images. Records of those kinds that carry no
 * block reference (heap2 rewrite mappings, btree and gist page reuse, heap truncate)
 * are left alone, as is every other resource manager: transactions, smgr, databases,
 * tablespaces, relmap, standby, multixact, clog, commit_ts, origins, messages.
 */
#include "walfilter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "le.h"
#include "walname.h"

#define PAGE 8192u
#define SHORT_PHD 24u
#define LONG_PHD 40u
#define REC_HDR 24u
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define MAXALIGN8(x) (((x) + 7) & ~(size_t)7)

#define RM_XLOG 0
#define XLOG_NOOP 0x20
#define XLOG_SWITCH_INFO 0x40
#define XLOG_FPI_FOR_HINT 0xA0
#define XLOG_FPI 0xB0

#define BKPBLOCK_HAS_IMAGE 0x10
#define BKPBLOCK_SAME_REL 0x80
#define BKPIMAGE_HAS_HOLE 0x01
#define BKPIMAGE_COMPRESSED 0x1C /* pglz 0x04, lz4 0x08, zstd 0x10 */

/* heap2 9, heap 10, btree 11, hash 12, gin 13, gist 14, sequence 15, spgist 16, brin 17,
 * generic 20 */
static int page_rmgr(uint8_t rmid, uint8_t info)
{
    if (rmid == RM_XLOG)
        return (info & 0xF0) == XLOG_FPI || (info & 0xF0) == XLOG_FPI_FOR_HINT;
    return (rmid >= 9 && rmid <= 17) || rmid == 20;
}

/* the stream over one segment, or two consecutive ones (a record between them) */
typedef struct fctx {
    uint8_t *seg[2];
    size_t len;      /* of one segment */
    size_t span;     /* len or 2 * len */
    uint64_t seg_lsn; /* of seg[0] */
    int outside;     /* copy_rec ran past the span */
    walfilter_stats *st;
} fctx;

static uint8_t *at_off(fctx *f, size_t off) { return f->seg[off / f->len] + off % f->len; }

/* page_ok -- the header of the page at off is this stream's; its size, 0 if not */
static size_t page_ok(fctx *f, size_t off, int want_cont)
{
    const uint8_t *p = at_off(f, off);
    uint16_t info = le16_load(p + 2);
    if (le16_load(p) != WAL_MAGIC_PG15 || le64_load(p + 8) != f->seg_lsn + off) {
        if (!(le16_load(p) == 0 && le64_load(p + 8) == 0)) /* zeros: the end of the WAL */
            snprintf(f->st->why, sizeof(f->st->why),
                     "page at offset %zu is not this segment's (magic 0x%04X)", off,
                     le16_load(p));
        return 0;
    }
    if (want_cont >= 0 && !!(info & XLP_FIRST_IS_CONTRECORD) != want_cont) {
        snprintf(f->st->why, sizeof(f->st->why), "unexpected continuation flag at offset %zu",
                 off);
        return 0;
    }
    return (info & XLP_LONG_HEADER) ? LONG_PHD : SHORT_PHD;
}

/* copy_rec -- n bytes of the record stream starting at offset off (past any header),
 * into out (or from out when back), crossing page headers. The offset after the last
 * byte, or 0 when the bytes run past the span (f->outside) or a page is not valid. */
static size_t copy_rec(fctx *f, size_t off, uint8_t *out, size_t n, int back)
{
    while (n) {
        if (off % PAGE == 0) {
            if (off >= f->span) {
                f->outside = 1;
                return 0;
            }
            size_t h = page_ok(f, off, 1);
            if (!h)
                return 0;
            off += h;
        }
        size_t room = PAGE - off % PAGE, k = n < room ? n : room;
        if (back)
            memcpy(at_off(f, off), out, k);
        else
            memcpy(out, at_off(f, off), k);
        out += k;
        off += k;
        n -= k;
    }
    return off;
}

static int in_set(uint32_t db, const uint32_t *dbs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (dbs[i] == db && db != 0)
            return 1;
    return 0;
}

/* excluded -- every block reference of rec lies in one of dbs, there is at least one,
 * and the layout adds up to xl_tot_len exactly as DecodeXLogRecord requires. */
static int excluded(const uint8_t *rec, uint32_t tot, const uint32_t *dbs, size_t ndbs)
{
    size_t off = REC_HDR;
    uint64_t datatotal = 0;
    int nblocks = 0, have_rel = 0;
    uint32_t db = 0;

    while (off < tot) {
        uint8_t id = rec[off++];
        if (id == 0xFF || id == 0xFE) { /* main data: last */
            size_t w = id == 0xFF ? 1 : 4;
            if (off + w > tot)
                return 0;
            datatotal += id == 0xFF ? rec[off] : le32_load(rec + off);
            off += w;
            break;
        }
        if (id == 0xFD || id == 0xFC) {
            off += id == 0xFD ? 2 : 4;
            continue;
        }
        if (id > 32 || off + 3 > tot)
            return 0;
        uint8_t fork_flags = rec[off];
        datatotal += le16_load(rec + off + 1);
        off += 3;
        if (fork_flags & BKPBLOCK_HAS_IMAGE) {
            if (off + 5 > tot)
                return 0;
            uint8_t bimg_info = rec[off + 4];
            datatotal += le16_load(rec + off);
            off += 5;
            if ((bimg_info & BKPIMAGE_COMPRESSED) && (bimg_info & BKPIMAGE_HAS_HOLE))
                off += 2;
        }
        if (!(fork_flags & BKPBLOCK_SAME_REL)) {
            if (off + 12 > tot)
                return 0;
            db = le32_load(rec + off + 4);
            have_rel = 1;
            off += 12;
        } else if (!have_rel) {
            return 0;
        }
        off += 4; /* block number */
        if (off > tot || !in_set(db, dbs, ndbs))
            return 0;
        nblocks++;
    }
    return nblocks > 0 && off <= tot && tot - off == datatotal;
}

static uint32_t rec_crc(const uint8_t *rec, uint32_t tot)
{
    uint32_t c = crc32c_update(CRC32C_INIT, rec + REC_HDR, tot - REC_HDR);
    return crc32c_final(crc32c_update(c, rec, 20));
}

enum { REC_NEXT, REC_END, REC_STOP, REC_OUTSIDE };

/* one_record -- the record at off (past any page header): checked, rewritten when its
 * blocks are all excluded. REC_NEXT (*next: where the next one starts), REC_END (the end
 * of the WAL, or XLOG_SWITCH), REC_STOP (irregular: st->why), REC_OUTSIDE (it runs past
 * the span). */
static int one_record(fctx *f, size_t off, const uint32_t *dbs, size_t ndbs, uint8_t **tmp,
                      size_t *tmpcap, size_t *next)
{
    walfilter_stats *st = f->st;
    uint8_t hdr[REC_HDR];

    f->outside = 0;
    if (PAGE - off % PAGE >= REC_HDR)
        memcpy(hdr, at_off(f, off), REC_HDR);
    else if (!copy_rec(f, off, hdr, REC_HDR, 0))
        return f->outside ? REC_OUTSIDE : st->why[0] ? REC_STOP : REC_END;
    uint32_t tot = le32_load(hdr);
    if (tot == 0)
        return REC_END;
    if (tot < REC_HDR) {
        snprintf(st->why, sizeof(st->why), "record length %u at offset %zu", tot, off);
        return REC_STOP;
    }
    uint8_t *rec;
    size_t end;
    if (PAGE - off % PAGE >= tot) { /* on one page: in place */
        rec = at_off(f, off);
        end = off + tot;
    } else {
        if (tot > *tmpcap) {
            uint8_t *n = realloc(*tmp, tot);
            if (!n) {
                snprintf(st->why, sizeof(st->why), "out of memory");
                return REC_STOP;
            }
            *tmp = n;
            *tmpcap = tot;
        }
        end = copy_rec(f, off, *tmp, tot, 0);
        if (!end)
            return f->outside ? REC_OUTSIDE : st->why[0] ? REC_STOP : REC_END;
        rec = *tmp;
    }
    if (rec_crc(rec, tot) != le32_load(rec + 20)) {
        snprintf(st->why, sizeof(st->why), "CRC mismatch in the record at offset %zu", off);
        return REC_STOP;
    }
    st->records++;
    uint8_t info = rec[16], rmid = rec[17];
    if (page_rmgr(rmid, info) && excluded(rec, tot, dbs, ndbs)) {
        rec[16] = XLOG_NOOP;
        rec[17] = RM_XLOG;
        if (tot - REC_HDR - 2 <= 255) {
            rec[REC_HDR] = 0xFF;
            rec[REC_HDR + 1] = (uint8_t)(tot - REC_HDR - 2);
        } else {
            rec[REC_HDR] = 0xFE;
            le32_store(rec + REC_HDR + 1, tot - REC_HDR - 5);
        }
        le32_store(rec + 20, rec_crc(rec, tot));
        if (rec == *tmp) /* the changed bytes: the header and the data header */
            copy_rec(f, off, *tmp, REC_HDR + 5 < tot ? REC_HDR + 5 : tot, 1);
        st->rewritten++;
        st->bytes += tot;
    }
    if (rmid == RM_XLOG && (info & 0xF0) == XLOG_SWITCH_INFO)
        return REC_END; /* the rest of the segment is padding */
    *next = MAXALIGN8(end);
    return REC_NEXT;
}

uint64_t walfilter_segment(uint8_t *buf, size_t len, uint64_t segno, const uint32_t *dbs,
                           size_t ndbs, walfilter_stats *st)
{
    fctx f = {.seg = {buf, buf}, .len = len, .span = len, .seg_lsn = segno * (uint64_t)len,
              .st = st};
    uint8_t *tmp = NULL;
    size_t tmpcap = 0, off;

    memset(st, 0, sizeof(*st));
    if (len < PAGE || len % PAGE || ndbs == 0)
        return 0;
    /* the continuation of a record that began in the previous segment */
    size_t h = page_ok(&f, 0, -1);
    if (!h)
        return 0;
    if (!(le16_load(buf + 2) & XLP_LONG_HEADER)) {
        snprintf(st->why, sizeof(st->why), "the first page has no long header");
        return 0;
    }
    off = h;
    if (le16_load(buf + 2) & XLP_FIRST_IS_CONTRECORD) {
        uint64_t rem = le32_load(buf + 16);
        for (;;) {
            size_t room = PAGE - off % PAGE;
            if (rem <= room) {
                off = MAXALIGN8(off + rem);
                break;
            }
            rem -= room;
            off += room;
            if (off >= len)
                return 0; /* one record fills the segment */
            size_t hh = page_ok(&f, off, 1);
            if (!hh || le32_load(buf + off + 16) != rem) {
                if (hh)
                    snprintf(st->why, sizeof(st->why), "continuation length mismatch at %zu",
                             off);
                return 0;
            }
            off += hh;
        }
    }
    while (off < len) {
        if (off % PAGE == 0) {
            size_t hh = page_ok(&f, off, 0);
            if (!hh)
                break;
            off += hh;
        }
        size_t next = 0;
        int r = one_record(&f, off, dbs, ndbs, &tmp, &tmpcap, &next);
        if (r == REC_OUTSIDE)
            st->tail_off = off; /* runs into the next segment: walfilter_boundary */
        if (r != REC_NEXT)
            break;
        off = next;
    }
    free(tmp);
    return st->rewritten;
}

int walfilter_boundary(uint8_t *a, uint8_t *b, size_t len, uint64_t segno_a, size_t tail_off,
                       const uint32_t *dbs, size_t ndbs, walfilter_stats *st)
{
    fctx f = {.seg = {a, b}, .len = len, .span = 2 * len, .seg_lsn = segno_a * (uint64_t)len,
              .st = st};
    uint8_t *tmp = NULL;
    size_t tmpcap = 0, next;

    memset(st, 0, sizeof(*st));
    if (len < PAGE || len % PAGE || tail_off == 0 || tail_off >= len)
        return -1;
    int r = one_record(&f, tail_off, dbs, ndbs, &tmp, &tmpcap, &next);
    free(tmp);
    if (r == REC_OUTSIDE)
        snprintf(st->why, sizeof(st->why), "the record at offset %zu spans more than two "
                 "segments", tail_off);
    else if (r == REC_END && !st->records)
        snprintf(st->why, sizeof(st->why), "no record at offset %zu", tail_off);
    return r == REC_NEXT || (r == REC_END && st->records) ? (int)st->rewritten : -1;
}
