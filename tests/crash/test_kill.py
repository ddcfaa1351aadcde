"""The quick version of the crash soak (``make soak`` runs 100 iterations): kill -9 of the
station's put and sync, of the county's server and of its bundle import, at random points."""

from __future__ import annotations

import pytest

from benchmarks.soak import run

pytestmark = pytest.mark.slow


# A pipe to a process we SIGKILL mid-write can be reported unclosed by the interpreter.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_killed_processes_lose_and_duplicate_nothing() -> None:
    figures = run(iterations=5, seed=11)
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert figures["entries"] > 0
