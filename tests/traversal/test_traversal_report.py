"""benchmarks/traversal_report.py: the committed report is what the command rebuilds from the committed results,
and its conclusion follows the intervals, whichever way they fall."""

import os
import subprocess
import sys

from benchmarks import traversal_report
from tests.helpers import REPO

RESULTS = "docs/results/traversal_study"


def test_the_committed_report_is_rebuilt_from_the_committed_results_by_one_command(tmp_path):
    output = tmp_path / "traversal.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.traversal_report", f"--results={RESULTS}",
                           f"--output={output}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    pictures = os.path.relpath(os.path.join(REPO, RESULTS), tmp_path)
    rebuilt = output.read_text().replace(f"]({pictures}/", "](traversal_study/")
    with open(os.path.join(REPO, "docs/results/traversal.md")) as file:
        assert rebuilt == file.read()


def runs(values, metric):
    return [{metric: value} for value in values]


def test_the_conclusion_follows_the_intervals():
    vae = {"plain": [{"nll": 80.0, "mig": 0.10, "dci_disentanglement": 0.2}] * 3,
           "regularized": [{"nll": n, "mig": m, "dci_disentanglement": 0.2} for n, m in
                           ((70.0, 0.2), (71.0, 0.21), (72.0, 0.22))]}
    separated = {"potential": runs((0.6, 0.61, 0.62), "vp"), "linear, matched": runs((0.4, 0.41, 0.42), "vp")}
    sentence = traversal_report.evidence(vae, separated, chance=0.2)
    assert sentence.startswith("The mechanism is visible:")
    assert "effect on traversals is visible" in sentence and "fits the data better" in sentence
    assert "disentangles more by MIG" in sentence and "no differently by DCI" in sentence
    mixed = {"potential": runs((0.15, 0.5, 0.3), "vp"), "linear, matched": runs((0.3, 0.35, 0.2), "vp")}
    sentence = traversal_report.evidence(vae, mixed, chance=0.2)
    assert sentence.startswith("The mechanism is not visible:") and "effect on traversals is not visible" in sentence
