// The instruction sets of the SIMD kernels, in one place: the target attributes of the AVX-512
// levels and the CPU check that chooses them (sq_cpu_supports).
//
// A normal build: the compiler's target attributes and __builtin_cpu_supports, nothing else.
//
// A test build with -DSQUINT_EMULATE_AVX512 (scripts/test-avx512-emulated.sh; needs Debian's
// libsimde-dev and -mavx2 -mfma -mf16c) runs the AVX-512 levels on a CPU without AVX-512: the CPU
// check reports every avx512* feature, the AVX-512 functions are compiled for AVX2, and the 512-bit
// intrinsics they use come from SIMDe (simd-everywhere, an implementation independent of ours, which
// builds each 512-bit lane-wise operation from two native 256-bit ones: FMAs stay fused, every lane
// rounds as on the real unit). The three intrinsics SIMDe 0.7.4 lacks are defined below from their
// definitions in Intel's Intrinsics Guide. So the kernels' logic (lookups, shifts, lane order, masks,
// the scalar twins' claim of identical bits) is tested on every machine. What still needs a real
// AVX-512 CPU: the compiler's own AVX-512 code for these functions, the CPU check itself, and speed.
#ifndef SQUINT_ISA_H
#define SQUINT_ISA_H
#include <immintrin.h>

#ifndef SQUINT_EMULATE_AVX512

#define SQ_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define SQ_TARGET_VNNI __attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma,f16c")))
#define sq_cpu_supports(feature) __builtin_cpu_supports(feature)

#else

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "SQUINT_EMULATE_AVX512 needs -mavx2 -mfma -mf16c: SIMDe then builds 512-bit operations from native 256-bit ones"
#endif
#if defined(__AVX512F__)
#error "SQUINT_EMULATE_AVX512 is for compilers targeting CPUs without AVX-512"
#endif
#include <simde/x86/avx512.h>
// The 512-bit types pass between static functions of one file only, so the ABI warning does not apply.
#pragma clang diagnostic ignored "-Wpsabi"
#include <string.h>

#define SQ_TARGET_AVX512 __attribute__((target("avx2,fma,f16c")))
#define SQ_TARGET_VNNI SQ_TARGET_AVX512
#define sq_cpu_supports(feature) (strncmp((feature), "avx512", 6) == 0 || __builtin_cpu_supports(feature))

#define __m512 simde__m512
#define __m512i simde__m512i
#define __m512d simde__m512d
#define __mmask8 simde__mmask8

#undef _mm512_add_ps
#define _mm512_add_ps simde_mm512_add_ps
#undef _mm512_castps512_ps256
#define _mm512_castps512_ps256 simde_mm512_castps512_ps256
#undef _mm512_castps_pd
#define _mm512_castps_pd simde_mm512_castps_pd
#undef _mm512_extractf64x4_pd
#define _mm512_extractf64x4_pd simde_mm512_extractf64x4_pd
#undef _mm512_fmadd_pd
#define _mm512_fmadd_pd simde_mm512_fmadd_pd
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps simde_mm512_fmadd_ps
#undef _mm512_load_pd
#define _mm512_load_pd simde_mm512_load_pd
#undef _mm512_loadu_pd
#define _mm512_loadu_pd simde_mm512_loadu_pd
#undef _mm512_loadu_ps
#define _mm512_loadu_ps simde_mm512_loadu_ps
#undef _mm512_loadu_si512
#define _mm512_loadu_si512 simde_mm512_loadu_si512
#undef _mm512_mul_ps
#define _mm512_mul_ps simde_mm512_mul_ps
#undef _mm512_permutexvar_ps
#define _mm512_permutexvar_ps simde_mm512_permutexvar_ps
#undef _mm512_set1_pd
#define _mm512_set1_pd simde_mm512_set1_pd
#undef _mm512_set1_ps
#define _mm512_set1_ps simde_mm512_set1_ps
#undef _mm512_setr_ps
#define _mm512_setr_ps simde_mm512_setr_ps
#undef _mm512_setzero_pd
#define _mm512_setzero_pd simde_mm512_setzero_pd
#undef _mm512_setzero_ps
#define _mm512_setzero_ps simde_mm512_setzero_ps
#undef _mm512_srli_epi32
#define _mm512_srli_epi32 simde_mm512_srli_epi32
#undef _mm512_storeu_pd
#define _mm512_storeu_pd simde_mm512_storeu_pd
#undef _mm512_sub_pd
#define _mm512_sub_pd simde_mm512_sub_pd
#undef _mm512_sub_ps
#define _mm512_sub_ps simde_mm512_sub_ps
#undef _mm256_dpbusd_epi32
#define _mm256_dpbusd_epi32 simde_mm256_dpbusd_epi32

// vpmovzxbd zmm, xmm: the 16 bytes of a, zero-extended to 32 bits, in order.
static inline simde__m512i sq_emu_mm512_cvtepu8_epi32(__m128i a) {
    uint8_t b[16];
    uint32_t r[16];
    memcpy(b, &a, 16);
    for (int i = 0; i < 16; i++) r[i] = b[i];
    return simde_mm512_loadu_si512(r);
}
// vmovupd m512 {k}, zmm: lanes whose mask bit is set are written; the others are not touched.
static inline void sq_emu_mm512_mask_storeu_pd(void *p, simde__mmask8 k, simde__m512d a) {
    double v[8];
    simde_mm512_storeu_pd(v, a);
    for (int i = 0; i < 8; i++)
        if (k >> i & 1) memcpy((double *)p + i, &v[i], sizeof(double));
}
// vmovupd zmm {k}{z}, m512: lanes whose mask bit is set are read, the others are zero and their
// memory is never read (the real instruction suppresses faults there).
static inline simde__m512d sq_emu_mm512_maskz_loadu_pd(simde__mmask8 k, const void *p) {
    double v[8] = {0};
    for (int i = 0; i < 8; i++)
        if (k >> i & 1) memcpy(&v[i], (const double *)p + i, sizeof(double));
    return simde_mm512_loadu_pd(v);
}
#undef _mm512_cvtepu8_epi32
#define _mm512_cvtepu8_epi32 sq_emu_mm512_cvtepu8_epi32
#undef _mm512_mask_storeu_pd
#define _mm512_mask_storeu_pd sq_emu_mm512_mask_storeu_pd
#undef _mm512_maskz_loadu_pd
#define _mm512_maskz_loadu_pd sq_emu_mm512_maskz_loadu_pd

#endif
#endif
