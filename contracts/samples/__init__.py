"""Realistic, valid, deterministic sample records for every contract in the bundle.

``sample_records(contract, count, seed=, version=, origin=)`` yields dicts: an ``id`` (a
lowercase UUIDv4, not part of the schema) plus data valid against
``contracts/bundle/<contract>/<version>.json``. Used by ``guantong sample``, tests, the demo and
benchmarks.

Determinism: each run draws from one ``random.Random`` seeded by SHA-256 of (origin, seed,
contract); times are offsets from 2026-01-05T00:00:00.000Z, never the wall clock. The same
arguments give the same records on every machine, and a shorter run is a prefix of a longer
one. The version does not enter the stream: opinions under 1.0, 1.1 and 2.0 are the same
records, differing only in version-specific fields.

References: record ``i`` of contract ``c`` has id SHA-256(origin, seed, c, i), so generators
name each other's records without making them. Deputies referred to are among the first 20
deputies of the same origin and seed, opinions among the first 200, suggestions the first 50,
livelihood projects the first 20, supervision items the first 50 (see ``_base.POOL``): a demo
that loads at least that many of each before the rest has no dangling references. Task ids
name 40 protocol tasks that no generator makes. Node references are the origin, stations
``<county>.sNNN`` and handling units ``<county>.u-xxx`` under the origin's county hub (its first
three segments).
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts.samples import _opinions, _oversight, _platform, _roster
from contracts.samples._base import Context, Generator, RecordIds, derive_seed
from schemas.ids import is_node_id

__all__ = ["SAMPLE_CONTRACTS", "sample_records"]

_INDEX = Path(__file__).resolve().parents[1] / "bundle" / "index.json"

_GENERATORS: dict[str, tuple[Generator, frozenset[int]]] = {  # contract -> (maker, majors)
    "station": (_roster.station, frozenset({1})),
    "deputy": (_roster.deputy, frozenset({1})),
    "opinion": (_opinions.opinion, frozenset({1, 2})),
    "suggestion": (_oversight.suggestion, frozenset({1})),
    "livelihood_project": (_oversight.livelihood_project, frozenset({1})),
    "supervision_item": (_oversight.supervision_item, frozenset({1})),
    "reception": (_roster.reception, frozenset({1})),
    "duty_activity": (_roster.duty_activity, frozenset({1})),
    "task_report": (_platform.task_report, frozenset({1})),
    "node_cert": (_platform.node_cert, frozenset({1})),
    "data_quality": (_platform.data_quality, frozenset({1})),
    "warning": (_oversight.warning, frozenset({1})),
}

SAMPLE_CONTRACTS: tuple[str, ...] = tuple(_GENERATORS)
"""Every contract the generator supports (all of them in the bundle)."""


def sample_records(
    contract: str,
    count: int,
    *,
    seed: int = 0,
    version: str | None = None,
    origin: str = "js.wx.jy.s001",
) -> Iterator[dict[str, Any]]:
    """``count`` records of ``contract``@``version`` (default: its newest 1.x) made at ``origin``.

    Raises ``ValueError`` for an unknown contract or version, a bad count or origin; at the
    call, not at the first ``next()``.
    """
    if contract not in _GENERATORS:
        raise ValueError(f"no sample generator for contract {contract!r}")
    make, majors = _GENERATORS[contract]
    major, minor = _resolve_version(contract, version, majors)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, not {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, not {seed!r}")
    if not is_node_id(origin):
        raise ValueError(f"origin {origin!r} is not a node id")
    ids = RecordIds(origin, seed)
    ctx = Context(
        rng=random.Random(derive_seed(origin, seed, contract)),
        origin=origin,
        seed=seed,
        major=major,
        minor=minor,
        ids=ids,
    )
    return _run(ctx, make, contract, count)


def _run(ctx: Context, make: Generator, contract: str, count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        ctx.index = index
        yield {"id": ctx.ids(contract, index), **make(ctx)}


def _resolve_version(contract: str, version: str | None, majors: frozenset[int]) -> tuple[int, int]:
    listed = sorted(_parse(v) for v in _bundle_versions(contract))
    if version is None:
        ones = [v for v in listed if v[0] == 1]
        if not ones:
            raise ValueError(f"contract {contract!r} has no 1.x version in the bundle")
        return ones[-1]
    if version not in _bundle_versions(contract):
        known = ", ".join(f"{a}.{b}" for a, b in listed)
        raise ValueError(f"contract {contract!r} has no version {version!r} (known: {known})")
    parsed = _parse(version)
    if parsed[0] not in majors:
        raise ValueError(f"no sample generator for contract {contract!r} version {version}")
    return parsed


@functools.cache
def _bundle_versions(contract: str) -> frozenset[str]:
    index = json.loads(_INDEX.read_text(encoding="utf-8"))
    return frozenset(index["contracts"].get(contract, {}).get("versions", {}))


def _parse(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor)
