// The operand loader of the convolution GEMMs (conv_igemm.cu, conv_tc.cu): A from the
// weights through the k table's A offsets, B gathered from x (forward) or grad_y (grad_input)
// around this thread's one B column, zeros where the table or the image bounds say so; and
// exact_sum, the re-computation used when a tile's weights hold inf/NaN in grad_input.
#pragma once

template <typename T, int BM, int BN>
struct ConvLoader {
    using S = TileShape<BM, BN>;
    static constexpr int A_LOADS = BM * IGEMM_BK / S::THREADS;
    static constexpr int B_LOADS = BN * IGEMM_BK / S::THREADS;
    static constexpr int A_STEP = S::THREADS / IGEMM_BK;  // rows between a thread's A loads
    static constexpr int B_STEP = S::THREADS / BN;        // k rows between its B loads

    const T* a;  // A of this group, row m0
    const T* b;
    const int4* tab;  // this phase's table
    idx_t a_ms;
    int a_rows;  // rows left in the tile (M - m0)
    int tid;
    GemmColumn col;  // this thread's B column
    int in_h, in_w;
    bool check_finite, bad;
    T ra[A_LOADS], rb[B_LOADS];

    __device__ __forceinline__ void load(long long k0) {
        const int ka = tid % IGEMM_BK;
        const int a_off = tab[k0 + ka].x;
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            const int m = tid / IGEMM_BK + A_STEP * r;
            ra[r] = (m < a_rows && a_off >= 0) ? a[m * a_ms + a_off] : T(0);
            if (check_finite) bad |= !fc_isfinite(ra[r]);
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            const int4 e = tab[k0 + tid / BN + B_STEP * r];
            const int ih = col.ih0 + e.z;
            const int iw = col.iw0 + e.w;
            const bool in = col.ok && ih >= 0 && ih < in_h && iw >= 0 && iw < in_w;
            rb[r] = in ? b[col.in_off + e.y] : T(0);
        }
    }

    // A[m][k] and B[k][n] into shared memory, laid out (and converted) as the math wants.
    template <typename Math>
    __device__ __forceinline__ void store(const Math& math, T* As, T* Bs) const {
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r)
            math.store_a(As, tid % IGEMM_BK, tid / IGEMM_BK + A_STEP * r, ra[r]);
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) math.store_b(Bs, tid / BN + B_STEP * r, tid % BN, rb[r]);
    }
};

// The sum the GEMM computes for output (m, column c), taking only the table entries whose B
// element exists (a tap that misses adds nothing, not 0 * weight). Used for a tile whose
// weights hold inf/NaN in grad_input, where the CPU backend's col2im leaves pixels that a
// non-finite weight does not reach finite; the GEMM would multiply it by a padded zero.
template <typename T>
__device__ T exact_sum(const T* a, idx_t a_ms, int m, const T* b, const GemmColumn& c,
                       const int4* tab, long long k_begin, long long k_end, int in_h,
                       int in_w) {
    T acc = T(0);
    for (long long k = k_begin; k < k_end; ++k) {
        const int4 e = tab[k];
        const int ih = c.ih0 + e.z;
        const int iw = c.iw0 + e.w;
        if (e.x >= 0 && ih >= 0 && ih < in_h && iw >= 0 && iw < in_w)
            acc += a[m * a_ms + e.x] * b[c.in_off + e.y];
    }
    return acc;
}
