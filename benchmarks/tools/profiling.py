"""Throughput accounting for benchmarks: FLOPs of a compiled program, the machine's peak FLOP/s, and where a
program's time goes.

The peak is reported two ways, each with how it was obtained: a theoretical figure (CPU: cores x clock x
float32 FLOPs per cycle from the vector ISA; GPU: the vendor's dense bf16/fp32 table for known devices) and a
measured one (a large float32 matmul), which is what XLA can actually reach on this machine. `op_times`
(and `op_kind_times`, `op_source_times`) read a `jax.profiler` trace back in-process
(`jax.profiler.ProfileData`), so no TensorBoard is needed.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrep.run import aot

# Dense float32 / bfloat16 peaks (FLOP/s) of NVIDIA GPUs, from vendor datasheets (no sparsity); TPUs: `aot.CHIPS`.
ACCELERATOR_PEAKS = {
    "H100": {"float32": 67e12, "bfloat16": 989e12},  # SXM
    "H200": {"float32": 67e12, "bfloat16": 989e12},
    "A100": {"float32": 19.5e12, "bfloat16": 312e12},
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
    kind, count = device.device_kind, jax.local_device_count()
    chip = aot.chip_of(kind)
    if chip is not None:  # TPUs: the bf16 MXU peak (float32 matmuls run as bf16 passes)
        return chip.bf16_tflops * 1e12 * count, f"{count} x {kind}: {chip.bf16_tflops:.0f} TFLOP/s bf16 datasheet"
    for name, peaks in ACCELERATOR_PEAKS.items():
        if name.lower() in kind.lower():
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


_HLO_NAME = re.compile(r"^([a-z][a-z0-9_\-]*)(\.\d+)?$")  # e.g. copy_bitcast_fusion.12, dot, ynn_fusion
_CONTROL_FLOW = {"while", "conditional", "call"}  # their bodies' ops are counted themselves


def op_times(run: Callable[[], Any], calls: int = 1) -> dict[str, float]:
    """Seconds per call of `run` (which must block until its work is done) spent in each XLA op, keyed by the
    op's HLO instruction name (`copy_bitcast_fusion.12`).

    Events come from the "XLA Ops" lines of device planes (GPU, TPU) or, on CPU, from every host thread's
    events named like HLO instructions (runtime bookkeeping such as `ThunkExecutor::Execute` is not);
    control-flow ops are left out, their bodies' ops count. Ops that run concurrently each count in full, so
    the sum can exceed the wall time. Sorted, largest first.
    """
    run()  # compile and warm up outside the trace
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(calls):
                run()
        paths = [os.path.join(root, name) for root, _, names in os.walk(trace_dir) for name in names
                 if name.endswith(".xplane.pb")]
        with open(paths[0], "rb") as f:
            profile = jax.profiler.ProfileData.from_serialized_xspace(f.read())
    device_lines = [line for plane in profile.planes for line in plane.lines if line.name == "XLA Ops"]
    lines = device_lines or [line for plane in profile.planes if plane.name.startswith("/host:CPU")
                             for line in plane.lines]
    totals: collections.Counter = collections.Counter()
    for line in lines:
        for event in line.events:
            match = _HLO_NAME.match(event.name)
            if match and match.group(1) not in _CONTROL_FLOW:
                totals[event.name] += event.duration_ns * 1e-9 / calls
    return dict(totals.most_common())


def op_kind(name: str) -> str:
    """An HLO instruction's kind: its name without the numeric suffix (`copy_bitcast_fusion.12` ->
    `copy_bitcast_fusion`; XLA:CPU names its dot fusions `ynn_fusion`)."""
    return _HLO_NAME.match(name).group(1)


def times_by_kind(times: dict[str, float]) -> dict[str, float]:
    """Per-op seconds (`op_times`) summed by `op_kind`. Sorted, largest first."""
    totals: collections.Counter = collections.Counter()
    for name, seconds in times.items():
        totals[op_kind(name)] += seconds
    return dict(totals.most_common())


def times_by_source(times: dict[str, float], hlo_text: str, kinds: tuple[str, ...] = ("copy", "transpose")
                    ) -> dict[tuple[str, str], float]:
    """Per-op seconds (`op_times`) of the ops whose kind contains one of `kinds`, summed by (kind, source): the
    source is the `op_name` metadata the compiled program's text (`compiled.as_text()`, the program timed)
    gives the instruction, i.e. the JAX operation it came from, with layer indices (`blocks_3`) folded to `*`.
    Shows where layout copies come from. Sorted, largest first."""
    sources = {}
    for match in re.finditer(r'%([\w.\-]+) = [^\n]*?op_name="([^"]*)"', hlo_text):
        sources[match.group(1)] = re.sub(r"_\d+(?=/|$)", "_*", match.group(2))
    totals: collections.Counter = collections.Counter()
    for name, seconds in times.items():
        kind = op_kind(name)
        if any(k in kind for k in kinds):
            totals[(kind, sources.get(name, "?"))] += seconds
    return dict(totals.most_common())


def op_kind_times(run: Callable[[], Any], calls: int = 1) -> dict[str, float]:
    """`op_times` of `run` summed by `op_kind` (`times_by_kind`). Sorted, largest first."""
    return times_by_kind(op_times(run, calls))


def op_source_times(run: Callable[[], Any], hlo_text: str, calls: int = 1,
                    kinds: tuple[str, ...] = ("copy", "transpose")) -> dict[tuple[str, str], float]:
    """`op_times` of `run` summed by (kind, source) over the ops of `kinds` (`times_by_source`)."""
    return times_by_source(op_times(run, calls), hlo_text, kinds)


def op_kind_report(times: dict[str, float], top: int = 12) -> str:
    """A markdown table of the `top` op kinds of `op_kind_times`: ms per call and share of all op time."""
    total = sum(times.values())
    rows = ["| op kind | ms per call | share of op time |", "|---|---|---|"]
    rows += [f"| {kind} | {1e3 * seconds:.2f} | {100 * seconds / total:.1f} % |"
             for kind, seconds in list(times.items())[:top]]
    rest = sum(list(times.values())[top:])
    rows += [f"| (all other kinds) | {1e3 * rest:.2f} | {100 * rest / total:.1f} % |",
             f"| all ops | {1e3 * total:.2f} | 100 % |"]
    return "\n".join(rows)
