"""Data augmentation for the trainer: random translations of each training image.

A digit moved by a pixel or two is the same digit, and LeNet-5's pooling only absorbs part of
such shifts, so training on shifted copies is the classic cure for its overfitting on MNIST
(LeCun et al. 1998 trained on distorted copies; Simard et al. 2003). The draw comes from the
trainer's own generator, whose state goes into checkpoints: a resumed run shifts exactly as the
uninterrupted one would.
"""

from typing import Any, Optional

import numpy as np

from ..parameter import array_module

__all__ = ["AUGMENTATIONS", "RandomShift", "make_augmentation"]

AUGMENTATIONS = ("none", "shift")
MAX_SHIFT = 2  # pixels each way: MNIST's 28x28 digits sit in a 20x20 box, padded to 32x32


class RandomShift:
    """Move each image of a batch by (dy, dx), each drawn uniformly from [-max_shift, max_shift];
    pixels moved in from outside the image are 0 (MNIST's background after scaling to [0, 1]).

    Parameters
    ----------
    rng : numpy.random.Generator, the source of the shifts (also for CuPy batches).
    max_shift : int >= 0, default 2.
    """

    def __init__(self, rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
        self.rng = rng
        self.max_shift = max_shift
        self._padded: Any = None  # (B, C, H + 2s, W + 2s), zero border, reused
        self._windows: Any = None  # its (H, W) windows: (B, C, 2s+1, 2s+1, H, W) view

    def __call__(self, x: Any, out: Any) -> Any:
        """Write shifted copies of x (B, C, H, W) into out (same shape and dtype); returns out."""
        B, C, H, W = x.shape
        s = self.max_shift
        shifts = self.rng.integers(-s, s + 1, size=(2, B))
        xp = array_module(x)
        padded = self._padded
        if (
            padded is None
            or padded.shape[0] < B
            or padded.shape[1:] != (C, H + 2 * s, W + 2 * s)
            or padded.dtype != x.dtype
            or array_module(padded) is not xp
        ):  # sized for the largest batch: a short last batch uses the first rows
            padded = self._padded = xp.zeros((B, C, H + 2 * s, W + 2 * s), dtype=x.dtype)
            self._windows = xp.lib.stride_tricks.sliding_window_view(padded, (H, W), axis=(2, 3))
        padded[:B, :, s : s + H, s : s + W] = x
        # out[b, :, i, j] = x[b, :, i - dy, j - dx] = padded[b, :, i - dy + s, j - dx + s]
        rows, cols = (xp.asarray(s - d) for d in shifts)
        out[...] = self._windows[xp.arange(B), :, rows, cols]
        return out


def make_augmentation(name: str, rng: np.random.Generator) -> Optional[RandomShift]:
    """The augmentation called ``name`` (one of AUGMENTATIONS) drawing from ``rng``; None for
    'none'."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {name!r}")
    return RandomShift(rng) if name == "shift" else None
