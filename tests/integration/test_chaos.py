"""The chaos run of ``tests/chaos.py`` at the size the suite affords (``bin/chaos`` runs
longer ones): ten SIGKILL restarts under robust workers and a robust confirming producer."""
import pytest

from tests.chaos import run


# Ten broker starts plus the run's own 120 s budget for the last confirms and tasks (it
# takes ~20 s): a stall ends in the report, with every process's output, not in a timeout.
@pytest.mark.timeout(240)
def test_ten_broker_kills_lose_and_corrupt_nothing() -> None:
    report = run(kills=10, tasks=2000, seed=12)
    print(report)  # (pytest -s shows the figures, duplicates included)
    assert report.lost == [] and report.corrupt == 0 and report.done == report.tasks
    # Every client really went through the restarts. How many each noticed depends on what
    # it was doing when the broker died (an idle one may meet a restarted broker only
    # once), so the count is printed, not required.
    assert report.per_client and min(report.per_client) >= 1, report.per_client
