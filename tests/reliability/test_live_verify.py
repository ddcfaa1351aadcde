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


def _bundle(fed: Federation, station: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{station}.gtb"
    export_bundle(fed.nodes[station], out)
    return out
