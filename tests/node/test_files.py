"""Files replaced whole: a reader sees the old or the new, and a failure leaves no litter."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.files import replace_file


def test_a_file_is_replaced_and_its_temporary_name_is_gone(tmp_path: Path) -> None:
    path, tmp = tmp_path / "head.json", tmp_path / "head.tmp"
    path.write_bytes(b"old")
    replace_file(path, b"new", tmp)
    assert path.read_bytes() == b"new" and not tmp.exists()


def test_a_failed_replacement_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path,
) -> None:
    path, tmp = tmp_path / "stamp", tmp_path / "stamp.tmp"
    path.mkdir()  # a directory cannot be replaced by a file: os.replace fails
    with pytest.raises(OSError):
        replace_file(path, b"new", tmp)
    assert path.is_dir() and not tmp.exists()
