"""The trainer's regularisation options: shift augmentation, dropout in LeNet5, weight decay."""

import numpy as np
import pytest
from test_lenet import _same_params, quiet, synthetic

from fastconv import nn
from fastconv.lenet import LeNet5, fit, load_model
from fastconv.lenet.augment import RandomShift, make_augmentation
from fastconv.lenet.cli import main


def _shifted_reference(x, dy, dx):
    """Image b moved down by dy[b] and right by dx[b] pixels, zeros moved in: pixel by pixel."""
    B, C, H, W = x.shape
    out = np.zeros_like(x)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                si, sj = i - dy[b], j - dx[b]
                if 0 <= si < H and 0 <= sj < W:
                    out[b, :, i, j] = x[b, :, si, sj]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_shift_against_a_pixel_loop(dtype):
    x = np.random.default_rng(0).random((9, 2, 7, 6)).astype(dtype)
    before = x.copy()
    shift = RandomShift(np.random.default_rng(3), max_shift=2)
    draws = np.random.default_rng(3)
    for batch in (x, x[:4], x):  # a short batch between full ones reuses the buffers
        dy, dx = draws.integers(-2, 3, size=(2, len(batch)))
        out = np.full_like(batch, np.nan)
        assert shift(batch, out) is out
        np.testing.assert_array_equal(out, _shifted_reference(batch, dy, dx))
        assert {0, 2, -2} <= set(dy) | set(dx) or len(batch) < 9  # the whole range is drawn
    np.testing.assert_array_equal(x, before)  # the input is never modified


def test_no_shift_is_the_identity_and_bad_arguments_raise():
    x = np.random.default_rng(1).random((3, 1, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(RandomShift(np.random.default_rng(0), 0)(x, np.empty_like(x)), x)
    with pytest.raises(ValueError, match="max_shift"):
        RandomShift(np.random.default_rng(0), -1)
    with pytest.raises(ValueError, match="augment"):
        make_augmentation("rotate", np.random.default_rng(0))
    with pytest.raises(ValueError, match="augment"):
        fit(LeNet5(seed=0), synthetic(), 1, augment="flip", progress=False, log=quiet)


def test_augmentation_changes_training_and_none_turns_it_off():
    data = synthetic()
    runs = {
        a: fit(LeNet5(seed=0), data, 1, batch_size=32, augment=a, progress=False, log=quiet)
        for a in ("none", "shift")
    }
    assert runs["none"][0]["train_loss"] != runs["shift"][0]["train_loss"]


def test_dropout_layers_keep_the_weights_and_survive_a_checkpoint(tmp_path):
    plain, dropped = LeNet5(seed=0), LeNet5(seed=0, dropout=0.25)
    _same_params(plain, dropped)  # the dropout generators are spawned, not drawn from rng
    names = list(dropped.named_children())
    assert names.index("c5_dropout") == names.index("c5") + 1
    assert names.index("f6_dropout") == names.index("f6") + 1
    assert all(isinstance(dropped.named_children()[n], nn.Dropout) for n in names if "drop" in n)
    path = tmp_path / "d.npz"
    fit(dropped, synthetic(), 1, batch_size=32, save=path, progress=False, log=quiet)
    again = load_model(path)
    assert again.dropout == 0.25 and "c5_dropout" in again.named_children()
    x = synthetic().test_images[:8]
    np.testing.assert_array_equal(again.eval().forward(x), dropped.eval().forward(x))
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="dropout"):
            LeNet5(dropout=bad)


def test_weight_decay_and_augment_must_match_on_resume(tmp_path):
    data, path = synthetic(), tmp_path / "c.npz"
    decayed = fit(
        LeNet5(seed=0),
        data,
        1,
        batch_size=32,
        weight_decay=0.01,
        save=path,
        progress=False,
        log=quiet,
    )
    plain = fit(LeNet5(seed=0), data, 1, batch_size=32, progress=False, log=quiet)
    assert decayed[0]["train_loss"] != plain[0]["train_loss"]
    for kwargs, name in (({"weight_decay": 0.0}, "weight_decay"), ({"augment": "none"}, "augment")):
        with pytest.raises(ValueError, match=name):
            fit(
                LeNet5(),
                data,
                2,
                batch_size=32,
                resume=path,
                progress=False,
                log=quiet,
                **{"weight_decay": 0.01, **kwargs},
            )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dropout", "1"], "rate in [0, 1)"),
        (["--dropout", "x"], "expected a number"),
        (["--weight-decay", "-1"], ">= 0"),
        (["--augment", "rotate"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err
