/*
 * curl_dl.h -- libcurl, loaded on first use.
 *
 * ragsafe-archive and ragsafe-restore start once per WAL segment. Linking libcurl
 * directly makes every start load it and ~30 libraries behind it (gnutls, krb5, ldap,
 * ...): about 8 ms of CPU per call, for a local repository that never speaks HTTP.
 * Files that use libcurl include this header instead of <curl/curl.h>; the curl_*
 * calls below are then routed to wrappers that dlopen("libcurl.so.4") the first time
 * one is made. When it cannot be loaded, curl_global_init, curl_easy_init,
 * curl_multi_init and curl_share_init fail (after reporting why) and the caller's
 * existing error path takes over.
 */
#ifndef RAGSAFE_CURL_DL_H
#define RAGSAFE_CURL_DL_H

#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK /* the type-checking macros would hide the wrappers */
#endif
#include <curl/curl.h>

/* 0 when libcurl is loaded, -1 (reported once) when it cannot be. */
int curl_dl_load(void);

CURLcode rs_curl_global_init(long flags);
CURL *rs_curl_easy_init(void);
CURLcode rs_curl_easy_setopt(CURL *h, CURLoption opt, ...);
CURLcode rs_curl_easy_getinfo(CURL *h, CURLINFO info, ...);
CURLcode rs_curl_easy_perform(CURL *h);
CURLcode rs_curl_easy_pause(CURL *h, int bitmask);
void rs_curl_easy_reset(CURL *h);
void rs_curl_easy_cleanup(CURL *h);
const char *rs_curl_easy_strerror(CURLcode code);
time_t rs_curl_getdate(const char *s, const time_t *unused);
struct curl_slist *rs_curl_slist_append(struct curl_slist *l, const char *s);
void rs_curl_slist_free_all(struct curl_slist *l);
CURLM *rs_curl_multi_init(void);
CURLMcode rs_curl_multi_add_handle(CURLM *m, CURL *h);
CURLMcode rs_curl_multi_remove_handle(CURLM *m, CURL *h);
CURLMcode rs_curl_multi_perform(CURLM *m, int *running);
CURLMcode rs_curl_multi_poll(CURLM *m, struct curl_waitfd extra[], unsigned n, int timeout_ms, int *numfds);
CURLMsg *rs_curl_multi_info_read(CURLM *m, int *left);
CURLMcode rs_curl_multi_cleanup(CURLM *m);
CURLSH *rs_curl_share_init(void);
CURLSHcode rs_curl_share_setopt(CURLSH *s, CURLSHoption opt, ...);
CURLSHcode rs_curl_share_cleanup(CURLSH *s);

#ifndef RAGSAFE_CURL_DL_IMPL
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_share_setopt
#define curl_global_init rs_curl_global_init
#define curl_easy_init rs_curl_easy_init
#define curl_easy_setopt rs_curl_easy_setopt
#define curl_easy_getinfo rs_curl_easy_getinfo
#define curl_easy_perform rs_curl_easy_perform
#define curl_easy_pause rs_curl_easy_pause
#define curl_easy_reset rs_curl_easy_reset
#define curl_easy_cleanup rs_curl_easy_cleanup
#define curl_easy_strerror rs_curl_easy_strerror
#define curl_getdate rs_curl_getdate
#define curl_slist_append rs_curl_slist_append
#define curl_slist_free_all rs_curl_slist_free_all
#define curl_multi_init rs_curl_multi_init
#define curl_multi_add_handle rs_curl_multi_add_handle
#define curl_multi_remove_handle rs_curl_multi_remove_handle
#define curl_multi_perform rs_curl_multi_perform
#define curl_multi_poll rs_curl_multi_poll
#define curl_multi_info_read rs_curl_multi_info_read
#define curl_multi_cleanup rs_curl_multi_cleanup
#define curl_share_init rs_curl_share_init
#define curl_share_setopt rs_curl_share_setopt
#define curl_share_cleanup rs_curl_share_cleanup
#endif

#endif
