/* http.h - a small HTTP/1.1 server side for g4 serve: request parsing with hard
 * limits (pure, fuzzed: fuzz/fuzz_http.c), blocking connection I/O with
 * keep-alive and pipelining, fixed-length and chunked (SSE) responses.
 *
 * Limits: request line + headers <= max_header_bytes (431 past it), at most
 * HTTP_MAX_HEADERS header lines, path <= HTTP_MAX_PATH bytes (414), body <=
 * max_body (413); request bodies need Content-Length (chunked request bodies are
 * refused with 411). Only HTTP/1.0 and 1.1 are accepted (505). */
#ifndef G4_SERVER_HTTP_H
#define G4_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PATH 2048

typedef struct http_limits {
    size_t max_header_bytes;    /* request line + headers, bytes */
    size_t max_body;            /* Content-Length cap, bytes */
} http_limits;

typedef struct http_header {
    const char *name, *value;   /* point into the parsed buffer, not NUL-terminated */
    size_t name_len, value_len;
} http_header;

typedef struct http_request {
    char method[16];            /* NUL-terminated */
    char path[HTTP_MAX_PATH + 1]; /* NUL-terminated, query string removed */
    int minor;                  /* HTTP/1.<minor> */
    http_header headers[HTTP_MAX_HEADERS];
    int n_headers;
    long long content_length;   /* -1: none */
    bool keep_alive;
    size_t header_bytes;        /* bytes of request line + headers + blank line */
} http_request;

enum { HTTP_PARSE_OK = 1, HTTP_PARSE_MORE = 0, HTTP_PARSE_ERROR = -1 };

/* Parse the head of a request in buf[0..len). HTTP_PARSE_MORE when the blank line
 * has not arrived yet (and the limit is not reached); HTTP_PARSE_ERROR with
 * *status set (400, 411, 413, 414, 431, 501, 505). Never reads past buf+len. */
int http_parse_request(const char *buf, size_t len, const http_limits *lim, http_request *req, int *status);
/* Value of header `name` (case-insensitive) or NULL; *len gets its length. */
const char *http_header_get(const http_request *r, const char *name, size_t *len);
const char *http_status_text(int status);

/* ---- connection I/O (blocking sockets) ---- */
typedef struct http_conn {
    int fd;
    char *buf;                  /* received bytes not yet consumed */
    size_t len, cap;
    size_t drop;                /* head bytes of the last request, dropped on the next read */
} http_conn;

void http_conn_init(http_conn *c, int fd);
void http_conn_free(http_conn *c);          /* frees the buffer; does not close fd */
/* Read one request (head + body). 1: *req and *body (malloc'd, NUL-terminated, caller
 * frees) are set; 0: the peer closed or timed out between requests; -1: bad request,
 * *status says which error to answer before closing. */
int http_read_request(http_conn *c, const http_limits *lim, http_request *req, char **body, size_t *body_len,
                      int *status);
/* Whole response with Content-Length. extra: more header lines ("K: V\r\n"...) or NULL. */
bool http_send_response(int fd, int status, const char *content_type, const char *body, size_t len, bool keep_alive,
                        const char *extra);
bool http_send_chunked_head(int fd, int status, const char *content_type, bool keep_alive);
bool http_send_chunk(int fd, const char *p, size_t n);     /* n == 0 is a no-op */
bool http_send_chunked_end(int fd);
/* true when the peer has closed its side (non-blocking check). */
bool http_peer_closed(int fd);

#endif
