"""`guantong contracts check` and `guantong sample` from the command line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.registry import DEFAULT_BUNDLE, Registry
from node.cli import app

runner = CliRunner()


def test_shipped_bundle_checks_clean() -> None:
    result = runner.invoke(app, ["contracts", "check"])
    assert result.exit_code == 0, result.stderr
    assert "every minor backward compatible" in result.stdout


def test_breaking_minor_is_reported_with_pointer_and_rule(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    schema = json.loads((bundle / "opinion" / "1.1.json").read_text("utf-8"))
    schema["required"].append("title")
    schema["properties"]["content"]["maxLength"] = 100
    (bundle / "opinion" / "1.2.json").write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["contracts"]["opinion"]["versions"]["1.2"] = dict(
        index["contracts"]["opinion"]["versions"]["1.1"]
    )
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    result = runner.invoke(app, ["contracts", "check", str(bundle), "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: incompatible_change:")
    found = {
        (v["old_version"], v["new_version"], v["rule"], v["pointer"])
        for v in json.loads(result.stdout)
    }
    assert ("1.0", "1.2", "newly_required", "/required/5") in found
    assert ("1.1", "1.2", "newly_required", "/required/5") in found
    assert ("1.0", "1.2", "limit_tightened", "/properties/content/maxLength") in found
    assert ("1.1", "1.2", "limit_tightened", "/properties/content/maxLength") in found


@pytest.mark.parametrize(
    ("edit", "pointer"),
    [
        (
            lambda i: i["contracts"]["station"]["versions"].__setitem__("1.0", "active"),
            "/contracts/station/versions/1.0",
        ),
        (lambda i: i.__setitem__("bundle_version", "two"), "/bundle_version"),
    ],
    ids=["version-entry-not-an-object", "bundle_version-not-a-number"],
)
def test_a_malformed_index_is_a_finding_not_a_traceback(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], pointer: str
) -> None:
    """Both passed the check and made the registry raise an AttributeError or ValueError:
    `contracts check` and `contracts publish` printed a traceback."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    edit(index)
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    result = runner.invoke(app, ["contracts", "check", str(bundle), "--json"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bundle_invalid:")
    found = [(v["rule"], v["pointer"]) for v in json.loads(result.stdout)]
    assert found == [("invalid_index", pointer)]
    home = tmp_path / "province"
    init = ["init", "--id", "js", "--tier", "province", "--home", str(home)]
    assert runner.invoke(app, init).exit_code == 0
    result = runner.invoke(app, ["contracts", "publish", str(bundle), "--home", str(home)])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bundle_invalid:")


def test_a_missing_or_broken_bundle_is_no_incompatible_change(tmp_path: Path) -> None:
    """A folder that is not there, a schema that is not JSON: the bundle is broken
    (bundle_invalid), not a minor that breaks an earlier one (incompatible_change)."""
    result = runner.invoke(app, ["contracts", "check", str(tmp_path / "no-such-dir")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: not_found: no bundle folder at"), result.stderr
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    (bundle / "opinion" / "1.0.json").write_text("{bad", "utf-8")
    result = runner.invoke(app, ["contracts", "check", str(bundle)])
    assert result.exit_code == 1 and "invalid_json" in result.stdout
    assert result.stderr.startswith("error: bundle_invalid: 1 problem(s)"), result.stderr


def test_sample_is_valid_deterministic_ndjson() -> None:
    first = runner.invoke(app, ["sample", "opinion", "--count", "50", "--seed", "4"])
    again = runner.invoke(app, ["sample", "opinion", "--count", "50", "--seed", "4"])
    assert first.exit_code == 0 and first.stdout == again.stdout
    cv = Registry.default().current("opinion")
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(lines) == 50
    for record in lines:
        record.pop("id")
        assert cv.violations(record) == []
    bad = runner.invoke(app, ["sample", "petition"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: unknown_contract:")
