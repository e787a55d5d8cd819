/*
 * log.h -- the one reporting path of every ragsafe tool.
 *
 * Messages go to stderr as "prog: level: message" (no timestamps: PostgreSQL's log
 * adds its own). Lowercase, failure first, paths in double quotes. stdout is left to
 * machine output.
 *
 * Calling sequence: log_init(argv[0]) once in main(), log_set_level() from -v flags.
 * log_error / log_errno / log_errnum report and return -1 so a function can write
 *     if (fstat(fd, &st) != 0)
 *         return log_errno("could not stat \"%s\"", path);
 * log_errno appends strerror(errno) (errno is read before anything else runs);
 * log_errnum(err, ...) appends strerror(err) for APIs that return -errno (liburing).
 * log_detail / log_hint add indented follow-up lines to the previous message.
 */
#ifndef RAGSAFE_LOG_H
#define RAGSAFE_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARNING = 1,
    LOG_LEVEL_NOTICE = 2,  /* default threshold */
    LOG_LEVEL_INFO = 3,    /* -v */
    LOG_LEVEL_DEBUG = 4,   /* -vv */
};

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(const char *argv0);
const char *log_progname(void);
void log_set_level(int level);
int log_get_level(void);
/* fn runs before each message that is printed (progress.c: end its terminal line so
 * the message starts a line of its own); NULL: none. */
void log_set_before(void (*fn)(void));

int log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
int log_errno(const char *fmt, ...) LOG_PRINTF(1, 2);
int log_errnum(int err, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_warning(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_notice(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_detail(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_hint(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
