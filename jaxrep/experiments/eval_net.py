"""Train the in-repo evaluation network (the CPU stand-in for Inception in FD and precision/recall):

  python -m train.eval_net --config=configs/eval_net.py:shapes32 --workdir=workdirs/eval_net_shapes32

An `EvalNet` (small pre-activation ResNet, `jaxrep.nn.eval_net`) learns to classify every ground-truth factor of
the procedural data (shape, colour, scale, position for the coloured shapes): one cross-entropy per factor,
averaged. Why all factors and not only the class label: FD in its features must notice a wrong colour or a
misplaced object as well as a wrong shape. It takes a few minutes on 2 CPU cores (Fashion-MNIST: 3.6 min); the EMA
weights and the architecture are saved with orbax (`jaxrep.weights.features.save_eval_net`), only at the end, so an
interrupted run leaves nothing behind. `train.evaluate` runs this automatically as a prerequisite stage when the
checkpoint it needs is missing. The held-out factor accuracy is printed and stored with the weights.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from configs import eval_net as eval_net_configs
from jaxrep import files
from jaxrep.experiments.factor_training import build_source, describe_holdout_accuracy, fit_on_factors, stopped_early
from jaxrep.nn.eval_net import EvalNet
from jaxrep.supervised import factor_classification_loss
from jaxrep.training import NonFiniteLossError, make_optimizer
from jaxrep.weights.features import save_eval_net

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (NonFiniteLossError,)


def make_factor_loss(model: EvalNet):
    """loss_fn(params, batch, keys, step) for `make_train_step`; batch = {"image": (B, H, W, C) in [-1, 1],
    "factors": (B, F) int32}. Loss: `jaxrep.supervised.factor_classification_loss`, the mean over factors of the
    batch-mean cross-entropy."""

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        del keys, step
        logits, _ = model.apply({"params": params}, batch["image"])
        loss, accuracies = factor_classification_loss(logits, batch["factors"])
        metrics = {f"accuracy_{index}": accuracy for index, accuracy in enumerate(accuracies)}
        return loss, dict(metrics, factor_accuracy=jnp.mean(accuracies))

    return loss_fn


def train_eval_net(config, workdir: str, *, show_progress: bool = True) -> tuple[EvalNet, Any] | None:
    """Trains the eval net, writes its checkpoint (and metrics.jsonl, config.json) to `workdir`; returns
    (model, EMA params), or None when a SIGTERM stopped the training (nothing is saved)."""
    eval_net_configs.validate(config)
    source = build_source(config.data_source, config.data_path)
    model = EvalNet(factor_sizes=tuple(source.factor_sizes), widths=tuple(config.model.widths),
                    feature_dim=config.model.feature_dim)
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                        weight_decay=config.optim.weight_decay, grad_clip=config.optim.grad_clip)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    params = model.init(init_key, jnp.zeros((1, *source.image_shape)))["params"]
    fit = fit_on_factors(make_factor_loss(model), params, tx, train_key, config, source, workdir,
                         description=f"eval net ({config.data_source})", show_progress=show_progress)
    if stopped_early(fit, "evaluation network"):
        return None
    info = {"objective": "classification of every ground-truth factor", "factor_names": list(source.factor_names),
            "steps": int(config.total_steps), "seed": int(config.seed), "train_seconds": round(fit.seconds, 1),
            **fit.holdout_metrics}
    save_eval_net(workdir, model, fit.ema_params, image_shape=source.image_shape, data_source=config.data_source,
                  info=info)
    accuracies = [fit.holdout_metrics[f"holdout_accuracy_{index}"] for index in range(len(source.factor_names))]
    print(f"eval net: {config.total_steps} steps in {fit.seconds:.0f} s; "
          f"{describe_holdout_accuracy(source, accuracies, fit.holdout_count)}; saved to {files.path(workdir)}",
          flush=True)
    return model, fit.ema_params
