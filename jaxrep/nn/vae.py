"""A small convolutional VAE for 64x64 binary images (dSprites), and its losses as pure functions.

Architecture: the conv encoder/decoder of Burgess et al. 2018 ("Understanding disentangling in beta-VAE")
as used by Locatello et al. 2019 (and, commented out, by the PDETraversal code's `ConvEncoder`/`ConvDecoder`):

    encoder  4x4 stride-2 convs 32, 32, 64, 64 (64 -> 4 pixels) -> Dense 256 -> (mean, log-variance) in R^d
    decoder  Dense 256 -> Dense 4*4*64 -> 4x4 stride-2 transposed convs 64, 32, 32, C -> Bernoulli logits

The PDETraversal from-scratch runs use a much wider `ConvVAE` (channel width = d = 226); this one is the
standard small model, so the traversal study fits on a CPU or one GPU.

Images are in {-1, 1} (`jaxrep.data.procedural.DSprites`); the likelihood is Bernoulli on (x + 1) / 2.
Losses (Kingma & Welling 2014; Burda et al. 2016):

    ELBO(x)      = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))                 (one reparameterised sample)
    elbo_loss    = mean_B (sum-BCE + KL)                                     (the official `loss_fn`)
    log p(x)    >= log (1/S) sum_s p(x|z_s) p(z_s) / q(z_s|x),  z_s ~ q     (importance weighted, S samples;
                                                                             `importance_weighted_nll`)

`make_elbo_loss` wraps `elbo_loss` as the train-step loss of the plain VAE; the potential-flow regularised
(from-scratch) objective is `jaxrep.traversal.objective.make_scratch_vae_loss`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))


class ConvVAE(nn.Module):
    """q(z|x) = N(mean, diag exp(log_var)), p(x|z) = Bernoulli(sigmoid(decode(z))).

    Attributes:
      latent_dim: d.
      channels: encoder conv widths (the decoder mirrors them); each halves the resolution.
      hidden_dim: width of the Dense layer on each side.
      image_size: H = W of the input (a multiple of 2 ** len(channels)).
      image_channels: C.
    """

    latent_dim: int = 10
    channels: Sequence[int] = (32, 32, 64, 64)
    hidden_dim: int = 256
    image_size: int = 64
    image_channels: int = 1

    def setup(self):
        self.encoder_convs = [nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME", name=f"enc_conv_{i}")
                              for i, c in enumerate(self.channels)]
        self.encoder_hidden = nn.Dense(self.hidden_dim, name="enc_hidden")
        self.encoder_out = nn.Dense(2 * self.latent_dim, name="enc_out")
        self.decoder_hidden = nn.Dense(self.hidden_dim, name="dec_hidden")
        bottom = self.image_size // 2 ** len(self.channels)
        self._bottom_shape = (bottom, bottom, self.channels[-1])
        self.decoder_in = nn.Dense(int(np.prod(self._bottom_shape)), name="dec_in")
        widths = list(self.channels[::-1][1:]) + [self.image_channels]
        self.decoder_convs = [nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME", name=f"dec_conv_{i}")
                              for i, c in enumerate(widths)]

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images: (B, H, W, C) in [-1, 1] -> (mean, log_var), each (B, d)."""
        chex.assert_rank(images, 4)
        x = images
        for conv in self.encoder_convs:
            x = nn.relu(conv(x))
        x = nn.relu(self.encoder_hidden(x.reshape(x.shape[0], -1)))
        mean, log_var = jnp.split(self.encoder_out(x), 2, axis=-1)
        return mean, log_var

    def decode(self, z: jax.Array) -> jax.Array:
        """z: (B, d) -> Bernoulli logits (B, H, W, C)."""
        chex.assert_rank(z, 2)
        x = nn.relu(self.decoder_hidden(z))
        x = nn.relu(self.decoder_in(x)).reshape((z.shape[0],) + self._bottom_shape)
        for i, conv in enumerate(self.decoder_convs):
            x = conv(x)
            if i < len(self.decoder_convs) - 1:
                x = nn.relu(x)
        return x

    def generate(self, z: jax.Array) -> jax.Array:
        """G(z) = the decoder's Bernoulli mean in [0, 1], (B, H, W, C): the generator the traversal
        differentiates (the official VAE's sigmoid output)."""
        return jax.nn.sigmoid(self.decode(z))

    def __call__(self, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """One reparameterised pass: (logits (B, H, W, C), mean, log_var, z), the last three (B, d)."""
        mean, log_var = self.encode(images)
        z = reparameterize(key, mean, log_var)
        return self.decode(z), mean, log_var, z


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I); shapes (..., d)."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample: (B, d) -> (B,)."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, images: jax.Array) -> jax.Array:
    """log p(x | logits) per sample, summed over pixels: (B, H, W, C) -> (B,); images in [-1, 1]."""
    targets = 0.5 * (images + 1.0)
    per_pixel = targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)


def gaussian_log_density(z: jax.Array, mean: jax.Array | float = 0.0, log_var: jax.Array | float = 0.0) -> jax.Array:
    """log N(z; mean, diag exp(log_var)), summed over the last axis: (..., d) -> (...)."""
    return -0.5 * jnp.sum(_LOG_2PI + log_var + jnp.square(z - mean) * jnp.exp(-log_var), axis=-1)


def _elbo_terms(logits: jax.Array, images: jax.Array, mean: jax.Array,
                log_var: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(reconstruction (B,), kl (B,)): the Bernoulli cross-entropy summed over pixels and KL(q(z|x) || N(0, I))."""
    chex.assert_equal_shape([logits, images])
    chex.assert_equal_shape([mean, log_var])
    return -bernoulli_log_likelihood(logits, images), gaussian_kl(mean, log_var)


def elbo_loss_per_example(logits: jax.Array, images: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Negative ELBO per image, (B,): sum over pixels of the Bernoulli cross-entropy + KL(q(z|x) || N(0, I))
    (Kingma and Welling 2014, Eq. 10). Shapes as in `elbo_loss`."""
    reconstruction, kl = _elbo_terms(logits, images, mean, log_var)
    return reconstruction + kl


def elbo_loss(logits: jax.Array, images: jax.Array, mean: jax.Array,
              log_var: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative ELBO, batch mean of (sum over pixels of BCE + KL) (official `loss_fn`: (BCE + KLD) / B).

    Args:
      logits: (B, H, W, C) decoder output at a posterior sample.
      images: (B, H, W, C) targets in [-1, 1].
      mean, log_var: (B, d) posterior parameters.
    Returns:
      loss: scalar; aux: "reconstruction" (mean BCE) and "kl" (mean KL), both scalars.
    """
    reconstruction, kl = _elbo_terms(logits, images, mean, log_var)
    return jnp.mean(reconstruction + kl), {"reconstruction": jnp.mean(reconstruction), "kl": jnp.mean(kl)}


def posterior_samples(vae: ConvVAE, params: Any, images: jax.Array,
                      keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mean, log_var, z) of q(z | images), one reparameterised sample per example key; all (B, d).

    images: (B, H, W, C) in [-1, 1]; keys: (B,) PRNG keys.
    """
    mean, log_var = vae.apply({"params": params}, images, method="encode")
    return mean, log_var, jax.vmap(reparameterize)(keys, mean, log_var)


def make_elbo_loss(vae: ConvVAE) -> Callable:
    """loss_fn(params, batch, example_keys, step) for `jaxrep.training.make_train_step`: `elbo_loss` of
    batch["image"] (B, H, W, C) at one posterior sample per example; params = {"vae"}. Metrics add "elbo"."""

    def loss_fn(params, batch, example_keys, step):
        del step
        mean, log_var, z = posterior_samples(vae, params["vae"], batch["image"], example_keys)
        logits = vae.apply({"params": params["vae"]}, z, method="decode")
        loss, aux = elbo_loss(logits, batch["image"], mean, log_var)
        return loss, dict(aux, elbo=loss)

    return loss_fn


def importance_weighted_nll(decode: Callable[[jax.Array], jax.Array], images: jax.Array, mean: jax.Array,
                            log_var: jax.Array, key: jax.Array, *, num_samples: int = 64,
                            chunk_size: int = 16) -> jax.Array:
    """-log p(x) estimated with S = num_samples importance samples from q(z|x) (Burda et al. 2016), in nats.

    -log p(x) ~= -logsumexp_s [log p(x|z_s) + log N(z_s; 0, I) - log q(z_s|x)] + log S. It upper-bounds the
    true NLL in expectation and tightens as S grows; S = 1 is the negative ELBO with a sampled KL.
    (The official `eval` uses S = 1 with a unit-variance Gaussian likelihood and adds log p(z) - log q(z)
    with the wrong sign; this estimator uses the training likelihood and the correct weights.)

    Args:
      decode: z (B, d) -> Bernoulli logits (B, H, W, C); e.g. `lambda z: vae.apply(params, z, method="decode")`.
      images: (B, H, W, C) in [-1, 1].
      mean, log_var: (B, d) posterior parameters of the images.
      key: PRNG key of the importance samples.
      num_samples: S.
      chunk_size: samples decoded at once (`lax.map` batch), bounding memory at chunk_size * B images.
    Returns:
      (B,) per-image NLL estimates.
    """
    chex.assert_equal_shape([mean, log_var])
    z = reparameterize(key, jnp.broadcast_to(mean, (num_samples,) + mean.shape),
                       jnp.broadcast_to(log_var, (num_samples,) + log_var.shape))

    def log_weight(z_s):
        log_likelihood = bernoulli_log_likelihood(decode(z_s), images)
        return log_likelihood + gaussian_log_density(z_s) - gaussian_log_density(z_s, mean, log_var)

    log_weights = jax.lax.map(log_weight, z, batch_size=min(chunk_size, num_samples))
    return -(jax.nn.logsumexp(log_weights, axis=0) - jnp.log(num_samples))
