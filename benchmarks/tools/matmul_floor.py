"""The matmul floor of a program: its `dot_general`s read from its jaxpr, each timed alone at its shapes.

A step can be no faster than its matmuls. `program_dots` lists every `dot_general` a function traces to, with
how often it runs (a `lax.scan` body's dots count `length` times; every sub-jaxpr counts, so both branches of a
`lax.cond` do), including the backward pass's dots when the function takes gradients. `dot_seconds` times one
such dot alone, jitted, on operands in their default layout; summed over the program it is the time the program
would take if it did nothing but its matmuls, each at the rate XLA reaches for that shape on its own. A
measured step far above that sum has work outside its matmuls to remove; one close to it does not.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Dot:
    """One `lax.dot_general` signature: operand shapes and dtypes, dimension numbers, output dtype."""

    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    lhs_dtype: str
    rhs_dtype: str
    dimension_numbers: tuple  # ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))
    preferred_element_type: str | None = None

    @property
    def flops(self) -> int:
        """2 x batch x lhs-free x rhs-free x contracted sizes."""
        (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = self.dimension_numbers
        lhs_free = [d for i, d in enumerate(self.lhs_shape) if i not in (*lhs_contract, *lhs_batch)]
        rhs_free = [d for i, d in enumerate(self.rhs_shape) if i not in (*rhs_contract, *rhs_batch)]
        contracted = [self.lhs_shape[i] for i in lhs_contract]
        batch = [self.lhs_shape[i] for i in lhs_batch]
        return 2 * math.prod(batch) * math.prod(lhs_free) * math.prod(rhs_free) * math.prod(contracted)

    def __str__(self) -> str:
        (lc, rc), (lb, rb) = self.dimension_numbers
        return (f"{'x'.join(map(str, self.lhs_shape))} . {'x'.join(map(str, self.rhs_shape))} "
                f"(contract {tuple(lc)}/{tuple(rc)}, batch {tuple(lb)}/{tuple(rb)}, {self.lhs_dtype})")


def _sub_jaxprs(params: dict) -> list:
    """The jaxprs held in an equation's parameters (scan/while bodies, cond branches, jit and custom-rule calls)."""
    found = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, "eqns"):
                found.append(item)
            elif hasattr(getattr(item, "jaxpr", None), "eqns"):
                found.append(item.jaxpr)
    return found


def _collect(jaxpr, repeat: int, counts: collections.Counter) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (var.aval for var in eqn.invars)
            element = eqn.params.get("preferred_element_type")
            dims = tuple(tuple(tuple(int(i) for i in axes) for axes in pair)
                         for pair in eqn.params["dimension_numbers"])
            counts[Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), str(rhs.dtype), dims,
                       None if element is None else str(jnp.dtype(element)))] += repeat
        inner = repeat * int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else repeat
        for sub in _sub_jaxprs(eqn.params):
            _collect(sub, inner, counts)


def program_dots(fn: Callable, *args: Any, **kwargs: Any) -> collections.Counter:
    """{Dot: times it runs per call} for `fn(*args, **kwargs)`, traced with `jax.make_jaxpr` (nothing runs)."""
    counts: collections.Counter = collections.Counter()
    _collect(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr, 1, counts)
    return counts


def dot_seconds(dot: Dot, repeats: int = 20, rounds: int = 3) -> float:
    """Seconds of one jitted call of `dot` alone (best of `rounds` timings of `repeats` calls)."""
    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.normal(size=dot.lhs_shape), dot.lhs_dtype)
    rhs = jnp.asarray(rng.normal(size=dot.rhs_shape), dot.rhs_dtype)
    call = jax.jit(lambda a, b: jax.lax.dot_general(a, b, dot.dimension_numbers,
                                                    preferred_element_type=dot.preferred_element_type))
    call(lhs, rhs).block_until_ready()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = call(lhs, rhs)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def matmul_floor(dots: collections.Counter, repeats: int = 20) -> list[tuple[Dot, int, float]]:
    """[(dot, count, seconds of one call)] for every dot of a program, largest total time first."""
    timed = [(dot, count, dot_seconds(dot, repeats)) for dot, count in dots.items()]
    return sorted(timed, key=lambda row: -row[1] * row[2])
