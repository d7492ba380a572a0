"""Images/s of `train.prepare_latents` end to end (read, ADM crop, SD-VAE encode, PNG, ArrayRecord write).

    python -m benchmarks.prepare_latents [--num-images 48] [--image-size 256] [--batch-size 8]

The SD-VAE is diffusers' AutoencoderKL at the sd-vae-ft-mse shape (block widths 128-256-512-512, 2 layers per
block) with random weights, built offline and saved as a diffusers directory; the images are synthetic JPEGs of
ImageNet-like sizes (short side 300-500 px). The first pass includes compilation; the figure is the second pass
(into a fresh directory, compile cache warm in-process).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from configs import prepare_latents as prepare_configs
from jaxrep.experiments import prepare_latents


def _write_images(root: str, count: int, rng) -> None:
    for i in range(count):
        folder = os.path.join(root, f"class_{i % 4}")
        os.makedirs(folder, exist_ok=True)
        short, ratio = rng.integers(300, 500), rng.uniform(1.0, 1.5)
        height, width = (short, int(short * ratio)) if i % 2 else (int(short * ratio), short)
        smooth = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(smooth).resize((width, height), Image.Resampling.BILINEAR)
        image.save(os.path.join(folder, f"{i:05d}.JPEG"), quality=90)


def _sd_vae(directory: str) -> None:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                  layers_per_block=2, latent_channels=4, norm_num_groups=32,
                  sample_size=256).save_pretrained(directory, safe_serialization=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=48)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        images, vae = os.path.join(root, "images"), os.path.join(root, "vae")
        _write_images(images, args.num_images, np.random.default_rng(0))
        _sd_vae(vae)
        config = prepare_configs.get_config("imagenet256")
        config.update(data_dir=images, image_size=args.image_size, batch_size=args.batch_size,
                      records_per_shard=args.num_images, show_progress=False)
        config.vae.path = vae
        for attempt in ("first (compiles)", "second"):
            start = time.perf_counter()
            manifest = prepare_latents.prepare(config, os.path.join(root, f"out_{attempt[:5]}"))["manifest"]
            seconds = time.perf_counter() - start
            print(f"{attempt:17s} {manifest['num_records']} images at {args.image_size} px, batch {args.batch_size}: "
                  f"{seconds:.1f} s, {manifest['num_records'] / seconds:.2f} images/s", flush=True)


if __name__ == "__main__":
    main()
