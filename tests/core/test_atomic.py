from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.atomic import write_atomic


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    path.write_bytes(b"old")
    write_atomic(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_a_reader_sees_old_or_new_never_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "record"
    write_atomic(path, b"a" * 100_000)
    fd = os.open(path, os.O_RDONLY)  # a reader holding the old file keeps reading it whole
    write_atomic(path, b"b" * 10)
    try:
        assert os.read(fd, 200_000) == b"a" * 100_000
    finally:
        os.close(fd)
    assert path.read_bytes() == b"b" * 10
