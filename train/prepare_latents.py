"""Encode an image dataset into sharded SD-VAE latents:

  python -m train.prepare_latents --config=configs/prepare_latents.py:imagenet256 --config.data_dir=IMAGES --workdir=OUT

The experiment is `jaxrep.experiments.prepare_latents`.
"""

from jaxrep.experiments import prepare_latents
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, prepare_latents.prepare, expected_errors=prepare_latents.EXPECTED_ERRORS)


if __name__ == "__main__":
    cli.run_program(main, config="configs/prepare_latents.py:imagenet256", workdir="",
                    workdir_help="Output directory of the prepared dataset.")
