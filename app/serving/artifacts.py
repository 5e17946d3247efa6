"""A loaded version's files on disk, checked against its manifest's sha256 on every poll.

A file changed or deleted under a running server keeps being served from the copy verified at
load; the check reports it (``/readyz`` degraded, ``gan_model_artifacts_ok`` 0), and any new
load of those files is refused by the repository until they are repaired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.repository import sha256_file

Stamp = tuple[int, int, int]  # (size, mtime_ns, inode): what changes when a file is rewritten


def stamp_files(folder: Path) -> dict[str, Stamp | None]:
    """Each file's stamp in ``folder``; taken before a load hashes them."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return {}
    return {e.name: _stamp(Path(e.path)) for e in entries if e.is_file()}


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


@dataclass
class ArtifactCheck:
    """A loaded version's files on disk against its manifest's sha256, for the poller.

    Cheap enough to run every poll: a file is re-hashed only when its size, mtime or inode
    changed since the last look (or since the stamps taken before the load verified it).

        >>> check = ArtifactCheck(folder, manifest.artifacts, stamps_taken_before_verify)
        >>> check.run()   # None while the files on disk are the ones that were loaded
    """

    folder: Path
    expected: dict[str, str]  # file -> sha256
    stamps: dict[str, Stamp | None]
    faults: dict[str, str] = field(default_factory=dict)  # file -> what is wrong with it
    # The faults in one line, replaced whole: readiness reads it from the event loop while
    # run() works in a thread.
    error: str | None = None

    def run(self) -> str | None:
        for file, sha256 in self.expected.items():
            path = self.folder / file
            stamp = _stamp(path)
            if stamp == self.stamps.get(file):
                continue
            self.stamps[file] = stamp
            fault = _fault(path, sha256)
            if fault is None:
                self.faults.pop(file, None)
            else:
                self.faults[file] = fault
        faults = "; ".join(f"{file} {why}" for file, why in sorted(self.faults.items()))
        self.error = f"on disk, {faults}; serving the copy verified at load" if faults else None
        return self.error


def _fault(path: Path, expected: str) -> str | None:
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as e:
        return f"is unreadable ({e.strerror})"
    if actual != expected:
        return f"has sha256 {actual[:12]}..., the manifest says {expected[:12]}..."
    return None
