"""Reconciliation (数字对账, PROTOCOL §8): prove two tiers hold the same logs with one hash.

The root of a subtree is the RFC 6962 tree head over ``canonical({"origin","seq","head"})``
for every origin held under the prefix, sorted by origin. Equal roots mean identical logs;
when they differ, :func:`bisect` compares the roots of each child prefix (``/v1/root`` with
``children=1`` answers them in one request) and descends only into the children that
differ, down to the origins themselves — so finding one missing entry among 10,000
stations costs a handful of requests, not a full listing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from sqlalchemy import select

from node.auth import error_of
from node.db import Store
from node.tables import HEADS
from schemas.canonical import MAX_SAFE_INTEGER
from schemas.errors import ErrorCode, GuantongError, code_of, describe
from schemas.ids import is_node_id, parent_of
from schemas.merkle import head_leaf, merkle_root

__all__ = [
    "Difference",
    "LocalRoots",
    "RemoteRoots",
    "RootInfo",
    "bisect",
    "parse_roots",
    "subtree_roots",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class RootInfo:
    prefix: str
    origins: int
    entries: int
    root: str
    head: tuple[int, str] | None = None
    """The prefix's own origin head, when the prefix node itself has a log here."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "origins": self.origins,
            "entries": self.entries,
            "root": self.root,
        }


def subtree_roots(
    store: Store, prefix: str, *, children: bool = False
) -> tuple[RootInfo, dict[str, RootInfo]]:
    """The root of ``prefix`` and, optionally, of each child prefix below it."""
    query = (
        select(HEADS.c.origin, HEADS.c.seq, HEADS.c.hash)
        .where(HEADS.c.seq > 0)
        .where((HEADS.c.origin == prefix) | HEADS.c.origin.startswith(prefix + "."))
        .order_by(HEADS.c.origin)
    )
    with store.read() as conn:
        rows = [(r.origin, int(r.seq), str(r.hash)) for r in conn.execute(query)]
    # the leaves' order is the ids' code points, whatever the database's collation (a
    # PostgreSQL hub created with a locale's would sort '-' and '.' otherwise, and hubs
    # holding the same heads would disagree on the root)
    rows.sort()
    whole = _info(prefix, rows)
    if not children:
        return whole, {}
    grouped: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    depth = prefix.count(".") + 1
    for row in rows:
        if row[0] != prefix:
            child = ".".join(row[0].split(".")[: depth + 1])
            grouped[child].append(row)
    return whole, {child: _info(child, group) for child, group in sorted(grouped.items())}


def _info(prefix: str, rows: list[tuple[str, int, str]]) -> RootInfo:
    root = merkle_root([head_leaf(o, s, h) for o, s, h in rows]).hex()
    own = next(((s, h) for o, s, h in rows if o == prefix), None)
    return RootInfo(prefix, len(rows), sum(s for _, s, _ in rows), root, own)


class RootSource(Protocol):
    async def roots(self, prefix: str) -> tuple[RootInfo, dict[str, RootInfo]]: ...


class LocalRoots:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def roots(self, prefix: str) -> tuple[RootInfo, dict[str, RootInfo]]:
        return subtree_roots(self.store, prefix, children=True)


class RemoteRoots:
    """Another hub's roots, through its signed ``/v1/root`` endpoint."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.requests = 0

    async def roots(self, prefix: str) -> tuple[RootInfo, dict[str, RootInfo]]:
        self.requests += 1
        try:
            response = await self.client.get(
                f"{self.url}/v1/root", params={"prefix": prefix, "children": 1}
            )
        except httpx.HTTPError as exc:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"{self.url} unreachable: {describe(exc)}"
            ) from exc
        if response.status_code != 200:
            # the hub's own code when it sent one (not_in_subtree, unauthenticated, busy…);
            # else a server or proxy in the way (5xx) is unreachable, the rest refused
            sent = error_of(response).get("code")
            code = (
                code_of(sent)
                if sent is not None
                else ErrorCode.PARENT_UNREACHABLE
                if response.status_code >= 500
                else ErrorCode.FORBIDDEN
            )
            raise GuantongError(
                code,
                f"{self.url} answered /v1/root with {response.status_code}: {response.text[:200]}",
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise GuantongError(
                ErrorCode.MALFORMED, f"{self.url} answered /v1/root?prefix={prefix} with no JSON"
            ) from exc
        return parse_roots(body, prefix, where=f"{self.url} /v1/root?prefix={prefix}")


def parse_roots(
    body: object, prefix: str, *, where: str = "/v1/root"
) -> tuple[RootInfo, dict[str, RootInfo]]:
    """A ``/v1/root?children=1`` answer about ``prefix``, checked before it is believed: the
    prefix asked for, hex roots and heads, counts that are non-negative integers and add up
    to the whole, and children that are node ids exactly one segment below the prefix (so a
    bisection descends at most one level per request and ends within the ids' depth).
    Anything else is ``malformed``, naming what was wrong."""

    def bad(what: str) -> GuantongError:
        return GuantongError(ErrorCode.MALFORMED, f"{where}: {what}")

    if not isinstance(body, dict):
        raise bad("the answer is not a JSON object")
    if body.get("prefix") != prefix:
        raise bad(f"the answer is about {body.get('prefix')!r}, not {prefix!r}")
    whole = _parse(body, prefix, bad)
    children = body.get("children")
    if not isinstance(children, dict):
        raise bad("children is missing or not an object")
    kids: dict[str, RootInfo] = {}
    for name, info in children.items():
        if not is_node_id(name) or parent_of(name) != prefix:
            raise bad(f"child {name[:140]!r} is not a node id one segment below {prefix}")
        if not isinstance(info, dict):
            raise bad(f"child {name}: not an object")
        kid = _parse(info, name, bad)
        if kid.origins < 1:
            raise bad(f"child {name}: a child holds at least one origin")
        kids[name] = kid
    own = whole.head or (0, "")
    if whole.origins != sum(k.origins for k in kids.values()) + bool(whole.head) or (
        whole.entries != sum(k.entries for k in kids.values()) + own[0]
    ):
        raise bad("the children's origins and entries do not add up to the prefix's")
    return whole, kids


def _parse(body: dict[str, Any], prefix: str, bad: Callable[[str], GuantongError]) -> RootInfo:
    counts = []
    for name in ("origins", "entries"):
        value = body.get(name)
        if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
            raise bad(f"{prefix}: {name} {str(value)[:40]!r} is not a non-negative integer")
        counts.append(value)
    root = body.get("root")
    if not isinstance(root, str) or _HEX64.fullmatch(root) is None:
        raise bad(f"{prefix}: root is not 64 lowercase hex characters")
    own = body.get("head")
    head = None
    if own is not None:
        if (
            not isinstance(own, dict)
            or type(own.get("seq")) is not int
            or not 1 <= own["seq"] <= MAX_SAFE_INTEGER
            or not isinstance(own.get("head"), str)
            or _HEX64.fullmatch(own["head"]) is None
        ):
            raise bad(f"{prefix}: head is not {{seq, head}} with a positive seq and a hex hash")
        head = (int(own["seq"]), str(own["head"]))
        if counts[0] < 1 or counts[1] < head[0]:
            raise bad(f"{prefix}: its own head is not counted in its origins and entries")
    return RootInfo(prefix, counts[0], counts[1], root, head)


@dataclass(frozen=True, slots=True)
class Difference:
    origin: str
    here: tuple[int, str] | None
    there: tuple[int, str] | None

    def to_dict(self) -> dict[str, Any]:
        def side(value: tuple[int, str] | None) -> dict[str, Any] | None:
            return None if value is None else {"seq": value[0], "head": value[1]}

        return {"origin": self.origin, "here": side(self.here), "there": side(self.there)}


async def bisect(here: RootSource, there: RootSource, prefix: str) -> list[Difference]:
    """Exactly the origins under ``prefix`` whose heads differ between the two sources.

    Each level descends one id segment (a child that is not one segment below its prefix
    is ``malformed``, whichever source named it), so the descent ends within the ids' depth
    (``MAX_DEPTH``) whatever a source answers."""
    mine, my_children = await here.roots(prefix)
    theirs, their_children = await there.roots(prefix)
    if mine.root == theirs.root:
        return []
    found: list[Difference] = []
    if mine.head != theirs.head:
        found.append(Difference(prefix, mine.head, theirs.head))
    for child in sorted(set(my_children) | set(their_children)):
        if not is_node_id(child) or parent_of(child) != prefix:
            raise GuantongError(
                ErrorCode.MALFORMED, f"child {child[:140]!r} is not one segment below {prefix}"
            )
        a, b = my_children.get(child), their_children.get(child)
        if a is not None and b is not None and a.root == b.root:
            continue
        if (
            a is not None
            and b is not None
            and (a.origins, b.origins) == (1, 1)
            and a.head
            and b.head
        ):
            found.append(Difference(child, a.head, b.head))
            continue
        found.extend(await bisect(here, there, child))
    return found
