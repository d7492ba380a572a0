"""Representation metrics on matrices with known spectra, CKA invariances, and spatial scores on built token grids."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import ortho_group

from jaxrep.metrics import correlation_decay_slope, effective_rank, linear_cka, local_distant_similarity, srank


def _with_singular_values(singular_values, num_rows=12, num_cols=6, seed=0):
    """U diag(s) V^T with random orthonormal U (num_rows, r) and V (num_cols, r)."""
    rank = len(singular_values)
    u = ortho_group.rvs(num_rows, random_state=seed)[:, :rank]
    v = ortho_group.rvs(num_cols, random_state=seed + 1)[:, :rank]
    return jnp.asarray((u * np.asarray(singular_values)) @ v.T, dtype=jnp.float32)


@pytest.mark.parametrize(
    "singular_values, expected",
    [
        ([1.0, 1.0, 1.0, 1.0], 4.0),
        ([3.0, 0.0, 0.0, 0.0], 1.0),
        ([2.0, 2.0, 0.0], 2.0),
        # p = (1/2, 1/4, 1/4): H = 1.5 log 2, exp(H) = 2^1.5.
        ([2.0, 1.0, 1.0], 2.0**1.5),
    ],
)
def test_effective_rank_of_known_spectra(singular_values, expected):
    features = _with_singular_values(singular_values)
    assert float(jax.jit(effective_rank)(features)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("delta, expected", [(0.01, 4), (0.15, 3), (0.35, 2), (0.65, 1)])
def test_srank_of_known_spectrum(delta, expected):
    # Normalised cumulative mass of (4, 3, 2, 1): 0.4, 0.7, 0.9, 1.0.
    features = _with_singular_values([4.0, 3.0, 2.0, 1.0])
    assert int(jax.jit(srank, static_argnames="delta")(features, delta=delta)) == expected


def test_srank_of_flat_spectrum_with_zero_delta_is_full_rank():
    assert int(srank(_with_singular_values([1.0] * 6), delta=0.0)) == 6


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(50, 8)), dtype=jnp.float32)
    y = jnp.asarray(rng.normal(size=(50, 5)) + 0.5 * np.asarray(x[:, :5]), dtype=jnp.float32)
    rotation = jnp.asarray(ortho_group.rvs(8, random_state=1), dtype=jnp.float32)
    cka = float(jax.jit(linear_cka)(x, y))
    assert 0.05 < cka < 0.95
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(linear_cka(x @ rotation, y)) == pytest.approx(cka, rel=1e-5)
    assert float(linear_cka(3.7 * x + 2.0, y)) == pytest.approx(cka, rel=1e-5)  # scale, and centring removes shift
    assert float(linear_cka(y, x)) == pytest.approx(cka, rel=1e-5)


def test_linear_cka_hand_computed():
    # Centred x = (-1, 0, 1), y = (1, -2, 1) are orthogonal: Y^T X = 0. Rank-1 columns: CKA = cos^2 of the two.
    x = jnp.array([[0.0], [1.0], [2.0]])
    assert float(linear_cka(x, jnp.array([[1.0], [-2.0], [1.0]]))) == pytest.approx(0.0, abs=1e-7)
    y = jnp.array([[0.0], [0.0], [3.0]])  # centred (-1, -1, 2): cos with (-1, 0, 1) = 3 / (sqrt(2) sqrt(6))
    assert float(linear_cka(x, y)) == pytest.approx(9.0 / 12.0, rel=1e-6)


def test_local_distant_similarity_hand_computed():
    # 2 x 2 grid, row-major. Normalised tokens a = (1, 0), b = (0, 1), c = (1, 1)/sqrt2, d = (-1, 0).
    # Neighbours (a,b), (a,c), (b,d), (c,d): cosines 0, 1/sqrt2, 0, -1/sqrt2 -> mean 0.
    # Distance 2: (a,d), (b,c): cosines -1, 1/sqrt2 -> mean (1/sqrt2 - 1) / 2.  LDS = (1 - 1/sqrt2) / 2.
    # A second image of identical tokens has LDS 0; the batch mean halves the first.
    structured = jnp.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    constant = jnp.ones((4, 2))
    tokens = jnp.stack([structured, constant])
    lds = jax.jit(local_distant_similarity, static_argnames=("grid_hw", "far_distance"))
    expected = (1.0 - 1.0 / np.sqrt(2.0)) / 2.0
    assert float(lds(tokens[:1], grid_hw=(2, 2), far_distance=2)) == pytest.approx(expected, rel=1e-6)
    assert float(lds(tokens, grid_hw=(2, 2), far_distance=2)) == pytest.approx(expected / 2.0, rel=1e-6)


def test_rotating_tokens_lds_and_decay_slope():
    # Token i of a 1 x 4 strip at angle i * pi/6: cosine at distance d is cos(d pi/6) = sqrt3/2, 1/2, 0.
    # LDS (far >= 3) = sqrt3/2 - 0. Least-squares slope over d = 1, 2, 3 is (y3 - y1) / 2 = -sqrt3/4.
    angles = np.arange(4) * np.pi / 6.0
    tokens = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], axis=-1)[None], dtype=jnp.float32)
    assert float(local_distant_similarity(tokens, (1, 4), far_distance=3)) == pytest.approx(np.sqrt(3) / 2, rel=1e-6)
    slope = correlation_decay_slope(tokens, (1, 4), max_distance=3)
    assert float(slope) == pytest.approx(np.sqrt(3) / 4, rel=1e-5)


def _smooth_field_tokens(key, batch, grid_hw, dim):
    """Random Fourier features of the patch position at low frequency: nearby patches get similar tokens."""
    height, width = grid_hw
    positions = np.stack(np.divmod(np.arange(height * width), width), axis=-1).astype(np.float32)  # (N, 2)
    freq_key, phase_key = jax.random.split(key)
    frequencies = 0.3 * jax.random.normal(freq_key, (batch, 2, dim))
    phases = jax.random.uniform(phase_key, (batch, 1, dim), maxval=2 * np.pi)
    return jnp.cos(jnp.einsum("nc,bcd->bnd", positions, frequencies) + phases)


def test_spatial_scores_separate_smooth_fields_from_noise():
    grid_hw = (8, 8)
    smooth_key, noise_key = jax.random.split(jax.random.key(0))
    smooth = _smooth_field_tokens(smooth_key, 4, grid_hw, 64)
    noise = jax.random.normal(noise_key, (4, 64, 256))  # cosine std 1/16: both means ~0 to within ~0.004
    scores = functools.partial(local_distant_similarity, grid_hw=grid_hw, far_distance=6)
    assert float(scores(smooth)) > 0.2
    assert abs(float(scores(noise))) < 0.02
    assert float(correlation_decay_slope(smooth, grid_hw)) > 0.01
    assert abs(float(correlation_decay_slope(noise, grid_hw))) < 0.005


def test_spatial_scores_validate_grid():
    tokens = jnp.ones((1, 6, 3))
    with pytest.raises(ValueError, match=r"^tokens: 6 tokens do not fill the 2 x 2 grid"):
        local_distant_similarity(tokens, (2, 2))
    with pytest.raises(ValueError, match=r"^tokens: 6 tokens do not fill the 4 x 2 grid"):
        correlation_decay_slope(tokens, (4, 2))
    with pytest.raises(ValueError, match=r"^far_distance must lie in \[2, 3\] for grid \(2, 3\), got 4"):
        local_distant_similarity(tokens, (2, 3), far_distance=4)
