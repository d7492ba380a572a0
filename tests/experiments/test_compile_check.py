"""TPU ahead-of-time compilation on this CPU (libtpu's compiler, the `tpu` extra): Cloud TPU names map to the
slices libtpu describes, a tiny SiT with REPA (train step replicated and FSDP, its encoder targets), the sampler and
a tiny SD-VAE's decode and encode compile for a single-host and a multi-host topology through
`python -m train.compile_check`, FSDP's per-device state falls by the device count with the collectives FSDP
implies, and an oversized run or an indivisible batch ends in one line. A sharding or an op the TPU compiler
rejects in any of these programs fails here, not on a pod."""

import math
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.nn.vit import ViT
from jaxrep.run import aot
from jaxrep.weights.encoder import save_encoder
from tests.experiments import latent_fixtures as fx
from tests.helpers import REPO, with_overrides


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny in-repo target encoder (random weights) on the cpu SiT's 8 x 8 token grid."""
    directory = str(tmp_path_factory.mktemp("encoder"))
    encoder = ViT(width=32, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    save_encoder(directory, encoder, encoder.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"],
                 image_size=32, info={"note": "random, for tests"})
    return directory


def compile_check(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "train.compile_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name, topology, devices, hosts, kind", [
    ("v4-8", "v4:2x2x1", 4, 1, "TPU v4"),  # v4 counts TensorCores: 4 megacore chips
    ("v4-32", "v4:2x2x4", 16, 4, "TPU v4"),
    ("v5p-64", "v5p:2x4x4", 32, 8, "TPU v5"),
    ("v5litepod-16", "v5e:4x4", 16, 4, "TPU v5 lite"),  # v5e counts chips
    ("v5e-8", "v5e:2x4", 8, 1, "TPU v5 lite"),  # the single-host 8-chip VM
    ("v6e-8", "v6e:2x4", 8, 1, "TPU v6 lite"),
    ("v5p:2x2x1", "v5p:2x2x1", 4, 1, "TPU v5"),
])
def test_cloud_tpu_names_map_to_the_slices_libtpu_describes(name, topology, devices, hosts, kind):
    resolved = aot.resolve_topology(name)
    assert resolved.topology_name == topology
    described = resolved.devices()
    assert len(described) == devices and {d.device_kind for d in described} == {kind}
    assert aot.chip_of(kind) is resolved.chip  # libtpu's device kind names the chip whose peak MFU uses
    assert len({d.process_index for d in described}) == hosts


@pytest.mark.parametrize("name", ["v5p-63", "v4-9", "v7-8", "v5e:2x2x2", "v5p:2x2"])
def test_an_unknown_topology_name_is_refused(name):
    with pytest.raises(aot.TopologyError, match="topology: "):
        aot.resolve_topology(name)


def test_collectives_are_counted_from_hlo_text_with_fused_reduce_scatters_counted_once():
    hlo = "\n".join([
        "%all-reduce-scatter.3 (p: f32[64,8]) -> f32[16,8] {",
        "  %all-reduce.9 = f32[64,8]{1,0} all-reduce(%p), replica_groups={{0,1,2,3}}, to_apply=%add",
        "  ROOT %dynamic-slice = f32[16,8]{1,0} dynamic-slice(%all-reduce.9, %i, %j)",
        "}",
        "ENTRY %main (a: f32[16,8], b: bf16[4]) -> f32[64,8] {",
        "  %all-gather.1 = f32[64,8]{1,0:T(8,128)} all-gather(%a), dimensions={0}, metadata={op_name=\"x\"}",
        "  %all-reduce.2 = (f32[]{:T(128)}, f32[10]{0}, /*index=2*/bf16[4]{0}) all-reduce(%s, %t, %b), to_apply=%add",
        "  %cp = (f32[8]{0}, f32[8]{0}, u32[], u32[]) collective-permute-start(%c), source_target_pairs={{0,1}}",
        "  %fusion.4 = f32[16,8]{1,0} fusion(%g), kind=kCustom, calls=%all-reduce-scatter.3",
        "  ROOT %all-gather.5 = f32[64,8]{1,0} all-gather(%fusion.4), dimensions={0}",
        "}"])
    assert aot.collectives(hlo) == {"all-gather": (2, 2 * 64 * 8 * 4), "all-reduce": (1, 4 + 40 + 8),
                                    "collective-permute": (1, 32), "reduce-scatter": (1, 16 * 8 * 4)}


def test_the_roofline_is_the_slower_of_compute_and_memory_time():
    chip = aot.CHIPS["v5p"]
    compute = aot.Roofline.of(459e12, 1e9, chip)  # 1 s of compute, 0.36 ms of HBM traffic
    assert compute.bound == "compute" and compute.seconds == pytest.approx(1.0)
    memory = aot.Roofline.of(1e9, 2765e9, chip)
    assert memory.bound == "memory" and memory.seconds == pytest.approx(1.0)


def test_fsdp_splits_the_state_over_a_multi_host_slice_with_the_collectives_fsdp_implies(encoder_dir):
    devices = aot.resolve_topology("v5e:4x4").devices()  # 16 chips on 4 hosts
    mesh = parallel.make_mesh(devices)
    reports, states = {}, {}
    for layout in ("replicate", "fsdp"):
        config = with_overrides(diffusion_configs.get_config("cpu_repa"),
                                {"batch_size": 32, "param_sharding": layout, "align.encoder.path": encoder_dir})
        step, states[layout], batch = diffusion_experiment.abstract_train_step(config, mesh, (32, 32, 3))
        reports[layout] = aot.compile_report(layout, step, states[layout], batch)
    whole, split = (aot.abstract_bytes(states[layout]) for layout in ("replicate", "fsdp"))
    # The arrays FSDP leaves whole (under 2^14 elements: biases, norms, keys) stay on every device.
    small = sum(leaf.dtype.itemsize * leaf.size for leaf in jax.tree.leaves(states["fsdp"])
                if leaf.sharding.shard_shape(leaf.shape) == leaf.shape)
    assert split == pytest.approx(small + (whole - small) / len(devices), rel=1e-6)
    batch_bytes = aot.abstract_bytes(batch)
    assert reports["replicate"].argument_bytes == pytest.approx(whole + batch_bytes, rel=0.01)
    # TPU pads every buffer to its tiled layout, a larger share of the small FSDP shards: within 10 %.
    assert split + batch_bytes <= reports["fsdp"].argument_bytes <= 1.1 * (split + batch_bytes)
    assert reports["replicate"].argument_bytes / reports["fsdp"].argument_bytes > 0.9 * whole / split > 5
    # Replicated data parallelism all-reduces the gradients and gathers nothing; FSDP gathers every split weight.
    replicated = reports["replicate"].collectives
    assert replicated["all-reduce"][0] >= 1 and "all-gather" not in replicated
    gathered = reports["fsdp"].collectives["all-gather"]
    assert gathered[0] >= sum(1 for leaf in jax.tree.leaves(states["fsdp"].params)
                              if math.prod(leaf.sharding.shard_shape(leaf.shape)) < leaf.size)


def test_a_tiny_repa_run_compiles_its_train_step_targets_and_sampler_for_a_multi_host_slice(encoder_dir):
    result = compile_check("--config=configs/diffusion.py:cpu_repa", "--topology=v4:2x2x2",
                           f"--config.align.encoder.path={encoder_dir}", "--config.batch_size=16",
                           "--config.param_sharding=fsdp", "--eval_config.batch_size=8",
                           "--eval_config.sample.num_steps=3", "--programs=train,sample")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("v4:2x2x2 = v4:2x2x2: 8 TPU v4 devices on 2 host(s), 32 GiB HBM each")
    for program in ("targets (alignment encoder forward)", "train step (fsdp, global batch 16)",
                    "sample (sde 3 steps, cfg 1.8, 8 images per host)"):
        assert f"\n{program}: compiled in " in out
    assert out.count("ESTIMATE (roofline on v4's published 275 TFLOP/s bf16") == 3
    assert "all-gather" in out.split("train step")[1].split("sample")[0]


def test_a_tiny_latent_run_compiles_its_sd_vae_decode_and_encode_for_a_single_host_slice(tmp_path):
    vae = fx.make_tiny_vae(str(tmp_path / "vae"))  # 2 blocks: 2x downsampling, read for its architecture only
    result = compile_check("--config=configs/diffusion.py:b2", "--topology=v5e:2x2", "--image_size=8",
                           "--config.model.preset=", "--config.model.patch_size=2", "--config.model.hidden_size=32",
                           "--config.model.depth=1", "--config.model.num_heads=2", "--config.batch_size=8",
                           f"--eval_config.vae.path={vae}", "--eval_config.batch_size=8", "--programs=decode,encode")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\ndecode (SD-VAE, 8 latents per host): compiled in " in result.stdout
    assert "\nencode (prepare_latents, 32 images per host): compiled in " in result.stdout


def test_a_run_too_large_for_the_chip_ends_in_one_line_with_the_fixes():
    # The cpu SiT at 16,384 images per v5e chip: its activations alone exceed 16 GiB.
    result = compile_check("--config=configs/diffusion.py:cpu", "--topology=v5e:2x2", "--config.batch_size=65536",
                           "--programs=train")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    # libtpu's compiler itself refuses it, naming the memory it needs against the chip's.
    assert re.fullmatch(r"error: train step \(replicate, global batch 65536\) does not fit: .*HBM.*\(\d+\.\d+G\) "
                        r"exceeds available HBM \(15\.75G\)\. \(a v5e on v5e:2x2\); fixes: "
                        r"--config\.param_sharding=fsdp, a smaller per-device batch \(--config\.batch_size\), "
                        r"--config\.model\.dtype=bfloat16", line), line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, line", [
    (["--topology=v5p-64", "--config.batch_size=100"],
     "config error: batch_size: 100 is not divisible by the 32 devices of the mesh"),
    (["--topology=v5p-65"], "error: topology: 'v5p-65' is not a slice this planner knows"),
])
def test_an_indivisible_batch_or_unknown_slice_is_one_line_before_compiling(args, line):
    result = compile_check("--config=configs/diffusion.py:cpu", *args, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(line)
    assert "compiled in" not in result.stdout
