"""The contract registry: a loaded bundle with compiled validators (PROTOCOL §9).

A bundle is ``index.json`` plus ``<name>/<major>.<minor>.json`` (JSON Schema 2020-12). The
registry compiles every schema once (jsonschema-rs, formats on; it never mutates input)
and answers: which versions exist and in what status, which one a node writes by default
(``current`` in the index, else the newest active), whether a record is valid — with the
JSON pointer and rule of each violation — and how to present a record in a newer major.

Validation is two-speed: ``is_valid`` (the compiled fast path) and, only on failure,
``iter_errors`` for the details. The same bundle travels to children as canonical bytes
(:meth:`Registry.bundle_bytes`), so a signature over it is stable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs

from contracts.privacy import PrivacyRules, privacy_rules
from schemas.canonical import canonical_bytes, parse_json, pointer_token
from schemas.errors import ErrorCode, GuantongError

__all__ = [
    "DEFAULT_BUNDLE",
    "ContractVersion",
    "EntryStatus",
    "Registry",
    "Violation",
    "index_problems",
    "version_key",
]

DEFAULT_BUNDLE = Path(__file__).parent / "bundle"
_VERSION = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
Status = Literal["active", "deprecated", "retired"]


def version_key(version: str) -> tuple[int, int]:
    match = _VERSION.fullmatch(version)
    if match is None:
        raise GuantongError(ErrorCode.UNKNOWN_VERSION, f"invalid contract version {version!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a record breaks its contract."""

    pointer: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.pointer, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class ContractVersion:
    name: str
    version: str
    status: Status
    active_from: str | None
    deprecated_from: str | None
    retired_from: str | None
    schema: dict[str, Any] = field(repr=False)
    _validator: Any = field(repr=False, compare=False)

    @property
    def major(self) -> int:
        return version_key(self.version)[0]

    @cached_property
    def privacy(self) -> PrivacyRules:
        return privacy_rules(self.schema)

    def is_valid(self, data: Any) -> bool:
        return bool(self._validator.is_valid(data))

    def violations(self, data: Any) -> list[Violation]:
        if self._validator.is_valid(data):
            return []
        return [_violation(err) for err in self._validator.iter_errors(data)]


EntryStatus = Literal["valid", "invalid", "pending"]


class Registry:
    def __init__(
        self, index: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        """Compile a bundle; anything malformed in it is ``bundle_invalid``, never another
        exception: a bundle also arrives from above in a task, and a receiver must be able
        to refuse it and go on."""
        if not isinstance(index, dict) or not isinstance(index.get("contracts", {}), dict):
            raise GuantongError(ErrorCode.BUNDLE_INVALID, 'index.json is {"contracts": {…}, …}')
        problems = index_problems(index)
        if problems:
            _, pointer, message = problems[0]
            raise GuantongError(ErrorCode.BUNDLE_INVALID, f"index.json {pointer}: {message}")
        self.index = index
        self.bundle_version = int(index.get("bundle_version", 0))
        self._versions: dict[str, dict[str, ContractVersion]] = {}
        for name, meta in sorted(index.get("contracts", {}).items()):
            if _NAME.fullmatch(name) is None or not isinstance(meta, dict):
                raise GuantongError(ErrorCode.BUNDLE_INVALID, f"invalid contract name {name!r}")
            listed = meta.get("versions", {})
            if not isinstance(listed, dict) or not all(map(_VERSION.fullmatch, listed)):
                raise GuantongError(
                    ErrorCode.BUNDLE_INVALID,
                    f"{name}: versions is an object of <major>.<minor> versions",
                )
            compiled: dict[str, ContractVersion] = {}
            for version, info in sorted(listed.items(), key=lambda kv: version_key(kv[0])):
                schema = schemas.get((name, version))
                if schema is None:
                    raise GuantongError(
                        ErrorCode.BUNDLE_INVALID, f"{name}/{version}.json is missing"
                    )
                compiled[version] = _compile(name, version, info, schema)
                compiled[version].privacy  # noqa: B018 - a mark no projection applies: refused now
            self._versions[name] = compiled

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: Path) -> Registry:
        index = _read_json(path / "index.json")
        contracts = index.get("contracts") if isinstance(index, dict) else None
        schemas = {
            (name, version): _read_json(path / name / f"{version}.json")
            for name, meta in (contracts.items() if isinstance(contracts, dict) else ())
            if _NAME.fullmatch(name) and isinstance(meta, dict)
            for version in _of_dict(meta, "versions")
            if _VERSION.fullmatch(version)
        }
        return cls(index, schemas)

    @classmethod
    def default(cls) -> Registry:
        return cls.from_dir(DEFAULT_BUNDLE)

    @classmethod
    def from_bundle_bytes(cls, raw: bytes) -> Registry:
        try:
            value = parse_json(raw)
        except GuantongError as exc:
            raise GuantongError(ErrorCode.BUNDLE_INVALID, f"a bundle: {exc.message}") from exc
        if (
            not isinstance(value, dict)
            or set(value) != {"index", "schemas"}
            or not isinstance(value["schemas"], dict)
        ):
            raise GuantongError(ErrorCode.BUNDLE_INVALID, 'a bundle is {"index":…,"schemas":…}')
        schemas = {}
        for key, schema in value["schemas"].items():
            name, _, version = key.partition("/")
            schemas[(name, version)] = schema
        return cls(value["index"], schemas)

    def bundle_bytes(self) -> bytes:
        """The whole bundle as canonical JSON: what a hub sends its children."""
        schemas = {f"{cv.name}/{cv.version}": cv.schema for cv in self.all_versions()}
        return canonical_bytes({"index": self.index, "schemas": schemas})

    def export(self, dest: Path) -> None:
        """Write the bundle as a folder, the format :meth:`from_dir` reads."""
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "index.json").write_bytes(_pretty(self.index))
        for cv in self.all_versions():
            (dest / cv.name).mkdir(exist_ok=True)
            (dest / cv.name / f"{cv.version}.json").write_bytes(_pretty(cv.schema))

    # -- lookup --------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[ContractVersion]:
        return list(self._contract(name).values())

    def all_versions(self) -> list[ContractVersion]:
        return [cv for name in self.names() for cv in self._versions[name].values()]

    def knows(self, name: str, version: str) -> bool:
        return version in self._versions.get(name, {})

    def get(self, name: str, version: str) -> ContractVersion:
        versions = self._contract(name)
        found = versions.get(version)
        if found is None:
            known = ", ".join(versions)
            raise GuantongError(
                ErrorCode.UNKNOWN_VERSION,
                f"contract {name} has no version {version} "
                f"(bundle {self.bundle_version} has {known})",
            )
        return found

    def current(self, name: str) -> ContractVersion:
        """The version a node writes unless told otherwise."""
        meta = self.index["contracts"][self._name(name)]
        if meta.get("current"):
            return self.get(name, meta["current"])
        active = [cv for cv in self.versions(name) if cv.status == "active"]
        if not active:
            raise GuantongError(ErrorCode.RETIRED_VERSION, f"contract {name} has no active version")
        return active[-1]

    def for_writing(self, name: str, version: str | None) -> ContractVersion:
        cv = self.current(name) if version is None else self.get(name, version)
        if cv.status == "retired":
            raise GuantongError(
                ErrorCode.RETIRED_VERSION,
                f"{name} {cv.version} was retired on {cv.retired_from}; "
                f"write {self.current(name).version}",
            )
        return cv

    def check(
        self, name: str, version: str, op: str, data: Any
    ) -> tuple[EntryStatus, list[Violation]]:
        """How a hub classifies an authentic entry (PROTOCOL §4).

        Unknown contract or version: ``pending`` (kept; re-checked when contracts arrive).
        A ``put`` whose data breaks the schema: ``invalid`` (kept, relayed, not applied).
        """
        cv = self._versions.get(name, {}).get(version)
        if cv is None:
            return "pending", []
        if op == "del":
            return "valid", []
        problems = cv.violations(data)
        return ("invalid", problems) if problems else ("valid", [])

    def rules(self, name: str) -> dict[str, Any]:
        """A rule set shipped in the bundle (``index.json`` → ``rules``), e.g. the points of
        the deputy performance index; empty when the bundle has none."""
        found = (self.index.get("rules") or {}).get(name)
        return found if isinstance(found, dict) else {}

    def newest_major(self, name: str) -> int:
        return max(cv.major for cv in self.versions(name))

    def _name(self, name: str) -> str:
        if name not in self._versions:
            raise GuantongError(
                ErrorCode.UNKNOWN_CONTRACT,
                f"unknown contract {name!r} (known: {', '.join(self.names())})",
            )
        return name

    def _contract(self, name: str) -> dict[str, ContractVersion]:
        return self._versions[self._name(name)]


def _compile(name: str, version: str, info: Any, schema: Any) -> ContractVersion:
    if not isinstance(schema, dict):
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"{name}/{version}.json is not an object")
    status = info.get("status") if isinstance(info, dict) else None
    if status not in ("active", "deprecated", "retired") or not isinstance(info, dict):
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"{name} {version}: bad status {status!r}")
    try:
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    except (
        ValueError,
        TypeError,
        jsonschema_rs.ValidationError,
        jsonschema_rs.ReferencingError,
    ) as exc:
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"{name}/{version}.json: {exc}") from exc
    return ContractVersion(
        name=name,
        version=version,
        status=status,
        active_from=info.get("active_from"),
        deprecated_from=info.get("deprecated_from"),
        retired_from=info.get("retired_from"),
        schema=schema,
        _validator=validator,
    )


def index_problems(index: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What is wrong with the values of ``index.json``, as ``(contract, JSON pointer,
    message)`` (contract empty for the index's own members):
    ``bundle_version`` a non-negative integer, ``rules`` an object, each version's entry an
    object with a known ``status``, ``current`` a listed version. Contract names and the
    shape of ``contracts`` and ``versions`` are checked by whoever walks them (the registry
    while compiling, ``contracts check`` as ``invalid_index``)."""
    found: list[tuple[str, str, str]] = []
    bundle_version = index.get("bundle_version", 0)
    if (
        not isinstance(bundle_version, int)
        or isinstance(bundle_version, bool)
        or bundle_version < 0
    ):
        found.append(("", "/bundle_version", f"{bundle_version!r} is not a non-negative integer"))
    if not isinstance(index.get("rules", {}), dict):
        found.append(("", "/rules", "is not an object of named rule sets"))
    contracts = index.get("contracts")
    for name, meta in contracts.items() if isinstance(contracts, dict) else ():
        versions = _of_dict(meta, "versions")
        for version, info in versions.items():
            status = info.get("status") if isinstance(info, dict) else None
            if status not in ("active", "deprecated", "retired"):
                shown = "is not an object" if not isinstance(info, dict) else f"status {status!r}"
                where = f"/contracts/{pointer_token(name)}/versions/{pointer_token(version)}"
                found.append(
                    (name, where, f"{name} {version} {shown} (active, deprecated, retired)")
                )
        current = meta.get("current") if isinstance(meta, dict) else None
        if current is not None and (not isinstance(current, str) or current not in versions):
            where = f"/contracts/{pointer_token(name)}/current"
            found.append((name, where, f"{name}: current {current!r} is not listed"))
    return found


def _of_dict(node: Any, key: str) -> dict[str, Any]:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, dict) else {}


def _violation(err: Any) -> Violation:
    path = [str(p) for p in err.instance_path]
    rule = str(err.schema_path[-1]) if len(err.schema_path) else "schema"
    if rule == "required":
        match = re.search(r'^"([^"]+)" is a required property', err.message)
        if match:
            path.append(match.group(1))
    elif rule == "additionalProperties":
        match = re.search(r"\('([^']+)' was unexpected", err.message)
        if match:
            path.append(match.group(1))
    pointer = "".join("/" + pointer_token(p) for p in path)
    return Violation(pointer=pointer, rule=rule, message=_shorten(err.message))


def _shorten(message: str, limit: int = 240) -> str:
    """Messages quote the offending value; a 60 KiB value must not become the message."""
    if len(message) <= limit:
        return message
    return message[: limit // 2] + " … " + message[-(limit // 2) :]


def _read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"{path} is missing") from exc
    except GuantongError as exc:
        raise GuantongError(ErrorCode.BUNDLE_INVALID, f"{path}: {exc.message}") from exc


def _pretty(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
