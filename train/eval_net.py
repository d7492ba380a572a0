"""Train the in-repo evaluation network (the CPU stand-in for Inception):

  python -m train.eval_net --config=configs/eval_net.py:shapes32 --workdir=DIR

The experiment is `jaxrep.experiments.eval_net`.
"""

from jaxrep.experiments import eval_net
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, eval_net.train_eval_net, expected_errors=eval_net.EXPECTED_ERRORS, preemptible=True)


if __name__ == "__main__":
    cli.run_program(main, config="configs/eval_net.py:shapes32", workdir="workdirs/eval_net_shapes32",
                    workdir_help="Directory of the eval-net checkpoint.")
