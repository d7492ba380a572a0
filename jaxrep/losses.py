"""Public face of every loss in jaxrep: pure functions of arrays, batch-mean reduced.

Importing this module pulls in no training code; each loss lives in the module of its method family.
"""

from jaxrep.diffusion.loss import flow_matching_loss

__all__ = [
    "flow_matching_loss",
]
