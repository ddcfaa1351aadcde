"""What every web page shares: templates, language, the signed-in person, CSRF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import URL

from node.runtime import Node
from node.web.accounts import Account, session_of
from node.web.i18n import LANGUAGES, translate

__all__ = [
    "CSRF",
    "Reader",
    "Writer",
    "cookie_name",
    "is_secure",
    "login_cookie_name",
    "render",
    "templates",
]


def cookie_name(node: Node) -> str:
    """Per node: browsers share cookies across ports of one host, and several nodes may
    sit on one machine (a county hub beside its own station desk)."""
    return "gt_session_" + _cookie_suffix(node)


def login_cookie_name(node: Node) -> str:
    """The login form's CSRF cookie (before any session), per node like the session's."""
    return "gt_login_" + _cookie_suffix(node)


def _cookie_suffix(node: Node) -> str:
    return node.id.replace(".", "_").replace("-", "_")


def is_secure(request: Request) -> bool:
    """Served over TLS, directly or behind a proxy that says so: cookies are ``Secure``."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def language(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get("gt_lang") or "zh"
    return lang if lang in LANGUAGES else "zh"


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    *,
    lang_page: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page ``name``; its language link leads to ``lang_page`` (a local address) if
    given, else to this page: a link is followed with GET, so a page answering a POST
    names the page to show in the other language where its own address has no GET."""
    lang = language(request)
    node: Node = request.app.state.node
    account = session_of(node, request.cookies.get(cookie_name(node)))
    response = templates.TemplateResponse(
        request,
        name,
        {
            "t": lambda text: translate(text, lang),
            "lang": lang,
            "other_lang": _language_link(request, "en" if lang == "zh" else "zh", lang_page),
            "node": node,
            "account": account,
            "is_hub": getattr(request.app.state, "is_hub", False),
            **context,
        },
        status_code=status_code,
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("gt_lang", lang, samesite="lax", httponly=True)
    return response


def _language_link(request: Request, other: str, page: str | None) -> str:
    if page is not None:
        return str(URL(page).include_query_params(lang=other))
    # a GET keeps the page's own query (?origin=, ?code=); a POST's page is its address
    # got again (the form's fields are not in it)
    url = request.url if request.method in ("GET", "HEAD") else request.url.replace(query="")
    return str(url.include_query_params(lang=other)).removeprefix(str(request.base_url).rstrip("/"))


def _reader(request: Request) -> Account:
    node: Node = request.app.state.node
    account = session_of(node, request.cookies.get(cookie_name(node)))
    if account is None:
        # back to the page asked for, with its query (?origin= names whose record it is);
        # the path travels in a header: percent-encoded, whatever characters it has
        query = request.url.query
        wanted = {"next": request.url.path + (f"?{query}" if query else "")}
        if request.query_params.get("lang") in LANGUAGES:  # the login page in that language
            wanted["lang"] = request.query_params["lang"]
        login = "/login?" + urlencode(wanted)
        raise HTTPException(status_code=303, headers={"Location": login})
    return account


def _writer(request: Request, csrf: Annotated[str, Form()] = "") -> Account:
    account = _reader(request)
    if not account.can_write:
        raise HTTPException(status_code=403, detail="auditors read; they do not change anything")
    if not csrf or csrf != account.csrf:
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
    return account


def _csrf_only(request: Request, csrf: Annotated[str, Form()] = "") -> Account:
    account = _reader(request)
    if not csrf or csrf != account.csrf:
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
    return account


Reader = Annotated[Account, Depends(_reader)]
Writer = Annotated[Account, Depends(_writer)]
CSRF = Annotated[Account, Depends(_csrf_only)]
