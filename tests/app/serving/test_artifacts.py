"""app.serving.artifacts: a loaded version's files checked against its manifest's sha256."""

from __future__ import annotations

import os
from pathlib import Path

from app.serving.artifacts import ArtifactCheck, stamp_files
from core.repository import Repository
from tests.app.helpers import flip_a_byte


def test_the_integrity_check_rehashes_only_files_whose_stamp_changed(models_dir: Path) -> None:
    repo = Repository(models_dir)
    folder = repo.version_dir("tiny-gan", 1)
    check = ArtifactCheck(folder, repo.verify("tiny-gan", 1).artifacts, stamp_files(folder))
    assert check.run() is None
    onnx = folder / "generator.onnx"
    original, st = onnx.read_bytes(), onnx.stat()

    def set_mtime(later_ns: int) -> None:
        # Set, not left to the clock: two writes within one clock tick can share an mtime.
        os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns + later_ns))

    flip_a_byte(onnx)
    set_mtime(0)  # same size, mtime and inode as when stamped
    assert check.run() is None  # not re-hashed: a hash would have seen the flipped byte
    set_mtime(1)
    assert "generator.onnx has sha256" in (check.run() or "")
    onnx.write_bytes(original)
    set_mtime(2)
    assert check.run() is None
    onnx.unlink()
    assert "generator.onnx is missing" in (check.run() or "")
