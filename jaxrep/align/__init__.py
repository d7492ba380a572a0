"""Representation alignment for diffusion transformers: REPA, iREPA and ERW as pure pieces.

- `repa`: negative-cosine alignment loss and the MLP projector (Yu et al. 2025).
- `irepa`: spatial z-score of the targets and the 3x3 conv projector (Singh et al. 2026).
- `erw`: warmup loss, decaying alignment weight and block transplant (Liu et al. 2025).
- `targets`: encoder preprocessing, frozen-encoder targets, token-grid resizing.
- `objective`: the alignment term of the SiT objective (`AlignmentTerm`), projectors by method, ERW's warmup
  objective.
- `encoder`: the frozen target encoder from the in-repo orbax checkpoint or a DINOv2 file, and the target
  function that produces `batch["align_target"]` (imported explicitly: it reads files).
"""

from jaxrep.align.erw import erw_alignment_weight, erw_initial_weight, erw_warmup_loss, transplant_blocks
from jaxrep.align.irepa import ConvProjector, spatial_normalize
from jaxrep.align.repa import MLPProjector, repa_loss
from jaxrep.align.targets import encoder_targets, preprocess_images, resize_token_grid

__all__ = [
    "ConvProjector",
    "MLPProjector",
    "encoder_targets",
    "erw_alignment_weight",
    "erw_initial_weight",
    "erw_warmup_loss",
    "preprocess_images",
    "repa_loss",
    "resize_token_grid",
    "spatial_normalize",
    "transplant_blocks",
]
