"""DDPG / BEER-DDPG update rate: jaxrep's jitted update against an equivalent PyTorch update (a benchmark).

  python -m benchmarks.torch_ddpg --task=cheetah-run --seconds=10

The PyTorch side is the official BEER code's update (sweetice/BEER-ICLR2024 `BEER.py`, TD3 lineage) rebuilt
here with the same pieces as `jaxrep.rl.ddpg.DDPG.update`: 256-256 ReLU actor (tanh) and critic, batch 256
sampled uniformly from a 10k-transition buffer held as tensors, Adam 3e-4 for both, critic MSE to the TD target
(+ the official-form BEER hinge, beta 1e-3, gamma 0.99 in the bound), actor step through the *updated* critic,
Polyak targets (tau 0.005). torch runs with each of `--threads` (default 1 and 2; the better is reported) and
OMP_WAIT_POLICY=PASSIVE. The JAX figures come from `benchmarks.rl_throughput.updates_per_second` (one jitted
`train` call per update, and `--fused` updates fused by `lax.scan` per call), measured in the same process,
alternating frameworks round by round so that load from other jobs affects both. Needs the `ref` extra (torch).

It also measures each framework's matmul rate at the update's dominant shape (batch x 256 @ 256 x 256) and
reports the update's achieved FLOP/s (XLA's cost analysis of one update, applied to both frameworks) against it:
the FLOP/s a 3x-PyTorch update rate would need, as a share of what XLA's matmuls reach here.
"""

from __future__ import annotations

import copy
import os
import time

os.environ.setdefault("MUJOCO_GL", "disable")
# With the default (active) OpenMP wait policy, 2 torch threads on 2 cores shared with other jobs spin against
# each other: measured 1 update/s instead of 120. Passive waiting is torch's best case on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from absl import app, flags, logging

# rl_throughput defines --task, --batch_size, --fused and --seconds at import; they are shared here.
from benchmarks.matmul_rates import Matmul, jax_seconds, torch_seconds
from benchmarks.rl_throughput import _BATCH, _FUSED, _SECONDS, _TASK, update_flops, updates_per_second
from envs.dmc import DMCEnv

_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating measurement rounds; the best round of each is reported.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "torch intra-op thread counts; the best one is reported.")
_WIDTH = 256  # hidden width of the paper's actor and critic
_MATMUL_REPEATS = 200  # calls per timing of the hidden-layer matmul


def torch_update(observation_size: int, action_size: int, beer: bool, batch_size: int, threads: int):
    """update(): one PyTorch DDPG(+BEER) update, batch sampling included, with fresh networks and random data."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Actor(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(observation_size, 256), nn.Linear(256, 256)
            self.l3 = nn.Linear(256, action_size)

        def forward(self, state):
            return torch.tanh(self.l3(F.relu(self.l2(F.relu(self.l1(state))))))

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(observation_size + action_size, 256), nn.Linear(256, 256)
            self.l3 = nn.Linear(256, 1)

        def forward(self, state, action):
            phi = F.relu(self.l2(F.relu(self.l1(torch.cat([state, action], 1)))))
            return self.l3(phi), phi

    actor, critic = Actor(), Critic()
    actor_target, critic_target = copy.deepcopy(actor), copy.deepcopy(critic)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=3e-4)
    discount, tau, beer_coef, beer_gamma = 0.99, 0.005, 1e-3, 0.99

    count = 10_000
    rng = np.random.default_rng(0)
    observation = torch.as_tensor(rng.normal(size=(count, observation_size)), dtype=torch.float32)
    action = torch.as_tensor(rng.uniform(-1, 1, (count, action_size)), dtype=torch.float32)
    reward = torch.as_tensor(rng.uniform(0, 1, (count, 1)), dtype=torch.float32)
    not_done = torch.ones(count, 1)
    next_observation = torch.as_tensor(rng.normal(size=(count, observation_size)), dtype=torch.float32)

    def update():
        index = torch.randint(0, count, (batch_size,))
        state, act, rew, nd, next_state = (observation[index], action[index], reward[index], not_done[index],
                                           next_observation[index])
        with torch.no_grad():
            target_q, next_phi_target = critic_target(next_state, actor_target(next_state))
            target_q = rew + nd * discount * target_q
        current_q, phi = critic(state, act)
        critic_loss = F.mse_loss(current_q, target_q)
        if beer:  # BEER.py: online phi' under no_grad, target phi' in the cosine and the denominator
            with torch.no_grad():
                _, next_phi = critic(next_state, actor(next_state))
                norm_phi = phi.norm(dim=1, keepdim=True)
                norm_next = next_phi.norm(dim=1, keepdim=True)
                norm_next_target = next_phi_target.norm(dim=1, keepdim=True)
                w_sq = critic.l3.weight.pow(2).sum().clamp_min(1e-6)
                bound = (norm_phi**2 + beer_gamma**2 * norm_next**2 - rew**2 / w_sq) / (
                    2 * beer_gamma * norm_phi * norm_next_target)
            cosine = F.cosine_similarity(phi, next_phi_target, dim=1, eps=1e-6).unsqueeze(1)
            critic_loss = critic_loss + beer_coef * F.relu(cosine - bound).mean()
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()

        actor_loss = -critic(state, actor(state))[0].mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()

        with torch.no_grad():
            for net, target in ((critic, critic_target), (actor, actor_target)):
                for param, target_param in zip(net.parameters(), target.parameters()):
                    target_param.mul_(1 - tau).add_(param, alpha=tau)

    return update


def torch_updates_per_second(observation_size: int, action_size: int, beer: bool, batch_size: int,
                             seconds: float, threads: int) -> float:
    """Updates/s of the PyTorch DDPG(+BEER) update, batch sampling included."""
    update = torch_update(observation_size, action_size, beer, batch_size, threads)
    for _ in range(20):  # warm-up (allocator, thread pool)
        update()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        update()
        updates += 1
    return updates / (time.perf_counter() - start)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import torch

    env = DMCEnv(_TASK.value)
    sizes = (env.observation_size, env.action_size)
    best: dict[str, float] = {}
    for round_index in range(_ROUNDS.value):
        for method in ("ddpg", "beer"):
            figures = {
                f"torch_{method}_{threads}threads": torch_updates_per_second(
                    *sizes, method == "beer", _BATCH.value, _SECONDS.value, int(threads))
                for threads in _THREADS.value
            }
            figures.update({
                f"jax_{method}": updates_per_second(_TASK.value, method, _BATCH.value, 1, _SECONDS.value),
                f"jax_{method}_fused": updates_per_second(_TASK.value, method, _BATCH.value, _FUSED.value,
                                                          _SECONDS.value),
            })
            if method == "ddpg":
                hidden_matmul = Matmul("hidden layer", (_BATCH.value, _WIDTH), (_WIDTH, _WIDTH))
                figures["jax_matmul"] = hidden_matmul.flops / jax_seconds(hidden_matmul, _MATMUL_REPEATS)
                for threads in _THREADS.value:
                    torch.set_num_threads(int(threads))
                    figures[f"torch_matmul_{threads}threads"] = hidden_matmul.flops / torch_seconds(
                        hidden_matmul, _MATMUL_REPEATS)
            for name, value in figures.items():
                shown = f"{value / 1e9:.1f} GFLOP/s" if "matmul" in name else f"{value:.1f} updates/s"
                print(f"round {round_index}: {name}: {shown}", flush=True)
                best[name] = max(best.get(name, 0.0), value)
    print()
    print(f"Task `{_TASK.value}` (obs {sizes[0]}, actions {sizes[1]}), batch {_BATCH.value}, 256-256 nets, "
          f"torch {torch.__version__} (best of {','.join(_THREADS.value)} threads, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}), best of {_ROUNDS.value} rounds of "
          f"{_SECONDS.value:.0f} s.")
    print()
    print("| update | PyTorch updates/s | jaxrep 1/call | jaxrep "
          f"{_FUSED.value} fused/call | JAX / PyTorch (1/call) | JAX / PyTorch (fused) |")
    print("|---|---|---|---|---|---|")
    for method in ("ddpg", "beer"):
        t = max(best[f"torch_{method}_{threads}threads"] for threads in _THREADS.value)
        j, f = best[f"jax_{method}"], best[f"jax_{method}_fused"]
        print(f"| {method.upper()} | {t:.0f} | {j:.0f} | {f:.0f} | {j / t:.2f}x | {f / t:.2f}x |")
    # The ceiling: what each framework's matmuls reach at the update's dominant shape on this machine.
    jax_matmul = best["jax_matmul"]
    torch_matmul = max(best[f"torch_matmul_{threads}threads"] for threads in _THREADS.value)
    print()
    print(f"Matmul rate at ({_BATCH.value} x {_WIDTH}) @ ({_WIDTH} x {_WIDTH}): XLA {jax_matmul / 1e9:.1f} GFLOP/s, "
          f"PyTorch {torch_matmul / 1e9:.1f} GFLOP/s.")
    print()
    print("| update | GFLOP per update (XLA cost analysis) | PyTorch GFLOP/s | jaxrep GFLOP/s (better of 1/call, "
          "fused) | jaxrep % of XLA matmul rate | 3x PyTorch needs GFLOP/s | = % of XLA matmul rate |")
    print("|---|---|---|---|---|---|---|")
    for method in ("ddpg", "beer"):
        flops = update_flops(_TASK.value, method, _BATCH.value)
        t = max(best[f"torch_{method}_{threads}threads"] for threads in _THREADS.value)
        j = max(best[f"jax_{method}"], best[f"jax_{method}_fused"])
        needed = 3 * t * flops
        print(f"| {method.upper()} | {flops / 1e9:.3f} | {t * flops / 1e9:.1f} | {j * flops / 1e9:.1f} | "
              f"{100 * j * flops / jax_matmul:.0f} % | {needed / 1e9:.1f} | {100 * needed / jax_matmul:.0f} % |")


if __name__ == "__main__":
    app.run(main)
