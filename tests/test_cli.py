"""fastconv-lenet: every failure is one line on stderr and exit status 1 (never a traceback, never
an unpickled file); --version, defaults in --help, resumed epochs, download, history, report."""

import csv
import gzip
import hashlib
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_lenet import write_idx_mnist  # the tiny random MNIST the CLI tests share

from fastconv import __version__, datasets, get_num_threads, optim
from fastconv.lenet import LeNet5
from fastconv.lenet.cli import main
from fastconv.lenet.history import history_paths, read_history

TINY = ["--batch-size", "32", "--threads", "1", "--no-progress"]


def error_line(capsys, *phrases):
    """The one line on stderr; checks its prefix and that it holds every phrase."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n"), err
    # a download announces itself on stderr first; the failure is then the one other line
    lines = [line for line in err.splitlines() if not line.startswith("downloading ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("fastconv-lenet: error: "), err
    for phrase in phrases:
        assert str(phrase) in lines[0], (phrase, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny MNIST directory and a 1-epoch checkpoint trained on it."""
    root = tmp_path_factory.mktemp("cli")
    data = write_idx_mnist(root / "mnist")
    ckpt = root / "lenet.npz"
    assert main(["train", "--data", str(data), "--epochs", "1", "--save", str(ckpt)] + TINY) == 0
    return data, ckpt


class Unpickled:
    """Unpickling this creates ``marker``: the proof that a file was (wrongly) unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def bad_checkpoints(tmp_path, good):
    """name -> (path, phrase the error must contain) for each kind of unusable checkpoint."""
    marker = tmp_path / "UNPICKLED"
    raw = good.read_bytes()
    out = {}

    def put(name, data, phrase):
        path = tmp_path / name
        path.write_bytes(data)
        out[name] = (path, phrase)

    put("truncated.npz", raw[: len(raw) // 2], "truncated or corrupt")
    corrupt = bytearray(raw)
    corrupt[len(raw) // 3 : len(raw) // 3 + 64] = bytes(64)  # inside an array: CRC mismatch
    put("corrupt.npz", bytes(corrupt), "truncated or corrupt")
    put("notes.txt", b"epoch 1: loss 0.3\nthis is not a checkpoint\n", "a text file")
    put("empty.npz", b"", "empty file")
    put("model.pkl", pickle.dumps({"c1.weight": Unpickled(marker)}), "Python pickle")
    with open(tmp_path / "objects.npz", "wb") as f:
        np.savez(f, **{"c1.weight": np.array([Unpickled(marker)], dtype=object)})
    out["objects.npz"] = (tmp_path / "objects.npz", "pickled Python objects")
    with open(tmp_path / "foreign.npz", "wb") as f:
        np.savez(f, weights=np.zeros(3), bias=np.ones(2))
    out["foreign.npz"] = (tmp_path / "foreign.npz", "not a LeNet-5 model")
    with open(tmp_path / "array.npy", "wb") as f:
        np.save(f, np.zeros(3))
    out["array.npy"] = (tmp_path / "array.npy", "single NumPy array")
    put("data.gz", gzip.compress(b"hello"), "gzip")
    return out, marker


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastconv-lenet (fastconv {__version__})"


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "images per step (default: 64)",
        "(default: 0.7)",
        "(default: adam)",
        "(default: 10)",
        "default: relu",
        "--more-epochs K",
        "FASTCONV_DATA",
    ):
        assert default in text, default
    assert "(default: None)" not in text and "(default: False)" not in text
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "(default: report.png)" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("command", ["evaluate", "resume", "report"])
def test_bad_checkpoints_one_line_never_unpickled(tmp_path, tiny, capsys, command):
    data, good = tiny
    cases, marker = bad_checkpoints(tmp_path, good)
    for name, (path, phrase) in cases.items():
        if command == "evaluate":
            argv = ["evaluate", "--model", str(path), "--data", str(data)]
        elif command == "report":
            pytest.importorskip("matplotlib")
            argv = [
                "report",
                "--model",
                str(path),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "r.png"),
            ]
        else:
            argv = ["train", "--resume", str(path), "--data", str(data), "--epochs", "2"] + TINY
            if name == "foreign.npz":
                phrase = "holds no training state"  # a state dict cannot be resumed
        assert main(argv) == 1, name
        error_line(capsys, path.name, phrase)
    assert not marker.exists()  # nothing was unpickled
    assert not (tmp_path / "r.png").exists()


def test_missing_and_directory_checkpoint(tmp_path, tiny, capsys):
    data, _ = tiny
    assert main(["evaluate", "--model", str(tmp_path / "nope.npz"), "--data", str(data)]) == 1
    error_line(capsys, "nope.npz", "does not exist")
    assert main(["train", "--resume", str(tmp_path), "--data", str(data)] + TINY) == 1
    error_line(capsys, "is a directory")


def test_state_dict_file_evaluates_but_cannot_resume(tmp_path, tiny, capsys):
    data, _ = tiny
    path = tmp_path / "weights.npz"
    LeNet5(seed=0).save(path)
    assert main(["evaluate", "--model", str(path), "--data", str(data)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train", "--resume", str(path), "--data", str(data)] + TINY) == 1
    error_line(capsys, "holds no training state")


def test_other_format_checkpoint(tmp_path, tiny, capsys):
    data, good = tiny
    with np.load(good) as archive:
        entries = {k: archive[k] for k in archive.files}
    entries["format"] = np.array("fastconv.lenet.checkpoint/99")
    path = tmp_path / "future.npz"
    with open(path, "wb") as f:
        np.savez(f, **entries)
    assert main(["evaluate", "--model", str(path), "--data", str(data)]) == 1
    error_line(capsys, "future.npz", "checkpoint/99")
    entries["format"] = np.array("fastconv.lenet.checkpoint/1")
    entries["position"] = np.array("{not json")
    with open(path, "wb") as f:
        np.savez(f, **entries)
    assert main(["train", "--resume", str(path), "--data", str(data)] + TINY) == 1
    error_line(capsys, "damaged checkpoint", "'position'")


def test_truncated_checkpoint_in_a_subprocess(tmp_path, tiny):
    """End to end, as a user runs it: one line, status 1."""
    data, good = tiny
    path = tmp_path / "cut.npz"
    path.write_bytes(good.read_bytes()[:1000])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastconv.lenet",
            "evaluate",
            "--model",
            str(path),
            "--data",
            str(data),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cut.npz: truncated or corrupt archive" in result.stderr


# What pip writes as the fastconv-lenet console script.
CONSOLE_SCRIPT = """import re
import sys
from fastconv.lenet.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""
# Points in the command's start at which a Ctrl-C arrives: inside NumPy's import (its first
# submodule done), SciPy's, after the compiled kernels', after the command's own module's.
IMPORT_MARKS = ("numpy", "scipy", "fastconv._kernels.conv", "fastconv.lenet.cli")


def _sigint_default():
    """In the child: SIGINT back to its default. A shell starts background jobs (`cmd &`, as a
    CI runner may) with SIGINT ignored, which children inherit; Python then installs no
    KeyboardInterrupt handler, and these tests would measure the runner, not fastconv."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_after_import(command, mark, cwd):
    """Run `python -X importtime *command`, send SIGINT as soon as the import of `mark` (or of a
    submodule of it) is done; returns (exit status, stderr without the import-time lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", *command],
        preexec_fn=_sigint_default,  # SIGINT as a terminal delivers it
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a mark never seen: the command would go on
    watchdog.start()
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            name = line.rsplit("|", 1)[-1].strip()
            if line.startswith("import time:") and (name == mark or name.startswith(mark + ".")):
                proc.send_signal(signal.SIGINT)
                break
        lines += proc.stderr.readlines()
        status = proc.wait()
    finally:
        watchdog.cancel()
    return status, "".join(line for line in lines if not line.startswith("import time:"))


@pytest.mark.parametrize("entry", ["console script", "python -m"])
def test_ctrl_c_while_the_command_imports(tmp_path, tiny, entry):
    """Ctrl-C in the command's first ~0.3 s, while it imports NumPy, SciPy and fastconv, gave a
    20-40 line traceback and status -2; now one line and 130, as later. (Before fastconv's first
    line runs, Python's own start, no code of fastconv can catch it.)"""
    data, _ = tiny
    if entry == "console script":
        script = tmp_path / "fastconv-lenet"
        script.write_text(CONSOLE_SCRIPT)
        command = [str(script)]
    else:
        command = ["-m", "fastconv.lenet"]
    command += ["train", "--data", str(data), "--save", str(tmp_path / "c.npz")]
    command += ["--epochs", "1000"] + TINY  # still training when a late Ctrl-C arrives
    for mark in IMPORT_MARKS:
        status, err = ctrl_c_after_import(command, mark, tmp_path)
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 130 and "Traceback" not in err, (mark, status, err)
        assert len(lines) == 1 and lines[0].startswith("fastconv-lenet: interrupted"), (mark, err)


def test_ctrl_c_once_the_command_trains_still_saves_the_checkpoint(tmp_path, tiny):
    """The start's exit-at-once handling ends where main begins: a Ctrl-C while training stops
    at a batch boundary and saves, as before."""
    data, _ = tiny
    ckpt = tmp_path / "c.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastconv.lenet", "train", "--data", str(data)]
        + ["--save", str(ckpt), "--epochs", "1000"]
        + TINY,
        preexec_fn=_sigint_default,  # SIGINT as a terminal delivers it
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("epoch"):
            proc.send_signal(signal.SIGINT)
            break
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and err.count("\n") == 2, err  # an empty line, the message
    assert f"checkpoint saved to {ckpt}" in err and ckpt.is_file()


def test_only_the_command_exits_at_once_on_ctrl_c(monkeypatch, tmp_path):
    from fastconv._cli_start import started_as_command

    for argv, orig_argv, command in (
        (["/venv/bin/fastconv-lenet", "train"], None, True),
        (["/venv/Scripts/fastconv-lenet-script.py"], None, True),
        (["-m", "train"], ["python", "-m", "fastconv.lenet", "train"], True),
        (["-m"], ["python", "-X", "importtime", "-mfastconv.lenet"], True),
        (["-m"], ["python", "-m", "fastconv.other"], False),
        (["fastconv-lenet-tools.py"], None, False),
        (["-c"], ["python", "-c", "import fastconv"], False),
    ):
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.setattr(sys, "orig_argv", orig_argv, raising=False)
        assert started_as_command() is command, argv
    result = subprocess.run(
        [sys.executable, "-c", "import fastconv, signal; print(signal.getsignal(2).__name__)"],
        preexec_fn=_sigint_default,  # SIGINT as a terminal delivers it
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: `python -c` would import its unbuilt fastconv/
    )
    assert result.stdout == "default_int_handler\n", result  # a library user's Ctrl-C: untouched


def test_unexpected_error_is_one_line(tmp_path, tiny, capsys, monkeypatch):
    data, _ = tiny

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("fastconv.lenet.cli.evaluate", broken)
    argv = ["evaluate", "--model", str(tiny[1]), "--data", str(data)]
    assert main(argv) == 1
    error_line(capsys, "unexpected RuntimeError: boom second line", "FASTCONV_TRACEBACK=1")
    monkeypatch.setenv("FASTCONV_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(argv)


# ----------------------------------------------------------------- data


def test_missing_data(tmp_path, capsys, monkeypatch):
    assert main(["train", "--data", str(tmp_path / "nowhere")] + TINY) == 1
    error_line(capsys, "nowhere", "does not exist", "fastconv-lenet download", "--download")
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "cache"))
    assert main(["evaluate", "--model", "x.npz"]) == 1  # the model is checked first
    error_line(capsys, "x.npz")
    ckpt = tmp_path / "m.npz"
    LeNet5(seed=0).save(ckpt)
    assert main(["evaluate", "--model", str(ckpt)]) == 1
    error_line(
        capsys,
        "MNIST files not found in",
        str(tmp_path / "cache" / "mnist"),
        "FASTCONV_DATA",
        "--download",
    )
    (tmp_path / "file").write_text("x")
    assert main(["train", "--data", str(tmp_path / "file")] + TINY) == 1
    error_line(capsys, "is a file")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_corrupt_data(tmp_path, capsys, damage):
    root = write_idx_mnist(tmp_path / "mnist")
    victim = root / "t10k-images-idx3-ubyte.gz"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:500])
    elif damage == "garbage":
        victim.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    else:
        victim.unlink()
    assert main(["train", "--data", str(root), "--epochs", "1"] + TINY) == 1
    phrase = "missing t10k-images-idx3-ubyte.gz" if damage == "delete" else "cannot read MNIST"
    error_line(capsys, phrase, "t10k-images-idx3-ubyte")


# ----------------------------------------------------------------- unwritable paths


def test_unwritable_save_path_fails_before_training(tmp_path, tiny, capsys, monkeypatch):
    data, _ = tiny
    calls = []
    monkeypatch.setattr("fastconv.lenet.cli.fit", lambda *a, **k: calls.append(1))
    (tmp_path / "file").write_text("x")
    for save, phrase in (
        (tmp_path / "no" / "dir" / "c.npz", "does not exist"),
        (tmp_path / "file" / "c.npz", "is not a directory"),
        (tmp_path, "is a directory"),
    ):
        assert main(["train", "--data", str(data), "--save", str(save)] + TINY) == 1
        error_line(capsys, phrase)
    assert calls == []


def test_write_failure_during_training_is_one_line(tmp_path, tiny, capsys, monkeypatch):
    data, _ = tiny

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fastconv.lenet.state.save_npz_atomic", disk_full)
    assert (
        main(
            ["train", "--data", str(data), "--epochs", "1", "--save", str(tmp_path / "c.npz")]
            + TINY
        )
        == 1
    )
    error_line(capsys, "cannot write the checkpoint", "No space left on device")


# ----------------------------------------------------------------- epochs and history


def test_resume_epochs_are_unambiguous(tmp_path, tiny, capsys):
    data, _ = tiny
    ckpt = tmp_path / "run.npz"
    base = ["train", "--data", str(data), "--save", str(ckpt)] + TINY
    assert main(base + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(base + ["--resume", str(ckpt), "--epochs", "1"]) == 1
    error_line(capsys, "already trained 1 epoch", "--epochs is the total (1)", "--more-epochs")
    assert main(base + ["--resume", str(ckpt)]) == 0  # default --epochs 10 is a total too
    assert "epoch 10/10" in capsys.readouterr().out
    assert main(base + ["--resume", str(ckpt), "--more-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "training to epoch 12" in out and "epoch 12/12" in out and "epoch 10/" not in out
    with pytest.raises(SystemExit) as exc:
        main(base + ["--epochs", "3", "--more-epochs", "2"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
    # the history beside the checkpoint matches the one inside it
    csv_path, json_path = history_paths(ckpt)
    assert csv_path.name == "run.history.csv" and json_path.name == "run.history.json"
    with np.load(ckpt) as archive:
        inside = json.loads(str(archive["history"]))
    assert [h["epoch"] for h in inside] == list(range(1, 13))
    assert json.loads(json_path.read_text()) == inside
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0].keys() >= {"epoch", "train_loss", "test_accuracy"}
    assert [float(r["train_loss"]) for r in rows] == [h["train_loss"] for h in inside]
    assert read_history(csv_path) == [{k: h[k] for k in rows[0]} for h in inside]


def test_resume_with_another_training_set_size(tmp_path, tiny, capsys, monkeypatch):
    """The report: Ctrl-C in an epoch, then --resume with another --limit printed 'train acc
    747.50%' and wrote it into the history; now refused like a changed --batch-size."""
    data, _ = tiny  # 128 training images: 4 batches of 32
    ckpt = tmp_path / "run.npz"
    base = ["train", "--data", str(data), "--save", str(ckpt), "--epochs", "2"] + TINY
    step, steps = optim.Adam.step, []

    def step_then_ctrl_c(self):
        step(self)
        steps.append(1)
        if len(steps) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(optim.Adam, "step", step_then_ctrl_c)
    assert main(base) == 130
    assert "after batch 2/4" in capsys.readouterr().err
    monkeypatch.setattr(optim.Adam, "step", step)
    files = [ckpt, *history_paths(ckpt)]
    before = [f.read_bytes() if f.exists() else None for f in files]
    for fewer in ("32", "100"):
        assert main(base + ["--resume", str(ckpt), "--limit", fewer]) == 1
        error_line(capsys, "run.npz was trained on 128 training images", f"got {fewer}")
        assert [f.read_bytes() if f.exists() else None for f in files] == before
    # --limit above the data's size leaves the same 128 images: that run goes on
    assert main(base + ["--resume", str(ckpt), "--limit", "1000"]) == 0
    assert all(0 <= h["train_accuracy"] <= 1 for h in read_history(history_paths(ckpt)[1]))


def test_more_epochs_without_resume_and_architecture_on_resume(tmp_path, tiny, capsys):
    data, _ = tiny
    ckpt = tmp_path / "tanh.npz"
    base = ["train", "--data", str(data), "--save", str(ckpt)] + TINY
    assert main(base + ["--more-epochs", "1", "--activation", "tanh", "--pooling", "avg"]) == 0
    assert "epoch  1/1" in capsys.readouterr().out
    assert main(base + ["--resume", str(ckpt), "--more-epochs", "1", "--activation", "relu"]) == 1
    error_line(capsys, "activation 'tanh'", "drop --activation")
    assert main(base + ["--resume", str(ckpt), "--more-epochs", "1"]) == 0  # the saved model
    assert "LeNet-5 (tanh, avg pooling)" in capsys.readouterr().out


def test_train_header_names_the_thread_count(tmp_path, tiny, capsys):
    """The header said 'threads default' instead of the number of threads training runs on."""
    data, _ = tiny
    argv = ["train", "--data", str(data), "--epochs", "1", "--batch-size", "32", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f", threads {get_num_threads()}, " in out and "default" not in out
    assert main(argv + ["--threads", "1"]) == 0
    assert ", threads 1, " in capsys.readouterr().out


def test_train_without_save_says_the_model_is_not_kept(tmp_path, tiny, capsys):
    """Without --save the trained model was thrown away without a word."""
    data, _ = tiny
    argv = ["train", "--data", str(data), "--epochs", "1"] + TINY
    assert main(argv) == 0
    assert capsys.readouterr().err == (
        "fastconv-lenet: note: no --save given: the trained model will not be kept "
        "(--save PATH keeps it)\n"
    )
    assert main(argv + ["--save", str(tmp_path / "c.npz")]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------- download


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror (file:// URLs through the real download code) of tiny MNIST files."""
    src = write_idx_mnist(tmp_path / "mirror", n_train=64, n_test=32)
    files = {name: (src / name).read_bytes() for name in datasets.MNIST_FILES}
    monkeypatch.setattr(
        datasets, "MNIST_FILES", {n: (hashlib.md5(b).hexdigest(), len(b)) for n, b in files.items()}
    )
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (src.as_uri() + "/",))
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "cache"))
    return files


def test_download_command(tmp_path, mirror, capsys):
    root = tmp_path / "cache" / "mnist"  # $FASTCONV_DATA/mnist
    assert main(["download"]) == 0
    captured = capsys.readouterr()
    assert (
        f"MNIST ready in {root}: 64 training and 32 test images (4 of 4 files MD5-verified)"
        in captured.out
    )
    assert "downloading 4 MNIST file(s)" in captured.err
    assert sorted(p.name for p in root.iterdir()) == sorted(mirror)
    assert main(["download"]) == 0  # all there: nothing fetched, checked again
    assert "downloading" not in capsys.readouterr().err
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"changed"))
    assert main(["download"]) == 1
    error_line(capsys, "MD5 mismatch for t10k-labels-idx1-ubyte.gz", "delete it")


def test_download_shows_progress_on_a_terminal(tmp_path, mirror, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["download"]) == 0
    text = terminal.getvalue()
    for name in datasets.MNIST_FILES:  # one tqdm bar per file, named after it
        assert f"{name}:" in text and "%|" in text, text


def test_train_download_into_default_directory(tmp_path, mirror, capsys):
    ckpt = tmp_path / "c.npz"
    assert main(["train", "--epochs", "1", "--save", str(ckpt)] + TINY) == 1
    error_line(capsys, "MNIST files not found", "--download")
    assert main(["train", "--download", "--epochs", "1", "--save", str(ckpt)] + TINY) == 0
    assert "64 training / 32 test images" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(ckpt)]) == 0  # no --data: the default directory
    assert "in 32 images" in capsys.readouterr().out


def test_download_failures(tmp_path, mirror, monkeypatch, capsys):
    target = tmp_path / "d"
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ((tmp_path / "gone").as_uri() + "/",))
    assert main(["download", "--data", str(target)]) == 1
    error_line(capsys, "download failed", "train-images-idx3-ubyte.gz", "by hand")
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ((tmp_path / "mirror").as_uri() + "/",))
    name = "train-labels-idx1-ubyte.gz"
    monkeypatch.setitem(datasets.MNIST_FILES, name, ("0" * 32, len(mirror[name])))
    assert main(["download", "--data", str(target)]) == 1
    error_line(capsys, "download failed", "MD5 mismatch")
    assert not (target / name).exists()  # nothing unverified left behind
    (tmp_path / "a-file").write_text("x")
    assert main(["download", "--data", str(tmp_path / "a-file")]) == 1
    error_line(capsys, "is a file")


# ----------------------------------------------------------------- report


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data


def test_report_renders_a_png(tmp_path, tiny, capsys):
    pytest.importorskip("matplotlib")
    data, ckpt = tiny
    out = tmp_path / "report.png"
    assert (
        main(
            [
                "report",
                "--model",
                str(ckpt),
                "--data",
                str(data),
                "--out",
                str(out),
                "--dpi",
                "40",
                "--digit",
                "3",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    width, height, raw = png_size(out)
    assert (width, height) == (13 * 40, 420)
    # a real picture, not a blank canvas: the decoded pixels vary a lot
    from matplotlib.image import imread

    pixels = imread(out)
    assert pixels.std() > 0.1 and len(zlib.compress(raw)) > 10_000
    assert (
        main(
            [
                "report",
                "--model",
                str(ckpt),
                "--data",
                str(data),
                "--out",
                str(out),
                "--digit",
                "40",
            ]
        )
        == 1
    )
    error_line(capsys, "--digit 40 is out of range", "40 images")


def test_report_reads_at_a_glance_after_one_epoch(tmp_path, monkeypatch):
    """After one epoch each curve is one point: every point has a marker and its value beside
    it, the legend sits off the data (inside, it hid the train-accuracy point), and the
    confusion matrix, the filters and both layers' feature maps have colour bars."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from fastconv.lenet.report import render_report

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))
    )
    rng = np.random.default_rng(0)
    images = rng.random((20, 1, 32, 32)).astype(np.float32)
    labels = np.arange(20) % 10
    history = [dict(epoch=1, train_loss=1.87, train_accuracy=0.36, test_accuracy=0.77)]
    render_report(LeNet5(seed=0), images, labels, tmp_path / "r.png", history=history, dpi=30)
    (fig,) = drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # the layout as saved
    axes = {ax.get_title().split(" (")[0]: ax for ax in fig.get_axes()}
    loss, accuracy = axes["training loss"], axes["accuracy"]
    for ax, values in ((loss, ["1.8700"]), (accuracy, ["36.00%", "77.00%"])):
        lines = ax.get_lines()
        assert lines and all(line.get_marker() not in (None, "", "None") for line in lines)
        assert sorted(t.get_text() for t in ax.texts) == values  # each last value labelled
    legend = accuracy.get_legend()
    assert legend is not None
    assert not legend.get_window_extent(renderer).overlaps(accuracy.get_window_extent(renderer))
    bars = sorted(ax.get_ylabel() for ax in fig.get_axes() if hasattr(ax, "_colorbar"))
    assert bars == ["activation", "activation", "share of the true digit's images", "weight"]


def test_report_of_a_saved_model_without_history(tmp_path, tiny, capsys):
    pytest.importorskip("matplotlib")
    data, _ = tiny
    model = tmp_path / "weights.npz"
    LeNet5(seed=0).save(model)
    out = tmp_path / "r.png"
    assert (
        main(
            ["report", "--model", str(model), "--data", str(data), "--out", str(out), "--dpi", "30"]
        )
        == 0
    )
    assert png_size(out)[:2] == (390, 315)
    assert (
        main(
            [
                "report",
                "--model",
                str(model),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "no" / "r.png"),
            ]
        )
        == 1
    )
    error_line(capsys, "cannot write --out", "does not exist")


def test_report_without_matplotlib(tmp_path, tiny, capsys, monkeypatch):
    data, ckpt = tiny
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert (
        main(
            ["report", "--model", str(ckpt), "--data", str(data), "--out", str(tmp_path / "r.png")]
        )
        == 1
    )
    error_line(capsys, "needs matplotlib", 'pip install "fastconv[plot]"')
    assert not (tmp_path / "r.png").exists()


def test_report_on_real_mnist(tmp_path, mnist_dir, capsys):
    pytest.importorskip("matplotlib")
    ckpt, out = tmp_path / "lenet.npz", tmp_path / "report.png"
    assert (
        main(
            [
                "train",
                "--data",
                str(mnist_dir),
                "--limit",
                "1000",
                "--epochs",
                "2",
                "--save",
                str(ckpt),
            ]
            + TINY
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "--model",
                str(ckpt),
                "--data",
                str(mnist_dir),
                "--limit",
                "1000",
                "--out",
                str(out),
                "--dpi",
                "50",
            ]
        )
        == 0
    )
    assert "on 1000 images" in capsys.readouterr().out
    assert png_size(out)[:2] == (650, 525)


def test_real_mnist_fixture_reads_the_environment(monkeypatch, tmp_path):
    from conftest import real_mnist_dir

    monkeypatch.setenv("FASTCONV_MNIST", str(tmp_path))
    assert real_mnist_dir() == tmp_path.resolve()
    monkeypatch.setenv("FASTCONV_MNIST", str(tmp_path / "absent"))
    assert real_mnist_dir() is None
    assert os.environ["FASTCONV_MNIST"].endswith("absent")


def test_evaluate_on_a_local_dask_cluster(tmp_path, tiny, capsys):
    pytest.importorskip("distributed")
    data, _ = tiny
    path = tmp_path / "weights.npz"
    LeNet5(seed=0).save(path)
    args = ["evaluate", "--model", str(path), "--data", str(data), "--batch-size", "7"]
    assert main(args) == 0
    in_memory = capsys.readouterr().out
    assert main(args + ["--scheduler", "local", "--workers", "2"]) == 0
    assert capsys.readouterr().out == in_memory  # same accuracy and confusion matrix
    assert main(args + ["--scheduler", "tcp://127.0.0.1:1"]) == 1
    error_line(capsys, "cannot reach the Dask scheduler tcp://127.0.0.1:1")


def test_evaluate_on_a_local_cluster_sends_no_large_graph(tmp_path):
    """evaluate --scheduler local put the test images and, once per chunk, the weights into the
    task graph: distributed printed a 5-line 'Sending large graph' UserWarning to the user.
    3000 images (12 MB) in chunks of 50 (60 copies of the 0.25 MB weights) each pass its
    10 MB threshold alone."""
    pytest.importorskip("distributed")
    data = write_idx_mnist(tmp_path / "mnist", n_train=32, n_test=3000)
    model = tmp_path / "weights.npz"
    LeNet5(seed=0).save(model)
    result = subprocess.run(
        [sys.executable, "-m", "fastconv.lenet", "evaluate", "--model", str(model)]
        + ["--data", str(data), "--batch-size", "50", "--scheduler", "local", "--workers", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "in 3000 images" in result.stdout
    # (Only this warning: on a loaded machine distributed may warn that creating its scratch
    # directories took over 1 s, a UserWarning that has nothing to do with the graph.)
    assert "Sending large graph" not in output, output
