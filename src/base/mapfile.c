/* mapfile.c - read-only whole-file mmap and small-file reads (see mapfile.h).
 *
 * Invariants: a mapfile is either all-zero (closed / never opened) or holds an
 * owned path copy and, for a non-empty regular file, a PROT_READ MAP_PRIVATE
 * mapping of exactly `size` bytes. The fd is closed right after mmap. Errors
 * name the path and the errno text: "x.safetensors: open failed: No such file". */
#include "base/mapfile.h"
#include "base/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Open path read-only and check it is a regular file; returns fd or -1. */
static int open_regular(const char *path, struct stat *st, g4_status *code, g4_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        *code = G4_FAIL(err, G4_ERR_IO, "%s: open failed: %s", path, strerror(e));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        *code = G4_FAIL(err, G4_ERR_IO, "%s: stat failed: %s", path, strerror(e));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        *code = G4_FAIL(err, G4_ERR_IO, "%s: not a regular file", path);
        return -1;
    }
    return fd;
}

g4_status mapfile_open(mapfile *m, const char *path, g4_error *err) {
    if (!m || !path) return G4_FAIL(err, G4_ERR_INVALID_ARG, "mapfile_open: NULL argument");
    memset(m, 0, sizeof *m);
    struct stat st;
    g4_status code = G4_OK;
    int fd = open_regular(path, &st, &code, err);
    if (fd < 0) return code;
    if ((uintmax_t)st.st_size > (uintmax_t)SIZE_MAX) {
        close(fd);
        return G4_FAIL(err, G4_ERR_IO, "%s: file too large to map (%jd bytes)", path, (intmax_t)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    void *p = NULL;
    if (size > 0) {
        p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return G4_FAIL(err, G4_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size, strerror(e));
        }
    }
    close(fd);
    m->path = dup_str(path);
    if (!m->path) {
        if (p) munmap(p, size);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path);
    }
    m->data = p;
    m->size = size;
    return G4_OK;
}

void mapfile_close(mapfile *m) {
    if (!m) return;
    if (m->data && m->size) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

g4_status read_file_all(const char *path, size_t max_size, char **out, size_t *len, g4_error *err) {
    if (!path || !out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "read_file_all: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    struct stat st;
    g4_status code = G4_OK;
    int fd = open_regular(path, &st, &code, err);
    if (fd < 0) return code;
    if ((uintmax_t)st.st_size > (uintmax_t)max_size || (uintmax_t)st.st_size >= (uintmax_t)SIZE_MAX) {
        close(fd);
        return G4_FAIL(err, G4_ERR_IO, "%s: file is %jd bytes, limit %zu", path, (intmax_t)st.st_size,
                       max_size);
    }
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, cap + 1);
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            /* the file may have grown since fstat: probe one byte */
            char c;
            ssize_t r = read(fd, &c, 1);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            free(buf);
            close(fd);
            if (r < 0) return G4_FAIL(err, G4_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            return G4_FAIL(err, G4_ERR_IO, "%s: file grew while reading (more than %zu bytes)", path, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return G4_FAIL(err, G4_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;      /* shrank: keep what we got */
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return G4_OK;
}
