"""Train a conv VAE on dSprites, plain or with the potential-flow regulariser (Song et al., ICML 2023):

  python -m train.vae --config=configs/vae.py:plain --workdir=workdirs/vae_plain
  python -m train.vae --config=configs/vae.py:regularized --workdir=workdirs/vae_regularized

`plain` maximises the ELBO on single images. It is the frozen generator that `train.traversal` searches
for traversals in, and the unregularised baseline of the from-scratch setting. `regularized` is the
from-scratch setting: the VAE trains on transformation sequences (x, x_t, x_{t+1}) in which factor k of
dSprites moves one class per step (`jaxrep.data.traversal_sequences`), jointly with K = number of factors
potentials u_k (official `lib/trainer_vae_scratch_dsprites.py`), per example:

    L = ELBO(x) + [BCE(dec(latent2), x_{t+1}) + KL(q(z | x_{t+1}))] + lambda_pde (L_ic + L_pde - L_var)
        + mean (z_{t+1} - z_t + latent1 - latent2)^2 + mean (z_t - latent1)^2

with the flow started at a posterior sample z of x, (latent1, latent2) = (z_{t+1}, z_{t+2}) of the flow under
u_k, and z_t, z_{t+1} posterior samples of x_t, x_{t+1}. The official run uses no classifier here. The two
objectives live in the library: `jaxrep.nn.vae.make_elbo_loss` and `jaxrep.traversal.objective.make_scratch_vae_loss`.

The work directory gets `checkpoints/` (resumed automatically), `metrics.jsonl`, `tensorboard/`,
`config.json`, `reconstructions.png` (top row data, bottom row Bernoulli means) and `final_metrics.json`
with MIG, DCI (gradient-boosted trees) and the importance-weighted NLL in nats; `regularized` adds the VP
score of its potentials and `strips/<step>_<i>.png` (one row per potential, one column per flow step).

The training loop is `jaxrep.run.loop`'s; `train.traversal` shares `load_vae` (a frozen VAE from a work directory),
`encode_means` and `build_grid`, and with it the traversal evaluation of `jaxrep.experiments.traversal_eval`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from configs import vae as vae_configs
from jaxrep import files, parallel
from jaxrep.chunked import map_in_chunks
from jaxrep.config_checks import ConfigError
from jaxrep.data import make_dataset, make_iterator
from jaxrep.data.traversal_sequences import DSpritesGrid, TransformationSequences
from jaxrep.experiments.traversal_eval import generate_images, traversal_latents, traversal_vp, write_strips
from jaxrep.metrics.disentanglement import dci, mig
from jaxrep.nn.vae import ConvVAE, importance_weighted_nll, make_elbo_loss
from jaxrep.run import loop
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import save_image_grid
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.training import NonFiniteLossError, create_train_state, make_optimizer, make_train_step
from jaxrep.traversal import MLPPotentials
from jaxrep.traversal.objective import FlowTerm, make_scratch_vae_loss

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (NonFiniteLossError,)

FINAL_METRICS = "final_metrics.json"
SEQUENCE_KEYS = ("image", "image_t", "image_next", "potential", "time")
# Independent random streams folded out of the root key.
INIT_STREAM, TRAIN_STREAM, EVAL_STREAM = range(3)


def build_vae(config) -> ConvVAE:
    return ConvVAE(latent_dim=config.model.latent_dim, channels=tuple(config.model.channels),
                   hidden_dim=config.model.hidden_dim)


def build_potentials(config) -> MLPPotentials | None:
    if config.method != "regularized":
        return None
    return MLPPotentials(num_potentials=config.regularizer.num_potentials, latent_dim=config.model.latent_dim,
                         width=config.regularizer.width or None)


def flow_term(section) -> FlowTerm:
    """The L_flow settings of a `regularizer` (here) or `traversal` (`train.traversal`) config section."""
    return FlowTerm(num_steps=section.num_steps, weight=section.pde_weight, equation=section.equation,
                    operator=section.operator, num_probes=section.num_probes,
                    variation_weight=section.variation_weight)


def build_grid(config) -> DSpritesGrid:
    return DSpritesGrid(tuple(config.data.factor_starts), config.data.factor_stop, tuple(config.data.factor_strides))


@dataclasses.dataclass
class Experiment(loop.Experiment):
    vae: ConvVAE
    potentials: MLPPotentials | None
    grid: DSpritesGrid
    source: Any  # the training source: the grid (plain) or its transformation sequences (regularized)
    data_keys: tuple[str, ...]
    tx: Any


def _init_state_fn(config, vae: ConvVAE, potentials: MLPPotentials | None, tx) -> Callable[[], Any]:
    root = jax.random.key(config.seed)
    # An rbg key for the conv init: the same distribution, but threefry conv init compiles ~5x slower on CPU.
    vae_key = jax.random.key(config.seed, impl="rbg")
    potentials_key, train_key = jax.random.fold_in(root, INIT_STREAM), jax.random.fold_in(root, TRAIN_STREAM)

    def init_state():
        images = jnp.zeros((1, 64, 64, 1), jnp.float32)
        params = {"vae": vae.init(vae_key, images, jax.random.key(0))["params"]}
        if potentials is not None:
            params["potentials"] = potentials.init(potentials_key)
        return create_train_state(params, tx, jax.random.key_data(train_key))

    return init_state


def _optimizer(config):
    return make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                          grad_clip=config.optim.grad_clip)


def build_experiment(config, devices=None) -> Experiment:
    """Validates the config (before anything compiles) and builds the model, state and step."""
    devices = loop.select_devices(config, devices)
    vae_configs.validate(config, num_devices=len(devices))
    mesh = parallel.make_mesh(devices)
    replicated = parallel.replicated_sharding(mesh)
    vae, potentials, grid = build_vae(config), build_potentials(config), build_grid(config)
    if potentials is None:
        source, data_keys, loss_fn = grid, ("image",), make_elbo_loss(vae)
    else:
        source = TransformationSequences(grid, tuple(config.data.sequence_factors), config.regularizer.num_steps)
        data_keys, loss_fn = SEQUENCE_KEYS, make_scratch_vae_loss(vae, potentials, flow_term(config.regularizer))
    tx = _optimizer(config)
    state = jax.jit(_init_state_fn(config, vae, potentials, tx), out_shardings=replicated)()
    train_step = make_train_step(loss_fn, tx, ema_decay=config.ema_decay)
    jitted = loop.jit_train_step(train_step, state, mesh)
    return Experiment(config=config, mesh=mesh, vae=vae, potentials=potentials, grid=grid, source=source,
                      data_keys=data_keys, state=state, train_step=train_step, jitted_step=jitted, tx=tx)


def load_vae(workdir: str, mesh: jax.sharding.Mesh) -> tuple[ConvVAE, Any, ConfigDict]:
    """The VAE of a `train.vae` work directory: (model, its evaluation (EMA) params replicated on `mesh`,
    the run's config). Raises ConfigError naming `vae.workdir` when there is no finished checkpoint."""
    config_path = files.path(files.join(workdir, "config.json"))
    checkpoints = files.join(workdir, "checkpoints")
    hint = f"train one with `python -m train.vae --config=configs/vae.py:plain --workdir={workdir}`"
    if not config_path.is_file() or not files.path(checkpoints).is_dir():
        raise ConfigError(f"vae.workdir: no VAE run in {workdir!r}; {hint}")
    config = ConfigDict(json.loads(config_path.read_text()))
    checkpointer = Checkpointer(checkpoints, save_every=1)
    try:
        if checkpointer.latest_step() is None:
            raise ConfigError(f"vae.workdir: no checkpoint in {checkpoints!r}; {hint}")
        vae, potentials = build_vae(config), build_potentials(config)
        replicated = parallel.replicated_sharding(mesh)
        shapes = jax.eval_shape(_init_state_fn(config, vae, potentials, _optimizer(config)))
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)
        state, _ = checkpointer.restore(abstract)
    finally:
        checkpointer.close()
    return vae, state.ema_params["vae"], config


def encode_means(vae: ConvVAE, params: Any, images: np.ndarray, chunk: int = 250) -> np.ndarray:
    """Posterior means (N, d) of images (N, 64, 64, 1), jitted in fixed-size chunks."""
    encode = jax.jit(lambda block: vae.apply({"params": params}, block, method="encode")[0])
    return map_in_chunks(encode, images, chunk)


def evaluate(experiment: Experiment, params: Any, workdir: str, step: int) -> dict[str, float]:
    """MIG, DCI, the importance-weighted NLL and (regularized) VP of the trained VAE; writes
    reconstructions.png, the strips and final_metrics.json, and returns the metrics."""
    config, vae, grid = experiment.config, experiment.vae, experiment.grid
    eval_key = jax.random.fold_in(jax.random.key(config.seed), EVAL_STREAM)
    order_key, nll_key, vp_key = jax.random.split(eval_key, 3)
    count = min(config.eval.num_images, len(grid))
    indices = np.asarray(jax.random.permutation(order_key, len(grid)))[:count]
    images = np.stack([grid.image(int(i)) for i in indices])
    factors = np.stack([grid.factors(int(i)) for i in indices])
    codes = encode_means(vae, params["vae"], images)
    scores = dci(codes, factors, num_trees=config.eval.dci_trees, seed=config.seed)
    metrics = {"mig": mig(codes, factors), "dci_disentanglement": scores["disentanglement"],
               "dci_completeness": scores["completeness"], "dci_informativeness": scores["informativeness"],
               "nll": _nll(vae, params["vae"], images[:config.eval.nll_images], nll_key, config.eval.nll_samples)}

    generate = jax.jit(lambda z: vae.apply({"params": params["vae"]}, z, method="generate"))
    shown = images[:8]
    reconstructions = np.asarray(generate(jnp.asarray(codes[:8])))
    save_image_grid(os.path.join(workdir, "reconstructions.png"),
                    np.concatenate([(shown + 1.0) / 2.0, reconstructions]), ncols=len(shown), value_range=(0.0, 1.0))
    if experiment.potentials is not None:
        # Traversals start at posterior means of data images (where the flow was trained).
        z0 = jnp.asarray(codes[np.asarray(jax.random.permutation(vp_key, count))[:config.eval.vp_pairs]])
        latents = traversal_latents(experiment.potentials, params["potentials"], z0, config.regularizer.num_steps,
                                    config.eval.step_size)
        strips = generate_images(generate, latents)
        write_strips(workdir, step, strips, config.eval.num_strips)
        metrics["vp"] = traversal_vp(strips, config.seed)
    metrics = {name: float(value) for name, value in metrics.items()}
    files.write_bytes(files.join(workdir, FINAL_METRICS), json.dumps({"step": step, **metrics}, indent=2).encode())
    return metrics


def _nll(vae: ConvVAE, params: Any, images: np.ndarray, key: jax.Array, num_samples: int, chunk: int = 64) -> float:
    """Mean importance-weighted -log p(x) in nats over `images`."""

    @jax.jit
    def nll(block, block_key):
        mean, log_var = vae.apply({"params": params}, block, method="encode")
        decode = lambda z: vae.apply({"params": params}, z, method="decode")
        return importance_weighted_nll(decode, block, mean, log_var, block_key, num_samples=num_samples)

    values = [np.asarray(nll(jnp.asarray(images[i:i + chunk]), jax.random.fold_in(key, i)))
              for i in range(0, len(images), chunk)]
    return float(np.mean(np.concatenate(values)))


@locks_workdir
def train_and_evaluate(config, workdir: str, devices=None):
    """Trains (resuming from the latest checkpoint in `workdir`) and evaluates; returns the final state.

    A preempted run (SIGTERM) saves and returns before evaluating.
    """
    experiment = build_experiment(config, devices)
    mesh = experiment.mesh
    checkpointer, state, extra = loop.resume(config, workdir, experiment.state)
    dataset = make_dataset(experiment.source, global_batch_size=config.batch_size,
                           root_key=jax.random.key(config.seed), keys=experiment.data_keys)
    iterator = make_iterator(dataset, extra.get("data"))
    next_batch = lambda step: parallel.global_batch(next(iterator), mesh)
    evaluation = loop.final_evaluation(lambda params, step: evaluate(experiment, params, workdir, step))
    return loop.fit_in_workdir(config, workdir, state, experiment.jitted_step, next_batch, checkpointer=checkpointer,
                               data_state=iterator.get_state, hooks=(evaluation,), desc=f"vae {config.method}").state
