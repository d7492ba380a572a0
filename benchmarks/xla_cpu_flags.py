"""Which XLA:CPU options make the SiT train step fastest on this machine; optionally against PyTorch.

    python -m benchmarks.xla_cpu_flags                       # cpu preset, every candidate, 2 rounds
    python -m benchmarks.xla_cpu_flags --only s2 --rounds 1 --torch

XLA reads `XLA_FLAGS` once per process, so every candidate runs `benchmarks.diffusion_step` (or, with
`--torch`, `benchmarks.torch_sit`) in a fresh subprocess. The candidates are interleaved round by round, so a
change in the machine's load hits them all alike; the table reports each one's best (lowest) step time and its
ratio to XLA's defaults. Use the winner with `XLA_FLAGS=... python -m train.diffusion ...`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

CANDIDATES = {
    "defaults": "",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "onednn": "--xla_cpu_use_onednn=true",
    "vector width 512": "--xla_cpu_prefer_vector_width=512",
    "xnnpack + vector width 512": "--xla_cpu_use_xnnpack=true --xla_cpu_prefer_vector_width=512",
    # layout and fusion choices around the dots
    "tiling propagation": "--xla_cpu_experimental_enable_tiling_propagation=true",
    "ynn dot + eltwise fusions": "--xla_cpu_experimental_ynn_fusion_type=individual_dot,dot,eltwise",
    "no ynn fusions": "--xla_cpu_experimental_ynn_fusion_type=",
    "xnn dots, no ynn fusions": "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_xnn_fusion_type=dot",
    "default scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=false",
}
_STEP_MS = re.compile(r"step ([0-9.]+) ms")


def step_ms(module: str, args: list[str], xla_flags: str) -> float:
    """The step time printed by one benchmark subprocess."""
    env = dict(os.environ, XLA_FLAGS=xla_flags)
    result = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                            check=True)
    match = _STEP_MS.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no step time in the output of {module}:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("cpu", "s2"), default="cpu", help="model configuration")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the candidates")
    parser.add_argument("--torch", action="store_true", help="also time benchmarks.torch_sit each round")
    args = parser.parse_args()
    jax_args = ["--only", args.only, "--steps", str(args.steps)]
    best: dict[str, float] = {}
    for round_index in range(args.rounds):
        for name, flags in CANDIDATES.items():
            ms = step_ms("benchmarks.diffusion_step", jax_args, flags)
            best[name] = min(best.get(name, float("inf")), ms)
            print(f"round {round_index + 1}: {name:28s} {ms:8.1f} ms", flush=True)
        if args.torch:
            torch_args = ["--preset", "cpu" if args.only == "cpu" else "S/2", "--steps", str(args.steps)]
            ms = step_ms("benchmarks.torch_sit", torch_args, "")
            best["PyTorch (torch_sit)"] = min(best.get("PyTorch (torch_sit)", float("inf")), ms)
            print(f"round {round_index + 1}: {'PyTorch (torch_sit)':28s} {ms:8.1f} ms", flush=True)
    print(f"\n== {args.only}: best of {args.rounds} round(s), {args.steps} steps each, {os.cpu_count()} CPU cores")
    print(f"| {'configuration':28s} | XLA_FLAGS | step (ms) | vs defaults |")
    print("|---|---|---:|---:|")
    for name, ms in best.items():
        flags = CANDIDATES.get(name, "(PyTorch)")
        print(f"| {name:28s} | `{flags}` | {ms:.1f} | {ms / best['defaults']:.2f} |")


if __name__ == "__main__":
    main()
