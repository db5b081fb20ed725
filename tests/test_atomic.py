"""fastconv._atomic: atomic replacement of files."""

import os
import stat

import numpy as np
import pytest

from fastconv._atomic import atomic_write, save_npz_atomic


class Boom(Exception):
    pass


def _listing(d):
    return sorted(p.name for p in d.iterdir())


def test_success_creates_file(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_write(target) as f:
        f.write(b"hello")
        # Until the block ends, the target does not exist; only a temp file beside it.
        assert not target.exists()
        (tmp,) = [p for p in tmp_path.iterdir()]
        assert tmp.name.startswith(".out.bin.") and tmp.name.endswith(".tmp")
    assert target.read_bytes() == b"hello"
    assert _listing(tmp_path) == ["out.bin"]


def test_success_replaces_existing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")
    with atomic_write(str(target)) as f:
        f.write(b"new")
        assert target.read_bytes() == b"old contents"
    assert target.read_bytes() == b"new"
    assert _listing(tmp_path) == ["out.bin"]


def test_exception_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_bytes(b"precious")
    with pytest.raises(Boom):
        with atomic_write(target) as f:
            f.write(b"partial data that must not land")
            raise Boom()
    assert target.read_bytes() == b"precious"
    assert _listing(tmp_path) == ["keep.txt"]


def test_exception_without_existing_target_leaves_nothing(tmp_path):
    target = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as f:
            f.write(b"x" * 100000)
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_text_mode(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_write(target, "w", encoding="utf-8") as f:
        f.write("héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"


def test_bad_mode_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "rb"):
            pass
    assert _listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions(tmp_path):
    new = tmp_path / "new.bin"
    with atomic_write(new) as f:
        f.write(b"1")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600

    old = tmp_path / "old.bin"
    old.write_bytes(b"0")
    os.chmod(old, 0o640)
    with atomic_write(old) as f:
        f.write(b"1")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640


def test_save_npz_atomic_uses_path_as_given(tmp_path):
    target = tmp_path / "checkpoint"  # no .npz suffix: np.savez(str) would add one
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_npz_atomic(str(target), a=a, epoch=3, name="lenet", path=np.ones(2))
    assert _listing(tmp_path) == ["checkpoint"]
    with np.load(target) as z:
        np.testing.assert_array_equal(z["a"], a)
        assert z["a"].dtype == np.float32
        assert int(z["epoch"]) == 3
        assert str(z["name"]) == "lenet"
        np.testing.assert_array_equal(z["path"], np.ones(2))


def test_save_npz_atomic_failure_keeps_old(tmp_path):
    target = tmp_path / "ckpt.npz"
    save_npz_atomic(target, a=np.zeros(3))

    class Unsaveable:
        def __array__(self, *args, **kwargs):
            raise Boom()

    with pytest.raises(Boom):
        save_npz_atomic(target, a=np.ones(3), b=Unsaveable())
    with np.load(target) as z:
        np.testing.assert_array_equal(z["a"], np.zeros(3))
        assert list(z.keys()) == ["a"]
    assert _listing(tmp_path) == ["ckpt.npz"]
