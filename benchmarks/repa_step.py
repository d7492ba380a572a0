"""jaxrep's REPA train step against an equivalent of the official one (PyTorch), interleaved in one run.

    python -m benchmarks.repa_step                          # the cpu_repa shape and SiT-S/2, batch 32
    python -m benchmarks.repa_step --only s2 --rounds 3
    python -m benchmarks.repa_step --only cpu_repa --sources 8     # also: where the layout copies come from

One step = SiT forward with the aligned block's tokens, REPA's 3-layer SiLU MLP projector (the preset's width:
256 for `cpu_repa`, REPA's 2048 for S/2), the
velocity MSE plus 0.5 x the negative patch-wise cosine to fixed target tokens (SILoss; the frozen encoder's
forward is outside the step in both, as REPA computes it under no_grad before the step), AdamW 1e-4, clip
1.0, EMA 0.9999. PyTorch: `benchmarks.torch_sit`'s SiT (REPA's architecture) with 2 threads; jaxrep: the
pure step of `train.diffusion` with each `model.attention_impl` that runs here. The steps run round-robin
(one of each per round, `--rounds` rounds after a warm-up), so load on the shared machine hits all alike;
medians are reported. Then each step is profiled once: the share of its op time outside matmuls
(XLA:CPU `ynn_fusion`/dot/convolution ops; torch's mm/addmm/bmm/convolution and SDPA kernels) and the share
in ops that only change layout (XLA:CPU's copy/transpose kinds; torch's copy_/clone/contiguous).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.tools.profiling import op_times, times_by_kind, times_by_source
from benchmarks.torch_sit import torch_sit
from jaxrep.align.objective import make_alignment_term, make_projector
from jaxrep.diffusion.objective import make_diffusion_loss
from jaxrep.nn.sit import PRESETS, SiT
from jaxrep.training import create_train_state, make_optimizer, make_train_step

SHAPES = {  # SiT shape, aligned block, projector width, target tokens (N, D_enc)
    # configs/diffusion.py:cpu_repa (the in-repo encoder's 64-d tokens on the 8 x 8 grid)
    "cpu_repa": (dict(input_size=32, patch_size=4, in_channels=3, hidden_size=128, depth=4, num_heads=4,
                      num_classes=3), 2, 256, (64, 64)),
    # SiT-S/2 on 32x32x4 latents with REPA's SiT-B settings (block 4, 2048-wide projector, DINOv2-B targets)
    "s2": (dict(input_size=32, patch_size=2, in_channels=4, num_classes=1000, **PRESETS["S"]), 4, 2048, (256, 768)),
}
MATMUL_KINDS = ("ynn", "dot", "convolution", "gemm", "matmul")
LAYOUT_KINDS = ("copy", "transpose")  # XLA:CPU op kinds that only move data into another layout


def jax_step_inputs(shape: dict, depth: int, width: int, target: tuple[int, int], batch_size: int,
                    impl: str):
    """(train_step, state, batch): jaxrep's REPA step (not jitted), a fresh state and a random batch."""
    model = SiT(attention_impl=impl, **shape)
    projector = make_projector("repa", out_dim=target[1], hidden_dim=width)
    loss = make_diffusion_loss(model, alignment=make_alignment_term("repa", projector=projector, depth=depth,
                                                                    coef=0.5))
    tx = make_optimizer(1e-4)
    side, channels = shape["input_size"], shape["in_channels"]
    x = jnp.zeros((1, side, side, channels))
    key = jax.random.key(0)
    params = {"sit": model.init(key, x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"],
              "projector": projector.init(key, jnp.zeros((1, model.num_tokens, model.hidden_size)))["params"]}
    state = create_train_state(params, tx, jax.random.key_data(jax.random.key(1)))
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(batch_size, side, side, channels)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, shape["num_classes"], batch_size), jnp.int32),
             "align_target": jnp.asarray(rng.normal(size=(batch_size, *target)), jnp.float32)}
    return make_train_step(loss, tx, ema_decay=0.9999), state, batch


def jax_step(train_step, state, batch):
    """(step(), profile()) of `jax_step_inputs`' step, jitted and donating the state: the step, and from one
    profiled call its op-time shares outside matmuls and in layout copies, and its layout copies' times by source
    (`benchmarks.tools.profiling.times_by_source`)."""
    compiled = jax.jit(train_step, donate_argnums=0).lower(state, batch).compile()
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    def profile():
        times = op_times(step, calls=1)
        kinds = times_by_kind(times)
        total = sum(kinds.values())
        matmul = sum(t for kind, t in kinds.items() if any(m in kind for m in MATMUL_KINDS))
        copies = sum(t for kind, t in kinds.items() if any(m in kind for m in LAYOUT_KINDS))
        return 1 - matmul / total, copies / total, times_by_source(times, compiled.as_text(), kinds=LAYOUT_KINDS)

    return step, profile


def torch_step(shape: dict, depth: int, width: int, target: tuple[int, int], batch_size: int):
    """(step(), profile()) of the PyTorch REPA step (official structure: SILoss, AdamW, clip, EMA); its profile
    has no copy sources (None)."""
    import copy

    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torch_sit(torch, nn, **shape)
    projector = nn.Sequential(nn.Linear(shape["hidden_size"], width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                              nn.Linear(width, target[1]))
    modules = nn.ModuleList([model, projector])
    ema = copy.deepcopy(modules).requires_grad_(False)
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-4, weight_decay=0.0)
    b, c, s = batch_size, shape["in_channels"], shape["input_size"]
    x, labels = torch.randn(b, c, s, s), torch.randint(0, shape["num_classes"], (b,))
    zs = torch.randn(b, *target)

    def step():
        t = torch.rand(b)
        noise = torch.randn_like(x)
        y = torch.where(torch.rand(b) < 0.1, torch.full_like(labels, shape["num_classes"]), labels)
        tb = t[:, None, None, None]
        output, hidden = model((1 - tb) * x + tb * noise, t, y, hidden_at=depth)
        denoising = ((output - (noise - x)) ** 2).mean()
        z_tilde = torch.nn.functional.normalize(projector(hidden), dim=-1)
        projection = -(z_tilde * torch.nn.functional.normalize(zs, dim=-1)).sum(-1).mean()
        loss = denoising + 0.5 * projection
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for ema_p, p in zip(ema.parameters(), modules.parameters()):
                ema_p.mul_(0.9999).add_(p, alpha=1e-4)

    def profile():
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        matmul = sum(e.self_cpu_time_total for e in events
                     if any(k in e.key for k in ("mm", "convolution", "scaled_dot_product", "mkldnn")))
        copies = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in ("copy_", "clone", "contiguous")))
        return 1 - matmul / total, copies / total, None

    return step, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=tuple(SHAPES), help="run one shape")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one step of each per round)")
    parser.add_argument("--impls", default="xla,cpu_layout", help="jaxrep attention implementations")
    parser.add_argument("--sources", type=int, default=0, help="also list each jaxrep step's N largest layout "
                        "copies by source (benchmarks.tools.profiling.times_by_source)")
    args = parser.parse_args()
    print(f"{len(jax.devices())} {jax.devices()[0].platform} device(s), JAX {jax.__version__}; batch {args.batch}")
    for name in [args.only] if args.only else SHAPES:
        shape, depth, width, target = SHAPES[name]
        steps = {"pytorch": torch_step(shape, depth, width, target, args.batch)}
        steps.update({f"jaxrep {impl}": jax_step(*jax_step_inputs(shape, depth, width, target, args.batch, impl))
                      for impl in args.impls.split(",")})
        times = {label: [] for label in steps}
        for label, (step, _) in steps.items():
            step()  # warm-up
        for _ in range(args.rounds):
            for label, (step, _) in steps.items():
                start = time.perf_counter()
                step()
                times[label].append(time.perf_counter() - start)
        torch_median = statistics.median(times["pytorch"])
        print(f"\n== {name} (REPA step, aligned block {depth}, projector {width}, targets {target})\n")
        print("| step | median (ms) | vs PyTorch | share of op time outside matmuls | in layout copies |")
        print("|---|---|---|---|---|")
        sources = {}
        for label, (_, profile) in steps.items():
            median = statistics.median(times[label])
            outside, copies, sources[label] = profile()
            print(f"| {label} | {1e3 * median:.1f} | {median / torch_median:.2f}x | {100 * outside:.0f} % | "
                  f"{100 * copies:.0f} % |", flush=True)
        for label, by_source in sources.items():
            if args.sources and by_source is not None:
                print(f"\n{label}: the largest layout copies per step, by the JAX operation they come from")
                for (kind, source), seconds in list(by_source.items())[:args.sources]:
                    print(f"  {1e3 * seconds:8.2f} ms  {kind:24s} {source}")


if __name__ == "__main__":
    main()
