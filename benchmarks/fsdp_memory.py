"""Per-device memory of the SiT training step, replicated vs FSDP, from an ahead-of-time compile (nothing allocated).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.fsdp_memory --preset=XL/2

Builds the `configs/diffusion.py` step (SiT `--preset` on 32x32x4 latents, 1000 classes, AdamW, EMA) with
`jaxrep.experiments.diffusion.abstract_train_step` (the experiment's step on `jax.eval_shape` of its state), lowers
it for the mesh over all devices with the state replicated and FSDP-split (`jaxrep.parallel.state_shardings`),
compiles, and prints XLA's memory analysis per device: arguments (the state plus the batch shard),
temporaries (activations, gradients, the gathered weights) and the state's own bytes. On fake CPU devices the
compile is the CPU's; a GPU or TPU compile of the same program differs in temporaries, not in the argument
bytes. `--xla_backend_optimization_level=0` in XLA_FLAGS shortens the compile and leaves the memory analysis
as it is (S/2: identical figures at levels 0 and default).
"""

from __future__ import annotations

import math

import jax
from absl import app, flags

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.experiments import diffusion as diffusion_experiment

_PRESET = flags.DEFINE_string("preset", "XL/2", "SiT preset: S/2, B/2, L/2 or XL/2.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Global batch.")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16", "Activation dtype (params stay float32).")
_LAYOUTS = flags.DEFINE_list("layouts", ["replicate", "fsdp"], "param_sharding layouts to compile.")

GIB = 2**30


def main(argv) -> None:
    del argv
    config = diffusion_configs.get_config("xl2")
    config.model.preset, config.model.dtype, config.batch_size = _PRESET.value, _DTYPE.value, _BATCH.value
    mesh = parallel.make_mesh()
    devices = mesh.devices.size
    print(f"SiT-{_PRESET.value}, batch {_BATCH.value} ({_BATCH.value // devices} per device), {_DTYPE.value} "
          f"activations, {devices} {jax.devices()[0].platform} devices\n")
    print("| layout | state per device (GiB) | arguments (GiB) | temporaries (GiB) | outputs (GiB) |")
    print("|---|---|---|---|---|")
    for layout in _LAYOUTS.value:
        config.param_sharding = layout
        jitted, state, batch = diffusion_experiment.abstract_train_step(config, mesh, (32, 32, 4))
        memory = jitted.lower(state, batch).compile().memory_analysis()
        state_bytes = sum(s.dtype.itemsize * math.prod(s.sharding.shard_shape(s.shape)) for s in jax.tree.leaves(state))
        print(f"| {layout} | {state_bytes / GIB:.2f} | {memory.argument_size_in_bytes / GIB:.2f} | "
              f"{memory.temp_size_in_bytes / GIB:.2f} | {memory.output_size_in_bytes / GIB:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
