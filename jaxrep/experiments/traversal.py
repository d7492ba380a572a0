"""Discover latent traversals of a frozen VAE (Song et al., ICML 2023, the pretrained-VAE setting):

  python -m train.traversal --config=configs/traversal.py:potential --workdir=workdirs/traversal_potential
  python -m train.traversal --config=configs/traversal.py:linear --workdir=workdirs/traversal_linear

The generator G is the decoder's Bernoulli mean of a `train.vae` run (`vae.workdir`; trained there first
with `vae.config`, the plain VAE preset, if the directory holds no run), frozen: its parameters are closed
over, never in the train state. The family (`traversal.family`) is K potential MLPs
u_k (`jaxrep.traversal.MLPPotentials`) or the linear-direction baseline (`LinearDirections`), trained
with the same pair classifier in the same step. Per example (official `lib/trainer_vae.py`):

    z0 ~ N(0, I) (official) or a posterior mean of a data image, k ~ U{0..K-1}, t* ~ U{0..T-2}
    (latent1, latent2) = (z_{t*+1}, z_{t*+2}) of the rollout z_{i+1} = z_i + grad u_k(z_i, i)
    with probability 1/2 the pair is mirrored through z0: (2 z0 - latent2, 2 z0 - latent1)
    L = lambda_cls CE(classifier(G(first), G(second)), k) + lambda_pde (L_ic + L_pde - L_var)

The linear family trains on the classifier term alone (its PDE terms are identically zero or cannot
hold, see `jaxrep/traversal/linear.py`). The objective is `jaxrep.traversal.objective.make_traversal_loss`.
Deviation: k, t*, the reflection and the logit noise are drawn
per example from the step's per-example keys, where the official trainer draws one k and t* per batch;
the expected loss is the same, and the step stays independent of how the batch is sharded.

The work directory gets `checkpoints/` (resumed automatically), `metrics.jsonl`, `tensorboard/`,
`config.json`, `strips/<step>_<i>.png` (decoded traversals, one row per potential, one column per step)
and `final_metrics.json` with the VP score and the mean latent and image change of a full traversal.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs import traversal as traversal_configs
from jaxrep import files, parallel
from jaxrep.config_checks import require
from jaxrep.experiments import vae as vae_experiment
from jaxrep.experiments.prerequisites import Prerequisite
from jaxrep.experiments.traversal_eval import generate_images, traversal_latents, traversal_vp, write_strips
from jaxrep.experiments.vae import FINAL_METRICS, build_grid, encode_means, flow_term, load_vae
from jaxrep.nn.vae import ConvVAE
from jaxrep.run import loop
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.training import NonFiniteLossError, create_train_state, make_optimizer, make_train_step
from jaxrep.traversal import LinearDirections, MLPPotentials, PairClassifier
from jaxrep.traversal.objective import make_traversal_loss

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (NonFiniteLossError,)

# Independent random streams folded out of the root key.
INIT_STREAM, TRAIN_STREAM, LATENT_STREAM, EVAL_STREAM, START_STREAM = range(5)


def build_family(config, latent_dim: int) -> MLPPotentials | LinearDirections:
    traversal = config.traversal
    if traversal.family == "linear":
        return LinearDirections(num_potentials=traversal.num_potentials, latent_dim=latent_dim)
    return MLPPotentials(num_potentials=traversal.num_potentials, latent_dim=latent_dim,
                         width=traversal.width or None)


def build_classifier(config) -> PairClassifier:
    return PairClassifier(num_classes=config.traversal.num_potentials, features=tuple(config.classifier.features),
                          hidden=config.classifier.hidden, stochastic_logits=config.classifier.stochastic_logits)


@dataclasses.dataclass
class Experiment(loop.Experiment):
    vae: ConvVAE
    vae_params: Any  # frozen, replicated
    generate: Callable  # G(z): (B, d) -> (B, 64, 64, 1) in [0, 1]
    family: MLPPotentials | LinearDirections
    classifier: PairClassifier
    sample_starts: Callable  # sample_starts(key, n) -> (n, d) starting latents (traversal.start)
    latent_batch: Callable  # jitted latent_batch(step) -> {"z": (B, d)} batch-sharded starting latents


def prerequisites(config, workdir: str) -> list[Prerequisite]:
    """The runs a traversal needs made first (`jaxrep.experiments.prerequisites`): its frozen generator, a plain VAE
    trained in `vae.workdir` with `vae.config` when that holds no run and `vae.train_if_missing`. The config is
    validated first, so a bad one fails before the VAE trains."""
    del workdir
    traversal_configs.validate(config, num_devices=len(loop.select_devices(config)))
    if not config.vae.train_if_missing:
        return []
    return [Prerequisite("vae.workdir", "train.vae", f"configs/vae.py:{config.vae.config.preset}", config.vae.config,
                         config.vae.workdir, vae_experiment.train_and_evaluate,
                         done=lambda workdir: traversal_configs.has_generator(config))]


def build_experiment(config, devices=None) -> Experiment:
    """Validates the config (before anything compiles), loads the frozen VAE, builds state and step."""
    devices = loop.select_devices(config, devices)
    traversal_configs.validate(config, num_devices=len(devices))
    require(traversal_configs.has_generator(config), "vae.workdir",
            f"no VAE checkpoints in {config.vae.workdir!r}; make the generator first with `python -m train.vae "
            f"--config=configs/vae.py:plain --workdir={config.vae.workdir}` (train.traversal does so itself)")
    mesh = parallel.make_mesh(devices)
    replicated, batch_sharding = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    vae, vae_params, vae_config = load_vae(config.vae.workdir, mesh)
    generate = lambda z: vae.apply({"params": vae_params}, z, method="generate")
    family, classifier = build_family(config, vae.latent_dim), build_classifier(config)
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps,
                        grad_clip=config.optim.grad_clip)
    root = jax.random.key(config.seed)
    family_key, classifier_key = jax.random.split(jax.random.fold_in(root, INIT_STREAM))
    train_key, latent_key = jax.random.fold_in(root, TRAIN_STREAM), jax.random.fold_in(root, LATENT_STREAM)

    @functools.partial(jax.jit, out_shardings=replicated)
    def init_state():
        images = jnp.zeros((1, 64, 64, vae.image_channels), jnp.float32)
        params = {"family": family.init(family_key),
                  "classifier": classifier.init(classifier_key, images, images)["params"]}
        return create_train_state(params, tx, jax.random.key_data(train_key))

    state = init_state()  # born on the mesh, replicated
    train_step = make_train_step(make_traversal_loss(family, classifier, generate, flow_term(config.traversal),
                                                     classifier_weight=config.traversal.classifier_weight,
                                                     reflect=config.traversal.reflect), tx,
                                 ema_decay=config.ema_decay)
    jitted = loop.jit_train_step(train_step, state, mesh)
    sample_starts = make_start_sampler(config, vae, vae_params, vae_config, jax.random.fold_in(root, START_STREAM))
    latent_batch = jax.jit(lambda step: {"z": sample_starts(jax.random.fold_in(latent_key, step), config.batch_size)},
                           out_shardings=batch_sharding)
    return Experiment(config=config, mesh=mesh, vae=vae, vae_params=vae_params, generate=jax.jit(generate),
                      family=family, classifier=classifier, state=state, train_step=train_step,
                      jitted_step=jitted, sample_starts=sample_starts, latent_batch=latent_batch)


def make_start_sampler(config, vae: ConvVAE, vae_params: Any, vae_config: Any,
                       key: jax.Array) -> Callable[[jax.Array, int], jax.Array]:
    """sample_starts(key, n) -> (n, d): N(0, I) draws ('prior'), or rows drawn uniformly from a bank of
    posterior means of `traversal.num_start_images` random images of the VAE's training grid ('posterior')."""
    latent_dim = vae.latent_dim
    if config.traversal.start == "prior":
        return lambda key, n: jax.random.normal(key, (n, latent_dim))
    grid = build_grid(vae_config)
    count = min(config.traversal.num_start_images, len(grid))
    indices = np.asarray(jax.random.permutation(key, len(grid)))[:count]
    bank = jnp.asarray(encode_means(vae, vae_params, np.stack([grid.image(int(i)) for i in indices])))
    return lambda key, n: bank[jax.random.randint(key, (n,), 0, count)]


def evaluate(experiment: Experiment, params: Any, workdir: str, step: int) -> dict[str, float]:
    """VP of the traversals from fresh starting latents (pairs: first and last image of a T-step traversal),
    the mean latent and image change of a traversal; writes the strips and final_metrics.json."""
    config = experiment.config
    z0 = experiment.sample_starts(jax.random.fold_in(jax.random.key(config.seed), EVAL_STREAM), config.eval.vp_pairs)
    latents = traversal_latents(experiment.family, params["family"], z0, config.traversal.num_steps,
                                config.eval.step_size)
    images = generate_images(experiment.generate, latents)
    write_strips(workdir, step, images, config.eval.num_strips)
    metrics = {
        "vp": traversal_vp(images, config.seed),
        "latent_change": float(jnp.mean(jnp.linalg.norm(latents[:, -1] - latents[:, 0], axis=-1))),
        "image_change": float(np.mean(np.abs(images[:, -1] - images[:, 0]))),
    }
    files.write_bytes(files.join(workdir, FINAL_METRICS), json.dumps({"step": step, **metrics}, indent=2).encode())
    return metrics


@locks_workdir
def train_and_evaluate(config, workdir: str, devices=None):
    """Trains (resuming from the latest checkpoint in `workdir`) and evaluates; returns the final state.

    A preempted run (SIGTERM) saves and returns before evaluating.
    """
    experiment = build_experiment(config, devices)
    checkpointer, state, _ = loop.resume(config, workdir, experiment.state)
    # The batch of step s + 1 is a pure function of the step: nothing to save for the input pipeline.
    evaluation = loop.final_evaluation(lambda params, step: evaluate(experiment, params, workdir, step))
    return loop.fit_in_workdir(config, workdir, state, experiment.jitted_step, experiment.latent_batch,
                               checkpointer=checkpointer, hooks=(evaluation,),
                               desc=f"traversal {config.traversal.family}").state
