"""fastconv.datasets: IDX reading, MNIST loading and the download logic (network mocked)."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from fastconv import datasets
from fastconv.datasets import DatasetError, DownloadError, mnist, read_idx

CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
NATIVE = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}
REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def idx_bytes(arr, code=0x08):
    """Serialise ``arr`` as IDX by hand (independent of the reader under test)."""
    arr = np.asarray(arr)
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">i", n) for n in arr.shape)
    return header + arr.astype(CODES[code]).tobytes()


def sample(code, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(NATIVE[code])
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 1, 3, 2)])
def test_round_trip(tmp_path, code, shape, compress):
    arr = sample(code, shape)
    data = idx_bytes(arr, code)
    if compress:
        data = gzip.compress(data)
    path = tmp_path / "no-extension-hint"  # gzip detected by magic bytes, not by name
    path.write_bytes(data)
    out = read_idx(path)
    assert out.dtype == NATIVE[code]
    assert out.dtype.isnative
    assert out.shape == shape
    assert out.flags.writeable
    np.testing.assert_array_equal(out, arr)


def test_known_bytes(tmp_path):
    # int16 values 1, -2, 258 big-endian, written out by hand.
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 3]) + bytes([0, 1, 0xFF, 0xFE, 1, 2])
    (tmp_path / "a.idx").write_bytes(data)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), np.array([1, -2, 258], np.int16))


def test_gz_named_raw_file(tmp_path):
    path = tmp_path / "labels.gz"  # misleading name: the content is raw
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)))
    np.testing.assert_array_equal(read_idx(path), np.arange(5))


def test_empty_dimension(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


def _expect_error(path, match):
    with pytest.raises(DatasetError, match=match) as exc:
        read_idx(path)
    assert str(path) in str(exc.value)
    assert exc.value.path == str(path)
    assert isinstance(exc.value, ValueError)
    return exc.value


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_truncated(tmp_path, compress):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:1000]
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    err = _expect_error(path, "truncated")
    assert f"expected {16 + 7840} bytes" in str(err)
    assert "1000" in str(err)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_trailing_bytes(tmp_path, compress):
    data = idx_bytes(np.zeros((3, 2), np.int32), 0x0C) + b"\x00"
    path = tmp_path / "t.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    err = _expect_error(path, "trailing bytes")
    assert "expected 36 bytes" in str(err) and "37" in str(err)


def test_truncated_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))  # says 3 dims, has 1
    _expect_error(path, "truncated header")


@pytest.mark.parametrize("data", [b"", b"\x00\x00"], ids=["empty", "2-bytes"])
def test_too_short(tmp_path, data):
    path = tmp_path / "short.idx"
    path.write_bytes(data)
    _expect_error(path, "too short")


@pytest.mark.parametrize("first", [b"\x01\x00", b"\x00\x07", b"PK"])
def test_bad_magic(tmp_path, first):
    path = tmp_path / "bad.idx"
    path.write_bytes(first + bytes([8, 1, 0, 0, 0, 1, 5]))
    _expect_error(path, "not an IDX file")


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_bad_dtype_code(tmp_path, code):
    path = tmp_path / "code.idx"
    path.write_bytes(bytes([0, 0, code, 1, 0, 0, 0, 1, 5]))
    _expect_error(path, "unknown IDX type code")


def test_ndim_zero(tmp_path):
    path = tmp_path / "zero.idx"
    path.write_bytes(bytes([0, 0, 8, 0, 5]))
    _expect_error(path, "ndim 0")


def test_negative_dim(tmp_path):
    path = tmp_path / "neg.idx"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">i", -1))
    _expect_error(path, "negative dimension")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda gz: gz[: len(gz) // 2],  # stream cut short -> EOFError
        lambda gz: gz[:20] + bytes(b ^ 0x5A for b in gz[20:-8]) + gz[-8:],  # garbage deflate data
        lambda gz: gz[:-8] + b"\x00" * 8,  # CRC/size trailer wrong
        lambda gz: gz[:2] + b"\x09" + gz[3:],  # unknown compression method -> BadGzipFile
    ],
    ids=["cut", "garbage", "crc", "method"],
)
def test_corrupt_gzip(tmp_path, mangle):
    gz = gzip.compress(idx_bytes(sample(0x08, (50, 28, 28))))
    path = tmp_path / "corrupt.gz"
    path.write_bytes(mangle(gz))
    _expect_error(path, "corrupt gzip")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------- mnist()

NAMES = list(datasets.MNIST_FILES)  # train-images, train-labels, t10k-images, t10k-labels


def write_tiny_mnist(root, n_train=5, n_test=3, compress=True, seed=0):
    """Four small IDX files with the standard names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays[NAMES[0]][0, 0, 0] = 255  # make sure both extremes are present
    arrays[NAMES[0]][0, 0, 1] = 0
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if compress:
            (root / name).write_bytes(gzip.compress(data))
        else:
            (root / name[:-3]).write_bytes(data)
    return arrays


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_mnist_tiny(tmp_path, compress):
    arrays = write_tiny_mnist(tmp_path, compress=compress)
    d = mnist(tmp_path)
    assert isinstance(d, datasets.MNIST)
    assert d.train_images.shape == (5, 1, 32, 32) and d.test_images.shape == (3, 1, 32, 32)
    assert d.train_images.dtype == np.float32
    assert d.train_labels.dtype == np.int64 and d.train_labels.shape == (5,)
    np.testing.assert_array_equal(d.train_labels, arrays[NAMES[1]])
    np.testing.assert_array_equal(d.test_labels, arrays[NAMES[3]])
    # Interior = pixel / 255 (correctly rounded), border = 0.
    expected = arrays[NAMES[0]].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(d.train_images[:, 0, 2:30, 2:30], expected)
    np.testing.assert_array_equal(
        d.test_images[:, 0, 2:30, 2:30], arrays[NAMES[2]].astype(np.float32) / np.float32(255)
    )
    border = d.train_images.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    assert d.train_images.min() == 0.0 and d.train_images.max() == 1.0


def test_mnist_padding_and_dtype(tmp_path):
    arrays = write_tiny_mnist(tmp_path)
    d = mnist(tmp_path, padding=0, dtype=np.float64)
    assert d.train_images.shape == (5, 1, 28, 28) and d.train_images.dtype == np.float64
    np.testing.assert_array_equal(d.train_images[:, 0], arrays[NAMES[0]] / 255.0)
    d = mnist(str(tmp_path), padding=3)
    assert d.test_images.shape == (3, 1, 34, 34)


@pytest.mark.parametrize(
    "kwargs", [{"padding": -1}, {"padding": 1.5}, {"dtype": np.int32}, {"padding": True}]
)
def test_mnist_bad_arguments(tmp_path, kwargs):
    write_tiny_mnist(tmp_path)
    with pytest.raises(ValueError):
        mnist(tmp_path, **kwargs)


def test_mnist_mixed_gz_and_raw(tmp_path):
    write_tiny_mnist(tmp_path)
    raw = gzip.decompress((tmp_path / NAMES[1]).read_bytes())
    (tmp_path / NAMES[1]).unlink()
    (tmp_path / NAMES[1][:-3]).write_bytes(raw)
    assert mnist(tmp_path).train_labels.shape == (5,)


def test_mnist_missing_files_message(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / NAMES[0]).unlink()
    (tmp_path / NAMES[3]).unlink()
    with pytest.raises(FileNotFoundError) as exc:
        mnist(tmp_path)
    msg = str(exc.value)
    assert NAMES[0] in msg and NAMES[3] in msg
    assert NAMES[1] not in msg and NAMES[2] not in msg  # only what is missing
    assert str(tmp_path) in msg
    assert "download=True" in msg


def test_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        mnist(tmp_path / "absent")
    assert all(name in str(exc.value) for name in NAMES)
    assert not (tmp_path / "absent").exists()  # download=False creates nothing


def test_mnist_count_mismatch(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / NAMES[1]).write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DatasetError, match="4 labels but 5 images") as exc:
        mnist(tmp_path)
    assert NAMES[1] in str(exc.value)


def test_mnist_label_out_of_range(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / NAMES[3]).write_bytes(idx_bytes(np.array([1, 10, 2], np.uint8)))
    with pytest.raises(DatasetError, match="0..9") as exc:
        mnist(tmp_path)
    assert NAMES[3] in str(exc.value)


@pytest.mark.parametrize(
    "images, code",
    [
        (np.zeros((5, 28, 27), np.uint8), 0x08),
        (np.zeros((5, 784), np.uint8), 0x08),
        (np.zeros((5, 28, 28), np.float32), 0x0D),
    ],
    ids=["28x27", "2-D", "float"],
)
def test_mnist_bad_images(tmp_path, images, code):
    write_tiny_mnist(tmp_path)
    (tmp_path / NAMES[0]).write_bytes(idx_bytes(images, code))
    with pytest.raises(DatasetError, match="uint8 images") as exc:
        mnist(tmp_path)
    assert NAMES[0] in str(exc.value)


def test_mnist_bad_labels(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / NAMES[1]).write_bytes(idx_bytes(np.zeros((5, 1), np.uint8)))
    with pytest.raises(DatasetError, match="uint8 labels"):
        mnist(tmp_path)


# ------------------------------------------------------------------ download (mocked)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Replace the network: ``_fetch`` serves bytes from a dict keyed by URL.

    Each served file's MD5 is installed as the expected checksum, so tiny
    synthetic files stand in for the real ones.
    """
    src = tmp_path / "src"
    arrays = write_tiny_mnist(src)
    files = {name: (src / name).read_bytes() for name in NAMES}
    monkeypatch.setattr(
        datasets,
        "MNIST_FILES",
        {n: (hashlib.md5(b).hexdigest(), len(b)) for n, b in files.items()},
    )
    mirrors = ("https://mirror-a.invalid/mnist/", "https://mirror-b.invalid/mnist/")
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", mirrors)

    class Server:
        def __init__(self):
            self.files = files
            self.arrays = arrays
            self.mirrors = mirrors
            self.calls = []
            self.routes = {}  # url -> callable(fileobj) overriding the default

        def fetch(self, url, fileobj, **kwargs):
            self.calls.append(url)
            if url in self.routes:
                return self.routes[url](fileobj)
            name = url.rsplit("/", 1)[-1]
            if url.startswith(mirrors[0]) and name in self.files:
                data = self.files[name]
                for i in range(0, len(data), 1000):  # chunked, like the real thing
                    fileobj.write(data[i : i + 1000])
                return len(data)
            raise OSError(f"<urlopen error mock: {url} unreachable>")

    s = Server()
    monkeypatch.setattr(datasets, "_fetch", s.fetch)
    return s


def test_download_success(tmp_path, server):
    root = tmp_path / "data" / "nested"  # created on demand
    d = mnist(root, download=True)
    assert server.calls == [server.mirrors[0] + n for n in NAMES]
    assert sorted(p.name for p in root.iterdir()) == sorted(NAMES)  # no temp files left
    for name in NAMES:
        assert (root / name).read_bytes() == server.files[name]
    np.testing.assert_array_equal(d.train_labels, server.arrays[NAMES[1]])
    # Second call: everything present, nothing fetched.
    server.calls.clear()
    mnist(root, download=True)
    assert server.calls == []


def test_download_only_missing(tmp_path, server):
    root = tmp_path / "root"
    write_tiny_mnist(root)
    (root / NAMES[2]).unlink()
    mnist(root, download=True)
    assert server.calls == [server.mirrors[0] + NAMES[2]]


def test_download_falls_back_to_second_mirror(tmp_path, server):
    a, b = server.mirrors
    for name in NAMES:
        server.routes[a + name] = lambda f: (_ for _ in ()).throw(OSError("connection refused"))
        server.routes[b + name] = (lambda data: lambda f: f.write(data))(server.files[name])
    mnist(tmp_path, download=True)
    assert server.calls[:2] == [a + NAMES[0], b + NAMES[0]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "src") == sorted(NAMES)


def test_download_checksum_mismatch_leaves_no_file(tmp_path, server):
    root = tmp_path / "root"
    bad = b"\x1f\x8b" + b"not the real file" * 100
    for m in server.mirrors:
        server.routes[m + NAMES[0]] = lambda f: f.write(bad)
    with pytest.raises(DownloadError) as exc:
        mnist(root, download=True)
    msg = str(exc.value)
    assert "MD5 mismatch" in msg
    assert all(m + NAMES[0] in msg for m in server.mirrors)  # every URL tried is named
    assert str(root) in msg  # where to put the file by hand
    assert not (root / NAMES[0]).exists()
    assert list(root.iterdir()) == []  # no partial/temp files either


def test_download_checksum_mismatch_then_good_mirror(tmp_path, server):
    a, b = server.mirrors
    server.routes[a + NAMES[3]] = lambda f: f.write(b"corrupted")
    server.routes[b + NAMES[3]] = lambda f: f.write(server.files[NAMES[3]])
    d = mnist(tmp_path / "r", download=True)
    assert (tmp_path / "r" / NAMES[3]).read_bytes() == server.files[NAMES[3]]
    np.testing.assert_array_equal(d.test_labels, server.arrays[NAMES[3]])


def test_download_network_unreachable(tmp_path, server):
    server.files = {}  # nothing served anywhere
    root = tmp_path / "offline"
    with pytest.raises(DownloadError) as exc:
        mnist(root, download=True)
    assert isinstance(exc.value, OSError)
    msg = str(exc.value)
    assert all(m + NAMES[0] in msg for m in server.mirrors)
    assert "unreachable" in msg and str(root) in msg
    assert all(name in msg for name in NAMES)  # every file still to be put there by hand
    assert list(root.iterdir()) == []


def test_download_failure_mid_stream_leaves_no_file(tmp_path, server):
    def half_then_reset(f):
        f.write(server.files[NAMES[0]][:500])
        raise ConnectionResetError("connection reset by peer")

    for m in server.mirrors:
        server.routes[m + NAMES[0]] = half_then_reset
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="ConnectionResetError"):
        mnist(root, download=True)
    assert list(root.iterdir()) == []


def test_download_interrupted_leaves_no_file(tmp_path, server):
    def interrupted(f):
        f.write(b"\x1f\x8b partial")
        raise KeyboardInterrupt

    server.routes[server.mirrors[0] + NAMES[0]] = interrupted
    root = tmp_path / "root"
    with pytest.raises(KeyboardInterrupt):  # not swallowed, not retried
        mnist(root, download=True)
    assert list(root.iterdir()) == []


def test_fetch_offline_is_an_oserror(tmp_path, monkeypatch):
    """The real _fetch turns a connection failure into an OSError (no network touched)."""
    import io
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("mock: network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(OSError):
        datasets._fetch("https://example.invalid/x.gz", io.BytesIO())


def test_fetch_writes_chunks_and_checks_length(monkeypatch):
    """The real _fetch copies the response body and rejects a short body."""
    import io
    import urllib.request

    class Response(io.BytesIO):
        def __init__(self, body, length):
            super().__init__(body)
            self.headers = {"Content-Length": str(length)}

    body = bytes(range(256)) * 1000
    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout: Response(body, len(body)))
    out = io.BytesIO()
    assert datasets._fetch("https://example.invalid/x.gz", out) == len(body)
    assert out.getvalue() == body

    monkeypatch.setattr(
        urllib.request, "urlopen", lambda req, timeout: Response(body, len(body) + 1)
    )
    with pytest.raises(OSError, match="incomplete"):
        datasets._fetch("https://example.invalid/x.gz", io.BytesIO())


# --------------------------------------------------------------------------- real MNIST


def test_real_mnist_checksums():
    if not REAL_MNIST.is_dir():
        pytest.skip(f"real MNIST not found in {REAL_MNIST}")
    for name, (md5, size) in datasets.MNIST_FILES.items():
        data = (REAL_MNIST / name).read_bytes()
        assert len(data) == size
        assert hashlib.md5(data).hexdigest() == md5


def test_real_mnist():
    if not REAL_MNIST.is_dir():
        pytest.skip(f"real MNIST not found in {REAL_MNIST}")
    d = mnist(REAL_MNIST)
    assert d.train_images.shape == (60000, 1, 32, 32)
    assert d.test_images.shape == (10000, 1, 32, 32)
    assert d.train_images.dtype == np.float32 and d.train_labels.dtype == np.int64
    assert d.train_labels.shape == (60000,) and d.test_labels.shape == (10000,)
    # Published class counts.
    assert np.bincount(d.train_labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(d.test_labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    for x in (d.train_images, d.test_images):
        assert x.min() == 0.0 and x.max() == 1.0
        assert not x[:, :, :2].any() and not x[:, :, -2:].any()  # zero padding
        assert not x[:, :, :, :2].any() and not x[:, :, :, -2:].any()
    # Mean pixel of the 28x28 training images is the well-known 0.1307.
    assert abs(float(d.train_images[:, 0, 2:30, 2:30].mean(dtype=np.float64)) - 0.1307) < 1e-3
    # First training label is 5, first test label is 7.
    assert d.train_labels[0] == 5 and d.test_labels[0] == 7
