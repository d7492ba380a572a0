"""Optional extras in tests: skip only when the package is not installed; a package that is installed but fails to
import fails the test (a broken `playground` or `ref` extra must not pass as a skip)."""

import importlib
import importlib.util

import pytest


def import_extra(module: str, extra: str):
    """`import module`, or skip the calling test module when its distribution is absent."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[{extra}]')", allow_module_level=True)
    return importlib.import_module(module)
