"""pytorch-fid's FID Inception weights as `jaxrep.nn.inception.FIDInceptionV3` variables.

The file is read by `jaxrep.weights.convert.load_state_dict` (`.pth` with `weights_only=True`, or `.safetensors`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrep import files
from jaxrep.nn.inception import FID_INPUT_SIZE, FIDInceptionV3
from jaxrep.weights.convert import CheckpointMismatchError, MissingWeightsError, load_state_dict

__all__ = ["inception_variables_from_state_dict", "load_inception_variables"]

# pytorch-fid's file keeps the TF graph's 1008-way classifier; torchvision's ImageNet Inception has 1000 classes.
_FID_NUM_LOGITS = 1008


def _expected_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    """{(collection, *module path, leaf): shape} of the Flax variables (abstract: nothing is computed)."""
    images = jax.ShapeDtypeStruct((1, FID_INPUT_SIZE, FID_INPUT_SIZE, 3), jnp.float32)
    variables = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), images)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables).items()}


# state-dict leaf -> (Flax collection, leaf name); conv weights (O, I, kh, kw) become kernels (kh, kw, I, O).
_LEAVES = {"conv.weight": ("params", "kernel"), "bn.weight": ("params", "scale"), "bn.bias": ("params", "bias"),
           "bn.running_mean": ("batch_stats", "mean"), "bn.running_var": ("batch_stats", "var")}


def inception_variables_from_state_dict(state_dict: Mapping[str, Any]) -> dict:
    """Converts pytorch-fid's FID Inception state dict into `FIDInceptionV3` variables.

    Args:
      state_dict: {name: array-like} with pytorch-fid's names (`Conv2d_1a_3x3.conv.weight`,
        `Mixed_5b.branch1x1.bn.running_mean`, ...). The 1008-way `fc.*` classifier and BatchNorm's
        `num_batches_tracked` counters are not part of pool3 and are skipped.
    Returns:
      {"params": ..., "batch_stats": ...} nested dicts of float32 NumPy arrays.
    Raises:
      CheckpointMismatchError: unknown, missing or mis-shaped entries (all listed), or torchvision's ImageNet
        Inception (1000 classes, unpatched blocks: it gives a different, non-standard FID).
    """
    fc_weight = state_dict.get("fc.weight")
    if fc_weight is not None and np.shape(fc_weight)[0] != _FID_NUM_LOGITS:
        raise CheckpointMismatchError(
            f"fc.weight has {np.shape(fc_weight)[0]} classes, not the FID Inception's {_FID_NUM_LOGITS}: this looks "
            "like torchvision's ImageNet Inception, which does not give standard FID; use pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth")
    expected = _expected_shapes()
    flat, unknown, mis_shaped = {}, [], {}
    for name, value in state_dict.items():
        if name in ("fc.weight", "fc.bias") or name.endswith(".num_batches_tracked"):
            continue
        match = re.fullmatch(r"(.+)\.(conv\.weight|bn\.weight|bn\.bias|bn\.running_mean|bn\.running_var)", name)
        path = None
        if match is not None:
            collection, flax_leaf = _LEAVES[match.group(2)]
            path = (collection, *match.group(1).split("."), match.group(2).split(".")[0], flax_leaf)
        if path not in expected:
            unknown.append(name)
            continue
        array = np.asarray(value, dtype=np.float32)
        if match.group(2) == "conv.weight":
            array = array.transpose(2, 3, 1, 0)
        if array.shape != expected[path]:
            mis_shaped[path] = f"{name}: {tuple(np.shape(value))} does not fit {expected[path]} (Flax layout)"
            continue
        flat[path] = array
    missing = sorted("/".join(path) for path in expected if path not in flat and path not in mis_shaped)
    if unknown or missing or mis_shaped:
        problems = [f"unknown keys: {sorted(unknown)[:10]}" if unknown else "",
                    f"missing Flax variables: {missing[:10]}" if missing else "",
                    f"shape mismatches: {sorted(mis_shaped.values())[:10]}" if mis_shaped else ""]
        raise CheckpointMismatchError("not a pytorch-fid FID Inception state dict: " +
                                      "; ".join(problem for problem in problems if problem))
    return traverse_util.unflatten_dict(flat)


def load_inception_variables(path: str | os.PathLike) -> dict:
    """Reads the FID Inception weights (`.pth` via `torch.load(weights_only=True)`, or `.safetensors`).

    Returns the `FIDInceptionV3` variables {"params", "batch_stats"}; see `inception_variables_from_state_dict`.
    """
    if not files.path(path).is_file():
        raise MissingWeightsError(f"no FID Inception weights at {os.fspath(path)!r} (pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth; see docs/evaluation.md)")
    return inception_variables_from_state_dict(load_state_dict(path))
