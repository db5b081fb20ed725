"""The backends. Two interfaces, each a test checks every implementation of:

- the kernel interface, OPS: fastconv._backend.cpu.ops (the compiled kernels) and
  fastconv._backend.gpu.ops (CuPy RawModule kernels) export these functions with identical
  signatures; they write into preallocated outputs (docs/INTERNALS.md);
- the array interface, ARRAY_OPS: what the public functions call, through the dispatcher
  (fastconv._dispatch), on validated arguments; each returns its results. Eager (eager.py) runs
  it on NumPy or CuPy arrays over one kernel backend; Dask (dask/) runs it lazily over blocks,
  each block on Eager. The three are peers: the same methods with the same signatures.
"""

# The kernel interface: both kernel backend modules export exactly these.
OPS = (
    "conv2d_plan",
    "conv2d_algorithms",
    "conv2d_fuses",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv2d_grad_weight_bias",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "relu_backward",
    "linear_forward",
    "linear_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "adam_update",
    "sgd_update",
)

# The array interface: Eager and Dask have exactly these methods.
ARRAY_OPS = (
    "conv2d",
    "conv2d_backward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv2d_and_grad_weight",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "linear",
    "linear_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "cross_entropy",
    "cross_entropy_backward",
)
