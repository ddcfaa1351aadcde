from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.keys import create_key, load_key
from schemas.errors import ErrorCode, GuantongError


def test_key_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    signer = create_key(path, seed=bytes(range(32)))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert load_key(path).key_id == signer.key_id == "56475aa75463474c"


def test_never_overwrites_a_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    create_key(path)
    with pytest.raises(FileExistsError):
        create_key(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_readable_key(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    create_key(path)
    os.chmod(path, mode)
    with pytest.raises(GuantongError) as info:
        load_key(path)
    assert info.value.code is ErrorCode.KEY_PERMISSIONS
    assert "chmod 600" in info.value.message


def test_refuses_corrupt_or_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(GuantongError) as info:
        load_key(path)
    assert info.value.code is ErrorCode.KEY_CORRUPT
    with pytest.raises(GuantongError) as info:
        load_key(tmp_path / "absent.key")
    assert info.value.code is ErrorCode.KEY_CORRUPT
