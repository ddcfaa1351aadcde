"""The bell that wakes a hub's waiting long polls, and the stamp that carries the news
between processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import pytest

from node.bell import Bell, Stamp

pytestmark = pytest.mark.anyio

_GUARD_S = 20.0
"""Only against a hang: a wait that is woken returns in microseconds."""


async def test_a_ring_after_the_waiter_looked_ends_its_wait_at_once() -> None:
    """No lost wake-up: the waiter notes the generation before it looks; a ring between
    its look and its wait is not missed."""
    bell = Bell()
    seen = bell.generation
    bell.ring()  # after the look, before the wait
    with anyio.fail_after(_GUARD_S):
        assert await bell.wait(seen, timeout=3600)
    assert bell.waiting == 0


async def test_a_ring_from_another_thread_wakes_the_waiter() -> None:
    bell = Bell()
    seen = bell.generation

    def ring_when_waiting() -> None:
        while bell.waiting == 0:
            threading.Event().wait(0.001)
        bell.ring()

    ringer = threading.Thread(target=ring_when_waiting)
    ringer.start()
    with anyio.fail_after(_GUARD_S):
        assert await bell.wait(seen, timeout=3600)
    ringer.join()
    assert bell.waiting == 0 and bell.generation == seen + 1


async def test_a_wait_without_a_ring_times_out() -> None:
    bell = Bell()
    assert not await bell.wait(bell.generation, timeout=0.01)
    assert bell.waiting == 0


async def test_every_waiter_wakes_and_a_closed_bell_never_waits() -> None:
    bell = Bell()
    seen = bell.generation
    woken: list[bool] = []

    async def waiter() -> None:
        woken.append(await bell.wait(seen, timeout=3600))

    with anyio.fail_after(_GUARD_S):
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(waiter)
            while bell.waiting < 3:
                await anyio.sleep(0.001)
            bell.close()  # the server stops (close_all: every bell of the process)
    assert woken == [True, True, True]
    assert bell.closed
    with anyio.fail_after(_GUARD_S):
        assert await bell.wait(bell.generation, timeout=3600)  # closed: at once


def test_a_stamp_tells_of_the_other_processes_writes_only(tmp_path: Path) -> None:
    """Each process has its own Stamp on the same file: its own touches are no news to
    it, another's are, once; replacements within one tick of the clock are told apart
    (the inode changes)."""
    path = tmp_path / "tasks.stamp"
    here, there = Stamp(path), Stamp(path)
    assert not here.changed()  # no file yet, none before
    here.touch()
    assert not here.changed() and path.is_file()
    for _ in range(3):  # quicker than the clock's tick
        there.touch()
        assert here.changed()
        assert not here.changed()
    assert not there.changed()
    path.unlink()
    assert here.changed()  # gone is a change too (a home restored, say)
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left


def test_a_stamp_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    stamp = Stamp(tmp_path / "gone" / "tasks.stamp")  # its directory does not exist
    stamp.touch()
    assert not stamp.changed()


def test_a_stamp_sees_a_write_that_left_inode_time_and_size_alike(tmp_path: Path) -> None:
    """Two replacements between two looks, within one tick of the file system's clock, can
    leave the file on the inode the first freed, with the same time and size: what was
    written still tells them apart."""
    path = tmp_path / "tasks.stamp"
    here, there = Stamp(path), Stamp(path)
    here.touch()
    assert there.changed()
    before = os.stat(path)
    with open(path, "r+b") as file:  # the same inode and size, other bytes...
        file.write(bytes(b ^ 1 for b in path.read_bytes()))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the same time
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert there.changed()
    assert not there.changed()
