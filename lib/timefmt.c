/*
 * timefmt.c -- the one ISO 8601 / RFC 3339 parser and formatter (see timefmt.h).
 */
#include "timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int timefmt_parse(const char *s, int64_t *us, int *had_zone)
{
    const char *p = s;
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac = 0;
    int zone = 0, zsign = 1, zh = 0, zm = 0;

    memset(&tm, 0, sizeof(tm));
    while (*p == ' ')
        p++;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0;
                while (isdigit((unsigned char)*p)) {
                    if (nd < 6) {
                        frac = frac * 10 + (*p - '0');
                        nd++;
                    }
                    p++;
                }
                if (nd == 0)
                    return -1;
                while (nd++ < 6)
                    frac *= 10;
            }
        }
    }
    while (*p == ' ')
        p++;
    if (*p == 'Z' || *p == 'z') {
        zone = 1;
        p++;
    } else if (*p == '+' || *p == '-') {
        zone = 1;
        zsign = *p == '-' ? -1 : 1;
        p++;
        if (digits(&p, 2, &zh))
            return -1;
        if (*p == ':')
            p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &zm))
            return -1;
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || sec > 60 || zh > 15 || zm > 59)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t;
    if (zone) {
        t = timegm(&tm);
        t -= zsign * (zh * 3600 + zm * 60);
    } else {
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    if (t == (time_t)-1 && !(y == 1969))
        return -1;
    *us = (int64_t)t * 1000000 + frac;
    if (had_zone)
        *had_zone = zone;
    return 0;
}

int timefmt_utc(char *out, size_t outlen, int64_t unix_secs)
{
    time_t t = (time_t)unix_secs;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || outlen < TIMEFMT_LEN)
        return -1;
    if (strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -1;
    return 0;
}

int timefmt_utc_us(char *out, size_t outlen, int64_t unix_us)
{
    int64_t secs = unix_us / 1000000, frac = unix_us % 1000000;
    time_t t;
    struct tm tm;

    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    t = (time_t)secs;
    if (!gmtime_r(&t, &tm) || outlen < TIMEFMT_US_LEN)
        return -1;
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    return 0;
}

int timefmt_stamp(char *out, size_t outlen, int64_t unix_secs)
{
    time_t t = (time_t)unix_secs;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || outlen < TIMEFMT_STAMP_LEN)
        return -1;
    if (strftime(out, outlen, "%Y%m%dT%H%M%SZ", &tm) == 0)
        return -1;
    return 0;
}
