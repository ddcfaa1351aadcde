"""`guantong demo --exit`: the whole scenario with real processes, exit 0 only if it worked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_every_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANTONG_")}
    result = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--exit", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "every step worked" in out
    assert "identical at the province" in out
    assert (tmp_path / "demo" / "js" / "node.db").is_file()
