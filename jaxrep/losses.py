"""Public face of every loss in jaxrep: pure functions of arrays, batch-mean reduced.

Importing this module pulls in no training code; each loss lives in the module of its method family.
"""

from jaxrep.align.erw import erw_alignment_weight
from jaxrep.align.irepa import spatial_normalize
from jaxrep.align.repa import repa_loss
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.rl.beer import beer_loss

__all__ = [
    "beer_loss",
    "erw_alignment_weight",
    "flow_matching_loss",
    "repa_loss",
    "spatial_normalize",
]
