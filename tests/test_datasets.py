"""Readers of idx (MNIST / Fashion-MNIST) and ADBench files, and the bundled digits problem."""

import gzip
import struct

import numpy as np
import pytest

from aedetect.datasets import (
    FASHION_MNIST_CLASSES,
    load_adbench,
    load_digits_outliers,
    load_fashion_mnist,
    load_idx,
)

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
              np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array):
    """The idx encoding of ``array``: magic, big-endian sizes, big-endian values."""
    array = np.asarray(array)
    header = bytes([0, 0, TYPE_CODES[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, compress=False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES), ids=lambda t: t.__name__)
def test_load_idx_round_trips_every_type(tmp_path, dtype, compress):
    rng = np.random.RandomState(0)
    array = (rng.uniform(-100, 100, size=(3, 4, 5))).astype(dtype)
    if dtype is np.uint8:
        array = rng.randint(0, 256, size=(3, 4, 5)).astype(np.uint8)
    loaded = load_idx(write(tmp_path / "a.idx", idx_bytes(array), compress))
    assert loaded.shape == (3, 4, 5)
    assert loaded.dtype == np.dtype(dtype)  # native byte order
    np.testing.assert_array_equal(loaded, array)


def test_load_idx_detects_gzip_from_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gzipped_without_suffix = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), True)
    np.testing.assert_array_equal(load_idx(gzipped_without_suffix), labels)


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize("data, message", [
    (b"", "not an idx file"),
    (b"\x01\x00\x08\x01" + GOOD[4:], "not an idx file"),
    (b"\x00\x00\x07\x03" + GOOD[4:], "type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (GOOD[:10], "truncated: its header declares 3 dimensions"),
    (GOOD[:-1], r"is truncated: its header declares shape \(2, 3, 4\)"),
    (GOOD + b"\x00", "followed by unexpected bytes"),
], ids=["empty", "bad-magic", "bad-type", "no-dims", "short-header", "short-data", "trailing"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_idx_rejects_malformed_files(tmp_path, data, message, compress):
    path = write(tmp_path / "bad.idx", data, compress)
    with pytest.raises(ValueError, match=message):
        load_idx(path)


def test_load_idx_rejects_corrupt_gzip(tmp_path):
    path = write(tmp_path / "bad.gz", gzip.compress(GOOD)[:-8])
    with pytest.raises(ValueError, match="looks gzipped but cannot be decompressed"):
        load_idx(path)


def fake_fashion_mnist(directory, n_train=6, n_test=4, compress=True):
    rng = np.random.RandomState(0)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = (np.arange(n) % 10).astype(np.uint8)
        write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), compress)
        write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), compress)
    return directory


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_fashion_mnist_shapes_and_scaling(tmp_path, compress):
    fake_fashion_mnist(tmp_path, compress=compress)
    X, y = load_fashion_mnist(tmp_path, "train")
    assert X.shape == (6, 28, 28) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(y, np.arange(6))
    assert y.dtype == np.int64
    X_test, y_test = load_fashion_mnist(tmp_path, "test")
    assert X_test.shape == (4, 28, 28) and y_test.shape == (4,)
    assert len(FASHION_MNIST_CLASSES) == 10


def test_load_fashion_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path, "train")
    fake_fashion_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)), True)
    with pytest.raises(ValueError, match=r"do not match: images of shape \(6, 28, 28\)"):
        load_fashion_mnist(tmp_path, "train")


def test_load_adbench_reads_X_and_y(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "data.npz", X=X.astype(np.float32), y=np.array([0, 1, 0, 0]))
    X_loaded, y = load_adbench(tmp_path / "data.npz")
    assert X_loaded.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X_loaded, X)
    np.testing.assert_array_equal(y, [0, 1, 0, 0])


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((3, 2))}, "has no y"),
    ({"features": np.zeros((3, 2))}, "has no X or y"),
    ({"X": np.zeros(3), "y": np.zeros(3)}, "expected X of shape"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "expected X of shape"),
    ({"X": np.zeros((3, 2)), "y": np.array([0, 1, 2])}, "y must hold 0"),
    ({"X": np.array([[1, "a"]], dtype=object), "y": np.zeros(1)}, "must be numeric"),
], ids=["no-y", "no-X", "1d-X", "length", "labels", "object"])
def test_load_adbench_rejects_malformed_files(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_adbench(tmp_path / "bad.npz")


def test_load_adbench_rejects_files_that_are_not_npz(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("X,y\n1,0\n")
    for name in ("single.npy", "text.npz"):
        with pytest.raises(ValueError, match="is not an .npz archive"):
            load_adbench(tmp_path / name)


def test_load_digits_outliers_share_and_labels():
    X, y = load_digits_outliers(contamination=0.05, random_state=0)
    assert X.shape == (y.size, 64)
    assert abs(y.mean() - 0.05) < 0.005
    X_again, y_again = load_digits_outliers(contamination=0.05, random_state=0)
    np.testing.assert_array_equal(X, X_again)
    np.testing.assert_array_equal(y, y_again)
