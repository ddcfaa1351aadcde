"""The province simulator (``make bench-province``) at the smallest sizes: one city of one
or two counties, a few stations, every hub a real process. Its figures are not checked
against goals here (that is what the benchmark is for), only that every phase ran and
measured what it says."""

from __future__ import annotations

import argparse
import os

import pytest

from benchmarks.province import (
    Watch,
    _by_hub,
    _niceness,
    _tally,
    arguments,
    machine_cpu,
    memory_available,
    run,
    stalls,
)
from schemas.ids import Tier
from tests.conftest import PG_URL


def test_niceness_is_three_values_from_0_to_19() -> None:
    assert _niceness("0,10,19") == {Tier.PROVINCE: 0, Tier.CITY: 10, Tier.COUNTY: 19}
    for bad in ("0,10", "0,10,20", "-1,0,0", "a,b,c", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _niceness(bad)


def test_province_workers_are_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments(["--province-workers", "0"])
    assert "at least 1" in capsys.readouterr().err
    assert arguments(["--province-workers", "2"]).province_workers == 2


def test_a_steady_rate_needs_two_samples_of_middle() -> None:
    watch = Watch(store=None, period=0.5)  # type: ignore[arg-type]  # samples given below
    watch.samples = [(0.0, 0), (0.5, 0), (1.0, 100)]  # every entry between two samples
    assert watch.phases(0, 100) == (1.0, 0.0, 0.0)
    assert watch.steady_rate(0, 100) is None
    watch.samples = [(0.0, 0), (1.0, 10), (2.0, 50), (3.0, 90), (4.0, 100)]
    assert watch.phases(0, 100) == (1.0, 2.0, 1.0)
    assert watch.steady_rate(0, 100) == pytest.approx(40.0)


def test_the_machine_busy_share_per_part_of_the_phase() -> None:
    watch = Watch(store=None, period=0.5)  # type: ignore[arg-type]  # samples given below
    watch.samples = [(0.0, 0), (1.0, 10), (2.0, 50), (3.0, 90), (4.0, 100)]
    # busy and total CPU ticks at each sample: all busy, then a half, then a quarter
    watch.machine = [(0, 0), (200, 200), (300, 400), (400, 600), (450, 800)]
    assert watch.busy(0, 100) == (1.0, 0.5, 0.25)
    watch.machine[2] = None  # a sample without /proc/stat does not matter ...
    assert watch.busy(0, 100) == (1.0, 0.5, 0.25)
    watch.machine[1] = None  # ... one at a mark does
    assert watch.busy(0, 100) is None
    watch.machine = [(0, 0), (200, 200), (300, 400), (400, 600), (450, 800)]
    watch.samples = [(0.0, 0), (1.0, 100), (2.0, 100), (3.0, 100), (4.0, 100)]
    assert watch.busy(0, 100) is None  # the middle fell between two samples


def test_catch_up_cpu_by_hub_kernel_share_and_busiest() -> None:
    before = {"js": (1.0, 1.0), "js.c01": (0.0, 0.0), "js.c01.k01": (2.0, 0.0)}
    after = {
        "js": (4.0, 2.0),  # 3 user + 1 kernel
        "js.c01": (1.5, 0.5),
        "js.c02": (2.0, 2.0),  # started after the first reading: counted from zero
        "js.c01.k01": (2.5, 0.5),
    }
    kernel, busiest = _by_hub(before, after)
    assert kernel == {"province": 0.25, "city": 2.5 / 6.0, "county": 0.5}
    assert busiest == {
        "province": ("js", 4.0),
        "city": ("js.c02", 4.0),
        "county": ("js.c01.k01", 1.0),
    }


def test_pushes_sent_again_are_counted_by_what_they_met() -> None:
    busy = '503 {"error":{"code":"busy","message":"every ingest place is taken"}}'
    failures = [busy, busy, "503 <html>proxy</html>", "ReadTimeout", "ConnectError: refused"]
    assert _tally(failures) == "503 × 1, 503 busy × 2, ConnectError × 1, ReadTimeout × 1"
    assert _tally([]) == "none"


def test_machine_cpu_reads_proc_stat() -> None:
    sample = machine_cpu()
    if sample is None:
        pytest.skip("no /proc/stat here")
    busy, total = sample
    assert 0 <= busy <= total
    assert total > 0


def test_memory_and_stalls_read_proc() -> None:
    available = memory_available()
    if available is None:
        pytest.skip("no /proc/meminfo here")
    assert available > 0
    counters = stalls()
    assert set(counters) <= {"memory", "io"}
    assert all(isinstance(v, int) and v >= 0 for v in counters.values())


def test_stall_shares_over_the_phase() -> None:
    watch = Watch(store=None, period=0.5)  # type: ignore[arg-type]  # samples given below
    watch.samples = [(0.0, 0), (10.0, 100)]
    watch.stalls = [{"memory": 1_000_000, "io": 0}, {"memory": 2_000_000, "io": 5_000_000}]
    assert watch.stalled() == {"memory": 0.1, "io": 0.5}
    watch.stalls = [{}, {}]  # a kernel without pressure accounting
    assert watch.stalled() == {}
    watch.stalls = [{"io": 0}]  # the phase did not end
    assert watch.stalled() == {}


@pytest.mark.slow
def test_a_small_province_runs_every_phase() -> None:
    args = arguments(
        ["--cities", "1", "--counties", "2", "--backlog", "5", "--sustain-entries", "3"]
        + ["--nice", "0,3,7", "--generators", "1"]
    )
    figures = run(args, 6)
    assert figures.hubs == 4
    assert figures.sustained_entries == 6 * 3
    assert figures.catchup_entries == 6 * 5
    assert figures.accept_passed
    assert figures.task_down_s > 0  # every hub below came to hold the notice
    assert set(figures.rss) == {"js", "js.c01", "js.c01.k01", "js.c01.k02"}
    assert all(peak > 0 for peak, _ in figures.rss.values())
    own = os.getpriority(os.PRIO_PROCESS, 0)  # the hubs inherit it; --nice adds to it
    assert figures.niceness == {
        "js": own,
        "js.c01": min(19, own + 3),
        "js.c01.k01": min(19, own + 7),
        "js.c01.k02": min(19, own + 7),
    }
    assert set(figures.catchup_cpu) == {"province", "city", "county", "stations"}
    assert set(figures.catchup_kernel) == {"province", "city", "county"}
    assert all(0 <= share <= 1 for share in figures.catchup_kernel.values())
    assert figures.catchup_busiest["province"][0] == "js"
    assert figures.catchup_busiest["county"][0] in {"js.c01.k01", "js.c01.k02"}
    assert 0 < figures.catchup_busiest["county"][1] <= figures.catchup_cpu["county"]
    assert all(isinstance(failure, str) for failure in figures.catchup_retried)
    if memory_available() is not None:
        assert figures.least_available is not None and figures.least_available > 0


@pytest.mark.slow
@pytest.mark.pg
def test_a_postgresql_province_with_two_workers() -> None:
    args = arguments(
        ["--cities", "1", "--counties", "1", "--backlog", "5", "--sustain-entries", "3"]
        + ["--province-db", PG_URL, "--province-workers", "2", "--generators", "1"]
    )
    figures = run(args, 4)
    assert figures.catchup_entries == 4 * 5
    assert figures.accept_passed
    assert figures.task_down_s > 0  # the province's workers answer the city's polls
    # the master and its two workers (uvicorn may add a helper process of its own)
    assert figures.processes["js"] >= 3
    assert figures.processes["js.c01"] == figures.processes["js.c01.k01"] == 1
