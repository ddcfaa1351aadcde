from __future__ import annotations

from pathlib import Path

import pytest

from node.settings import load_settings, write_config
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier


def test_precedence_arguments_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, {"id": "js.wx", "tier": "city", "parent_url": "http://p", "port": 8701})
    assert load_settings(tmp_path).port == 8701
    monkeypatch.setenv("GUANTONG_PORT", "8702")
    assert load_settings(tmp_path).port == 8702
    assert load_settings(tmp_path, port=8703).port == 8703
    monkeypatch.setenv("GUANTONG_HOME", str(tmp_path))
    settings = load_settings()
    assert (settings.node_id, settings.tier, settings.home) == ("js.wx", Tier.CITY, tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'node.db'}"


@pytest.mark.parametrize(
    ("node_id", "tier", "parent", "code"),
    [
        ("js.wx.s1", "station", None, ErrorCode.TIER_MISMATCH),
        ("js", "province", "http://p", ErrorCode.TIER_MISMATCH),
        ("js.wx", "province", None, ErrorCode.TIER_MISMATCH),
        ("js", "city", "http://p", ErrorCode.TIER_MISMATCH),
        ("js.wx.jy", "city", "http://p", ErrorCode.TIER_MISMATCH),
        ("js", "station", "http://p", ErrorCode.TIER_MISMATCH),
        ("JS", "province", None, ErrorCode.INVALID_NODE_ID),
        ("js", "emperor", None, ErrorCode.SETTINGS_INVALID),
    ],
)
def test_bad_layouts_are_refused(
    tmp_path: Path, node_id: str, tier: str, parent: str | None, code: ErrorCode
) -> None:
    with pytest.raises(GuantongError) as info:
        load_settings(tmp_path, id=node_id, tier=tier, parent_url=parent)
    assert info.value.code is code


def test_missing_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUANTONG_HOME", raising=False)
    with pytest.raises(GuantongError) as info:
        load_settings()
    assert info.value.code is ErrorCode.HOME_MISSING
    with pytest.raises(GuantongError) as info:
        load_settings(tmp_path / "nowhere")
    assert info.value.code is ErrorCode.HOME_MISSING


def test_broken_config_file(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text("id = [unclosed", "utf-8")
    with pytest.raises(GuantongError) as info:
        load_settings(tmp_path)
    assert info.value.code is ErrorCode.SETTINGS_INVALID
