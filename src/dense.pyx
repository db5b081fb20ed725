# The trainer's dense hot path: linear layers over SciPy's GEMM, ReLU backward, and a stable
# log-softmax + cross-entropy. Row blocks have a fixed size (not a per-thread share), so results do
# not depend on the thread count.
from cython.parallel cimport prange
from libc.math cimport exp, log

from _types cimport real
from _blas cimport gemm
from _select cimport relu, select

import numpy as np

cdef enum:
    # Fixed output blocks (never a per-thread share, so results do not depend on the thread
    # count), small enough that a batch of 64 still splits: with 64-row blocks alone LeNet-5's
    # C5 and F6 ran on one thread at batch 64.
    ROW_BLOCK = 64
    COL_BLOCK = 64


cdef inline void _bias_relu_rows(real* y, Py_ssize_t ldy, const real* bias, bint has_bias,
                                 bint do_relu, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef real v
    for i in range(rows):
        for j in range(cols):
            v = y[i * ldy + j] + (bias[j] if has_bias else 0)
            y[i * ldy + j] = relu(v) if do_relu else v


cdef void _row_blocks(bint trans_a, bint trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const real* A, Py_ssize_t lda, const real* B, Py_ssize_t ldb, real* C,
                     bint epilogue, const real* bias, bint has_bias, bint relu,
                     int num_threads) noexcept nogil:
    """C (M x N, row-major) = op(A) @ op(B) in blocks of ROW_BLOCK rows x COL_BLOCK columns of
    C, one GEMM each, spread over the threads; with `epilogue`, then + bias (then ReLU) on the
    block in cache."""
    cdef Py_ssize_t row_blocks = (M + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t col_blocks = (N + COL_BLOCK - 1) // COL_BLOCK, blk, r0, r1, c0, c1
    for blk in prange(row_blocks * col_blocks, num_threads=num_threads, schedule="static"):
        r0 = (blk // col_blocks) * ROW_BLOCK
        r1 = min(M, r0 + ROW_BLOCK)
        c0 = (blk % col_blocks) * COL_BLOCK
        c1 = min(N, c0 + COL_BLOCK)
        # Row r of op(A) starts at A + r * lda, or at column r (A + r) when A is transposed;
        # column c of op(B) at B + c, or at row c (B + c * ldb) when B is transposed.
        gemm(trans_a, trans_b, <int>(r1 - r0), <int>(c1 - c0), <int>K, <real>1,
             A + (r0 if trans_a else r0 * lda), <int>lda, B + (c0 * ldb if trans_b else c0),
             <int>ldb, <real>0, C + r0 * N + c0, <int>N)
        if epilogue:
            _bias_relu_rows(C + r0 * N + c0, N, bias + c0 if has_bias else bias, has_bias, relu,
                            r1 - r0, c1 - c0)


def linear_forward(const real[:, ::1] x, const real[:, ::1] weight, const real[::1] bias,
                   real[:, ::1] y, bint has_bias, bint relu, int num_threads):
    """y (N, OUT) = x (N, IN) @ weight (OUT, IN)^T (+ bias) (then ReLU)."""
    cdef Py_ssize_t IN = x.shape[1]
    with nogil:
        _row_blocks(False, True, x.shape[0], weight.shape[0], IN, &x[0, 0], IN, &weight[0, 0],
                    IN, &y[0, 0], True, &bias[0] if has_bias else NULL, has_bias, relu,
                    num_threads)


def linear_grad_input(const real[:, ::1] grad_y, const real[:, ::1] weight, real[:, ::1] grad_x,
                      int num_threads):
    """grad_x (N, IN) = grad_y (N, OUT) @ weight (OUT, IN)."""
    cdef Py_ssize_t OUT = grad_y.shape[1], IN = weight.shape[1]
    with nogil:
        _row_blocks(False, False, grad_y.shape[0], IN, OUT, &grad_y[0, 0], OUT, &weight[0, 0],
                    IN, &grad_x[0, 0], False, NULL, False, False, num_threads)


def linear_grad_weight(const real[:, ::1] grad_y, const real[:, ::1] x, real[:, ::1] grad_w,
                       int num_threads):
    """grad_w (OUT, IN) = grad_y (N, OUT)^T @ x (N, IN); blocks of OUT rows, no reduction."""
    cdef Py_ssize_t OUT = grad_y.shape[1], IN = x.shape[1]
    with nogil:
        _row_blocks(True, False, OUT, IN, grad_y.shape[0], &grad_y[0, 0], OUT, &x[0, 0], IN,
                    &grad_w[0, 0], False, NULL, False, False, num_threads)


def column_sums(const real[:, ::1] a, real[::1] out):
    """out[j] = sum over rows of a[:, j], accumulated in double in row order."""
    cdef Py_ssize_t N = a.shape[0], M = a.shape[1], i, j
    cdef double[::1] acc_view = np.zeros(M)
    cdef double* acc = &acc_view[0]
    cdef const real* ap = &a[0, 0]
    with nogil:
        for i in range(N):
            for j in range(M):
                acc[j] += ap[i * M + j]
        for j in range(M):
            out[j] = <real>acc[j]


def relu_backward(const real[::1] grad_y, const real[::1] y, real[::1] grad_x, int num_threads):
    """grad_x = grad_y where y > 0, else 0 (flat arrays)."""
    cdef Py_ssize_t i, n = grad_y.shape[0]
    # Raw pointers: with Python's -fno-strict-aliasing, memoryview indexing inside the OpenMP
    # region reloads the view's data pointer on every element and blocks vectorisation (17x slower).
    cdef const real* dy = &grad_y[0]
    cdef const real* yp = &y[0]
    cdef real* dx = &grad_x[0]
    with nogil:
        for i in prange(n, num_threads=num_threads if n > 65536 else 1, schedule="static"):
            dx[i] = select(yp[i] > 0, dy[i], <real>0)


def softmax_xent_forward(const real[:, ::1] logits, const long long[::1] labels,
                         real[:, ::1] log_probs, real[::1] losses, int num_threads):
    """log_probs = (logits - max) - log(sum(exp(logits - max))) per row; losses = -log_probs[label]."""
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1], i, j
    cdef real m
    cdef double s, ls
    cdef const real* row
    cdef real* out
    cdef const real* zp = &logits[0, 0]
    cdef real* lp = &log_probs[0, 0]
    cdef const long long* lab = &labels[0]
    cdef real* loss = &losses[0]
    with nogil:
        for i in prange(N, num_threads=num_threads if N * K > 65536 else 1, schedule="static"):
            row = zp + i * K
            out = lp + i * K
            m = row[0]
            for j in range(1, K):
                if row[j] > m or row[j] != row[j]:
                    m = row[j]
            s = 0
            for j in range(K):
                s = s + exp(<double>(row[j] - m))
            # (row - m) - log(s), never row - (m + log(s)): beside a large shared offset m,
            # m + log(s) rounds log(s) away (logits [1e8, 1e8] gave log-probs [0, 0]).
            ls = log(s)
            for j in range(K):
                out[j] = <real>(<double>(row[j] - m) - ls)
            loss[i] = -out[lab[i]]


def softmax_xent_backward(const real[:, ::1] log_probs, const long long[::1] labels,
                          real[:, ::1] grad_logits, double scale, int num_threads):
    """grad_logits = (softmax - onehot(labels)) * scale."""
    cdef Py_ssize_t N = log_probs.shape[0], K = log_probs.shape[1], i, j
    cdef const real* lp = &log_probs[0, 0]
    cdef real* g = &grad_logits[0, 0]
    cdef const long long* lab = &labels[0]
    with nogil:
        for i in prange(N, num_threads=num_threads if N * K > 65536 else 1, schedule="static"):
            for j in range(K):
                g[i * K + j] = <real>(exp(<double>lp[i * K + j]) * scale)
            g[i * K + lab[i]] -= <real>scale
