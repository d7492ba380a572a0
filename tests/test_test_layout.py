"""The test suite's own hygiene: test modules share helpers through `tests/helpers.py` and never import each
other (an import runs the other module's fixtures and module-level code, and couples their failures)."""

import ast
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def test_no_module_of_the_suite_imports_a_test_module():
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(TESTS)}: {name}" for name in names
                          if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")]
    assert not offenders, offenders
