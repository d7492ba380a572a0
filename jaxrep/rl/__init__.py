"""DDPG with the BEER regulariser: networks, replay buffer (device arrays), pure update, BEER loss, and rliable's
aggregate statistics over tasks and seeds. Names load lazily (`jaxrep._lazy`), so `jaxrep.rl.beer` alone pulls
in no agent or metric code."""

from jaxrep._lazy import lazy_exports

_MODULES = {
    "beer": ("beer_loss", "beer_loss_and_stats", "beer_loss_per_example", "beer_terms"),
    "ddpg": ("DDPG", "BeerOptions", "actor_loss", "actor_loss_per_example", "critic_loss",
             "critic_loss_per_example"),
    "fused": ("FusedDDPG", "FusedState"),
    "networks": ("Actor", "Critic", "critic_head_kernel"),
    "population": ("Population",),
    "replay": ("ReplayBuffer", "Transitions", "init_replay"),
    "statistics": ("aggregate_intervals", "higher_interval", "learning_curve_bands", "normalize_returns",
                   "performance_profiles", "probability_of_improvement"),
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
