/*
 * timefmt.h -- the one parser and formatter of times for every tool.
 *
 * Machine output (JSON, info lines, repo.json, catalogues, records) writes RFC 3339 in
 * UTC with a "Z": "2026-12-01T21:40:05Z" (timefmt_utc). Names of backups, snapshots and
 * moved-aside directories use the compact form "20261201T214005Z" (timefmt_stamp).
 * timefmt_parse reads what people and stores write: ISO 8601 / RFC 3339
 * "YYYY-MM-DD[T| ]HH:MM[:SS[.frac]][Z|+HH[:MM]|-HH[:MM]]" or a bare date; without a
 * zone the local zone applies (*had_zone 0), which recovery targets typed by a DBA
 * want; stored times always carry "Z".
 */
#ifndef RAGSAFE_TIMEFMT_H
#define RAGSAFE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#define TIMEFMT_LEN 21       /* "2026-12-01T21:40:05Z" + NUL */
#define TIMEFMT_STAMP_LEN 17 /* "20261201T214005Z" + NUL */
#define TIMEFMT_US_LEN 28    /* "2026-12-01T21:40:05.123456Z" + NUL */

/* Parse into Unix microseconds; had_zone may be NULL. -1 (not reported) when malformed. */
int timefmt_parse(const char *s, int64_t *us, int *had_zone);

/* RFC 3339 UTC of Unix seconds into out (>= TIMEFMT_LEN bytes). -1 when out is too small. */
int timefmt_utc(char *out, size_t outlen, int64_t unix_secs);

/* RFC 3339 UTC of Unix microseconds, with six fractional digits (commit and replay
 * times, which PostgreSQL keeps to the microsecond): "2026-12-01T21:40:05.123456Z"
 * into out (>= TIMEFMT_US_LEN bytes). -1 when out is too small. */
int timefmt_utc_us(char *out, size_t outlen, int64_t unix_us);

/* Compact UTC stamp "YYYYMMDDTHHMMSSZ" into out (>= TIMEFMT_STAMP_LEN bytes). */
int timefmt_stamp(char *out, size_t outlen, int64_t unix_secs);

#endif
