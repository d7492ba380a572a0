"""Turn an official REPA / iREPA / ERW SiT checkpoint into a jaxrep work directory:

  python -m train.import_checkpoint --checkpoint=PATH --workdir=DIR --config=configs/diffusion.py:xl2_repa \
      [--weights=ema|model] [--step=N] [--keep_projector] [--config.a.b=value ...]

The run is built from the config as `train.diffusion` builds it (data source included: sampling rebuilds it
from DIR/config.json); the SiT shape read from the file must be the config's. The converted weights
(`jaxrep.weights.convert_sit`; `--weights` picks the training container's 'ema', the default and what REPA's
generate.py samples, or 'model') go into both `params` and `ema_params` of the run's fresh TrainState, at step
`--step` (default: the file's `steps`, else 0), with a fresh optimizer state; it is saved to DIR/checkpoints
and the config to DIR/config.json, so `train.sample` / `train.evaluate --workdir=DIR` sample it and
`train.diffusion --workdir=DIR` fine-tunes it.

The alignment is stripped by default (`align.method='none'`, no projector): sampling never uses the projector,
and an aligned preset needs its target encoder (the DINOv2 file) just to be built. `--keep_projector` keeps the
config's alignment and imports the file's projector too (to continue aligned training; needs the encoder).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from jaxrep import files, parallel
from jaxrep.config_checks import ConfigError
from jaxrep.experiments.diffusion import build_experiment
from jaxrep.nn.sit import PRESETS, SiT
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import save_config
from jaxrep.weights.convert import CheckpointMismatchError
from jaxrep.weights.convert_projector import projector_params_from_state_dict
from jaxrep.weights.convert_sit import infer_sit_shape, read_sit_checkpoint, sit_params_from_state_dict


def check_shape(checkpoint, model: SiT) -> None:
    """Raises CheckpointMismatchError naming every SiT field where the file and the config differ."""
    found = infer_sit_shape(checkpoint.state_dict, num_heads=model.num_heads)
    preset = re.fullmatch(r"SiT-(S|B|L|XL)/\d", str((checkpoint.args or {}).get("model", "")))
    if preset:  # heads are not in the weights, but the training run's --model names them
        found["num_heads"] = PRESETS[preset.group(1)]["num_heads"]
    differ = [f"{name}: file {value}, config {getattr(model, name)}" for name, value in found.items()
              if value != getattr(model, name)]
    if differ:
        raise CheckpointMismatchError("the checkpoint's SiT differs from the config's (pick the matching preset "
                                      "or override --config.model.* / data.*): " + "; ".join(differ))


def import_checkpoint(config, workdir: str, *, checkpoint_path: str, weights: str = "ema", step: int = -1,
                      keep_projector: bool = False):
    """Writes the converted checkpoint into `workdir` (module docstring); returns the saved TrainState."""
    checkpoint = read_sit_checkpoint(checkpoint_path, weights)
    directory = files.join(workdir, "checkpoints")
    if files.path(directory).is_dir() and list(files.path(directory).iterdir()):
        raise FileExistsError(f"{directory} already holds checkpoints; import into a new work directory")
    config = config.copy_and_resolve_references()
    if not keep_projector:
        config.align.method = "none"
    elif config.align.method == "none":
        raise ConfigError("align.method: --keep_projector needs an aligned config (repa, irepa or erw)")
    experiment = build_experiment(config)
    model = experiment.model
    check_shape(checkpoint, model)
    params = {"sit": sit_params_from_state_dict(checkpoint.state_dict, model)}
    if keep_projector:
        params["projector"] = projector_params_from_state_dict(
            checkpoint.state_dict, experiment.alignment.projector, hidden_size=model.hidden_size)
    params = jax.device_put(params, parallel.shardings_of(experiment.state.params))
    step = step if step >= 0 else (checkpoint.step or 0)
    state = experiment.state.replace(
        step=jax.device_put(jnp.asarray(step, experiment.state.step.dtype), experiment.state.step.sharding),
        params=params, ema_params=params)
    checkpointer = Checkpointer(directory, save_every=1)
    checkpointer.save(step, state, {}, force=True)
    checkpointer.close()
    save_config(workdir, config)
    print(f"imported {checkpoint_path} ({checkpoint.weights} weights) as step {step} of {workdir}", flush=True)
    return state
