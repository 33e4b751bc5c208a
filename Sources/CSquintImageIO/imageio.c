// JPEG and PNG decoding to 8-bit RGB with libjpeg-turbo and libpng, and PNG encoding.
//
// Both libraries report errors by longjmp from a callback (libjpeg's default error_exit calls
// exit()!), so every entry point here runs under setjmp and turns the failure into a status code
// and a message. Nothing here aborts or prints on hostile input.
//
// Pillow equivalence (what Image.open(f).convert("RGB") gives; checked against Pillow 13.0.0 by
// scripts/fixtures/make_image_fixtures.py and the tests in SquintModelsTests/Image*.swift):
// - JPEG: Pillow drives libjpeg with the defaults (JDCT_ISLOW, fancy upsampling), asks for
//   JCS_GRAYSCALE / JCS_RGB / JCS_CMYK by component count, reads CMYK as Adobe-inverted ("CMYK;I")
//   and converts CMYK to RGB with nk = 255 - K, R = nk - round(C' * nk / 255) (C' = 255 - stored).
//   A stream that ends early, even just the EOI marker, is an error in Pillow ("image file is
//   truncated"); we report it the same way instead of accepting libjpeg's grey fill.
// - PNG: Pillow decodes PNG itself (not with libpng); its unpackers keep the HIGH byte of 16-bit
//   samples, except 16-bit greyscale, which becomes mode "I;16" and converts to RGB by clipping the
//   16-bit value to 255. 1/2/4-bit greyscale scales by 255/3/15 (x*0xFF, x*0x55, x*0x11).
//   Palette indices beyond PLTE give black. Alpha is dropped, tRNS/gAMA/iCCP are ignored. A file
//   whose image data is complete but which lacks IEND is accepted, as Pillow does.
#include "squint_imageio.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

void sq_img_free(void *p) { free(p); }

static void set_message(char *dst, const char *msg) {
    if (!dst) return;
    snprintf(dst, 200, "%s", msg);
}

static void reset_result(sq_img_result *out) {
    out->width = 0;
    out->height = 0;
    out->pixels = NULL;
    out->source_mode[0] = 0;
    out->message[0] = 0;
}

/// Checks w*h against the limit and returns the RGB byte count, or 0 (with status) if refused.
static int check_size(uint64_t w, uint64_t h, uint64_t max_pixels, size_t *rgb_bytes, sq_img_result *out) {
    if (w == 0 || h == 0) {
        set_message(out->message, "image has zero width or height");
        return SQ_IMG_CORRUPT;
    }
    uint64_t pixels = w * h;  // both < 2^32, cannot overflow 64 bits
    if (pixels > max_pixels) {
        snprintf(out->message, sizeof out->message,
                 "image is %llux%llu = %llu pixels, above the limit of %llu pixels "
                 "(decompression-bomb guard)",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)pixels,
                 (unsigned long long)max_pixels);
        return SQ_IMG_TOO_LARGE;
    }
    if (pixels > SIZE_MAX / 4) {
        set_message(out->message, "image too large for this platform");
        return SQ_IMG_TOO_LARGE;
    }
    *rgb_bytes = (size_t)pixels * 3;
    return SQ_IMG_OK;
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct sq_jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int hit_eof;      // libjpeg's source ran dry and inserted a fake EOI
};

static void sq_jpeg_error_exit(j_common_ptr cinfo) {
    struct sq_jpeg_err *e = (struct sq_jpeg_err *)cinfo->err;
    longjmp(e->jump, 1);
}

static void sq_jpeg_emit_message(j_common_ptr cinfo, int level) {
    struct sq_jpeg_err *e = (struct sq_jpeg_err *)cinfo->err;
    if (level < 0) {  // warnings; trace messages (level >= 0) are ignored
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->hit_eof = 1;
        cinfo->err->num_warnings++;
    }
}

static void sq_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

/// Pillow's MULDIV255: round(a * b / 255) for bytes, in integers.
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int sq_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, sq_img_result *out) {
    reset_result(out);
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        set_message(out->message, "not a JPEG file (no SOI marker)");
        return SQ_IMG_NOT_IMAGE;
    }
    if (size > (size_t)(unsigned long)-1) {
        set_message(out->message, "JPEG data too large");
        return SQ_IMG_TOO_LARGE;
    }

    struct jpeg_decompress_struct cinfo;
    struct sq_jpeg_err jerr;
    // Locals modified after setjmp and read after longjmp must be volatile.
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    volatile int created = 0;

    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = sq_jpeg_error_exit;
    jerr.pub.emit_message = sq_jpeg_emit_message;
    jerr.pub.output_message = sq_jpeg_output_message;
    jerr.hit_eof = 0;

    if (setjmp(jerr.jump)) {
        int status;
        if (jerr.hit_eof) {
            set_message(out->message, "JPEG data ends before the image does");
            status = SQ_IMG_TRUNCATED;
        } else {
            char buf[JMSG_LENGTH_MAX];
            (*cinfo.err->format_message)((j_common_ptr)&cinfo, buf);
            snprintf(out->message, sizeof out->message, "libjpeg: %.180s", buf);
            int code = cinfo.err->msg_code;
            // 12/16-bit samples and lossless/hierarchical JPEG: valid files this build of
            // libjpeg-turbo (and the 8-bit Qwen-VL pipeline) does not decode.
            status = (code == JERR_BAD_PRECISION || code == JERR_NOT_COMPILED
                      || code == JERR_CONVERSION_NOTIMPL || code == JERR_SOF_UNSUPPORTED)
                         ? SQ_IMG_UNSUPPORTED
                         : SQ_IMG_CORRUPT;
        }
        if (created) jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return status;
    }

    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, (unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    size_t rgb_bytes = 0;
    int st = check_size(cinfo.image_width, cinfo.image_height, max_pixels, &rgb_bytes, out);
    if (st != SQ_IMG_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    // A complete Huffman-coded JPEG spends at least one bit on every 8x8 block's DC coefficient (and
    // baseline one more on its end-of-block), so it holds at least pixels/512 bytes (one component,
    // no subsampling: the loosest case). A header claiming more than 1024 pixels per byte of the file
    // is truncated or hostile: refuse it before libjpeg allocates and fills whole-image buffers (a
    // 209-byte progressive file claiming 36385x1983 kept the decoder busy for seconds: fuzz
    // regression fixtures/fuzz/jpeg/regressions/). Arithmetic coding can go below a bit per block,
    // so those files keep only the pixel cap above.
    uint64_t claimed = (uint64_t)cinfo.image_width * (uint64_t)cinfo.image_height;
    if (!cinfo.arith_code && claimed / 1024u > (uint64_t)size) {
        snprintf(out->message, sizeof out->message,
                 "header says %ux%u = %llu pixels, more than a %zu-byte JPEG can code "
                 "(at most 1024 pixels per byte)",
                 (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (unsigned long long)claimed, size);
        jpeg_destroy_decompress(&cinfo);
        return SQ_IMG_TRUNCATED;
    }
    int comps = cinfo.num_components;
    switch (comps) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; strcpy(out->source_mode, "L"); break;
    case 3: cinfo.out_color_space = JCS_RGB; strcpy(out->source_mode, "RGB"); break;
    case 4: cinfo.out_color_space = JCS_CMYK; strcpy(out->source_mode, "CMYK"); break;
    default:
        snprintf(out->message, sizeof out->message, "JPEG with %d components is not supported", comps);
        jpeg_destroy_decompress(&cinfo);
        return SQ_IMG_UNSUPPORTED;
    }
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    jpeg_start_decompress(&cinfo);
    // Progressive files are read whole by jpeg_start_decompress: stop at once if the data ran out
    // rather than producing every (grey) row first; the result is the same "truncated" error.
    if (jerr.hit_eof) longjmp(jerr.jump, 1);

    uint32_t w = cinfo.output_width, h = cinfo.output_height;
    if (w != cinfo.image_width || h != cinfo.image_height || cinfo.output_components != comps) {
        set_message(out->message, "libjpeg output geometry differs from the header");
        jpeg_destroy_decompress(&cinfo);
        return SQ_IMG_CORRUPT;
    }
    pixels = malloc(rgb_bytes);
    if (comps != 3) row = malloc((size_t)w * (size_t)comps);
    if (!pixels || (comps != 3 && !row)) {
        set_message(out->message, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return SQ_IMG_NO_MEMORY;
    }
    while (cinfo.output_scanline < h) {
        uint32_t y = cinfo.output_scanline;
        uint8_t *dst = pixels + (size_t)y * w * 3;
        JSAMPROW rp = (comps == 3) ? dst : row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            // Only a suspending source returns 0 lines; the memory source never suspends.
            jerr.hit_eof = 1;
            longjmp(jerr.jump, 1);
        }
        if (jerr.hit_eof) longjmp(jerr.jump, 1);   // the rest would only be grey fill
        if (comps == 1) {
            for (uint32_t x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (comps == 4) {
            for (uint32_t x = 0; x < w; x++) {
                // Pillow "CMYK;I": the stored (Adobe) values are inverted first.
                int c = 255 - row[4 * x], m = 255 - row[4 * x + 1];
                int yy = 255 - row[4 * x + 2], k = 255 - row[4 * x + 3];
                int nk = 255 - k;
                int r = nk - muldiv255(c, nk), g = nk - muldiv255(m, nk), b = nk - muldiv255(yy, nk);
                dst[3 * x] = (uint8_t)(r < 0 ? 0 : r);
                dst[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g);
                dst[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    if (jerr.hit_eof) longjmp(jerr.jump, 1);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = w;
    out->height = h;
    out->pixels = pixels;
    return SQ_IMG_OK;
}

// ---------------------------------------------------------------------------------------------
// PNG

struct sq_png_ctx {
    const uint8_t *data;
    size_t size;
    size_t pos;
    int truncated;
    char message[200];
};

static void sq_png_error(png_structp png, png_const_charp msg) {
    struct sq_png_ctx *ctx = (struct sq_png_ctx *)png_get_error_ptr(png);
    if (ctx && !ctx->message[0]) snprintf(ctx->message, sizeof ctx->message, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void sq_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void sq_png_read(png_structp png, png_bytep dst, png_size_t n) {
    struct sq_png_ctx *ctx = (struct sq_png_ctx *)png_get_io_ptr(png);
    if (n > ctx->size - ctx->pos) {
        ctx->truncated = 1;
        png_error(png, "PNG data ends before the image does");
    }
    memcpy(dst, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

int sq_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, sq_img_result *out) {
    reset_result(out);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (size < 8 || memcmp(data, sig, 8) != 0) {
        set_message(out->message, "not a PNG file (bad signature)");
        return SQ_IMG_NOT_IMAGE;
    }
    struct sq_png_ctx ctx = {data, size, 8, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, sq_png_error, sq_png_warning);
    if (!png) { set_message(out->message, "out of memory"); return SQ_IMG_NO_MEMORY; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(out->message, "out of memory");
        return SQ_IMG_NO_MEMORY;
    }
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile pixels = NULL;
    volatile int status_override = 0;

    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        free(rows);
        free(pixels);
        if (status_override) return status_override;
        snprintf(out->message, sizeof out->message, "%s", ctx.message[0] ? ctx.message : "libpng error");
        return ctx.truncated ? SQ_IMG_TRUNCATED : SQ_IMG_CORRUPT;
    }
    png_set_read_fn(png, &ctx, sq_png_read);
    png_set_sig_bytes(png, 8);
    // Lift libpng's default 1,000,000-pixel side limit so that every oversized image gets the same
    // "too large" answer from check_size (below, before any row buffer exists). Ancillary chunk
    // allocations stay capped by libpng's chunk_malloc_max (8 MB), which stops zTXt/iCCP bombs.
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    size_t rgb_bytes = 0;
    int st = check_size(w, h, max_pixels, &rgb_bytes, out);
    if (st != SQ_IMG_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    // Palette as Pillow sees it: 256 entries, those beyond PLTE black.
    uint8_t palette[256 * 3];
    memset(palette, 0, sizeof palette);
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        if (png_get_PLTE(png, info, &plte, &n) && plte) {
            for (int i = 0; i < n && i < 256; i++) {
                palette[3 * i] = plte[i].red;
                palette[3 * i + 1] = plte[i].green;
                palette[3 * i + 2] = plte[i].blue;
            }
        }
    }
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY: strcpy(out->source_mode, depth == 1 ? "1" : depth == 16 ? "I;16" : "L"); break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: strcpy(out->source_mode, depth == 16 ? "RGBA" : "LA"); break;
    case PNG_COLOR_TYPE_RGB: strcpy(out->source_mode, "RGB"); break;
    case PNG_COLOR_TYPE_RGB_ALPHA: strcpy(out->source_mode, "RGBA"); break;
    case PNG_COLOR_TYPE_PALETTE: strcpy(out->source_mode, "P"); break;
    default: break;
    }
    if (depth < 8) png_set_packing(png);  // one byte per sample, values unscaled
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info);
    int bytes_per_sample = depth == 16 ? 2 : 1;
    if (rowbytes != (size_t)w * (size_t)channels * (size_t)bytes_per_sample) {
        set_message(out->message, "unexpected PNG row layout");
        status_override = SQ_IMG_UNSUPPORTED;
        png_longjmp(png, 1);
    }
    if (rowbytes != 0 && (size_t)h > SIZE_MAX / rowbytes) {
        set_message(out->message, "image too large for this platform");
        status_override = SQ_IMG_TOO_LARGE;
        png_longjmp(png, 1);
    }
    raw = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    pixels = malloc(rgb_bytes);
    if (!raw || !rows || !pixels) {
        set_message(out->message, "out of memory");
        status_override = SQ_IMG_NO_MEMORY;
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + (size_t)y * rowbytes;
    png_read_image(png, rows);
    // No png_read_end: Pillow accepts a file whose IEND (or trailing chunks) are missing.

    size_t n = (size_t)w * (size_t)h;
    const uint8_t *s = raw;
    uint8_t *d = pixels;
    if (ctype == PNG_COLOR_TYPE_GRAY) {
        for (size_t i = 0; i < n; i++) {
            int v;
            switch (depth) {
            case 1: v = s[i] ? 255 : 0; break;
            case 2: v = s[i] * 0x55; break;
            case 4: v = s[i] * 0x11; break;
            case 8: v = s[i]; break;
            default: { int v16 = (s[2 * i] << 8) | s[2 * i + 1]; v = v16 > 255 ? 255 : v16; } break;
            }
            d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = (uint8_t)v;
        }
    } else if (ctype == PNG_COLOR_TYPE_PALETTE) {
        for (size_t i = 0; i < n; i++) memcpy(d + 3 * i, palette + 3 * s[i], 3);
    } else {
        // GA, RGB, RGBA at 8 or 16 bits: take the first (high) byte of each sample, drop alpha.
        int colour = (ctype == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
        size_t stride = (size_t)channels * bytes_per_sample;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = s + i * stride;
            if (colour == 1) {
                d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = p[0];
            } else {
                d[3 * i] = p[0];
                d[3 * i + 1] = p[bytes_per_sample];
                d[3 * i + 2] = p[2 * bytes_per_sample];
            }
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    out->width = w;
    out->height = h;
    out->pixels = pixels;
    return SQ_IMG_OK;
}

// ---------------------------------------------------------------------------------------------
// PNG encoding (for --draw output)

struct sq_png_buf {
    uint8_t *data;
    size_t size;
    size_t cap;
    int oom;
};

static void sq_png_write(png_structp png, png_bytep src, png_size_t n) {
    struct sq_png_buf *b = (struct sq_png_buf *)png_get_io_ptr(png);
    if (n > SIZE_MAX - b->size) { b->oom = 1; png_error(png, "PNG too large"); }
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->size + n) {
            if (cap > SIZE_MAX / 2) { b->oom = 1; png_error(png, "PNG too large"); }
            cap *= 2;
        }
        uint8_t *p = realloc(b->data, cap);
        if (!p) { b->oom = 1; png_error(png, "out of memory"); }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, src, n);
    b->size += n;
}

static void sq_png_flush(png_structp png) { (void)png; }

int sq_encode_png_rgb(const uint8_t *rgb, uint32_t width, uint32_t height,
                      uint8_t **out_data, size_t *out_size, char *message) {
    *out_data = NULL;
    *out_size = 0;
    if (width == 0 || height == 0 || width > 0x7fffffff || height > 0x7fffffff) {
        set_message(message, "cannot encode an image with zero or huge dimensions");
        return SQ_IMG_UNSUPPORTED;
    }
    struct sq_png_ctx ctx = {NULL, 0, 0, 0, {0}};
    struct sq_png_buf buf = {NULL, 0, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, sq_png_error, sq_png_warning);
    if (!png) { set_message(message, "out of memory"); return SQ_IMG_NO_MEMORY; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        set_message(message, "out of memory");
        return SQ_IMG_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(buf.data);
        set_message(message, ctx.message[0] ? ctx.message : "libpng write error");
        return buf.oom ? SQ_IMG_NO_MEMORY : SQ_IMG_CORRUPT;
    }
    png_set_write_fn(png, &buf, sq_png_write, sq_png_flush);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * 3;
    for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * stride));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *out_data = buf.data;
    *out_size = buf.size;
    return SQ_IMG_OK;
}
