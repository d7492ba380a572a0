"""Train a SiT flow-matching model, plain or with REPA / iREPA / ERW alignment:

  python -m train.diffusion --config=configs/diffusion.py:cpu --workdir=DIR

The experiment is `jaxrep.experiments.diffusion`.
"""

from jaxrep.experiments import diffusion
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, diffusion.train_and_evaluate, expected_errors=diffusion.EXPECTED_ERRORS, preemptible=True,
                       prerequisites=diffusion.prerequisites)


if __name__ == "__main__":
    cli.run_program(main, config="configs/diffusion.py:cpu", workdir="workdirs/diffusion_cpu",
                    workdir_help="Directory for checkpoints, logs and samples.")
