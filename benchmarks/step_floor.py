"""The matmul floor under a jaxrep step against the PyTorch step it is compared with (issue 18's targets).

    python -m benchmarks.step_floor                       # the BEER update, the cpu_repa and SiT-S/2 REPA steps
    python -m benchmarks.step_floor --only beer --rounds 5

For each step, every `dot_general` of jaxrep's program (forward and backward, as traced:
`benchmarks.tools.matmul_floor`) is timed alone at its shapes and the times are summed: what the step would take
if it did nothing but its matmuls, each at the rate XLA reaches for that shape alone.
jaxrep's step and the PyTorch step (`benchmarks.torch_ddpg`'s official BEER.py update; `benchmarks.repa_step`'s
official REPA step) are timed interleaved in the same run (medians of `--rounds`). The report gives the
fastest ratio to PyTorch the floor allows, against the issue's target: a target above it is out of reach
whatever happens outside the matmuls. Needs the `ref` extra (torch).

torch's OpenMP threads keep the wait policy of the environment (unset: the default, as in `benchmarks.repa_step`):
in one process the two frameworks share the cores, and `OMP_WAIT_POLICY=ACTIVE` threads spin between torch's
ops and starve XLA's (measured: jaxrep's `cpu_repa` step 257 ms against 155 ms with the default), while
`PASSIVE` slows torch's own step (208 ms against 153 ms).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import jax

from benchmarks.tools.matmul_floor import matmul_floor, program_dots

TARGETS = {"beer": 2.5, "cpu_repa": 1.0, "s2": 1.1}  # issue 18: speed-up (BEER) or step-time ratio (REPA)
ATTENTION = {"cpu_repa": "xla", "s2": "cpu_layout"}  # the faster `model.attention_impl` at each shape (section 8b)


def beer_steps(threads: int):
    """(jaxrep update(), PyTorch update(), fn, args) for the BEER update at cheetah-run sizes, 1 per call."""
    from benchmarks.rl_throughput import update_inputs
    from benchmarks.torch_ddpg import torch_update
    from envs.dmc import DMCEnv

    train, state, buffer = update_inputs("cheetah-run", "beer", 256)
    holder = {"state": state}

    def jaxrep_update():
        holder["state"], metrics = train(holder["state"], buffer, num_updates=1)
        jax.block_until_ready(metrics)

    env = DMCEnv("cheetah-run")
    torch_update_fn = torch_update(env.observation_size, env.action_size, beer=True, batch_size=256, threads=threads)
    return jaxrep_update, torch_update_fn, functools.partial(train, num_updates=1), (state, buffer)


def repa_steps(name: str, impl: str):
    """(jaxrep step(), PyTorch step(), fn, args) for `benchmarks.repa_step`'s shape `name`."""
    from benchmarks.repa_step import SHAPES, jax_step, jax_step_inputs, torch_step

    shape, depth, width, target = SHAPES[name]
    train_step, state, batch = jax_step_inputs(shape, depth, width, target, 32, impl)
    jaxrep_step, _ = jax_step(train_step, state, batch)  # traced by `program_dots` before its first call donates
    pytorch_step, _ = torch_step(shape, depth, width, target, 32)
    return jaxrep_step, pytorch_step, train_step, (state, batch)


def median_seconds(steps: dict, rounds: int, calls: int) -> dict[str, float]:
    """Median seconds per call of each step, the steps round-robin (`calls` calls of each per round)."""
    for step in steps.values():
        step()  # warm-up and compilation
    times = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                step()
            times[label].append((time.perf_counter() - start) / calls)
    return {label: statistics.median(values) for label, values in times.items()}


def report(name: str, jaxrep_step, pytorch_step, fn, args, rounds: int, calls: int, top: int) -> None:
    dots = program_dots(fn, *args)
    rows = matmul_floor(dots)
    floor = sum(count * seconds for _, count, seconds in rows)
    flops = sum(dot.flops * count for dot, count in dots.items())
    measured = median_seconds({"jaxrep": jaxrep_step, "pytorch": pytorch_step}, rounds, calls)
    print(f"\n== {name}: {sum(dots.values())} dots per step ({len(dots)} shapes), {flops / 1e9:.3f} GFLOP\n")
    print("| dot | per step | GFLOP/s alone | ms per step |")
    print("|---|---|---|---|")
    for dot, count, seconds in rows[:top]:
        print(f"| {dot} | {count} | {dot.flops / seconds / 1e9:.1f} | {1e3 * count * seconds:.3f} |")
    if len(rows) > top:
        rest = sum(count * seconds for _, count, seconds in rows[top:])
        print(f"| the other {len(rows) - top} shapes | | | {1e3 * rest:.3f} |")
    jax_s, torch_s = measured["jaxrep"], measured["pytorch"]
    print(f"\nmatmul floor {1e3 * floor:.2f} ms ({flops / floor / 1e9:.1f} GFLOP/s); jaxrep's step "
          f"{1e3 * jax_s:.2f} ms (the floor is {100 * floor / jax_s:.0f} % of it); PyTorch's {1e3 * torch_s:.2f} ms")
    if name == "beer":
        print(f"jaxrep / PyTorch update rate: {torch_s / jax_s:.2f}x measured; at most {torch_s / floor:.2f}x at "
              f"the floor; target {TARGETS[name]}x needs {1e3 * torch_s / TARGETS[name]:.2f} ms per update")
    else:
        print(f"jaxrep / PyTorch step time: {jax_s / torch_s:.2f}x measured; the floor alone is "
              f"{floor / torch_s:.2f}x; target {TARGETS[name]}x = {1e3 * TARGETS[name] * torch_s:.1f} ms, leaving "
              f"{1e3 * (TARGETS[name] * torch_s - floor):.1f} ms outside the matmuls "
              f"(PyTorch's step spends {1e3 * (torch_s - floor):.1f} ms beyond jaxrep's matmul floor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=tuple(TARGETS), help="one step")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--impl", help="jaxrep's model.attention_impl for the REPA steps (default: the faster one "
                        "at each shape: xla at cpu_repa, cpu_layout at S/2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--top", type=int, default=10, help="dot shapes listed")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"{os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.devices()[0].platform}, torch "
          f"{torch.__version__} with {args.threads} threads, OMP_WAIT_POLICY={policy}")
    for name in [args.only] if args.only else TARGETS:
        if name == "beer":
            report(name, *beer_steps(args.threads), rounds=args.rounds, calls=100, top=args.top)
        else:
            report(name, *repa_steps(name, args.impl or ATTENTION[name]), rounds=args.rounds,
                   calls=1 if name == "s2" else 5, top=args.top)


if __name__ == "__main__":
    main()
