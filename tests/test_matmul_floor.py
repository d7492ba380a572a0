"""`benchmarks.tools.matmul_floor`: a program's dots from its jaxpr, with counts and FLOPs against closed forms."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks.tools.matmul_floor import Dot, dot_seconds, matmul_floor, program_dots


def _mlp_loss(params, x):
    return jnp.sum(jax.nn.relu(x @ params["w1"]) @ params["w2"])


PARAMS = {"w1": jnp.ones((8, 16)), "w2": jnp.ones((16, 4))}
X = jnp.ones((32, 8))


def test_forward_dots_and_flops():
    dots = program_dots(_mlp_loss, PARAMS, X)
    assert sum(dots.values()) == 2
    assert sum(dot.flops * count for dot, count in dots.items()) == 2 * 32 * 8 * 16 + 2 * 32 * 16 * 4


@pytest.mark.parametrize("jit", [False, True])
def test_gradient_adds_two_dots_per_layer_but_none_for_the_input(jit):
    """Backward: dW2 = H^T dY, dH = dY W2^T, dW1 = X^T dH (dX is not asked for): 3 dots, each as many FLOPs as the
    forward matmul of its layer (dW1 as layer 1's, dW2 and dH as layer 2's)."""
    grad = jax.grad(_mlp_loss)
    dots = program_dots(jax.jit(grad) if jit else grad, PARAMS, X)
    assert sum(dots.values()) == 5
    forward = 2 * 32 * 8 * 16 + 2 * 32 * 16 * 4
    assert sum(dot.flops * count for dot, count in dots.items()) == forward + forward + 2 * 32 * 16 * 4


def test_scan_body_counts_length_times():
    def scanned(params, x):
        return jax.lax.scan(lambda carry, _: (carry + _mlp_loss(params, x), None), 0.0, length=7)[0]

    assert sum(program_dots(scanned, PARAMS, X).values()) == 14


def test_batched_dot_flops():
    dot = Dot((4, 32, 8), (4, 8, 16), "float32", "float32", (((2,), (1,)), ((0,), (0,))))
    assert dot.flops == 2 * 4 * 32 * 8 * 16
    assert "4x32x8 . 4x8x16" in str(dot)


def test_floor_times_every_dot_and_orders_by_total_time():
    rows = matmul_floor(program_dots(jax.grad(_mlp_loss), PARAMS, X), repeats=3)
    assert len(rows) == len(program_dots(jax.grad(_mlp_loss), PARAMS, X))
    assert all(seconds > 0 for _, _, seconds in rows)
    totals = [count * seconds for _, count, seconds in rows]
    assert totals == sorted(totals, reverse=True)
    big = Dot((512, 512), (512, 512), "float32", "float32", (((1,), (0,)), ((), ())))
    small = Dot((8, 8), (8, 8), "float32", "float32", (((1,), (0,)), ((), ())))
    assert dot_seconds(big, repeats=3) > dot_seconds(small, repeats=3)
