"""Public face of every loss in jaxrep: pure functions of arrays, batch-mean reduced.

Importing this module pulls in no training code and none of orbax, tensorstore, scikit-learn, matplotlib, grain
or dm-control (tests/test_losses.py checks it in a fresh interpreter); each loss lives in the module of its
method family:

    align        erw_warmup_loss, erw_alignment_weight, repa_loss, spatial_normalize
    diffusion    flow_matching_loss
    nn.vae       elbo_loss (negative ELBO), importance_weighted_nll (the IWAE bound, Burda et al. 2016)
    rl           beer_loss; critic_loss, actor_loss (DDPG)
    supervised   factor_classification_loss, coverage_loss (target encoder and eval net)
    traversal    potential_flow_loss and its terms, traversal_classifier_loss, sequence_matching_loss

The train-step builders that wire these to the networks are next to them: `jaxrep.nn.vae.make_elbo_loss`,
`jaxrep.traversal.objective.make_traversal_loss` / `make_scratch_vae_loss`, `jaxrep.diffusion.objective`.
"""

from jaxrep.align.erw import erw_alignment_weight, erw_warmup_loss
from jaxrep.align.irepa import spatial_normalize
from jaxrep.align.repa import repa_loss
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.nn.vae import elbo_loss, importance_weighted_nll
from jaxrep.rl.beer import beer_loss
from jaxrep.rl.ddpg import actor_loss, critic_loss
from jaxrep.supervised import coverage_loss, factor_classification_loss
from jaxrep.traversal.losses import (
    initial_condition_loss,
    pde_residual_loss,
    potential_flow_loss,
    sequence_matching_loss,
    traversal_classifier_loss,
    variation_loss,
)

__all__ = [
    "actor_loss",
    "beer_loss",
    "coverage_loss",
    "critic_loss",
    "elbo_loss",
    "erw_alignment_weight",
    "erw_warmup_loss",
    "factor_classification_loss",
    "flow_matching_loss",
    "importance_weighted_nll",
    "initial_condition_loss",
    "pde_residual_loss",
    "potential_flow_loss",
    "repa_loss",
    "sequence_matching_loss",
    "spatial_normalize",
    "traversal_classifier_loss",
    "variation_loss",
]
