"""Data sources (procedural datasets with ground-truth factors, users' arrays) and the grain pipeline."""

from jaxrep.data.arrays import ArraySource
from jaxrep.data.fashion_mnist import FashionMNIST
from jaxrep.data.pipeline import make_dataset, make_iterator, shuffle_seed
from jaxrep.data.procedural import ColoredShapes, DSprites, render_shapes

__all__ = ["ArraySource", "FashionMNIST", "ColoredShapes", "DSprites", "make_dataset", "make_iterator", "render_shapes",
           "shuffle_seed"]
