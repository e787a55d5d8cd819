/*
 * extract.c -- unpack (or only verify) one backup tar object from the repository.
 *
 * Pipeline: storage_read chunks -> SHA-256 of the stored bytes (backup.json's
 * digest) -> zst_reader (checks the object's own trailer at the end) -> libarchive
 * pulling the decompressed tar through a read callback -> our own file writer.
 * Every regular file is hashed while it is written and compared with its
 * backup_manifest entry; an entry that is not a plain relative path inside the
 * destination is refused. Nothing is fsync'd here: the caller fsyncs the whole tree
 * once (durable_fsync_tree).
 *
 * Delta (eo->delta): the destination holds a stale copy. A file already there whose
 * size and SHA-256 match its manifest entry is kept (its tar data is still read and
 * checked, only not written); a stale file is replaced by one written beside it
 * (NAME.ragsafe-delta) and renamed over it once checked, a directory in its place is
 * removed.
 * The tar's directories are collected for the caller, who removes the others.
 *
 * Results: 0; RS_MISMATCH for a damaged backup (a bad file, an entry that appears
 * twice, a tar or object that does not parse or authenticate); -1 for I/O: the object
 * could not be read, or a local write failed (ENOSPC...). A write error stops the
 * extraction at once and is reported once, where it happened.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "durable.h"
#include "log.h"
#include "pitr.h"
#include "sha256.h"
#include "zst.h"

#define FEED_SLICE 8192

typedef struct xsrc {
    const char *key;
    storage_read *rd;
    zst_reader *zr;
    sha256_ctx sha;
    const uint8_t *in;
    size_t inlen;
    int eof;
    int zresult;          /* zst_reader_finish result once eof */
    int failed;           /* a read or decompression error (reported) */
    char *out;
    size_t outlen, outcap;
    uint64_t stored;
} xsrc;

static int sink(void *arg, const void *buf, size_t len)
{
    xsrc *x = arg;
    if (x->outlen + len > x->outcap) {
        size_t nc = x->outcap ? x->outcap : 1 << 20;
        while (nc < x->outlen + len)
            nc *= 2;
        char *n = realloc(x->out, nc);
        if (!n)
            return log_error("out of memory");
        x->out = n;
        x->outcap = nc;
    }
    memcpy(x->out + x->outlen, buf, len);
    x->outlen += len;
    return 0;
}

/* pull -- produce the next piece of decompressed tar into x->out. 0 at the end. */
static ssize_t pull(xsrc *x)
{
    x->outlen = 0;
    while (x->outlen == 0) {
        if (x->inlen == 0) {
            const void *p;
            if (x->eof)
                return 0;
            ssize_t n = storage_read_data(x->rd, &p);
            if (n < 0) {
                x->failed = 1;
                if (storage_read_mismatch(x->rd))
                    x->zresult = RS_MISMATCH; /* sealed and it did not authenticate */
                return -1;
            }
            if (n == 0) {
                zst_meta meta;
                x->eof = 1;
                x->zresult = zst_reader_finish(x->zr, &meta);
                if (x->zresult != 0) {
                    x->failed = 1;
                    return -1;
                }
                return (ssize_t)x->outlen;
            }
            if (sha256_update(&x->sha, p, (size_t)n) != 0) {
                x->failed = 1;
                return -1;
            }
            x->stored += (uint64_t)n;
            x->in = p;
            x->inlen = (size_t)n;
        }
        size_t take = x->inlen < FEED_SLICE ? x->inlen : FEED_SLICE;
        if (zst_reader_write(x->zr, x->in, take) != 0) {
            x->failed = 1;
            if (zst_reader_damaged(x->zr))
                x->zresult = RS_MISMATCH; /* not a zstd stream: damage, as in verify */
            return -1;
        }
        x->in += take;
        x->inlen -= take;
    }
    return (ssize_t)x->outlen;
}

/*
 * The decompressing thread: reading, hashing and decompressing the object runs in
 * a second thread that hands 1 MiB chunks of tar to libarchive through a small
 * queue, so decompression overlaps parsing, hashing and writing the files.
 */
#define XQ_DEPTH 4
#define XQ_CHUNK (1u << 20)

typedef struct xchunk {
    char *buf;
    size_t len;
} xchunk;

typedef struct xqueue {
    xsrc *x;
    pthread_t th;
    int started, joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    xchunk q[XQ_DEPTH];
    size_t head, count;
    int done;      /* producer finished (x->eof or x->failed tell how) */
    int stop;      /* consumer gave up */
    char *cur;     /* the chunk libarchive holds */
    progress *pg;  /* or NULL */
} xqueue;

static int xq_push(xqueue *xq, char *buf, size_t len)
{
    pthread_mutex_lock(&xq->mu);
    while (xq->count == XQ_DEPTH && !xq->stop)
        pthread_cond_wait(&xq->cv, &xq->mu);
    if (xq->stop) {
        pthread_mutex_unlock(&xq->mu);
        free(buf);
        return -1;
    }
    xq->q[(xq->head + xq->count) % XQ_DEPTH] = (xchunk){buf, len};
    xq->count++;
    pthread_cond_broadcast(&xq->cv);
    pthread_mutex_unlock(&xq->mu);
    return 0;
}

static void *xq_main(void *arg)
{
    xqueue *xq = arg;
    xsrc *x = xq->x;
    char *chunk = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        ssize_t n = pull(x);
        if (n <= 0)
            break;
        if (len + (size_t)n > cap) {
            size_t nc = len + (size_t)n > XQ_CHUNK ? len + (size_t)n : XQ_CHUNK;
            char *bigger = realloc(chunk, nc);
            if (!bigger) {
                log_error("out of memory");
                x->failed = 1;
                break;
            }
            chunk = bigger;
            cap = nc;
        }
        memcpy(chunk + len, x->out, (size_t)n);
        len += (size_t)n;
        if (len >= XQ_CHUNK) {
            int r = xq_push(xq, chunk, len); /* takes chunk either way */
            chunk = NULL;
            len = cap = 0;
            if (r != 0)
                break;
        }
    }
    if (chunk && len && !x->failed)
        xq_push(xq, chunk, len);
    else
        free(chunk);
    pthread_mutex_lock(&xq->mu);
    xq->done = 1;
    pthread_cond_broadcast(&xq->cv);
    pthread_mutex_unlock(&xq->mu);
    return NULL;
}

/* xq_pop -- next chunk (caller owns it), NULL at the end. */
static char *xq_pop(xqueue *xq, size_t *len)
{
    char *b = NULL;
    pthread_mutex_lock(&xq->mu);
    while (xq->count == 0 && !xq->done)
        pthread_cond_wait(&xq->cv, &xq->mu);
    if (xq->count) {
        b = xq->q[xq->head].buf;
        *len = xq->q[xq->head].len;
        xq->head = (xq->head + 1) % XQ_DEPTH;
        xq->count--;
        pthread_cond_broadcast(&xq->cv);
    }
    pthread_mutex_unlock(&xq->mu);
    return b;
}

/* xq_end -- drain (read the object to its end: the trailer is checked there) or
 * stop the producer, then join it. Safe to call twice. */
static void xq_end(xqueue *xq, int drain)
{
    size_t len;
    char *b;
    if (!xq->started || xq->joined)
        return;
    if (drain) {
        while ((b = xq_pop(xq, &len)) != NULL)
            free(b);
    }
    pthread_mutex_lock(&xq->mu);
    xq->stop = 1;
    pthread_cond_broadcast(&xq->cv);
    pthread_mutex_unlock(&xq->mu);
    pthread_join(xq->th, NULL);
    xq->joined = 1;
    for (size_t i = 0; i < xq->count; i++)
        free(xq->q[(xq->head + i) % XQ_DEPTH].buf);
    xq->count = 0;
    free(xq->cur);
    xq->cur = NULL;
    pthread_mutex_destroy(&xq->mu);
    pthread_cond_destroy(&xq->cv);
}

static la_ssize_t read_cb(struct archive *a, void *arg, const void **buf)
{
    xqueue *xq = arg;
    size_t len = 0;
    free(xq->cur);
    xq->cur = xq_pop(xq, &len);
    if (!xq->cur) {
        /* the end: an error, or the object's end */
        pthread_mutex_lock(&xq->mu);
        int failed = xq->x->failed;
        pthread_mutex_unlock(&xq->mu);
        if (failed) {
            archive_set_error(a, EIO, "could not read \"%s\"", xq->x->key);
            return -1;
        }
        return 0;
    }
    *buf = xq->cur;
    if (xq->pg)
        progress_add(xq->pg, len);
    return (la_ssize_t)len;
}

/* safe_relpath -- normalize a tar entry name into out; -1 when it would escape. */
static int safe_relpath(const char *name, char *out, size_t len)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    if (name[0] == '/' || name[0] == '\0')
        return -1;
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] == '/')
        n--;
    if (n == 0 || n >= len)
        return -1;
    memcpy(out, name, n);
    out[n] = '\0';
    /* every component must be a plain name */
    const char *p = out;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t cl = e ? (size_t)(e - p) : strlen(p);
        if (cl == 0 || (cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
            return -1;
        p += cl;
        if (*p == '/')
            p++;
    }
    return 0;
}

/* join_path -- "dir/rel" into out; -1 reported when too long. */
static int join_path(char *out, size_t len, const char *dir, const char *rel)
{
    int n = snprintf(out, len, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= len)
        return log_error("path too long: \"%s/%s\"", dir, rel);
    return 0;
}

/* extract_make_dirs -- create every directory of rel under dest (0700), refusing to
 * pass through anything that is not a real directory (a symlink planted by an entry). */
int extract_make_dirs(const char *dest, const char *rel, int include_last)
{
    char path[PATH_MAX];
    size_t dl = strlen(dest);
    if (dl + 1 + strlen(rel) + 1 > sizeof(path))
        return log_error("path too long under \"%s\"", dest);
    if (join_path(path, sizeof(path), dest, rel) != 0)
        return -1;
    char *p = path + dl + 1;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash && !include_last)
            break;
        if (slash)
            *slash = '\0';
        struct stat sb;
        if (lstat(path, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode))
                return log_error("could not create \"%s\": exists and is not a directory", path);
        } else if (errno != ENOENT || mkdir(path, 0700) != 0) {
            return log_errno("could not create directory \"%s\"", path);
        }
        if (!slash)
            break;
        *slash = '/';
        p = slash + 1;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len, const char *path)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return log_errno("could not write \"%s\"", path);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* file_matches -- 1 when the regular file path has exactly the size and SHA-256 of
 * mf, 0 when not (or mf has no SHA-256), -1 reported. */
static int file_matches(const char *path, const struct stat *sb, const manifest_file *mf)
{
    if (!mf || !mf->has_sha256 || (uint64_t)sb->st_size != mf->size)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret = -1;
    sha256_ctx sha = {0};
    uint8_t dig[SHA256_LEN];
    char *buf = malloc(1 << 20);
    uint64_t total = 0;
    if (fd < 0) {
        log_errno("could not open \"%s\"", path);
        goto out;
    }
    if (!buf) {
        log_error("out of memory");
        goto out;
    }
    if (sha256_init(&sha) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_errno("could not read \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        if (sha256_update(&sha, buf, (size_t)n) != 0)
            goto out;
        total += (uint64_t)n;
    }
    if (sha256_final(&sha, dig) != 0)
        goto out;
    ret = total == mf->size && memcmp(dig, mf->sha256, SHA256_LEN) == 0;
out:
    if (fd >= 0)
        close(fd);
    sha256_release(&sha);
    free(buf);
    return ret;
}

/* delta_prepare -- for a delta: keep path when it matches mf (*keep = 1); else a
 * directory in its place is removed, and a stale file or link is left to be replaced
 * by a rename (*replace = 1): a failure never leaves a file half written under its
 * own name (global/pg_control is what a rerun of --delta reads first). */
static int delta_prepare(const char *path, const manifest_file *mf, mode_t mode, int *keep,
                         int *replace)
{
    struct stat sb;
    *keep = *replace = 0;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return log_errno("could not stat \"%s\"", path);
    }
    if (S_ISREG(sb.st_mode)) {
        int r = file_matches(path, &sb, mf);
        if (r < 0)
            return -1;
        if (r == 1) {
            *keep = 1;
            if ((sb.st_mode & 0777) != mode && chmod(path, mode) != 0)
                return log_errno("could not change the mode of \"%s\"", path);
            return 0;
        }
    }
    if (S_ISDIR(sb.st_mode))
        return durable_remove_tree(path);
    *replace = 1;
    return 0;
}

int extract_stats_add_dir(extract_stats *s, const char *rel)
{
    if (s->ndirs == s->dircap) {
        size_t nc = s->dircap ? s->dircap * 2 : 64;
        char **n = realloc(s->dirs, nc * sizeof(*n));
        if (!n)
            return log_error("out of memory");
        s->dirs = n;
        s->dircap = nc;
    }
    if (!(s->dirs[s->ndirs] = strdup(rel)))
        return log_error("out of memory");
    s->ndirs++;
    return 0;
}

void extract_stats_release(extract_stats *s)
{
    for (size_t i = 0; i < s->ndirs; i++)
        free(s->dirs[i]);
    free(s->dirs);
    s->dirs = NULL;
    s->ndirs = s->dircap = 0;
}

int db_file_hollow(const char *mpath, const uint32_t *inc, size_t n)
{
    const char *p;
    if (strncmp(mpath, "base/", 5) == 0) {
        p = mpath + 5;
    } else if (strncmp(mpath, "pg_tblspc/", 10) == 0) {
        /* pg_tblspc/TS/PG_15_.../DB/file */
        p = strchr(mpath + 10, '/');
        p = p ? strchr(p + 1, '/') : NULL;
        if (!p)
            return 0;
        p++;
    } else {
        return 0;
    }
    char *end;
    unsigned long oid = strtoul(p, &end, 10);
    if (end == p || *end != '/')
        return 0;
    if (strcmp(end + 1, "PG_VERSION") == 0 || strcmp(end + 1, "pg_filenode.map") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (inc[i] == oid)
            return 0;
    return 1;
}

/*
 * one_file -- stream a regular entry to dest (if any), hash it, check it against the
 * manifest. 0 | RS_MISMATCH (reported) | -1.
 */
static int one_file(struct archive *a, struct archive_entry *e, const char *rel, const char *key,
                    const extract_opts *eo, extract_stats *stats)
{
    char path[PATH_MAX], mpath[PATH_MAX], tmp[PATH_MAX + 16] = "";
    int fd = -1, ret = -1, n, kept = 0, replace = 0;
    sha256_ctx sha = {0};
    uint8_t dig[SHA256_LEN];
    uint64_t size = 0;
    const manifest_file *mf = NULL;

    n = snprintf(mpath, sizeof(mpath), "%s%s", eo->mprefix ? eo->mprefix : "", rel);
    if (n < 0 || (size_t)n >= sizeof(mpath))
        return log_error("path too long: \"%s%s\"", eo->mprefix ? eo->mprefix : "", rel);
    if (eo->m && (mf = manifest_find(eo->m, mpath)) != NULL && eo->seen) {
        /* a second copy of an entry: the tar is damaged, whichever copy is right */
        if (eo->seen[mf - eo->m->files]) {
            log_error("tar entry \"%s\" appears twice in \"%s\"", rel, key);
            stats->bad++;
            return RS_MISMATCH;
        }
        eo->seen[mf - eo->m->files] = 1;
    }
    if (sha256_init(&sha) != 0)
        goto out;
    int hollow = eo->ndb_include && db_file_hollow(mpath, eo->db_include, eo->ndb_include);
    int skip = eo->only && strcmp(mpath, eo->only) != 0;
    if (eo->dest && !skip) {
        if (extract_make_dirs(eo->dest, rel, 0) != 0)
            goto out;
        if (join_path(path, sizeof(path), eo->dest, rel) != 0)
            goto out;
        mode_t mode = archive_entry_perm(e) & 0777;
        if (!mode)
            mode = 0600;
        if (eo->delta && delta_prepare(path, mf, mode, &kept, &replace) != 0)
            goto out;
        /* kept: it matches its manifest entry; its tar data is still read and checked
         * below, only not written. replace: written beside it, then renamed over it. */
        if (replace) {
            snprintf(tmp, sizeof(tmp), "%s.ragsafe-delta", path);
            if (unlink(tmp) != 0 && errno != ENOENT) {
                log_errno("could not remove \"%s\"", tmp);
                goto out;
            }
        }
        if (!kept)
            fd = open(replace ? tmp : path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      mode);
        if (!kept && fd < 0 && errno == EEXIST) {
            /* the destination started empty: an earlier entry made this name */
            log_error("tar entry \"%s\" appears twice in \"%s\"", rel, key);
            stats->bad++;
            ret = RS_MISMATCH;
            goto out;
        }
        if (!kept && fd < 0) {
            log_errno("could not create \"%s\"", replace ? tmp : path);
            tmp[0] = '\0';
            goto out;
        }
    }
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            /* the tar itself is damaged (a read error of the object is told apart by
             * the caller: it comes first) */
            log_error("could not read \"%s\" from the backup: %s", rel, archive_error_string(a));
            stats->bad++;
            ret = RS_MISMATCH;
            goto out;
        }
        if ((uint64_t)off != size) {
            /* sparse entries: PostgreSQL never writes them; fill the hole */
            static const char zeros[8192];
            while (size < (uint64_t)off) {
                size_t z = (uint64_t)off - size < sizeof(zeros) ? (size_t)((uint64_t)off - size)
                                                                : sizeof(zeros);
                if (sha256_update(&sha, zeros, z) != 0 ||
                    (fd >= 0 && !hollow && write_all(fd, zeros, z, path) != 0))
                    goto out;
                size += z;
            }
        }
        if (sha256_update(&sha, buf, len) != 0 ||
            (fd >= 0 && !hollow && write_all(fd, buf, len, path) != 0))
            goto out;
        size += len;
    }
    if (fd >= 0 && hollow) {
        /* checked like the others, written as a hole of its size */
        if (ftruncate(fd, (off_t)size) != 0) {
            log_errno("could not extend \"%s\"", path);
            goto out;
        }
        stats->hollow++;
        stats->hollow_bytes += size;
    }
    /* start writeback now, so the caller's final fsync of the tree finds most of the
     * data already on its way (not a durability step: that fsync is) */
    if (fd >= 0 && size > 0 && !eo->no_writeback)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (fd >= 0 && close(fd) != 0) {
        fd = -1;
        log_errno("could not close \"%s\"", path);
        goto out;
    }
    fd = -1;
    if (sha256_final(&sha, dig) != 0)
        goto out;
    stats->files++;
    stats->bytes += size;
    if (kept) {
        stats->kept++;
        stats->kept_bytes += size;
    }
    if (eo->m) {
        if (!mf) {
            log_error("file \"%s\" is in the backup but not in its backup_manifest", mpath);
            stats->bad++;
            ret = RS_MISMATCH;
            goto out;
        }
        if (mf->size != size) {
            log_error("file \"%s\" has size %llu, backup_manifest says %llu", mpath,
                      (unsigned long long)size, (unsigned long long)mf->size);
            stats->bad++;
            ret = RS_MISMATCH;
            goto out;
        }
        if (mf->has_sha256 && memcmp(mf->sha256, dig, SHA256_LEN) != 0) {
            log_error("checksum mismatch for file \"%s\" (backup_manifest)", mpath);
            stats->bad++;
            ret = RS_MISMATCH;
            goto out;
        }
    }
    /* checked: only now does it take the stale file's place */
    if (replace && rename(tmp, path) != 0) {
        log_errno("could not rename \"%s\" to \"%s\"", tmp, path);
        goto out;
    }
    tmp[0] = '\0';
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        (void)unlink(tmp);
    sha256_release(&sha);
    return ret;
}

int extract_object(storage *st, const char *key, const extract_opts *eo, extract_stats *stats)
{
    xsrc x;
    xqueue xq;
    struct archive *a = NULL;
    struct archive_entry *e;
    int ret = -1, bad = 0;

    if (chunked_key(key))
        return chunked_extract(st, key, eo, stats);

    memset(&x, 0, sizeof(x));
    memset(&xq, 0, sizeof(xq));
    x.key = key;
    int r = storage_read_open(st, key, &x.rd);
    if (r == RS_NOT_FOUND) {
        log_error("backup object \"%s\" is missing", key);
        return RS_MISMATCH;
    }
    if (r != 0)
        return -1;
    if (sha256_init(&x.sha) != 0)
        goto out;
    x.zr = zst_reader_new(sink, &x);
    if (!x.zr)
        goto out;
    xq.x = &x;
    xq.pg = eo->pg;
    pthread_mutex_init(&xq.mu, NULL);
    pthread_cond_init(&xq.cv, NULL);
    if (pthread_create(&xq.th, NULL, xq_main, &xq) != 0) {
        pthread_mutex_destroy(&xq.mu);
        pthread_cond_destroy(&xq.cv);
        log_error("could not start the decompressing thread");
        goto out;
    }
    xq.started = 1;
    a = archive_read_new();
    if (!a) {
        log_error("out of memory");
        goto out;
    }
    archive_read_support_format_tar(a);
    if (archive_read_open(a, &xq, NULL, read_cb, NULL) != ARCHIVE_OK) {
        if (!x.failed)
            log_error("could not read tar in \"%s\": %s", key, archive_error_string(a));
        bad = 1; /* unless the object could not be read (x.failed, checked first) */
        goto out_fail;
    }
    for (;;) {
        if (eo->stop && *eo->stop)
            goto out_write; /* told to stop (restore: a signal, a refused plan): it says so */
        r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            if (!x.failed)
                log_error("could not read tar in \"%s\": %s", key, archive_error_string(a));
            bad = 1;
            goto out_fail;
        }
        char rel[PATH_MAX];
        const char *name = archive_entry_pathname(e);
        if (!name || safe_relpath(name, rel, sizeof(rel)) != 0) {
            log_error("refusing tar entry \"%s\" in \"%s\": not a relative path inside the "
                      "target", name ? name : "(null)", key);
            bad = 1;
            goto out_fail;
        }
        switch (archive_entry_filetype(e)) {
        case AE_IFDIR:
            if (eo->dest && extract_make_dirs(eo->dest, rel, 1) != 0)
                goto out_write;
            if (eo->delta && extract_stats_add_dir(stats, rel) != 0)
                goto out_write;
            break;
        case AE_IFREG:
            if (archive_entry_hardlink(e)) {
                log_error("refusing hard link entry \"%s\" in \"%s\"", rel, key);
                bad = 1;
                goto out_fail;
            }
            r = one_file(a, e, rel, key, eo, stats);
            if (r == RS_MISMATCH) {
                bad = 1;
                break; /* keep checking the rest, report them all */
            }
            if (r != 0)
                goto out_write;
            break;
        case AE_IFLNK: {
            const char *target = archive_entry_symlink(e);
            const char *slash = strchr(rel, '/');
            if (strncmp(rel, "pg_tblspc/", 10) != 0 || strchr(slash + 1, '/') || !target ||
                target[0] != '/') {
                log_error("refusing symbolic link entry \"%s\" in \"%s\"", rel, key);
                bad = 1;
                goto out_fail;
            }
            if (eo->dest && !eo->no_links) {
                char path[PATH_MAX];
                if (extract_make_dirs(eo->dest, rel, 0) != 0)
                    goto out_write;
                if (join_path(path, sizeof(path), eo->dest, rel) != 0)
                    goto out_write;
                if (symlink(target, path) != 0) {
                    if (errno == EEXIST) {
                        log_error("tar entry \"%s\" appears twice in \"%s\"", rel, key);
                        stats->bad++;
                        bad = 1;
                        break;
                    }
                    log_errno("could not create symbolic link \"%s\"", path);
                    goto out_write;
                }
            }
            break;
        }
        default:
            log_error("refusing tar entry \"%s\" of unsupported type in \"%s\"", rel, key);
            bad = 1;
            goto out_fail;
        }
    }
    /* the tar ends before the object does (padding, then the trailer): drain it so the
     * trailer is checked too */
    xq_end(&xq, 1);
    goto out_fail;
out_write:
    /* A local write failed (ENOSPC, EIO; reported where it happened). Stop here: the
     * object may well have been read to its end already (the decompressing thread
     * runs up to XQ_DEPTH MiB ahead), and what is left unwritten is not the backup's
     * fault. I/O, unless damage was already found. */
    ret = bad ? RS_MISMATCH : -1;
    goto out;
out_fail:
    xq_end(&xq, 0);
    if (x.failed) {
        if (x.zresult == RS_MISMATCH) {
            log_error("backup object \"%s\" is corrupt", key);
            ret = RS_MISMATCH;
        } else {
            log_error("could not read backup object \"%s\"", key);
            ret = x.zresult != 0 && x.eof ? RS_MISMATCH : -1;
        }
        goto out;
    }
    if (!x.eof) {
        ret = bad ? RS_MISMATCH : -1;
        goto out;
    }
    {
        uint8_t dig[SHA256_LEN];
        if (sha256_final(&x.sha, dig) != 0)
            goto out;
        stats->stored += x.stored;
        if (eo->stored_sha && memcmp(dig, eo->stored_sha, SHA256_LEN) != 0) {
            log_error("checksum mismatch for backup object \"%s\" (backup.json)", key);
            ret = RS_MISMATCH;
            goto out;
        }
    }
    ret = bad ? RS_MISMATCH : 0;
out:
    xq_end(&xq, 0);
    if (a)
        archive_read_free(a);
    zst_reader_free(x.zr);
    sha256_release(&x.sha);
    storage_read_free(x.rd);
    free(x.out);
    return ret;
}
