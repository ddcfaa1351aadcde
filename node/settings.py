"""Node settings: built, never imported (STYLE §8).

A node lives in a home folder (``--home`` or ``GUANTONG_HOME``)::

    <home>/node.toml        what ``guantong init`` decided (id, tier, parent, database)
    <home>/keys/node.key    the Ed25519 private key, PKCS#8 PEM, mode 0600
    <home>/node.db          the SQLite store (unless ``db_url`` points elsewhere)

Precedence: explicit arguments > ``GUANTONG_*`` environment > ``node.toml`` > defaults, so
one test process can build a province, a city and a station side by side.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from node.files import write_private
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_node_id, check_tier_depth

__all__ = [
    "CONFIG_FILE",
    "NodeSettings",
    "check_tier_layout",
    "load_settings",
    "update_config",
    "write_config",
]

CONFIG_FILE = "node.toml"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``<home>/node.toml`` for the home given explicitly or by environment."""

    def __init__(self, settings_cls: type[BaseSettings], home: Path | None) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        if home is not None and (home / CONFIG_FILE).is_file():
            try:
                self._values = tomllib.loads((home / CONFIG_FILE).read_text("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise GuantongError(
                    ErrorCode.SETTINGS_INVALID, f"{home / CONFIG_FILE}: {exc}"
                ) from exc

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANTONG_", extra="forbid", frozen=True)

    home: Path
    id: str
    """The node id. (Named ``id`` so that its environment variable is ``GUANTONG_ID``.)"""
    tier: Tier
    parent_url: str | None = None
    db_url: str | None = None
    root_key_id: str | None = None
    province_secret: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_node_id(value)

    @model_validator(mode="after")
    def _layout(self) -> NodeSettings:
        check_tier_layout(self.id, self.tier, self.parent_url)
        return self

    @property
    def node_id(self) -> str:
        return self.id

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.home / 'node.db'}"

    @property
    def key_path(self) -> Path:
        return self.home / "keys" / "node.key"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = init_settings().get("home") or os.environ.get("GUANTONG_HOME")
        return (init_settings, env_settings, _TomlSource(settings_cls, _as_path(home)))


def _as_path(value: Any) -> Path | None:
    return Path(value) if value else None


def check_tier_layout(node_id: str, tier: Tier, parent_url: str | None) -> None:
    """The id's depth and the parent must fit the tier (PROTOCOL §1)."""
    check_tier_depth(node_id, tier)
    if tier is Tier.PROVINCE and parent_url:
        raise GuantongError(ErrorCode.TIER_MISMATCH, "the province is the root: it has no parent")
    if tier is not Tier.PROVINCE and not parent_url:
        raise GuantongError(
            ErrorCode.TIER_MISMATCH, f"a {tier} node needs --parent URL (its hub's address)"
        )


def load_settings(home: Path | None = None, **overrides: Any) -> NodeSettings:
    """Settings of the node at ``home`` (or ``GUANTONG_HOME``); clear errors, stable codes."""
    if home is None:
        env_home = os.environ.get("GUANTONG_HOME")
        if not env_home:
            raise GuantongError(
                ErrorCode.HOME_MISSING, "no node home: pass --home or set GUANTONG_HOME"
            )
        home = Path(env_home)
    if not (home / CONFIG_FILE).is_file() and "id" not in overrides:
        raise GuantongError(
            ErrorCode.HOME_MISSING,
            f"{home} is not a node home (no {CONFIG_FILE}); run guantong init",
        )
    try:
        return NodeSettings(home=home, **overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        inner = err.get("ctx", {}).get("error")
        if isinstance(inner, GuantongError):
            raise inner from exc
        where = ".".join(str(p) for p in err["loc"])
        raise GuantongError(ErrorCode.SETTINGS_INVALID, f"setting {where}: {err['msg']}") from exc


def write_config(home: Path, values: dict[str, str | int | bool]) -> None:
    """Write ``node.toml`` (flat string/integer/boolean keys only)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    path = home / CONFIG_FILE
    # It may hold the province secret: readable by the node's user only.
    write_private(path, ("\n".join(lines) + "\n").encode("utf-8"))


def update_config(home: Path, values: dict[str, str | int | bool]) -> None:
    """Merge ``values`` into ``node.toml`` (enrollment adds the anchor and the secret)."""
    path = home / CONFIG_FILE
    current = tomllib.loads(path.read_text("utf-8")) if path.is_file() else {}
    write_config(home, {**current, **values})


def _toml_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
