"""State dicts with PyTorch's names and layouts, weights files (.npz, .safetensors) read without
pickle, and the weight round trip with PyTorch (when importable): LeNet-5, a conv / transposed /
separable net and a 1-D net built in both, weights copied both ways, outputs and gradients
compared."""

import inspect
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastconv import nn
from fastconv.lenet import LeNet5, load_model
from fastconv.nn.weights import WeightsFileError


class Unpickled:
    """Unpickling this creates ``marker``: the proof that a file was (wrongly) unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def toolkit_net(seed, dtype=np.float32):
    """Conv (strided, dilated, grouped, non-square), transposed conv, separable and depthwise
    convs, pooling, a nested Sequential; ReLU as layers so the indices match torch's."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2D(3, 8, (3, 2), stride=(2, 1), padding=1, rng=rng, dtype=dtype),  # 0
        nn.ReLU(),
        nn.ConvTranspose2D(
            8, 6, 4, stride=2, padding=1, output_padding=1, groups=2, rng=rng, dtype=dtype
        ),  # 2
        nn.ReLU(),
        nn.SeparableConv2D(
            6, 5, 3, depth_multiplier=2, padding=1, dilation=2, rng=rng, dtype=dtype
        ),  # 4
        nn.Sequential(  # 5
            nn.DepthwiseConv2D(5, 3, depth_multiplier=2, padding=1, rng=rng, dtype=dtype),
            nn.Conv2D(10, 4, 1, groups=2, bias=False, rng=rng, dtype=dtype),
        ),
        nn.MaxPool2D(2),
        nn.GlobalAvgPool2D(),
        nn.Flatten(),
        nn.Linear(4, 3, rng=rng, dtype=dtype),  # 9
    )


TOOLKIT_SHAPES = {
    "0.weight": (8, 3, 3, 2),  # (F, C / groups, KH, KW)
    "0.bias": (8,),
    "2.weight": (8, 3, 4, 4),  # (C_in, C_out / groups, KH, KW)
    "2.bias": (6,),
    "4.depthwise.weight": (12, 1, 3, 3),
    "4.pointwise.weight": (5, 12, 1, 1),
    "4.pointwise.bias": (5,),
    "5.0.weight": (10, 1, 3, 3),
    "5.0.bias": (10,),
    "5.1.weight": (4, 5, 1, 1),
    "9.weight": (3, 4),  # (OUT, IN)
    "9.bias": (3,),
}
TOOLKIT_INPUT = (2, 3, 10, 9)


def conv1d_net(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv1D(4, 6, 5, stride=2, padding=2, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.Conv1D(6, 6, 3, dilation=2, groups=3, rng=rng, dtype=dtype),
        nn.Flatten(),
        nn.Linear(6 * 5, 2, rng=rng, dtype=dtype),
    )


CONV1D_INPUT = (3, 4, 18)


def params_equal(a, b):
    pa, pb = a.named_parameters(), b.named_parameters()
    assert list(pa) == list(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name].data, pb[name].data, err_msg=name)


# ----------------------------------------------------------------- state dicts


def test_state_dict_names_and_layouts_are_torchs():
    state = toolkit_net(0).state_dict()
    assert {k: v.shape for k, v in state.items()} == TOOLKIT_SHAPES
    assert list(state) == list(TOOLKIT_SHAPES)  # torch's order: own parameters, then children
    assert all(type(v) is np.ndarray and v.dtype == np.float32 for v in state.values())
    lenet = LeNet5(seed=0).state_dict()
    assert list(lenet) == [
        f"{n}.{p}" for n in ("c1", "c3", "c5", "f6", "output") for p in ("weight", "bias")
    ]
    # named_parameters keeps the attribute names (what optimisers and summaries show)
    sep = nn.SeparableConv2D(2, 3, 3)
    assert list(sep.named_parameters()) == ["depthwise_weight", "pointwise_weight", "bias"]
    assert list(sep.state_dict()) == ["depthwise.weight", "pointwise.weight", "pointwise.bias"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_fastconv_dict_fastconv_is_identical(dtype, rng):
    a, b = toolkit_net(0, dtype), toolkit_net(1, dtype)
    x = rng.standard_normal(TOOLKIT_INPUT).astype(dtype)
    assert not np.allclose(a(x), b(x))
    buffers = {name: p.data for name, p in b.named_parameters().items()}
    result = b.load_state_dict(a.state_dict())
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    params_equal(a, b)
    assert all(p.data is buffers[n] for n, p in b.named_parameters().items())  # in place
    np.testing.assert_array_equal(a(x), b(x))


def test_load_copies_in_casts_and_never_touches_the_callers_arrays():
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.Linear(3, 2, rng=1))
    state = {k: v.astype(np.float64) * 2 for k, v in model.state_dict().items()}
    state["0.weight"].flags.writeable = False  # read-only input is fine: only read
    kept = {k: v.copy() for k, v in state.items()}
    model.load_state_dict(state)
    assert model[0].weight.dtype == np.float32  # cast to the layer's dtype
    np.testing.assert_array_equal(model[0].weight.data, kept["0.weight"].astype(np.float32))
    for k in state:
        np.testing.assert_array_equal(state[k], kept[k])
    state["1.bias"][...] = 99.0  # no aliasing either way
    assert not np.any(model[1].bias.data == 99.0)
    out = model.state_dict()
    out["1.bias"][...] = -7.0
    assert not np.any(model[1].bias.data == -7.0)
    # integer and bool arrays are numbers too (torch casts them the same way)
    model.load_state_dict({**kept, "1.bias": np.array([1, 0], dtype=np.int64)})
    np.testing.assert_array_equal(model[1].bias.data, [1.0, 0.0])


def test_files_saved_under_the_attribute_names_still_load(tmp_path):
    """Before the state dict took torch's names, SeparableConv2D saved depthwise_weight,
    pointwise_weight and bias: those files load (strictly) into the same parameters."""
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.SeparableConv2D(2, 3, 3, rng=1))
    old = {
        "0.weight": model[0].weight.data + 1,
        "0.bias": model[0].bias.data + 1,
        "1.depthwise_weight": model[1].depthwise_weight.data + 1,
        "1.pointwise_weight": model[1].pointwise_weight.data + 1,
        "1.bias": model[1].bias.data + 1,
    }
    np.savez(tmp_path / "old.npz", **old)
    fresh = nn.Sequential(nn.Conv2D(1, 2, 3, rng=5), nn.SeparableConv2D(2, 3, 3, rng=6))
    assert fresh.load(tmp_path / "old.npz") is fresh
    np.testing.assert_array_equal(fresh[1].depthwise_weight.data, old["1.depthwise_weight"])
    np.testing.assert_array_equal(fresh[1].pointwise_weight.data, old["1.pointwise_weight"])
    np.testing.assert_array_equal(fresh[1].bias.data, old["1.bias"])
    np.testing.assert_array_equal(fresh[0].bias.data, old["0.bias"])


def test_strict_and_non_strict_keys():
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.SeparableConv2D(2, 3, 3, rng=1))
    before = model.state_dict()
    renamed = {k.replace("1.depthwise.", "1.depthwize."): v for k, v in before.items()}
    with pytest.raises(ValueError) as info:
        model.load_state_dict(renamed)
    message = str(info.value)
    assert "missing parameters ['1.depthwise.weight']" in message
    assert "unexpected parameters ['1.depthwize.weight']" in message
    partial = {"0.bias": np.full(2, 3.0), "extra.weight": np.zeros(1), "1.bn.running_mean": 0}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == [k for k in before if k != "0.bias"]
    assert result.unexpected_keys == ["extra.weight", "1.bn.running_mean"]
    np.testing.assert_array_equal(model[0].bias.data, [3.0, 3.0])
    np.testing.assert_array_equal(model[1].pointwise_weight.data, before["1.pointwise.weight"])


def test_load_errors_name_the_key_and_change_nothing():
    model = nn.Sequential(nn.Conv2D(1, 2, 3, rng=0), nn.Linear(4, 3, rng=1))
    before = model.state_dict()
    zeros = {k: np.zeros_like(v) for k, v in before.items()}
    bad_shape = dict(zeros, **{"1.weight": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"'1\.weight'.*\(4, 3\).*\(3, 4\)"):
        model.load_state_dict(bad_shape)
    with pytest.raises(ValueError, match=r"'1\.weight'"):  # non-strict: a shape still raises
        model.load_state_dict({"1.weight": np.zeros(12)}, strict=False)
    with pytest.raises(TypeError, match=r"'1\.bias'.*numeric.*<U"):
        model.load_state_dict(dict(zeros, **{"1.bias": np.array(["a", "b", "c"])}))
    with pytest.raises(TypeError, match=r"'0\.bias'.*complex"):
        model.load_state_dict(dict(zeros, **{"0.bias": np.zeros(2, np.complex64)}))
    for name, p in model.named_parameters().items():  # the valid entries were not written
        np.testing.assert_array_equal(p.data, before[name])


# ----------------------------------------------------------------- files


def _suffix(fmt):
    """The file suffix of a format; the safetensors cases skip without the package."""
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    return f".{fmt}"


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_files_round_trip(tmp_path, fmt, dtype, rng):
    a, b = toolkit_net(0, dtype), toolkit_net(1, dtype)
    path = tmp_path / f"w{_suffix(fmt)}"
    nn.save_weights(path, a)
    loaded = nn.load_weights(path)
    assert set(loaded) == set(TOOLKIT_SHAPES)
    assert all(v.dtype == dtype and v.flags.writeable for v in loaded.values())
    assert b.load(path) is b
    params_equal(a, b)
    x = rng.standard_normal(TOOLKIT_INPUT).astype(dtype)
    np.testing.assert_array_equal(a(x), b(x))
    # the method and the function write the same file; the format is read from the bytes
    a.save(tmp_path / f"m{_suffix(fmt)}")
    assert (tmp_path / f"m{_suffix(fmt)}").read_bytes() == path.read_bytes()
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    assert set(nn.load_weights(renamed)) == set(TOOLKIT_SHAPES)
    # a state dict saves too, with a prefix read back out (a checkpoint's "model." entries)
    nn.save_weights(
        tmp_path / f"s{_suffix(fmt)}", {f"model.{k}": v for k, v in a.state_dict().items()}
    )
    toolkit_net(2, dtype).load(tmp_path / f"s{_suffix(fmt)}", prefix="model.")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, f"m{_suffix(fmt)}", "weights.bin", f"s{_suffix(fmt)}"]
    )  # no temporary files left


def test_lenet_model_from_a_safetensors_file(tmp_path, rng):
    pytest.importorskip("safetensors")
    model = LeNet5(seed=3)
    model.save(tmp_path / "lenet.safetensors")
    other = load_model(tmp_path / "lenet.safetensors")
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(other(x), model(x))


def test_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    model = nn.Linear(3, 2, rng=0)
    model.save(path)
    good = path.read_bytes()

    def savez_fails(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_fails)
    with pytest.raises(KeyboardInterrupt):
        nn.save_weights(path, nn.Linear(3, 2, rng=1))
    monkeypatch.undo()
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["w.npz"]
    with pytest.raises(TypeError, match="'w'.*numeric"):  # checked before anything is written
        nn.save_weights(tmp_path / "x.npz", {"w": np.array([object()])})
    with pytest.raises(TypeError, match="names must be non-empty strings"):
        nn.save_weights(tmp_path / "x.npz", {1: np.zeros(2)})
    with pytest.raises(TypeError, match="mapping name -> array"):
        nn.save_weights(tmp_path / "x.npz", [np.zeros(2)])
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def _bad_files(tmp_path):
    """name -> (bytes, phrase the one-line error must contain); `marker` appears if anything is
    unpickled."""
    marker = tmp_path / "UNPICKLED"
    npz = io.BytesIO()
    np.savez(npz, **nn.Linear(30, 20, rng=0).state_dict())
    raw = npz.getvalue()
    corrupt = bytearray(raw)
    corrupt[len(raw) // 3 : len(raw) // 3 + 64] = bytes(64)  # inside an array: CRC mismatch
    objects = io.BytesIO()
    np.savez(objects, weight=np.array([Unpickled(marker)], dtype=object))
    torch_like = io.BytesIO()  # the layout of a torch.save() file: a zip with a pickle inside
    with zipfile.ZipFile(torch_like, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"weight": Unpickled(marker)}))
        z.writestr("archive/version", "3\n")
    cases = {
        "truncated.npz": (raw[: len(raw) // 2], "truncated or corrupt"),
        "corrupt.npz": (bytes(corrupt), "truncated or corrupt"),
        "notes.txt": (b"0.weight: 1 2 3\n", "a text file"),
        "empty.npz": (b"", "empty file"),
        "model.pkl": (pickle.dumps({"weight": Unpickled(marker)}), "Python pickle"),
        "objects.npz": (objects.getvalue(), "pickled Python objects"),
        "torch.pt": (torch_like.getvalue(), "torch.save() file"),
        "array.npy": (b"\x93NUMPY\x01\x00rest", "single NumPy array"),
    }
    try:
        import safetensors.numpy
    except ImportError:
        pass
    else:
        st = safetensors.numpy.save(nn.Linear(30, 20, rng=0).state_dict())
        cases["truncated.safetensors"] = (st[: len(st) - 100], "truncated or corrupt safetensors")
        header = int.from_bytes(st[:8], "little")
        broken = st[:8] + b"{" + b"x" * (header - 1) + st[8 + header :]
        cases["header.safetensors"] = (broken, "truncated or corrupt safetensors")
        bf16 = b'{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
        cases["bf16.safetensors"] = (
            len(bf16).to_bytes(8, "little") + bf16 + bytes(4),
            "a dtype NumPy has no type for",
        )
    return cases, marker


def test_damaged_files_give_one_line_and_are_never_unpickled(tmp_path):
    cases, marker = _bad_files(tmp_path)
    for name, (data, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for read in (nn.load_weights, nn.Linear(30, 20).load):
            with pytest.raises(WeightsFileError) as info:
                read(path)
            message = str(info.value)
            assert isinstance(info.value, ValueError) and info.value.path == str(path)
            assert message.startswith(f"{path}: ") and phrase in message, (name, message)
            assert "\n" not in message, name
            error = info.value  # no chained traceback: raised outside a handler or `from None`
            assert error.__cause__ is None, name
            assert error.__context__ is None or error.__suppress_context__, name
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        nn.load_weights(tmp_path / "absent.npz")


def test_missing_safetensors_package_names_the_extra(tmp_path, monkeypatch):
    header = b'{"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'  # written by hand:
    path = tmp_path / "w.safetensors"  # this test runs where safetensors is not installed
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    for call in (lambda: nn.load_weights(path), lambda: nn.Linear(2, 1).save(path)):
        with pytest.raises(ImportError, match=r'pip install "fastconv\[safetensors\]"'):
            call()
    nn.Linear(2, 1).save(tmp_path / "w.npz")  # .npz needs nothing more
    assert set(nn.load_weights(tmp_path / "w.npz")) == {"weight", "bias"}


# ----------------------------------------------------------------- PyTorch


def _torch_lenet(torch, activation, pooling):
    tnn = torch.nn

    class TorchLeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = tnn.Conv2d(1, 6, 5)
            self.c3 = tnn.Conv2d(6, 16, 5)
            self.c5 = tnn.Conv2d(16, 120, 5)
            self.f6 = tnn.Linear(120, 84)
            self.output = tnn.Linear(84, 10)
            self.act = tnn.ReLU() if activation == "relu" else tnn.Tanh()
            self.pool = tnn.MaxPool2d(2) if pooling == "max" else tnn.AvgPool2d(2)

        def forward(self, x):
            x = self.pool(self.act(self.c1(x)))
            x = self.pool(self.act(self.c3(x)))
            x = self.act(self.c5(x)).flatten(1)
            return self.output(self.act(self.f6(x)))

    return TorchLeNet5()


def _torch_toolkit(torch):
    tnn = torch.nn

    class Separable(tnn.Module):  # the module SeparableConv2D's state names describe
        def __init__(self, C, F, K, M, **geometry):
            super().__init__()
            self.depthwise = tnn.Conv2d(C, C * M, K, groups=C, bias=False, **geometry)
            self.pointwise = tnn.Conv2d(C * M, F, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    return tnn.Sequential(
        tnn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=1),
        tnn.ReLU(),
        tnn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, output_padding=1, groups=2),
        tnn.ReLU(),
        Separable(6, 5, 3, 2, padding=1, dilation=2),
        tnn.Sequential(
            tnn.Conv2d(5, 10, 3, padding=1, groups=5),
            tnn.Conv2d(10, 4, 1, groups=2, bias=False),
        ),
        tnn.MaxPool2d(2),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Linear(4, 3),
    )


def _torch_conv1d(torch):
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv1d(4, 6, 5, stride=2, padding=2),
        tnn.ReLU(),
        tnn.Conv1d(6, 6, 3, dilation=2, groups=3),
        tnn.Flatten(),
        tnn.Linear(6 * 5, 2),
    )


NETS = {  # name -> (fastconv model, torch model, input shape)
    "lenet-relu-max": (
        lambda s, d: LeNet5(seed=s, dtype=d),
        lambda t: _torch_lenet(t, "relu", "max"),
        (3, 1, 32, 32),
    ),
    "lenet-tanh-avg": (
        lambda s, d: LeNet5("tanh", "avg", seed=s, dtype=d),
        lambda t: _torch_lenet(t, "tanh", "avg"),
        (3, 1, 32, 32),
    ),
    "conv-transposed-separable": (toolkit_net, _torch_toolkit, TOOLKIT_INPUT),
    "conv1d": (conv1d_net, _torch_conv1d, CONV1D_INPUT),
}
# float32: the done-when bar of the weight round trip; float64 shows the maths is the same.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
GRAD_TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _compare(torch, model, tmodel, shape, dtype, rng):
    """Forward (eval and train mode), input and parameter gradients of the two models."""
    x = rng.standard_normal(shape).astype(dtype)
    model.eval()
    tmodel.eval()
    xt = torch.from_numpy(x).requires_grad_()
    yt = tmodel(xt)
    np.testing.assert_allclose(model(x), yt.detach().numpy(), **TOL[dtype])
    model.train()
    y = model(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    for p in model.parameters():
        p.zero_grad()
    gx = model.backward(g)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), **GRAD_TOL[dtype])
    grads = {name: p.grad for name, p in model._state_parameters().items()}
    tgrads = {name: p.grad.numpy() for name, p in tmodel.named_parameters()}
    assert list(grads) == list(tgrads)
    for name in grads:
        np.testing.assert_allclose(grads[name], tgrads[name], err_msg=name, **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("net", list(NETS))
def test_weights_round_trip_with_torch(net, dtype, rng):
    torch = pytest.importorskip("torch")
    make, make_torch, shape = NETS[net]
    torch.manual_seed(0)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    # torch -> fastconv: the tensors of torch's state dict go in as they are
    tmodel = make_torch(torch).to(tdtype)
    model = make(0, dtype)
    assert list(model.state_dict()) == list(tmodel.state_dict())
    assert model.load_state_dict(tmodel.state_dict()) == ([], [])
    _compare(torch, model, tmodel, shape, dtype, rng)
    # fastconv -> torch: a fresh fastconv model's weights into the torch model
    model = make(1, dtype)
    state = model.state_dict()
    result = tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert not result.missing_keys and not result.unexpected_keys
    for name, t in tmodel.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), state[name], err_msg=name)
    tmodel.zero_grad()
    _compare(torch, model, tmodel, shape, dtype, rng)


def test_torch_parameters_with_grad_and_bfloat16_load(rng):
    torch = pytest.importorskip("torch")
    tlin = torch.nn.Linear(3, 2)
    lin = nn.Linear(3, 2, rng=0)
    lin.load_state_dict(dict(tlin.named_parameters()))  # requires_grad tensors: detached
    np.testing.assert_array_equal(lin.weight.data, tlin.weight.detach().numpy())
    half = {k: v.to(torch.bfloat16) for k, v in tlin.state_dict().items()}
    lin.load_state_dict(half)  # NumPy has no bfloat16: read as float32 (exact)
    np.testing.assert_array_equal(lin.bias.data, half["bias"].float().numpy())
    # torch's buffers (BatchNorm running stats) have no place in fastconv: unexpected keys
    tseq = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="num_batches_tracked"):
        nn.Sequential(nn.Conv2D(1, 2, 3)).load_state_dict(tseq.state_dict())


def test_torch_sequential_pair_is_a_depthwise_and_pointwise_sequential(rng):
    torch = pytest.importorskip("torch")
    tpair = torch.nn.Sequential(
        torch.nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False), torch.nn.Conv2d(8, 5, 1)
    )
    pair = nn.Sequential(nn.DepthwiseConv2D(4, 3, 2, padding=1, bias=False), nn.Conv2D(8, 5, 1))
    pair.load_state_dict(tpair.state_dict())
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    with torch.no_grad():
        expected = tpair(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pair(x), expected, **TOL[np.float32])
    sep = nn.SeparableConv2D(4, 5, 3, 2, padding=1)  # the same maths under its own names
    sep.load_state_dict(
        {
            k.replace("0.", "depthwise.").replace("1.", "pointwise."): v
            for k, v in tpair.state_dict().items()
        }
    )
    np.testing.assert_allclose(sep(x), expected, **TOL[np.float32])


def test_safetensors_files_between_torch_and_fastconv(tmp_path, rng):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file, save_file

    tmodel = _torch_toolkit(torch)
    save_file(tmodel.state_dict(), tmp_path / "from_torch.safetensors")
    model = toolkit_net(5).load(tmp_path / "from_torch.safetensors")
    x = rng.standard_normal(TOOLKIT_INPUT).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x), tmodel(torch.from_numpy(x)).numpy(), **TOL[np.float32])
    nn.save_weights(tmp_path / "from_fastconv.safetensors", toolkit_net(6))
    tmodel.load_state_dict(load_file(tmp_path / "from_fastconv.safetensors"))
    with torch.no_grad():
        np.testing.assert_allclose(
            toolkit_net(6)(x), tmodel(torch.from_numpy(x)).numpy(), **TOL[np.float32]
        )
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model(x))
    # Without torch: the file torch wrote runs in a process where `import torch` fails.
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, tests_net\n"
        "model = tests_net.toolkit_net(9).load('from_torch.safetensors')\n"
        "assert np.array_equal(model(np.load('x.npy')), np.load('y.npy'))\n"
        "assert 'torch' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
        "print('ok')\n"
    )
    (tmp_path / "tests_net.py").write_text(
        "import numpy as np\nfrom fastconv import nn\n\n" + inspect.getsource(toolkit_net)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
