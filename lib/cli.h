/*
 * cli.h -- what every tool's main() shares: the common options and their parsing, the
 * config file, the tail of --help, usage errors, and the name --force moves a
 * directory aside to.
 *
 * Every tool takes, parsed and merged with the config file alike (flag > environment >
 * config file, see config.h and repo.h):
 *     --repo LOCATION  --s3-endpoint URL  --s3-region REGION  --s3-uri-style STYLE
 *     --cipher-key-file FILE  --config FILE  -v/--verbose  -h/--help  -V/--version
 * -h prints the tool's help on stdout, -V "ragsafe-x (ragsafe) 0.1.0", both exit 0.
 * An unknown option, or one missing its argument, is reported as
 *     ragsafe-x: error: unrecognized option "--foo"
 *     ragsafe-x: hint: try "ragsafe-x --help"
 * (getopt's own message is suppressed) and exits with the tool's usage status: 2, or
 * 128 for ragsafe-restore (PostgreSQL must stop recovery, not take it for "not found").
 *
 * Calling sequence:
 *     static const cli_spec spec = {"ragsafe-x", usage, EXIT_USAGE};
 *     static const struct option longopts[] = {
 *         {"level", required_argument, NULL, 'l'},
 *         CLI_LONG_OPTIONS,
 *         {NULL, 0, NULL, 0},
 *     };
 *     cli c;
 *     cli_init(&c, &spec, argv[0]);
 *     while ((opt = cli_getopt(&c, argc, argv, "l:", longopts)) != -1) {
 *         switch (opt) {
 *         case 'l': ...; break;
 *         default: status = c.status; goto out;   // CLI_EXIT: help, version, usage error
 *         }
 *     }
 *     if (!cli_config(&c)) goto out;       // loads the config file (c.cfg), sets -v's level
 *     loc = cli_repo(&c);                   // S3 settings, cipher key, location; NULL reported
 *     ...
 *     cli_release(&c);                      // config freed, key wiped; safe to call twice
 *
 * The tool's usage() prints "Usage: ..." lines, one description line, its own sections
 * and its "Options:" lines, then calls cli_help_tail(), which ends every help alike:
 * -v/-h/-V, "Repository options:" (the same text in every tool), the exit status and
 * where the README documents the tool.
 */
#ifndef RAGSAFE_CLI_H
#define RAGSAFE_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "repo.h"

typedef struct cli_spec {
    const char *name;          /* "ragsafe-archive": messages, --version */
    void (*usage)(FILE *out);  /* the whole --help */
    int usage_status;          /* exit status of a usage error */
} cli_spec;

typedef struct cli {
    const cli_spec *spec;
    repo_cli rc;               /* the repository options as given */
    const char *config_path;   /* --config, or NULL */
    int verbose;               /* -v count */
    int status;                /* after CLI_EXIT: the exit status */
    config *cfg;               /* cli_config's; freed by cli_release */
} cli;

enum {
    CLI_EXIT = -2,             /* cli_getopt: stop and exit with c.status */
    CLI_OPT_CONFIG = 0x1180,
};

#define CLI_LONG_OPTIONS                                       \
    REPO_LONG_OPTIONS,                                         \
    {"config", required_argument, NULL, CLI_OPT_CONFIG},       \
    {"verbose", no_argument, NULL, 'v'},                       \
    {"help", no_argument, NULL, 'h'},                          \
    {"version", no_argument, NULL, 'V'}

/* log_init(argv0), c zeroed, getopt's own messages off. */
void cli_init(cli *c, const cli_spec *spec, const char *argv0);

/*
 * cli_getopt -- getopt_long over argv with the tool's shortopts (without the common
 * "vhV") and longopts (which hold CLI_LONG_OPTIONS). The common options are taken here;
 * returns the next tool option (optarg set), -1 at the end of the options (the log
 * level then set from -v), or CLI_EXIT
 * after --help or --version (c->status 0) or a usage error (reported, c->status the
 * tool's usage status).
 */
int cli_getopt(cli *c, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* cli_usage_error -- report a usage error (fmt as log_error) with the --help hint and
 * return the tool's usage status, for main() to exit with. */
int cli_usage_error(const cli *c, const char *fmt, ...) LOG_PRINTF(2, 3);

/* cli_config -- set the log level from -v, load the config file (--config, else
 * $RAGSAFE_CONFIG, else the default) into c->cfg. NULL: reported (a usage error). */
config *cli_config(cli *c);

/* cli_repo -- after cli_config: the S3 settings and the cipher key applied to every
 * storage this process opens (repo_cli_setup), and the repository location. NULL:
 * reported (a usage error). */
const char *cli_repo(cli *c);

/* cli_repo_location -- cli_repo without the key, for a tool whose key means something
 * else (ragsafe-files). NULL: reported. */
const char *cli_repo_location(cli *c);

/* cli_release -- free the config, wipe the key. */
void cli_release(cli *c);

/* cli_help_tail -- the end of every --help, in this order: -v/-h/-V (closing the
 * "Options:" section), "Repository options:" with the shared text, notes (a paragraph
 * of tool-specific lines, NULL for none), the exit status text, the README section. */
void cli_help_tail(FILE *out, const char *notes, const char *exit_status, const char *readme);

/* Where the repository key comes from when --cipher-key-file is not given (a note for
 * cli_help_tail of the tools that use the repository key). */
#define CLI_KEY_NOTE \
    "The key defaults to $RAGSAFE_CIPHER_KEY_FILE, then \"cipher-key-file\" in the config.\n"
#define CLI_S3_NOTE                                                                 \
    "S3 credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or the\n" \
    "config file.\n"

/*
 * The name --force moves an existing directory to, in every tool:
 *     DIR.ragsafe-old-STAMP, then DIR.ragsafe-old-STAMP-2, -3, ... while that exists
 * STAMP is the UTC time of the move, 20261126T021500Z. cli_aside_stamp fills out
 * (CLI_STAMP_LEN bytes); cli_aside_name formats try n (1: no suffix); cli_aside_pick
 * returns the first free name. 0 | -1 reported (the path too long, or 1000 taken).
 */
#define CLI_ASIDE_TAG ".ragsafe-old-"
#define CLI_STAMP_LEN 20
void cli_aside_stamp(time_t t, char out[CLI_STAMP_LEN]);
int cli_aside_name(const char *dir, const char *stamp, int n, char *out, size_t outlen);
int cli_aside_pick(const char *dir, char *out, size_t outlen);

#endif
