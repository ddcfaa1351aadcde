"""One hub's ingest benchmark (``python -m benchmarks.ingest``, part of ``make bench``) at
the smallest size: it runs, ingests everything it built, and prints both phases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from benchmarks.ingest import main
from benchmarks.pgschema import admin_engine
from tests.conftest import PG_URL


@pytest.mark.parametrize("threads", [1, 3])
def test_the_benchmark_ingests_every_push(threads: int, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--stations", "6", "--entries", "4", "--threads", str(threads)])
    out = capsys.readouterr().out
    plural = "s" if threads > 1 else ""
    assert f"6 pushes × 4 entries (SQLite, {threads} thread{plural}, clustered" in out
    assert "verify (phase 1)" in out and "ingest (whole)" in out


def test_sizes_are_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--threads", "0"])
    with pytest.raises(SystemExit):
        main(["--held", "-1"])
    assert "at least 1" in capsys.readouterr().err


def test_uuid7_record_ids_into_a_hub_that_holds_entries(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--stations", "3", "--entries", "5", "--record-ids", "uuid7", "--held", "12"])
    out = capsys.readouterr().out
    assert "3 pushes × 5 entries (SQLite, 1 thread, uuid7 record ids, 12 entries held" in out
    assert "ingest (whole)" in out


@pytest.mark.pg
def test_on_postgresql_in_a_schema_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    """Each run's hub has a fresh schema, dropped at the end: a second run starts empty too."""
    assert PG_URL is not None
    for _ in range(2):
        main(["--stations", "3", "--entries", "4", "--db", PG_URL])
        assert "3 pushes × 4 entries (PostgreSQL" in capsys.readouterr().out
    engine = admin_engine(PG_URL)
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"),
            {"p": "ingest\\_%"},
        ).all()
    engine.dispose()
    assert left == []
