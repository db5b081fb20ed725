/* One row of an im2col tile: zeros where the tap reads padding, the input row between.
 * In C for `restrict`: Cython cannot say that dst and src never overlap, and without it the
 * compiler checks for overlap on every call, which on the short rows of small images (OW = 28:
 * 7168 rows per tile) cost more than the copy. */
#ifndef FASTCONV_IM2COL_ROWS_H
#define FASTCONV_IM2COL_ROWS_H

#include <stddef.h>

#define FC_DEFINE_ROW(T)                                                                           \
static inline void fc_im2col_row_##T(T *restrict dst, const T *restrict src, ptrdiff_t lo,         \
                                     ptrdiff_t hi, ptrdiff_t n, ptrdiff_t stride) {                \
    for (ptrdiff_t i = 0; i < lo; i++) dst[i] = 0;                                                 \
    if (stride == 1) {                                                                             \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[i];                                       \
    } else if (stride == 2) { /* its own loop: a constant stride vectorises */                     \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[2 * i];                                   \
    } else {                                                                                       \
        for (ptrdiff_t i = lo; i < hi; i++) dst[i] = src[i * stride];                              \
    }                                                                                              \
    for (ptrdiff_t i = hi; i < n; i++) dst[i] = 0;                                                 \
}
FC_DEFINE_ROW(float)
FC_DEFINE_ROW(double)
#undef FC_DEFINE_ROW

#endif
