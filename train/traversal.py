"""Discover latent traversals of a frozen VAE with learned potential flows:

  python -m train.traversal --config=configs/traversal.py:potential --workdir=DIR

The experiment is `jaxrep.experiments.traversal`.
"""

from jaxrep.experiments import traversal
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, traversal.train_and_evaluate, expected_errors=traversal.EXPECTED_ERRORS, preemptible=True,
                       prerequisites=traversal.prerequisites)


if __name__ == "__main__":
    cli.run_program(main, config="configs/traversal.py:potential", workdir="workdirs/traversal_potential",
                    workdir_help="Directory for checkpoints, logs and strips.")
