"""Acceptance at scale: build a city of N stations × M entries at a province (through the
real ingest), then time ``accept`` on it with matching roots.

Run: ``python -m benchmarks.acceptance [--stations 1000] [--entries 1000]`` (the goal in
the acceptance issue: 1,000 stations and 1,000,000 entries in under 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from contracts.privacy import project
from contracts.samples import sample_records
from hub.acceptance import accept
from node.db import Store
from node.ingest import Ingestor
from node.log import Log, Write
from node.reconcile import LocalRoots
from node.runtime import Node
from node.settings import NodeSettings
from schemas.signing import Signer
from schemas.times import system_clock


def build(root: Path, stations: int, entries: int) -> tuple[Node, float, float]:
    province = Node.init(NodeSettings(home=root / "js", id="js", tier="province"))
    ingest = Ingestor(
        store=province.store,
        hub_id="js",
        registry=province.registry,
        keyring=province.keyring,
        clock=system_clock,
    )
    cv = province.registry.current("opinion")
    template = [
        {k: v for k, v in r.items() if k != "id"} for r in sample_records("opinion", 200, seed=1)
    ]
    public = [project(r, cv.privacy, b"bench")[0] for r in template]
    generate = ingest_s = 0.0
    for i in range(stations):
        origin = f"js.wx.c{i // 100:02d}.s{i % 100:03d}"
        signer = Signer.from_seed(i.to_bytes(32, "big"))
        province.keyring.add(origin, signer.public_raw, not_before="2000-01-01T00:00:00.000Z")
        station_db = root / "station.db"
        station_db.unlink(missing_ok=True)
        store = Store(f"sqlite:///{station_db}")
        store.migrate()
        started = time.perf_counter()
        log = Log(store, origin=origin, signer=signer, clock=system_clock)
        log.append(
            [
                Write(
                    "opinion", cv.version, f"{i:08x}-0000-4000-8000-{n:012x}", data=public[n % 200]
                )
                for n in range(entries)
            ]
        )
        segment = log.read_segment(origin, 0, max_entries=entries, max_bytes=1 << 40)
        assert segment is not None
        generate += time.perf_counter() - started
        started = time.perf_counter()
        (result,) = ingest.ingest([segment], caller=None)
        assert result.status == "ok", result
        ingest_s += time.perf_counter() - started
        store.dispose()
    return province, generate, ingest_s


async def _accept(province: Node) -> dict[str, object]:
    # the "lower hub" is the province's own store here: roots match by construction
    return await accept(province, "js.wx", lower=LocalRoots(province.store))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--entries", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        province, generate, ingest_s = build(Path(tmp), args.stations, args.entries)
        total = args.stations * args.entries
        started = time.perf_counter()
        report = asyncio.run(_accept(province))
        accept_s = time.perf_counter() - started
        province.close()
    print(f"acceptance of {args.stations} stations × {args.entries} entries = {total:,} (SQLite):")
    print(f"  ingest at the province  {total / ingest_s:>10,.0f} entries/s ({ingest_s:.1f} s)")
    rate = total / accept_s
    print(f"  accept                  {accept_s:>10.2f} s   ({rate:,.0f} entries/s checked)")
    print(
        f"  verdict: {'pass' if report['passed'] else 'fail'}; "
        f"extrapolated to 1,000,000 entries: {accept_s * 1_000_000 / total:.1f} s (goal < 30 s)"
    )


if __name__ == "__main__":
    main()
