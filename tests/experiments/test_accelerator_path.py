"""The accelerator path without an accelerator: the bf16 SiT-S/2 and SiT-XL/2 train steps and the sampler lower
for CUDA (`jax.export`, nothing compiled or allocated), in both parameter layouts; the S/2 bf16 step and sampler
also run under `jax.jit` here (slow). cuDNN attention needs cuDNN even to lower, so on CPU it is refused in one
line (tests/nn/test_attention.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.experiments import diffusion as diffusion_experiment

LATENTS = (32, 32, 4)


def bf16_config(size: str, **fields):
    config = diffusion_configs.get_config(size.lower().replace("/", ""))
    config.model.dtype, config.batch_size = "bfloat16", 8
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def split_arguments(mlir: str) -> int:
    """How many arguments of the exported `main` are sharded over the `data` axis (Shardy annotations)."""
    signature = mlir.split("func.func public @main")[1].split("{\n")[0]
    return len(re.findall(r'sdy\.sharding<@mesh, \[[^\]]*"data"', signature))


@pytest.mark.parametrize("size, devices, layout", [("XL/2", 1, "replicate"), ("S/2", 8, "fsdp")])
def test_bf16_train_step_lowers_for_cuda(size, devices, layout):
    mesh = parallel.make_mesh(jax.devices()[:devices])
    jitted, state, batch = diffusion_experiment.abstract_train_step(bf16_config(size, param_sharding=layout), mesh,
                                                               LATENTS)
    exported = export.export(jitted, platforms=["cuda"])(state, batch)
    assert exported.platforms == ("cuda",)
    text = exported.mlir_module()
    assert "bf16" in text and "stablehlo.dot_general" in text
    split = split_arguments(text)
    if layout == "fsdp":  # weights, EMA and moments arrive split over the 8 devices (besides the batch)
        assert split > 2 * len(jax.tree.leaves(state.params))
    else:
        assert split == len(jax.tree.leaves(batch))  # only the batch
    params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
    assert abs(params - {"XL/2": 675.1e6, "S/2": 33.0e6}[size]) / params < 0.02  # the published sizes (DiT Table 1)


def test_bf16_sampler_lowers_for_cuda():
    config = bf16_config("XL/2")
    model = diffusion_experiment.build_model(config, LATENTS)
    params = jax.eval_shape(lambda: diffusion_experiment.init_params(model, jax.random.key(0), LATENTS))
    sample = jax.jit(diffusion_experiment.make_sampler(model, config))
    labels = jax.ShapeDtypeStruct((4,), jnp.int32)
    exported = export.export(sample, platforms=["cuda"])(params, labels, jax.eval_shape(lambda: jax.random.key(0)))
    assert exported.out_avals[0].shape == (4, *LATENTS)


@pytest.mark.slow  # compiles the full 12-block S/2 step and sampler on CPU: a few minutes on 2 cores
def test_bf16_s2_step_and_sampler_run_under_jit_on_cpu():
    config = bf16_config("S/2", batch_size=2)
    config.sample.num_steps = 2
    model = diffusion_experiment.build_model(config, LATENTS)
    tx = diffusion_experiment.optimizer(config)
    state = jax.jit(diffusion_experiment.state_initializer(model, tx, LATENTS, *jax.random.split(jax.random.key(0))))()
    step = jax.jit(diffusion_experiment.make_train_step(diffusion_experiment.make_loss(model, config), tx, ema_decay=0.9999))
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(2, *LATENTS)), jnp.float32), "label": jnp.asarray([1, 2])}
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
    images = jax.jit(diffusion_experiment.make_sampler(model, config))(state.ema_params, jnp.asarray([1, 2]),
                                                                  jax.random.key(1))
    assert images.shape == (2, *LATENTS) and np.all(np.isfinite(images))
