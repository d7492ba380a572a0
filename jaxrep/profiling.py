"""Throughput accounting for benchmarks: FLOPs of a compiled program and the machine's peak FLOP/s.

The peak is reported two ways, each with how it was obtained: a theoretical figure (CPU: cores x clock x
float32 FLOPs per cycle from the vector ISA; GPU: the vendor's dense bf16/fp32 table for known devices) and a
measured one (a large float32 matmul), which is what XLA can actually reach on this machine.
"""

from __future__ import annotations

import os
import re
import time

import jax
import jax.numpy as jnp

# Dense float32 / bfloat16 peaks (FLOP/s) of common accelerators, from vendor datasheets (no sparsity).
ACCELERATOR_PEAKS = {
    "H100": {"float32": 67e12, "bfloat16": 989e12},  # SXM
    "H200": {"float32": 67e12, "bfloat16": 989e12},
    "A100": {"float32": 19.5e12, "bfloat16": 312e12},
    "TPU v4": {"float32": 275e12, "bfloat16": 275e12},
    "TPU v5": {"float32": 197e12, "bfloat16": 197e12},
}


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled program, from XLA's cost analysis (None if unavailable)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read())
        return float(match.group(1)) if match else None
    except OSError:
        return None


def theoretical_peak(dtype: str = "float32") -> tuple[float | None, str]:
    """(peak FLOP/s, explanation) for the default backend's devices visible to this process."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        cores = len(os.sched_getaffinity(0))
        mhz = _cpu_mhz()
        flags = _cpu_flags()
        lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
        fma = 2 if "fma" in flags or "avx512f" in flags else 1
        per_cycle = lanes * fma * 2  # two FMA ports, each lane an FMA = 2 FLOPs
        if mhz is None:
            return None, "CPU clock unknown"
        peak = cores * mhz * 1e6 * per_cycle
        return peak, (f"{cores} cores x {mhz:.0f} MHz x {per_cycle} float32 FLOP/cycle "
                      f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}, 2 FMA ports)")
    kind = device.device_kind
    for name, peaks in ACCELERATOR_PEAKS.items():
        if name.lower() in kind.lower():
            count = jax.local_device_count()
            return peaks[dtype] * count, f"{count} x {kind}: {peaks[dtype] / 1e12:.0f} TFLOP/s {dtype} datasheet"
    return None, f"no datasheet peak for {kind}"


def measured_matmul_peak(size: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
    """FLOP/s of a jitted (size x size) @ (size x size) matmul on the default device."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, a)
    out.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_report(achieved: float | None, dtype: str = "float32") -> str:
    """Lines stating achieved FLOP/s against both peaks."""
    theoretical, how = theoretical_peak(dtype)
    measured = measured_matmul_peak(dtype=jnp.dtype(dtype))
    lines = [f"measured matmul peak: {measured / 1e9:.1f} GFLOP/s (2048^3 {dtype} matmul)"]
    if theoretical:
        lines.append(f"theoretical peak: {theoretical / 1e9:.1f} GFLOP/s = {how}")
    if achieved is not None:
        lines.append(f"achieved: {achieved / 1e9:.2f} GFLOP/s = {100 * achieved / measured:.1f} % of measured peak"
                     + (f", {100 * achieved / theoretical:.1f} % of theoretical" if theoretical else ""))
    return "\n".join(lines)
