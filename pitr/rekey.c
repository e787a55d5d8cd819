/*
 * rekey.c -- key rotation: re-seal the repository's encryption record and every object
 * under a new key (ragsafe-pitr rekey --cipher-key-file OLD --new-cipher-key-file NEW).
 *
 * Steps, each safe to interrupt (kill -9) and resumed by running the same command:
 *  1. Under the exclusive "backup", "milvus" and "files" locks (no base backup, expire
 *     or snapshot meanwhile), the record (repo.json "encryption", cipher.json) is
 *     rewritten durably as rotating: old key check, new key check, and the old key
 *     sealed under the new one (repo.h). From then on a tool given the new key reads
 *     objects sealed under either key; one given the old key keeps working.
 *  2. Every object below the root sealed under the old key is read whole and
 *     authenticated with it, written again sealed under the new key (a temp object
 *     renamed over it on posix, one PUT on S3: never deleted first), so at every moment
 *     each object opens with one of the two keys. Objects that already open with the
 *     new key are skipped: that is what makes a rerun resume.
 *  3. Under the exclusive "rekey" lock (tools holding the old key take it shared), the
 *     record drops the old key; then a last pass re-seals what archivers holding the
 *     old key wrote meanwhile. A rerun after the record dropped the old key repeats
 *     this pass only.
 * Content-addressed objects (Milvus, files snapshots) are addressed by a keyed digest
 * that changes with the key: not supported yet, such a repository is refused.
 *
 * Test hook: RAGSAFE_TEST_REKEY_KILL_AFTER=N makes the process kill itself (SIGKILL)
 * after re-sealing N objects, for the crash tests.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cipher.h"
#include "common.h"
#include "log.h"
#include "pitr.h"
#include "repo.h"

typedef struct keylist {
    char **k;
    size_t n, cap;
} keylist;

static int collect(void *arg, const char *key, int64_t size, int64_t mtime)
{
    keylist *l = arg;
    (void)size;
    (void)mtime;
    if (!strchr(key, '/') || strncmp(key, "locks/", 6) == 0)
        return 0; /* root objects stay plain; lock files are not sealed objects */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        char **p = realloc(l->k, cap * sizeof(*p));
        if (!p)
            return log_error("out of memory");
        l->k = p;
        l->cap = cap;
    }
    if (!(l->k[l->n] = strdup(key)))
        return log_error("out of memory");
    l->n++;
    return 0;
}

static void keylist_free(keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->k[i]);
    free(l->k);
    memset(l, 0, sizeof(*l));
}

/* reseal -- read key whole under the old key (authenticated frame by frame, the end
 * checked at the last read), write it sealed under the new one, commit over it. */
static int reseal(storage *st, const char *key)
{
    storage_read *rd = NULL;
    storage_write *w = NULL;
    const void *buf;
    ssize_t n;
    int ret = storage_read_open(st, key, &rd);

    if (ret != 0)
        return ret == RS_NOT_FOUND ? RS_NOT_FOUND : -1;
    ret = -1;
    if (!(w = storage_write_open(st, key)))
        goto out;
    while ((n = storage_read_data(rd, &buf)) > 0)
        if (storage_write_data(w, buf, (size_t)n) != 0)
            goto out;
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    ret = storage_write_commit(w, 0) == 0 ? 0 : -1;
out:
    storage_write_free(w);
    storage_read_free(rd);
    return ret;
}

static long kill_after = -1;

/* pass -- re-seal every object still under the old key. 0 | RS_MISMATCH (an object
 * neither key opens; the others are still done) | -1. */
static int pass(storage *st, size_t *resealed, size_t *seen)
{
    keylist l = {0};
    int ret = storage_list(st, "", collect, &l), bad = 0;

    if (ret != 0) {
        ret = -1;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        int by = storage_sealed_by(st, l.k[i]);
        (*seen)++;
        if (by == 1 || by == RS_NOT_FOUND)
            continue;
        if (by == 0) {
            log_error("\"%s/%s\" opens with neither key: damaged, or sealed under a third key",
                      storage_location(st), l.k[i]);
            bad = 1;
            continue;
        }
        if (by < 0) {
            ret = -1;
            goto out;
        }
        ret = reseal(st, l.k[i]);
        if (ret == RS_NOT_FOUND)
            continue; /* gone meanwhile */
        if (ret == RS_MISMATCH) {
            bad = 1;
            continue;
        }
        if (ret != 0)
            goto out;
        log_debug("re-sealed \"%s\"", l.k[i]);
        (*resealed)++;
        if (kill_after >= 0 && (long)*resealed >= kill_after) {
            log_notice("RAGSAFE_TEST_REKEY_KILL_AFTER: killing myself after %zu objects", *resealed);
            raise(SIGKILL);
        }
    }
    ret = bad ? RS_MISMATCH : 0;
out:
    keylist_free(&l);
    return ret;
}

/* owner_check -- a local repository is re-sealed by its owner only: objects written
 * by another user (root) would be unreadable to the archiver running as postgres. */
static int owner_check(storage *st)
{
    const char *loc = storage_location(st);
    struct stat sb;

    if (strncmp(loc, "s3://", 5) == 0 || stat(loc, &sb) != 0 || sb.st_uid == geteuid())
        return 0;
    log_error("repository \"%s\" belongs to uid %u: run rekey as its owner", loc, (unsigned)sb.st_uid);
    log_hint("e.g. runuser -u postgres -- ragsafe-pitr rekey ... (re-sealed objects are written as "
             "the user running it)");
    return -1;
}

static int lock_all(storage *st, storage_lock *lk[3])
{
    static const char *const names[3] = {"backup", "milvus", "files"};

    for (int i = 0; i < 3; i++) {
        int r = storage_lock_take(st, names[i], 1, 0, &lk[i]);
        if (r == RS_EXISTS) {
            log_error("the repository is locked (\"%s\"): a base backup, expire or snapshot is running",
                      names[i]);
            log_hint("run rekey again when it has finished");
        }
        if (r != 0)
            return -1;
    }
    return 0;
}

int cmd_rekey(const pitr_opts *o)
{
    cipher_key *newk = NULL;
    const cipher_key *oldk;
    repo *r = NULL;
    storage_lock *lk[3] = {NULL, NULL, NULL}, *rk = NULL;
    size_t resealed = 0, seen = 0;
    int ret = EXIT_FAIL, state = 0, rr;
    const char *env = getenv("RAGSAFE_TEST_REKEY_KILL_AFTER");

    if (env && *env)
        kill_after = strtol(env, NULL, 10);
    if (!o->new_key_file) {
        log_error("rekey needs --new-cipher-key-file FILE");
        log_hint("make one with: openssl rand -hex 32 > FILE; chmod 600 FILE");
        return EXIT_USAGE;
    }
    if (cipher_key_load(o->new_key_file, &newk) != 0)
        return EXIT_USAGE;
    r = repo_open(o->repo, NULL, 0);
    if (!r)
        goto out;
    oldk = storage_cipher(r->st);
    if (!oldk) {
        log_error("rekey needs the repository's current key");
        log_hint("give it with --cipher-key-file FILE (or RAGSAFE_CIPHER_KEY_FILE)");
        ret = EXIT_USAGE;
        goto out;
    }
    if (owner_check(r->st) != 0) {
        ret = EXIT_USAGE;
        goto out;
    }
    if (lock_all(r->st, lk) != 0)
        goto out;
    rr = repo_rekey_state(r, oldk, newk, &state);
    if (rr == RS_NOT_FOUND) {
        log_error("repository \"%s\" is not encrypted: nothing to re-key", storage_location(r->st));
        goto out;
    }
    if (rr != 0) {
        ret = pitr_status(rr);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        static const char *const cas[2] = {"milvus/", "files/"};
        rr = storage_any(r->st, cas[i]);
        if (rr < 0)
            goto out;
        if (rr > 0) {
            log_error("repository \"%s\" holds %s snapshots: rekey does not support them yet",
                      storage_location(r->st), i ? "ragsafe-files" : "Milvus");
            log_detail("their objects are addressed by a digest keyed with the repository key");
            log_hint("keep the current key for this repository, or make a new repository with the new key");
            goto out;
        }
    }
    if (state == 0) {
        if (repo_rekey_mark(r, oldk, newk, 0) != 0)
            goto out;
        log_notice("rotation started: tools given either key keep working until it finishes");
    } else {
        log_notice("resuming the rotation (%s)", state == 1 ? "re-sealing objects" : "last pass");
    }
    storage_set_cipher(r->st, newk);
    storage_set_cipher_old(r->st, oldk);
    if (state == 1 || state == 0) {
        rr = pass(r->st, &resealed, &seen);
        if (rr != 0) {
            ret = pitr_status(rr);
            if (rr == RS_MISMATCH)
                log_hint("the rotation is not finished; restore or remove the objects named above, "
                         "then run rekey again");
            goto out;
        }
        /* no holder of the old key is writing once we have this */
        if (storage_lock_take(r->st, "rekey", 1, 1, &rk) != 0)
            goto out;
        rr = repo_rekey_mark(r, oldk, newk, 1);
        storage_lock_release(rk);
        rk = NULL;
        if (rr != 0)
            goto out;
    }
    seen = 0;
    rr = pass(r->st, &resealed, &seen);
    if (rr != 0) {
        ret = pitr_status(rr);
        goto out;
    }
    printf("rekey: done: %zu object%s re-sealed, %zu checked; \"%s\" opens with the new key only\n",
           resealed, PLURAL(resealed), seen, storage_location(r->st));
    ret = EXIT_OK;
out:
    storage_lock_release(rk);
    for (int i = 2; i >= 0; i--)
        storage_lock_release(lk[i]);
    repo_free(r);
    cipher_key_free(newk);
    return ret;
}
