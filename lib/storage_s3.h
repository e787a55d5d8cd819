/*
 * storage_s3.h -- the S3 backend of storage.h: a repository at s3://BUCKET/PREFIX on
 * AWS S3 or any S3-compatible store (MinIO, Ceph RGW, s3rver).
 *
 * storage.c hands every call on an "s3://" storage to the s3_storage_* function of
 * the same name; callers never use this header except for s3_config_apply (tools'
 * main) and the helpers at the end (unit tests). The contract is storage.h's; what
 * differs on S3 is said here.
 *
 * Settings (storage_open reads them from the environment, so every tool and the
 * restore_command it writes get them the same way; s3_config_apply puts the
 * --s3-* options and the config file's keys there first):
 *     RAGSAFE_S3_ENDPOINT   "http://127.0.0.1:9000"; default https://s3.REGION.amazonaws.com
 *     RAGSAFE_S3_REGION     default "us-east-1"
 *     RAGSAFE_S3_URI_STYLE  "path" (endpoint/BUCKET/key) or "host" (BUCKET.endpoint/key);
 *                           default "host" for AWS, "path" when an endpoint is given
 *     RAGSAFE_S3_PART_SIZE  multipart part size in bytes (default 16 MiB, min 5 MiB);
 *                           objects up to one part go in one PUT
 *     RAGSAFE_S3_RETRIES    attempts per request (default 5), RAGSAFE_S3_RETRY_TIME
 *                           seconds all attempts of one request may take (default 60)
 *     RAGSAFE_S3_CA_FILE    a CA bundle to trust for an https endpoint with a private CA
 * Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the
 * config file's s3-key / s3-key-secret / s3-token. Never from the command line; never
 * logged. Requests are signed by libcurl (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3").
 *
 * Semantics on S3:
 * - storage_open sends nothing (every request is a round trip; the first real one
 *   finds out) and never creates a bucket. RS_NOT_FOUND only for a 404 that is about
 *   the key: a GET's NoSuchKey, or a HEAD's bodiless 404 once the bucket has answered
 *   this process (else one ListObjectsV2 of one key probes it first). NoSuchBucket,
 *   403, 5xx after the retries, a refused connection: -1.
 * - Writes are buffered: up to one part in memory, then a multipart upload whose parts
 *   go out as the data comes; it is completed only by storage_write_commit after every
 *   part succeeded and aborted otherwise, so an object appears complete or not at
 *   all. Every PUT and part carries Content-MD5 and x-amz-content-sha256: the store
 *   rejects a damaged transfer. A single-PUT object also records its last
 *   S3_TAIL_META bytes (x-amz-meta-ragsafe-tail) and, when they end in a zst.h trailer,
 *   the SHA-256 of the original bytes (x-amz-meta-ragsafe-sha256): storage_read_tail
 *   is then answered by one HEAD, so "already archived with identical content" never
 *   downloads the object.
 * - noreplace: a HEAD first (stores without conditional writes) unless this storage's
 *   own HEAD found the key absent in the last 10 s (ragsafe-archive's duplicate
 *   check: one round trip less, no wider race), then the PUT (or the multipart
 *   completion) with "If-None-Match: *"; 412 is RS_EXISTS.
 * - rename_prefix copies every object under "from/" to "to/" (server-side copy,
 *   objects up to 5 GiB), the commit objects (S3_COMMIT_NAME, "backup.json") last,
 *   then deletes the sources, commit objects first. The target set is complete at
 *   the moment its commit object appears; until then readers (who look for
 *   "<label>/backup.json") do not see it. A crash in between leaves both copies; the
 *   source is a ".partial" the next run removes. remove_prefix likewise deletes the
 *   commit objects first (so a half-deleted set never looks complete), then the rest
 *   with DeleteObjects in batches of 1000.
 * - Locks: S3 has no flock. A lock is an object "locks/<name>.lock" (exclusive) or
 *   "locks/<name>.<owner>.shared" holding owner (host:pid:random) and an expiry;
 *   it is created with "If-None-Match: *" (stores that honour it make the exclusive
 *   lock race-free) and read back to confirm the owner (stores that ignore it: last
 *   writer wins, and the loser sees that it lost). A lock whose holder died is taken
 *   over after its expiry (S3_LOCK_TTL); a live holder renews it from a thread every
 *   S3_LOCK_TTL / 4. Best effort: two processes on a store without conditional writes
 *   can both believe they hold the lock only if their PUTs interleave with their
 *   read-backs, a window of one round trip.
 * - Retries: transport errors, 5xx and 429 are retried with exponential backoff
 *   (100 ms doubling, at most 2 s, jittered), bounded by RAGSAFE_S3_RETRIES and
 *   RAGSAFE_S3_RETRY_TIME. A GET cut off mid-stream resumes with a Range request
 *   pinned to the same ETag (If-Match).
 * - Answers in XML (listings, multipart, errors) are read by s3_xml.h (libexpat); a
 *   2xx answer that is not the expected document is reported ("malformed answer from
 *   the store"), never half-used; an error answer's Code and Message are in the message.
 * - Not thread-safe: one storage per thread (open another for a worker thread).
 */
#ifndef RAGSAFE_STORAGE_S3_H
#define RAGSAFE_STORAGE_S3_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "config.h"
#include "storage.h"

#define S3_TAIL_META 112         /* >= ZST_TRAILER_SIZE and CIPHER_TAIL_SIZE */
#define S3_COMMIT_NAME "backup.json"
#define S3_LOCK_TTL 600          /* seconds */
#define S3_DEFAULT_PART (16u << 20)
#define S3_MIN_PART (5u << 20)

typedef struct s3_storage s3_storage;
typedef struct s3_write s3_write;
typedef struct s3_read s3_read;
typedef struct s3_lock s3_lock;

/* Tools' main: put --s3-endpoint / --s3-region / --s3-uri-style (any may be NULL)
 * into the environment, else the config file's s3-endpoint / s3-region /
 * s3-uri-style when the environment has none; remember the config file's s3-key,
 * s3-key-secret, s3-token for when AWS_* are unset. -1 (reported) on a bad
 * --s3-uri-style: a usage error. cfg may be NULL. */
int s3_config_apply(const config *cfg, const char *endpoint, const char *region,
                    const char *uri_style);

/* location: "s3://BUCKET[/PREFIX]". NULL: reported. */
s3_storage *s3_storage_open(const char *location, int create);
void s3_storage_free(s3_storage *st);
const char *s3_storage_location(const s3_storage *st);

s3_write *s3_storage_write_open(s3_storage *st, const char *key);
int s3_storage_write_data(s3_write *w, const void *buf, size_t len);
int s3_storage_write_commit(s3_write *w, int noreplace);
void s3_storage_write_free(s3_write *w);
int s3_storage_put(s3_storage *st, const char *key, const void *buf, size_t len, int noreplace);

int s3_storage_read_open(s3_storage *st, const char *key, s3_read **out);
ssize_t s3_storage_read_data(s3_read *rd, const void **buf);
int64_t s3_storage_read_size(const s3_read *rd);
void s3_storage_read_free(s3_read *rd);
int s3_storage_get(s3_storage *st, const char *key, size_t max, char **buf, size_t *len);
int s3_storage_read_tail(s3_storage *st, const char *key, void *buf, size_t len, int64_t *size);
int s3_storage_stat(s3_storage *st, const char *key, int64_t *size, int64_t *mtime);

int s3_storage_list(s3_storage *st, const char *prefix, storage_list_fn cb, void *arg);
int s3_storage_remove(s3_storage *st, const char *key);
int s3_storage_remove_prefix(s3_storage *st, const char *prefix);
int s3_storage_rename_prefix(s3_storage *st, const char *from, const char *to);

int s3_storage_lock_take(s3_storage *st, const char *name, int exclusive, int wait,
                         s3_lock **out);
void s3_storage_lock_release(s3_lock *lk);

/* Helpers, exposed for tests/unit/check_s3.c. */

/* Percent-encode s (RFC 3986 unreserved kept; '/' kept when keep_slash) into a
 * malloc'd string; NULL when out of memory (not reported). */
char *s3_uri_encode(const char *s, int keep_slash);

/* Split "s3://BUCKET[/PREFIX]" into malloc'd bucket and prefix (no leading or trailing
 * '/'; "" when none). -1 (not reported) when malformed. */
int s3_parse_location(const char *location, char **bucket, char **prefix);

#endif
