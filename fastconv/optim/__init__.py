"""Optimisers (SGD, Adam) and a step learning-rate schedule, with PyTorch's semantics.

The optimisers work on any iterable of :class:`fastconv.parameter.Parameter`
(anything with ``.data`` and ``.grad`` arrays of one shape). Each :meth:`step`
reads ``p.grad`` and updates ``p.data`` **in place**; parameters whose ``grad``
is None are skipped (as in PyTorch). The update runs through the backend of the
parameter's array, so NumPy and CuPy parameters both work (float32 or float64,
C-contiguous); build the optimiser
after the model's arrays are on their final device and never rebind ``p.data``
(the per-parameter state arrays are allocated like it on the first step).

Per-step cost matters (a LeNet epoch calls ``step`` ~1000 times), so each step is
one backend call (``adam_update`` / ``sgd_update``) that updates every parameter in
one compiled pass over its elements (one kernel launch each on the GPU), with the
arithmetic of the formulas below in the parameter's dtype: no temporaries.

State
-----
``state_dict()`` returns a flat ``dict`` of NumPy arrays and Python scalars that
``np.savez`` can store as is (no pickling), and that ``load_state_dict`` accepts
back either as given or as loaded by ``np.load`` (0-d arrays). It holds the
optimiser's name, the hyper-parameters (``lr`` included), the step counts and the
per-parameter buffers under ``"param.<i>.<buffer>"``, plus ``"param.<i>.shape"``
so that a state saved for another model is refused with a ``ValueError`` naming
the parameter. Loading it into a fresh optimiser over the same parameters resumes
training bit for bit.
"""

from ._base import Optimizer, _check_nonnegative, _check_positive, _scalar  # noqa: F401
from .adam import Adam
from .lr_scheduler import StepLR
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "StepLR"]
