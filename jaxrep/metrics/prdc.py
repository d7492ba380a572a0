"""k-NN precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020), in row blocks.

Definitions follow Naeem et al.'s reference `prdc` package (clovaai/generative-evaluation-prdc) exactly: the
radius of a sample is the distance to its k-th nearest neighbour in its own set, excluding itself (the (k+1)-th
smallest distance counting the zero self-distance), and "inside a ball" is the strict `distance < radius`.
With real X = {x_i} (N), fake Y = {y_j} (M), radii r(x_i) (within X) and r(y_j) (within Y):

    precision = (1/M) sum_j 1[exists i: |y_j - x_i| < r(x_i)]        (Kynkäänniemi et al., Eq. 1-2)
    recall    = (1/N) sum_i 1[exists j: |x_i - y_j| < r(y_j)]
    density   = (1/(kM)) sum_j sum_i 1[|y_j - x_i| < r(x_i)]          (Naeem et al., Eq. 3)
    coverage  = (1/N) sum_i 1[min_j |x_i - y_j| < r(x_i)]             (Naeem et al., Eq. 4)

Distances are compared squared (same order, no sqrt) and computed blockwise on the default JAX device, so at most
a (batch_size, max(N, M)) block of distances exists at a time. Both sets are centred on the real mean first
(distances are translation invariant) to shrink the cancellation in |a|^2 + |b|^2 - 2 a.b.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp


def _squared_distances(queries: jax.Array, points: jax.Array) -> jax.Array:
    """|q_a - p_b|^2 for queries (A, D) and points (B, D) -> (A, B), clamped at 0 against rounding."""
    cross = queries @ points.T
    squared = jnp.sum(queries**2, axis=1)[:, None] + jnp.sum(points**2, axis=1)[None, :] - 2.0 * cross
    return jnp.maximum(squared, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _block_squared_radii(query_block: jax.Array, points: jax.Array, k: int) -> jax.Array:
    """Squared distance (b,) from each query to its (k+1)-th nearest point, the query itself included."""
    neg_smallest, _ = jax.lax.top_k(-_squared_distances(query_block, points), k + 1)
    return -neg_smallest[:, -1]


@jax.jit
def _block_real_vs_fake(real_block, real_squared_radii, fake, fake_squared_radii):
    """One block of real rows against all fake samples.

    Returns (fake_in_any_ball (M,) bool, balls_per_fake (M,) int, real_recalled (b,) bool, real_covered (b,) bool).
    """
    squared = _squared_distances(real_block, fake)  # (b, M)
    in_real_ball = squared < real_squared_radii[:, None]
    real_recalled = jnp.any(squared < fake_squared_radii[None, :], axis=1)
    real_covered = jnp.min(squared, axis=1) < real_squared_radii
    return jnp.any(in_real_ball, axis=0), jnp.sum(in_real_ball, axis=0), real_recalled, real_covered


def _padded_blocks(features: jax.Array, batch_size: int):
    """Yields (block (batch_size, D), number of valid rows); the last block is zero-padded so jit compiles once."""
    count = features.shape[0]
    for start in range(0, count, batch_size):
        block = features[start : start + batch_size]
        valid = block.shape[0]
        if valid < batch_size:
            block = jnp.pad(block, ((0, batch_size - valid), (0, 0)))
        yield block, valid


def _squared_radii(features: jax.Array, k: int, batch_size: int) -> jax.Array:
    """Squared k-NN radius (N,) of every row of features (N, D) within the set, excluding itself."""
    blocks = _padded_blocks(features, batch_size)
    return jnp.concatenate([_block_squared_radii(block, features, k)[:valid] for block, valid in blocks])


def prdc(real_features, fake_features, *, k: int = 5, batch_size: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones (definitions in module doc).

    Args:
      real_features: (N, D), e.g. Inception pool3 or DINOv2 features of real images; N > k.
      fake_features: (M, D), same feature extractor on generated images; M > k.
      k: nearest-neighbour index for the radii (5 in both papers; Naeem et al. recommend k = 5 with 10k samples).
      batch_size: rows per distance block; memory is O(batch_size * max(N, M)). Results do not depend on it.
    Returns:
      {"precision", "recall", "density", "coverage"} as Python floats; density can exceed 1.
    """
    real = jnp.asarray(real_features, dtype=jnp.result_type(float))
    fake = jnp.asarray(fake_features, dtype=jnp.result_type(float))
    chex.assert_rank([real, fake], 2)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"prdc: feature dims differ (real {real.shape[1]}, fake {fake.shape[1]})")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"prdc: need more than k={k} samples per set, got {real.shape[0]} real, {fake.shape[0]} fake")
    if batch_size < 1:
        raise ValueError(f"prdc: batch_size must be positive, got {batch_size}")
    centre = jnp.mean(real, axis=0)
    real, fake = real - centre, fake - centre

    real_squared_radii = _squared_radii(real, k, batch_size)
    fake_squared_radii = _squared_radii(fake, k, batch_size)

    fake_in_any_ball = jnp.zeros((fake.shape[0],), dtype=bool)
    balls_per_fake = jnp.zeros((fake.shape[0],), dtype=jnp.int32)
    real_recalled, real_covered = [], []
    # Padded real rows get radius -1: no distance is below it, so they never claim a fake sample.
    padded_radii = jnp.pad(real_squared_radii, (0, -real.shape[0] % batch_size), constant_values=-1.0)
    for index, (block, valid) in enumerate(_padded_blocks(real, batch_size)):
        block_radii = padded_radii[index * batch_size : (index + 1) * batch_size]
        in_any, counts, recalled, covered = _block_real_vs_fake(block, block_radii, fake, fake_squared_radii)
        fake_in_any_ball = fake_in_any_ball | in_any
        balls_per_fake = balls_per_fake + counts
        real_recalled.append(recalled[:valid])
        real_covered.append(covered[:valid])

    return {
        "precision": float(jnp.mean(fake_in_any_ball)),
        "recall": float(jnp.mean(jnp.concatenate(real_recalled))),
        "density": float(jnp.sum(balls_per_fake)) / (k * fake.shape[0]),
        "coverage": float(jnp.mean(jnp.concatenate(real_covered))),
    }
