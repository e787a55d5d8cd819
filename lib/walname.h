/*
 * walname.h -- WAL file names, LSN arithmetic, the WAL page header, history files.
 *
 * Pure functions, no I/O, nothing reported except where said: callers decide what a
 * bad name means for them.
 *
 * Segment names are TTTTTTTT LLLLLLLL SSSSSSSS (24 uppercase hex digits): timeline,
 * then segno split as segno / segs_per_xlogid and segno % segs_per_xlogid, where
 * segs_per_xlogid = 0x100000000 / seg_size.
 */
#ifndef RAGSAFE_WALNAME_H
#define RAGSAFE_WALNAME_H

#include <stddef.h>
#include <stdint.h>

#define WAL_PAGE_SIZE 8192
#define WAL_MAGIC_PG15 0xD110
#define WAL_LONG_HEADER_SIZE 40
#define WAL_MIN_SEG_SIZE (1u << 20)
#define WAL_MAX_SEG_SIZE (1u << 30)
#define WAL_DEFAULT_SEG_SIZE (16u << 20)
#define WAL_NAME_LEN 24
#define LSN_STR_LEN 18 /* "XXXXXXXX/XXXXXXXX" */

typedef enum walfile_kind {
    WALFILE_INVALID = 0,
    WALFILE_SEGMENT,  /* 000000010000000000000001 */
    WALFILE_HISTORY,  /* 00000002.history */
    WALFILE_BACKUP,   /* 000000010000000000000002.00000028.backup */
    WALFILE_PARTIAL,  /* 000000010000000000000003.partial */
} walfile_kind;

walfile_kind walname_classify(const char *name);
const char *walname_kind_name(walfile_kind kind);

/* Power of two between 1 MiB and 1 GiB. */
int walname_seg_size_valid(uint64_t seg_size);

/* Parse the 24-hex-digit prefix of a segment / .partial / .backup name.
 * -1 when malformed or the low part is out of range for seg_size. */
int walname_parse(const char *name, uint32_t seg_size, uint32_t *tli, uint64_t *segno);
/* out must hold WAL_NAME_LEN + 1 bytes. */
void walname_format(char *out, uint32_t tli, uint64_t segno, uint32_t seg_size);
/* "0000000N.history"; out holds 17 bytes. -1 when name is not a history name. */
void walname_history(char *out, uint32_t tli);
int walname_parse_history(const char *name, uint32_t *tli);

/* LSN "X/Y" (hex). -1 when malformed. out holds LSN_STR_LEN + 1 bytes. */
int lsn_parse(const char *s, uint64_t *lsn);
void lsn_format(char *out, uint64_t lsn);
static inline uint64_t lsn_segno(uint64_t lsn, uint32_t seg_size) { return lsn / seg_size; }

typedef struct walhistory walhistory;

/* The long page header at the start of every segment. */
typedef struct walpage_info {
    uint16_t magic;
    uint16_t info;
    uint32_t tli;
    uint64_t pageaddr;
    uint64_t sysid;
    uint32_t seg_size;
    uint32_t blcksz;
} walpage_info;

enum walpage_result {
    WALPAGE_OK = 0,
    WALPAGE_TRUNCATED,    /* fewer than WAL_LONG_HEADER_SIZE bytes */
    WALPAGE_BAD_MAGIC,    /* not a PostgreSQL 15 WAL page */
    WALPAGE_NOT_LONG,     /* XLP_LONG_HEADER not set */
    WALPAGE_BAD_SIZES,    /* seg size not a valid size, or block size not 8192 */
    /* walpage_check: the header is valid but does not belong where it is stored */
    WALPAGE_BAD_NAME,     /* the name is not a segment name for the segment size */
    WALPAGE_WRONG_SEG_SIZE, /* another segment size than the repository's */
    WALPAGE_WRONG_SYSID,  /* another database system than the repository's */
    WALPAGE_WRONG_SEGMENT, /* the page address is another segment's */
    WALPAGE_WRONG_TIMELINE, /* the page timeline is neither the name's nor an ancestor */
    WALPAGE_WRONG_FILE_SIZE, /* the file is not one segment long */
};
/* Decode the header; returns a walpage_result (0 on success). */
int walpage_parse(const void *buf, size_t len, walpage_info *out);
const char *walpage_result_text(int result);

/*
 * What a segment (or .partial) stored under a name must be. Zero fields are not
 * checked: seg_size 0 takes the header's (ragsafe-archive, before the repository is
 * pinned), sysid 0 any system, file_size 0 any length.
 *
 * The page timeline must be the name's or one of its ancestors: the first segment of
 * a new timeline begins with its parent's (or an older ancestor's) pages. history is
 * the name's timeline's history file (NULL: none known, then only the name's own
 * timeline is accepted); check_tli 0 skips the timeline check.
 */
typedef struct walpage_expect {
    uint64_t sysid;
    uint32_t seg_size;
    uint64_t file_size;
    int check_tli;
    const walhistory *history;
} walpage_expect;

/*
 * walpage_check -- does buf (the first len bytes of the file stored as name) hold
 * the long page header of that very segment? Returns a walpage_result (WALPAGE_OK:
 * it does); h gets the decoded header (may be NULL); why (whylen bytes, may be NULL)
 * gets what disagrees ("page address 0/17000000, the name says 0/16000000"). Shared by
 * ragsafe-archive (on the way in), ragsafe-restore, pitr plan/restore and verify.
 */
int walpage_check(const void *buf, size_t len, const char *name, const walpage_expect *want,
                  walpage_info *h, char *why, size_t whylen);

/* A timeline history file: one entry per ancestor, oldest first. */
typedef struct walhistory_entry {
    uint32_t tli;       /* the parent timeline */
    uint64_t switchpoint; /* where the child branched off (end of parent's WAL on it) */
} walhistory_entry;

struct walhistory {
    uint32_t tli;               /* the timeline this file describes */
    size_t n;
    walhistory_entry *entries;  /* malloc'd */
};

/* Parse the text of "<tli>.history". Comments (#) and blank lines are skipped.
 * -1 (not reported) when a line is malformed or parents are not increasing. */
int walhistory_parse(const char *text, size_t len, uint32_t tli, walhistory *out);
void walhistory_release(walhistory *h);

#endif
