/* media_src.c - request media sources (see media_src.h).
 *
 * Local files: the path (a file:// URL is percent-decoded; a relative path is taken
 * relative to the allowed directory) is resolved with realpath(3), which removes "..",
 * "." and every symlink, and the result must lie under the allowed directory's own
 * realpath; the file is then read through the resolved path. Remote: libcurl with
 * http/https only (redirects too, at most 3), CURLOPT_TIMEOUT_MS, and a write
 * callback that aborts once max_bytes is passed. */
#include "server/media_src.h"
#include "server/dataurl.h"
#include "base/status.h"

#ifndef G4_NO_CURL
#include <curl/curl.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#ifndef G4_NO_CURL
void media_src_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
#else
void media_src_global_init(void) {}
#endif

bool media_path_inside(const char *dir, const char *p) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    if (strncmp(p, dir, dl)) return false;
    if (dl == 1 && dir[0] == '/') return true;
    return p[dl] == 0 || p[dl] == '/';
}

static int hexv(unsigned char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static g4_status load_local(const media_src_opts *o, g4_media_kind kind, const char *url, size_t n,
                            const g4_media_options *mo, g4_media **out, g4_error *err) {
    if (!o->allowed_dir)
        return G4_FAIL(err, G4_ERR_INVALID_ARG,
                       "local media paths are not allowed (start the server with --allowed-local-media-path DIR)");
    const char *p = url;
    size_t pl = n;
    bool is_url = n >= 7 && !strncasecmp(url, "file://", 7);
    if (is_url) {
        p += 7, pl -= 7;
        if (pl >= 9 && !strncasecmp(p, "localhost", 9)) p += 9, pl -= 9;
        if (!pl || *p != '/') return G4_FAIL(err, G4_ERR_INVALID_ARG, "file URL: only file:///absolute/path is supported");
    }
    char path[PATH_MAX];
    size_t w = 0;
    if (*p != '/') {
        w = (size_t)snprintf(path, sizeof path, "%s/", o->allowed_dir);
        if (w >= sizeof path) return G4_FAIL(err, G4_ERR_INVALID_ARG, "path too long");
    }
    for (size_t i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_url && c == '%' && i + 2 < pl && hexv((unsigned char)p[i + 1]) >= 0 && hexv((unsigned char)p[i + 2]) >= 0) {
            c = (unsigned char)(hexv((unsigned char)p[i + 1]) << 4 | hexv((unsigned char)p[i + 2]));
            i += 2;
        }
        if (!c) return G4_FAIL(err, G4_ERR_INVALID_ARG, "path contains a NUL byte");
        if (w + 1 >= sizeof path) return G4_FAIL(err, G4_ERR_INVALID_ARG, "path too long");
        path[w++] = (char)c;
    }
    path[w] = 0;
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        if (errno == ENOENT || errno == ENOTDIR) return G4_FAIL(err, G4_ERR_IO, "file not found");
        return G4_FAIL(err, G4_ERR_IO, "cannot resolve the path: %s", strerror(errno));
    }
    if (!media_path_inside(o->allowed_dir, real))
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "the path is outside --allowed-local-media-path");
    struct stat sb;
    if (stat(real, &sb)) return G4_FAIL(err, G4_ERR_IO, "file not found");
    if (!S_ISREG(sb.st_mode)) return G4_FAIL(err, G4_ERR_INVALID_ARG, "not a regular file");
    if ((size_t)sb.st_size > o->max_bytes)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "the file has %lld bytes, over the limit of %zu (--media-max-bytes)",
                       (long long)sb.st_size, o->max_bytes);
    g4_status st = g4_media_load_file(real, kind, mo, out, err);
    /* the decoder prefixes the resolved path; the client knows its own */
    if (st && err) {
        size_t rl = strlen(real);
        if (!strncmp(err->msg, real, rl) && err->msg[rl] == ':') {
            const char *rest = err->msg + rl + 1 + (err->msg[rl + 1] == ' ');
            memmove(err->msg, rest, strlen(rest) + 1);
        }
    }
    return st;
}

#ifndef G4_NO_CURL
typedef struct fetch_buf { uint8_t *d; size_t n, cap, max; bool over; } fetch_buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *u) {
    fetch_buf *b = u;
    size_t k = sz * nm;
    if (b->n + k > b->max) {
        b->over = true;
        return 0;
    }
    if (b->n + k > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->n + k) nc *= 2;
        if (nc > b->max) nc = b->max;
        uint8_t *nd = realloc(b->d, nc);
        if (!nd) return 0;
        b->d = nd;
        b->cap = nc;
    }
    memcpy(b->d + b->n, p, k);
    b->n += k;
    return k;
}

static g4_status load_remote(const media_src_opts *o, g4_media_kind kind, const char *url, size_t n,
                             const char *format, const g4_media_options *mo, g4_media **out, g4_error *err) {
    if (!o->allow_remote)
        return G4_FAIL(err, G4_ERR_INVALID_ARG,
                       "fetching remote media is disabled (start the server with --allow-remote-media)");
    char *u = strndup(url, n);
    CURL *c = curl_easy_init();
    if (!u || !c) {
        free(u);
        if (c) curl_easy_cleanup(c);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    fetch_buf b = {.max = o->max_bytes};
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(o->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "g4-serve/0.1");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode rc = curl_easy_perform(c);
    char *ct = NULL;
    char ctype[128] = "";
    if (!rc && !curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) && ct) snprintf(ctype, sizeof ctype, "%s", ct);
    curl_easy_cleanup(c);
    g4_status st = G4_OK;
    if (b.over || rc == CURLE_FILESIZE_EXCEEDED)
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "the download exceeds the limit of %zu bytes (--media-max-bytes)",
                     o->max_bytes);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        st = G4_FAIL(err, G4_ERR_IO, "fetching %.200s timed out after %.1f s (--media-timeout)", u, o->timeout_s);
    else if (rc)
        st = G4_FAIL(err, G4_ERR_IO, "fetching %.200s failed: %s", u, ebuf[0] ? ebuf : curl_easy_strerror(rc));
    if (!st) {
        /* the URL's extension (video) or the Content-Type decide when no hint was given */
        const char *hint = format ? format : ctype[0] && strncasecmp(ctype, "application/", 12) ? ctype : u;
        st = g4_media_load_memory(b.d, b.n, kind, hint, mo, out, err);
    }
    free(b.d);
    free(u);
    return st;
}
#else
static g4_status load_remote(const media_src_opts *o, g4_media_kind kind, const char *url, size_t n,
                             const char *format, const g4_media_options *mo, g4_media **out, g4_error *err) {
    (void)kind; (void)url; (void)n; (void)format; (void)mo; (void)out;
    if (!o->allow_remote)
        return G4_FAIL(err, G4_ERR_INVALID_ARG,
                       "fetching remote media is disabled (start the server with --allow-remote-media)");
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "this build of g4 has no remote media fetch (built with G4_NO_CURL=1)");
}
#endif

g4_status media_src_load(const media_src_opts *o, g4_media_kind kind, const char *url, size_t n, bool raw_b64,
                         const char *format, const g4_media_options *mo, g4_media **out, g4_error *err) {
    *out = NULL;
    uint8_t *d = NULL;
    size_t dl = 0;
    char mime[64] = "";
    g4_status st;
    if (raw_b64 && !(n >= 5 && !strncasecmp(url, "data:", 5))) {
        st = b64_decode(url, n, o->max_bytes, &d, &dl, err);
    } else if (n >= 5 && !strncasecmp(url, "data:", 5)) {
        st = dataurl_decode(url, n, o->max_bytes, mime, sizeof mime, &d, &dl, err);
    } else if ((n >= 7 && !strncasecmp(url, "http://", 7)) || (n >= 8 && !strncasecmp(url, "https://", 8))) {
        return load_remote(o, kind, url, n, format, mo, out, err);
    } else if (memchr(url, ':', n) && !(n >= 7 && !strncasecmp(url, "file://", 7)) && url[0] != '/' && url[0] != '.') {
        const char *colon = memchr(url, ':', n);
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "unsupported URL scheme '%.*s' (data:, file:// or http(s)://)",
                       (int)(colon - url > 16 ? 16 : colon - url), url);
    } else {
        return load_local(o, kind, url, n, mo, out, err);
    }
    if (st && st == G4_ERR_UNSUPPORTED)
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "the data exceeds the limit of %zu bytes (--media-max-bytes)", o->max_bytes);
    if (st) return st;
    if (!dl) {
        free(d);
        return G4_FAIL(err, G4_ERR_FORMAT, "empty media data");
    }
    st = g4_media_load_memory(d, dl, kind, format ? format : mime[0] ? mime : NULL, mo, out, err);
    free(d);
    return st;
}
