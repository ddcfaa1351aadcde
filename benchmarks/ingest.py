"""Hub ingest in one process, phase by phase: the hot path of every county, city and
province (``python -m benchmarks.ingest``).

Builds ``--stations`` station logs of ``--entries`` opinions each (real entries, signed
heads), then ingests them into a fresh hub as pushes of one segment, first with phase 1
alone (parse, chain, signature, contract: ``verify``), then whole (``ingest``: verify +
apply + commit), and reports entries/s for each and the share of apply. The sizes default
to the catch-up of one county in the province simulation (100 stations × 100 entries).

Two options bring it closer to a province. ``--record-ids uuid7`` gives records the ids
stations give them (UUIDv7 of the moment each was made, every station's spread over the
same day) instead of ids grouped by station: a hub then inserts into its indexes of record
ids at random places, as a province taking in a day of 10,000 stations does.
``--held N`` has the hub hold N entries of other stations (written the same way, not
timed) before the timed pushes arrive, since what an insert costs grows with the indexes
it goes into.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from benchmarks.pgschema import schema_for_run
from contracts.privacy import project
from contracts.samples import sample_records
from node.ingest import Ingestor
from node.runtime import Node
from node.settings import NodeSettings
from schemas.hashing import ZERO_HASH
from schemas.ids import uuid7
from schemas.log import build_entry, sign_head
from schemas.segments import Segment
from schemas.signing import Signer
from schemas.times import format_time, system_clock

DAY_MS = 86_400_000


def segments(
    hub: Node, stations: int, entries: int, *, record_ids: str = "clustered", first: int = 0
) -> list[Segment]:
    """One segment of ``entries`` opinions for each of ``stations`` stations, numbered from
    ``first``; with ``record_ids="uuid7"`` each station's records are spread over the same
    day, as a day's backlog of real stations is."""
    cv = hub.registry.current("opinion")
    templates = [
        project({k: v for k, v in r.items() if k != "id"}, cv.privacy, b"bench")[0]
        for r in sample_records("opinion", 200, seed=1)
    ]
    clock = system_clock()
    now = format_time(clock)
    day_start = int(clock.timestamp() * 1000) - DAY_MS
    out = []
    for i in range(first, first + stations):
        origin = f"{hub.id}.s{i:05d}"
        rng = random.Random(i)
        signer = Signer.from_seed((i + 1).to_bytes(32, "big"))
        hub.keyring.add(origin, signer.public_raw, not_before="2000-01-01T00:00:00.000Z")
        prev, raws = ZERO_HASH, []
        for n in range(entries):
            _, raw, prev = build_entry(
                origin=origin,
                seq=n + 1,
                prev=prev,
                time=now,
                contract="opinion",
                version=cv.version,
                record_id=(
                    uuid7(day_start + n * DAY_MS // entries + rng.randrange(1000), rng=rng)
                    if record_ids == "uuid7"
                    else f"{i:08x}-0000-4000-8000-{n:012x}"
                ),
                op="put",
                data=templates[(i + n) % len(templates)],
            )
            raws.append(raw)
        head = sign_head(signer, origin=origin, seq=entries, head=prev, time=now)
        out.append(Segment(head=head, start=1, entries=tuple(raws)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="pushes ingested at once from this many threads, as a hub admits them",
    )
    parser.add_argument(
        "--record-ids",
        choices=("clustered", "uuid7"),
        default="clustered",
        help="record ids grouped by station (default), or UUIDv7 spread over one day as "
        "stations make them",
    )
    parser.add_argument(
        "--held",
        type=int,
        default=0,
        help="entries the hub already holds (other stations', pushes of --entries) before "
        "the timed pushes",
    )
    args = parser.parse_args(argv)
    if min(args.stations, args.entries, args.threads) < 1 or args.held < 0:
        parser.error("--stations, --entries and --threads are at least 1, --held at least 0")
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        # on PostgreSQL, a schema of this run's own, dropped at its end
        db_url = stack.enter_context(schema_for_run(args.db, "ingest")) if args.db else None
        hub = Node.init(
            NodeSettings(home=Path(tmp) / "hub", id="js", tier="province", db_url=db_url)
        )
        ingestor = Ingestor(
            store=hub.store,
            hub_id=hub.id,
            registry=hub.registry,
            keyring=hub.keyring,
            clock=system_clock,
        )
        held_stations = -(-args.held // args.entries)
        for first in range(0, held_stations, 200):  # built and taken in by parts: memory
            part = segments(
                hub,
                min(200, held_stations - first),
                args.entries,
                record_ids=args.record_ids,
                first=args.stations + first,
            )
            for start in range(0, len(part), 20):
                results = ingestor.ingest(part[start : start + 20], caller=None)
                assert all(r.status == "ok" for r in results), results
        work = segments(hub, args.stations, args.entries, record_ids=args.record_ids)
        total = args.stations * args.entries
        started, cpu = time.perf_counter(), time.process_time()
        for segment in work:
            ingestor._verify(segment, None, False)
        verify_s, verify_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            for (result,) in pool.map(lambda s: ingestor.ingest([s], caller=None), work):
                assert result.status == "ok", result
        ingest_s, ingest_cpu = time.perf_counter() - started, time.process_time() - cpu
        hub.close()
    backend = "PostgreSQL" if args.db else "SQLite"
    held = f", {args.held:,} entries held before" if args.held else ""
    print(
        f"hub ingest, {args.stations} pushes × {args.entries} entries ({backend}, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}, "
        f"{args.record_ids} record ids{held}):"
    )
    for name, seconds, cpu in (
        ("verify (phase 1)", verify_s, verify_cpu),
        ("ingest (whole)", ingest_s, ingest_cpu),
    ):
        rate, cost = total / seconds, seconds * 1e6 / total
        print(
            f"  {name:<17} {rate:>10,.0f} entries/s  {cost:6.1f} µs/entry wall, "
            f"{cpu * 1e6 / total:6.1f} µs/entry CPU"
        )


if __name__ == "__main__":
    main()
