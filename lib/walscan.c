/*
 * walscan.c -- the WAL record walker behind ragsafe-pitr's target resolution.
 *
 * Written from the record layout in PostgreSQL's xlogrecord.h, xlog_internal.h and
 * xact.h (see walscan.h). It only needs record boundaries and the first bytes of a
 * few record types, so it copies at most WALSCAN_CAPTURE bytes of each record and
 * skips the rest; it does not check record CRCs (the archive's SHA-256 covers the
 * bytes; PostgreSQL checks the CRCs when it replays).
 */
#include "walscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "le.h"
#include "walname.h"

#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define SHORT_PHD 24
#define LONG_PHD 40
#define REC_HDR 24
#define WALSCAN_CAPTURE 1024
#define MAXALIGN8(x) (((x) + 7) & ~(uint64_t)7)

struct walscan {
    uint32_t seg_size;
    walscan_fn cb;
    void *arg;
    int have_prev;        /* a segment was fed and the stream goes on after it */
    uint64_t prev_segno;
    int in_rec;           /* collecting a record that goes on in the next page */
    uint64_t rec_start;
    uint32_t tot_len;
    uint32_t got;
    int skip_rest;        /* after XLOG_SWITCH: the rest of the segment is padding */
    uint64_t next_lsn;
    uint8_t cap[WALSCAN_CAPTURE];
    char err[160];
};

walscan *walscan_new(uint32_t seg_size, walscan_fn cb, void *arg)
{
    walscan *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->seg_size = seg_size;
    ws->cb = cb;
    ws->arg = arg;
    return ws;
}

void walscan_free(walscan *ws) { free(ws); }

void walscan_reset(walscan *ws)
{
    ws->have_prev = 0;
    ws->in_rec = 0;
    ws->skip_rest = 0;
}

const char *walscan_error(const walscan *ws) { return ws->err; }

uint64_t walscan_next_lsn(const walscan *ws) { return ws->next_lsn; }

/*
 * decode_record -- fill rec from the captured head of a complete record. Records
 * with block references never carry the payloads we decode (commits, aborts and
 * restore points have none), so main data is only located when there are none.
 */
static void decode_record(walscan *ws, walscan_record *rec)
{
    const uint8_t *c = ws->cap;
    size_t have = ws->tot_len < WALSCAN_CAPTURE ? ws->tot_len : WALSCAN_CAPTURE;
    size_t p = REC_HDR;
    size_t main_len = 0;
    int found = 0;

    rec->xid = le32_load(c + 4);
    rec->info = c[16];
    rec->rmid = c[17];
    rec->kind = WALSCAN_OTHER;
    rec->prepared = 0;
    rec->time_us = 0;
    rec->name[0] = '\0';

    int want = 0;
    uint8_t op = rec->info & XLOG_XACT_OPMASK;
    if (rec->rmid == RM_XACT_ID && (op == XLOG_XACT_COMMIT || op == XLOG_XACT_ABORT ||
                                    op == XLOG_XACT_COMMIT_PREPARED ||
                                    op == XLOG_XACT_ABORT_PREPARED))
        want = 1;
    if (rec->rmid == RM_XLOG_ID && (rec->info & 0xF0) == XLOG_RESTORE_POINT)
        want = 2;
    if (!want)
        return;

    while (p < have) {
        uint8_t id = c[p];
        if (id == 0xFF) {
            if (p + 2 > have)
                return;
            main_len = c[p + 1];
            p += 2;
            found = 1;
            break;
        } else if (id == 0xFE) {
            if (p + 5 > have)
                return;
            main_len = le32_load(c + p + 1);
            p += 5;
            found = 1;
            break;
        } else if (id == 0xFD) {
            p += 3;
        } else if (id == 0xFC) {
            p += 5;
        } else {
            return; /* block reference: not a record we decode */
        }
    }
    if (!found || main_len < 8 || p + 8 > have)
        return;
    int64_t pg_us = (int64_t)le64_load(c + p);
    rec->time_us = pg_us + PG_EPOCH_OFFSET_US;
    if (want == 1) {
        rec->kind = (op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED) ? WALSCAN_COMMIT
                                                                               : WALSCAN_ABORT;
        rec->prepared = (op == XLOG_XACT_COMMIT_PREPARED || op == XLOG_XACT_ABORT_PREPARED);
    } else {
        if (main_len < 8 + 64 || p + 8 + 64 > have)
            return;
        memcpy(rec->name, c + p + 8, 64);
        rec->name[64] = '\0';
        rec->kind = WALSCAN_RESTORE_POINT;
    }
}

/* consume -- take n bytes of the current record; emit it when complete. Returns
 * the callback's result (0 to go on). end_lsn: LSN just after these bytes. */
static int consume(walscan *ws, const uint8_t *p, uint32_t n, uint64_t end_lsn, uint32_t tli,
                   uint64_t segno)
{
    if (ws->got < WALSCAN_CAPTURE) {
        uint32_t c = WALSCAN_CAPTURE - ws->got;
        if (c > n)
            c = n;
        memcpy(ws->cap + ws->got, p, c);
    }
    ws->got += n;
    if (ws->got < ws->tot_len)
        return 0;

    walscan_record rec;
    memset(&rec, 0, sizeof(rec));
    rec.start_lsn = ws->rec_start;
    rec.end_lsn = end_lsn;
    rec.tli = tli;
    rec.segno = segno;
    decode_record(ws, &rec);
    ws->in_rec = 0;
    ws->next_lsn = MAXALIGN8(end_lsn);
    if (rec.rmid == RM_XLOG_ID && (rec.info & 0xF0) == XLOG_SWITCH &&
        ws->next_lsn % ws->seg_size != 0) {
        ws->skip_rest = 1;
        ws->next_lsn = (ws->next_lsn / ws->seg_size + 1) * ws->seg_size;
    }
    return ws->cb ? ws->cb(ws->arg, &rec) : 0;
}

int walscan_feed(walscan *ws, uint32_t tli, uint64_t segno, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    uint64_t seg_lsn = segno * (uint64_t)ws->seg_size;
    int syncing;

    ws->err[0] = '\0';
    if (!ws->have_prev || ws->prev_segno + 1 != segno) {
        ws->in_rec = 0;
        ws->skip_rest = 0;
        syncing = 1;
    } else {
        syncing = 0;
    }
    ws->have_prev = 1;
    ws->prev_segno = segno;
    if (ws->skip_rest) {
        ws->skip_rest = 0;
        syncing = 0;
        ws->next_lsn = seg_lsn;
    }
    if (len > ws->seg_size)
        len = ws->seg_size;

    for (size_t off = 0; off + WAL_PAGE_SIZE <= len; off += WAL_PAGE_SIZE) {
        const uint8_t *pg = b + off;
        uint64_t page_lsn = seg_lsn + off;
        uint16_t magic = le16_load(pg);
        uint16_t pinfo = le16_load(pg + 2);
        uint64_t pageaddr = le64_load(pg + 8);
        uint32_t rem_len = le32_load(pg + 16);
        size_t pos;

        if (magic == 0 && pageaddr == 0) {
            ws->have_prev = 0;
            return WALSCAN_END;
        }
        if (magic != WAL_MAGIC_PG15) {
            snprintf(ws->err, sizeof(ws->err), "bad page magic 0x%04X at offset %zu", magic, off);
            ws->have_prev = 0;
            return -1;
        }
        if (pageaddr != page_lsn) {
            /* recycled tail of the last segment of a timeline */
            ws->have_prev = 0;
            return WALSCAN_END;
        }
        if (off == 0 && !(pinfo & XLP_LONG_HEADER)) {
            snprintf(ws->err, sizeof(ws->err), "first page lacks the long header");
            ws->have_prev = 0;
            return -1;
        }
        pos = (pinfo & XLP_LONG_HEADER) ? LONG_PHD : SHORT_PHD;

        if (ws->in_rec) {
            uint32_t want = ws->tot_len - ws->got;
            if (!(pinfo & XLP_FIRST_IS_CONTRECORD) || rem_len != want) {
                /* the record was never finished (PostgreSQL 15 overwrites such a
                 * torn record after a crash): start over at this page */
                ws->in_rec = 0;
                syncing = 1;
            } else {
                uint32_t n = want;
                if (n > WAL_PAGE_SIZE - pos)
                    n = (uint32_t)(WAL_PAGE_SIZE - pos);
                int r = consume(ws, pg + pos, n, page_lsn + pos + n, tli, segno);
                if (r != 0)
                    return r;
                pos += n;
                if (ws->in_rec)
                    continue;
                pos = MAXALIGN8(pos);
                if (ws->skip_rest)
                    return 0;
            }
        }
        if (syncing) {
            if (pinfo & XLP_FIRST_IS_CONTRECORD) {
                if ((uint64_t)rem_len >= WAL_PAGE_SIZE - pos)
                    continue; /* the whole page continues a record we did not see */
                pos = MAXALIGN8(pos + rem_len);
            }
            syncing = 0;
        }
        while (pos + 4 <= WAL_PAGE_SIZE) {
            uint32_t tot = le32_load(pg + pos);
            if (tot == 0) {
                ws->next_lsn = page_lsn + pos;
                ws->have_prev = 0;
                return WALSCAN_END;
            }
            if (tot < REC_HDR) {
                snprintf(ws->err, sizeof(ws->err), "invalid record length %u at %X/%X", tot,
                         (unsigned)((page_lsn + pos) >> 32), (unsigned)(page_lsn + pos));
                ws->have_prev = 0;
                return -1;
            }
            ws->in_rec = 1;
            ws->rec_start = page_lsn + pos;
            ws->tot_len = tot;
            ws->got = 0;
            uint32_t n = tot;
            if (n > WAL_PAGE_SIZE - pos)
                n = (uint32_t)(WAL_PAGE_SIZE - pos);
            int r = consume(ws, pg + pos, n, page_lsn + pos + n, tli, segno);
            if (r != 0)
                return r;
            pos += n;
            if (ws->in_rec)
                break;
            pos = MAXALIGN8(pos);
            if (ws->skip_rest)
                return 0;
        }
    }
    return 0;
}

void walscan_format_time(char *out, size_t outlen, int64_t unix_us)
{
    int64_t secs = unix_us / 1000000;
    int64_t frac = unix_us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}
