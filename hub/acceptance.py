"""The acceptance check (验收): is a city's or county's integration complete, reconciled,
timely, standard and secure? Criterion by criterion, each with its evidence.

Run by the province (or any ancestor) over a prefix it holds, it reads what the hub
already keeps — heads, signed heads, roots, rollups, keys, tasks and the record of refused
segments — rather than scanning everything, except where the criterion is itself a scan
(integrity re-hashes every entry of the subtree: the ``fast`` path reads only the fields
the chain needs, the bytes having been validated when they were accepted).

1. **coverage** (应接尽接/应活尽活): every expected node — the organisation register when one
   is imported (``guantong register import``), else every certified node — is enrolled and
   was heard from (a signed head) within ``silent_days``;
2. **integrity**: every held chain, hash and signed head verifies; no fork was refused
   without review; nothing is pending;
3. **reconciliation** (数字对账): the lower hub's root for the subtree equals ours; otherwise
   the bisection names the origins that differ (the lower hub is reached at ``--hub URL``);
   a lower hub that cannot be reached, refuses, or answers what no hub would fails it, with
   the error as evidence;
4. **timeliness**: the 90th percentile of sync lag (write → arrival here) per tier is within
   ``lag_p90_hours``; assigned tasks known here closed by their deadline at the required
   rate; no red overdue warning raised in the subtree;
5. **standards**: the share of valid entries is at least ``valid_share``; no entry uses a
   retired contract version;
6. **security** (+1): every node's current certificate is valid; no latest signed head is
   signed by a revoked key; no refused signature, chain or fork left unreviewed.

The report is JSON signed by the checker, and a readable HTML page with Chinese labels.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from node.reconcile import RootSource, bisect, subtree_roots
from node.runtime import Node
from node.tables import ENTRIES, HEADS, KEYS, RECORDS, REGISTER, REJECTIONS
from node.tasks import task_views
from node.verify import VerifyReport, verify_log
from schemas.errors import GuantongError
from schemas.ids import check_node_id, is_in_subtree
from schemas.times import format_time, parse_time

__all__ = ["CRITERIA", "Criterion", "Thresholds", "accept"]

CRITERIA = {
    "coverage": "接入覆盖（应接尽接、应活尽活）",
    "integrity": "数据完整（链、哈希、签名）",
    "reconciliation": "数字对账",
    "timeliness": "及时性（同步时延、任务办结）",
    "standards": "标准规范（契约合规）",
    "security": "安全（证书、吊销、拒收）",
}
SECURITY_CODES = ("bad_signature", "bad_hash", "bad_chain", "fork", "revoked_key", "unknown_origin")


@dataclass(frozen=True)
class Thresholds:
    silent_days: int = 7
    lag_p90_hours: float = 24.0
    task_closure_rate: float = 0.9
    valid_share: float = 0.99


@dataclass
class Criterion:
    id: str
    title: str
    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _in(column: Any, prefix: str) -> Any:
    return (column == prefix) | column.startswith(prefix + ".")


async def accept(
    node: Node,
    prefix: str,
    *,
    lower: RootSource | None = None,
    thresholds: Thresholds = Thresholds(),
    deep: bool = False,
) -> dict[str, Any]:
    """Run every criterion; returns the signed report (``passed`` is the verdict)."""
    check_node_id(prefix)
    now = node.clock()
    criteria = [
        _coverage(node, prefix, thresholds, now),
        _integrity(node, prefix, deep),
        await _reconciliation(node, prefix, lower),
        _timeliness(node, prefix, thresholds, now),
        _standards(node, prefix, thresholds),
        _security(node, prefix, now),
    ]
    report = {
        "prefix": prefix,
        "checker": node.id,
        "checked_at": format_time(now),
        "thresholds": asdict(thresholds),
        "passed": all(c.passed for c in criteria),
        "criteria": [asdict(c) for c in criteria],
    }
    signed: dict[str, Any] = node.signer.sign_object(_decimals(report))
    return signed


def _decimals(value: Any) -> Any:
    """Signed objects hold no floats (PROTOCOL §2): rates and hours become decimal strings."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "NaN"
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(v) for v in value]
    return value


def _heads(node: Node, prefix: str) -> dict[str, tuple[int, str | None]]:
    """origin → (seq, time of its latest signed head)."""
    with node.store.read() as conn:
        rows = conn.execute(
            select(HEADS.c.origin, HEADS.c.seq, HEADS.c.signed_head).where(
                HEADS.c.seq > 0, _in(HEADS.c.origin, prefix)
            )
        ).all()
    return {
        r.origin: (int(r.seq), orjson.loads(r.signed_head)["time"] if r.signed_head else None)
        for r in rows
    }


def _coverage(node: Node, prefix: str, t: Thresholds, now: Any) -> Criterion:
    with node.store.read() as conn:
        register = {
            r.node: (r.name, r.tier)
            for r in conn.execute(select(REGISTER).where(_in(REGISTER.c.node, prefix)))
        }
        certified = {
            r.node: r.tier
            for r in conn.execute(
                select(KEYS.c.node, KEYS.c.tier).where(
                    # a node whose every key is revoked is decommissioned: not expected,
                    # and not enrolled
                    KEYS.c.cert.is_not(None),
                    KEYS.c.revoked_from.is_(None),
                    _in(KEYS.c.node, prefix),
                )
            )
        }
    # the city itself is expected too: a city with nothing below it, silent for a month,
    # passed as "0/0 enrolled" (its subtree's heads count for it: see below)
    expected = {n: tier for n, (_, tier) in register.items()} if register else dict(certified)
    heads = _heads(node, prefix)
    since = format_time(now - timedelta(days=t.silent_days))
    missing = sorted(n for n in expected if n not in certified)
    silent = []
    for n in sorted(expected):
        if n in missing:
            continue
        times = [time for origin, (_, time) in heads.items() if is_in_subtree(origin, n) and time]
        if not times or max(times) < since:
            silent.append(n)
    named = {n: register.get(n, ("", ""))[0] for n in missing + silent}
    passed = not missing and not silent
    return Criterion(
        "coverage",
        CRITERIA["coverage"],
        passed,
        f"{len(expected) - len(missing)}/{len(expected)} enrolled, "
        f"{len(expected) - len(missing) - len(silent)} heard from in {t.silent_days} days",
        {
            "expected": len(expected),
            "source": "register" if register else "certificates",
            "not_enrolled": missing,
            "silent": silent,
            "names": named,
        },
    )


def _integrity(node: Node, prefix: str, deep: bool) -> Criterion:
    report = VerifyReport()
    problems = [str(p) for p in verify_log(node.log, prefix=prefix, report=report, fast=not deep)]
    with node.store.read() as conn:
        pending = conn.execute(
            select(func.count())
            .select_from(ENTRIES)
            .where(ENTRIES.c.status == "pending", _in(ENTRIES.c.origin, prefix))
        ).scalar_one()
        forks = [
            r.origin
            for r in conn.execute(
                select(REJECTIONS.c.origin).where(
                    REJECTIONS.c.code == "fork",
                    REJECTIONS.c.reviewed.is_(False),
                    _in(REJECTIONS.c.origin, prefix),
                )
            )
        ]
    passed = not problems and not pending and not forks
    return Criterion(
        "integrity",
        CRITERIA["integrity"],
        passed,
        f"{report.entries} entries of {report.origins} origins re-verified; "
        f"{len(problems)} broken, {pending} pending, {len(forks)} forks",
        {
            "problems": problems[:100],
            "pending": int(pending),
            "forks": sorted(set(forks)),
            "entries": report.entries,
            "signed_heads": report.signed_heads,
            "deep": deep,
        },
    )


async def _reconciliation(node: Node, prefix: str, lower: RootSource | None) -> Criterion:
    mine, _ = subtree_roots(node.store, prefix)
    if prefix == node.id:
        return Criterion(
            "reconciliation",
            CRITERIA["reconciliation"],
            True,
            "the checker's own subtree",
            {"root": mine.root, "origins": mine.origins, "entries": mine.entries},
        )
    if lower is None:
        return Criterion(
            "reconciliation",
            CRITERIA["reconciliation"],
            False,
            "not checked: the lower hub was not reachable (pass --hub URL)",
            {"root": mine.root},
        )
    try:
        theirs, _ = await lower.roots(prefix)
        differences = [] if theirs.root == mine.root else await bisect(_Local(node), lower, prefix)
    except GuantongError as exc:
        # the lower hub unreachable, refusing, or answering what no hub would (not JSON,
        # children that are not below the prefix…): nothing shows the subtrees agree
        return Criterion(
            "reconciliation",
            CRITERIA["reconciliation"],
            False,
            f"not checked: the lower hub's answer was unusable ({exc.code.value})",
            {
                "root_here": mine.root,
                "origins": mine.origins,
                "entries": mine.entries,
                "error": {"code": exc.code.value, "message": exc.message[:500]},
            },
        )
    passed = not differences
    return Criterion(
        "reconciliation",
        CRITERIA["reconciliation"],
        passed,
        "roots equal" if passed else f"{len(differences)} origin(s) differ",
        {
            "root_here": mine.root,
            "root_there": theirs.root,
            "origins": mine.origins,
            "entries": mine.entries,
            "differences": [d.to_dict() for d in differences],
        },
    )


class _Local:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def roots(self, prefix: str) -> Any:
        return subtree_roots(self.node.store, prefix, children=True)


def _timeliness(node: Node, prefix: str, t: Thresholds, now: Any) -> Criterion:
    with node.store.read() as conn:
        tiers = {
            r.node: r.tier
            for r in conn.execute(select(KEYS.c.node, KEYS.c.tier).where(KEYS.c.tier.is_not(None)))
        }
        lags: dict[str, list[float]] = defaultdict(list)
        for origin, time, received in conn.execute(
            select(ENTRIES.c.origin, ENTRIES.c.time, ENTRIES.c.received_at).where(
                _in(ENTRIES.c.origin, prefix)
            )
        ):
            hours = (parse_time(received) - parse_time(time)).total_seconds() / 3600
            lags[tiers.get(origin, "unknown")].append(max(0.0, hours))
        red = conn.execute(
            select(func.count())
            .select_from(RECORDS)
            .where(
                RECORDS.c.contract == "warning",
                _in(RECORDS.c.origin, prefix),
                RECORDS.c.data["level"].as_string() == "red",
                RECORDS.c.data["cleared_at"].as_string().is_(None),  # still open
            )
        ).scalar_one()
    percentiles = {tier: _percentiles(values) for tier, values in sorted(lags.items())}
    slow = [tier for tier, p in percentiles.items() if p["p90"] > t.lag_p90_hours]
    due = [
        v
        for v in task_views(node)
        if v.task.kind == "assign"
        and v.task.due
        and v.state != "cancelled"  # withdrawn by its issuer: nothing left to close
        and is_in_subtree(v.task.target, prefix)
        and v.task.due <= format_time(now)
    ]
    closed = [v for v in due if v.closed_on_time]
    rate = len(closed) / len(due) if due else None
    passed = not slow and (rate is None or rate >= t.task_closure_rate) and not red
    lag_text = ", ".join(f"{tier} {p['p90']:.1f} h" for tier, p in percentiles.items())
    return Criterion(
        "timeliness",
        CRITERIA["timeliness"],
        passed,
        f"sync lag p90 by tier: {lag_text or 'no entries'}; "
        f"tasks closed on time {len(closed)}/{len(due)}; {red} red warnings",
        {
            "lag_hours": percentiles,
            "slow_tiers": slow,
            "tasks_due": len(due),
            "tasks_closed_on_time": len(closed),
            "closure_rate": rate,
            "red_warnings": int(red),
            "late_tasks": [v.task.id for v in due if v not in closed][:100],
        },
    )


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0], "count": 1}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 3),
        "p90": round(cuts[89], 3),
        "p99": round(cuts[98], 3),
        "count": len(values),
    }


def _standards(node: Node, prefix: str, t: Thresholds) -> Criterion:
    with node.store.read() as conn:
        rows = conn.execute(
            select(ENTRIES.c.contract, ENTRIES.c.version, ENTRIES.c.status, func.count())
            .where(_in(ENTRIES.c.origin, prefix))
            .group_by(ENTRIES.c.contract, ENTRIES.c.version, ENTRIES.c.status)
        ).all()
        invalid_by = [
            r.origin
            for r in conn.execute(
                select(ENTRIES.c.origin)
                .where(ENTRIES.c.status == "invalid", _in(ENTRIES.c.origin, prefix))
                .distinct()
            )
        ]
    total = sum(int(r[3]) for r in rows)
    valid = sum(int(r[3]) for r in rows if r[2] == "valid")
    retired = sorted(
        {
            f"{c} {v}"
            for c, v, _, n in rows
            if node.registry.knows(c, v) and node.registry.get(c, v).status == "retired"
        }
    )
    share = valid / total if total else 1.0
    passed = share >= t.valid_share and not retired
    return Criterion(
        "standards",
        CRITERIA["standards"],
        passed,
        f"{share:.2%} of {total} entries valid; "
        f"retired versions in use: {', '.join(retired) or 'none'}",
        {
            "entries": total,
            "valid": valid,
            "valid_share": round(share, 6),
            "retired_in_use": retired,
            "origins_with_invalid": sorted(invalid_by)[:100],
        },
    )


def _security(node: Node, prefix: str, now: Any) -> Criterion:
    moment = format_time(now)
    with node.store.read() as conn:
        keys = conn.execute(
            select(KEYS).where(KEYS.c.cert.is_not(None), _in(KEYS.c.node, prefix))
        ).all()
        refused = conn.execute(
            select(REJECTIONS.c.origin, REJECTIONS.c.code, func.count())
            .where(
                REJECTIONS.c.reviewed.is_(False),
                REJECTIONS.c.code.in_(SECURITY_CODES),
                _in(REJECTIONS.c.origin, prefix),
            )
            .group_by(REJECTIONS.c.origin, REJECTIONS.c.code)
        ).all()
        heads = conn.execute(
            select(HEADS.c.origin, HEADS.c.signed_head).where(
                HEADS.c.seq > 0, _in(HEADS.c.origin, prefix)
            )
        ).all()
    newest: dict[str, Any] = {}
    for key in keys:
        if key.revoked_from is not None:
            continue  # a node whose every key is revoked is decommissioned: its keys expire
        if key.node not in newest or key.not_before > newest[key.node].not_before:
            newest[key.node] = key
    expired = sorted(
        n for n, k in newest.items() if k.not_after is not None and k.not_after < moment
    )
    by_id = {k.key_id: k for k in keys}
    revoked_in_use = []
    for origin, raw in heads:
        if raw is None:
            continue
        head = orjson.loads(raw)
        signer = by_id.get(head["sig"].partition(":")[0])
        if (
            signer is not None
            and signer.revoked_from is not None
            and head["time"] >= signer.revoked_from
        ):
            revoked_in_use.append(origin)
    unreviewed = [{"origin": o, "code": c, "count": int(n)} for o, c, n in refused]
    passed = not expired and not revoked_in_use and not unreviewed
    return Criterion(
        "security",
        CRITERIA["security"],
        passed,
        f"{len(newest)} certified nodes, {len(expired)} expired, "
        f"{len(revoked_in_use)} revoked keys in use, {len(unreviewed)} unreviewed refusals",
        {
            "certified": len(newest),
            "expired": expired,
            "revoked_in_use": sorted(revoked_in_use),
            "unreviewed_refusals": unreviewed,
        },
    )
