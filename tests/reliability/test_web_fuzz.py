"""Fuzzing the web pages, which the OpenAPI document leaves out (they answer HTML to
people, not JSON to nodes): every form a person can post, and the pages with path and
query parameters, on a station (desk, citizen intake, receipts) and on a hub (dashboard,
task board, acceptance runs).

Each example draws a page, its fields — from the contract's own form fields with values
that fit, nearly fit or do not fit at all — and who posts it: an operator, an admin or an
auditor with their CSRF token, someone with a wrong token, or nobody. No page may answer
with a server error, and afterwards nothing invalid is stored: every chain verifies and
every entry the node wrote itself is valid against its contract.

``GUANTONG_FUZZ_EXAMPLES`` scales the runs (default 30: 150 requests per node); they are
derandomized, so a failure reproduces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.python.asgi import ASGIClient
from sqlalchemy import Table, func, select

from node.runtime import Node
from node.tables import ENTRIES, TASKS
from node.tasks import issue_task
from node.verify import verify_log
from node.web import intake
from node.web.accounts import add_user, start_session
from node.web.desk import DESK_CONTRACTS
from node.web.forms import FormField, fields_for
from node.web.pages import cookie_name, login_cookie_name
from tests.conftest import EXAMPLES as RECORD_EXAMPLES
from tests.conftest import FakeClock, NodeFactory
from tests.federation.harness import Federation

EXAMPLES = int(os.environ.get("GUANTONG_FUZZ_EXAMPLES", "30"))
PAGES = settings(
    max_examples=EXAMPLES * 5,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
PASSWORD = "correct horse battery"
HUB, STATION = "js.wx.jy", "js.wx.jy.s1"
ROLES = ("operator", "admin", "auditor", "wrong csrf", "nobody")
_USERS = {"operator": "op", "admin": "boss", "auditor": "eye"}
LOGIN_TOKEN = "t" * 32


def _text(nul: bool) -> st.SearchStrategy[str]:
    """Short strings heavy in what breaks parsers, stores and templates. U+0000 only for
    SQLite stores: PostgreSQL text cannot hold it and a query with it fails (a login name,
    for one); that is being fixed separately."""
    nasty = st.sampled_from([" ", "<script>", "&amp;", "'", '"', "中文", "\u2028", "%", "../"])
    chars = st.characters(exclude_categories=["Cs"], exclude_characters="" if nul else "\x00")
    return st.lists(nasty | st.text(chars, max_size=6), max_size=5).map("".join)


@dataclass
class Web:
    """A node's web app with an account of every role, and what its pages can name."""

    fed: Federation
    node: Node
    sessions: dict[str, tuple[str, str]]
    task_ids: list[str]
    record_ids: list[str]
    stamp: str
    """What the citizen form carries to prove it was rendered here (a station only)."""

    @property
    def nul(self) -> bool:
        return self.node.store.is_sqlite

    def client(self) -> ASGIClient:
        """An in-process client (not entered: the app's lifespan and jobs stay off)."""
        return ASGIClient(self.fed.app(self.node.id))

    def identity(self, role: str, *, fresh: bool = False) -> tuple[dict[str, str], str]:
        """The cookie header and CSRF token a request of ``role`` carries; ``fresh`` for a
        session of its own (one that logs out must not end the others)."""
        if role == "nobody":
            return {}, ""
        token, csrf = self.sessions["operator" if role == "wrong csrf" else role]
        if fresh:
            token, csrf = start_session(self.node, _USERS[role if role in _USERS else "operator"])
        header = {"cookie": f"{cookie_name(self.node)}={token}"}
        return header, "not-the-token" if role == "wrong csrf" else csrf


def _web(fed: Federation, node_id: str) -> Web:
    node = fed.nodes[node_id]
    sessions = {}
    for role, name in _USERS.items():
        add_user(node, name, role, PASSWORD)
        sessions[role] = start_session(node, name)
    with node.store.read() as conn:
        tasks = sorted(set(conn.execute(select(TASKS.c.task_id)).scalars()))
        records = conn.execute(select(ENTRIES.c.record_id).distinct().limit(5)).scalars()
        record_ids = sorted(r for r in records if r)
    form = ASGIClient(fed.app(node_id)).get(f"/c/{node_id}").text
    stamp = re.search(r'name="stamp" value="([^"]*)"', form)
    return Web(fed, node, sessions, tasks, record_ids, stamp.group(1) if stamp else "")


@pytest.fixture
def station_web(make_node: NodeFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Web:
    """A station (always a SQLite store) with records and a task from its county; the
    intake's human-speed and rate guards are lowered so that submissions get past them."""
    fed = Federation(make_node, clock)
    fed.add(STATION)
    fed.write(STATION, 3, seed=7)
    issue_task(fed.nodes[HUB], target=STATION, kind="assign", payload={"text": "handle it"})
    anyio.run(fed.pull, STATION)
    monkeypatch.setenv("GUANTONG_INTAKE_MIN_FILL_S", "0")
    monkeypatch.setattr(intake.SUBMISSIONS, "limit", 10**9)
    return _web(fed, STATION)


@pytest.fixture
def hub_web(fed: Federation) -> Web:
    """A county hub holding its station's records, with a task it issued."""
    fed.add(STATION)
    fed.write(STATION, 3, seed=8)
    anyio.run(fed.cascade_up, STATION)
    issue_task(fed.nodes[HUB], target=STATION, kind="notice", payload={"text": "read"})
    return _web(fed, HUB)


# -- what is posted -------------------------------------------------------------------------


def _value(field: FormField, text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value for a contract's form field: one that fits, one that nearly does, or text."""
    fits: dict[str, list[str]] = {
        "integer": ["0", "3", "-1", "99999999999999999999", "1.5"],
        "date": ["2026-11-21", "2026-02-30", "0001-01-01", "9999-12-31"],
        "datetime": ["2026-11-21T08:00", "0001-01-01T00:00", "9999-12-31T23:59:59-12:00"],
        "json": ["[]", "{}", '{"a": 1}', "[1e400]", '"x"', "null"],
        "checkbox": ["on", "", "true"],
    }
    options = [value for value, _ in field.options]
    return st.sampled_from(fits.get(field.kind, []) + options or [""]) | text


@st.composite
def _contract_form(draw: st.DrawFn, web: Web, contract: str) -> dict[str, str]:
    """A valid record's form (from the hand-written contract examples), some of its fields
    changed to values that may or may not fit, others left out."""
    text = _text(web.nul)
    if contract not in web.node.registry.names():
        return draw(st.dictionaries(text, text, max_size=3))
    form = _good_form(web.node, contract)
    for field in fields_for(web.node.registry.current(contract)):
        change = draw(st.sampled_from(["keep", "keep", "keep", "other", "drop"]))
        if change == "other" or (change == "keep" and field.name not in form):
            form[field.name] = draw(_value(field, text))
        elif change == "drop":
            form.pop(field.name, None)
    return form


def _good_form(node: Node, contract: str) -> dict[str, str]:
    """The first valid example of the contract's current version, as a person types it."""
    path = RECORD_EXAMPLES / f"{contract}.valid.json"
    version = node.registry.current(contract).version
    records = orjson.loads(path.read_bytes()).get(version, []) if path.exists() else []
    if not records:
        return {}
    return {
        name: "on" if value is True else "" if value is False else _typed(value)
        for name, value in records[0].items()
    }


def _typed(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@st.composite
def _station_request(draw: st.DrawFn, web: Web) -> tuple[str, str, dict[str, str] | None]:
    text = _text(web.nul)
    contract = draw(st.sampled_from([*DESK_CONTRACTS, "task_report", "nope"]) | text)
    record = draw(st.sampled_from(web.record_ids) | text)
    task = draw(st.sampled_from(web.task_ids) | text)
    station = draw(st.sampled_from([STATION, HUB]) | text)
    page = draw(st.sampled_from(["new", "update", "task", "intake", "login", "get", "other"]))
    if page == "new":
        return "POST", f"/desk/new/{contract}", draw(_contract_form(web, contract))
    if page == "update":
        form = draw(_contract_form(web, contract))
        return "POST", f"/desk/record/{contract}/{record}", form
    if page == "task":
        status = draw(st.sampled_from(["accepted", "in_progress", "done", "rejected"]) | text)
        form = {"status": status, "note": draw(text), "resolution": draw(text)}
        return "POST", f"/desk/task/{task}", form
    if page == "intake":
        form = {
            "content": "小区门口路灯坏了一个月",
            "stamp": web.stamp,
            "category": "other",
            "title": "路灯",
            "location": "",
            "name": "王小明",
            "phone": "13812345678",
            "deputy": "",
        }
        for name in list(form):  # some fields changed: to nothing, or to anything
            change = draw(st.sampled_from(["keep", "keep", "keep", "empty", "other"]))
            if change != "keep":
                form[name] = "" if change == "empty" else draw(text)
        return "POST", f"/c/{station}", form
    if page == "login":
        name = draw(st.sampled_from(["op", "boss"]) | text)
        password = draw(st.just(PASSWORD) | text)
        return "POST", "/login", {"name": name, "password": password, "next": draw(text)}
    if page == "other":
        return "POST", draw(st.sampled_from(["/desk/sync", "/logout"])), {}
    path = draw(
        st.sampled_from(
            [
                f"/desk/new/{contract}",
                f"/desk/record/{contract}/{record}",
                f"/c/{station}",
                f"/c/{station}/qr.svg",
                "/receipt",
                "/login",
                "/desk",
            ]
        )
    )
    query = {"deputy": draw(text), "code": draw(text), "next": draw(text), "lang": draw(text)}
    return "GET", path, query


@st.composite
def _hub_request(draw: st.DrawFn, web: Web) -> tuple[str, str, dict[str, str] | None]:
    text = _text(web.nul)
    page = draw(st.sampled_from(["task", "acceptance", "get"]))
    if page == "task":
        form = {
            "target": draw(st.sampled_from([STATION, HUB, "js.wx.jy.s9", "js"]) | text),
            "kind": draw(st.sampled_from(["assign", "notice", "supervise", "collect"]) | text),
            "text": draw(text),
            "record": draw(st.sampled_from(["", *web.record_ids]) | text),
            "due_days": draw(st.sampled_from(["", "7", "-1", "0", "99999999", "1e3"]) | text),
        }
        if draw(st.booleans()):
            form["subtree"] = "on"
        return "POST", "/tasks", form
    if page == "acceptance":
        prefix = draw(st.sampled_from([HUB, STATION, "js"]) | text)
        return "POST", "/acceptance", {"prefix": prefix}
    report = draw(st.sampled_from(["1", "0", "-1", str(2**31), str(2**63)]) | text)
    path = draw(st.sampled_from(["/", "/tasks", "/acceptance", f"/acceptance/{report}"]))
    return "GET", path, {"lang": draw(st.sampled_from(["en", "zh"]) | text)}


# -- the runs ---------------------------------------------------------------------------------


def _fuzz(web: Web, requests: st.SearchStrategy[tuple[str, str, dict[str, str] | None]]) -> None:
    client = web.client()

    @PAGES
    @given(request=requests, role=st.sampled_from(ROLES))
    def run(request: tuple[str, str, dict[str, str] | None], role: str) -> None:
        method, path, fields = request
        headers, csrf = web.identity(role, fresh=path == "/logout")
        if method == "POST" and path == "/login":  # the login form's own token, in its cookie
            login = f"{login_cookie_name(web.node)}={LOGIN_TOKEN}"
            headers = {"cookie": "; ".join(filter(None, (headers.get("cookie"), login)))}
            csrf = "not-the-token" if role == "wrong csrf" else LOGIN_TOKEN
        if method == "POST":
            form = {**(fields or {}), "csrf": csrf}
            response = client.post(path, data=form, headers=headers, allow_redirects=False)
        else:
            response = client.get(path, params=fields, headers=headers, allow_redirects=False)
        assert response.status_code < 500, response.text

    run()
    _assert_nothing_invalid(web.node)


def _assert_nothing_invalid(node: Node) -> None:
    problems = list(verify_log(node.log))
    assert problems == [], [str(p) for p in problems]
    for raw in _own_entries(node):
        entry = orjson.loads(raw)
        status, violations = node.registry.check(
            entry["contract"], entry["version"], entry["op"], entry.get("data")
        )
        assert status == "valid", (entry, violations)


def _own_entries(node: Node) -> Iterator[bytes]:
    with node.store.read() as conn:
        yield from conn.execute(select(ENTRIES.c.raw).where(ENTRIES.c.origin == node.id)).scalars()


def test_station_pages_survive_fuzzing(station_web: Web) -> None:
    """The desk's contract forms, task reports, citizen intake, receipts and login; some
    of what is posted gets past every guard and is written."""
    before = len(list(_own_entries(station_web.node)))
    _fuzz(station_web, _station_request(station_web))
    assert len(list(_own_entries(station_web.node))) > before


def test_hub_pages_survive_fuzzing(hub_web: Web) -> None:
    """The task board and acceptance runs of a hub; some tasks are issued."""
    before = _count(hub_web.node, TASKS)
    _fuzz(hub_web, _hub_request(hub_web))
    assert _count(hub_web.node, TASKS) > before


def _count(node: Node, table: Table) -> int:
    with node.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
