"""Backward-compatibility checker for contract minors (PROTOCOL §9).

Within a major every minor must admit every record an earlier minor admitted: it may add optional
properties and enum values and relax limits, never remove, retype or newly require a property.
`compare_schemas(old, new)` walks both documents in step and reports each break with a stable rule
code and a JSON pointer into the NEW document (into the OLD one for things that are gone; the
message then says so):

- removed_property; type_changed (a type old admitted that new does not; integer ⊂ number);
  newly_required (also a new property that is required); enum_value_removed (also an enum added);
  const_changed; limit_tightened (length, items, properties, numeric bounds, multipleOf,
  uniqueItems, or such a limit added); pattern_changed (any change: regexes cannot be compared);
  format_added, format_changed; x_privacy_changed (added, removed or changed); open_object (a
  closed object opened); structure_changed (anything else not provably compatible).
- A limit only counts where old admits its type (from `type`, else `const`/`enum`); over integers
  exclusive bounds are normalised. Annotations (title, description, examples, $comment, default,
  x-* but x-privacy) are ignored.

The walk: a bare local `$ref` is replaced by its target, so pointers name the definition
(/$defs/x/...); a `$ref` with sibling keywords is compared target to target and the rest keyword by
keyword (sound: both are conjuncts). Properties match by name and a property new in `new` is
checked against old's `additionalProperties`; `prefixItems` go position by position with `items` as
the tail. Each old anyOf/oneOf branch must fit some new branch (a silent probe walk); a new allOf
conjunct must admit all of old; a removed or growing oneOf and any other keyword that changed (not,
if/then/else, patternProperties, dependentRequired, ...) is structure_changed. Visited pointer
pairs are skipped, so recursive refs terminate.

Cross-check: `jsonschema_rs.canonicalize(new).covers(canonicalize(old))`. YES proves containment,
so structure_changed findings are dropped; NO while the walk found nothing that narrows adds one
structure_changed at the root ""; UNKNOWN changes nothing.

`check_bundle(dir)` adds missing_file, unlisted_file, invalid_json (also NaN, duplicate keys),
invalid_index (also a value the registry would refuse, contracts.registry.index_problems: a
version's entry that is no object, a bundle_version that is no integer…), invalid_schema
(meta-schema, a $schema other than 2020-12, or not compilable offline), open_object (any
object schema without `additionalProperties: false`; reported once per document, not per
pair), number_type, missing_upcast_table (x.0, x > 1, without an
`x-upcast-from-<x-1>` object), missing_upcaster, and, for an upcaster that reads its table
(contracts.upcast.TABLE_CHECKS; the table is read from x.0 whatever later minors carry),
invalid_upcast_table (a table that upcaster cannot read, or mapping to values x.0 refuses) and
incomplete_upcast_table (a value some (x-1).y allows that the table leaves out: upcast, it would
silently become the fallback); such findings carry old_version == new_version. It compares every
minor with every earlier minor of its major, never across majors. Output is sorted, deduplicated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import unquote

import jsonschema_rs
from jsonschema_rs.canonical import Containment

from contracts.privacy import privacy_rules
from contracts.registry import Registry, index_problems
from contracts.upcast import TABLE_CHECKS, UPCASTERS
from schemas.canonical import follow_pointer, pointer_token
from schemas.errors import ErrorCode, GuantongError

# fmt: off
RULES: tuple[str, ...] = (
    "removed_property", "type_changed", "newly_required", "enum_value_removed", "const_changed",
    "limit_tightened", "pattern_changed", "format_added", "format_changed", "open_object",
    "x_privacy_changed", "structure_changed", "missing_file", "unlisted_file", "invalid_json",
    "invalid_index", "invalid_schema", "number_type", "missing_upcast_table",
    "privacy_unreachable", "missing_upcaster", "invalid_upcast_table", "incomplete_upcast_table",
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]
_At = tuple[Schema, Schema, str, str, str]  # old node, new node, their pointers, field label
_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ANNOTATIONS = frozenset({
    "title", "description", "examples", "$comment", "default", "deprecated", "readOnly",
    "writeOnly", "$schema", "$id", "$anchor", "$dynamicAnchor", "$vocabulary",
    "contentMediaType", "contentEncoding", "contentSchema",
})
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SINGLES = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
            "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_LENGTHS = (("minLength", "string", False), ("maxLength", "string", True),
            ("minItems", "array", False), ("maxItems", "array", True),
            ("minProperties", "object", False), ("maxProperties", "object", True))
_HANDLED = frozenset({  # keywords the walk models; any other non-annotation must stay equal
    "$ref", "type", "enum", "const", "pattern", "format", "x-privacy", "properties", "required",
    "additionalProperties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$defs",
    "definitions", "multipleOf", "uniqueItems", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", *(kw for kw, _, _ in _LENGTHS),
})
# fmt: on
_ALL_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_NOT_NARROWING = frozenset({"x_privacy_changed", "open_object"})  # rules that admit more


@dataclass(frozen=True, slots=True)
class Violation:
    contract: str
    old_version: str
    new_version: str
    pointer: str
    rule: str
    message: str

    def __str__(self) -> str:
        same = self.old_version == self.new_version
        versions = self.new_version if same else f"{self.old_version}→{self.new_version}"
        head = " ".join(p for p in (self.contract, versions, self.pointer) if p)
        return f"{head}: {self.rule}: {self.message}"


def _ptr(base: str, *tokens: str | int) -> str:
    return base + "".join("/" + pointer_token(t) for t in tokens)


def _show(value: Any) -> str:
    text = "not set" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _field(label: str) -> str:
    return f"field '{label}'" if label else "the root schema"


def _child(label: str, name: str | int) -> str:
    return f"{label}.{name}" if label else str(name)


def _is_num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _frac(value: Any) -> Fraction:
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _is_annotation(key: str) -> bool:
    return key in _ANNOTATIONS or (key.startswith("x-") and key != "x-privacy")


def _of(node: Any, key: str, kind: type) -> Any:
    """node[key] if it has the expected JSON kind, else an empty value of that kind."""
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, kind) else kind()


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "null" if value is None else "boolean"
    if _is_num(value):
        return "integer" if float(value).is_integer() else "number"
    return "string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"


def _declared_types(node: Schema) -> set[str] | None:
    declared = node.get("type")
    return {declared} if isinstance(declared, str) else set(_of(node, "type", list)) or None


def _values(node: Schema) -> list[Any] | None:
    """The values `const`/`enum` admit (those of a declared type), or None for any value."""
    values = [node["const"]] if "const" in node else node.get("enum")
    types = _declared_types(node)
    return (
        [v for v in values if _covered(_json_type(v), types)] if isinstance(values, list) else None
    )


def _admitted_types(node: Schema) -> set[str] | None:
    """The types a schema admits: from `type` and `const`/`enum`; None is any type."""
    values = _values(node)
    return _declared_types(node) if values is None else {_json_type(v) for v in values}


def _covered(kind: str, types: set[str] | None) -> bool:
    return types is None or kind in types or (kind == "integer" and "number" in types)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _strip(node: Any) -> Any:
    """A schema without annotations, to compare keywords the walk does not model."""
    if not isinstance(node, dict):
        return node
    return {k: _strip_keyword(k, v) for k, v in node.items() if not _is_annotation(k)}


def _strip_keyword(key: str, value: Any) -> Any:
    if key in _MAPS and isinstance(value, dict):
        return {name: _strip(s) for name, s in value.items()}
    if key in _LISTS and isinstance(value, list):
        return [_strip(s) for s in value]
    return _strip(value) if key in _SINGLES else value


def _subschemas(node: Any, ptr: str = "") -> Iterator[tuple[Schema, str]]:
    if not isinstance(node, dict):
        return
    yield node, ptr
    for key, value in node.items():
        if key in _MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _subschemas(sub, _ptr(ptr, key, name))
        elif key in _LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from _subschemas(sub, _ptr(ptr, key, i))
        elif key in _SINGLES:
            yield from _subschemas(value, _ptr(ptr, key))


def _resolve(root: Any, ref: Any) -> tuple[Any, str] | None:
    """The target of a local JSON-pointer `$ref` and its pointer, or None."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        return None  # $anchor references are not followed
    found = follow_pointer(root, fragment)
    return None if found is None else (found[0], fragment)


def _bound(node: Schema, upper: bool, integers: bool) -> tuple[Fraction, int, str] | None:
    """The tightest numeric bound as (looseness, inclusive, keyword); smaller is stricter."""
    best: tuple[Fraction, int, str] | None = None
    for key in ("maximum", "exclusiveMaximum") if upper else ("minimum", "exclusiveMinimum"):
        if _is_num(node.get(key)):
            value, inclusive = _frac(node[key]), int(not key.startswith("exclusive"))
            if integers and upper:  # over the integers every bound is an inclusive integer
                value, inclusive = (
                    Fraction(math.floor(value) if inclusive else math.ceil(value) - 1),
                    1,
                )
            elif integers:
                value, inclusive = (
                    Fraction(math.ceil(value) if inclusive else math.floor(value) + 1),
                    1,
                )
            candidate = (value if upper else -value, inclusive, key)
            best = candidate if best is None or candidate[:2] < best[:2] else best
    return best


class _Walk:
    def __init__(self, old: Schema, new: Schema, contract: str, ov: str, nv: str) -> None:
        self.roots, self.contract, self.ov, self.nv = (old, new), contract, ov, nv
        self.found: list[Violation] = []
        self.seen: set[tuple[str, str]] = set()

    def add(self, pointer: str, rule: str, message: str) -> None:
        self.found.append(Violation(self.contract, self.ov, self.nv, pointer, rule, message))

    def gone(self, ptr: str, rule: str, what: str) -> None:
        where = f"(pointer into the {self.ov} document)"
        self.add(ptr, rule, f"{what} exists in {self.ov} but not in {self.nv} {where}.")

    def kw(self, at: _At, rule: str, key: str, *values: Any, what: str = "") -> None:
        """A violation at keyword `key` of the node `at`, showing both values (or `values`)."""
        old, new, op, np, label = at
        before, after = values or (old.get(key), new.get(key))
        ptr, note = _ptr(np, key), ""
        if key not in new and key in old:
            ptr, note = _ptr(op, key), f" (pointer into the {self.ov} document)"
        shown = f"{what or key} is {_show(before)} in {self.ov} but {_show(after)} in {self.nv}"
        self.add(ptr, rule, f"{_field(label)}: {shown}{note}.")

    def probe(self, old: Any, new: Any, op: str, np: str) -> bool:
        """Whether new provably admits everything old admits, recording nothing."""
        walk = _Walk(*self.roots, self.contract, self.ov, self.nv)
        walk.compare(old, new, op, np, "")
        return not walk.found

    def deref(self, node: Any, ptr: str, root: Schema) -> tuple[Any, str]:
        for _ in range(64):  # a bare local $ref (annotations aside) is its target
            bare = isinstance(node, dict) and all(k == "$ref" or _is_annotation(k) for k in node)
            target = _resolve(root, node.get("$ref")) if bare else None
            if target is None:
                break
            node, ptr = target
        return node, ptr

    def compare(self, old: Any, new: Any, op: str, np: str, label: str) -> None:
        old, op = self.deref(old, op, self.roots[0])
        new, np = self.deref(new, np, self.roots[1])
        if (op, np) in self.seen or new is True or old is False:
            return
        self.seen.add((op, np))
        if not isinstance(new, dict) or not isinstance(old, dict | bool):
            shown = f"the schema is {_show(old)} in {self.ov} but {_show(new)} in {self.nv}"
            self.add(np, "structure_changed", f"{_field(label)}: {shown}.")
            return
        at: _At = (old if isinstance(old, dict) else {}, new, op, np, label)
        self.refs(at)
        self.scalars(at)
        kinds = _admitted_types(at[0])
        if _covered("object", kinds):
            self.objects(at)
        if _covered("array", kinds):
            self.arrays(at)
        self.combinators(at)
        for key in sorted((at[0].keys() | new.keys()) - _HANDLED):
            before, after = _strip_keyword(key, at[0].get(key)), _strip_keyword(key, new.get(key))
            if not _is_annotation(key) and before != after:
                self.kw(at, "structure_changed", key)

    def refs(self, at: _At) -> None:
        old, new, _, _, label = at
        if "$ref" in old or "$ref" in new:
            before = _resolve(self.roots[0], old.get("$ref"))
            after = _resolve(self.roots[1], new.get("$ref"))
            if before is not None and after is not None:
                self.compare(before[0], after[0], before[1], after[1], label)
            elif old.get("$ref") != new.get("$ref") or before or after:
                self.kw(at, "structure_changed", "$ref")

    def scalars(self, at: _At) -> None:
        old, new = at[0], at[1]
        kinds, new_types, old_values = _admitted_types(old), _declared_types(new), _values(old)
        if new_types is not None and not all(
            _covered(t, new_types) for t in (_ALL_TYPES if kinds is None else kinds)
        ):
            self.kw(at, "type_changed", "type")
        allowed = {_key(v) for v in _of(new, "enum", list)}
        dropped = [v for v in old_values or [] if _key(v) not in allowed]
        if "enum" in new and (old_values is None or dropped):
            was = f"{_show(dropped)} allowed" if dropped else "any value allowed"
            shown = f"{was} in {self.ov} but not in the {self.nv} enum {_show(new['enum'])}"
            self.add(_ptr(at[3], "enum"), "enum_value_removed", f"{_field(at[4])}: {shown}.")
        if "const" in new and (
            old_values is None or {_key(v) for v in old_values} != {_key(new["const"])}
        ):
            self.kw(at, "const_changed", "const", old_values, new["const"])
        for key, kind, upper in _LENGTHS:
            value, before = new.get(key), old.get(key)
            if _covered(kind, kinds) and _is_num(value):
                base: Any = before if _is_num(before) else (None if upper else 0)
                if base is None or (value < base if upper else value > base):
                    self.kw(at, "limit_tightened", key)
        if _covered("integer", kinds):
            integers = kinds is not None and kinds <= {"integer"}
            for upper in (True, False):
                nb, ob = _bound(new, upper, integers), _bound(old, upper, integers)
                if nb is not None and (ob is None or nb[:2] < ob[:2]):
                    before = {ob[2]: old[ob[2]]} if ob else None
                    bound = "the upper bound" if upper else "the lower bound"
                    self.kw(at, "limit_tightened", nb[2], before, {nb[2]: new[nb[2]]}, what=bound)
            step, before = new.get("multipleOf"), old.get("multipleOf")
            if _is_num(step) and step > 0:
                base = before if _is_num(before) else (1 if integers else None)
                if base is None or (_frac(base) / _frac(step)).denominator != 1:
                    self.kw(at, "limit_tightened", "multipleOf")
        unique = (old.get("uniqueItems"), new.get("uniqueItems"))
        if _covered("array", kinds) and unique[1] is True and unique[0] is not True:
            self.kw(at, "limit_tightened", "uniqueItems")
        if _covered("string", kinds) and "pattern" in new and old.get("pattern") != new["pattern"]:
            self.kw(at, "pattern_changed", "pattern")
        if "format" in new and old.get("format") != new["format"]:
            self.kw(at, "format_changed" if "format" in old else "format_added", "format")
        if old.get("x-privacy") != new.get("x-privacy"):
            self.kw(at, "x_privacy_changed", "x-privacy")

    def objects(self, at: _At) -> None:
        old, new, op, np, label = at
        old_props, new_props = _of(old, "properties", dict), _of(new, "properties", dict)
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        extra_op = _ptr(op, "additionalProperties") if "additionalProperties" in old else op
        for name in sorted(old_props.keys() | new_props.keys()):
            oprop, nprop = _ptr(op, "properties", name), _ptr(np, "properties", name)
            field = _child(label, name)
            if name not in new_props:
                self.gone(oprop, "removed_property", _field(field))
            elif name in old_props:
                self.compare(old_props[name], new_props[name], oprop, nprop, field)
            else:  # a new property must admit whatever old let through under that name
                self.compare(old_extra, new_props[name], extra_op, nprop, field)
        required = set(_of(old, "required", list))
        for i, name in enumerate(_of(new, "required", list)):
            if name not in required:
                shown = (
                    f"{_field(_child(label, name))} is required in {self.nv} but not in {self.ov}"
                )
                self.add(_ptr(np, "required", i), "newly_required", f"{shown}.")
        if old_extra is False and new_extra is not False:
            self.kw(at, "open_object", "additionalProperties", False, new_extra)
        elif old_extra is not False and new_extra is False:
            self.kw(at, "structure_changed", "additionalProperties", old_extra, False)
        else:
            extra_np = _ptr(np, "additionalProperties")
            self.compare(old_extra, new_extra, extra_op, extra_np, _child(label, "*"))

    def arrays(self, at: _At) -> None:
        old, new, op, np, label = at
        old_pre, new_pre = _of(old, "prefixItems", list), _of(new, "prefixItems", list)
        old_tail = (old.get("items", True), _ptr(op, "items"))
        new_tail = (new.get("items", True), _ptr(np, "items"))
        for i in range(max(len(old_pre), len(new_pre))):
            o = (old_pre[i], _ptr(op, "prefixItems", i)) if i < len(old_pre) else old_tail
            n = (new_pre[i], _ptr(np, "prefixItems", i)) if i < len(new_pre) else new_tail
            self.compare(o[0], n[0], o[1], n[1], f"{label}[{i}]")
        self.compare(old_tail[0], new_tail[0], old_tail[1], new_tail[1], f"{label}[]")

    def combinators(self, at: _At) -> None:
        old, new, op, np, label = at
        for key in ("anyOf", "oneOf", "allOf"):
            ob, nb = old.get(key), new.get(key)
            if nb is None and (ob is None or key == "allOf"):
                continue  # absent, or conjuncts dropped: that only admits more
            if not isinstance(nb, list) or not isinstance(ob, list | None):
                self.kw(at, "structure_changed", key)
            elif key == "allOf":  # every new conjunct must admit all of old
                for j, branch in enumerate(nb):
                    if ob is None or j >= len(ob) or _strip(ob[j]) != _strip(branch):
                        self.compare(old, branch, op, _ptr(np, key, j), label)
            elif ob is None:  # old as a whole must fit one new branch
                if not any(self.probe(old, b, op, _ptr(np, key, j)) for j, b in enumerate(nb)):
                    self.kw(at, "structure_changed", key)
            else:  # each old branch must fit some new branch
                for i, branch in enumerate(ob):
                    optr = _ptr(op, key, i)
                    if any(self.probe(branch, b, optr, _ptr(np, key, j)) for j, b in enumerate(nb)):
                        continue
                    if len(ob) == len(nb):
                        self.compare(
                            branch, nb[i], optr, _ptr(np, key, i), _child(label, f"{key}[{i}]")
                        )
                    else:
                        self.gone(optr, "structure_changed", f"an old {key} branch {i}")
                if key == "oneOf" and len(nb) > len(ob):
                    self.kw(at, "structure_changed", key)  # a new branch may overlap an old one


def _containment(old: Schema, new: Schema) -> Containment | None:
    try:
        older = jsonschema_rs.canonicalize(old, offline=True)
        return jsonschema_rs.canonicalize(new, offline=True).covers(older)
    except (ValueError, TypeError, jsonschema_rs.ReferencingError):
        return None


def _version_key(version: str) -> tuple[int, int, int, str]:
    match = _VERSION.match(version)
    return (0, int(match[1]), int(match[2]), "") if match else (1, 0, 0, version)


def _sorted(found: list[Violation]) -> list[Violation]:
    def key(v: Violation) -> tuple[Any, ...]:
        versions = _version_key(v.old_version), _version_key(v.new_version)
        return (v.contract, *versions, v.pointer, v.rule, v.message)

    return sorted(dict.fromkeys(found), key=key)


def compare_installed(installed: Registry, new: Registry) -> list[str]:
    """What a newer bundle changes of the one installed: every published version must stay,
    and validate what it validated (annotations may change; a version ends by its status,
    ``retired``). Nodes that hold the older bundle check entries by it, and an entry of a
    version missing from the newer one would stay pending for good."""
    problems = []
    for cv in installed.all_versions():
        if not new.knows(cv.name, cv.version):
            problems.append(
                f"{cv.name} {cv.version} is published and missing from bundle "
                f"{new.bundle_version}: mark it retired instead"
            )
            continue
        schema = new.get(cv.name, cv.version).schema
        labels = {"contract": cv.name, "old_version": cv.version, "new_version": cv.version}
        changed = [
            v
            for v in (
                *compare_schemas(cv.schema, schema, **labels),
                *compare_schemas(schema, cv.schema, **labels),
            )
            if v.rule != "open_object"
        ]
        if changed:
            problems.append(
                f"{cv.name} {cv.version} is published and changed in place: {changed[0]}"
            )
    return problems


def compare_schemas(
    old: Schema, new: Schema, *, contract: str, old_version: str, new_version: str
) -> list[Violation]:
    """Everything that stops `new` from admitting every instance `old` admits."""
    walk = _Walk(old, new, contract, old_version, new_version)
    walk.compare(old, new, "", "", "")
    verdict = _containment(old, new)
    # proven compatible: drop the walk's "cannot prove" findings; but the containment check
    # takes `format` as an annotation, which the registry asserts, so a proof is only one
    # where no combinator the walk could not follow holds a `format`
    if verdict == Containment.YES and not (
        _format_in_combinator(old) or _format_in_combinator(new)
    ):
        walk.found = [v for v in walk.found if v.rule != "structure_changed"]
    elif verdict == Containment.NO and all(v.rule in _NOT_NARROWING for v in walk.found):
        shown = f"found values valid under {old_version} that {new_version} rejects"
        walk.add("", "structure_changed", f"the containment check {shown}, at an unknown place.")
    return _sorted(walk.found)


_COMBINATORS = ("anyOf", "oneOf", "allOf", "not", "if", "then", "else")


def _format_in_combinator(node: Any, inside: bool = False) -> bool:
    """Whether a `format` keyword sits anywhere below a combinator of ``node``."""
    if isinstance(node, list):
        return any(_format_in_combinator(item, inside) for item in node)
    if not isinstance(node, dict):
        return False
    if inside and "format" in node:
        return True
    return any(
        _format_in_combinator(sub, inside or key in _COMBINATORS)
        for key, sub in node.items()
        if key not in ("enum", "const", "examples", "default")
    )


def _strict_pairs(pairs: list[tuple[str, Any]]) -> Schema:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _reject(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _load(path: Path) -> tuple[Any, str | None]:
    """The parsed JSON (strict: no NaN/Infinity, no duplicate keys) or an error line."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_constant=_reject, object_pairs_hook=_strict_pairs), None
    except (OSError, ValueError) as exc:  # decode errors are ValueErrors
        return None, (str(exc).splitlines() or [type(exc).__name__])[0]


def _schema_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"the document is {_json_type(doc)}, not an object schema"
    if doc.get("$schema", DRAFT) != DRAFT:
        return f"$schema is {_show(doc['$schema'])}, not {DRAFT}"
    try:  # $schema is known and retrieval is off, so nothing reaches the network
        jsonschema_rs.meta.validate(doc)
        jsonschema_rs.validator_for(doc, offline=True)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        return (str(exc).splitlines() or [type(exc).__name__])[0]
    return None


def _one(name: str, version: str, rule: str, message: str, pointer: str = "") -> Violation:
    """A finding about one document (or index.json): old_version == new_version."""
    return Violation(name, version, version, pointer, rule, message)


def _document_rules(name: str, version: str, doc: Schema) -> Iterator[Violation]:
    try:
        privacy_rules(doc)
    except GuantongError as exc:
        yield _one(name, version, "privacy_unreachable", f"{exc.message}.")
    for node, ptr in _subschemas(doc):
        where = f"'{ptr}'" if ptr else "the root"
        types, extra = _declared_types(node) or set(), node.get("additionalProperties")
        if ("object" in types or "properties" in node) and extra is not False:
            at = _ptr(ptr, "additionalProperties") if "additionalProperties" in node else ptr
            shown = f"has additionalProperties {_show(extra)}, not false"
            yield _one(name, version, "open_object", f"the object schema at {where} {shown}.", at)
        if "number" in types:
            shown = f"the schema at {where} allows type number; floats are forbidden"
            yield _one(name, version, "number_type", f"{shown}.", _ptr(ptr, "type"))


def _read_index(bundle_dir: Path, found: list[Violation]) -> dict[str, list[str]]:
    path = bundle_dir / "index.json"
    index, error = _load(path) if path.is_file() else (None, "missing")
    contracts = index.get("contracts") if isinstance(index, dict) else None
    if error is not None or not isinstance(index, dict) or not isinstance(contracts, dict):
        rule = "invalid_index" if error is None else "invalid_json"
        rule = "missing_file" if error == "missing" else rule
        found.append(_one("", "", rule, f"index.json: {error or 'no contracts object'}."))
        return {}
    for name, pointer, message in index_problems(index):
        found.append(_one(name, "", "invalid_index", f"index.json: {message}.", pointer))
    listed: dict[str, list[str]] = {}
    for name, entry in contracts.items():
        versions = _of(entry, "versions", dict)
        listed[name] = [v for v in versions if _VERSION.match(v)]
        if not _NAME.match(name) or not versions or len(listed[name]) < len(versions):
            shown = f"entry {name!r} needs a lower-case name and <major>.<minor> versions"
            found.append(
                _one(name, "", "invalid_index", f"index.json: {shown}.", _ptr("/contracts", name))
            )
        if not _NAME.match(name):
            del listed[name]
    return listed


def refusal(violations: list[Violation], bundle: Path) -> GuantongError | None:
    """The error a bundle with these findings is refused with: ``bundle_invalid`` when any
    is the bundle's own (a file missing or broken, the index, a privacy mark, an upcast
    table), else ``incompatible_change`` (a minor that breaks an earlier one)."""
    if not violations:
        return None
    broken = [v for v in violations if not v.old_version or v.old_version == v.new_version]
    if broken:
        changes = len(violations) - len(broken)
        also = f", and {changes} incompatible change(s)" if changes else ""
        return GuantongError(
            ErrorCode.BUNDLE_INVALID, f"{len(broken)} problem(s) with the bundle in {bundle}{also}"
        )
    return GuantongError(
        ErrorCode.INCOMPATIBLE_CHANGE, f"{len(violations)} incompatible change(s) in {bundle}"
    )


def check_bundle(bundle_dir: Path) -> list[Violation]:
    """Bundle-level problems plus every breaking change between minors of one major."""
    found: list[Violation] = []
    listed = _read_index(bundle_dir, found)
    docs: dict[tuple[str, str], Schema] = {}
    for name, version in ((n, v) for n, versions in listed.items() for v in versions):
        path, rel = bundle_dir / name / f"{version}.json", f"{name}/{version}.json"
        doc: Any
        doc, error = _load(path) if path.is_file() else (None, "listed in index.json, missing")
        problem = error or _schema_problem(doc)
        if problem is None:
            docs[name, version] = doc
            found.extend(_document_rules(name, version, doc))
        else:
            rule = "invalid_schema" if error is None else "invalid_json"
            rule = rule if path.is_file() else "missing_file"
            found.append(_one(name, version, rule, f"{rel}: {problem}."))
    for path in sorted(bundle_dir.rglob("*.json")):
        parts = path.relative_to(bundle_dir).parts
        owner = parts[0] if len(parts) == 2 else ""
        if parts != ("index.json",) and path.stem not in listed.get(owner, []):
            shown = f"{'/'.join(parts)} is not listed in index.json"
            found.append(_one(owner, path.stem, "unlisted_file", shown))
    for name, versions in listed.items():
        majors: dict[int, list[str]] = {}
        for version in sorted(versions, key=_version_key):
            majors.setdefault(int(version.split(".")[0]), []).append(version)
        for major, minors in majors.items():
            keyword, doc = f"x-upcast-from-{major - 1}", docs.get((name, f"{major}.0"))
            if major > 1 and (
                minors[0] != f"{major}.0" or doc and not isinstance(doc.get(keyword), dict)
            ):
                shown = f"{name} {major}.0 must exist and carry an `{keyword}` table"
                found.append(_one(name, minors[0], "missing_upcast_table", f"{shown}."))
            if major > 1 and (name, major - 1) not in UPCASTERS:
                shown = (
                    f"no upcaster from {name} {major - 1}.x to {major}.x in this release "
                    "(contracts/upcast.py): hubs could not present older records in it"
                )
                found.append(_one(name, minors[0], "missing_upcaster", f"{shown}."))
            table_check = TABLE_CHECKS.get((name, major - 1))
            if doc and isinstance(doc.get(keyword), dict) and table_check is not None:
                older = {v: docs[name, v] for v in majors.get(major - 1, []) if (name, v) in docs}
                for rule, message in table_check(doc[keyword], doc, older):
                    shown = f"`{keyword}` of {name} {major}.0: {message}"
                    found.append(_one(name, f"{major}.0", rule, f"{shown}.", f"/{keyword}"))
            valid = [v for v in minors if (name, v) in docs]
            for old, new in ((o, n) for i, n in enumerate(valid) for o in valid[:i]):
                pair = compare_schemas(
                    docs[name, old],
                    docs[name, new],
                    contract=name,
                    old_version=old,
                    new_version=new,
                )  # open_object is reported once, per document
                found.extend(v for v in pair if v.rule != "open_object")
    return _sorted(found)
