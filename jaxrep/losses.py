"""Public face of every loss in jaxrep: pure functions of arrays, each with a per-example form and its batch mean.

`<name>_per_example` returns one value per example, shape (B,) (a latent, transition or image: see its
docstring), so callers can weight or mask examples and reduce as they like, as optax's losses do; `<name>` is its
batch mean, the loss the papers and jaxrep's training use (`mean(<name>_per_example(...)) == <name>(...)`,
tests/test_losses.py). `importance_weighted_nll` is an estimator and only per example; `erw_alignment_weight`
(a schedule) and `spatial_normalize` (iREPA's target transform) are not losses and have no per-example form.

Importing this module pulls in no training code and none of orbax, tensorstore, scikit-learn, matplotlib, grain
or dm-control (tests/test_losses.py checks it in a fresh interpreter; pyproject.toml's import contracts forbid
it). Each loss lives in the module of its method family:

    align        repa_loss, erw_warmup_loss, erw_alignment_weight, spatial_normalize
    diffusion    flow_matching_loss
    nn.vae       elbo_loss (negative ELBO), importance_weighted_nll (the IWAE bound, Burda et al. 2016)
    rl           beer_loss; critic_loss, actor_loss (DDPG)
    supervised   factor_classification_loss, coverage_loss (target encoder and eval net)
    traversal    potential_flow_loss and its terms, traversal_classifier_loss, sequence_matching_loss

The train-step builders that wire these to the networks are next to them: `jaxrep.nn.vae.make_elbo_loss`,
`jaxrep.traversal.objective.make_traversal_loss` / `make_scratch_vae_loss`, `jaxrep.diffusion.objective`.
"""

from jaxrep.align.erw import erw_alignment_weight, erw_warmup_loss, erw_warmup_loss_per_example
from jaxrep.align.irepa import spatial_normalize
from jaxrep.align.repa import repa_loss, repa_loss_per_example
from jaxrep.diffusion.loss import flow_matching_loss, flow_matching_loss_per_example
from jaxrep.nn.vae import elbo_loss, elbo_loss_per_example, importance_weighted_nll
from jaxrep.rl.beer import beer_loss, beer_loss_per_example
from jaxrep.rl.ddpg import actor_loss, actor_loss_per_example, critic_loss, critic_loss_per_example
from jaxrep.supervised import (
    coverage_loss,
    coverage_loss_per_example,
    factor_classification_loss,
    factor_classification_loss_per_example,
)
from jaxrep.traversal.losses import (
    initial_condition_loss,
    initial_condition_loss_per_example,
    pde_residual_loss,
    pde_residual_loss_per_example,
    potential_flow_loss,
    potential_flow_loss_per_example,
    sequence_matching_loss,
    sequence_matching_loss_per_example,
    traversal_classifier_loss,
    traversal_classifier_loss_per_example,
    variation_loss,
    variation_loss_per_example,
)

__all__ = [
    "actor_loss",
    "actor_loss_per_example",
    "beer_loss",
    "beer_loss_per_example",
    "coverage_loss",
    "coverage_loss_per_example",
    "critic_loss",
    "critic_loss_per_example",
    "elbo_loss",
    "elbo_loss_per_example",
    "erw_alignment_weight",
    "erw_warmup_loss",
    "erw_warmup_loss_per_example",
    "factor_classification_loss",
    "factor_classification_loss_per_example",
    "flow_matching_loss",
    "flow_matching_loss_per_example",
    "importance_weighted_nll",
    "initial_condition_loss",
    "initial_condition_loss_per_example",
    "pde_residual_loss",
    "pde_residual_loss_per_example",
    "potential_flow_loss",
    "potential_flow_loss_per_example",
    "repa_loss",
    "repa_loss_per_example",
    "sequence_matching_loss",
    "sequence_matching_loss_per_example",
    "spatial_normalize",
    "traversal_classifier_loss",
    "traversal_classifier_loss_per_example",
    "variation_loss",
    "variation_loss_per_example",
]
