/*
 * chunked.c -- the chunked backup format (--format chunked): as stream.c parses each
 * tar archive, every regular file is cut into fixed-size chunks stored once in the
 * repository's chunk store (lib/chunkstore.h), and each archive becomes a manifest
 * instead of a tar:
 *
 *     backups/<label>/base.chunks.zst      (and <oid>.chunks.zst per tablespace)
 *
 * one zstd frame of JSON:
 *     {"format":"ragsafe-chunks","version":1,"archive":"base.tar","chunk_size":32768,
 *      "entries":[{"path":"base","type":"dir","mode":448},
 *                 {"path":"PG_VERSION","type":"file","mode":384,"size":3,
 *                  "sha256":"<hex>","chunks":["<hex sha256 of chunk 0>", ...]},
 *                 {"path":"pg_tblspc/16385","type":"link","target":"/srv/ts"}]}
 * Paths are the tar's (relative, no trailing '/'); chunk i of a file holds its bytes
 * from i * chunk_size, the last one shorter. The packs holding the chunks are
 * committed before the manifest, the manifest before backup.json.
 */
#include <archive_entry.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "basebackup.h"
#include "chunkstore.h"
#include "common.h"
#include "log.h"

struct bb_chunker {
    chunkstore *cs;
    size_t chunk_size;
    json_t *entries;        /* of the current archive */
    char *archive;
    /* the current file */
    json_t *file, *chunks;
    uint8_t *buf;
    size_t fill;
    uint64_t new_bytes;     /* stored by the current archive */
    uint64_t total_new;
};

/* chunk_size_setting -- CHUNKSTORE_CHUNK_SIZE, or $RAGSAFE_CHUNK_SIZE (bytes, a
 * multiple of 8192 up to 1 MiB: the measurement hook of the README's figures). */
static size_t chunk_size_setting(void)
{
    const char *v = getenv("RAGSAFE_CHUNK_SIZE");
    char *end;
    unsigned long n;

    if (!v || !*v)
        return CHUNKSTORE_CHUNK_SIZE;
    n = strtoul(v, &end, 10);
    if (*end || n < 8192 || n > CHUNKSTORE_CHUNK_MAX || n % 8192 != 0) {
        log_warning("ignoring RAGSAFE_CHUNK_SIZE=\"%s\": expected a multiple of 8192 up to %u", v,
                    CHUNKSTORE_CHUNK_MAX);
        return CHUNKSTORE_CHUNK_SIZE;
    }
    return n;
}

/* bb_chunker_new -- see basebackup.h. */
bb_chunker *bb_chunker_new(storage *st, int level)
{
    bb_chunker *c = calloc(1, sizeof(*c));

    if (!c) {
        log_errno("could not allocate memory");
        return NULL;
    }
    c->chunk_size = chunk_size_setting();
    c->buf = malloc(c->chunk_size);
    c->cs = chunkstore_open(st, level);
    if (!c->buf || !c->cs) {
        if (!c->buf)
            log_errno("could not allocate memory");
        bb_chunker_free(c);
        return NULL;
    }
    log_info("chunked backup: %zu-byte chunks", c->chunk_size);
    return c;
}

void bb_chunker_free(bb_chunker *c)
{
    if (!c)
        return;
    chunkstore_free(c->cs);
    json_decref(c->entries);
    json_decref(c->file);
    free(c->archive);
    free(c->buf);
    free(c);
}

/* bb_chunker_archive_begin -- a new archive ("base.tar", "16384.tar"). */
int bb_chunker_archive_begin(bb_chunker *c, const char *archive)
{
    json_decref(c->entries);
    free(c->archive);
    c->entries = json_array();
    c->archive = strdup(archive);
    c->new_bytes = 0;
    if (!c->entries || !c->archive)
        return log_errno("could not allocate memory");
    return 0;
}

/* clean_path -- the tar name without "./" in front and '/' at the end. */
static int clean_path(const char *name, char *out, size_t len)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] == '/')
        n--;
    if (n == 0 || n >= len)
        return log_error("could not record tar entry \"%s\": bad name", name);
    memcpy(out, name, n);
    out[n] = '\0';
    return 0;
}

/* append_entry -- add obj to the archive's entries (takes the reference). */
static int append_entry(bb_chunker *c, json_t *obj)
{
    if (!obj || json_array_append_new(c->entries, obj) != 0)
        return log_error("could not build the chunk manifest: out of memory");
    return 0;
}

/* bb_chunker_other -- a directory or symbolic link entry; others are refused. */
int bb_chunker_other(bb_chunker *c, struct archive_entry *e)
{
    char path[4096];
    const char *name = archive_entry_pathname(e);

    if (!name)
        return log_error("could not record a tar entry without a name");
    if (clean_path(name, path, sizeof(path)) != 0)
        return -1;
    switch (archive_entry_filetype(e)) {
    case AE_IFDIR:
        return append_entry(c, json_pack("{s:s, s:s, s:i}", "path", path, "type", "dir", "mode",
                                         (int)(archive_entry_perm(e) & 07777)));
    case AE_IFLNK: {
        const char *t = archive_entry_symlink(e);
        if (!t)
            return log_error("could not record symbolic link \"%s\": no target", path);
        return append_entry(c, json_pack("{s:s, s:s, s:s}", "path", path, "type", "link",
                                         "target", t));
    }
    default:
        return log_error("could not record tar entry \"%s\": unsupported type", path);
    }
}

/* bb_chunker_file_begin -- a regular file starts. */
int bb_chunker_file_begin(bb_chunker *c, const char *name, unsigned mode)
{
    char path[4096];

    if (clean_path(name, path, sizeof(path)) != 0)
        return -1;
    json_decref(c->file);
    c->chunks = json_array();
    c->file = json_pack("{s:s, s:s, s:i}", "path", path, "type", "file", "mode", (int)(mode & 07777));
    c->fill = 0;
    if (!c->file || !c->chunks) {
        json_decref(c->chunks);
        return log_error("could not build the chunk manifest: out of memory");
    }
    return 0;
}

/* put_chunk -- the buffered chunk into the store and the file's list. */
static int put_chunk(bb_chunker *c)
{
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    uint64_t stored;

    if (chunkstore_put(c->cs, c->buf, c->fill, d, &stored) != 0)
        return -1;
    c->new_bytes += stored;
    c->total_new += stored;
    sha256_to_hex(d, hex);
    if (json_array_append_new(c->chunks, json_string(hex)) != 0)
        return log_error("could not build the chunk manifest: out of memory");
    c->fill = 0;
    return 0;
}

/* bb_chunker_file_data -- the next bytes of the file. */
int bb_chunker_file_data(bb_chunker *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        size_t n = c->chunk_size - c->fill;
        if (n > len)
            n = len;
        memcpy(c->buf + c->fill, p, n);
        c->fill += n;
        p += n;
        len -= n;
        if (c->fill == c->chunk_size && put_chunk(c) != 0)
            return -1;
    }
    return 0;
}

/* bb_chunker_file_end -- the file is complete: size and SHA-256 as stream.c hashed it. */
int bb_chunker_file_end(bb_chunker *c, uint64_t size, const uint8_t sha[SHA256_LEN])
{
    char hex[SHA256_HEX_LEN + 1];
    int bad = 0;

    if (c->fill > 0 && put_chunk(c) != 0)
        return -1;
    sha256_to_hex(sha, hex);
    bad |= json_object_set_new(c->file, "size", json_integer((json_int_t)size));
    bad |= json_object_set_new(c->file, "sha256", json_string(hex));
    bad |= json_object_set_new(c->file, "chunks", c->chunks);
    c->chunks = NULL;
    if (bad)
        return log_error("could not build the chunk manifest: out of memory");
    json_t *f = c->file;
    c->file = NULL;
    return append_entry(c, f);
}

/* bb_chunker_archive_end -- commit the packs, then store the archive's manifest as
 * <prefix>/<file> (a zstd frame of JSON). *raw: bytes of the files; *stored and sha:
 * of the manifest as stored (the new chunks are counted for the whole backup,
 * bb_chunker_summary). */
int bb_chunker_archive_end(bb_chunker *c, storage *st, const char *prefix, const char *file,
                           uint64_t *raw, uint64_t *stored, uint8_t sha[SHA256_LEN])
{
    json_t *root = NULL;
    char *text = NULL, key[1024];
    void *z = NULL;
    size_t i;
    json_t *e;
    int ret = -1;

    *raw = 0;
    json_array_foreach(c->entries, i, e) {
        json_t *s = json_object_get(e, "size");
        if (json_is_integer(s))
            *raw += (uint64_t)json_integer_value(s);
    }
    if (chunkstore_flush(c->cs) != 0)
        return -1;
    root = json_pack("{s:s, s:i, s:s, s:I, s:O}", "format", "ragsafe-chunks", "version", 1,
                     "archive", c->archive, "chunk_size", (json_int_t)c->chunk_size, "entries",
                     c->entries);
    text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!text) {
        log_error("could not build the chunk manifest: out of memory");
        goto out;
    }
    size_t len = strlen(text), bound = ZSTD_compressBound(len);
    if (!(z = malloc(bound))) {
        log_errno("could not allocate memory");
        goto out;
    }
    size_t zl = ZSTD_compress(z, bound, text, len, 9);
    if (ZSTD_isError(zl)) {
        log_error("could not compress the chunk manifest: %s", ZSTD_getErrorName(zl));
        goto out;
    }
    if (sha256_buffer(z, zl, sha) != 0)
        goto out;
    snprintf(key, sizeof(key), "%s/%s", prefix, file);
    int r = storage_put(st, key, z, zl, 1);
    if (r == RS_EXISTS)
        log_error("could not store \"%s\": it already exists", key);
    if (r != 0)
        goto out;
    *stored = zl;
    log_info("stored \"%s\": %" PRIu64 " byte%s of files, %" PRIu64 " new compressed chunk bytes",
             key, *raw, PLURAL(*raw), c->new_bytes);
    ret = 0;
out:
    free(z);
    free(text);
    json_decref(root);
    return ret;
}

/* bb_chunker_summary -- chunk counters for backup.json and the log. */
void bb_chunker_summary(const bb_chunker *c, uint64_t *chunks, uint64_t *new_chunks,
                        uint64_t *new_bytes, uint64_t *packs, uint32_t *chunk_size)
{
    chunkstore_stats s;

    chunkstore_get_stats(c->cs, &s);
    *chunks = s.chunks;
    *new_chunks = s.new_chunks;
    *new_bytes = s.new_bytes;
    *packs = s.packs;
    *chunk_size = (uint32_t)c->chunk_size;
}
