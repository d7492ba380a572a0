"""Lazy package exports (PEP 562): a name is imported from its module on first access, so importing a package
(e.g. for one pure loss) does not load the heavy dependencies of its other modules (orbax, scikit-learn, ...)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, modules: Mapping[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """(__getattr__, __dir__) for `package`'s __init__: `modules` maps a submodule name to the names it exports."""
    owner = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)

    def __dir__():
        return sorted(set(owner) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
