/*
 * cli.c -- the common options, --help's tail, usage errors, move-aside names; see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "log.h"
#include "storage_s3.h"

void cli_init(cli *c, const cli_spec *spec, const char *argv0)
{
    memset(c, 0, sizeof(*c));
    c->spec = spec;
    log_init(argv0);
    opterr = 0;
}

/*
 * bad_option -- the text of the option getopt_long just refused, into out: a long
 * option as written, or "-x". glibc leaves optind past a long option,
 * and optopt 0 for an unknown one or the option's value for one missing its argument;
 * a short option's letter is optopt, wherever optind stands in its cluster.
 */
static void bad_option(char **argv, const struct option *longopts, char *out, size_t outlen)
{
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;

    if (arg && strncmp(arg, "--", 2) == 0 && arg[2]) {
        size_t len = strcspn(arg + 2, "=");
        int match = optopt == 0;
        for (const struct option *o = longopts; !match && o->name; o++)
            match = o->val == optopt && strncmp(o->name, arg + 2, len) == 0;
        if (match) {
            snprintf(out, outlen, "%s", arg);
            return;
        }
    }
    snprintf(out, outlen, "-%c", optopt);
}

int cli_getopt(cli *c, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    /* ':' first: a missing argument returns ':', not '?' */
    char opts[64], what[128];
    int opt;

    if (snprintf(opts, sizeof(opts), ":%svhV", shortopts ? shortopts : "") >= (int)sizeof(opts))
        abort(); /* a tool's constant, far shorter */
    for (;;) {
        opt = getopt_long(argc, argv, opts, longopts, NULL);
        if (opt == -1)
            log_set_level(LOG_LEVEL_NOTICE + c->verbose);
        if (repo_cli_option(&c->rc, opt, optarg))
            continue;
        switch (opt) {
        case CLI_OPT_CONFIG:
            c->config_path = optarg;
            continue;
        case 'v':
            c->verbose++;
            continue;
        case 'h':
            c->spec->usage(stdout);
            c->status = EXIT_OK;
            return CLI_EXIT;
        case 'V':
            printf("%s (ragsafe) %s\n", c->spec->name, RAGSAFE_VERSION);
            c->status = EXIT_OK;
            return CLI_EXIT;
        case '?':
            bad_option(argv, longopts, what, sizeof(what));
            c->status = cli_usage_error(c, "unrecognized option \"%s\"", what);
            return CLI_EXIT;
        case ':':
            bad_option(argv, longopts, what, sizeof(what));
            c->status = cli_usage_error(c, "option \"%s\" requires an argument", what);
            return CLI_EXIT;
        default:
            return opt;
        }
    }
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_error("%s", msg);
    log_hint("try \"%s --help\"", c->spec->name);
    return c->spec->usage_status;
}

config *cli_config(cli *c)
{
    log_set_level(LOG_LEVEL_NOTICE + c->verbose);
    if (!c->cfg)
        c->cfg = config_load(c->config_path);
    return c->cfg;
}

const char *cli_repo(cli *c)
{
    return repo_cli_setup(&c->rc, c->cfg);
}

const char *cli_repo_location(cli *c)
{
    if (s3_config_apply(c->cfg, c->rc.s3_endpoint, c->rc.s3_region, c->rc.s3_uri_style) != 0)
        return NULL;
    return repo_location(c->rc.repo, c->cfg);
}

void cli_release(cli *c)
{
    config_free(c->cfg);
    c->cfg = NULL;
    repo_cli_release();
}

void cli_help_tail(FILE *out, const char *notes, const char *exit_status, const char *readme)
{
    fprintf(out,
            "  -v, --verbose              more messages (twice: debug)\n"
            "  -h, --help                 print this help and exit\n"
            "  -V, --version              print the version and exit\n"
            "\n"
            "Repository options:\n"
            REPO_OPTIONS_HELP
            "      --config FILE          config file (default: $RAGSAFE_CONFIG, then\n"
            "                             " CONFIG_DEFAULT_PATH ")\n"
            "%s%s"
            "\n"
            "%s"
            "\n"
            "See the README, section \"%s\".\n",
            notes ? "\n" : "", notes ? notes : "", exit_status, readme);
}

void cli_aside_stamp(time_t t, char out[CLI_STAMP_LEN])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, CLI_STAMP_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

int cli_aside_name(const char *dir, const char *stamp, int n, char *out, size_t outlen)
{
    int len = n <= 1 ? snprintf(out, outlen, "%s" CLI_ASIDE_TAG "%s", dir, stamp)
                     : snprintf(out, outlen, "%s" CLI_ASIDE_TAG "%s-%d", dir, stamp, n);

    if (len < 0 || (size_t)len >= outlen)
        return log_error("path too long: \"%s\"", dir);
    return 0;
}

int cli_aside_pick(const char *dir, char *out, size_t outlen)
{
    char stamp[CLI_STAMP_LEN];
    struct stat sb;

    cli_aside_stamp(time(NULL), stamp);
    for (int n = 1; n <= 1000; n++) {
        if (cli_aside_name(dir, stamp, n, out, outlen) != 0)
            return -1;
        if (lstat(out, &sb) != 0 && errno == ENOENT)
            return 0;
    }
    return log_error("could not move \"%s\" aside: \"%s\" and 999 names before it exist", dir, out);
}
