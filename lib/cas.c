/*
 * cas.c -- content-addressed store over object.h. See cas.h for the contract.
 */
#include "cas.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cipher.h"
#include "common.h"
#include "durable.h"
#include "log.h"

#define CAS_HASH_CHUNK (1u << 20)

#define CAS_TEMP_SUFFIX ".batch"

typedef struct cas_pending {
    char *tmp;
    char *final;
} cas_pending;

struct cas_batch {
    int active;             /* 0: not a local repository, objects go one by one */
    char *root;             /* storage root directory */
    int root_fd;
    pthread_mutex_t mu;
    cas_pending *p;
    size_t n, cap;
    uint8_t dir_made[256];  /* <prefix>/<ab> directories known to exist */
    uid_t uid;              /* storage_owner: chown what is created, (uid_t)-1: no */
    gid_t gid;
};

struct cas {
    storage *st;
    char *prefix;
    size_t prefix_len;
    object_opts opts;
    cas_batch *batch;
    uint8_t *buf;           /* batch mode read buffer */
};

cas *cas_new(storage *st, const char *prefix, const object_opts *opts)
{
    cas *c;

    if (!storage_key_valid(prefix)) {
        log_error("invalid object store prefix \"%s\"", prefix);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->prefix = strdup(prefix)) == NULL) {
        free(c);
        log_errno("could not allocate object store");
        return NULL;
    }
    c->st = st;
    c->prefix_len = strlen(prefix);
    if (opts != NULL)
        c->opts = *opts;
    if (c->opts.level == 0)
        c->opts.level = ZST_DEFAULT_LEVEL;
    return c;
}

void cas_free(cas *c)
{
    if (c == NULL)
        return;
    free(c->prefix);
    free(c->buf);
    free(c);
}

int cas_addr(const cas *c, const uint8_t digest[SHA256_LEN], uint8_t addr[SHA256_LEN])
{
    const cipher_key *k = storage_cipher(c->st);

    if (!k) {
        memmove(addr, digest, SHA256_LEN);
        return 0;
    }
    return cipher_keyed_digest(k, digest, SHA256_LEN, addr);
}

/* cas_addr_key -- see cas.h. */
int cas_addr_key(const cas *c, const uint8_t addr[SHA256_LEN], char *out, size_t outlen)
{
    char hex[SHA256_HEX_LEN + 1];
    int n;

    sha256_to_hex(addr, hex);
    n = snprintf(out, outlen, "%s/%.2s/%s.zst", c->prefix, hex, hex);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

int cas_key(const cas *c, const uint8_t digest[SHA256_LEN], char *out, size_t outlen)
{
    uint8_t addr[SHA256_LEN];

    if (cas_addr(c, digest, addr) != 0)
        return -1;
    return cas_addr_key(c, addr, out, outlen);
}

int cas_digest_from_key(const cas *c, const char *key, uint8_t digest[SHA256_LEN])
{
    const char *p;
    char hex[SHA256_HEX_LEN + 1];

    if (strncmp(key, c->prefix, c->prefix_len) != 0 || key[c->prefix_len] != '/')
        return -1;
    p = key + c->prefix_len + 1;
    /* "ab/<64 hex>.zst" */
    if (strlen(p) != 3 + SHA256_HEX_LEN + 4 || p[2] != '/' ||
        strcmp(p + 3 + SHA256_HEX_LEN, ".zst") != 0)
        return -1;
    memcpy(hex, p + 3, SHA256_HEX_LEN);
    hex[SHA256_HEX_LEN] = '\0';
    if (p[0] != hex[0] || p[1] != hex[1])
        return -1;
    if (sha256_from_hex(hex, digest) != 0)
        return -1;
    /* only the canonical lowercase name counts */
    char back[SHA256_HEX_LEN + 1];
    sha256_to_hex(digest, back);
    return strcmp(back, hex) == 0 ? 0 : -1;
}

int cas_hash_fd(int fd, const char *name, uint8_t digest[SHA256_LEN], uint64_t *size)
{
    sha256_ctx ctx = {0};
    uint8_t *buf = NULL;
    uint64_t off = 0;
    int ret = -1;

    buf = malloc(CAS_HASH_CHUNK);
    if (buf == NULL) {
        log_errno("could not allocate hash buffer for \"%s\"", name);
        goto out;
    }
    if (sha256_init(&ctx) != 0)
        goto out;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = pread(fd, buf, CAS_HASH_CHUNK, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_errno("could not read \"%s\"", name);
            goto out;
        }
        if (n == 0)
            break;
        if (sha256_update(&ctx, buf, (size_t)n) != 0)
            goto out;
        off += (uint64_t)n;
    }
    if (sha256_final(&ctx, digest) != 0)
        goto out;
    if (size != NULL)
        *size = off;
    ret = 0;
out:
    sha256_release(&ctx);
    free(buf);
    return ret;
}

int cas_exists(cas *c, const uint8_t digest[SHA256_LEN], int64_t *stored_size)
{
    char key[512];

    if (cas_key(c, digest, key, sizeof(key)) != 0)
        return log_error("object store prefix \"%s\" too long", c->prefix);
    return storage_stat(c->st, key, stored_size, NULL);
}

static int cas_batch_put(cas *c, const char *key, int fd, const void *src, size_t src_len,
                         const char *name, const uint8_t digest[SHA256_LEN],
                         int64_t *stored_size);

/*
 * put_result -- after object_put_*: the content read while storing must hash to the
 * digest the caller named it by. If it changed between the caller's hash and our read,
 * what we just stored sits under a name that does not describe it: take it back.
 */
static int put_result(cas *c, const char *key, int r, const zst_meta *meta,
                      const uint8_t digest[SHA256_LEN], const char *name, int64_t *stored_size)
{
    if (r < 0)
        return -1;
    if (memcmp(meta->sha256, digest, SHA256_LEN) != 0) {
        if (r == 0)
            (void)storage_remove(c->st, key);
        log_error("\"%s\" changed while it was being stored", name);
        return RS_MISMATCH;
    }
    if (r == RS_EXISTS)
        return RS_EXISTS;
    if (stored_size != NULL && storage_stat(c->st, key, stored_size, NULL) != 0)
        return log_error("could not stat stored object \"%s\"", key);
    return 0;
}

int cas_put_fd(cas *c, int fd, const char *name, const uint8_t digest[SHA256_LEN],
               int64_t *stored_size)
{
    char key[512];
    zst_meta meta;
    int r;

    if (stored_size != NULL)
        *stored_size = 0;
    if (cas_key(c, digest, key, sizeof(key)) != 0)
        return log_error("object store prefix \"%s\" too long", c->prefix);
    if (c->batch != NULL && c->batch->active)
        return cas_batch_put(c, key, fd, NULL, 0, name, digest, stored_size);
    r = object_put_fd(c->st, key, fd, name, &c->opts, 1, &meta);
    return put_result(c, key, r, &meta, digest, name, stored_size);
}

int cas_put_buf(cas *c, const void *buf, size_t len, const char *name,
                const uint8_t digest[SHA256_LEN], int64_t *stored_size)
{
    char key[512];
    zst_meta meta;
    int r;

    if (stored_size != NULL)
        *stored_size = 0;
    if (cas_key(c, digest, key, sizeof(key)) != 0)
        return log_error("object store prefix \"%s\" too long", c->prefix);
    if (c->batch != NULL && c->batch->active)
        return cas_batch_put(c, key, -1, buf, len, name, digest, stored_size);
    r = object_put_buf(c->st, key, buf, len, &c->opts, 1, &meta);
    return put_result(c, key, r, &meta, digest, name, stored_size);
}

int cas_get_addr_fd(cas *c, const uint8_t addr[SHA256_LEN], int fd, uint64_t *size)
{
    char key[512];
    uint8_t back[SHA256_LEN];
    zst_meta meta;
    int r;

    if (cas_addr_key(c, addr, key, sizeof(key)) != 0)
        return log_error("object store prefix \"%s\" too long", c->prefix);
    r = object_get_fd(c->st, key, fd, &meta);
    if (r == RS_MISMATCH) {
        log_detail("object \"%s\" is corrupt", key);
        return RS_MISMATCH;
    }
    if (r != 0)
        return r;
    if (cas_addr(c, meta.sha256, back) != 0)
        return -1;
    if (memcmp(back, addr, SHA256_LEN) != 0) {
        char hex[SHA256_HEX_LEN + 1];
        sha256_to_hex(meta.sha256, hex);
        log_error("object \"%s\" holds content with SHA-256 %s, which belongs under another name",
                  key, hex);
        return RS_MISMATCH;
    }
    if (size != NULL)
        *size = meta.raw_size;
    return 0;
}

int cas_get_fd(cas *c, const uint8_t digest[SHA256_LEN], int fd, uint64_t *size)
{
    uint8_t addr[SHA256_LEN];

    if (cas_addr(c, digest, addr) != 0)
        return -1;
    return cas_get_addr_fd(c, addr, fd, size);
}

typedef struct cas_list_ctx {
    cas *c;
    cas_list_fn cb;
    void *arg;
} cas_list_ctx;

static int cas_list_one(void *arg, const char *key, int64_t size, int64_t mtime)
{
    cas_list_ctx *lc = arg;
    uint8_t digest[SHA256_LEN];

    (void)mtime;
    if (cas_digest_from_key(lc->c, key, digest) != 0) {
        log_warning("ignoring \"%s\": not an object name", key);
        return 0;
    }
    return lc->cb(lc->arg, digest, size);
}

int cas_list(cas *c, cas_list_fn cb, void *arg)
{
    cas_list_ctx lc = {c, cb, arg};
    char prefix[512];

    snprintf(prefix, sizeof(prefix), "%s/", c->prefix);
    return storage_list(c->st, prefix, cas_list_one, &lc);
}


/* ---- batch mode ---- */

static int cas_enc_sink(void *arg, const void *buf, size_t len)
{
    return cipher_enc_write(arg, buf, len);
}

static int cas_write_all(void *arg, const void *buf, size_t len)
{
    int fd = *(int *)arg;
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return log_errno("could not write object");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* cas_batch_dir -- make sure <root>/<key's directory> exists (mkdir -p without fsync:
 * the commit's syncs make the new directories durable with the objects). */
static int cas_batch_dir(cas_batch *b, const char *key, const char *path)
{
    const char *last = strrchr(key, '/');
    unsigned idx = 0;
    char dir[4096];

    /* key is "<prefix>/<ab>/<hex>.zst": the two hex digits index the cache */
    if (last != NULL && last - key >= 2)
        idx = (unsigned)strtoul((char[3]){last[-2], last[-1], 0}, NULL, 16) & 0xff;
    pthread_mutex_lock(&b->mu);
    int known = b->dir_made[idx];
    pthread_mutex_unlock(&b->mu);
    if (known)
        return 0;
    size_t dl = (size_t)(strrchr(path, '/') - path);
    if (dl >= sizeof(dir))
        return log_error("path too long: \"%s\"", path);
    memcpy(dir, path, dl);
    dir[dl] = '\0';
    for (char *p = dir + strlen(b->root) + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(dir, 0750) == 0) {
                if (b->uid != (uid_t)-1 && chown(dir, b->uid, b->gid) != 0)
                    return log_errno("could not change the owner of \"%s\"", dir);
            } else if (errno != EEXIST) {
                return log_errno("could not create directory \"%s\"", dir);
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    pthread_mutex_lock(&b->mu);
    b->dir_made[idx] = 1;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* cas_batch_put -- compress fd (or src when not NULL) into a hidden temp beside the
 * final name, no fsync; the rename waits for cas_batch_commit. */
static int cas_batch_put(cas *c, const char *key, int fd, const void *src, size_t src_len,
                         const char *name, const uint8_t digest[SHA256_LEN],
                         int64_t *stored_size)
{
    cas_batch *b = c->batch;
    char path[4096], tmp[4096 + 16];
    zst_writer *zw = NULL;
    cipher_enc *enc = NULL;
    zst_meta meta;
    struct stat sb;
    int out = -1, ret = -1;
    uint64_t off = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", b->root, key) >= sizeof(path))
        return log_error("path too long for \"%s\"", key);
    const char *base = strrchr(path, '/') + 1;
    snprintf(tmp, sizeof(tmp), "%.*s.%s%s", (int)(base - path), path, base, CAS_TEMP_SUFFIX);
    if (lstat(path, &sb) == 0)
        return RS_EXISTS;
    if (cas_batch_dir(b, key, path) != 0)
        return -1;
    if (src == NULL && c->buf == NULL && (c->buf = malloc(CAS_HASH_CHUNK)) == NULL)
        return log_errno("could not allocate");
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0)
        return log_errno("could not create \"%s\"", tmp);
    if (b->uid != (uid_t)-1 && fchown(out, b->uid, b->gid) != 0) {
        log_errno("could not change the owner of \"%s\"", tmp);
        goto out;
    }
    if (storage_cipher(c->st) &&
        !(enc = cipher_enc_new(storage_cipher(c->st), key, cas_write_all, &out)))
        goto out;
    zw = zst_writer_new(c->opts.level, c->opts.workers, enc ? cas_enc_sink : cas_write_all,
                        enc ? (void *)enc : &out);
    if (zw == NULL)
        goto out;
    if (src != NULL) {
        if (zst_writer_write(zw, src, src_len) != 0)
            goto out;
    }
    while (src == NULL) {
        ssize_t n = pread(fd, c->buf, CAS_HASH_CHUNK, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_errno("could not read \"%s\"", name);
            goto out;
        }
        if (n == 0)
            break;
        if (zst_writer_write(zw, c->buf, (size_t)n) != 0)
            goto out;
        off += (uint64_t)n;
    }
    if (zst_writer_finish(zw, &meta) != 0 || (enc && cipher_enc_finish(enc) != 0))
        goto out;
    if (memcmp(meta.sha256, digest, SHA256_LEN) != 0) {
        log_error("\"%s\" changed while it was being stored", name);
        ret = RS_MISMATCH;
        goto out;
    }
    if (fstat(out, &sb) != 0) {
        log_errno("could not stat \"%s\"", tmp);
        goto out;
    }
    if (close(out) != 0) {
        out = -1;
        log_errno("could not close \"%s\"", tmp);
        goto out;
    }
    out = -1;
    pthread_mutex_lock(&b->mu);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        cas_pending *np = realloc(b->p, cap * sizeof(*np));
        if (np == NULL) {
            pthread_mutex_unlock(&b->mu);
            log_errno("could not allocate");
            goto out;
        }
        b->p = np;
        b->cap = cap;
    }
    b->p[b->n].tmp = strdup(tmp);
    b->p[b->n].final = strdup(path);
    if (b->p[b->n].tmp == NULL || b->p[b->n].final == NULL) {
        free(b->p[b->n].tmp);
        free(b->p[b->n].final);
        pthread_mutex_unlock(&b->mu);
        log_errno("could not allocate");
        goto out;
    }
    b->n++;
    pthread_mutex_unlock(&b->mu);
    if (stored_size != NULL)
        *stored_size = sb.st_size;
    ret = 0;
out:
    zst_writer_free(zw);
    cipher_enc_free(enc);
    if (out >= 0)
        close(out);
    if (ret != 0)
        unlink(tmp);
    return ret;
}

cas_batch *cas_batch_new(storage *st)
{
    cas_batch *b = calloc(1, sizeof(*b));
    const char *loc = storage_location(st);

    if (b == NULL) {
        log_errno("could not allocate");
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    b->root_fd = -1;
    storage_owner(st, &b->uid, &b->gid);
    if (loc[0] != '/')
        return b;
    b->root = strdup(loc);
    if (b->root == NULL) {
        log_errno("could not allocate");
        cas_batch_free(b);
        return NULL;
    }
    b->root_fd = open(loc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->root_fd < 0) {
        log_errno("could not open repository \"%s\"", loc);
        cas_batch_free(b);
        return NULL;
    }
    b->active = 1;
    return b;
}

void cas_use_batch(cas *c, cas_batch *b)
{
    c->batch = b;
}

int cas_batch_commit(cas_batch *b)
{
    int ret = -1;

    if (!b->active || b->n == 0)
        return 0;
    pthread_mutex_lock(&b->mu);
    /* 1: every temp and new directory on disk; a failed sync is never retried */
    if (syncfs(b->root_fd) != 0) {
        log_errno("could not sync repository \"%s\"", b->root);
        goto out;
    }
    /* 2: into place; an object that appeared meanwhile is the same content */
    for (size_t i = 0; i < b->n; i++) {
        int r = durable_rename_noreplace(b->p[i].tmp, b->p[i].final);
        if (r < 0)
            goto out;
        if (r == RS_EXISTS)
            unlink(b->p[i].tmp);
        free(b->p[i].tmp);
        free(b->p[i].final);
        b->p[i].tmp = b->p[i].final = NULL;
    }
    /* 3: the renames on disk */
    if (syncfs(b->root_fd) != 0) {
        log_errno("could not sync repository \"%s\"", b->root);
        goto out;
    }
    ret = 0;
out:
    if (ret == 0)
        b->n = 0;
    pthread_mutex_unlock(&b->mu);
    return ret;
}

void cas_batch_free(cas_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        if (b->p[i].tmp != NULL)
            unlink(b->p[i].tmp);
        free(b->p[i].tmp);
        free(b->p[i].final);
    }
    free(b->p);
    if (b->root_fd >= 0)
        close(b->root_fd);
    free(b->root);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* cas_sweep_temps -- remove batch temps a killed process left in the object
 * directories (local repositories; the caller holds the writers' lock). */
static int cas_sweep_temps(cas *c, int dry_run)
{
    const char *loc = storage_location(c->st);
    char dir[4096];
    int ret = 0;

    if (loc[0] != '/')
        return 0;
    for (int i = 0; i < 256 && ret == 0; i++) {
        snprintf(dir, sizeof(dir), "%s/%s/%02x", loc, c->prefix, i);
        DIR *d = opendir(dir);
        if (d == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t n = strlen(de->d_name), sl = strlen(CAS_TEMP_SUFFIX);
            if (de->d_name[0] != '.' || n <= sl || strcmp(de->d_name + n - sl, CAS_TEMP_SUFFIX) != 0)
                continue;
            if (dry_run)
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT) {
                ret = log_errno("could not remove \"%s/%s\"", dir, de->d_name);
                break;
            }
            log_debug("removed leftover temp \"%s/%s\"", dir, de->d_name);
        }
        closedir(d);
    }
    return ret;
}

/* ---- digest set: open addressing on the digest's first 8 bytes (already uniform) */

struct cas_set {
    uint8_t (*slots)[SHA256_LEN];
    uint8_t *used;
    size_t cap;   /* power of two */
    size_t count;
};

cas_set *cas_set_new(void)
{
    cas_set *s = calloc(1, sizeof(*s));

    if (s != NULL) {
        s->cap = 1024;
        s->slots = calloc(s->cap, SHA256_LEN);
        s->used = calloc(s->cap, 1);
    }
    if (s == NULL || s->slots == NULL || s->used == NULL) {
        cas_set_free(s);
        log_errno("could not allocate digest set");
        return NULL;
    }
    return s;
}

void cas_set_free(cas_set *s)
{
    if (s == NULL)
        return;
    free(s->slots);
    free(s->used);
    free(s);
}

static size_t cas_set_slot(const cas_set *s, const uint8_t digest[SHA256_LEN])
{
    uint64_t h;

    memcpy(&h, digest, sizeof(h));
    size_t i = (size_t)h & (s->cap - 1);
    while (s->used[i] && memcmp(s->slots[i], digest, SHA256_LEN) != 0)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int cas_set_grow(cas_set *s)
{
    cas_set n = {0};

    n.cap = s->cap * 2;
    n.slots = calloc(n.cap, SHA256_LEN);
    n.used = calloc(n.cap, 1);
    if (n.slots == NULL || n.used == NULL) {
        free(n.slots);
        free(n.used);
        return log_errno("could not grow digest set");
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->used[i])
            continue;
        size_t j = cas_set_slot(&n, s->slots[i]);
        memcpy(n.slots[j], s->slots[i], SHA256_LEN);
        n.used[j] = 1;
    }
    free(s->slots);
    free(s->used);
    s->slots = n.slots;
    s->used = n.used;
    s->cap = n.cap;
    return 0;
}

int cas_set_add(cas_set *s, const uint8_t digest[SHA256_LEN])
{
    size_t i;

    if ((s->count + 1) * 4 > s->cap * 3 && cas_set_grow(s) != 0)
        return -1;
    i = cas_set_slot(s, digest);
    if (s->used[i])
        return 0;
    memcpy(s->slots[i], digest, SHA256_LEN);
    s->used[i] = 1;
    s->count++;
    return 1;
}

int cas_set_has(const cas_set *s, const uint8_t digest[SHA256_LEN])
{
    return s->used[cas_set_slot(s, digest)];
}

size_t cas_set_count(const cas_set *s)
{
    return s->count;
}

typedef struct cas_sweep_ctx {
    cas *c;
    const cas_set *keep;
    int dry_run;
    uint64_t removed;
    uint64_t bytes;
} cas_sweep_ctx;

static int cas_sweep_one(void *arg, const uint8_t digest[SHA256_LEN], int64_t stored_size)
{
    cas_sweep_ctx *sc = arg;
    char key[512];

    if (cas_set_has(sc->keep, digest))
        return 0;
    if (cas_addr_key(sc->c, digest, key, sizeof(key)) != 0)
        return -1;
    if (!sc->dry_run) {
        if (storage_remove(sc->c->st, key) != 0)
            return -1;
        log_debug("removed unreferenced object \"%s\"", key);
    }
    sc->removed++;
    sc->bytes += stored_size > 0 ? (uint64_t)stored_size : 0;
    return 0;
}

int cas_sweep(cas *c, const cas_set *keep, int dry_run, uint64_t *removed, uint64_t *bytes)
{
    cas_sweep_ctx sc = {c, keep, dry_run, 0, 0};
    int r = cas_list(c, cas_sweep_one, &sc);

    if (r == 0)
        r = cas_sweep_temps(c, dry_run);

    if (removed != NULL)
        *removed = sc.removed;
    if (bytes != NULL)
        *bytes = sc.bytes;
    return r == 0 ? 0 : -1;
}
