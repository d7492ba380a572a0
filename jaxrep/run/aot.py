"""Ahead-of-time compilation for Cloud TPU topologies from any machine, and what the compiled program says.

libtpu's compiler runs without a TPU: `jax.experimental.topologies.get_topology_desc` describes a slice's devices
(compile-only), a mesh is built over them exactly as training builds it over real devices, and
`jax.jit(f).lower(abstract args).compile()` returns the program a pod would run. From it (`compile_report`):
- memory per device: arguments, temporaries, outputs and generated code (XLA's memory analysis);
- FLOPs and bytes accessed per device (XLA's cost analysis; a multiply-add counts as 2 FLOPs);
- the collectives in the optimised HLO: count and result bytes of every all-gather, all-reduce, reduce-scatter,
  all-to-all and collective-permute (`collectives`);
- a roofline estimate (`Roofline`): step time >= max(FLOPs / bf16 peak, bytes / HBM bandwidth) on the chip's
  published figures (`CHIPS`). It ignores communication and the gap between peak and achieved rates, so it is a
  lower bound on the time and an upper bound on images/s and MFU: ESTIMATED, never measured.

Topology names are Cloud TPU names (`v4-32`, `v5p-64`, `v5litepod-16`, `v6e-8`) or libtpu topology strings
(`v5p:4x4x2`). Cloud names count TensorCores for v4 and v5p (2 per chip, one megacore device per chip) and chips
for v5e and v6e; v5e and v6e slices of 8 chips or fewer are one host (8-chip VMs), larger ones 4 chips per host.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from typing import Any, Callable

import jax

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published per-chip figures (Google Cloud TPU documentation, system architecture pages)."""

    name: str
    bf16_tflops: float  # peak dense bf16 TFLOP/s
    hbm_gib: float  # HBM capacity
    hbm_gb_per_s: float  # HBM bandwidth, GB/s
    megacore: bool  # two TensorCores presented as one device (v4, v5p)


CHIPS = {
    "v4": Chip("v4", 275.0, 32.0, 1200.0, True),
    "v5e": Chip("v5e", 197.0, 16.0, 819.0, False),
    "v5p": Chip("v5p", 459.0, 95.0, 2765.0, True),
    "v6e": Chip("v6e", 918.0, 32.0, 1640.0, False),
}
# `jax.Device.device_kind` of each chip as libtpu names it (a v5p reports "TPU v5").
DEVICE_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5": "v5p", "TPU v5p": "v5p", "TPU v6 lite": "v6e"}
# Slice shapes by chip count: 3-D tori (v4, v5p) and 2-D meshes (v5e, v6e).
_SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
              256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)}
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
_CLOUD_PREFIX = {"v4": "v4", "v5p": "v5p", "v5e": "v5e", "v5litepod": "v5e", "v6e": "v6e"}
_COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


class TopologyError(ValueError):
    """A topology name this module cannot map to a libtpu topology."""


class ProgramTooLarge(RuntimeError):
    """The compiler refused a program that cannot fit in the device's memory; the message says by how much."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice: its chip, libtpu topology string and host layout."""

    name: str  # as the user gave it
    chip: Chip
    topology_name: str  # libtpu's, e.g. "v5p:2x4x4"
    chips_per_host: tuple[int, int, int]

    @property
    def dims(self) -> tuple[int, ...]:
        """Chips along each axis of the slice (3-D tori for v4 and v5p, 2-D meshes for v5e and v6e)."""
        return tuple(int(n) for n in self.topology_name.split(":")[1].split("x"))

    @property
    def num_chips(self) -> int:
        return math.prod(self.dims)

    @property
    def accelerator_type(self) -> str:
        """The Cloud TPU accelerator type of the slice (`v5p-64`, `v5litepod-16`)."""
        count = 2 * self.num_chips if self.chip.megacore else self.num_chips
        return f"{'v5litepod' if self.chip.name == 'v5e' else self.chip.name}-{count}"

    def devices(self) -> list:
        """The slice's compile-only devices (one per chip; each has its `process_index`)."""
        from jax.experimental import topologies

        # Compile-only: no TPU is opened, so several processes (tests, parallel checks) may load libtpu at once,
        # and libtpu need not look for TPU hosts (off a TPU VM it warns that it finds none; read at its first load).
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "true")
        if "TPU_ACCELERATOR_TYPE" not in os.environ:
            os.environ.update(TPU_SKIP_MDS_QUERY="1", TPU_WORKER_HOSTNAMES="localhost",
                              TPU_ACCELERATOR_TYPE=self.accelerator_type)
        try:
            description = topologies.get_topology_desc(
                platform="tpu", topology_name=self.topology_name,
                chip_config_name="megacore" if self.chip.megacore else "default",
                chips_per_host_bounds=self.chips_per_host, num_slices=1,
                wrap=(len(self.dims) == 3 and self.num_chips >= 64,) * 3)
        except Exception as error:  # noqa: BLE001 - libtpu missing or refusing the topology: one line
            raise TopologyError(f"topology: the TPU compiler could not describe {self.name} "
                                f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); it comes "
                                "with the tpu extra: pip install -e '.[tpu]'") from error
        return list(description.devices)


def chip_of(device_kind: str) -> Chip | None:
    """The `CHIPS` entry of a TPU device (its `device_kind`), None for any other device."""
    name = DEVICE_KINDS.get(device_kind)
    return CHIPS[name] if name else None


def _host_bounds(dims: tuple[int, ...]) -> tuple[int, int, int]:
    """Chips per host along each axis: a 2-D slice of up to 8 chips is one host (v5e / v6e 8-chip VMs); otherwise
    hosts of 2 x 2 chips (v4, v5p, larger v5e / v6e), or the whole slice where it is smaller."""
    if len(dims) == 2 and math.prod(dims) <= 8:
        return (dims[0], dims[1], 1)
    padded = (*dims, 1)[:3]
    return tuple(min(2, d) for d in padded[:2]) + (1,)


def resolve_topology(name: str) -> Topology:
    """A Cloud TPU name (`v5p-64`) or libtpu topology string (`v5p:2x4x4`) -> Topology; TopologyError otherwise."""
    cloud = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name)
    if cloud:
        prefix, count = _CLOUD_PREFIX[cloud.group(1)], int(cloud.group(2))
        chip = CHIPS[prefix]
        chips = count // 2 if chip.megacore else count
        shapes = _SHAPES_3D if chip.megacore else _SHAPES_2D
        if (chip.megacore and count % 2) or chips not in shapes:
            raise TopologyError(f"topology: {name!r} is not a slice this planner knows; known sizes: "
                                f"{', '.join(f'{cloud.group(1)}-{c * (2 if chip.megacore else 1)}' for c in shapes)}")
        shape = "x".join(map(str, shapes[chips]))
        return Topology(name, chip, f"{prefix}:{shape}", _host_bounds(shapes[chips]))
    spec = re.fullmatch(r"(v4|v5p|v5e|v6e):(\d+(?:x\d+){1,2})", name)
    if not spec:
        raise TopologyError(f"topology: {name!r} is neither a Cloud TPU name (v4-8, v5p-64, v5litepod-16, v6e-8) "
                            "nor a topology string (v5p:2x2x1, v5e:4x4)")
    chip = CHIPS[spec.group(1)]
    dims = [int(n) for n in spec.group(2).split("x")]
    if len(dims) != (3 if chip.megacore else 2):
        raise TopologyError(f"topology: {chip.name} slices are {3 if chip.megacore else 2}-D, got {name!r}")
    return Topology(name, chip, name, _host_bounds(tuple(dims)))


@dataclasses.dataclass(frozen=True)
class Roofline:
    """ESTIMATE from a compile: max(compute time at peak, HBM time at full bandwidth), communication ignored."""

    seconds: float
    bound: str  # "compute" or "memory"

    @classmethod
    def of(cls, flops: float, bytes_accessed: float, chip: Chip) -> "Roofline":
        compute, memory = flops / (chip.bf16_tflops * 1e12), bytes_accessed / (chip.hbm_gb_per_s * 1e9)
        return cls(max(compute, memory), "compute" if compute >= memory else "memory")


@dataclasses.dataclass(frozen=True)
class ProgramReport:
    """What one compiled program needs per device."""

    name: str
    argument_bytes: int
    temp_bytes: int
    output_bytes: int
    alias_bytes: int  # outputs that reuse donated argument buffers (not counted twice)
    code_bytes: int
    flops: float
    bytes_accessed: float
    collectives: dict[str, tuple[int, int]]  # op -> (count, result bytes)
    compile_seconds: float
    resident_bytes: int = 0  # buffers held outside the program's arguments (e.g. a frozen encoder's params)

    @property
    def total_bytes(self) -> int:
        """Peak device memory of the program: arguments + temporaries + outputs not aliased to donated
        arguments + code, plus `resident_bytes`."""
        return (self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes + self.code_bytes
                + self.resident_bytes)


def collectives(hlo_text: str) -> dict[str, tuple[int, int]]:
    """{op: (count, result bytes)} of the collectives in optimised HLO text (`compiled.as_text()`).

    The TPU compiler emits a reduce-scatter as a fusion that calls an `all-reduce-scatter` computation (an
    all-reduce and a slice, run as one reduce-scatter): each such fusion counts as one `reduce-scatter`, and the
    ops inside its computation are not counted again. An all-reduce of a tuple counts once, with the bytes of all
    its elements; an async `-start` counts once, with the bytes of its largest element (the result).
    """
    found: dict[str, tuple[int, int]] = {}
    ops = "|".join(_COLLECTIVES)
    computation = ""
    for line in hlo_text.splitlines():
        if line and not line[0].isspace():  # a computation's header (or its closing brace)
            header = re.match(r"(?:ENTRY )?%?([\w.-]+)", line)
            computation = header.group(1) if header else ""
            continue
        if computation.startswith("all-reduce-scatter"):
            continue
        match = re.match(rf"\s*(?:ROOT )?%[\w.-]+ = (.*?) ({ops})(-start)?\(", line)
        if match:
            op, shape, largest = match.group(2), match.group(1), bool(match.group(3))
        else:
            match = re.match(r"\s*(?:ROOT )?%[\w.-]+ = (.*?) fusion\(.*calls=%all-reduce-scatter", line)
            if not match:
                continue
            op, shape, largest = "reduce-scatter", match.group(1), False
        count, size = found.get(op, (0, 0))
        found[op] = (count + 1, size + _shape_bytes(shape, largest))
    return found


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}


def _shape_bytes(shape: str, largest: bool) -> int:
    """Bytes of an HLO shape such as `f32[8,128]{1,0}`; of a tuple, the sum of its elements (`largest`: the
    largest element)."""
    sizes = [_DTYPE_BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
             for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shape)]
    return (max(sizes, default=0) if largest else sum(sizes))


def compile_report(name: str, jitted: Callable, *args: Any, resident_bytes: int = 0) -> ProgramReport:
    """Lowers and compiles `jitted` for the devices its arguments' shardings name; returns its ProgramReport."""
    start = time.perf_counter()
    try:
        compiled = jitted.lower(*args).compile()
    except jax.errors.JaxRuntimeError as error:  # the TPU compiler refuses what cannot fit in HBM
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        raise ProgramTooLarge(f"{name} does not fit: {str(error).splitlines()[0].split(': ', 1)[-1]}") from error
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return ProgramReport(
        name=name, argument_bytes=memory.argument_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
        output_bytes=memory.output_size_in_bytes, alias_bytes=memory.alias_size_in_bytes,
        code_bytes=memory.generated_code_size_in_bytes, flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)), collectives=collectives(compiled.as_text()),
        compile_seconds=seconds, resident_bytes=resident_bytes)


def abstract_bytes(tree: Any) -> int:
    """Bytes per device of a tree of sharded ShapeDtypeStructs (or arrays)."""
    return sum(leaf.dtype.itemsize * math.prod(leaf.sharding.shard_shape(leaf.shape)) for leaf in jax.tree.leaves(tree))


def describe(report: ProgramReport, chip: Chip, *, images: int | None = None) -> str:
    """A multi-line, human-readable report of one program on `chip` (the roofline marked as an estimate)."""
    gib = lambda n: f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"  # noqa: E731
    lines = [f"{report.name}: compiled in {report.compile_seconds:.1f} s",
             f"  memory per device: arguments {gib(report.argument_bytes)}, temporaries {gib(report.temp_bytes)}, "
             f"outputs {gib(report.output_bytes)} ({gib(report.alias_bytes)} aliased to donated arguments), "
             f"code {gib(report.code_bytes)}"
             + (f", resident outside the program {gib(report.resident_bytes)}" if report.resident_bytes else "")
             + f"; total {gib(report.total_bytes)} of {chip.hbm_gib:.0f} GiB HBM "
             f"({100 * report.total_bytes / (chip.hbm_gib * GIB):.0f} %)",
             f"  cost per device: {report.flops / 1e12:.3f} TFLOP, {report.bytes_accessed / GIB:.2f} GiB accessed"]
    ops = ", ".join(f"{op} {count} ({gib(size)})" for op, (count, size) in sorted(report.collectives.items()))
    lines.append(f"  collectives: {ops or 'none'}")
    roof = Roofline.of(report.flops, report.bytes_accessed, chip)
    estimate = f"  ESTIMATE (roofline on {chip.name}'s published {chip.bf16_tflops:g} TFLOP/s bf16 and " \
               f"{chip.hbm_gb_per_s:g} GB/s, communication ignored): >= {1e3 * roof.seconds:.1f} ms, {roof.bound}-bound"
    if images:
        estimate += f", <= {images / roof.seconds:.0f} images/s, MFU <= " \
                    f"{100 * report.flops / (roof.seconds * chip.bf16_tflops * 1e12):.0f} %"
    lines.append(estimate)
    return "\n".join(lines)


def shortfall(report: ProgramReport, chip: Chip) -> int:
    """Bytes by which the program exceeds the chip's HBM (<= 0: it fits)."""
    return report.total_bytes - int(chip.hbm_gib * GIB)


__all__ = ["CHIPS", "Chip", "ProgramReport", "ProgramTooLarge", "Roofline", "Topology", "TopologyError",
           "abstract_bytes", "collectives",
           "compile_report", "describe", "resolve_topology", "shortfall"]
