/* Direct convolution for few filters (groups = 1), vectorised over the filters.
 *
 * Why: with F <= 32 a GEMM has F rows only, so the im2col copy and BLAS's packing cost as much as
 * the multiply-adds (LeNet-5's conv2, 6 -> 16 channels on 10x10 outputs, ran at a third of
 * oneDNN's speed). Here SIMD registers hold a block of filters of one output pixel; a few pixels
 * share each weight-vector load; no column matrix is built.
 *
 * The library is compiled for the baseline instruction set, so the kernels are compiled three
 * times (AVX-512, AVX2+FMA, baseline) with GCC/Clang `target` attributes and chosen at run time
 * with __builtin_cpu_supports. Elsewhere (other compilers or CPUs) fc_direct_level() is 0: the
 * caller keeps the GEMM path (the baseline kernel still runs when asked for, e.g. by the tests).
 *
 * The caller pads the input, so padded taps are multiplied by zero, never skipped: 0 * inf = NaN
 * as in the GEMM path.
 * Every output element is summed by one call in a fixed order (bias first, then taps in
 * (c, kh, kw) order): results do not depend on the thread count.
 */
#ifndef FASTCONV_DIRECT_CONV_H
#define FASTCONV_DIRECT_CONV_H

#include <stddef.h>
#include <string.h>

typedef ptrdiff_t fc_idx;

/* Vectors per pixel and pixels per register block. AVX2 measured here (LeNet-5 conv2, one
 * thread): 1 x 8 55 GFLOP/s, 2 x 6 53, 2 x 4 35, 1 x 12 36. AVX-512 takes the same shape (not
 * measured: no AVX-512 CPU was at hand when this was tuned). */
#define FC_NV_AVX2 1
#define FC_PIX_AVX2 8
#define FC_NV_AVX512 1
#define FC_PIX_AVX512 8

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86_DISPATCH 1
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* 2: AVX-512, 1: AVX2 + FMA, 0: neither (the baseline kernel is no faster than the GEMM path). */
static int fc_direct_level(void) {
#ifdef FC_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* One call: output pixels [0, npix) (flattened, OW per row) of one image for one block of
 * FB <= NV * VL filters, every tap inside x (the caller pads x). x: (C, rows, XW) with channel
 * planes XPLANE apart and row 0 the first input row of output row 0; wpack: the block's weights
 * as (C * KH * KW, NV * VL), lanes >= FB zero; bias: NV * VL values (zero-padded); y: the first
 * output plane of the block, planes YPLANE apart. */
#define FC_DEFINE_DIRECT(NAME, T, VBYTES, NV, PIX, TARGET)                                         \
typedef T NAME##_vec __attribute__((vector_size(VBYTES), aligned(sizeof(T))));                     \
TARGET static void NAME(const T *x, fc_idx XPLANE, fc_idx XW, const T *wpack, const T *bias,       \
                        T *y, fc_idx YPLANE, fc_idx FB, fc_idx C, fc_idx KH, fc_idx KW,            \
                        fc_idx OW, fc_idx sh, fc_idx sw, fc_idx dh, fc_idx dw, fc_idx npix,        \
                        int relu) {                                                                \
    enum { VL = VBYTES / sizeof(T), BL = NV * VL };                                                \
    typedef NAME##_vec vec;                                                                        \
    vec acc[PIX][NV];                                                                              \
    T lanes[BL];                                                                                   \
    fc_idx base[PIX];                                                                              \
    fc_idx oh = 0, ow = 0; /* of pixel p; advanced without dividing */                             \
    for (fc_idx p = 0; p < npix; p += PIX) {                                                       \
        const fc_idx np = npix - p < PIX ? npix - p : PIX;                                         \
        for (fc_idx q = 0; q < np; q++) {                                                          \
            base[q] = oh * sh * XW + ow * sw;                                                      \
            if (++ow == OW) { ow = 0; oh++; }                                                      \
        }                                                                                          \
        /* A short last block repeats its last pixel: computed, never stored. */                   \
        for (fc_idx q = np; q < PIX; q++) base[q] = base[np - 1];                                  \
        for (int q = 0; q < PIX; q++)                                                              \
            for (int v = 0; v < NV; v++) acc[q][v] = *(const vec *)(bias + v * VL);                \
        const T *wk = wpack;                                                                       \
        for (fc_idx c = 0; c < C; c++) {                                                           \
            for (fc_idx kh = 0; kh < KH; kh++) {                                                   \
                const T *xrow = x + c * XPLANE + kh * dh * XW;                                     \
                for (fc_idx kw = 0; kw < KW; kw++, wk += BL) {                                     \
                    const T *xt = xrow + kw * dw;                                                  \
                    vec wv[NV];                                                                    \
                    for (int v = 0; v < NV; v++) wv[v] = *(const vec *)(wk + v * VL);              \
                    for (int q = 0; q < PIX; q++) {                                                \
                        const T xv = xt[base[q]];                                                  \
                        for (int v = 0; v < NV; v++) acc[q][v] += xv * wv[v];                      \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (fc_idx q = 0; q < np; q++) {                                                          \
            memcpy(lanes, acc[q], sizeof lanes);                                                   \
            for (fc_idx f = 0; f < FB; f++) {                                                      \
                const T v = lanes[f];                                                              \
                /* v <= 0 is false for NaN: the fused ReLU keeps NaN, as the GEMM path's does. */  \
                y[f * YPLANE + p + q] = relu && v <= 0 ? (T)0 : v;                                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}

/* Per instruction set: vector bytes, vectors per pixel (NV) and pixels per block (PIX), so that
 * the NV * PIX accumulators, NV weight vectors and a broadcast fit the register file (16 vector
 * registers below AVX-512, 32 with it) and enough independent FMAs are in flight. */
#ifdef FC_X86_DISPATCH
FC_DEFINE_DIRECT(fc_direct_float_avx512, float, 64, FC_NV_AVX512, FC_PIX_AVX512, FC_TARGET_AVX512)
FC_DEFINE_DIRECT(fc_direct_double_avx512, double, 64, FC_NV_AVX512, FC_PIX_AVX512, FC_TARGET_AVX512)
FC_DEFINE_DIRECT(fc_direct_float_avx2, float, 32, FC_NV_AVX2, FC_PIX_AVX2, FC_TARGET_AVX2)
FC_DEFINE_DIRECT(fc_direct_double_avx2, double, 32, FC_NV_AVX2, FC_PIX_AVX2, FC_TARGET_AVX2)
#endif
FC_DEFINE_DIRECT(fc_direct_float_base, float, 16, 1, 8, )
FC_DEFINE_DIRECT(fc_direct_double_base, double, 16, 1, 8, )

/* Filters per block at `level`, for elements of `itemsize` bytes: the packing the kernels read. */
static int fc_direct_block(int level, int itemsize) {
    if (level == 2) return FC_NV_AVX512 * 64 / itemsize;
    if (level == 1) return FC_NV_AVX2 * 32 / itemsize;
    return 16 / itemsize;
}

#ifdef FC_X86_DISPATCH
#define FC_DISPATCH(T, ...)                                                                        \
    do {                                                                                           \
        if (level == 2) fc_direct_##T##_avx512(__VA_ARGS__);                                       \
        else if (level == 1) fc_direct_##T##_avx2(__VA_ARGS__);                                    \
        else fc_direct_##T##_base(__VA_ARGS__);                                                    \
    } while (0)
#else
#define FC_DISPATCH(T, ...) fc_direct_##T##_base(__VA_ARGS__)
#endif

/* The entry points Cython calls; `level` comes from fc_direct_level(). */
#define FC_DEFINE_ENTRY(T)                                                                         \
static void fc_direct_##T(int level, const T *x, fc_idx XPLANE, fc_idx XW, const T *wpack,        \
                          const T *bias, T *y, fc_idx YPLANE, fc_idx FB, fc_idx C, fc_idx KH,     \
                          fc_idx KW, fc_idx OW, fc_idx sh, fc_idx sw, fc_idx dh, fc_idx dw,       \
                          fc_idx npix, int relu) {                                                 \
    FC_DISPATCH(T, x, XPLANE, XW, wpack, bias, y, YPLANE, FB, C, KH, KW, OW, sh, sw, dh, dw,       \
                npix, relu);                                                                       \
}
FC_DEFINE_ENTRY(float)
FC_DEFINE_ENTRY(double)

#endif
