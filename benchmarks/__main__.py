"""``make bench``: every benchmark, one after another, figures only."""

from __future__ import annotations

from benchmarks import acceptance, ingest, local_log, validation


def main() -> None:
    validation.main([])
    print()
    local_log.main(["--records", "20000"])
    print()
    ingest.main([])
    print()
    acceptance.main(["--stations", "200", "--entries", "500"])


if __name__ == "__main__":
    main()
