"""Train DDPG or BEER-DDPG with the whole loop on the device (MJX envs, `lax.scan`):

  python -m train.rl_mjx --config=configs/rl_mjx.py:cpu --workdir=DIR

The experiment is `jaxrep.experiments.rl_mjx`.
"""

from jaxrep.experiments import rl_mjx
from train import cli


def main(argv) -> None:
    cli.run_rl_entrypoint(argv, rl_mjx.train_and_evaluate)  # compilation included in its env steps/s


if __name__ == "__main__":
    cli.run_program(main, config="configs/rl_mjx.py:cpu", workdir=None,
                    workdir_help="Directory for checkpoints, metrics and plots.", lock_config=True)
