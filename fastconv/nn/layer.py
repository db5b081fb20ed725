"""The base class of every layer: parameters, children, modes, state and devices.

A layer computes ``forward(x)`` and, given the gradient of the loss with respect to its output,
``backward(grad)`` returns the gradient with respect to its input and *accumulates* the gradients
of its parameters into ``Parameter.grad`` (``+=``, as PyTorch does; an optimiser's ``zero_grad()``
resets them). What backward needs is cached by the last forward in training mode.

Parameters and sub-layers assigned as attributes (``self.weight = Parameter(...)``,
``self.c1 = Conv2D(...)``) are registered automatically, in assignment order, which gives the
dotted names of :meth:`Layer.named_parameters` (``"c1.weight"``).
"""

import os
from typing import (
    Any,
    ClassVar,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
)

import numpy as np

from .. import _compat
from .. import functional as F
from .._typing import Array, DTypeLike, RNGLike
from ..parameter import Parameter, array_module
from .init import as_generator, initial_weights
from .weights import host_array, load_weights, save_weights

__all__ = ["Layer", "IncompatibleKeys", "accumulate_grad"]

_DEVICES = ("cpu", "gpu")
_MAX_BUFFERS = 16  # kept results per layer (by call signature) before the oldest are dropped

_T = TypeVar("_T")
_L = TypeVar("_L", bound="Layer")


class IncompatibleKeys(NamedTuple):
    """What :meth:`Layer.load_state_dict` returns (PyTorch's fields): the parameters the state
    lacked and the names in it that fit no parameter (both empty after a strict load)."""

    missing_keys: List[str]
    unexpected_keys: List[str]


def accumulate_grad(param: Parameter, grad: Array) -> None:
    """``param.grad += grad`` (PyTorch's accumulation); a None grad ("none yet") is replaced."""
    if param.grad is None:
        param.grad = grad
    else:
        param.grad += grad


class Layer:
    """Base class of the layers in :mod:`fastconv.nn`.

    Subclasses call ``super().__init__()`` first, then assign their parameters and sub-layers as
    attributes, and implement :meth:`forward` and :meth:`backward`.

    Attributes
    ----------
    training : bool
        True after construction and :meth:`train`; False after :meth:`eval`.
    """

    # Parameter attribute -> its state_dict name where the two differ (PyTorch's name
    # has a dot: SeparableConv2D's `depthwise_weight` is torch's `depthwise.weight`).
    _STATE_NAMES: ClassVar[Mapping[str, str]] = {}

    # The attribute where forward keeps what backward needs (None: the layer caches nothing);
    # __init__ and _clear_cache set it to None.
    _CACHE: ClassVar[Optional[str]] = None

    # Whether this layer's forward and backward can write into kept buffers (their public ops
    # take out=): reuse_buffers() turns reuse on for these layers only.
    _REUSES_BUFFERS: ClassVar[bool] = False

    # True only inside _backward_masked: fused_backward then skips the fused ReLU's derivative.
    _relu_masked: bool = False

    # set in __init__ (through object.__setattr__, which type checkers miss)
    training: bool
    _parameters: Dict[str, Parameter]
    _children: Dict[str, "Layer"]
    _buffers: Optional[Dict[Any, Any]]  # the kept results by call signature; None: reuse off

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffers", None)
        if self._CACHE is not None:
            object.__setattr__(self, self._CACHE, None)

    # -- registration -----------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        try:
            parameters = self._parameters
            children = self._children
        except AttributeError:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                f"before assigning attributes"
            ) from None
        if isinstance(value, Parameter):
            children.pop(name, None)
            parameters[name] = value
        elif isinstance(value, Layer):
            parameters.pop(name, None)
            children[name] = value
            for sub_name, p in value.named_parameters().items():
                p.name = f"{name}.{sub_name}"
        elif name in parameters or name in children:
            # e.g. `self.bias = None`: the slot stays an attribute but holds no parameter.
            parameters.pop(name, None)
            children.pop(name, None)
        object.__setattr__(self, name, value)

    def _new_parameter(self, name: str, data: Array) -> Parameter:
        """Register ``data`` as the parameter ``name`` (its Parameter.name is ``name``)."""
        setattr(self, name, Parameter(data, name=name))
        return getattr(self, name)

    # -- weighted layers (convolutions, linear): a weight and an optional bias ---------------
    def _new_weight_and_bias(
        self: "_Weighted",
        shape: Tuple[int, ...],
        fan_in: int,
        fan_out: int,
        init: str,
        rng: RNGLike,
        dtype: DTypeLike,
        bias: bool,
        outputs: int,
    ) -> None:
        """`weight` of `shape` drawn by the `init` scheme from `rng`; a zero `bias` of
        `outputs` when `bias`, else None."""
        weights = initial_weights(init, shape, fan_in, fan_out, as_generator(rng), dtype)
        self._new_parameter("weight", weights)
        if bias:
            self._new_parameter("bias", np.zeros(outputs, dtype=dtype))
        else:
            # (setattr: `self.bias = None` here would make mypy give every Layer a `bias: None`)
            setattr(self, "bias", None)

    def _needs(self: "_Weighted", input_grad: bool) -> Tuple[str, ...]:
        """The gradients a weighted layer's backward computes: the input's (if `input_grad`),
        the weight's and the bias's when there is one."""
        needs: Tuple[str, ...] = ("input", "weight") if input_grad else ("weight",)
        return needs + (("bias",) if self.bias is not None else ())

    def _accumulate(self: "_Weighted", grad_weight: Array, grad_bias: Optional[Array]) -> None:
        """Add the parameter gradients of one backward to weight.grad and bias.grad."""
        accumulate_grad(self.weight, grad_weight)
        if self.bias is not None:
            accumulate_grad(self.bias, grad_bias)

    # -- the computation ----------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        """Compute the layer's output from ``x``; in training mode, cache what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """Gradient of the loss with respect to the last forward's input.

        Parameters
        ----------
        grad : ndarray, the shape of the last forward's output
            Gradient of the loss with respect to that output.
        input_grad : bool, default True
            False skips computing the gradient with respect to the input (e.g. for the first
            layer, whose input is data) and returns None; parameter gradients are still
            accumulated.

        Returns
        -------
        ndarray of the last forward's input shape, or None when ``input_grad`` is False.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- a ReLU's derivative taken after max pooling (Sequential.backward) ------------------
    # A max pooling's backward sends each output's gradient to one input cell, whose value is
    # that output's; so for an input y = relu(z), the gradient wrt z (the scattered gradient
    # where y > 0, else 0) is the scatter of (grad where pooled output > 0, else 0): bitwise the
    # same, with the ReLU's mask taken on the pooled output, a quarter of the size at 2x2.
    def _relu_output(self) -> bool:
        """Whether this layer's output is a ReLU's (its fused activation, or a ReLU layer)."""
        return False

    def _backward_masked(self, grad: Array, *, input_grad: bool = True) -> Optional[Array]:
        """backward() for a `grad` that the ReLU's derivative has already masked (only called
        where _relu_output() is True). Masking twice changes nothing (grad where y > 0, else
        0): by default this is backward()."""
        return self.backward(grad, input_grad=input_grad)

    def _grad_before_relu(self, grad: Array) -> Optional[Array]:
        """For a layer whose input is a ReLU's output: the gradient wrt that ReLU's input, if
        this layer computes it more cheaply than backward() then the ReLU's derivative (max
        pooling: see above), else None."""
        return None

    def _cached(self, cache: Optional[_T]) -> _T:
        """``cache`` if a training-mode forward has filled it, else a clear RuntimeError."""
        if cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: run forward in training "
                f"mode (layer.train()) first; eval-mode forwards keep nothing for backward"
            )
        return cache

    # -- structure --------------------------------------------------------------------
    def named_children(self) -> Dict[str, "Layer"]:
        """dict name -> direct sub-layer, in registration order."""
        return dict(self._children)

    def children(self) -> List["Layer"]:
        """list of the direct sub-layers."""
        return list(self._children.values())

    def modules(self) -> List["Layer"]:
        """list of this layer and all its descendants, depth first (self first)."""
        out = [self]
        for child in self._children.values():
            out.extend(child.modules())
        return out

    def named_parameters(self) -> Dict[str, Parameter]:
        """dict dotted name -> Parameter ("weight", "c1.weight", "0.bias"), parents' first."""
        out = dict(self._parameters)
        for child_name, child in self._children.items():
            for name, p in child.named_parameters().items():
                out[f"{child_name}.{name}"] = p
        return out

    def parameters(self) -> List[Parameter]:
        """list of every Parameter of this layer and its descendants (what an optimiser takes)."""
        return list(self.named_parameters().values())

    # -- modes ------------------------------------------------------------------------
    def train(self: _L, mode: bool = True) -> _L:
        """Set training mode (``mode=True``) or evaluation mode, recursively; returns self."""
        for layer in self.modules():
            object.__setattr__(layer, "training", bool(mode))
            layer._clear_cache()
        return self

    def eval(self: _L) -> _L:
        """Evaluation mode: Dropout is the identity, forward caches nothing; returns self."""
        return self.train(False)

    def _clear_cache(self) -> None:
        """Drop what the last forward cached (the _CACHE attribute; layers with more override
        this)."""
        if self._CACHE is not None:
            object.__setattr__(self, self._CACHE, None)

    # -- buffer reuse -----------------------------------------------------------------
    def reuse_buffers(self: _L, mode: bool = True) -> _L:
        """Write results into buffers kept per input shape (``mode=True``) or allocate each one
        afresh (False, the default), recursively; returns self.

        With reuse on, a layer that supports it (Conv2D, Linear, MaxPool2D,
        SoftmaxCrossEntropy; the others allocate as before) keeps what its forward and backward
        return after a first call with given input shapes, dtypes and array types, and writes
        the next call's results with the same ones into those arrays (the public functions'
        ``out=``) instead of allocating: a training step at a fixed batch size then allocates
        no array after the first (a new shape, such as a shorter last batch, gets buffers of its
        own). The parameter gradients go the same way: a backward that finds ``p.grad`` None
        (after ``zero_grad(set_to_none=True)``) sets it to the layer's kept array.

        **An array returned with reuse on is overwritten by the layer's next call on inputs of
        the same shape** (outputs by the next forward, gradients, ``p.grad`` included, by the
        next backward): copy what you keep across calls (``y.copy()``). This is why reuse is
        opt-in, as PyTorch's in-place ops and preallocated ``out=`` are: the results are bitwise
        those of the allocating path. :func:`fastconv.lenet.fit` trains with reuse on (and
        restores the previous mode); turning reuse off drops the buffers.
        """
        for layer in self.modules():
            if not (mode and type(layer)._REUSES_BUFFERS):
                object.__setattr__(layer, "_buffers", None)
            elif layer._buffers is None:
                object.__setattr__(layer, "_buffers", {})
        return self

    @property
    def reusing_buffers(self) -> bool:
        """bool: whether :meth:`reuse_buffers` is on for this layer (False for a layer that
        cannot reuse buffers, whatever the mode)."""
        return self._buffers is not None

    def _buffer_key(self, name: Any, *arrays: Optional[Array]) -> Any:
        """The key of result `name` (hashable: a str, or a tuple with what else decides the
        result's shape) of a call on `arrays` (their types, shapes and dtypes; None kept) among
        the kept buffers, or None: reuse off, or a Dask array (lazy: no out=)."""
        if self._buffers is None:
            return None
        key: List[Any] = [name]
        for a in arrays:
            if a is None:
                key.append(None)
            elif type(a) is np.ndarray or not _compat.is_dask_array(a):
                key.append((type(a), a.shape, a.dtype))
            else:
                return None
        return tuple(key)

    def _kept(self, key: Any) -> Any:
        """The buffer kept under `key` (from _buffer_key), or None: allocate, then _keep."""
        return None if key is None or self._buffers is None else self._buffers.get(key)

    def _keep(self, key: Any, result: _T) -> _T:
        """Keep `result` (an array or a tuple of arrays and Nones) under `key`; returns it."""
        buffers = self._buffers
        if key is not None and buffers is not None:
            if len(buffers) >= _MAX_BUFFERS and key not in buffers:
                buffers.clear()  # many shapes seen: keep the newest ones only
            buffers[key] = result
        return result

    # -- state ------------------------------------------------------------------------
    def _state_parameters(self) -> Dict[str, Parameter]:
        """dict state-dict name -> Parameter: :meth:`named_parameters` with each layer's
        _STATE_NAMES applied (PyTorch's names where a layer's attributes differ from them)."""
        out = {self._STATE_NAMES.get(name, name): p for name, p in self._parameters.items()}
        for child_name, child in self._children.items():
            for name, p in child._state_parameters().items():
                out[f"{child_name}.{name}"] = p
        return out

    def _legacy_state_names(self) -> Dict[str, str]:
        """dict state-dict name -> the name fastconv 0.x saved it under (its attribute path), for
        the parameters whose _STATE_NAMES renamed them: files saved before stay loadable."""
        out = {new: old for old, new in self._STATE_NAMES.items() if old in self._parameters}
        for child_name, child in self._children.items():
            for new, old in child._legacy_state_names().items():
                out[f"{child_name}.{new}"] = f"{child_name}.{old}"
        return out

    def state_dict(self) -> Dict[str, Any]:
        """dict dotted name -> NumPy copy of the parameter's data (CuPy data is copied to host).

        The names and layouts are PyTorch's: ``"0.weight"``, ``"c1.bias"``, nested Sequentials
        as ``"1.0.weight"``; convolution weights (F, C // groups, KH, KW), transposed ones
        (C_in, C_out // groups, KH, KW), linear (OUT, IN). A :class:`SeparableConv2D` gives
        ``depthwise.weight``, ``pointwise.weight`` and ``pointwise.bias``, a torch module with
        a depthwise and a pointwise Conv2d. So ``torch_model.load_state_dict({k:
        torch.from_numpy(v) for k, v in state.items()})`` loads it into a torch model of the
        same structure. (fastconv has no buffers: no BatchNorm running statistics.)
        """
        return {
            name: _compat.to_numpy(p.data, copy=True)
            for name, p in self._state_parameters().items()
        }

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state`` (name -> array) into the parameters, in place.

        The data arrays are written into (not rebound), so an optimiser built on this layer
        keeps working; the arrays of ``state`` are only read (copied in). Values are cast to each
        parameter's dtype and device.

        Parameters
        ----------
        state : mapping name -> array
            :meth:`state_dict`, :func:`fastconv.nn.load_weights` of a file, or a PyTorch
            ``model.state_dict()`` (tensors are accepted as they are: torch is not imported,
            tensors are read through their ``detach().cpu().numpy()``). NumPy or CuPy arrays.
        strict : bool, default True
            True: a missing or unexpected name raises ValueError. False: those are skipped and
            returned. A shape mismatch always raises.

        Returns
        -------
        IncompatibleKeys(missing_keys, unexpected_keys) : a named tuple of two lists of names,
            both empty when strict succeeds (PyTorch's return value).

        Raises
        ------
        ValueError naming the parameter (and both shapes, for a shape mismatch); TypeError
        naming the entry for a value that is not a numeric array. Nothing is changed when
        either is raised.
        """
        params = self._state_parameters()
        legacy = {
            new: old
            for new, old in self._legacy_state_names().items()
            if new not in state and old in state
        }
        if legacy:  # a file written under the attribute names: read it under those
            state = {next((n for n, o in legacy.items() if o == k), k): v for k, v in state.items()}
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing parameters {missing}")
            if unexpected:
                parts.append(f"unexpected parameters {unexpected}")
            raise ValueError(f"state does not fit this {type(self).__name__}: " + "; ".join(parts))
        updates = []
        for name, p in params.items():
            if name not in state:
                continue
            value = host_array(state[name], name)
            if tuple(value.shape) != tuple(p.data.shape):
                raise ValueError(
                    f"parameter {name!r}: the state has shape {tuple(value.shape)}, "
                    f"this {type(self).__name__} has {tuple(p.data.shape)}"
                )
            # Cast here, before any parameter is written: a failure changes nothing.
            updates.append((p, value.astype(p.data.dtype, copy=False)))
        for p, value in updates:
            p.data[...] = array_module(p.data).asarray(value)
        return IncompatibleKeys(missing, unexpected)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write :meth:`state_dict` to ``path`` atomically: :func:`fastconv.nn.save_weights`.

        The name is used as given (no suffix appended); one ending in ".safetensors" gives that
        format (with the safetensors package), any other an uncompressed .npz. Read it back
        with :meth:`load`.
        """
        save_weights(path, self)

    def load(
        self: _L, path: Union[str, "os.PathLike[str]"], strict: bool = True, prefix: str = ""
    ) -> _L:
        """Load parameters from an .npz or .safetensors file (see :func:`fastconv.nn.load_weights`
        and :meth:`load_state_dict`).

        ``prefix`` selects the entries whose names start with it (stripped before matching):
        ``prefix="model."`` reads the model out of a :mod:`fastconv.lenet` checkpoint.
        Returns self.

        Raises
        ------
        fastconv.nn.weights.WeightsFileError (a ValueError, one line naming the file) for a file
        that is not a weights file (never unpickled); ValueError / TypeError as
        :meth:`load_state_dict`; OSError when the file cannot be read.
        """
        state = {
            name[len(prefix) :]: value
            for name, value in load_weights(path).items()
            if name.startswith(prefix)
        }
        self.load_state_dict(state, strict=strict)
        return self

    # -- devices and dtypes ------------------------------------------------------------
    def to(self: _L, device: str) -> _L:
        """Move every parameter (data and grad) to ``device``: 'cpu' (NumPy) or 'gpu' (CuPy).

        The Parameter objects stay the same but their arrays are replaced: build the optimiser
        after moving the model. Cached forward results are dropped. Returns self.
        """
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
        if device == "gpu":
            cupy = _compat.require_cupy()
            move = cupy.asarray
        else:
            move = lambda a: a.get() if _compat.is_cupy_array(a) else a
        for p in self.parameters():
            p.data = move(p.data)
            p.grad = None if p.grad is None else move(p.grad)
        for layer in self.modules():
            layer._clear_cache()
            layer._drop_buffers()
        return self

    def astype(self: _L, dtype: DTypeLike) -> _L:
        """Cast every parameter (data and grad) to the floating ``dtype``; returns self.

        As with :meth:`to`, the arrays are replaced: build the optimiser afterwards.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None if p.grad is None else p.grad.astype(dtype)
        for layer in self.modules():
            layer._clear_cache()
            layer._drop_buffers()
        return self

    def _drop_buffers(self) -> None:
        """Forget the kept buffers (reuse stays as it was): their device or dtype is stale."""
        if self._buffers is not None:
            self._buffers.clear()

    def __repr__(self) -> str:
        extra = self.extra_repr()
        if not self._children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}({extra}"]
        for name, child in self._children.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        """The arguments shown by repr (layers override it)."""
        return ""


def fused_forward(layer: "_Fused", op: Any, x: Array, **geometry: Any) -> Array:
    """y = op(x, weight, bias, activation=, **geometry) for a layer whose public op fuses the
    bias and ReLU (Conv2D, Conv1D, Linear); in training mode (x, y) kept for backward: the op's
    backward needs the input, the fused ReLU's its output. With reuse on (Layer.reuse_buffers;
    the op then takes out=), y is written into the layer's kept buffer."""
    weight = layer.weight.data
    bias = None if layer.bias is None else layer.bias.data
    key = layer._buffer_key("y", x, weight, bias)
    if key is None:
        y = op(x, weight, bias, activation=layer.activation, **geometry)
    else:
        out = layer._kept(key)
        y = op(x, weight, bias, activation=layer.activation, out=out, **geometry)
        if out is None:
            layer._keep(key, y)
    layer._cache = (x, y) if layer.training else None
    return y


def fused_backward(
    layer: "_Fused", op_backward: Any, grad: Array, input_grad: bool, **geometry: Any
) -> Optional[Array]:
    """The input's gradient (None if not `input_grad`) of a fused_forward layer by its op's
    backward, through the fused ReLU first (unless the layer's _backward_masked runs it: the
    gradient is masked already); accumulates weight.grad and bias.grad. With reuse
    on, every gradient is written into a kept buffer (see Layer.reuse_buffers)."""
    x, y = layer._cached(layer._cache)
    weight = layer.weight.data
    needs = layer._needs(input_grad)
    relu = layer.activation == "relu" and not layer._relu_masked
    key = layer._buffer_key("grads" if input_grad else "parameter grads", grad, x, weight)
    if key is None:
        if relu:
            grad = F.relu_backward(grad, y)
        grad_x, grad_weight, grad_bias = op_backward(grad, x, weight, needs=needs, **geometry)
        layer._accumulate(grad_weight, grad_bias)
        return grad_x
    kept = layer._kept(key)
    relu_out, grads_out = (None, None) if kept is None else kept
    if relu:
        grad = F.relu_backward(grad, y, out=relu_out)
    if grads_out is not None:
        # not into the array that a parameter's grad already is: it is added to
        grads_out = (
            grads_out[0],
            None if grads_out[1] is layer.weight.grad else grads_out[1],
            None if layer.bias is None or grads_out[2] is layer.bias.grad else grads_out[2],
        )
    grads = op_backward(grad, x, weight, needs=needs, out=grads_out, **geometry)
    new_relu = relu and relu_out is None  # (none kept yet, or only by a masked call)
    if new_relu or grads_out is None or any(a is not b for a, b in zip(grads_out, grads)):
        layer._keep(key, (grad if relu else relu_out, tuple(grads)))
    layer._accumulate(grads[1], grads[2])
    return grads[0]


class _Weighted(Protocol):
    """What Layer's weighted-layer helpers need of ``self`` (Conv2D, Conv1D, ConvTranspose2D,
    Linear declare these attributes; other layers have no ``weight``)."""

    weight: Parameter
    bias: Optional[Parameter]

    def _new_parameter(self, name: str, data: Array) -> Parameter: ...


class _Fused(_Weighted, Protocol):
    """What fused_forward / fused_backward need of a layer besides _Weighted's: the fused
    activation and the (input, output) cache (Conv2D, Conv1D, Linear)."""

    activation: Optional[str]
    training: bool
    _relu_masked: bool
    _cache: Optional[Tuple[Array, Array]]

    def _cached(self, cache: Optional[_T]) -> _T: ...

    def _needs(self, input_grad: bool) -> Tuple[str, ...]: ...

    def _accumulate(self, grad_weight: Array, grad_bias: Optional[Array]) -> None: ...

    def _buffer_key(self, name: Any, *arrays: Optional[Array]) -> Any: ...

    def _kept(self, key: Any) -> Any: ...

    def _keep(self, key: Any, result: _T) -> _T: ...
