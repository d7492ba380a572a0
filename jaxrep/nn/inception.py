"""InceptionV3 in its FID variant (pytorch-fid's `FIDInceptionA/C/E_1/E_2`), pool3 features, and weight conversion.

The FID network (Heusel et al. 2017) is the 2015-12-05 TensorFlow Inception graph. pytorch-fid ports it to
torchvision's `Inception3` with four patched block types that reproduce TensorFlow's behaviour:
- `FIDInceptionA`, `FIDInceptionC`, `FIDInceptionE_1` (Mixed_5b-d, Mixed_6b-e, Mixed_7b): the pool branch averages
  without counting the zero padding (`avg_pool2d(..., count_include_pad=False)`);
- `FIDInceptionE_2` (Mixed_7c): the pool branch is a 3 x 3 *max* pool (a quirk of the TF graph).
Inputs follow pytorch-fid's `InceptionV3(resize_input=True, normalize_input=True)`: RGB in [0, 1], bilinearly
resized to 299 x 299 (`F.interpolate(..., align_corners=False)`, reproduced exactly by `resize_like_torch`), scaled
to [-1, 1]; the output is the 2048-d global average pool of Mixed_7c ("pool3"), the features FID is defined on.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a plain state dict) converts with
`load_inception_variables`; Flax module names equal the state-dict names, so `Mixed_6b.branch7x7_2.conv.weight`
becomes `params["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]` and `...bn.running_mean` becomes
`batch_stats[...]["bn"]["mean"]`. Files are read with `torch.load(weights_only=True)` or safetensors only
(`jaxrep.weights.convert.load_state_dict`), so no pickled code ever runs.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.nn.vit import resize_like_torch

__all__ = [
    "FID_INPUT_SIZE",
    "FID_FEATURE_DIM",
    "FIDInceptionV3",
]

FID_INPUT_SIZE = 299
FID_FEATURE_DIM = 2048


def _pad(padding: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    return (padding[0], padding[0]), (padding[1], padding[1])


def _avg_pool_excluding_padding(x: jax.Array) -> jax.Array:
    """TF's 3 x 3 / stride 1 / SAME average pool: padded zeros are not counted (pytorch-fid's patch)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class BasicConv2d(nn.Module):
    """torchvision's `BasicConv2d`: bias-free conv, BatchNorm (eps 1e-3, running statistics), ReLU."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, self.kernel_size, strides=self.strides, padding=_pad(self.padding),
                    use_bias=False, precision=self.precision, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


class FIDInceptionA(nn.Module):
    """Mixed_5b/c/d: 1x1, 5x5, double 3x3 and pool branches -> 224 + pool_features channels."""

    pool_features: int
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        branch1x1 = conv("branch1x1", 64, (1, 1))(x)
        branch5x5 = conv("branch5x5_1", 48, (1, 1))(x)
        branch5x5 = conv("branch5x5_2", 64, (5, 5), padding=(2, 2))(branch5x5)
        branch3x3dbl = conv("branch3x3dbl_1", 64, (1, 1))(x)
        branch3x3dbl = conv("branch3x3dbl_2", 96, (3, 3), padding=(1, 1))(branch3x3dbl)
        branch3x3dbl = conv("branch3x3dbl_3", 96, (3, 3), padding=(1, 1))(branch3x3dbl)
        branch_pool = conv("branch_pool", self.pool_features, (1, 1))(_avg_pool_excluding_padding(x))
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (torchvision's `InceptionB`, unpatched): grid reduction 35 -> 17."""

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        branch3x3 = conv("branch3x3", 384, (3, 3), strides=(2, 2))(x)
        branch3x3dbl = conv("branch3x3dbl_1", 64, (1, 1))(x)
        branch3x3dbl = conv("branch3x3dbl_2", 96, (3, 3), padding=(1, 1))(branch3x3dbl)
        branch3x3dbl = conv("branch3x3dbl_3", 96, (3, 3), strides=(2, 2))(branch3x3dbl)
        return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionC(nn.Module):
    """Mixed_6b/c/d/e: factorised 7x7 branches of width channels_7x7 -> 768 channels."""

    channels_7x7: int
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        c7 = self.channels_7x7
        branch1x1 = conv("branch1x1", 192, (1, 1))(x)
        branch7x7 = conv("branch7x7_1", c7, (1, 1))(x)
        branch7x7 = conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(branch7x7)
        branch7x7 = conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(branch7x7)
        branch7x7dbl = conv("branch7x7dbl_1", c7, (1, 1))(x)
        branch7x7dbl = conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(branch7x7dbl)
        branch7x7dbl = conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(branch7x7dbl)
        branch7x7dbl = conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(branch7x7dbl)
        branch7x7dbl = conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(branch7x7dbl)
        branch_pool = conv("branch_pool", 192, (1, 1))(_avg_pool_excluding_padding(x))
        return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (torchvision's `InceptionD`, unpatched): grid reduction 17 -> 8."""

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        branch3x3 = conv("branch3x3_1", 192, (1, 1))(x)
        branch3x3 = conv("branch3x3_2", 320, (3, 3), strides=(2, 2))(branch3x3)
        branch7x7x3 = conv("branch7x7x3_1", 192, (1, 1))(x)
        branch7x7x3 = conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(branch7x7x3)
        branch7x7x3 = conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(branch7x7x3)
        branch7x7x3 = conv("branch7x7x3_4", 192, (3, 3), strides=(2, 2))(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (`FIDInceptionE_1`, pool="avg") and Mixed_7c (`FIDInceptionE_2`, pool="max") -> 2048 channels."""

    pool: str
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        branch1x1 = conv("branch1x1", 320, (1, 1))(x)
        branch3x3 = conv("branch3x3_1", 384, (1, 1))(x)
        branch3x3 = jnp.concatenate([conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(branch3x3),
                                     conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(branch3x3)], axis=-1)
        branch3x3dbl = conv("branch3x3dbl_1", 448, (1, 1))(x)
        branch3x3dbl = conv("branch3x3dbl_2", 384, (3, 3), padding=(1, 1))(branch3x3dbl)
        branch3x3dbl = jnp.concatenate([conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(branch3x3dbl),
                                        conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(branch3x3dbl)], axis=-1)
        if self.pool == "avg":
            pooled = _avg_pool_excluding_padding(x)
        else:  # the TF graph's max pool in the last block (pytorch-fid's FIDInceptionE_2)
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        branch_pool = conv("branch_pool", 192, (1, 1))(pooled)
        return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's `InceptionV3(output_blocks=[3])`: images -> pool3 features (B, 2048).

    Attributes:
      resize_input: bilinearly resize to 299 x 299 first (pytorch-fid's default). Without it the input must be
        at least 75 x 75 (the smallest side the stride-2 reductions accept).
      precision: conv precision; HIGHEST keeps float32 on accelerators (TF32 convs shift FID in the 2nd decimal).

    Call with images (B, H, W, 3) float RGB in [0, 1]; variables {"params", "batch_stats"}.
    """

    resize_input: bool = True
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3: expected RGB images (B, H, W, 3), got shape {images.shape}")
        x = images.astype(jnp.float32)
        if self.resize_input:
            x = resize_like_torch(x, (FID_INPUT_SIZE, FID_INPUT_SIZE), method="bilinear")
        x = 2.0 * x - 1.0  # pytorch-fid's normalize_input: [0, 1] -> [-1, 1]
        conv = lambda name, *args, **kwargs: BasicConv2d(*args, **kwargs, precision=self.precision, name=name)
        x = conv("Conv2d_1a_3x3", 32, (3, 3), strides=(2, 2))(x)
        x = conv("Conv2d_2a_3x3", 32, (3, 3))(x)
        x = conv("Conv2d_2b_3x3", 64, (3, 3), padding=(1, 1))(x)
        x = _max_pool_3x3_stride2(x)
        x = conv("Conv2d_3b_1x1", 80, (1, 1))(x)
        x = conv("Conv2d_4a_3x3", 192, (3, 3))(x)
        x = _max_pool_3x3_stride2(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = FIDInceptionA(pool_features, precision=self.precision, name=name)(x)
        x = InceptionB(precision=self.precision, name="Mixed_6a")(x)
        for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = FIDInceptionC(channels_7x7, precision=self.precision, name=name)(x)
        x = InceptionD(precision=self.precision, name="Mixed_7a")(x)
        x = FIDInceptionE("avg", precision=self.precision, name="Mixed_7b")(x)
        x = FIDInceptionE("max", precision=self.precision, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))
