"""Files replaced whole: a reader sees the old or the new, and a failure leaves no litter."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from node.files import replace_file, temporary_name


def test_a_file_is_replaced_and_its_temporary_name_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    path.write_bytes(b"old")
    replace_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.json"]


def test_a_failed_replacement_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stamp"
    path.mkdir()  # a directory cannot be replaced by a file: os.replace fails
    with pytest.raises(OSError):
        replace_file(path, b"new")
    assert path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["stamp"]


def test_every_thread_writes_under_a_temporary_name_of_its_own(tmp_path: Path) -> None:
    """A server's threads and a command beside it replace the same head.json: with one
    shared temporary name, one could rename another's half-written file into place."""
    path = tmp_path / "head.json"
    names: list[Path] = []
    thread = threading.Thread(target=lambda: names.append(temporary_name(path)))
    thread.start()
    thread.join()
    assert names[0] != temporary_name(path)
    assert temporary_name(path).parent == tmp_path


def test_replacements_from_many_threads_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    bodies = [f'{{"seq":{n}}}'.encode() * 200 for n in range(8)]
    failures: list[BaseException] = []

    def write(body: bytes) -> None:
        try:
            for _ in range(200):
                replace_file(path, body)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert path.read_bytes() in bodies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.json"]
