/*
 * config.c -- key = value config files and the flag > env > file order; see config.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct config {
    size_t n;
    char **keys;
    char **values;
};

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int config_add(config *cfg, const char *key, const char *value)
{
    char **k = realloc(cfg->keys, (cfg->n + 1) * sizeof(char *));
    if (!k)
        return log_error("out of memory");
    cfg->keys = k;
    char **v = realloc(cfg->values, (cfg->n + 1) * sizeof(char *));
    if (!v)
        return log_error("out of memory");
    cfg->values = v;
    cfg->keys[cfg->n] = strdup(key);
    cfg->values[cfg->n] = strdup(value);
    if (!cfg->keys[cfg->n] || !cfg->values[cfg->n])
        return log_error("out of memory");
    cfg->n++;
    return 0;
}

/*
 * parse_line -- one "key = value" line (already stripped of its comment unless the
 * '#' sits inside quotes). Empty lines are fine. -1 reported.
 */
static int parse_line(config *cfg, char *line, const char *path, int lineno)
{
    char *p = trim(line), *eq, *key, *val;

    if (*p == '\0' || *p == '#')
        return 0;
    eq = strchr(p, '=');
    if (!eq)
        return log_error("syntax error in \"%s\" line %d: expected \"key = value\"", path, lineno);
    *eq = '\0';
    key = trim(p);
    val = trim(eq + 1);
    if (*key == '\0')
        return log_error("syntax error in \"%s\" line %d: empty key", path, lineno);
    for (char *c = key; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return log_error("syntax error in \"%s\" line %d: bad key \"%s\"", path, lineno, key);
    if (*val == '"') {
        char *end = strrchr(val + 1, '"');
        if (!end)
            return log_error("syntax error in \"%s\" line %d: unterminated quote", path, lineno);
        char *rest = trim(end + 1);
        if (*rest != '\0' && *rest != '#')
            return log_error("syntax error in \"%s\" line %d: text after closing quote", path, lineno);
        *end = '\0';
        val++;
    } else {
        char *hash = strchr(val, '#');
        if (hash) {
            *hash = '\0';
            val = trim(val);
        }
    }
    return config_add(cfg, key, val);
}

/*
 * dir_chain_safe -- no directory from the file's up to "/" may be writable by group
 * or others (unless sticky, like /tmp: others cannot rename or remove what is not
 * theirs there), or whoever can write there can replace the file. -1 reported.
 */
static int dir_chain_safe(const char *path)
{
    char *real = realpath(path, NULL), *slash;
    int ret = -1;

    if (!real)
        return log_errno("could not resolve config file \"%s\"", path);
    while ((slash = strrchr(real, '/')) != NULL) {
        struct stat sb;
        if (slash == real)
            slash[1] = '\0'; /* "/" itself */
        else
            *slash = '\0';
        if (stat(real, &sb) != 0) {
            log_errno("could not stat \"%s\"", real);
            goto out;
        }
        if ((sb.st_mode & (S_IWGRP | S_IWOTH)) && !(sb.st_mode & S_ISVTX)) {
            log_error("refusing config file \"%s\": directory \"%s\" is writable by group or "
                      "others (mode %04o), who could replace it", path, real,
                      (unsigned)(sb.st_mode & 07777));
            log_hint("chmod go-w \"%s\", or keep the config file elsewhere", real);
            goto out;
        }
        if (slash == real)
            break;
    }
    ret = 0;
out:
    free(real);
    return ret;
}

/*
 * config_file_safe -- the config file holds shell commands (stop-cmd, start-cmd,
 * version-cmd, notify commands) that the tools run, and S3 secrets: like ssh with its
 * key files, refuse one that someone other than root or the running user owns or can
 * write. /dev/null (an empty config) is fine. -1 reported.
 */
static int config_file_safe(FILE *f, const char *path)
{
    struct stat sb, nul;
    uid_t me = geteuid();

    if (fstat(fileno(f), &sb) != 0)
        return log_errno("could not stat config file \"%s\"", path);
    if (S_ISCHR(sb.st_mode) && stat("/dev/null", &nul) == 0 && S_ISCHR(nul.st_mode) &&
        sb.st_rdev == nul.st_rdev)
        return 0;
    if (sb.st_uid != 0 && sb.st_uid != me) {
        log_error("refusing config file \"%s\": it is owned by uid %u, not by root or the "
                  "user running this tool (uid %u)", path, (unsigned)sb.st_uid, (unsigned)me);
        log_hint("chown root \"%s\" (or chown to the user the tool runs as), and chmod go-w", path);
        return -1;
    }
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        log_error("refusing config file \"%s\": it is writable by group or others (mode %04o)",
                  path, (unsigned)(sb.st_mode & 07777));
        log_hint("chmod go-w \"%s\"", path);
        return -1;
    }
    return S_ISREG(sb.st_mode) ? dir_chain_safe(path) : 0;
}

config *config_load(const char *path)
{
    int explicit_path = path != NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg) {
        log_error("out of memory");
        return NULL;
    }
    if (!path) {
        const char *env = getenv("RAGSAFE_CONFIG");
        if (env && *env) {
            path = env;
            explicit_path = 1;
        } else {
            path = CONFIG_DEFAULT_PATH;
        }
    }
    f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT && !explicit_path)
            return cfg;
        log_errno("could not open config file \"%s\"", path);
        goto fail;
    }
    if (config_file_safe(f, path) != 0)
        goto fail;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (parse_line(cfg, line, path, lineno) != 0)
            goto fail;
    }
    if (ferror(f)) {
        log_errno("could not read config file \"%s\"", path);
        goto fail;
    }
    fclose(f);
    free(line);
    return cfg;
fail:
    if (f)
        fclose(f);
    free(line);
    config_free(cfg);
    return NULL;
}

void config_free(config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->keys[i]);
        explicit_bzero(cfg->values[i], strlen(cfg->values[i]));
        free(cfg->values[i]);
    }
    free(cfg->keys);
    free(cfg->values);
    free(cfg);
}

const char *config_get(const config *cfg, const char *key)
{
    if (!cfg)
        return NULL;
    /* The last occurrence wins, as in postgresql.conf. */
    for (size_t i = cfg->n; i-- > 0;)
        if (strcmp(cfg->keys[i], key) == 0)
            return cfg->values[i];
    return NULL;
}

const char *config_resolve(const char *flag, const char *env, const config *cfg, const char *key)
{
    if (flag)
        return flag;
    if (env) {
        const char *v = getenv(env);
        if (v && *v)
            return v;
    }
    return key ? config_get(cfg, key) : NULL;
}

int config_parse_int(const char *what, const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return log_error("invalid value for %s: empty", what);
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end != '\0')
        return log_error("invalid value for %s: \"%s\" is not an integer", what, s);
    if (v < min || v > max)
        return log_error("invalid value for %s: %ld is outside %ld..%ld", what, v, min, max);
    *out = v;
    return 0;
}

int config_parse_duration(const char *what, const char *s, int64_t *seconds)
{
    char *end;
    long long v;
    int64_t mult = 1;

    if (!s || !*s)
        return log_error("invalid duration for %s: empty", what);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return log_error("invalid duration for %s: \"%s\"", what, s);
    if (*end) {
        switch (*end) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default:
            return log_error("invalid duration for %s: \"%s\" (use s, m, h, d or w)", what, s);
        }
        if (end[1] != '\0')
            return log_error("invalid duration for %s: \"%s\" (use s, m, h, d or w)", what, s);
    }
    if (v > INT64_MAX / mult)
        return log_error("invalid duration for %s: \"%s\" is too large", what, s);
    *seconds = (int64_t)v * mult;
    return 0;
}
