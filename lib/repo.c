/*
 * repo.c -- repository layout and repo.json; see repo.h.
 */
#include "repo.h"
#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cipher.h"
#include "common.h"
#include "config.h"
#include "le.h"
#include "sha256.h"
#include "storage_s3.h"
#include "log.h"
#include "timefmt.h"
#include "walname.h"

const char *repo_location(const char *flag, const config *cfg)
{
    const char *loc = config_resolve(flag, "RAGSAFE_REPO", cfg, "repo");

    if (!loc) {
        log_error("no repository given");
        log_hint("use --repo DIR, RAGSAFE_REPO or \"repo = DIR\" in the config file");
        return NULL;
    }
    if (strncmp(loc, "s3://", 5) == 0 && s3_config_apply(cfg, NULL, NULL, NULL) != 0)
        return NULL;
    return loc;
}

int repo_cli_option(repo_cli *c, int opt, const char *arg)
{
    switch (opt) {
    case REPO_OPT_REPO: c->repo = arg; return 1;
    case REPO_OPT_S3_ENDPOINT: c->s3_endpoint = arg; return 1;
    case REPO_OPT_S3_REGION: c->s3_region = arg; return 1;
    case REPO_OPT_S3_URI_STYLE: c->s3_uri_style = arg; return 1;
    case REPO_OPT_CIPHER_KEY: c->key_file = arg; return 1;
    default: return 0;
    }
}

static cipher_key *cli_key;
/* during a rotation: the old key, unwrapped with the new one (check_key) */
static cipher_key *rot_old;
static pthread_mutex_t rot_mu = PTHREAD_MUTEX_INITIALIZER;

void repo_cli_release(void)
{
    storage_set_default_cipher(NULL);
    storage_set_default_cipher_old(NULL);
    cipher_key_free(cli_key);
    cli_key = NULL;
    cipher_key_free(rot_old);
    rot_old = NULL;
}

const char *repo_cli_setup(const repo_cli *c, const config *cfg)
{
    const char *loc, *kf;
    char *abs;

    if (s3_config_apply(cfg, c->s3_endpoint, c->s3_region, c->s3_uri_style) != 0)
        return NULL;
    loc = repo_location(c->repo, cfg);
    if (!loc)
        return NULL;
    kf = config_resolve(c->key_file, "RAGSAFE_CIPHER_KEY_FILE", cfg, "cipher-key-file");
    if (kf && *kf) {
        repo_cli_release();
        if (cipher_key_load(kf, &cli_key) != 0)
            return NULL;
        /* exported, absolute: a restore_command written from here must find it */
        abs = realpath(kf, NULL);
        if (abs) {
            setenv("RAGSAFE_CIPHER_KEY_FILE", abs, 1);
            free(abs);
        }
        storage_set_default_cipher(cli_key);
    }
    return loc;
}

#define KEY_CHECK_TEXT "ragsafe repository key check"

/* The encryption record, in repo.json ("encryption") or cipher.json:
 * {"cipher": "aes-256-gcm", "key_check": HEX}; key_check is the keyed digest of a
 * fixed text, which tells a wrong key at once and nothing about the key. */
static json_t *record_json(const cipher_key *k)
{
    uint8_t kc[32];
    char hex[65];

    if (cipher_keyed_digest(k, KEY_CHECK_TEXT, strlen(KEY_CHECK_TEXT), kc) != 0)
        return NULL;
    sha256_to_hex(kc, hex);
    return json_pack("{s:s, s:s}", "cipher", "aes-256-gcm", "key_check", hex);
}

/* record_parse -- a record into info->encrypted / key_check. -1 (not reported) when it
 * is not one this version knows. */
static int record_parse(json_t *v, repo_info *info)
{
    const char *c = json_string_value(json_object_get(v, "cipher"));
    const char *kc = json_string_value(json_object_get(v, "key_check"));

    json_t *rot = json_object_get(v, "rotation");

    if (!c || strcmp(c, "aes-256-gcm") != 0 || !kc || sha256_from_hex(kc, info->key_check) != 0)
        return -1;
    info->encrypted = 1;
    info->rotating = 0;
    if (rot) {
        const char *nk = json_string_value(json_object_get(rot, "new_key_check"));
        const char *ok = json_string_value(json_object_get(rot, "old_key"));
        if (!nk || sha256_from_hex(nk, info->new_key_check) != 0 || !ok ||
            strlen(ok) >= sizeof(info->old_key_wrapped))
            return -1;
        strcpy(info->old_key_wrapped, ok);
        info->rotating = 1;
    }
    return 0;
}

static int load_record(repo *r);

/* rotating_new -- the new key of a rotation in progress: unwrap the old key with it
 * and let every storage read objects sealed under either. */
static int rotating_new(repo *r, const cipher_key *k)
{
    cipher_key *old = NULL;
    int ret = 0;

    pthread_mutex_lock(&rot_mu);
    if (!rot_old) {
        ret = cipher_key_unwrap(k, r->info.old_key_wrapped, &old);
        if (ret == 0) {
            rot_old = old;
            storage_set_default_cipher_old(rot_old);
        }
    }
    if (ret == 0)
        storage_set_cipher_old(r->st, rot_old);
    pthread_mutex_unlock(&rot_mu);
    return ret;
}

/* rotating_old -- the old key during a rotation: hold the shared "rekey" lock while
 * the repository is open (rekey waits for it before it drops the old key), then read
 * the record again: the rotation may have finished meanwhile. */
static int rotating_old(repo *r)
{
    int ret;

    if (r->rekey_lock)
        return 0;
    log_warning("repository \"%s\" is being re-keyed; this tool has the old key", storage_location(r->st));
    log_hint("finish with ragsafe-pitr rekey, then give every tool the new key");
    ret = storage_lock_take(r->st, "rekey", 0, 1, &r->rekey_lock);
    if (ret != 0)
        return -1;
    return load_record(r);
}

/* check_key -- does the storage's key fit the repository? */
static int check_key(repo *r)
{
    const cipher_key *k = storage_cipher(r->st);
    const char *loc = storage_location(r->st);
    uint8_t kc[32];

    if (r->info.encrypted && !k) {
        log_error("repository \"%s\" is encrypted and no key was given", loc);
        log_hint("give the key it was created with: --cipher-key-file FILE, RAGSAFE_CIPHER_KEY_FILE "
                 "or \"cipher-key-file\" in the config file");
        return RS_MISMATCH;
    }
    if (!r->info.encrypted && k) {
        log_error("repository \"%s\" is not encrypted, but a key was given", loc);
        log_hint("a repository is encrypted or not from its creation on; drop --cipher-key-file "
                 "for this one, or start a new repository with the key");
        return RS_MISMATCH;
    }
    if (k && cipher_keyed_digest(k, KEY_CHECK_TEXT, strlen(KEY_CHECK_TEXT), kc) != 0)
        return -1;
    if (k && r->info.rotating && memcmp(kc, r->info.new_key_check, sizeof(kc)) == 0)
        return rotating_new(r, k);
    if (k && r->info.rotating && memcmp(kc, r->info.key_check, sizeof(kc)) == 0)
        return rotating_old(r);
    if (k && memcmp(kc, r->info.key_check, sizeof(kc)) != 0) {
        log_error("wrong key for repository \"%s\": it was encrypted with another key", loc);
        log_hint("--cipher-key-file must name the key the repository was created with");
        return RS_MISMATCH;
    }
    return 0;
}

/*
 * A repository without repo.json (only Milvus snapshots so far) records its encryption
 * in the plain root object cipher.json, {"cipher": "aes-256-gcm", "key_check": HEX},
 * written by the first sealed writer; repo.json, once created, carries the same record.
 * Either way a repository is sealed or plain from its first object on.
 */

/* has_objects -- 1 when anything is stored below the root, 0 when not, -1 (reported). */
static int has_objects(repo *r)
{
    static const char *const prefixes[] = {"milvus/", "wal/", "backups/", "files/"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        int n = storage_any(r->st, prefixes[i]);
        if (n != 0)
            return n;
    }
    return 0;
}

/* cipher_record -- the encryption record of a repository without repo.json into
 * r->info (encrypted, key_check). 0 | RS_NOT_FOUND | -1 (reported). */
static int cipher_record(repo *r)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *root;
    int ret = storage_get(r->st, CIPHER_INFO_KEY, 4096, &buf, &len);

    if (ret != 0)
        return ret;
    root = json_loadb(buf, len, 0, &jerr);
    free(buf);
    if (!root || record_parse(root, &r->info) != 0)
        ret = log_error("could not parse \"%s/%s\"", storage_location(r->st), CIPHER_INFO_KEY);
    json_decref(root);
    return ret;
}

/* check_unpinned -- the key against a repository that has no repo.json: its
 * cipher.json if any, else what is stored (a key for a repository holding plain
 * objects is refused). create: a sealed writer's first write records cipher.json. */
static int check_unpinned(repo *r, int create)
{
    const cipher_key *k = storage_cipher(r->st);
    int ret = cipher_record(r);

    if (ret == 0)
        return check_key(r);
    if (ret != RS_NOT_FOUND)
        return -1;
    if (!k)
        return 0; /* plain; a later sealed writer sees these objects and refuses */
    ret = has_objects(r);
    if (ret < 0)
        return -1;
    if (ret > 0)
        return check_key(r); /* objects, no record: plain, and a key was given */
    if (!create)
        return 0;
    {
        json_t *rec = record_json(k);
        char *text = rec ? json_dumps(rec, 0) : NULL;
        ret = text ? storage_put(r->st, CIPHER_INFO_KEY, text, strlen(text), 1)
                   : log_error("out of memory");
        if (ret == 0)
            record_parse(rec, &r->info);
        free(text);
        json_decref(rec);
    }
    if (ret == RS_EXISTS) /* a concurrent first writer: its record decides */
        return cipher_record(r) != 0 ? -1 : check_key(r);
    return ret < 0 ? -1 : 0;
}

repo *repo_open(const char *location, uring *ur, int create)
{
    repo *r = calloc(1, sizeof(*r));
    if (!r) {
        log_error("out of memory");
        return NULL;
    }
    r->st = storage_open(location, ur, create);
    if (!r->st) {
        free(r);
        return NULL;
    }
    return r;
}

repo *repo_open_checked(const char *location, uring *ur, int create, int *why)
{
    repo *r = repo_open(location, ur, create);
    int ret = r ? repo_load_info(r) : -1;

    if (ret == RS_NOT_FOUND)
        ret = check_unpinned(r, create);
    if (ret == 0)
        return r;
    if (why)
        *why = ret == RS_MISMATCH ? RS_MISMATCH : -1;
    repo_free(r);
    return NULL;
}

void repo_free(repo *r)
{
    if (!r)
        return;
    storage_lock_release(r->rekey_lock);
    storage_free(r->st);
    free(r);
}

/* pg_major -- the PostgreSQL major version repo.json records: a server_version_num
 * (150018, what older versions wrote after a base backup) is cut to its major part;
 * none at all (0, what older versions wrote from WAL) comes from the WAL page magic,
 * which names the major version (0xD110 is 15's, the only one ragsafe archives). */
static uint32_t pg_major(uint32_t pg_version, uint32_t wal_magic)
{
    if (pg_version >= 10000)
        return pg_version / 10000;
    if (pg_version == 0 && wal_magic == WAL_MAGIC_PG15)
        return 15;
    return pg_version;
}

static int parse_info(const char *where, const char *text, size_t len, repo_info *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr), *v;
    const char *sysid;
    char *end;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    if (!root)
        return log_error("could not parse \"%s\": %s (line %d)", where, jerr.text, jerr.line);
    v = json_object_get(root, "format");
    if (!json_is_integer(v)) {
        log_error("could not parse \"%s\": no \"format\"", where);
        goto out;
    }
    out->format = (int)json_integer_value(v);
    if (out->format > REPO_FORMAT) {
        log_error("repository \"%s\" has format %d; this ragsafe understands up to %d", where,
                  out->format, REPO_FORMAT);
        goto out;
    }
    sysid = json_string_value(json_object_get(root, "system_identifier"));
    if (!sysid || !*sysid) {
        log_error("could not parse \"%s\": no \"system_identifier\"", where);
        goto out;
    }
    out->sysid = strtoull(sysid, &end, 10);
    if (*end) {
        log_error("could not parse \"%s\": bad system_identifier \"%s\"", where, sysid);
        goto out;
    }
    out->seg_size = (uint32_t)json_integer_value(json_object_get(root, "wal_segment_size"));
    out->wal_magic = (uint32_t)json_integer_value(json_object_get(root, "wal_magic"));
    out->pg_version = pg_major((uint32_t)json_integer_value(json_object_get(root, "pg_version")),
                               out->wal_magic);
    if (!walname_seg_size_valid(out->seg_size)) {
        log_error("could not parse \"%s\": bad wal_segment_size", where);
        goto out;
    }
    v = json_object_get(root, "encryption");
    if (v && record_parse(v, out) != 0) {
        log_error("could not parse \"%s\": unknown \"encryption\"", where);
        goto out;
    }
    ret = 0;
out:
    json_decref(root);
    return ret;
}

/* load_record -- read the record again (rotating_old): repo.json, else cipher.json. */
static int load_record(repo *r)
{
    char *buf = NULL, where[4200];
    size_t len;
    int ret = storage_get(r->st, REPO_INFO_KEY, 1 << 20, &buf, &len);

    if (ret == 0) {
        snprintf(where, sizeof(where), "%s/%s", storage_location(r->st), REPO_INFO_KEY);
        ret = parse_info(where, buf, len, &r->info);
        free(buf);
    } else if (ret == RS_NOT_FOUND) {
        ret = cipher_record(r);
    }
    return ret == 0 ? check_key(r) : ret < 0 ? -1 : ret;
}

int repo_load_info(repo *r)
{
    char *buf = NULL, where[4200];
    size_t len;
    int ret = storage_get(r->st, REPO_INFO_KEY, 1 << 20, &buf, &len);

    if (ret != 0)
        return ret;
    snprintf(where, sizeof(where), "%s/%s", storage_location(r->st), REPO_INFO_KEY);
    ret = parse_info(where, buf, len, &r->info);
    free(buf);
    if (ret == 0)
        ret = check_key(r);
    if (ret == 0)
        r->have_info = 1;
    return ret;
}

static int compare(repo *r, const repo_info *want)
{
    const repo_info *have = &r->info;
    const char *loc = storage_location(r->st);

    if (want->sysid && have->sysid != want->sysid) {
        log_error("system identifier mismatch: repository \"%s\" belongs to database system %" PRIu64
                  ", the one offered here is database system %" PRIu64, loc, have->sysid, want->sysid);
        log_hint("each PostgreSQL cluster needs its own repository");
        return RS_MISMATCH;
    }
    if (want->seg_size && have->seg_size != want->seg_size) {
        log_error("WAL segment size mismatch: repository \"%s\" holds %u-byte segments, this one is %u bytes",
                  loc, have->seg_size, want->seg_size);
        return RS_MISMATCH;
    }
    return 0;
}

int repo_pin(repo *r, const repo_info *want)
{
    char sysid[32], created[32], *text;
    json_t *root;
    int ret;

    if (!r->have_info) {
        ret = repo_load_info(r);
        if (ret < 0 || ret == RS_MISMATCH)
            return ret;
        if (ret == 0)
            return compare(r, want);
    } else {
        return compare(r, want);
    }
    if (!want->sysid || !want->seg_size)
        return log_error("repository \"%s\" has no repo.json yet and nothing to create it from",
                         storage_location(r->st));
    /* Milvus snapshots may be there already: repo.json must say what they are */
    ret = check_unpinned(r, 0);
    if (ret != 0)
        return ret;
    snprintf(sysid, sizeof(sysid), "%" PRIu64, want->sysid);
    timefmt_utc(created, sizeof(created), time(NULL));
    root = json_pack("{s:i, s:s, s:i, s:i, s:i, s:s, s:s}", "format", REPO_FORMAT,
                     "system_identifier", sysid, "wal_segment_size", (json_int_t)want->seg_size,
                     "wal_magic", (json_int_t)want->wal_magic, "pg_version",
                     (json_int_t)pg_major(want->pg_version, want->wal_magic), "created", created,
                     "tool_version", RAGSAFE_VERSION);
    if (root && storage_cipher(r->st) &&
        json_object_set_new(root, "encryption", record_json(storage_cipher(r->st))) != 0) {
        json_decref(root);
        root = NULL;
    }
    text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text)
        return log_error("out of memory");
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return log_error("out of memory");
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    ret = storage_put(r->st, REPO_INFO_KEY, withnl, len + 1, 1);
    free(withnl);
    if (ret < 0)
        return -1;
    /* RS_EXISTS: a concurrent first writer won; compare with what it wrote. */
    if ((ret = repo_load_info(r)) != 0)
        return ret == RS_MISMATCH ? ret : -1;
    return compare(r, want);
}

int repo_wal_key(const char *name, char *out, size_t outlen)
{
    int n;

    switch (walname_classify(name)) {
    case WALFILE_SEGMENT:
    case WALFILE_PARTIAL:
    case WALFILE_BACKUP:
        n = snprintf(out, outlen, "wal/%.16s/%s.zst", name, name);
        break;
    case WALFILE_HISTORY:
        n = snprintf(out, outlen, "wal/%s.zst", name);
        break;
    default:
        return -1;
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int repo_wal_name_from_key(const char *key, char *out, size_t outlen)
{
    const char *base = strrchr(key, '/');
    size_t n;

    if (strncmp(key, "wal/", 4) != 0 || !base)
        return -1;
    base++;
    n = strlen(base);
    if (n < 5 || strcmp(base + n - 4, ".zst") != 0 || n - 4 >= outlen)
        return -1;
    memcpy(out, base, n - 4);
    out[n - 4] = '\0';
    if (walname_classify(out) == WALFILE_INVALID)
        return -1;
    /* The key must be exactly where repo_wal_key would put this name. */
    char want[128];
    if (repo_wal_key(out, want, sizeof(want)) != 0 || strcmp(want, key) != 0)
        return -1;
    return 0;
}

/*
 * pg_control of PostgreSQL 15 (ControlFileData, x86-64 and every 64-bit platform
 * PostgreSQL builds on): system_identifier u64 at 0, pg_control_version u32 at 8
 * (1300), xlog_seg_size u32 at 228, and a CRC-32C of the bytes before it at 288.
 * Checked against pg_controldata on a cluster made with --wal-segsize=64.
 */
#define PG_CONTROL_VERSION_15 1300
#define PG_CONTROL_SEG_SIZE_OFF 228
#define PG_CONTROL_CRC_OFF 288

int repo_info_from_pg_control(const char *datadir, repo_info *out)
{
    uint8_t buf[PG_CONTROL_CRC_OFF + 4];
    char path[4200];
    ssize_t n = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/global/pg_control", datadir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return RS_NOT_FOUND;
        return log_errno("could not open \"%s\"", path);
    }
    /* PostgreSQL rewrites it in place (one 8 kB write): a torn read fails the CRC;
     * read again */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (attempt)
            usleep(20000);
        n = pread(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            log_errno("could not read \"%s\"", path);
            close(fd);
            return -1;
        }
        if ((size_t)n == sizeof(buf) && crc32c(buf, PG_CONTROL_CRC_OFF) == le32_load(buf + PG_CONTROL_CRC_OFF))
            break;
        n = -1;
    }
    close(fd);
    if (n < 0)
        return log_error("\"%s\" is not a valid pg_control file (short, or its CRC does not match)", path);
    if (le32_load(buf + 8) != PG_CONTROL_VERSION_15)
        return log_error("\"%s\" has pg_control version %u; ragsafe reads PostgreSQL 15's (%u)", path,
                         le32_load(buf + 8), PG_CONTROL_VERSION_15);
    memset(out, 0, sizeof(*out));
    out->format = REPO_FORMAT;
    out->sysid = le64_load(buf);
    out->seg_size = le32_load(buf + PG_CONTROL_SEG_SIZE_OFF);
    out->wal_magic = WAL_MAGIC_PG15;
    if (!out->sysid || !walname_seg_size_valid(out->seg_size))
        return log_error("\"%s\" holds no valid system identifier or WAL segment size", path);
    return 0;
}

/* ---- key rotation (repo.h) ---------------------------------------------------------- */

static int key_check_of(const cipher_key *k, uint8_t kc[32])
{
    return cipher_keyed_digest(k, KEY_CHECK_TEXT, strlen(KEY_CHECK_TEXT), kc);
}

int repo_rekey_state(repo *r, const cipher_key *oldk, const cipher_key *newk, int *state)
{
    uint8_t ko[32], kn[32];
    int ret;

    memset(&r->info, 0, sizeof(r->info));
    r->have_info = 0;
    {
        char *buf = NULL, where[4200];
        size_t len;
        ret = storage_get(r->st, REPO_INFO_KEY, 1 << 20, &buf, &len);
        if (ret == 0) {
            snprintf(where, sizeof(where), "%s/%s", storage_location(r->st), REPO_INFO_KEY);
            ret = parse_info(where, buf, len, &r->info);
            free(buf);
        } else if (ret == RS_NOT_FOUND) {
            ret = cipher_record(r);
        }
    }
    if (ret != 0)
        return ret < 0 ? -1 : ret;
    if (!r->info.encrypted)
        return RS_NOT_FOUND;
    if (key_check_of(oldk, ko) != 0 || key_check_of(newk, kn) != 0)
        return -1;
    if (memcmp(ko, kn, 32) == 0) {
        log_error("the old and the new key are the same key");
        log_hint("make a new key: openssl rand -hex 32 > FILE; chmod 600 FILE");
        return RS_MISMATCH;
    }
    if (!r->info.rotating && memcmp(r->info.key_check, ko, 32) == 0)
        *state = 0;
    else if (r->info.rotating && memcmp(r->info.key_check, ko, 32) == 0 &&
             memcmp(r->info.new_key_check, kn, 32) == 0)
        *state = 1;
    else if (!r->info.rotating && memcmp(r->info.key_check, kn, 32) == 0)
        *state = 2;
    else {
        log_error("repository \"%s\": the keys given do not fit its encryption record", storage_location(r->st));
        if (r->info.rotating)
            log_hint("a rotation to another new key is in progress: finish it with the key files it "
                     "was started with");
        else
            log_hint("--cipher-key-file must name the repository's current key");
        return RS_MISMATCH;
    }
    return 0;
}

/* mark_record -- set the encryption record v (an object) as rotating or final. */
static int mark_record(json_t *v, const cipher_key *oldk, const cipher_key *newk, int finish)
{
    uint8_t kc[32];
    char hex[65], *wrapped = NULL;
    json_t *rot;
    int ret = -1;

    if (finish) {
        if (key_check_of(newk, kc) != 0)
            return -1;
        sha256_to_hex(kc, hex);
        if (json_object_set_new(v, "key_check", json_string(hex)) != 0 || json_object_del(v, "rotation") != 0)
            return log_error("out of memory");
        return 0;
    }
    if (key_check_of(newk, kc) != 0 || cipher_key_wrap(newk, oldk, &wrapped) != 0)
        return -1;
    sha256_to_hex(kc, hex);
    rot = json_pack("{s:s, s:s}", "new_key_check", hex, "old_key", wrapped);
    if (!rot || json_object_set_new(v, "rotation", rot) != 0)
        log_error("out of memory");
    else
        ret = 0;
    free(wrapped);
    return ret;
}

static int mark_object(repo *r, const char *key, const cipher_key *oldk, const cipher_key *newk, int finish)
{
    char *buf = NULL, *text = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *root = NULL, *v;
    int ret = storage_get(r->st, key, 1 << 20, &buf, &len);

    if (ret == RS_NOT_FOUND)
        return 0;
    if (ret != 0)
        return -1;
    ret = -1;
    root = json_loadb(buf, len, 0, &jerr);
    v = !root ? NULL : strcmp(key, REPO_INFO_KEY) == 0 ? json_object_get(root, "encryption") : root;
    if (!json_is_object(v)) {
        log_error("could not parse \"%s/%s\"", storage_location(r->st), key);
        goto out;
    }
    if (mark_record(v, oldk, newk, finish) != 0)
        goto out;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        log_error("out of memory");
        goto out;
    }
    {
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (!t) {
            log_error("out of memory");
            goto out;
        }
        text = t;
        text[n] = '\n';
        text[n + 1] = '\0';
        ret = storage_put(r->st, key, text, n + 1, 0) == 0 ? 0 : -1;
    }
out:
    free(buf);
    free(text);
    json_decref(root);
    return ret;
}

int repo_rekey_mark(repo *r, const cipher_key *oldk, const cipher_key *newk, int finish)
{
    /* cipher.json first: repo.json is what tools read when both exist */
    if (mark_object(r, CIPHER_INFO_KEY, oldk, newk, finish) != 0)
        return -1;
    return mark_object(r, REPO_INFO_KEY, oldk, newk, finish);
}

int repo_rekey_refuse(storage *st, const cipher_key *k, const char *what)
{
    repo tmp = {.st = st};
    char *buf = NULL, where[4200];
    size_t len = 0;
    uint8_t kc[32];
    int ret = storage_get(st, REPO_INFO_KEY, 1 << 20, &buf, &len);

    if (ret == 0) {
        snprintf(where, sizeof(where), "%s/%s", storage_location(st), REPO_INFO_KEY);
        ret = parse_info(where, buf, len, &tmp.info);
        free(buf);
    } else if (ret == RS_NOT_FOUND) {
        ret = cipher_record(&tmp);
    }
    if (ret == RS_NOT_FOUND || (ret == 0 && !tmp.info.rotating))
        return 0;
    if (ret != 0)
        return -1;
    if (k) {
        if (key_check_of(k, kc) != 0)
            return -1;
        if (memcmp(kc, tmp.info.key_check, 32) != 0 && memcmp(kc, tmp.info.new_key_check, 32) != 0)
            return 0;
    }
    log_error("repository \"%s\" is being re-keyed: %s waits until the rotation has finished",
              storage_location(st), what);
    log_detail("its objects are addressed by a digest keyed with the repository key and are moving "
               "to the new key's addresses");
    log_hint("finish it: run the same ragsafe-pitr rekey command again (it resumes), then give the new key");
    return -1;
}
