"""Upcasters: present a record written under an older major in a newer one (PROTOCOL §9).

A breaking change is a new major plus one small pure function per
``(contract, major → major + 1)``, registered here with :func:`upcaster`. Functions take
the old data and the new major's schema document (so mapping tables can ship as data in
the bundle, as ``x-upcast-from-<major>``) and return new data; they never touch the
original entry bytes. :func:`present` chains them to reach the requested major.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from contracts.registry import ContractVersion, Registry
from schemas.errors import ErrorCode, GuantongError

__all__ = ["Presented", "UPCASTERS", "folded_values", "present", "upcaster"]

Upcaster = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(contract: str, from_major: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(contract, from_major)] = fn
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
        current = fn(copy.deepcopy(current), target.schema)
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


@upcaster("opinion", 1)
def _opinion_1_to_2(data: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Opinion 2.0 splits ``category`` into a coarse ``category`` and a ``subcategory``."""
    table: dict[str, list[str]] = schema["x-upcast-from-1"]["category"]
    old = data.get("category", "other")
    coarse, fine = table.get(old, ["other", "other"])
    data["category"] = coarse
    data["subcategory"] = fine
    return data
