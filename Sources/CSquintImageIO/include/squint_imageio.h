// JPEG and PNG decoding to 8-bit RGB with libjpeg-turbo and libpng, and PNG encoding.
//
// libjpeg and libpng report errors by longjmp (libjpeg's default handler even calls exit()), which
// Swift cannot catch; this small C target installs setjmp-based handlers so that every corrupt or
// truncated file comes back as a status code plus a message, never as a crash or exit.
//
// The decoders reproduce what Pillow's `Image.open(f).convert("RGB")` gives, byte for byte (the
// Qwen-VL preprocessing starts from that): see the per-format notes in imageio.c.
#ifndef SQUINT_IMAGEIO_H
#define SQUINT_IMAGEIO_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes returned by every function here.
typedef enum {
    SQ_IMG_OK = 0,
    /// The bytes do not start like the format asked for.
    SQ_IMG_NOT_IMAGE = 1,
    /// The data ends before the image does.
    SQ_IMG_TRUNCATED = 2,
    /// The library rejected the data (bad marker, CRC, Huffman table, zlib stream...).
    SQ_IMG_CORRUPT = 3,
    /// Valid but outside what we decode (12-bit JPEG, unusual component counts...).
    SQ_IMG_UNSUPPORTED = 4,
    /// Declared dimensions exceed the caller's pixel limit (decompression-bomb guard).
    SQ_IMG_TOO_LARGE = 5,
    /// malloc failed.
    SQ_IMG_NO_MEMORY = 6,
} sq_img_status;

/// Result of a decode. On success `pixels` holds width*height*3 bytes (row-major RGB), allocated
/// with malloc; release it with sq_img_free. On failure `pixels` is NULL and `message` says why.
typedef struct {
    uint32_t width;
    uint32_t height;
    uint8_t *pixels;
    /// Pillow's name for the mode the file decodes to before convert("RGB"): "L", "RGB", "CMYK",
    /// "P", "1", "I;16", "LA", "RGBA". Informational.
    char source_mode[8];
    char message[200];
} sq_img_result;

/// Decodes a JPEG from memory. Settings as Pillow uses them: JDCT_ISLOW, fancy upsampling on.
/// Greyscale is replicated to RGB; CMYK/YCCK is read as Adobe-inverted CMYK and converted with
/// Pillow's cmyk2rgb formula. `max_pixels` is checked against the header before any allocation.
int sq_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, sq_img_result *out);

/// Decodes a PNG from memory (any bit depth, colour type, interlacing) with Pillow's conversion
/// rules to RGB: 16-bit samples keep their high byte except 16-bit greyscale, which Pillow holds as
/// mode "I;16" and clips to 255; alpha is dropped without compositing; palette entries beyond PLTE
/// are black; tRNS and gamma chunks do not change the RGB values.
int sq_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, sq_img_result *out);

/// Encodes 8-bit RGB as a PNG into a malloc'd buffer (*out_data, *out_size; free with sq_img_free).
/// `message` (at least 200 bytes) receives the error text on failure.
int sq_encode_png_rgb(const uint8_t *rgb, uint32_t width, uint32_t height,
                      uint8_t **out_data, size_t *out_size, char *message);

/// Frees a buffer returned by this module.
void sq_img_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
