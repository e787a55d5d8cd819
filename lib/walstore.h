/*
 * walstore.h -- one WAL file into the repository, the way ragsafe-archive stores it.
 *
 * The one path by which a segment, history, .partial or .backup file becomes an
 * object under wal/: ragsafe-archive (archive_command) and ragsafe-receive (completed
 * streamed segments, history files) both call it, so the same name always gets the
 * same object and either of them finding the other's copy succeeds.
 *
 * A segment's long page header is checked against its name and size, and pins
 * repo.json (a segment of another cluster is refused). The object is written
 * no-replace; a name already stored is read whole (decompressed, hashed): an intact
 * identical copy is success, an intact different one is refused and left untouched,
 * a damaged one is replaced by the offered file (with a warning), an unreadable one
 * is left untouched (retry).
 *
 *     repo *r = NULL;
 *     ret = walstore_put(loc, &r, ur, path, name, &oo, pin);   0 | RS_MISMATCH | -1
 *     ...                                                       (r reused for the next)
 *     repo_free(r);
 *
 * *rp is opened on first use (loc) and kept for the next call. pin (may be NULL): what
 * to pin a repository without repo.json to when a history or backup file comes first
 * (ragsafe-receive knows its server's identity); without it, the data directory of
 * path ("pg_wal/NAME") is asked (its global/pg_control), as archive_command's %p allows.
 * Returns 0 (stored, or already stored with identical content), RS_MISMATCH (reported:
 * an integrity refusal: different content under the name, another cluster, a file
 * that is not the segment its name says), -1 (reported: any other failure, a name
 * that is not a WAL file name included; retrying may succeed).
 */
#ifndef RAGSAFE_WALSTORE_H
#define RAGSAFE_WALSTORE_H

#include "object.h"
#include "repo.h"
#include "uring.h"

int walstore_put(const char *loc, repo **rp, uring *ur, const char *path, const char *name,
                 const object_opts *oo, const repo_info *pin);

#endif
