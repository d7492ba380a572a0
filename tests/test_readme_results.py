"""The README's sentences on the studies state the figures of the reports they summarise (each report's "What the
evidence shows" section), so a rebuilt report with other numbers fails here until the README follows it."""

import os
import re

import pytest

from tests.helpers import REPO

FIGURE = re.compile(r"[-+]?\d+(?:\.\d+)? \[[-+]?\d+(?:\.\d+)?, [-+]?\d+(?:\.\d+)?\]")  # "0.452 [0.437, 0.465]"


def evidence(report: str) -> str:
    with open(os.path.join(REPO, report)) as file:
        text = file.read()
    section = text.split("## What the evidence shows\n\n", 1)[1]
    return section.split("\n\n", 1)[0]


@pytest.mark.parametrize("report", ["docs/results/traversal.md", "docs/results/beer.md"])
def test_the_readme_states_every_figure_of_the_reports_evidence(report):
    figures = FIGURE.findall(evidence(report))
    assert len(figures) >= 3, f"{report}: its evidence sentence states too few intervals: {figures}"
    with open(os.path.join(REPO, "README.md")) as file:
        readme = " ".join(file.read().split())
    missing = [figure for figure in figures if figure not in readme]
    assert not missing, f"README.md does not state {missing} of {report}'s evidence"
