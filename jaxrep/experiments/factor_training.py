"""Training of the in-repo networks on the datasets' ground-truth factors (procedural data; Fashion-MNIST's class)
(`train.encoder`, the alignment target encoder; `train.eval_net`, the evaluation network), through
`jaxrep.run.loop`.

`fit_on_factors` holds out a fixed random share of the images, trains with the generic pure step
(`jaxrep.training.make_train_step`, EMA weights kept), logs to `metrics.jsonl`, and reports the loss's metrics
of the EMA weights on the held-out images. Nothing is checkpointed here: the callers save the finished weights
once, so an interrupted run leaves nothing behind and is simply rerun.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import jax
import numpy as np
import optax

from jaxrep.data import ColoredShapes, DSprites, FashionMNIST, make_dataset, make_iterator, shuffle_seed
from jaxrep.data.fashion_mnist import DEBIAN_DIR as FASHION_MNIST_DIR
from jaxrep.run import loop
from jaxrep.training import LossFn, create_train_state, make_train_step


def build_source(name: str, path: str = ""):
    """The dataset `name` with factors: 'shapes32', 'dsprites' (procedural) or 'fashion_mnist' (its train split,
    the class as the one factor; `path`: the IDX folder, empty for Debian's)."""
    if name == "fashion_mnist":
        return FashionMNIST(path or FASHION_MNIST_DIR)
    return ColoredShapes() if name == "shapes32" else DSprites()


@dataclasses.dataclass
class FitResult:
    ema_params: Any  # on the host
    holdout_metrics: dict[str, float]  # the loss's metrics on the held-out images, names prefixed "holdout_"
    seconds: float  # wall-clock of the training loop (compile included)
    holdout_count: int  # images held out of training
    preempted: bool  # a SIGTERM stopped the loop: the weights are unfinished and must not be saved


def describe_holdout_accuracy(source, accuracies: list[float], count: int, *, kind: str = "") -> str:
    """The held-out accuracies (one per factor, or one mean over the factors) in the dataset's words:
    Fashion-MNIST's one factor is its class. `kind` qualifies the accuracy (e.g. "per-token ")."""
    if tuple(source.factor_names) == ("class",):
        return f"{kind}class accuracy {accuracies[0]:.3f} on {count} held-out training images"
    if len(accuracies) == 1:
        return (f"{kind}factor accuracy {accuracies[0]:.3f} (mean over {', '.join(source.factor_names)}) on "
                f"{count} held-out images")
    per_factor = ", ".join(f"{name} {value:.3f}" for name, value in zip(source.factor_names, accuracies))
    return f"{kind}factor accuracy on {count} held-out images: {per_factor}"


def fit_on_factors(loss_fn: LossFn, params: Any, tx: optax.GradientTransformation, train_key: jax.Array, config,
                   source, workdir: str, *, description: str, show_progress: bool = True) -> FitResult:
    """Trains `params` on `source` minus a held-out share; returns the EMA weights and held-out metrics.

    Args:
      loss_fn: loss_fn(params, batch, keys, step) -> (loss, metrics with "factor_accuracy"), batch =
        {"image": (B, H, W, C) in [-1, 1], "factors": (B, F) int32}.
      config: uses seed, holdout_fraction, batch_size, total_steps, ema_decay, log_every (configs/encoder.py,
        configs/eval_net.py); it is also written to `workdir/config.json`.
      train_key: root key of the train state (per-step keys derive from it).
      description: the progress bar's label.
    """
    root_key = jax.random.key(config.seed)
    shuffled = grain.MapDataset.source(source).shuffle(seed=shuffle_seed(root_key))
    holdout_count = max(1, int(round(config.holdout_fraction * len(source))))
    holdout = [shuffled[index] for index in range(holdout_count)]
    holdout_batch = {key: np.stack([example[key] for example in holdout]) for key in ("image", "factors")}

    state = create_train_state(params, tx, jax.random.key_data(train_key))
    step_fn = jax.jit(make_train_step(loss_fn, tx, ema_decay=config.ema_decay), donate_argnums=0)
    dataset = make_dataset(shuffled[holdout_count:], global_batch_size=config.batch_size, root_key=root_key,
                           process_index=0, process_count=1, keys=("image", "factors"))
    iterator = make_iterator(dataset)

    def holdout_evaluation(state, step):
        _, metrics = jax.jit(loss_fn)(state.ema_params, holdout_batch, None, state.step)
        return {f"holdout_{name}": float(value) for name, value in jax.device_get(metrics).items()}

    result = loop.fit_in_workdir(config, workdir, state, step_fn, lambda step: next(iterator), checkpointer=None,
                                 tensorboard=False, hooks=(loop.Hook(holdout_evaluation),), desc=description,
                                 show_progress=show_progress)
    return FitResult(jax.device_get(result.state.ema_params), result.metrics, result.seconds, holdout_count,
                     result.preempted)


def stopped_early(fit: FitResult, what: str) -> bool:
    """Whether a SIGTERM stopped the fit; says so (nothing is saved: these networks are saved once, at the end)."""
    if fit.preempted:
        print(f"SIGTERM: the {what}'s training stopped; nothing saved (rerun the same command to train it)",
              flush=True)
    return fit.preempted
