"""Alignment diagnostics of a run's saved checkpoints against the encoder of an aligned config.

A vanilla SiT run logs no alignment diagnostics while it trains (it has no encoder); an alignment study still
needs its CKA / mutual k-NN / local-distant similarity / effective-rank curves to compare the arms. This
evaluates every checkpoint of any run (vanilla, or aligned to another encoder) with exactly the hook an aligned
run logs during training (`jaxrep.experiments.diffusion.alignment_probe`: same probe batch, noise and targets), so
for an aligned run it reproduces the values it logged at its checkpoint steps.
"""

from __future__ import annotations

import os

from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import sample as sample_experiment
from jaxrep.experiments.run_config import load_run_config
from jaxrep.run.checkpoint import Checkpointer


def checkpoint_diagnostics(workdir: str, aligned_config) -> dict[int, dict[str, float]]:
    """{step: diagnostics} of the raw (non-EMA) weights of every checkpoint in `workdir/checkpoints`.

    Args:
      workdir: a diffusion run's work directory (its `config.json` gives the architecture to restore).
      aligned_config: a config with `align.method != 'none'` whose SiT is the run's: its encoder, data, seed and
        aligned depth define the probe (use the run's own config with the alignment settings of the arm compared).
    Raises:
      ValueError: the aligned config has no alignment, or its SiT differs from the run's.
    """
    if aligned_config.align.method == "none":
        raise ValueError("aligned_config: align.method is 'none'; the diagnostics need a target encoder")
    run = diffusion_experiment.build_experiment(load_run_config(workdir))
    aligned = diffusion_experiment.build_experiment(aligned_config)
    if run.model != aligned.model:
        raise ValueError(f"aligned_config: its SiT {aligned.model} is not the run's {run.model}")
    probe = diffusion_experiment.alignment_probe(aligned, diffusion_experiment.training_dataset(aligned))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    steps = checkpointer.all_steps()
    checkpointer.close()
    results = {}
    for step in sorted(steps):
        params, _ = sample_experiment.restore_params(run, workdir, step, use_ema=False)
        state = aligned.state.replace(params={**aligned.state.params, "sit": params["sit"]})
        results[step] = {name: float(value) for name, value in probe(state, step).items()}
    return results
