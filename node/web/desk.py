"""Login, and the desk every node has: records from the contracts, tasks, sync status."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from contracts.upcast import present
from node.runtime import Node
from node.tables import ENTRIES
from node.tasks import report_task, task_views
from node.uplink import backlog
from node.web.accounts import check_password as verify_password
from node.web.accounts import end_session, start_session
from node.web.forms import CHECKBOX, fields_for, parse_form, refine
from node.web.pages import (
    CSRF,
    Reader,
    Writer,
    cookie_name,
    is_secure,
    login_cookie_name,
    render,
)
from node.web.throttle import Throttle
from schemas.errors import ErrorCode, GuantongError

__all__ = ["DESK_CONTRACTS", "router"]

router = APIRouter(include_in_schema=False)
DESK_CONTRACTS = (
    "opinion",
    "reception",
    "duty_activity",
    "suggestion",
    "deputy",
    "livelihood_project",
    "supervision_item",
)


LOGINS_BY_USER = Throttle(limit=10, window=900.0)
"""Ten wrong passwords for one user name within 15 minutes: that name waits."""
LOGINS_BY_ADDRESS = Throttle(limit=50, window=900.0)
"""Fifty from one address (an office behind one NAT has many people): that address waits."""


_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", expired: str = "") -> Response:
    node: Node = request.app.state.node
    held = _login_token(request)
    token = held or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        next=_local(next),
        login_csrf=token,
        expired=bool(expired),
    )
    if held is None:
        response.set_cookie(
            login_cookie_name(node),
            token,
            httponly=True,
            samesite="strict",
            secure=is_secure(request),
            path="/login",
        )
    return response


def _local(next: str) -> str:
    """Where a sign-in leads: a path of this site, else the start page (``//host`` and
    ``https://host`` lead elsewhere: an open redirect)."""
    return next if next.startswith("/") and not next.startswith("//") else "/"


def _login_token(request: Request) -> str | None:
    """The login form's CSRF token this browser holds, if any (one from the login page)."""
    node: Node = request.app.state.node
    held = request.cookies.get(login_cookie_name(node), "")
    return held if _LOGIN_TOKEN.fullmatch(held) else None


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    node: Node = request.app.state.node
    local = _local(next)
    held = _login_token(request)
    if held is None or not hmac.compare_digest(held.encode(), csrf.encode()):
        # login CSRF: a form posted from another site (which cannot read the token, nor
        # send the SameSite=Strict cookie) would sign this browser in as someone else.
        # Nothing is checked or counted; a person whose form had no cookie gets a new one.
        return RedirectResponse("/login?" + urlencode({"next": local, "expired": "1"}), 303)
    address = request.client.host if request.client else "?"
    keys = (f"user:{node.id}:{name[:64]}", f"address:{node.id}:{address}")
    wait = max(LOGINS_BY_USER.wait(keys[0]), LOGINS_BY_ADDRESS.wait(keys[1]))
    if wait > 0:  # checked before the password's hash is computed
        minutes = max(1, round(wait / 60))
        refused = render(
            request, "login.html", status_code=429, next=local, throttled=minutes, login_csrf=held
        )
        refused.headers["Retry-After"] = str(int(wait) + 1)
        return refused
    if verify_password(node, name, password) is None:
        LOGINS_BY_USER.count(keys[0])
        LOGINS_BY_ADDRESS.count(keys[1])
        return render(
            request, "login.html", status_code=401, next=local, failed=True, login_csrf=held
        )
    LOGINS_BY_USER.clear(keys[0])
    token, _ = start_session(node, name)
    response = RedirectResponse(local, 303)
    response.set_cookie(
        cookie_name(node),
        token,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
        max_age=12 * 3600,
    )
    response.delete_cookie(login_cookie_name(node), path="/login")  # a new one per login
    return response


@router.post("/logout")
def logout(request: Request, account: CSRF) -> Response:
    node: Node = request.app.state.node
    end_session(node, request.cookies.get(cookie_name(node)))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(cookie_name(node))
    return response


@router.get("/desk", response_class=HTMLResponse)
def desk(request: Request, account: Reader) -> Response:
    return _desk(request)


def _desk(
    request: Request,
    *,
    status_code: int = 200,
    task_error: str | None = None,
    typed: dict[str, dict[str, str]] | None = None,
    lang_page: str | None = None,
) -> Response:
    """The desk: the newest records of each kind (a record saved a moment ago is on top),
    the tasks received; ``task_error`` and what was ``typed`` into a task's report when it
    was refused, so that only the mistake needs correcting."""
    node: Node = request.app.state.node
    uplink = getattr(request.app.state, "uplink", None)
    lists = {
        c: node.list(c, limit=20, newest_first=True)
        for c in DESK_CONTRACTS
        if c in node.registry.names()
    }
    inbox = [v for v in task_views(node, issued_here=False) if v.task.issuer != node.id]
    return render(
        request,
        "desk.html",
        status_code=status_code,
        lists=lists,
        inbox=inbox,
        sync=uplink.state() if uplink else None,
        backlog=sum(b.entries for b in backlog(node.store)),
        contracts=DESK_CONTRACTS,
        task_error=task_error,
        typed=typed or {},
        lang_page=lang_page,
    )


def _desk_contract(contract: str) -> str:
    """A contract people write at the desk. The others (certificates, task reports,
    warnings, data-quality items, the station register) are written by the node itself
    through their own checks: a node_cert record written here would revoke a child's key
    at every hub above without the revocation's own path."""
    if contract not in DESK_CONTRACTS:
        raise GuantongError(ErrorCode.FORBIDDEN, f"{contract} records are not written at the desk")
    return contract


@router.get("/desk/new/{contract}", response_class=HTMLResponse)
def new_record(request: Request, contract: str, account: Reader) -> Response:
    node: Node = request.app.state.node
    cv = node.registry.current(_desk_contract(contract))
    return render(
        request, "form.html", cv=cv, fields=fields_for(cv), values={}, errors={}, record_id=None
    )


@router.post("/desk/new/{contract}", response_class=HTMLResponse)
async def save_record(request: Request, contract: str, account: Writer) -> Response:
    return await _save(request, contract, None)


@router.get("/desk/record/{contract}/{record_id}", response_class=HTMLResponse)
def record(
    request: Request, contract: str, record_id: str, account: Reader, origin: str | None = None
) -> Response:
    """One record with its history; ``origin`` names whose (the lists link with it), since
    another origin may hold the same id."""
    node: Node = request.app.state.node
    view = node.get(contract, record_id, origin=origin)
    cv = node.registry.get(contract, view.version)
    with node.store.read() as conn:
        history = conn.execute(
            select(ENTRIES.c.origin, ENTRIES.c.seq, ENTRIES.c.time, ENTRIES.c.status)
            # a record is written by its origin alone: its history is among that
            # origin's entries (the index leads with the origin)
            .where(ENTRIES.c.origin == view.origin, ENTRIES.c.record_id == record_id)
            .order_by(ENTRIES.c.time)
        ).all()
    editable = view.origin == node.id and contract in DESK_CONTRACTS
    data = view.data or {}
    if editable and view.data is not None:
        # an edit is saved under the current version: an own record of an older major
        # is shown as it will be saved (upcast: opinion 1.x's category as 2.0's pair)
        current = node.registry.current(contract)
        if current.major > cv.major:
            try:
                _, data = present(node.registry, contract, view.version, data, major=current.major)
                cv = current
            except GuantongError:  # no upcaster: shown as written
                pass
    return render(
        request,
        "form.html",
        cv=cv,
        fields=fields_for(cv),
        values=_as_form(data),
        errors={},
        record_id=record_id,
        history=history,
        editable=editable,
        view=view,
    )


@router.post("/desk/record/{contract}/{record_id}", response_class=HTMLResponse)
async def update_record(
    request: Request, contract: str, record_id: str, account: Writer
) -> Response:
    return await _save(request, contract, record_id)


async def _save(request: Request, contract: str, record_id: str | None) -> Response:
    node: Node = request.app.state.node
    cv = node.registry.current(_desk_contract(contract))
    posted = await request.form()
    form = {k: str(v) for k, v in posted.items()}
    fields = fields_for(cv)
    record, errors = parse_form(form, fields, {str(v) for v in posted.getlist(CHECKBOX)})
    errors.update(refine(cv, record))
    if not errors:
        problems = cv.violations(record)
        errors = {
            p.pointer.strip("/").split("/")[0] or "_": f"{p.rule}: {p.message}" for p in problems
        }
    if not errors:
        try:
            records = [(None, {**record, **({"id": record_id} if record_id else {})})]
            node.refuse_foreign(records)
            node.put(contract, records)
        except GuantongError as exc:
            errors = {"_": f"{exc.code.value}: {exc.message}"}
    if errors:
        return render(
            request,
            "form.html",
            status_code=422,
            cv=cv,
            fields=fields,
            values=form,
            errors=errors,
            record_id=record_id,
            editable=True,  # an own record being edited: corrected and sent again
        )
    kick = getattr(request.app.state, "kick", None)
    if kick is not None:
        kick()
    return RedirectResponse("/desk?saved=1", 303)


@router.post("/desk/task/{task_id}")
def report(
    request: Request,
    task_id: str,
    account: Writer,
    status: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
    resolution: Annotated[str, Form()] = "",
) -> Response:
    node: Node = request.app.state.node
    if status not in ("accepted", "in_progress", "done", "rejected"):
        return Response("bad status", status_code=400)
    try:
        report_task(node, task_id, status, note=note or None, resolution=resolution or None)
    except GuantongError as exc:
        typed = {task_id: {"status": status, "note": note, "resolution": resolution}}
        return _desk(
            request,
            status_code=_REPORT_STATUS.get(exc.code, 422),
            task_error=f"{exc.code.value}: {exc.message}",
            typed=typed,
            lang_page="/desk",  # a task's address takes reports only (POST)
        )
    kick = getattr(request.app.state, "kick", None)
    if kick is not None:
        kick()
    return RedirectResponse("/desk", 303)


_REPORT_STATUS = {ErrorCode.NOT_FOUND: 404, ErrorCode.FORBIDDEN: 409}
"""A refused task report's page: no such task, a task cancelled meanwhile, else 422."""


@router.post("/desk/sync")
async def sync_now(request: Request, account: Writer) -> Response:
    """Push now and take tasks now (an operator who cannot wait for the timer)."""
    sync = getattr(request.app.state, "sync_now", None)
    if sync is not None:
        await sync()
    return RedirectResponse(request.headers.get("referer") or "/desk", 303)


def _as_form(data: dict[str, Any]) -> dict[str, str]:
    import orjson

    out = {}
    for key, value in data.items():
        if isinstance(value, dict | list):
            out[key] = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            out[key] = "on" if value else ""
        else:
            out[key] = str(value)
    return out
