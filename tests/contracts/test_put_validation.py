"""Validation at the origin: `guantong put` refuses invalid records, writes nothing of the batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.cli import app
from tests.conftest import example

runner = CliRunner()


def _opinion(version: str = "1.1") -> dict[str, Any]:
    return example("opinion", version)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GUANTONG_PROVINCE_SECRET", "test-secret")
    path = tmp_path / "s1"
    result = runner.invoke(
        app,
        [
            "init",
            "--id",
            "js.wx.jy.s1",
            "--tier",
            "station",
            "--parent",
            "http://127.0.0.1:9",
            "--home",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.stderr
    return path


def _seq(home: Path) -> int:
    result = runner.invoke(app, ["status", "--home", str(home), "--json"])
    seq: int = json.loads(result.stdout)["head"]["seq"]
    return seq


def test_valid_batch_is_written(home: Path) -> None:
    body = "\n".join(_line(_opinion()) for _ in range(3)) + "\n"
    result = runner.invoke(app, ["put", "opinion", "--home", str(home)], input=body)
    assert result.exit_code == 0, result.stderr
    assert _seq(home) == 3


def _bad(**changes: Any) -> dict[str, Any]:
    record = _opinion()
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


@pytest.mark.parametrize(
    ("args", "second", "expected"),
    [
        (
            [],
            _line(_bad(channel=None)),
            "error: contract_violation: line 2: opinion 1.1 /channel: required:",
        ),
        (
            [],
            _line(_bad(rating="5")),
            "error: contract_violation: line 2: opinion 1.1 /rating: type:",
        ),
        (
            [],
            _line(_bad(mood="angry")),
            "error: contract_violation: line 2: opinion 1.1 /mood: additionalProperties:",
        ),
        (
            [],
            _line(_bad(channel="fax")),
            "error: contract_violation: line 2: opinion 1.1 /channel: enum:",
        ),
        (
            [],
            _line(_bad(content="长" * 40_000)),
            "error: contract_violation: line 2: opinion 1.1 /content: maxLength:",
        ),
        (
            [],
            _line(_bad(content="路灯\x00坏了")),
            "error: nul_in_text: line 2: opinion /content: text may not hold U+0000",
        ),
        (  # a private field too: the origin keeps it in its own store
            [],
            _line(_bad(reporter_name="\x00")),
            "error: nul_in_text: line 2: opinion /reporter_name:",
        ),
        ([], _line(_bad(rating=4.5)), "error: float_not_allowed: line 2:"),
        ([], _line(_bad(rating=4.0)), "error: float_not_allowed: line 2:"),
        ([], b'{"content": "\xff"}', "error: malformed: line 2:"),
        (
            ["--version", "1.9"],
            _line(_opinion()),
            "error: unknown_version: contract opinion has no version 1.9",
        ),
    ],
)
def test_invalid_record_refused_with_pointer_rule_and_line(
    home: Path, args: list[str], second: str | bytes, expected: str
) -> None:
    tail = second if isinstance(second, bytes) else second.encode("utf-8")
    raw = _line(_opinion()).encode("utf-8") + b"\n" + tail + b"\n"
    result = runner.invoke(app, ["put", "opinion", "--home", str(home), *args], input=raw)
    assert result.exit_code == 1
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _seq(home) == 0


def test_unknown_contract(home: Path) -> None:
    result = runner.invoke(app, ["put", "petition", "--home", str(home)], input='{"a":1}')
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown_contract: unknown contract 'petition'")


def test_get_presents_in_newer_major(home: Path) -> None:
    result = runner.invoke(
        app, ["put", "opinion", "--home", str(home), "--json"], input=_line(_opinion())
    )
    rid = json.loads(result.stdout)["ids"][0]
    shown = json.loads(
        runner.invoke(app, ["get", "opinion", rid, "--major", "2", "--home", str(home)]).stdout
    )
    assert shown["version"] == "2.0" and shown["data"]["subcategory"] == "elderly_care"
    assert shown["data"]["reporter_phone"] == "13857012345"  # the origin shows its private fields
