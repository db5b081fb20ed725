"""fastconv.optim and fastconv.parameter: hand-computed steps, torch parity, state, errors."""

import io
import math

import numpy as np
import pytest

from fastconv._kernels import optim as _rules
from fastconv.optim import SGD, Adam, StepLR
from fastconv.parameter import Parameter, array_module

GRADS = [1.0, 2.0, -1.0]  # gradient of the scalar parameter at steps 1, 2, 3


def run_scalar(make_opt, grads=GRADS, p0=1.0):
    """Step a one-element float64 parameter through fixed gradients; return p after each step."""
    p = Parameter(np.array([p0]))
    opt = make_opt([p])
    out = []
    for g in grads:
        p.grad[...] = g
        opt.step()
        out.append(float(p.data[0]))
    return out


# ----------------------------------------------------------------- hand-computed values


def test_sgd_plain():
    # p -= 0.1 * g: 1 - 0.1, 0.9 - 0.2, 0.7 + 0.1
    np.testing.assert_allclose(run_scalar(lambda ps: SGD(ps, lr=0.1)), [0.9, 0.7, 0.8], rtol=1e-15)


def test_sgd_momentum():
    # b1 = 1, p1 = 0.9; b2 = 0.9 + 2 = 2.9, p2 = 0.61; b3 = 2.61 - 1 = 1.61, p3 = 0.449
    got = run_scalar(lambda ps: SGD(ps, lr=0.1, momentum=0.9))
    np.testing.assert_allclose(got, [0.9, 0.61, 0.449], rtol=1e-14)


def test_sgd_nesterov():
    # step uses g + 0.9 * b: 1.9, 2 + 2.61 = 4.61, -1 + 1.449 = 0.449
    got = run_scalar(lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True))
    np.testing.assert_allclose(got, [0.81, 0.349, 0.3041], rtol=1e-14)


def test_sgd_weight_decay():
    # g' = g + 0.5 p: 1.5 -> 0.85; 2.425 -> 0.6075; -0.69625 -> 0.677125
    got = run_scalar(lambda ps: SGD(ps, lr=0.1, weight_decay=0.5))
    np.testing.assert_allclose(got, [0.85, 0.6075, 0.677125], rtol=1e-14)


def test_sgd_momentum_weight_decay():
    # g' 1.5, b 1.5 -> 0.85; g' 2.425, b 3.775 -> 0.4725; g' -0.76375, b 2.63375 -> 0.209125
    got = run_scalar(lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.5))
    np.testing.assert_allclose(got, [0.85, 0.4725, 0.209125], rtol=1e-14)


def test_adam():
    # m_hat / (sqrt(v_hat) + eps) with bias correction; values from the textbook formula.
    got = run_scalar(lambda ps: Adam(ps, lr=0.1))
    np.testing.assert_allclose(
        got, [0.900000001, 0.8034817990281663, 0.7614728689681868], rtol=1e-14
    )
    got = run_scalar(lambda ps: Adam(ps, lr=0.1), grads=[0.5, -0.25, 0.125], p0=-0.5)
    np.testing.assert_allclose(
        got, [-0.599999998, -0.6266337012921537, -0.6606766150833459], rtol=1e-14
    )


def test_adam_weight_decay():
    got = run_scalar(lambda ps: Adam(ps, lr=0.1, weight_decay=0.5))
    np.testing.assert_allclose(
        got, [0.9000000006666666, 0.8015529213562756, 0.740110741463179], rtol=1e-14
    )


def test_adam_first_step_is_lr_times_sign():
    # With bias correction the first Adam step is lr * g / (|g| + eps) elementwise.
    p = Parameter(np.array([[1.0, 2.0], [3.0, 4.0]]))
    p.grad[...] = [[3.0, -0.5], [1e-3, -7.0]]
    Adam([p], lr=0.01, eps=0.0).step()
    np.testing.assert_allclose(p.data, [[0.99, 2.01], [2.99, 4.01]], rtol=1e-14)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-2),
    ],
    ids=["sgd", "adam"],
)
def test_float32_stays_float32_and_grad_untouched(make):
    rng = np.random.default_rng(0)
    p = Parameter(rng.standard_normal((3, 4)).astype(np.float32))
    g = rng.standard_normal((3, 4)).astype(np.float32)
    p.grad[...] = g
    opt = make([p])
    data_id = id(p.data)
    for _ in range(3):
        opt.step()
    assert p.data.dtype == np.float32 and id(p.data) == data_id  # updated in place
    np.testing.assert_array_equal(p.grad, g)  # the gradient is read, never modified
    for key, value in opt.state_dict().items():
        if key.startswith("param.0.") and isinstance(value, np.ndarray) and value.ndim == 2:
            assert value.dtype == np.float32, key


def test_grad_none_is_skipped():
    a = Parameter(np.ones(2))
    b = Parameter(np.ones(2))
    a.grad[...] = 1.0
    b.grad = None
    opt = Adam([a, b], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    assert not np.array_equal(a.data, [1.0, 1.0])
    sd = opt.state_dict()
    assert int(sd["param.0.step"]) == 1 and int(sd["param.1.step"]) == 0
    assert "param.1.exp_avg" not in sd


def test_lr_is_settable():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=0.1)
    p.grad[...] = 1.0
    opt.step()
    opt.lr = 0.5
    opt.step()
    assert p.data[0] == pytest.approx(1.0 - 0.1 - 0.5)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = 0.0


def test_zero_grad():
    ps = [Parameter(np.ones((2, 3)), name="w"), Parameter(np.ones(3), name="b")]
    for p in ps:
        p.grad += 5.0
    grad_buf = ps[0].grad
    ps[1].grad = None
    SGD(ps, lr=0.1).zero_grad()
    assert ps[0].grad is grad_buf  # cleared in place, not reallocated
    assert not ps[0].grad.any()
    assert ps[1].grad.shape == (3,) and not ps[1].grad.any()


def test_grad_shape_mismatch():
    p = Parameter(np.ones((2, 3)), name="fc.weight")
    p.grad = np.ones((3, 2))
    with pytest.raises(ValueError, match="fc.weight"):
        SGD([p], lr=0.1).step()


# ---------------------------------------------------------------------------- torch parity


def _torch_pair(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = [(4, 3, 2, 2), (4,), (5, 7)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]
    return init, grads


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.1},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    ],
)
def test_sgd_matches_torch(kwargs, dtype, rtol):
    torch = pytest.importorskip("torch")
    init, grads = _torch_pair(dtype=dtype)
    ps = [Parameter(a.copy()) for a in init]
    ts = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = SGD(ps, **kwargs)
    topt = torch.optim.SGD(ts, **kwargs)
    for step_grads in grads:
        for p, t, g in zip(ps, ts, step_grads):
            p.grad[...] = g
            t.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        for p, t in zip(ps, ts):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
        {"lr": 0.01, "weight_decay": 0.1},
    ],
)
def test_adam_matches_torch(kwargs, dtype, rtol):
    torch = pytest.importorskip("torch")
    init, grads = _torch_pair(seed=1, dtype=dtype)
    ps = [Parameter(a.copy()) for a in init]
    ts = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = Adam(ps, **kwargs)
    topt = torch.optim.Adam(ts, foreach=False, **kwargs)
    for step_grads in grads:
        for p, t, g in zip(ps, ts, step_grads):
            p.grad[...] = g
            t.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        for p, t in zip(ps, ts):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol)


def test_steplr_matches_torch():
    torch = pytest.importorskip("torch")
    t = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(10):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-15)
        topt.step()
        tsched.step()
        sched.step()


# -------------------------------------------------------------------------------- StepLR


def test_steplr_schedule():
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    assert sched.last_epoch == 0 and sched.get_lr() == 0.1
    lrs = []
    for _ in range(8):
        lrs.append(opt.lr)
        sched.step()
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)
    assert sched.last_epoch == 8
    assert sched.get_lr() == pytest.approx(0.1 * 0.5**2)


def test_steplr_state_round_trip():
    opt = SGD([Parameter(np.zeros(1))], lr=0.2)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        sched.step()
    buf = io.BytesIO()
    np.savez(buf, **sched.state_dict())
    buf.seek(0)
    state = dict(np.load(buf))

    opt2 = SGD([Parameter(np.zeros(1))], lr=0.2)
    sched2 = StepLR(opt2, step_size=5, gamma=0.9)
    sched2.load_state_dict(state)
    assert (sched2.step_size, sched2.gamma, sched2.base_lr, sched2.last_epoch) == (2, 0.1, 0.2, 3)
    sched.step()
    sched2.step()
    assert opt2.lr == opt.lr == pytest.approx(0.2 * 0.1**2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"step_size": 0}, "step_size"),
        ({"step_size": 2.5}, "step_size"),
        ({"step_size": 2, "gamma": 0.0}, "gamma"),
        ({"step_size": 2, "gamma": -1.0}, "gamma"),
    ],
)
def test_steplr_bad_arguments(kwargs, match):
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        StepLR(opt, **kwargs)


# --------------------------------------------------------------------------------- state


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return [
        Parameter(rng.standard_normal((6, 1, 5, 5)).astype(np.float32), name="conv1.weight"),
        Parameter(rng.standard_normal(6).astype(np.float32), name="conv1.bias"),
        Parameter(rng.standard_normal((10, 12)), name="fc.weight"),
    ]


def _grads(step, params):
    rng = np.random.default_rng(1000 + step)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)


def _through_npz(state):
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf) as z:  # allow_pickle=False: the state must not need pickling
        return {k: z[k] for k in z.files}


OPTIMISERS = {
    "sgd": lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd-plain": lambda ps: SGD(ps, lr=0.05),
    "adam": lambda ps: Adam(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_state_dict_resume_is_exact(name):
    make = OPTIMISERS[name]
    straight = _model()
    opt = make(straight)
    for s in range(6):
        _grads(s, straight)
        opt.step()

    first = _model()
    opt1 = make(first)
    for s in range(3):
        _grads(s, first)
        opt1.step()
    state = _through_npz(opt1.state_dict())
    saved = [p.data.copy() for p in first]

    resumed = [Parameter(a.copy(), name=p.name) for a, p in zip(saved, first)]
    # Built with different hyper-parameters: load_state_dict must restore them all.
    opt2 = SGD(resumed, lr=1.0) if name.startswith("sgd") else Adam(resumed, lr=1.0)
    opt2.load_state_dict(state)
    assert opt2.lr == opt1.lr and opt2.step_count == 3
    for s in range(3, 6):
        _grads(s, resumed)
        opt2.step()
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.dtype == b.data.dtype


def test_state_dict_is_a_copy():
    ps = _model()
    opt = SGD(ps, lr=0.1, momentum=0.9)
    _grads(0, ps)
    opt.step()
    sd = opt.state_dict()
    before = sd["param.0.momentum_buffer"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["param.0.momentum_buffer"], before)


def test_state_dict_contents():
    ps = _model()
    opt = Adam(ps, lr=3e-3)
    _grads(0, ps)
    opt.step()
    sd = opt.state_dict()
    assert str(sd["optimizer"]) == "Adam" and sd["num_params"] == 3 and sd["step_count"] == 1
    assert sd["lr"] == 3e-3 and sd["beta1"] == 0.9 and sd["beta2"] == 0.999
    assert sd["param.0.shape"].tolist() == [6, 1, 5, 5]
    assert sd["param.2.exp_avg_sq"].shape == (10, 12)


def test_load_state_dict_wrong_count():
    ps = _model()
    opt = SGD(ps, lr=0.1, momentum=0.9)
    _grads(0, ps)
    opt.step()
    other = SGD(ps[:2], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="holds 3 parameters but this optimizer has 2"):
        other.load_state_dict(opt.state_dict())


def test_load_state_dict_wrong_shape_names_parameter():
    ps = _model()
    opt = Adam(ps)
    _grads(0, ps)
    opt.step()
    state = opt.state_dict()
    other_ps = _model()
    other_ps[1] = Parameter(np.zeros(7, np.float32), name="conv1.bias")
    other = Adam(other_ps, lr=0.5)
    with pytest.raises(ValueError, match=r"parameter 1 \('conv1.bias'\).*\(6,\).*\(7,\)"):
        other.load_state_dict(state)
    # A failed load changes nothing.
    assert other.lr == 0.5 and other.step_count == 0
    assert other.state_dict().get("param.0.exp_avg") is None


def test_load_state_dict_wrong_type():
    ps = _model()
    with pytest.raises(ValueError, match="SGD"):
        Adam(ps).load_state_dict(SGD(ps, lr=0.1).state_dict())


def test_load_state_dict_missing_key():
    ps = _model()
    state = SGD(ps, lr=0.1).state_dict()
    del state["momentum"]
    with pytest.raises(ValueError, match="momentum"):
        SGD(ps, lr=0.1).load_state_dict(state)


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"lr": 0.1, "momentum": -0.5}, "momentum"),
        ({"lr": 0.1, "nesterov": True}, "nesterov"),
        ({"lr": 0.1, "momentum": 0.0, "nesterov": True}, "nesterov"),
        ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
    ],
)
def test_sgd_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SGD([Parameter(np.zeros(2))], **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"betas": (1.0, 0.999)}, r"betas\[0\]"),
        ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
        ({"betas": (0.9,)}, "betas"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_adam_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Adam([Parameter(np.zeros(2))], **kwargs)


def test_bad_params():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        SGD(Parameter(np.zeros(3)), lr=0.1)
    for dtype in (np.int32, np.float16):  # the fused update kernels are float32/float64
        with pytest.raises(ValueError, match="float32 and float64"):
            SGD([Parameter(np.zeros(3, dtype))], lr=0.1)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps)])
def test_step_refuses_data_it_cannot_update_in_place(make):
    p = Parameter(np.zeros((4, 4), np.float32))
    opt = make([p])
    p.data = np.zeros((4, 8), np.float32)[:, ::2]  # rebound to a view: not C-contiguous
    p.grad = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step()


def test_step_takes_a_grad_of_another_dtype_or_layout():
    p, q = Parameter(np.ones(6, np.float32)), Parameter(np.ones(6, np.float32))
    p.grad = np.arange(6, dtype=np.float64)  # cast to float32 for the update
    q.grad = np.arange(12, dtype=np.float32)[::2]  # a strided view: copied once
    before = (p.grad.copy(), q.grad.copy())
    SGD([p, q], lr=0.5).step()
    np.testing.assert_array_equal(p.data, 1 - 0.5 * np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(q.data, 1 - 0.5 * np.arange(0, 12, 2, dtype=np.float32))
    np.testing.assert_array_equal(p.grad, before[0])  # grads are read, never modified
    np.testing.assert_array_equal(q.grad, before[1])


# ----------------------------------------------------------------------------- Parameter


def test_parameter_basics():
    p = Parameter(np.arange(6.0).reshape(2, 3), name="w")
    assert p.shape == (2, 3) and p.dtype == np.float64 and p.size == 6
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float64 and not p.grad.any()
    assert "w" in repr(p) and "(2, 3)" in repr(p)
    p.grad = None
    p.zero_grad()
    assert p.grad.shape == (2, 3) and not p.grad.any()
    assert array_module(p.data) is np


def test_parameter_from_list():
    p = Parameter([[1.0, 2.0]])
    assert isinstance(p.data, np.ndarray) and p.shape == (1, 2)


# ---------------------------------------------------------------------------------- CuPy


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_cupy_matches_numpy(name):
    cp = pytest.importorskip("cupy")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a broken driver install
        pytest.skip(f"no CUDA device: {exc}")
    if count < 1:
        pytest.skip("no CUDA device")
    make = OPTIMISERS[name]
    host = _model()
    dev = [Parameter(cp.asarray(p.data), name=p.name) for p in host]
    assert array_module(dev[0].data) is cp and array_module(dev[0].grad) is cp
    opt_h, opt_d = make(host), make(dev)
    for s in range(4):
        _grads(s, host)
        for h, d in zip(host, dev):
            d.grad[...] = cp.asarray(h.grad)
        opt_h.step()
        opt_d.step()
    for h, d in zip(host, dev):
        assert type(d.data) is cp.ndarray
        np.testing.assert_allclose(cp.asnumpy(d.data), h.data, rtol=1e-5, atol=1e-6)
    # The state saves as NumPy and loads back onto the device.
    state = _through_npz(opt_d.state_dict())
    assert all(not type(v).__module__.startswith("cupy") for v in state.values())
    opt_d2 = make(dev)
    opt_d2.load_state_dict(state)
    assert opt_d2.step_count == 4


# ------------------------------------------------- the fused kernels against the ufunc formulas


def _adam_ufuncs(d, g, m, v, t, lr, beta1, beta2, eps, wd):
    """Adam as NumPy ufuncs, one rounding per operation in the parameter's dtype (apart from
    the code under test: this is the formula of fastconv.optim.Adam's docstring)."""
    g = g + d * wd
    m += (g - m) * (1.0 - beta1)
    v *= beta2
    v += (g * g) * (1.0 - beta2)
    denom = np.sqrt(v) / math.sqrt(1.0 - beta2**t) + eps
    d += (m / denom) * -(lr / (1.0 - beta1**t))


def _sgd_ufuncs(d, g, buf, first, lr, momentum, nesterov, wd):
    g = g + d * wd
    if momentum:
        buf[...] = g if first else buf * momentum + g
        g = g + buf * momentum if nesterov else buf
    d += g * -lr


@pytest.fixture(params=range(_rules.detected_level() + 1), ids=lambda v: f"level{v}")
def rules_level(request):
    """The update loops of each vector level this CPU has (baseline; AVX2 without FMA)."""
    previous = _rules.set_level(request.param)
    yield request.param
    _rules.set_level(previous)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("kind", ["adam", "sgd", "sgd_nesterov", "sgd_plain"])
def test_fused_steps_equal_the_ufunc_formulas_bitwise(
    kind, wd, dtype, threads, rules_level, restore_threads
):
    import fastconv

    fastconv.set_num_threads(threads)
    rng = np.random.default_rng(7)
    # odd sizes: vector bodies and scalar tails; one past 2 x 8192 elements: the parameters go to
    # the kernel in one call, in chunks of 8192 over the threads (the last one of 3 elements);
    # one parameter of the other dtype (a call of its own)
    other = np.float64 if dtype == np.float32 else np.float32
    shapes = [(6, 3, 5, 5), (6,), (0, 4), (37,), (3, 8193), (5, 7)]
    dtypes = [dtype] * (len(shapes) - 1) + [other]
    params = [Parameter(rng.standard_normal(s).astype(d)) for s, d in zip(shapes, dtypes)]
    ref = [p.data.copy() for p in params]
    steps = [0] * len(params)
    state = [[np.zeros_like(r), np.zeros_like(r)] for r in ref]
    if kind == "adam":
        opt = Adam(params, lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    else:
        momentum = 0.0 if kind == "sgd_plain" else 0.9
        opt = SGD(
            params, lr=0.1, momentum=momentum, nesterov=kind == "sgd_nesterov", weight_decay=wd
        )
    for t in range(1, 5):
        for i, (p, r, (a, b)) in enumerate(zip(params, ref, state)):
            if t == 2 and i == 1:  # no gradient: not stepped, its step count one behind after
                p.grad = None
                continue
            steps[i] += 1
            p.grad = rng.standard_normal(p.shape).astype(p.dtype)
            if kind == "adam":
                _adam_ufuncs(r, p.grad, a, b, steps[i], 3e-3, 0.8, 0.99, 1e-6, wd)
            else:
                _sgd_ufuncs(r, p.grad, a, steps[i] == 1, 0.1, opt.momentum, opt.nesterov, wd)
        opt.step()
        for p, r in zip(params, ref):
            np.testing.assert_array_equal(p.data, r, err_msg=f"step {t}")


def test_zero_grad_set_to_none_then_backward_assigns():
    from fastconv import nn

    layer = nn.Linear(3, 2, rng=0)
    opt = SGD(layer.parameters(), lr=0.1)
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in layer.parameters())
    before = layer.weight.data.copy()
    opt.step()  # no gradients: nothing is stepped
    np.testing.assert_array_equal(layer.weight.data, before)
    x = np.ones((4, 3), np.float32)
    layer.forward(x)
    layer.backward(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(layer.weight.grad, np.full((2, 3), 4.0, np.float32))
    opt.zero_grad()  # the default zeroes in place
    np.testing.assert_array_equal(layer.weight.grad, 0)
