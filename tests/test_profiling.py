"""Throughput accounting: FLOP counts, peaks and the per-op-kind trace reader."""

import re

import jax
import jax.numpy as jnp
import pytest

from benchmarks.tools.profiling import (
    compiled_flops,
    op_kind,
    op_kind_report,
    op_kind_times,
    op_source_times,
    op_times,
    theoretical_peak,
)


def test_compiled_flops_of_a_matmul_is_2mkn():
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    compiled = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
    assert compiled_flops(compiled) == pytest.approx(2 * 64 * 32 * 16)


def test_theoretical_peak_explains_itself():
    peak, how = theoretical_peak()
    assert peak is None or peak > 1e9
    assert how


def test_op_kind_times_reads_the_ops_of_a_traced_program():
    matmul_then_sort = jax.jit(lambda x: jnp.sort(jnp.tanh(x @ x), axis=-1))
    x = jnp.ones((512, 512)) / 512

    times = op_kind_times(lambda: matmul_then_sort(x).block_until_ready(), calls=3)

    assert times, "no XLA op was read back from the trace"
    assert all(re.fullmatch(r"[a-z][a-z0-9_\-]*", kind) for kind in times), times  # suffixes stripped
    assert all(seconds > 0 for seconds in times.values())
    assert list(times.values()) == sorted(times.values(), reverse=True)
    assert not {"while", "call", "conditional"} & set(times)
    assert any("fusion" in kind or "dot" in kind for kind in times), times  # the matmul
    assert any("sort" in kind for kind in times), times  # sort does not fuse into the matmul


def test_op_kind_report_shares_and_remainder():
    report = op_kind_report({"dot": 0.006, "copy": 0.003, "sort": 0.0005, "add": 0.0005}, top=2)
    assert report.splitlines()[2:] == [
        "| dot | 6.00 | 60.0 % |",
        "| copy | 3.00 | 30.0 % |",
        "| (all other kinds) | 1.00 | 10.0 % |",
        "| all ops | 10.00 | 100 % |",
    ]


def test_op_source_times_attribute_layout_copies_to_their_jax_operation():
    def relayout_then_sort(x):
        return jnp.sort(jnp.transpose(jnp.tanh(x), (1, 0, 2)) * 2.0, axis=-1)  # sort needs the new layout

    x = jnp.ones((64, 128, 256))
    compiled = jax.jit(relayout_then_sort).lower(x).compile()
    run = lambda: compiled(x).block_until_ready()  # noqa: E731
    hlo = compiled.as_text()

    times = op_source_times(run, hlo, calls=2)
    assert times, "the transposed sort input must be materialised by a copy/transpose op"
    for (kind, source), seconds in times.items():
        assert "copy" in kind or "transpose" in kind, kind
        assert f'op_name="{source}"' in hlo, source  # the instruction's own metadata
        assert seconds > 0
    assert not op_source_times(run, hlo, calls=2, kinds=("no_such_kind",))

    # Layer indices fold, so the same layer type in every block sums into one row.
    with_metadata = [name for name in op_times(run, calls=1)
                     if re.search(rf'%{re.escape(name)} = [^\n]*?op_name="', hlo)]
    name = with_metadata[0]
    renamed = re.sub(rf'(%{re.escape(name)} = [^\n]*?op_name=")[^"]*"', r'\1jit(f)/blocks_3/attn/mul"', hlo)
    folded = op_source_times(run, renamed, calls=1, kinds=(op_kind(name),))
    assert (op_kind(name), "jit(f)/blocks_*/attn/mul") in folded, folded
