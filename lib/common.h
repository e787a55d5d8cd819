/*
 * common.h -- result codes and exit statuses shared by every ragsafe module and tool.
 *
 * A fallible function returns int: 0 on success, -1 on a failure it has already
 * reported through log.h, or one of the positive RS_* codes below for an expected
 * outcome the caller decides about (nothing is logged for those unless documented).
 * Only main() turns results into an EXIT_* status.
 */
#ifndef RAGSAFE_COMMON_H
#define RAGSAFE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define RAGSAFE_VERSION "0.1.0"

enum {
    RS_OK = 0,
    RS_NOT_FOUND = 1,   /* the object / file does not exist */
    RS_MISMATCH = 2,    /* integrity: checksum or content differs (already reported) */
    RS_EXISTS = 3,      /* a no-replace write found the final name taken */
};

enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,       /* failure, or "not found" for ragsafe-restore */
    EXIT_USAGE = 2,      /* usage or configuration error */
    EXIT_INTEGRITY = 3,  /* checksum, different duplicate, wrong cluster */
    /* ragsafe-restore: every failure other than "not found". PostgreSQL aborts
     * recovery on a status above 125 instead of ending it early and promoting. */
    EXIT_RESTORE_FATAL = 128,
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* "s" after a count other than 1: printf("%zu segment%s", n, PLURAL(n)) */
#define PLURAL(n) ((n) == 1 ? "" : "s")

#endif
