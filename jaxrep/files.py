"""Run I/O on any path: a local one or an object-store URL (`gs://bucket/run`, or any scheme etils.epath knows).

Every file a run reads or writes goes through `path` (an `etils.epath.Path`); orbax writes its checkpoints to the
same URLs natively. What differs between the kinds of storage is what can be made atomic:

- local (POSIX) disks: a JSON file is written to a temporary name and renamed, a directory is set aside by a
  rename, and the work-directory lock is an exclusive create (`O_EXCL`);
- Cloud Storage (`gs://`): an object appears whole when its upload ends (a reader sees the old object or the new
  one), so a JSON file is written in one upload; the lock is a create conditioned on the object not existing
  (`ifGenerationMatch=0`, `jaxrep.run.workdir_lock`); a directory is moved by copying each object and then deleting
  the originals, which a kill can interrupt with both copies present (the reader that set it aside finds it again);
- other schemes: reads and writes as above, but no atomic create: the work-directory lock refuses them.

Files that a library can only read from a local disk (safetensors and PyTorch weights, ArrayRecord shards) are
copied once from a store into a local cache (`local_copy`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from typing import Any, Callable

import fsspec
from etils import epath

from jaxrep.config_checks import ConfigError

# Where `local_copy` keeps the files it copied from object stores.
CACHE_DIR = os.path.join(os.path.expanduser(os.environ.get("XDG_CACHE_HOME", "~/.cache")), "jaxrep", "remote")
# gcsfs caches directory listings for the life of a process, but other writers change them: tensorstore (orbax's
# array writes), the other hosts of a job, a resumed run in another process. Every listing is therefore read anew.
fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)

# The object stores etils.epath reaches, and the Python clients each needs.
STORE_CLIENTS = {"gs": ("gcsfs", "google.cloud.storage"), "s3": ("s3fs",), "az": ("adlfs",)}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme(location: str | os.PathLike) -> str:
    """"gs" for gs://..., "" for a local path."""
    match = _URL.match(os.fspath(location))
    return match.group(1).lower() if match else ""


def is_local(location: str | os.PathLike) -> bool:
    return not scheme(location)


def check_backend(location: str, field: str) -> None:
    """Raises ConfigError naming `field` when `location` is a URL of a storage etils.epath cannot reach, or whose
    client is not installed (gs:// needs gcsfs, which etils.epath uses, and google-cloud-storage, which orbax and
    the lock use: the `gcs` extra). Hugging Face names (hf://) are `jaxrep.weights.hub`'s."""
    kind = scheme(location)
    if not kind or kind == "hf":
        return
    if kind not in STORE_CLIENTS:
        raise ConfigError(f"{field}: {_unreachable(location, kind)}")
    try:
        for client in STORE_CLIENTS[kind]:
            importlib.import_module(client)
    except ImportError as error:
        hint = "pip install 'jaxrep[gcs]'" if kind == "gs" else f"pip install {STORE_CLIENTS[kind][0]}"
        raise ConfigError(f"{field}: {location!r} needs a storage client that is not installed ({error}); "
                          f"{hint}") from None


def _unreachable(location: str, kind: str) -> str:
    return (f"{location!r}: {kind}:// is not a storage jaxrep can use (local paths, "
            f"{', '.join(f'{name}://' for name in STORE_CLIENTS)})")


def path(location: str | os.PathLike) -> epath.Path:
    """The epath of `location`: a URL as it is, a local path made absolute; ConfigError for a URL of a storage
    etils.epath cannot reach."""
    location = os.fspath(location)
    kind = scheme(location)
    if kind and kind not in STORE_CLIENTS:
        raise ConfigError(_unreachable(location, kind))
    return epath.Path(location if kind else os.path.abspath(location))


def join(location: str | os.PathLike, *names: str) -> str:
    """`location`/names..., as a string (a URL stays a URL)."""
    return os.fspath(path(location).joinpath(*names))


def blocks(location: str | os.PathLike, block_size: int = 1 << 22):
    """The bytes of a file in blocks of `block_size`. From an object store each block is one ranged read
    (`fsspec` `cat_file`): gcsfs' default file reader, fsspec's background prefetcher, was seen to wait forever
    (gcsfs 2026.10.1)."""
    if is_local(location):
        with open(location, "rb") as file:
            yield from iter(lambda: file.read(block_size), b"")
        return
    store, name = fsspec.core.url_to_fs(os.fspath(location))
    size = store.size(name)
    for start in range(0, size, block_size):
        yield store.cat_file(name, start=start, end=min(start + block_size, size))


def read_bytes(location: str | os.PathLike) -> bytes:
    return b"".join(blocks(location))


def file_sha256(location: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    for block in blocks(location):
        digest.update(block)
    return digest.hexdigest()


def file_size(location: str | os.PathLike) -> int:
    return path(location).stat().length


def files_under(location: str | os.PathLike, keep: Callable[[str], bool] = lambda name: True
                ) -> dict[str, epath.Path]:
    """{path relative to `location`, "/"-separated: file} of every file below the directory `location`; a file or
    folder whose name `keep` rejects is left out with everything below it (never listed)."""
    found = {}
    for entry in path(location).iterdir():
        if not keep(entry.name):
            continue
        if entry.is_dir():
            found.update({f"{entry.name}/{name}": file for name, file in files_under(entry, keep).items()})
        else:
            found[entry.name] = entry
    return found


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Writes a file, making its directory first."""
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def write_bytes_atomic(location: str | os.PathLike, data: bytes) -> None:
    """Writes a file so that a reader never sees half of it: through a temporary file and a rename on a local
    disk, in one upload on an object store; makes its directory first."""
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(location):
        target.write_bytes(data)
        return
    temporary = f"{target}.tmp{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, target)


def write_json_atomic(location: str | os.PathLike, value: Any) -> None:
    """`write_bytes_atomic` of `value` as indented JSON."""
    write_bytes_atomic(location, json.dumps(value, indent=1).encode())


def publish(local_file: str, location: str | os.PathLike) -> None:
    """Moves a finished local file to `location` whole: a rename on a local disk, one upload (then the local file
    is deleted) to an object store."""
    if is_local(location):
        os.replace(local_file, location)
        return
    with open(local_file, "rb") as reader, path(location).open("wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 22)
    os.remove(local_file)


def move_tree(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves a directory: one rename on a local disk; on an object store a copy of every file, then the deletion
    of the originals (not atomic: interrupted, both are left, the source whole or partly deleted)."""
    if is_local(source):
        os.replace(source, target)
        return
    source, target = path(source), path(target)
    for name, file in files_under(source).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        file.copy(target / name)
    source.rmtree()


def local_copy(location: str | os.PathLike) -> str:
    """A local path to the file or directory at `location`: the path itself when it is local, else a copy in
    `CACHE_DIR` (made once; a file whose size changed in the store is copied again)."""
    if is_local(location):
        return os.fspath(location)
    source = path(location)
    target = os.path.join(CACHE_DIR, scheme(location), os.fspath(location).split("://", 1)[1].strip("/"))
    files = [(source, target)] if source.is_file() else [
        (file, os.path.join(target, name)) for name, file in files_under(source).items()]
    for remote, local in files:
        if os.path.exists(local) and os.path.getsize(local) == remote.stat().length:
            continue
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(f"{local}.part", "wb") as writer:
            for block in blocks(remote):
                writer.write(block)
        os.replace(f"{local}.part", local)
    return target
