"""Fuzzing every machine endpoint from the OpenAPI document the node serves (schemathesis).

A city hub with a real store (SQLite, and PostgreSQL when configured) sits in a real
federation: a county child that pushed its station's data up, a station below it, the
province above, a task for the county and an unused enrollment token; and a station
stands alone with records of its own. Schemathesis reads ``/openapi.json`` from the app and
generates requests for every operation — positive (inside the schemas) and negative
(outside them) — sent in-process through its ASGI client. Each response must not be a
server error, must carry a documented status and content type, must match the declared
schema, and input outside the schemas must be refused.

Most endpoints take only signed requests, so each example draws who signs it: nobody
(whatever headers schemathesis made up), the county (a direct child, so the request gets
past authentication into every handler), the station (a grandchild), the province (an
ancestor's checker), or a wrong signature: a skewed clock, a key the hub does not know, a
replay. Push bodies are drawn from the county's real segments, whole or damaged, gzip'd
or not, besides schemathesis' own bytes; enrollment and rotation bodies are sometimes
built from the real token and fresh keys, with right or wrong proofs.

Afterwards nothing invalid may be stored: every chain at the hub verifies, every entry of
another origin is byte for byte an entry of that origin's own log, every record is its
latest valid entry, and every key the hub learnt came from an enrollment or a rotation
whose proof the test made.

``GUANTONG_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 30); runs
are derandomized, so a failure reproduces. On PostgreSQL, requests with U+0000 in a string
are left out until queries with it are fixed (they are fuzzed on SQLite).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python.asgi import ASGIClient
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from hub.enrollment import create_token
from node.runtime import Node
from node.tables import ENTRIES, KEYS, RECORDS
from node.tasks import issue_task
from node.verify import verify_log
from schemas.enrollment import sign_proof
from schemas.http import NDJSON, NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER, request_signing_bytes
from schemas.ids import Tier
from schemas.segments import encode_segment
from schemas.signing import Signer
from schemas.times import format_time
from tests.conftest import FakeClock, NodeFactory
from tests.federation.harness import Federation

EXAMPLES = int(os.environ.get("GUANTONG_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

PROVINCE, HUB, CHILD, STATION = "js", "js.wx", "js.wx.jy", "js.wx.jy.s1"
NEWCOMER = "js.wx.xs"
"""A county the hub made a token for, which has not enrolled."""
IDS = (CHILD, STATION, HUB, PROVINCE, NEWCOMER, "js.sz", "js.wx.jy.s9", "sh")

# Node ids in the document carry `format: node-id`: half of them name nodes of this world.
schemathesis.openapi.format(
    "node-id",
    st.sampled_from(IDS)
    | st.from_regex(r"[a-z0-9][a-z0-9-]{0,3}(\.[a-z0-9][a-z0-9-]{0,3}){0,3}", fullmatch=True),
)

_JSON_LINE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
).map(orjson.dumps)
# Push bodies from the document alone: random bytes, or lines of JSON that frame nothing.
schemathesis.openapi.media_type(
    NDJSON, st.binary(max_size=200) | st.lists(_JSON_LINE, max_size=4).map(b"\n".join)
)

SIGNERS = ("child", "station", "province", "none", "child", "skewed", "stranger", "replay")
"""Who signs an example, weighted towards the direct child (it reaches every handler)."""


@dataclass
class World:
    """The federation around the node under test, and what a run may legitimately add."""

    fed: Federation
    node: Node
    segments: list[bytes] = field(default_factory=list)
    token: str = ""
    key_ids: list[str] = field(default_factory=list)
    proven: set[str] = field(default_factory=set)
    """Key ids whose proofs the test made: the only keys the node may learn in a run."""

    @property
    def app(self) -> FastAPI:
        return self.fed.app(self.node.id)

    def moment(self) -> str:
        """Strictly increasing request times (Ed25519 is deterministic: PROTOCOL §6)."""
        self.fed.clock.advance(milliseconds=1)
        return format_time(self.fed.clock())


class _Sign(requests.auth.AuthBase):
    """Signs the request exactly as sent (PROTOCOL §6) as ``caller``, or wrongly on purpose:
    ``skewed`` signs a time a year off, ``stranger`` with a key the hub never learnt."""

    def __init__(self, world: World, how: str, stranger: Signer) -> None:
        self.world = world
        self.how = how
        self.stranger = stranger
        self.sent: dict[str, str] | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.sent is not None:  # a replay: the very same headers again
            request.headers.update(self.sent)
            return request
        body = request.body or b""
        caller = {"station": STATION, "province": PROVINCE}.get(self.how, CHILD)
        signer = self.stranger if self.how == "stranger" else self.world.fed.nodes[caller].signer
        time = self.world.moment()
        if self.how == "skewed":
            time = "2025" + time[4:]
        data = request_signing_bytes(
            str(request.method),
            request.path_url,
            body.encode() if isinstance(body, str) else body,
            time,
        )
        self.sent = {NODE_HEADER: caller, TIME_HEADER: time, SIGNATURE_HEADER: signer.sign(data)}
        request.headers.update(self.sent)
        return request


# -- what the fuzzer sends beyond the document -----------------------------------------------


_SEEDS = st.binary(min_size=32, max_size=32).map(Signer.from_seed)
_OTHER = Signer.from_seed(b"\x09" * 32)
"""Signs proofs that therefore do not verify."""


@st.composite
def _push_body(draw: st.DrawFn, segments: list[bytes]) -> bytes:
    """Real segments of the county, in any order and number, whole or damaged."""
    chosen = draw(st.lists(st.sampled_from(segments), min_size=1, max_size=3))
    body = b"".join(chosen)
    damage = draw(st.sampled_from(["none", "none", "cut", "flip", "drop", "repeat", "junk"]))
    lines = body.split(b"\n")
    at = draw(st.integers(0, max(0, len(lines) - 2)))
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "flip":
        pos = draw(st.integers(0, len(body) - 1))
        body = body[:pos] + bytes([body[pos] ^ 1 << draw(st.integers(0, 7))]) + body[pos + 1 :]
    elif damage == "drop":
        body = b"\n".join(lines[:at] + lines[at + 1 :])
    elif damage == "repeat":
        body = b"\n".join(lines[: at + 1] + lines[at:])
    elif damage == "junk":
        body = b"\n".join([*lines[:at], draw(st.binary(max_size=40)), *lines[at:]])
    return body


def _tailor(world: World, case: Case, data: st.DataObject) -> bool:
    """Replace some generated inputs with ones built from the world's real material; True
    if it did (what schemathesis generated is then no longer what is sent)."""
    path = case.operation.path
    if not data.draw(st.booleans(), label="real material"):
        return False
    if path == "/v1/push":
        body = data.draw(_push_body(world.segments), label="push body")
        headers = {k: v for k, v in (case.headers or {}).items() if k != "Content-Encoding"}
        if data.draw(st.booleans(), label="gzip"):
            body = gzip.compress(body) + data.draw(st.binary(max_size=4), label="after gzip")
            headers["Content-Encoding"] = "gzip"
        case.headers, case.body = headers, body
    elif path == "/v1/enroll":
        key = data.draw(_SEEDS, label="key")
        node = data.draw(st.sampled_from([NEWCOMER, CHILD, "js.wx.zz"]), label="node")
        tier = data.draw(st.sampled_from(["county", *Tier]), label="tier")
        proof = sign_proof(data.draw(st.sampled_from([key, _OTHER]), label="by"), node, world.token)
        case.body = {"node": node, "tier": tier, "key": key.public_b64u, "token": world.token}
        case.body["proof"] = proof
        world.proven.add(key.key_id)
    elif path == "/v1/rotate":
        key = data.draw(_SEEDS, label="key")
        proof = sign_proof(data.draw(st.sampled_from([key, _OTHER]), label="by"), CHILD, "rotate")
        case.body = {"key": key.public_b64u, "proof": proof}
        world.proven.add(key.key_id)
    elif path == "/v1/chain":
        case.query = {"key_id": data.draw(st.sampled_from(world.key_ids), label="key id")}
    else:
        return False
    return True


def _short_polls(case: Case) -> None:
    """A long poll waits for real: keep valid waits short."""
    wait = (case.query or {}).get("wait")
    if case.operation.path == "/v1/tasks" and isinstance(wait, int | float) and wait > 0:
        case.query = {**(case.query or {}), "wait": min(wait, 0.01)}


def _fuzz(world: World, operation: APIOperation, mode: GenerationMode) -> None:
    session = ASGIClient(world.app)  # not entered: no lifespan, no scheduler, no uplink
    stranger = Signer.from_seed(b"\x07" * 32)
    signed = bool(operation.definition.raw.get("security"))

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        if not world.node.store.is_sqlite and _has_nul([case.query, case.headers, case.body]):
            # PostgreSQL text cannot hold U+0000 and a query with it fails (a key id, for
            # one): that is being fixed separately; such strings are fuzzed on SQLite.
            reject()
        tailored = _tailor(world, case, data)
        _short_polls(case)
        how = data.draw(st.sampled_from(SIGNERS), label="signer")
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            how = "none"  # the signature headers may be what is broken: keep them so
        auth = None if how == "none" else _Sign(world, how, stranger)
        response = case.call(session=session, auth=auth)
        # Refusing what is outside the schemas is the negative mode's check; a positive
        # case, or one whose body the test replaced, is judged by the others.
        negative = mode is GenerationMode.NEGATIVE and not tailored
        case.validate_response(response, checks=CHECKS if negative else CHECKS[:-1])
        if how == "replay" and signed:
            # Once authenticated, the same signature again is a replay; refused before
            # authentication, it is refused the same way again.
            again = case.call(session=session, auth=auth)
            if response.status_code < 300:
                assert again.status_code == 401, again.text
                assert again.json()["error"]["code"] == "replay", again.text
            else:
                assert again.status_code in (response.status_code, 401), again.text

    try:
        run()
    except Unsatisfiable:
        # Nothing to negate in an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE and not _has_inputs(operation), operation.label


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _has_inputs(operation: APIOperation) -> bool:
    return bool(list(operation.iter_parameters())) or bool(operation.body)


def _operations(app: FastAPI) -> list[APIOperation]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    return [result.ok() for result in schema.get_all_operations()]


# -- nothing invalid stored -------------------------------------------------------------------


def _assert_nothing_invalid(world: World, keys_before: set[str]) -> None:
    node = world.node
    problems = list(verify_log(node.log))
    assert problems == [], [str(p) for p in problems]
    for origin, own in world.fed.nodes.items():
        if origin == node.id:
            continue
        held = list(node.log.iter_entries(origin))
        mine = list(own.log.iter_entries(origin))
        assert held == mine[: len(held)], f"{node.id} holds other bytes for {origin}"
    assert _materialised(node) == _latest_valid(node)
    with node.store.read() as conn:
        keys = set(conn.execute(select(KEYS.c.key_id)).scalars())
    assert keys - keys_before <= world.proven, "a key was learnt without a proof"


def _latest_valid(node: Node) -> dict[str, Any]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(ENTRIES.c.raw).where(ENTRIES.c.status == "valid").order_by(ENTRIES.c.seq)
        ).scalars()
        latest: dict[str, Any] = {}
        for raw in rows:
            entry = orjson.loads(raw)
            latest[entry["id"]] = (entry["origin"], entry["seq"], entry.get("data"))
    return latest


def _materialised(node: Node) -> dict[str, Any]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(RECORDS.c.record_id, RECORDS.c.origin, RECORDS.c.seq, RECORDS.c.data)
        )
        return {r.record_id: (r.origin, int(r.seq), r.data) for r in rows}


# -- the worlds ---------------------------------------------------------------------------------


def _hub_world(fed: Federation) -> World:
    """The city hub, its county (which pushed everything its station had by then), the
    station (which wrote more since), a task for the county and an unused token."""
    fed.add(STATION)
    fed.write(STATION, 4, seed=1)
    fed.write(STATION, 2, seed=2, contract="reception")
    anyio.run(fed.cascade_up, STATION, CHILD)
    fed.write(STATION, 3, seed=3)
    anyio.run(fed.cascade_up, STATION)
    world = World(fed, fed.nodes[HUB])
    county = fed.nodes[CHILD]
    for origin in (STATION, CHILD):
        for after in (0, 2):
            segment = county.log.read_segment(origin, after, max_entries=100)
            if segment is not None:
                world.segments.append(encode_segment(segment.head, segment.start, segment.entries))
    issue_task(world.node, target=CHILD, kind="notice", payload={"text": "read this"})
    world.token = create_token(world.node, NEWCOMER, Tier.COUNTY)
    with world.node.store.read() as conn:
        world.key_ids = sorted(conn.execute(select(KEYS.c.key_id)).scalars())
    return world


def _station_world(fed: Federation) -> World:
    """A station with records of its own, some of them already at its county."""
    fed.add(STATION)
    fed.write(STATION, 3, seed=4)
    anyio.run(fed.cascade_up, STATION)
    fed.write(STATION, 2, seed=5, contract="reception")
    return World(fed, fed.nodes[STATION])


def test_hub_api_survives_fuzzing(fed: Federation) -> None:
    """Every operation of a hub, positive and negative, signed or not, on SQLite and on
    PostgreSQL: no server error, answers as documented, and nothing invalid stored."""
    _fuzz_all(_hub_world(fed))


def test_station_api_survives_fuzzing(make_node: NodeFactory, clock: FakeClock) -> None:
    """A station's operations (status, health, metrics; its store is always SQLite)."""
    _fuzz_all(_station_world(Federation(make_node, clock)))


def _fuzz_all(world: World) -> None:
    with world.node.store.read() as conn:
        keys_before = set(conn.execute(select(KEYS.c.key_id)).scalars())
    failures = []
    for operation in _operations(world.app):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(world, operation, mode)
            except (Exception, FailureGroup) as exc:  # noqa: BLE001 (all are reported)
                failures.append(f"{operation.label} ({mode.value}): {exc!r}\n{_notes(exc)}")
    assert not failures, "\n\n".join(failures)
    _assert_nothing_invalid(world, keys_before)


def _notes(exc: BaseException) -> str:
    return "\n".join(getattr(exc, "__notes__", []))
