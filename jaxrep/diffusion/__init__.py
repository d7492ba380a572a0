"""Flow-matching diffusion: interpolants, loss, samplers and guidance, as pure functions."""

from jaxrep.diffusion.guidance import classifier_free_guidance
from jaxrep.diffusion.interpolants import INTERPOLANTS, gvp_interpolant, linear_interpolant, sample_time
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.diffusion.samplers import linear_path_score, ode_sample, sde_sample

__all__ = [
    "INTERPOLANTS",
    "classifier_free_guidance",
    "flow_matching_loss",
    "gvp_interpolant",
    "linear_interpolant",
    "linear_path_score",
    "ode_sample",
    "sample_time",
    "sde_sample",
]
