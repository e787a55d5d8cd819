/*
 * curl_dl.c -- libcurl through dlopen on first use; see curl_dl.h.
 */
#define RAGSAFE_CURL_DL_IMPL
#include "curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>

#include "log.h"

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_pause)(CURL *, int);
    void (*easy_reset)(CURL *);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    time_t (*getdate)(const char *, const time_t *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_perform)(CURLM *, int *);
    CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd[], unsigned, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLSH *(*share_init)(void);
    CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
    CURLSHcode (*share_cleanup)(CURLSH *);
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded = -1;

/* Each symbol is looked up by name into its typed slot. */
#define SYM(field, name)                                   \
    do {                                                   \
        *(void **)&fn.field = dlsym(h, name);              \
        if (!fn.field) {                                   \
            log_error("libcurl lacks \"%s\"", name);       \
            return;                                        \
        }                                                  \
    } while (0)

static void load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        log_error("could not load libcurl: %s", dlerror());
        log_hint("install it with \"apt-get install libcurl4\"");
        return;
    }
    SYM(global_init, "curl_global_init");
    SYM(easy_init, "curl_easy_init");
    SYM(easy_setopt, "curl_easy_setopt");
    SYM(easy_getinfo, "curl_easy_getinfo");
    SYM(easy_perform, "curl_easy_perform");
    SYM(easy_pause, "curl_easy_pause");
    SYM(easy_reset, "curl_easy_reset");
    SYM(easy_cleanup, "curl_easy_cleanup");
    SYM(easy_strerror, "curl_easy_strerror");
    SYM(getdate, "curl_getdate");
    SYM(slist_append, "curl_slist_append");
    SYM(slist_free_all, "curl_slist_free_all");
    SYM(multi_init, "curl_multi_init");
    SYM(multi_add_handle, "curl_multi_add_handle");
    SYM(multi_remove_handle, "curl_multi_remove_handle");
    SYM(multi_perform, "curl_multi_perform");
    SYM(multi_poll, "curl_multi_poll");
    SYM(multi_info_read, "curl_multi_info_read");
    SYM(multi_cleanup, "curl_multi_cleanup");
    SYM(share_init, "curl_share_init");
    SYM(share_setopt, "curl_share_setopt");
    SYM(share_cleanup, "curl_share_cleanup");
    loaded = 0;
}

int curl_dl_load(void)
{
    pthread_once(&once, load);
    return loaded;
}

CURLcode rs_curl_global_init(long flags)
{
    return curl_dl_load() == 0 ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *rs_curl_easy_init(void) { return curl_dl_load() == 0 ? fn.easy_init() : NULL; }

/*
 * rs_curl_easy_setopt -- forward the one variadic argument with the type libcurl
 * reads for this option, which its number encodes (CURLOPTTYPE_* ranges).
 */
CURLcode rs_curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    va_list ap;
    CURLcode r;

    va_start(ap, opt);
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        r = fn.easy_setopt(h, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
        r = fn.easy_setopt(h, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_OFF_T)
        r = fn.easy_setopt(h, opt, va_arg(ap, void (*)(void)));
    else if (opt < CURLOPTTYPE_BLOB)
        r = fn.easy_setopt(h, opt, va_arg(ap, curl_off_t));
    else
        r = fn.easy_setopt(h, opt, va_arg(ap, void *));
    va_end(ap);
    return r;
}

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode rs_curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    va_list ap;
    CURLcode r;
    va_start(ap, info);
    r = fn.easy_getinfo(h, info, va_arg(ap, void *));
    va_end(ap);
    return r;
}

CURLcode rs_curl_easy_perform(CURL *h) { return fn.easy_perform(h); }
CURLcode rs_curl_easy_pause(CURL *h, int bitmask) { return fn.easy_pause(h, bitmask); }
void rs_curl_easy_reset(CURL *h) { fn.easy_reset(h); }
void rs_curl_easy_cleanup(CURL *h)
{
    if (h)
        fn.easy_cleanup(h);
}

const char *rs_curl_easy_strerror(CURLcode code)
{
    return curl_dl_load() == 0 ? fn.easy_strerror(code) : "libcurl is not available";
}

time_t rs_curl_getdate(const char *s, const time_t *unused)
{
    return curl_dl_load() == 0 ? fn.getdate(s, unused) : (time_t)-1;
}

struct curl_slist *rs_curl_slist_append(struct curl_slist *l, const char *s)
{
    return curl_dl_load() == 0 ? fn.slist_append(l, s) : NULL;
}

void rs_curl_slist_free_all(struct curl_slist *l)
{
    if (l)
        fn.slist_free_all(l);
}

CURLM *rs_curl_multi_init(void) { return curl_dl_load() == 0 ? fn.multi_init() : NULL; }
CURLMcode rs_curl_multi_add_handle(CURLM *m, CURL *h) { return fn.multi_add_handle(m, h); }
CURLMcode rs_curl_multi_remove_handle(CURLM *m, CURL *h) { return fn.multi_remove_handle(m, h); }
CURLMcode rs_curl_multi_perform(CURLM *m, int *running) { return fn.multi_perform(m, running); }
CURLMcode rs_curl_multi_poll(CURLM *m, struct curl_waitfd extra[], unsigned n, int timeout_ms, int *numfds)
{
    return fn.multi_poll(m, extra, n, timeout_ms, numfds);
}
CURLMsg *rs_curl_multi_info_read(CURLM *m, int *left) { return fn.multi_info_read(m, left); }
CURLMcode rs_curl_multi_cleanup(CURLM *m)
{
    return m ? fn.multi_cleanup(m) : CURLM_OK;
}

CURLSH *rs_curl_share_init(void) { return curl_dl_load() == 0 ? fn.share_init() : NULL; }

/* SHARE / UNSHARE take an int (curl_lock_data), the lock callbacks a function, the
 * rest a pointer. */
CURLSHcode rs_curl_share_setopt(CURLSH *s, CURLSHoption opt, ...)
{
    va_list ap;
    CURLSHcode r;
    va_start(ap, opt);
    if (opt == CURLSHOPT_SHARE || opt == CURLSHOPT_UNSHARE)
        r = fn.share_setopt(s, opt, va_arg(ap, int));
    else if (opt == CURLSHOPT_LOCKFUNC || opt == CURLSHOPT_UNLOCKFUNC)
        r = fn.share_setopt(s, opt, va_arg(ap, void (*)(void)));
    else
        r = fn.share_setopt(s, opt, va_arg(ap, void *));
    va_end(ap);
    return r;
}

CURLSHcode rs_curl_share_cleanup(CURLSH *s)
{
    return s ? fn.share_cleanup(s) : CURLSHE_OK;
}
