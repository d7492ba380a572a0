"""The pod table: the paper presets' REPA steps compiled for Cloud TPU slices on this CPU (libtpu, the `tpu` extra).

  python -m benchmarks.pod_table [--rows=b2_repa:replicate:v4-8,...] [--results=docs/results/pod_table]

Each row compiles one run's alignment-encoder forward (DINOv2-B/14) and train step (`train.compile_check`'s
programs: bf16 activations, global batch 256) for one slice and records per-device memory against HBM, FLOPs and
the roofline ESTIMATE of the step time (encoder forward + step), images/s and the chip-hours of REPA's 4M-step
schedule. Rows go to `RESULTS/rows.jsonl` as they finish (a rerun skips the rows already there, so the table
resumes), and the table is rewritten into `RESULTS/README.md` and between the markers of
docs/results/performance.md. Every time figure is an estimate from the compile, never a measurement.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

from configs import diffusion as diffusion_configs
from jaxrep.run import aot

DEFAULT_ROWS = [f"{preset}:{layout}:{topology}" for preset in ("b2_repa", "l2_repa", "xl2_repa")
                for topology in ("v4-8", "v5e-8", "v5p-8", "v5p-64") for layout in ("replicate", "fsdp")]
DEFAULT_ROWS += ["xl2_512_repa:fsdp:v5p-64"]
REPA_STEPS = 4_000_000  # SiT-XL/2 + REPA, FID 1.42
MARKERS = ("<!-- pod-table:start -->", "<!-- pod-table:end -->")

_ROWS = flags.DEFINE_list("rows", DEFAULT_ROWS, "preset:layout:topology rows to compile.")
_RESULTS = flags.DEFINE_string("results", "docs/results/pod_table", "Folder of rows.jsonl and README.md.")
_PERFORMANCE = flags.DEFINE_string("performance", "docs/results/performance.md", "Report whose marked section "
                                   "receives the table ('' leaves it alone).")


def compile_row(row: str) -> dict:
    from jaxrep.experiments import compile_check

    preset, layout, topology_name = row.split(":")
    config = diffusion_configs.get_config(preset)
    config.update_from_flattened_dict({"param_sharding": layout, "model.dtype": "bfloat16", "batch_size": 256,
                                       "align.encoder.dtype": "bfloat16"})
    config = compile_check.as_compiled(config)
    topology = aot.resolve_topology(topology_name)
    devices = topology.devices()
    image_shape = (64, 64, 4) if "_512" in preset else (32, 32, 4)
    diffusion_configs.validate(config, num_devices=len(devices), image_size=image_shape[0], check_files=False)
    start = time.perf_counter()
    row_info = {"row": row, "preset": preset, "layout": layout, "topology": topology_name, "chip": topology.chip.name,
                "devices": len(devices), "hosts": len({d.process_index for d in devices}),
                "hbm_gib": topology.chip.hbm_gib}
    try:
        targets, step = compile_check.train_programs(config, devices, image_shape)
    except aot.ProgramTooLarge as error:  # the compiler's own refusal: the row records it
        return {**row_info, "fits": False, "refusal": str(error), "compile_s": time.perf_counter() - start}
    seconds = sum(aot.Roofline.of(r.flops, r.bytes_accessed, topology.chip).seconds for r in (targets, step))
    return {**row_info, "arguments_gib": step.argument_bytes / aot.GIB, "total_gib": step.total_bytes / aot.GIB,
            "fits": aot.shortfall(step, topology.chip) <= 0,
            "step_tflop_per_device": (targets.flops + step.flops) / 1e12, "estimated_step_s": seconds,
            "estimated_images_per_s": config.batch_size / seconds,
            "estimated_chip_hours_4m": REPA_STEPS * seconds * len(devices) / 3600,
            "collectives": {op: count for op, (count, _) in step.collectives.items()},
            "compile_s": time.perf_counter() - start}


def render(rows: list[dict]) -> str:
    lines = ["| run | layout | slice (devices, hosts) | memory per device (GiB) | fits HBM | "
             "TFLOP per device per step | est. step (ms) | est. images/s | est. chip-hours, 4M steps | "
             "collectives in the step | compile (s) |", "|" + "---|" * 11]
    for r in rows:
        if "refusal" in r:
            needed = r["refusal"].split("does not fit: ")[-1]
            lines.append(f"| {r['preset']} | {r['layout']} | {r['topology']} ({r['devices']}, {r['hosts']}) | "
                         f"refused by the compiler: {needed} | **no** | | | | | | {r['compile_s']:.0f} |")
            continue
        ops = ", ".join(f"{op} {count}" for op, count in sorted(r["collectives"].items())) or "none"
        lines.append(f"| {r['preset']} | {r['layout']} | {r['topology']} ({r['devices']}, {r['hosts']}) | "
                     f"{r['total_gib']:.2f} of {r['hbm_gib']:g} | {'yes' if r['fits'] else '**no**'} | "
                     f"{r['step_tflop_per_device']:.2f} | {1e3 * r['estimated_step_s']:.0f} | "
                     f"{r['estimated_images_per_s']:.0f} | {r['estimated_chip_hours_4m']:.0f} | {ops} | "
                     f"{r['compile_s']:.0f} |")
    return "\n".join(lines)


def write_table(rows: list[dict]) -> None:
    table = render(rows)
    header = ("Estimated from libtpu compiles on a CPU (`python -m benchmarks.pod_table`): bf16 activations, global "
              "batch 256, REPA with the DINOv2-B/14 encoder forward; step time = roofline of encoder forward + train "
              "step (published peak bf16 FLOP/s and HBM bandwidth, communication ignored): a lower bound on time, an "
              "upper bound on images/s. Memory = arguments + temporaries + unaliased outputs + code of the train "
              "step, plus the encoder's resident params.\n\n")
    with open(os.path.join(_RESULTS.value, "README.md"), "w") as file:
        file.write("# Pod table\n\n" + header + table + "\n")
    if _PERFORMANCE.value:
        with open(_PERFORMANCE.value) as file:
            text = file.read()
        start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
        with open(_PERFORMANCE.value, "w") as file:
            file.write(text[:start] + "\n" + header + table + "\n" + text[end:])


def main(argv) -> None:
    del argv
    import jax

    jax.config.update("jax_platforms", "cpu")
    os.makedirs(_RESULTS.value, exist_ok=True)
    path = os.path.join(_RESULTS.value, "rows.jsonl")
    done = {}
    if os.path.exists(path):
        with open(path) as file:
            done = {r["row"]: r for r in map(json.loads, file)}
    for row in _ROWS.value:
        if row not in done:
            print(f"compiling {row} ...", flush=True)
            done[row] = compile_row(row)
            with open(path, "a") as file:
                file.write(json.dumps(done[row]) + "\n")
            print(render([done[row]]).splitlines()[-1], flush=True)
    write_table([done[row] for row in _ROWS.value])


if __name__ == "__main__":
    app.run(main)
