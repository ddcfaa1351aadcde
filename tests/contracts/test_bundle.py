"""Checks of the v1 data-contract bundle (contracts/bundle) against its conventions.

The bundle is data, not code: these tests are what keeps it honest. They check that index.json
and the schema files agree, that every document is a closed JSON Schema 2020-12 object schema
with Chinese titles and descriptions everywhere, integers only, bounded strings and arrays, the
fixed patterns for times, dates, uuids and node ids, that field privacy can be applied without
breaking validation, that minors are backward compatible and majors carry an upcast table, and
that the largest possible record still fits in a 64 KiB log entry.

Example instances live in examples/<name>.valid.json ({"<version>": [instance, ...]}) and
examples/<name>.invalid.json ({"<version>": [{"case": "...", "instance": {...}}, ...]}). On top
of the hand-written invalid cases, every document is mutated generically (missing required,
extra property, wrong enum value, float instead of integer) at every level of a maximal instance.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from jsonschema_rs.canonical import Containment

BUNDLE = Path(__file__).resolve().parents[2] / "contracts" / "bundle"
EXAMPLES = Path(__file__).resolve().parent / "examples"

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
NODE = r"^[a-z0-9][a-z0-9-]{0,31}(\.[a-z0-9][a-z0-9-]{0,31}){0,5}$"
FORMAT_PATTERNS = {"date-time": TIMESTAMP, "date": DATE, "uuid": UUID}
MAX_SAFE_INTEGER = 2**53 - 1
ENTRY_LIMIT = 64 * 1024
# Room left for the entry envelope around `data` (origin, seq, prev, time, contract, ...).
ENVELOPE_ALLOWANCE = 1024
# References that are not records of a contract: node ids and protocol tasks.
NON_CONTRACT_REFS = {"node", "task"}
PRIVACY = {"local", "mask", "hash"}
CJK = re.compile(r"[\u4e00-\u9fff]")
ENUM_VALUE = re.compile(r"^[a-z][a-z0-9_]*$")
VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
CONTRACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
INDEX_DATE = re.compile(DATE)
INDEX_TIMESTAMP = re.compile(TIMESTAMP)

SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
SUBSCHEMA_SINGLE = (
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)


# --- loading ---------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def index() -> dict[str, Any]:
    loaded = _load_json(BUNDLE / "index.json")
    assert isinstance(loaded, dict)
    return loaded


def _documents() -> list[tuple[str, str]]:
    return [
        (name, version)
        for name, contract in sorted(index()["contracts"].items())
        for version in sorted(contract["versions"], key=_version_key)
    ]


def _version_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@functools.cache
def document(name: str, version: str) -> Schema:
    loaded = _load_json(BUNDLE / name / f"{version}.json")
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def validator(name: str, version: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(document(name, version), validate_formats=True)


def _examples(name: str, kind: str) -> dict[str, list[Any]]:
    path = EXAMPLES / f"{name}.{kind}.json"
    if not path.exists():
        return {}
    loaded = _load_json(path)
    assert isinstance(loaded, dict)
    return loaded


DOCUMENTS = _documents()
DOCUMENT_IDS = [f"{name}@{version}" for name, version in DOCUMENTS]
CONTRACTS = sorted(index()["contracts"])


# --- schema walking --------------------------------------------------------------------------


def walk(schema: Schema, pointer: str = "") -> Iterator[tuple[str, Schema]]:
    """Yield every subschema (with its JSON pointer) reachable through schema keywords."""
    yield pointer, schema
    for keyword in SUBSCHEMA_MAPS:
        for key, sub in schema.get(keyword, {}).items():
            if isinstance(sub, dict):
                yield from walk(sub, f"{pointer}/{keyword}/{_escape(key)}")
    for keyword in SUBSCHEMA_LISTS:
        for position, sub in enumerate(schema.get(keyword, [])):
            if isinstance(sub, dict):
                yield from walk(sub, f"{pointer}/{keyword}/{position}")
    for keyword in SUBSCHEMA_SINGLE:
        sub = schema.get(keyword)
        if isinstance(sub, dict):
            yield from walk(sub, f"{pointer}/{keyword}")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def types_of(schema: Schema) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def is_object_schema(schema: Schema) -> bool:
    return "object" in types_of(schema) or "properties" in schema


def all_values(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from all_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_values(item)


def properties_with_parent(schema: Schema) -> Iterator[tuple[str, Schema, str, Schema]]:
    for pointer, sub in walk(schema):
        for name, prop in sub.get("properties", {}).items():
            yield pointer, sub, name, prop


# --- index ------------------------------------------------------------------------------------


def test_index_shape() -> None:
    data = index()
    assert set(data) == {"format", "bundle_version", "published", "publisher", "contracts", "rules"}
    assert data["format"] == 1
    assert isinstance(data["bundle_version"], int)
    assert data["bundle_version"] >= 1
    assert INDEX_TIMESTAMP.match(data["published"])
    assert data["publisher"] == "province"
    assert data["contracts"]
    for name, contract in data["contracts"].items():
        assert CONTRACT_NAME.match(name), name
        required = {"title", "description", "owner", "versions"}
        assert required <= set(contract) <= required | {"current"}, name
        # `current`: the version nodes write by default; must be listed and not retired.
        if "current" in contract:
            assert contract["versions"][contract["current"]]["status"] != "retired", name
        assert CJK.search(contract["title"]), name
        assert CJK.search(contract["description"]), name
        assert isinstance(contract["owner"], str)
        assert contract["owner"]
        assert contract["versions"], name
        for version, state in contract["versions"].items():
            assert VERSION.match(version), (name, version)
            assert set(state) == {"status", "active_from", "deprecated_from", "retired_from"}
            assert state["status"] in {"active", "deprecated", "retired"}
            assert INDEX_DATE.match(state["active_from"])
            for key in ("deprecated_from", "retired_from"):
                assert state[key] is None or INDEX_DATE.match(state[key]), (name, version, key)
            if state["status"] in {"deprecated", "retired"}:
                assert state["deprecated_from"] is not None, (name, version)
            if state["status"] == "retired":
                assert state["retired_from"] is not None, (name, version)


def test_index_and_files_agree() -> None:
    listed = set(DOCUMENTS)
    on_disk = {(path.parent.name, path.stem) for path in BUNDLE.glob("*/*.json")}
    assert listed == on_disk
    stray = {
        path.relative_to(BUNDLE).as_posix()
        for path in BUNDLE.rglob("*")
        if path.is_file() and path.name != "index.json" and path.parent.parent != BUNDLE
    }
    assert not stray


# --- document structure -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_document_header(name: str, version: str) -> None:
    schema = document(name, version)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == f"urn:guantong:contract:{name}:{version}"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert CJK.search(schema["title"])
    assert CJK.search(schema["description"])
    assert "id" not in schema["properties"], "the record id travels in the envelope"
    required = schema["required"]
    assert isinstance(required, list)
    assert required
    assert len(set(required)) == len(required)


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_document_is_valid_2020_12_schema(name: str, version: str) -> None:
    schema = document(name, version)
    jsonschema_rs.meta.validate(schema)
    assert jsonschema_rs.meta.is_valid(schema)
    assert isinstance(validator(name, version), jsonschema_rs.Draft202012Validator)


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_object_schemas_are_closed(name: str, version: str) -> None:
    for pointer, sub in walk(document(name, version)):
        if is_object_schema(sub):
            assert sub.get("additionalProperties") is False, pointer or "/"
            assert set(sub.get("required", [])) <= set(sub.get("properties", {})), pointer


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_no_numbers(name: str, version: str) -> None:
    schema = document(name, version)
    for pointer, sub in walk(schema):
        assert "number" not in types_of(sub), pointer
    floats = [value for value in all_values(schema) if isinstance(value, float)]
    assert not floats


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_every_schema_is_documented_in_chinese(name: str, version: str) -> None:
    for pointer, sub in walk(document(name, version)):
        for key in ("title", "description"):
            text = sub.get(key)
            assert isinstance(text, str), f"{pointer} lacks {key}"
            assert CJK.search(text), f"{pointer} {key} is not Chinese"


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_enums_are_stable_identifiers_explained(name: str, version: str) -> None:
    for pointer, sub in walk(document(name, version)):
        if "enum" not in sub:
            continue
        values = sub["enum"]
        assert values
        assert len(set(values)) == len(values), pointer
        for value in values:
            assert isinstance(value, str)
            assert ENUM_VALUE.match(value), (pointer, value)
            explained = re.search(rf"(?<![a-z0-9_]){re.escape(value)}=", sub["description"])
            assert explained, f"{pointer}: {value} not explained in description"


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_limits(name: str, version: str) -> None:
    for pointer, sub in walk(document(name, version)):
        kinds = types_of(sub)
        if "string" in kinds and "enum" not in sub and "const" not in sub:
            assert isinstance(sub.get("maxLength"), int), f"{pointer} needs maxLength"
        if "array" in kinds:
            assert isinstance(sub.get("maxItems"), int), f"{pointer} needs maxItems"
            assert isinstance(sub.get("items"), dict), f"{pointer} needs items"
        if "integer" in kinds:
            low, high = sub.get("minimum"), sub.get("maximum")
            assert isinstance(low, int), f"{pointer} needs minimum"
            assert isinstance(high, int), f"{pointer} needs maximum"
            assert -MAX_SAFE_INTEGER <= low <= high <= MAX_SAFE_INTEGER, pointer


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_formats_carry_fixed_patterns(name: str, version: str) -> None:
    for pointer, sub in walk(document(name, version)):
        fmt = sub.get("format")
        if fmt is not None:
            assert fmt in FORMAT_PATTERNS, f"{pointer}: unexpected format {fmt}"
            assert sub.get("pattern") == FORMAT_PATTERNS[fmt], pointer
        for known_format, pattern in FORMAT_PATTERNS.items():
            if sub.get("pattern") == pattern:
                assert fmt == known_format, pointer


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_references(name: str, version: str) -> None:
    known = set(CONTRACTS) | NON_CONTRACT_REFS
    for pointer, sub in walk(document(name, version)):
        target = sub.get("x-ref")
        if target is None:
            continue
        assert target in known, f"{pointer}: x-ref {target!r} names nothing"
        assert types_of(sub) == {"string"}, pointer
        if target == "node":
            assert sub.get("pattern") == NODE, pointer
            assert sub.get("maxLength") == 128, pointer
        else:
            assert sub.get("format") == "uuid", pointer


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_privacy_annotations(name: str, version: str) -> None:
    for pointer, parent, prop_name, prop in properties_with_parent(document(name, version)):
        privacy = prop.get("x-privacy")
        if privacy is None:
            continue
        where = f"{pointer}/properties/{prop_name}"
        assert privacy in PRIVACY, where
        assert types_of(prop) == {"string"}, where
        # Hubs validate the projected entry, where a local field is absent.
        assert prop_name not in parent.get("required", []), where
        check = jsonschema_rs.validator_for(prop, validate_formats=True)
        if privacy == "mask":
            assert check.is_valid("138****1234"), where
        if privacy == "hash":
            assert check.is_valid(_hmac("13800001234")), where


# --- privacy projection -----------------------------------------------------------------------


def _hmac(value: str) -> str:
    return hmac.new(b"test-province-secret", value.encode("utf-8"), hashlib.sha256).hexdigest()


def _mask(value: str) -> str:
    return value if "*" in value else value[:3] + "****" + value[-4:]


def project(schema: Schema, value: Any) -> Any:
    """Apply field privacy as an origin does before a record leaves it."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        projected: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key, {})
            privacy = sub.get("x-privacy")
            if privacy == "local":
                continue
            if privacy == "mask":
                projected[key] = _mask(item)
            elif privacy == "hash":
                projected[key] = item if re.fullmatch("[0-9a-f]{64}", item) else _hmac(item)
            else:
                projected[key] = project(sub, item)
        return projected
    if isinstance(value, list):
        return [project(schema.get("items", {}), item) for item in value]
    return value


# --- examples ---------------------------------------------------------------------------------


def _errors(name: str, version: str, instance: Any) -> list[str]:
    return [
        f"{error.instance_path}: {error.message}"
        for error in validator(name, version).iter_errors(instance)
    ]


@pytest.mark.parametrize("name", CONTRACTS)
def test_example_files_name_known_versions(name: str) -> None:
    versions = set(index()["contracts"][name]["versions"])
    valid = _examples(name, "valid")
    invalid = _examples(name, "invalid")
    assert set(valid) <= versions
    assert set(invalid) <= versions
    assert set(valid) == versions, "every version needs at least one valid example"
    assert invalid, "every contract needs hand-written invalid examples"
    known = {path.name for path in EXAMPLES.glob("*.json")}
    assert known <= {f"{c}.{kind}.json" for c in CONTRACTS for kind in ("valid", "invalid")}


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_valid_examples(name: str, version: str) -> None:
    instances = _examples(name, "valid").get(version, [])
    assert instances
    for position, instance in enumerate(instances):
        assert _errors(name, version, instance) == [], f"valid example {position}"
        projected = project(document(name, version), instance)
        assert _errors(name, version, projected) == [], f"projected example {position}"


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_invalid_examples(name: str, version: str) -> None:
    for case in _examples(name, "invalid").get(version, []):
        assert set(case) == {"case", "instance"}
        assert not validator(name, version).is_valid(case["instance"]), case["case"]


# --- generic mutations and the maximal instance -----------------------------------------------

# 4 UTF-8 bytes per character (CJK Extension B), the worst case for a maxLength in characters.
WIDE = "\U00020bb7"


def _node_id(length: int) -> str:
    return ".".join(["n" * 32] * 6)[:length].rstrip(".")


PATTERN_SAMPLES: dict[str, Callable[[int], str]] = {
    TIMESTAMP: lambda _: "2026-11-21T22:33:53.123Z",
    DATE: lambda _: "2026-11-21",
    UUID: lambda _: "0190a4c2-7b1e-7c3d-8e9f-0a1b2c3d4e5f",
    NODE: _node_id,
    r"^(0|[1-9][0-9]{0,14})\.[0-9]{2}$": lambda _: "999999999999999.99",
    r"^1[3-9][0-9]{9}$": lambda _: "13912345678",
    r"^1[3-9][0-9]{9}$|^1[3-9][0-9]\*{4}[0-9]{4}$": lambda _: "13912345678",
    r"^1[3-9][0-9]{9}$|^[0-9a-f]{64}$": lambda _: "f" * 64,
    r"^[0-9a-f]{64}$": lambda _: "f" * 64,
    r"^[0-9a-f]{16}$": lambda _: "f" * 16,
    r"^[A-Za-z0-9_-]{43}$": lambda _: "A" * 43,
    r"^[0-9a-f]{16}:[A-Za-z0-9_-]{86}$": lambda _: "f" * 16 + ":" + "A" * 86,
    r"^[a-z][a-z0-9_]{0,63}$": lambda length: "a" * min(length, 64),
    r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$": lambda _: "9999.9999",
    r"^(/([^~/]|~[01])*)*$": lambda length: "/" + WIDE * (length - 1),
    r"^[0-9]{6}([0-9]{6})?$": lambda _: "320281103201",
    r"^[0-9][0-9-]{4,19}$": lambda length: "0" * length,
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$": (
        lambda _: "a" * 63 + "/" + "a" * 63
    ),
}


def _encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _vary(value: str, variant: int) -> str:
    """Make item n (variant n + 1) of a uniqueItems array differ from the others, same length."""
    if not variant:
        return value
    suffix = f"{variant:04x}"
    return value[: len(value) - len(suffix)] + suffix


def maximal(schema: Schema, variant: int = 0) -> Any:
    """The largest instance of a schema: every property, strings and arrays at their limits."""
    if "enum" in schema:
        return max(schema["enum"], key=lambda value: len(_encoded(value)))
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            options = [maximal(option, variant) for option in schema[keyword]]
            return max(options, key=lambda value: len(_encoded(value)))
    kinds = types_of(schema) - {"null"}
    assert len(kinds) == 1, f"cannot build an instance for type {schema.get('type')}"
    kind = kinds.pop()
    if kind == "object":
        return {key: maximal(sub) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        unique = bool(schema.get("uniqueItems"))
        return [
            maximal(schema["items"], position + 1 if unique else 0)
            for position in range(schema["maxItems"])
        ]
    if kind == "string":
        length = schema["maxLength"]
        pattern = schema.get("pattern")
        if pattern is None:
            return _vary(WIDE * length, variant)
        assert pattern in PATTERN_SAMPLES, f"no sample for pattern {pattern}"
        return _vary(PATTERN_SAMPLES[pattern](length), variant)
    if kind == "integer":
        return max(schema["minimum"], schema["maximum"], key=lambda number: len(str(number)))
    if kind == "boolean":
        return False
    raise AssertionError(f"unexpected type {kind}")


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_maximal_instance_is_valid_and_fits_an_entry(name: str, version: str) -> None:
    schema = document(name, version)
    instance = maximal(schema)
    assert _errors(name, version, instance) == []
    assert _errors(name, version, project(schema, instance)) == []
    size = len(_encoded(instance))
    assert size + ENVELOPE_ALLOWANCE <= ENTRY_LIMIT, f"{name}@{version}: {size} bytes"


Location = tuple[tuple[str | int, ...], Schema]


def locations(
    schema: Schema, instance: Any, path: tuple[str | int, ...] = ()
) -> Iterator[Location]:
    """Pair each value of an instance with its schema (first item of arrays only)."""
    yield path, schema
    if isinstance(instance, dict):
        for key, value in instance.items():
            yield from locations(schema["properties"][key], value, (*path, key))
    elif isinstance(instance, list) and instance:
        yield from locations(schema["items"], instance[0], (*path, 0))


def _changed(instance: Any, path: tuple[str | int, ...], change: Callable[[Any], Any]) -> Any:
    result = copy.deepcopy(instance)
    if not path:
        return change(result)
    target = result
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = change(target[path[-1]])
    return result


def _without(key: str) -> Callable[[Any], Any]:
    return lambda value: {k: v for k, v in value.items() if k != key}


def _constant(replacement: Any) -> Callable[[Any], Any]:
    return lambda _: replacement


def mutations(schema: Schema) -> Iterator[tuple[str, Any]]:
    instance = maximal(schema)
    for path, sub in locations(schema, instance):
        where = "/" + "/".join(str(step) for step in path)
        if is_object_schema(sub):
            for key in sub.get("required", []):
                yield f"{where}: missing {key}", _changed(instance, path, _without(key))
            yield (
                f"{where}: extra property",
                _changed(instance, path, lambda value: {**value, "unexpected": "x"}),
            )
        if "enum" in sub:
            yield f"{where}: wrong enum", _changed(instance, path, _constant("not_a_value"))
        if "integer" in types_of(sub):
            yield f"{where}: float", _changed(instance, path, _constant(sub["minimum"] + 0.5))


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_generic_mutations_are_rejected(name: str, version: str) -> None:
    cases = list(mutations(document(name, version)))
    assert any(case.endswith("extra property") for case, _ in cases)
    accepted = [case for case, instance in cases if validator(name, version).is_valid(instance)]
    assert accepted == []


# --- versions ---------------------------------------------------------------------------------


def _minor_pairs() -> list[tuple[str, str, str]]:
    pairs = []
    for name in CONTRACTS:
        versions = sorted(index()["contracts"][name]["versions"], key=_version_key)
        for older, newer in itertools.pairwise(versions):
            if _version_key(older)[0] == _version_key(newer)[0]:
                pairs.append((name, older, newer))
    return pairs


MINOR_PAIRS = _minor_pairs()


@pytest.mark.parametrize(
    ("name", "older", "newer"), MINOR_PAIRS, ids=[f"{n}@{o}->{v}" for n, o, v in MINOR_PAIRS]
)
def test_minor_versions_are_backward_compatible(name: str, older: str, newer: str) -> None:
    old, new = document(name, older), document(name, newer)
    covered = jsonschema_rs.canonicalize(new).covers(jsonschema_rs.canonicalize(old))
    assert covered == Containment.YES, f"{newer} does not admit everything {older} admits"
    assert set(new["required"]) == set(old["required"])
    assert set(old["properties"]) <= set(new["properties"])
    for instance in _examples(name, "valid").get(older, []):
        assert _errors(name, newer, instance) == []


@pytest.mark.parametrize(("name", "version"), DOCUMENTS, ids=DOCUMENT_IDS)
def test_new_majors_carry_an_upcast_table(name: str, version: str) -> None:
    major, minor = _version_key(version)
    if major == 1 or minor != 0:
        return
    schema = document(name, version)
    table = schema.get(f"x-upcast-from-{major - 1}")
    assert isinstance(table, dict), f"{name}@{version} needs x-upcast-from-{major - 1}"
    previous = [
        document(name, v)
        for v in index()["contracts"][name]["versions"]
        if _version_key(v)[0] == major - 1
    ]
    for prop, mapping in table.items():
        old_values = {value for doc in previous for value in doc["properties"][prop]["enum"]}
        assert set(mapping) == old_values, f"{prop}: mapping must cover every old value"


def _opinion_upcast(instance: dict[str, Any]) -> dict[str, Any]:
    mapping = document("opinion", "2.0")["x-upcast-from-1"]["category"]
    category, subcategory = mapping[instance["category"]]
    return {**instance, "category": category, "subcategory": subcategory}


def test_opinion_upcast_mapping_targets_2_0() -> None:
    new = document("opinion", "2.0")
    categories = set(new["properties"]["category"]["enum"])
    subcategory = new["properties"]["subcategory"]
    parents = subcategory["x-category"]
    assert set(parents) == set(subcategory["enum"])
    assert set(parents.values()) == categories
    for old, target in new["x-upcast-from-1"]["category"].items():
        assert isinstance(target, list)
        assert len(target) == 2, old
        assert target[0] in categories, old
        assert parents[target[1]] == target[0], old
        described = f"{old}\N{FULLWIDTH LEFT PARENTHESIS}" in new["description"]
        assert described, f"mapping of {old} not described"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_opinion_1_examples_upcast_to_2_0(version: str) -> None:
    instances = _examples("opinion", "valid")[version]
    for instance in [*instances, maximal(document("opinion", version))]:
        assert _errors("opinion", "2.0", _opinion_upcast(instance)) == []
