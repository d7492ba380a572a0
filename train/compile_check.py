"""Compile a diffusion run's programs for a Cloud TPU slice on any machine, and say whether they fit:

  python -m train.compile_check --config=configs/diffusion.py:xl2_repa --topology=v5p-64 [--config.a.b=value ...]

The experiment is `jaxrep.experiments.compile_check` (what is compiled and printed is described there).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxrep.config_checks import ConfigError
from jaxrep.experiments import compile_check
from jaxrep.run import aot
from train import cli


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        status = compile_check.check(flags.FLAGS.config, flags.FLAGS.eval_config, flags.FLAGS.topology,
                                     flags.FLAGS.programs, flags.FLAGS.image_size)
    except ConfigError as error:
        sys.exit(f"config error: {error}")
    except aot.TopologyError as error:
        sys.exit(f"error: {error}")
    sys.exit(status)


if __name__ == "__main__":
    import jax

    jax.config.update("jax_platforms", "cpu")  # the slice's devices are compile-only; nothing runs on a TPU
    flags.DEFINE_string("topology", None, "Cloud TPU name (v5p-64, v5litepod-16) or topology (v5p:4x4x2).",
                        required=True)
    flags.DEFINE_list("programs", list(compile_check.PROGRAMS),
                      "Programs to compile: train (with targets when aligned), sample, decode, encode.")
    flags.DEFINE_integer("image_size", 0, "Side of the model's input: 0 means the data's (32 x 32 x 4 latents; 64 "
                         "for the *_512 presets).")
    config_flags.DEFINE_config_file("config", "configs/diffusion.py:cpu", "Diffusion config file and preset.")
    config_flags.DEFINE_config_file("eval_config", "configs/evaluate.py:fid50k", "Evaluation config (sampling).")
    app.run(main, flags_parser=cli.parse_flags)
