"""Evaluate a diffusion work directory (sample, then FD / precision / recall / density / coverage):

  python -m train.evaluate --config=configs/evaluate.py:cpu --workdir=DIR

The experiment is `jaxrep.experiments.evaluate`.
"""

from jaxrep.experiments import evaluate
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, evaluate.run, expected_errors=evaluate.EXPECTED_ERRORS,
                       prerequisites=evaluate.prerequisites)


if __name__ == "__main__":
    cli.run_program(main, config="configs/evaluate.py:cpu", workdir="workdirs/diffusion_cpu",
                    workdir_help="The train.diffusion work directory to evaluate.")
