"""Data files of the experiments: checksum verification and the IDX / CSV readers.

Every error is a `DataError` with one line that names the file and says what to do: where the
file comes from and which sha256 it must have.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mtl_core.errors import DataError
from mtl_core.experiments._base import DataFile

logger = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_HASH_CHUNK = 1 << 20

# (resolved path, size, mtime_ns) -> sha256 hex digest. A worker loads the same experiment for
# every trial; re-hashing 10 MB each time would cost more than some trials' training.
_digest_cache: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file, cached per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        cached = _digest_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _digest_lock:
        _digest_cache[key] = value
    return value


def clear_digest_cache() -> None:
    """Forget every cached checksum (tests; a process that replaces files in place)."""
    with _digest_lock:
        _digest_cache.clear()


def verify_files(data_dir: Path | None, files: Iterable[DataFile]) -> None:
    """Check that every file exists below ``data_dir`` with its expected sha256.

    Args:
        data_dir: the data directory (``--data-dir`` / ``MTLSEARCH_DATA_DIR``); None if unset.
        files: the experiment's `DataFile` entries.

    Raises:
        DataError: no data directory, a missing file, or a checksum mismatch (one line that
            names the path, the expected hash and where the file comes from).
    """
    files = tuple(files)
    if not files:
        return
    expected = ", ".join(f.relative_path for f in files)
    if data_dir is None:
        raise DataError(
            f"no data directory set: pass --data-dir or set MTLSEARCH_DATA_DIR "
            f"(expected {expected})"
        )
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist or is not a directory (expected {expected})"
        )
    for file in files:
        path = data_dir / file.relative_path
        if not path.is_file():
            raise DataError(
                f"missing data file {path}: get it from {file.source} "
                f"(expected sha256 {file.sha256})"
            )
        actual = sha256_of(path)
        if actual != file.sha256:
            raise DataError(
                f"data file {path} has sha256 {actual}, expected {file.sha256} "
                f"(corrupt or a different version; get it from {file.source})"
            )
    logger.debug("verified %d data files under %s", len(files), data_dir)


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot decompress {path}: {exc}") from None


def _parse_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    raw = _read_gzip(path)
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"IDX file {path} is too short for its header ({len(raw)} bytes)")
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(f"IDX file {path} has magic number {int(header[0])}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    expected = int(np.prod(shape)) + header_len
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw)} bytes, expected {expected} for shape {shape}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def read_idx_images(path: Path, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read a gzip IDX image file (magic 2051) as uint8 ``[N, rows, cols]``.

    Args:
        path: the ``*-images-idx3-ubyte.gz`` file.
        size: the expected ``(rows, cols)`` of each image.
    """
    images = _parse_idx(path, IDX_IMAGES_MAGIC, 3)
    if images.shape[1:] != size:
        raise DataError(f"IDX file {path} holds images of {images.shape[1:]}, expected {size}")
    return images


def read_idx_labels(path: Path, num_classes: int = 10) -> np.ndarray:
    """Read a gzip IDX label file (magic 2049) as uint8 ``[N]``, checking the label range."""
    labels = _parse_idx(path, IDX_LABELS_MAGIC, 1)
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"IDX file {path} has label {int(labels.max())}, expected < {num_classes}")
    return labels


def read_csv_rows(path: Path, num_fields: int, skip_lines: int = 0) -> list[list[str]]:
    """Read a comma-separated file into rows of stripped strings; blank lines are skipped.

    Args:
        path: the file.
        num_fields: every row must have exactly this many fields.
        skip_lines: header lines to drop first.
    """
    rows: list[list[str]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for _ in range(skip_lines):
            fh.readline()
        reader = csv.reader(fh, skipinitialspace=True)
        for row in reader:
            if not row or all(not field.strip() for field in row):
                continue
            if len(row) != num_fields:
                raise DataError(
                    f"{path} line {reader.line_num + skip_lines} has {len(row)} fields, "
                    f"expected {num_fields}"
                )
            rows.append([field.strip() for field in row])
    return rows


def cache_key(data_dir: Path | None) -> str:
    """A hashable, canonical form of a data directory for in-process caches."""
    return os.path.realpath(data_dir) if data_dir is not None else ""


__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "cache_key",
    "clear_digest_cache",
    "read_csv_rows",
    "read_idx_images",
    "read_idx_labels",
    "sha256_of",
    "verify_files",
]
