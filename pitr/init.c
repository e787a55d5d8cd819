/*
 * init.c -- ragsafe-pitr init: create a repository on purpose.
 *
 * No tool creates a repository's root (storage_open: a typo'd path must fail, not
 * start a new repository). The root comes from the DBA: install -d -o postgres -m 0750
 * DIR, or this command, which
 *   - posix: makes DIR (missing parents 0755, DIR itself 0750); run as root, DIR is
 *     given to --owner USER (default postgres), the user archive_command runs as;
 *     S3: a prefix needs no creating, the bucket is listed once to check access;
 *   - with --pgdata DIR (global/pg_control) or -d CONNINFO (IDENTIFY_SYSTEM) writes
 *     repo.json with the cluster's identity; without, the first segment archived
 *     writes it;
 *   - with --cipher-key-file makes the repository encrypted (repo.json's encryption
 *     record, or cipher.json until repo.json is written).
 * Everything that can fail without side effects (the identity, the key) is checked
 * before anything is created. An existing repository of the same cluster (and key) is
 * left as it is ("already initialised", exit 0); one of another cluster, or with
 * another key, is refused (exit 3).
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cipher.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "pgconn.h"
#include "pitr.h"
#include "walname.h"

/* identity_from_server -- repo.json's fields from a server: IDENTIFY_SYSTEM on a
 * replication connection (the one ragsafe-basebackup makes anyway) and SHOW
 * wal_segment_size. */
static int identity_from_server(const char *conninfo, repo_info *want)
{
    PGconn *conn = pgconn_connect(conninfo, PGCONN_REPLICATION);
    pgconn_identity id;
    uint64_t bytes = 0;
    char *v = NULL;
    int ret = -1;

    if (!conn)
        return -1;
    if (pgconn_identify(conn, &id) != 0 || pgconn_show(conn, "wal_segment_size", &v) != 0)
        goto out;
    if (pgconn_parse_size(v, &bytes) != 0 || !walname_seg_size_valid(bytes)) {
        log_error("could not use wal_segment_size \"%s\" of the server", v);
        goto out;
    }
    memset(want, 0, sizeof(*want));
    want->format = REPO_FORMAT;
    want->sysid = id.sysid;
    want->seg_size = (uint32_t)bytes;
    want->wal_magic = WAL_MAGIC_PG15;
    want->pg_version = (uint32_t)PQserverVersion(conn);
    ret = 0;
out:
    free(v);
    pgconn_close(conn);
    return ret;
}

/* make_root -- mkdir the posix root (parents 0755, the root 0750), given to uid:gid
 * when those are not (uid_t)-1. *made: 1 when it did not exist. */
static int make_root(const char *root, uid_t uid, gid_t gid, int *made)
{
    char *parent = strdup(root), *slash;
    struct stat sb;
    int ret = -1;

    *made = 0;
    if (!parent)
        return log_error("out of memory");
    if (stat(root, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            log_error("repository \"%s\" exists and is not a directory", root);
        else
            ret = 0;
        goto out;
    }
    if (errno != ENOENT) {
        log_errno("could not stat \"%s\"", root);
        goto out;
    }
    slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (durable_mkdirs(parent, 0755) != 0)
            goto out;
    }
    if (mkdir(root, 0750) != 0) {
        log_errno("could not create directory \"%s\"", root);
        goto out;
    }
    *made = 1;
    if (uid != (uid_t)-1 && chown(root, uid, gid) != 0) {
        log_errno("could not change the owner of \"%s\"", root);
        goto out;
    }
    /* mkdir applies the umask: the mode is the repository's, whatever it is */
    if (chmod(root, 0750) != 0) {
        log_errno("could not set the mode of \"%s\"", root);
        goto out;
    }
    ret = durable_fsync_path(parent);
out:
    free(parent);
    return ret;
}

int cmd_init(const pitr_opts *o)
{
    repo_info want;
    repo *r = NULL;
    struct passwd *pw;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    int have_want = 0, s3 = strncmp(o->repo, "s3://", 5) == 0, made = 0, had_info = 0, had_rec = 0;
    int ret = EXIT_FAIL, rr, why = -1;
    char *buf = NULL;
    size_t len;

    memset(&want, 0, sizeof(want));
    if (o->pgdata && o->conninfo) {
        log_error("give --pgdata or -d, not both");
        return EXIT_USAGE;
    }
    if (!s3 && o->repo[0] != '/') {
        /* storage_open says why (and refuses): nothing is made in the cwd */
        r = repo_open(o->repo, NULL, 1);
        repo_free(r);
        return EXIT_FAIL;
    }
    /* 1. what can fail without side effects: the cluster's identity */
    if (o->pgdata) {
        rr = repo_info_from_pg_control(o->pgdata, &want);
        if (rr == RS_NOT_FOUND) {
            log_error("\"%s\" is not a PostgreSQL data directory: it has no global/pg_control",
                      o->pgdata);
            log_hint("give the data directory of the cluster that archives into this repository");
            return EXIT_FAIL;
        }
        if (rr != 0)
            return EXIT_FAIL;
        have_want = 1;
    } else if (o->conninfo) {
        if (identity_from_server(o->conninfo, &want) != 0)
            return EXIT_FAIL;
        have_want = 1;
    }
    /* 2. the root */
    if (!s3) {
        if (geteuid() == 0) {
            const char *user = o->owner ? o->owner : "postgres";
            pw = getpwnam(user);
            if (!pw) {
                log_error("no user \"%s\" to own the repository", user);
                log_hint("name the user PostgreSQL runs as: --owner USER");
                return EXIT_FAIL;
            }
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        } else if (o->owner) {
            log_error("--owner needs root");
            return EXIT_USAGE;
        }
        if (make_root(o->repo, uid, gid, &made) != 0)
            return EXIT_FAIL;
    }
    /* 3. the record: repo.json, or cipher.json for an encrypted one without it */
    r = repo_open(o->repo, NULL, 1);
    if (!r)
        goto out;
    rr = storage_get(r->st, REPO_INFO_KEY, 1 << 20, &buf, &len);
    free(buf);
    buf = NULL;
    if (rr != 0 && rr != RS_NOT_FOUND)
        goto out;
    had_info = rr == 0;
    rr = storage_stat(r->st, CIPHER_INFO_KEY, NULL, NULL);
    if (rr < 0)
        goto out;
    had_rec = rr == 0;
    if (s3 && !had_info && storage_any(r->st, "") < 0)
        goto out; /* the bucket's access, checked once */
    repo_free(r);
    r = repo_open_checked(o->repo, NULL, 1, &why);
    if (!r) {
        ret = why == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
        goto out;
    }
    if (have_want) {
        rr = repo_pin(r, &want);
        if (rr != 0) {
            ret = rr == RS_MISMATCH ? EXIT_INTEGRITY : EXIT_FAIL;
            goto out;
        }
    }
    if (had_info) {
        log_notice("repository \"%s\" is already initialised (database system %" PRIu64 ")%s",
                   storage_location(r->st), r->info.sysid,
                   r->info.encrypted ? ", encrypted" : "");
    } else if (!have_want && !made && (had_rec || !storage_cipher(r->st))) {
        log_notice("repository \"%s\" is already initialised%s; the first WAL segment "
                   "archived into it records its cluster", storage_location(r->st),
                   had_rec ? " (encrypted)" : "");
    } else if (have_want) {
        log_notice("initialised repository \"%s\" for database system %" PRIu64 "%s",
                   storage_location(r->st), want.sysid, storage_cipher(r->st) ? ", encrypted" : "");
    } else {
        log_notice("%s repository \"%s\"%s; the first WAL segment archived into it records "
                   "its cluster", made ? "created" : "initialised", storage_location(r->st),
                   storage_cipher(r->st) ? ", encrypted" : "");
    }
    ret = EXIT_OK;
out:
    repo_free(r);
    if (ret != EXIT_OK && made)
        (void)rmdir(o->repo); /* ours, and left empty when nothing got in */
    return ret;
}
