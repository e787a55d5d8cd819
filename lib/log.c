/*
 * log.c -- "prog: level: message" on stderr; see log.h.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *progname = "ragsafe";
static int threshold = LOG_LEVEL_NOTICE;
/* Whether the last message was printed, so detail/hint lines follow their message.
 * Per thread: a worker's message and its detail lines are emitted by that thread, and
 * another thread's filtered info must not swallow them. */
static _Thread_local int last_shown = 1;
static void (*before)(void);

static const char *level_names[] = {"error", "warning", "notice", "info", "debug"};

void log_init(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    if (argv0)
        progname = slash ? slash + 1 : argv0;
}

const char *log_progname(void) { return progname; }
void log_set_level(int level) { threshold = level; }
int log_get_level(void) { return threshold; }
void log_set_before(void (*fn)(void)) { before = fn; }

/*
 * emit -- format one line. err >= 0 appends ": strerror(err)".
 */
static void emit(int level, const char *label, int err, const char *fmt, va_list ap)
{
    char msg[2048];

    if (level > threshold) {
        last_shown = 0;
        return;
    }
    last_shown = 1;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (before)
        before();
    if (err >= 0)
        fprintf(stderr, "%s: %s: %s: %s\n", progname, label, msg, strerror(err));
    else
        fprintf(stderr, "%s: %s: %s\n", progname, label, msg);
}

int log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(LOG_LEVEL_ERROR, "error", -1, fmt, ap);
    va_end(ap);
    return -1;
}

int log_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    emit(LOG_LEVEL_ERROR, "error", err, fmt, ap);
    va_end(ap);
    errno = err;
    return -1;
}

int log_errnum(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(LOG_LEVEL_ERROR, "error", err < 0 ? -err : err, fmt, ap);
    va_end(ap);
    return -1;
}

#define LOG_AT(fn, level)                                       \
    void fn(const char *fmt, ...)                               \
    {                                                           \
        va_list ap;                                             \
        va_start(ap, fmt);                                      \
        emit(level, level_names[level], -1, fmt, ap);           \
        va_end(ap);                                             \
    }
LOG_AT(log_warning, LOG_LEVEL_WARNING)
LOG_AT(log_notice, LOG_LEVEL_NOTICE)
LOG_AT(log_info, LOG_LEVEL_INFO)
LOG_AT(log_debug, LOG_LEVEL_DEBUG)

static void follow_up(const char *label, const char *fmt, va_list ap)
{
    char msg[2048];
    if (!last_shown)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (before)
        before();
    fprintf(stderr, "%s: %s: %s\n", progname, label, msg);
}

void log_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    follow_up("detail", fmt, ap);
    va_end(ap);
}

void log_hint(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    follow_up("hint", fmt, ap);
    va_end(ap);
}
