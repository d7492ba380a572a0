"""Weight files: reading other codebases' checkpoints into flax parameters, and the frozen networks jaxrep
writes itself (target encoders, evaluation networks) with their metadata.

torch and safetensors files are opened without unpickling code (`convert.load_state_dict`). This layer sits
above the pure core and the run layer (frozen weights are orbax checkpoints).
"""
