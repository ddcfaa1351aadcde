"""Fuzzing the parsers a hub exposes to its children: segment framing, push ingest, bundles.

Each property is "a stable error or a result, never a crash, and nothing malformed stored":
the decoder raises only :class:`FramingError` naming a line; ``Ingestor.push`` raises only
:class:`GuantongError` or returns one well-formed result per segment, and after any body —
random bytes, mutations of valid bodies, segments with forged signatures, entries signed
by a child with arbitrary data — every chain the hub holds still verifies, what it holds of
each station is a prefix of the station's own log, and every record is its latest valid
entry. Bundles refuse damaged gzip files with a ``GuantongError`` and store nothing broken.

PostgreSQL cannot hold U+0000 in text or JSONB; strings with it are left to the dedicated
tests in ``test_fault_scenarios.py`` and only fuzzed on SQLite here.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from contracts.samples import sample_records
from node.bundles import export_bundle, export_tasks, import_bundle, import_tasks, read_bundle
from node.db import storable_json
from node.ingest import Ingestor, SegmentResult
from node.runtime import Node
from node.tables import ENTRIES, RECORDS
from node.tasks import issue_task
from node.verify import verify_log
from schemas.canonical import canonical_bytes
from schemas.errors import ErrorCode, FramingError, GuantongError
from schemas.log import SignedHead, build_entry, sign_head
from schemas.segments import MAX_SEGMENT_ENTRIES, decode_segments, encode_segment, split_lines
from tests.federation.harness import Federation

FAST = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HUB = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATIONS = ("js.wx.jy.s1", "js.wx.jy.s2")
FORGER = "js.wx.jy.s3"
"""A station whose key the fuzzer signs with: its log at the hub is whatever was pushed."""
CODES = {code.value for code in ErrorCode}

_HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
_TIME = st.sampled_from(["2026-11-21T08:00:00.000Z", "2026-02-28T23:59:59.999Z"])
_ORIGIN = st.sampled_from([*STATIONS, FORGER, "js.wx.jy", "js", "js.sz.x", "js.wx.jy.s1.a"])


_NASTY = list(':"\\/\u2028\ud7ff\ue000\uffff\U0001f600中文 \t\x7f0123456789abcdef')


def _text(nul: bool) -> st.SearchStrategy[str]:
    """Short strings heavy in what breaks parsers and stores (U+0000 only when ``nul``)."""
    chars = st.sampled_from(_NASTY) | st.characters(
        exclude_categories=["Cs"], exclude_characters="" if nul else "\x00"
    )
    text = st.text(chars, max_size=20)
    if nul:
        return text | st.tuples(text, text).map("\x00".join)
    return text


def _json(nul: bool) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | _text(nul)
        | _TIME
        | st.sampled_from(["received", "resolved", "done", "2026-11-21", "1.1", "opinion"])
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text(nul), inner, max_size=4),
        max_leaves=12,
    )


def _heads(nul: bool) -> st.SearchStrategy[SignedHead]:
    return st.builds(
        lambda origin, seq, head, time, sig: SignedHead.model_validate(
            {"origin": origin, "seq": seq, "head": head, "time": time, "sig": sig}
        ),
        _ORIGIN,
        st.integers(1, 6),
        _HEX,
        _TIME,
        _text(nul) | st.just("0123456789abcdef:" + "A" * 86),
    )


_LINE = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" "))


@st.composite
def _framed(draw: st.DrawFn, nul: bool = True) -> tuple[bytes, list[tuple[SignedHead, int, int]]]:
    """A well-framed body of arbitrary heads and entry lines, with what it frames."""
    parts: list[bytes] = []
    shape: list[tuple[SignedHead, int, int]] = []
    for _ in range(draw(st.integers(0, 3))):
        head = draw(_heads(nul))
        start = draw(st.integers(1, head.seq))
        lines = draw(st.lists(_LINE, min_size=head.seq - start + 1, max_size=head.seq - start + 1))
        parts.append(encode_segment(head, start, lines))
        shape.append((head, start, len(lines)))
    return b"".join(parts), shape


_OPS = ("flip", "truncate", "swap", "duplicate", "blank", "delete", "foreign", "garbage")
_OPS += ("resign", "reorder", "resign", "reorder", "duplicate", "delete")
"""Byte- and line-level damage, and (weighted up) changes that keep every line parseable."""


@st.composite
def _mutated(draw: st.DrawFn, body: bytes, pool: list[bytes], nul: bool) -> bytes:
    """``body`` after 1–3 mutations: bit flips, truncation, line swaps, duplicated, deleted,
    blank, foreign or garbage lines, and signed heads whose signature is replaced."""
    data = body
    for _ in range(draw(st.integers(1, 3))):
        lines = data.split(b"\n")
        op = draw(st.sampled_from(_OPS))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data = (
                data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
            )
            continue
        if op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
            continue
        if op == "swap":
            other = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[at], lines[other] = lines[other], lines[at]
        elif op == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), lines[at])
        elif op == "blank":
            lines.insert(at, b"")
        elif op == "delete" and lines:
            del lines[at]
        elif op == "foreign":
            lines.insert(at, draw(st.sampled_from(pool)))
        elif op == "garbage":
            lines.insert(at, draw(_LINE))
        elif op == "resign":
            lines = [_resign(line, draw(_text(nul))) for line in lines]
        elif op == "reorder":
            lines = _reorder(lines, draw(st.randoms(use_true_random=False)).random())
        data = b"\n".join(lines)
    return data


def _resign(line: bytes, sig: str) -> bytes:
    """A segment header whose signed head carries another signature (the bytes still chain)."""
    if not line.startswith(b'{"from":'):
        return line
    try:
        value = orjson.loads(line)
        value["head"]["sig"] = sig
        return canonical_bytes(value)
    except (orjson.JSONDecodeError, GuantongError, KeyError, TypeError):
        return line


def _reorder(lines: list[bytes], roll: float) -> list[bytes]:
    """Whole segments in another order (a later segment of an origin before an earlier)."""
    try:
        segments = list(decode_segments(lines[:-1] if lines and lines[-1] == b"" else lines))
    except GuantongError:
        return lines
    if len(segments) < 2:
        return lines
    pivot = 1 + int(roll * (len(segments) - 1))
    order = segments[pivot:] + segments[:pivot]
    return b"".join(encode_segment(s.head, s.start, s.entries) for s in order).split(b"\n")


# -- the decoder ---------------------------------------------------------------------------


def _decode(body: bytes) -> list[Any]:
    """Decode, checking the framing contract: whole segments, or a FramingError at a line."""
    lines = split_lines(body)
    try:
        segments = list(decode_segments(lines))
    except FramingError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE), exc
        line = exc.details.get("line")
        assert isinstance(line, int) and 1 <= line <= len(lines) + 1, exc.details
        return []
    covered = 0
    for segment in segments:
        assert len(segment.entries) == segment.end - segment.start + 1
        assert 1 <= segment.start <= segment.end
        assert len(segment.entries) <= MAX_SEGMENT_ENTRIES
        assert segment.line == covered + 1
        covered += 1 + len(segment.entries)
    assert covered == len(lines)
    return segments


@FAST
@given(st.binary(max_size=400))
def test_decoder_takes_any_bytes(body: bytes) -> None:
    """Random bytes decode to whole segments or fail with a framing error naming a line."""
    _decode(body)


@FAST
@given(_framed())
def test_decoder_round_trips_framing(
    framed: tuple[bytes, list[tuple[SignedHead, int, int]]],
) -> None:
    """What the encoder frames, the decoder gives back exactly."""
    body, shape = framed
    segments = _decode(body)
    assert [(s.head, s.start, len(s.entries)) for s in segments] == shape


@FAST
@given(st.data())
def test_decoder_takes_mutated_framing(data: st.DataObject) -> None:
    """Bit flips, cuts, swapped, duplicated, blank and foreign lines never break the decoder."""
    body, _ = data.draw(_framed())
    pool = split_lines(body) or [b"{}"]
    _decode(data.draw(_mutated(body, pool, nul=True)))


# -- ingest at a hub -----------------------------------------------------------------------


class _Hub:
    """A county with stations holding real logs, and an ingestor of the county."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.county = fed.add("js.wx.jy")
        self.stations = {s: fed.add(s) for s in (*STATIONS, FORGER)}
        for i, station in enumerate(STATIONS):
            fed.write(station, 4, seed=i)
            fed.write(station, 3, seed=i + 10, contract="reception")
        self.nul = self.county.store.is_sqlite
        self.ingestor = Ingestor.of(self.county, clock=fed.clock)
        first = self.segment(STATIONS[0], 0, 4)
        assert [r.status for r in self.ingestor.push(first, caller=STATIONS[0])] == ["ok"]
        self.valid = [
            self.segment(STATIONS[0], 0, 4),
            self.segment(STATIONS[0], 4, 7),
            self.segment(STATIONS[1], 0, 7),
        ]

    def segment(self, origin: str, after: int, end: int) -> bytes:
        segment = self.stations[origin].log.read_segment(origin, after, max_entries=end - after)
        assert segment is not None and segment.end == end
        return encode_segment(segment.head, segment.start, segment.entries)

    def push(self, body: bytes, caller: str | None) -> list[SegmentResult] | None:
        """Push; a refused body must carry a stable code."""
        try:
            results = self.ingestor.push(body, caller=caller)
        except GuantongError as exc:
            assert exc.code.value in CODES
            return None
        for result in results:
            assert result.status in ("ok", "rejected")
            assert isinstance(result.held, int) and result.held >= 0
            if result.error is not None:
                assert result.error["code"] in CODES, result.error
            for item in (*result.invalid, *result.pending):
                assert item["code"] in CODES and isinstance(item["seq"], int)
        return results

    def check(self) -> None:
        """Nothing malformed stored: every chain verifies, each station's copy is a prefix
        of its own log, and every record is the state of its latest valid entry."""
        problems = list(verify_log(self.county.log))
        assert problems == [], [str(p) for p in problems]
        for station in STATIONS:
            held = list(self.county.log.iter_entries(station))
            own = list(self.stations[station].log.iter_entries(station))
            assert held == own[: len(held)], f"the county holds other bytes for {station}"
        assert _materialised(self.county) == _latest_valid(self.county)


def _latest_valid(node: Node) -> dict[str, Any]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(ENTRIES.c.raw).where(ENTRIES.c.status == "valid").order_by(ENTRIES.c.seq)
        ).scalars()
        latest: dict[str, Any] = {}
        for raw in rows:
            entry = orjson.loads(raw)
            # a record holds its entry's data with U+0000 as U+FFFD (node.log.record_row)
            latest[entry["id"]] = (entry["origin"], entry["seq"], storable_json(entry.get("data")))
    return latest


def _materialised(node: Node) -> dict[str, Any]:
    with node.store.read() as conn:
        rows = conn.execute(
            select(RECORDS.c.record_id, RECORDS.c.origin, RECORDS.c.seq, RECORDS.c.data)
        )
        return {r.record_id: (r.origin, int(r.seq), r.data) for r in rows}


_CALLERS = st.sampled_from([None, None, *STATIONS, FORGER])


def test_ingest_takes_any_bytes(fed: Federation) -> None:
    """Random bytes and random well-framed bodies: a stable error or results, nothing stored
    that does not verify."""
    hub = _Hub(fed)

    @HUB
    @given(st.binary(max_size=300) | _framed(nul=hub.nul).map(lambda f: f[0]), _CALLERS)
    def run(body: bytes, caller: str | None) -> None:
        hub.push(body, caller)
        hub.check()

    run()


def test_ingest_takes_mutated_valid_bodies(fed: Federation) -> None:
    """Mutations of real pushes (bit flips, cuts, line swaps, duplicated and blank lines,
    foreign lines, forged signatures, segments reordered) never store a broken chain, and
    the unmutated body is still taken afterwards."""
    hub = _Hub(fed)
    bodies = st.lists(st.sampled_from(hub.valid), min_size=1, max_size=3).map(b"".join)
    pool = [line for body in hub.valid for line in split_lines(body)]

    @HUB
    @given(st.data(), _CALLERS)
    def run(data: st.DataObject, caller: str | None) -> None:
        body = data.draw(bodies)
        hub.push(data.draw(_mutated(body, pool, nul=hub.nul)), caller)
        hub.check()

    run()
    results = hub.push(b"".join(hub.valid), STATIONS[0])
    assert results is not None and results[0].status == "ok"
    assert hub.push(hub.valid[2], STATIONS[1]) is not None
    hub.check()


def test_ingest_refuses_forged_signatures(fed: Federation) -> None:
    """Real segments under a signed head whose signature is anything else — random text, a
    known key id with random bytes, the real signature with one character changed — are
    rejected per segment (``unknown_origin`` or ``bad_signature``), held or not."""
    hub = _Hub(fed)
    kids = [n.signer.key_id for n in (hub.county, *hub.stations.values())]
    b64 = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=90)

    @HUB
    @given(
        st.sampled_from(hub.valid),
        _text(hub.nul)
        | st.builds("{}:{}".format, st.sampled_from(kids), b64)
        | st.tuples(st.integers(0, 200), st.characters(exclude_characters="\x00")),
    )
    def run(body: bytes, forged: str | tuple[int, str]) -> None:
        header, rest = body.split(b"\n", 1)
        real = orjson.loads(header)["head"]["sig"]
        if isinstance(forged, tuple):
            at, char = forged[0] % len(real), forged[1]
            forged = real[:at] + char + real[at + 1 :]
        if forged == real:
            return
        results = hub.push(_resign(header, forged) + b"\n" + rest, None)
        assert results is not None and len(results) == 1
        assert results[0].error is not None, "a forged signature was accepted"
        assert results[0].error["code"] in ("unknown_origin", "bad_signature")
        hub.check()

    run()


def test_ingest_takes_signed_nonsense(fed: Federation) -> None:
    """Entries a child really signed, with any contract, version, op and data: kept as
    valid, invalid or pending and never applied unless valid; chains stay verifiable."""
    hub = _Hub(fed)
    forger = hub.stations[FORGER]
    samples = {
        name: next(iter(sample_records(name, 1, seed=3, origin=FORGER)))
        for name in ("opinion", "reception", "task_report", "duty_activity", "suggestion")
    }

    def mutate(record: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        changed = dict(record)
        changed.pop("id", None)
        if key in changed:
            changed[key] = value
        return changed

    contract_data = st.one_of(
        st.sampled_from(sorted(samples)).flatmap(
            lambda name: st.tuples(
                st.just(name),
                st.sampled_from(sorted(samples[name])).flatmap(
                    lambda key: _json(hub.nul).map(lambda v: mutate(samples[name], key, v))
                ),
            )
        ),
        st.tuples(
            st.sampled_from(["opinion", "node_cert", "task_report", "nosuch", "warning"]),
            st.dictionaries(_text(hub.nul), _json(hub.nul), max_size=4),
        ),
    )
    entries = st.tuples(
        contract_data,
        st.sampled_from(["1.0", "1.1", "2.0", "9.9"]),
        st.sampled_from(["put", "put", "del"]),
        st.sampled_from(
            ["0194a3c0-0000-7000-8000-000000000001", "0194a3c0-0000-7000-8000-000000000002"]
        ),
    )

    @HUB
    @given(st.lists(entries, min_size=1, max_size=4), st.booleans())
    def run(items: list[Any], relayed: bool) -> None:
        head = hub.county.log.head(FORGER)
        seq, prev = (head.seq, head.head) if head else (0, "0" * 64)
        start = seq + 1
        raws: list[bytes] = []
        for (contract, data), version, op, record_id in items:
            seq += 1
            try:
                _, raw, prev = build_entry(
                    origin=FORGER,
                    seq=seq,
                    prev=prev,
                    time=fed.now(),
                    contract=contract,
                    version=version,
                    record_id=record_id,
                    op=op,
                    data=data if op == "put" else None,
                )
            except GuantongError:
                return  # no canonical form (too large): the origin could not write it either
            raws.append(raw)
        signed = sign_head(forger.signer, origin=FORGER, seq=seq, head=prev, time=fed.now())
        body = encode_segment(signed, start, raws)
        results = hub.push(body, None if relayed else FORGER)
        assert results is not None and len(results) == 1
        assert results[0].status == "ok", results[0].error
        hub.check()

    if hub.nul:  # first, a valid entry whose text holds U+0000 (its record holds U+FFFD)
        nul = mutate(samples["opinion"], "content", "水压\x00低")
        run.hypothesis.inner_test(
            [(("opinion", nul), "1.1", "put", samples["opinion"]["id"])], False
        )
    run()


# -- bundles -------------------------------------------------------------------------------


def _gzip_mutations(raw: bytes, inner: bytes) -> st.SearchStrategy[bytes]:
    def flip(pos: int, bit: int) -> bytes:
        pos %= len(raw)
        return raw[:pos] + bytes([raw[pos] ^ (1 << bit)]) + raw[pos + 1 :]

    lines = inner.split(b"\n")

    def rezip(i: int, j: int, cut: int) -> bytes:
        moved = list(lines)
        i %= len(moved)
        j %= len(moved)
        moved[i], moved[j] = moved[j], moved[i]
        joined = b"\n".join(moved)
        return gzip.compress(joined[: len(joined) - cut % (len(joined) + 1)], mtime=0)

    return st.one_of(
        st.builds(flip, st.integers(0, len(raw) - 1), st.integers(0, 7)),
        st.integers(0, len(raw)).map(lambda n: raw[:n]),
        st.binary(min_size=1, max_size=40).map(lambda junk: raw + junk),
        st.builds(rezip, st.integers(0, 50), st.integers(0, 50), st.integers(0, 200)),
        st.binary(max_size=200).map(lambda junk: gzip.compress(junk, mtime=0)),
        st.binary(max_size=100),
    )


def _fuzz_bundle(
    hub: _Hub, original: Path, importer: Callable[[Path], object], target: Path
) -> Callable[[], None]:
    raw = original.read_bytes()
    _, body = read_bundle(original)
    inner = gzip.decompress(raw)
    assert inner.endswith(body)

    @HUB
    @given(_gzip_mutations(raw, inner))
    def run(damaged: bytes) -> None:
        target.write_bytes(damaged)
        try:
            importer(target)
        except GuantongError as exc:
            assert exc.code.value in CODES
        hub.check()

    return run


def test_bundles_refuse_damage_with_a_stable_error(fed: Federation, tmp_path: Path) -> None:
    """A damaged ``.gtb`` (bits flipped, cut, junk appended, lines swapped and re-zipped,
    junk zipped) is refused with a GuantongError or imported per segment; nothing broken
    is stored. Task bundles likewise."""
    hub = _Hub(fed)
    station = hub.stations[STATIONS[1]]
    up = export_bundle(station, tmp_path / "up.gtb").path
    issue_task(hub.county, target=station.id, kind="notice", payload={"text": "通知"})
    down = export_tasks(hub.county, station.id, tmp_path / "down.gtb").path
    cases: list[tuple[Path, Callable[[Path], object]]] = [
        (up, lambda path: import_bundle(hub.county, path)),
        (down, lambda path: import_tasks(station, path)),
    ]
    for original, importer in cases:
        _fuzz_bundle(hub, original, importer, tmp_path / "fuzzed.gtb")()
    header, results = import_bundle(hub.county, up)
    assert header["from"] == station.id and {r.status for r in results} == {"ok"}
    hub.check()
