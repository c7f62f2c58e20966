/* http.c - HTTP/1.1 request parsing and connection I/O (see http.h).
 *
 * The parser works on the raw bytes received so far; it only looks for the
 * blank line that ends the head within max_header_bytes, then validates the
 * request line and each header line. Header fields keep pointers into the
 * caller's buffer (valid while that buffer is). */
#include "server/http.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char *http_status_text(int s) {
    switch (s) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool ieq(const char *a, size_t alen, const char *b) {
    size_t bl = strlen(b);
    return alen == bl && strncasecmp(a, b, bl) == 0;
}

/* does value v[0..n) contain the comma-separated token tok (case-insensitive)? */
static bool has_token(const char *v, size_t n, const char *tok) {
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        size_t e = j;
        while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - i == tl && strncasecmp(v + i, tok, tl) == 0) return true;
        i = j;
    }
    return false;
}

int http_parse_request(const char *buf, size_t len, const http_limits *lim, http_request *req, int *status) {
    *status = 400;
    size_t cap = len < lim->max_header_bytes ? len : lim->max_header_bytes;
    /* find the end of the head: \r\n\r\n (bare \n\n tolerated) */
    size_t end = 0;
    for (size_t i = 0; i < cap; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < cap && buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < cap && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
    }
    if (!end) {
        if (len >= lim->max_header_bytes) {
            *status = 431;
            return HTTP_PARSE_ERROR;
        }
        return HTTP_PARSE_MORE;
    }
    memset(req, 0, offsetof(http_request, headers));
    req->n_headers = 0;
    req->content_length = -1;
    req->header_bytes = end;
    /* request line: METHOD SP TARGET SP HTTP/1.x CRLF */
    size_t p = 0;
    while (p < end && (buf[p] == '\r' || buf[p] == '\n')) p++;   /* tolerate leading blank lines */
    size_t m = p;
    while (m < end && is_tchar((unsigned char)buf[m])) m++;
    if (m == p || m - p >= sizeof req->method || m >= end || buf[m] != ' ') return HTTP_PARSE_ERROR;
    memcpy(req->method, buf + p, m - p);
    req->method[m - p] = 0;
    size_t t = m + 1, te = t;
    while (te < end && buf[te] != ' ' && buf[te] != '\r' && buf[te] != '\n') te++;
    if (te == t || te >= end || buf[te] != ' ') return HTTP_PARSE_ERROR;
    size_t q = t;
    while (q < te && buf[q] != '?' && buf[q] != '#') q++;
    if (q - t > HTTP_MAX_PATH) {
        *status = 414;
        return HTTP_PARSE_ERROR;
    }
    for (size_t i = t; i < te; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) return HTTP_PARSE_ERROR;
    memcpy(req->path, buf + t, q - t);
    req->path[q - t] = 0;
    size_t v = te + 1;
    if (v + 8 > end || memcmp(buf + v, "HTTP/1.", 7) != 0) {
        if (v + 5 <= end && !memcmp(buf + v, "HTTP/", 5)) *status = 505;
        return HTTP_PARSE_ERROR;
    }
    char mc = buf[v + 7];
    if (mc != '0' && mc != '1') {
        *status = 505;
        return HTTP_PARSE_ERROR;
    }
    req->minor = mc - '0';
    size_t l = v + 8;
    if (l < end && buf[l] == '\r') l++;
    if (l >= end || buf[l] != '\n') return HTTP_PARSE_ERROR;
    l++;
    req->keep_alive = req->minor == 1;
    bool chunked = false, have_cl = false;
    /* header lines */
    while (l < end) {
        size_t e = l;
        while (e < end && buf[e] != '\n') e++;
        size_t le = e;
        if (le > l && buf[le - 1] == '\r') le--;
        if (le == l) break;   /* the blank line */
        if (buf[l] == ' ' || buf[l] == '\t') return HTTP_PARSE_ERROR;   /* obsolete folding */
        size_t c = l;
        while (c < le && is_tchar((unsigned char)buf[c])) c++;
        if (c == l || c >= le || buf[c] != ':') return HTTP_PARSE_ERROR;
        size_t vs = c + 1, ve = le;
        while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t')) vs++;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
        for (size_t i = vs; i < ve; i++) {
            unsigned char ch = (unsigned char)buf[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return HTTP_PARSE_ERROR;
        }
        if (req->n_headers >= HTTP_MAX_HEADERS) {
            *status = 431;
            return HTTP_PARSE_ERROR;
        }
        http_header *h = &req->headers[req->n_headers++];
        h->name = buf + l;
        h->name_len = c - l;
        h->value = buf + vs;
        h->value_len = ve - vs;
        if (ieq(h->name, h->name_len, "content-length")) {
            if (have_cl || h->value_len == 0 || h->value_len > 18) return HTTP_PARSE_ERROR;
            long long n = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                if (h->value[i] < '0' || h->value[i] > '9') return HTTP_PARSE_ERROR;
                n = n * 10 + (h->value[i] - '0');
            }
            have_cl = true;
            req->content_length = n;
        } else if (ieq(h->name, h->name_len, "transfer-encoding")) {
            chunked = true;
        } else if (ieq(h->name, h->name_len, "connection")) {
            if (has_token(h->value, h->value_len, "close")) req->keep_alive = false;
            else if (has_token(h->value, h->value_len, "keep-alive")) req->keep_alive = true;
        }
        l = e + 1;
    }
    if (chunked) {
        *status = have_cl ? 400 : 411;
        return HTTP_PARSE_ERROR;
    }
    if (req->content_length > 0 && (unsigned long long)req->content_length > lim->max_body) {
        *status = 413;
        return HTTP_PARSE_ERROR;
    }
    return HTTP_PARSE_OK;
}

const char *http_header_get(const http_request *r, const char *name, size_t *len) {
    for (int i = 0; i < r->n_headers; i++)
        if (ieq(r->headers[i].name, r->headers[i].name_len, name)) {
            if (len) *len = r->headers[i].value_len;
            return r->headers[i].value;
        }
    return NULL;
}

/* ---- connection I/O ---------------------------------------------------- */

void http_conn_init(http_conn *c, int fd) {
    memset(c, 0, sizeof *c);
    c->fd = fd;
}

void http_conn_free(http_conn *c) {
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static bool conn_reserve(http_conn *c, size_t need) {
    if (need <= c->cap) return true;
    size_t nc = c->cap ? c->cap : 8192;
    while (nc < need) nc *= 2;
    char *nb = realloc(c->buf, nc);
    if (!nb) return false;
    c->buf = nb;
    c->cap = nc;
    return true;
}

/* recv more bytes; 1 ok, 0 closed/timeout, -1 error */
static int conn_fill(http_conn *c) {
    if (!conn_reserve(c, c->len + 8192)) return -1;
    for (;;) {
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (k > 0) {
            c->len += (size_t)k;
            return 1;
        }
        if (k == 0) return 0;
        if (errno == EINTR) continue;
        return 0;   /* timeout (EAGAIN) or reset */
    }
}

int http_read_request(http_conn *c, const http_limits *lim, http_request *req, char **body, size_t *body_len,
                      int *status) {
    *body = NULL;
    *body_len = 0;
    *status = 400;
    if (c->drop) {   /* the previous request's head, kept for its header pointers */
        memmove(c->buf, c->buf + c->drop, c->len - c->drop);
        c->len -= c->drop;
        c->drop = 0;
    }
    int r;
    while ((r = http_parse_request(c->buf ? c->buf : "", c->len, lim, req, status)) == HTTP_PARSE_MORE) {
        int f = conn_fill(c);
        if (f <= 0) {
            if (c->len) *status = 408;
            return c->len ? -1 : 0;
        }
    }
    if (r == HTTP_PARSE_ERROR) return -1;
    size_t need = req->content_length > 0 ? (size_t)req->content_length : 0;
    size_t total = req->header_bytes + need;
    if (!conn_reserve(c, total + 1)) {
        *status = 413;
        return -1;
    }
    while (c->len < total) {
        if (conn_fill(c) <= 0) {
            *status = 408;
            return -1;
        }
    }
    char *b = malloc(need + 1);
    if (!b) {
        *status = 413;
        return -1;
    }
    memcpy(b, c->buf + req->header_bytes, need);
    b[need] = 0;
    /* keep the head at the front (header pointers), move pipelined bytes after it */
    size_t rest = c->len - total;
    memmove(c->buf + req->header_bytes, c->buf + total, rest);
    c->len = req->header_bytes + rest;
    c->drop = req->header_bytes;
    /* the buffer may have moved while the body arrived: re-point the headers */
    r = http_parse_request(c->buf, req->header_bytes, lim, req, status);
    if (r != HTTP_PARSE_OK) {
        free(b);
        return -1;
    }
    *body = b;
    *body_len = need;
    return 1;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

bool http_send_response(int fd, int status, const char *ctype, const char *body, size_t len, bool keep_alive,
                        const char *extra) {
    char head[1024];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: %s\r\n%s\r\n", status,
                     http_status_text(status), ctype, len, keep_alive ? "keep-alive" : "close", extra ? extra : "");
    if (h < 0 || (size_t)h >= sizeof head) return false;
    return send_all(fd, head, (size_t)h) && send_all(fd, body, len);
}

bool http_send_chunked_head(int fd, int status, const char *ctype, bool keep_alive) {
    char head[512];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: %s\r\n\r\n",
                     status, http_status_text(status), ctype, keep_alive ? "keep-alive" : "close");
    return h > 0 && (size_t)h < sizeof head && send_all(fd, head, (size_t)h);
}

bool http_send_chunk(int fd, const char *p, size_t n) {
    if (!n) return true;
    char h[32];
    int k = snprintf(h, sizeof h, "%zx\r\n", n);
    return send_all(fd, h, (size_t)k) && send_all(fd, p, n) && send_all(fd, "\r\n", 2);
}

bool http_send_chunked_end(int fd) { return send_all(fd, "0\r\n\r\n", 5); }

bool http_peer_closed(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0) return false;
    if (pf.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (pf.revents & POLLIN) {
        char ch;
        ssize_t k = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) return true;
    }
    return false;
}
