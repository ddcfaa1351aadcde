"""Rollups: what a hub's dashboard and the province's checks count, kept as they arrive.

Every metric is a sum over *records in their latest valid state* (or over entries), split
by origin and day. Applying a record therefore adds its new contribution and subtracts the
contribution of the state it replaces, in the same transaction as the record itself; the
guard that makes re-delivery harmless for records (a newer seq of the same origin wins)
makes it harmless here too. :func:`rebuild` recomputes everything from the records and the
log; a test checks both give the same numbers.

Contributions (``metric``/``key`` → amount), by contract:

- ``opinion`` on its ``received_at`` day: ``total``, ``status:<s>``, ``category:<c>``,
  ``resolved`` (resolved or closed), ``on_time`` (resolved within ``ON_TIME_DAYS``),
  ``rating_sum`` and ``rating_count`` (citizen ratings);
- ``suggestion`` on ``submitted_at``: ``total``, ``status:<s>``, ``satisfaction:<x>``;
- ``livelihood_project`` on 1 January of its year: ``total``, ``warning`` (delayed, or a
  milestone done after its due date);
- ``duty_activity`` on its ``date``: ``kind:<k>``; and ``index`` points per the province's
  performance rules: ``dim:<dimension>`` and ``deputy:<id>:<dimension>``;
- ``reception``: ``count``, ``visitors``; ``warning`` (预警): ``level:<l>``;
- every entry, on its time's day: ``entries/count`` (station activity).

A day is a day in China (UTC+8): times are stored in UTC, and an opinion received at 01:00
Beijing time on the 1st of a month belongs to that day and month, not to the last of the
one before (:func:`day_of`); the on-time rule counts those days too. Dates (a reception's,
a duty activity's) are China dates as entered. A store records in ``meta`` that its
rollups count China days (``rollup_days``); one that does not (a store of an earlier
release, which counted UTC days) is recounted once when its node opens
(:func:`ensure_rollup_days`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from contracts.registry import Registry
from contracts.upcast import folded_values
from node.db import RowsInsert, Store, bulk, driver_rows
from node.tables import ENTRIES, KEYS, META, RECORDS, ROLLUPS
from schemas.errors import ErrorCode, GuantongError

__all__ = [
    "ON_TIME_DAYS",
    "apply_deltas",
    "contribute",
    "contribution",
    "day_of",
    "ensure_rollup_days",
    "entry_counts",
    "opinion_categories",
    "rebuild",
    "record_deltas",
    "stats",
]

ON_TIME_DAYS = 15
ROLLUP_DAYS = "china"
"""What the rollups' days are, in ``meta`` (``rollup_days``): days in China, UTC+8."""
_EAST = 16
"""From 16:00 UTC on, it is the next day in China."""
_LAST_DAY = "9999-12-31"


def day_of(time: str) -> str:
    """The day in China (UTC+8) of an RFC 3339 UTC time; a date is returned as it is."""
    if len(time) < 13 or time[10] != "T" or int(time[11:13]) < _EAST:
        return time[:10]
    if time.startswith(_LAST_DAY):
        return _LAST_DAY  # a valid time with no China day after it: counted on the last
    return (date.fromisoformat(time[:10]) + timedelta(days=1)).isoformat()


Key = tuple[str, str, str, str]  # origin, day, metric, key
_CHUNK = 500


def contribution(
    origin: str, contract: str, data: dict[str, Any] | None, rules: dict[str, Any]
) -> Counter[Key]:
    out: Counter[Key] = Counter()
    contribute(out, 1, origin, contract, data, rules)
    return out


def contribute(
    out: dict[Key, int],
    sign: int,
    origin: str,
    contract: str,
    data: dict[str, Any] | None,
    rules: dict[str, Any],
) -> None:
    """Add ``sign`` × the contribution of one record state to ``out`` (the hot path of
    every hub: one call per applied record, so no intermediate counters)."""
    if data is None:
        return

    def add(day: str, metric: str, key: str, amount: int = 1) -> None:
        k = (origin, day, metric, key)
        out[k] = out.get(k, 0) + sign * amount

    if contract == "opinion":
        received = data.get("received_at")
        if type(received) is not str:
            return
        day = day_of(received)
        status = str(data.get("status"))
        add(day, "opinion", "total")
        add(day, "opinion", f"status:{status}")
        add(day, "opinion", f"category:{data.get('category')}")
        if status in ("resolved", "closed"):
            add(day, "opinion", "resolved")
            resolved = data.get("resolved_at") or data.get("closed_at")
            if isinstance(resolved, str) and _days(received, resolved) <= ON_TIME_DAYS:
                add(day, "opinion", "on_time")
        rating = data.get("rating")
        if isinstance(rating, int):
            add(day, "opinion", "rating_sum", rating)
            add(day, "opinion", "rating_count")
    elif contract == "suggestion" and isinstance(data.get("submitted_at"), str):
        day = day_of(data["submitted_at"])
        add(day, "suggestion", "total")
        add(day, "suggestion", f"status:{data.get('status')}")
        if data.get("satisfaction"):
            add(day, "suggestion", f"satisfaction:{data['satisfaction']}")
    elif contract == "livelihood_project" and isinstance(data.get("year"), int):
        day = f"{data['year']:04d}-01-01"
        add(day, "livelihood", "total")
        slipped = any(
            isinstance(m, dict) and m.get("done") and m.get("due") and m["done"] > m["due"]
            for m in data.get("milestones") or []
        )
        if data.get("status") == "delayed" or slipped:
            add(day, "livelihood", "warning")
    elif contract == "duty_activity" and isinstance(data.get("date"), str):
        day = data["date"][:10]
        kind = str(data.get("kind"))
        add(day, "activity", f"kind:{kind}")
        rule = (rules.get("points") or {}).get(kind)
        if rule:
            dim, points = str(rule["dimension"]), int(rule["points"])
            add(day, "index", f"dim:{dim}", points)
            add(day, "index", f"deputy:{data.get('deputy_id')}:{dim}", points)
    elif contract == "reception" and isinstance(data.get("date"), str):
        day = data["date"][:10]
        add(day, "reception", "count")
        add(day, "reception", "visitors", int(data.get("visitor_count") or 0))
    elif contract == "warning" and isinstance(data.get("raised_at"), str):
        add(day_of(data["raised_at"]), "warning", f"level:{data.get('level')}")


def _days(start: str, end: str) -> int:
    """Days in China from ``start`` to ``end``."""
    return (date.fromisoformat(day_of(end)) - date.fromisoformat(day_of(start))).days


def entry_counts(entries: Iterable[tuple[str, str]]) -> Counter[Key]:
    """``(origin, time)`` of new entries → per-day entry counts."""
    out: Counter[Key] = Counter()
    for origin, time in entries:
        out[(origin, day_of(time), "entries", "count")] += 1
    return out


def apply_deltas(conn: Connection, deltas: dict[Key, int]) -> None:
    bulk(conn, _ADD, [(o, d, m, k[:200], v) for (o, d, m, k), v in deltas.items() if v])


_ADD = RowsInsert(
    ROLLUPS,
    ("origin", "day", "metric", "key", "value"),
    "ON CONFLICT (origin, day, metric, key) DO UPDATE SET value = rollups.value + excluded.value",
    key=("origin", "day", "metric", "key"),
)


def record_deltas(
    conn: Connection, rows: list[dict[str, Any]], rules: dict[str, Any]
) -> Counter[Key]:
    """What applying ``rows`` (record states) changes, given what is stored now; rows that
    the newer-seq guard will not apply contribute nothing."""
    old: dict[tuple[str, str], Any] = {}
    by_origin: dict[str, list[str]] = {}
    for row in rows:
        by_origin.setdefault(row["origin"], []).append(row["record_id"])
    for origin, ids in by_origin.items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            # hand-written, on the driver: SQLAlchemy's expanding IN costs more than the
            # lookup; one origin per statement, so each id is one probe of the key
            found = driver_rows(
                conn,
                "SELECT record_id, origin, contract, seq, deleted, data FROM records "
                f"WHERE origin = ? AND record_id IN ({', '.join('?' * len(chunk))})",
                [origin, *chunk],
            )
            old.update({(r[1], r[0]): r for r in found})
    deltas: Counter[Key] = Counter()
    for row in rows:
        before = old.get((row["origin"], row["record_id"]))
        if before is not None and before[3] >= row["seq"]:
            continue
        if not row["deleted"]:
            contribute(deltas, 1, row["origin"], row["contract"], row["data"], rules)
        if before is not None and not before[4]:
            data = before[5]
            if isinstance(data, str | bytes):  # SQLite hands JSON back as text
                data = orjson.loads(data)
            contribute(deltas, -1, before[1], before[2], data, rules)
    return deltas


def rebuild(store: Store, rules: dict[str, Any]) -> int:
    """Recompute every rollup from the records and the log; returns rows written.

    It runs while the hub serves (a bundle with new rules installed). On PostgreSQL a push
    committing between the delete and the reads would be counted by its own upsert and by
    the rebuild's (each statement reads what is committed when it starts): the table is
    locked against writers first, so a push's upsert waits for the rebuild and adds to
    totals that did not count it. SQLite's write transaction excludes writers anyway."""
    with store.write() as conn:
        return _rebuild(conn, rules)


def ensure_rollup_days(store: Store, rules: dict[str, Any]) -> bool:
    """Recount the rollups once if they do not count days in China yet (a store of an
    earlier release); True if it did. Looked at in a read (a node on a read-only disk still
    opens), then checked again and done in one write transaction, so that two processes
    opening the node at once recount once. A store that cannot be written now is recounted
    at a later opening."""
    query = select(META.c.value).where(META.c.key == "rollup_days")
    with store.read() as conn:
        if conn.execute(query).scalar() == ROLLUP_DAYS:
            return False
    try:
        with store.write() as conn:
            if conn.execute(query).scalar() == ROLLUP_DAYS:
                return False
            _rebuild(conn, rules)
            return True
    except GuantongError as exc:
        if exc.code in (ErrorCode.STORAGE_READ_ONLY, ErrorCode.STORAGE_FULL):
            return False
        raise


def _rebuild(conn: Connection, rules: dict[str, Any]) -> int:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE rollups IN EXCLUSIVE MODE")
    conn.execute(ROLLUPS.delete())
    total: Counter[Key] = Counter()
    for row in conn.execute(
        select(RECORDS.c.origin, RECORDS.c.contract, RECORDS.c.data).where(
            RECORDS.c.deleted.is_(False)
        )
    ):
        contribute(total, 1, row.origin, row.contract, row.data, rules)
    hour = func.substr(ENTRIES.c.time, 1, 13)  # the hour decides the day in China
    for origin, entry_hour, count in conn.execute(
        select(ENTRIES.c.origin, hour, func.count()).group_by(ENTRIES.c.origin, hour)
    ):
        total[(origin, day_of(entry_hour), "entries", "count")] += int(count)
    apply_deltas(conn, total)
    conn.execute(META.delete().where(META.c.key == "rollup_days"))
    conn.execute(META.insert().values(key="rollup_days", value=ROLLUP_DAYS))
    return sum(1 for v in total.values() if v)


def stats(
    store: Store,
    prefix: str,
    *,
    start: str | None = None,
    end: str | None = None,
    dimensions: dict[str, str] | None = None,
    categories: dict[str, str] | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """The rollups of ``prefix``'s subtree between two days (inclusive), with the rates the
    province reads: 办结率 (resolved / total), on-time rate (on time / resolved), average
    citizen rating, station activity (应活率: registered stations that wrote anything in
    the period, over registered), and the deputy performance index with its ranking.

    ``categories`` renames opinion categories of older majors as the current one names
    them (:func:`opinion_categories`): records are counted by the category they were
    written with, and a subtree whose stations moved to opinion 2.0 at different times
    would show 1.x's fine categories beside 2.0's coarse ones."""
    query = select(
        ROLLUPS.c.origin, ROLLUPS.c.day, ROLLUPS.c.metric, ROLLUPS.c.key, ROLLUPS.c.value
    ).where((ROLLUPS.c.origin == prefix) | ROLLUPS.c.origin.startswith(prefix + "."))
    if start:
        query = query.where(ROLLUPS.c.day >= start)
    if end:
        query = query.where(ROLLUPS.c.day <= end)
    totals: Counter[tuple[str, str]] = Counter()
    by_child: dict[str, Counter[tuple[str, str]]] = {}
    by_month: dict[str, Counter[tuple[str, str]]] = {}
    active: set[str] = set()
    depth = prefix.count(".") + 1
    with store.read() as conn:
        for origin, day, metric, key, value in conn.execute(query):
            totals[(metric, key)] += value
            child = ".".join(origin.split(".")[: depth + 1])
            by_child.setdefault(child, Counter())[(metric, key)] += value
            by_month.setdefault(day[:7], Counter())[(metric, key)] += value
            if metric == "entries" and value > 0:
                active.add(origin)
        registered = _registered_stations(conn, prefix)
    fold = categories or {}
    summary = _summary(totals, dimensions or {}, top, fold)
    summary["stations"] = {
        "registered": len(registered),
        "active": len(registered & active),
        "active_rate": _rate(len(registered & active), len(registered)),
    }
    return {
        "prefix": prefix,
        "from": start,
        "to": end,
        **summary,
        "by_node": {
            child: _summary(c, dimensions or {}, 0, fold) for child, c in sorted(by_child.items())
        },
        "by_month": {
            month: _summary(c, dimensions or {}, 0, fold) for month, c in sorted(by_month.items())
        },
    }


def _registered_stations(conn: Connection, prefix: str) -> set[str]:
    rows = conn.execute(
        select(KEYS.c.node).where(
            KEYS.c.tier == "station",
            KEYS.c.revoked_from.is_(None),
            (KEYS.c.node == prefix) | KEYS.c.node.startswith(prefix + "."),
        )
    )
    return {row.node for row in rows}


def _folded(counts: dict[str, int], fold: dict[str, str]) -> dict[str, int]:
    if not fold:
        return counts
    out: Counter[str] = Counter()
    for key, value in counts.items():
        out[fold.get(key, key)] += value
    return dict(sorted(out.items()))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def opinion_categories(registry: Registry) -> dict[str, str]:
    """The opinion categories of older majors as the current version names them."""
    current = registry.current("opinion")
    return folded_values(registry, "opinion", "category", current.major)


def _summary(
    c: Counter[tuple[str, str]], dimensions: dict[str, str], top: int, fold: dict[str, str]
) -> dict[str, Any]:
    def keyed(metric: str, prefix: str) -> dict[str, int]:
        return {
            k[len(prefix) :]: v
            for (m, k), v in sorted(c.items())
            if m == metric and k.startswith(prefix) and v
        }

    total, resolved = c[("opinion", "total")], c[("opinion", "resolved")]
    deputies: dict[str, dict[str, int]] = {}
    for (metric, key), value in c.items():
        if metric == "index" and key.startswith("deputy:") and value:
            _, deputy, dim = key.split(":", 2)
            deputies.setdefault(deputy, {})[dim] = value
    ranking = sorted(
        ({"deputy": d, "points": sum(p.values()), "dimensions": p} for d, p in deputies.items()),
        key=lambda r: (-int(r["points"]), str(r["deputy"])),  # type: ignore[call-overload]
    )
    out: dict[str, Any] = {
        "opinions": {
            "total": total,
            "resolved": resolved,
            "resolution_rate": _rate(resolved, total),
            "on_time_rate": _rate(c[("opinion", "on_time")], resolved),
            "average_rating": (
                round(c[("opinion", "rating_sum")] / c[("opinion", "rating_count")], 2)
                if c[("opinion", "rating_count")]
                else None
            ),
            "by_status": keyed("opinion", "status:"),
            "by_category": _folded(keyed("opinion", "category:"), fold),
        },
        "suggestions": {
            "total": c[("suggestion", "total")],
            "by_status": keyed("suggestion", "status:"),
            "satisfaction": keyed("suggestion", "satisfaction:"),
        },
        "livelihood": {
            "total": c[("livelihood", "total")],
            "warnings": c[("livelihood", "warning")],
        },
        "activities": keyed("activity", "kind:"),
        "receptions": {
            "count": c[("reception", "count")],
            "visitors": c[("reception", "visitors")],
        },
        "warnings": keyed("warning", "level:"),
        "entries": c[("entries", "count")],
        "performance_index": {
            dimensions.get(dim, dim): points for dim, points in keyed("index", "dim:").items()
        },
    }
    if top:
        out["deputy_ranking"] = [{**r, "rank": i + 1} for i, r in enumerate(ranking[:top])]
    return out
