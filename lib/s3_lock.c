/*
 * s3_lock.c -- locks on S3: lock and lease objects written with conditional PUTs
 * (If-None-Match, If-Match), read back, renewed from a thread (see storage_s3.h).
 */
#include "s3_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

struct s3_lock {
    s3_storage *st;        /* the holder's storage (requests from this thread) */
    s3_storage *renew_st;  /* the renewer thread's own storage */
    char *key;
    char owner[160];
    char etag[128];        /* of our last write: renewals are conditional on it */
    pthread_t thread;
    int have_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

/* lock_body -- "owner=...\nexpires=...\n". */
static void lock_body(char *out, size_t n, const char *owner)
{
    snprintf(out, n, "owner=%s\nexpires=%" PRId64 "\n", owner, (int64_t)time(NULL) + S3_LOCK_TTL);
}

/* lock_get -- GET a lock object: 0 (owner, expiry and, when etag, its ETag filled) |
 * RS_NOT_FOUND | -1 (reported). */
static int lock_get(s3_storage *st, const char *key, char *owner, size_t olen, int64_t *expires,
                    char *etag, size_t elen)
{
    char *okey = s3_okey(st, key), what[600], *o, *e;
    s3_req rq = {.method = "GET", .range_from = -1, .range_to = -1};
    s3_resp r;
    int ret = -1, nk;

    if (!okey)
        return -1;
    rq.okey = okey;
    snprintf(what, sizeof(what), "read the lock \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) != 0) {
        free(okey);
        return -1;
    }
    if (r.status == 200) {
        owner[0] = '\0';
        *expires = 0;
        if (etag)
            snprintf(etag, elen, "%s", r.etag);
        if (r.body && (o = strstr(r.body, "owner=")) != NULL) {
            size_t n = strcspn(o + 6, "\n");
            snprintf(owner, olen, "%.*s", (int)n, o + 6);
        }
        if (r.body && (e = strstr(r.body, "expires=")) != NULL)
            *expires = strtoll(e + 8, NULL, 10);
        ret = 0;
    } else if (r.status == 404 && (nk = s3_is_no_such_key(st, &r)) != 0) {
        ret = nk > 0 ? RS_NOT_FOUND : -1;
    } else {
        s3_fail(&r, "could not %s", what);
    }
    s3_resp_release(&r);
    free(okey);
    return ret;
}

static int lock_read(s3_storage *st, const char *key, char *owner, size_t olen, int64_t *expires)
{
    return lock_get(st, key, owner, olen, expires, NULL, 0);
}

/* lock_put -- PUT a lock object under a condition ("If-None-Match: *", "If-Match:
 * <etag>" or NULL); its new ETag into etag. 0 | RS_EXISTS (412: the condition failed) |
 * -1 (reported). */
static int lock_put(s3_storage *st, const char *key, const char *body, const char *cond,
                    char *etag, size_t elen)
{
    char *okey = s3_okey(st, key), what[600];
    s3_req rq = {.method = "PUT", .range_from = -1, .range_to = -1,
                 .hdrs = {"Content-Type: text/plain", cond}};
    s3_resp r;
    int ret = -1;

    if (!okey)
        return -1;
    rq.okey = okey;
    rq.body = body;
    rq.body_len = strlen(body);
    snprintf(what, sizeof(what), "write the lock \"%s/%s\"", st->location, key);
    if (s3_call(st, &rq, &r, what) != 0) {
        free(okey);
        return -1;
    }
    if (r.status == 200) {
        snprintf(etag, elen, "%s", r.etag);
        ret = 0;
    } else if (r.status == 412 || r.status == 409) {
        ret = RS_EXISTS; /* 409: a concurrent conditional write (AWS) */
    } else {
        s3_fail(&r, "could not %s", what);
    }
    s3_resp_release(&r);
    free(okey);
    return ret;
}

/* live_lock -- 1 when key holds a live lock of someone else, 0 absent, 2 expired or
 * ours (etag: the object's ETag, the condition its takeover is written under), -1
 * reported. */
static int live_lock(s3_storage *st, const char *key, const char *me, char *etag, size_t elen)
{
    char owner[160];
    int64_t exp;
    int r = lock_get(st, key, owner, sizeof(owner), &exp, etag, elen);

    if (r == RS_NOT_FOUND)
        return 0;
    if (r != 0)
        return -1;
    if (strcmp(owner, me) == 0 || exp < (int64_t)time(NULL))
        return 2;
    return 1;
}

struct shared_scan {
    s3_storage *st;
    const char *name, *me;
    int live;
};

static int shared_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    struct shared_scan *s = arg;
    const char *base = key + strlen("locks/");
    size_t nl = strlen(s->name), bl = strlen(base);
    int r;
    (void)size;
    (void)mtime;
    if (strncmp(base, s->name, nl) != 0 || base[nl] != '.' || bl < 7 ||
        strcmp(base + bl - 7, ".shared") != 0)
        return 0;
    r = live_lock(s->st, key, s->me, NULL, 0);
    if (r < 0)
        return -1;
    s->live += r == 1;
    return 0;
}

static void *renew_main(void *arg)
{
    s3_lock *lk = arg;
    char body[256], cond[160], etag[128];
    int r;

    pthread_mutex_lock(&lk->mu);
    while (!lk->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += S3_LOCK_TTL / 4;
        pthread_cond_timedwait(&lk->cv, &lk->mu, &ts);
        if (lk->stop)
            break;
        pthread_mutex_unlock(&lk->mu);
        lock_body(body, sizeof(body), lk->owner);
        /* only while it is still ours: an expired lock someone took over stays theirs */
        if (lk->etag[0])
            snprintf(cond, sizeof(cond), "If-Match: %s", lk->etag);
        r = lock_put(lk->renew_st, lk->key, body, lk->etag[0] ? cond : NULL, etag, sizeof(etag));
        if (r == RS_EXISTS) {
            log_warning("lost the lock \"%s\": it expired and was taken over", lk->key);
            pthread_mutex_lock(&lk->mu);
            break;
        }
        if (r != 0)
            log_warning("could not renew the lock \"%s\"", lk->key);
        pthread_mutex_lock(&lk->mu);
        if (r == 0)
            snprintf(lk->etag, sizeof(lk->etag), "%s", etag);
    }
    pthread_mutex_unlock(&lk->mu);
    return NULL;
}

int s3_storage_lock_take(s3_storage *st, const char *name, int exclusive, int wait,
                         s3_lock **out)
{
    char key[512], excl_key[300], body[256], host[64] = "host", owner[160];
    s3_lock *lk = NULL;
    int64_t exp;
    int ret = -1;

    *out = NULL;
    if (snprintf(excl_key, sizeof(excl_key), "locks/%s.lock", name) >= (int)sizeof(excl_key) ||
        !storage_key_valid(excl_key))
        return s3_bad_key(name);
    gethostname(host, sizeof(host) - 1);
    lk = calloc(1, sizeof(*lk));
    if (!lk)
        return log_error("out of memory");
    pthread_mutex_init(&lk->mu, NULL);
    pthread_cond_init(&lk->cv, NULL);
    lk->st = st;
    snprintf(lk->owner, sizeof(lk->owner), "%s:%ld:%08lx%08lx", host, (long)getpid(),
             (unsigned long)random(), (unsigned long)random());
    for (size_t i = 0; lk->owner[i]; i++)
        if (lk->owner[i] == '/' || lk->owner[i] == '.')
            lk->owner[i] = '_';
    if (exclusive)
        snprintf(key, sizeof(key), "%s", excl_key);
    else
        snprintf(key, sizeof(key), "locks/%s.%s.shared", name, lk->owner);
    if (!(lk->key = strdup(key))) {
        log_error("out of memory");
        goto out;
    }
    for (;;) {
        char seen[128] = "", cond[160];
        int state = live_lock(st, excl_key, lk->owner, seen, sizeof(seen)), busy = state == 1;
        if (state < 0)
            goto out;
        if (!busy && exclusive) {
            struct shared_scan s = {st, name, lk->owner, 0};
            if (s3_storage_list(st, "locks/", shared_cb, &s) != 0)
                goto out;
            busy = s.live > 0;
        }
        if (!busy) {
            int r;
            const char *c = NULL;
            lock_body(body, sizeof(body), lk->owner);
            /* exclusive: created only if absent (If-None-Match: *), an expired lock
             * replaced only if unchanged since it was read (If-Match: its ETag), so of
             * two takers on a store that honours the conditions exactly one wins. A
             * shared lease has a key of its own. */
            if (exclusive && state == 0)
                c = "If-None-Match: *";
            else if (exclusive && seen[0]) {
                snprintf(cond, sizeof(cond), "If-Match: %s", seen);
                c = cond;
            }
            r = lock_put(st, key, body, c, lk->etag, sizeof(lk->etag));
            if (r < 0)
                goto out;
            /* read back, even after a 412 (a retried write may have found its own first
             * attempt): on a store that ignores the conditions the last writer wins, and
             * the read-back narrows but does not close that race (see the README) */
            r = lock_get(st, key, owner, sizeof(owner), &exp, lk->etag, sizeof(lk->etag));
            if (r < 0)
                goto out;
            if (r == 0 && strcmp(owner, lk->owner) == 0) {
                /* look again at the other side, now that ours is visible: a reader and
                 * an expire that checked each other before either wrote both see the
                 * other now (S3 reads after writes are consistent), and both back off */
                int other;
                if (exclusive) {
                    struct shared_scan s2 = {st, name, lk->owner, 0};
                    if (s3_storage_list(st, "locks/", shared_cb, &s2) != 0)
                        goto out;
                    other = s2.live > 0;
                } else {
                    other = live_lock(st, excl_key, lk->owner, NULL, 0);
                    if (other < 0)
                        goto out;
                    other = other == 1;
                }
                if (!other)
                    break;
                if (s3_storage_remove(st, key) != 0)
                    goto out;
            }
            lk->etag[0] = '\0';
        }
        if (!wait) {
            ret = RS_EXISTS;
            goto out;
        }
        sleep(1);
    }
    /* the renewer: its own storage, so the holder's thread keeps st to itself */
    lk->renew_st = s3_storage_open(st->location, 0);
    if (lk->renew_st && pthread_create(&lk->thread, NULL, renew_main, lk) == 0)
        lk->have_thread = 1;
    else
        log_warning("could not start renewing the lock \"%s\"; it expires in %d s", key,
                    S3_LOCK_TTL);
    *out = lk;
    lk = NULL;
    ret = 0;
out:
    if (lk) {
        s3_storage_free(lk->renew_st);
        pthread_mutex_destroy(&lk->mu);
        pthread_cond_destroy(&lk->cv);
        free(lk->key);
        free(lk);
    }
    return ret;
}

void s3_storage_lock_release(s3_lock *lk)
{
    char owner[160];
    int64_t exp;

    if (!lk)
        return;
    if (lk->have_thread) {
        pthread_mutex_lock(&lk->mu);
        lk->stop = 1;
        pthread_cond_signal(&lk->cv);
        pthread_mutex_unlock(&lk->mu);
        pthread_join(lk->thread, NULL);
    }
    /* remove it only while it is still ours */
    if (lock_read(lk->st, lk->key, owner, sizeof(owner), &exp) == 0 &&
        strcmp(owner, lk->owner) == 0)
        (void)s3_storage_remove(lk->st, lk->key);
    s3_storage_free(lk->renew_st);
    pthread_mutex_destroy(&lk->mu);
    pthread_cond_destroy(&lk->cv);
    free(lk->key);
    free(lk);
}
