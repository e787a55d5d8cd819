/*
 * walname.c -- WAL names, LSNs, page headers and history files; see walname.h.
 */
#include "walname.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"
#include "strbuf.h"

static int is_hex_n(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || islower((unsigned char)s[i]))
            return 0;
    return 1;
}

walfile_kind walname_classify(const char *name)
{
    size_t len = strlen(name);

    if (len == WAL_NAME_LEN && is_hex_n(name, WAL_NAME_LEN))
        return WALFILE_SEGMENT;
    if (len == 16 && is_hex_n(name, 8) && strcmp(name + 8, ".history") == 0)
        return WALFILE_HISTORY;
    if (len == WAL_NAME_LEN + 8 && is_hex_n(name, WAL_NAME_LEN) &&
        strcmp(name + WAL_NAME_LEN, ".partial") == 0)
        return WALFILE_PARTIAL;
    if (len == WAL_NAME_LEN + 1 + 8 + 7 && is_hex_n(name, WAL_NAME_LEN) &&
        name[WAL_NAME_LEN] == '.' && is_hex_n(name + WAL_NAME_LEN + 1, 8) &&
        strcmp(name + WAL_NAME_LEN + 9, ".backup") == 0)
        return WALFILE_BACKUP;
    return WALFILE_INVALID;
}

const char *walname_kind_name(walfile_kind kind)
{
    switch (kind) {
    case WALFILE_SEGMENT: return "WAL segment";
    case WALFILE_HISTORY: return "timeline history file";
    case WALFILE_BACKUP: return "backup history file";
    case WALFILE_PARTIAL: return "partial WAL segment";
    default: return "invalid WAL file name";
    }
}

int walname_seg_size_valid(uint64_t seg_size)
{
    return seg_size >= WAL_MIN_SEG_SIZE && seg_size <= WAL_MAX_SEG_SIZE &&
           (seg_size & (seg_size - 1)) == 0;
}

static uint32_t hex8(const char *s)
{
    char buf[9];
    memcpy(buf, s, 8);
    buf[8] = '\0';
    return (uint32_t)strtoul(buf, NULL, 16);
}

int walname_parse(const char *name, uint32_t seg_size, uint32_t *tli, uint64_t *segno)
{
    uint64_t per_id;
    uint32_t hi, lo;

    if (strlen(name) < WAL_NAME_LEN || !is_hex_n(name, WAL_NAME_LEN) || !walname_seg_size_valid(seg_size))
        return -1;
    per_id = UINT64_C(0x100000000) / seg_size;
    hi = hex8(name + 8);
    lo = hex8(name + 16);
    if (lo >= per_id)
        return -1;
    if (tli)
        *tli = hex8(name);
    if (segno)
        *segno = (uint64_t)hi * per_id + lo;
    return 0;
}

void walname_format(char *out, uint32_t tli, uint64_t segno, uint32_t seg_size)
{
    uint64_t per_id = UINT64_C(0x100000000) / seg_size;
    snprintf(out, WAL_NAME_LEN + 1, "%08X%08X%08X", tli, (uint32_t)(segno / per_id),
             (uint32_t)(segno % per_id));
}

void walname_history(char *out, uint32_t tli)
{
    snprintf(out, 17, "%08X.history", tli);
}

int walname_parse_history(const char *name, uint32_t *tli)
{
    if (walname_classify(name) != WALFILE_HISTORY)
        return -1;
    *tli = hex8(name);
    return 0;
}

int lsn_parse(const char *s, uint64_t *lsn)
{
    const char *slash = strchr(s, '/');
    size_t hi_len, lo_len;
    char *end;
    unsigned long hi, lo;

    if (!slash)
        return -1;
    hi_len = (size_t)(slash - s);
    lo_len = strlen(slash + 1);
    if (hi_len < 1 || hi_len > 8 || lo_len < 1 || lo_len > 8)
        return -1;
    for (const char *c = s; *c; c++)
        if (c != slash && !isxdigit((unsigned char)*c))
            return -1;
    hi = strtoul(s, &end, 16);
    if (end != slash)
        return -1;
    lo = strtoul(slash + 1, &end, 16);
    if (*end)
        return -1;
    *lsn = (uint64_t)hi << 32 | (uint64_t)lo;
    return 0;
}

void lsn_format(char *out, uint64_t lsn)
{
    snprintf(out, LSN_STR_LEN + 1, "%X/%X", (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

int walpage_parse(const void *buf, size_t len, walpage_info *out)
{
    const uint8_t *p = buf;

    if (len < WAL_LONG_HEADER_SIZE)
        return WALPAGE_TRUNCATED;
    out->magic = le16_load(p);
    out->info = le16_load(p + 2);
    out->tli = le32_load(p + 4);
    out->pageaddr = le64_load(p + 8);
    /* xlp_rem_len at 16, padding at 20 */
    out->sysid = le64_load(p + 24);
    out->seg_size = le32_load(p + 32);
    out->blcksz = le32_load(p + 36);
    if (out->magic != WAL_MAGIC_PG15)
        return WALPAGE_BAD_MAGIC;
    if (!(out->info & 0x0002))
        return WALPAGE_NOT_LONG;
    if (!walname_seg_size_valid(out->seg_size) || out->blcksz != WAL_PAGE_SIZE)
        return WALPAGE_BAD_SIZES;
    return WALPAGE_OK;
}

const char *walpage_result_text(int result)
{
    switch (result) {
    case WALPAGE_OK: return "valid";
    case WALPAGE_TRUNCATED: return "too short for a WAL page header";
    case WALPAGE_BAD_MAGIC: return "bad magic number (not PostgreSQL 15 WAL)";
    case WALPAGE_NOT_LONG: return "first page lacks the long header";
    case WALPAGE_BAD_SIZES: return "invalid segment or block size in the page header";
    case WALPAGE_BAD_NAME: return "not a segment name for this segment size";
    case WALPAGE_WRONG_SEG_SIZE: return "another segment size than the repository's";
    case WALPAGE_WRONG_SYSID: return "another database system than the repository's";
    case WALPAGE_WRONG_SEGMENT: return "its first page belongs to another segment";
    case WALPAGE_WRONG_TIMELINE: return "its first page belongs to an unrelated timeline";
    case WALPAGE_WRONG_FILE_SIZE: return "not one segment long";
    default: return "unknown page header problem";
    }
}

int walpage_check(const void *buf, size_t len, const char *name, const walpage_expect *want,
                  walpage_info *h, char *why, size_t whylen)
{
    walpage_info mine;
    uint32_t name_tli, seg_size;
    uint64_t segno;
    char a[LSN_STR_LEN + 1], b[LSN_STR_LEN + 1];
    int res;

    if (!h)
        h = &mine;
    fixbuf_printf(why, whylen, "%s", "");
    res = walpage_parse(buf, len, h);
    if (res != WALPAGE_OK) {
        fixbuf_printf(why, whylen, "%s", walpage_result_text(res));
        return res;
    }
    seg_size = want->seg_size ? want->seg_size : h->seg_size;
    if (h->seg_size != seg_size) {
        fixbuf_printf(why, whylen, "segment size %u in the page header, the repository's is %u",
                      h->seg_size, seg_size);
        return WALPAGE_WRONG_SEG_SIZE;
    }
    if (want->file_size && want->file_size != seg_size) {
        fixbuf_printf(why, whylen, "%" PRIu64 " bytes long, segments are %u bytes", want->file_size,
                      seg_size);
        return WALPAGE_WRONG_FILE_SIZE;
    }
    if (want->sysid && h->sysid != want->sysid) {
        fixbuf_printf(why, whylen,
                      "database system %" PRIu64
                      " in the page header, the repository belongs to %" PRIu64,
                      h->sysid, want->sysid);
        return WALPAGE_WRONG_SYSID;
    }
    if (walname_parse(name, seg_size, &name_tli, &segno) != 0) {
        fixbuf_printf(why, whylen, "\"%s\" is not a segment name for %u-byte segments", name,
                      seg_size);
        return WALPAGE_BAD_NAME;
    }
    if (h->pageaddr != segno * (uint64_t)seg_size) {
        lsn_format(a, h->pageaddr);
        lsn_format(b, segno * (uint64_t)seg_size);
        fixbuf_printf(why, whylen, "page address %s in the header, the name says %s", a, b);
        return WALPAGE_WRONG_SEGMENT;
    }
    if (want->check_tli && h->tli != name_tli) {
        int ancestor = 0;
        if (want->history && want->history->tli == name_tli)
            for (size_t i = 0; i < want->history->n; i++)
                if (want->history->entries[i].tli == h->tli)
                    ancestor = 1;
        if (!ancestor) {
            fixbuf_printf(why, whylen, "page timeline %u, the name says timeline %u%s", h->tli,
                          name_tli,
                          want->history && want->history->tli == name_tli
                              ? " and its history does not list it as an ancestor"
                              : " (and no history of that timeline to accept an ancestor)");
            return WALPAGE_WRONG_TIMELINE;
        }
    }
    return WALPAGE_OK;
}

int walhistory_parse(const char *text, size_t len, uint32_t tli, walhistory *out)
{
    size_t pos = 0;

    memset(out, 0, sizeof(*out));
    out->tli = tli;
    while (pos < len) {
        size_t end = pos;
        char line[1024], *p, *endp;
        unsigned long parent;
        uint64_t lsn;
        walhistory_entry *e;

        while (end < len && text[end] != '\n')
            end++;
        if (end - pos >= sizeof(line))
            goto bad;
        memcpy(line, text + pos, end - pos);
        line[end - pos] = '\0';
        pos = end + 1;

        p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        parent = strtoul(p, &endp, 10);
        if (endp == p || !isspace((unsigned char)*endp))
            goto bad;
        p = endp;
        while (isspace((unsigned char)*p))
            p++;
        endp = p;
        while (*endp && !isspace((unsigned char)*endp))
            endp++;
        if (*endp)
            *endp++ = '\0';
        if (lsn_parse(p, &lsn) != 0)
            goto bad;
        if (parent == 0 || parent >= tli || (out->n && parent <= out->entries[out->n - 1].tli))
            goto bad;
        e = realloc(out->entries, (out->n + 1) * sizeof(*e));
        if (!e)
            goto bad;
        out->entries = e;
        e[out->n].tli = (uint32_t)parent;
        e[out->n].switchpoint = lsn;
        out->n++;
    }
    return 0;
bad:
    walhistory_release(out);
    return -1;
}

void walhistory_release(walhistory *h)
{
    free(h->entries);
    h->entries = NULL;
    h->n = 0;
}
