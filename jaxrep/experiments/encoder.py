"""Train the in-repo alignment target encoder (no pretrained weights can be downloaded on CPU-only setups):

  python -m train.encoder --config=configs/encoder.py:shapes32 --workdir=workdirs/encoder_shapes32

A small DINOv2-architecture ViT (`jaxrep.nn.vit.ViT`) is trained on the procedural dataset in about
2-3 minutes on 2 CPU cores and saved with orbax (`jaxrep.weights.encoder.save_encoder`: EMA weights plus the
architecture). The alignment configs point `align.encoder.path` at the work directory; `train.diffusion`
runs this first, as a stage of its own with a progress bar, when that checkpoint does not exist yet. The checkpoint is
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

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import encoder as encoder_configs
from jaxrep import files
from jaxrep.align.encoder import FrozenEncoder, to_unit_rgb
from jaxrep.align.targets import preprocess_images
from jaxrep.chunked import map_in_chunks
from jaxrep.data import FashionMNIST
from jaxrep.data.fashion_mnist import DEBIAN_DIR as FASHION_MNIST_DIR
from jaxrep.experiments.factor_training import build_source, describe_holdout_accuracy, fit_on_factors, stopped_early
from jaxrep.metrics.probe import linear_probe_accuracy
from jaxrep.nn.vit import ViT
from jaxrep.supervised import coverage_loss, factor_classification_loss
from jaxrep.training import NonFiniteLossError, make_optimizer
from jaxrep.weights.encoder import save_encoder

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (NonFiniteLossError,)

class TokenHeads(nn.Module):
    """Per-token linear heads: logits for each factor (B, N, K_f) and a coverage logit (B, N)."""

    factor_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        logits = [nn.Dense(size, name=f"factor_{index}")(tokens) for index, size in enumerate(self.factor_sizes)]
        return logits, nn.Dense(1, name="coverage")(tokens)[..., 0]


def make_pretraining_loss(vit: ViT, heads: TokenHeads, *, image_size: int, coverage_weight: float):
    """loss_fn(params, batch, keys, step) for `make_train_step`; params = {"vit", "heads"},
    batch = {"image": (B, H, W, C) in [-1, 1], "factors": (B, F) int32}. The loss terms are `jaxrep.supervised`'s:
    L = L_factor (per token) + coverage_weight * L_coverage."""

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        del keys, step
        pixels = preprocess_images(to_unit_rgb(batch["image"]), image_size=image_size)
        tokens = vit.apply({"params": params["vit"]}, pixels).astype(jnp.float32)  # heads and losses in f32
        logits, coverage_logit = heads.apply({"params": params["heads"]}, tokens)
        factor_loss, accuracies = factor_classification_loss(logits, batch["factors"])
        coverage = coverage_loss(coverage_logit, batch["image"])
        loss = factor_loss + coverage_weight * coverage
        return loss, {"factor_loss": factor_loss, "coverage_loss": coverage, "factor_accuracy": jnp.mean(accuracies)}

    return loss_fn


def mean_tokens(vit: ViT, params: Any, images: np.ndarray, *, image_size: int, chunk: int = 500) -> np.ndarray:
    """(N, D) mean patch token of the encoder for images (N, H, W, C) in [-1, 1], in fixed-size jitted chunks."""
    forward = jax.jit(lambda block: jnp.mean(vit.apply({"params": params}, preprocess_images(
        to_unit_rgb(block), image_size=image_size)).astype(jnp.float32), axis=1))
    return map_in_chunks(forward, images, chunk)


def fashion_mnist_probe(vit: ViT, params: Any, config, train_images: int = 10_000) -> float:
    """Linear-probe accuracy (`jaxrep.metrics.linear_probe_accuracy`) of the mean token on Fashion-MNIST's test
    split, the probe fitted on the first `train_images` training images."""
    directory = config.data_path or FASHION_MNIST_DIR
    test_split = FashionMNIST(directory, "test")
    train, test = FashionMNIST(directory, "train").first(train_images), test_split.first(len(test_split))
    features = [mean_tokens(vit, params, images, image_size=config.image_size) for images, _ in (train, test)]
    return linear_probe_accuracy(features[0], train[1], features[1], test[1])


def train_encoder(config, workdir: str, *, show_progress: bool = True) -> FrozenEncoder | None:
    """Trains the encoder, writes its checkpoint (and metrics.jsonl, config.json) to `workdir`, returns it (None
    when a SIGTERM stopped the training: nothing is saved)."""
    encoder_configs.validate(config)
    source = build_source(config.data_source, config.data_path)
    vit = ViT(width=config.model.width, depth=config.model.depth, num_heads=config.model.num_heads,
              patch_size=config.model.patch_size, mlp_ratio=config.model.mlp_ratio,
              pos_embed_grid=config.image_size // config.model.patch_size, dtype=jnp.dtype(config.model.dtype))
    heads = TokenHeads(tuple(source.factor_sizes))
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                        weight_decay=config.optim.weight_decay, grad_clip=config.optim.grad_clip)
    init_key, heads_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
    pixels = jnp.zeros((1, config.image_size, config.image_size, 3))
    tokens = jnp.zeros((1, (config.image_size // config.model.patch_size) ** 2, config.model.width))
    params = {"vit": vit.init(init_key, pixels)["params"], "heads": heads.init(heads_key, tokens)["params"]}
    loss_fn = make_pretraining_loss(vit, heads, image_size=config.image_size,
                                    coverage_weight=config.coverage_weight)
    fit = fit_on_factors(loss_fn, params, tx, train_key, config, source, workdir,
                         description=f"encoder ({config.data_source})", show_progress=show_progress)
    if stopped_early(fit, "encoder"):
        return None
    info = {"objective": "per-token factor classification + patch coverage (ground-truth factors)",
            "data_source": config.data_source, "steps": int(config.total_steps), "seed": int(config.seed),
            "train_seconds": round(fit.seconds, 1), **fit.holdout_metrics}
    if config.data_source == "fashion_mnist":
        info["linear_probe_accuracy"] = fashion_mnist_probe(vit, fit.ema_params["vit"], config)
        print(f"encoder: linear-probe accuracy {info['linear_probe_accuracy']:.4f} on the 10,000 test images",
              flush=True)
    save_encoder(workdir, vit, fit.ema_params["vit"], image_size=config.image_size, info=info)
    accuracy = describe_holdout_accuracy(source, [fit.holdout_metrics["holdout_factor_accuracy"]], fit.holdout_count,
                                         kind="per-token ")
    print(f"encoder: {config.total_steps} steps in {fit.seconds:.0f} s; {accuracy}; saved to "
          f"{files.path(workdir)}", flush=True)
    return FrozenEncoder(vit, fit.ema_params["vit"], config.image_size, {"info": info})
