"""SHA-256 of files, read in 1 MiB chunks: the checksums of checkpoints, classifiers and shipped models."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

__all__ = ["sha256_file"]


def sha256_file(path: Path, digest: Optional["hashlib._Hash"] = None) -> str:
    """Hex SHA-256 of the file at ``path``; with ``digest``, the file's bytes are added to that running hash
    (which may hold other content before or after) and its hex digest so far is returned."""
    h = digest if digest is not None else hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
