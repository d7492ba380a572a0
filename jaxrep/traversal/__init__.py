"""Latent traversals as potential flows (Song, Keller, Sebe, Welling; ICML 2023; arXiv 2304.12944).

potentials.py  K potential MLPs u_k(z, t) with stacked parameters and wave speeds c_k
linear.py      the linear-direction baseline as a potential family (Voynov & Babenko 2020)
pde.py         wave / heat / Hamilton-Jacobi residuals with a selectable spatial operator
rollout.py     the flow z <- z + step grad u_k(z, t) under lax.scan, traversal pairs, strips
classifier.py  the pair classifier that predicts k
losses.py      initial-condition, PDE-residual, variation (JVP), classifier and sequence-matching losses
"""

from jaxrep.traversal.classifier import PairClassifier
from jaxrep.traversal.linear import LinearDirections
from jaxrep.traversal.losses import (
    initial_condition_loss,
    pde_residual_loss,
    potential_flow_loss,
    sequence_matching_loss,
    traversal_classifier_loss,
    variation_loss,
)
from jaxrep.traversal.pde import EQUATIONS, SPATIAL_OPERATORS, pde_residual, spatial_operator, time_derivatives
from jaxrep.traversal.potentials import MLPPotentials, Potential, PotentialMLP, sinusoidal_embedding
from jaxrep.traversal.rollout import Trajectory, reflected_pair, rollout, traversal_pair, traverse_all, velocity

__all__ = [
    "EQUATIONS",
    "LinearDirections",
    "MLPPotentials",
    "PairClassifier",
    "Potential",
    "PotentialMLP",
    "SPATIAL_OPERATORS",
    "Trajectory",
    "initial_condition_loss",
    "pde_residual",
    "pde_residual_loss",
    "potential_flow_loss",
    "reflected_pair",
    "rollout",
    "sequence_matching_loss",
    "sinusoidal_embedding",
    "spatial_operator",
    "time_derivatives",
    "traversal_classifier_loss",
    "traversal_pair",
    "traverse_all",
    "variation_loss",
]
