"""Datasets: data that ships with the installed packages, and readers for the files
of the usual outlier-detection benchmarks.

- :func:`load_digits_outliers`: scikit-learn's digits as an outlier problem (bundled).
- :func:`load_idx`: one idx file (the MNIST / Fashion-MNIST format), gzipped or not.
- :func:`load_fashion_mnist`: a split of Fashion-MNIST from its four idx files.
- :func:`load_adbench`: an ADBench ``.npz`` file (``X`` and 0/1 labels ``y``).
- :func:`write_memmap`: chunks of rows (any iterable) written to one file and opened as
  a ``numpy.memmap``, so ``fit`` can stream data that does not fit in memory.

Nothing here downloads: the readers take files you already have.
"""

import gzip
import zipfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state

#: Fashion-MNIST's class names, indexed by label.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

#: idx type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def load_digits_outliers(normal_digits=(0, 1, 2, 3, 4), outlier_digit=7,
                         contamination=0.05, random_state=0, as_frame=False):
    """scikit-learn's 8x8 digits as an outlier-detection problem.

    Every image of ``normal_digits`` is an inlier; images of ``outlier_digit`` are
    sampled so that they make up ``contamination`` of the rows. Pixel values are
    0 to 16. No download: the images ship with scikit-learn.

    Parameters
    ----------
    normal_digits : sequence of int, default=(0, 1, 2, 3, 4)
    outlier_digit : int, default=7
    contamination : float in (0, 0.5), default=0.05
        Share of outliers among the returned rows.
    random_state : int, RandomState instance or None, default=0
        Chooses which outlier images are kept and shuffles the rows.
    as_frame : bool, default=False
        Return ``X`` as a pandas DataFrame with columns ``pixel_0_0`` ... ``pixel_7_7``.

    Returns
    -------
    X : ndarray or DataFrame of shape (n_samples, 64)
    y : ndarray of shape (n_samples,)
        1 for outliers, 0 for inliers (the ADBench convention).
    """
    if not 0.0 < contamination < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination!r}.")
    if outlier_digit in normal_digits:
        raise ValueError(f"outlier_digit={outlier_digit} is also in normal_digits.")
    rng = check_random_state(random_state)
    digits = load_digits(as_frame=as_frame)
    data, target = digits.data, np.asarray(digits.target)
    normal = np.flatnonzero(np.isin(target, normal_digits))
    n_outliers = max(1, int(round(contamination * normal.size / (1 - contamination))))
    candidates = np.flatnonzero(target == outlier_digit)
    outliers = rng.choice(candidates, size=min(n_outliers, candidates.size), replace=False)
    rows = rng.permutation(np.concatenate([normal, outliers]))
    y = (target[rows] == outlier_digit).astype(int)
    X = data.iloc[rows].reset_index(drop=True) if as_frame else data[rows]
    return X, y


def load_idx(path):
    """Read an idx file (the format of MNIST and Fashion-MNIST), gzipped or not.

    The format: two zero bytes, a type code, the number of dimensions ``d``, then
    ``d`` big-endian 32-bit sizes and the values in C order. Gzip is recognized from
    the file's first bytes, not its name.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    array : ndarray
        Shaped by the header, in native byte order (``uint8`` for the images and
        labels of MNIST and Fashion-MNIST).

    Raises
    ------
    ValueError
        When the file is not a valid idx file (bad magic number, unknown type code,
        truncated header or data, trailing bytes, corrupt gzip stream).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path} looks gzipped but cannot be decompressed ({exc}); "
                             "the file is corrupt or truncated, download it again.") from None
    return _parse_idx(raw, path)


def _parse_idx(raw, path):
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an idx file: it must start with two zero bytes, a "
                         f"type code and a dimension count, got {raw[:4]!r}.")
    code, n_dims = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path} has idx type code 0x{code:02X}; expected one of {known}.")
    if n_dims == 0:
        raise ValueError(f"{path} declares 0 dimensions; an idx file needs at least one.")
    header_end = 4 + 4 * n_dims
    if len(raw) < header_end:
        raise ValueError(f"{path} is truncated: its header declares {n_dims} dimensions but "
                         f"the file has only {len(raw)} bytes.")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_end
    if found != expected:
        problem = "truncated" if found < expected else "followed by unexpected bytes"
        raise ValueError(f"{path} is {problem}: its header declares shape {shape} of "
                         f"{dtype.name} ({expected} bytes of data) but it holds {found}.")
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_fashion_mnist(directory, split="train"):
    """One split of Fashion-MNIST from the four idx files in ``directory``.

    The files keep their original names, gzipped or not:
    ``{train,t10k}-images-idx3-ubyte[.gz]`` and ``{train,t10k}-labels-idx1-ubyte[.gz]``.

    Parameters
    ----------
    directory : str or path-like
    split : {'train', 'test'}, default='train'

    Returns
    -------
    X : ndarray of shape (n_samples, 28, 28), dtype float32
        Pixels scaled to [0, 1] (the files hold 0 to 255).
    y : ndarray of shape (n_samples,), dtype int64
        Class labels 0 to 9, named in :data:`FASHION_MNIST_CLASSES`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    prefix = "train" if split == "train" else "t10k"
    images = load_idx(_find_file(directory, f"{prefix}-images-idx3-ubyte"))
    labels = load_idx(_find_file(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split} files in {directory} do not match: images of "
                         f"shape {images.shape} and labels of shape {labels.shape}; expected "
                         "(n, 28, 28) and (n,).")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def _find_file(directory, name):
    for candidate in (Path(directory) / name, Path(directory) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Neither {name} nor {name}.gz is in {directory}; point "
                            "directory to the folder holding the Fashion-MNIST idx files.")


def load_adbench(path):
    """Read an ADBench ``.npz`` file: the features ``X`` and the labels ``y``.

    Parameters
    ----------
    path : str or path-like
        For example ``6_cardio.npz`` from ADBench's ``Classical`` folder.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float64
    y : ndarray of shape (n_samples,), dtype int64
        1 for outliers, 0 for inliers.

    Raises
    ------
    ValueError
        When the file is not an ``.npz`` archive, lacks ``X`` or ``y``, or they do
        not form a 2-D feature matrix with one 0/1 label per row.
    """
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise ValueError(f"{path} is not an .npz archive (a zip of .npy arrays); ADBench "
                             "files are .npz files holding X and y.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("X", "y") if key not in archive.files]
            if missing:
                raise ValueError(f"{path} has no {' or '.join(missing)}; an ADBench file "
                                 f"holds arrays X and y, found {archive.files}.")
            try:
                X, y = archive["X"], archive["y"]
            except ValueError as exc:  # object arrays: refused without pickle
                raise ValueError(f"{path}: X and y must be numeric arrays ({exc}).") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc}).") from None
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: expected X of shape (n_samples, n_features) and y of shape "
                         f"(n_samples,), got {X.shape} and {y.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{path}: y must hold 0 (inlier) and 1 (outlier), found values "
                         f"{np.unique(y)[:10]}.")
    return X.astype(np.float64), y.astype(np.int64)


def write_memmap(chunks, path, dtype=np.float32):
    """Write an iterable of row chunks to ``path`` (raw binary) and open it read-only
    as a ``numpy.memmap`` of shape ``(n_rows, n_features)``.

    One pass over ``chunks`` (arrays or DataFrames, 2-D, all of the same width; a
    generator is fine): only one chunk is in memory at a time. A detector's ``fit``
    streams a memmap that big (see ``aedetect._streaming``): its scaling statistics
    come from a first pass over the rows, then it trains chunk by chunk.

    Parameters
    ----------
    chunks : iterable of array-like of shape (n_rows_i, n_features)
    path : str or Path
        The file to write (replaced if it exists); keep it while the memmap is used.
    dtype : numpy dtype, default=float32
        The networks compute in float32: float32 halves the file of float64 data.

    Returns
    -------
    rows : numpy.memmap of shape (n_rows, n_features)
    """
    path = Path(path)
    n_rows = n_features = 0
    with open(path, "wb") as out:
        for number, chunk in enumerate(chunks):
            array = np.asarray(chunk, dtype=dtype)
            if array.ndim != 2:
                raise ValueError(f"Chunk {number} has shape {array.shape}: every chunk must "
                                 "be 2-D (rows x features).")
            if number and array.shape[1] != n_features:
                raise ValueError(f"Chunk {number} has {array.shape[1]} features but the "
                                 f"first chunk has {n_features}: every chunk must have the "
                                 "same columns.")
            n_features = array.shape[1]
            n_rows += array.shape[0]
            out.write(np.ascontiguousarray(array).tobytes())
    if n_rows == 0:
        raise ValueError("chunks gave no rows: pass at least one non-empty chunk.")
    return np.memmap(path, dtype=dtype, mode="r", shape=(n_rows, n_features))
