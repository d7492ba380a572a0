"""DDPG with the BEER regulariser: networks, replay buffer (device arrays), pure update, BEER loss."""

from jaxrep.rl.beer import beer_loss, beer_loss_and_stats, beer_terms
from jaxrep.rl.ddpg import DDPG, BeerOptions
from jaxrep.rl.networks import Actor, Critic, critic_head_kernel
from jaxrep.rl.replay import ReplayBuffer, Transitions, init_replay

__all__ = [
    "DDPG", "BeerOptions", "Actor", "Critic", "critic_head_kernel", "ReplayBuffer", "Transitions",
    "init_replay", "beer_loss", "beer_loss_and_stats", "beer_terms",
]
