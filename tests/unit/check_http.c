/*
 * check_http.c -- unit tests for lib/http against a one-shot HTTP server in a thread
 * (loopback only): status and body come back whatever the status; a POST carries the
 * JSON body, its content type and the bearer token; a refused connection and a server
 * that never answers are transport failures (-1) with the reason in resp.error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "http.h"
#include "testutil.h"

typedef struct srv {
    int lfd;
    int port;
    const char *reply;   /* full HTTP response, or NULL: accept and say nothing */
    char request[8192];
    pthread_t th;
} srv;

static void *srv_main(void *arg)
{
    srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    size_t got = 0;

    if (fd < 0)
        return NULL;
    /* read until the headers and (for a POST) the body have arrived */
    for (;;) {
        ssize_t n = recv(fd, s->request + got, sizeof(s->request) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        s->request[got] = '\0';
        char *end = strstr(s->request, "\r\n\r\n");
        if (end != NULL) {
            char *cl = strcasestr(s->request, "Content-Length:");
            size_t want = cl ? (size_t)atol(cl + 15) : 0;
            if (got >= (size_t)(end + 4 - s->request) + want)
                break;
        }
    }
    if (s->reply != NULL) {
        ssize_t w = send(fd, s->reply, strlen(s->reply), MSG_NOSIGNAL);
        (void)w;
    } else {
        sleep(3); /* never answer within the client's timeout */
    }
    close(fd);
    return NULL;
}

static void srv_start(srv *s, const char *reply)
{
    struct sockaddr_in a = {0};
    socklen_t al = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->reply = reply;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s->lfd, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(s->lfd, 1), 0);
    ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(srv *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

START_TEST(test_get_ok)
{
    srv s;
    char url[64];
    http_response r;

    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", s.port);
    ck_assert_int_eq(http_get(url, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "OK");
    ck_assert_uint_eq(r.len, 2);
    http_response_release(&r);
    srv_stop(&s);
    ck_assert_ptr_nonnull(strstr(s.request, "GET /healthz HTTP/1.1"));
}
END_TEST

START_TEST(test_get_error_status)
{
    srv s;
    char url[64];
    http_response r;
    const char *msg = "Not all components are healthy, 2/4";
    char reply[256];

    snprintf(reply, sizeof(reply),
             "HTTP/1.1 500 Internal Server Error\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(msg), msg);
    srv_start(&s, reply);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", s.port);
    ck_assert_int_eq(http_get(url, NULL, &r), 0);
    ck_assert_int_eq(r.status, 500);
    ck_assert_str_eq(r.body, msg);
    http_response_release(&r);
    srv_stop(&s);
}
END_TEST

START_TEST(test_post_json)
{
    srv s;
    char url[96];
    http_response r;
    http_opts o = {.timeout_ms = 5000, .bearer = "root:Milvus"};
    const char *body = "{\"code\":0,\"data\":[\"docs\"]}";
    char reply[256];

    snprintf(reply, sizeof(reply),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s", strlen(body), body);
    srv_start(&s, reply);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/vectordb/collections/list", s.port);
    ck_assert_int_eq(http_post_json(url, "{\"dbName\":\"default\"}", &o, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, body);
    http_response_release(&r);
    srv_stop(&s);
    ck_assert_ptr_nonnull(strstr(s.request, "POST /v2/vectordb/collections/list HTTP/1.1"));
    ck_assert_ptr_nonnull(strcasestr(s.request, "Content-Type: application/json"));
    ck_assert_ptr_nonnull(strstr(s.request, "Authorization: Bearer root:Milvus"));
    ck_assert_ptr_nonnull(strstr(s.request, "\r\n\r\n{\"dbName\":\"default\"}"));
}
END_TEST

START_TEST(test_refused)
{
    srv s;
    char url[64];
    http_response r;
    http_opts o = {.timeout_ms = 2000, .quiet = 1};

    /* a port that was just free: bind, note, close */
    srv_start(&s, "HTTP/1.1 200 OK\r\n\r\n");
    int port = s.port;
    srv_stop(&s);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    ck_assert_int_eq(http_get(url, &o, &r), -1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_ne(r.error, "");
    http_response_release(&r);
    http_response_release(&r);
}
END_TEST

START_TEST(test_timeout)
{
    srv s;
    char url[64];
    http_response r;
    http_opts o = {.timeout_ms = 500, .quiet = 1};
    struct timespec t0, t1;

    srv_start(&s, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", s.port);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(http_get(url, &o, &r), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_str_ne(r.error, "");
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 3);
    http_response_release(&r);
    srv_stop(&s);
}
END_TEST

START_TEST(test_bad_url)
{
    http_response r;
    http_opts o = {.quiet = 1};

    ck_assert_int_eq(http_get("notascheme://x", &o, &r), -1);
    ck_assert_str_ne(r.error, "");
    http_response_release(&r);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("client");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_get_ok);
    tcase_add_test(tc, test_get_error_status);
    tcase_add_test(tc, test_post_json);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_bad_url);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(http_suite());
}
