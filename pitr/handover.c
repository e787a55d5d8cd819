/*
 * handover.c -- the WAL a restore's plan verified, handed to restore_command.
 *
 * The plan decompresses, hashes (SHA-256 against the object) and checks the page
 * header of every segment recovery will need, before anything is written into the
 * data directory. Without a handover each restore_command call during replay then
 * does all of it again. With it, pitr_scan passes each verified segment to
 * handover_put, which writes it (decompressed, exactly the verified bytes) into a
 * private spool beside the data directory: DIR/../.NAME.ragsafe-wal-XXXXXX, made by
 * mkdtemp (mode 0700, the restore's own). Not into the data directory: the plan has
 * not proved the target reachable yet (DESIGN: nothing is written there first), and
 * a refused or failed restore removes the spool (handover_free). The spool is
 * flock'ed while this process lives: one left by a killed restore is removed by the next
 * restore into that directory (restore.c).
 *
 * A writer thread does the writing, from the walk's own buffer once the walk has read
 * the segment (no copy; at most HANDOVER_QUEUE segments queued), so the plan's walk
 * goes on meanwhile; each file's writeback is started as soon as it is written. Each file is written to a temp name,
 * its record X.sum written (walspool.h: the
 * verified digest, the file's identity in this boot, "handover <id>"), then renamed to
 * X. Once the plan is made, handover_keep removes what it does not use (a rescan from
 * another backup), and once the data directory is complete and its restore_command
 * checked, handover_commit renames the spool to pg_wal/ragsafe-prefetch, the
 * directory ragsafe-restore takes spooled segments from by rename (restore_cmd/
 * prefetch.c), re-hashing any whose identity changed (a write, a restart) and never
 * using one that no longer matches. The spool is never fsync'd: a crash changes the
 * boot id, so nothing in it is then used without being hashed again.
 *
 * Space: the spool sits on the data directory's file system (a data directory that is
 * a mount point gets no handover: the rename could not cross). Its bytes are part of
 * the WAL check_space counts for pg_wal, so the check subtracts them (they are already
 * on the disk); while the plan runs, handover_put stops spooling (the rest is fetched
 * by restore_command as without a handover) before free space would drop below what
 * the largest backup needs. Segments recovery does not ask for (it stops earlier,
 * or moves to another timeline) are removed by ragsafe-restore at the end of the
 * archive and by --start once recovery ended.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common.h"
#include "durable.h"
#include "log.h"
#include "pitr.h"
#include "sha256.h"
#include "walfilter.h"
#include "walname.h"
#include "walspool.h"

#define HANDOVER_QUEUE 4 /* segments waiting for the writer: 64 MiB at most */
#define F_WHOLE 1       /* every record that begins and ends in it was looked at */
#define F_TAIL_OPEN 2   /* the record running into the next segment was not */

typedef struct ho_item {
    size_t idx;             /* into names/sizes */
    char *buf;
    size_t len;
    char hex[SHA256_HEX_LEN + 1];
    char name[WAL_NAME_LEN + 1];
    /* a dump's filter (filter_one) */
    uint64_t segno;
    size_t tail;            /* a record running into the next segment starts here */
    int dirty;              /* bytes changed: the digest is computed again */
    unsigned char fstate;   /* F_ flags, into h->fstate once written (under the lock) */
} ho_item;

struct wal_handover {
    char dir[PATH_MAX];     /* the spool while the plan runs */
    char id[PATH_MAX];      /* "handover <spool name>": the record's third line */
    uint64_t reserve;       /* free bytes the spool leaves on its file system */
    uint64_t bytes;         /* spooled or queued */
    char (*names)[WAL_NAME_LEN + 1];
    uint64_t *sizes;
    unsigned char *written; /* the writer wrote it */
    size_t n, cap;
    int stopped;            /* no more spooling: free space, or a write failed */
    int committed;
    /* the writer thread: the plan's walk hands over a copy and goes on */
    pthread_t th;
    int have_th, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ho_item q[HANDOVER_QUEUE];
    size_t qhead, qlen;
    uint64_t qbytes;
    int lockfd;             /* the spool, flock'ed: a later restore removes a spool no
                             * process holds (restore.c: remove_stale_siblings) */
    /* a dump's filter (handover_filter): these databases' page records become no-ops */
    uint32_t filter[64];
    size_t nfilter;
    int filter_set;         /* decided (by the first scan's backup), even as "none" */
    int test_gaps;          /* RAGSAFE_TEST_WAL_FILTER_GAPS: see filter_one */
    unsigned char *fstate;  /* per spooled segment: F_WHOLE, F_TAIL_OPEN (the writer's) */
    uint64_t f_records, f_rewritten, f_bytes, f_joined; /* written by the writer */
    char f_why[200];        /* the first reason a segment was not filtered whole */
};

wal_handover *handover_new(const char *pgdata, uint64_t reserve)
{
    char parent[PATH_MAX], tmpl[PATH_MAX];
    const char *base, *slash = strrchr(pgdata, '/');
    struct stat ps, ds;
    wal_handover *h;
    int l;

    if (pgdata[0] != '/' || !slash || !slash[1])
        return NULL;
    base = slash + 1;
    snprintf(parent, sizeof(parent), "%.*s", slash == pgdata ? 1 : (int)(slash - pgdata), pgdata);
    if (stat(parent, &ps) != 0) {
        log_debug("no WAL handover: \"%s\" does not exist yet", parent);
        return NULL;
    }
    if (stat(pgdata, &ds) == 0 && ds.st_dev != ps.st_dev) {
        log_info("no WAL handover: \"%s\" is a mount point (the verified WAL could not be "
                 "moved into it); restore_command fetches every segment", pgdata);
        return NULL;
    }
    l = snprintf(tmpl, sizeof(tmpl), "%s/.%s.ragsafe-wal-XXXXXX", strcmp(parent, "/") ? parent : "",
                 base);
    if (l <= 0 || (size_t)l >= sizeof(tmpl))
        return NULL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (!mkdtemp(tmpl)) {
        log_info("no WAL handover: could not create \"%s\": %s", tmpl, strerror(errno));
        free(h);
        return NULL;
    }
    snprintf(h->dir, sizeof(h->dir), "%s", tmpl);
    h->lockfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (h->lockfd >= 0 && flock(h->lockfd, LOCK_EX | LOCK_NB) != 0)
        log_debug("could not lock \"%s\": %s", tmpl, strerror(errno));
    snprintf(h->id, sizeof(h->id), "handover %s", strrchr(tmpl, '/') + 1);
    h->reserve = reserve;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    return h;
}

/* stop -- no more spooling; say why once (h->mu held). */
static void stop(wal_handover *h, const char *why, const char *name)
{
    if (!h->stopped)
        log_info("WAL handover stops at \"%s\" (%s): restore_command fetches the segments "
                 "not handed over", name, why);
    h->stopped = 1;
}

/* write_one -- the segment as the file name in the spool: temp, record, rename.
 * 0 | errno. */
static int write_one(const wal_handover *h, const char *name, const ho_item *it)
{
    char tmp[PATH_MAX + 64], dst[PATH_MAX + 64], id[160];
    size_t off = 0;
    int fd, err = 0;

    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", h->dir, name);
    snprintf(dst, sizeof(dst), "%s/%s", h->dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    while (off < it->len) {
        ssize_t w = write(fd, it->buf + off, it->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            break;
        }
        off += (size_t)w;
    }
    /* writeback started now, beside the plan and the extraction: the restore's syncfs,
     * which flushes the whole file system, then finds the spool mostly written (the
     * spool itself need not be durable: see the top of this file) */
    if (!err)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (close(fd) != 0 && !err)
        err = errno;
    /* the record first, then the file under its name: a spooled file is never without it */
    if (!err && (walspool_identity(tmp, 0, id, sizeof(id)) != 0 ||
                 walspool_write_sum(h->dir, name, it->hex, (uint64_t)it->len, id, h->id) != 0 ||
                 rename(tmp, dst) != 0))
        err = errno ? errno : EIO;
    if (err)
        (void)unlink(tmp);
    return err;
}

/* filter_one -- a dump's filter over a verified segment, before it is spooled (the
 * record X.sum then vouches for the bytes as filtered: the same check as for any
 * spooled file whose identity changed). The f_ counters and fstate are the writer's
 * until drain(). */
static void filter_one(wal_handover *h, ho_item *it)
{
    uint32_t tli;
    walfilter_stats st;

    it->tail = 0;
    if (walname_parse(it->name, (uint32_t)it->len, &tli, &it->segno) != 0)
        return;
    if (h->test_gaps && (it->segno & 1)) {
        /* test 086_pitr_dump_filter: odd segments left as they were yet passed as
         * filtered whole, a filter gone wrong that dump.c's fallback must survive */
        it->fstate = F_WHOLE;
        return;
    }
    it->dirty = walfilter_segment((uint8_t *)it->buf, it->len, it->segno, h->filter,
                                  h->nfilter, &st) > 0;
    h->f_records += st.records;
    h->f_rewritten += st.rewritten;
    h->f_bytes += st.bytes;
    it->tail = st.tail_off;
    it->fstate = (unsigned char)((st.why[0] ? 0 : F_WHOLE) | (st.tail_off ? F_TAIL_OPEN : 0));
    if (st.why[0] && !h->f_why[0])
        snprintf(h->f_why, sizeof(h->f_why), "%s: %s", it->name, st.why);
}

/* stitch -- the record running from prev into it (the next segment) */
static void stitch(wal_handover *h, ho_item *prev, ho_item *it)
{
    walfilter_stats st;

    if (!prev->tail || it->segno != prev->segno + 1 || it->len != prev->len)
        return;
    int r = walfilter_boundary((uint8_t *)prev->buf, (uint8_t *)it->buf, prev->len, prev->segno,
                               prev->tail, h->filter, h->nfilter, &st);
    if (r < 0) {
        if (!h->f_why[0])
            snprintf(h->f_why, sizeof(h->f_why), "%s: %s", prev->name, st.why);
        return;
    }
    h->f_records += st.records;
    h->f_rewritten += st.rewritten;
    h->f_bytes += st.bytes;
    h->f_joined++;
    if (r > 0)
        prev->dirty = it->dirty = 1;
    prev->fstate &= (unsigned char)~F_TAIL_OPEN;
}

/* put_one -- write an item out (its digest again when its bytes changed), free it and
 * account for it. */
static void put_one(wal_handover *h, ho_item *it, int skip)
{
    uint8_t sha[SHA256_LEN];
    int err = ECANCELED;

    if (!skip) {
        err = 0;
        if (it->dirty) {
            if (sha256_buffer(it->buf, it->len, sha) != 0)
                err = ECANCELED; /* no digest for the new bytes: not handed over */
            else
                sha256_to_hex(sha, it->hex);
        }
        if (!err)
            err = write_one(h, it->name, it);
    }
    free(it->buf);
    pthread_mutex_lock(&h->mu);
    h->qbytes -= it->len;
    if (err == 0) {
        h->written[it->idx] = 1;
        h->fstate[it->idx] = it->fstate;
    } else {
        h->bytes -= it->len;
        if (err != ECANCELED) {
            char why[160];
            snprintf(why, sizeof(why), "could not write it: %s", strerror(err));
            stop(h, why, it->name);
        }
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* writer -- writes what the walk queues. With a filter, each segment is held until the
 * next one comes, so that the record running from one into the other is filtered too. */
static void *writer(void *arg)
{
    wal_handover *h = arg;
    ho_item held;
    int have_held = 0;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->qlen == 0 && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->qlen == 0)
            break;
        ho_item it = h->q[h->qhead];
        int skip = h->stopped;
        snprintf(it.name, sizeof(it.name), "%s", h->names[it.idx]);
        h->qhead = (h->qhead + 1) % HANDOVER_QUEUE;
        h->qlen--; /* its bytes stay in qbytes until written (put_one) */
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        if (!skip && h->nfilter) {
            filter_one(h, &it);
            if (have_held) {
                stitch(h, &held, &it);
                put_one(h, &held, 0);
            }
            held = it;
            have_held = 1;
        } else {
            if (have_held) /* stopped meanwhile: dropped too */
                put_one(h, &held, skip);
            have_held = 0;
            put_one(h, &it, skip);
        }
        pthread_mutex_lock(&h->mu);
    }
    int skip = h->stopped;
    pthread_mutex_unlock(&h->mu);
    if (have_held)
        put_one(h, &held, skip);
    return NULL;
}

/* drain -- wait until the writer has written (or dropped) everything queued, and end it. */
static void drain(wal_handover *h)
{
    if (!h->have_th)
        return;
    pthread_mutex_lock(&h->mu);
    h->quit = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    h->have_th = 0;
}

int handover_put(void *arg, const char *name, char *buf, size_t len, const uint8_t *sha)
{
    wal_handover *h = arg;
    struct statvfs vfs;
    ho_item it = {0};
    int kept = 0;

    if (!h || strlen(name) > WAL_NAME_LEN)
        return 0;
    pthread_mutex_lock(&h->mu);
    if (h->stopped)
        goto out;
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0)
            goto out; /* spooled by an earlier scan of the plan */
    /* what is queued is not on the disk yet */
    if (statvfs(h->dir, &vfs) != 0 ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < len + h->reserve + h->qbytes) {
        stop(h, "free space", name);
        goto out;
    }
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        void *a = realloc(h->names, nc * sizeof(*h->names));
        if (a)
            h->names = a;
        void *b = a ? realloc(h->sizes, nc * sizeof(*h->sizes)) : NULL;
        if (b)
            h->sizes = b;
        void *c = b ? realloc(h->written, nc) : NULL;
        if (c)
            h->written = c;
        void *e = c ? realloc(h->fstate, nc) : NULL;
        if (e)
            h->fstate = e;
        if (!e) {
            stop(h, "out of memory", name);
            goto out;
        }
        h->cap = nc;
    }
    it.buf = buf; /* the walk has read it: kept, freed by the writer */
    it.len = len;
    it.idx = h->n;
    sha256_to_hex(sha, it.hex);
    snprintf(h->names[h->n], sizeof(h->names[0]), "%s", name);
    h->sizes[h->n] = (uint64_t)len;
    h->fstate[h->n] = 0;
    h->written[h->n++] = 0;
    h->bytes += (uint64_t)len;
    if (!h->have_th) {
        if (pthread_create(&h->th, NULL, writer, h) != 0) {
            h->n--;
            h->bytes -= (uint64_t)len;
            stop(h, "no thread", name);
            goto out;
        }
        h->have_th = 1;
    }
    while (h->qlen == HANDOVER_QUEUE)
        pthread_cond_wait(&h->cv, &h->mu);
    h->q[(h->qhead + h->qlen) % HANDOVER_QUEUE] = it;
    h->qlen++;
    h->qbytes += len;
    kept = 1;
    pthread_cond_broadcast(&h->cv);
out:
    pthread_mutex_unlock(&h->mu);
    return kept;
}

void handover_filter(wal_handover *h, const backup_info *b, const char *dbname)
{
    uint32_t keep = 0, postgres = 0;

    if (!h || h->filter_set)
        return;
    /* once: segments spooled for this scan stay so filtered; the dump checks the set
     * against the plan's backup in the end (handover_filter_set) */
    h->filter_set = 1;
    h->test_gaps = getenv("RAGSAFE_TEST_WAL_FILTER_GAPS") != NULL;
    if (!b->databases)
        return;
    for (size_t i = 0; i < b->ndatabases; i++) {
        if (strcmp(b->databases[i].name, dbname) == 0)
            keep = b->databases[i].oid;
        if (strcmp(b->databases[i].name, "postgres") == 0)
            postgres = b->databases[i].oid;
    }
    if (!keep)
        return; /* the dump restores the whole cluster */
    size_t cap = sizeof(h->filter) / sizeof(h->filter[0]), n = 0;
    for (size_t i = 0; i < b->ndatabases; i++) {
        uint32_t oid = b->databases[i].oid;
        if (oid != keep && oid != postgres && oid != 0) {
            if (n == cap)
                return; /* more than the set holds: no filter at all */
            h->filter[n++] = oid;
        }
    }
    h->nfilter = n;
}

const uint32_t *handover_filter_set(const wal_handover *h, size_t *n, uint64_t *records,
                                    uint64_t *rewritten, uint64_t *bytes, uint64_t *joined,
                                    const char **why)
{
    *n = h ? h->nfilter : 0;
    if (!h)
        return NULL;
    *records = h->f_records;
    *rewritten = h->f_rewritten;
    *bytes = h->f_bytes;
    *joined = h->f_joined;
    *why = h->f_why;
    return h->filter;
}

/* unspool -- remove spooled file i (and its record). */
static void unspool(wal_handover *h, size_t i)
{
    char f[PATH_MAX + 64];

    snprintf(f, sizeof(f), "%s/%s.sum", h->dir, h->names[i]);
    (void)unlink(f);
    snprintf(f, sizeof(f), "%s/%s", h->dir, h->names[i]);
    (void)unlink(f);
    h->bytes -= h->sizes[i];
}

/*
 * filter_whole -- a filter goes all the way or not at all. Replay of a page whose first
 * change after the backup (its full-page image) became a no-op, then meets a later
 * change of it left as it was, finds a hollow page: PANIC, "WAL contains references to
 * invalid pages". So every segment from the backup's start to the plan's last one
 * must be spooled, filtered whole, and joined to the next one by its last record (all
 * but the last: recovery stops inside it). h->names is what handover_keep kept.
 */
static int filter_whole(wal_handover *h, const inventory *inv, const plan *p)
{
    uint64_t nseg = p->last_seg - p->first_seg + 1;
    unsigned char *seen = calloc(nseg, 1); /* F_ flags + 4: spooled */
    int ok = seen != NULL;

    for (size_t i = 0; ok && i < h->n; i++) {
        uint32_t tli;
        uint64_t segno;
        if (walname_parse(h->names[i], inv->seg_size, &tli, &segno) == 0 &&
            segno >= p->first_seg && segno <= p->last_seg)
            seen[segno - p->first_seg] = (unsigned char)(h->fstate[i] | 4);
    }
    for (uint64_t k = 0; ok && k < nseg; k++) {
        if (!(seen[k] & 4) || !(seen[k] & F_WHOLE))
            ok = 0;
        else if ((seen[k] & F_TAIL_OPEN) && k + 1 < nseg) {
            if (!h->f_why[0]) {
                char name[WAL_NAME_LEN + 1];
                walname_format(name,
                               timeline_path_tli_for_seg(&p->path, p->first_seg + k,
                                                         inv->seg_size),
                               p->first_seg + k, inv->seg_size);
                snprintf(h->f_why, sizeof(h->f_why), "%s: its last record was not joined to "
                         "the next segment's", name);
            }
            ok = 0;
        }
    }
    free(seen);
    return ok;
}

uint64_t handover_keep(wal_handover *h, const inventory *inv, const plan *p, uint64_t *nsegs)
{
    size_t k = 0;

    *nsegs = 0;
    if (!h)
        return 0;
    drain(h);
    for (size_t i = 0; i < h->n; i++) {
        uint32_t tli;
        uint64_t segno;
        if (!h->written[i])
            continue; /* dropped (its bytes already taken off) */
        if (walname_parse(h->names[i], inv->seg_size, &tli, &segno) != 0 ||
            segno < p->first_seg || segno > p->last_seg ||
            tli != timeline_path_tli_for_seg(&p->path, segno, inv->seg_size)) {
            unspool(h, i);
            continue;
        }
        memmove(h->names[k], h->names[i], sizeof(h->names[0]));
        h->written[k] = 1;
        h->fstate[k] = h->fstate[i];
        h->sizes[k++] = h->sizes[i];
    }
    h->n = k;
    if (h->nfilter && !filter_whole(h, inv, p)) {
        log_info("WAL filter: %s: no WAL handed over, restore_command fetches every segment "
                 "as archived", h->f_why[0] ? h->f_why : "a segment recovery needs was not "
                 "spooled");
        for (size_t i = 0; i < h->n; i++)
            unspool(h, i);
        h->n = 0;
        h->nfilter = 0;
    }
    *nsegs = h->n;
    return h->bytes;
}

int handover_commit(wal_handover *h, const char *pgdata, uid_t uid, gid_t gid)
{
    char dst[PATH_MAX + 64], f[2 * PATH_MAX];
    struct stat sb;

    if (!h || h->n == 0)
        return -1;
    snprintf(dst, sizeof(dst), "%s/pg_wal/%s", pgdata, WALSPOOL_DIR);
    if (lstat(dst, &sb) == 0 && durable_remove_tree(dst) != 0)
        return -1;
    if (geteuid() == 0) {
        /* ownership changes the ctime, not the identity the records hold */
        for (size_t i = 0; i < h->n; i++) {
            snprintf(f, sizeof(f), "%s/%s", h->dir, h->names[i]);
            if (lchown(f, uid, gid) != 0)
                return log_errno("could not change the owner of \"%s\"", f);
            snprintf(f, sizeof(f), "%s/%s.sum", h->dir, h->names[i]);
            if (lchown(f, uid, gid) != 0)
                return log_errno("could not change the owner of \"%s\"", f);
        }
        if (lchown(h->dir, uid, gid) != 0)
            return log_errno("could not change the owner of \"%s\"", h->dir);
    }
    /* no fsync: see the top of this file */
    if (rename(h->dir, dst) != 0)
        return log_errno("could not move \"%s\" to \"%s\"", h->dir, dst);
    h->committed = 1;
    /* The files stay where they are until ragsafe-restore takes them: their records now
     * get the ctime too, which no write or touch can restore (walspool.h). A file whose
     * record cannot be rewritten is left out. */
    for (size_t i = 0; i < h->n; i++) {
        char id[160], hex[SHA256_HEX_LEN + 1], want[512] = "";
        FILE *rf;
        int ok = 0;
        snprintf(f, sizeof(f), "%s/%s.sum", dst, h->names[i]);
        if ((rf = fopen(f, "re")) != NULL) {
            ok = fgets(want, sizeof(want), rf) && strlen(want) > SHA256_HEX_LEN;
            fclose(rf);
        }
        snprintf(hex, sizeof(hex), "%.*s", SHA256_HEX_LEN, want);
        snprintf(f, sizeof(f), "%s/%s", dst, h->names[i]);
        ok = ok && walspool_identity(f, 1, id, sizeof(id)) == 0 &&
             walspool_write_sum(dst, h->names[i], hex, h->sizes[i], id, h->id) == 0;
        snprintf(f, sizeof(f), "%s/%s.sum", dst, h->names[i]);
        if (ok && geteuid() == 0 && lchown(f, uid, gid) != 0)
            ok = 0;
        if (!ok) {
            (void)unlink(f);
            snprintf(f, sizeof(f), "%s/%s", dst, h->names[i]);
            (void)unlink(f);
        }
    }
    log_info("handed over %zu verified WAL segment%s (%.1f MiB) in \"%s\"", h->n, PLURAL(h->n),
             (double)h->bytes / (1024.0 * 1024.0), dst);
    return 0;
}

void handover_free(wal_handover *h)
{
    if (!h)
        return;
    drain(h);
    if (!h->committed)
        (void)durable_remove_tree(h->dir);
    if (h->lockfd >= 0)
        close(h->lockfd);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->names);
    free(h->sizes);
    free(h->written);
    free(h->fstate);
    free(h);
}
