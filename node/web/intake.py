"""Citizen intake: a QR code per station and per deputy, a public opinion form, a receipt.

The form is public, so it is guarded: at most ``RATE`` submissions per address within
``WINDOW`` seconds (:class:`node.web.throttle.Throttle`), a hidden honeypot field bots
fill in, and a signed render time — a form submitted faster than a person can type, or
hours later, is refused. The record is written
like any other (validated against the opinion contract, channel ``qr``): the reporter's
name stays at the station, the phone travels masked, the repeat-reporter key as an HMAC.
The citizen gets a receipt code to look up progress; nothing else of the record is shown.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from hashlib import sha256
from typing import Annotated
from urllib.parse import quote, urlencode

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from node.runtime import Node
from node.tables import RECEIPTS
from node.web.forms import Refinement, fields_for, refine, refinement
from node.web.pages import render
from node.web.throttle import Throttle
from schemas.errors import GuantongError
from schemas.ids import Tier, is_uuid
from schemas.times import format_time

__all__ = ["RATE", "WINDOW", "router"]

router = APIRouter(include_in_schema=False)
RATE = 5
WINDOW = 600.0
MIN_FILL_S = 3.0
MAX_FILL_S = 3 * 3600.0
SUBMISSIONS = Throttle(limit=RATE, window=WINDOW)
_SECRET = secrets.token_bytes(32)
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CODE_LENGTH = 10


def _serves(node: Node, station: str) -> bool:
    """The form is this station's own: only a station takes citizens' opinions (the app
    mounts this router on stations alone; a hub's node refuses it here as well)."""
    return station == node.id and node.settings.tier == Tier.STATION


def _allowed(address: str) -> bool:
    if SUBMISSIONS.wait(address) > 0:
        return False
    SUBMISSIONS.count(address)
    return True


def _stamp() -> str:
    issued = str(int(time.time()))
    return issued + "." + hmac.new(_SECRET, issued.encode(), sha256).hexdigest()[:16]


def _fill_time_ok(stamp: str) -> bool:
    issued, _, mac = stamp.partition(".")
    if not (issued.isascii() and issued.isdigit()) or not hmac.compare_digest(
        mac.encode(), hmac.new(_SECRET, issued.encode(), sha256).hexdigest()[:16].encode()
    ):  # bytes: compare_digest refuses text that is not ASCII (a forged stamp)
        return False
    age = time.time() - int(issued)
    return _min_fill() <= age <= MAX_FILL_S


def _min_fill() -> float:
    """``GUANTONG_INTAKE_MIN_FILL_S`` lowers the human-speed guard (browser tests use 0)."""
    try:
        return float(os.environ.get("GUANTONG_INTAKE_MIN_FILL_S", MIN_FILL_S))
    except ValueError:
        return MIN_FILL_S


@router.get("/c/{station}", response_class=HTMLResponse)
def form(request: Request, station: str, deputy: str | None = None) -> Response:
    node: Node = request.app.state.node
    if not _serves(node, station):
        return render(request, "message.html", status_code=404, message="未找到")
    categories = _categories(node)
    return render(
        request,
        "intake.html",
        deputy=deputy,
        stamp=_stamp(),
        categories=categories,
        limits=_limits(node),
        errors={},
        values={},
    )


@router.get("/c/{station}/qr.svg")
def qr(request: Request, station: str, deputy: str | None = None) -> Response:
    node: Node = request.app.state.node
    # Codes only for this station's form and its deputies (whose ids are UUIDs), so that
    # the address fits in a QR code (unless the Host header itself is too long).
    if not _serves(node, station) or (deputy and not is_uuid(deputy)):
        return render(request, "message.html", status_code=404, message="未找到")
    base = str(request.base_url).rstrip("/")
    url = f"{base}/c/{station}" + (f"?deputy={deputy}" if deputy else "")
    try:
        code = segno.make(url, error="m")
    except segno.DataOverflowError:
        return Response("this address is too long for a QR code", status_code=400)
    return Response(code.svg_inline(scale=6), media_type="image/svg+xml")


@router.post("/c/{station}", response_class=HTMLResponse)
def submit(
    request: Request,
    station: str,
    content: Annotated[str, Form()],
    stamp: Annotated[str, Form()],
    category: Annotated[str, Form()] = "other",
    title: Annotated[str, Form()] = "",
    location: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    deputy: Annotated[str, Form()] = "",
    website: Annotated[str, Form()] = "",  # the honeypot: people never see it
) -> Response:
    node: Node = request.app.state.node
    address = request.client.host if request.client else "?"
    values = {
        "content": content,
        "category": category,
        "title": title,
        "location": location,
        "name": name,
        "phone": phone,
    }
    if not _serves(node, station):
        return render(request, "message.html", status_code=404, message="未找到")
    if website or not _fill_time_ok(stamp) or not _allowed(address):
        return render(request, "message.html", status_code=429, message="请求过于频繁，请稍后再试")
    now = format_time(node.clock())
    record = {
        "channel": "qr",
        "category": category,
        "content": content.strip(),
        "status": "received",
        "received_at": now,
    }
    for key, value in (("title", title), ("location", location), ("reporter_name", name)):
        if value.strip():
            record[key] = value.strip()
    if phone.strip():
        record["reporter_phone"] = record["reporter_key"] = phone.strip()
    if deputy.strip():
        record["deputy_id"] = deputy.strip()
    cv = node.registry.current("opinion")
    refined = refinement(cv)
    if refined is not None:  # the citizen picked the fine category (opinion 2.0 on)
        record[refined.fine] = record.pop("category")
        refine(cv, record)
    problems = cv.violations(record)
    if problems:
        errors = {_form_field(p.pointer.strip("/"), refined) or "_": p.message for p in problems}
        return render(
            request,
            "intake.html",
            status_code=422,
            deputy=deputy,
            stamp=_stamp(),
            categories=_categories(node),
            limits=_limits(node),
            lang_page=_form_page(station, deputy),
            errors=errors,
            values=values,
        )
    try:
        result = node.put("opinion", [(None, record)])
    except GuantongError as exc:
        return render(
            request,
            "intake.html",
            status_code=422,
            deputy=deputy,
            stamp=_stamp(),
            categories=_categories(node),
            limits=_limits(node),
            lang_page=_form_page(station, deputy),
            errors={"_": exc.message},
            values=values,
        )
    code = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))
    with node.store.write() as conn:
        conn.execute(
            RECEIPTS.insert().values(code=code, record_id=result.record_ids[0], created_at=now)
        )
    kick = getattr(request.app.state, "kick", None)
    if kick is not None:
        kick()
    return render(
        request,
        "receipt.html",
        code=code,
        status="received",
        view=None,
        lang_page="/receipt?" + urlencode({"code": code}),  # the code stays on the page
    )


@router.get("/receipt", response_class=HTMLResponse)
def receipt(request: Request, code: str = "") -> Response:
    node: Node = request.app.state.node
    wanted = code.strip().upper()
    row = None
    if len(wanted) == _CODE_LENGTH and all(c in _ALPHABET for c in wanted):
        with node.store.read() as conn:
            row = conn.execute(
                select(RECEIPTS.c.record_id).where(RECEIPTS.c.code == wanted)
            ).first()
    if row is None:
        return render(
            request,
            "receipt.html",
            status_code=404 if code else 200,
            code=code,
            view=None,
            status=None,
        )
    view = node.get("opinion", row.record_id, origin=node.id)
    data = view.data or {}
    public = {
        k: data.get(k)
        for k in (
            "status",
            "received_at",
            "accepted_at",
            "assigned_at",
            "resolved_at",
            "closed_at",
            "resolution",
            "rating",
        )
    }
    return render(request, "receipt.html", code=code, view=public, status=data.get("status"))


def _form_page(station: str, deputy: str) -> str:
    """The form's own address (with its deputy), for the language link of a refused one."""
    return f"/c/{quote(station)}" + (f"?{urlencode({'deputy': deputy})}" if deputy else "")


def _form_field(name: str, refined: Refinement | None) -> str:
    """The form's field for a property: the one category box holds the fine category."""
    return "category" if refined is not None and name == refined.fine else name


_FIELDS = {
    "title": "title",
    "content": "content",
    "location": "location",
    "name": "reporter_name",
    "phone": "reporter_phone",
}
"""The form's fields and the opinion's properties they fill."""


def _limits(node: Node) -> dict[str, int]:
    """Each field's maxlength: the current opinion contract's ``maxLength`` of its property
    (opinion 1.1 takes a location of 300 characters where 1.0 took 200)."""
    lengths = {f.name: f.max_length for f in fields_for(node.registry.current("opinion"))}
    return {
        field: int(length)
        for field, prop in _FIELDS.items()
        if (length := lengths.get(prop)) is not None
    }


def _categories(node: Node) -> list[tuple[str, str]]:
    """The categories a citizen picks from: the fine ones where the contract refines its
    categories (opinion 2.0: subcategories, each in one category)."""
    cv = node.registry.current("opinion")
    refined = refinement(cv)
    name = "category" if refined is None else refined.fine
    return next(f for f in fields_for(cv) if f.name == name).options
