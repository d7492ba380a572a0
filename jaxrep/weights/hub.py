"""Weights named on the Hugging Face Hub, as the official code names them: `hf://<org>/<name>[/<file>]`.

REPA loads DINOv2 by name (`facebook/dinov2-base` is its transformers checkpoint) and SD-VAE through diffusers'
`from_pretrained("stabilityai/sd-vae-ft-ema")`. A path `hf://facebook/dinov2-base` resolves through
`huggingface_hub` to a local file or folder: downloaded into the hub's cache on a machine that reaches the hub,
read from that cache with `HF_HUB_OFFLINE=1` or without a network. A name that is in neither place fails in one
line (`MissingWeightsError`) that says how to get the files. A weights file or folder in a bucket (gs://...) is
copied to a local cache first. The files are then read like any local weights file
(`jaxrep.weights.convert.load_state_dict`: safetensors, or torch with `weights_only=True`), so nothing is
unpickled.
"""

from __future__ import annotations

from typing import Sequence

from jaxrep.files import is_local, local_copy
from jaxrep.files import path as remote_path
from jaxrep.weights.convert import MissingWeightsError

PREFIX = "hf://"


def is_hub_name(path: str) -> bool:
    return str(path).startswith(PREFIX)


def resolve(path: str, *, field: str, files: Sequence[str]) -> str:
    """The local path of `path`: a local path itself; for `hf://<org>/<name>[/<file>]` the cached snapshot folder
    of the repo holding `files` (or the named file in it); for an object-store URL (gs://...) a local copy of the
    file or folder (`jaxrep.files.local_copy`: weight readers need local files).

    Raises:
      MissingWeightsError: the repo or file is neither in the cache nor downloadable here, or nothing is at the URL;
        the message names `field` (and for the hub the command that fetches it).
    """
    if not is_hub_name(path):
        if is_local(path):
            return path
        if not remote_path(path).exists():
            raise MissingWeightsError(f"{field}: nothing at {path!r}")
        return local_copy(path)
    parts = path[len(PREFIX):].strip("/").split("/")
    if len(parts) < 2:
        raise MissingWeightsError(f"{field}: {path!r} names no repository; write hf://<org>/<name>[/<file>]")
    repo_id, file = "/".join(parts[:2]), "/".join(parts[2:])
    wanted = [file] if file else list(files)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, IncompleteSnapshotError, LocalEntryNotFoundError
    except ImportError as error:
        raise MissingWeightsError(f"{field}: {path!r} needs huggingface_hub (pip install huggingface_hub)") from error
    try:
        folder = snapshot_download(repo_id, allow_patterns=wanted)
    except (LocalEntryNotFoundError, IncompleteSnapshotError, HfHubHTTPError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MissingWeightsError(
            f"{field}: {path} is not in the Hugging Face cache and cannot be downloaded here ({reason}); on a "
            f"machine with network run `hf download {repo_id} {' '.join(wanted)}` and copy its cache "
            f"(HF_HUB_CACHE), or give a local file") from error
    return f"{folder}/{file}" if file else folder
