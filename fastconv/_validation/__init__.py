"""Validation: everything the public functions check before they compute, in one place.

values.py     scalar arguments: ints, (h, w) pairs, real numbers, fractions, shapes, and the names
              accepted for gradients (`needs`), fused activations, convolution algorithms and
              loss reductions
geometry.py   convolution and pooling geometry: padding forms, output sizes (the one place that
              computes them), the validated ConvGeometry / PoolGeometry, adaptive pooling's
              output size and windows, and the kernels' 32-bit BLAS size limit
arrays.py     arrays: backend dispatch (NumPy or CuPy), the dtype rule, contiguity, `out=` checks

Import from this package (`from ._validation import conv_geometry`), or take the arrays module
whole (`from ._validation import arrays`).
"""

from . import arrays
from .geometry import (
    BLAS_INT_MAX,
    ConvGeometry,
    PoolGeometry,
    adaptive_output_size,
    adaptive_windows,
    conv_geometry,
    conv_output_shape,
    conv_padding,
    output_size,
    pool_geometry,
    pool_output_shape,
    pool_output_size,
    shapes_geometry,
    too_big_for_blas,
)
from .values import (
    CONV_ALGORITHMS,
    FUSED_ACTIVATIONS,
    NEEDS,
    REDUCTIONS,
    as_activation,
    as_algorithm,
    as_fraction,
    as_int,
    as_needs,
    as_pair,
    as_real,
    as_reduction,
    as_shape,
    as_single,
)

__all__ = [
    "BLAS_INT_MAX",
    "CONV_ALGORITHMS",
    "FUSED_ACTIVATIONS",
    "NEEDS",
    "REDUCTIONS",
    "ConvGeometry",
    "PoolGeometry",
    "adaptive_output_size",
    "adaptive_windows",
    "arrays",
    "as_activation",
    "as_algorithm",
    "as_fraction",
    "as_int",
    "as_needs",
    "as_pair",
    "as_real",
    "as_reduction",
    "as_shape",
    "as_single",
    "conv_geometry",
    "conv_output_shape",
    "shapes_geometry",
    "conv_padding",
    "output_size",
    "pool_geometry",
    "pool_output_shape",
    "pool_output_size",
    "too_big_for_blas",
]
