"""The quick version of the crash soak (``make soak`` runs 100 iterations): a station, county,
city and province as real processes, kill -9 of any of them at random points during writes,
sync, relays and USB imports."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.soak import plan, run
from tests.conftest import PG_URL

pytestmark = pytest.mark.slow

SEED = 12
"""Its five faults: the province's server, the county's mid-relay, a USB import at the
province, the city's server, the county's while the station pushes."""


def _check(figures: dict[str, Any]) -> None:
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert set(figures["tiers"]) == {"county", "city", "province"}, figures
    for tier in figures["tiers"].values():
        assert tier == {"entries": figures["entries"], "lost": 0, "duplicated": 0}, figures
    assert figures["entries"] > 0
    # servers always die when killed: the upper tiers were really killed
    assert figures["faults"]["city server"] >= 1, figures
    assert figures["faults"]["province server"] >= 1, figures


def test_the_seed_kills_the_upper_tiers() -> None:
    faults = plan(5, SEED)
    assert {"city server", "province server", "province import"} <= set(faults), faults


# A pipe to a process we SIGKILL mid-write can be reported unclosed by the interpreter.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_killed_processes_lose_and_duplicate_nothing() -> None:
    _check(run(iterations=5, seed=SEED))


@pytest.mark.pg
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_killed_processes_lose_and_duplicate_nothing_with_hubs_on_postgresql() -> None:
    assert PG_URL is not None
    _check(run(iterations=5, seed=SEED, db_url=PG_URL))
