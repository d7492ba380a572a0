"""Evaluation of latent traversals, shared by `train.vae` (regularized) and `train.traversal`: the rollouts of
every potential, their decoded strips (one row per potential, one column per flow step) and the VP score."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.chunked import map_in_chunks
from jaxrep.metrics.disentanglement import variation_predictability
from jaxrep.run.logging import save_image_grid
from jaxrep.traversal import traverse_all


def traversal_latents(family: Any, params: Any, z0: jax.Array, num_steps: int, step_size: float) -> jax.Array:
    """Every potential's rollout from z0 (N, d): (K, T + 1, N, d), jitted per family."""
    return _traverse(family, num_steps)(params, z0, jnp.float32(step_size))


@functools.lru_cache(maxsize=None)
def _traverse(family: Any, num_steps: int) -> Callable:
    return jax.jit(lambda params, z0, step_size: traverse_all(family, params, z0, num_steps, step_size=step_size))


def generate_images(generate: Callable[[jax.Array], jax.Array], latents: jax.Array, chunk: int = 250) -> np.ndarray:
    """generate (M, d) -> (M, H, W, C) in chunks; latents (..., d) -> images (..., H, W, C) on the host."""
    images = map_in_chunks(generate, np.asarray(latents).reshape(-1, latents.shape[-1]), chunk)
    return images.reshape(latents.shape[:-1] + images.shape[1:])


def write_strips(workdir: str, step: int, images: np.ndarray, num_strips: int) -> list[str]:
    """images (K, T + 1, N, H, W, C) in [0, 1] -> strips/<step>_<i>.png for i < num_strips: K rows of T + 1."""
    num_potentials, columns = images.shape[:2]
    paths = []
    for i in range(min(num_strips, images.shape[2])):
        path = os.path.join(workdir, "strips", f"{step:07d}_{i}.png")
        strip = images[:, :, i].reshape((num_potentials * columns,) + images.shape[3:])
        save_image_grid(path, strip, ncols=columns, value_range=(0.0, 1.0))
        paths.append(path)
    return paths


def traversal_vp(images: np.ndarray, seed: int) -> float:
    """VP of the pairs (first, last column) of images (K, T + 1, N, H, W, C): predict k from x_T - x_0."""
    num_potentials, _, count = images.shape[:3]
    labels = np.repeat(np.arange(num_potentials), count)
    first = images[:, 0].reshape((num_potentials * count, -1))
    last = images[:, -1].reshape((num_potentials * count, -1))
    return variation_predictability(first, last, labels, seed=seed)
