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

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
FC_DEFINE_RULES(float_avx2, float, __builtin_sqrtf, __attribute__((target("avx2"))))
FC_DEFINE_RULES(double_avx2, double, __builtin_sqrt, __attribute__((target("avx2"))))
#define FC_RULES_AVX2 1
#endif
FC_DEFINE_RULES(float_base, float, __builtin_sqrtf, )
FC_DEFINE_RULES(double_base, double, __builtin_sqrt, )

/* 1: the AVX2 variants run here, 0: the baseline ones. */
static int fc_rules_level(void) {
#ifdef FC_RULES_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

#ifdef FC_RULES_AVX2
#define FC_RULES_CALL(KERNEL, T, level, ...)                                                       \
    ((level) ? KERNEL##_##T##_avx2(__VA_ARGS__) : KERNEL##_##T##_base(__VA_ARGS__))
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
