# Row-major GEMM over SciPy's BLAS, callable without the GIL.
from scipy.linalg.cython_blas cimport sgemm, dgemm
from _types cimport real


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K, real alpha,
                      const real* A, int lda, const real* B, int ldb, real beta,
                      real* C, int ldc) noexcept nogil:
    """C (M x N) = alpha * op(A) @ op(B) + beta * C, all row-major.

    BLAS is column-major: the row-major product C = A B is the column-major C^T = B^T A^T,
    so the operands swap places and nothing is transposed in memory.
    """
    cdef char transa = b'T' if trans_a else b'N'
    cdef char transb = b'T' if trans_b else b'N'
    if real is float:
        sgemm(&transb, &transa, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&transb, &transa, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
