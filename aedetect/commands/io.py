"""Reading the command's inputs (CSV, Parquet, ``.npz`` and idx images) and writing its
outputs atomically: every output is written beside its final path and renamed into
place when complete, so a failed run leaves no half-written file."""

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from . import CommandError

TABLE_SUFFIXES = (".csv", ".parquet")
IMAGE_SUFFIXES = (".npz", ".idx")


def kind_of(path):
    """``'table'`` (``.csv``, ``.parquet``) or ``'images'`` (``.npz``, idx files such as
    ``train-images-idx3-ubyte[.gz]``), from the file name; a ``CommandError`` otherwise."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if name.endswith(IMAGE_SUFFIXES) or name.endswith("-ubyte") or "-idx" in name:
        return "images"
    raise CommandError(f"{path}: unknown file type; aedetect reads tables from .csv or "
                       ".parquet files and images from .npz or idx (-ubyte) files.")


def check_input(path):
    """Refuse a path that is missing, not a file, unreadable or empty, naming it."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such file. Check the path.")
    if not path.is_file():
        raise CommandError(f"{path}: not a file (a directory?). Pass a data file.")
    if not os.access(path, os.R_OK):
        raise CommandError(f"{path}: not readable (permission denied). Check its permissions.")
    if path.stat().st_size == 0:
        raise CommandError(f"{path}: the file is empty (0 bytes).")
    kind_of(path)
    return path


def check_output(path, suffixes=TABLE_SUFFIXES):
    """Refuse an output path with an unknown suffix or in a missing directory, before
    any work is done."""
    path = Path(path)
    if not path.name.lower().endswith(suffixes):
        raise CommandError(f"{path}: the output must end in {' or '.join(suffixes)}.")
    if not path.parent.is_dir():
        raise CommandError(f"{path.parent}: no such directory for the output {path.name}.")
    return path


def _csv_error(path, exc):
    import pandas as pd

    if isinstance(exc, UnicodeDecodeError):
        return CommandError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte {exc.start}). "
            "Save it as UTF-8, e.g. iconv -f latin1 -t utf-8 old.csv > new.csv.")
    if isinstance(exc, pd.errors.EmptyDataError):
        return CommandError(f"{path}: no columns (the file holds no header line).")
    return CommandError(f"{path}: not a readable CSV file ({str(exc).strip()}).")


def _parquet_file(path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise CommandError(f"{path}: not a readable Parquet file ({exc}).") from None


def columns_of(path):
    """The column names of a table file, from its header (CSV) or schema (Parquet)."""
    import pandas as pd

    path = check_input(path)
    if path.name.lower().endswith(".parquet"):
        return list(_parquet_file(path).schema_arrow.names)
    try:
        return list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _csv_error(path, exc) from None


def read_table(path):
    """The whole table as a DataFrame (pandas' type inference), indexed 0, 1, ... in the
    file's order; refuses a table without rows or columns."""
    frames = list(iter_table(path, chunk_rows=None))
    return frames[0].reset_index(drop=True)  # a Parquet file may hold its own index


def iter_table(path, chunk_rows, dtypes=None):
    """The table in DataFrames of ``chunk_rows`` rows (all of it when ``None``); a CSV's
    columns in ``dtypes`` are read as those types (text for categorical columns, so a
    category ``'7'`` stays text in every chunk); Parquet keeps its own types."""
    import pandas as pd

    path = check_input(path)
    if path.name.lower().endswith(".parquet"):
        chunks = _parquet_chunks(path, chunk_rows)
    else:
        try:
            chunks = pd.read_csv(path, encoding="utf-8", chunksize=chunk_rows, dtype=dtypes,
                                 low_memory=False)
            chunks = [chunks] if chunk_rows is None else chunks
        except (UnicodeDecodeError, ValueError) as exc:
            raise _csv_error(path, exc) from None
    n_rows = 0
    iterator = iter(chunks)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            break
        except (UnicodeDecodeError, ValueError) as exc:
            raise _csv_error(path, exc) from None
        if frame.shape[1] == 0:
            raise CommandError(f"{path}: no columns.")
        n_rows += len(frame)
        if len(frame):
            yield frame
    if n_rows == 0:
        raise CommandError(f"{path}: the table has a header but no rows.")


def _parquet_chunks(path, chunk_rows):
    parquet = _parquet_file(path)
    if chunk_rows is None:
        yield parquet.read().to_pandas()
        return
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield batch.to_pandas()


def read_images(path):
    """Images as a ``(n, H, W)`` or ``(n, C, H, W)`` float array, with the 0/1 labels
    ``y`` of an ``.npz`` file that has them (else ``None``)."""
    from ..datasets import load_idx

    path = check_input(path)
    y = None
    if path.name.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = "X" if "X" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise CommandError(f"{path}: holds the arrays {keys}; name the images 'X'.")
                images = archive[key]
                y = archive["y"] if "y" in keys else None
        except (OSError, ValueError, EOFError) as exc:
            raise CommandError(f"{path}: not a readable .npz file ({exc}).") from None
    else:
        try:
            images = load_idx(path)
        except (OSError, ValueError, EOFError) as exc:
            raise CommandError(f"{path}: not a readable idx file ({exc}).") from None
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise CommandError(f"{path}: expected images of shape (n, height, width) or "
                           f"(n, channels, height, width), got shape {images.shape}.")
    if not np.issubdtype(images.dtype, np.number):
        raise CommandError(f"{path}: the images hold {images.dtype} values, not numbers.")
    if y is not None and y.shape[:1] != images.shape[:1]:
        y = None
    return images.astype(np.float32, copy=False), y


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside ``path`` (same suffix) to write; renamed to
    ``path`` when the block succeeds, deleted when it fails."""
    path = Path(path)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix,
                                       dir=path.parent)
    os.close(handle)
    staging = Path(staging)
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)  # mkstemp makes it private; outputs are not
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


class TableWriter:
    """Append DataFrames of the same columns to a CSV or Parquet file, chunk by chunk
    (pyarrow's writers: several times faster than ``DataFrame.to_csv``)."""

    def __init__(self, path):
        self.path, self._writer, self._schema = Path(path), None, None

    def write(self, frame):
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            if self.path.name.lower().endswith(".parquet"):
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.path, self._schema)
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.path, self._schema,
                                              write_options=pcsv.WriteOptions(
                                                  quoting_style="needed"))
        try:
            table = table.cast(self._schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:
            raise CommandError(f"a chunk of the input has other column types than the first "
                               f"one ({exc}); make the column types consistent.") from None
        self._writer.write_table(table)

    def close(self):
        if self._writer is not None:
            self._writer.close()
