"""Data-file verification (missing directory, missing file, checksum) and the IDX/CSV readers."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from mtl_core.errors import DataError
from mtl_core.experiments import DataFile, get_experiment, verify_files
from mtl_core.experiments.data import read_csv_rows, read_idx_images, read_idx_labels, sha256_of
from mtl_core.experiments.multi_mnist import TRAIN_LABELS


@pytest.fixture
def mnist_copy(tmp_path: Path, data_dir: Path) -> Path:
    """A private copy of the real MNIST files, free to damage."""
    shutil.copytree(data_dir / "mnist", tmp_path / "mnist")
    for path in (tmp_path / "mnist").iterdir():
        path.chmod(0o644)
    return tmp_path


def test_no_data_dir_names_the_setting_and_the_files() -> None:
    with pytest.raises(DataError) as info:
        get_experiment("multi_mnist").load(None)
    message = str(info.value)
    assert "MTLSEARCH_DATA_DIR" in message and "--data-dir" in message
    assert "mnist/train-images-idx3-ubyte.gz" in message
    assert "\n" not in message


def test_nonexistent_data_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)):
        get_experiment("adult").load(missing)


def test_missing_file_names_path_source_and_hash(mnist_copy: Path) -> None:
    path = mnist_copy / TRAIN_LABELS.relative_path
    path.unlink()
    with pytest.raises(DataError) as info:
        get_experiment("multi_mnist").load(mnist_copy)
    message = str(info.value)
    assert str(path) in message
    assert TRAIN_LABELS.sha256 in message
    assert "LeCun" in message
    assert "\n" not in message


def test_truncated_file_names_path_and_both_hashes(mnist_copy: Path) -> None:
    path = mnist_copy / TRAIN_LABELS.relative_path
    with path.open("r+b") as fh:
        fh.truncate(1000)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as info:
        get_experiment("multi_mnist").load(mnist_copy)
    message = str(info.value)
    assert str(path) in message
    assert TRAIN_LABELS.sha256 in message and actual in message
    assert "\n" not in message


def test_missing_adult_file_is_named(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "uci-adult").mkdir()
    shutil.copy(data_dir / "uci-adult" / "adult.data", tmp_path / "uci-adult" / "adult.data")
    with pytest.raises(DataError, match=r"uci-adult/adult\.test.*UCI"):
        get_experiment("adult").load(tmp_path)


def test_a_file_replaced_in_place_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    file = DataFile("f.bin", hashlib.sha256(b"a" * 100).hexdigest(), "a test")
    verify_files(tmp_path, [file])
    assert sha256_of(path) == file.sha256  # now served from the cache
    stat = path.stat()
    path.write_bytes(b"b" * 100)  # same size; a new mtime invalidates the cached digest
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DataError, match="has sha256"):
        verify_files(tmp_path, [file])


GOOD_SHA = hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (("/etc/passwd", GOOD_SHA, "x"), "relative POSIX path"),
        (("../up/file.csv", GOOD_SHA, "x"), "got '../up/file.csv'"),
        (("a//b.csv", GOOD_SHA, "x"), "no '..'"),
        (("a\\b.csv", GOOD_SHA, "x"), "relative POSIX path"),
        (("", GOOD_SHA, "x"), "got ''"),
        (("a/b.csv", GOOD_SHA.upper(), "x"), "64 lowercase hex digits"),
        (("a/b.csv", GOOD_SHA[:-1], "x"), "sha256 must be"),
        (("a/b.csv", GOOD_SHA, " "), "source must say where to get the file"),
    ],
)
def test_a_data_file_checks_its_fields(fields: tuple[str, str, str], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        DataFile(*fields)


def test_a_data_file_below_a_folder_of_its_own_is_fine() -> None:
    assert DataFile("census_sample/census.csv", GOOD_SHA, "a test").relative_path


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    header = struct.pack(f">{1 + len(dims)}I", magic, *dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload)


def test_idx_readers_read_what_they_wrote(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    _write_idx(tmp_path / "img.gz", 2051, (2, 28, 28), images.tobytes())
    _write_idx(tmp_path / "lab.gz", 2049, (2,), bytes([3, 9]))
    np.testing.assert_array_equal(read_idx_images(tmp_path / "img.gz"), images)
    np.testing.assert_array_equal(read_idx_labels(tmp_path / "lab.gz"), [3, 9])


@pytest.mark.parametrize(
    ("magic", "dims", "payload", "match"),
    [
        (2049, (2, 28, 28), bytes(2 * 784), "magic number 2049, expected 2051"),
        (2051, (2, 28, 28), bytes(2 * 784 - 1), "expected 1584"),
        (2051, (2, 28, 27), bytes(2 * 28 * 27), r"expected \(28, 28\)"),
    ],
)
def test_idx_images_reject_bad_headers(
    tmp_path: Path, magic: int, dims: tuple[int, ...], payload: bytes, match: str
) -> None:
    path = tmp_path / "img.gz"
    _write_idx(path, magic, dims, payload)
    with pytest.raises(DataError, match=match):
        read_idx_images(path)


def test_idx_labels_reject_bad_magic_and_range(tmp_path: Path) -> None:
    _write_idx(tmp_path / "a.gz", 2051, (2,), bytes(2))
    with pytest.raises(DataError, match="expected 2049"):
        read_idx_labels(tmp_path / "a.gz")
    _write_idx(tmp_path / "b.gz", 2049, (2,), bytes([1, 10]))
    with pytest.raises(DataError, match="label 10"):
        read_idx_labels(tmp_path / "b.gz")


def test_idx_reader_rejects_a_file_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=str(path)):
        read_idx_labels(path)


def test_csv_reader_skips_header_and_blank_lines_and_checks_width(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("header line\n1, a, x\n\n2, b, y.\n")
    assert read_csv_rows(path, 3, skip_lines=1) == [["1", "a", "x"], ["2", "b", "y."]]
    path.write_text("1, a, x\n2, b\n")
    with pytest.raises(DataError, match="line 2 has 2 fields, expected 3"):
        read_csv_rows(path, 3)
