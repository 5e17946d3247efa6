"""Replace a file whole or not at all: the one way every package writes files others read.

Readers (other replicas, the service reading a job record, a resumed run loading its
checkpoint) see the old file or the new one, never a torn one; a crash or a full disk leaves
the old file in place and no temporary file behind.

    >>> write_atomic(Path("aliases.json"), b'{"production": 3}\\n')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a full disk may only show here (delayed allocation, NFS)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
