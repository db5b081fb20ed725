// 2-D max (dilated, and adaptive) and average pooling over (N*C) independent planes, symmetric
// padding (ph, pw).
// Forward kernels and the average-pool backward are gathers (one thread per output element,
// grid-stride). Max-pool backward is deterministic without the window geometry (which the
// backend interface does not give it): a link pass threads each input cell's outputs into a
// list (integer atomicExch only), then a gather pass sums each list in ascending output order.
#include "common.cuh"

// Element i of a (planes, rows, cols) array: its plane, row and column.
__device__ __forceinline__ void plane_position(idx_t i, idx_t rows, idx_t cols, idx_t& plane,
                                               idx_t& row, idx_t& col) {
    col = i % cols;
    const idx_t t = i / cols;
    row = t % rows;
    plane = t / rows;
}

// *y, *index = the max of the nh rows h0, h0 + dh, ... and the nw columns w0, w0 + dw, ... of
// a plane xp (row length W), index = ih*W + iw of the winner. Row-major scan, a later cell wins
// only if strictly greater (first max wins), a NaN beats any number and the first NaN stays
// (NaN wins, as in torch). An empty window (nh or nw <= 0: possible only if the caller allowed
// a window all in the padding) gives -inf and index -1, which max_pool2d_backward skips.
template <typename T>
__device__ __forceinline__ void window_max(const T* __restrict__ xp, idx_t W, idx_t h0, idx_t nh,
                                           idx_t dh, idx_t w0, idx_t nw, idx_t dw, T* y,
                                           long long* index) {
    T best = fc_neg_inf(T(0));
    idx_t best_idx = -1;
    for (idx_t i = 0; i < nh; ++i) {
        const idx_t row = (h0 + i * dh) * W;
        for (idx_t j = 0; j < nw; ++j) {
            const idx_t at = row + w0 + j * dw;
            const T v = xp[at];
            if (best_idx < 0 || v > best || (fc_isnan(v) && !fc_isnan(best))) {
                best = v;
                best_idx = at;
            }
        }
    }
    *y = best;
    *index = best_idx;
}

// The taps t < K of a window starting at s (input s + t*d) that fall inside [0, size):
// [*lo, *hi) (empty when *lo >= *hi). Undilated windows (the usual case) skip the 64-bit
// divisions.
__device__ __forceinline__ void tap_span(idx_t s, int K, int d, idx_t size, idx_t* lo, idx_t* hi) {
    if (d == 1) {
        *lo = imax64(-s, 0);
        *hi = imin64(K, size - s);
        return;
    }
    *lo = s < 0 ? (-s + d - 1) / d : 0;
    *hi = s > size - 1 ? 0 : imin64(K, (size - 1 - s) / d + 1);
}

// y = max over the dilated window's in-image cells (rows oh*sh - ph + kh*dh, kh < KH; columns
// alike); indices = ih*W + iw of the winner (window_max's rule). Padded cells never win.
template <typename T>
__global__ void max_pool2d_forward(const T* __restrict__ x,          // IN  (planes, H, W)
                                   T* __restrict__ y,                // OUT (planes, OH, OW)
                                   long long* __restrict__ indices,  // OUT (planes, OH, OW)
                                   idx_t planes, idx_t H, idx_t W, idx_t OH, idx_t OW, int KH,
                                   int KW, int sh, int sw, int ph, int pw, int dh, int dw) {
    const idx_t total = planes * OH * OW;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        idx_t plane, oh, ow;
        plane_position(i, OH, OW, plane, oh, ow);
        const idx_t hs = oh * sh - ph;
        const idx_t ws = ow * sw - pw;
        idx_t h_lo, h_hi, w_lo, w_hi;
        tap_span(hs, KH, dh, H, &h_lo, &h_hi);
        tap_span(ws, KW, dw, W, &w_lo, &w_hi);
        window_max(x + plane * H * W, W, hs + h_lo * dh, h_hi - h_lo, (idx_t)dh, ws + w_lo * dw,
                   w_hi - w_lo, (idx_t)dw, y + i, indices + i);
    }
}

// torch's adaptive max pooling: output (oh, ow) is the max over the input rows
// [windows[2 oh], windows[2 oh + 1]) and the columns [windows[2 (OH + ow)], ...+1), windows
// given by the host (fastconv._validation.adaptive_windows); indices as max_pool2d_forward's.
template <typename T>
__global__ void adaptive_max_pool2d_forward(
    const T* __restrict__ x,                // IN  (planes, H, W)
    T* __restrict__ y,                      // OUT (planes, OH, OW)
    long long* __restrict__ indices,        // OUT (planes, OH, OW)
    const long long* __restrict__ windows,  // IN  (OH + OW, 2): (start, stop) of rows, columns
    idx_t planes, idx_t H, idx_t W, idx_t OH, idx_t OW) {
    const idx_t total = planes * OH * OW;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        idx_t plane, oh, ow;
        plane_position(i, OH, OW, plane, oh, ow);
        const long long* rows = windows + 2 * oh;
        const long long* cols = windows + 2 * (OH + ow);
        window_max(x + plane * H * W, W, rows[0], rows[1] - rows[0], (idx_t)1, cols[0],
                   cols[1] - cols[0], (idx_t)1, y + i, indices + i);
    }
}

// Pass 1 of max-pool backward: output i (local index o in its plane) is pushed onto the list of
// the input cell it took its max from: next[i] = head[cell], head[cell] = o. atomicExch on ints
// makes the lists exact whatever the order; only the order within a list varies run to run,
// and pass 2 sums in a fixed order. head must hold -1 everywhere (pass 2 leaves it so); an
// index outside [0, H*W) (a window entirely in padding, or bad input) links nowhere.
template <typename T>
__global__ void max_pool2d_backward_link(const long long* __restrict__ indices,  // IN (planes, OHW)
                                         int* __restrict__ head,  // IN/OUT (planes, HW)
                                         int* __restrict__ next,  // OUT (planes, OHW)
                                         idx_t planes, idx_t OHW, idx_t HW) {
    const idx_t total = planes * OHW;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const idx_t idx = indices[i];
        const idx_t plane = i / OHW;
        if (idx < 0 || idx >= HW) continue;  // never on a list: next[i] is never read
        next[i] = atomicExch(head + plane * HW + idx, (int)(i - plane * OHW));
    }
}

// Pass 2: grad_x[cell] = the sum of grad_y over the cell's list, taken in ascending output
// order (repeatedly the smallest entry above the last one: lists hold at most a few entries
// for ordinary pooling, ceil(KH/sh)*ceil(KW/sw), and for adaptive pooling
// (ceil(OH/H) + 1)*(ceil(OW/W) + 1)), then the list is emptied for the next call.
// Every cell is written: grad_x needs no zeroing.
template <typename T>
__global__ void max_pool2d_backward_gather(const T* __restrict__ grad_y,  // IN (planes, OHW)
                                           int* __restrict__ head,        // IN/OUT (planes, HW)
                                           const int* __restrict__ next,  // IN (planes, OHW)
                                           T* __restrict__ grad_x,        // OUT (planes, HW)
                                           idx_t planes, idx_t OHW, idx_t HW) {
    const idx_t total = planes * HW;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int first = head[i];
        T acc = T(0);
        if (first >= 0) {
            head[i] = -1;
            const idx_t base = i / HW * OHW;
            int last = -1;
            for (;;) {
                int best = -1;
                for (int e = first; e >= 0; e = next[base + e]) {
                    if (e > last && (best < 0 || e < best)) best = e;
                }
                if (best < 0) break;
                acc += grad_y[base + best];
                last = best;
            }
        }
        grad_x[i] = acc;
    }
}

// Number the window's sum is divided by: divisor_override when nonzero (torch's), else with
// count_include_pad (torch's default) its cells in the padded input (KH*KW, except for a
// ceil-mode window that runs past the bottom/right padding), else its in-image cells.
__device__ __forceinline__ idx_t avg_pool_divisor(idx_t hs, idx_t ws, idx_t H, idx_t W, int KH,
                                                  int KW, int ph, int pw, int count_include_pad,
                                                  idx_t divisor_override) {
    if (divisor_override != 0) return divisor_override;
    if (count_include_pad) return (imin64(hs + KH, H + ph) - hs) * (imin64(ws + KW, W + pw) - ws);
    const idx_t h = imin64(hs + KH, H) - imax64(hs, 0);
    const idx_t w = imin64(ws + KW, W) - imax64(ws, 0);
    return (h > 0 && w > 0) ? h * w : 0;
}

template <typename T>
__global__ void avg_pool2d_forward(const T* __restrict__ x,  // IN  (planes, H, W)
                                   T* __restrict__ y,        // OUT (planes, OH, OW)
                                   idx_t planes, idx_t H, idx_t W, idx_t OH, idx_t OW, int KH,
                                   int KW, int sh, int sw, int ph, int pw, int count_include_pad,
                                   idx_t divisor_override) {
    const idx_t total = planes * OH * OW;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        idx_t plane, oh, ow;
        plane_position(i, OH, OW, plane, oh, ow);
        const T* xp = x + plane * H * W;
        const idx_t hs = oh * sh - ph;
        const idx_t ws = ow * sw - pw;
        const idx_t h_end = imin64(hs + KH, H);
        const idx_t w_end = imin64(ws + KW, W);
        T acc = T(0);
        for (idx_t ih = imax64(hs, 0); ih < h_end; ++ih) {
            for (idx_t iw = imax64(ws, 0); iw < w_end; ++iw) acc += xp[ih * W + iw];
        }
        const idx_t div =
            avg_pool_divisor(hs, ws, H, W, KH, KW, ph, pw, count_include_pad, divisor_override);
        y[i] = div > 0 ? acc / T(div) : T(0);  // div == 0: window all padding, nothing to average
    }
}

// grad_x[plane, ih, iw] = sum over the windows (oh, ow) that contain (ih, iw) of
// grad_y[plane, oh, ow] / divisor(oh, ow). A gather: deterministic, no atomics.
template <typename T>
__global__ void avg_pool2d_backward(const T* __restrict__ grad_y,  // IN  (planes, OH, OW)
                                    T* __restrict__ grad_x,        // OUT (planes, H, W)
                                    idx_t planes, idx_t H, idx_t W, idx_t OH, idx_t OW, int KH,
                                    int KW, int sh, int sw, int ph, int pw,
                                    int count_include_pad, idx_t divisor_override) {
    const idx_t total = planes * H * W;
    const idx_t stride = (idx_t)gridDim.x * blockDim.x;
    for (idx_t i = (idx_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        idx_t plane, ih, iw;
        plane_position(i, H, W, plane, ih, iw);
        const T* gp = grad_y + plane * OH * OW;
        // Window oh covers rows [oh*sh - ph, oh*sh - ph + KH): it contains ih when
        // ih + ph - KH < oh*sh <= ih + ph.
        const idx_t ah = ih + ph - KH + 1;
        const idx_t aw = iw + pw - KW + 1;
        const idx_t oh_lo = ah <= 0 ? 0 : (ah + sh - 1) / sh;
        const idx_t ow_lo = aw <= 0 ? 0 : (aw + sw - 1) / sw;
        const idx_t oh_hi = imin64(OH - 1, (ih + ph) / sh);
        const idx_t ow_hi = imin64(OW - 1, (iw + pw) / sw);
        T acc = T(0);
        for (idx_t oh = oh_lo; oh <= oh_hi; ++oh) {
            for (idx_t ow = ow_lo; ow <= ow_hi; ++ow) {
                const idx_t div = avg_pool_divisor(oh * sh - ph, ow * sw - pw, H, W, KH, KW, ph,
                                                   pw, count_include_pad, divisor_override);
                if (div > 0) acc += gp[oh * OW + ow] / T(div);
            }
        }
        grad_x[i] = acc;
    }
}
