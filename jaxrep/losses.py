"""Public face of every loss in jaxrep: pure functions of arrays, batch-mean reduced.

Importing this module pulls in no training code and none of orbax, tensorstore, scikit-learn, matplotlib, grain
or dm-control (tests/test_losses.py checks it in a fresh interpreter); each loss lives in the module of its
method family.
"""

from jaxrep.align.erw import erw_alignment_weight, erw_warmup_loss
from jaxrep.align.irepa import spatial_normalize
from jaxrep.align.repa import repa_loss
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.nn.vae import elbo_loss
from jaxrep.rl.beer import beer_loss
from jaxrep.traversal.losses import (
    initial_condition_loss,
    pde_residual_loss,
    potential_flow_loss,
    sequence_matching_loss,
    traversal_classifier_loss,
    variation_loss,
)

__all__ = [
    "beer_loss",
    "elbo_loss",
    "erw_alignment_weight",
    "erw_warmup_loss",
    "flow_matching_loss",
    "initial_condition_loss",
    "pde_residual_loss",
    "potential_flow_loss",
    "repa_loss",
    "sequence_matching_loss",
    "spatial_normalize",
    "traversal_classifier_loss",
    "variation_loss",
]
