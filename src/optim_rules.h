/* The optimisers' element-wise update rules (optim.pyx), vectorised.
 *
 * Why C: `restrict` pointers let the compiler vectorise the loops (Cython cannot say that p, g,
 * m and v do not overlap: the scalar sqrt and two divisions per element made a LeNet-5 Adam step
 * about 0.2 ms). The results stay bitwise those of NumPy's ufunc sequence: IEEE sqrt, division,
 * addition and multiplication round each lane as they round a scalar, and no variant may contract
 * a * b + c into an FMA. So the variants are baseline (SSE2) and AVX2 *without* FMA (target
 * "avx2" alone: there is no FMA instruction to contract into); AVX-512 CPUs take the AVX2 one
 * (AVX-512F brings FMA instructions).
 */
#ifndef FASTCONV_OPTIM_RULES_H
#define FASTCONV_OPTIM_RULES_H

#include <stddef.h>

#include "simd.h"

#define FC_DEFINE_RULES(SFX, T, SQRT, TARGET)                                                      \
TARGET static void fc_adam_##SFX(T *restrict p, const T *restrict g, T *restrict m,                \
                                 T *restrict v, ptrdiff_t n, T wd, int decay,                      \
                                 T one_minus_beta1, T beta2, T one_minus_beta2, T bias2_root,     \
                                 T eps, T minus_step) {                                            \
    for (ptrdiff_t i = 0; i < n; i++) {                                                            \
        T gi = g[i];                                                                               \
        if (decay) gi = gi + p[i] * wd;                                                            \
        const T mi = m[i] + (gi - m[i]) * one_minus_beta1;                                         \
        const T vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;                                   \
        m[i] = mi;                                                                                 \
        v[i] = vi;                                                                                 \
        const T d = SQRT(vi) / bias2_root + eps;                                                   \
        p[i] = p[i] + (mi / d) * minus_step;                                                       \
    }                                                                                              \
}                                                                                                  \
TARGET static void fc_sgd_##SFX(T *restrict p, const T *restrict g, T *restrict buf, ptrdiff_t n,  \
                                T wd, int decay, T momentum, int has_momentum, int first,         \
                                int nesterov, T minus_lr) {                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                            \
        T gi = g[i];                                                                               \
        if (decay) gi = gi + p[i] * wd;                                                            \
        if (has_momentum) {                                                                        \
            const T b = first ? gi : buf[i] * momentum + gi;                                       \
            buf[i] = b;                                                                            \
            gi = nesterov ? gi + b * momentum : b;                                                 \
        }                                                                                          \
        p[i] = p[i] + gi * minus_lr;                                                               \
    }                                                                                              \
}

#ifdef FC_X86_DISPATCH
FC_DEFINE_RULES(float_avx2, float, __builtin_sqrtf, __attribute__((target("avx2"))))
FC_DEFINE_RULES(double_avx2, double, __builtin_sqrt, __attribute__((target("avx2"))))
#endif
FC_DEFINE_RULES(float_base, float, __builtin_sqrtf, )
FC_DEFINE_RULES(double_base, double, __builtin_sqrt, )

/* `level`: fc_simd_level()'s (simd.h); AVX-512 CPUs run the AVX2 loops too. */
#ifdef FC_X86_DISPATCH
#define FC_RULES_CALL(KERNEL, T, level, ...)                                                       \
    ((level) >= 1 ? KERNEL##_##T##_avx2(__VA_ARGS__) : KERNEL##_##T##_base(__VA_ARGS__))
#else
#define FC_RULES_CALL(KERNEL, T, level, ...) KERNEL##_##T##_base(__VA_ARGS__)
#endif

#define FC_DEFINE_RULE_ENTRIES(T)                                                                  \
static void fc_adam_##T(int level, T *p, const T *g, T *m, T *v, ptrdiff_t n, T wd, int decay,    \
                        T one_minus_beta1, T beta2, T one_minus_beta2, T bias2_root, T eps,       \
                        T minus_step) {                                                            \
    FC_RULES_CALL(fc_adam, T, level, p, g, m, v, n, wd, decay, one_minus_beta1, beta2,             \
                  one_minus_beta2, bias2_root, eps, minus_step);                                   \
}                                                                                                  \
static void fc_sgd_##T(int level, T *p, const T *g, T *buf, ptrdiff_t n, T wd, int decay,          \
                       T momentum, int has_momentum, int first, int nesterov, T minus_lr) {        \
    FC_RULES_CALL(fc_sgd, T, level, p, g, buf, n, wd, decay, momentum, has_momentum, first,        \
                  nesterov, minus_lr);                                                             \
}
FC_DEFINE_RULE_ENTRIES(float)
FC_DEFINE_RULE_ENTRIES(double)

#endif
