"""The host side of the GPU GEMM plans (fastconv/_backend/gpu_plans.py), against references
computed independently here: no GPU or CuPy needed."""

import itertools

import numpy as np
import pytest

from fastconv._backend.gpu import plans as gp


def test_fast_div_matches_integer_division():
    rng = np.random.default_rng(0)
    divisors = [1, 2, 3, 5, 7, 10, 14, 25, 49, 100, 196, 3136, 12544, 50176, 2**20 + 7, 2**31 - 1]
    numbers = np.concatenate(
        [np.arange(0, 5000), rng.integers(0, 2**31, 20000), [2**31 - 1, 2**31 - 2, 2**30]]
    ).astype(np.uint64)
    for d in divisors:
        mul, shift = gp.fast_div(d)
        if d == 1:
            got = numbers
        else:
            got = ((numbers * np.uint64(mul)) >> np.uint64(32)) >> np.uint64(shift)
        np.testing.assert_array_equal(got, numbers // np.uint64(d), err_msg=f"d={d}")
        assert 0 <= mul < 2**32 and 0 <= shift < 32
    for bad in (0, 2**31):
        with pytest.raises(ValueError):
            gp.fast_div(bad)


def _geometry(H, W, KH, KW, stride, pad, dil):
    OH = (H + 2 * pad[0] - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * pad[1] - dil[1] * (KW - 1) - 1) // stride[1] + 1
    return OH, OW


@pytest.mark.parametrize(
    "H,W,KH,KW,stride,pad,dil",
    [
        (11, 10, 3, 3, (2, 2), (1, 1), (1, 1)),
        (9, 9, 3, 3, (2, 2), (2, 2), (2, 2)),  # phases that no tap reaches
        (20, 17, 7, 5, (3, 1), (3, 2), (1, 1)),
        (8, 8, 1, 1, (2, 2), (0, 0), (1, 1)),  # pixels no output reads
        (6, 6, 3, 3, (1, 1), (1, 1), (1, 1)),
    ],
)
def test_grad_input_phases_cover_every_pixel_and_tap_once(H, W, KH, KW, stride, pad, dil):
    """Each input pixel lies in exactly one phase, and the phase's table lists exactly the
    (filter, tap) pairs whose output position is integral: enumerated by brute force."""
    N, C, F = 2, 3, 2
    OH, OW = _geometry(H, W, KH, KW, stride, pad, dil)
    phases = gp.grad_input_phases((N, C, H, W), (F, C, KH, KW), (N, F, OH, OW), stride, pad, dil, 1)
    owner = {}
    for index, (f, entries) in enumerate(phases):
        for i, j in itertools.product(range(f["HPWP"] // f["WP"]), range(f["WP"])):
            ih, iw = i * f["OS_H"] + f["OO_H"], j * f["OS_W"] + f["OO_W"]
            assert (ih, iw) not in owner and 0 <= ih < H and 0 <= iw < W
            owner[(ih, iw)] = index
            # the taps the table holds for this pixel, as (filter, kh, kw, oh, ow)
            got = set()
            for a_off, b_off, ohoff, owoff in entries:
                fil, tap = divmod(a_off, C * KH * KW)
                kh, kw = divmod(tap, KW)
                assert b_off == fil * OH * OW + ohoff * OW + owoff
                got.add((fil, kh, kw, i + ohoff, j + owoff))
            want = set()
            for fil, kh, kw in itertools.product(range(F), range(KH), range(KW)):
                th, tw = ih + pad[0] - kh * dil[0], iw + pad[1] - kw * dil[1]
                if th % stride[0] == 0 and tw % stride[1] == 0:
                    want.add((fil, kh, kw, th // stride[0], tw // stride[1]))
            assert got == want, (ih, iw)
    assert len(owner) == H * W


def test_forward_table_offsets():
    ((fields, entries),) = gp.forward_phases(
        (1, 2, 5, 6), (3, 2, 2, 3), (1, 3, 4, 4), (1, 1), (0, 0), (1, 2), 1
    )
    for k, (a_off, b_off, dh, dw) in enumerate(entries):
        c, rest = divmod(k, 2 * 3)
        kh, kw = divmod(rest, 3)
        assert (a_off, b_off, dh, dw) == (k, c * 30 + kh * 6 + kw * 2, kh, kw * 2)
    assert fields["M"] == 3 and fields["COLS"] == 16 and fields["IO_H"] == 0


def test_gemm_plan_pads_tables_and_splits_small_problems():
    phases = gp.forward_phases(
        (2, 8, 16, 16), (8, 8, 3, 3), (2, 8, 16, 16), (1, 1), (1, 1), (1, 1), 1
    )
    plan = gp.gemm_plan(phases, 1, sm_count=8, max_grid=(2**31 - 1, 65535, 65535))
    # 4 blocks of 64x128 < 8 SMs: 64x64 (8 blocks), still < 2 per SM: split-K
    assert plan.tile == (64, 64) and plan.splits == 2 and plan.grid[2] == plan.splits
    assert len(plan.ktab) == 72
    odd = gp.forward_phases((1, 3, 4, 4), (2, 3, 3, 3), (1, 2, 2, 2), (1, 1), (0, 0), (1, 1), 1)
    table = gp.gemm_plan(odd, 1, 1, (2**31 - 1, 65535, 65535)).ktab  # K = 27: padded to 32
    assert len(table) == 32 and all(tuple(e) == gp.MISS for e in table[27:])
    row = dict(zip(gp.GEO, plan.geo[0]))
    assert row["KSPLIT"] % gp.BK == 0 and row["KSPLIT"] * plan.splits >= row["KPAD"]
    big = gp.gemm_plan(phases, 1, sm_count=1, max_grid=(2**31 - 1, 65535, 65535))
    assert big.splits == 1


def _fast(n, mul, shift, d):
    if d == 1:
        return n
    return ((n * np.uint64(mul)) >> np.uint64(32)) >> np.uint64(shift)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 1)])
def test_geo_fast_div_fields_decode_every_column(stride):
    """gemm_column (conv_geo.cuh) splits column p into (n, i, j) with the FastDiv fields of its
    geo row: the same integers as p // HPWP and r // WP, for every column of every phase."""
    x, w = (3, 4, 13, 11), (5, 4, 3, 3)
    OH, OW = _geometry(13, 11, 3, 3, stride, (1, 1), (1, 1))
    y = (3, 5, OH, OW)
    geom = (stride, (1, 1), (1, 1), 1)
    phases = gp.forward_phases(x, w, y, *geom) + gp.grad_input_phases(x, w, y, *geom)
    plan = gp.gemm_plan(phases, 1, sm_count=4, max_grid=(2**31 - 1, 65535, 65535))
    for geo in plan.geo:
        row = dict(zip(gp.GEO, (int(v) for v in geo)))
        p = np.arange(row["COLS"], dtype=np.uint64)
        n = _fast(p, row["HPWP_MUL"], row["HPWP_SHIFT"], row["HPWP"])
        r = p - n * np.uint64(row["HPWP"])
        i = _fast(r, row["WP_MUL"], row["WP_SHIFT"], row["WP"])
        np.testing.assert_array_equal(n, p // np.uint64(row["HPWP"]))
        np.testing.assert_array_equal(i, r // np.uint64(row["WP"]))


def test_grad_weight_fills_h100_with_warps():
    """ResNet's 3x3 64->64 on 56x56 at batch 32, on an H100 (132 SMs): grad-weight used to get
    ~4 warps per SM (choose_tile's 64x64 tile, 9 blocks of 2 warps, choose_splits' 2 blocks per
    SM: 30 splits); now at least WGRAD_WARPS_PER_SM, in 64x128 tiles."""
    sms, grid_max = 132, (2**31 - 1, 65535, 65535)
    x, w, y = (32, 64, 56, 56), (64, 64, 3, 3), (32, 64, 56, 56)
    P, rows, cols = 32 * 56 * 56, 64, 64 * 9
    # before: the forward's policy (tile stepped down to fill SMs, splits counted in blocks)
    old_tile = gp.choose_tile(rows, cols, 1, sms)
    old_blocks = gp.cdiv(rows, old_tile[0]) * gp.cdiv(cols, old_tile[1])
    old_splits = gp.choose_splits(old_blocks, gp.cdiv(P, gp.BK), sms, min_slices=16, cap=256)
    before = gp.warps_per_sm((old_blocks, 1, old_splits), old_tile, sms)
    assert old_tile == (64, 64) and old_splits == 30 and 4 <= before < 4.2
    for dtype in (np.float32, np.float64):
        tile, grid, splits, per, _ = gp.wgrad_plan(
            x, w, y, (1, 1), (1, 1), (1, 1), 1, sms, grid_max, dtype
        )
        after = gp.warps_per_sm(grid, tile, sms)
        assert tile == (64, 128) and after >= gp.WGRAD_WARPS_PER_SM == 16, (tile, grid, after)
        assert grid[2] == splits and (splits - 1) * per < P <= splits * per and per % gp.BK == 0
        assert per >= 16 * gp.BK  # each split still at least min_slices long


def test_grad_weight_splits_bounded():
    """Big layers need no split; tiny reductions are not cut below min_slices; the cap holds."""
    grid_max = (2**31 - 1, 65535, 65535)
    big = gp.wgrad_plan(
        (32, 512, 7, 7), (512, 512, 3, 3), (32, 512, 7, 7), (1, 1), (1, 1), (1, 1), 1, 132,
        grid_max, np.float32,
    )  # fmt: skip
    assert big[0] == (128, 128) and gp.warps_per_sm(big[1], big[0], 132) >= 16
    assert gp.choose_wgrad_splits(1, 2, 40, 132, 16, 256) == 2  # 40 slices: 2 splits of >= 16
    assert gp.choose_wgrad_splits(1, 2, 10**6, 132, 16, 256) == 256
    assert gp.choose_wgrad_splits(10**4, 8, 10**6, 132, 16, 256) == 1
    # the wgrad tile: the least padded unless a bigger one pads at most 1/8 more
    assert gp.choose_wgrad_tile(64, 576) == (64, 128)  # 640 vs 576 columns
    assert gp.choose_wgrad_tile(64, 27) == (64, 64)
    assert gp.choose_wgrad_tile(96, 576) == (128, 128)  # 96 rows: both pad to 128
    assert gp.choose_wgrad_tile(192, 576) == (64, 128)  # 128x128 pads 192 rows to 256: no
    assert gp.choose_wgrad_tile(256, 4608) == (128, 128)


def test_tile_choice():
    assert gp.choose_tile(6, 200704, 1, 132) == (64, 128)  # few filters: no 128-row tile
    assert gp.choose_tile(512, 392, 1, 132) == (64, 64)  # 7x7 maps: step down to fill SMs
    assert gp.choose_tile(256, 25088, 1, 132) == (128, 128)
    assert gp.tiles(np.float64) == gp.TILES[1:] and gp.tiles(np.float32) == gp.TILES


def test_size_limits_raise_value_error():
    with pytest.raises(ValueError, match="C/groups\\*H\\*W"):
        gp.forward_phases(
            (1, 2**16, 2**8, 2**8), (1, 2**16, 1, 1), (1, 1, 2**8, 2**8), (1, 1), (0, 0), (1, 1), 1
        )
