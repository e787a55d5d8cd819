/*
 * progress.c -- progress reports on stderr; see progress.h.
 */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The progress whose terminal line log messages must end first (one at a time). */
static progress *active;

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *progress_fmt_bytes(char *out, double bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    size_t u = 0;

    if (bytes < 0)
        bytes = 0;
    while (bytes >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        bytes /= 1024;
        u++;
    }
    /* 9.96 would print as "10.0": round first, then pick the precision */
    if (u == 0)
        snprintf(out, PROGRESS_FMT_LEN, "%.0f B", bytes);
    else if (bytes < 9.95)
        snprintf(out, PROGRESS_FMT_LEN, "%.1f %s", bytes, units[u]);
    else
        snprintf(out, PROGRESS_FMT_LEN, "%.0f %s", bytes, units[u]);
    return out;
}

const char *progress_fmt_eta(char *out, double seconds)
{
    long s;

    if (!(seconds >= 0) || seconds > 99 * 3600.0) {
        snprintf(out, PROGRESS_FMT_LEN, "--:--");
        return out;
    }
    s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(out, PROGRESS_FMT_LEN, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(out, PROGRESS_FMT_LEN, "%ld:%02ld", s / 60, s % 60);
    return out;
}

const char *progress_fmt_duration(char *out, double seconds)
{
    long s;

    if (!(seconds >= 0))
        seconds = 0;
    if (seconds < 99.95) {
        snprintf(out, PROGRESS_FMT_LEN, "%.1f s", seconds);
        return out;
    }
    s = (long)(seconds + 0.5);
    if (s < 600)
        snprintf(out, PROGRESS_FMT_LEN, "%ld s", s);
    else if (s < 3600)
        snprintf(out, PROGRESS_FMT_LEN, "%ld min %ld s", s / 60, s % 60);
    else
        snprintf(out, PROGRESS_FMT_LEN, "%ld h %ld min", s / 3600, s / 60 % 60);
    return out;
}

void progress_format(char *out, size_t len, const char *what, uint64_t done, uint64_t total,
                     double elapsed, int final)
{
    char d[PROGRESS_FMT_LEN], t[PROGRESS_FMT_LEN], r[PROGRESS_FMT_LEN], e[PROGRESS_FMT_LEN];
    double rate = elapsed >= 0.5 ? (double)done / elapsed : -1;

    progress_fmt_bytes(d, (double)done);
    if (final) {
        progress_fmt_duration(e, elapsed);
        if (rate >= 0)
            snprintf(out, len, "%s: %s in %s (%s/s)", what, d, e, progress_fmt_bytes(r, rate));
        else
            snprintf(out, len, "%s: %s in %s", what, d, e);
    } else if (total > 0) {
        /* a total estimated short (the server's estimate, files growing) is no total */
        uint64_t tot = total > done ? total : done;
        int pct = (int)((double)done * 100.0 / (double)tot);

        progress_fmt_bytes(t, (double)tot);
        if (rate > 0)
            snprintf(out, len, "%s: %s of %s (%d%%), %s/s, ETA %s", what, d, t, pct,
                     progress_fmt_bytes(r, rate), progress_fmt_eta(e, (double)(tot - done) / rate));
        else
            snprintf(out, len, "%s: %s of %s (%d%%)", what, d, t, pct);
    } else if (rate >= 0)
        snprintf(out, len, "%s: %s, %s/s", what, d, progress_fmt_bytes(r, rate));
    else
        snprintf(out, len, "%s: %s", what, d);
}

/* before_log -- log.c calls this before printing a message: clear our terminal line
 * (the next update draws it again). */
static void before_log(void)
{
    progress *p = active;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->on_screen) {
        fputs("\r\033[K", stderr);
        p->on_screen = 0;
    }
    pthread_mutex_unlock(&p->mu);
}

int progress_resolve(int opt)
{
    int tty = isatty(STDERR_FILENO);

    if (opt == PROGRESS_OFF)
        return PROGRESS_OUT_NONE;
    if (tty)
        return PROGRESS_OUT_TTY;
    return opt == PROGRESS_ON ? PROGRESS_OUT_LINES : PROGRESS_OUT_NONE;
}

void progress_init(progress *p, int opt, const char *what, uint64_t total)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->out = progress_resolve(opt);
    snprintf(p->what, sizeof(p->what), "%s", what);
    p->total = total;
    p->t_start = p->t_last = now_seconds();
    if (p->out == PROGRESS_OUT_TTY) {
        active = p;
        log_set_before(before_log);
    }
}

/* show -- draw the line now (p->mu held). */
static void show(progress *p, double t, int final)
{
    char line[256];

    progress_format(line, sizeof(line), p->what, p->done, p->total, t - p->t_start, final);
    if (p->out == PROGRESS_OUT_TTY) {
        fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
        p->on_screen = !final;
    } else
        fprintf(stderr, "%s: progress: %s\n", log_progname(), line);
    fflush(stderr);
    p->t_last = t;
}

/* update -- after done changed (p->mu held): draw when the interval has passed. */
static void update(progress *p)
{
    double t = now_seconds();
    double every = p->out == PROGRESS_OUT_TTY ? PROGRESS_TTY_INTERVAL : PROGRESS_LINE_INTERVAL;

    if (t - p->t_last >= every)
        show(p, t, 0);
}

void progress_set_total(progress *p, uint64_t total)
{
    if (p->out == PROGRESS_OUT_NONE)
        return;
    pthread_mutex_lock(&p->mu);
    p->total = total;
    pthread_mutex_unlock(&p->mu);
}

void progress_add(progress *p, uint64_t n)
{
    if (p->out == PROGRESS_OUT_NONE)
        return;
    pthread_mutex_lock(&p->mu);
    p->done += n;
    update(p);
    pthread_mutex_unlock(&p->mu);
}

void progress_set(progress *p, uint64_t done)
{
    if (p->out == PROGRESS_OUT_NONE)
        return;
    pthread_mutex_lock(&p->mu);
    p->done = done;
    update(p);
    pthread_mutex_unlock(&p->mu);
}

void progress_finish(progress *p)
{
    if (p->out == PROGRESS_OUT_NONE)
        return;
    pthread_mutex_lock(&p->mu);
    show(p, now_seconds(), 1);
    p->out = PROGRESS_OUT_NONE; /* once */
    pthread_mutex_unlock(&p->mu);
}

void progress_end(progress *p)
{
    if (p->out == PROGRESS_OUT_NONE)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->on_screen) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->on_screen = 0;
    }
    p->out = PROGRESS_OUT_NONE;
    pthread_mutex_unlock(&p->mu);
}

void progress_release(progress *p)
{
    progress_end(p);
    if (active == p) {
        active = NULL;
        log_set_before(NULL);
    }
    pthread_mutex_destroy(&p->mu);
}
