"""Field privacy: the origin keeps everything, the entry carries the projection."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from contracts.privacy import mask_value, merge_private, privacy_rules, project
from contracts.registry import Registry
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import NodeFactory, example

SECRET = "province-secret-for-tests"


def _opinion(version: str = "1.1") -> dict[str, Any]:
    return example("opinion", version)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13857012345", "138****2345"),
        ("张三", "张*"),
        ("王小明", "王*明"),
        ("1234567", "1*****7"),
        ("", ""),
    ],
)
def test_mask_value(value: str, masked: str) -> None:
    assert mask_value(value) == masked


def test_projection_and_merge_round_trip() -> None:
    rules = privacy_rules(Registry.default().get("opinion", "1.1").schema)
    data = _opinion()
    public, private = project(data, rules, SECRET.encode())
    assert "reporter_name" not in public
    assert public["reporter_phone"] == "138****2345"
    expected = hmac.new(SECRET.encode(), b"13857012345", hashlib.sha256).hexdigest()
    assert public["reporter_key"] == expected
    assert set(private) == {"/reporter_name", "/reporter_phone", "/reporter_key"}
    assert merge_private(public, private) == data
    assert Registry.default().get("opinion", "1.1").violations(public) == []


def test_nested_array_fields_are_projected() -> None:
    schema = json.loads(
        (
            Path(__file__).parents[1] / "fixtures" / "note_bundle" / "secret_note" / "1.0.json"
        ).read_text()
    )
    rules = privacy_rules(schema)
    data = {"text": "t", "contacts": [{"phone": "13900001111", "role": "a"}, {"role": "b"}]}
    public, private = project(data, rules, None)
    assert public["contacts"][0]["phone"] == "139****1111"
    assert private == {"/contacts/0/phone": "13900001111"}
    assert merge_private(public, private) == data


def test_hash_without_secret_is_refused() -> None:
    rules = privacy_rules(Registry.default().get("opinion", "1.1").schema)
    with pytest.raises(GuantongError) as info:
        project(_opinion(), rules, None)
    assert info.value.code is ErrorCode.PRIVACY_SECRET_MISSING


def test_phone_never_appears_in_entry_bytes_but_get_shows_it(make_node: NodeFactory) -> None:
    node = make_node("js.wx.jy.s1", "station", bundle=None, secret=SECRET)
    records = []
    for i in range(20):
        record = _opinion()
        record["reporter_phone"] = f"1385701{i:04d}"
        record["reporter_key"] = f"1385701{i:04d}"
        records.append((i + 1, record))
    result = node.put("opinion", records)
    for _, _, raw in node.log.iter_entries(node.id):
        assert b"13857010" not in raw
        assert "黄金土".encode() not in raw
    shown = node.get("opinion", result.record_ids[3])
    assert shown.data is not None
    assert shown.data["reporter_phone"] == "13857010003"
    assert shown.data["reporter_name"] == "黄金土"
    # an update that drops the phone drops its private original too
    update = {k: v for k, v in records[3][1].items() if not k.startswith("reporter_")}
    node.put("opinion", [(1, {"id": result.record_ids[3], **update})])
    again = node.get("opinion", result.record_ids[3])
    assert again.data is not None and "reporter_phone" not in again.data
