"""jaxrep: representation-centred generative and RL models in JAX.

Importing the package has no side effects; import submodules (`jaxrep.losses`,
`jaxrep.diffusion`, `jaxrep.nn.sit`, ...) for what you need.
"""

__version__ = "0.1.0"
