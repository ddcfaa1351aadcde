"""The hub dashboard: the subtree's health, its figures, its warnings, the task board and
the acceptance runs — server-rendered, every asset shipped, usable on an offline LAN."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from hub.acceptance import accept
from hub.report_html import render_report
from node.auth import NodeAuth
from node.reconcile import LocalRoots, RemoteRoots
from node.rollups import opinion_categories, stats
from node.runtime import Node
from node.tables import ACCEPTANCE_REPORTS, ENTRIES, HEADS, KEYS, PEERS, REJECTIONS
from node.tasks import issue_task, task_views
from node.web.pages import Reader, Writer, render
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import is_in_subtree
from schemas.times import format_time, parse_time

__all__ = ["router"]


def node_client(node: Node) -> Any:
    import httpx

    return httpx.AsyncClient(timeout=60.0, auth=NodeAuth(node.id, node.signer, node.clock))


router = APIRouter(include_in_schema=False)
MAX_DUE_DAYS = 3660
MAX_REPORT_ID = 2**31 - 1


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, account: Reader) -> Response:
    node: Node = request.app.state.node
    rules = node.registry.rules("performance_index")
    figures = stats(
        node.store,
        node.id,
        dimensions=rules.get("dimensions") or {},
        categories=opinion_categories(node.registry),
    )
    return render(
        request,
        "dashboard.html",
        rows=_subtree(node),
        figures=figures,
        warnings=node.list("warning", limit=0)[-20:][::-1],
        overdue=[v for v in task_views(node, issued_here=True) if v.overdue],
        quality=node.list("data_quality", limit=0)[-20:][::-1],
    )


def _subtree(node: Node) -> list[dict[str, Any]]:
    with node.store.read() as conn:
        heads = conn.execute(select(HEADS).where(HEADS.c.seq > 0).order_by(HEADS.c.origin)).all()
        tiers = dict(
            conn.execute(select(KEYS.c.node, KEYS.c.tier).where(KEYS.c.tier.is_not(None))).all()
        )
        peers = {r.node: r for r in conn.execute(select(PEERS))}
        forks: dict[str, int] = dict(
            conn.execute(
                select(REJECTIONS.c.origin, func.count())
                .where(REJECTIONS.c.code == "fork")
                .group_by(REJECTIONS.c.origin)
            ).all()
        )
        rows = []
        for head in heads:
            last = conn.execute(
                select(ENTRIES.c.time, ENTRIES.c.received_at).where(
                    ENTRIES.c.origin == head.origin, ENTRIES.c.seq == head.seq
                )
            ).first()
            lag = (
                (parse_time(last.received_at) - parse_time(last.time)).total_seconds()
                if last
                else 0
            )
            signed = orjson.loads(head.signed_head)["time"] if head.signed_head else None
            peer = peers.get(head.origin)
            rows.append(
                {
                    "origin": head.origin,
                    "tier": tiers.get(head.origin, ""),
                    "seq": int(head.seq),
                    "last_heard": signed,
                    "lag": max(0.0, lag),
                    "depth": head.origin.count("."),
                    "error": peer.last_error if peer else None,
                    "forks": int(forks.get(head.origin, 0)),
                    "last_push": peer.last_seen if peer else None,
                }
            )
    return rows


@router.get("/tasks", response_class=HTMLResponse)
def tasks(request: Request, account: Reader) -> Response:
    node: Node = request.app.state.node
    views = task_views(node, issued_here=True)[::-1]
    return render(
        request,
        "tasks.html",
        views=views,
        targets=_targets(node),
        error=None,
        form=None,
        max_due_days=MAX_DUE_DAYS,
    )


def _targets(node: Node) -> list[str]:
    """The nodes below this one whose keys it knows: whom a task may be issued to."""
    with node.store.read() as conn:
        return sorted(
            set(
                conn.execute(
                    select(KEYS.c.node).where(KEYS.c.node.startswith(node.id + "."))
                ).scalars()
            )
        )


@router.post("/tasks", response_class=HTMLResponse)
def issue(
    request: Request,
    account: Writer,
    target: Annotated[str, Form()],
    kind: Annotated[str, Form()],
    text: Annotated[str, Form()] = "",
    record: Annotated[str, Form()] = "",
    due_days: Annotated[str, Form()] = "",
    subtree: Annotated[str, Form()] = "",
) -> Response:
    node: Node = request.app.state.node
    payload: dict[str, Any] = {"text": text} if text else {}
    try:  # every mistake in the form is shown on the board, the form kept
        if record:
            payload["record"] = _record(node, record, target)
        due = _due(node, due_days)
        issue_task(node, target=target, kind=kind, payload=payload, subtree=bool(subtree), due=due)
    except (GuantongError, ValueError) as exc:
        views = task_views(node, issued_here=True)[::-1]
        form = {
            "kind": kind,
            "target": target,
            "record": record,
            "text": text,
            "due_days": due_days,
            "subtree": bool(subtree),
        }
        return render(
            request,
            "tasks.html",
            status_code=422,
            views=views,
            targets=sorted({*_targets(node), target}),
            error=getattr(exc, "message", str(exc)),
            form=form,  # what was typed stays: only the mistake needs correcting
            max_due_days=MAX_DUE_DAYS,
        )
    return RedirectResponse("/tasks", 303)


def _due(node: Node, days: str) -> str | None:
    """The due time ``days`` whole days from now; ValueError unless a count of days."""
    if not days.strip():
        return None
    count = int(days)
    if not 0 <= count <= MAX_DUE_DAYS:
        raise ValueError(f"a task is due within 0 to {MAX_DUE_DAYS} days")
    return format_time(node.clock() + timedelta(days=count))


_TASK_RECORDS = ("opinion", "suggestion", "supervision_item", "livelihood_project")


def _record(node: Node, record_id: str, target: str) -> dict[str, str]:
    """The record a task names, by the id typed into the form: of those held under that
    id, the ones in the target's subtree if any (a record is named by its origin and its
    id, so another origin may hold the same id); more than one is ``ambiguous_record``."""
    found = [v for v in node.find(record_id.strip()) if v.contract in _TASK_RECORDS]
    candidates = [v for v in found if is_in_subtree(v.origin, target)] or found
    if not candidates:
        raise GuantongError(ErrorCode.NOT_FOUND, f"no record {record_id}")
    if len(candidates) > 1:
        raise GuantongError(
            ErrorCode.AMBIGUOUS_RECORD,
            f"record {record_id} is held for {len(candidates)} origins "
            f"({', '.join(v.origin for v in candidates)})",
        )
    view = candidates[0]
    return {"contract": view.contract, "id": view.id, "origin": view.origin}


@router.get("/acceptance", response_class=HTMLResponse)
def acceptance_page(request: Request, account: Reader) -> Response:
    node: Node = request.app.state.node
    with node.store.read() as conn:
        past = conn.execute(
            select(
                ACCEPTANCE_REPORTS.c.id,
                ACCEPTANCE_REPORTS.c.prefix,
                ACCEPTANCE_REPORTS.c.checked_at,
                ACCEPTANCE_REPORTS.c.passed,
            )
            .order_by(ACCEPTANCE_REPORTS.c.id.desc())
            .limit(50)
        ).all()
        below = conn.execute(
            select(HEADS.c.origin).where(HEADS.c.origin.startswith(node.id + "."))
        ).scalars()
        depth = node.id.count(".") + 2
        children = sorted({".".join(origin.split(".")[:depth]) for origin in below})
    return render(request, "acceptance.html", past=past, children=children)


@router.post("/acceptance")
async def run_acceptance(
    request: Request,
    account: Writer,
    prefix: Annotated[str, Form()],
    hub_url: Annotated[str, Form()] = "",
) -> Response:
    """Run the acceptance check of ``prefix``; against the hub at ``hub_url`` (the city's
    own server), whose signed Merkle roots the reconciliation compares with what this node
    holds of its subtree, as ``guantong accept --hub URL`` does."""
    node: Node = request.app.state.node
    if not account.is_admin:
        return Response("admins run acceptance checks", status_code=403)
    prefix, hub_url = prefix.strip(), hub_url.strip()
    if hub_url:
        parts = urlsplit(hub_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return Response(f"hub URL {hub_url!r} is no http(s) address", status_code=422)
        async with node_client(node) as http:
            report = await accept(node, prefix, lower=RemoteRoots(http, hub_url))
    else:
        report = await accept(
            node, prefix, lower=LocalRoots(node.store) if prefix == node.id else None
        )
    with node.store.write() as conn:
        result = conn.execute(
            ACCEPTANCE_REPORTS.insert().values(
                prefix=prefix,
                checked_at=report["checked_at"],
                passed=bool(report["passed"]),
                report=orjson.dumps(report),
            )
        )
        report_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    return RedirectResponse(f"/acceptance/{report_id}", 303)


@router.get("/acceptance/{report_id}", response_class=HTMLResponse)
def acceptance_report(request: Request, report_id: int, account: Reader) -> Response:
    node: Node = request.app.state.node
    if not 0 < report_id <= MAX_REPORT_ID:  # report ids are 32-bit in the store
        return Response("not found", status_code=404)
    with node.store.read() as conn:
        raw = conn.execute(
            select(ACCEPTANCE_REPORTS.c.report).where(ACCEPTANCE_REPORTS.c.id == report_id)
        ).scalar()
    if raw is None:
        return Response("not found", status_code=404)
    return HTMLResponse(render_report(orjson.loads(raw)))
