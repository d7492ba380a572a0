"""Feature extractors for evaluation, batched extraction into `FeatureStatistics`, and the reference cache.

Two extractors, both frozen and both fed uint8 RGB/grey images (B, H, W, C), the layout of the `.npz` sample
files that ADM's evaluation suite reads, so a metric describes exactly the images that were written:
- "eval_net": the in-repo `EvalNet` (train/eval_net.py) from its orbax checkpoint directory; its penultimate
  features (128-d) make FD and precision/recall meaningful on CPU at a few hundred samples.
- "inception": pytorch-fid's FID InceptionV3 (`jaxrep.nn.inception`) from the standard weight file; pool3 (2048-d)
  features give standard FID (grey images are repeated to RGB).

`extract_features` runs an extractor over batches sharded across a mesh's `data` axis and returns a `FeatureSet`:
streaming float64 statistics for the Frechet distance plus the first `keep` feature rows for precision/recall/
density/coverage (k-NN needs the features themselves). `cached_reference_features` computes the real data's
`FeatureSet` once and caches it in an `.npz` keyed by the extractor's weights and a description of the data; the
file holds `mu` and `sigma` (the pytorch-fid / ADM statistics layout, readable by `load_statistics`), the count and
the kept features. Evaluation here is single-host (batches are placed with `jax.device_put`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import io
from collections.abc import Callable, Iterable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep import files, parallel
from jaxrep.metrics.frechet import FeatureStatistics, as_float64_statistics
from jaxrep.nn.eval_net import EvalNet
from jaxrep.nn.inception import FID_FEATURE_DIM, FIDInceptionV3
from jaxrep.weights.frozen import FrozenWeightsError, read_frozen_metadata, restore_frozen_params, save_frozen
from jaxrep.weights.inception import load_inception_variables

__all__ = [
    "EVAL_NET_KIND",
    "EXTRACTOR_KINDS",
    "FeatureExtractor",
    "FeatureSet",
    "cached_reference_features",
    "eval_net_extractor",
    "extract_features",
    "inception_extractor",
    "load_eval_net",
    "load_feature_extractor",
    "load_feature_set",
    "save_eval_net",
    "save_feature_set",
]

EVAL_NET_KIND = "jaxrep-eval-net"
EXTRACTOR_KINDS = ("eval_net", "inception")


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureExtractor:
    """A frozen network from uint8 images (B, H, W, C) to float32 features (B, dim).

    Attributes:
      kind: "eval_net" or "inception".
      apply_fn: jitted `apply_fn(variables, images) -> features`; it follows its inputs' shardings.
      variables: the network's variables (host or device arrays).
      dim: feature width D.
      image_shape: the (H, W, C) the network takes, or None for any size (Inception resizes to 299).
      fingerprint: SHA-256 of the variables: two extractors with equal fingerprints give equal features.
      metadata: what the weights' source recorded (eval net: training info; Inception: the file path).
    """

    kind: str
    apply_fn: Callable[[Any, jax.Array], jax.Array]
    variables: Any
    dim: int
    image_shape: tuple[int, int, int] | None
    fingerprint: str
    metadata: dict = dataclasses.field(default_factory=dict)

    def check_images(self, image_shape: tuple[int, ...]) -> None:
        """Raises ValueError when images of shape (H, W, C) are not what the network takes."""
        image_shape = tuple(int(side) for side in image_shape)
        if self.image_shape is not None and image_shape != self.image_shape:
            raise ValueError(f"{self.kind} features: the network takes {self.image_shape} images, got {image_shape}")
        if self.image_shape is None and image_shape[-1] not in (1, 3):
            raise ValueError(f"{self.kind} features: needs RGB or grey images, got {image_shape[-1]} channels "
                             "(latent-space samples must be decoded to pixels first)")


def _fingerprint(variables: Any) -> str:
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        leaf = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(str((leaf.shape, leaf.dtype.str)).encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def _uint8_to_model_range(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1], the range the procedural data and the diffusion models use."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def eval_net_extractor(model: EvalNet, params: Any, *, image_shape: tuple[int, int, int],
                       metadata: dict | None = None) -> FeatureExtractor:
    """The penultimate features of a trained `EvalNet` as a `FeatureExtractor`."""

    @jax.jit
    def apply_fn(variables, images):
        _, features = model.apply(variables, _uint8_to_model_range(images))
        return features

    variables = {"params": params}
    return FeatureExtractor("eval_net", apply_fn, variables, model.feature_dim, tuple(image_shape),
                            _fingerprint(variables), dict(metadata or {}))


def inception_extractor(variables: Any, *, metadata: dict | None = None) -> FeatureExtractor:
    """pool3 features of `FIDInceptionV3` with the given variables ({"params", "batch_stats"})."""
    model = FIDInceptionV3()

    @jax.jit
    def apply_fn(variables, images):
        rgb = images.astype(jnp.float32) / 255.0  # pytorch-fid's input range
        if rgb.shape[-1] == 1:
            rgb = jnp.repeat(rgb, 3, axis=-1)
        return model.apply(variables, rgb)

    return FeatureExtractor("inception", apply_fn, variables, FID_FEATURE_DIM, None, _fingerprint(variables),
                            dict(metadata or {}))


def save_eval_net(directory: str | os.PathLike, model: EvalNet, params: Any, *, image_shape: tuple[int, ...],
                  data_source: str, info: dict | None = None) -> None:
    """Writes an eval-net checkpoint (orbax): item `state` = {"params"}, item `extra` = architecture + `info`."""
    save_frozen(directory, params, {
        "kind": EVAL_NET_KIND, "data_source": data_source, "image_shape": [int(s) for s in image_shape],
        "model": {"factor_sizes": [int(s) for s in model.factor_sizes], "widths": [int(w) for w in model.widths],
                  "feature_dim": int(model.feature_dim)},
        "info": info or {}})


def load_eval_net(directory: str | os.PathLike) -> tuple[EvalNet, Any, dict]:
    """Reads (model, params, metadata) from a checkpoint written by `save_eval_net` (restored on one device).
    FrozenWeightsError (a ValueError) when it is missing, of another kind or of another architecture."""
    try:
        metadata = read_frozen_metadata(directory, EVAL_NET_KIND, what="eval-net", writer="train/eval_net.py")
    except FrozenWeightsError as error:
        raise FrozenWeightsError(f"{error}; train one with `python -m train.eval_net` (docs/evaluation.md)") from error
    fields = metadata["model"]
    model = EvalNet(factor_sizes=tuple(fields["factor_sizes"]), widths=tuple(fields["widths"]),
                    feature_dim=int(fields["feature_dim"]))
    return model, restore_frozen_params(directory, model, (1, *metadata["image_shape"])), metadata


def load_feature_extractor(kind: str, path: str | os.PathLike) -> FeatureExtractor:
    """`FeatureExtractor` of `kind` ("eval_net": checkpoint directory; "inception": pytorch-fid weight file)."""
    if kind == "eval_net":
        model, params, metadata = load_eval_net(path)
        return eval_net_extractor(model, params, image_shape=tuple(metadata["image_shape"]),
                                  metadata=dict(metadata, path=str(files.path(path))))
    if kind == "inception":
        return inception_extractor(load_inception_variables(files.local_copy(path)),
                                   metadata={"path": str(files.path(path))})
    raise ValueError(f"feature extractor must be one of {EXTRACTOR_KINDS}, got {kind!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of one image set: streaming statistics of all of them and the first rows for k-NN metrics.

    Attributes:
      statistics: mean/covariance of all N features (float64).
      features: the first min(N, keep) features (n, D), float32.
    """

    statistics: FeatureStatistics
    features: np.ndarray


def extract_features(extractor: FeatureExtractor, batches: Iterable[np.ndarray], *, batch_size: int,
                     mesh: jax.sharding.Mesh | None = None, keep: int = 0, progress=None) -> FeatureSet:
    """Runs `extractor` over uint8 image batches and accumulates their features.

    Args:
      extractor: the frozen network.
      batches: uint8 arrays (b, H, W, C), b <= batch_size; each is zero-padded to batch_size (one compile) and
        split over the mesh's `data` axis.
      batch_size: images per network call; divisible by the mesh size.
      mesh: the device mesh (default: all devices).
      keep: how many leading feature rows to return in `FeatureSet.features` (for precision/recall).
      progress: a tqdm bar advanced by the number of images of each batch, or None.
    """
    mesh = mesh or parallel.make_mesh()
    if batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {mesh.size} devices of the mesh")
    variables = jax.device_put(extractor.variables, parallel.replicated_sharding(mesh))
    sharding = parallel.batch_sharding(mesh)
    statistics, kept, kept_count = FeatureStatistics.empty(extractor.dim), [], 0
    for batch in batches:
        batch = np.asarray(batch)
        chex.assert_rank(batch, 4)
        if batch.dtype != np.uint8:
            raise TypeError(f"extract_features: images must be uint8, got {batch.dtype}")
        extractor.check_images(batch.shape[1:])
        count = batch.shape[0]
        if not 0 < count <= batch_size:
            raise ValueError(f"extract_features: a batch of {count} images (batch_size {batch_size})")
        padded = np.pad(batch, ((0, batch_size - count), (0, 0), (0, 0), (0, 0)))
        features = np.asarray(extractor.apply_fn(variables, jax.device_put(padded, sharding)))[:count]
        statistics = statistics.update(features)
        if kept_count < keep:
            kept.append(features[:keep - kept_count])
            kept_count += len(kept[-1])
        if progress is not None:
            progress.update(count)
    kept = np.concatenate(kept).astype(np.float32) if kept else np.zeros((0, extractor.dim), np.float32)
    return FeatureSet(statistics, kept)


def save_feature_set(path: str | os.PathLike, feature_set: FeatureSet, description: dict | None = None) -> None:
    """Writes `mu`, `sigma` (pytorch-fid / ADM layout), `count`, `features` and a JSON `description`, atomically."""
    statistics = feature_set.statistics
    buffer = io.BytesIO()
    np.savez(buffer, mu=statistics.mean, sigma=statistics.covariance, count=np.int64(statistics.count),
             features=feature_set.features, description=np.str_(json.dumps(description or {}, sort_keys=True)))
    files.write_bytes_atomic(path, buffer.getvalue())


def load_feature_set(path: str | os.PathLike) -> tuple[FeatureSet, dict]:
    """Reads what `save_feature_set` wrote: (FeatureSet, description)."""
    with np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False) as data:
        count = int(data["count"])
        statistics = FeatureStatistics(count, np.asarray(data["mu"], np.float64),
                                       np.asarray(data["sigma"], np.float64) * (count - 1))
        return FeatureSet(statistics, np.asarray(data["features"])), json.loads(str(data["description"]))


def cached_reference_features(extractor: FeatureExtractor, make_batches: Callable[[], Iterable[np.ndarray]], *,
                              cache_dir: str | os.PathLike, description: dict, batch_size: int,
                              mesh: jax.sharding.Mesh | None = None, keep: int = 0,
                              progress=None) -> tuple[FeatureSet, str, bool]:
    """The reference (real data) `FeatureSet`, computed once per extractor and data, then read from the cache.

    Args:
      extractor: the frozen network; its weight fingerprint is part of the cache key.
      make_batches: returns an iterable of uint8 image batches of the reference data; called only on a miss.
      cache_dir: directory of the cache files (`reference_<kind>_<key>.npz`).
      description: JSON-serialisable identity of the reference data (source, count, ...); part of the key.
      batch_size, mesh, keep, progress: as in `extract_features`.
    Returns:
      (feature set, cache file path, whether it was a cache hit).
    """
    key_fields = {"extractor": extractor.kind, "fingerprint": extractor.fingerprint, "keep": int(keep),
                  "data": description}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    path = files.join(cache_dir, f"reference_{extractor.kind}_{key}.npz")
    if files.path(path).exists():
        feature_set, stored = load_feature_set(path)
        if stored == key_fields and feature_set.statistics.dim == extractor.dim:
            return feature_set, path, True
    feature_set = extract_features(extractor, make_batches(), batch_size=batch_size, mesh=mesh, keep=keep,
                                   progress=progress)
    save_feature_set(path, feature_set, key_fields)
    return feature_set, path, False


def save_statistics(path: str | os.PathLike, mu, sigma) -> None:
    """Writes `mu`, `sigma` to an `.npz`, the layout of pytorch-fid's `--save-stats` and ADM's reference batches."""
    mu, sigma = as_float64_statistics(mu, sigma)
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma)
    files.write_bytes_atomic(path, buffer.getvalue())


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads (mu, sigma) from an `.npz` with `mu` and `sigma` keys (pytorch-fid stats, ADM reference batches)."""
    with np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False) as data:
        return as_float64_statistics(data["mu"], data["sigma"])
