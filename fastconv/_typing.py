"""Types of the public API's arguments (for annotations; fastconv checks values at run time)."""

from typing import Any, Optional, Tuple, Union

import numpy as np

# A NumPy, CuPy or Dask array: results have the inputs' array type.
Array = Any
# A NumPy dtype or anything np.dtype() takes.
DTypeLike = Any
# An int or an (h, w) pair.
IntPair = Union[int, Tuple[int, int]]
# An int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same".
Padding = Union[int, str, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]
# A source of random numbers: None (fresh OS entropy), an int seed or a numpy.random.Generator.
RNGLike = Optional[Union[int, np.random.Generator]]
