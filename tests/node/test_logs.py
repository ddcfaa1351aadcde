"""Structured logs: JSON lines with the node id and tier on every line."""

from __future__ import annotations

import json

import pytest

from node.logs import configure_logging, get_logger


def test_json_lines_carry_node_and_tier(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(node_id="js.wx", tier="city", level="INFO")
    get_logger("test").info("push.received", origin="js.wx.jy.s1", entries=3)
    get_logger("test").debug("hidden")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert (line["node"], line["tier"], line["event"], line["entries"]) == (
        "js.wx",
        "city",
        "push.received",
        3,
    )
    assert line["level"] == "info" and line["timestamp"].endswith("Z")
