"""Environment wrappers. `envs.dmc`: dm-control suite tasks on the host (flat observations, [-1, 1] actions)."""

from envs.dmc import DMCEnv, Step, parse_task_name, seed_from_key, task_names

__all__ = ["DMCEnv", "Step", "parse_task_name", "seed_from_key", "task_names"]
