/*
 * progress.h -- progress of long work (a backup, a restore, a verify) on stderr.
 *
 * On a terminal: one line rewritten in place ("\r" + clear to end of line), at most
 * four times a second, with the bytes done, the total when known, the rate and the
 * ETA; progress_finish ends it with a newline. On anything else (a log file, cron's
 * mail) nothing, unless the user asked with --progress: then plain lines, at most one
 * every PROGRESS_LINE_INTERVAL seconds, and a last line at the end. --no-progress
 * silences the terminal line too.
 *
 * Calling sequence:
 *     int opt = PROGRESS_AUTO;                  --progress: PROGRESS_ON,
 *                                               --no-progress: PROGRESS_OFF
 *     progress p;
 *     progress_init(&p, opt, "restore", total); total 0: unknown
 *     progress_add(&p, n);                      from any thread (it locks)
 *     progress_set(&p, done);                   or the absolute count
 *     progress_finish(&p);                      the last line; on error progress_end
 *     progress_release(&p);
 * A progress whose mode resolved to off costs a branch per call. While a terminal
 * line is up, every log message first ends it (log_set_before), so an error never
 * lands in the middle of it; the next update draws it again.
 *
 * Nothing here fails: a progress report is advisory, a write error to stderr is
 * ignored. The formatting helpers are separate so the tests can check them.
 */
#ifndef RAGSAFE_PROGRESS_H
#define RAGSAFE_PROGRESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* What the options asked for. */
#define PROGRESS_AUTO (-1) /* neither option: a line on a terminal, nothing elsewhere */
#define PROGRESS_OFF 0     /* --no-progress */
#define PROGRESS_ON 1      /* --progress: on a terminal the line, elsewhere plain lines */

/* The help text of the two options, for each tool's --help. */
#define PROGRESS_OPTIONS_HELP                                                                     \
    "      --progress             report progress on stderr even when it is not a terminal\n"     \
    "      --no-progress          no progress line on a terminal either\n"

/* Seconds between two plain progress lines (not a terminal, --progress). */
#define PROGRESS_LINE_INTERVAL 5.0
/* Seconds between two redraws of the terminal line. */
#define PROGRESS_TTY_INTERVAL 0.25

enum progress_out { PROGRESS_OUT_NONE = 0, PROGRESS_OUT_TTY, PROGRESS_OUT_LINES };

typedef struct progress {
    int out;              /* enum progress_out, resolved by progress_init */
    char what[48];        /* "backup", "restore": first word of every line */
    uint64_t done, total; /* bytes; total 0: unknown */
    double t_start, t_last;
    int on_screen;        /* a terminal line is drawn and not ended */
    pthread_mutex_t mu;
} progress;

/* The output for an option value: a terminal or not is looked up on stderr. */
int progress_resolve(int opt);
void progress_init(progress *p, int opt, const char *what, uint64_t total);
void progress_set_total(progress *p, uint64_t total);
void progress_add(progress *p, uint64_t n);
void progress_set(progress *p, uint64_t done);
/* The last line: "<what>: 1.2 GiB in 14.2 s (86 MiB/s)". */
void progress_finish(progress *p);
/* End a terminal line without a last report (an error ends the work). */
void progress_end(progress *p);
void progress_release(progress *p);

/* Formatting (no I/O). Each returns out; out holds at least PROGRESS_FMT_LEN bytes. */
#define PROGRESS_FMT_LEN 32
/* "512 B", "1.2 KiB", "86 MiB", "1.2 GiB": IEC units, one decimal below 10. */
const char *progress_fmt_bytes(char *out, double bytes);
/* "0:26", "12:05", "1:02:03"; negative or absurd (over 99 h): "--:--". */
const char *progress_fmt_eta(char *out, double seconds);
/* "0.3 s", "14.2 s", "95 s", "12 min 5 s", "1 h 2 min" */
const char *progress_fmt_duration(char *out, double seconds);
/* One report without a newline, at most len bytes with the NUL:
 *   "restore: 1.2 GiB of 3.4 GiB (35%), 86 MiB/s, ETA 0:26"
 *   "restore: 1.2 GiB, 86 MiB/s"                     total unknown
 *   "restore: 1.2 GiB in 14.2 s (86 MiB/s)"          final
 * The rate is left out before 0.5 s have passed (too noisy to mean anything). */
void progress_format(char *out, size_t len, const char *what, uint64_t done, uint64_t total,
                     double elapsed, int final);

#endif
