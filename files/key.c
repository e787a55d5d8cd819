/*
 * key.c -- the key file of ragsafe-files: 32 random bytes as 64 hex digits, mode 0600.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "durable.h"
#include "files.h"
#include "hex.h"
#include "log.h"

/*
 * files_keygen -- create a new key file at path, mode 0600, never replacing one:
 * losing the old key loses every snapshot sealed with it.
 */
int files_keygen(const char *path)
{
    uint8_t raw[CIPHER_KEY_LEN];
    char hex[2 * CIPHER_KEY_LEN + 2];
    char *dir = NULL, *abs = NULL;
    int fd = -1, ret = -1;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        log_error("could not generate a key: the random generator failed");
        goto out;
    }
    hex_encode(raw, CIPHER_KEY_LEN, hex);
    hex[2 * CIPHER_KEY_LEN] = '\n';
    hex[2 * CIPHER_KEY_LEN + 1] = '\0';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            log_error("could not create key file \"%s\": it exists", path);
            log_hint("a key file is never overwritten: snapshots sealed with it need it");
        } else {
            log_errno("could not create key file \"%s\"", path);
        }
        goto out;
    }
    /* umask may have narrowed the mode; make sure it is exactly 0600 */
    if (fchmod(fd, 0600) != 0 || write(fd, hex, 2 * CIPHER_KEY_LEN + 1) != 2 * CIPHER_KEY_LEN + 1
        || fsync(fd) != 0) {
        log_errno("could not write key file \"%s\"", path);
        close(fd);
        fd = -1;
        unlink(path);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        log_errno("could not write key file \"%s\"", path);
        unlink(path);
        goto out;
    }
    fd = -1;
    dir = strdup(path);
    if (dir == NULL) {
        log_errno("could not allocate");
        unlink(path);
        goto out;
    }
    if (durable_fsync_path(dirname(dir)) != 0) {
        unlink(path);
        goto out;
    }
    /* the absolute path: the user must find it again, to copy it away */
    abs = realpath(path, NULL);
    log_notice("new key written to \"%s\" (mode 0600)", abs ? abs : path);
    log_hint("keep a copy away from the repository (a password manager, another host): "
             "without it no snapshot sealed with it can be restored");
    ret = 0;
out:
    free(abs);
    free(dir);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(hex, sizeof(hex));
    return ret;
}

/*
 * files_key_load -- load the key; cipher_key_load refuses a file that is not private
 * (no group or other bits): a key anyone can read protects nothing.
 */
int files_key_load(const char *path, cipher_key **out)
{
    return cipher_key_load(path, out);
}
