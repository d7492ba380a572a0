"""Turn an official REPA / iREPA / ERW SiT checkpoint into a jaxrep work directory:

  python -m train.import_checkpoint --checkpoint=PATH --workdir=DIR --config=configs/diffusion.py:xl2_repa

The experiment is `jaxrep.experiments.import_checkpoint`.
"""

import functools

from absl import flags

from jaxrep.experiments import import_checkpoint
from train import cli


def main(argv) -> None:
    run = functools.partial(import_checkpoint.import_checkpoint, checkpoint_path=flags.FLAGS.checkpoint,
                            weights=flags.FLAGS.weights, step=flags.FLAGS.step,
                            keep_projector=flags.FLAGS.keep_projector)
    cli.run_entrypoint(argv, run, expected_errors=(FileExistsError,))


if __name__ == "__main__":
    flags.DEFINE_string("checkpoint", None, "Official SiT checkpoint (.pt/.pth/.bin or .safetensors).", required=True)
    flags.DEFINE_enum("weights", "ema", ["ema", "model"], "Training-container entry to import.")
    flags.DEFINE_integer("step", -1, "Step to save at; -1: the file's 'steps', else 0.")
    flags.DEFINE_bool("keep_projector", False, "Keep the alignment and import the projector (needs the encoder).")
    cli.run_program(main, config="configs/diffusion.py:xl2", workdir=None, workdir_help="New work directory to write.")
