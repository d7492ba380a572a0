"""Run a grid of tasks x methods x seeds (DDPG / BEER-DDPG) and write one results table:

  python -m train.rl_grid --config=configs/rl_grid.py:cpu --workdir=DIR

The experiment is `jaxrep.experiments.rl_grid`.
"""

import os

from absl import flags

from jaxrep.experiments import rl_grid
from train import cli


def main(argv) -> None:
    summary = cli.run_entrypoint(argv, rl_grid.run_grid, preemptible=True)
    state = "stopped (SIGTERM; rerun the same command to continue)" if summary["preempted"] else "done"
    print(f"{state}: {len(summary['results'])} runs; {os.path.join(flags.FLAGS.workdir, 'results.md')}", flush=True)


if __name__ == "__main__":
    cli.run_program(main, config="configs/rl_grid.py:cpu", workdir=None,
                    workdir_help="Root of the grid's runs and its results table.", lock_config=True)
