"""Breaking changes: opinion 2.0 and its upcaster; original bytes untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.compat import check_bundle
from contracts.registry import DEFAULT_BUNDLE, Registry
from contracts.upcast import UPCASTERS, present
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import NodeFactory, example


def _opinion(version: str = "1.1") -> dict[str, Any]:
    return example("opinion", version)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.default()


def test_every_major_step_has_an_upcaster(registry: Registry) -> None:
    for name in registry.names():
        majors = sorted({cv.major for cv in registry.versions(name)})
        for major in majors[:-1]:
            assert (name, major) in UPCASTERS, f"{name} {major}.x → {major + 1}.x"


@pytest.mark.parametrize(
    "category",
    sorted(Registry.default().get("opinion", "2.0").schema["x-upcast-from-1"]["category"]),
)
def test_every_1x_category_upcasts_to_a_valid_2_0_record(registry: Registry, category: str) -> None:
    data = {**_opinion(), "category": category}
    assert registry.get("opinion", "1.1").violations(data) == []
    version, upcast = present(registry, "opinion", "1.1", data)
    assert version == "2.0"
    assert registry.get("opinion", "2.0").violations(upcast) == []
    assert data["category"] == category  # the input is not touched
    coarse, fine = registry.get("opinion", "2.0").schema["x-upcast-from-1"]["category"][category]
    assert (upcast["category"], upcast["subcategory"]) == (coarse, fine)


def test_present_in_same_or_older_major_is_identity(registry: Registry) -> None:
    data = _opinion("2.0")
    assert present(registry, "opinion", "2.0", data) == ("2.0", data)
    assert present(registry, "opinion", "1.1", _opinion(), major=1) == ("1.1", _opinion())


def test_missing_upcaster_is_a_clear_error(registry: Registry) -> None:
    with pytest.raises(GuantongError) as info:
        present(registry, "station", "1.0", {}, major=2)
    assert info.value.code is ErrorCode.UNKNOWN_VERSION


def test_node_presents_1x_records_as_2_0_and_keeps_bytes(make_node: NodeFactory) -> None:
    node = make_node("js", bundle=None)
    (rid,) = node.put("opinion", [(1, {**_opinion(), "category": "transport"})]).record_ids
    _, _, raw_before = next(node.log.iter_entries(node.id))
    shown = node.get("opinion", rid, major=2)
    assert (shown.version, shown.data and shown.data["subcategory"]) == ("2.0", "transport")
    assert node.get("opinion", rid).version == "1.1"
    assert next(node.log.iter_entries(node.id))[2] == raw_before
    assert b'"version":"1.1"' in raw_before


def test_the_table_is_read_from_the_0_minor(tmp_path: Path) -> None:
    """An opinion 2.1 without its own copy of x-upcast-from-1 (the check asks for it on 2.0
    only): the table was read from the newest minor, and every 1.x record raised a KeyError."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    doc = json.loads((bundle / "opinion" / "2.0.json").read_text("utf-8"))
    del doc["x-upcast-from-1"]
    doc["$id"] = "urn:guantong:contract:opinion:2.1"
    (bundle / "opinion" / "2.1.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    versions = index["contracts"]["opinion"]["versions"]
    versions["2.1"] = dict(versions["2.0"])
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    assert check_bundle(bundle) == []
    registry = Registry.from_dir(bundle)
    version, data = present(registry, "opinion", "1.1", {**_opinion(), "category": "transport"})
    assert (version, data["category"], data["subcategory"]) == (
        "2.1",
        "infrastructure",
        "transport",
    )
    assert registry.get("opinion", "2.1").violations(data) == []


@pytest.mark.parametrize("table", [{}, {"category": {"transport": "infrastructure"}}, []])
def test_a_table_the_check_refuses_does_not_crash_a_reading(registry: Registry, table: Any) -> None:
    """A bundle installed without the check: the fallback, other/other, as a last resort."""
    schema = {**registry.get("opinion", "2.0").schema, "x-upcast-from-1": table}
    data = UPCASTERS[("opinion", 1)]({**_opinion(), "category": "transport"}, schema)
    assert (data["category"], data["subcategory"]) == ("other", "other")
