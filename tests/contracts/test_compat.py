"""Tests of contracts.compat: the backward-compatibility checker for contract minors."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.compat import RULES, Violation, check_bundle, compare_installed, compare_schemas
from contracts.registry import Registry

BUNDLE = Path(__file__).resolve().parents[2] / "contracts" / "bundle"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]


def obj(properties: Schema, required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return schema | ({"required": required} if required else {}) | extra


def field(**keywords: Any) -> Schema:
    """A document with one optional property `a`."""
    return obj({"a": keywords})


def compare(old: Schema, new: Schema) -> list[Violation]:
    return compare_schemas(old, new, contract="c", old_version="1.0", new_version="1.1")


def found(violations: list[Violation]) -> set[tuple[str, str, str, str]]:
    return {(v.old_version, v.new_version, v.rule, v.pointer) for v in violations}


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(BUNDLE, target)
    return target


def publish(bundle: Path, name: str, version: str, doc: Schema | str) -> None:
    """Add `<name>/<version>.json` (a document, or raw text) and list it in index.json."""
    index = read(bundle / "index.json")
    versions = index["contracts"][name]["versions"]
    versions[version] = dict(next(iter(versions.values())), active_from="2027-01-01")
    write(bundle / "index.json", index)
    path = bundle / name / f"{version}.json"
    if isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    else:
        write(path, doc | {"$id": f"urn:guantong:contract:{name}:{version}"})


def opinion(version: str) -> Schema:
    doc: Schema = read(BUNDLE / "opinion" / f"{version}.json")
    return doc


# --- the shipped bundle -------------------------------------------------------------------------


def test_shipped_bundle_has_no_violations() -> None:
    assert check_bundle(BUNDLE) == []


def test_majors_are_never_compared() -> None:
    # 1.0 → 2.0 breaks (subcategory is required, categories were replaced) ...
    direct = found(
        compare_schemas(
            opinion("1.0"), opinion("2.0"), contract="opinion", old_version="1.0", new_version="2.0"
        )
    )
    assert ("1.0", "2.0", "newly_required", "/required/2") in direct
    assert ("1.0", "2.0", "enum_value_removed", "/properties/category/enum") in direct
    # ... but a bundle never compares across majors.
    assert check_bundle(BUNDLE) == []


def test_later_minors_of_a_new_major_are_compared_within_it(bundle: Path) -> None:
    newer = opinion("2.0")
    del newer["properties"]["subcategory"]["enum"][-1]
    publish(bundle, "opinion", "2.1", newer)
    assert found(check_bundle(bundle)) == {
        ("2.0", "2.1", "enum_value_removed", "/properties/subcategory/enum")
    }


# --- one minimal pair per rule --------------------------------------------------------------------

STRING = {"type": "string"}

RULE_CASES: list[tuple[str, Schema, Schema, str]] = [
    ("removed_property", obj({"a": STRING, "b": STRING}), obj({"a": STRING}), "/properties/b"),
    ("type_changed", field(type=["string", "null"]), field(type="string"), "/properties/a/type"),
    ("newly_required", obj({"a": STRING}), obj({"a": STRING}, ["a"]), "/required/0"),
    ("enum_value_removed", field(enum=["x", "y"]), field(enum=["x"]), "/properties/a/enum"),
    ("const_changed", field(const="x"), field(const="y"), "/properties/a/const"),
    (
        "limit_tightened",
        field(type="string", maxLength=200),
        field(type="string", maxLength=150),
        "/properties/a/maxLength",
    ),
    (
        "pattern_changed",
        field(type="string", pattern="^a"),
        field(type="string", pattern="^b"),
        "/properties/a/pattern",
    ),
    (
        "format_added",
        field(type="string"),
        field(type="string", format="uuid"),
        "/properties/a/format",
    ),
    (
        "format_changed",
        field(type="string", format="date"),
        field(type="string", format="date-time"),
        "/properties/a/format",
    ),
    (
        "open_object",
        obj({"a": obj({})}),
        obj({"a": obj({}, additionalProperties=True)}),
        "/properties/a/additionalProperties",
    ),
    (
        "x_privacy_changed",
        field(type="string", **{"x-privacy": "mask"}),
        field(type="string", **{"x-privacy": "hash"}),
        "/properties/a/x-privacy",
    ),
    (
        "structure_changed",
        field(type="string"),
        field(type="string", **{"not": {"const": "x"}}),
        "/properties/a/not",
    ),
]


@pytest.mark.parametrize(
    ("rule", "old", "new", "pointer"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_each_rule_on_a_minimal_pair(rule: str, old: Schema, new: Schema, pointer: str) -> None:
    [violation] = compare(old, new)
    assert (violation.rule, violation.pointer) == (rule, pointer)
    assert violation.rule in RULES
    assert (violation.contract, violation.old_version, violation.new_version) == ("c", "1.0", "1.1")
    assert str(violation) == f"c 1.0→1.1 {pointer}: {rule}: {violation.message}"


def test_every_compare_rule_has_a_case() -> None:
    bundle_rules = {
        "missing_file",
        "unlisted_file",
        "invalid_json",
        "invalid_index",
        "invalid_schema",
        "number_type",
        "missing_upcast_table",
        "privacy_unreachable",
        "missing_upcaster",
        "invalid_upcast_table",
        "incomplete_upcast_table",
    }
    assert {c[0] for c in RULE_CASES} == set(RULES) - bundle_rules
    assert len(RULES) == len(set(RULES))


def test_message_names_the_field_and_both_values() -> None:
    [violation] = compare(
        obj({"a": field(type="string", maxLength=200)}),
        obj({"a": field(type="string", maxLength=150)}),
    )
    assert violation.pointer == "/properties/a/properties/a/maxLength"
    assert "'a.a'" in violation.message
    assert "200" in violation.message and "150" in violation.message


def test_a_new_required_property_is_newly_required() -> None:
    [violation] = compare(obj({"a": STRING}), obj({"a": STRING, "b": STRING}, ["b"]))
    assert (violation.rule, violation.pointer) == ("newly_required", "/required/0")
    assert "'b'" in violation.message


def test_removed_things_point_into_the_old_document() -> None:
    [removed] = compare(obj({"a/b~c": STRING, "d": STRING}), obj({"d": STRING}))
    assert (removed.rule, removed.pointer) == ("removed_property", "/properties/a~1b~0c")
    assert "1.0 document" in removed.message
    [privacy] = compare(field(type="string", **{"x-privacy": "local"}), field(type="string"))
    assert (privacy.rule, privacy.pointer) == ("x_privacy_changed", "/properties/a/x-privacy")


@pytest.mark.parametrize(
    ("old", "new", "pointer"),
    [
        (field(type="string", minLength=1), field(type="string", minLength=2), "minLength"),
        (field(type="string"), field(type="string", maxLength=10), "maxLength"),
        (field(type="integer", maximum=5), field(type="integer", maximum=4), "maximum"),
        (
            field(type="integer", maximum=5),
            field(type="integer", exclusiveMaximum=5),
            "exclusiveMaximum",
        ),
        (field(type="integer", minimum=0), field(type="integer", minimum=1), "minimum"),
        (field(type="integer"), field(type="integer", exclusiveMinimum=0), "exclusiveMinimum"),
        (field(type="integer", multipleOf=2), field(type="integer", multipleOf=4), "multipleOf"),
        (field(type="array", maxItems=10), field(type="array", maxItems=5), "maxItems"),
        (field(type="array"), field(type="array", minItems=1), "minItems"),
        (field(type="array"), field(type="array", uniqueItems=True), "uniqueItems"),
        (
            field(type="object", maxProperties=3, additionalProperties=False),
            field(type="object", maxProperties=2, additionalProperties=False),
            "maxProperties",
        ),
    ],
)
def test_limits_tightened(old: Schema, new: Schema, pointer: str) -> None:
    [violation] = compare(old, new)
    assert (violation.rule, violation.pointer) == ("limit_tightened", f"/properties/a/{pointer}")


# --- changes a minor may make -------------------------------------------------------------------

OLD = obj(
    {
        "s": {
            "title": "文本",
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": "^[a-z]+$",
            "format": "uuid",
            "x-ref": "deputy",
        },
        "n": {"type": "integer", "minimum": 1, "maximum": 5, "multipleOf": 2},
        "e": {"type": "string", "enum": ["a", "b"]},
        "list": {"type": "array", "items": {"type": "string"}, "maxItems": 3, "uniqueItems": True},
        "r": STRING,
    },
    ["r"],
)


def changed(path: str, **keywords: Any) -> Schema:
    """OLD with keywords of property `path` replaced (a None value deletes the keyword)."""
    new = copy.deepcopy(OLD)
    target = new if path == "" else new["properties"][path]
    for key, value in keywords.items():
        key = key.replace("_", "-") if key.startswith("x_") else key
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return new


ALLOWED: dict[str, Schema] = {
    "identical": copy.deepcopy(OLD),
    "optional property added": changed("", properties=OLD["properties"] | {"z": STRING}),
    "enum value added": changed("e", enum=["a", "b", "c"]),
    "maxLength relaxed": changed("s", maxLength=300),
    "minLength relaxed": changed("s", minLength=0),
    "maxLength removed": changed("s", maxLength=None),
    "pattern removed": changed("s", pattern=None),
    "format removed": changed("s", format=None),
    "maximum relaxed": changed("n", maximum=10),
    "minimum removed": changed("n", minimum=None),
    "same integer bound, exclusive": changed("n", maximum=None, exclusiveMaximum=6),
    "same integer bound, fractional": changed("n", maximum=None, exclusiveMaximum=5.5),
    "multipleOf relaxed": changed("n", multipleOf=1),
    "null added to type": changed("n", type=["integer", "null"]),
    "integer widened to number": changed("n", type="number"),
    "maxItems relaxed": changed("list", maxItems=4),
    "uniqueItems dropped": changed("list", uniqueItems=None),
    "required dropped": changed("", required=[]),
    "annotations changed": changed(
        "s",
        title="标题",
        description="说明",
        examples=["a"],
        x_ref="station",
        **{"$comment": "note"},
    ),
    "root annotation added": changed("", **{"x-upcast-from-1": {"a": 1}, "title": "新"}),
    "moved into $defs": changed(
        "",
        **{
            "$defs": {"s": OLD["properties"]["s"]},
            "properties": OLD["properties"] | {"s": {"$ref": "#/$defs/s"}},
        },
    ),
    "anyOf branch added": changed("r", type=None, anyOf=[STRING, {"type": "null"}]),
    "provably wider `not`": changed("r", **{"not": {"type": "integer"}}),
}


@pytest.mark.parametrize("new", ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed_changes_are_not_reported(new: Schema) -> None:
    assert compare(OLD, new) == []


# --- the structural walk --------------------------------------------------------------------------


def test_refs_are_followed_and_pointers_name_the_definition() -> None:
    def doc(limit: int) -> Schema:
        tree = obj(
            {
                "name": {"type": "string", "maxLength": limit},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            }
        )
        return {"$defs": {"node": tree}, "$ref": "#/$defs/node"}

    [violation] = compare(doc(10), doc(5))  # recursive: must terminate
    assert (violation.rule, violation.pointer) == (
        "limit_tightened",
        "/$defs/node/properties/name/maxLength",
    )


def test_items_and_prefix_items() -> None:
    old = field(type="array", items={"type": "string", "maxLength": 3})
    new = field(type="array", prefixItems=[STRING], items={"type": "string", "maxLength": 2})
    assert found(compare(old, new)) == {
        ("1.0", "1.1", "limit_tightened", "/properties/a/items/maxLength")
    }


def test_any_of_branch_removed_or_tightened() -> None:
    old = field(anyOf=[STRING, {"type": "integer"}])
    [removed] = compare(old, field(anyOf=[STRING]))
    assert (removed.rule, removed.pointer) == ("structure_changed", "/properties/a/anyOf/1")
    [tight] = compare(old, field(anyOf=[STRING, {"type": "integer", "maximum": 3}]))
    assert (tight.rule, tight.pointer) == ("limit_tightened", "/properties/a/anyOf/1/maximum")


def test_containment_catches_what_the_walk_cannot_locate() -> None:
    def doc(values: list[str]) -> Schema:
        return field(type="string", **{"not": {"$ref": "#/$defs/x"}}) | {
            "$defs": {"x": {"enum": values}}
        }

    [violation] = compare(doc(["x"]), doc(["x", "y"]))
    assert (violation.rule, violation.pointer) == ("structure_changed", "")


def test_output_is_sorted_and_deterministic() -> None:
    old = obj({"b": STRING, "a": {"type": "string", "maxLength": 5}, "c": STRING})
    new = obj({"a": {"type": "string", "maxLength": 4}}, ["a"])
    first = compare(old, new)
    assert first == compare(copy.deepcopy(old), copy.deepcopy(new))
    assert [v.pointer for v in first] == sorted(v.pointer for v in first)
    assert len(first) == 4


# --- check_bundle ---------------------------------------------------------------------------------


def test_bundle_minor_that_removes_a_property(bundle: Path) -> None:
    newer = opinion("1.1")
    del newer["properties"]["urgency"]
    publish(bundle, "opinion", "1.2", newer)
    assert found(check_bundle(bundle)) == {
        ("1.1", "1.2", "removed_property", "/properties/urgency")
    }


def test_bundle_minor_that_makes_a_field_required(bundle: Path) -> None:
    newer = opinion("1.1")
    newer["required"].append("location")
    publish(bundle, "opinion", "1.2", newer)
    pointer = f"/required/{len(newer['required']) - 1}"
    assert found(check_bundle(bundle)) == {
        ("1.0", "1.2", "newly_required", pointer),
        ("1.1", "1.2", "newly_required", pointer),
    }


def test_every_earlier_minor_is_compared(bundle: Path) -> None:
    # 1.0 has location maxLength 200, 1.1 relaxes it to 300; a 1.2 at 250 is fine for 1.0 data
    # but rejects 1.1 data.
    newer = opinion("1.1")
    newer["properties"]["location"]["maxLength"] = 250
    publish(bundle, "opinion", "1.2", newer)
    assert found(check_bundle(bundle)) == {
        ("1.1", "1.2", "limit_tightened", "/properties/location/maxLength")
    }


def test_bundle_file_deleted(bundle: Path) -> None:
    (bundle / "opinion" / "1.1.json").unlink()
    [violation] = check_bundle(bundle)
    assert (violation.rule, violation.old_version, violation.new_version) == (
        "missing_file",
        "1.1",
        "1.1",
    )
    assert str(violation).startswith("opinion 1.1: missing_file: opinion/1.1.json")
    (bundle / "index.json").unlink()
    assert {v.rule for v in check_bundle(bundle)} == {"missing_file", "unlisted_file"}


def test_bundle_unlisted_file(bundle: Path) -> None:
    shutil.copy(bundle / "opinion" / "1.1.json", bundle / "opinion" / "1.9.json")
    [violation] = check_bundle(bundle)
    assert (violation.contract, violation.rule, violation.new_version) == (
        "opinion",
        "unlisted_file",
        "1.9",
    )


def test_bundle_invalid_json(bundle: Path) -> None:
    publish(bundle, "opinion", "1.2", '{"type": "object",')
    assert found(check_bundle(bundle)) == {("1.2", "1.2", "invalid_json", "")}


@pytest.mark.parametrize("text", ['{"type": NaN}', '{"type": "object", "type": "string"}'])
def test_bundle_json_that_python_would_accept(bundle: Path, text: str) -> None:
    publish(bundle, "opinion", "1.2", text)
    assert found(check_bundle(bundle)) == {("1.2", "1.2", "invalid_json", "")}


@pytest.mark.parametrize(
    "doc",
    [
        {"$schema": DRAFT, "type": "strin"},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"$schema": DRAFT, "type": "string", "pattern": "("},
        {"$schema": DRAFT, "$ref": "#/$defs/missing"},
        ["not", "an", "object"],
    ],
)
def test_bundle_invalid_schema(bundle: Path, doc: Any) -> None:
    publish(bundle, "opinion", "1.2", json.dumps(doc))
    assert found(check_bundle(bundle)) == {("1.2", "1.2", "invalid_schema", "")}


def test_bundle_open_object_and_number_type(bundle: Path) -> None:
    newer = opinion("1.1")
    newer["properties"]["attachments"]["items"].pop("additionalProperties")
    newer["properties"]["rating"]["type"] = "number"
    publish(bundle, "opinion", "1.2", newer)
    # Opening a closed object is reported once, for the document, not once per earlier minor.
    assert found(check_bundle(bundle)) == {
        ("1.2", "1.2", "open_object", "/properties/attachments/items"),
        ("1.2", "1.2", "number_type", "/properties/rating/type"),
    }


def test_bundle_privacy_behind_a_ref(bundle: Path) -> None:
    newer = opinion("1.1")
    newer["$defs"] = {"alias": {"type": "string", "x-privacy": "local"}}
    newer["properties"]["reporter_alias"] = {"$ref": "#/$defs/alias"}
    publish(bundle, "opinion", "1.2", newer)
    assert found(check_bundle(bundle)) == {("1.2", "1.2", "privacy_unreachable", "")}


def test_bundle_new_major_without_an_upcaster(bundle: Path) -> None:
    """A table alone does not upcast: this release's code has no deputy 1 -> 2 upcaster,
    so hubs could not present older deputy records in 2.0."""
    newer = read(bundle / "deputy" / "1.0.json") | {"x-upcast-from-1": {}}
    publish(bundle, "deputy", "2.0", newer)
    assert found(check_bundle(bundle)) == {("2.0", "2.0", "missing_upcaster", "")}


def test_publishing_keeps_every_installed_version_as_it_was(tmp_path: Path) -> None:
    installed = Registry.from_dir(BUNDLE)
    narrowed = tmp_path / "narrowed"
    shutil.copytree(BUNDLE, narrowed)
    index = read(narrowed / "index.json")
    index["bundle_version"] = installed.bundle_version + 1
    write(narrowed / "index.json", index)
    doc = read(narrowed / "opinion" / "1.0.json")
    doc["required"] = [*doc.get("required", []), "location"]
    write(narrowed / "opinion" / "1.0.json", doc)
    (changed,) = compare_installed(installed, Registry.from_dir(narrowed))
    assert changed.startswith("opinion 1.0 is published and changed in place")
    dropped = tmp_path / "dropped"
    shutil.copytree(BUNDLE, dropped)
    index = read(dropped / "index.json")
    index["bundle_version"] = installed.bundle_version + 1
    del index["contracts"]["deputy"]
    write(dropped / "index.json", index)
    shutil.rmtree(dropped / "deputy")
    problems = compare_installed(installed, Registry.from_dir(dropped))
    assert problems and all("deputy" in p and "retired" in p for p in problems)
    retitled = tmp_path / "retitled"  # annotations may change
    shutil.copytree(BUNDLE, retitled)
    doc = read(retitled / "opinion" / "1.0.json")
    doc["title"] = "群众意见（新标题）"
    write(retitled / "opinion" / "1.0.json", doc)
    assert compare_installed(installed, Registry.from_dir(retitled)) == []


def test_bundle_missing_upcast_table(bundle: Path) -> None:
    newer = read(bundle / "opinion" / "2.0.json")
    del newer["x-upcast-from-1"]
    write(bundle / "opinion" / "2.0.json", newer)
    assert found(check_bundle(bundle)) == {("2.0", "2.0", "missing_upcast_table", "")}


_TABLE = opinion("2.0")["x-upcast-from-1"]["category"]


@pytest.mark.parametrize(
    ("table", "rule"),
    [
        ({}, "invalid_upcast_table"),  # an object, as missing_upcast_table asks; no category
        ({"category": []}, "invalid_upcast_table"),
        ({"category": _TABLE | {"transport": "infrastructure"}}, "invalid_upcast_table"),
        ({"category": _TABLE | {"transport": ["infrastructure", "road"]}}, "invalid_upcast_table"),
        ({"category": _TABLE | {"transport": ["economy", "transport"]}}, "invalid_upcast_table"),
        ({"category": {"transport": ["infrastructure", "transport"]}}, "incomplete_upcast_table"),
    ],
    ids=["empty", "not-an-object", "not-a-pair", "not-in-2.0", "x-category", "incomplete"],
)
def test_bundle_upcast_table_the_upcaster_cannot_use(bundle: Path, table: Any, rule: str) -> None:
    """The check asked only for an object: `{}` passed and every upcast raised a KeyError,
    and a table missing a 1.x category passed and turned it into other/other."""
    doc = read(bundle / "opinion" / "2.0.json")
    doc["x-upcast-from-1"] = table
    write(bundle / "opinion" / "2.0.json", doc)
    assert {(v.rule, v.pointer) for v in check_bundle(bundle)} == {(rule, "/x-upcast-from-1")}


def test_bundle_upcast_table_missing_a_value_of_a_later_1_x(bundle: Path) -> None:
    newer = opinion("1.1")
    newer["properties"]["category"]["enum"].append("housing")
    publish(bundle, "opinion", "1.2", newer)
    [violation] = check_bundle(bundle)
    assert (violation.new_version, violation.rule) == ("2.0", "incomplete_upcast_table")
    assert "'housing'" in violation.message and "1.2" in violation.message
    doc = read(bundle / "opinion" / "2.0.json")
    doc["x-upcast-from-1"]["category"]["housing"] = ["infrastructure", "housing"]
    write(bundle / "opinion" / "2.0.json", doc)
    assert check_bundle(bundle) == []


def test_bundle_invalid_index(bundle: Path) -> None:
    index = read(bundle / "index.json")
    index["contracts"]["opinion"]["versions"]["1.x"] = {"status": "active"}
    write(bundle / "index.json", index)
    assert found(check_bundle(bundle)) == {("", "", "invalid_index", "/contracts/opinion")}
    (bundle / "index.json").write_text("{", encoding="utf-8")
    assert {v.rule for v in check_bundle(bundle)} >= {"invalid_json", "unlisted_file"}


def test_bundle_output_is_sorted(bundle: Path) -> None:
    (bundle / "opinion" / "1.0.json").unlink()
    shutil.copy(bundle / "warning" / "1.0.json", bundle / "deputy" / "1.5.json")
    result = check_bundle(bundle)
    assert [(v.contract, v.new_version) for v in result] == [
        ("deputy", "1.5"),
        ("opinion", "1.0"),
    ]
    assert result == check_bundle(bundle)


def test_a_format_added_under_a_combinator_is_not_proven_compatible() -> None:
    """The containment check takes `format` as an annotation; the registry asserts it, so
    a minor wrapping a string in an anyOf with a format narrows it all the same."""
    old = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    new = {
        "type": "object",
        "properties": {"a": {"anyOf": [{"type": "string", "format": "date"}]}},
        "additionalProperties": False,
    }
    found = compare_schemas(old, new, contract="c", old_version="1.0", new_version="1.1")
    assert [v.rule for v in found] == ["structure_changed"]
