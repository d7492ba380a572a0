"""The in-repo evaluation network: a small pre-activation ResNet that classifies the procedural data's factors.

Its penultimate features play the part of Inception pool3 for Frechet distance and precision/recall on CPU
(train/eval_net.py trains it in about a minute on CPU; `jaxrep.weights.features` loads it). It is deliberately unlike
the alignment encoder (a ViT, `jaxrep.nn.vit`): a convolutional network, trained from another seed, so a model
aligned to the encoder is not graded by the encoder's own representation.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


class PreActResidualBlock(nn.Module):
    """GroupNorm-ReLU-conv twice plus a shortcut (He et al. 2016, "Identity Mappings in Deep Residual Networks").

    GroupNorm rather than BatchNorm: features of an image do not depend on the rest of its batch, in training
    and at evaluation alike.
    """

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups = lambda channels: min(8, channels)
        y = nn.relu(nn.GroupNorm(num_groups=groups(x.shape[-1]))(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), strides=self.strides, name="shortcut")(y)
        y = nn.Conv(self.features, (3, 3), strides=self.strides)(y)
        y = nn.relu(nn.GroupNorm(num_groups=groups(self.features))(y))
        y = nn.Conv(self.features, (3, 3))(y)
        return shortcut + y


class EvalNet(nn.Module):
    """Images (B, H, W, C) in [-1, 1] -> (one logits array (B, K_f) per factor, features (B, feature_dim)).

    A 3 x 3 stem, one stride-2 residual block per entry of `widths[1:]`, then the final map is flattened (not
    globally pooled: object position is one of the factors) into `feature_dim` ReLU units, the penultimate
    features; one linear head per factor reads them.

    Attributes:
      factor_sizes: number of classes of each predicted factor (e.g. ColoredShapes: (3, 6, 3, 5, 5)).
      widths: stem width, then the width of each downsampling block.
      feature_dim: width of the penultimate features.
    """

    factor_sizes: tuple[int, ...]
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        chex.assert_rank(images, 4)
        x = nn.Conv(self.widths[0], (3, 3), name="stem")(images.astype(jnp.float32))
        for index, width in enumerate(self.widths[1:]):
            x = PreActResidualBlock(width, strides=2, name=f"block_{index}")(x)
        x = nn.relu(nn.GroupNorm(num_groups=min(8, x.shape[-1]), name="final_norm")(x))
        features = nn.relu(nn.Dense(self.feature_dim, name="features")(x.reshape(x.shape[0], -1)))
        logits = [nn.Dense(size, name=f"head_{index}")(features) for index, size in enumerate(self.factor_sizes)]
        return logits, features
