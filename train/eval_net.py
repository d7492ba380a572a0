"""Train the in-repo evaluation network (the CPU stand-in for Inception in FD and precision/recall):

  python -m train.eval_net --config=configs/eval_net.py:shapes32 --workdir=workdirs/eval_net_shapes32

An `EvalNet` (small pre-activation ResNet, `jaxrep.nn.eval_net`) learns to classify every ground-truth factor of
the procedural data (shape, colour, scale, position for the coloured shapes): one cross-entropy per factor,
averaged. Why all factors and not only the class label: FD in its features must notice a wrong colour or a
misplaced object as well as a wrong shape. It takes about a minute on 2 CPU cores; the EMA weights and the
architecture are saved with orbax (`jaxrep.metrics.features.save_eval_net`), only at the end, so an interrupted
run leaves nothing behind. `train.evaluate` runs this automatically when the checkpoint it needs is missing. The
held-out factor accuracy is printed and stored with the weights.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import eval_net as eval_net_configs
from jaxrep.config_checks import ConfigError
from jaxrep.data import ColoredShapes, DSprites, make_dataset, make_iterator
from jaxrep.logging import MetricLogger, progress_bar, save_config
from jaxrep.metrics.features import save_eval_net
from jaxrep.nn.eval_net import EvalNet
from jaxrep.training import create_train_state, make_optimizer, make_train_step


def build_source(name: str):
    return ColoredShapes() if name == "shapes32" else DSprites()


def make_factor_loss(model: EvalNet):
    """loss_fn(params, batch, keys, step) for `make_train_step`; batch = {"image": (B, H, W, C) in [-1, 1],
    "factors": (B, F) int32}. Loss: mean over factors of the batch-mean cross-entropy."""

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        del keys, step
        logits, _ = model.apply({"params": params}, batch["image"])
        losses, accuracies = [], []
        for index, factor_logits in enumerate(logits):
            labels = batch["factors"][:, index]
            losses.append(optax.softmax_cross_entropy_with_integer_labels(factor_logits, labels).mean())
            accuracies.append(jnp.mean(jnp.argmax(factor_logits, -1) == labels))
        metrics = {f"accuracy_{index}": accuracy for index, accuracy in enumerate(accuracies)}
        return jnp.mean(jnp.stack(losses)), dict(metrics, factor_accuracy=jnp.mean(jnp.stack(accuracies)))

    return loss_fn


def train_eval_net(config, workdir: str, *, show_progress: bool = True) -> tuple[EvalNet, Any]:
    """Trains the eval net, writes its checkpoint (and metrics.jsonl, config.json) to `workdir`; returns
    (model, EMA params)."""
    eval_net_configs.validate(config)
    source = build_source(config.data_source)
    shuffled = grain.MapDataset.source(source).shuffle(seed=config.seed)
    holdout_count = max(1, int(round(config.holdout_fraction * len(source))))
    train_source = shuffled[holdout_count:]

    model = EvalNet(factor_sizes=tuple(source.factor_sizes), widths=tuple(config.model.widths),
                    feature_dim=config.model.feature_dim)
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                        weight_decay=config.optim.weight_decay, grad_clip=config.optim.grad_clip)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    params = model.init(init_key, jnp.zeros((1, *source.image_shape)))["params"]
    state = create_train_state(params, tx, jax.random.key_data(train_key))
    loss_fn = make_factor_loss(model)
    step_fn = jax.jit(make_train_step(loss_fn, tx, ema_decay=config.ema_decay), donate_argnums=0)

    dataset = make_dataset(train_source, global_batch_size=config.batch_size, seed=config.seed,
                           process_index=0, process_count=1, keys=("image", "factors"))
    iterator = make_iterator(dataset)
    save_config(workdir, config)
    logger = MetricLogger(workdir, tensorboard=False)
    bar = progress_bar(config.total_steps, desc=f"eval net ({config.data_source})")
    bar.disable = bar.disable or not show_progress
    start = time.perf_counter()
    try:
        for step in range(1, config.total_steps + 1):
            state, metrics = step_fn(state, next(iterator))
            bar.update(1)
            if step % config.log_every == 0 or step == config.total_steps:
                scalars = logger.log(step, jax.device_get(metrics))
                if scalars["finite"] != 1.0:
                    raise FloatingPointError(f"eval-net training: non-finite loss at step {step}")
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", acc=f"{scalars['factor_accuracy']:.2f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    holdout = [shuffled[index] for index in range(holdout_count)]
    holdout_batch = {"image": np.stack([e["image"] for e in holdout]),
                     "factors": np.stack([e["factors"] for e in holdout])}
    _, holdout_metrics = jax.jit(loss_fn)(state.ema_params, holdout_batch, None, state.step)
    holdout_metrics = {f"holdout_{k}": float(v) for k, v in jax.device_get(holdout_metrics).items()}
    logger.log(config.total_steps, holdout_metrics)
    logger.close()
    params = jax.device_get(state.ema_params)
    info = {"objective": "classification of every ground-truth factor", "factor_names": list(source.factor_names),
            "steps": int(config.total_steps), "seed": int(config.seed), "train_seconds": round(seconds, 1),
            **holdout_metrics}
    save_eval_net(workdir, model, params, image_shape=source.image_shape, data_source=config.data_source, info=info)
    per_factor = ", ".join(f"{name} {holdout_metrics[f'holdout_accuracy_{index}']:.3f}"
                           for index, name in enumerate(source.factor_names))
    print(f"eval net: {config.total_steps} steps in {seconds:.0f} s; held-out accuracy {per_factor}; "
          f"saved to {os.path.abspath(workdir)}", flush=True)
    return model, params


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        train_eval_net(flags.FLAGS.config, flags.FLAGS.workdir)
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    # Defined here, not at import: train.evaluate imports this module and defines its own --config.
    config_flags.DEFINE_config_file("config", "configs/eval_net.py:shapes32", "Config file and preset.")
    flags.DEFINE_string("workdir", "workdirs/eval_net_shapes32", "Directory of the eval-net checkpoint.")
    app.run(main)
