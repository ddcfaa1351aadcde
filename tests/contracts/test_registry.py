"""The registry: loading, lookup, validation details, hub classification, bundle transport."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.registry import Registry
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import example


def _opinion(version: str = "1.1") -> dict[str, Any]:
    return example("opinion", version)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.default()


def test_default_bundle_lists_every_contract(registry: Registry) -> None:
    assert set(registry.names()) >= {
        "station",
        "deputy",
        "opinion",
        "suggestion",
        "livelihood_project",
        "supervision_item",
        "reception",
        "duty_activity",
        "task_report",
        "node_cert",
        "data_quality",
    }
    assert [cv.version for cv in registry.versions("opinion")] == ["1.0", "1.1", "2.0"]
    assert registry.current("opinion").version == "1.1"
    assert registry.current("station").version == "1.0"


def test_unknown_contract_and_version_are_clear(registry: Registry) -> None:
    with pytest.raises(GuantongError) as info:
        registry.get("petition", "1.0")
    assert info.value.code is ErrorCode.UNKNOWN_CONTRACT
    assert "opinion" in info.value.message
    with pytest.raises(GuantongError) as info:
        registry.get("opinion", "1.7")
    assert info.value.code is ErrorCode.UNKNOWN_VERSION
    with pytest.raises(GuantongError) as info:
        registry.for_writing("opinion", "one")
    assert info.value.code is ErrorCode.UNKNOWN_VERSION


@pytest.mark.parametrize(
    ("mutate", "pointer", "rule"),
    [
        (lambda d: d.pop("channel"), "/channel", "required"),
        (lambda d: d.update(channel="fax"), "/channel", "enum"),
        (lambda d: d.update(rating="5"), "/rating", "type"),
        (lambda d: d.update(rating=9), "/rating", "maximum"),
        (lambda d: d.update(colour="red"), "/colour", "additionalProperties"),
        (lambda d: d.update(received_at="2026-02-30T00:00:00.000Z"), "/received_at", "format"),
        (lambda d: d.update(content="x" * 5000), "/content", "maxLength"),
        (lambda d: d["attachments"][0].update(size=-1), "/attachments/0/size", "minimum"),
    ],
)
def test_violations_name_pointer_and_rule(
    registry: Registry, mutate: Any, pointer: str, rule: str
) -> None:
    data = _opinion()
    mutate(data)
    problems = registry.get("opinion", "1.1").violations(data)
    assert (problems[0].pointer, problems[0].rule) == (pointer, rule)
    assert len(problems[0].message) <= 250


def test_validation_never_mutates_input(registry: Registry) -> None:
    data = _opinion()
    before = json.dumps(data, sort_keys=True)
    registry.get("opinion", "1.1").violations({**data, "extra": 1})
    assert json.dumps(data, sort_keys=True) == before


def test_hub_classification(registry: Registry) -> None:
    assert registry.check("opinion", "1.1", "put", _opinion()) == ("valid", [])
    status, problems = registry.check("opinion", "1.1", "put", {**_opinion(), "rating": 0})
    assert status == "invalid" and problems[0].pointer == "/rating"
    assert registry.check("opinion", "1.9", "put", {}) == ("pending", [])
    assert registry.check("petition", "1.0", "put", {}) == ("pending", [])
    assert registry.check("opinion", "1.1", "del", None) == ("valid", [])


def test_bundle_bytes_round_trip_and_export(registry: Registry, tmp_path: Path) -> None:
    raw = registry.bundle_bytes()
    again = Registry.from_bundle_bytes(raw)
    assert again.bundle_bytes() == raw
    registry.export(tmp_path / "out")
    assert Registry.from_dir(tmp_path / "out").bundle_bytes() == raw


def _station(index: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = index["contracts"]["station"]
    return entry


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.__setitem__("index", []),
        lambda b: b.__setitem__("schemas", []),
        lambda b: b["index"].__setitem__("contracts", []),
        lambda b: b["index"].__setitem__("bundle_version", "two"),
        lambda b: b["index"].__setitem__("bundle_version", True),
        lambda b: b["index"].__setitem__("rules", []),
        lambda b: b["index"]["contracts"].__setitem__("station", "active"),
        lambda b: _station(b["index"]).__setitem__("versions", ["1.0"]),
        lambda b: _station(b["index"])["versions"].__setitem__("1.0", "active"),
        lambda b: _station(b["index"])["versions"].__setitem__("1.x", {"status": "active"}),
        lambda b: _station(b["index"]).__setitem__("current", ["1.0"]),
        lambda b: b["schemas"].__setitem__("station/1.0", []),
        lambda b: b["schemas"].__setitem__("station/1.0", {"type": 5}),
    ],
    ids=[
        "index-not-an-object",
        "schemas-not-an-object",
        "contracts-not-an-object",
        "bundle_version-not-a-number",
        "bundle_version-a-boolean",
        "rules-not-an-object",
        "contract-not-an-object",
        "versions-not-an-object",
        "version-entry-not-an-object",
        "version-not-major-minor",
        "current-not-a-version",
        "schema-not-an-object",
        "schema-not-a-schema",
    ],
)
def test_a_malformed_bundle_is_bundle_invalid(registry: Registry, edit: Any) -> None:
    """A bundle arrives from above in a task: whatever is wrong with it must be a refusal
    the receiver can report and go past (an AttributeError or ValueError from the
    registry stopped the pull of tasks, at every node below, for good)."""
    bundle = json.loads(registry.bundle_bytes())
    edit(bundle)
    with pytest.raises(GuantongError) as refused:
        Registry.from_bundle_bytes(json.dumps(bundle).encode())
    assert refused.value.code is ErrorCode.BUNDLE_INVALID
    with pytest.raises(GuantongError) as refused:
        Registry.from_bundle_bytes(b"{not json")
    assert refused.value.code is ErrorCode.BUNDLE_INVALID


def test_retired_version_is_refused_for_writing(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(Path(__file__).resolve().parents[2] / "contracts" / "bundle", bundle)
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["contracts"]["opinion"]["versions"]["1.0"].update(
        status="retired", retired_from="2026-06-01"
    )
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    registry = Registry.from_dir(bundle)
    with pytest.raises(GuantongError) as info:
        registry.for_writing("opinion", "1.0")
    assert info.value.code is ErrorCode.RETIRED_VERSION
    assert registry.for_writing("opinion", None).version == "1.1"


def test_broken_bundles_are_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(Path(__file__).resolve().parents[2] / "contracts" / "bundle", bundle)
    (bundle / "opinion" / "1.1.json").unlink()
    with pytest.raises(GuantongError) as info:
        Registry.from_dir(bundle)
    assert info.value.code is ErrorCode.BUNDLE_INVALID
    (bundle / "opinion" / "1.1.json").write_text('{"type": "object", "maxLength": 1.5}', "utf-8")
    with pytest.raises(GuantongError) as info:
        Registry.from_dir(bundle)
    assert info.value.code is ErrorCode.BUNDLE_INVALID
