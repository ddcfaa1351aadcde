"""Field privacy: the origin keeps everything, the entry carries the projection."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.compat import check_bundle
from contracts.privacy import mask_value, merge_private, privacy_rules, project
from contracts.registry import Registry
from schemas.errors import ErrorCode, GuantongError
from tests.conftest import NOTE_BUNDLE, NodeFactory, example

SECRET = "province-secret-for-tests"


def _opinion(version: str = "1.1") -> dict[str, Any]:
    return example("opinion", version)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13857012345", "138****2345"),
        ("张三", "张*"),
        ("张", "*"),  # its first character would be all of it
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


def _with(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False, **extra}


_LOCAL = {"type": "string", "x-privacy": "local"}


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (  # behind a $ref: valid JSON Schema, and no projection would follow it
            _with(
                {"name": {"$ref": "#/$defs/name"}},
                **{"$defs": {"name": {"type": "string", "x-privacy": "local"}}},
            ),
            "/$defs/name",
        ),
        (
            _with({"contact": {"type": "array", "prefixItems": [{"x-privacy": "mask"}]}}),
            "/properties/contact/prefixItems/0",
        ),
        (
            _with({"m": {"type": "object", "additionalProperties": {"x-privacy": "hash"}}}),
            "/properties/m/additionalProperties",
        ),
        (  # inside a field already private
            _with({"a": {"x-privacy": "local", "properties": {"b": {"x-privacy": "mask"}}}}),
            "/properties/a/properties/b",
        ),
        # reached by its own name, and behind a $ref too: the field the $ref defines is
        # validated as the private one and would leave in the clear
        (
            _with({"phone": _LOCAL, "other": {"$ref": "#/properties/phone"}}),
            "/properties/other",
        ),
        (_with({"phone": _LOCAL, "copy": {"$ref": "#"}}), "/properties/copy"),
        (  # through the document's own $id
            _with(
                {"phone": _LOCAL, "other": {"$ref": "urn:t:1.0#/properties/phone"}},
                **{"$id": "urn:t:1.0"},
            ),
            "/properties/other",
        ),
        (  # an anchor
            _with({"phone": {**_LOCAL, "$anchor": "ph"}, "other": {"$ref": "#ph"}}),
            "/properties/other",
        ),
        (  # a dynamic anchor, and a subtree holding the mark
            _with(
                {
                    "person": {"$dynamicAnchor": "p", **_with({"phone": _LOCAL})},
                    "other": {"$dynamicRef": "#p"},
                }
            ),
            "/properties/other",
        ),
        (  # a reference that cannot be resolved here might lead to a mark all the same
            _with({"phone": _LOCAL, "other": {"$ref": "urn:elsewhere#/properties/phone"}}),
            "/properties/other",
        ),
        (  # '*' names an array's items in privacy paths: the mark was never applied
            _with({"*": _LOCAL, "text": {"type": "string"}}),
            "property named '*'",
        ),
    ],
)
def test_a_mark_projection_would_not_apply_is_refused(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(GuantongError) as refused:
        privacy_rules(schema)
    assert refused.value.code is ErrorCode.BUNDLE_INVALID and where in refused.value.message


def test_a_field_marked_twice_is_one_rule_or_refused() -> None:
    same = _with({"p": {"anyOf": [{"x-privacy": "hash"}, {"x-privacy": "hash"}]}})
    assert privacy_rules(same).fields == ((("p",), "hash"),)  # hashed once, not twice
    other = _with({"p": {"anyOf": [{"x-privacy": "hash"}, {"x-privacy": "local"}]}})
    with pytest.raises(GuantongError, match="marked x-privacy"):
        privacy_rules(other)


def test_a_masked_value_that_is_no_string_is_masked_as_its_text() -> None:
    rules = privacy_rules(_with({"phone": {"x-privacy": "mask"}}))
    public, private = project({"phone": 13857012345}, rules, None)
    assert public == {"phone": "138****2345"} and private == {"/phone": 13857012345}


def test_a_bundle_with_a_mark_behind_a_ref_is_not_loaded(tmp_path: Path) -> None:
    bundle = Registry.default()
    bundle.export(tmp_path / "b")
    path = tmp_path / "b" / "opinion" / "1.1.json"
    schema = json.loads(path.read_text("utf-8"))
    schema["$defs"] = {"secret": {"type": "string", "x-privacy": "local"}}
    schema["properties"]["reporter_alias"] = {"$ref": "#/$defs/secret"}
    path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    with pytest.raises(GuantongError) as refused:
        Registry.from_dir(tmp_path / "b")
    assert refused.value.code is ErrorCode.BUNDLE_INVALID


def test_a_reference_to_a_field_without_marks_is_kept() -> None:
    schema = _with(
        {"phone": _LOCAL, "text": {"type": "string"}, "title": {"$ref": "#/properties/text"}}
    )
    assert privacy_rules(schema).fields == ((("phone",), "local"),)


def test_a_bundle_with_a_reference_to_a_private_field_is_refused(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """``other_phone`` defined as ``{"$ref": "#/properties/phone"}``, phone kept local: the
    check passed it and a station sent other_phone up in the clear."""
    bundle = tmp_path / "b"
    shutil.copytree(NOTE_BUNDLE, bundle)
    path = bundle / "secret_note" / "1.0.json"
    schema = json.loads(path.read_text("utf-8"))
    schema["properties"]["other_phone"] = {"$ref": "#/properties/name"}
    path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    found = [(v.contract, v.rule) for v in check_bundle(bundle) if v.rule != "open_object"]
    assert found == [("secret_note", "privacy_unreachable")]
    with pytest.raises(GuantongError) as refused:
        Registry.from_dir(bundle)
    assert refused.value.code is ErrorCode.BUNDLE_INVALID
    assert "/properties/other_phone" in refused.value.message
    with pytest.raises(GuantongError):
        make_node("js", bundle=bundle)


_PHONES = _with(
    {
        "text": {"type": "string"},
        "phones": {"type": "array", "items": {"type": "string", "x-privacy": "local"}},
        "groups": {"type": "array", "items": {"type": "array", "items": _LOCAL}},
    }
)


@pytest.mark.parametrize("count", [1, 2, 3, 12])
def test_local_array_items_stay_back_and_come_back_in_order(count: int) -> None:
    """Every item of an array whose ``items`` are ``local`` is kept back: they were deleted
    one by one at indices the earlier deletions had moved (the wrong originals kept, or an
    IndexError), and put back into an emptied list (an IndexError on every read)."""
    phones = [f"1380000{i:04d}" for i in range(count)]
    data = {"text": "t", "phones": phones, "groups": [phones[:2], [], phones[-1:]]}
    public, private = project(data, privacy_rules(_PHONES), None)
    assert public == {"text": "t", "phones": [], "groups": [[], [], []]}
    assert private["/phones/0"] == phones[0] and private[f"/phones/{count - 1}"] == phones[-1]
    assert merge_private(public, private) == data
    # the store hands the map back with its keys sorted as text: /phones/10 before /phones/2
    stored = json.loads(json.dumps(private, sort_keys=True))
    assert merge_private(public, stored) == data


def test_a_station_keeps_local_array_items_and_shows_them(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(NOTE_BUNDLE, bundle)
    path = bundle / "secret_note" / "1.0.json"
    schema = json.loads(path.read_text("utf-8"))
    schema["properties"]["phones"] = {"type": "array", "items": _LOCAL}
    path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    assert [v for v in check_bundle(bundle) if v.rule != "open_object"] == []
    node = make_node("js", bundle=bundle)
    for phones in (["13800000001"], ["13800000001", "13800000002", "13800000003"]):
        data = {"text": "t", "phones": phones}
        (rid,) = node.put("secret_note", [(1, data)]).record_ids
        assert node.get("secret_note", rid).data == data
    for _, _, raw in node.log.iter_entries(node.id):
        assert b"1380000000" not in raw
