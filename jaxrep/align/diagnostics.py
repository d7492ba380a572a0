"""Alignment diagnostics: how a SiT block's tokens relate to the target encoder's, logged during training.

For a fixed probe batch: linear CKA of the patch tokens (Kornblith et al. 2019), mutual k-nearest-neighbour
alignment of the image-level features (Huh et al. 2024, "The Platonic Representation Hypothesis", Sec. 2: the
mean fraction of shared k-NN between two representations of the same images), iREPA's local-distant similarity
(spatial structure) of both token sets, and the effective rank of the block's tokens (RankMe).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrep.metrics.representation import effective_rank, linear_cka, local_distant_similarity


def mutual_knn_alignment(x: jax.Array, y: jax.Array, k: int) -> jax.Array:
    """Mean over examples of |N_k^x(i) & N_k^y(i)| / k, with N_k the k nearest other examples by cosine similarity.

    Args:
      x: (B, D1), y: (B, D2) features of the same B examples; k < B.
    Returns:
      scalar in [0, 1]: 1 when both representations rank neighbours alike.
    """
    if not 0 < k < x.shape[0]:
        raise ValueError(f"k: must be in [1, {x.shape[0] - 1}] for {x.shape[0]} examples, got {k}")

    def neighbours(features):
        unit = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
        similarity = unit @ unit.T - 3.0 * jnp.eye(features.shape[0])  # never one's own neighbour
        indices = jax.lax.top_k(similarity, k)[1]
        return jnp.zeros_like(similarity, dtype=bool).at[jnp.arange(features.shape[0])[:, None], indices].set(True)

    shared = jnp.sum(neighbours(x) & neighbours(y), axis=1)
    return jnp.mean(shared / k)


def alignment_diagnostics(hidden: jax.Array, target: jax.Array, grid_hw: tuple[int, int], *, k: int = 10,
                          far_distance: int = 6) -> dict[str, jax.Array]:
    """Diagnostics of block tokens against encoder tokens on the same grid.

    Args:
      hidden: SiT tokens after the aligned block, (B, N, D).
      target: encoder tokens resized to the SiT grid, (B, N, D_enc).
      grid_hw: the token grid, H * W = N.
      k: neighbours of the mutual k-NN score, at most (B - 1) // 4 so that a small probe batch does not make every
        example everyone's neighbour (Huh et al. use k = 10 of 1,024 images).
      far_distance: Manhattan distance of the "distant" pairs of the local-distant similarity.
    Returns:
      {"align_cka", "align_mutual_knn", "align_lds_hidden", "align_lds_target", "align_effective_rank"} scalars.
    """
    batch, tokens = hidden.shape[:2]
    hidden, target = hidden.astype(jnp.float32), target.astype(jnp.float32)
    far = min(far_distance, grid_hw[0] + grid_hw[1] - 2)
    return {
        "align_cka": linear_cka(hidden.reshape(batch * tokens, -1), target.reshape(batch * tokens, -1)),
        "align_mutual_knn": mutual_knn_alignment(hidden.mean(axis=1), target.mean(axis=1),
                                                 max(1, min(k, (batch - 1) // 4))),
        "align_lds_hidden": local_distant_similarity(hidden, grid_hw, far),
        "align_lds_target": local_distant_similarity(target, grid_hw, far),
        "align_effective_rank": effective_rank(hidden.reshape(batch * tokens, -1)),
    }
