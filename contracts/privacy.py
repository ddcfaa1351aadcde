"""Field privacy (PROTOCOL §9): what of a record may leave the node that wrote it.

A contract marks fields with ``x-privacy``:

- ``local``: never leaves the origin. Omitted from the entry; kept in ``local_private``.
- ``mask``: the entry carries a masked value (``13812345678`` → ``138****5678``).
- ``hash``: the entry carries HMAC-SHA256(province secret, value) in hex, so hubs can
  find repeat reporters without learning who they are.

:func:`project` splits a full record into the public data (what the entry carries) and the
private originals, addressed by JSON pointer, which only the origin's store keeps. A record
is validated in full before projection; the bundle's schemas admit the projected forms, and
the tests prove projected samples stay valid.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from schemas.canonical import canonical_bytes, follow_pointer, pointer_token, pointer_tokens
from schemas.errors import ErrorCode, GuantongError

__all__ = ["PrivacyRules", "mask_value", "merge_private", "privacy_rules", "project"]

Rule = Literal["local", "mask", "hash"]
Path = tuple[str, ...]
"""Property names from the record's root; ``*`` stands for every item of an array."""


@dataclass(frozen=True, slots=True)
class PrivacyRules:
    fields: tuple[tuple[Path, Rule], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fields)

    @property
    def needs_secret(self) -> bool:
        return any(rule == "hash" for _, rule in self.fields)


def privacy_rules(schema: dict[str, Any]) -> PrivacyRules:
    """The fields a contract version marks private, by path from the record's root.

    ``x-privacy`` is honoured where a record's fields are named: under ``properties``,
    ``items`` and the branches of ``anyOf``, ``oneOf`` and ``allOf``. A mark anywhere else
    (behind a ``$ref``, under ``additionalProperties``, ``patternProperties`` or
    ``prefixItems``, inside another private field) would be valid JSON Schema that no
    projection applies, and the field would leave the node in the clear: such a schema is
    refused (``bundle_invalid``), as is a field marked with two different rules.

    The projection follows names, never references, so a mark reached by its own path can
    still define another field through a reference: ``"other_phone": {"$ref":
    "#/properties/phone"}`` (or ``"$ref": "#"``) would validate ``other_phone`` as the
    private ``phone`` and send it in the clear. A ``$ref`` or ``$dynamicRef`` whose target
    holds a mark is therefore refused too (:func:`_check_references`), and so is a mark
    under a property literally named ``*``, which paths cannot tell from an array's items."""
    found: list[tuple[Path, Rule]] = []
    reached: set[int] = set()
    _walk(schema, (), found, reached)
    marked = _marked(schema, "")
    for node, pointer in marked:
        if id(node) not in reached:
            raise GuantongError(
                ErrorCode.BUNDLE_INVALID,
                f"x-privacy at {pointer or 'the root'} is not under properties or items "
                "(nor their anyOf, oneOf, allOf), where projection would not apply it",
            )
    if marked:
        _check_references(schema)
    rules: dict[Path, Rule] = {}
    for path, rule in found:
        if rules.setdefault(path, rule) != rule:
            raise GuantongError(
                ErrorCode.BUNDLE_INVALID,
                f"field {'/'.join(path)} is marked x-privacy {rules[path]!r} and {rule!r}",
            )
    return PrivacyRules(tuple(sorted(rules.items())))


def _walk(node: Any, path: Path, found: list[tuple[Path, Rule]], reached: set[int]) -> None:
    if not isinstance(node, dict):
        return
    rule = node.get("x-privacy")
    if isinstance(rule, str) and path:
        if rule not in ("local", "mask", "hash"):
            raise GuantongError(
                ErrorCode.BUNDLE_INVALID, f"unknown x-privacy {rule!r} at {'/'.join(path)}"
            )
        found.append((path, rule))  # type: ignore[arg-type]  # checked just above
        reached.add(id(node))
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            if name == "*" and _marked(sub, ""):
                # in a path ``*`` is every item of an array: the mark would be looked for
                # among items and never applied to the property of that name
                raise GuantongError(
                    ErrorCode.BUNDLE_INVALID,
                    f"x-privacy under the property named '*' at {'/'.join((*path, '*'))}: "
                    "'*' stands for an array's items in privacy paths; rename the property",
                )
            _walk(sub, (*path, name), found, reached)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], (*path, "*"), found, reached)
    for key in ("anyOf", "oneOf", "allOf"):
        branches = node.get(key)
        for sub in branches if isinstance(branches, list) else ():
            _walk(sub, path, found, reached)


def _marked(node: Any, pointer: str) -> list[tuple[dict[str, Any], str]]:
    """Every schema object carrying an ``x-privacy`` mark, with its JSON pointer."""
    return [(n, at) for n, at in _objects(node, pointer) if isinstance(n.get("x-privacy"), str)]


def _check_references(schema: dict[str, Any]) -> None:
    """Refuse every ``$ref`` and ``$dynamicRef`` whose target holds an ``x-privacy`` mark
    (a reference inside a target is checked on its own, so chains are covered too). A
    reference that cannot be resolved within the document (another document, an anchor or
    an embedded ``$id`` it does not declare) might lead to a mark all the same: in a
    schema that marks fields it is refused as well."""
    for node, pointer in _objects(schema, ""):
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            where = f"{key} {ref!r} at {pointer or 'the root'}"
            targets = _targets(schema, ref)
            if targets is None:
                raise GuantongError(
                    ErrorCode.BUNDLE_INVALID,
                    f"{where} cannot be resolved within the document, which marks fields "
                    "x-privacy: the field it defines might be private and leave in the clear",
                )
            for target, at in targets:
                marks = _marked(target, at)
                if marks:
                    raise GuantongError(
                        ErrorCode.BUNDLE_INVALID,
                        f"{where} leads to the x-privacy mark at {marks[0][1] or 'the root'}: "
                        "projection follows names, not references, so the field it defines "
                        "would leave the node in the clear (copy the field's schema instead)",
                    )


def _objects(node: Any, pointer: str) -> list[tuple[dict[str, Any], str]]:
    """Every JSON object in ``node``, with its JSON pointer."""
    out: list[tuple[dict[str, Any], str]] = []
    if isinstance(node, dict):
        out.append((node, pointer))
        for key, sub in node.items():
            out.extend(_objects(sub, f"{pointer}/{pointer_token(key)}"))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out.extend(_objects(sub, f"{pointer}/{i}"))
    return out


def _targets(schema: dict[str, Any], ref: str) -> list[tuple[Any, str]] | None:
    """What a reference may lead to within ``schema``, with pointers; None when it cannot
    be resolved here. A base URI must be the document's ``$id`` or an embedded one's; an
    anchor name yields every ``$anchor`` or ``$dynamicAnchor`` of that name (a
    ``$dynamicRef`` picks one of them at run time)."""
    base, _, fragment = ref.partition("#")
    if not base or base == schema.get("$id"):
        resource: tuple[Any, str] = (schema, "")
    else:
        embedded = [(node, at) for node, at in _objects(schema, "") if node.get("$id") == base]
        if len(embedded) != 1:
            return None
        resource = embedded[0]
    fragment = unquote(fragment)
    if not fragment:
        return [resource]
    if not fragment.startswith("/"):
        anchors = [
            (node, at)
            for node, at in _objects(*resource)
            if fragment in (node.get("$anchor"), node.get("$dynamicAnchor"))
        ]
        return anchors or None
    node, at = resource
    found = follow_pointer(node, fragment)
    if found is None:
        return None
    target, tokens = found
    return [(target, at + "".join(f"/{pointer_token(t)}" for t in tokens))]


def mask_value(value: str) -> str:
    """Keep just enough to recognise a value: ``138****5678``, ``张*``, ``王**明``; a
    value of one character is all mask (``*``), since its first would be all of it."""
    n = len(value)
    if n <= 1:
        return "*" * n
    if n == 2:
        return value[0] + "*"
    if n < 11:
        return value[0] + "*" * (n - 2) + value[-1]
    return value[:3] + "*" * (n - 7) + value[-4:]


def _hash_value(value: Any, secret: bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else canonical_bytes(value)
    return hmac.new(secret, raw, hashlib.sha256).hexdigest()


def project(
    data: dict[str, Any], rules: PrivacyRules, secret: bytes | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``data`` into ``(public, private)``; ``private`` maps JSON pointers to originals.

    Pointers name the places in ``data``, before anything is removed. A ``local`` mark on
    an array's ``items`` removes every item of that array (the public array is left
    empty); the items are removed last first, so each pointer still names its original,
    and :func:`merge_private` puts them back in order."""
    if not rules:
        return data, {}
    public = copy.deepcopy(data)
    private: dict[str, Any] = {}
    for path, rule in rules.fields:
        located = _locate(public, path)
        for pointer, parent, key in located:
            original = parent[key]
            private[pointer] = original
            if rule == "mask":
                # a value that is no string is masked as its canonical text, never sent as
                # it is (the contract's schema then decides whether the masked form is valid)
                text = original if isinstance(original, str) else canonical_bytes(original).decode()
                parent[key] = mask_value(text)
            elif rule == "hash":
                if secret is None:
                    raise GuantongError(
                        ErrorCode.PRIVACY_SECRET_MISSING,
                        f"field {pointer} is hashed with the province secret, which this node "
                        "lacks (set province_secret in node.toml or GUANTONG_PROVINCE_SECRET)",
                    )
                parent[key] = _hash_value(original, secret)
        if rule == "local":
            # deleting an array item moves the ones after it: delete from the last, so the
            # (parent, index) pairs located above stay true (no path lies inside another
            # private field, so other paths are not moved)
            for _, parent, key in reversed(located):
                del parent[key]
    return public, private


def merge_private(public: dict[str, Any] | None, private: dict[str, Any]) -> dict[str, Any] | None:
    """Put the originals back: what the origin shows its own users.

    An array item masked or hashed is still in the public array, and its original replaces
    it; one kept ``local`` was removed with all its array's items (:func:`project`), and the
    originals are appended in the order of their indices, so pointers are taken in numeric
    order (the stored map's keys come back sorted as text: ``/a/10`` before ``/a/2``)."""
    if public is None or not private:
        return public
    merged = copy.deepcopy(public)
    parsed = [(pointer_tokens(pointer), value) for pointer, value in private.items()]
    parsed.sort(
        key=lambda item: [
            (0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in item[0]
        ]
    )
    for parts, value in parsed:
        target: Any = merged
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if not isinstance(target, list):
            target[last] = value
        elif int(last) < len(target):
            target[int(last)] = value
        else:
            target.append(value)
    return merged


def _locate(data: Any, path: Path, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(pointer, parent, key)`` for every present value at ``path``."""
    head, rest = path[0], path[1:]
    found: list[tuple[str, Any, Any]] = []
    if head == "*":
        if isinstance(data, list):
            for i, item in enumerate(data):
                found.extend(_descend(item, rest, f"{prefix}/{i}", data, i))
        return found
    if isinstance(data, dict) and head in data:
        found.extend(_descend(data[head], rest, f"{prefix}/{pointer_token(head)}", data, head))
    return found


def _descend(
    value: Any, rest: Path, pointer: str, parent: Any, key: Any
) -> list[tuple[str, Any, Any]]:
    if not rest:
        return [(pointer, parent, key)]
    return _locate(value, rest, pointer)
