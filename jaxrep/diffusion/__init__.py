"""Flow-matching diffusion: interpolants, loss, samplers and guidance, as pure functions."""

from jaxrep.diffusion.guidance import GuidedVelocity, classifier_free_guidance
from jaxrep.diffusion.interpolants import (
                                           INTERPOLANTS,
                                           PATH_COEFFICIENTS,
                                           gvp_interpolant,
                                           linear_interpolant,
                                           sample_time,
)
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.diffusion.samplers import ode_sample, score_from_velocity, sde_sample

__all__ = [
    "INTERPOLANTS",
    "PATH_COEFFICIENTS",
    "GuidedVelocity",
    "classifier_free_guidance",
    "flow_matching_loss",
    "gvp_interpolant",
    "linear_interpolant",
    "ode_sample",
    "sample_time",
    "score_from_velocity",
    "sde_sample",
]
