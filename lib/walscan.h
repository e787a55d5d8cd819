/*
 * walscan.h -- walk the records of PostgreSQL 15 WAL and pick out the ones a
 * point-in-time recovery stops at: transaction commits / aborts (with their commit
 * timestamp and xid) and named restore points.
 *
 * The scanner is fed whole segments in order. It follows records across page and
 * segment boundaries; a segment that does not follow the previous one (another
 * segment number, or the first one fed) restarts it: the continuation of a record
 * that began before is skipped using the page header's xlp_rem_len, as PostgreSQL's
 * own reader does when it starts in the middle of the stream.
 *
 *     walscan *ws = walscan_new(seg_size, cb, arg);              NULL: out of memory
 *     r = walscan_feed(ws, tli, segno, buf, len);                 0 | 1 end | -1
 *     walscan_free(ws);
 *
 * The callback sees every complete record (start and end LSN, rmgr, info, xid) and,
 * for the records named below, their decoded payload. It returns 0 to go on or any
 * other value, which stops the scan and is returned by walscan_feed.
 *
 * walscan_feed returns WALSCAN_END when the segment holds the end of valid WAL (a
 * zero record length where a record should start, or a page whose address is not
 * the expected one: the recycled tail of the last segment of a timeline); -1 (not
 * reported: walscan_error() says why) on a malformed page or record. Nothing is
 * logged by this module.
 *
 * Layout facts used (PostgreSQL 15, little-endian, MAXALIGN 8):
 *   page header: u16 magic, u16 info, u32 tli, u64 pageaddr, u32 rem_len (+pad) = 24
 *   bytes, 40 with XLP_LONG_HEADER (first page of a segment);
 *   XLogRecord: u32 tot_len, u32 xid, u64 prev, u8 info, u8 rmid, 2 pad, u32 crc = 24;
 *   then block headers (id <= 32), 0xFF short data header (u8 len), 0xFE long (u32),
 *   0xFD origin (u16), 0xFC top-level xid (u32); main data comes last.
 *   xact commit/abort main data starts with TimestampTz xact_time (µs since
 *   2000-01-01); xl_restore_point is TimestampTz rp_time + char rp_name[64].
 */
#ifndef RAGSAFE_WALSCAN_H
#define RAGSAFE_WALSCAN_H

#include <stddef.h>
#include <stdint.h>

#define WALSCAN_END 1

#define RM_XLOG_ID 0
#define RM_XACT_ID 1
#define XLOG_SWITCH 0x40
#define XLOG_RESTORE_POINT 0x70
#define XLOG_XACT_COMMIT 0x00
#define XLOG_XACT_ABORT 0x20
#define XLOG_XACT_COMMIT_PREPARED 0x30
#define XLOG_XACT_ABORT_PREPARED 0x40
#define XLOG_XACT_OPMASK 0x70

/* Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

enum walscan_kind {
    WALSCAN_OTHER = 0,
    WALSCAN_COMMIT,          /* commit or commit prepared: xact_time valid */
    WALSCAN_ABORT,           /* abort or abort prepared: xact_time valid */
    WALSCAN_RESTORE_POINT,   /* time and name valid */
};

typedef struct walscan_record {
    uint64_t start_lsn;      /* where the record header begins */
    uint64_t end_lsn;        /* first byte after it (not aligned) */
    uint32_t tli;            /* timeline of the segment holding the record's end */
    uint64_t segno;          /* segment holding the record's end */
    uint8_t rmid;
    uint8_t info;            /* xl_info, including the rmgr bits */
    uint32_t xid;            /* xl_xid */
    enum walscan_kind kind;
    int prepared;            /* COMMIT_PREPARED / ABORT_PREPARED (xid not the header's) */
    int64_t time_us;         /* Unix microseconds, for COMMIT/ABORT/RESTORE_POINT */
    char name[65];           /* restore point name */
} walscan_record;

typedef int (*walscan_fn)(void *arg, const walscan_record *rec);

typedef struct walscan walscan;

walscan *walscan_new(uint32_t seg_size, walscan_fn cb, void *arg);
void walscan_free(walscan *ws);
/* Forget the carried state: the next segment fed starts a new stream. */
void walscan_reset(walscan *ws);
int walscan_feed(walscan *ws, uint32_t tli, uint64_t segno, const void *buf, size_t len);
const char *walscan_error(const walscan *ws);

/* The LSN where the next record would start (after the last complete one). */
uint64_t walscan_next_lsn(const walscan *ws);

/* Format Unix microseconds as "2026-11-26 02:15:00.123456+00" (PostgreSQL's
 * timestamptz input; out holds >= 40 bytes). */
void walscan_format_time(char *out, size_t outlen, int64_t unix_us);

#endif
