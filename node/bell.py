"""A bell: coroutines wait for something that another thread of this process does.

A hub answers a child's long poll of its task feed (``GET /v1/tasks?wait=``) as soon as it
has something new for it. The tasks it stores are stored in worker threads (a pull from
its own parent, an issue from the dashboard, the deadline job's reminders), and the
waiting requests are coroutines on the event loop: the writer rings the node's bell after
its commit (``node.db.after_commit``) and every waiting request runs its query again.

Design, against the ways such a bell goes wrong:

- **No lost wake-up.** A waiter notes the bell's generation *before* it queries, and
  waits only while the generation is still that one: a ring between its query and its
  wait ends the wait at once, not at its timeout.
- **Thread-safe, loop-safe.** Ringing from any thread hands each waiter's event to its
  own loop (``call_soon_threadsafe``); a waiter whose loop has gone is skipped.
- **Another process.** A bell only hears its own process. Every writer, in whatever
  process, also replaces a stamp file in the node's home after its commit
  (:class:`Stamp`), and the server ``stat``s it every few seconds on its event loop and
  rings when another process replaced it (the command line on the same home, another
  worker of ``serve --workers``): one ``stat`` for the whole process however many
  requests wait, no query and no thread (a query of the feed's newest number every 5 s
  cost a hub more than the pulls the long poll saved).
- **Shutdown.** A server that stops closes every bell of its process
  (:func:`close_all`): waiting requests answer at once, as with nothing new, instead of
  holding the server's graceful shutdown for their whole wait.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from pathlib import Path

from node.files import replace_file

__all__ = ["Bell", "Stamp", "close_all"]

_OPEN: weakref.WeakSet[Bell] = weakref.WeakSet()
_OPEN_LOCK = threading.Lock()


class Bell:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        with _OPEN_LOCK:
            _OPEN.add(self)

    @property
    def generation(self) -> int:
        """Rings so far: note it before looking, and wait while it has not moved."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def ring(self) -> None:
        """Wake every waiter; from any thread."""
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: nobody is waiting there any more
                continue

    def close(self) -> None:
        """Wake every waiter, and make every later wait return at once."""
        self._closed = True
        self.ring()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Until the bell rings past generation ``seen`` (True) or ``timeout`` seconds
        pass (False); at once if it already has, or is closed."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            if self._generation != seen or self._closed:
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self._generation != seen


def close_all() -> None:
    """Close every bell of this process: the server is stopping."""
    with _OPEN_LOCK:
        bells = list(_OPEN)
    for bell in bells:
        bell.close()


class Stamp:
    """A file replaced after every commit of interest, so that other processes learn of
    it by looking at the file (:func:`_stat`: its inode, time, size and few bytes): no
    query, no thread. Best effort: a stamp that cannot be
    written (a full or read-only disk) only delays what waits for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = _stat(path)

    def touch(self) -> None:
        """Replace the file (after this process's own commit): seen here, news elsewhere."""
        try:
            replace_file(self.path, str(time.time_ns()).encode())
        except OSError:
            return
        self._seen = _stat(self.path)

    def changed(self) -> bool:
        """Whether the file was replaced since this object last looked or touched it (by
        another process, or, for a file this one writes by other means, by anyone)."""
        now = _stat(self.path)
        if now == self._seen:
            return False
        self._seen = now
        return True


def _stat(path: Path) -> tuple[int, int, int, bytes] | None:
    """What changes when ``path`` is written again; None while it does not exist.

    Its inode changes with each replacement, but not always from one look to the next:
    two replacements between two looks, within one tick of the file system's clock (a few
    milliseconds), can leave the second file on the inode the first one freed, with the
    same time and size. So its content counts too: every writer writes something new
    (the stamp a time in nanoseconds, the watermark the head it covers)."""
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            content = file.read(4096)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size, content
