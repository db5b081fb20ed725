"""Launch plans of the GPU convolution GEMMs: tile shape, split-K, k tables and phase rows.

Pure NumPy (no CuPy): everything here is computed on the host once per problem shape and cached
by fastconv._backend.gpu.ops, which uploads the tables. The kernels (fastconv/_backend/gpu/cuda/conv_igemm.cu,
conv_wgrad.cu) read:

* ``geo``: one row of ``len(GEO)`` int64 per GEMM phase (fields named in conv_geo.cuh, in the
  order of ``GEO``);
* ``ktab``: per reduction index k an int32 quadruple (A offset, B offset, row shift, column
  shift), each phase padded to a multiple of ``BK`` with entries that read nothing (A offset
  -1, row shift -2**30), so the kernels never test k < K nor divide k into (c, kh, kw).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

BK = 8  # must match IGEMM_BK in igemm_tile.cuh
TILES = ((128, 128), (64, 128), (64, 64))  # (rows BM, columns BN); threads = BM*BN/64
# double: no 128x128 tile. Its 64 double accumulators per thread plus the loader's state need
# more than 255 registers in conv_wgrad (ptxas spilled 68 bytes; benchmarks/results/ptxas.log).
DOUBLE_TILES = TILES[1:]


def tiles(dtype):
    """The tile shapes compiled for a dtype (float32 or float64)."""
    return DOUBLE_TILES if np.dtype(dtype).itemsize == 8 else TILES


GEO = (
    "M COLS KPAD KTAB KSPLIT HPWP WP IN_N IN_G IN_H IN_W IS_H IS_W IO_H IO_W "
    "OUT_N OUT_G OUT_W OS_H OS_W OO_H OO_W A_MS A_G C_MS HPWP_MUL HPWP_SHIFT WP_MUL WP_SHIFT"
).split()
_G = {name: i for i, name in enumerate(GEO)}
MISS = (-1, 0, -(2**30), 0)  # a padding entry: no A element, B row shift far out of range
_INT31 = 2**31


# ------------------------------------------------------------------ the algorithm choice
# The GPU runs one kernel family per convolution, the same API as the CPU planner's: depthwise
# when each group has one input channel (a GEMM would reduce over KH*KW only), else implicit
# GEMM. (The tiles and split-K are chosen by gemm_plan / wgrad_plan below.)
PASSES = ("forward", "grad_input", "grad_weight")


def runnable(pass_, w_shape):
    """The algorithms that compute `pass_` of a convolution with weight of `w_shape`."""
    return ("depthwise",) if w_shape[1] == 1 else ("gemm",)


def choose(pass_, w_shape):
    """The "auto" algorithm."""
    return runnable(pass_, w_shape)[0]


def resolve(algorithm, pass_, w_shape):
    """`algorithm` ("auto" or a name) -> the algorithm that computes `pass_`; ValueError naming
    `algorithm` when it cannot."""
    if algorithm == "auto":
        return choose(pass_, w_shape)
    if algorithm not in runnable(pass_, w_shape):
        raise ValueError(
            f"algorithm {algorithm!r} cannot compute the {pass_} pass of this "
            f"convolution on the GPU; it runs {choose(pass_, w_shape)!r} (or 'auto')"
        )
    return algorithm


def fuses(fusion, algorithm, y_shape):
    """Whether the pair of passes `fusion` runs as one call: grad-weight and grad-bias from one
    GEMM launch under the "auto" choice; no forward + grad-weight kernel on the GPU."""
    return fusion == "grad_weight_bias" and algorithm == "auto" and int(np.prod(y_shape)) > 0


def cdiv(a, b):
    return -(-a // b)


def threads(tile):
    return tile[0] * tile[1] // 64


@functools.lru_cache(maxsize=512)
def fast_div(d):
    """(mul, shift) such that n // d == (n * mul >> 32) >> shift for 0 <= n < 2**31 (FastDiv
    in common.cuh; d == 1 is special-cased there and gets (0, 0))."""
    if not 1 <= d < _INT31:
        raise ValueError(f"divisor {d} out of range")
    if d == 1:
        return 0, 0
    log2 = (d - 1).bit_length()  # ceil(log2(d))
    p = 31 + log2
    return cdiv(1 << p, d), p - 32


def choose_tile(rows, cols, z, sm_count, shapes=TILES):
    """The biggest tile that the problem fills, stepping down while it gives fewer blocks than
    SMs (a 128x128 tile on 6 filters computes 95% padding; on a 200-column problem it leaves
    most SMs idle)."""
    candidates = [t for t in shapes if (t[0] <= 64 or rows > 64) and (t[1] <= 64 or cols > 64)]
    for tile in candidates:
        if cdiv(rows, tile[0]) * cdiv(cols, tile[1]) * z >= sm_count:
            return tile
    return candidates[-1]


def choose_splits(blocks, slices, sm_count, min_slices, cap):
    """Split-K when the grid has fewer than 2 blocks per SM: enough splits to reach that, each
    at least ``min_slices`` BK-slices long, at most ``cap``."""
    if blocks >= 2 * sm_count:
        return 1
    return max(1, min(cdiv(2 * sm_count, blocks), slices // max(min_slices, 1), cap))


# Grad-weight's split of the N*OH*OW reduction aims at this many warps per SM over the grid
# (blocks * threads per block / 32 / SMs). Counting blocks (choose_splits' 2 per SM) left a
# 64x64-tile grad-weight (2 warps per block) at ~4 warps per SM: ResNet's 3x3 64->64 at 56x56,
# batch 32, on 132 SMs ran 270 blocks of 64 threads. 16 warps per SM (half an SM's 32-48
# resident warps at these kernels' 160-210 registers: about 1.5-2 waves) hides the gather's
# latency; not measured on a GPU yet.
WGRAD_WARPS_PER_SM = 16


def choose_wgrad_tile(rows, cols, shapes=TILES):
    """Grad-weight's tile: the split over N*OH*OW gives it its parallelism, so the tile is not
    stepped down to fill the SMs (choose_tile) but chosen for work per block: the biggest
    eligible tile unless it computes more than 1/8 more padded products than the least padded.
    A bigger tile gathers fewer operand elements per product (64x128: (64+128)/(64*128) per
    k, against 2*64/(64*64) for 64x64) and its kernels use fewer registers per warp."""
    candidates = [t for t in shapes if (t[0] <= 64 or rows > 64) and (t[1] <= 64 or cols > 64)]

    def padded(t):
        return cdiv(rows, t[0]) * t[0] * cdiv(cols, t[1]) * t[1]

    least = min(padded(t) for t in candidates)
    return next(t for t in candidates if 8 * padded(t) <= 9 * least)


def choose_wgrad_splits(blocks, warps_per_block, slices, sm_count, min_slices, cap):
    """Splits of grad-weight's reduction: enough for WGRAD_WARPS_PER_SM warps per SM over the
    grid, each split at least ``min_slices`` BK-slices long, at most ``cap``. The splits are
    summed in a fixed order (wgrad_reduce): the count changes the rounding, never the
    determinism."""
    want = cdiv(WGRAD_WARPS_PER_SM * sm_count, max(blocks * warps_per_block, 1))
    return max(1, min(want, slices // max(min_slices, 1), cap))


def warps_per_sm(grid, tile, sm_count):
    """Warps launched per SM by a grid of blocks of ``tile``'s threads (all of grid's axes)."""
    return grid[0] * grid[1] * grid[2] * threads(tile) / 32 / sm_count


class GemmPlan(NamedTuple):
    tile: tuple  # (BM, BN)
    grid: tuple
    splits: int
    geo: np.ndarray  # (phases, len(GEO)) int64
    ktab: np.ndarray  # (entries, 4) int32


def _check_int32(what, value):
    if value >= _INT31:
        raise ValueError(f"fastconv GPU kernels need {what} < 2**31, got {value}")


def _row(**fields):
    row = np.zeros(len(GEO), np.int64)
    for name, v in fields.items():
        row[_G[name]] = v
    return row


def _pad(entries):
    """int32 table of the entries, padded to a multiple of BK with MISS."""
    n = cdiv(len(entries), BK) * BK
    table = np.array(list(entries) + [MISS] * (n - len(entries)), np.int64).reshape(-1, 4)
    return table.astype(np.int32)


def forward_phases(x_shape, w_shape, y_shape, stride, padding, dilation, groups):
    """[(geo row fields, table entries)] of the forward GEMM (one phase)."""
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    OH, OW = y_shape[2:]
    Fg, K = F // groups, Cg * KH * KW
    _check_int32("C/groups*H*W", Cg * H * W)
    dh, dw = dilation
    entries = [
        (c * KH * KW + kh * KW + kw, c * H * W + kh * dh * W + kw * dw, kh * dh, kw * dw)
        for c in range(Cg)
        for kh in range(KH)
        for kw in range(KW)
    ]
    fields = dict(
        M=Fg, COLS=N * OH * OW, HPWP=OH * OW, WP=OW, IN_N=C * H * W, IN_G=Cg * H * W,
        IN_H=H, IN_W=W, IS_H=stride[0], IS_W=stride[1], IO_H=-padding[0], IO_W=-padding[1],
        OUT_N=F * OH * OW, OUT_G=Fg * OH * OW, OUT_W=OW, OS_H=1, OS_W=1, OO_H=0, OO_W=0,
        A_MS=K, A_G=Fg * K, C_MS=OH * OW,
    )  # fmt: skip
    return [(fields, entries)]


def grad_input_phases(x_shape, w_shape, y_shape, stride, padding, dilation, groups):
    """[(geo row fields, table entries)] per stride phase with input pixels (see conv_igemm.cu).

    Phase (a, b) holds the pixels with (ih + pt) % sh == a, (iw + pl) % sw == b; its taps are
    those with kh*dh % sh == a (kw*dw % sw == b), each at output offset
    ohoff = (ih_first + pt - kh*dh) / sh (exact). A phase no tap reaches keeps K = 0 (its pixels
    get zeros)."""
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    OH, OW = y_shape[2:]
    Fg = F // groups
    sh, sw = stride
    pt, pl = padding
    dh, dw = dilation
    _check_int32("F/groups*OH*OW", Fg * OH * OW)
    phases = []
    for a in range(sh):
        ih_first = (a - pt) % sh
        hp = max(0, cdiv(H - ih_first, sh))
        rows = [(kh, (ih_first + pt - kh * dh) // sh) for kh in range(KH) if (kh * dh) % sh == a]
        for b in range(sw):
            iw_first = (b - pl) % sw
            wp = max(0, cdiv(W - iw_first, sw))
            if hp == 0 or wp == 0:
                continue
            cols = [
                (kw, (iw_first + pl - kw * dw) // sw) for kw in range(KW) if (kw * dw) % sw == b
            ]
            entries = [
                (f * Cg * KH * KW + kh * KW + kw, f * OH * OW + oo_h * OW + oo_w, oo_h, oo_w)
                for f in range(Fg)
                for kh, oo_h in rows
                for kw, oo_w in cols
            ]
            fields = dict(
                M=Cg, COLS=N * hp * wp, HPWP=hp * wp, WP=wp, IN_N=F * OH * OW, IN_G=Fg * OH * OW,
                IN_H=OH, IN_W=OW, IS_H=1, IS_W=1, IO_H=0, IO_W=0,
                OUT_N=C * H * W, OUT_G=Cg * H * W, OUT_W=W, OS_H=sh, OS_W=sw,
                OO_H=ih_first, OO_W=iw_first, A_MS=KH * KW, A_G=Fg * Cg * KH * KW, C_MS=H * W,
            )  # fmt: skip
            phases.append((fields, entries))
    return phases


def gemm_plan(phases, groups, sm_count, max_grid, dtype=np.float32):
    """Tile, grid, split-K and the uploaded tables of a conv_igemm launch over ``phases``."""
    rows = phases[0][0]["M"]
    cols = max(f["COLS"] for f, _ in phases)
    _check_int32("GEMM columns", cols)
    z = groups * len(phases)
    tile = choose_tile(rows, cols, z, sm_count, tiles(dtype))
    blocks = cdiv(rows, tile[0]) * cdiv(cols, tile[1]) * z
    slices = max(cdiv(len(e), BK) for _, e in phases)
    splits = choose_splits(blocks, slices, sm_count, min_slices=4, cap=32)
    tables, geo, offset = [], [], 0
    for fields, entries in phases:
        table = _pad(entries)
        kpad = len(table)
        ksplit = cdiv(cdiv(kpad, splits), BK) * BK
        # the kernels decode a column p < COLS < 2**31 by multiply-high: p // HPWP, then // WP
        hm, hs = fast_div(max(fields["HPWP"], 1))
        wm, ws = fast_div(max(fields["WP"], 1))
        divs = dict(HPWP_MUL=hm, HPWP_SHIFT=hs, WP_MUL=wm, WP_SHIFT=ws)
        geo.append(_row(**fields, **divs, KPAD=kpad, KTAB=offset, KSPLIT=ksplit))
        tables.append(table)
        offset += kpad
    ktab = np.concatenate(tables) if offset else np.array([MISS], np.int32)
    _check_int32("table entries", offset + 1)
    grid = (cdiv(cols, tile[1]), cdiv(rows, tile[0]), min(z * splits, max_grid[2]))
    if grid[0] > max_grid[0] or grid[1] > max_grid[1]:
        raise ValueError(f"convolution too large for one launch (grid {grid})")
    return GemmPlan(tile, grid, splits, np.stack(geo), np.ascontiguousarray(ktab))


def wgrad_plan(
    x_shape, w_shape, y_shape, stride, padding, dilation, groups, sm_count, max_grid, dtype
):
    """(tile, grid, splits, positions per split, k table) of a conv_wgrad launch."""
    N = x_shape[0]
    F, Cg, KH, KW = w_shape
    OH, OW = y_shape[2:]
    P = N * OH * OW
    _check_int32("N*OH*OW", P)
    rows, cols = F // groups, Cg * KH * KW
    tile = choose_wgrad_tile(rows, cols, tiles(dtype))
    blocks = cdiv(rows, tile[0]) * cdiv(cols, tile[1]) * groups
    warps = threads(tile) // 32
    splits = choose_wgrad_splits(blocks, warps, cdiv(P, BK), sm_count, min_slices=16, cap=256)
    per = cdiv(cdiv(P, splits), BK) * BK
    splits = cdiv(P, per)
    ((_, entries),) = forward_phases(x_shape, w_shape, y_shape, stride, padding, dilation, groups)
    grid = (cdiv(cols, tile[1]), cdiv(rows, tile[0]), min(groups * splits, max_grid[2]))
    if grid[0] > max_grid[0] or grid[1] > max_grid[1]:
        raise ValueError(f"convolution too large for one launch (grid {grid})")
    return tile, grid, splits, per, _pad(entries)
