"""The uplink: everything this node holds that its parent does not, pushed up verbatim.

The outbox is not a queue of messages but a view of the store: for every origin this node
holds — its own log and every descendant's segments it received — the parent's
acknowledged position is ``uplink_cursor.acked``; whatever lies beyond it is backlog. So
nothing needs enqueueing on write, a crash loses nothing, and a restart resumes from the
cursors (STYLE §5: the watermark moves only after the parent acknowledges).

One push = one request of at most ``max_bytes`` of segments, taken origin by origin in
origin order, each origin's entries in seq order from its cursor. Relayed origins are sent
exactly as they arrived: segments end at the signed heads their origin made (a relay
cannot sign for anyone else); our own log is cut wherever the byte budget says, with a head
signed on demand.

Answers move cursors only as far as the parent says it durably holds:

- ``ok``: cursor := ``held``;
- ``gap``: cursor := ``expected − 1`` (the parent lost data, or never had it): resend;
- any other rejection (``fork``, ``bad_*``, ``unknown_origin``, ``revoked_key``…): the
  origin is set aside for this run and the reason recorded for ``status``; it is tried
  again on the next run, since certificates or contracts may have arrived meanwhile.

While the parent is unreachable (connection errors, timeouts, 5xx, 429/503) the uplink
backs off exponentially with full jitter, capped, and stores the failure count and next
attempt time, so a restart does not hammer a parent that is down; the first answer resets
it and the loop continues at once. A ``Retry-After`` in the answer sets the wait instead,
stretched by up to half again at random: a busy parent (``503 busy``) asks all its
children for the same two seconds, and they should not all come back in the same one.

Pushes are at most 1 MiB of segments (about a thousand entries): large enough that the
per-request costs (authentication, a transaction, an answer) are spread thin, small enough
that a parent admitting a few requests at once holds little memory for each and answers
each within seconds, long before the sender's timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import httpx
import orjson
from sqlalchemy import Connection, func, select

from node.auth import error_of
from node.compression import gzip_body
from node.db import RowsInsert, Store, bulk, storable_text
from node.log import Log
from node.tables import HEADS, UPLINK_CURSOR, UPLINK_STATE
from schemas.errors import ErrorCode, GuantongError, code_of, describe
from schemas.segments import Segment, encode_segment
from schemas.times import Clock, format_time, parse_time

__all__ = [
    "RETRY_AFTER_JITTER",
    "Backlog",
    "SyncReport",
    "Uplink",
    "backlog",
    "backoff_delay",
    "collect_segments",
    "lower_cursors",
    "parse_retry_after",
]

BASE_DELAY = 2.0
MAX_DELAY = 600.0
PUSH_MAX_BYTES = 1 << 20
RETRY_AFTER_JITTER = 0.5
LONGEST_WAIT_S = 86_400 * (1 + RETRY_AFTER_JITTER)
"""No backoff waits longer (a ``Retry-After`` is capped at a day): a stored next attempt
further away than this was set by a clock that has since been set back (a PC a month
ahead, corrected), and is due now rather than in a month."""
_SET_CURSOR = RowsInsert(
    UPLINK_CURSOR,
    ("origin", "acked", "blocked", "updated_at"),
    "ON CONFLICT (origin) DO UPDATE SET acked = excluded.acked, blocked = excluded.blocked, "
    "updated_at = excluded.updated_at",
    key=("origin",),
)
_SET_STATE = (
    "INSERT INTO uplink_state (id, failures, next_attempt_at, last_error, last_contact) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET failures = excluded.failures, "
    "next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error, "
    "last_contact = excluded.last_contact"
)


def _is_result(value: Any) -> bool:
    """A push result as PROTOCOL §4 has it: at least a ``status`` and what is ``held``."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("status"), str)
        and type(value.get("held")) is int
        and value["held"] >= 0
    )


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)], at least 1 s."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** min(failures, 20)))
    return max(1.0, rng.uniform(0, ceiling))


@dataclass(frozen=True, slots=True)
class Backlog:
    origin: str
    acked: int
    held: int
    blocked: str | None

    @property
    def entries(self) -> int:
        return max(0, self.held - self.acked)


@dataclass(slots=True)
class SyncReport:
    requests: int = 0
    segments: int = 0
    entries: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    invalid: int = 0
    tasks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "segments": self.segments,
            "entries": self.entries,
            "invalid": self.invalid,
            "rejected": self.rejected,
            "tasks": self.tasks,
        }


class Uplink:
    def __init__(
        self,
        log: Log,
        *,
        parent_url: str,
        client: httpx.AsyncClient,
        clock: Clock,
        max_bytes: int = PUSH_MAX_BYTES,
        rng: random.Random | None = None,
        compresslevel: int = 6,
    ) -> None:
        self.log = log
        self.store = log.store
        self.node_id = log.origin
        self.parent_url = parent_url.rstrip("/")
        self.client = client
        self.clock = clock
        self.max_bytes = max_bytes
        self.rng = rng or random.Random()
        self.compresslevel = compresslevel

    def backlog(self) -> list[Backlog]:
        return backlog(self.store)

    # -- pushing -------------------------------------------------------------------------

    async def push_once(self, report: SyncReport, skip: set[str]) -> bool:
        """Push one request; True if anything was sent. Raises when the parent is away."""
        segments, body = await anyio.to_thread.run_sync(self._prepare, skip)
        if not segments:
            return False
        results = await self._post_split(segments, body)
        if len(results) != len(segments):
            await anyio.to_thread.run_sync(self._refused, "results do not match the segments")
            raise GuantongError(
                ErrorCode.MALFORMED,
                f"parent answered {len(results)} results for {len(segments)} segments",
            )
        report.requests += 1
        await anyio.to_thread.run_sync(self._record, segments, results, report, skip)
        return True

    async def _post_split(self, segments: list[Segment], body: bytes) -> list[dict[str, Any]]:
        """POST the segments; a request the parent finds too large is sent again in halves.
        A relay forwards another origin's segments whole, as signed, so one can be larger
        than the parent takes (one that came on a USB stick): refused alone, it is answered
        here as that origin's rejection (set aside with its reason, as a rejected segment
        is), and the other origins go on."""
        try:
            return await self._post(body)
        except GuantongError as exc:
            if exc.code is not ErrorCode.TOO_LARGE:
                raise
            if len(segments) == 1:
                (segment,) = segments
                return [
                    {
                        "origin": segment.origin,
                        "held": segment.start - 1,
                        "status": "rejected",
                        "error": {"code": exc.code.value, "message": exc.message},
                    }
                ]
        half = len(segments) // 2
        results = []
        for part in (segments[:half], segments[half:]):
            part_body = await anyio.to_thread.run_sync(self._encode, part)
            results.extend(await self._post_split(part, part_body))
        return results

    def _encode(self, segments: list[Segment]) -> bytes:
        body = b"".join(encode_segment(s.head, s.start, s.entries) for s in segments)
        return gzip_body(body, self.compresslevel)

    def _prepare(self, skip: set[str]) -> tuple[list[Segment], bytes]:
        """The next request's segments and its gzipped body, off the event loop (1 MiB
        of compression would hold up every other request this node serves)."""
        segments = collect_segments(self.log, max_bytes=self.max_bytes, skip=skip)
        return segments, self._encode(segments) if segments else b""

    async def sync(self, *, reconcile: bool = True) -> SyncReport:
        """Push until the outbox is empty or only rejected origins remain; first lower the
        cursors to what the parent holds (``reconcile``: a server does it now and then,
        not on every push it relays)."""
        if reconcile:
            await self.reconcile_cursors()
        report = SyncReport()
        skip: set[str] = set()
        while await self.push_once(report, skip):
            pass
        return report

    async def reconcile_cursors(self) -> None:
        """Lower our cursors to what the parent says it holds (its signed ``/v1/heads``).

        A parent restored from an older backup holds less than we think; a ``gap`` answer
        tells us only when we push something new, and an idle child never would. Asking
        first makes every run resend what the parent lost.
        """
        held: dict[str, int] = {}
        after: str | None = None
        while True:
            params: dict[str, str | int] = {"prefix": self.node_id, "limit": 10_000}
            if after:
                params["after"] = after
            try:
                response = await self.client.get(f"{self.parent_url}/v1/heads", params=params)
            except httpx.HTTPError:
                return  # the push will find out, and back off
            if response.status_code != 200:
                return
            try:  # a captive portal's page, a proxy's: nothing to lower by (the push says why)
                body = orjson.loads(response.content)
                page = {str(h["origin"]): int(h["seq"]) for h in body.get("heads", [])}
                after = body.get("next")
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                return
            held.update(page)
            if not after:
                break
            if not isinstance(after, str):
                return
        lower_cursors(self.store, held, format_time(self.clock()))

    async def _post(self, body: bytes) -> list[dict[str, Any]]:
        """POST a gzipped push body; the parent's results. A 200 answer is recorded as
        contact by :meth:`_record`, with the cursors it moves, in one transaction."""
        headers = {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
        }
        try:
            response = await self.client.post(
                f"{self.parent_url}/v1/push", content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            reason = describe(exc)
            await anyio.to_thread.run_sync(self._failed, reason)
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE, f"parent {self.parent_url} unreachable: {reason}"
            ) from exc
        if response.status_code in (429, 503) or response.status_code >= 500:
            wait = parse_retry_after(response.headers.get("retry-after"))
            error = error_of(response)
            said = f" ({error.get('code')}: {error.get('message', '')})" if error else ""
            reason = f"HTTP {response.status_code}{said}"
            await anyio.to_thread.run_sync(self._failed, reason, wait)
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE,
                f"parent {self.parent_url} answered {response.status_code}{said}",
                parent_code=str(error.get("code", "")) or None,
            )
        if response.status_code != 200:
            # refused as a whole (a revoked or expired key, a body too large): the parent
            # is there, and the same push would be refused again at once, so back off
            error = error_of(response)
            said = f"{error.get('code')}: {error.get('message', '')}"
            reason = f"HTTP {response.status_code} ({said})"
            await anyio.to_thread.run_sync(self._refused, reason)
            raise GuantongError(
                code_of(error.get("code")),
                f"parent refused the push ({response.status_code}): "
                f"{error.get('message', response.text[:200])}",
            )
        try:
            results = orjson.loads(response.content)["results"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            results = None
        if not isinstance(results, list) or not all(_is_result(r) for r in results):
            await anyio.to_thread.run_sync(self._refused, "a push answered without results")
            raise GuantongError(
                ErrorCode.MALFORMED, f"parent {self.parent_url} answered a push without results"
            )
        return results

    def _record(
        self,
        segments: list[Segment],
        results: list[dict[str, Any]],
        report: SyncReport,
        skip: set[str],
    ) -> None:
        now = format_time(self.clock())
        cursors: dict[str, tuple[int, str | None]] = {}  # origin: acked, blocked
        for segment, result in zip(segments, results, strict=True):
            origin = segment.origin
            if result.get("status") == "ok":
                held = result["held"]  # a whole count: checked by _is_result
                cursors[origin] = (held, None)
                report.segments += 1
                report.entries += max(0, min(held, segment.end) - segment.start + 1)
                report.invalid += len(result.get("invalid", []))
                continue
            error = result.get("error") or {}
            code = str(error.get("code", "malformed"))
            if code == ErrorCode.GAP.value and "expected" in error:
                cursors[origin] = (int(error["expected"]) - 1, None)
                continue
            reason = storable_text(f"{code}: {error.get('message', '')}")[:500]
            cursors[origin] = (result["held"], reason)
            report.rejected[origin] = reason
            skip.add(origin)
        with self.store.write(durable=False) as conn:  # lost: resent, compared by hash
            # on the driver: a city's relay moves a hundred cursors per push
            rows = [(origin, acked, blocked, now) for origin, (acked, blocked) in cursors.items()]
            bulk(conn, _SET_CURSOR, rows)
            self._save(0, None, None, now, conn)  # the parent answered: contact

    # -- backoff state -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(select(UPLINK_STATE).where(UPLINK_STATE.c.id == 1)).first()
        if row is None:
            return {
                "failures": 0,
                "next_attempt_at": None,
                "last_error": None,
                "last_contact": None,
            }
        return {
            "failures": int(row.failures),
            "next_attempt_at": row.next_attempt_at,
            "last_error": row.last_error,
            "last_contact": row.last_contact,
        }

    def due(self) -> bool:
        """Whether the backoff allows an attempt now."""
        return self.wait() == 0.0

    def wait(self) -> float:
        """Seconds until the backoff allows the next attempt (0: now)."""
        next_at = self.state()["next_attempt_at"]
        if next_at is None:
            return 0.0
        remaining = (parse_time(next_at) - self.clock()).total_seconds()
        return 0.0 if remaining > LONGEST_WAIT_S else max(0.0, remaining)

    def _failed(
        self, reason: str, retry_after: float | None = None, *, answered: bool = False
    ) -> None:
        """Back off: as the parent asked (``Retry-After``), else exponentially; keep the
        reason (``/v1/status``), and, if the parent ``answered``, the contact it was."""
        state = self.state()
        failures = state["failures"] + 1
        delay = (
            retry_after * self.rng.uniform(1.0, 1.0 + RETRY_AFTER_JITTER)
            if retry_after is not None
            else backoff_delay(failures, self.rng)
        )
        now = self.clock()
        contact = format_time(now) if answered else state["last_contact"]
        self._save(failures, format_time(now + timedelta(seconds=delay)), reason[:500], contact)

    def _refused(self, reason: str) -> None:
        """The parent answered but took nothing: back off as for a failure."""
        self._failed(reason, answered=True)

    def _save(
        self,
        failures: int,
        next_at: str | None,
        error: str | None,
        contact: str | None,
        conn: Connection | None = None,
    ) -> None:
        if conn is None:
            with self.store.write(durable=False) as own:
                self._save(failures, next_at, error, contact, own)
            return
        bulk(conn, _SET_STATE, [(1, failures, next_at, error, contact)])


def lower_cursors(
    store: Store, held: Mapping[str, int], now: str, *, only: Collection[str] | None = None
) -> list[str]:
    """Lower the cursors (of the origins ``only``, else of all) to what the parent holds
    (``held``; an origin it does not name: nothing), never raise one: what lies above is
    sent again, which costs bytes only (the parent compares by hash). Returns the origins
    lowered."""
    lowered: list[str] = []
    with store.write() as conn:
        for row in conn.execute(select(UPLINK_CURSOR.c.origin, UPLINK_CURSOR.c.acked)).all():
            if only is not None and row.origin not in only:
                continue
            parent_has = max(0, held.get(row.origin, 0))
            if row.acked > parent_has:
                conn.execute(
                    UPLINK_CURSOR.update()
                    .where(UPLINK_CURSOR.c.origin == row.origin)
                    .values(acked=parent_has, updated_at=now)
                )
                lowered.append(str(row.origin))
    return lowered


def backlog(store: Store, conn: Connection | None = None) -> list[Backlog]:
    """Per origin held: what the parent has acknowledged and what lies beyond it."""
    acked = func.coalesce(UPLINK_CURSOR.c.acked, 0)
    query = (
        select(HEADS.c.origin, HEADS.c.seq, acked.label("acked"), UPLINK_CURSOR.c.blocked)
        .select_from(HEADS.outerjoin(UPLINK_CURSOR, UPLINK_CURSOR.c.origin == HEADS.c.origin))
        .where(HEADS.c.seq > acked)
        .order_by(HEADS.c.origin)
    )
    if conn is None:
        with store.read() as own:
            return backlog(store, own)
    return [Backlog(r.origin, int(r.acked), int(r.seq), r.blocked) for r in conn.execute(query)]


def collect_segments(
    log: Log,
    *,
    max_bytes: int | None,
    skip: Collection[str] = (),
    progress: Callable[[int], None] | None = None,
) -> list[Segment]:
    """The outbox as segments, origin by origin, each from its cursor; whole segments only,
    stopping once ``max_bytes`` is reached (``None``: everything, for bundles). Nothing
    leaves a store quarantined as corrupt (the parent would refuse damaged entries anyway)."""
    log.store.refuse_if_corrupt()
    segments: list[Segment] = []
    size = 0
    budget = max_bytes if max_bytes is not None else 1 << 62
    with log.store.read() as conn:  # one transaction for every origin of the push
        for item in backlog(log.store, conn):
            if item.origin in skip:
                continue
            after = item.acked
            while after < item.held and size < budget:
                segment = log.read_segment(
                    item.origin, after, max_bytes=max(1, min(budget - size, 4 << 20)), conn=conn
                )
                if segment is None:
                    break
                segments.append(segment)
                size += sum(len(e) + 1 for e in segment.entries) + 300
                after = segment.end
                if progress is not None:
                    progress(len(segment.entries))
            if size >= budget:
                break
    return segments


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds form), capped at a day."""
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()), 86_400))
