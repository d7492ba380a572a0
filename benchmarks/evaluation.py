"""Evaluation throughput: feature extraction images/s (eval net, FID Inception) and sampling images/s (cpu preset).

    python -m benchmarks.evaluation                        # everything; writes docs/results/evaluation.md
    python -m benchmarks.evaluation --only sampling --sampling-batch 200 --no-write

Weights are random (the cost of a forward pass does not depend on them): the eval net has the architecture of
`configs/eval_net.py:shapes32`, Inception is pytorch-fid's FID network, the SiT is the `cpu` preset's. Feature
extraction goes through `jaxrep.weights.features.extract_features` on uint8 32x32x3 batches (Inception resizes to
299), sampling through the jitted, mesh-sharded sampler of `train.evaluate` with Euler ODE, 50 steps, at the
preset's guidance scale (two network passes per step) and without guidance. Compile time is reported apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import diffusion as diffusion_configs
from configs import eval_net as eval_net_configs
from jaxrep import parallel
from jaxrep.data import ColoredShapes
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.nn.eval_net import EvalNet
from jaxrep.nn.inception import FIDInceptionV3
from jaxrep.weights.features import eval_net_extractor, extract_features, inception_extractor

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results",
                       "evaluation.md")


def _timed_images_per_s(run_batch, batch_size: int, repeats: int) -> tuple[float, float]:
    """(first-call seconds, i.e. compile + one batch; images/s over `repeats` further batches)."""
    start = time.perf_counter()
    run_batch()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        run_batch()
    return first, batch_size * repeats / (time.perf_counter() - start)


def feature_rows(mesh, eval_net_batch: int, inception_batch: int, repeats: int) -> list[tuple]:
    images = np.random.default_rng(0).integers(0, 256, size=(max(eval_net_batch, inception_batch), 32, 32, 3),
                                               dtype=np.uint8)
    config = eval_net_configs.get_config("shapes32")
    model = EvalNet(factor_sizes=tuple(ColoredShapes.factor_sizes), widths=tuple(config.model.widths),
                    feature_dim=config.model.feature_dim)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    variables = jax.jit(FIDInceptionV3(resize_input=False).init)(jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    rows = []
    for name, extractor, batch_size in (
            ("eval net (128-d)", eval_net_extractor(model, params, image_shape=(32, 32, 3)), eval_net_batch),
            ("FID Inception pool3 (2048-d, 299 px)", inception_extractor(variables), inception_batch)):
        batch = images[:batch_size]
        run = lambda: extract_features(extractor, [batch], batch_size=batch_size, mesh=mesh)
        first, rate = _timed_images_per_s(run, batch_size, repeats)
        rows.append((f"features: {name}", batch_size, first, rate))
        print(f"{rows[-1][0]:<60} batch {batch_size:>4}: {rate:8.1f} images/s  (first call {first:.1f} s)", flush=True)
    return rows


def sampling_rows(mesh, batch_size: int, repeats: int) -> list[tuple]:
    rows = []
    base = diffusion_configs.get_config("cpu")
    for cfg_scale in (base.sample.cfg_scale, 1.0):
        config = diffusion_configs.get_config("cpu")
        config.sample.update(sampler="ode", ode_method="euler", num_steps=50, cfg_scale=cfg_scale)
        model = diffusion_experiment.build_model(config, (32, 32, 3))
        params = jax.device_put(diffusion_experiment.init_params(model, jax.random.key(0), (32, 32, 3)),
                                parallel.replicated_sharding(mesh))
        replicated, sharded = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
        sample = jax.jit(diffusion_experiment.make_sampler(model, config), in_shardings=(replicated, sharded, replicated),
                         out_shardings=sharded)
        labels = jax.device_put(np.arange(batch_size, dtype=np.int32) % config.data.num_classes, sharded)
        run = lambda: jax.block_until_ready(sample(params, labels, jax.random.key(1)))
        first, rate = _timed_images_per_s(run, batch_size, repeats)
        guidance = f"CFG {cfg_scale:g}, 2 passes/step" if cfg_scale != 1.0 else "no guidance"
        rows.append((f"sampling: cpu preset, Euler ODE 50 steps, {guidance}", batch_size, first, rate))
        print(f"{rows[-1][0]:<60} batch {batch_size:>4}: {rate:8.1f} images/s  (first call {first:.1f} s)", flush=True)
    return rows


def write_results(rows: list[tuple], mesh) -> None:
    device = jax.devices()[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# Evaluation throughput", "",
             "`python -m benchmarks.evaluation` (random weights; the cost does not depend on them). "
             f"Device: {mesh.size} x {device.device_kind} ({device.platform}), {os.cpu_count()} host cores, "
             f"{platform.processor() or platform.machine()}; 1-minute load average at the end {load:.1f} "
             "(a shared machine slows every figure).", "",
             "| what | batch | images/s | first call (compile + 1 batch), s |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {batch} | {rate:.1f} | {first:.1f} |" for name, batch, first, rate in rows]
    lines += ["", "For scale: `train.evaluate`'s `cpu` preset samples 500 images (the run's Heun 25 steps, CFG) and "
              "extracts eval-net features of them and of the 1350 real images; FD for 10k x 2048 features: "
              "`benchmarks/frechet.py`.", ""]
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as file:
        file.write("\n".join(lines))
    print(f"wrote {RESULTS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("features", "sampling"), default=None)
    parser.add_argument("--eval-net-batch", type=int, default=500)
    parser.add_argument("--inception-batch", type=int, default=50)
    parser.add_argument("--sampling-batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/results alone")
    args = parser.parse_args()
    mesh = parallel.make_mesh()
    rows = []
    if args.only in (None, "features"):
        rows += feature_rows(mesh, args.eval_net_batch, args.inception_batch, args.repeats)
    if args.only in (None, "sampling"):
        rows += sampling_rows(mesh, args.sampling_batch, args.repeats)
    if not args.no_write:
        write_results(rows, mesh)


if __name__ == "__main__":
    main()
