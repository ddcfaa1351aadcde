"""Shared fixtures: a fixed clock, store URLs for every backend, node factories."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

from contracts.registry import DEFAULT_BUNDLE, Registry
from node.db import Store, normalise_url
from node.runtime import Node
from node.settings import NodeSettings

if TYPE_CHECKING:
    import httpx

    from tests.federation.harness import Federation

NOTE_BUNDLE = Path(__file__).parent / "fixtures" / "note_bundle"
"""A permissive test bundle (``note``, ``secret_note``) for tests of the log itself."""
EXAMPLES = Path(__file__).parent / "contracts" / "examples"


def example(contract: str, version: str = "1.1", index: int = 0) -> dict[str, Any]:
    """A fresh copy of a hand-written valid record from ``tests/contracts/examples``."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{contract}.valid.json").read_text("utf-8"))
    record: dict[str, Any] = data[version][index]
    return record


PG_URL = os.environ.get("GUANTONG_TEST_PG_URL")
PG_REQUIRED = os.environ.get("GUANTONG_TEST_PG_REQUIRED") == "1"
PG_SKIP_REASON = "PostgreSQL tests need GUANTONG_TEST_PG_URL (set by .ci/run)"


class FakeClock:
    """An injected clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _dispose_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispose every store a test opened and left open (a node re-opened by hand, a
    federation's replacement nodes). Otherwise its pooled PostgreSQL connections are
    freed by the garbage collector during some later test, whose ResourceWarning then
    fails that innocent test."""
    opened: weakref.WeakSet[Store] = weakref.WeakSet()
    init = Store.__init__

    def tracked(self: Store, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.add(self)

    monkeypatch.setattr(Store, "__init__", tracked)
    yield
    for store in list(opened):
        store.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    if PG_REQUIRED:
        raise pytest.UsageError("GUANTONG_TEST_PG_REQUIRED=1 but GUANTONG_TEST_PG_URL is unset")
    skip = pytest.mark.skip(reason=PG_SKIP_REASON)
    for item in items:
        if "pg" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Make PostgreSQL URLs, each with a fresh schema on its search_path (dropped after)."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    admin = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    made: list[str] = []
    sep = "&" if "?" in PG_URL else "?"

    def make() -> str:
        schema = "t_" + uuid.uuid4().hex[:12]
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for schema in made:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_schemas: Callable[[], str]) -> str:
    return pg_schemas()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test over every backend that matters: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


NodeFactory = Callable[..., Node]


@pytest.fixture
def make_node(tmp_path: Path, clock: FakeClock) -> Iterator[NodeFactory]:
    """Initialise nodes side by side in one process (each with its own home and store)."""
    created: list[Node] = []

    def factory(
        node_id: str = "js",
        tier: str = "province",
        *,
        parent: str | None = None,
        db_url: str | None = None,
        seed: bytes | None = None,
        bundle: Path | None = NOTE_BUNDLE,
        secret: str | None = None,
    ) -> Node:
        if parent is None and tier != "province":
            parent = "http://127.0.0.1:9/"
        settings = NodeSettings(
            home=tmp_path / node_id,
            id=node_id,
            tier=tier,
            parent_url=parent,
            db_url=db_url,
            province_secret=secret,
        )
        node = Node.init(settings, seed=seed, clock=clock)
        if bundle is not None:
            node.install_contracts(Registry.from_dir(bundle))
        created.append(node)
        return node

    yield factory
    for node in created:
        node.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def fed(request: pytest.FixtureRequest, make_node: NodeFactory, clock: FakeClock) -> Federation:
    """An in-process federation (``tests/federation/harness.py``); with PostgreSQL, every
    hub stores into its own schema, as big hubs do in production."""
    from tests.federation.harness import Federation

    hub_db = request.getfixturevalue("pg_schemas") if request.param == "postgresql" else None
    return Federation(make_node, clock, hub_db=hub_db)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def newer_bundle(
    tmp_path: Path, *, opinion_1_2: bool = False, opinion_2: bool = False, points: int = 0
) -> Registry:
    """The shipped bundle as version 2: with an opinion 1.2 (a copy of 1.1), with opinion
    2.0 as the version written, or with every performance-index rule worth ``points``
    more."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    index = json.loads((bundle / "index.json").read_text("utf-8"))
    index["bundle_version"] = 2
    if opinion_1_2:
        shutil.copy(bundle / "opinion" / "1.1.json", bundle / "opinion" / "1.2.json")
        opinion = index["contracts"]["opinion"]
        opinion["versions"]["1.2"] = dict(opinion["versions"]["1.1"])
        opinion["current"] = "1.2"
    if opinion_2:
        index["contracts"]["opinion"]["current"] = "2.0"
    for rule in index["rules"]["performance_index"]["points"].values():
        rule["points"] += points
    (bundle / "index.json").write_text(json.dumps(index, ensure_ascii=False), "utf-8")
    return Registry.from_dir(bundle)


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str, next: str | None = None
) -> httpx.Response:
    """POST /login as a browser does: from the login page, whose cookie and hidden field
    carry its CSRF token (a form posted from elsewhere has neither)."""
    page = await client.get("/login")
    found = re.search(r'action="/login".*?name="csrf" value="([^"]+)"', page.text, re.S)
    assert found, page.text
    form = {"csrf": found.group(1), "name": name, "password": password}
    if next is not None:
        form["next"] = next
    return await client.post("/login", data=form)


def web_client(fed: Federation, node_id: str) -> httpx.AsyncClient:
    """A browser of a node's pages, in process: redirects are looked at, not followed."""
    import httpx

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fed.app(node_id)),
        base_url="http://web",
        follow_redirects=False,
    )


async def sign_in_to_desk(client: httpx.AsyncClient, name: str, password: str) -> str:
    """Sign in (:func:`sign_in`, on to the desk) and return the CSRF token of the session's
    forms, as the desk page carries it."""
    response = await sign_in(client, name, password, next="/desk")
    assert response.status_code == 303, response.text
    page = await client.get("/desk")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


@pytest.fixture(autouse=True)
def _fresh_sign_in_counts() -> Iterator[None]:
    """Each test starts with no failed sign-ins counted (the counts live in the process,
    which runs many tests: as a server's restart forgets them)."""
    from node.web import desk

    yield
    desk.LOGINS_BY_USER.reset()
    desk.LOGINS_BY_ADDRESS.reset()
