#!/usr/bin/env python
"""Derive and check the Winograd F(4x4, 3x3) matrices that src/winograd_f43.h hard-codes.

    python tools/winograd_f43.py            # matrices, identity checks, float32 error per point set

Toom-Cook construction with the point at infinity (Lavin & Gray 2016; wincnn): for finite points
a_0..a_4 and infinity,
    A^T[i][j] = a_j^i,               A^T[:, inf] = e_{m-1}      (m = 4 outputs)
    G[j][k]   = a_j^k / prod_{l != j} (a_j - a_l),   G[inf, :] = e_{r-1}   (r = 3 taps)
and B^T is the one matrix with  sum_j A^T[i][j] G[j][k] B^T[j][l] = [l == i + k]  for all i, k, l
(the 1-D correlation identity y = A^T ((G g) * (B^T d))), solved here by least squares and
checked to round-off. The 2-D transform nests it: Y = A^T [(G g G^T) * (B^T d B)] A.

The float32 experiment simulates the kernel's arithmetic (every stage rounded to float32) against
a float64 direct convolution for several channel counts, to justify the choice of points.
"""

import numpy as np

M_OUT, R_TAPS = 4, 3
N_PTS = M_OUT + R_TAPS - 1
S2 = np.sqrt(2.0)

POINT_SETS = {
    "0, +-1, +-2 (textbook)": [0.0, 1.0, -1.0, 2.0, -2.0],
    "0, +-sqrt2, +-sqrt2/2 (ncnn; used)": [0.0, S2, -S2, S2 / 2, -S2 / 2],
    "0, +-7/10, +-3/2": [0.0, 0.7, -0.7, 1.5, -1.5],
}

# What src/winograd_f43.h computes (FW_BT6, FW_G3, FW_AT6), written out as matrices.
BT_CODE = np.array(
    [
        [1, 0, -2.5, 0, 1, 0],
        [0, -S2 / 2, -0.5, S2, 1, 0],
        [0, S2 / 2, -0.5, -S2, 1, 0],
        [0, -S2, -2, S2 / 2, 1, 0],
        [0, S2, -2, -S2 / 2, 1, 0],
        [0, 1, 0, -2.5, 0, 1],
    ]
)
G_CODE = np.array(
    [
        [1, 0, 0],
        [1 / 6, S2 / 6, 1 / 3],
        [1 / 6, -S2 / 6, 1 / 3],
        [-2 / 3, -S2 / 3, -1 / 3],
        [-2 / 3, S2 / 3, -1 / 3],
        [0, 0, 1],
    ]
)
AT_CODE = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, S2, -S2, S2 / 2, -S2 / 2, 0],
        [0, 2, 2, 0.5, 0.5, 0],
        [0, 2 * S2, -2 * S2, S2 / 4, -S2 / 4, 1],
    ]
)


def derive(points):
    """(A^T, G, B^T) in float64 for F(4, 3) with `points` and infinity."""
    AT = np.zeros((M_OUT, N_PTS))
    G = np.zeros((N_PTS, R_TAPS))
    for j, a in enumerate(points):
        f = np.prod([a - b for i, b in enumerate(points) if i != j])
        AT[:, j] = [a**i for i in range(M_OUT)]
        G[j] = [a**k / f for k in range(R_TAPS)]
    AT[M_OUT - 1, N_PTS - 1] = 1
    G[N_PTS - 1, R_TAPS - 1] = 1
    # P[(i, k), j] = A^T[i, j] G[j, k]; column l of B^T solves P b = [l == i + k].
    P = np.einsum("ij,jk->ikj", AT, G).reshape(M_OUT * R_TAPS, N_PTS)
    E = np.zeros((M_OUT * R_TAPS, N_PTS))
    for i in range(M_OUT):
        for k in range(R_TAPS):
            E[i * R_TAPS + k, i + k] = 1
    BT, *_ = np.linalg.lstsq(P, E, rcond=None)
    residual = np.abs(P @ BT - E).max()
    return AT, G, BT, residual


def identity_error(AT, G, BT):
    """max |1-D Winograd - direct correlation| over the basis: exactness of the matrices."""
    err = 0.0
    for k in range(R_TAPS):
        for l in range(N_PTS):
            g = np.eye(R_TAPS)[k]
            d = np.eye(N_PTS)[l]
            y = AT @ ((G @ g) * (BT @ d))
            ref = np.array([sum(g[t] * d[i + t] for t in range(R_TAPS)) for i in range(M_OUT)])
            err = max(err, np.abs(y - ref).max())
    return err


def winograd_f32(x, w, AT, G, BT):
    """F(4x4, 3x3) of x (C, 4a + 2, 4b + 2) with w (F, C, 3, 3), every stage in float32."""
    f32 = np.float32
    AT, G, BT = AT.astype(f32), G.astype(f32), BT.astype(f32)
    C, H, W = x.shape
    th, tw = (H - 2) // 4, (W - 2) // 4
    U = np.einsum("pk,fckl,ql->pqfc", G, w.astype(f32), G).astype(f32)
    idx_h = 4 * np.arange(th)[:, None] + np.arange(6)[None]
    idx_w = 4 * np.arange(tw)[:, None] + np.arange(6)[None]
    d = x.astype(f32)[:, idx_h[:, :, None, None], idx_w[None, None, :, :]]  # C, th, 6, tw, 6
    V = np.einsum("pk,cakbl,ql->pqcab", BT, d, BT).astype(f32)
    Mt = np.einsum("pqfc,pqcab->pqfab", U, V).astype(f32)
    Y = np.einsum("ip,pqfab,jq->faibj", AT, Mt, AT).astype(f32)
    return Y.reshape(w.shape[0], 4 * th, 4 * tw)


def direct_f64(x, w):
    C, H, W = x.shape
    out = np.zeros((w.shape[0], H - 2, W - 2))
    for kh in range(3):
        for kw in range(3):
            out += np.einsum("fc,chw->fhw", w[:, :, kh, kw], x[:, kh : kh + H - 2, kw : kw + W - 2])
    return out


def main():
    np.set_printoptions(precision=6, suppress=True, linewidth=120)
    rng = np.random.default_rng(0)
    for name, points in POINT_SETS.items():
        AT, G, BT, residual = derive(points)
        print(
            f"points {name}: least-squares residual {residual:.1e}, "
            f"1-D identity error {identity_error(AT, G, BT):.1e}"
        )
        errs = []
        for C in (64, 128, 256, 512):
            x = rng.standard_normal((C, 18, 18)).astype(np.float32)
            w = (rng.standard_normal((16, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
            ref = direct_f64(x.astype(np.float64), w.astype(np.float64))
            got = winograd_f32(x, w, AT, G, BT)
            errs.append(np.abs(got - ref).max() / np.abs(ref).max())
        print(
            "  float32 relative error, C = 64, 128, 256, 512: "
            + ", ".join(f"{e:.1e}" for e in errs)
        )
    AT, G, BT, _ = derive(POINT_SETS["0, +-sqrt2, +-sqrt2/2 (ncnn; used)"])
    print("B^T =\n", BT, "\nG =\n", G, "\nA^T =\n", AT)
    for name, code, derived in (("B^T", BT_CODE, BT), ("G", G_CODE, G), ("A^T", AT_CODE, AT)):
        diff = np.abs(code - derived).max()
        print(f"{name} in src/winograd_f43.h vs derived: max difference {diff:.1e}")
        assert diff < 1e-12, name
    assert identity_error(AT_CODE, G_CODE, BT_CODE) < 1e-12
    print("the header's matrices satisfy the identity")


if __name__ == "__main__":
    main()
