"""The public functional namespace: every op of fastconv, NumPy, CuPy or Dask arrays in and out.

One module per kind of op: conv (conv2d and its gradients, plans), conv1d, conv_transpose, pool
(max and average), adaptive_pool (global and adaptive average, adaptive max), activation (ReLU,
sigmoid, tanh), dense (linear, softmax cross-entropy), loss (cross-entropy with torch's options).
Each op validates its arguments, asks the dispatcher (fastconv._dispatch) for the backend, and
calls it; the composite ones (conv1d, conv_transpose, adaptive_pool) build on the others. The conv
and pool ops take one sample without its batch axis too (_batch.py: unbatched), as torch does.
"""

from .._validation import conv_output_shape, pool_output_shape
from .activation import relu, relu_backward, sigmoid, sigmoid_backward, tanh, tanh_backward
from .adaptive_pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
)
from .conv import (
    ConvPlan,
    conv2d,
    conv2d_algorithms,
    conv2d_backward,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv2d_plan,
)
from .conv1d import (
    conv1d,
    conv1d_backward,
    conv1d_grad_input,
    conv1d_grad_weight,
    conv1d_output_shape,
)
from .conv_transpose import conv_transpose2d, conv_transpose2d_backward, conv_transpose_output_shape
from .dense import (
    linear,
    linear_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from .loss import cross_entropy, cross_entropy_backward
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv_output_shape",
    "conv2d_plan",
    "conv2d_algorithms",
    "ConvPlan",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "pool_output_shape",
    "relu",
    "relu_backward",
    "linear",
    "linear_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose_output_shape",
    "conv1d",
    "conv1d_backward",
    "conv1d_grad_input",
    "conv1d_grad_weight",
    "conv1d_output_shape",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
]
