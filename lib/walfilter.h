/*
 * walfilter.h -- turn the WAL records of chosen databases into no-ops, for a private
 * recovery that needs one database only (ragsafe-pitr dump).
 *
 * A dump restores the relation files of its database, postgres's and the shared
 * catalogs; the other databases' files are left hollow (pitr/dump.c). PostgreSQL still
 * replays every record of the cluster's WAL, and most of that work (reading, changing
 * and writing pages, full-page images included) goes to files nothing will read. Here
 * a record whose every block reference lies in one of the given databases, of a
 * resource manager whose redo does nothing but change those blocks, becomes an
 * XLOG_NOOP record of the same length: same LSN, same xl_xid, same xl_prev, its bytes
 * now one main-data fragment, the CRC recomputed. Commit, abort, checkpoint, smgr,
 * database, relmap and standby records, and everything touching the kept databases
 * or the shared catalogs, stay as they were: the kept database replays exactly as
 * before, and transaction status (pg_xact) for all of them too.
 *
 *     walfilter_stats st;
 *     n = walfilter_segment(buf, len, segno, dbs, ndbs, &st);   records rewritten, >= 0
 *
 * buf is one whole segment (len its size, a multiple of the 8 kB page), segno its
 * number. Records that begin and end inside the segment are looked at (one that runs
 * into the next segment is left to walfilter_boundary, given both); each one's
 * CRC is checked before anything changes, and anything irregular (a bad page header,
 * a CRC mismatch, a length that does not parse, a record running past the segment)
 * ends the walk there with the rest left untouched: the result is always WAL
 * PostgreSQL replays, only with less to do. st->why says why a walk ended early ("" at
 * the end of the segment or of valid WAL). Nothing is logged.
 *
 * Layout facts (PostgreSQL 15, xlogrecord.h): after the 24-byte XLogRecord come block
 * headers (id <= 32: u8 fork_flags, u16 data_length; an image header u16 length, u16
 * hole_offset, u8 bimg_info, + u16 hole_length when the image is compressed and has a
 * hole; a RelFileNode {spc, db, rel} unless BKPBLOCK_SAME_REL; u32 block number), 0xFD
 * origin (u16), 0xFC top-level xid (u32), then 0xFF (u8 length) or 0xFE (u32 length)
 * for the main data, which comes last; the payloads follow the headers and add up to
 * the rest of xl_tot_len. xl_crc is CRC-32C of the bytes after the header, then of the
 * header's first 20 bytes.
 */
#ifndef RAGSAFE_WALFILTER_H
#define RAGSAFE_WALFILTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct walfilter_stats {
    uint64_t records;   /* records checked (begin and end in the segment) */
    uint64_t rewritten; /* turned into XLOG_NOOP */
    uint64_t bytes;     /* the rewritten records' length */
    size_t tail_off;    /* a record that begins here and ends in the next segment (not
                         * looked at: walfilter_boundary); 0: none */
    char why[160];      /* why the walk stopped early, "" when it did not */
} walfilter_stats;

/* buf: a whole segment; dbs: database OIDs whose relations' records become no-ops (0,
 * the shared catalogs, is never one). Returns the number of records rewritten. */
uint64_t walfilter_segment(uint8_t *buf, size_t len, uint64_t segno, const uint32_t *dbs,
                           size_t ndbs, walfilter_stats *st);

/* the record at tail_off of segment a (st->tail_off of a's walk) that ends in b, the
 * next segment: filtered the same way, across both buffers. 1 rewritten, 0 left as it
 * is (not excluded), -1 not looked at (st->why: it runs past b, a page is not valid, a
 * CRC mismatch). */
int walfilter_boundary(uint8_t *a, uint8_t *b, size_t len, uint64_t segno_a, size_t tail_off,
                       const uint32_t *dbs, size_t ndbs, walfilter_stats *st);

#endif
