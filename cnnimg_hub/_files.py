"""The one way this package writes a file: through a temp file in the same folder, then a rename, so a crash
never leaves a half-written file and a reader never sees one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[str], None]) -> Path:
    """Write `data` (bytes, text, or a function that writes the temp path it is given) to `path` atomically.

    Parent folders are created. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if callable(data):
            data(tmp)
        else:
            Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)
        # mkstemp makes 0600 files, and a writer may make the file anew (safetensors does): the usual permissions
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
