/*
 * chunkstore.c -- see chunkstore.h.
 *
 * The union of every pack index is one open-addressing table (digest -> location),
 * loaded at open: one small GET per pack. New chunks are compressed one by one (each
 * an independent zstd frame, so any chunk can be read alone) into an in-memory pack
 * that is written with one storage_put when it passes the target size, then its index.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zstd.h>

#include "chunkstore.h"
#include "common.h"
#include "hex.h"
#include "log.h"

#define IDX_MAGIC "RSCIDX01"
#define IDX_ENTRY 48
#define SKIP_MAGIC 0x184D2A5Eu
#define IDX_MAX (64u << 20)

typedef struct slot {
    uint8_t digest[SHA256_LEN];
    chunk_loc loc;
    int used;
} slot;

typedef struct pack_ent {
    char *key;          /* chunks/<id>.pack */
    uint64_t size;
    int has_index;
} pack_ent;

struct chunkstore {
    storage *st;
    int level;
    slot *slots;
    size_t cap, count;
    pack_ent *packs;
    size_t npacks, packs_cap;
    /* the open pack */
    uint8_t *buf;
    size_t len, buf_cap;
    uint8_t *idx;           /* index entries of the open pack */
    size_t idx_len, idx_cap;
    uint32_t open_pack;     /* its number (npacks at open) */
    int have_open;
    ZSTD_CCtx *cctx;
    chunkstore_stats stats;
    /* the table against chunkstore_known on other threads while chunkstore_add grows it */
    pthread_mutex_t table_mu;
};

struct chunk_encoder {
    ZSTD_CCtx *cctx;
    int level;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static size_t slot_of(const uint8_t *d, size_t cap)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return (size_t)h & (cap - 1);
}

/* table_grow -- double the table (or make it). -1 reported. */
static int table_grow(chunkstore *cs)
{
    size_t ncap = cs->cap ? cs->cap * 2 : 4096;
    slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return log_errno("could not allocate memory");
    for (size_t i = 0; i < cs->cap; i++) {
        if (!cs->slots[i].used)
            continue;
        size_t j = slot_of(cs->slots[i].digest, ncap);
        while (ns[j].used)
            j = (j + 1) & (ncap - 1);
        ns[j] = cs->slots[i];
    }
    free(cs->slots);
    cs->slots = ns;
    cs->cap = ncap;
    return 0;
}

static slot *table_find(const chunkstore *cs, const uint8_t *d)
{
    if (!cs->cap)
        return NULL;
    for (size_t j = slot_of(d, cs->cap);; j = (j + 1) & (cs->cap - 1)) {
        if (!cs->slots[j].used)
            return NULL;
        if (memcmp(cs->slots[j].digest, d, SHA256_LEN) == 0)
            return &cs->slots[j];
    }
}

/* table_add -- a chunk's location (the first one known wins). -1 reported. The
 * caller holds table_mu when other threads may call chunkstore_known. */
static int table_add(chunkstore *cs, const uint8_t *d, const chunk_loc *loc)
{
    if ((cs->count + 1) * 2 > cs->cap && table_grow(cs) != 0)
        return -1;
    size_t j = slot_of(d, cs->cap);
    while (cs->slots[j].used) {
        if (memcmp(cs->slots[j].digest, d, SHA256_LEN) == 0)
            return 0;
        j = (j + 1) & (cs->cap - 1);
    }
    memcpy(cs->slots[j].digest, d, SHA256_LEN);
    cs->slots[j].loc = *loc;
    cs->slots[j].used = 1;
    cs->count++;
    return 0;
}

/* pack_add -- remember a pack key; returns its number or -1 reported. */
static int64_t pack_add(chunkstore *cs, const char *key, uint64_t size)
{
    for (size_t i = 0; i < cs->npacks; i++)
        if (strcmp(cs->packs[i].key, key) == 0) {
            if (size)
                cs->packs[i].size = size;
            return (int64_t)i;
        }
    if (cs->npacks == cs->packs_cap) {
        size_t nc = cs->packs_cap ? cs->packs_cap * 2 : 64;
        pack_ent *p = realloc(cs->packs, nc * sizeof(*p));
        if (!p)
            return log_errno("could not allocate memory");
        cs->packs = p;
        cs->packs_cap = nc;
    }
    pack_ent *p = &cs->packs[cs->npacks];
    memset(p, 0, sizeof(*p));
    if (!(p->key = strdup(key)))
        return log_errno("could not allocate memory");
    p->size = size;
    return (int64_t)cs->npacks++;
}

/* id_key -- "chunks/<id>.<ext>" from a pack key's id. */
static void id_key(char *out, size_t len, const char *pack_key, const char *ext)
{
    const char *id = pack_key + strlen(CHUNKSTORE_PREFIX) + 1;
    size_t n = strlen(id) - strlen(".pack");
    snprintf(out, len, "%s/%.*s.%s", CHUNKSTORE_PREFIX, (int)n, id, ext);
}

/* name_ok -- "chunks/<32 hex>.<ext>": *ext set to the extension. */
static int name_ok(const char *key, const char **ext)
{
    size_t pl = strlen(CHUNKSTORE_PREFIX) + 1;
    if (strncmp(key, CHUNKSTORE_PREFIX "/", pl) != 0)
        return 0;
    const char *id = key + pl;
    for (int i = 0; i < 32; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    if (id[32] != '.')
        return 0;
    *ext = id + 33;
    return strcmp(*ext, "pack") == 0 || strcmp(*ext, "idx") == 0;
}

typedef struct listing {
    chunkstore *cs;
    char **idx;
    size_t nidx, cap;
} listing;

static int list_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
    listing *l = arg;
    const char *ext;

    (void)mtime;
    if (!name_ok(key, &ext)) {
        log_warning("ignoring \"%s\": not a chunk pack or index name", key);
        return 0;
    }
    if (strcmp(ext, "pack") == 0)
        return pack_add(l->cs, key, size > 0 ? (uint64_t)size : 0) < 0 ? -1 : 0;
    if (l->nidx == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->idx, nc * sizeof(*p));
        if (!p)
            return log_errno("could not allocate memory");
        l->idx = p;
        l->cap = nc;
    }
    if (!(l->idx[l->nidx] = strdup(key)))
        return log_errno("could not allocate memory");
    l->nidx++;
    return 0;
}

/* load_index -- one index into the table. 0 | RS_MISMATCH (reported) | -1. */
static int load_index(chunkstore *cs, const char *key)
{
    char *buf = NULL, pkey[128];
    size_t len = 0;
    uint8_t d[SHA256_LEN];
    int ret = -1;

    int r = storage_get(cs->st, key, IDX_MAX, &buf, &len);
    if (r != 0)
        return r == RS_NOT_FOUND ? log_error("chunk index \"%s\" vanished", key) : r;
    const uint8_t *p = (const uint8_t *)buf;
    if (len < 16 + SHA256_LEN || memcmp(p, IDX_MAGIC, 8) != 0)
        goto bad;
    uint32_t count = get_le32(p + 8);
    if ((uint64_t)len != 16 + (uint64_t)count * IDX_ENTRY + SHA256_LEN)
        goto bad;
    if (sha256_buffer(p, len - SHA256_LEN, d) != 0)
        goto out;
    if (memcmp(d, p + len - SHA256_LEN, SHA256_LEN) != 0)
        goto bad;
    snprintf(pkey, sizeof(pkey), "%.*s.pack", (int)(strlen(key) - 4), key);
    int64_t pn = pack_add(cs, pkey, 0);
    if (pn < 0)
        goto out;
    cs->packs[pn].has_index = 1;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = p + 16 + (size_t)i * IDX_ENTRY;
        chunk_loc loc = {.pack = (uint32_t)pn, .offset = get_le64(e + 32),
                         .rec_len = get_le32(e + 40), .raw_len = get_le32(e + 44)};
        if (loc.raw_len > CHUNKSTORE_CHUNK_MAX || loc.rec_len < CHUNKSTORE_REC_HDR)
            goto bad;
        if (table_add(cs, e, &loc) != 0)
            goto out;
    }
    ret = 0;
    goto out;
bad:
    log_error("chunk index \"%s\" is damaged", key);
    ret = RS_MISMATCH;
out:
    free(buf);
    return ret;
}

/* chunkstore_open -- see chunkstore.h. */
chunkstore *chunkstore_open(storage *st, int level)
{
    chunkstore *cs = calloc(1, sizeof(*cs));
    listing l = {0};
    int ok = 0;

    if (!cs) {
        log_errno("could not allocate memory");
        return NULL;
    }
    cs->st = st;
    cs->level = level > 0 ? level : 3;
    pthread_mutex_init(&cs->table_mu, NULL);
    l.cs = cs;
    if (table_grow(cs) != 0)
        goto out;
    if (storage_list(st, CHUNKSTORE_PREFIX "/", list_cb, &l) != 0)
        goto out;
    for (size_t i = 0; i < l.nidx; i++)
        if (load_index(cs, l.idx[i]) != 0)
            goto out;
    log_debug("chunk store: %zu chunk%s in %zu pack%s", cs->count, PLURAL(cs->count),
              cs->npacks, PLURAL(cs->npacks));
    ok = 1;
out:
    for (size_t i = 0; i < l.nidx; i++)
        free(l.idx[i]);
    free(l.idx);
    if (!ok) {
        chunkstore_free(cs);
        return NULL;
    }
    return cs;
}

void chunkstore_free(chunkstore *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->npacks; i++)
        free(cs->packs[i].key);
    free(cs->packs);
    free(cs->slots);
    free(cs->buf);
    free(cs->idx);
    ZSTD_freeCCtx(cs->cctx);
    pthread_mutex_destroy(&cs->table_mu);
    free(cs);
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 1 << 16;
    while (nc < need)
        nc *= 2;
    uint8_t *p = realloc(*buf, nc);
    if (!p)
        return log_errno("could not allocate memory");
    *buf = p;
    *cap = nc;
    return 0;
}

/* open_pack -- a new pack with a random name. -1 reported. */
static int open_pack(chunkstore *cs)
{
    uint8_t id[16];
    char hex[33], key[128];

    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
        return log_errno("could not get random bytes for a pack name");
    hex_encode(id, sizeof(id), hex);
    snprintf(key, sizeof(key), "%s/%s.pack", CHUNKSTORE_PREFIX, hex);
    int64_t pn = pack_add(cs, key, 0);
    if (pn < 0)
        return -1;
    cs->open_pack = (uint32_t)pn;
    cs->have_open = 1;
    cs->len = 0;
    cs->idx_len = 0;
    return 0;
}

/* chunkstore_record_bound -- see chunkstore.h. */
size_t chunkstore_record_bound(size_t len)
{
    return CHUNKSTORE_REC_HDR + ZSTD_compressBound(len);
}

/* chunk_encoder_new -- see chunkstore.h. */
chunk_encoder *chunk_encoder_new(int level)
{
    chunk_encoder *e = calloc(1, sizeof(*e));

    if (!e) {
        log_errno("could not allocate memory");
        return NULL;
    }
    e->level = level > 0 ? level : 3;
    if (!(e->cctx = ZSTD_createCCtx())) {
        log_error("could not create a zstd context");
        free(e);
        return NULL;
    }
    return e;
}

void chunk_encoder_free(chunk_encoder *e)
{
    if (!e)
        return;
    ZSTD_freeCCtx(e->cctx);
    free(e);
}

/* chunk_encode -- see chunkstore.h. */
size_t chunk_encode(chunk_encoder *e, const void *buf, size_t len,
                    const uint8_t digest[SHA256_LEN], uint8_t *rec, size_t cap)
{
    if (len > CHUNKSTORE_CHUNK_MAX || cap < chunkstore_record_bound(len)) {
        log_error("could not compress a chunk of %zu bytes: it is too large", len);
        return 0;
    }
    size_t z = ZSTD_compressCCtx(e->cctx, rec + CHUNKSTORE_REC_HDR, cap - CHUNKSTORE_REC_HDR, buf,
                                 len, e->level);
    if (ZSTD_isError(z)) {
        log_error("could not compress a chunk: %s", ZSTD_getErrorName(z));
        return 0;
    }
    put_le32(rec, SKIP_MAGIC);
    put_le32(rec + 4, 8 + SHA256_LEN);
    put_le32(rec + 8, (uint32_t)len);
    put_le32(rec + 12, (uint32_t)z);
    memcpy(rec + 16, digest, SHA256_LEN);
    return CHUNKSTORE_REC_HDR + z;
}

int chunkstore_level(const chunkstore *cs) { return cs->level; }

/* chunkstore_known -- see chunkstore.h. */
int chunkstore_known(chunkstore *cs, const uint8_t digest[SHA256_LEN])
{
    pthread_mutex_lock(&cs->table_mu);
    int known = table_find(cs, digest) != NULL;
    pthread_mutex_unlock(&cs->table_mu);
    return known;
}

/* append -- the record (rec_len bytes already at cs->buf + cs->len) into the open
 * pack's index and the table; commits the pack once past the target. -1 reported. */
static int append(chunkstore *cs, const uint8_t digest[SHA256_LEN], size_t rec_len,
                  size_t raw_len, uint64_t *stored)
{
    if (grow(&cs->idx, &cs->idx_cap, cs->idx_len + IDX_ENTRY) != 0)
        return -1;
    chunk_loc loc = {.pack = cs->open_pack, .offset = cs->len, .rec_len = (uint32_t)rec_len,
                     .raw_len = (uint32_t)raw_len};
    uint8_t *e = cs->idx + cs->idx_len;
    memcpy(e, digest, SHA256_LEN);
    put_le64(e + 32, loc.offset);
    put_le32(e + 40, loc.rec_len);
    put_le32(e + 44, loc.raw_len);
    pthread_mutex_lock(&cs->table_mu);
    int r = table_add(cs, digest, &loc);
    pthread_mutex_unlock(&cs->table_mu);
    if (r != 0)
        return -1;
    cs->idx_len += IDX_ENTRY;
    cs->len += loc.rec_len;
    *stored = loc.rec_len;
    cs->stats.new_chunks++;
    cs->stats.new_bytes += loc.rec_len;
    if (cs->len >= CHUNKSTORE_PACK_TARGET)
        return chunkstore_flush(cs);
    return 0;
}

/* chunkstore_add -- see chunkstore.h. */
int chunkstore_add(chunkstore *cs, const uint8_t digest[SHA256_LEN], const uint8_t *rec,
                   size_t rec_len, uint64_t *stored)
{
    *stored = 0;
    cs->stats.chunks++;
    if (table_find(cs, digest))
        return 0;
    if (!rec)
        return log_error("could not store a chunk: it was known and is not any more");
    if (rec_len < CHUNKSTORE_REC_HDR || get_le32(rec) != SKIP_MAGIC ||
        (size_t)get_le32(rec + 12) != rec_len - CHUNKSTORE_REC_HDR ||
        memcmp(rec + 16, digest, SHA256_LEN) != 0)
        return log_error("could not store a chunk: malformed record");
    if (!cs->have_open && open_pack(cs) != 0)
        return -1;
    if (grow(&cs->buf, &cs->buf_cap, cs->len + rec_len) != 0)
        return -1;
    memcpy(cs->buf + cs->len, rec, rec_len);
    return append(cs, digest, rec_len, get_le32(rec + 8), stored);
}

/* chunkstore_put -- see chunkstore.h. */
int chunkstore_put(chunkstore *cs, const void *buf, size_t len, uint8_t digest[SHA256_LEN],
                   uint64_t *stored)
{
    *stored = 0;
    if (len > CHUNKSTORE_CHUNK_MAX)
        return log_error("chunk of %zu bytes is too large", len);
    if (sha256_buffer(buf, len, digest) != 0)
        return -1;
    cs->stats.chunks++;
    if (table_find(cs, digest))
        return 0;
    if (!cs->have_open && open_pack(cs) != 0)
        return -1;
    if (!cs->cctx && !(cs->cctx = ZSTD_createCCtx()))
        return log_error("could not create a zstd context");
    size_t bound = chunkstore_record_bound(len);
    if (grow(&cs->buf, &cs->buf_cap, cs->len + bound) != 0)
        return -1;
    chunk_encoder e = {.cctx = cs->cctx, .level = cs->level};
    size_t rec_len = chunk_encode(&e, buf, len, digest, cs->buf + cs->len, bound);
    if (rec_len == 0)
        return -1;
    return append(cs, digest, rec_len, len, stored);
}

/* chunkstore_flush -- the pack, then its index, each durable. */
int chunkstore_flush(chunkstore *cs)
{
    char ikey[128];
    uint8_t *ib = NULL;
    int ret = -1;

    if (!cs->have_open || cs->len == 0)
        return 0;
    const char *pkey = cs->packs[cs->open_pack].key;
    size_t n = cs->idx_len / IDX_ENTRY, ilen = 16 + cs->idx_len + SHA256_LEN;
    if (!(ib = malloc(ilen)))
        return log_errno("could not allocate memory");
    memcpy(ib, IDX_MAGIC, 8);
    put_le32(ib + 8, (uint32_t)n);
    put_le32(ib + 12, 0);
    memcpy(ib + 16, cs->idx, cs->idx_len);
    if (sha256_buffer(ib, ilen - SHA256_LEN, ib + ilen - SHA256_LEN) != 0)
        goto out;
    int r = storage_put(cs->st, pkey, cs->buf, cs->len, 1);
    if (r == RS_EXISTS)
        log_error("could not store pack \"%s\": the name is taken", pkey);
    if (r != 0)
        goto out;
    id_key(ikey, sizeof(ikey), pkey, "idx");
    r = storage_put(cs->st, ikey, ib, ilen, 1);
    if (r == RS_EXISTS)
        log_error("could not store index \"%s\": the name is taken", ikey);
    if (r != 0)
        goto out;
    cs->packs[cs->open_pack].size = cs->len;
    cs->packs[cs->open_pack].has_index = 1;
    cs->stats.packs++;
    log_debug("stored pack \"%s\": %zu chunk%s, %zu bytes", pkey, n, PLURAL(n), cs->len);
    cs->have_open = 0;
    cs->len = cs->idx_len = 0;
    ret = 0;
out:
    free(ib);
    return ret;
}

void chunkstore_get_stats(const chunkstore *cs, chunkstore_stats *out)
{
    *out = cs->stats;
}

int chunkstore_find(const chunkstore *cs, const uint8_t digest[SHA256_LEN], chunk_loc *loc)
{
    const slot *s = table_find(cs, digest);
    if (!s || (cs->have_open && s->loc.pack == cs->open_pack))
        return 0;
    if (loc)
        *loc = s->loc;
    return 1;
}

size_t chunkstore_npacks(const chunkstore *cs) { return cs->npacks; }
const char *chunkstore_pack_key(const chunkstore *cs, uint32_t pack) { return cs->packs[pack].key; }
uint64_t chunkstore_pack_size(const chunkstore *cs, uint32_t pack) { return cs->packs[pack].size; }

/* need_bytes -- how many bytes the record at p needs to be whole (what a valid
 * header says); a header already seen to be invalid needs no more. */
static size_t need_bytes(const uint8_t *p, size_t avail)
{
    if (avail < 16)
        return CHUNKSTORE_REC_HDR;
    if (get_le32(p) != SKIP_MAGIC || get_le32(p + 12) > ZSTD_compressBound(CHUNKSTORE_CHUNK_MAX))
        return 0;
    return CHUNKSTORE_REC_HDR + (size_t)get_le32(p + 12);
}

/* A pack read record by record: each whole record (header + frame) in acc[pos..]. */
typedef struct pack_rd {
    const char *key;
    storage_read *rd;
    uint8_t *acc;
    size_t acc_len, acc_cap, pos;
    uint64_t off;               /* pack offset of the record pack_next returned last */
    size_t last;                /* its length */
    int eof;
} pack_rd;

/* pack_next -- the next whole record with a valid header: 1 (*rec, *rlen; p->off is
 * its offset), 0 at the end of the pack, RS_MISMATCH for a damaged record or a read
 * that failed its check, -1 for any other failure (both reported). */
static int pack_next(pack_rd *p, const uint8_t **rec, size_t *rlen)
{
    const void *data;
    ssize_t n;

    p->pos += p->last;
    p->off += p->last;
    p->last = 0;
    while (!p->eof && p->acc_len - p->pos < need_bytes(p->acc + p->pos, p->acc_len - p->pos)) {
        n = storage_read_data(p->rd, &data);
        if (n < 0) {
            log_error("could not read pack \"%s\"", p->key);
            return storage_read_mismatch(p->rd) ? RS_MISMATCH : -1;
        }
        if (n == 0) {
            p->eof = 1;
            break;
        }
        if (p->pos > 0) {
            memmove(p->acc, p->acc + p->pos, p->acc_len - p->pos);
            p->acc_len -= p->pos;
            p->pos = 0;
        }
        if (grow(&p->acc, &p->acc_cap, p->acc_len + (size_t)n) != 0)
            return -1;
        memcpy(p->acc + p->acc_len, data, (size_t)n);
        p->acc_len += (size_t)n;
    }
    size_t avail = p->acc_len - p->pos;
    if (avail == 0 && p->eof)
        return 0;
    const uint8_t *r = p->acc + p->pos;
    if (avail < CHUNKSTORE_REC_HDR || get_le32(r) != SKIP_MAGIC ||
        get_le32(r + 4) != 8 + SHA256_LEN || get_le32(r + 8) > CHUNKSTORE_CHUNK_MAX ||
        avail < CHUNKSTORE_REC_HDR + (size_t)get_le32(r + 12)) {
        log_error("pack \"%s\" is damaged at offset %" PRIu64, p->key, p->off);
        return RS_MISMATCH;
    }
    *rec = r;
    *rlen = p->last = CHUNKSTORE_REC_HDR + (size_t)get_le32(r + 12);
    return 1;
}

/* decode_rec -- decompress the record's chunk into *raw (grown) and check it against
 * the digest it carries: 0 (*status 0, or RS_MISMATCH reported naming the chunk, the
 * pack and offset) | -1 reported. */
static int decode_rec(ZSTD_DCtx *dctx, const uint8_t *rec, uint8_t **raw, size_t *raw_cap,
                      const char *key, uint64_t off, int *status)
{
    uint32_t raw_len = get_le32(rec + 8), zlen = get_le32(rec + 12);
    uint8_t d[SHA256_LEN];

    *status = 0;
    if (grow(raw, raw_cap, raw_len + 1) != 0)
        return -1;
    size_t z = ZSTD_decompressDCtx(dctx, *raw, raw_len, rec + CHUNKSTORE_REC_HDR, zlen);
    if (ZSTD_isError(z) || z != raw_len) {
        *status = RS_MISMATCH;
    } else {
        if (sha256_buffer(*raw, raw_len, d) != 0)
            return -1;
        if (memcmp(d, rec + 16, SHA256_LEN) != 0)
            *status = RS_MISMATCH;
    }
    if (*status) {
        char hex[SHA256_HEX_LEN + 1];
        sha256_to_hex(rec + 16, hex);
        log_error("chunk %s in pack \"%s\" (offset %" PRIu64 ") is damaged", hex, key, off);
    }
    return 0;
}

/* chunkstore_read_pack -- see chunkstore.h. */
int chunkstore_read_pack(storage *st, const char *key, chunk_want_fn want, chunk_got_fn got,
                         void *arg)
{
    pack_rd p = {.key = key};
    ZSTD_DCtx *dctx = NULL;
    uint8_t *raw = NULL;
    size_t raw_cap = 0, rlen;
    const uint8_t *rec;
    int ret = -1, r, status;

    r = storage_read_open(st, key, &p.rd);
    if (r != 0)
        return r;
    if (!(dctx = ZSTD_createDCtx())) {
        log_error("could not create a zstd context");
        goto out;
    }
    while ((r = pack_next(&p, &rec, &rlen)) == 1) {
        if (!want(arg, rec + 16))
            continue;
        if (decode_rec(dctx, rec, &raw, &raw_cap, key, p.off, &status) != 0)
            goto out;
        r = got(arg, rec + 16, status ? NULL : raw, get_le32(rec + 8), status);
        if (r != 0) {
            ret = r;
            goto out;
        }
    }
    ret = r; /* 0 at the end, or the damage */
out:
    ZSTD_freeDCtx(dctx);
    free(p.acc);
    free(raw);
    storage_read_free(p.rd);
    return ret;
}

/* ---- chunkstore_read_pack_par: one reader, nthreads decoders ---------------------- */

#define PAR_BATCH (1u << 20)    /* compressed bytes per batch handed to a decoder */

typedef struct par_batch {
    uint8_t *buf;               /* whole records (header + frame), one after the other */
    size_t len, cap;
    uint64_t off;               /* pack offset of the first record (for messages) */
    uint64_t *offs;             /* pack offset of each record */
    size_t nrec, caprec;
} par_batch;

typedef struct par_ctx {
    const char *key;
    chunk_got_fn got;
    void **args;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    par_batch **q;              /* ring of queued batches */
    size_t qcap, qhead, qlen;
    int eof;                    /* the reader queued its last batch */
    int result;                 /* the first non-zero got() or decoder failure */
} par_ctx;

typedef struct par_thread {
    par_ctx *c;
    int i;
    pthread_t th;
} par_thread;

static void par_batch_free(par_batch *b)
{
    if (b) {
        free(b->buf);
        free(b->offs);
        free(b);
    }
}

static void *par_main(void *arg)
{
    par_thread *t = arg;
    par_ctx *c = t->c;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    uint8_t *raw = NULL;
    size_t raw_cap = 0;
    int fail = dctx ? 0 : (log_error("could not create a zstd context"), -1);

    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (c->qlen == 0 && !c->eof && c->result == 0 && fail == 0)
            pthread_cond_wait(&c->cv, &c->mu);
        if (fail != 0 && c->result == 0)
            c->result = fail;
        if (c->qlen == 0 || c->result != 0) {
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        }
        par_batch *b = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        size_t pos = 0;
        for (size_t k = 0; k < b->nrec && fail == 0; k++) {
            const uint8_t *rec = b->buf + pos;
            int status;
            if (decode_rec(dctx, rec, &raw, &raw_cap, c->key, b->offs[k], &status) != 0) {
                fail = -1;
                break;
            }
            int r = c->got(c->args[t->i], rec + 16, status ? NULL : raw, get_le32(rec + 8), status);
            if (r != 0)
                fail = r;
            pos += CHUNKSTORE_REC_HDR + get_le32(rec + 12);
        }
        par_batch_free(b);
        if (fail != 0) {
            pthread_mutex_lock(&c->mu);
            if (c->result == 0)
                c->result = fail;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    free(raw);
    return NULL;
}

/* par_push -- queue b for the decoders (waits while the queue is full). The decoders'
 * result: 0 to go on. */
static int par_push(par_ctx *c, par_batch *b)
{
    pthread_mutex_lock(&c->mu);
    while (c->qlen == c->qcap && c->result == 0)
        pthread_cond_wait(&c->cv, &c->mu);
    int r = c->result;
    if (r == 0) {
        c->q[(c->qhead + c->qlen) % c->qcap] = b;
        c->qlen++;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (r != 0)
        par_batch_free(b);
    return r;
}

/* chunkstore_read_pack_par -- see chunkstore.h. */
int chunkstore_read_pack_par(storage *st, const char *key, chunk_want_fn want, void *want_arg,
                             chunk_got_fn got, void **args, int nthreads)
{
    pack_rd p = {.key = key};
    const uint8_t *rec;
    size_t rlen;
    int ret = -1, started = 0;
    par_ctx c;
    par_thread *th = NULL;
    par_batch *b = NULL;

    memset(&c, 0, sizeof(c));
    int r = storage_read_open(st, key, &p.rd);
    if (r != 0)
        return r;
    c.key = key;
    c.got = got;
    c.args = args;
    c.qcap = (size_t)nthreads * 2;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    if (!(c.q = calloc(c.qcap, sizeof(*c.q))) || !(th = calloc((size_t)nthreads, sizeof(*th)))) {
        log_errno("could not allocate memory");
        goto out;
    }
    for (int i = 0; i < nthreads; i++) {
        th[i].c = &c;
        th[i].i = i;
        if (pthread_create(&th[i].th, NULL, par_main, &th[i]) != 0)
            break;
        started++;
    }
    if (started == 0) {
        log_error("could not start the decoding threads");
        goto out;
    }
    while ((r = pack_next(&p, &rec, &rlen)) == 1) {
        if (want(want_arg, rec + 16)) {
            if (!b && !(b = calloc(1, sizeof(*b)))) {
                log_errno("could not allocate memory");
                goto out;
            }
            if (b->nrec == b->caprec) {
                size_t nc = b->caprec ? b->caprec * 2 : 64;
                uint64_t *o = realloc(b->offs, nc * sizeof(*o));
                if (!o) {
                    log_errno("could not allocate memory");
                    goto out;
                }
                b->offs = o;
                b->caprec = nc;
            }
            if (grow(&b->buf, &b->cap, b->len + rlen) != 0)
                goto out;
            memcpy(b->buf + b->len, rec, rlen);
            b->len += rlen;
            b->offs[b->nrec++] = p.off;
            if (b->len >= PAR_BATCH) {
                r = par_push(&c, b);
                b = NULL;
                if (r != 0)
                    break;
            }
        }
    }
    if (r < 0)
        goto out; /* reported: the reader failed */
    if (r == RS_MISMATCH)
        ret = RS_MISMATCH; /* the batches before it are decoded first */
    if (b) {
        par_push(&c, b);
        b = NULL;
    }
    if (ret == -1)
        ret = 0;
out:
    pthread_mutex_lock(&c.mu);
    c.eof = 1;
    if (ret != 0 && ret != RS_MISMATCH && c.result == 0)
        c.result = -1; /* the reader failed: the decoders stop */
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i].th, NULL);
    if (c.result != 0 && ret != -1)
        ret = c.result;
    for (; c.qlen > 0; c.qlen--, c.qhead = (c.qhead + 1) % c.qcap)
        par_batch_free(c.q[c.qhead]);
    par_batch_free(b);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    free(c.q);
    free(th);
    free(p.acc);
    storage_read_free(p.rd);
    return ret;
}

/* sweep_temps -- writers' temps a killed process left in chunks/ (local only). */
static int sweep_temps(chunkstore *cs, int dry_run)
{
    const char *loc = storage_location(cs->st);
    char dir[4096];
    int ret = 0;

    if (loc[0] != '/')
        return 0;
    snprintf(dir, sizeof(dir), "%s/%s", loc, CHUNKSTORE_PREFIX);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] != '.' || n < 5 || strcmp(de->d_name + n - 4, ".tmp") != 0)
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
    return ret;
}

/* chunkstore_sweep -- see chunkstore.h. */
int chunkstore_sweep(chunkstore *cs, const cas_set *keep, int dry_run, uint64_t *removed,
                     uint64_t *bytes, uint64_t *kept_packs)
{
    unsigned char *live = calloc(cs->npacks + 1, 1);
    uint64_t nrem = 0, nbytes = 0, nkept = 0;
    char ikey[128];
    int ret = -1;

    if (!live)
        return log_errno("could not allocate memory");
    for (size_t i = 0; i < cs->cap; i++)
        if (cs->slots[i].used && cas_set_has(keep, cs->slots[i].digest))
            live[cs->slots[i].loc.pack] = 1;
    for (size_t p = 0; p < cs->npacks; p++) {
        if (cs->have_open && p == cs->open_pack)
            continue;
        if (live[p]) {
            nkept++;
            continue;
        }
        nrem++;
        nbytes += cs->packs[p].size;
        log_info("%s pack \"%s\"%s", dry_run ? "would delete" : "deleting", cs->packs[p].key,
                 cs->packs[p].has_index ? "" : " (no index: left by an interrupted backup)");
        if (dry_run)
            continue;
        /* the index first: from then on no reader or writer can use the pack */
        id_key(ikey, sizeof(ikey), cs->packs[p].key, "idx");
        if (storage_remove(cs->st, ikey) != 0)
            goto out;
        /* test hook: the crash window between the index and its pack */
        if (getenv("RAGSAFE_TEST_SWEEP_KILL"))
            raise(SIGKILL);
        if (storage_remove(cs->st, cs->packs[p].key) != 0)
            goto out;
    }
    if (sweep_temps(cs, dry_run) != 0)
        goto out;
    ret = 0;
out:
    if (removed)
        *removed = nrem;
    if (bytes)
        *bytes = nbytes;
    if (kept_packs)
        *kept_packs = nkept;
    free(live);
    return ret;
}
