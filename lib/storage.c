/*
 * storage.c -- the posix backend of storage.h: a directory tree, every write through
 * durable.h, every read through uring.h. An "s3://" location is handed to
 * storage_s3.c: every public function's first line dispatches on st->s3 (or the
 * handle's s3 member), so the posix code below it is the posix backend alone.
 */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cipher.h"
#include "common.h"
#include "durable.h"
#include "log.h"
#include "storage_s3.h"

#define READ_CHUNK (1u << 20)

struct storage {
    char *root;
    uring *ur;
    uring *own_ur;  /* the plain-syscall ring made when the caller gave none */
    s3_storage *s3; /* an S3 repository: everything goes to storage_s3.c */
    const cipher_key *ck; /* encryption at rest (storage_set_cipher) */
    const cipher_key *ck_old; /* during a key rotation: the key being replaced */
    uid_t owner_uid;  /* run as root on another user's repository: chown what we */
    gid_t owner_gid;  /* create to the root's owner; (uid_t)-1 otherwise */
};

struct storage_write {
    storage *st;
    char *key;
    durable_file *f;
    s3_write *s3;
    cipher_enc *enc; /* sealed: data goes through here to raw_write */
};

struct storage_read {
    char *path;
    int fd;
    int64_t size;
    uring_reader *r;
    s3_read *s3;
    cipher_dec *dec;  /* sealed: raw data goes through here into plain */
    uint8_t *plain;
    size_t plain_len, plain_cap;
    int done;
    int mismatch;     /* the -1 was an object that did not authenticate */
};

static const cipher_key *default_key, *default_old;

void storage_set_default_cipher(const cipher_key *k) { default_key = k; }
void storage_set_cipher(storage *st, const cipher_key *k) { st->ck = k; }
const cipher_key *storage_cipher(const storage *st) { return st->ck; }
void storage_set_default_cipher_old(const cipher_key *k) { default_old = k; }
void storage_set_cipher_old(storage *st, const cipher_key *k) { st->ck_old = k; }
const cipher_key *storage_cipher_old(const storage *st) { return st->ck_old; }

/* sealed -- is the object under key encrypted? Everything below the root is; objects
 * at the root (repo.json) say what the repository is and stay readable. */
static int sealed(const storage *st, const char *key)
{
    return st->ck != NULL && strchr(key, '/') != NULL;
}

/* seal_name -- the name a sealed object is bound to (its frames' authenticated data):
 * its key, with ".partial" dropped from folder names, because storage_rename_prefix
 * commits a set by moving "backups/L.partial/" to "backups/L/" and its objects must
 * still open there. Anything else moved or copied to another key fails to open. */
static const char *seal_name(const char *key, char *buf, size_t len)
{
    const char *p = key, *slash;
    size_t n = 0;

    while ((slash = strchr(p, '/')) != NULL) {
        size_t c = (size_t)(slash - p);
        if (c > 8 && memcmp(slash - 8, ".partial", 8) == 0)
            c -= 8;
        if (n + c + 1 >= len)
            return key;
        memcpy(buf + n, p, c);
        n += c;
        buf[n++] = '/';
        p = slash + 1;
    }
    if (n + strlen(p) + 1 > len)
        return key;
    strcpy(buf + n, p);
    return buf;
}

struct storage_lock {
    int fd;
    s3_lock *s3;
};

storage *storage_open(const char *location, uring *ur, int create)
{
    storage *st = calloc(1, sizeof(*st));
    struct stat sb;
    size_t len;

    if (!st) {
        log_error("out of memory");
        return NULL;
    }
    st->ck = default_key;
    st->ck_old = default_old;
    st->owner_uid = (uid_t)-1;
    st->owner_gid = (gid_t)-1;
    st->ur = ur ? ur : (st->own_ur = uring_new_plain());
    if (!st->ur) {
        log_error("out of memory");
        goto fail;
    }
    if (!location || !*location) {
        log_error("no repository given");
        log_hint("use --repo DIR, RAGSAFE_REPO or \"repo = DIR\" in the config file");
        goto fail;
    }
    if (strncmp(location, "s3://", 5) == 0) {
        st->s3 = s3_storage_open(location, create);
        if (!st->s3)
            goto fail;
        return st;
    }
    if (location[0] != '/') {
        /* archive_command runs in the data directory: a relative repository would
         * land inside PGDATA, and in the next base backup */
        log_error("repository \"%s\" is a relative path", location);
        log_detail("PostgreSQL runs archive_command and restore_command in the data directory, "
                   "so a relative repository would be created inside PGDATA");
        log_hint("give an absolute path, e.g. --repo /var/lib/ragsafe/repo");
        goto fail;
    }
    st->root = strdup(location);
    if (!st->root) {
        log_error("out of memory");
        goto fail;
    }
    len = strlen(st->root);
    while (len > 1 && st->root[len - 1] == '/')
        st->root[--len] = '\0';
    /* the root is never made here (a typo must not become a new repository) */
    (void)create;
    if (stat(st->root, &sb) != 0) {
        int e = errno;
        log_errno("could not open repository \"%s\"", st->root);
        if (e == ENOENT)
            log_hint("create it first: install -d -o postgres -m 0750 %s, or ragsafe-pitr init --repo %s",
                     st->root, st->root);
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        log_error("repository \"%s\" is not a directory", st->root);
        goto fail;
    }
    if (access(st->root, R_OK | X_OK) != 0) {
        log_errno("could not open repository \"%s\"", st->root);
        goto fail;
    }
    /* root on a repository of another user: what this process creates becomes that
     * user's (storage_chown), so the next run as that user can write it */
    if (geteuid() == 0 && sb.st_uid != 0) {
        st->owner_uid = sb.st_uid;
        st->owner_gid = sb.st_gid;
    }
    return st;
fail:
    storage_free(st);
    return NULL;
}

int storage_owner(const storage *st, uid_t *uid, gid_t *gid)
{
    *uid = st->owner_uid;
    *gid = st->owner_gid;
    return st->owner_uid != (uid_t)-1;
}

int storage_chown(const storage *st, const char *path)
{
    if (st->owner_uid == (uid_t)-1 || lchown(path, st->owner_uid, st->owner_gid) == 0)
        return 0;
    return log_errno("could not change the owner of \"%s\"", path);
}

void storage_free(storage *st)
{
    if (!st)
        return;
    s3_storage_free(st->s3);
    uring_free(st->own_ur);
    free(st->root);
    free(st);
}

const char *storage_location(const storage *st)
{
    return st->s3 ? s3_storage_location(st->s3) : st->root;
}
uring *storage_uring(const storage *st) { return st->ur; }

int storage_key_valid(const char *key)
{
    const char *p = key;

    if (!key || !*key || *key == '/')
        return 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || p[0] == '.')
            return 0; /* empty component, ".", "..", or a hidden temp name */
        if (!e)
            break;
        p = e + 1;
        if (!*p)
            return 0; /* trailing slash */
    }
    return 1;
}

/* prefix_valid -- "" or a key, with or without a trailing '/'. */
static int prefix_valid(const char *prefix)
{
    char buf[PATH_MAX];
    size_t n = strlen(prefix);

    if (n == 0)
        return 1;
    if (n >= sizeof(buf))
        return 0;
    memcpy(buf, prefix, n + 1);
    if (buf[n - 1] == '/')
        buf[n - 1] = '\0';
    return storage_key_valid(buf);
}

static char *path_of(const storage *st, const char *key)
{
    char *p = malloc(strlen(st->root) + strlen(key) + 2);
    if (!p) {
        log_error("out of memory");
        return NULL;
    }
    sprintf(p, "%s%s%s", st->root, *key ? "/" : "", key);
    return p;
}

static int bad_key(const char *key)
{
    return log_error("invalid repository key \"%s\"", key ? key : "");
}

/*
 * missing -- classify an ENOENT on a key's path: RS_NOT_FOUND if the repository root
 * is still there, else -1 (reported). A vanished root (an unmounted volume) must
 * never read as "this object does not exist".
 */
static int missing(const storage *st, const char *path)
{
    struct stat sb;
    if (stat(st->root, &sb) != 0)
        return log_errno("repository \"%s\" is not reachable", st->root);
    if (!S_ISDIR(sb.st_mode))
        return log_error("repository \"%s\" is not a directory", st->root);
    (void)path;
    return RS_NOT_FOUND;
}

static int raw_write(void *arg, const void *buf, size_t len)
{
    storage_write *w = arg;
    if (w->s3)
        return s3_storage_write_data(w->s3, buf, len);
    return durable_write(w->f, buf, len);
}

static storage_write *write_open(storage *st, const char *key);

storage_write *storage_write_open(storage *st, const char *key)
{
    storage_write *w = write_open(st, key);
    char name[PATH_MAX];

    if (w && sealed(st, key) &&
        !(w->enc = cipher_enc_new(st->ck, seal_name(key, name, sizeof(name)), raw_write, w))) {
        storage_write_free(w);
        return NULL;
    }
    return w;
}

static storage_write *write_open(storage *st, const char *key)
{
    storage_write *w = NULL;
    char *path = NULL, *slash;

    if (st->s3) {
        s3_write *s3w = s3_storage_write_open(st->s3, key);
        if (s3w && !(w = calloc(1, sizeof(*w))))
            log_error("out of memory");
        if (!w) {
            s3_storage_write_free(s3w);
            return NULL;
        }
        w->st = st;
        w->s3 = s3w;
        return w;
    }
    if (!storage_key_valid(key)) {
        bad_key(key);
        return NULL;
    }
    path = path_of(st, key);
    if (!path)
        return NULL;
    slash = strrchr(path, '/');
    *slash = '\0';
    if (durable_mkdirs_owned(path, 0750, st->owner_uid, st->owner_gid) != 0)
        goto fail;
    *slash = '/';
    w = calloc(1, sizeof(*w));
    if (!w || !(w->key = strdup(key))) {
        log_error("out of memory");
        goto fail;
    }
    w->st = st;
    w->f = durable_open(path, st->ur, 0640);
    if (!w->f || durable_fchown(w->f, st->owner_uid, st->owner_gid) != 0)
        goto fail;
    free(path);
    return w;
fail:
    free(path);
    storage_write_free(w);
    return NULL;
}

int storage_write_data(storage_write *w, const void *buf, size_t len)
{
    if (w->enc)
        return cipher_enc_write(w->enc, buf, len);
    return raw_write(w, buf, len);
}

int storage_write_commit(storage_write *w, int noreplace)
{
    if (w->enc && cipher_enc_finish(w->enc) != 0)
        return -1;
    if (w->s3)
        return s3_storage_write_commit(w->s3, noreplace);
    return durable_commit(w->f, noreplace ? DURABLE_NOREPLACE : 0);
}

void storage_write_free(storage_write *w)
{
    if (!w)
        return;
    cipher_enc_free(w->enc);
    s3_storage_write_free(w->s3);
    durable_free(w->f);
    free(w->key);
    free(w);
}

int storage_put(storage *st, const char *key, const void *buf, size_t len, int noreplace)
{
    storage_write *w;
    int ret;

    if (st->s3 && !sealed(st, key))
        return s3_storage_put(st->s3, key, buf, len, noreplace);
    w = storage_write_open(st, key);
    if (!w)
        return -1;
    ret = storage_write_data(w, buf, len);
    if (ret == 0)
        ret = storage_write_commit(w, noreplace);
    storage_write_free(w);
    return ret;
}

static int plain_sink(void *arg, const void *buf, size_t len)
{
    storage_read *rd = arg;
    if (rd->plain_len + len > rd->plain_cap) {
        size_t cap = rd->plain_cap ? rd->plain_cap : CIPHER_FRAME;
        uint8_t *p;
        while (cap < rd->plain_len + len)
            cap *= 2;
        if (!(p = realloc(rd->plain, cap)))
            return log_error("out of memory");
        rd->plain = p;
        rd->plain_cap = cap;
    }
    memcpy(rd->plain + rd->plain_len, buf, len);
    rd->plain_len += len;
    return 0;
}

static int read_open(storage *st, const char *key, storage_read **out);
static int read_tail(storage *st, const char *key, void *buf, size_t len, int64_t *size);

/* key_for -- the key that opens a sealed object: the storage's, or during a rotation
 * the old one when the object's final frame authenticates only under that. */
static const cipher_key *key_for(storage *st, const char *key, const char *name)
{
    uint8_t tail[CIPHER_TAIL_SIZE];

    if (!st->ck_old || read_tail(st, key, tail, sizeof(tail), NULL) != 0)
        return st->ck;
    if (cipher_tail_fits(st->ck, name, tail) == 1)
        return st->ck;
    return cipher_tail_fits(st->ck_old, name, tail) == 1 ? st->ck_old : st->ck;
}

int storage_sealed_by(storage *st, const char *key)
{
    uint8_t tail[CIPHER_TAIL_SIZE];
    char buf[PATH_MAX];
    const char *name;
    int ret;

    if (!sealed(st, key))
        return log_error("internal error: \"%s\" is not sealed", key);
    name = seal_name(key, buf, sizeof(buf));
    ret = read_tail(st, key, tail, sizeof(tail), NULL);
    if (ret != 0)
        return ret;
    if ((ret = cipher_tail_fits(st->ck, name, tail)) != 0)
        return ret < 0 ? -1 : 1;
    if (st->ck_old && (ret = cipher_tail_fits(st->ck_old, name, tail)) != 0)
        return ret < 0 ? -1 : 2;
    return 0;
}

int storage_read_open(storage *st, const char *key, storage_read **out)
{
    int ret = read_open(st, key, out);
    char name[PATH_MAX];
    const char *nm;

    if (ret == 0 && sealed(st, key) &&
        (nm = seal_name(key, name, sizeof(name)),
         !((*out)->dec = cipher_dec_new(key_for(st, key, nm), nm, plain_sink, *out)))) {
        storage_read_free(*out);
        *out = NULL;
        return -1;
    }
    return ret;
}

static int read_open(storage *st, const char *key, storage_read **out)
{
    storage_read *rd = NULL;
    struct stat sb;
    int ret = -1;

    *out = NULL;
    if (st->s3) {
        s3_read *s3r;
        ret = s3_storage_read_open(st->s3, key, &s3r);
        if (ret != 0)
            return ret;
        if (!(rd = calloc(1, sizeof(*rd)))) {
            s3_storage_read_free(s3r);
            return log_error("out of memory");
        }
        rd->fd = -1;
        rd->s3 = s3r;
        *out = rd;
        return 0;
    }
    if (!storage_key_valid(key))
        return bad_key(key);
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return log_error("out of memory");
    rd->fd = -1;
    rd->path = path_of(st, key);
    if (!rd->path)
        goto out;
    rd->fd = open(rd->path, O_RDONLY | O_CLOEXEC);
    if (rd->fd < 0) {
        if (errno == ENOENT)
            ret = missing(st, rd->path);
        else
            log_errno("could not open \"%s\"", rd->path);
        goto out;
    }
    if (fstat(rd->fd, &sb) != 0) {
        log_errno("could not stat \"%s\"", rd->path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        log_error("\"%s\" is not a regular file", rd->path);
        goto out;
    }
    rd->size = sb.st_size;
    rd->r = uring_reader_new(st->ur, rd->fd, 0, READ_CHUNK, 4);
    if (!rd->r) {
        log_errno("could not read \"%s\"", rd->path);
        goto out;
    }
    *out = rd;
    rd = NULL;
    ret = 0;
out:
    storage_read_free(rd);
    return ret;
}

static ssize_t raw_read(storage_read *rd, const void **buf)
{
    if (rd->s3)
        return s3_storage_read_data(rd->s3, buf);
    ssize_t n = uring_reader_next(rd->r, buf);
    if (n < 0)
        return log_errnum((int)-n, "could not read \"%s\"", rd->path);
    return n;
}

ssize_t storage_read_data(storage_read *rd, const void **buf)
{
    const void *raw;
    ssize_t n;

    if (!rd->dec)
        return raw_read(rd, buf);
    rd->plain_len = 0;
    while (rd->plain_len == 0 && !rd->done) {
        int r = 0;
        n = raw_read(rd, &raw);
        if (n < 0)
            return -1;
        if (n > 0)
            r = cipher_dec_write(rd->dec, raw, (size_t)n);
        if (n == 0) {
            rd->done = 1;
            r = cipher_dec_finish(rd->dec);
        }
        if (r != 0) {
            rd->mismatch = r == RS_MISMATCH;
            return -1;
        }
    }
    *buf = rd->plain;
    return (ssize_t)rd->plain_len;
}

int storage_read_mismatch(const storage_read *rd) { return rd->mismatch; }

int64_t storage_read_size(const storage_read *rd)
{
    return rd->s3 ? s3_storage_read_size(rd->s3) : rd->size;
}

void storage_read_free(storage_read *rd)
{
    if (!rd)
        return;
    cipher_dec_free(rd->dec);
    if (rd->plain)
        explicit_bzero(rd->plain, rd->plain_cap);
    free(rd->plain);
    s3_storage_read_free(rd->s3);
    uring_reader_free(rd->r);
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd->path);
    free(rd);
}

int storage_get(storage *st, const char *key, size_t max, char **buf, size_t *len)
{
    storage_read *rd;
    const void *chunk;
    ssize_t n;
    size_t used = 0, cap;
    char *b = NULL, *nb;
    int ret;

    *buf = NULL;
    if (st->s3 && !sealed(st, key))
        return s3_storage_get(st->s3, key, max, buf, len);
    ret = storage_read_open(st, key, &rd);
    if (ret != 0)
        return ret;
    /* the stored size when known (a sealed object's plaintext is a little smaller) */
    cap = storage_read_size(rd) > 0 ? (size_t)storage_read_size(rd) : 65536;
    if (cap > max)
        cap = max;
    ret = -1;
    while ((n = storage_read_data(rd, &chunk)) > 0) {
        if (used + (size_t)n > max) {
            log_error("\"%s/%s\" is too large (over %zu bytes)", storage_location(st), key, max);
            goto out;
        }
        if (!b || used + (size_t)n > cap) {
            while (used + (size_t)n > cap)
                cap *= 2;
            if (!(nb = realloc(b, cap + 1))) {
                log_error("out of memory");
                goto out;
            }
            b = nb;
        }
        memcpy(b + used, chunk, (size_t)n);
        used += (size_t)n;
    }
    if (n < 0) {
        ret = storage_read_mismatch(rd) ? RS_MISMATCH : -1;
        goto out;
    }
    if (!b && !(b = malloc(1))) {
        log_error("out of memory");
        goto out;
    }
    b[used] = '\0';
    *buf = b;
    b = NULL;
    if (len)
        *len = used;
    ret = 0;
out:
    free(b);
    storage_read_free(rd);
    return ret;
}

int storage_read_tail(storage *st, const char *key, void *buf, size_t len, int64_t *size)
{
    uint8_t tail[CIPHER_TAIL_SIZE], plain[CIPHER_TAIL_PLAIN];
    size_t pl = 0;
    uint64_t total = 0;
    int ret;

    if (!sealed(st, key))
        return read_tail(st, key, buf, len, size);
    if (len > CIPHER_TAIL_PLAIN)
        return log_error("internal error: a tail of %zu bytes of a sealed object", len);
    char name[PATH_MAX];
    ret = read_tail(st, key, tail, sizeof(tail), NULL);
    if (ret == 0) {
        const cipher_key *k = st->ck;
        const char *nm = seal_name(key, name, sizeof(name));
        if (st->ck_old && cipher_tail_fits(st->ck, nm, tail) == 0 &&
            cipher_tail_fits(st->ck_old, nm, tail) == 1)
            k = st->ck_old;
        ret = cipher_tail_open(k, nm, tail, plain, &pl, &total);
    }
    if (ret == 0 && pl < len)
        ret = log_error("\"%s/%s\" is truncated (%llu bytes)", storage_location(st), key,
                        (unsigned long long)total);
    if (ret == 0) {
        memcpy(buf, plain + pl - len, len);
        if (size)
            *size = (int64_t)total;
    }
    explicit_bzero(plain, sizeof(plain));
    return ret;
}

static int read_tail(storage *st, const char *key, void *buf, size_t len, int64_t *size)
{
    char *path;
    int fd, ret = -1;
    struct stat sb;
    ssize_t n;

    if (st->s3)
        return s3_storage_read_tail(st->s3, key, buf, len, size);
    if (!storage_key_valid(key))
        return bad_key(key);
    path = path_of(st, key);
    if (!path)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = errno == ENOENT ? missing(st, path) : log_errno("could not open \"%s\"", path);
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        log_errno("could not stat \"%s\"", path);
        goto out;
    }
    if ((uint64_t)sb.st_size < len) {
        log_error("\"%s\" is truncated (%lld bytes)", path, (long long)sb.st_size);
        goto out;
    }
    n = pread(fd, buf, len, sb.st_size - (off_t)len);
    if (n != (ssize_t)len) {
        if (n < 0)
            log_errno("could not read \"%s\"", path);
        else
            log_error("could not read \"%s\": short read", path);
        goto out;
    }
    if (size)
        *size = sb.st_size;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return ret;
}

int storage_stat(storage *st, const char *key, int64_t *size, int64_t *mtime)
{
    char *path;
    struct stat sb;
    int ret = 0;

    if (st->s3)
        return s3_storage_stat(st->s3, key, size, mtime);
    if (!storage_key_valid(key))
        return bad_key(key);
    path = path_of(st, key);
    if (!path)
        return -1;
    if (stat(path, &sb) != 0)
        ret = errno == ENOENT ? missing(st, path) : log_errno("could not stat \"%s\"", path);
    else if (!S_ISREG(sb.st_mode))
        ret = log_error("\"%s\" is not a regular file", path);
    else {
        if (size)
            *size = sb.st_size;
        if (mtime)
            *mtime = sb.st_mtime;
    }
    free(path);
    return ret;
}

/* list_dir -- recurse below root/rel, calling cb for every regular file. */
static int list_dir(storage *st, char *rel, size_t rel_len, storage_list_fn cb, void *arg)
{
    char *path = path_of(st, rel);
    DIR *d;
    struct dirent *de;
    int ret = 0;

    if (!path)
        return -1;
    d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            ret = errno == ENOENT ? (missing(st, path) < 0 ? -1 : 0) : 0;
        else
            ret = log_errno("could not open directory \"%s\"", path);
        free(path);
        return ret;
    }
    while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        struct stat sb;
        if (de->d_name[0] == '.')
            continue; /* ., .., temp files, folders being deleted */
        if (rel_len + n + 2 >= PATH_MAX) {
            ret = log_error("path too long under \"%s\"", path);
            break;
        }
        if (rel_len)
            rel[rel_len] = '/';
        memcpy(rel + rel_len + (rel_len ? 1 : 0), de->d_name, n + 1);
        size_t child_len = rel_len + (rel_len ? 1 : 0) + n;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno != ENOENT)
                ret = log_errno("could not stat \"%s/%s\"", path, de->d_name);
        } else if (S_ISDIR(sb.st_mode)) {
            ret = list_dir(st, rel, child_len, cb, arg);
        } else if (S_ISREG(sb.st_mode)) {
            ret = cb(arg, rel, sb.st_size, sb.st_mtime);
        }
        rel[rel_len] = '\0';
    }
    if (ret == 0 && errno != 0)
        ret = log_errno("could not read directory \"%s\"", path);
    closedir(d);
    free(path);
    return ret;
}

int storage_list(storage *st, const char *prefix, storage_list_fn cb, void *arg)
{
    char rel[PATH_MAX];
    size_t n = strlen(prefix);

    if (st->s3)
        return s3_storage_list(st->s3, prefix, cb, arg);
    if (!prefix_valid(prefix))
        return bad_key(prefix);
    memcpy(rel, prefix, n + 1);
    if (n && rel[n - 1] == '/')
        rel[--n] = '\0';
    return list_dir(st, rel, n, cb, arg);
}

static int any_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    (void)arg;
    (void)key;
    (void)size;
    (void)mtime;
    return 1; /* stop at the first object */
}

int storage_any(storage *st, const char *prefix)
{
    int r = storage_list(st, prefix, any_cb, NULL);
    return r < 0 ? -1 : r > 0;
}

int storage_remove(storage *st, const char *key)
{
    char *path;
    int ret = 0;

    if (st->s3)
        return s3_storage_remove(st->s3, key);
    if (!storage_key_valid(key))
        return bad_key(key);
    path = path_of(st, key);
    if (!path)
        return -1;
    if (unlink(path) != 0 && errno != ENOENT)
        ret = log_errno("could not remove \"%s\"", path);
    free(path);
    return ret;
}

int storage_remove_prefix(storage *st, const char *prefix)
{
    char key[PATH_MAX], *path = NULL, *hidden = NULL, *slash;
    size_t n = strlen(prefix);
    int ret = -1;

    if (st->s3)
        return s3_storage_remove_prefix(st->s3, prefix);
    if (!prefix_valid(prefix) || n == 0 || n >= sizeof(key))
        return bad_key(prefix);
    memcpy(key, prefix, n + 1);
    if (key[n - 1] == '/')
        key[n - 1] = '\0';
    path = path_of(st, key);
    hidden = path ? malloc(strlen(path) + 16) : NULL;
    if (!hidden) {
        log_error("out of memory");
        goto out;
    }
    /* Hide the folder first (one durable rename), so a crash halfway through the
     * removal never leaves a half-deleted set under its visible name. */
    slash = strrchr(path, '/');
    sprintf(hidden, "%.*s/.%s.deleting", (int)(slash - path), path, slash + 1);
    if (durable_remove_tree(hidden) != 0)
        goto out;
    if (rename(path, hidden) != 0) {
        if (errno == ENOENT) {
            ret = 0;
            goto out;
        }
        log_errno("could not rename \"%s\" to \"%s\"", path, hidden);
        goto out;
    }
    *slash = '\0';
    if (durable_fsync_path(path) != 0)
        goto out;
    ret = durable_remove_tree(hidden);
out:
    free(path);
    free(hidden);
    return ret;
}

int storage_sweep_deleting(storage *st, const char *prefix, size_t *n)
{
    char key[PATH_MAX], *dir = NULL;
    size_t len = strlen(prefix), count = 0;
    DIR *d = NULL;
    struct dirent *de;
    int ret = -1;

    if (n)
        *n = 0;
    if (st->s3)
        return 0;
    if (!prefix_valid(prefix) || len == 0 || len >= sizeof(key))
        return bad_key(prefix);
    memcpy(key, prefix, len + 1);
    if (key[len - 1] == '/')
        key[len - 1] = '\0';
    dir = path_of(st, key);
    if (!dir)
        goto out;
    d = opendir(dir);
    if (!d) {
        ret = errno == ENOENT ? 0 : log_errno("could not open directory \"%s\"", dir);
        goto out;
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char *p;
        if (de->d_name[0] != '.' || l <= 10 || strcmp(de->d_name + l - 9, ".deleting") != 0)
            continue;
        p = malloc(strlen(dir) + l + 2);
        if (!p) {
            log_error("out of memory");
            goto out;
        }
        sprintf(p, "%s/%s", dir, de->d_name);
        log_notice("removing \"%s\", left by an interrupted removal", p);
        if (durable_remove_tree(p) != 0) {
            free(p);
            goto out;
        }
        free(p);
        count++;
    }
    if (n)
        *n = count;
    ret = 0;
out:
    if (d)
        closedir(d);
    free(dir);
    return ret;
}

int storage_rename_prefix(storage *st, const char *from, const char *to)
{
    char *a = NULL, *b = NULL;
    int ret = -1;

    if (st->s3)
        return s3_storage_rename_prefix(st->s3, from, to);
    if (!storage_key_valid(from))
        return bad_key(from);
    if (!storage_key_valid(to))
        return bad_key(to);
    a = path_of(st, from);
    b = path_of(st, to);
    if (!a || !b)
        goto out;
    ret = durable_rename_noreplace(a, b);
    if (ret != 0)
        goto out;
    *strrchr(b, '/') = '\0';
    ret = durable_fsync_path(b);
out:
    free(a);
    free(b);
    return ret;
}

int storage_lock_take(storage *st, const char *name, int exclusive, int wait, storage_lock **out)
{
    char key[256], *path = NULL;
    storage_lock *lk = NULL;
    int fd = -1, ret = -1, ro = 0;

    *out = NULL;
    if (st->s3) {
        s3_lock *s3l;
        ret = s3_storage_lock_take(st->s3, name, exclusive, wait, &s3l);
        if (ret != 0)
            return ret;
        if (!(lk = calloc(1, sizeof(*lk)))) {
            s3_storage_lock_release(s3l);
            return log_error("out of memory");
        }
        lk->fd = -1;
        lk->s3 = s3l;
        *out = lk;
        return 0;
    }
    if (snprintf(key, sizeof(key), "locks/%s.lock", name) >= (int)sizeof(key) || !storage_key_valid(key))
        return bad_key(name);
    path = path_of(st, key);
    if (!path)
        goto out;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        char *dir = path_of(st, "locks");
        if (!dir)
            goto out;
        /* 0755, like the lock files' 0644: a reader of another user locks too */
        if (exclusive ? durable_mkdirs_owned(dir, 0755, st->owner_uid, st->owner_gid) != 0
                      : mkdir(dir, 0755) != 0 ? errno != EEXIST : storage_chown(st, dir) != 0) {
            if (!exclusive)
                ret = RS_NOT_FOUND; /* read-only repository: the caller decides */
            free(dir);
            goto out;
        }
        free(dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    }
    /* a shared lock needs no write access: a read-only repository still locks */
    if (fd < 0 && !exclusive && (errno == EACCES || errno == EROFS || errno == EPERM)) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ro = 1;
    }
    if (fd < 0 && !exclusive && (errno == EACCES || errno == EROFS || errno == EPERM)) {
        ret = RS_NOT_FOUND;
        goto out;
    }
    if (fd < 0) {
        log_errno("could not open lock file \"%s\"", path);
        goto out;
    }
    if (!ro && st->owner_uid != (uid_t)-1 && fchown(fd, st->owner_uid, st->owner_gid) != 0) {
        log_errno("could not change the owner of lock file \"%s\"", path);
        goto out;
    }
    while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            ret = RS_EXISTS;
            goto out;
        }
        log_errno("could not lock \"%s\"", path);
        goto out;
    }
    lk = malloc(sizeof(*lk));
    if (!lk) {
        log_error("out of memory");
        goto out;
    }
    lk->fd = fd;
    lk->s3 = NULL;
    fd = -1;
    *out = lk;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return ret;
}

void storage_lock_release(storage_lock *lk)
{
    if (!lk)
        return;
    s3_storage_lock_release(lk->s3);
    if (lk->fd >= 0)
        close(lk->fd);
    free(lk);
}

int storage_lock_take_timeout(storage *st, const char *name, int exclusive, int timeout_s,
                              storage_lock **out)
{
    struct timespec t0, now;
    int r;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        r = storage_lock_take(st, name, exclusive, 0, out);
        if (r != RS_EXISTS)
            return r;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= timeout_s)
            return RS_EXISTS;
        if (st->s3)
            sleep(1);
        else
            usleep(100 * 1000);
    }
}

int storage_lock_timeout(void)
{
    const char *v = getenv("RAGSAFE_LOCK_TIMEOUT");
    char *end;
    long n;

    if (!v || !*v)
        return 60;
    n = strtol(v, &end, 10);
    if (*end || n < 0 || n > 86400) {
        log_warning("ignoring RAGSAFE_LOCK_TIMEOUT=\"%s\": not a number of seconds (0..86400)", v);
        return 60;
    }
    return (int)n;
}

int storage_is_s3(const storage *st)
{
    return st->s3 != NULL;
}

int storage_reader_lock(storage *st, storage_lock **out)
{
    const char *hook = getenv("RAGSAFE_TEST_READER_SLEEP");
    int t = storage_lock_timeout(), r;

    *out = NULL;
    r = storage_lock_take_timeout(st, STORAGE_RETENTION_LOCK, 0, t, out);
    if (r == RS_EXISTS) {
        log_error("repository \"%s\" is locked by a running ragsafe-pitr expire (waited %d s)",
                  storage_location(st), t);
        log_hint("try again when it has finished, or wait longer with RAGSAFE_LOCK_TIMEOUT");
        return RS_EXISTS;
    }
    if (r == RS_NOT_FOUND) {
        log_warning("could not take the reader lock of \"%s\": its locks/ folder is not "
                    "writable; an expire may delete what this reads", storage_location(st));
        r = 0;
    }
    if (r != 0)
        return -1;
    if (hook && *hook)
        sleep((unsigned)atoi(hook));
    return 0;
}
