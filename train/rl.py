"""Train DDPG or BEER-DDPG on a dm-control task, one env stepped on the host:

  python -m train.rl --config=configs/rl.py:cpu --workdir=DIR

The experiment is `jaxrep.experiments.rl`.
"""

from jaxrep.experiments import rl
from train import cli


def main(argv) -> None:
    cli.run_rl_entrypoint(argv, rl.train_and_evaluate)


if __name__ == "__main__":
    cli.run_program(main, config="configs/rl.py:cpu", workdir=None,
                    workdir_help="Directory for checkpoints, metrics and plots.", lock_config=True)
