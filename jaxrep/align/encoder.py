"""The frozen target encoder of representation alignment and its target pipeline.

The encoder (`FrozenEncoder`: a ViT or HOG and its input side) comes from `jaxrep.weights.encoder`: the in-repo
checkpoint, a DINOv2 file, or iREPA's random / HOG controls.

Both go through one target pipeline (`make_target_fn`): model-space images -> [0, 1] RGB -> REPA's
preprocessing (ImageNet mean/std, then bicubic resize to `image_size`, `targets.preprocess_images`) ->
post-LN patch tokens -> bilinear resize of the token grid to the SiT grid when the two differ
(`targets.resize_token_grid`) -> optional iREPA spatial z-score -> `stop_gradient`. The in-repo encoder is
trained with exactly this preprocessing, so it sees its inputs as it did in training.

The encoder's parameters are an argument of the target function and never part of the trained params: the
train step only sees the finished targets (`batch["align_target"]`), so nothing can update the encoder and
gradients into it are zero by construction (`stop_gradient` makes that hold inside a larger `jax.grad` too).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrep.align.hog import HOG
from jaxrep.align.irepa import spatial_normalize
from jaxrep.align.targets import encoder_targets
from jaxrep.nn.vit import ViT

__all__ = [
    "FrozenEncoder",
    "to_unit_rgb",
    "make_target_fn",
]


@dataclasses.dataclass(frozen=True)
class FrozenEncoder:
    """A ViT with its (frozen) params and the side of the square images it is fed.

    Attributes:
      model: the `ViT`.
      params: its `params` collection (float32 arrays).
      image_size: encoder input side; the token grid is (image_size / patch)^2.
      metadata: what the checkpoint recorded about its training (empty for DINOv2 files).
    """

    model: ViT | HOG
    params: Any
    image_size: int
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def width(self) -> int:
        return self.model.width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.model.patch_size


def to_unit_rgb(images: jax.Array) -> jax.Array:
    """Model-space images (B, H, W, C) -> RGB the encoder preprocessing accepts.

    uint8 passes through (the preprocessing divides by 255); floats are taken as [-1, 1] (the diffusion
    data range) and mapped to [0, 1]; one channel (dSprites) is repeated to three.
    """
    if images.dtype != jnp.uint8:
        images = (images.astype(jnp.float32) + 1.0) * 0.5
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    return images


def make_target_fn(encoder: FrozenEncoder, *, grid_hw: tuple[int, int] | None,
                   spatial_norm_gamma: float | None = None) -> Callable[[Any, jax.Array], jax.Array]:
    """Returns targets(encoder_params, images) -> (B, N, D_enc), the alignment targets y*.

    Args:
      encoder: the frozen encoder (its params are passed to the returned function, not captured, so
        `jax.grad` with respect to them is well defined and zero).
      grid_hw: the SiT token grid; the encoder grid is resized to it bilinearly when they differ.
      spatial_norm_gamma: iREPA's spatial z-score with this gamma (applied on the SiT grid, after any
        resize); None for REPA/ERW.
    Images are (B, H, W, C) uint8 or float in [-1, 1].
    """

    def targets(encoder_params: Any, images: jax.Array) -> jax.Array:
        tokens = encoder_targets(encoder.model, encoder_params, to_unit_rgb(images),
                                 image_size=encoder.image_size, grid_hw=grid_hw)
        if spatial_norm_gamma is not None:
            tokens = spatial_normalize(tokens, gamma=spatial_norm_gamma)
        return jax.lax.stop_gradient(tokens)

    return targets
