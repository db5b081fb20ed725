"""fastconv.lenet: LeNet-5's gradients and state, training, resume, Ctrl-C, and the CLI."""

import gzip
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from fastconv import nn, optim
from fastconv.datasets import MNIST, mnist
from fastconv.gradcheck import gradcheck_layer
from fastconv.lenet import LeNet5, TrainingInterrupted, evaluate, fit, load_model
from fastconv.lenet.cli import main

VARIANTS = [("relu", "max"), ("relu", "avg"), ("tanh", "max"), ("tanh", "avg")]


def quiet(line):
    pass


def synthetic(n_train=192, n_test=64, seed=0):
    """A small MNIST-shaped data set whose class is the row of a bright bar (learnable fast)."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, 10, n)
        images = rng.random((n, 1, 32, 32), dtype=np.float32) * 0.2
        for i, label in enumerate(labels):
            images[i, 0, 3 + 2 * label : 5 + 2 * label, 4:28] = 1.0
        return images, labels.astype(np.int64)

    return MNIST(*make(n_train), *make(n_test))


@pytest.fixture(scope="module")
def real_mnist(mnist_dir):  # conftest: $FASTCONV_MNIST, else ../shared/data/mnist, else skip
    return mnist(mnist_dir, padding=2)


def write_idx_mnist(root, n_train=128, n_test=40, seed=0):
    """The four MNIST files (gzip IDX) with random digits, for the CLI tests."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr, header in (
            ("images-idx3", images, [0x0803, n, 28, 28]),
            ("labels-idx1", labels, [0x0801, n]),
        ):
            data = np.array(header, dtype=">i4").tobytes() + arr.tobytes()
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(data))
    return root


# ----------------------------------------------------------------- the model


@pytest.mark.parametrize("activation, pooling", VARIANTS)
def test_lenet_gradcheck(activation, pooling, rng):
    model = LeNet5(activation, pooling, seed=1)
    report = gradcheck_layer(model, rng.random((2, 1, 32, 32)), max_checks=6, seed=2)
    assert len(report.checks) == 11  # the input and 10 parameters
    assert report["c5.weight"].total == 120 * 16 * 25


def test_lenet_structure():
    model = LeNet5(seed=0)
    names = list(model.named_parameters())
    assert names == [
        f"{layer}.{kind}"
        for layer in ("c1", "c3", "c5", "f6", "output")
        for kind in ("weight", "bias")
    ]
    assert sum(p.size for p in model.parameters()) == 61706
    assert model(np.zeros((3, 1, 32, 32), np.float32)).shape == (3, 10)
    tanh = LeNet5("tanh", "avg", seed=0)
    assert "c1_tanh" in tanh.named_children() and isinstance(tanh["s2"], nn.AvgPool2D)
    assert tanh["c1"].init == "glorot_uniform" and model["c1"].init == "he_uniform"
    for bad in (dict(activation="gelu"), dict(pooling="lp")):
        with pytest.raises(ValueError, match="must be one of"):
            LeNet5(**bad)


def test_lenet_seeded_init():
    a, b, c = LeNet5(seed=3), LeNet5(seed=3), LeNet5(seed=4)
    for (name, p), q, r in zip(a.named_parameters().items(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert not np.array_equal(a["c1"].weight.data, c["c1"].weight.data)


def test_other_architecture_state_is_refused():
    model = LeNet5(seed=0)
    wide = dict(model.state_dict(), **{"c3.weight": np.zeros((32, 6, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="c3.weight"):
        model.load_state_dict(wide)
    small = nn.Sequential(nn.Conv2D(1, 6, 5), nn.Linear(120, 10)).state_dict()
    with pytest.raises(ValueError, match=r"missing parameters \['c1.weight'"):
        model.load_state_dict(small)


def test_save_load_identical_predictions(tmp_path, rng):
    model = LeNet5(seed=0)
    fit(model, synthetic(64, 16), 1, batch_size=16, progress=False, log=quiet)
    path = tmp_path / "lenet.npz"
    model.save(path)
    x = rng.random((8, 1, 32, 32), dtype=np.float32)
    restored = LeNet5(seed=9).load(path)
    np.testing.assert_array_equal(restored.eval()(x), model.eval()(x))
    np.testing.assert_array_equal(load_model(path).predict(x), model.predict(x))


# ----------------------------------------------------------------- training


def test_training_beats_90_percent_on_2000_images(real_mnist):
    data = MNIST(
        real_mnist.train_images[:2000],
        real_mnist.train_labels[:2000],
        real_mnist.test_images[:2000],
        real_mnist.test_labels[:2000],
    )
    model = LeNet5(seed=0)
    history = fit(
        model, data, 8, batch_size=32, lr=2e-3, seed=0, threads=1, progress=False, log=quiet
    )
    accuracy, confusion = evaluate(model, data.test_images, data.test_labels)
    assert accuracy > 0.90
    assert history[-1]["test_accuracy"] == accuracy and confusion.sum() == 2000
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_fit_is_reproducible_and_logs(tmp_path):
    lines = []
    runs = [
        fit(LeNet5(seed=0), synthetic(), 2, batch_size=32, seed=5, progress=False, log=lines.append)
        for _ in range(2)
    ]
    assert [r["train_loss"] for r in runs[0]] == [r["train_loss"] for r in runs[1]]
    assert len(lines) == 4 and "train loss" in lines[0] and "img/s" in lines[0]
    other = fit(LeNet5(seed=0), synthetic(), 1, batch_size=32, seed=6, progress=False, log=quiet)
    assert other[0]["train_loss"] != runs[0][0]["train_loss"]  # the seed drives the shuffle


def test_evaluate_confusion_matrix():
    model = LeNet5(seed=0)
    data = synthetic(32, 50)
    accuracy, confusion = evaluate(model, data.test_images, data.test_labels, batch_size=7)
    assert confusion.shape == (10, 10) and confusion.sum() == 50
    np.testing.assert_array_equal(
        confusion.sum(axis=1), np.bincount(data.test_labels, minlength=10)
    )
    assert accuracy == np.trace(confusion) / 50
    assert model.training  # evaluate restores the mode


def _same_params(a, b):
    for (name, p), q in zip(a.named_parameters().items(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


def test_resume_continues_where_it_stopped(tmp_path):
    data = synthetic()
    straight = LeNet5(seed=0)
    full = fit(straight, data, 2, batch_size=32, seed=1, progress=False, log=quiet)
    path = tmp_path / "ckpt.npz"
    first = LeNet5(seed=0)
    fit(first, data, 1, batch_size=32, seed=1, save=path, progress=False, log=quiet)
    resumed = LeNet5(seed=7)  # other weights: all of them come from the checkpoint
    history = fit(
        resumed, data, 2, batch_size=32, seed=1, resume=path, save=path, progress=False, log=quiet
    )
    _same_params(resumed, straight)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full]
    with np.load(path) as ckpt:
        assert json.loads(str(ckpt["position"]))["epoch"] == 2
    with pytest.raises(ValueError, match="batch_size=32"):
        fit(LeNet5(), data, 3, batch_size=16, resume=path, progress=False, log=quiet)


def test_ctrl_c_saves_and_resume_matches(tmp_path, monkeypatch):
    data = synthetic()
    straight = LeNet5(seed=0)
    full = fit(straight, data, 2, batch_size=32, seed=1, progress=False, log=quiet)
    step, calls = optim.Adam.step, []

    def step_then_ctrl_c(self):
        step(self)
        calls.append(1)
        if len(calls) == 9:  # in the second epoch (6 batches each)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(optim.Adam, "step", step_then_ctrl_c)
    path = tmp_path / "ckpt.npz"
    with pytest.raises(TrainingInterrupted, match="after batch 3/6") as info:
        fit(LeNet5(seed=0), data, 2, batch_size=32, seed=1, save=path, progress=False, log=quiet)
    assert info.value.checkpoint == path and path.is_file()
    monkeypatch.setattr(optim.Adam, "step", step)
    resumed = LeNet5(seed=0)
    history = fit(resumed, data, 2, batch_size=32, seed=1, resume=path, progress=False, log=quiet)
    _same_params(resumed, straight)
    assert history[-1]["train_loss"] == full[-1]["train_loss"]


# ----------------------------------------------------------------- the command line


def test_cli_bad_arguments_exit_2(capsys):
    # (`train` without --data is no longer an argument error: it reads the default data
    # directory, see tests/test_cli.py::test_missing_data)
    for argv in (
        [],
        ["train", "--epochs", "2", "--more-epochs", "1"],
        ["train", "--data", "d", "--epochs", "0"],
        ["train", "--data", "d", "--optimizer", "rmsprop"],
        ["evaluate", "--data", "d"],
        ["train", "--data", "d", "--lr", "-1"],
        ["fit"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        assert "usage:" in capsys.readouterr().err


def test_cli_missing_data_dir(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["train", "--data", str(missing), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and str(missing) in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty")]) == 1
    assert "MNIST files not found" in capsys.readouterr().err


def test_cli_train_then_evaluate(tmp_path, capsys):
    data_dir = write_idx_mnist(tmp_path / "mnist")
    ckpt = tmp_path / "lenet.npz"
    args = [
        "train",
        "--data",
        str(data_dir),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--save",
        str(ckpt),
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch  1/1" in out and "test acc" in out and ckpt.is_file()
    assert main(["evaluate", "--model", str(ckpt), "--data", str(data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("test accuracy")
    table = out[1:]
    assert len(table) == 11 and table[0].split()[1:] == [str(i) for i in range(10)]
    assert sum(int(v) for row in table[1:] for v in row.split()[1:]) == 40
    # resume with another batch size: a one-line error, not a traceback
    assert main(args[:-1] + ["--resume", str(ckpt), "--batch-size", "16", "--epochs", "2"]) == 1
    assert "batch_size=32" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "no.npz"), "--data", str(data_dir)]) == 1


def test_cli_ctrl_c_exits_130(tmp_path, capsys, monkeypatch):
    data_dir = write_idx_mnist(tmp_path / "mnist")

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("interrupted in epoch 1; checkpoint saved to x.npz", "x.npz")

    monkeypatch.setattr("fastconv.lenet.cli.fit", interrupted)
    assert main(["train", "--data", str(data_dir), "--save", "x.npz"]) == 130
    assert "checkpoint saved to x.npz" in capsys.readouterr().err


def test_python_m_entry_point(tmp_path):
    # Run from elsewhere: `python -m` puts the working directory first on sys.path, and the
    # repository root holds the unbuilt source folder.
    result = subprocess.run(
        [sys.executable, "-m", "fastconv.lenet", "train", "--epochs", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "usage: fastconv-lenet" in result.stderr
