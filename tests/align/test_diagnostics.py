"""Alignment diagnostics: mutual k-NN against hand-computed neighbour sets, and the combined report's invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.diagnostics import alignment_diagnostics, mutual_knn_alignment
from jaxrep.metrics.representation import effective_rank


def test_mutual_knn_counts_shared_neighbours_by_hand():
    # Directions on the unit circle at 0, 10, 20, 90, 100 degrees: x's nearest neighbour of each point is known;
    # y reverses the order of the first three, so point 0's and point 2's neighbours differ.
    angles = np.deg2rad([0.0, 10.0, 20.0, 90.0, 100.0])
    x = np.stack([np.cos(angles), np.sin(angles)], 1)
    y = x[[2, 1, 0, 3, 4]]  # y_i = x_{perm(i)}
    # k = 1: neighbours in x: 0->1, 1->0 or 2 (tie broken by top_k: 0), 2->1, 3->4, 4->3.
    # in y (points at 20, 10, 0, 90, 100): 0->1, 1->2 (0 and 2 tie; top_k takes the first: index 0), 2->1, 3->4, 4->3
    nx = {0: 1, 1: 0, 2: 1, 3: 4, 4: 3}
    sims = y @ y.T - 3 * np.eye(5)
    ny = {i: int(np.argmax(sims[i])) for i in range(5)}
    expected = np.mean([nx[i] == ny[i] for i in range(5)])
    np.testing.assert_allclose(mutual_knn_alignment(jnp.asarray(x), jnp.asarray(y), 1), expected)
    np.testing.assert_allclose(mutual_knn_alignment(jnp.asarray(x), jnp.asarray(3.0 * x), 2), 1.0)
    with pytest.raises(ValueError, match="k: must be in"):
        mutual_knn_alignment(jnp.asarray(x), jnp.asarray(x), 5)


def test_unrelated_features_score_near_chance():
    x, y = (jax.random.normal(jax.random.key(i), (200, 16)) for i in (0, 1))
    score = float(mutual_knn_alignment(x, y, 10))
    assert abs(score - 10 / 199) < 0.03


def test_report_of_identical_tokens_is_perfect_and_rotation_invariant():
    tokens = jax.random.normal(jax.random.key(2), (6, 16, 8))
    rotation = jnp.linalg.qr(jax.random.normal(jax.random.key(3), (8, 8)))[0]
    report = jax.jit(lambda h, t: alignment_diagnostics(h, t, (4, 4), k=3))(tokens, tokens @ rotation)
    np.testing.assert_allclose(report["align_cka"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(report["align_mutual_knn"], 1.0)
    np.testing.assert_allclose(report["align_lds_hidden"], report["align_lds_target"], atol=1e-5)
    np.testing.assert_allclose(report["align_effective_rank"], effective_rank(tokens.reshape(96, 8)), rtol=1e-6)
