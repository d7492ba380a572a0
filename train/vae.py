"""Train a conv VAE on dSprites, plain or with the potential-flow regulariser:

  python -m train.vae --config=configs/vae.py:plain --workdir=DIR

The experiment is `jaxrep.experiments.vae`.
"""

from jaxrep.experiments import vae
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, vae.train_and_evaluate, expected_errors=vae.EXPECTED_ERRORS, preemptible=True)


if __name__ == "__main__":
    cli.run_program(main, config="configs/vae.py:plain", workdir="workdirs/vae_plain",
                    workdir_help="Directory for checkpoints, logs and pictures.")
