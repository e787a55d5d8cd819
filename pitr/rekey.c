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
 * Content-addressed objects (milvus/objects/, files/objects/, lib/cas.h) are addressed
 * by a keyed digest, HMAC(key, SHA-256 of the content): a new key means a new address.
 * In step 2 each one sealed under the old key is moved: its content is written sealed
 * under the new key at HMAC(new key, digest) (durable, committed), and only then is the
 * old-address object removed. The key that seals an object tells its state, so no
 * journal is needed: under the old key it sits at its old address (to move; when the
 * new-address copy already opens with the new key, a killed run had written it and
 * only the removal is left), under the new key at its new address (done).
 * Milvus manifests name contents by plain digest and need only re-sealing. ragsafe-files
 * manifests (files/snapshots/) record addresses: each one still under the old key is
 * rewritten, sealed under the new key, once the new-address copy of every object it
 * names is committed; files/objects/ is moved only when no manifest under the old key
 * is left (it still needs the old addresses). ragsafe-files has its own key
 * (--cipher-key-file of ragsafe-files): when files/ opens with neither key it was
 * sealed with another key than the repository's and is left as it is.
 * ragsafe-milvus and ragsafe-files refuse to work while the record says rotating (they
 * cannot find a content under both addresses, and a sweep would delete one side): the
 * exclusive "milvus" and "files" locks keep them out while rekey runs, the record
 * after a killed run, until rekey has finished.
 *
 * Test hook: RAGSAFE_TEST_REKEY_KILL_AFTER=N makes the process kill itself (SIGKILL)
 * after re-sealing N objects, for the crash tests.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas.h"
#include "cipher.h"
#include "common.h"
#include "log.h"
#include "object.h"
#include "pitr.h"
#include "repo.h"

#define MV_OBJECTS "milvus/objects"
#define FL_OBJECTS "files/objects"
#define FL_SNAPSHOTS "files/snapshots/"
#define FL_MANIFEST_MAX (256u << 20)

typedef struct keylist {
    char **k;
    size_t n, cap;
} keylist;

static int keylist_add(keylist *l, const char *key)
{
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

static int has_prefix(const char *key, const char *prefix)
{
    return strncmp(key, prefix, strlen(prefix)) == 0;
}

/* One run: the storage (sealing with the new key, reading either), both keys, the two
 * content-addressed stores, and whether files/ is sealed under the repository's key. */
typedef struct rekey_run {
    storage *st;
    const cipher_key *oldk, *newk;
    cas *mv, *fl;
    int files;              /* 1: files/ is rotated with the rest; 0: its own key, left alone */
    size_t resealed, seen;
} rekey_run;

/* The keys of one pass, by what is done to them. */
typedef struct lists {
    const rekey_run *run;
    keylist plain;          /* re-sealed in place */
    keylist manifests;      /* ragsafe-files manifests: addresses rewritten */
    keylist objects;        /* content-addressed: moved to their new address */
} lists;

static int collect(void *arg, const char *key, int64_t size, int64_t mtime)
{
    lists *l = arg;
    (void)size;
    (void)mtime;
    if (!strchr(key, '/') || has_prefix(key, "locks/"))
        return 0; /* root objects stay plain; lock files are not sealed objects */
    if (has_prefix(key, "files/") && !l->run->files)
        return 0; /* sealed with ragsafe-files' own key */
    if (has_prefix(key, MV_OBJECTS "/") || has_prefix(key, FL_OBJECTS "/"))
        return keylist_add(&l->objects, key);
    if (has_prefix(key, FL_SNAPSHOTS))
        return keylist_add(&l->manifests, key);
    return keylist_add(&l->plain, key);
}

static long kill_after = -1;

/* bump -- one more object re-sealed (or moved); the crash tests' hook. */
static void bump(rekey_run *run)
{
    run->resealed++;
    if (kill_after >= 0 && (long)run->resealed >= kill_after) {
        log_notice("RAGSAFE_TEST_REKEY_KILL_AFTER: killing myself after %zu objects", run->resealed);
        raise(SIGKILL);
    }
}

/* reseal -- read src whole under the old key (authenticated frame by frame, the end
 * checked at the last read), write it sealed under the new one as dst (src itself,
 * or a content's new address), commit (durable). 0 | RS_NOT_FOUND | RS_MISMATCH |
 * RS_EXISTS (noreplace and dst exists) | -1. */
static int reseal(storage *st, const char *src, const char *dst, int noreplace)
{
    storage_read *rd = NULL;
    storage_write *w = NULL;
    const void *buf;
    ssize_t n;
    int ret = storage_read_open(st, src, &rd);

    if (ret != 0)
        return ret == RS_NOT_FOUND ? RS_NOT_FOUND : -1;
    ret = -1;
    if (!(w = storage_write_open(st, dst)))
        goto out;
    while ((n = storage_read_data(rd, &buf)) > 0)
        if (storage_write_data(w, buf, (size_t)n) != 0)
            goto out;
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    ret = storage_write_commit(w, noreplace);
    if (ret != 0 && ret != RS_EXISTS)
        ret = -1;
out:
    storage_write_free(w);
    storage_read_free(rd);
    return ret;
}

/*
 * move_object -- the content of key (sealed under the old key at its old address in
 * store c) written sealed under the new key at its new address, committed; then, when
 * drop, the old-address object removed. A new-address object that already opens with
 * the new key (a killed run wrote it, or a tool given the new key stored the same
 * content) is kept when it reads whole and holds the content, else written again.
 * naddr (may be NULL) gets the new address.
 * 0 | RS_NOT_FOUND (key gone) | RS_MISMATCH (reported: damaged, or not at its address) | -1.
 */
static int move_object(rekey_run *run, cas *c, const char *key, int drop, uint8_t naddr[SHA256_LEN])
{
    uint8_t oaddr[SHA256_LEN], back[SHA256_LEN], na[SHA256_LEN];
    char nkey[512];
    zst_meta meta;
    int r, by;

    if (cas_digest_from_key(c, key, oaddr) != 0) {
        log_error("\"%s/%s\" is not an object name", storage_location(run->st), key);
        return RS_MISMATCH;
    }
    r = object_meta(run->st, key, &meta);
    if (r != 0)
        return r == RS_NOT_FOUND ? RS_NOT_FOUND : r == RS_MISMATCH ? RS_MISMATCH : -1;
    /* the old address must be the content's under the old key */
    if (cipher_keyed_digest(run->oldk, meta.sha256, SHA256_LEN, back) != 0)
        return -1;
    if (memcmp(back, oaddr, SHA256_LEN) != 0) {
        log_error("\"%s/%s\" holds content that belongs under another name", storage_location(run->st), key);
        return RS_MISMATCH;
    }
    if (cas_addr(c, meta.sha256, na) != 0 || cas_addr_key(c, na, nkey, sizeof(nkey)) != 0)
        return log_error("could not name the new address of \"%s\"", key);
    /* storage_sealed_by's RS_NOT_FOUND is its "the storage's key" (1): stat first */
    r = storage_stat(run->st, nkey, NULL, NULL);
    if (r < 0)
        return -1;
    by = r == RS_NOT_FOUND ? 0 : storage_sealed_by(run->st, nkey);
    if (by < 0)
        return -1;
    if (by == 1) {
        /* the old copy goes on the strength of this one: read it whole first */
        zst_meta nm;
        int v = object_get_fd(run->st, nkey, -1, &nm);
        if (v < 0)
            return -1;
        if (v != 0 || memcmp(nm.sha256, meta.sha256, SHA256_LEN) != 0)
            by = 0;
    }
    if (r == 0 && by != 1)
        log_warning("\"%s\" is damaged: written again from \"%s\"", nkey, key);
    if (by != 1) {
        /* absent, or there and opening with neither key (damaged): the copy replaces it */
        r = reseal(run->st, key, nkey, r == RS_NOT_FOUND);
        if (r == RS_EXISTS)
            r = storage_sealed_by(run->st, nkey) == 1 ? 0 : log_error("\"%s\" appeared meanwhile", nkey);
        if (r != 0)
            return r;
        log_debug("moved \"%s\" to \"%s\"", key, nkey);
        bump(run); /* a kill here leaves both copies: the rerun only removes the old one */
    }
    if (drop && storage_remove(run->st, key) != 0)
        return -1;
    if (naddr)
        memcpy(naddr, na, SHA256_LEN);
    return 0;
}

/*
 * rewrite_manifest -- a ragsafe-files manifest still under the old key: the new-address
 * copy of every object it names committed first (the old ones stay: other manifests
 * under the old key may name them), then the manifest with the new addresses, sealed
 * under the new key, over the old one (one atomic replace). 0 | RS_MISMATCH (reported)
 * | -1.
 */
static int rewrite_manifest(rekey_run *run, const char *key)
{
    char *text = NULL, *out = NULL, okey[512], hex[SHA256_HEX_LEN + 1];
    size_t len = 0, i;
    json_t *root = NULL, *arr, *e;
    json_error_t jerr;
    int ret = storage_get(run->st, key, FL_MANIFEST_MAX, &text, &len);

    if (ret != 0)
        return ret == RS_NOT_FOUND ? RS_NOT_FOUND : ret == RS_MISMATCH ? RS_MISMATCH : -1;
    ret = RS_MISMATCH;
    root = json_loadb(text, len, 0, &jerr);
    arr = root ? json_object_get(root, "files") : NULL;
    if (!json_is_array(arr)) {
        log_error("\"%s/%s\" is not a ragsafe-files manifest", storage_location(run->st), key);
        goto out;
    }
    json_array_foreach(arr, i, e) {
        const char *a = json_string_value(json_object_get(e, "addr"));
        uint8_t oaddr[SHA256_LEN], naddr[SHA256_LEN];
        int r;

        if (!a)
            continue; /* a directory or symbolic link */
        if (sha256_from_hex(a, oaddr) != 0 || cas_addr_key(run->fl, oaddr, okey, sizeof(okey)) != 0) {
            log_error("\"%s/%s\": entry %zu has a malformed address", storage_location(run->st), key, i);
            goto out;
        }
        r = move_object(run, run->fl, okey, 0, naddr);
        if (r == RS_NOT_FOUND)
            log_error("\"%s/%s\" names \"%s\", which is missing", storage_location(run->st), key, okey);
        if (r != 0) {
            ret = r == RS_NOT_FOUND ? RS_MISMATCH : r;
            goto out;
        }
        sha256_to_hex(naddr, hex);
        if (json_object_set_new(e, "addr", json_string(hex)) != 0) {
            ret = log_error("out of memory");
            goto out;
        }
    }
    if (!(out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
        ret = log_error("out of memory");
        goto out;
    }
    ret = storage_put(run->st, key, out, strlen(out), 0) == 0 ? 0 : -1;
    if (ret == 0) {
        log_debug("re-sealed manifest \"%s\" with the new addresses", key);
        bump(run);
    }
out:
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    if (out) {
        explicit_bzero(out, strlen(out));
        free(out);
    }
    json_decref(root);
    return ret;
}

/* seal_state -- storage_sealed_by, an object neither key opens reported. 1 done,
 * 2 to do, 0 neither (reported), RS_NOT_FOUND, -1. */
static int seal_state(rekey_run *run, const char *key)
{
    int by = storage_sealed_by(run->st, key);

    run->seen++;
    if (by == 0)
        log_error("\"%s/%s\" opens with neither key: damaged, or sealed under a third key",
                  storage_location(run->st), key);
    return by;
}

/* pass -- re-seal every object still under the old key, manifests of ragsafe-files
 * before the objects they name are moved. 0 | RS_MISMATCH (an object neither key
 * opens, or damaged; the others are still done) | -1. */
static int pass(rekey_run *run)
{
    lists l = {.run = run};
    int ret = storage_list(run->st, "", collect, &l), bad = 0, files_bad = 0;

    if (ret != 0) {
        ret = -1;
        goto out;
    }
    for (size_t i = 0; i < l.plain.n; i++) {
        const char *key = l.plain.k[i];
        int by = seal_state(run, key);
        if (by == 1 || by == RS_NOT_FOUND)
            continue;
        if (by == 0) {
            bad = 1;
            continue;
        }
        if (by < 0) {
            ret = -1;
            goto out;
        }
        ret = reseal(run->st, key, key, 0);
        if (ret == RS_NOT_FOUND)
            continue; /* gone meanwhile */
        if (ret == RS_MISMATCH) {
            bad = 1;
            continue;
        }
        if (ret != 0)
            goto out;
        log_debug("re-sealed \"%s\"", key);
        bump(run);
    }
    for (size_t i = 0; i < l.manifests.n; i++) {
        const char *key = l.manifests.k[i];
        int by = seal_state(run, key);
        if (by == 1 || by == RS_NOT_FOUND)
            continue;
        if (by < 0) {
            ret = -1;
            goto out;
        }
        ret = by == 0 ? RS_MISMATCH : rewrite_manifest(run, key);
        if (ret == RS_NOT_FOUND)
            continue;
        if (ret == RS_MISMATCH) {
            bad = files_bad = 1;
            continue;
        }
        if (ret != 0)
            goto out;
    }
    if (files_bad)
        log_warning("the objects of ragsafe-files stay at their old addresses until every manifest is "
                    "re-sealed: a manifest under the old key still names them");
    for (size_t i = 0; i < l.objects.n; i++) {
        const char *key = l.objects.k[i];
        int fl = has_prefix(key, FL_OBJECTS "/"), by;
        if (fl && files_bad)
            continue;
        by = seal_state(run, key);
        if (by == 1 || by == RS_NOT_FOUND)
            continue;
        if (by == 0) {
            bad = 1;
            continue;
        }
        if (by < 0) {
            ret = -1;
            goto out;
        }
        ret = move_object(run, fl ? run->fl : run->mv, key, 1, NULL);
        if (ret == RS_NOT_FOUND)
            continue;
        if (ret == RS_MISMATCH) {
            bad = 1;
            continue;
        }
        if (ret != 0)
            goto out;
    }
    ret = bad ? RS_MISMATCH : 0;
out:
    keylist_free(&l.plain);
    keylist_free(&l.manifests);
    keylist_free(&l.objects);
    return ret;
}

static int files_probe(void *arg, const char *key, int64_t size, int64_t mtime)
{
    storage *st = arg;
    int by = storage_sealed_by(st, key);
    (void)size;
    (void)mtime;
    if (by < 0 && by != RS_NOT_FOUND)
        return -1;
    return by == 1 || by == 2 ? 1 : 0;
}

/* files_sealing -- is files/ sealed under the repository's key (either of the two)?
 * ragsafe-files takes a key of its own, which may or may not be the repository's: 1
 * when some object below files/ opens with the old or the new key, 0 when none does
 * (none there, or another key: left alone), -1. */
static int files_sealing(storage *st)
{
    int r = storage_list(st, "files/", files_probe, st);
    return r < 0 ? -1 : r;
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
    rekey_run run = {0};
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
    if (state == 0) {
        if (repo_rekey_mark(r, oldk, newk, 0) != 0)
            goto out;
        log_notice("rotation started: tools given either key keep working until it finishes");
    } else {
        log_notice("resuming the rotation (%s)", state == 1 ? "re-sealing objects" : "last pass");
    }
    storage_set_cipher(r->st, newk);
    storage_set_cipher_old(r->st, oldk);
    run.st = r->st;
    run.oldk = oldk;
    run.newk = newk;
    if (!(run.mv = cas_new(r->st, MV_OBJECTS, NULL)) || !(run.fl = cas_new(r->st, FL_OBJECTS, NULL)))
        goto out;
    if ((run.files = files_sealing(r->st)) < 0)
        goto out;
    if (!run.files && storage_any(r->st, "files/") > 0)
        log_notice("files/ is sealed with ragsafe-files' own key, not the repository's: left as it is");
    if (state == 1 || state == 0) {
        rr = pass(&run);
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
    run.seen = 0;
    rr = pass(&run);
    if (rr != 0) {
        ret = pitr_status(rr);
        goto out;
    }
    printf("rekey: done: %zu object%s re-sealed, %zu checked; \"%s\" opens with the new key only\n",
           run.resealed, PLURAL(run.resealed), run.seen, storage_location(r->st));
    ret = EXIT_OK;
out:
    storage_lock_release(rk);
    for (int i = 2; i >= 0; i--)
        storage_lock_release(lk[i]);
    cas_free(run.fl);
    cas_free(run.mv);
    repo_free(r);
    cipher_key_free(newk);
    return ret;
}
