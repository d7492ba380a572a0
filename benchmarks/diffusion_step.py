"""SiT train-step throughput: samples/s, step time, compile time, achieved FLOP/s and fraction of peak.

    python -m benchmarks.diffusion_step            # the `cpu` preset and SiT-S/2 on 32x32x4 latents, batch 32
    python -m benchmarks.diffusion_step --only s2 --batch 256 --steps 20
    python -m benchmarks.diffusion_step --only cpu --profile   # also: time per kind of XLA op

Uses synthetic batches (the step's cost does not depend on the data) and the same pure step as training.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.tools.profiling import compiled_flops, op_kind_report, op_kind_times, peak_report
from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.diffusion.objective import make_diffusion_loss
from jaxrep.nn.sit import SiT, sit_preset
from jaxrep.training import create_train_state, make_optimizer, make_train_step


def build(name: str, batch: int | None):
    if name == "cpu":
        config = diffusion_configs.get_config("cpu")
        model = SiT(input_size=32, in_channels=3, patch_size=config.model.patch_size,
                    hidden_size=config.model.hidden_size, depth=config.model.depth,
                    num_heads=config.model.num_heads, num_classes=config.data.num_classes)
        return model, batch or config.batch_size, (32, 32, 3)
    return sit_preset("S/2", input_size=32, in_channels=4, num_classes=1000), batch or 32, (32, 32, 4)


def benchmark(name: str, batch: int | None, steps: int, profile: bool = False) -> None:
    model, batch_size, shape = build(name, batch)
    mesh = parallel.make_mesh()
    tx = make_optimizer(1e-4)
    x = jnp.zeros((1, *shape))
    params = {"sit": model.init(jax.random.key(0), x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"]}
    state = jax.device_put(create_train_state(params, tx, jax.random.key_data(jax.random.key(1))),
                           parallel.replicated_sharding(mesh))
    step = jax.jit(make_train_step(make_diffusion_loss(model), tx, ema_decay=0.9999), donate_argnums=0)
    rng = np.random.default_rng(0)
    batch = parallel.global_batch({"image": rng.normal(size=(batch_size, *shape)).astype(np.float32),
                                   "label": rng.integers(0, model.num_classes, batch_size).astype(np.int32)}, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    flops = compiled_flops(compiled)
    params_count = sum(p.size for p in jax.tree.leaves(params))
    print(f"== {name}: {params_count / 1e6:.2f}M params, batch {batch_size}, input {shape}, "
          f"{len(jax.devices())} {jax.devices()[0].platform} device(s)")
    print(f"compile {compile_s:.1f} s | step {1000 * step_s:.1f} ms | {batch_size / step_s:.1f} samples/s")
    if flops:
        print(f"XLA cost analysis: {flops / 1e9:.2f} GFLOP per step")
    print(peak_report(flops / step_s if flops else None))
    if profile:
        def one_step():
            nonlocal state, metrics
            state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics)

        print(f"Time per kind of XLA op (jax.profiler trace of {steps} steps; step {1000 * step_s:.1f} ms untraced):")
        print(op_kind_report(op_kind_times(one_step, calls=steps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("cpu", "s2"), help="run one configuration")
    parser.add_argument("--batch", type=int, help="override the batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up step")
    parser.add_argument("--profile", action="store_true", help="also trace the steps: time per kind of XLA op")
    args = parser.parse_args()
    for name in ([args.only] if args.only else ["cpu", "s2"]):
        benchmark(name, args.batch, args.steps, args.profile)


if __name__ == "__main__":
    main()
