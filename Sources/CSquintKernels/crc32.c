// CRC-32 (zip / ISO-HDLC) for the torch zip writer, SQ4 checksums and checksum verification.
// sq_crc32 is zlib's crc32_z; sq_crc32_ref is the bitwise definition the tests compare it with on
// odd lengths and alignments.
#include "squint_kernels.h"
#include <string.h>
#include <zlib.h>

uint32_t sq_crc32_ref(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

uint32_t sq_crc32(uint32_t crc, const void *data, size_t n) {
    /* zlib's crc32_z (Debian zlib 1.2.13, "braided" CRC): 7 GB/s on the dev machine against
     * 2.6 GB/s for the slicing-by-8 table this file had; same values (tests compare with the ref). */
    return (uint32_t)crc32_z((uLong)crc, (const Bytef *)data, (z_size_t)n);
}
