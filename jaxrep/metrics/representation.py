"""Representation metrics as pure jnp functions: spectrum-based rank, linear CKA, spatial structure of patch tokens.

All functions are jit-able; `grid_hw`, `far_distance` and `max_distance` must be static under `jax.jit`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np


def effective_rank(features: jax.Array, eps: float = 1e-7) -> jax.Array:
    """Effective rank exp(H(p)), p_k = sigma_k / sum_j sigma_j + eps (Roy & Vetterli 2007, Eq. 3; RankMe Eq. 1).

    Between 1 (one non-zero singular value) and min(N, D) (flat spectrum). Features are not centred, as in RankMe
    (Garrido et al. 2023), which applies it to raw embeddings; centre them first for the covariance spectrum.

    Args:
      features: (N, D) embeddings, one row per sample.
      eps: keeps log finite for zero singular values (RankMe uses 1e-7).
    Returns:
      Scalar float.
    """
    chex.assert_rank(features, 2)
    singular_values = jnp.linalg.svd(features, compute_uv=False)
    p = singular_values / (jnp.sum(singular_values) + eps) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def srank(features: jax.Array, delta: float = 0.01) -> jax.Array:
    """Effective rank srank_delta = min{k : sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta}.

    Kumar et al. 2021, "Implicit Under-Parameterization Inhibits Data-Efficient Deep RL", Sec. 3 (singular
    values sorted in decreasing order; the paper uses delta = 0.01).

    Args:
      features: (N, D), e.g. penultimate-layer features of a Q-network on a batch of states.
      delta: fraction of the singular-value mass allowed to be left out.
    Returns:
      Scalar int32 in [1, min(N, D)].
    """
    chex.assert_rank(features, 2)
    singular_values = jnp.linalg.svd(features, compute_uv=False)  # decreasing
    cumulative = jnp.cumsum(singular_values) / jnp.sum(singular_values)
    rank = jnp.sum(cumulative < 1.0 - delta) + 1
    # Rounding can leave the full cumulative sum a hair below 1 when delta = 0.
    return jnp.minimum(rank, singular_values.shape[0]).astype(jnp.int32)


def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """Linear centred kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network Representations
    Revisited", Sec. 3 / Eq. 5 with linear kernels):

        CKA(X, Y) = |Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F),  X, Y column-centred.

    Invariant to orthogonal transforms and isotropic scaling of either input; 1 for identical inputs.

    Args:
      x: (N, D1) features of N examples.
      y: (N, D2) features of the same N examples.
    Returns:
      Scalar in [0, 1].
    """
    chex.assert_rank([x, y], 2)
    chex.assert_equal_shape_prefix([x, y], 1)
    x = x - jnp.mean(x, axis=0)
    y = y - jnp.mean(y, axis=0)
    cross = jnp.sum(jnp.square(y.T @ x))
    return cross / (jnp.linalg.norm(x.T @ x) * jnp.linalg.norm(y.T @ y))


def _grid_distances(tokens: jax.Array, grid_hw: tuple[int, int]) -> np.ndarray:
    """`_manhattan_distances` of the grid, after checking that the (B, N, D) tokens fill it."""
    if tokens.shape[-2] != grid_hw[0] * grid_hw[1]:
        raise ValueError(f"tokens: {tokens.shape[-2]} tokens do not fill the {grid_hw[0]} x {grid_hw[1]} grid")
    return _manhattan_distances(grid_hw)


def _manhattan_distances(grid_hw: tuple[int, int]) -> np.ndarray:
    """(N, N) Manhattan distances between cells of an H x W grid in row-major order; built on the host (static)."""
    height, width = grid_hw
    rows, cols = np.divmod(np.arange(height * width), width)
    return np.abs(rows[:, None] - rows[None, :]) + np.abs(cols[:, None] - cols[None, :])


def _cosine_similarities(tokens: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
    """Pairwise cosine similarities (B, N, N) of patch tokens (B, N, D), N = H * W."""
    chex.assert_rank(tokens, 3)
    if tokens.shape[1] != grid_hw[0] * grid_hw[1]:
        raise ValueError(f"tokens have {tokens.shape[1]} patches, grid {grid_hw} has {grid_hw[0] * grid_hw[1]}")
    normalised = tokens / jnp.maximum(jnp.linalg.norm(tokens, axis=-1, keepdims=True), 1e-12)
    return jnp.einsum("bnd,bmd->bnm", normalised, normalised)


def _masked_mean(similarities: jax.Array, mask: np.ndarray) -> jax.Array:
    """Mean of similarities (B, N, N) over the pairs where mask (N, N) is true -> (B,)."""
    return jnp.sum(similarities * mask, axis=(1, 2)) / mask.sum()


def local_distant_similarity(tokens: jax.Array, grid_hw: tuple[int, int], far_distance: int = 6) -> jax.Array:
    """LDS: mean cosine of 4-neighbour patch pairs minus mean cosine of distant pairs, averaged over images.

    The local-vs-distant spatial-structure score of iREPA (Singh et al. 2025, "What matters for Representation
    Alignment: Global Information or Spatial Structure?", Sec. 3): with tokens L2-normalised and d(i, j) the
    Manhattan distance on the grid, LDS = mean_{d=1} cos(t_i, t_j) - mean_{d >= far_distance} cos(t_i, t_j).
    Positive when nearby patches are more alike than distant ones; ~0 for spatially unstructured tokens.

    Args:
      tokens: (B, N, D) patch tokens of an H x W grid in row-major order (N = H * W), no CLS token.
      grid_hw: (H, W), static.
      far_distance: smallest Manhattan distance counted as distant, static; at most H + W - 2.
    Returns:
      Scalar float.
    """
    distances = _grid_distances(tokens, grid_hw)
    if far_distance < 2 or far_distance > distances.max():
        raise ValueError(f"far_distance must lie in [2, {distances.max()}] for grid {grid_hw}, got {far_distance}")
    similarities = _cosine_similarities(tokens, grid_hw)
    near = _masked_mean(similarities, distances == 1)
    far = _masked_mean(similarities, distances >= far_distance)
    return jnp.mean(near - far)


def correlation_decay_slope(tokens: jax.Array, grid_hw: tuple[int, int], max_distance: int = 8) -> jax.Array:
    """CDS: minus the least-squares slope of mean patch cosine against Manhattan distance d = 1..max_distance.

    iREPA's correlation-decay score (Singh et al. 2025, Sec. 3): how fast token similarity falls with distance;
    positive when it decays. The slope is linear in the means, so averaging over images first is exact.

    Args:
      tokens: (B, N, D) patch tokens of an H x W grid in row-major order.
      grid_hw: (H, W), static.
      max_distance: largest distance in the fit, static; at most H + W - 2.
    Returns:
      Scalar float.
    """
    distances = _grid_distances(tokens, grid_hw)
    if max_distance < 2 or max_distance > distances.max():
        raise ValueError(f"max_distance must lie in [2, {distances.max()}] for grid {grid_hw}, got {max_distance}")
    similarities = _cosine_similarities(tokens, grid_hw)
    offsets = np.arange(1, max_distance + 1)
    mean_by_distance = jnp.stack([jnp.mean(_masked_mean(similarities, distances == d)) for d in offsets])
    centred_offsets = offsets - offsets.mean()
    slope = jnp.sum(centred_offsets * mean_by_distance) / np.sum(centred_offsets**2)
    return -slope
