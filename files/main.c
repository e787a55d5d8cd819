/*
 * main.c -- ragsafe-files: encrypted, deduplicated snapshots of config files and logs.
 *
 *   ragsafe-files snapshot --repo R --cipher-key-file K [--label L] [--base DIR] PATH...
 *   ragsafe-files restore LABEL --repo R --cipher-key-file K --target DIR [--force]
 *                         [--same-owner | --no-same-owner]
 *   ragsafe-files list | verify [LABEL] | expire --keep-last N [--dry-run]
 *   ragsafe-files keygen FILE
 *
 * Exit status: 0 ok; 1 failure or not found; 2 usage or configuration (a key file
 * readable by others is refused here); 3 integrity (a wrong key, a tampered or
 * missing object).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "files.h"
#include "log.h"
#include "repo.h"
#include "tree.h"

enum {
    O_LABEL = 256, O_BASE, O_TARGET, O_FORCE, O_KEEP_LAST, O_DRY,
    O_JSON, O_LABEL_PREFIX, O_PREFIX, O_SAME_OWNER, O_NO_SAME_OWNER,
};

static const struct option fl_longopts[] = {
    /* the older name of --cipher-key-file, kept as an alias */
    {"key-file", required_argument, NULL, REPO_OPT_CIPHER_KEY},
    {"same-owner", no_argument, NULL, O_SAME_OWNER},
    {"no-same-owner", no_argument, NULL, O_NO_SAME_OWNER},
    {"label", required_argument, NULL, O_LABEL},
    {"label-prefix", required_argument, NULL, O_LABEL_PREFIX},
    {"prefix", required_argument, NULL, O_PREFIX},
    {"base", required_argument, NULL, O_BASE},
    {"target", required_argument, NULL, O_TARGET},
    {"force", no_argument, NULL, O_FORCE},
    {"keep-last", required_argument, NULL, O_KEEP_LAST},
    {"dry-run", no_argument, NULL, O_DRY},
    {"json", no_argument, NULL, O_JSON},
    CLI_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

static void fl_usage(FILE *f)
{
    fprintf(f,
"Usage: ragsafe-files snapshot [--label L] [--base DIR] [OPTION]... PATH...\n"
"  or:  ragsafe-files restore LABEL --target DIR [--force] [OPTION]...\n"
"  or:  ragsafe-files list [OPTION]...\n"
"  or:  ragsafe-files verify [LABEL] [OPTION]...\n"
"  or:  ragsafe-files expire --keep-last N [--prefix P] [--dry-run] [OPTION]...\n"
"  or:  ragsafe-files keygen FILE\n"
"Encrypted (AES-256-GCM), deduplicated snapshots of config files and log directories.\n"
"\n"
"keygen writes a new key file (mode 0600, never replaced). Objects and manifests are\n"
"sealed with the key; object names are keyed hashes, so the repository reveals neither\n"
"contents nor file names.\n"
"\n"
"Snapshot options:\n"
"      --label LABEL          snapshot label (default: UTC time, 20261126T010000Z)\n"
"      --label-prefix P       default label P + UTC time (config-20261126T010000Z)\n"
"      --base DIR             PATHs are relative to DIR and stored relative to it\n"
"                             (default: .)\n"
"\n"
"Restore options:\n"
"      --target DIR           restore under DIR, with the stored relative paths, modes\n"
"                             (never set-user/group-ID bits) and times; DIR must be\n"
"                             empty or absent and no live process may work in it\n"
"      --force                restore into a non-empty DIR: entries the snapshot replaces\n"
"                             are moved aside to DIR/" CLI_ASIDE_TAG "TIME/\n"
"      --same-owner           give entries their recorded owners (as root); default only\n"
"                             when the snapshot's top-level entries were owned by DIR's\n"
"                             owner\n"
"      --no-same-owner        entries belong to the user restoring\n"
"\n"
"Expire options:\n"
"      --keep-last N          keep the N newest snapshots, remove unreferenced objects\n"
"      --prefix P             only snapshots whose label starts with P count and go\n"
"      --dry-run              only say what would be removed\n"
"\n"
"Options:\n"
"      --json                 machine-readable output on stdout\n");
    cli_help_tail(f,
                  "The key (required) defaults to $RAGSAFE_FILES_KEY, then \"files-key-file\" in the\n"
                  "config; --key-file is its older name. It must be mode 0600 or stricter.\n"
                  CLI_S3_NOTE,
                  "Exit status: 0 ok, 1 failure, 2 usage or configuration, 3 integrity failure (wrong\n"
                  "key, tampered or missing object).\n",
                  "Config and logs: ragsafe-files");
}

/* fl_exit -- exit status of a subcommand's result */
static int fl_exit(int r)
{
    if (r == 0)
        return EXIT_OK;
    if (r == RS_MISMATCH)
        return EXIT_INTEGRITY;
    return EXIT_FAIL;
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {"ragsafe-files", fl_usage, EXIT_USAGE};
    const char *cmd, *label = NULL;
    const char *label_prefix = NULL, *prefix = NULL;
    char labelbuf[FILES_LABEL_MAX + 40];
    const char *base = NULL, *target = NULL, *keep_arg = NULL, *repo, *keyfile;
    int force = 0, dry_run = 0, json = 0, c, r, status = EXIT_USAGE;
    int same_owner = -1;
    long keep_last = 0;
    config *cfg = NULL;
    files_ctx x = {NULL, NULL, NULL, 0};
    storage_lock *lk = NULL;
    char **args;
    int nargs;
    cli cl;

    cli_init(&cl, &spec, argv[0]);
    cmd = argc >= 2 && argv[1][0] != '-' ? argv[1] : NULL;
    if (cmd) {
        if (strcmp(cmd, "snapshot") != 0 && strcmp(cmd, "restore") != 0 &&
            strcmp(cmd, "list") != 0 && strcmp(cmd, "verify") != 0 &&
            strcmp(cmd, "expire") != 0 && strcmp(cmd, "keygen") != 0)
            return cli_usage_error(&cl, "unknown subcommand \"%s\"", cmd);
        argc--;
        argv++;
    }
    while ((c = cli_getopt(&cl, argc, argv, "", fl_longopts)) != -1) {
        if (!cmd && c != CLI_EXIT)
            return cli_usage_error(&cl, "the subcommand comes first: ragsafe-files SUBCOMMAND [OPTION]...");
        switch (c) {
        case O_LABEL: label = optarg; break;
        case O_LABEL_PREFIX: label_prefix = optarg; break;
        case O_PREFIX: prefix = optarg; break;
        case O_BASE: base = optarg; break;
        case O_TARGET: target = optarg; break;
        case O_FORCE: force = 1; break;
        case O_SAME_OWNER: same_owner = 1; break;
        case O_NO_SAME_OWNER: same_owner = 0; break;
        case O_KEEP_LAST: keep_arg = optarg; break;
        case O_DRY: dry_run = 1; break;
        case O_JSON: json = 1; break;
        default: return cl.status;
        }
    }
    if (!cmd)
        return cli_usage_error(&cl, "no subcommand given");
    args = argv + optind;
    nargs = argc - optind;

    if (strcmp(cmd, "keygen") == 0) {
        if (nargs != 1) {
            log_error("keygen takes one FILE");
            return EXIT_USAGE;
        }
        return files_keygen(args[0]) == 0 ? EXIT_OK : EXIT_FAIL;
    }
    /* option / argument checks per subcommand */
    if (strcmp(cmd, "snapshot") == 0 && nargs < 1) {
        log_error("snapshot needs at least one PATH");
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "restore") == 0 && (nargs != 1 || !target)) {
        log_error("restore needs one LABEL and --target DIR");
        return EXIT_USAGE;
    }
    if ((strcmp(cmd, "list") == 0 || strcmp(cmd, "expire") == 0) && nargs != 0) {
        log_error("%s takes no arguments", cmd);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "verify") == 0 && nargs > 1) {
        log_error("verify takes at most one LABEL");
        return EXIT_USAGE;
    }
    if ((label || base || label_prefix) && strcmp(cmd, "snapshot") != 0) {
        log_error("--label, --label-prefix and --base are for snapshot");
        return EXIT_USAGE;
    }
    if (label && label_prefix) {
        log_error("give --label or --label-prefix, not both");
        return EXIT_USAGE;
    }
    if (prefix && strcmp(cmd, "expire") != 0) {
        log_error("--prefix is for expire");
        return EXIT_USAGE;
    }
    if (label_prefix) {
        time_t now = time(NULL);
        struct tm tm;
        char ts[32];
        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
        if (strlen(label_prefix) + strlen(ts) > FILES_LABEL_MAX) {
            log_error("--label-prefix too long");
            return EXIT_USAGE;
        }
        snprintf(labelbuf, sizeof(labelbuf), "%s%s", label_prefix, ts);
        label = labelbuf;
    }
    if ((target || force || same_owner != -1) && strcmp(cmd, "restore") != 0) {
        log_error("--target, --force and --same-owner are for restore");
        return EXIT_USAGE;
    }
    if ((keep_arg || dry_run) && strcmp(cmd, "expire") != 0) {
        log_error("--keep-last and --dry-run are for expire");
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "expire") == 0) {
        if (!keep_arg) {
            log_error("expire needs --keep-last N");
            return EXIT_USAGE;
        }
        if (config_parse_int("--keep-last", keep_arg, 1, 1000000, &keep_last) != 0)
            return EXIT_USAGE;
    }
    if (label && !tree_label_valid(label, FILES_LABEL_MAX)) {
        log_error("invalid label \"%s\": use letters, digits, '.', '_' and '-'", label);
        return EXIT_USAGE;
    }
    if (!(cfg = cli_config(&cl)))
        return EXIT_USAGE;
    if (!(repo = cli_repo_location(&cl)))
        goto out;
    keyfile = config_resolve(cl.rc.key_file, "RAGSAFE_FILES_KEY", cfg, "files-key-file");
    if (!keyfile) {
        log_error("no key file given");
        log_hint("use --cipher-key-file FILE, RAGSAFE_FILES_KEY or \"files-key-file = FILE\" in the config file");
        goto out;
    }
    if (files_key_load(keyfile, &x.k) != 0)
        goto out; /* EXIT_USAGE: configuration */
    status = EXIT_FAIL;
    /* the repository path is made absolute here, before --base changes directory */
    x.st = storage_open(repo, NULL, strcmp(cmd, "snapshot") == 0);
    if (!x.st)
        goto out;
    storage_set_cipher(x.st, x.k); /* everything ragsafe-files stores is sealed */
    /* sealed with the repository's key, our objects move during its rotation */
    if (repo_rekey_refuse(x.st, x.k, "ragsafe-files") != 0)
        goto out;
    x.c = cas_new(x.st, FILES_OBJECTS, NULL);
    if (!x.c)
        goto out;
    x.json = json;
    /* readers hold the repository lock shared (snapshots do too): expire's sweep, which
     * takes it exclusive, waits for them and never deletes what they read */
    if ((strcmp(cmd, "restore") == 0 || strcmp(cmd, "verify") == 0) &&
        storage_lock_take(x.st, FILES_LOCK, 0, 1, &lk) != 0)
        goto out;
    if (strcmp(cmd, "snapshot") == 0) {
        if (base && chdir(base) != 0) {
            log_errno("could not change to base directory \"%s\"", base);
            goto out;
        }
        r = files_snapshot(&x, label, args, (size_t)nargs);
    } else if (strcmp(cmd, "restore") == 0) {
        r = files_restore(&x, args[0], target, force, same_owner);
    } else if (strcmp(cmd, "list") == 0) {
        r = files_list(&x);
    } else if (strcmp(cmd, "verify") == 0) {
        r = files_verify(&x, nargs ? args[0] : NULL);
    } else {
        r = files_expire(&x, prefix, keep_last, dry_run);
    }
    status = fl_exit(r);
out:
    storage_lock_release(lk);
    cas_free(x.c);
    storage_free(x.st);
    cipher_key_free(x.k);
    cli_release(&cl);
    return status;
}
