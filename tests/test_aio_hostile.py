"""zcio.aio transfers against a hostile application, on asyncio and uvloop.

* A stalled target: the transfer waits for that descriptor only (no busy loop while
  its source has data): wake-ups and CPU are counted over a stall.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time
from typing import Any

import pytest

import test_aio
from test_aio import Run, drain_now, stalled
from zcio import aio
from zcio.aio import Progress

# test_aio's fixtures: ``run`` runs a coroutine on each loop (asyncio, uvloop) and checks
# that nothing stays registered; the rest are its sockets and data.
run, pair, pair2, data, src_path = (test_aio.run, test_aio.pair, test_aio.pair2, test_aio.data,
                                    test_aio.src_path)
Pair = tuple[socket.socket, socket.socket]
RELAYS = ["splice", "read_write"]  # socket -> socket, through a pipe or a buffer


def small_buffers(*socks: socket.socket) -> None:
    """64 KiB socket buffers: transfers stall after little data."""
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)


def fill(sock: socket.socket, sent: bytearray) -> None:
    """Send into a non-blocking socket until it is full; append what went to ``sent``."""
    chunk = os.urandom(64 << 10)
    while True:
        try:
            n = sock.send(chunk)
        except BlockingIOError:
            return
        sent += chunk[:n]


def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


async def stalled_relay(s_in: socket.socket, s_out: socket.socket, d_in: socket.socket,
                        path: str, progress: Progress, sent: bytearray
                        ) -> asyncio.Task[int]:
    """A relay from ``s_in`` to ``d_in`` that first waited for its source, then filled
    its target; returned once it is stalled with more data waiting in its source."""
    task = asyncio.create_task(aio.splice(s_in, d_in, path=path, progress=progress))
    await asyncio.sleep(0.05)  # nothing to read yet: it waits for the source
    for _ in range(20):
        fill(s_out, sent)
        await stalled(progress)
        await asyncio.sleep(0.05)
        if readable(s_in):  # untouched: the relay holds bytes the full target refuses
            assert not task.done()
            return task
    raise AssertionError(f"the relay never stalled on its target: {progress}")


def check_relay_accounting(progress: Progress, sent: bytes, d_out: socket.socket,
                           s_in: socket.socket) -> None:
    """What reached the target is the count; what the relay never took is still in the
    source, after the ``dropped`` bytes."""
    delivered = drain_now(d_out)
    assert len(delivered) == progress.transferred
    assert delivered == sent[:progress.transferred]
    skipped = progress.transferred + progress.dropped
    rest = drain_now(s_in)
    assert rest == sent[skipped:skipped + len(rest)]


# -- 1. a stalled target: no busy loop ------------------------------------------------------


@pytest.mark.parametrize("path", RELAYS)
def test_stalled_relay_waits_for_its_target_only(run: Run, pair: Pair, pair2: Pair,
                                                   path: str) -> None:
    (s_in, s_out), (d_in, d_out) = pair, pair2
    small_buffers(s_in, s_out, d_in, d_out)
    p, sent = Progress(), bytearray()

    async def main() -> tuple[int, float]:
        loop: Any = asyncio.get_running_loop()
        task = await stalled_relay(s_in, s_out, d_in, path, p, sent)
        moved = p.transferred
        registrations, cpu = loop.registrations, time.process_time()
        await asyncio.sleep(0.5)
        wakeups = loop.registrations - registrations
        cpu = time.process_time() - cpu
        assert p.transferred == moved  # really stalled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return wakeups, cpu

    wakeups, cpu = run(main())
    assert wakeups < 50, f"{wakeups} wake-ups in 0.5 s of a stalled target"
    assert cpu < 0.1, f"{cpu:.3f} s of CPU in 0.5 s of a stalled target"
    check_relay_accounting(p, bytes(sent), d_out, s_in)
