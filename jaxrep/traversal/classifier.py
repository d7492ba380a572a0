"""The classifier that names the potential behind an image pair (Song et al., ICML 2023; the
official "reconstructor", `lib/reconstructor.py` LeNet, following Voynov & Babenko 2020's latent
deformator/reconstructor pair). It is shared by the potential flow and the linear-direction baseline.

LeNet at width 2, as upstream: the two images concatenated on channels, three 5x5 VALID convolutions
(6, 16, 120 channels) with max-pooling after the first two, a global average pool, then 120 -> 84 -> K.
Upstream normalises with BatchNorm; here GroupNorm(1) / LayerNorm, which are per sample, so the train step
stays a pure function of the batch shard (no running statistics, no cross-device batch reductions).

`stochastic_logits` takes over only the output of the pretrained-VAE trainer's classifier: a Gaussian
(mean, log-variance) reparameterised into noisy logits before the cross-entropy. That classifier is not the
LeNet but `models/vae.py` `ConvEncoder2` (`train_vae_pretrained.py`, `lib/trainer_vae.py`), and the body here
departs from it layer by layer (official at dSprites: 2 input channels, s = d = 226, 64 x 64):

    official ConvEncoder2                          here (LeNet body)
    conv 4x4/2 pad 1, 2 -> s, ReLU        (32^2)   conv 5x5 VALID -> 6, GroupNorm, ReLU, max-pool 2  (30^2)
    conv 4x4/2 pad 1, s -> 2s, ReLU       (16^2)   conv 5x5 VALID -> 16, GroupNorm, ReLU, max-pool 2 (13^2)
    conv 16x16 VALID, 2s -> 3s, ReLU      (1^2)    conv 5x5 VALID -> 120, GroupNorm, ReLU            (9^2)
    conv 1x1, 3s -> 2s, ReLU                       global average pool
    conv 1x1, 2s -> 2s (no activation)             Dense 120 -> 84, LayerNorm, ReLU
    Linear 2s -> s (mean), 2s -> s (log var)       Dense 84 -> K (mean), 84 -> K (log var)

So: no normalisation or pooling upstream (its 16x16 conv collapses the map instead); about 8e7 parameters
upstream against about 6e4 here; the logits there have s = 226 entries (a 226-way softmax whose targets
are only k < K), K here; there the logits are always sampled (training accuracy is the argmax of noisy
logits), here `key=None` returns their mean.
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
