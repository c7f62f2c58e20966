/* image.c - image decoders: JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp +
 * libwebpdemux for the first frame of animations), GIF (giflib, first frame) and
 * BMP (by hand), then EXIF orientation and RGB conversion.
 *
 * Reference behaviour (what the parity fixtures hold): PIL opens the file,
 * ImageOps.exif_transpose applies the orientation, and transformers' convert_to_rgb
 * alpha-composites RGBA over opaque white (Image.alpha_composite, 7-bit fixed point)
 * for every mode other than RGB. Grey and palette images expand to RGB; GIF and
 * palette transparency become alpha 0. 16-bit PNG samples keep their high byte (PIL
 * clips 16-bit grey instead: a documented difference). CMYK JPEGs use PIL's
 * cmyk2rgb (inverted when an Adobe marker is present).
 *
 * Every decoder checks dimensions against MEDIA_MAX_SIDE and max_pixels before
 * allocating; libjpeg/libpng errors longjmp back to a G4_ERR_FORMAT. */
#include "media/media_int.h"
#include "base/status.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

void mimg_free(mimg *m) {
    if (!m) return;
    free(m->rgb);
    m->rgb = NULL;
    m->w = m->h = 0;
}

img_format img_sniff(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return IMG_JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return IMG_PNG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return IMG_WEBP;
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return IMG_GIF;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return IMG_BMP;
    return IMG_UNKNOWN;
}

const char *img_format_name(img_format f) {
    static const char *names[] = {"unknown", "JPEG", "PNG", "WebP", "GIF", "BMP"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "unknown";
}

static g4_status check_dims(const char *fmt, long w, long h, size_t max_pixels, g4_error *err) {
    if (w <= 0 || h <= 0) return G4_FAIL(err, G4_ERR_FORMAT, "%s image: invalid size %ldx%ld", fmt, w, h);
    if (w > MEDIA_MAX_SIDE || h > MEDIA_MAX_SIDE || (size_t)w * (size_t)h > max_pixels)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s image: %ldx%ld exceeds the limit of %zu pixels (%d per side)", fmt,
                       w, h, max_pixels, MEDIA_MAX_SIDE);
    return G4_OK;
}

/* PIL Image.alpha_composite(white, rgba) then convert("RGB"): exact integer formula
 * of ImagingAlphaComposite with an opaque white destination. */
static inline uint8_t over_white(unsigned c, unsigned a) {
    if (a == 0) return 255;
    unsigned coef1 = a * 255u * 255u * 128u / (255u * 255u);   /* outa255 = 255*255 */
    unsigned coef2 = 255u * 128u - coef1;
    unsigned t = c * coef1 + 255u * coef2 + (0x80u << 7);
    t = ((t >> 8) + t) >> 8;
    return (uint8_t)(t >> 7);
}

/* RGBA [w*h*4] -> m->rgb [w*h*3] (composited over white); takes ownership of rgba. */
static g4_status rgba_to_rgb(uint8_t *rgba, int w, int h, mimg *m, g4_error *err) {
    size_t n = (size_t)w * (size_t)h;
    uint8_t *rgb = malloc(n * 3);
    if (!rgb) {
        free(rgba);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned a = rgba[4 * i + 3];
        if (a == 255) {
            rgb[3 * i] = rgba[4 * i];
            rgb[3 * i + 1] = rgba[4 * i + 1];
            rgb[3 * i + 2] = rgba[4 * i + 2];
        } else {
            rgb[3 * i] = over_white(rgba[4 * i], a);
            rgb[3 * i + 1] = over_white(rgba[4 * i + 1], a);
            rgb[3 * i + 2] = over_white(rgba[4 * i + 2], a);
        }
    }
    free(rgba);
    m->w = w;
    m->h = h;
    m->rgb = rgb;
    return G4_OK;
}

/* ---- EXIF ---------------------------------------------------------------- */
static unsigned rd16(const uint8_t *p, bool le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, bool le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int img_exif_orientation_tiff(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    bool le;
    if (t[0] == 'I' && t[1] == 'I') le = true;
    else if (t[0] == 'M' && t[1] == 'M') le = false;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned cnt = rd16(t + ifd, le);
    for (unsigned i = 0; i < cnt; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) == 0x0112) {
            unsigned type = rd16(t + e + 2, le);
            unsigned v = type == 3 ? rd16(t + e + 8, le) : type == 4 ? rd32(t + e + 8, le) : 1;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int img_jpeg_orientation(const uint8_t *d, size_t n) {
    size_t p = 2;
    while (p + 4 <= n) {
        if (d[p] != 0xFF) return 1;
        uint8_t mk = d[p + 1];
        if (mk == 0xFF) { p++; continue; }              /* fill byte */
        if (mk == 0xD8 || (mk >= 0xD0 && mk <= 0xD7) || mk == 0x01) { p += 2; continue; }
        if (mk == 0xDA || mk == 0xD9) return 1;           /* scan data: no more headers */
        size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
        if (len < 2 || p + 2 + len > n) return 1;
        if (mk == 0xE1 && len >= 8 && !memcmp(d + p + 4, "Exif\0\0", 6))
            return img_exif_orientation_tiff(d + p + 10, len - 8);
        p += 2 + len;
    }
    return 1;
}

/* Orientation from a PNG eXIf chunk (Pillow reads it too); 1 when none. */
static int png_orientation(const uint8_t *d, size_t n) {
    size_t p = 8;
    while (p + 12 <= n) {
        uint32_t len = rd32(d + p, false);
        if (len > n - p - 12) return 1;
        if (!memcmp(d + p + 4, "eXIf", 4)) {
            const uint8_t *t = d + p + 8;
            size_t tl = len;
            if (tl >= 6 && !memcmp(t, "Exif\0\0", 6)) { t += 6; tl -= 6; }
            return img_exif_orientation_tiff(t, tl);
        }
        if (!memcmp(d + p + 4, "IDAT", 4) || !memcmp(d + p + 4, "IEND", 4)) return 1;
        p += 12 + (size_t)len;
    }
    return 1;
}

g4_status img_orient(mimg *m, int o, g4_error *err) {
    if (o <= 1 || o > 8) return G4_OK;
    int W = m->w, H = m->h;
    bool swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *out = malloc((size_t)ow * (size_t)oh * 3);
    if (!out) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory rotating a %dx%d image", W, H);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;             /* FLIP_LEFT_RIGHT */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;     /* ROTATE_180 */
            case 4: sx = x; sy = H - 1 - y; break;             /* FLIP_TOP_BOTTOM */
            case 5: sx = y; sy = x; break;                     /* TRANSPOSE */
            case 6: sx = y; sy = H - 1 - x; break;             /* ROTATE_270 */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;     /* TRANSVERSE */
            default: sx = W - 1 - y; sy = x; break;            /* 8: ROTATE_90 */
            }
            memcpy(out + ((size_t)y * ow + x) * 3, m->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    free(m->rgb);
    m->rgb = out;
    m->w = ow;
    m->h = oh;
    return G4_OK;
}

/* ---- JPEG ---------------------------------------------------------------- */
typedef struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void j_error_exit(j_common_ptr c) {
    jerr *e = (jerr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}
static void j_emit(j_common_ptr c, int level) { (void)c; (void)level; }   /* no warnings on stderr */

static g4_status decode_jpeg(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    struct jpeg_decompress_struct ci;
    jerr je;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = j_error_exit;
    je.mgr.emit_message = j_emit;
    uint8_t *volatile buf = NULL;
    uint8_t *volatile row = NULL;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(buf);
        free(row);
        return G4_FAIL(err, G4_ERR_FORMAT, "JPEG image: %s", je.msg);
    }
    jpeg_create_decompress(&ci);
    if (n > (unsigned long)-1) longjmp(je.jb, 1);
    jpeg_mem_src(&ci, d, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    g4_status st = check_dims("JPEG", (long)ci.image_width, (long)ci.image_height, max_pixels, err);
    if (st) {
        jpeg_destroy_decompress(&ci);
        return st;
    }
    bool cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&ci);
    int w = (int)ci.output_width, h = (int)ci.output_height, nc = ci.output_components;
    if ((nc != 3 && !cmyk) || (cmyk && nc != 4)) {
        jpeg_destroy_decompress(&ci);
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "JPEG image: %d output components", nc);
    }
    buf = malloc((size_t)w * h * 3);
    row = malloc((size_t)w * nc);
    if (!buf || !row) {
        jpeg_destroy_decompress(&ci);
        free(buf);
        free(row);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%d JPEG", w, h);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW rp = row;
        int y = (int)ci.output_scanline;
        if (jpeg_read_scanlines(&ci, &rp, 1) != 1) break;
        uint8_t *o = buf + (size_t)y * w * 3;
        if (!cmyk) memcpy(o, row, (size_t)w * 3);
        else {
            for (int x = 0; x < w; x++) {
                unsigned c[4];
                for (int k = 0; k < 4; k++) c[k] = ci.saw_Adobe_marker ? 255u - row[4 * x + k] : row[4 * x + k];
                unsigned nk = 255 - c[3];
                for (int k = 0; k < 3; k++) {
                    unsigned t = c[k] * nk + 128;
                    t = ((t >> 8) + t) >> 8;
                    o[3 * x + k] = (uint8_t)(nk > t ? nk - t : 0);
                }
            }
        }
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    free(row);
    out->w = w;
    out->h = h;
    out->rgb = buf;
    return img_orient(out, img_jpeg_orientation(d, n), err);
}

/* ---- PNG ----------------------------------------------------------------- */
typedef struct png_src { const uint8_t *d; size_t n, p; } png_src;
typedef struct png_ctx { jmp_buf jb; char msg[200]; } png_ctx;

static void png_read_mem(png_structp ps, png_bytep out, size_t len) {
    png_src *s = png_get_io_ptr(ps);
    if (len > s->n - s->p) png_error(ps, "truncated file");
    memcpy(out, s->d + s->p, len);
    s->p += len;
}
static void png_err_fn(png_structp ps, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(ps);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}
static void png_warn_fn(png_structp ps, png_const_charp msg) { (void)ps; (void)msg; }

static g4_status decode_png(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    png_ctx ctx = {.msg = "error"};
    png_src src = {d, n, 0};
    png_structp ps = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err_fn, png_warn_fn);
    if (!ps) return G4_FAIL(err, G4_ERR_NOMEM, "PNG image: out of memory");
    png_infop info = png_create_info_struct(ps);
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(ctx.jb)) {
        png_destroy_read_struct(&ps, info ? &info : NULL, NULL);
        free(buf);
        free(rows);
        return G4_FAIL(err, G4_ERR_FORMAT, "PNG image: %s", ctx.msg);
    }
    png_set_read_fn(ps, &src, png_read_mem);
    png_set_user_limits(ps, MEDIA_MAX_SIDE, MEDIA_MAX_SIDE);
    png_set_chunk_malloc_max(ps, 64u << 20);
    png_read_info(ps, info);
    png_uint_32 w = png_get_image_width(ps, info), h = png_get_image_height(ps, info);
    g4_status st = check_dims("PNG", (long)w, (long)h, max_pixels, err);
    if (st) {
        png_destroy_read_struct(&ps, &info, NULL);
        return st;
    }
    int ct = png_get_color_type(ps, info);
    png_set_expand(ps);                       /* palette -> RGB, grey < 8 bit -> 8, tRNS -> alpha */
    png_set_strip_16(ps);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(ps);
    png_set_add_alpha(ps, 0xFF, PNG_FILLER_AFTER);
    png_set_interlace_handling(ps);
    png_read_update_info(ps, info);
    if (png_get_rowbytes(ps, info) != (size_t)w * 4) png_error(ps, "unexpected row size after expansion");
    buf = malloc((size_t)w * h * 4);
    rows = malloc(h * sizeof *rows);
    if (!buf || !rows) png_error(ps, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + (size_t)y * w * 4;
    png_read_image(ps, rows);
    png_destroy_read_struct(&ps, &info, NULL);
    free(rows);
    st = rgba_to_rgb(buf, (int)w, (int)h, out, err);
    if (st) return st;
    return img_orient(out, png_orientation(d, n), err);
}

/* ---- WebP ---------------------------------------------------------------- */
static g4_status decode_webp(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    WebPData wd = {d, n};
    WebPDemuxer *dm = WebPDemux(&wd);
    if (!dm) return G4_FAIL(err, G4_ERR_FORMAT, "WebP image: invalid or truncated file");
    int cw = (int)WebPDemuxGetI(dm, WEBP_FF_CANVAS_WIDTH), ch = (int)WebPDemuxGetI(dm, WEBP_FF_CANVAS_HEIGHT);
    g4_status st = check_dims("WebP", cw, ch, max_pixels, err);
    WebPIterator it;
    if (!st && !WebPDemuxGetFrame(dm, 1, &it)) st = G4_FAIL(err, G4_ERR_FORMAT, "WebP image: no frame");
    if (st) {
        WebPDemuxDelete(dm);
        return st;
    }
    int fw = 0, fh = 0;
    uint8_t *f = WebPDecodeRGBA(it.fragment.bytes, it.fragment.size, &fw, &fh);
    if (!f || fw != it.width || fh != it.height || it.x_offset + fw > cw || it.y_offset + fh > ch) {
        WebPFree(f);
        WebPDemuxReleaseIterator(&it);
        WebPDemuxDelete(dm);
        return G4_FAIL(err, G4_ERR_FORMAT, "WebP image: cannot decode the first frame");
    }
    uint8_t *canvas = calloc((size_t)cw * ch, 4);   /* transparent outside the frame */
    if (!canvas) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%d WebP", cw, ch);
    else
        for (int y = 0; y < fh; y++)
            memcpy(canvas + ((size_t)(y + it.y_offset) * cw + it.x_offset) * 4, f + (size_t)y * fw * 4, (size_t)fw * 4);
    WebPFree(f);
    WebPDemuxReleaseIterator(&it);
    WebPDemuxDelete(dm);
    if (st) return st;
    return rgba_to_rgb(canvas, cw, ch, out, err);
}

/* ---- GIF ----------------------------------------------------------------- */
typedef struct gif_src { const uint8_t *d; size_t n, p; } gif_src;
static int gif_read(GifFileType *g, GifByteType *buf, int len) {
    gif_src *s = g->UserData;
    if (len < 0) return 0;
    size_t k = (size_t)len < s->n - s->p ? (size_t)len : s->n - s->p;
    memcpy(buf, s->d + s->p, k);
    s->p += k;
    return (int)k;
}

static g4_status decode_gif(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    gif_src src = {d, n, 0};
    int e = 0;
    GifFileType *g = DGifOpen(&src, gif_read, &e);
    if (!g) return G4_FAIL(err, G4_ERR_FORMAT, "GIF image: %s", GifErrorString(e) ? GifErrorString(e) : "invalid");
    g4_status st = check_dims("GIF", g->SWidth, g->SHeight, max_pixels, err);
    int W = g->SWidth, H = g->SHeight, trans = -1;
    uint8_t *idx = NULL;
    bool got = false;
    while (!st && !got) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) {
            st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: %s", GifErrorString(g->Error));
            break;
        }
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: bad extension");
                break;
            }
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) trans = ext[4];
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: bad extension");
                    break;
                }
            }
        } else if (rt == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(g) == GIF_ERROR) {
                st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: bad image descriptor");
                break;
            }
            GifImageDesc *id = &g->Image;
            long fl = id->Left, ft = id->Top, fw = id->Width, fh = id->Height;
            if (fw <= 0 || fh <= 0 || fl < 0 || ft < 0 || fw > MEDIA_MAX_SIDE || fh > MEDIA_MAX_SIDE) {
                st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: bad frame %ldx%ld+%ld+%ld", fw, fh, fl, ft);
                break;
            }
            idx = malloc((size_t)W * H);
            GifPixelType *line = malloc((size_t)fw);
            if (!idx || !line) {
                free(line);
                st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%d GIF", W, H);
                break;
            }
            memset(idx, trans >= 0 ? trans : 0, (size_t)W * H);
            static const int ioff[] = {0, 4, 2, 1}, ijmp[] = {8, 8, 4, 2};
            int passes = id->Interlace ? 4 : 1;
            for (int pass = 0; pass < passes && !st; pass++)
                for (long y = id->Interlace ? ioff[pass] : 0; y < fh && !st; y += id->Interlace ? ijmp[pass] : 1) {
                    if (DGifGetLine(g, line, (int)fw) == GIF_ERROR) {
                        st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: truncated frame data");
                        break;
                    }
                    long yy = ft + y;
                    if (yy >= H) continue;
                    for (long x = 0; x < fw && fl + x < W; x++) idx[yy * W + fl + x] = line[x];
                }
            free(line);
            got = true;
        } else if (rt == TERMINATE_RECORD_TYPE) {
            st = G4_FAIL(err, G4_ERR_FORMAT, "GIF image: no image frame");
        }
    }
    if (st) {
        free(idx);
        DGifCloseFile(g, &e);
        return st;
    }
    ColorMapObject *cm = g->Image.ColorMap ? g->Image.ColorMap : g->SColorMap;
    uint8_t *rgba = malloc((size_t)W * H * 4);
    if (!rgba) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%d GIF", W, H);
    for (size_t i = 0; !st && i < (size_t)W * H; i++) {
        int k = idx[i];
        uint8_t *o = rgba + 4 * i;
        if (cm && k < cm->ColorCount) {
            o[0] = cm->Colors[k].Red;
            o[1] = cm->Colors[k].Green;
            o[2] = cm->Colors[k].Blue;
        } else o[0] = o[1] = o[2] = 0;
        o[3] = k == trans ? 0 : 255;
    }
    free(idx);
    DGifCloseFile(g, &e);
    if (st) return st;
    return rgba_to_rgb(rgba, W, H, out, err);
}

/* ---- BMP ----------------------------------------------------------------- */
static int mask_shift(uint32_t m) { int s = 0; if (!m) return 0; while (!(m & 1)) { m >>= 1; s++; } return s; }
static int mask_bits(uint32_t m) { int b = 0; m >>= mask_shift(m); while (m & 1) { m >>= 1; b++; } return b; }
static uint8_t mask_val(uint32_t px, uint32_t m) {
    if (!m) return 0;
    uint32_t v = (px & m) >> mask_shift(m);
    int b = mask_bits(m);
    if (b >= 8) return (uint8_t)(v >> (b - 8));
    uint32_t maxv = (1u << b) - 1;
    return (uint8_t)((v * 255 + maxv / 2) / maxv);
}

static g4_status decode_bmp(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    if (n < 26) return G4_FAIL(err, G4_ERR_FORMAT, "BMP image: truncated header (%zu bytes)", n);
    uint32_t off = rd32(d + 10, true), hs = rd32(d + 14, true);
    if (hs < 40 || (size_t)14 + hs > n || hs > 1024)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "BMP image: header size %u (need BITMAPINFOHEADER or later)", hs);
    int32_t w = (int32_t)rd32(d + 18, true), hh = (int32_t)rd32(d + 22, true);
    unsigned bpp = rd16(d + 28, true);
    uint32_t comp = rd32(d + 30, true), ncol = rd32(d + 46, true);
    bool topdown = hh < 0;
    long h = topdown ? -(long)hh : hh;
    g4_status st = check_dims("BMP", w, h, max_pixels, err);
    if (st) return st;
    uint32_t rm = 0, gm = 0, bm = 0, am = 0;
    if (comp == 3 || comp == 6) {
        if (bpp != 16 && bpp != 32) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "BMP image: bitfields with %u bpp", bpp);
        if (hs >= 52) { rm = rd32(d + 54, true); gm = rd32(d + 58, true); bm = rd32(d + 62, true); }
        else if ((size_t)14 + hs + 12 <= n) { rm = rd32(d + 14 + hs, true); gm = rd32(d + 18 + hs, true); bm = rd32(d + 22 + hs, true); }
        else return G4_FAIL(err, G4_ERR_FORMAT, "BMP image: truncated bitfield masks");
        if (hs >= 56) am = rd32(d + 66, true);
    } else if (comp != 0) {
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "BMP image: compression %u (only uncompressed and bitfields)", comp);
    } else if (bpp == 16) {
        rm = 0x7C00; gm = 0x03E0; bm = 0x001F;
    }
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "BMP image: %u bits per pixel", bpp);
    uint8_t pal[256][3] = {{0}};
    if (bpp <= 8) {
        uint32_t np = ncol ? ncol : 1u << bpp;
        if (np > 256) return G4_FAIL(err, G4_ERR_FORMAT, "BMP image: %u palette entries", np);
        size_t po = 14 + hs;
        if (po + (size_t)np * 4 > n) return G4_FAIL(err, G4_ERR_FORMAT, "BMP image: truncated palette");
        for (uint32_t i = 0; i < np; i++) {
            pal[i][0] = d[po + 4 * i + 2];
            pal[i][1] = d[po + 4 * i + 1];
            pal[i][2] = d[po + 4 * i];
        }
    }
    size_t stride = (((size_t)w * bpp + 31) / 32) * 4;
    if (off > n || (n - off) / stride < (size_t)h)
        return G4_FAIL(err, G4_ERR_FORMAT, "BMP image: pixel data truncated (%ldx%ld, %u bpp)", (long)w, h, bpp);
    bool alpha = am != 0;
    uint8_t *px = malloc((size_t)w * h * 4);
    if (!px) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a %dx%ld BMP", w, h);
    for (long y = 0; y < h; y++) {
        const uint8_t *r = d + off + (size_t)(topdown ? y : h - 1 - y) * stride;
        uint8_t *o = px + (size_t)y * w * 4;
        for (int32_t x = 0; x < w; x++, o += 4) {
            o[3] = 255;
            if (bpp <= 8) {
                unsigned k = bpp == 8 ? r[x] : bpp == 4 ? (r[x / 2] >> (x & 1 ? 0 : 4)) & 15 : (r[x / 8] >> (7 - (x & 7))) & 1;
                memcpy(o, pal[k], 3);
            } else if (bpp == 24) {
                o[0] = r[3 * x + 2]; o[1] = r[3 * x + 1]; o[2] = r[3 * x];
            } else if (bpp == 32 && comp == 0) {
                o[0] = r[4 * x + 2]; o[1] = r[4 * x + 1]; o[2] = r[4 * x];   /* BGRX: PIL ignores the 4th byte */
            } else {
                uint32_t v = bpp == 16 ? rd16(r + 2 * x, true) : rd32(r + 4 * x, true);
                o[0] = mask_val(v, rm); o[1] = mask_val(v, gm); o[2] = mask_val(v, bm);
                if (alpha) o[3] = mask_val(v, am);
            }
        }
    }
    return rgba_to_rgb(px, w, (int)h, out, err);
}

g4_status img_decode(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    if (!max_pixels) max_pixels = MEDIA_MAX_PIXELS_DEFAULT;
    if (!d || !n) return G4_FAIL(err, G4_ERR_FORMAT, "image: empty data");
    g4_status st;
    switch (img_sniff(d, n)) {
    case IMG_JPEG: st = decode_jpeg(d, n, max_pixels, out, err); break;
    case IMG_PNG: st = decode_png(d, n, max_pixels, out, err); break;
    case IMG_WEBP: st = decode_webp(d, n, max_pixels, out, err); break;
    case IMG_GIF: st = decode_gif(d, n, max_pixels, out, err); break;
    case IMG_BMP: st = decode_bmp(d, n, max_pixels, out, err); break;
    default:
        return G4_FAIL(err, G4_ERR_UNSUPPORTED,
                       "image: unrecognized format (expected JPEG, PNG, WebP, GIF or BMP; first bytes %02x %02x %02x %02x)",
                       d[0], n > 1 ? d[1] : 0, n > 2 ? d[2] : 0, n > 3 ? d[3] : 0);
    }
    if (st) mimg_free(out);
    return st;
}
