"""Contract validation throughput: validations/s per contract on one core.

Run: ``python -m benchmarks.validation [--records N]``. Each contract validates the same
``N`` generated records several times; the best round is reported (the machine is shared).
"""

from __future__ import annotations

import argparse
import time

from contracts.registry import Registry
from contracts.samples import sample_records


def run(records: int, rounds: int = 3) -> dict[str, float]:
    registry = Registry.default()
    figures: dict[str, float] = {}
    for name in registry.names():
        cv = registry.current(name)
        data = [
            {k: v for k, v in r.items() if k != "id"} for r in sample_records(name, records, seed=3)
        ]
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for record in data:
                if not cv.is_valid(record):
                    raise AssertionError(
                        f"{name}: sample record is invalid: {cv.violations(record)}"
                    )
            best = min(best, time.perf_counter() - started)
        figures[f"{name} {cv.version}"] = records / best
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args(argv)
    figures = run(args.records)
    print(
        f"contract validation (jsonschema-rs, formats on, {args.records} sample records, one core):"
    )
    for name, per_s in figures.items():
        print(f"  {name:<24} {per_s:>12,.0f} validations/s")
    print("  goal: opinion ≥ 500,000/s")


if __name__ == "__main__":
    main()
