"""Upcasters: present a record written under an older major in a newer one (PROTOCOL §9).

A breaking change is a new major plus one small pure function per
``(contract, major → major + 1)``, registered here with :func:`upcaster`. Functions take
the old data and the new major's ``.0`` schema document (so mapping tables can ship as
data in the bundle, as ``x-upcast-from-<major>``: ``guantong contracts check`` requires
the table on the ``.0``, so that is where it is read, whatever later minors carry) and
return new data; they never touch the original entry bytes. :func:`present` chains them
to reach the requested major, as its newest minor (which admits what its ``.0`` does).

A function that reads a table registers a ``check`` with it: ``contracts check`` runs it
on the table (``invalid_upcast_table`` for a table of the wrong shape, or mapping to
values the new major refuses; ``incomplete_upcast_table`` for a value some older minor
allows that the table leaves out), so what the function meets at run time is a table it
can read. The function still falls back on something valid for what a table lacks (a
bundle can be installed without the check), but only as a last resort.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from contracts.registry import ContractVersion, Registry
from schemas.errors import ErrorCode, GuantongError

__all__ = ["TABLE_CHECKS", "UPCASTERS", "Presented", "folded_values", "present", "upcaster"]

Upcaster = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

TableFinding = tuple[str, str]
"""``(rule, message)``: rule ``invalid_upcast_table`` or ``incomplete_upcast_table``."""
TableCheck = Callable[[Any, dict[str, Any], dict[str, dict[str, Any]]], list[TableFinding]]
"""``check(table, new_schema, older)``: ``new_schema`` is the ``.0`` carrying the table,
``older`` the previous major's documents by version."""
TABLE_CHECKS: dict[tuple[str, int], TableCheck] = {}


def upcaster(
    contract: str, from_major: int, *, check: TableCheck | None = None
) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(contract, from_major)] = fn
        if check is not None:
            TABLE_CHECKS[(contract, from_major)] = check
        return fn

    return register


Presented = tuple[str, dict[str, Any]]
"""``(version, data)``: the version the data now conforms to."""


def present(
    registry: Registry,
    contract: str,
    version: str,
    data: dict[str, Any],
    *,
    major: int | None = None,
) -> Presented:
    """``data`` (valid under ``contract``@``version``) as the newest minor of ``major``.

    ``major`` defaults to the newest major in the bundle. Older-or-equal majors return the
    data unchanged: downcasting is never invented.
    """
    source = registry.get(contract, version)
    target_major = registry.newest_major(contract) if major is None else major
    current_version, current = version, data
    for step in range(source.major, target_major):
        fn = UPCASTERS.get((contract, step))
        target = _newest_of_major(registry, contract, step + 1)
        if fn is None or target is None:
            raise GuantongError(
                ErrorCode.UNKNOWN_VERSION,
                f"no upcaster for {contract} {step}.x → {step + 1}.x",
            )
        # the table is the .0's (where the check asks for it): a 2.1 need not copy it
        first = f"{step + 1}.0"
        carrier = registry.get(contract, first) if registry.knows(contract, first) else target
        current = fn(copy.deepcopy(current), carrier.schema)
        current_version = target.version
    return current_version, current


def folded_values(registry: Registry, contract: str, field: str, major: int) -> dict[str, str]:
    """Each value an older major allows in ``field`` (an enum) that ``major`` names
    otherwise, mapped to its new name: opinion 1.x's category ``transport`` is 2.0's
    ``infrastructure``. Figures counted by that field then show one set of values while
    stations move to the new major at different times. Values the upcasters keep, or that
    have no upcaster to ``major``, are left out."""
    fold: dict[str, str] = {}
    for cv in registry.versions(contract):
        prop = cv.schema.get("properties", {}).get(field, {})
        if cv.major >= major or not isinstance(prop, dict):
            continue
        for value in prop.get("enum") or ():
            if not isinstance(value, str):
                continue
            try:
                _, data = present(registry, contract, cv.version, {field: value}, major=major)
            except GuantongError:
                break  # no way up from this version
            new = data.get(field)
            if isinstance(new, str) and new != value:
                fold[value] = new
    return fold


def _newest_of_major(registry: Registry, contract: str, major: int) -> ContractVersion | None:
    found = [cv for cv in registry.versions(contract) if cv.major == major]
    return found[-1] if found else None


def _check_opinion_table(
    table: Any, schema: dict[str, Any], older: dict[str, dict[str, Any]]
) -> list[TableFinding]:
    """``x-upcast-from-1`` of opinion 2.0: ``{"category": {old: [category, subcategory]}}``,
    each pair allowed by 2.0, every category of every 1.x mapped."""
    mapping = table.get("category") if isinstance(table, dict) else None
    if not isinstance(mapping, dict):
        return [("invalid_upcast_table", 'the table is not {"category": {old: [category, sub]}}')]
    found: list[TableFinding] = []
    props = schema.get("properties")
    fields = [
        props.get(key) if isinstance(props, dict) else None for key in ("category", "subcategory")
    ]
    allowed = [f.get("enum") if isinstance(f, dict) else None for f in fields]
    parents = fields[1].get("x-category") if isinstance(fields[1], dict) else None
    for old, pair in sorted(mapping.items()):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        ):
            shown = f"category {old!r} maps to {pair!r}, not [category, subcategory]"
            found.append(("invalid_upcast_table", shown))
            continue
        refused = [
            v
            for v, enum in zip(pair, allowed, strict=True)
            if isinstance(enum, list) and v not in enum
        ]
        if refused:
            shown = f"category {old!r} maps to {pair!r}, and 2.0 does not allow {refused!r}"
            found.append(("invalid_upcast_table", shown))
        elif isinstance(parents, dict) and parents.get(pair[1], pair[0]) != pair[0]:
            shown = f"category {old!r} maps to {pair!r}, and 2.0 puts {pair[1]!r} under "
            found.append(("invalid_upcast_table", f"{shown}{parents[pair[1]]!r} (x-category)"))
    for version, doc in sorted(older.items()):
        props = doc.get("properties")
        prop = props.get("category") if isinstance(props, dict) else None
        enum = prop.get("enum") if isinstance(prop, dict) else None
        missing = [v for v in enum or () if isinstance(v, str) and v not in mapping]
        if missing:
            shown = (
                f"categories {missing!r} of opinion {version} are not in the table "
                "(upcast they would become other/other)"
            )
            found.append(("incomplete_upcast_table", shown))
    return found


@upcaster("opinion", 1, check=_check_opinion_table)
def _opinion_1_to_2(data: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Opinion 2.0 splits ``category`` into a coarse ``category`` and a ``subcategory``.

    A category the table lacks (or a table of the wrong shape: ``contracts check`` refuses
    both, but a bundle can be installed without it) becomes other/other, which 2.0 allows,
    rather than a record that cannot be shown."""
    table = schema.get("x-upcast-from-1")
    mapping = table.get("category") if isinstance(table, dict) else None
    old = data.get("category", "other")
    pair = mapping.get(old) if isinstance(mapping, dict) and isinstance(old, str) else None
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair):
        data["category"], data["subcategory"] = pair
    else:
        data["category"], data["subcategory"] = "other", "other"
    return data
