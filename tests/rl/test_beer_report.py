"""benchmarks/beer_report.py from the command line on a grid's results: returns with rliable intervals, and BEER's
mechanism (Q-estimation error, srank, the bound) where the runs record it, judged by its intervals; the committed
report is what the command rebuilds from the committed results tables."""

import json
import os
import subprocess
import sys

from benchmarks import beer_report
from tests.helpers import REPO


def run(task, method, seed, q_abs_error):
    steps = [5000, 10000]
    return {"task": task, "method": method, "seed": seed, "loop": "host", "env_steps": 10000,
            "evals": [[step, 100.0 + seed] for step in steps], "run_seconds": 1.0,
            "mechanism": {"eval/q_abs_error": [[step, q_abs_error * step / 10000] for step in steps],
                          "eval/q_error": [[step, -q_abs_error] for step in steps],
                          "rank/srank": [[step, 100.0 + seed] for step in steps],
                          "bound/cosine": [[step, 0.9] for step in steps], "bound/bound": [[step, 0.8] for step in steps],
                          "bound/active_fraction": [[step, 0.01 * seed] for step in steps]}}


def test_the_report_states_the_mechanism_with_its_intervals(tmp_path):
    rows = ([run("apart", "beer", seed, 1.0 + 0.1 * seed) for seed in range(3)]
            + [run("apart", "ddpg", seed, 5.0 + 0.1 * seed) for seed in range(3)]
            + [run("mixed", method, seed, value) for method, values in (("beer", (1.0, 6.0, 3.0)), ("ddpg", (2.0, 5.0, 4.0)))
               for seed, value in enumerate(values)])
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "results.json").write_text(json.dumps(rows))
    (tmp_path / "grid" / "config.json").write_text(json.dumps({"tasks": "apart,mixed", "start_steps": 1000,
                                                                "eval_every": 5000}))
    output = tmp_path / "beer.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.beer_report", f"--grid={tmp_path / 'grid'}",
                           f"--output={output}", "--reps=200"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = output.read_text()
    assert r"| apart | \|Q error\| (critic Q(s0, pi(s0)) vs discounted MC return) | 1.1 [1, 1.2] | 5.1 [5, 5.2] |" in report
    assert "apart: BEER's is lower (the paper's claim); mixed: the intervals overlap." in report
    assert "## What the evidence shows\n\nBEER's mechanism, its bound on the similarity of consecutive" in report
    assert "its predicted consequence, a smaller Q-estimation error, is not visible" in report
    assert "**The bound.** " in report and "apart: BEER 0.0100 [0.0000, 0.0200], DDPG 0.0100" in report
    assert "| mixed | srank of the critic's features (of 256) | 101 [100, 102] | 101 [100, 102] |" in report
    assert (tmp_path / "beer_q_error.png").stat().st_size > 0 and (tmp_path / "beer_srank.png").stat().st_size > 0


def test_the_committed_report_is_rebuilt_from_the_committed_results_by_one_command(tmp_path):
    output = tmp_path / "beer.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.beer_report", f"--output={output}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt = output.read_text().replace(f"python -m benchmarks.beer_report --output={output}",
                                         "python -m benchmarks.beer_report")
    with open(os.path.join(REPO, beer_report.REPORT)) as file:
        assert rebuilt == file.read()
    assert all((tmp_path / f"beer_{name}.png").stat().st_size > 0 for name in ("curves", "q_error", "srank"))


def test_the_sentence_follows_the_intervals_whichever_way_they_fall():
    intervals = {"beer": {"iqm": (0.30, 0.25, 0.35)}, "ddpg": {"iqm": (0.20, 0.15, 0.25)}}
    sentence = beer_report.evidence(intervals, (0.62, 0.44, 0.80), (0.81, 0.66, 0.95), (0.9, 0.7, 1.0))
    assert sentence.startswith("BEER's mechanism, its bound on the similarity of consecutive critic features, is "
                               "visible: P(BEER's share of the batch above the bound < DDPG's, averaged over each "
                               "run's logs) = 0.90 [0.70, 1.00], which excludes no difference (0.5); ")
    assert ("its predicted consequence, a smaller Q-estimation error, is visible: P(BEER's final |Q error| < DDPG's) "
            "= 0.81 [0.66, 0.95], which excludes no difference (0.5)") in sentence
    assert "its effect on return is not visible: P(BEER's final return > DDPG's) = 0.62 [0.44, 0.80], which rules " \
           "out P > 0.80 and P < 0.44" in sentence
    assert "BEER 0.300 [0.250, 0.350], DDPG 0.200 [0.150, 0.250]" in sentence
    reversed_consequence = beer_report.evidence(intervals, (0.9, 0.7, 1.0), (0.2, 0.05, 0.4))
    assert reversed_consequence.startswith("BEER's predicted consequence, a smaller Q-estimation error, is reversed")
    assert "its effect on return is visible" in reversed_consequence
    assert beer_report.evidence(intervals, (0.5, 0.3, 0.7)).startswith("BEER's effect on return is not visible")
    assert "= 0.50 [0.00, 1.00], which rules out nothing" in beer_report.evidence(intervals, (0.5, 0.0, 1.0))
    assert "which rules out P < 0.20 (IQM" in beer_report.evidence(intervals, (0.6, 0.2, 1.0))
