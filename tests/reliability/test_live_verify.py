"""``guantong verify`` on a hub that keeps taking data while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import node.verify
from node.bundles import export_bundle, import_bundle
from node.log import Log
from node.verify import VerifyReport, check_store
from tests.federation.harness import Federation


def test_a_child_enrolled_and_imported_during_verify_is_not_a_bad_signature(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify read the known keys first and the heads after: a child enrolled (its key
    learnt) and whose data arrived in between had heads signed by a key verify did not
    know, and a sound store failed with ``bad_signature``."""
    county = fed.add("js.wx.jy")
    fed.add("js.wx.jy.s1")
    fed.write("js.wx.jy.s1", 3)
    import_bundle(county, _bundle(fed, "js.wx.jy.s1", tmp_path))
    read_keys = node.verify._known_keys
    arrived: list[str] = []

    def keys_then_a_new_child(log: Log) -> dict[str, tuple[str, bytes]]:
        keys = read_keys(log)
        if not arrived:  # meanwhile, another process enrolls a station and imports its data
            arrived.append(fed.add("js.wx.jy.s2").id)
            fed.write("js.wx.jy.s2", 3, seed=2)
            import_bundle(county, _bundle(fed, "js.wx.jy.s2", tmp_path))
        return keys

    monkeypatch.setattr(node.verify, "_known_keys", keys_then_a_new_child)
    report = VerifyReport()
    check = check_store(county.log, report=report)
    assert arrived
    assert check.problem is None, check.problem
    assert not check.quarantined


def test_entries_and_signed_heads_arriving_during_verify_are_not_damage(
    fed: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify checks each origin up to the head it had when the check began, and takes a
    signed head beyond the entries held for a lost tail: one that arrived, with its
    entries, after the heads were read is neither (it is checked next time)."""
    county = fed.add("js.wx.jy")
    fed.add("js.wx.jy.s1")
    fed.write("js.wx.jy.s1", 3)
    import_bundle(county, _bundle(fed, "js.wx.jy.s1", tmp_path))
    read_keys = node.verify._known_keys
    arrived: list[object] = []

    def keys_then_more_data(log: Log) -> dict[str, tuple[str, bytes]]:
        keys = read_keys(log)
        if not arrived:  # meanwhile, the station's next entries arrive
            fed.write("js.wx.jy.s1", 2, seed=1)
            arrived.append(import_bundle(county, _bundle(fed, "js.wx.jy.s1", tmp_path)))
        return keys

    monkeypatch.setattr(node.verify, "_known_keys", keys_then_more_data)
    report = VerifyReport()
    check = check_store(county.log, report=report)
    assert arrived and county.log.head("js.wx.jy.s1").seq == 5  # type: ignore[union-attr]
    assert check.problem is None, check.problem
    own = county.log.head().seq  # type: ignore[union-attr]
    assert report.entries == own + 3 and not check.quarantined  # S1's as they were at start


def _bundle(fed: Federation, station: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{station}.gtb"
    export_bundle(fed.nodes[station], out)
    return out
