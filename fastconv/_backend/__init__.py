"""The backends: cpu (the compiled kernels, and the planner that picks among them) and gpu (CuPy
RawModule kernels), with the same ops under the same names and signatures (docs/INTERNALS.md);
threads and workspace serve the CPU kernels. The public functions pick one by the array type.
"""

# The backend interface: both backend modules export exactly these, with identical signatures.
OPS = (
    "conv2d_plan",
    "conv2d_algorithms",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv2d_grad_weight_bias",
    "max_pool2d_forward",
    "max_pool2d_backward",
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
