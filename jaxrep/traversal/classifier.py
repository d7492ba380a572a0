"""The classifier that names the potential behind an image pair (Song et al., ICML 2023; the
official "reconstructor", `lib/reconstructor.py` LeNet, following Voynov & Babenko 2020's latent
deformator/reconstructor pair). It is shared by the potential flow and the linear-direction baseline.

LeNet at width 2, as upstream: the two images concatenated on channels, three 5x5 VALID convolutions
(6, 16, 120 channels) with max-pooling after the first two, a global average pool, then 120 -> 84 -> K.
Upstream normalises with BatchNorm; here GroupNorm(1) / LayerNorm, which are per sample, so the train step
stays a pure function of the batch shard (no running statistics, no cross-device batch reductions).

`stochastic_logits` reproduces the pretrained-VAE trainer's classifier, whose output is a Gaussian
(mean, log-variance) reparameterised into noisy logits before the cross-entropy.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


class PairClassifier(nn.Module):
    """logits(first, second): which of K traversals produced the pair.

    Attributes:
      num_classes: K.
      features: channels of the three convolutions.
      hidden: width of the hidden Dense layer.
      stochastic_logits: predict (mean, log-variance) and sample the logits when a key is given.
    """

    num_classes: int
    features: Sequence[int] = (6, 16, 120)
    hidden: int = 84
    stochastic_logits: bool = False

    @nn.compact
    def __call__(self, first: jax.Array, second: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """first, second: (B, H, W, C) images; key: noise for stochastic logits (None: their mean) -> (B, K)."""
        chex.assert_rank(first, 4)
        chex.assert_equal_shape([first, second])
        x = jnp.concatenate([first, second], axis=-1)
        for i, width in enumerate(self.features):
            x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv_{i}")(x)
            x = nn.relu(nn.GroupNorm(num_groups=1, name=f"norm_{i}")(x))
            if i < len(self.features) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.relu(nn.LayerNorm(name="hidden_norm")(nn.Dense(self.hidden, name="hidden")(x)))
        if not self.stochastic_logits:
            return nn.Dense(self.num_classes, name="logits")(x)
        mean = nn.Dense(self.num_classes, name="logits_mean")(x)
        log_var = nn.Dense(self.num_classes, name="logits_log_var")(x)
        if key is None:
            return mean
        return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)
