"""Train the in-repo alignment target encoder:

  python -m train.encoder --config=configs/encoder.py:shapes32 --workdir=DIR

The experiment is `jaxrep.experiments.encoder`.
"""

from jaxrep.experiments import encoder
from train import cli


def main(argv) -> None:
    cli.run_entrypoint(argv, encoder.train_encoder, expected_errors=encoder.EXPECTED_ERRORS, preemptible=True)


if __name__ == "__main__":
    cli.run_program(main, config="configs/encoder.py:shapes32", workdir="workdirs/encoder_shapes32",
                    workdir_help="Directory of the encoder checkpoint.")
