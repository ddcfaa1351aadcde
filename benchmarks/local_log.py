"""Local log throughput: entries/s through ``put`` (per-batch signing) and ``verify``.

Run: ``python -m benchmarks.local_log [--records N] [--batch B] [--db URL]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from contracts.samples import sample_records
from node.runtime import Node
from node.settings import NodeSettings
from node.verify import VerifyReport, verify_log


def run(records: int, batch: int, db_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # A province node: it owns the secret that `hash` privacy fields need.
        settings = NodeSettings(home=Path(tmp) / "bench", id="js", tier="province", db_url=db_url)
        node = Node.init(settings)
        try:
            data = list(sample_records("opinion", records, seed=7))
            started = time.perf_counter()
            for i in range(0, len(data), batch):
                node.put("opinion", [(None, r) for r in data[i : i + batch]])
            put_s = time.perf_counter() - started
            report = VerifyReport()
            started = time.perf_counter()
            problems = list(verify_log(node.log, report=report))
            verify_s = time.perf_counter() - started
            assert not problems, problems
            assert report.entries == records
        finally:
            node.close()
    return {
        "put_per_s": records / put_s,
        "verify_per_s": records / verify_s,
        "put_s": put_s,
        "verify_s": verify_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--db", default=None)
    args = parser.parse_args(argv)
    figures = run(args.records, args.batch, args.db)
    backend = "postgresql" if args.db else "sqlite"
    print(f"local log ({backend}, {args.records} opinion records, batches of {args.batch}, ")
    print(
        "  validation + privacy projection + canonical bytes + hash chain"
        " + one signature per batch):"
    )
    print(f"  put     {figures['put_per_s']:>10,.0f} entries/s  ({figures['put_s']:.2f} s)")
    print(f"  verify  {figures['verify_per_s']:>10,.0f} entries/s  ({figures['verify_s']:.2f} s)")
    print(f"  ratio verify/put: {figures['verify_per_s'] / figures['put_per_s']:.2f}")


if __name__ == "__main__":
    main()
