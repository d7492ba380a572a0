"""SiT on an accelerator: train-step time, MFU against the bf16 peak, sampling images/s and memory.

  bash benchmarks/accelerator.sh                      # SiT-XL/2, batch 256, bf16, on the default device(s)
  python -m benchmarks.accelerator --preset=S/2 --batch=2 --steps=1 --sample_batch=2 --sample_steps=2   # smoke

The step is `train.diffusion`'s (SiT on 32x32x4 latents, 1000 classes, AdamW, EMA, `--attention_impl`,
`--param_sharding` over all local devices) on a fixed random batch; MFU is XLA's FLOP count of the compiled
step per second over the devices' datasheet bf16 peak (`benchmarks.tools.profiling.theoretical_peak`: NVIDIA
GPUs from its table, TPUs from `jaxrep.run.aot.CHIPS`, so a TPU VM prints MFU too). Sampling is
the run's sampler (Euler ODE, `--sample_steps`, CFG 4: two forward passes per step) on `--sample_batch` labels.
Memory: the compiled step's analysis per device and the device's peak bytes in use.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.tools.profiling import compiled_flops, theoretical_peak
from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.experiments import diffusion as diffusion_experiment

_PRESET = flags.DEFINE_string("preset", "XL/2", "SiT preset.")
_BATCH = flags.DEFINE_integer("batch", 256, "Global train batch.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed train steps after a warm-up step.")
_SAMPLE_BATCH = flags.DEFINE_integer("sample_batch", 64, "Images per sampling call.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 50, "ODE steps per sample.")
_ATTENTION = flags.DEFINE_string("attention_impl", "xla", "model.attention_impl: xla, cudnn or cpu_layout.")
_SHARDING = flags.DEFINE_string("param_sharding", "replicate", "replicate or fsdp.")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16", "Activation dtype.")

LATENTS = (32, 32, 4)
GIB = 2**30


def timed(fn, calls: int) -> float:
    """Seconds per call of `fn` (which blocks), after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(argv) -> None:
    del argv
    config = diffusion_configs.get_config("xl2")
    config.model.preset, config.model.dtype = _PRESET.value, _DTYPE.value
    config.model.attention_impl, config.param_sharding = _ATTENTION.value, _SHARDING.value
    config.batch_size, config.sample.num_steps = _BATCH.value, _SAMPLE_STEPS.value
    mesh = parallel.make_mesh(jax.local_devices())
    jitted, abstract_state, abstract_batch = diffusion_experiment.abstract_train_step(config, mesh, LATENTS)
    model = diffusion_experiment.build_model(config, LATENTS)
    tx = diffusion_experiment.optimizer(config)
    init = diffusion_experiment.state_initializer(model, tx, LATENTS, *jax.random.split(jax.random.key(0)))
    state = jax.jit(init, out_shardings=parallel.shardings_of(abstract_state))()
    rng = np.random.default_rng(0)
    batch = parallel.global_batch({"image": rng.normal(size=(config.batch_size, *LATENTS)).astype(np.float32),
                                   "label": rng.integers(0, 1000, config.batch_size).astype(np.int32)}, mesh)
    start = time.perf_counter()
    compiled = jitted.lower(abstract_state, abstract_batch).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    step_s = timed(step, _STEPS.value)
    flops = compiled_flops(compiled)
    peak, how = theoretical_peak("bfloat16")
    memory = compiled.memory_analysis()

    sampler = jax.jit(diffusion_experiment.make_sampler(model, config))
    labels = jax.numpy.arange(_SAMPLE_BATCH.value, dtype=jax.numpy.int32) % 1000
    sample_s = timed(lambda: jax.block_until_ready(sampler(holder["state"].ema_params, labels, jax.random.key(1))), 1)
    stats = jax.local_devices()[0].memory_stats() or {}

    device = jax.local_devices()[0]
    print(f"SiT-{_PRESET.value} {_DTYPE.value}, attention {_ATTENTION.value}, {_SHARDING.value}, "
          f"{len(jax.local_devices())} x {device.device_kind}, JAX {jax.__version__}")
    print(f"train step (batch {config.batch_size}): {1e3 * step_s:.1f} ms, {config.batch_size / step_s:.1f} "
          f"images/s, compile {compile_s:.1f} s")
    if flops:
        achieved = flops / step_s
        mfu = f"{100 * achieved / peak:.1f} % of {how}" if peak else how
        print(f"FLOP/s: {achieved / 1e12:.1f} TFLOP/s ({flops / 1e12:.2f} TFLOP per step); MFU {mfu}")
    print(f"sampling ({_SAMPLE_STEPS.value} Euler steps, CFG {config.sample.cfg_scale}): "
          f"{_SAMPLE_BATCH.value / sample_s:.2f} images/s ({sample_s:.1f} s for {_SAMPLE_BATCH.value})")
    if memory is not None:
        print(f"step memory per device: arguments {memory.argument_size_in_bytes / GIB:.2f} GiB, temporaries "
              f"{memory.temp_size_in_bytes / GIB:.2f} GiB, outputs {memory.output_size_in_bytes / GIB:.2f} GiB")
    if "peak_bytes_in_use" in stats:
        print(f"device peak bytes in use: {stats['peak_bytes_in_use'] / GIB:.2f} GiB of "
              f"{stats.get('bytes_limit', 0) / GIB:.1f} GiB")


if __name__ == "__main__":
    app.run(main)
