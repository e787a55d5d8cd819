/*
 * walspool.c -- see walspool.h.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walspool.h"

/* boot_id -- this boot's id (the kernel's random boot_id); "" when unknown. */
static void boot_id(char *out, size_t n)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, out, n - 1) : -1;

    if (fd >= 0)
        close(fd);
    out[got > 0 ? got : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

int walspool_identity(const char *path, int ctime, char *out, size_t n)
{
    char boot[64], c[48] = "";
    struct stat sb;
    int l;

    boot_id(boot, sizeof(boot));
    if (!*boot || stat(path, &sb) != 0)
        return -1;
    if (ctime)
        snprintf(c, sizeof(c), " %jd.%09ld", (intmax_t)sb.st_ctim.tv_sec, sb.st_ctim.tv_nsec);
    l = snprintf(out, n, "%s %ju %jd %jd.%09ld%s", boot, (uintmax_t)sb.st_ino, (intmax_t)sb.st_size,
                 (intmax_t)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, c);
    return l > 0 && (size_t)l < n ? 0 : -1;
}

int walspool_identity_like(const char *path, const char *recorded, char *out, size_t n)
{
    int fields = 1;

    for (const char *p = recorded; *p && *p != '\n'; p++)
        fields += *p == ' ';
    return walspool_identity(path, fields == 5, out, n);
}

int walspool_write_sum(const char *dir, const char *name, const char *sha_hex, uint64_t size,
                       const char *id, const char *extra)
{
    char sum[PATH_MAX], tmp[PATH_MAX], text[512];
    int fd, ret = -1, l;

    l = snprintf(text, sizeof(text), "%s %ju\n%s%s%s%s", sha_hex, (uintmax_t)size, id ? id : "",
                 id && *id ? "\n" : "", extra ? extra : "", extra ? "\n" : "");
    if (l <= 0 || (size_t)l >= sizeof(text))
        return -1;
    l = snprintf(sum, sizeof(sum), "%s/%s.sum", dir, name);
    if (l <= 0 || (size_t)l >= sizeof(sum))
        return -1;
    l = snprintf(tmp, sizeof(tmp), "%s/.%s.sum.tmp", dir, name);
    if (l <= 0 || (size_t)l >= sizeof(tmp))
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write(fd, text, strlen(text)) == (ssize_t)strlen(text))
        ret = 0;
    if (close(fd) != 0)
        ret = -1;
    if (ret == 0 && rename(tmp, sum) != 0)
        ret = -1;
    (void)unlink(tmp);
    return ret;
}
