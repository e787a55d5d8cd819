/*
 * floor.c -- the floor for ragsafe-archive: read + SHA-256 + zstd of a file, one
 * process, nothing written.
 *
 *     floor [-l LEVEL] [-t] FILE...
 *
 * For each FILE: read it in 1 MiB chunks with read(2), feed every chunk to OpenSSL's
 * EVP SHA-256 and to one zstd compression stream (level 3 unless -l), throw the
 * compressed bytes away. Prints "NAME RAW_BYTES ZSTD_BYTES SHA256" per file on
 * stdout, and with -t the time spent inside the process on that file (ms).
 *
 * ragsafe-archive does this and more (write, fsync, rename, fsync the directory), so
 * its per-segment time over this one says what the rest costs. Built by
 * bench/bench-wal.sh: cc -O2 floor.c $(pkg-config --cflags --libs libzstd libcrypto).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#define CHUNK (1u << 20)

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * floor_file -- hash and compress one file; 0 or -1 (reported).
 */
static int floor_file(const char *path, ZSTD_CCtx *cc, EVP_MD_CTX *md, unsigned char *in,
                      unsigned char *out, size_t outcap, int timing)
{
    int fd = -1, rc = -1;
    unsigned long long raw = 0, packed = 0;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    double t0 = now_ms();
    ssize_t n;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "floor: error: could not open \"%s\": %s\n", path, strerror(errno));
        goto out;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "floor: error: could not start SHA-256\n");
        goto out;
    }
    ZSTD_CCtx_reset(cc, ZSTD_reset_session_only);
    for (;;) {
        ZSTD_EndDirective mode;
        ZSTD_inBuffer ib;
        size_t left;

        n = read(fd, in, CHUNK);
        if (n < 0) {
            fprintf(stderr, "floor: error: could not read \"%s\": %s\n", path, strerror(errno));
            goto out;
        }
        raw += (unsigned long long)n;
        if (n > 0 && EVP_DigestUpdate(md, in, (size_t)n) != 1) {
            fprintf(stderr, "floor: error: SHA-256 failed\n");
            goto out;
        }
        mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        ib = (ZSTD_inBuffer){in, (size_t)n, 0};
        do {
            ZSTD_outBuffer ob = {out, outcap, 0};

            left = ZSTD_compressStream2(cc, &ob, &ib, mode);
            if (ZSTD_isError(left)) {
                fprintf(stderr, "floor: error: could not compress \"%s\": %s\n", path,
                        ZSTD_getErrorName(left));
                goto out;
            }
            packed += ob.pos;
        } while (mode == ZSTD_e_end ? left != 0 : ib.pos < ib.size);
        if (n == 0)
            break;
    }
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1) {
        fprintf(stderr, "floor: error: SHA-256 failed\n");
        goto out;
    }
    printf("%s %llu %llu ", path, raw, packed);
    for (unsigned int i = 0; i < dlen; i++)
        printf("%02x", digest[i]);
    if (timing)
        printf(" %.3f", now_ms() - t0);
    printf("\n");
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    int level = 3, timing = 0, opt, status = 0;
    size_t outcap = ZSTD_CStreamOutSize();
    unsigned char *in = malloc(CHUNK), *out = malloc(outcap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    while ((opt = getopt(argc, argv, "l:t")) != -1) {
        switch (opt) {
        case 'l':
            level = atoi(optarg);
            break;
        case 't':
            timing = 1;
            break;
        default:
            fprintf(stderr, "usage: floor [-l LEVEL] [-t] FILE...\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: floor [-l LEVEL] [-t] FILE...\n");
        return 2;
    }
    if (!in || !out || !cc || !md) {
        fprintf(stderr, "floor: error: out of memory\n");
        return 1;
    }
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    for (int i = optind; i < argc; i++)
        if (floor_file(argv[i], cc, md, in, out, outcap, timing) != 0)
            status = 1;
    EVP_MD_CTX_free(md);
    ZSTD_freeCCtx(cc);
    free(in);
    free(out);
    return status;
}
