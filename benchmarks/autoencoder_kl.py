"""SD-VAE encode / decode images/s: jaxrep's Flax `AutoencoderKL` against diffusers' on the same CPU.

    python -m benchmarks.autoencoder_kl                      # batch 2, 256 px, 3 rounds
    python -m benchmarks.autoencoder_kl --batch 4 --rounds 5

Both run the sd-vae-ft-mse architecture (block_out_channels 128-256-512-512, 2 resnets per block, 83.7M params)
with the same random weights, built offline: diffusers' initialisation, converted by
`autoencoder_kl_params_from_state_dict`. Encode maps (B, 256, 256, 3) images to the posterior, decode maps
(B, 32, 32, 4) latents to 256 px images. Flax: jitted, float32, timed after a warm-up call; PyTorch: float32,
`torch.no_grad`, NCHW, `--threads` intra-op threads (default: all cores), OMP_WAIT_POLICY=PASSIVE. The frameworks
alternate round by round so that load from other jobs affects both; the table gives the best round and the
median. Needs the `ref` extra (torch, diffusers).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks.torch_ddpg

import jax
import numpy as np

from benchmarks.tools.profiling import compiled_flops
from jaxrep.nn.autoencoder_kl import SD_VAE_FT_MSE_CONFIG, AutoencoderKL
from jaxrep.weights.autoencoder_kl import autoencoder_kl_params_from_state_dict


def _images_per_second(call, batch, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="image side; latents are size / 8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="calls timed per round and framework")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    args = parser.parse_args()

    import diffusers
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    blocks = len(SD_VAE_FT_MSE_CONFIG["block_out_channels"])
    torch_vae = diffusers.AutoencoderKL(
        block_out_channels=SD_VAE_FT_MSE_CONFIG["block_out_channels"], layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks).eval()
    model = AutoencoderKL(**SD_VAE_FT_MSE_CONFIG)
    params = autoencoder_kl_params_from_state_dict(torch_vae.state_dict(), model)

    rng = np.random.default_rng(0)
    latent_side = args.size // 8
    images = rng.uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype(np.float32)
    latents = rng.normal(size=(args.batch, latent_side, latent_side, 4)).astype(np.float32)
    images_nchw, latents_nchw = (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for x in (images, latents))

    start = time.perf_counter()
    encode = jax.jit(functools.partial(model.apply, method="encode")).lower(params, images).compile()
    decode = jax.jit(functools.partial(model.apply, method="decode")).lower(params, latents).compile()
    print(f"Flax compile (encode + decode) {time.perf_counter() - start:.1f} s")
    calls = {
        ("encode", "Flax"): lambda: jax.block_until_ready(encode(params, images)),
        ("decode", "Flax"): lambda: jax.block_until_ready(decode(params, latents)),
        ("encode", "PyTorch"): lambda: torch_vae.encode(images_nchw).latent_dist.mean,
        ("decode", "PyTorch"): lambda: torch_vae.decode(latents_nchw).sample,
    }
    with torch.no_grad():
        warm = {key: call() for key, call in calls.items()}
        for op, flax_out, torch_out in (("encode", warm["encode", "Flax"][0], warm["encode", "PyTorch"]),
                                        ("decode", warm["decode", "Flax"], warm["decode", "PyTorch"])):
            reference = torch_out.permute(0, 2, 3, 1).numpy()
            error = np.linalg.norm(np.asarray(flax_out) - reference) / np.linalg.norm(reference)
            print(f"{op}: Flax vs PyTorch relative error {error:.1e}")
        rates = {key: [] for key in calls}
        for round_index in range(args.rounds):
            for key, call in calls.items():
                rates[key].append(_images_per_second(call, args.batch, args.repeats))
            print(f"round {round_index + 1}: " + ", ".join(f"{op} {fw} {rates[op, fw][-1]:.2f}" for op, fw in calls),
                  flush=True)

    flops = {op: (compiled_flops(compiled) or float("nan")) / args.batch
             for op, compiled in (("encode", encode), ("decode", decode))}
    count = sum(leaf.size for leaf in jax.tree.leaves(params))
    print(f"\n== sd-vae-ft-mse AutoencoderKL, {count / 1e6:.1f}M params, float32, batch {args.batch}, "
          f"{args.size}x{args.size}x3 <-> {latent_side}x{latent_side}x4\n   JAX {jax.__version__} "
          f"({len(jax.devices())} device), PyTorch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"diffusers {diffusers.__version__}; images/s, best (median) of {args.rounds} rounds x {args.repeats} calls")
    print(f"{'':8}{'Flax (jit)':>18}{'PyTorch':>18}{'Flax / PyTorch':>16}{'XLA GFLOP/image':>18}")
    for op in ("encode", "decode"):
        best = {fw: max(rates[op, fw]) for fw in ("Flax", "PyTorch")}
        cells = [f"{best[fw]:.2f} ({statistics.median(rates[op, fw]):.2f})" for fw in ("Flax", "PyTorch")]
        print(f"{op:8}{cells[0]:>18}{cells[1]:>18}{best['Flax'] / best['PyTorch']:>16.2f}{flops[op] / 1e9:>18.1f}")


if __name__ == "__main__":
    main()
