"""Train the in-repo alignment target encoder (no pretrained weights can be downloaded on CPU-only setups):

  python -m train.encoder --config=configs/encoder.py:shapes32 --workdir=workdirs/encoder_shapes32

A small DINOv2-architecture ViT (`jaxrep.nn.vit.ViT`) is trained on the procedural dataset in about
2-3 minutes on 2 CPU cores and saved with orbax (`jaxrep.align.encoder.save_encoder`: EMA weights plus the
architecture). The alignment configs point `align.encoder.path` at the work directory; `train.diffusion`
runs this automatically, with a progress bar, when that checkpoint does not exist yet. The checkpoint is
written only at the end, so an interrupted run leaves nothing behind and is simply run again.

Objective: supervised on the ground-truth factors, not self-supervised. Why:
- a few hundred CPU steps are far too few for DINO/iBOT-style self-distillation or MAE to produce semantic
  tokens (those need long schedules, large batches and tuned augmentations); factor supervision converges in
  that budget and reliably;
- REPA's premise is a *strong* encoder whose patch tokens carry semantics and spatial layout; the factors
  (shape, colour, scale, position) are exactly the semantics of this data, so the supervised encoder is the
  closest in-budget stand-in for DINOv2. Caveat for reading the study: it knows factors (colour, scale,
  position) that the diffusion model's label (the shape) does not give, i.e. privileged information, much
  as DINOv2's web-scale pre-training is outside information for an ImageNet diffusion model.
Per image, every post-LN patch token predicts every factor with one linear head per factor (cross-entropy
averaged over tokens), so each token carries the object's semantics as DINOv2 patch tokens do; and each
token predicts the fraction of its own patch covered by the object (sigmoid cross-entropy), which keeps
the tokens spatially structured (foreground differs from background), the property iREPA finds to
predict alignment gains. The heads are discarded; the report states the factor accuracy on held-out images.

Inputs go through the alignment target pipeline's preprocessing ([-1, 1] -> [0, 1] RGB, ImageNet mean/std,
bicubic resize to `image_size`), so at alignment time the encoder sees what it saw in training.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import encoder as encoder_configs
from jaxrep.align.encoder import FrozenEncoder, save_encoder, to_unit_rgb
from jaxrep.align.targets import preprocess_images
from jaxrep.config_checks import ConfigError
from jaxrep.data import ColoredShapes, DSprites, make_dataset, make_iterator
from jaxrep.logging import MetricLogger, progress_bar, save_config
from jaxrep.nn.vit import ViT
from jaxrep.training import create_train_state, make_optimizer, make_train_step

# Pixels brighter than this (in [0, 1], max over channels) count as the object; the background is black.
FOREGROUND_THRESHOLD = 0.05


class TokenHeads(nn.Module):
    """Per-token linear heads: logits for each factor (B, N, K_f) and a coverage logit (B, N)."""

    factor_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        logits = [nn.Dense(size, name=f"factor_{index}")(tokens) for index, size in enumerate(self.factor_sizes)]
        return logits, nn.Dense(1, name="coverage")(tokens)[..., 0]


def patch_coverage(images: jax.Array, grid: int) -> jax.Array:
    """Fraction of each of the grid x grid patches covered by the object.

    images: (B, H, W, C) in [-1, 1]; returns (B, grid^2), patches row-major like the ViT tokens.
    """
    foreground = (jnp.max((images + 1.0) * 0.5, axis=-1) > FOREGROUND_THRESHOLD).astype(jnp.float32)
    batch, height, width = foreground.shape
    cells = foreground.reshape(batch, grid, height // grid, grid, width // grid)
    return cells.mean(axis=(2, 4)).reshape(batch, grid * grid)


def make_pretraining_loss(vit: ViT, heads: TokenHeads, *, image_size: int, coverage_weight: float):
    """loss_fn(params, batch, keys, step) for `make_train_step`; params = {"vit", "heads"},
    batch = {"image": (B, H, W, C) in [-1, 1], "factors": (B, F) int32}."""
    grid = image_size // vit.patch_size

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        del keys, step
        pixels = preprocess_images(to_unit_rgb(batch["image"]), image_size=image_size)
        tokens = vit.apply({"params": params["vit"]}, pixels)
        logits, coverage_logit = heads.apply({"params": params["heads"]}, tokens)
        factor_losses, accuracies = [], []
        for index, factor_logits in enumerate(logits):
            labels = jnp.broadcast_to(batch["factors"][:, index, None], factor_logits.shape[:2])
            factor_losses.append(optax.softmax_cross_entropy_with_integer_labels(factor_logits, labels).mean())
            accuracies.append(jnp.mean(jnp.argmax(factor_logits.mean(axis=1), -1) == batch["factors"][:, index]))
        factor_loss = jnp.mean(jnp.stack(factor_losses))
        coverage_loss = optax.sigmoid_binary_cross_entropy(coverage_logit, patch_coverage(batch["image"], grid)).mean()
        loss = factor_loss + coverage_weight * coverage_loss
        return loss, {"factor_loss": factor_loss, "coverage_loss": coverage_loss,
                      "factor_accuracy": jnp.mean(jnp.stack(accuracies))}

    return loss_fn


class _Subset:
    """A random-access view of `source` at `indices`."""

    def __init__(self, source, indices: np.ndarray):
        self._source, self._indices = source, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> dict:
        return self._source[int(self._indices[int(index)])]


def build_source(name: str):
    return ColoredShapes() if name == "shapes32" else DSprites()


def train_encoder(config, workdir: str, *, show_progress: bool = True) -> FrozenEncoder:
    """Trains the encoder, writes its checkpoint (and metrics.jsonl, config.json) to `workdir`, returns it."""
    encoder_configs.validate(config)
    source = build_source(config.data_source)
    order = np.random.default_rng(config.seed).permutation(len(source))
    holdout_count = max(1, int(round(config.holdout_fraction * len(source))))
    train_source, holdout_indices = _Subset(source, order[holdout_count:]), order[:holdout_count]

    vit = ViT(width=config.model.width, depth=config.model.depth, num_heads=config.model.num_heads,
              patch_size=config.model.patch_size, mlp_ratio=config.model.mlp_ratio,
              pos_embed_grid=config.image_size // config.model.patch_size)
    heads = TokenHeads(tuple(source.factor_sizes))
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                        weight_decay=config.optim.weight_decay, grad_clip=config.optim.grad_clip)
    init_key, heads_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    pixels = jnp.zeros((1, config.image_size, config.image_size, 3))
    vit_params = vit.init(init_key, pixels)["params"]
    tokens = jnp.zeros((1, (config.image_size // config.model.patch_size) ** 2, config.model.width))
    params = {"vit": vit_params, "heads": heads.init(heads_key, tokens)["params"]}
    state = create_train_state(params, tx, jax.random.key_data(train_key))
    loss_fn = make_pretraining_loss(vit, heads, image_size=config.image_size,
                                    coverage_weight=config.coverage_weight)
    step_fn = jax.jit(make_train_step(loss_fn, tx, ema_decay=config.ema_decay), donate_argnums=0)

    dataset = make_dataset(train_source, global_batch_size=config.batch_size, seed=config.seed,
                           process_index=0, process_count=1, keys=("image", "factors"))
    iterator = make_iterator(dataset)
    save_config(workdir, config)
    logger = MetricLogger(workdir, tensorboard=False)
    bar = progress_bar(config.total_steps, desc=f"encoder ({config.data_source})")
    bar.disable = bar.disable or not show_progress
    start = time.perf_counter()
    try:
        for step in range(1, config.total_steps + 1):
            state, metrics = step_fn(state, next(iterator))
            bar.update(1)
            if step % config.log_every == 0 or step == config.total_steps:
                scalars = logger.log(step, jax.device_get(metrics))
                if scalars["finite"] != 1.0:
                    raise FloatingPointError(f"encoder training: non-finite loss at step {step}")
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", acc=f"{scalars['factor_accuracy']:.2f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    holdout = [source[int(index)] for index in holdout_indices]
    holdout_batch = {"image": np.stack([e["image"] for e in holdout]),
                     "factors": np.stack([e["factors"] for e in holdout])}
    _, holdout_metrics = jax.jit(loss_fn)(state.ema_params, holdout_batch, None, state.step)
    holdout_metrics = {f"holdout_{k}": float(v) for k, v in jax.device_get(holdout_metrics).items()}
    logger.log(config.total_steps, holdout_metrics)
    logger.close()
    info = {"objective": "per-token factor classification + patch coverage (ground-truth factors)",
            "data_source": config.data_source, "steps": int(config.total_steps), "seed": int(config.seed),
            "train_seconds": round(seconds, 1), **holdout_metrics}
    vit_params = jax.device_get(state.ema_params["vit"])
    save_encoder(workdir, vit, vit_params, image_size=config.image_size, info=info)
    print(f"encoder: {config.total_steps} steps in {seconds:.0f} s; held-out factor accuracy "
          f"{holdout_metrics['holdout_factor_accuracy']:.3f}; saved to {os.path.abspath(workdir)}", flush=True)
    return FrozenEncoder(vit, vit_params, config.image_size, {"info": info})


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        train_encoder(flags.FLAGS.config, flags.FLAGS.workdir)
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    # Defined here, not at import: train.diffusion imports this module and defines its own --config.
    config_flags.DEFINE_config_file("config", "configs/encoder.py:shapes32", "Config file and preset.")
    flags.DEFINE_string("workdir", "workdirs/encoder_shapes32", "Directory of the encoder checkpoint.")
    app.run(main)
