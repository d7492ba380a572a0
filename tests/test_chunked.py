import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.chunked import map_in_chunks


@pytest.mark.parametrize("count, chunk", [(10, 3), (9, 3), (2, 5), (1, 1)])
def test_chunks_equal_one_call_and_compile_once(count, chunk):
    inputs = np.arange(count * 4, dtype=np.float32).reshape(count, 2, 2)
    shapes = []

    def fn(block):
        shapes.append(block.shape)
        return jnp.sum(block**2, axis=(1, 2))

    np.testing.assert_array_equal(map_in_chunks(jax.jit(fn), inputs, chunk), np.sum(inputs**2, axis=(1, 2)))
    assert shapes == [(min(chunk, count), 2, 2)]  # traced once: every chunk has the same shape


def test_no_rows_or_no_chunk_fails_clearly():
    with pytest.raises(ValueError, match="0 rows"):
        map_in_chunks(lambda x: x, np.zeros((0, 3)), 4)
    with pytest.raises(ValueError, match="chunk 0"):
        map_in_chunks(lambda x: x, np.zeros((2, 3)), 0)
