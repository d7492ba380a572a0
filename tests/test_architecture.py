"""The layers of docs/architecture.md hold: `lint-imports` keeps pyproject.toml's contracts, and breaks them when a
forbidden import appears (checked on a copy of the sources with one import added)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("jaxrep", "train", "benchmarks", "configs", "envs")


def lint_imports(root: str) -> subprocess.CompletedProcess:
    command = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    return subprocess.run([command, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": root})


def test_the_sources_keep_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("jaxrep/losses.py", "import orbax.checkpoint", "do no I/O"),
    ("jaxrep/nn/sit.py", "from jaxrep.run import loop", "Layers"),
    ("jaxrep/run/loop.py", "from jaxrep.experiments import diffusion", "Layers"),
    ("train/sample.py", "from train import diffusion", "Entrypoints are independent"),
    ("benchmarks/frechet.py", "from train import cli", "Layers"),
    ("jaxrep/nn/dense.py", "from jaxrep.diffusion import loss", "No import circles"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
    source = tmp_path / module
    source.write_text(source.read_text() + f"\n{line}\n")
    result = lint_imports(str(tmp_path))
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
