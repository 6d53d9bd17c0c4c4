"""MSG_ZEROCOPY: buffers retained until the kernel's completion, the COPIED flag in the
metrics, the error paths (unavailable, ENOBUFS, foreign error-queue messages), and the
awaitable form on asyncio and uvloop.

On loopback the kernel always copies (the receiving socket must own its pages), so
these tests check that the flag is surfaced, never that a send was zero-copy.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import zcio
from faults import OK, Faults, short
from test_aio import LOOPS, Run, loop_factory
from zcio import PooledAllocator, _syscalls, aio
from zcio._zerocopy import (
    MSG_ERRQUEUE,
    SO_EE_CODE_ZEROCOPY_COPIED,
    ZeroCopySender,
    is_available,
    unavailability_cause,
)

pytestmark = pytest.mark.skipif(not is_available(), reason=str(unavailability_cause()))

_EE = struct.Struct("=IBBBBII")


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair over loopback: (sender side, receiver side)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    yield client, peer
    client.close()
    peer.close()


@pytest.fixture(params=LOOPS, name="run")
def _run(request: pytest.FixtureRequest) -> Run:
    """As in test_aio: a fresh loop of each kind, nothing left registered with it."""
    factory = loop_factory(request.param)

    def run(coro: Any) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            loop: Any = runner.get_loop()
            try:
                return runner.run(asyncio.wait_for(coro, 30))
            finally:
                assert not loop.watched, f"left registered: {loop.watched}"

    return run


class Reader:
    """A thread reading a blocking socket until ``want`` bytes (or end of stream)."""

    def __init__(self, sock: socket.socket, want: int) -> None:
        self.sock, self.want, self.got = sock, want, bytearray()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while len(self.got) < self.want:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            self.got += chunk

    def join(self) -> bytes:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return bytes(self.got)


def filled(n: int, alloc: PooledAllocator | None = None) -> tuple[zcio.ByteBuffer, bytes]:
    data = os.urandom(n)
    buf = (alloc or PooledAllocator.default()).allocate(n)
    buf.put(data).flip()
    return buf, data


def notification(first: int, last: int, copied: bool = False, origin: int = 5,
                 err: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, None]:
    """What recvmsg(MSG_ERRQUEUE) returns for one crafted error-queue message."""
    code = SO_EE_CODE_ZEROCOPY_COPIED if copied else 0
    ee = _EE.pack(err, origin, 0, code, 0, first, last) + bytes(16)
    return b"", [(socket.IPPROTO_IP, 11, ee)], MSG_ERRQUEUE, None


# -- retention and completion ----------------------------------------------------------------


def test_send_retains_until_completion_then_releases(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(200_000)
    reader = Reader(peer, len(data))
    with zcio.measure() as m, ZeroCopySender(client) as zc:
        assert zc.send(buf) == len(data)
        assert buf.position() == len(data)
        assert buf.ref_cnt() == 1 + zc.sends  # one reference per sendmsg in flight
        assert zc.in_flight() == zc.sends >= 1
        assert zc.in_flight_bytes() == len(data)
        assert zc.wait(10)
        assert buf.ref_cnt() == 1 and zc.in_flight() == 0
        assert zc.completed == zc.sends
    assert reader.join() == data
    stats = m.paths["msg_zerocopy"]
    assert stats.operations == 1
    assert stats.kernel_bytes + stats.user_bytes == len(data)
    buf.release()


def test_copied_flag_is_surfaced_in_the_metrics_on_loopback(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(64 << 10)
    reader = Reader(peer, len(data))
    with zcio.measure() as m, ZeroCopySender(client) as zc:
        zc.send(buf)
        zc.wait(10)
        assert zc.copied == zc.completed == zc.sends  # loopback always copies
    reader.join()
    assert m.paths["msg_zerocopy"].user_bytes == len(data)
    assert m.paths["msg_zerocopy"].kernel_bytes == 0
    copied = m.paths["msg_zerocopy_copied"]
    assert copied.operations == zc.sends and copied.user_bytes == len(data)
    buf.release()


def test_caller_may_release_at_once_the_memory_waits_for_the_kernel(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    alloc = PooledAllocator(name="zc")
    buf, data = filled(100_000, alloc)
    reader = Reader(peer, len(data))
    zc = ZeroCopySender(client)
    with _syscalls.override(Faults({"recvmsg": [errno.EAGAIN] * 50})):
        zc.send(buf)
        buf.release()  # our reference: the sender's keeps the slot out of the pool
        assert buf.ref_cnt() == zc.sends and alloc.pool_infos()[0].count == 1
        zc.poll_completions()  # the fault hides the completion
        assert not buf.is_released()
    assert zc.wait(10)
    assert buf.is_released() and alloc.pool_infos()[0].count == 0
    zc.close()
    assert reader.join() == data
    alloc.trim()


def test_several_sends_of_one_buffer_each_hold_a_reference(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(30_000)
    reader = Reader(peer, len(data))
    layer = Faults({"recvmsg": [errno.EAGAIN]})
    with ZeroCopySender(client) as zc:
        for end in (10_000, 20_000, 30_000):  # three sendmsg calls, three ids
            buf.limit(end)
            with _syscalls.override(layer):
                zc.send(buf)
        assert zc.sends == 3 and buf.ref_cnt() == 4
    assert buf.ref_cnt() == 1  # leaving the block waited for every completion
    assert reader.join() == data
    buf.release()


def test_nonblocking_full_socket_sends_what_fits(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    client.setblocking(False)
    buf, _ = filled(8 << 20)
    with ZeroCopySender(client) as zc:
        with _syscalls.override(Faults({"sendmsg": [errno.EAGAIN]})):
            assert zc.send(buf) == 0  # EAGAIN first: nothing sent, nothing retained
        assert buf.ref_cnt() == 1 and zc.sends == 0
        n = zc.send(buf)  # nobody reads: the socket fills up
        assert 0 < n < buf.capacity() and buf.position() == n
        reader = Reader(peer, n)
        assert zc.wait(10)
    assert len(reader.join()) == n
    buf.release()


# -- error paths ---------------------------------------------------------------------------


def test_unavailable_on_a_unix_socket() -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(OSError) as ei:
            ZeroCopySender(a)
        assert ei.value.errno == errno.ENOPROTOOPT
        assert "SO_ZEROCOPY" in str(ei.value)
        assert isinstance(ei.value.__cause__, OSError)
        assert ei.value.__cause__.errno == errno.EOPNOTSUPP
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kernel_errno", [errno.ENOPROTOOPT, 524])  # 524: old ENOTSUPP
def test_unavailable_on_an_old_kernel(monkeypatch: pytest.MonkeyPatch,
                                      tcp: tuple[socket.socket, socket.socket],
                                      kernel_errno: int) -> None:
    real = socket.socket.setsockopt

    def setsockopt(self: socket.socket, level: int, name: int, *value: Any) -> None:
        if (level, name) == (socket.SOL_SOCKET, 60):
            raise OSError(kernel_errno, os.strerror(kernel_errno))
        real(self, level, name, *value)

    monkeypatch.setattr(socket.socket, "setsockopt", setsockopt)
    with pytest.raises(OSError) as ei:
        ZeroCopySender(tcp[0])
    assert ei.value.errno == errno.ENOPROTOOPT
    assert ei.value.__cause__ is not None
    assert ei.value.__cause__.errno == kernel_errno  # type: ignore[attr-defined]


def test_unavailability_cause_probe() -> None:
    assert is_available() and unavailability_cause() is None


def test_enobufs_in_blocking_mode_waits_for_completions_then_goes_on(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(300_000)
    reader = Reader(peer, len(data))
    with ZeroCopySender(client) as zc:
        layer = Faults({"sendmsg": [short(100_000), errno.ENOBUFS, OK]})
        with _syscalls.override(layer):
            assert zc.send(buf) == len(data)
        assert [c[0] for c in layer.calls].count("sendmsg") == 3
        assert "recvmsg" in [c[0] for c in layer.calls]  # it read completions between
    assert reader.join() == data
    buf.release()


def test_enobufs_with_nothing_in_flight_raises(tcp: tuple[socket.socket, socket.socket]
                                               ) -> None:
    buf, _ = filled(4096)
    with ZeroCopySender(tcp[0]) as zc, _syscalls.override(Faults({"sendmsg": [errno.ENOBUFS]})):
        with pytest.raises(OSError) as ei:
            zc.send(buf)
        assert ei.value.errno == errno.ENOBUFS and "optmem_max" in str(ei.value)
        assert buf.position() == 0 and buf.ref_cnt() == 1
    buf.release()


def test_error_after_some_bytes_is_a_transfer_error(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(50_000)
    reader = Reader(peer, 20_000)
    with ZeroCopySender(client) as zc:
        with _syscalls.override(Faults({"sendmsg": [short(20_000), errno.ECONNRESET]})), \
                pytest.raises(zcio.TransferError) as ei:
            zc.send(buf)
        assert ei.value.transferred == 20_000 and buf.position() == 20_000
    assert reader.join() == data[:20_000]
    buf.release()


def test_foreign_error_queue_message_raises(tcp: tuple[socket.socket, socket.socket]) -> None:
    msg = notification(0, 0, origin=1, err=errno.EMSGSIZE)  # SO_EE_ORIGIN_LOCAL
    with ZeroCopySender(tcp[0]) as zc, \
            _syscalls.override(Faults({"recvmsg": [lambda real, *a: msg]})):
        with pytest.raises(OSError) as ei:
            zc.poll_completions()
        assert ei.value.errno == errno.EMSGSIZE


def test_completion_ranges_wrap_at_32_bits(tcp: tuple[socket.socket, socket.socket]) -> None:
    """Ids are 32-bit in the kernel: a range may wrap.  Sends are faked (the kernel is not
    asked), completions crafted."""
    bufs = [filled(4096)[0] for _ in range(5)]
    zc = ZeroCopySender(tcp[0])
    zc._next = (1 << 32) - 3  # the next ids: 2**32-3, -2, -1, 2**32 (0), 2**32+1 (1)
    fake = Faults({"sendmsg": [lambda real, sock, views, flags: len(views[0])] * 5})
    with _syscalls.override(fake):
        for b in bufs:
            zc.send(b)
    script = [lambda real, *a: notification(0xFFFFFFFE, 0, copied=True),  # wraps
              lambda real, *a: notification(0xFFFFFFFD, 0xFFFFFFFD),
              errno.EAGAIN]
    with zcio.measure() as m, _syscalls.override(Faults({"recvmsg": script})):
        assert zc.poll_completions() == 4
    assert [b.ref_cnt() for b in bufs] == [1, 1, 1, 1, 2]
    assert zc.copied == 3 and zc.completed == 4
    assert m.paths["msg_zerocopy_copied"].operations == 3
    assert m.paths["msg_zerocopy"].kernel_bytes == 4096
    zc.close()  # releases the one still "in flight"
    assert [b.ref_cnt() for b in bufs] == [1] * 5
    for b in bufs:
        b.release()


def test_wait_times_out_and_close_releases_what_is_left(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    buf, data = filled(10_000)
    reader = Reader(peer, len(data))
    zc = ZeroCopySender(client)
    with _syscalls.override(Faults({"recvmsg": [errno.EAGAIN] * 1000})):
        zc.send(buf)
        assert not zc.wait(0.2)
        assert buf.ref_cnt() == 2
        zc.close()
    assert buf.ref_cnt() == 1
    zc.close()  # idempotent
    with pytest.raises(zcio.ClosedChannelError):
        zc.send(buf)
    assert reader.join() == data
    buf.release()


# -- asyncio ----------------------------------------------------------------------------------


def test_send_zerocopy_returns_after_completion(
        run: Run, tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    client.setblocking(False)
    buf, data = filled(4 << 20)  # more than the socket takes at once: EAGAIN, then resume
    reader = Reader(peer, len(data))

    async def main() -> None:
        assert await aio.send_zerocopy(client, buf) == len(data)
        assert buf.ref_cnt() == 1  # every completion read: only our reference is left
        zc = aio.zerocopy_sender(client)
        assert zc.in_flight() == 0 and zc.completed == zc.sends >= 1
        assert zc.copied == zc.completed  # loopback

    with zcio.measure() as m:
        run(main())
    assert reader.join() == data
    assert m.paths["msg_zerocopy"].operations == 1
    assert m.paths["msg_zerocopy_copied"].user_bytes == len(data)
    buf.release()


def test_send_zerocopy_cancelled_keeps_the_buffer_until_completion(
        run: Run, tcp: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp
    client.setblocking(False)
    buf, data = filled(50_000)
    reader = Reader(peer, len(data))

    async def main() -> None:
        with _syscalls.override(Faults({"recvmsg": [errno.EAGAIN] * 1000})):
            task = asyncio.create_task(aio.send_zerocopy(client, buf))
            await asyncio.sleep(0.2)  # sent; the completion is hidden
            assert not task.done() and buf.ref_cnt() > 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert buf.ref_cnt() > 1 and buf.position() == len(data)

    run(main())
    assert aio.zerocopy_sender(client).wait(10)
    assert buf.ref_cnt() == 1
    assert reader.join() == data
    buf.release()


def test_send_zerocopy_needs_a_nonblocking_socket(
        run: Run, tcp: tuple[socket.socket, socket.socket]) -> None:
    buf, _ = filled(4096)

    async def main() -> None:
        with pytest.raises(zcio.IllegalBlockingModeError):
            await aio.send_zerocopy(tcp[0], buf)

    run(main())
    buf.release()


def test_sender_for_a_socket_goes_with_the_socket(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    """The registry holds sockets weakly; a collected socket's sender releases its buffers."""
    client, peer = tcp
    sock = client.dup()
    buf, _ = filled(4096)
    zc = aio.zerocopy_sender(sock)
    assert aio.zerocopy_sender(sock) is zc
    with _syscalls.override(Faults({"recvmsg": [errno.EAGAIN] * 10})):
        zc.send(buf)
        assert buf.ref_cnt() == 2
    sock.close()
    del sock
    gc.collect()
    assert buf.ref_cnt() == 1  # released when the socket went
    buf.release()
    peer.recv(8192)
