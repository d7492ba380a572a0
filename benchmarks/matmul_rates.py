"""The matmuls of a SiT train step, timed alone in XLA and in PyTorch: the floor under each framework's step.

    python -m benchmarks.matmul_rates                  # the `cpu` preset's shapes, batch 32
    python -m benchmarks.matmul_rates --preset S/2 --batch 32

Every transformer block of a train step does, per linear layer (qkv, proj, fc1, fc2; input (M, K), kernel
(K, N), M = batch x tokens) a forward matmul and two backward ones (dX = dY W^T, dW = X^T dY), and in attention
six batched matmuls over batch x heads (Q K^T and dO V^T; P V and dS K; P^T dO and dS^T Q). Each distinct
shape is timed alone in both frameworks (XLA: one jitted `matmul` per call with the transposes folded into it;
PyTorch: `@` on transposed views, as its autograd does), the frameworks alternating, and the table sums
FLOPs / rate over the step. Those sums are what the two steps would take if they did nothing but their block
matmuls, so "JAX step <= 0.6 x PyTorch step" (issue 7) is out of reach whenever XLA's matmul sum alone exceeds
0.6 x PyTorch's measured step. The small adaLN, embedding and final-layer matmuls are left out. Needs the `ref`
extra (torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks.torch_ddpg

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Matmul:
    """op(a) @ op(b) over the last two axes; op transposes them where asked."""

    name: str
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    transpose_a: bool = False
    transpose_b: bool = False
    count: int = 1  # occurrences per block

    @property
    def flops(self) -> int:
        rows, inner = self.a_shape[-2:][::-1] if self.transpose_a else self.a_shape[-2:]
        columns = self.b_shape[-2] if self.transpose_b else self.b_shape[-1]
        return 2 * int(np.prod(self.a_shape[:-2], dtype=np.int64)) * rows * inner * columns


def block_matmuls(batch: int, tokens: int, hidden: int, heads: int, mlp_ratio: float = 4.0) -> list[Matmul]:
    """The matmuls of one SiT block's forward and backward pass."""
    rows, head_dim, mlp = batch * tokens, hidden // heads, int(hidden * mlp_ratio)
    matmuls = []
    for layer, (inner, outer) in {"qkv": (hidden, 3 * hidden), "proj": (hidden, hidden), "fc1": (hidden, mlp),
                                  "fc2": (mlp, hidden)}.items():
        matmuls += [Matmul(f"{layer} forward X W", (rows, inner), (inner, outer)),
                    Matmul(f"{layer} dX = dY W^T", (rows, outer), (inner, outer), transpose_b=True),
                    Matmul(f"{layer} dW = X^T dY", (rows, inner), (rows, outer), transpose_a=True)]
    groups = batch * heads
    matmuls += [Matmul("attention Q K^T, dO V^T", (groups, tokens, head_dim), (groups, tokens, head_dim),
                       transpose_b=True, count=2),
                Matmul("attention P V, dS K", (groups, tokens, tokens), (groups, tokens, head_dim), count=2),
                Matmul("attention P^T dO, dS^T Q", (groups, tokens, tokens), (groups, tokens, head_dim),
                       transpose_a=True, count=2)]
    return matmuls


def _swap(x, transpose: bool):
    return x.swapaxes(-1, -2) if transpose else x


def _best_seconds_per_call(call, repeats: int, wait=lambda out: out) -> float:
    """Seconds per call of `call()`, best of 3 timings of `repeats` calls (`wait` blocks on the last output)."""
    wait(call())  # warm-up (and compilation)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = call()
        wait(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def jax_seconds(matmul: Matmul, repeats: int) -> float:
    """Seconds per call of the jitted matmul."""
    a = jnp.full(matmul.a_shape, 0.01, jnp.float32)
    b = jnp.full(matmul.b_shape, 0.01, jnp.float32)
    fn = jax.jit(lambda a, b: jnp.matmul(_swap(a, matmul.transpose_a), _swap(b, matmul.transpose_b)))
    return _best_seconds_per_call(lambda: fn(a, b), repeats, wait=lambda out: out.block_until_ready())


def torch_seconds(matmul: Matmul, repeats: int) -> float:
    """Seconds per PyTorch matmul (eager, synchronous) with the current thread count."""
    import torch

    a = torch.full(matmul.a_shape, 0.01)
    b = torch.full(matmul.b_shape, 0.01)
    return _best_seconds_per_call(lambda: _swap(a, matmul.transpose_a) @ _swap(b, matmul.transpose_b), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="'cpu' (the cpu preset's shape) or a SiT preset like S/2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="calls per timing")
    args = parser.parse_args()
    import torch

    from jaxrep.nn.sit import PRESETS

    if args.preset == "cpu":
        depth, hidden, heads, tokens = 4, 128, 4, (32 // 4) ** 2
    else:
        size, patch = args.preset.split("/")
        depth, hidden, heads = (PRESETS[size][key] for key in ("depth", "hidden_size", "num_heads"))
        tokens = (32 // int(patch)) ** 2
    matmuls = block_matmuls(args.batch, tokens, hidden, heads)
    print(f"== SiT {args.preset} block matmuls: batch {args.batch}, {tokens} tokens, hidden {hidden}, "
          f"{heads} heads, depth {depth}; torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"XLA on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
    print()
    print("| matmul | shapes | per block | XLA GFLOP/s | PyTorch GFLOP/s |")
    print("|---|---|---|---|---|")
    totals = {"XLA": 0.0, "PyTorch": 0.0}
    for matmul in matmuls:
        seconds = {"XLA": jax_seconds(matmul, args.repeats), "PyTorch": torch_seconds(matmul, args.repeats)}
        for framework in totals:
            totals[framework] += depth * matmul.count * seconds[framework]
        shapes = (f"{'x'.join(map(str, matmul.a_shape))}{'^T' if matmul.transpose_a else ''} @ "
                  f"{'x'.join(map(str, matmul.b_shape))}{'^T' if matmul.transpose_b else ''}")
        print(f"| {matmul.name} | {shapes} | {matmul.count} | {matmul.flops / seconds['XLA'] / 1e9:.1f} | "
              f"{matmul.flops / seconds['PyTorch'] / 1e9:.1f} |", flush=True)
    flops = depth * sum(matmul.count * matmul.flops for matmul in matmuls)
    print()
    print(f"Block matmuls per train step: {flops / 1e9:.2f} GFLOP; time at the rates above: "
          f"XLA {1e3 * totals['XLA']:.1f} ms, PyTorch {1e3 * totals['PyTorch']:.1f} ms "
          f"(XLA / PyTorch {totals['XLA'] / totals['PyTorch']:.2f}).")


if __name__ == "__main__":
    main()
