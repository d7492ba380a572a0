"""The experiments layer: one module per entrypoint, from a validated config to a finished work directory.

Each builds the model, data and objective from its config (`configs/`), runs the prerequisite runs it declares,
and hands the pure train step to the run layer (`jaxrep.run.loop`). The `train/` entrypoints parse flags and call
one function here; benchmarks and tests call the same functions.
"""
