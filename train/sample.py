"""Sample a diffusion work directory into one ADM `.npz`, on every device of every process:

  python -m train.sample --config=configs/evaluate.py:fid50k --workdir=DIR

The experiment is `jaxrep.experiments.sample`.
"""

from jaxrep.experiments import sample
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, sample.run, expected_errors=sample.EXPECTED_ERRORS)


if __name__ == "__main__":
    cli.run_program(main, config="configs/evaluate.py:cpu", workdir="workdirs/diffusion_cpu",
                    workdir_help="The train.diffusion work directory to sample.")
