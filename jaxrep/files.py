"""Small file utilities shared by the checkpoint and dataset writers: checksums and atomic JSON writes."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str, value: Any) -> None:
    """Writes JSON through a temporary file and a rename, so a reader never sees half a file."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=1)
    os.replace(temporary, path)
