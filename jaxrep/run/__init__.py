"""The run layer: what turns a pure train step into a run that survives a pod.

The fit loop (`loop`), checkpoints and preemption (`checkpoint`), the work-directory lock (`workdir_lock`),
metrics, progress and pictures (`logging`), `jax.distributed` start-up (`distributed`) and ahead-of-time compiles
for TPU slices (`aot`). It imports the pure core and the data layer, never the experiments.
"""
