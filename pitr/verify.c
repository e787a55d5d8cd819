/*
 * verify.c -- is everything in the repository intact and usable?
 *
 * 1. every WAL-archive object (segments, history, .partial, .backup) and every
 *    receiver partial (stream/<TTTTTTTT>/<segment>.partial, zeroes past its flushed
 *    position) is read and
 *    its SHA-256 compared with its trailer; every segment's long page header must
 *    name that segment of this repository (page address, segment size, system
 *    identifier of repo.json, a timeline on the name's history), as ragsafe-restore
 *    checks before it serves one;
 * 2. per timeline, every segment from the start of the oldest backup on its history
 *    to its last archived segment is present (the file PostgreSQL would read);
 * 3. every backup, as restore reads it: backup_manifest matches backup.json's digest
 *    and parses (its own checksum) (backup_manifest_load, shared with restore); base
 *    and tablespace tars match backup.json's digests, every tar entry matches
 *    backup_manifest and every manifest entry is in a tar.
 * Exit 0 only when all of it holds; 3 when something is missing or damaged (even if
 * reading something else failed too); 1 when only reading failed.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"
#include "object.h"
#include "pitr.h"

typedef struct vstats {
    uint64_t objects, bad_objects, missing_segments, backups, bad_backups, files;
    uint64_t streamed, bad_streamed; /* receiver partials (stream/), counted in objects too */
    int failed; /* operational failure (not integrity) */
    progress pg; /* WAL objects' stored bytes, then the backups' tar bytes */
} vstats;

/*
 * verify_streamed -- a receiver's partial (stream/<TTTTTTTT>/<segment>.partial): the
 * object against its trailer and its first page against the segment it is named for,
 * as a segment is (the zeroes past its flushed position are what the receiver leaves,
 * not damage: nothing reads past the end of its records). Damage is counted.
 */
static int verify_streamed(inventory *inv, const char *key, vstats *v)
{
    const char *base = strrchr(key, '/');
    char name[WAL_NAME_LEN + 1], *buf = NULL;
    size_t len = 0;
    int r;

    /* the segment's name: the key's last part without ".partial" (inventory_load
     * listed only keys of that form) */
    memcpy(name, base ? base + 1 : key, WAL_NAME_LEN);
    name[WAL_NAME_LEN] = '\0';
    v->objects++;
    v->streamed++;
    r = object_get_buf(inv->st, key, (size_t)inv->seg_size + 1, &buf, &len, NULL);
    if (r == 0 && inventory_check_seg(inv, name, buf, len, len) != 0)
        r = RS_MISMATCH; /* reported */
    free(buf);
    if (r == 0)
        return 0;
    if (r == RS_NOT_FOUND) {
        /* the receiver deletes a partial once its segment is archived: not damage */
        log_info("streamed partial \"%s\" was replaced while verifying", key);
        v->objects--;
        v->streamed--;
        return 0;
    }
    if (r == RS_MISMATCH) {
        log_error("streamed partial \"%s\" is damaged", key);
        v->bad_objects++;
        v->bad_streamed++;
    } else {
        log_error("could not read streamed partial \"%s\"", key);
        v->failed = 1;
    }
    return 0;
}

/*
 * verify_object -- read one WAL-archive object and check it against its trailer; a
 * segment or .partial also against its name and the repository (its long page header:
 * what ragsafe-restore would refuse). Damage is counted, never fatal.
 */
static int verify_object(inventory *inv, const char *key, vstats *v)
{
    char name[64], *buf = NULL;
    size_t len = 0;
    walfile_kind kind;
    int r;

    if (strncmp(key, PITR_STREAM_PREFIX, strlen(PITR_STREAM_PREFIX)) == 0)
        return verify_streamed(inv, key, v);
    if (repo_wal_name_from_key(key, name, sizeof(name)) != 0)
        snprintf(name, sizeof(name), "%s", key);
    kind = walname_classify(name);
    if (kind == WALFILE_SEGMENT || kind == WALFILE_PARTIAL)
        r = object_get_buf(inv->st, key, (size_t)inv->seg_size + 1, &buf, &len, NULL);
    else
        r = object_get_fd(inv->st, key, -1, NULL);
    v->objects++;
    if (r == 0 && buf && inventory_check_seg(inv, name, buf, len, len) != 0) {
        v->bad_objects++; /* reported */
        r = 0;
    }
    free(buf);
    if (r == 0)
        return 0;
    if (r == RS_NOT_FOUND) {
        log_error("WAL file \"%s\" disappeared while verifying", name);
        v->bad_objects++;
    } else if (r == RS_MISMATCH) {
        log_error("WAL file \"%s\" is corrupt", name);
        v->bad_objects++;
    } else {
        log_error("could not read WAL file \"%s\"", name); /* I/O: the run fails, exit 1 */
        v->failed = 1;
    }
    return 0;
}

typedef struct hist_ctx {
    inventory *inv;
    vstats *v;
} hist_ctx;

static int hist_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    hist_ctx *h = arg;
    char name[64];
    (void)size;
    (void)mtime;
    for (size_t i = 0; i < h->inv->ndamaged; i++)
        if (strcmp(h->inv->damaged[i].key, key) == 0)
            return 0; /* reported and counted already */
    if (repo_wal_name_from_key(key, name, sizeof(name)) == 0 &&
        walname_classify(name) == WALFILE_HISTORY)
        verify_object(h->inv, key, h->v);
    return 0;
}

static void check_continuity(inventory *inv, uint32_t tli, vstats *v)
{
    timeline_path p;
    uint64_t end;
    if (timeline_get_path(&inv->ts, tli, &p) != 0)
        return;
    if (!inventory_path_end(inv, &p, &end))
        goto out;
    pitr_retention_load(inv); /* holes expire made on purpose are not missing */
    const backup_info *oldest = NULL;
    for (size_t i = 0; i < inv->nbackups; i++) {
        const backup_info *b = &inv->backups[i];
        if (timeline_path_contains(&p, b->start_tli, b->start_lsn) &&
            (!oldest || b->start_lsn < oldest->start_lsn))
            oldest = b;
    }
    uint64_t from;
    if (oldest) {
        from = oldest->start_lsn / inv->seg_size;
    } else {
        from = end;
        for (size_t i = 0; i < inv->nsegs; i++)
            if (timeline_path_contains(&p, inv->segs[i].tli,
                                       inv->segs[i].segno * (uint64_t)inv->seg_size) &&
                inv->segs[i].segno < from)
                from = inv->segs[i].segno;
    }
    if (oldest && oldest->stop_lsn / inv->seg_size > end)
        end = oldest->stop_lsn / inv->seg_size;
    /* a timeline just promoted has archived no segment yet: its own part is not missing
     * (info.c says the same) */
    int own;
    inventory_last_seg(inv, tli, 0, UINT64_MAX, &own);
    if (p.n > 1 && !own && end >= p.steps[p.n - 1].begin / inv->seg_size) {
        if (p.steps[p.n - 1].begin / inv->seg_size == 0)
            goto out;
        end = p.steps[p.n - 1].begin / inv->seg_size - 1;
    }
    for (uint64_t s = from; s <= end; s++) {
        uint32_t t = timeline_path_tli_for_seg(&p, s, inv->seg_size);
        if (inventory_find(inv, t, s) || pitr_wal_expired(inv, s))
            continue;
        char name[WAL_NAME_LEN + 1];
        seg_name(inv, name, t, s);
        log_error("WAL segment %s is missing (timeline %u%s%s)", name, tli,
                  oldest ? ", needed by backup " : "", oldest ? oldest->label : "");
        v->missing_segments++;
    }
out:
    timeline_path_release(&p);
}

static const backup_file *find_file(const backup_info *b, const char *name)
{
    for (size_t i = 0; i < b->nfiles; i++)
        if (strcmp(b->files[i].name, name) == 0)
            return &b->files[i];
    return NULL;
}

/*
 * backup_manifest_load -- see pitr.h. Restore and verify both load a backup's
 * manifest through here, so they accept and refuse the same ones.
 */
int backup_manifest_load(storage *st, const backup_info *b, manifest *m, char **textp,
                         size_t *lenp)
{
    char key[512], *text = NULL;
    size_t len = 0;
    uint8_t d[SHA256_LEN];
    const backup_file *bf = find_file(b, "backup_manifest");
    int r, ret = -1;

    memset(m, 0, sizeof(*m));
    snprintf(key, sizeof(key), "backups/%s/backup_manifest", b->label);
    r = storage_get(st, key, (size_t)1 << 30, &text, &len);
    if (r == RS_NOT_FOUND) {
        log_error("backup %s: backup_manifest is missing", b->label);
        return RS_MISMATCH;
    }
    if (r != 0)
        return r == RS_MISMATCH ? RS_MISMATCH : -1;
    if (!bf) { /* backupinfo_parse requires it: defensive */
        log_error("backup %s: backup.json records no backup_manifest", b->label);
        ret = RS_MISMATCH;
        goto out;
    }
    if (sha256_buffer(text, len, d) != 0)
        goto out;
    if (memcmp(d, bf->sha256, SHA256_LEN) != 0) {
        log_error("backup %s: checksum mismatch for backup_manifest (backup.json)", b->label);
        ret = RS_MISMATCH;
        goto out;
    }
    if (manifest_parse(text, len, m) != 0) {
        log_error("backup %s: backup_manifest is invalid", b->label);
        ret = RS_MISMATCH;
        goto out;
    }
    ret = 0;
    if (textp) {
        *textp = text;
        *lenp = len;
        text = NULL;
    }
out:
    free(text);
    return ret;
}

/*
 * verify_backup -- what restore reads, checked the way restore checks it: the
 * manifest (backup_manifest_load), then base.tar.zst and each tablespace's tar from
 * backup.json's "tablespaces" against backup.json's digests and the manifest, and no
 * manifest entry left unseen. Damage counts the backup as damaged; an I/O failure
 * makes the run fail (exit 1), not the backup.
 */
static void verify_backup(inventory *inv, const backup_info *b, vstats *v, int chunks_bad)
{
    char key[512];
    manifest m;
    unsigned char *seen = NULL;
    int bad = 0, have_m = 0, r;
    extract_stats stats;

    memset(&stats, 0, sizeof(stats));
    v->backups++;
    r = backup_manifest_load(inv->st, b, &m, NULL, NULL);
    if (r != 0) {
        if (r == RS_MISMATCH)
            bad = 1;
        else
            v->failed = 1;
        goto out;
    }
    have_m = 1;
    seen = calloc(m.nfiles + 1, 1);
    if (!seen) {
        log_error("out of memory");
        v->failed = 1;
        goto out;
    }
    for (size_t i = 0; i <= b->ntablespaces; i++) {
        const char *file = i == 0 ? backupinfo_base_file(b) : b->tablespaces[i - 1].file;
        const backup_file *f = find_file(b, file);
        char prefix[64] = "";
        if (i > 0)
            snprintf(prefix, sizeof(prefix), "pg_tblspc/%u/", b->tablespaces[i - 1].oid);
        extract_opts eo = {.dest = NULL, .m = &m, .mprefix = prefix, .seen = seen,
                           .stored_sha = f ? f->sha256 : NULL, .pg = &v->pg};
        snprintf(key, sizeof(key), "backups/%s/%s", b->label, file);
        r = extract_object(inv->st, key, &eo, &stats);
        if (r == RS_MISMATCH) {
            bad = 1;
        } else if (r != 0) {
            v->failed = 1;
            goto out;
        }
    }
    v->files += stats.files;
    bad |= chunks_bad; /* chunked_verify named the chunks and files */
    for (size_t i = 0; i < m.nfiles; i++)
        if (!seen[i]) {
            log_error("backup %s: file \"%s\" listed in backup_manifest is missing", b->label,
                      m.files[i].path);
            bad = 1;
        }
out:
    if (bad) {
        v->bad_backups++;
        log_error("backup %s is damaged", b->label);
    } else if (!v->failed) {
        log_info("backup %s: %" PRIu64 " file%s intact", b->label, stats.files, PLURAL(stats.files));
    }
    if (have_m)
        manifest_release(&m);
    free(seen);
}

/*
 * record_result -- keep this run's outcome in the repository (status/verify.json) for
 * `info --prometheus`. A failure to write it is a warning: verifying is read-only
 * work, and a read-only repository must still be verifiable.
 */
static void record_result(inventory *inv, int intact, const vstats *v)
{
    json_t *j = json_pack("{s:I, s:b, s:I, s:I, s:I}", "time", (json_int_t)time(NULL), "intact",
                          intact, "corrupt_objects", (json_int_t)v->bad_objects,
                          "missing_segments", (json_int_t)v->missing_segments,
                          "damaged_backups", (json_int_t)v->bad_backups);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

    if (!text || storage_put(inv->st, PITR_VERIFY_STATUS_KEY, text, strlen(text), 0) != 0)
        log_warning("could not record the verify result in the repository");
    free(text);
    json_decref(j);
}

int cmd_verify(const pitr_opts *o)
{
    inventory inv;
    vstats v;
    int ret = EXIT_FAIL;

    memset(&v, 0, sizeof(v));
    progress_init(&v.pg, PROGRESS_OFF, "verify", 0);
    int lr = inventory_load(&inv, o->repo);
    if (lr != 0) {
        ret = pitr_status(lr);
        goto out;
    }
    {
        uint64_t total = 0;
        for (size_t i = 0; i < inv.nsegs; i++)
            total += inv.segs[i].size > 0 && !inv.segs[i].streamed ? (uint64_t)inv.segs[i].size : 0;
        for (size_t i = 0; i < inv.nstream; i++)
            total += inv.stream[i].size > 0 ? (uint64_t)inv.stream[i].size : 0;
        for (size_t i = 0; i < inv.nothers; i++)
            total += inv.others[i].size > 0 ? (uint64_t)inv.others[i].size : 0;
        for (size_t i = 0; i < inv.nbackups; i++)
            for (size_t k = 0; k < inv.backups[i].nfiles; k++)
                if (strcmp(inv.backups[i].files[k].name, "backup_manifest") != 0)
                    total += inv.backups[i].files[k].raw_bytes;
        progress_release(&v.pg);
        progress_init(&v.pg, o->progress, "verify", total);
    }
    /* what inventory_load left out: damaged backup.json and history files */
    for (size_t i = 0; i < inv.ndamaged; i++) {
        log_error("\"%s\" is damaged: %s", inv.damaged[i].key, inv.damaged[i].why);
        if (strncmp(inv.damaged[i].key, "backups/", 8) == 0)
            v.bad_backups++;
        else
            v.bad_objects++;
    }
    for (size_t i = 0; i < inv.nsegs; i++) {
        if (inv.segs[i].streamed)
            continue; /* with every partial, below */
        verify_object(&inv, inv.segs[i].key, &v);
        progress_add(&v.pg, inv.segs[i].size > 0 ? (uint64_t)inv.segs[i].size : 0);
    }
    for (size_t i = 0; i < inv.nstream; i++) {
        verify_object(&inv, inv.stream[i].key, &v);
        progress_add(&v.pg, inv.stream[i].size > 0 ? (uint64_t)inv.stream[i].size : 0);
    }
    for (size_t i = 0; i < inv.nothers; i++) {
        verify_object(&inv, inv.others[i].key, &v);
        progress_add(&v.pg, inv.others[i].size > 0 ? (uint64_t)inv.others[i].size : 0);
    }
    hist_ctx hc = {&inv, &v};
    if (storage_list(inv.st, "wal/", hist_cb, &hc) != 0)
        goto out;
    uint32_t maxtli = timeline_max(&inv.ts);
    for (uint32_t t = 1; t <= maxtli; t++)
        if (timeline_exists(&inv.ts, t))
            check_continuity(&inv, t, &v);
    for (size_t i = 0; i < inv.nsegs; i++)
        if (!timeline_exists(&inv.ts, inv.segs[i].tli) &&
            !timeline_damaged(&inv.ts, inv.segs[i].tli)) {
            char name[WAL_NAME_LEN + 1];
            seg_name(&inv, name, inv.segs[i].tli, inv.segs[i].segno);
            log_error("WAL segment %s belongs to timeline %u, which has no history file", name,
                      inv.segs[i].tli);
            v.missing_segments++;
            break;
        }
    unsigned char *cbad = calloc(inv.nbackups + 1, 1);
    if (!cbad || chunked_verify(inv.st, inv.backups, inv.nbackups, cbad, &v.pg) != 0)
        v.failed = 1;
    for (size_t i = 0; i < inv.nbackups; i++)
        verify_backup(&inv, &inv.backups[i], &v, cbad ? cbad[i] : 0);
    free(cbad);
    progress_finish(&v.pg);

    int intact = !v.bad_objects && !v.missing_segments && !v.bad_backups && !v.failed;
    record_result(&inv, intact, &v);
    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "intact", json_boolean(intact));
        json_object_set_new(j, "wal_objects", json_integer((json_int_t)v.objects));
        json_object_set_new(j, "corrupt_objects", json_integer((json_int_t)v.bad_objects));
        json_object_set_new(j, "missing_segments", json_integer((json_int_t)v.missing_segments));
        json_object_set_new(j, "streamed_partials", json_integer((json_int_t)v.streamed));
        json_object_set_new(j, "corrupt_streamed_partials", json_integer((json_int_t)v.bad_streamed));
        json_object_set_new(j, "backups", json_integer((json_int_t)v.backups));
        json_object_set_new(j, "damaged_backups", json_integer((json_int_t)v.bad_backups));
        json_object_set_new(j, "backup_files", json_integer((json_int_t)v.files));
        json_t *jd = json_array();
        for (size_t i = 0; i < inv.ndamaged; i++)
            json_array_append_new(jd, json_pack("{s:s, s:s}", "key", inv.damaged[i].key, "why",
                                                inv.damaged[i].why));
        json_object_set_new(j, "damaged", jd);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else {
        if (v.streamed)
            printf("streamed partials: %" PRIu64 " verified (counted in the wal objects), %" PRIu64
                   " corrupt\n", v.streamed, v.bad_streamed);
        printf("wal objects: %" PRIu64 " verified, %" PRIu64 " corrupt; missing segments: %" PRIu64
               "\nbackups: %" PRIu64 " verified (%" PRIu64 " file%s), %" PRIu64 " damaged\n%s\n",
               v.objects, v.bad_objects, v.missing_segments, v.backups, v.files, PLURAL(v.files),
               v.bad_backups,
               intact ? "repository intact" : "repository DAMAGED");
    }
    if (intact)
        ret = EXIT_OK;
    else if (v.bad_objects || v.missing_segments || v.bad_backups)
        ret = EXIT_INTEGRITY;
out:
    progress_release(&v.pg);
    inventory_release(&inv);
    return ret;
}
