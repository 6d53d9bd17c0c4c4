"""zcio.aio transfers against a hostile application, on asyncio and uvloop.

* A stalled target: the transfer waits for that descriptor only (no busy loop while
  its source has data): wake-ups and CPU are counted over a stall.
* An endpoint closed under a transfer and its number given to new sockets: no byte
  reaches them, the transfer ends promptly, the count is exact.
* A transport closed locally (``close()``/``abort()``) while sendfile/transfer_to
  waits for room, or a socket under send_zerocopy: the call ends promptly with the
  exact count.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import test_aio
from test_aio import SIZE, Run, drain_now, read_all, stalled
from zcio import (
    ClosedChannelError,
    FileChannel,
    OpenOption,
    PooledAllocator,
    TransferError,
    aio,
)
from zcio import _zerocopy as zerocopy
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


# -- 2. the target closed, its number reused ------------------------------------------------


def grab(fd: int) -> tuple[list[socket.socket], socket.socket]:
    """Open socket pairs until one end gets descriptor number ``fd``; (every socket
    opened, the peer of the one with that number)."""
    opened: list[socket.socket] = []
    for _ in range(20):
        a, b = socket.socketpair()
        opened += (a, b)
        for mine, peer in ((a, b), (b, a)):
            if mine.fileno() == fd:
                mine.setblocking(False)
                peer.setblocking(False)
                return opened, peer
    for s in opened:
        s.close()
    raise AssertionError(f"descriptor {fd} was not reused")


def check_closed_error(e: BaseException, progress: Progress) -> None:
    """The error for a locally closed endpoint: ClosedChannelError if nothing moved, else
    TransferError (EBADF) caused by one, with the exact count (as for a peer reset)."""
    if progress.transferred == 0:
        assert isinstance(e, ClosedChannelError)
    else:
        assert isinstance(e, TransferError) and e.errno == errno.EBADF
        assert isinstance(e.__cause__, ClosedChannelError)
        assert e.transferred == progress.transferred


@pytest.mark.parametrize("end", ["wait", "cancel"])
@pytest.mark.parametrize("path", RELAYS)
def test_relay_never_writes_to_a_socket_that_took_the_closed_targets_number(
        run: Run, pair: Pair, pair2: Pair, path: str, end: str) -> None:
    (s_in, s_out), (d_in, d_out) = pair, pair2
    small_buffers(s_in, s_out, d_in, d_out)
    p, sent = Progress(), bytearray()
    opened: list[socket.socket] = []

    async def main() -> socket.socket:
        task = await stalled_relay(s_in, s_out, d_in, path, p, sent)
        assert p.dropped == 0 and p.transferred > 0
        fd = d_in.fileno()
        d_in.close()  # the application closes the target...
        sockets, intruder = grab(fd)  # ...and the number goes to a new connection
        opened.extend(sockets)
        if end == "cancel":  # the held bytes must not be flushed into it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:  # noticed within a wake-up, not never
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(task, 5)
            check_closed_error(ei.value, p)
        await asyncio.sleep(0.2)
        return intruder

    try:
        intruder = run(main())
        assert drain_now(intruder) == b""
        for s in opened:
            s.setblocking(False)
            assert drain_now(s) == b""
        assert p.dropped > 0  # bytes held for the closed target: counted, not delivered
        check_relay_accounting(p, bytes(sent), d_out, s_in)
    finally:
        for s in opened:
            s.close()


@pytest.mark.parametrize("how", ["sendfile", "transfer_to"])
def test_file_transfer_to_a_closed_socket_ends_and_never_writes_its_successor(
        run: Run, pair: Pair, src_path: Path, data: bytes, how: str) -> None:
    a, b = pair
    small_buffers(a, b)
    p = Progress()
    opened: list[socket.socket] = []

    async def main() -> socket.socket:
        with FileChannel.open(src_path, OpenOption.READ) as ch:
            job = (aio.sendfile(a, ch, progress=p) if how == "sendfile"
                   else aio.transfer_to(ch, 0, SIZE, a, progress=p))
            task = asyncio.create_task(job)
            await stalled(p)
            fd = a.fileno()
            a.close()
            sockets, intruder = grab(fd)
            opened.extend(sockets)
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(task, 5)
            check_closed_error(ei.value, p)
            assert ch.position() == (p.transferred if how == "sendfile" else 0)
        await asyncio.sleep(0.2)
        return intruder

    try:
        intruder = run(main())
        assert drain_now(intruder) == b""
        assert drain_now(b) == data[:p.transferred]
    finally:
        for s in opened:
            s.close()


def test_sendfile_from_a_closed_file_sends_nothing_of_its_successor(
        run: Run, pair: Pair, src_path: Path, tmp_path: Path, data: bytes) -> None:
    a, b = pair
    small_buffers(a, b)
    p = Progress()
    other = tmp_path / "other"
    other.write_bytes(b"\xff" * SIZE)

    async def main() -> None:
        f = src_path.open("rb")
        task = asyncio.create_task(aio.sendfile(a, f, progress=p))
        await stalled(p)
        fd = f.fileno()
        f.close()
        with other.open("rb") as g:
            assert g.fileno() == fd
            reader = asyncio.create_task(read_all(b))  # room again: it would send now
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(task, 5)
            check_closed_error(ei.value, p)
            a.shutdown(socket.SHUT_WR)
            assert await reader == data[:p.transferred]
            assert g.tell() == 0  # its position untouched

    run(main())


# -- 3. a transport closed locally ----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A listening TCP socket whose connections have small receive buffers."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s
    s.close()


@pytest.mark.parametrize("closer", ["close", "abort"])
@pytest.mark.parametrize("how", ["sendfile", "transfer_to"])
def test_transport_closed_locally_ends_a_waiting_transfer(
        run: Run, server: socket.socket, src_path: Path, data: bytes, how: str,
        closer: str) -> None:
    p = Progress()
    opened: list[socket.socket] = []

    async def main() -> tuple[bytes, socket.socket]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol,
                                                    *server.getsockname())
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        fd = sock.fileno()
        peer, _ = server.accept()
        with peer, FileChannel.open(src_path, OpenOption.READ) as ch:
            peer.setblocking(False)
            job = (aio.sendfile(transport, ch, progress=p) if how == "sendfile"
                   else aio.transfer_to(ch, 0, SIZE, transport, progress=p))
            task = asyncio.create_task(job)
            await stalled(p)  # the peer reads nothing
            getattr(transport, closer)()
            for _ in range(100):  # the loop closes the socket at its next iteration
                await asyncio.sleep(0)
                if not os.path.exists(f"/proc/self/fd/{fd}"):
                    break
            sockets, intruder = grab(fd)  # its number goes to a new connection
            opened.extend(sockets)
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(task, 5)
            check_closed_error(ei.value, p)
            assert ch.position() == (p.transferred if how == "sendfile" else 0)
            return await read_all(peer), intruder

    try:
        got, intruder = run(main())
        assert drain_now(intruder) == b""
    finally:
        for s in opened:
            s.close()
    assert 0 < p.transferred < SIZE
    assert got == data[:p.transferred]


@pytest.mark.parametrize("how", ["sendfile", "transfer_to"])
def test_peer_reset_under_a_transport_is_still_the_kernels_error(
        run: Run, server: socket.socket, src_path: Path, how: str) -> None:
    """The transport closes itself on the reset; that is not a local close."""
    p = Progress()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol,
                                                    *server.getsockname())
        peer, _ = server.accept()
        with FileChannel.open(src_path, OpenOption.READ) as ch:
            job = (aio.sendfile(transport, ch, progress=p) if how == "sendfile"
                   else aio.transfer_to(ch, 0, SIZE, transport, progress=p))
            task = asyncio.create_task(job)
            await stalled(p)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # RST
            with pytest.raises(TransferError) as ei:
                await asyncio.wait_for(task, 5)
            assert ei.value.errno in (errno.ECONNRESET, errno.EPIPE)
            assert ei.value.transferred == p.transferred > 0
        transport.close()
        await asyncio.sleep(0)

    run(main())


@pytest.mark.skipif(not zerocopy.is_available(), reason=str(zerocopy.unavailability_cause()))
def test_send_zerocopy_ends_when_its_socket_is_closed(run: Run, server: socket.socket) -> None:
    buf = PooledAllocator.default().allocate(16 << 20)

    async def main() -> None:
        with socket.create_connection(server.getsockname()) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
            peer, _ = server.accept()
            client.setblocking(False)
            sender = aio.zerocopy_sender(client)
            task = asyncio.create_task(aio.send_zerocopy(client, buf))
            last = -1
            while buf.position() != last:  # until the socket is full (nobody reads)
                last = buf.position()
                await asyncio.sleep(0.1)
            client.close()
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(task, 5)
            assert isinstance(ei.value, TransferError) and ei.value.errno == errno.EBADF
            assert ei.value.transferred == buf.position() > 0
            sender.close()  # releases what it still holds
            peer.close()

    try:
        run(main())
    finally:
        buf.release()
