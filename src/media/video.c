/* video.c - video frames through the `ffprobe` and `ffmpeg` commands.
 *
 * No FFmpeg library is linked (Debian's FFmpeg build is GPL; running the command
 * keeps g4's licence independent of it). Both commands are started with
 * posix_spawnp (no shell; the path is one argv element) with stdout and stderr on
 * pipes, read with bounded buffers; a command that runs past G4_VIDEO_TIMEOUT
 * seconds (default 300) is killed. G4_FFMPEG / G4_FFPROBE override the command names.
 *
 *  1. ffprobe: width, height, average frame rate and frame count of the first video
 *     stream (nb_frames from the container, else counted by decoding);
 *  2. frame indices floor(k*T/n), k < n = min(max_frames, T) (transformers'
 *     default_sample_indices_fn; HF refuses n > T, we take every frame);
 *  3. ffmpeg decodes the stream once, keeps those frames (select filter) and writes
 *     them as raw rgb24 to stdout.
 * Like transformers' PyAV reader, the container's rotation metadata is not applied
 * (-noautorotate) and timestamps are index / average fps (24 when unknown). */
#include "media/media_int.h"
#include "base/status.h"
#include "base/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void mvideo_free(mvideo *v) {
    if (!v) return;
    free(v->rgb);
    free(v->index);
    memset(v, 0, sizeof *v);
}

void video_sample_indices(int total, int n, int *idx) {
    for (int k = 0; k < n; k++) idx[k] = (int)((int64_t)k * total / n);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Run argv; stdout into *out (at most max_out bytes, more is an error), the first
 * bytes of stderr into errbuf. */
static g4_status run_cmd(char *const *argv, size_t max_out, uint8_t **out, size_t *n_out, g4_error *err) {
    *out = NULL;
    *n_out = 0;
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC)) return G4_FAIL(err, G4_ERR_IO, "video: pipe: %s", strerror(errno));
    if (pipe2(pe, O_CLOEXEC)) {
        close(po[0]);
        close(po[1]);
        return G4_FAIL(err, G4_ERR_IO, "video: pipe: %s", strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc) {
        close(po[0]);
        close(pe[0]);
        if (rc == ENOENT)
            return G4_FAIL(err, G4_ERR_UNSUPPORTED,
                           "video: the '%s' command was not found (install Debian's ffmpeg package)", argv[0]);
        return G4_FAIL(err, G4_ERR_IO, "video: cannot start '%s': %s", argv[0], strerror(rc));
    }
    double timeout = 300;
    const char *te = getenv("G4_VIDEO_TIMEOUT");
    if (te && atof(te) > 0) timeout = atof(te);
    double t0 = now_s();
    size_t cap = 1 << 16, len = 0, elen = 0;
    uint8_t *buf = malloc(cap);
    char ebuf[400];
    g4_status st = buf ? G4_OK : G4_FAIL(err, G4_ERR_NOMEM, "video: out of memory");
    bool o_open = true, e_open = true;
    while (!st && (o_open || e_open)) {
        struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        if (!o_open) fds[0].fd = -1;
        if (!e_open) fds[1].fd = -1;
        int pr = poll(fds, 2, 1000);
        if (pr < 0 && errno != EINTR) {
            st = G4_FAIL(err, G4_ERR_IO, "video: poll: %s", strerror(errno));
            break;
        }
        if (now_s() - t0 > timeout) {
            st = G4_FAIL(err, G4_ERR_IO, "video: '%s' ran longer than %.0f s", argv[0], timeout);
            break;
        }
        if (pr <= 0) continue;
        if (o_open && fds[0].revents) {
            if (len == cap) {
                if (cap >= max_out + 1) {
                    st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "video: '%s' output exceeds %zu bytes", argv[0], max_out);
                    break;
                }
                size_t nc = cap * 2 > max_out + 1 ? max_out + 1 : cap * 2;
                uint8_t *nb = realloc(buf, nc);
                if (!nb) {
                    st = G4_FAIL(err, G4_ERR_NOMEM, "video: out of memory");
                    break;
                }
                buf = nb;
                cap = nc;
            }
            ssize_t k = read(po[0], buf + len, cap - len);
            if (k > 0) len += (size_t)k;
            else if (k == 0 || errno != EINTR) o_open = false;
            if (len > max_out) {
                st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "video: '%s' output exceeds %zu bytes", argv[0], max_out);
                break;
            }
        }
        if (e_open && fds[1].revents) {
            char tmp[1024];
            ssize_t k = read(pe[0], tmp, sizeof tmp);
            if (k > 0) {
                size_t c = (size_t)k < sizeof ebuf - 1 - elen ? (size_t)k : sizeof ebuf - 1 - elen;
                memcpy(ebuf + elen, tmp, c);
                elen += c;
            } else if (k == 0 || errno != EINTR) e_open = false;
        }
    }
    close(po[0]);
    close(pe[0]);
    if (st) kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    ebuf[elen] = 0;
    for (size_t i = 0; i < elen; i++)
        if (ebuf[i] == '\n' || ebuf[i] == '\r') ebuf[i] = ' ';
    if (!st && (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0))
        st = G4_FAIL(err, G4_ERR_FORMAT, "video: %s failed: %s", argv[0], elen ? ebuf : "(no message)");
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *n_out = len;
    return G4_OK;
}

static double parse_rate(const char *s) {
    char *e;
    double a = strtod(s, &e);
    if (e == s) return 0;
    if (*e == '/') {
        double b = strtod(e + 1, NULL);
        return b > 0 ? a / b : 0;
    }
    return a;
}

g4_status video_parse_probe(const char *text, size_t len, int *w, int *h, double *fps, int *nb_frames, g4_error *err) {
    *w = *h = *nb_frames = 0;
    *fps = 0;
    double r_rate = 0;
    size_t p = 0;
    while (p < len) {
        size_t e = p;
        while (e < len && text[e] != '\n') e++;
        char line[128];
        size_t l = e - p < sizeof line - 1 ? e - p : sizeof line - 1;
        memcpy(line, text + p, l);
        line[l] = 0;
        if (l && line[l - 1] == '\r') line[l - 1] = 0;
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = 0;
            const char *v = eq + 1;
            long x = strtol(v, NULL, 10);
            if (!strcmp(line, "width") && x > 0 && x <= MEDIA_MAX_SIDE && !*w) *w = (int)x;
            else if (!strcmp(line, "height") && x > 0 && x <= MEDIA_MAX_SIDE && !*h) *h = (int)x;
            else if ((!strcmp(line, "nb_frames") || !strcmp(line, "nb_read_frames")) && x > 0 && x < (1L << 30) &&
                     !*nb_frames)
                *nb_frames = (int)x;
            else if (!strcmp(line, "avg_frame_rate") && *fps == 0) *fps = parse_rate(v);
            else if (!strcmp(line, "r_frame_rate") && r_rate == 0) r_rate = parse_rate(v);
        }
        p = e + 1;
    }
    if (!(*fps > 0 && *fps < 1e6)) *fps = r_rate > 0 && r_rate < 1e6 ? r_rate : 0;
    if (!*w || !*h) return G4_FAIL(err, G4_ERR_FORMAT, "video: no video stream found");
    return G4_OK;
}

g4_status video_decode_file(const char *path, int max_frames, size_t max_pixels, mvideo *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    if (!max_pixels) max_pixels = MEDIA_MAX_PIXELS_DEFAULT;
    if (max_frames <= 0) max_frames = 32;
    const char *ffprobe = getenv("G4_FFPROBE") ? getenv("G4_FFPROBE") : "ffprobe";
    const char *ffmpeg = getenv("G4_FFMPEG") ? getenv("G4_FFMPEG") : "ffmpeg";
    if (access(path, R_OK)) return G4_FAIL(err, G4_ERR_IO, "video: cannot read '%s': %s", path, strerror(errno));
    char *probe_argv[] = {(char *)ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames", "-of", "default=nw=1",
                          (char *)path, NULL};
    uint8_t *txt = NULL;
    size_t tl = 0;
    g4_status st = run_cmd(probe_argv, 1 << 16, &txt, &tl, err);
    if (st) return st;
    int w, h, nb;
    double fps;
    st = video_parse_probe((const char *)txt, tl, &w, &h, &fps, &nb, err);
    free(txt);
    if (st) return st;
    if ((size_t)w * h > max_pixels)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "video: %dx%d frames exceed the limit of %zu pixels", w, h, max_pixels);
    if (!nb) {   /* no count in the container: decode and count */
        char *cnt_argv[] = {(char *)ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries", "stream=width,height,nb_read_frames", "-of", "default=nw=1",
                            (char *)path, NULL};
        if ((st = run_cmd(cnt_argv, 1 << 16, &txt, &tl, err))) return st;
        int w2, h2;
        double f2;
        st = video_parse_probe((const char *)txt, tl, &w2, &h2, &f2, &nb, err);
        free(txt);
        if (st) return st;
        if (!nb) return G4_FAIL(err, G4_ERR_FORMAT, "video: '%s' has no decodable frames", path);
    }
    int n = nb < max_frames ? nb : max_frames;
    out->index = malloc((size_t)n * sizeof *out->index);
    if (!out->index) return G4_FAIL(err, G4_ERR_NOMEM, "video: out of memory");
    video_sample_indices(nb, n, out->index);
    strbuf sel;
    sb_init(&sel);
    sb_puts(&sel, "select=");
    for (int k = 0; k < n; k++) sb_printf(&sel, "%seq(n\\,%d)", k ? "+" : "", out->index[k]);
    if (sel.oom) {
        sb_free(&sel);
        mvideo_free(out);
        return G4_FAIL(err, G4_ERR_NOMEM, "video: out of memory");
    }
    char *dec_argv[] = {(char *)ffmpeg, "-v", "error", "-nostdin", "-noautorotate", "-i", (char *)path, "-map", "0:v:0",
                        "-vf", sel.data, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
                        NULL};
    size_t fb = (size_t)w * h * 3;
    uint8_t *raw = NULL;
    size_t rl = 0;
    st = run_cmd(dec_argv, fb * (size_t)n, &raw, &rl, err);
    sb_free(&sel);
    if (st) {
        mvideo_free(out);
        return st;
    }
    int got = (int)(rl / fb);
    if (got < 1) {
        free(raw);
        mvideo_free(out);
        return G4_FAIL(err, G4_ERR_FORMAT, "video: '%s': ffmpeg produced no frames", path);
    }
    out->n_frames = got;    /* fewer than asked when the container's count was too high */
    out->w = w;
    out->h = h;
    out->rgb = raw;
    out->fps = fps > 0 ? fps : 24.0;
    out->total_frames = nb;
    return G4_OK;
}
