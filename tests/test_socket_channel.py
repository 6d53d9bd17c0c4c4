"""SocketChannel and ServerSocketChannel over loopback, checked against plain sockets.

The other end of every connection is a plain ``socket.socket`` where that makes the
check independent of zcio.  Faults are injected by replacing ``zcio._syscalls.SYS``;
the receiving side checks that no byte is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from zcio import ByteBuffer, IllegalArgumentError, IllegalStateError, ZcioError, _syscalls
from zcio._errors import ClosedChannelError, NotYetConnectedError
from zcio._metrics import PathStats, metrics
from zcio._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE
from zcio._socket_channel import ServerSocketChannel, SocketChannel

LOOPBACK = ("127.0.0.1", 0)
IOV_MAX = _syscalls.IOV_MAX
TIMEOUT = 10.0


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain listening socket on loopback."""
    with socket.create_server(LOOPBACK) as s:
        s.settimeout(TIMEOUT)
        yield s


@contextmanager
def pair(listener: socket.socket) -> Iterator[tuple[SocketChannel, socket.socket]]:
    """A connected SocketChannel and the plain socket at the other end."""
    with SocketChannel.open(listener.getsockname()) as ch:
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(TIMEOUT)
            yield ch, peer


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic, non-repeating-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(n - len(out), 1 << 20))
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


def wrap_all(chunks: Sequence[bytes]) -> list[ByteBuffer]:
    return [ByteBuffer.wrap(bytearray(c)) for c in chunks]


def address_of(server: ServerSocketChannel) -> tuple[str, int]:
    addr = server.local_address()
    assert addr is not None
    return addr  # type: ignore[no-any-return]


def delta(path: str, before: PathStats) -> PathStats:
    return metrics.path(path) - before


def _cap(views: Sequence[memoryview], n: int) -> list[memoryview]:
    out = []
    for v in views:
        if n <= 0:
            break
        out.append(v[:n])
        n -= len(out[-1])
    return out


class Scripted(_syscalls.Syscalls):
    """A kernel layer whose socket calls follow a script.

    Per method, a list of what its next calls do: None makes the real call, an int the
    real call on at most that many bytes, an exception instance raises it instead.  Once
    a method's list is used up, calls are real.
    """

    def __init__(self, **plan: list[Any]) -> None:
        self.plan = {name: list(actions) for name, actions in plan.items()}
        self.calls: Counter[str] = Counter()

    def _next(self, name: str) -> int | None:
        self.calls[name] += 1
        actions = self.plan.get(name)
        action = actions.pop(0) if actions else None
        if isinstance(action, BaseException):
            raise action
        return action

    def send(self, sock: socket.socket, buf: memoryview, flags: int = 0) -> int:
        cap = self._next("send")
        return super().send(sock, buf if cap is None else buf[:cap], flags)

    def sendmsg(self, sock: socket.socket, bufs: Sequence[memoryview], flags: int = 0) -> int:
        cap = self._next("sendmsg")
        return super().sendmsg(sock, bufs if cap is None else _cap(bufs, cap), flags)

    def recv_into(self, sock: socket.socket, buf: memoryview, flags: int = 0) -> int:
        cap = self._next("recv_into")
        return super().recv_into(sock, buf if cap is None else buf[:cap], flags)

    def recvmsg_into(self, sock: socket.socket, bufs: Sequence[memoryview]) -> int:
        cap = self._next("recvmsg_into")
        return super().recvmsg_into(sock, bufs if cap is None else _cap(bufs, cap))


def positions(bufs: Sequence[ByteBuffer]) -> list[int]:
    return [b.position() for b in bufs]


def taken(bufs: Sequence[ByteBuffer], chunks: Sequence[bytes]) -> bytes:
    """The bytes the positions say were written: each chunk's prefix up to its position."""
    return b"".join(c[: b.position()] for b, c in zip(bufs, chunks, strict=True))


# -- connecting and accepting ------------------------------------------------------------


def test_blocking_connect_and_addresses_match_the_plain_socket(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        assert ch.is_connected() and not ch.is_connection_pending() and ch.is_blocking()
        assert ch.remote_address() == peer.getsockname() == listener.getsockname()
        assert ch.local_address() == peer.getpeername() == ch.socket().getsockname()
        assert ch.valid_ops() == OP_READ | OP_WRITE | OP_CONNECT
        assert ch.fileno() == ch.socket().fileno()


def test_server_channel_accepts_a_plain_client(server: ServerSocketChannel) -> None:
    addr = server.local_address()
    assert addr is not None and addr[0] == "127.0.0.1" and addr[1] > 0
    assert server.valid_ops() == OP_ACCEPT
    before = metrics.path("socket_accept")
    with socket.create_connection(addr, timeout=TIMEOUT) as client:
        accepted = server.accept()
        assert accepted is not None
        with accepted:
            assert accepted.is_connected() and accepted.is_blocking()
            assert accepted.remote_address() == client.getsockname()
            assert accepted.local_address() == client.getpeername()
    assert delta("socket_accept", before) == PathStats("socket_accept", 1, 1, 0, 0)


def test_server_defaults_like_java() -> None:
    with ServerSocketChannel.open() as s:
        assert s.local_address() is None
        assert s.get_option(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with pytest.raises(IllegalStateError):
            s.accept()  # not bound
        s.bind(LOOPBACK, backlog=5)
        with pytest.raises(IllegalStateError):
            s.bind(LOOPBACK)
        assert s.socket().getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_nonblocking_accept_returns_none_then_the_connection(server: ServerSocketChannel) -> None:
    server.configure_blocking(False)
    assert server.accept() is None
    with socket.create_connection(address_of(server), timeout=TIMEOUT):
        deadline = time.monotonic() + TIMEOUT
        accepted = server.accept()
        while accepted is None and time.monotonic() < deadline:
            time.sleep(0.001)
            accepted = server.accept()
        assert accepted is not None
        with accepted:
            assert accepted.is_blocking()  # accepted channels start blocking, as in Java


def test_nonblocking_connect_then_finish_connect(listener: socket.socket) -> None:
    with SocketChannel.open() as ch:
        ch.configure_blocking(False)
        before = metrics.path("socket_connect")
        done = ch.connect(listener.getsockname())
        assert done == ch.is_connected()
        assert ch.is_connection_pending() == (not done)
        if not done:
            assert ch.remote_address() is None
            with pytest.raises(NotYetConnectedError):
                ch.read(ByteBuffer.allocate(1))
            with pytest.raises(IllegalStateError):
                ch.connect(listener.getsockname())  # ConnectionPendingException
        deadline = time.monotonic() + TIMEOUT
        while not ch.finish_connect():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert ch.is_connected() and not ch.is_connection_pending()
        assert ch.finish_connect()  # idempotent once connected
        assert delta("socket_connect", before).operations >= 2
        peer, _ = listener.accept()
        with peer:
            assert ch.remote_address() == peer.getsockname()
            assert ch.write(ByteBuffer.wrap(b"abc")) == 3
            assert recv_exactly(peer, 3) == b"abc"
        with pytest.raises(IllegalStateError):
            ch.connect(listener.getsockname())  # AlreadyConnectedException


def test_blocking_finish_connect_waits(listener: socket.socket) -> None:
    with SocketChannel.open() as ch:
        ch.configure_blocking(False)
        done = ch.connect(listener.getsockname())
        ch.configure_blocking(True)
        assert ch.finish_connect() is True
        assert done or ch.is_connected()
        listener.accept()[0].close()


def test_finish_connect_without_a_pending_connect_is_illegal_state() -> None:
    with SocketChannel.open() as ch, pytest.raises(IllegalStateError):
        ch.finish_connect()


@pytest.fixture
def refused_address() -> Iterator[tuple[str, int]]:
    """A loopback port that is bound but not listening: connecting is refused."""
    with socket.socket() as s:
        s.bind(LOOPBACK)
        yield s.getsockname()


def test_refused_blocking_connect_raises_the_builtin_and_closes(
    refused_address: tuple[str, int],
) -> None:
    with SocketChannel.open() as ch:
        with pytest.raises(ConnectionRefusedError) as info:
            ch.connect(refused_address)
        assert not isinstance(info.value, ZcioError)
        assert not ch.is_open()  # Java closes the channel when connect fails
        assert ch.socket().fileno() == -1
    with pytest.raises(ConnectionRefusedError):
        SocketChannel.open(refused_address)


def test_refused_nonblocking_connect_raises_at_finish_connect(
    refused_address: tuple[str, int],
) -> None:
    with SocketChannel.open() as ch:
        ch.configure_blocking(False)
        try:
            assert ch.connect(refused_address) is False
        except ConnectionRefusedError:  # the kernel may answer at once on loopback
            assert not ch.is_open()
            return
        ch.configure_blocking(True)
        with pytest.raises(ConnectionRefusedError):
            ch.finish_connect()
        assert not ch.is_open()


def test_bind_before_connect(listener: socket.socket) -> None:
    with SocketChannel.open() as ch:
        assert ch.local_address() is None
        ch.bind(LOOPBACK)
        local = ch.local_address()
        assert local is not None and local[1] > 0
        with pytest.raises(IllegalStateError):
            ch.bind(LOOPBACK)
        assert ch.connect(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            assert peer.getpeername() == local


def test_socket_options(listener: socket.socket) -> None:
    with pair(listener) as (ch, _peer):
        assert ch.set_option(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) is ch
        assert ch.get_option(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert ch.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


# -- adopting stdlib sockets -------------------------------------------------------------


def test_from_socket_adopts_a_connected_socket(listener: socket.socket) -> None:
    sock = socket.create_connection(listener.getsockname(), timeout=3.0)
    with SocketChannel.from_socket(sock) as ch:
        assert ch.is_connected() and ch.is_blocking()
        assert sock.gettimeout() is None  # the channel, not the socket, keeps the mode
        assert ch.remote_address() == listener.getsockname()
        peer, _ = listener.accept()
        with peer:
            peer.sendall(b"hello")
            dst = ByteBuffer.allocate(16)
            assert ch.read(dst) == 5
            assert dst.flip().get(bytearray(5)) is dst
    assert sock.fileno() == -1  # the channel closed the socket it owns


def test_from_socket_keeps_nonblocking_mode_and_connects_later(listener: socket.socket) -> None:
    sock = socket.socket()
    sock.setblocking(False)
    with SocketChannel.from_socket(sock) as ch:
        assert not ch.is_blocking() and not ch.is_connected()
        assert not os.get_blocking(ch.fileno())
        ch.connect(listener.getsockname())
        ch.configure_blocking(True)
        assert ch.finish_connect()
        listener.accept()[0].close()


def test_from_socket_refuses_other_kinds() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(IllegalArgumentError):
            SocketChannel.from_socket(udp)
        with pytest.raises(IllegalArgumentError):
            ServerSocketChannel.from_socket(udp)
    with socket.create_server(LOOPBACK) as listening:
        with pytest.raises(IllegalArgumentError):
            SocketChannel.from_socket(listening)
        listening.settimeout(2.0)
        with ServerSocketChannel.from_socket(listening) as server:
            assert server.local_address() == listening.getsockname()
            assert listening.gettimeout() is None
            with socket.create_connection(listening.getsockname(), timeout=TIMEOUT):
                accepted = server.accept()
                assert accepted is not None
                accepted.close()


def test_unix_socketpair_roundtrip() -> None:
    a, b = socket.socketpair()
    with SocketChannel.from_socket(a) as ca, SocketChannel.from_socket(b) as cb:
        data = pattern(10_000)
        assert ca.write(ByteBuffer.wrap(data)) == len(data)
        dst = ByteBuffer.allocate(len(data))
        while dst.has_remaining():
            assert cb.read(dst) > 0
        assert bytes(dst.flip()) == data


# -- reading and writing -----------------------------------------------------------------


def test_write_and_read_match_plain_socket(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        data = pattern(100_000)
        src = ByteBuffer.wrap(data)
        src.limit(90_000).position(10)
        assert ch.write(src) == 89_990
        assert (src.position(), src.limit()) == (90_000, 90_000)
        assert recv_exactly(peer, 89_990) == data[10:90_000]

        peer.sendall(data[:1000])
        dst = ByteBuffer.allocate_direct(2000)
        with dst:
            dst.position(100).limit(1500)
            got = 0
            while got < 1000:
                n = ch.read(dst)
                assert n > 0
                got += n
            assert (dst.position(), dst.limit()) == (1100, 1500)
            assert bytes(dst.flip().position(100)) == data[:1000]


def test_large_blocking_write_is_taken_whole(listener: socket.socket) -> None:
    data = pattern(8 << 20)
    with pair(listener) as (ch, peer):
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(recv_exactly(peer, len(data))))
        reader.start()
        src = ByteBuffer.wrap(data)
        total = 0
        while src.has_remaining():  # Linux takes it in one send(2); a signal could cut it
            total += ch.write(src)
        reader.join(TIMEOUT)
        assert total == len(data)
        assert received == [data]


def test_read_returns_minus_one_at_eof(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        peer.sendall(b"last")
        peer.shutdown(socket.SHUT_WR)
        dst = ByteBuffer.allocate(10)
        assert ch.read(dst) == 4
        assert ch.read(dst) == -1
        assert dst.position() == 4
        bufs = [ByteBuffer.allocate(2), ByteBuffer.allocate(2)]
        assert ch.read(bufs) == -1
        assert positions(bufs) == [0, 0]


def test_read_with_nothing_remaining_returns_zero_without_a_syscall(
    listener: socket.socket,
) -> None:
    with pair(listener) as (ch, _peer):
        before = metrics.path("socket_read")
        full = ByteBuffer.allocate(4).position(4)
        assert ch.read(full) == 0
        assert ch.read([full, ByteBuffer.allocate(0)]) == 0
        assert ch.read([]) == 0
        assert delta("socket_read", before) == PathStats("socket_read", 3, 0, 0, 0)
        before = metrics.path("socket_write")
        assert ch.write(ByteBuffer.allocate(0)) == 0
        assert ch.write([full, ByteBuffer.allocate(0)]) == 0
        assert delta("socket_write", before) == PathStats("socket_write", 2, 0, 0, 0)


def test_nonblocking_read_with_nothing_available_returns_zero(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        ch.configure_blocking(False)
        dst = ByteBuffer.allocate(8).position(3)
        before = metrics.path("socket_read")
        assert ch.read(dst) == 0
        bufs = [ByteBuffer.allocate(2), ByteBuffer.allocate(2)]
        assert ch.read(bufs) == 0
        assert (dst.position(), dst.limit(), positions(bufs)) == (3, 8, [0, 0])
        assert delta("socket_read", before) == PathStats("socket_read", 2, 2, 0, 0)
        peer.sendall(b"xy")
        deadline = time.monotonic() + TIMEOUT
        while ch.read(dst) == 0:
            assert time.monotonic() < deadline
        assert dst.position() == 5


def test_nonblocking_write_returns_zero_when_full_and_positions_say_what_was_taken(
    listener: socket.socket,
) -> None:
    with pair(listener) as (ch, peer):
        ch.set_option(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ch.configure_blocking(False)
        data = pattern(8 << 20, seed=1)
        src = ByteBuffer.wrap(data)
        total, zeros = 0, 0
        while zeros == 0:
            n = ch.write(src)
            assert n >= 0
            total += n
            zeros += n == 0
            assert src.position() == total
        assert 0 < total < len(data)
        before = src.position()
        assert ch.write(src) == 0 and src.position() == before
        # Gather writes on the full socket: 0, every position unchanged.
        chunks = [pattern(100, seed=i) for i in range(5)]
        bufs = wrap_all(chunks)
        assert ch.write(bufs) == 0 and positions(bufs) == [0] * 5
        assert hashlib.sha256(recv_exactly(peer, total)).digest() == (
            hashlib.sha256(data[:total]).digest()
        )


def test_read_into_a_read_only_buffer_is_refused(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        peer.sendall(b"data")
        ro = ByteBuffer.allocate(8).as_read_only_buffer()
        with pytest.raises(IllegalArgumentError):
            ch.read(ro)
        ok = ByteBuffer.allocate(8)
        with pytest.raises(IllegalArgumentError):
            ch.read([ok, ro])
        assert ro.position() == 0 and ok.position() == 0
        assert ch.read(ok) == 4  # nothing was consumed by the refused reads
        # Writing from a read-only buffer is fine.
        assert ch.write(ByteBuffer.wrap(b"back").as_read_only_buffer()) == 4
        assert recv_exactly(peer, 4) == b"back"


def test_offset_and_length_select_buffers(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        chunks = [b"aa", b"bb", b"cc", b"dd"]
        bufs = wrap_all(chunks)
        assert ch.write(bufs, 1, 2) == 4
        assert positions(bufs) == [0, 2, 2, 0]
        assert recv_exactly(peer, 4) == b"bbcc"
        with pytest.raises(IndexError):
            ch.write(bufs, 3, 2)
        with pytest.raises(IndexError):
            ch.read(bufs, -1)
        with pytest.raises(TypeError):
            ch.write(bufs[0], 1)  # type: ignore[call-overload]
        peer.sendall(b"xyz")
        dsts = [ByteBuffer.allocate(2) for _ in range(4)]
        got = 0
        while got < 3:
            got += ch.read(dsts, offset=2, length=2)
        assert positions(dsts) == [0, 0, 2, 1]


def test_gather_write_of_more_than_iov_max_buffers(listener: socket.socket) -> None:
    count = 2 * IOV_MAX + 452
    chunks = [pattern(i % 37, seed=i) for i in range(count)]  # some empty
    want = b"".join(chunks)
    with pair(listener) as (ch, peer):
        bufs = wrap_all(chunks)
        before = metrics.path("socket_write")
        assert ch.write(bufs) == len(want)
        assert all(not b.has_remaining() for b in bufs)
        assert recv_exactly(peer, len(want)) == want
        stats = delta("socket_write", before)
        nonempty = sum(1 for c in chunks if c)
        assert stats == PathStats("socket_write", 1, -(-nonempty // IOV_MAX), 0, len(want))


def test_scatter_read_of_more_than_iov_max_buffers(listener: socket.socket) -> None:
    count = 3 * IOV_MAX + 5
    data = pattern(2 * count)
    with pair(listener) as (ch, peer):
        peer.sendall(data)
        dsts = [ByteBuffer.allocate(2) for _ in range(count)]
        total = 0
        while total < len(data):
            n = ch.read(dsts)
            assert 0 < n <= 2 * IOV_MAX  # one recvmsg fills at most IOV_MAX buffers
            total += n
            assert sum(positions(dsts)) == total
        assert b"".join(bytes(d.flip()) for d in dsts) == data


def test_shutdown_output_sends_eof_and_refuses_writes(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        assert ch.write(ByteBuffer.wrap(b"bye")) == 3
        assert ch.shutdown_output() is ch
        ch.shutdown_output()  # idempotent
        assert recv_exactly(peer, 3) == b"bye"
        assert peer.recv(1) == b""
        src = ByteBuffer.wrap(b"more")
        with pytest.raises(ClosedChannelError):
            ch.write(src)
        assert src.position() == 0 and ch.is_open()
        peer.sendall(b"reply")  # the other direction still works
        dst = ByteBuffer.allocate(5)
        while dst.has_remaining():
            assert ch.read(dst) > 0


def test_shutdown_input_reads_minus_one_without_a_syscall(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        peer.sendall(b"unread")
        assert ch.shutdown_input() is ch
        before = metrics.path("socket_read")
        dst = ByteBuffer.allocate(8)
        assert ch.read(dst) == -1
        assert ch.read([dst]) == -1
        assert ch.read(ByteBuffer.allocate(1).as_read_only_buffer()) == -1  # Java's order
        assert delta("socket_read", before) == PathStats("socket_read", 3, 0, 0, 0)
        assert dst.position() == 0 and ch.is_open()
        assert ch.write(ByteBuffer.wrap(b"ok")) == 2
        assert recv_exactly(peer, 2) == b"ok"


def test_shutdown_input_wakes_a_blocked_reader(listener: socket.socket) -> None:
    with pair(listener) as (ch, _peer):
        results: list[int] = []
        reader = threading.Thread(target=lambda: results.append(ch.read(ByteBuffer.allocate(4))))
        reader.start()
        time.sleep(0.05)
        ch.shutdown_input()
        reader.join(TIMEOUT)
        assert results == [-1]


def test_metrics_count_operations_syscalls_and_bytes(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        before_w = metrics.path("socket_write")
        assert ch.write(ByteBuffer.wrap(b"12345")) == 5
        assert ch.write(wrap_all([b"ab", b"", b"cd"])) == 4
        assert delta("socket_write", before_w) == PathStats("socket_write", 2, 2, 0, 9)
        assert recv_exactly(peer, 9) == b"12345abcd"
        peer.sendall(b"xyz")
        before_r = metrics.path("socket_read")
        dst = ByteBuffer.allocate(3)
        while dst.has_remaining():
            ch.read(dst)
        stats = delta("socket_read", before_r)
        assert stats.user_bytes == 3 and stats.syscalls == stats.operations >= 1


# -- errors and lifetime -----------------------------------------------------------------


def test_io_before_connect_is_not_yet_connected() -> None:
    with SocketChannel.open() as ch:
        assert not ch.is_connected() and ch.remote_address() is None
        for call in (
            lambda: ch.read(ByteBuffer.allocate(1)),
            lambda: ch.read([ByteBuffer.allocate(1)]),
            lambda: ch.write(ByteBuffer.wrap(b"x")),
            lambda: ch.write([ByteBuffer.wrap(b"x")]),
            ch.shutdown_input,
            ch.shutdown_output,
        ):
            with pytest.raises(NotYetConnectedError):
                call()


def test_closed_channel_refuses_everything(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        sock = ch.socket()
        ch.close()
        ch.close()  # idempotent
        assert not ch.is_open() and sock.fileno() == -1
        for call in (
            lambda: ch.read(ByteBuffer.allocate(1)),
            lambda: ch.write([ByteBuffer.wrap(b"x")]),
            lambda: ch.connect(listener.getsockname()),
            ch.shutdown_output,
            ch.fileno,
            ch.local_address,
            ch.remote_address,
            lambda: ch.configure_blocking(False),
        ):
            with pytest.raises(ClosedChannelError):
                call()
        assert peer.recv(1) == b""  # the close reached the peer
    with ServerSocketChannel.open() as server:
        server.close()
        with pytest.raises(ClosedChannelError):
            server.accept()
        with pytest.raises(ClosedChannelError):
            server.bind(LOOPBACK)


def test_close_wakes_a_thread_blocked_in_read(listener: socket.socket) -> None:
    with pair(listener) as (ch, _peer):
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                ch.read(ByteBuffer.allocate(4))
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.05)
        ch.close()
        t.join(TIMEOUT)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ClosedChannelError)


@pytest.mark.parametrize("finish", [False, True])
def test_close_wakes_a_thread_blocked_in_connect(finish: bool) -> None:
    with socket.create_server(LOOPBACK, backlog=0) as listener:
        addr = listener.getsockname()
        with ExitStack() as stack:
            stack.enter_context(socket.create_connection(addr, timeout=TIMEOUT))  # queue full
            probe = stack.enter_context(socket.socket())
            probe.settimeout(0.2)
            with pytest.raises(TimeoutError):  # the kernel drops further SYNs: connect waits
                probe.connect(addr)
            ch = stack.enter_context(SocketChannel.open())
            if finish:
                ch.configure_blocking(False)
                assert ch.connect(addr) is False
                ch.configure_blocking(True)
            errors: list[BaseException] = []

            def connector() -> None:
                try:
                    ch.finish_connect() if finish else ch.connect(addr)
                except BaseException as e:
                    errors.append(e)

            t = threading.Thread(target=connector)
            t.start()
            time.sleep(0.05)
            ch.close()
            t.join(TIMEOUT)
            assert not t.is_alive()
            assert len(errors) == 1 and isinstance(errors[0], ClosedChannelError)


def test_close_wakes_a_thread_blocked_in_accept(server: ServerSocketChannel) -> None:
    errors: list[BaseException] = []

    def acceptor() -> None:
        try:
            server.accept()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=acceptor)
    t.start()
    time.sleep(0.05)
    server.close()
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ClosedChannelError)


# -- fault injection ---------------------------------------------------------------------


def test_short_gather_writes_advance_exactly_what_the_kernel_took(
    listener: socket.socket,
) -> None:
    chunks = [pattern(10 + i, seed=i) for i in range(40)]
    want = b"".join(chunks)
    with pair(listener) as (ch, peer):
        bufs = wrap_all(chunks)
        layer = Scripted(sendmsg=[7] * 10_000)
        total = 0
        with _syscalls.override(layer):
            while any(b.has_remaining() for b in bufs):
                n = ch.write(bufs)
                assert n == min(7, len(want) - total)  # blocking: stop after a short chunk
                total += n
                assert taken(bufs, chunks) == want[:total]
        assert recv_exactly(peer, len(want)) == want


def test_short_single_write_and_read(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        src = ByteBuffer.wrap(b"0123456789")
        with _syscalls.override(Scripted(send=[3], recv_into=[2])):
            assert ch.write(src) == 3
            assert src.position() == 3
            assert ch.write(src) == 7
            peer.sendall(b"abcdef")
            dst = ByteBuffer.allocate(6)
            assert ch.read(dst) == 2
            assert dst.position() == 2
            while dst.has_remaining():
                ch.read(dst)
        assert recv_exactly(peer, 10) == b"0123456789"
        assert bytes(dst.flip()) == b"abcdef"


def test_eintr_is_retried_and_counted(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        layer = Scripted(
            send=[InterruptedError()],
            sendmsg=[InterruptedError(), InterruptedError()],
            recv_into=[InterruptedError()],
            recvmsg_into=[InterruptedError()],
        )
        before_w, before_r = metrics.path("socket_write"), metrics.path("socket_read")
        with _syscalls.override(layer):
            assert ch.write(ByteBuffer.wrap(b"abc")) == 3
            assert ch.write(wrap_all([b"de", b"f"])) == 3
            assert recv_exactly(peer, 6) == b"abcdef"
            peer.sendall(b"gh")
            one, two = ByteBuffer.allocate(1), ByteBuffer.allocate(1)
            assert ch.read(one) == 1
            assert ch.read([two]) == 1
        assert delta("socket_write", before_w) == PathStats("socket_write", 2, 5, 0, 6)
        assert delta("socket_read", before_r) == PathStats("socket_read", 2, 4, 0, 2)
        assert layer.calls == Counter(send=2, sendmsg=3, recv_into=2, recvmsg_into=2)


def test_eagain_returns_zero_with_positions_unchanged(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        src = ByteBuffer.wrap(b"abc")
        bufs = wrap_all([b"de", b"f"])
        dst = ByteBuffer.allocate(4)
        layer = Scripted(
            send=[BlockingIOError()],
            sendmsg=[BlockingIOError()],
            recv_into=[BlockingIOError()],
            recvmsg_into=[BlockingIOError()],
        )
        with _syscalls.override(layer):
            assert ch.write(src) == 0 and src.position() == 0
            assert ch.write(bufs) == 0 and positions(bufs) == [0, 0]
            assert ch.read(dst) == 0 and dst.position() == 0
            assert ch.read([dst]) == 0 and dst.position() == 0
            assert ch.write(src) == 3
            assert ch.write(bufs) == 3
        assert recv_exactly(peer, 6) == b"abcdef"


@pytest.mark.parametrize(
    "error", [ConnectionResetError(104, "reset"), BrokenPipeError(32, "broken pipe")]
)
def test_errors_with_nothing_moved_propagate_unchanged(
    listener: socket.socket, error: OSError
) -> None:
    with pair(listener) as (ch, peer):
        src = ByteBuffer.wrap(b"abc")
        bufs = wrap_all([b"de", b"f"])
        dst = ByteBuffer.allocate(4)
        layer = Scripted(send=[error], sendmsg=[error], recv_into=[error], recvmsg_into=[error])
        with _syscalls.override(layer):
            calls: list[Callable[[], int]] = [
                lambda: ch.write(src),
                lambda: ch.write(bufs),
                lambda: ch.read(dst),
                lambda: ch.read([dst]),
            ]
            for call in calls:
                with pytest.raises(type(error)) as info:
                    call()
                assert info.value is error and not isinstance(info.value, ZcioError)
        assert src.position() == 0 and positions(bufs) == [0, 0] and dst.position() == 0
        assert ch.is_open()
        assert ch.write(src) + ch.write(bufs) == 6
        assert recv_exactly(peer, 6) == b"abcdef"


def test_error_after_a_whole_chunk_returns_the_count(listener: socket.socket) -> None:
    """Java's partial rule, as every zcio channel: what moved is returned; the error
    comes again on the next call."""
    count = IOV_MAX + 500
    chunks = [pattern(3, seed=i) for i in range(count)]
    want = b"".join(chunks)
    with pair(listener) as (ch, peer):
        bufs = wrap_all(chunks)
        reset = ConnectionResetError(104, "reset")
        with _syscalls.override(Scripted(sendmsg=[None, reset])):
            assert ch.write(bufs) == 3 * IOV_MAX
        assert positions(bufs) == [3] * IOV_MAX + [0] * 500
        assert ch.write(bufs) == 3 * 500  # the rest, no byte twice
        assert hashlib.sha256(recv_exactly(peer, len(want))).digest() == (
            hashlib.sha256(want).digest()
        )


def test_eagain_after_a_whole_chunk_returns_the_total(listener: socket.socket) -> None:
    count = IOV_MAX + 10
    chunks = [pattern(2, seed=i) for i in range(count)]
    with pair(listener) as (ch, peer):
        bufs = wrap_all(chunks)
        with _syscalls.override(Scripted(sendmsg=[None, BlockingIOError()])):
            assert ch.write(bufs) == 2 * IOV_MAX
        assert positions(bufs) == [2] * IOV_MAX + [0] * 10
        assert ch.write(bufs) == 20
        assert recv_exactly(peer, 2 * count) == b"".join(chunks)


def test_nonblocking_gather_write_makes_one_call(listener: socket.socket) -> None:
    count = IOV_MAX + 10
    chunks = [pattern(2, seed=i) for i in range(count)]
    with pair(listener) as (ch, peer):
        ch.configure_blocking(False)
        bufs = wrap_all(chunks)
        assert ch.write(bufs) == 2 * IOV_MAX
        assert ch.write(bufs) == 20
        assert recv_exactly(peer, 2 * count) == b"".join(chunks)


def test_short_scatter_read_advances_buffer_by_buffer(listener: socket.socket) -> None:
    with pair(listener) as (ch, peer):
        peer.sendall(b"abcdefgh")
        dsts = [ByteBuffer.allocate(3) for _ in range(3)]
        with _syscalls.override(Scripted(recvmsg_into=[5])):
            assert ch.read(dsts) == 5
        assert positions(dsts) == [3, 2, 0]
        got = 5
        while got < 8:
            got += ch.read(dsts)
        assert positions(dsts) == [3, 3, 2]
        assert b"".join(bytes(d.flip()) for d in dsts) == b"abcdefgh"
