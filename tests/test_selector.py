"""Selector and SelectionKey: Java's selection rules over epoll, on loopback sockets."""

from __future__ import annotations

import hashlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import partial
from typing import Any

import pytest

from zcio import ByteBuffer, IllegalArgumentError, Pipe
from zcio._errors import (
    CancelledKeyError,
    ClosedChannelError,
    ClosedSelectorError,
    IllegalBlockingModeError,
    UnsupportedOperationError,
)
from zcio._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE
from zcio._selector import SelectionKey, Selector
from zcio._socket_channel import ServerSocketChannel, SocketChannel

LOOPBACK = ("127.0.0.1", 0)
TIMEOUT = 10.0


@pytest.fixture
def selector() -> Iterator[Selector]:
    with Selector.open() as sel:
        yield sel


@pytest.fixture
def server(server: ServerSocketChannel) -> ServerSocketChannel:
    """conftest's loopback server channel, non-blocking."""
    return server.configure_blocking(False)


@contextmanager
def pair() -> Iterator[tuple[SocketChannel, socket.socket]]:
    """A connected, non-blocking SocketChannel and the plain socket at the other end."""
    with socket.create_server(LOOPBACK) as listener:
        listener.settimeout(TIMEOUT)
        with SocketChannel.open(listener.getsockname()) as ch:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(TIMEOUT)
                ch.configure_blocking(False)
                yield ch, peer


def address_of(server: ServerSocketChannel) -> tuple[str, int]:
    addr = server.local_address()
    assert addr is not None
    return addr  # type: ignore[no-any-return]


def select_until(sel: Selector, key: SelectionKey, ops: int) -> None:
    """Select until ``key`` is selected with all of ``ops`` ready."""
    deadline = time.monotonic() + TIMEOUT
    while not (key in sel.selected_keys() and key.ready_ops() & ops == ops):
        assert time.monotonic() < deadline, f"{key} never became ready for {ops:#x}"
        sel.select(0.1)


# -- lifetime ----------------------------------------------------------------------------


def test_open_close_and_closed_selector_errors(server: ServerSocketChannel) -> None:
    sel = Selector.open()
    assert sel.is_open()
    assert sel.keys() == frozenset() and sel.selected_keys() == set()
    assert sel.select_now() == 0
    key = server.register(sel, OP_ACCEPT)
    sel.close()
    sel.close()  # idempotent
    assert not sel.is_open()
    assert not key.is_valid() and not server.is_registered()
    assert server.key_for(sel) is None
    server.configure_blocking(True)  # no longer registered anywhere
    for call in (
        sel.select_now,
        sel.select,
        sel.keys,
        sel.selected_keys,
        lambda: server.configure_blocking(False).register(sel, OP_ACCEPT),
    ):
        with pytest.raises(ClosedSelectorError):
            call()
    sel.wakeup()  # a no-op once closed
    with pytest.raises(CancelledKeyError):
        key.interest_ops(OP_ACCEPT)


def test_select_with_nothing_ready_times_out(selector: Selector) -> None:
    assert selector.select_now() == 0
    start = time.monotonic()
    assert selector.select(0.05) == 0
    assert time.monotonic() - start >= 0.04
    with pytest.raises(IllegalArgumentError):
        selector.select(-1)


# -- registration ------------------------------------------------------------------------


def test_register_needs_non_blocking_and_valid_ops(selector: Selector) -> None:
    with ServerSocketChannel.open().bind(LOOPBACK) as server:
        with pytest.raises(IllegalBlockingModeError):
            server.register(selector, OP_ACCEPT)
        server.configure_blocking(False)
        with pytest.raises(IllegalArgumentError):
            server.register(selector, OP_READ)
        key = server.register(selector, OP_ACCEPT, "first")
        with pytest.raises(IllegalBlockingModeError):
            server.configure_blocking(True)
        with pytest.raises(IllegalArgumentError):
            key.interest_ops(OP_WRITE)
        assert key.interest_ops() == OP_ACCEPT
        again = server.register(selector, 0, "second")  # same key, updated
        assert again is key and key.interest_ops() == 0 and key.attachment() == "second"
        assert selector.keys() == {key} and server.is_registered()
        assert key.channel() is server and key.selector() is selector
        key.cancel()
        server.configure_blocking(True)  # allowed once the key is cancelled
        server.close()
    with SocketChannel.open() as ch:
        ch.configure_blocking(False)
        with pytest.raises(IllegalArgumentError):
            ch.register(selector, OP_ACCEPT)
        ch.close()
        with pytest.raises(ClosedChannelError):
            ch.register(selector, OP_READ)


def test_attachments() -> None:
    with Selector.open() as sel, pair() as (ch, _peer):
        key = ch.register(sel, OP_READ, attachment=[1])
        assert key.attachment() == [1]
        assert key.attach("x") == [1]
        assert key.attach(None) == "x" and key.attachment() is None


def test_interest_ops_or_and(selector: Selector) -> None:
    with pair() as (ch, _peer):
        key = ch.register(selector, OP_READ)
        assert key.interest_ops_or(OP_WRITE) == OP_READ
        assert key.interest_ops() == OP_READ | OP_WRITE
        assert key.interest_ops_and(OP_WRITE) == OP_READ | OP_WRITE
        assert key.interest_ops() == OP_WRITE


def test_one_channel_with_two_selectors(server: ServerSocketChannel) -> None:
    with Selector.open() as a, Selector.open() as b:
        ka, kb = server.register(a, OP_ACCEPT), server.register(b, OP_ACCEPT)
        assert ka is not kb
        with socket.create_connection(address_of(server), timeout=TIMEOUT):
            select_until(a, ka, OP_ACCEPT)
            select_until(b, kb, OP_ACCEPT)
            accepted = server.accept()
            assert accepted is not None
            accepted.close()
        ka.cancel()
        assert server.key_for(a) is ka and server.key_for(b) is kb  # until a selects
        a.select_now()
        assert server.key_for(a) is None and server.key_for(b) is kb


# -- readiness ---------------------------------------------------------------------------


def test_accept_readiness_and_the_selected_key_set(
    selector: Selector, server: ServerSocketChannel
) -> None:
    key = server.register(selector, OP_ACCEPT)
    assert selector.select_now() == 0
    with socket.create_connection(address_of(server), timeout=TIMEOUT):
        assert selector.select(TIMEOUT) == 1
        assert selector.selected_keys() == {key}
        assert key.is_acceptable() and key.ready_ops() == OP_ACCEPT
        assert not (key.is_readable() or key.is_writable() or key.is_connectable())
        # Still ready, already selected, nothing new: not counted, still in the set.
        assert selector.select_now() == 0
        assert selector.selected_keys() == {key}
        selector.selected_keys().discard(key)
        assert selector.select_now() == 1  # ready again, so selected again
        accepted = server.accept()
        assert accepted is not None
        accepted.close()
        selector.selected_keys().clear()
        assert selector.select_now() == 0


def test_ready_ops_only_hold_interested_ops(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_READ)
        assert selector.select_now() == 0  # writable, but only reads interest us
        peer.sendall(b"x")
        select_until(selector, key, OP_READ)
        assert key.ready_ops() == OP_READ
        selector.selected_keys().clear()
        key.interest_ops(OP_READ | OP_WRITE)
        assert selector.select_now() == 1
        assert key.ready_ops() == OP_READ | OP_WRITE


def test_ready_set_accumulates_while_the_key_stays_selected(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_WRITE)
        assert selector.select_now() == 1 and key.ready_ops() == OP_WRITE
        key.interest_ops(OP_READ | OP_WRITE)
        peer.sendall(b"x")
        select_until(selector, key, OP_READ)
        assert key.ready_ops() == OP_READ | OP_WRITE  # OP_WRITE kept, OP_READ added


def test_empty_interest_set_watches_nothing(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, 0)
        peer.sendall(b"x")
        time.sleep(0.02)
        assert selector.select_now() == 0
        key.interest_ops(OP_READ)
        assert selector.select(TIMEOUT) == 1 and key.is_readable()
        selector.selected_keys().clear()
        key.interest_ops(0)
        assert selector.select_now() == 0


def test_connect_readiness(selector: Selector) -> None:
    with socket.create_server(LOOPBACK) as listener, SocketChannel.open() as ch:
        ch.configure_blocking(False)
        connected = ch.connect(listener.getsockname())
        key = ch.register(selector, OP_CONNECT | OP_WRITE)
        if not connected:
            select_until(selector, key, OP_CONNECT)
            assert key.ready_ops() == OP_CONNECT  # no OP_WRITE before the connection is made
            assert ch.finish_connect()
            selector.selected_keys().clear()
        key.interest_ops(OP_WRITE)
        assert selector.select_now() == 1 and key.ready_ops() == OP_WRITE
        listener.accept()[0].close()


def test_no_read_readiness_before_the_connection_is_finished(selector: Selector) -> None:
    """Java reports OP_READ only once connected: data that arrives while the connect is
    still pending here leaves the ready set at OP_CONNECT."""
    with socket.create_server(LOOPBACK) as listener, SocketChannel.open() as ch:
        listener.settimeout(TIMEOUT)
        ch.configure_blocking(False)
        ch.connect(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            peer.sendall(b"x")
            key = ch.register(selector, OP_READ | OP_CONNECT)
            if ch.is_connection_pending():
                select_until(selector, key, OP_CONNECT)
                assert key.ready_ops() == OP_CONNECT
                assert ch.finish_connect()
                selector.selected_keys().clear()
            select_until(selector, key, OP_READ)
            assert key.ready_ops() == OP_READ


def test_eof_and_reset_make_interested_ops_ready(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_READ)
        peer.close()
        select_until(selector, key, OP_READ)
        assert ch.read(ByteBuffer.allocate(4)) == -1


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(LOOPBACK)
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "interest", [OP_WRITE, OP_CONNECT, OP_READ, OP_READ | OP_WRITE | OP_CONNECT]
)
def test_a_failed_connect_makes_the_whole_interest_set_ready(
    selector: Selector, interest: int
) -> None:
    """Issue 15 items 4-5: EPOLLERR/EPOLLHUP make every interested op ready (Java), also
    OP_WRITE alone while the connect is pending; before, select() returned 0 at once."""
    with SocketChannel.open() as ch:
        ch.configure_blocking(False)
        assert not ch.connect(("127.0.0.1", refused_port()))
        key = ch.register(selector, interest)
        assert selector.select(TIMEOUT) == 1
        assert selector.selected_keys() == {key} and key.ready_ops() == interest
        assert selector.select_now() == 0  # nothing new for a selected key
        with pytest.raises(ConnectionRefusedError):
            ch.finish_connect()
        assert not ch.is_open() and not key.is_valid()
        assert selector.select_now() == 0 and selector.keys() == set()


def test_a_reset_replaces_the_ready_set_of_a_selected_key(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_WRITE)
        assert selector.select_now() == 1 and key.ready_ops() == OP_WRITE
        key.interest_ops(OP_READ)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        assert selector.select(TIMEOUT) == 1
        assert key.ready_ops() == OP_READ  # the interest set, not OP_READ | OP_WRITE


# -- cancellation ------------------------------------------------------------------------


def test_a_cancelled_key_stays_registered_until_the_next_select(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_READ, "first")
        peer.sendall(b"x")
        select_until(selector, key, OP_READ)
        key.cancel()
        key.cancel()  # idempotent
        # Invalid at once; still in both key sets and registered until the next select.
        assert not key.is_valid()
        assert selector.keys() == {key} and key in selector.selected_keys()
        assert ch.key_for(selector) is key and ch.is_registered()
        for call in (key.interest_ops, key.ready_ops, key.is_readable):
            with pytest.raises(CancelledKeyError):
                call()
        with pytest.raises(CancelledKeyError):
            ch.register(selector, OP_READ, "second")
        assert key.attachment() == "second"  # Java attaches before the interest set fails
        assert key.channel() is ch and key.selector() is selector
        ch.configure_blocking(True).configure_blocking(False)  # no valid key holds it
        assert selector.select_now() == 0
        assert selector.keys() == set() and selector.selected_keys() == set()
        assert ch.key_for(selector) is None and not ch.is_registered()
        # A new registration gets a new key.
        again = ch.register(selector, OP_READ)
        assert again is not key and again.is_valid()
        assert selector.select_now() == 1 and again.is_readable()


def test_closing_a_channel_cancels_its_key_and_frees_the_fd_number(selector: Selector) -> None:
    with pair() as (ch, peer):
        key = ch.register(selector, OP_READ)
        ch.close()
        assert not key.is_valid() and selector.keys() == {key}  # until the next select
        assert ch.key_for(selector) is key and ch.is_registered()
        # The kernel hands out the lowest free number: very likely the same fd again.
        with socket.socket() as reused:
            again = SocketChannel.from_socket(reused)
            again.configure_blocking(False)
            new_key = again.register(selector, OP_WRITE)  # no "already registered"
            assert new_key.is_valid() and selector.keys() == {key, new_key}
            assert selector.select_now() == 1  # an unconnected socket hangs up
            assert selector.keys() == {new_key} and new_key.ready_ops() == OP_WRITE
            assert ch.key_for(selector) is None and not ch.is_registered()
            again.close()
        peer.close()


def test_closing_the_selector_makes_keys_invalid(server: ServerSocketChannel) -> None:
    sel = Selector.open()
    key = server.register(sel, OP_ACCEPT)
    sel.close()
    assert not key.is_valid()
    with pytest.raises(CancelledKeyError):
        key.ready_ops()
    with Selector.open() as other:
        assert server.register(other, OP_ACCEPT).is_valid()


class EpollDuringWait:
    """Stands in for a selector's epoll object and runs ``during`` after the wait has
    returned, as if another thread acted while select() collected the events."""

    def __init__(self, epoll: Any, during: Callable[[], None]) -> None:
        self.epoll, self.during = epoll, during

    def poll(self, *args: Any) -> list[tuple[int, int]]:
        events: list[tuple[int, int]] = self.epoll.poll(*args)
        self.during()
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.epoll, name)


def test_an_event_for_a_closed_channel_never_reaches_the_channel_reusing_its_number(
    selector: Selector,
) -> None:
    """The wait reports channel A readable; A is closed and a pipe takes its descriptor
    number and registers before the events are read: the pipe must not be selected."""
    with pair() as (a, peer), ExitStack() as stack:
        fd = a.fileno()
        a.register(selector, OP_READ)
        peer.sendall(b"x")
        pipes: list[Pipe] = []

        def close_and_reuse() -> None:
            a.close()
            pipe = stack.enter_context(Pipe.open())
            pipes.append(pipe)
            assert pipe.source().fileno() == fd  # the lowest free number
            pipe.source().configure_blocking(False).register(selector, OP_READ)

        real = selector._epoll
        selector._epoll = EpollDuringWait(real, close_and_reuse)  # type: ignore[assignment]
        try:
            assert selector.select(TIMEOUT) == 0
        finally:
            selector._epoll = real
        source_key = pipes[0].source().key_for(selector)
        assert source_key is not None and source_key.ready_ops() == 0
        assert selector.selected_keys() == set()
        assert selector.select_now() == 0  # the pipe is empty


# -- wakeup ------------------------------------------------------------------------------


def test_wakeup_from_another_thread_ends_a_blocking_select(selector: Selector) -> None:
    with pair() as (ch, _peer):
        ch.register(selector, OP_READ)
        waker = threading.Timer(0.05, selector.wakeup)
        start = time.monotonic()
        waker.start()
        try:
            assert selector.select() == 0
        finally:
            waker.join()
        assert 0.03 < time.monotonic() - start < TIMEOUT


def test_wakeup_before_select_makes_the_next_select_return_at_once(
    selector: Selector,
) -> None:
    selector.wakeup().wakeup().wakeup()  # several count as one
    start = time.monotonic()
    assert selector.select() == 0
    assert time.monotonic() - start < 1.0
    assert selector.select(0.02) == 0  # consumed: this one waits its timeout
    selector.wakeup()
    assert selector.select_now() == 0  # select_now clears a pending wakeup
    start = time.monotonic()
    assert selector.select(0.05) == 0
    assert time.monotonic() - start >= 0.04


def test_close_from_another_thread_ends_a_blocking_select() -> None:
    sel = Selector.open()
    results: list[object] = []

    def run() -> None:
        try:
            results.append(sel.select())
        except BaseException as e:
            results.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.05)
    sel.close()
    t.join(TIMEOUT)
    assert not t.is_alive() and results == [0]
    assert not sel.is_open()


# -- an echo server ----------------------------------------------------------------------


class EchoServer:
    """A single-threaded echo server driven by one Selector.

    Each connection has one buffer: OP_READ while it has room, OP_WRITE while it holds
    data, so a slow client pushes back on its own connection only.
    """

    def __init__(self) -> None:
        self.selector = Selector.open()
        self.server = ServerSocketChannel.open().bind(LOOPBACK)
        self.server.configure_blocking(False)
        self.server.register(self.selector, OP_ACCEPT)
        self.stopping = False
        self.accepted = 0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stopping:
            self.selector.select()
            selected = self.selector.selected_keys()
            for key in list(selected):
                selected.discard(key)
                if not key.is_valid():
                    continue
                if key.is_acceptable():
                    self.accept()
                elif key.is_readable() or key.is_writable():
                    self.serve(key)

    def accept(self) -> None:
        ch = self.server.accept()
        while ch is not None:
            self.accepted += 1
            ch.configure_blocking(False)
            ch.register(self.selector, OP_READ, ByteBuffer.allocate(4096))
            ch = self.server.accept()

    def serve(self, key: SelectionKey) -> None:
        ch = key.channel()
        assert isinstance(ch, SocketChannel)
        buf: ByteBuffer = key.attachment()
        eof = False
        if key.is_readable():
            eof = ch.read(buf) == -1
        buf.flip()
        if buf.has_remaining():
            ch.write(buf)
        buf.compact()
        if eof and buf.position() == 0:
            ch.close()  # cancels the key
            return
        ops = (OP_READ if buf.has_remaining() and not eof else 0) | (
            OP_WRITE if buf.position() else 0
        )
        key.interest_ops(ops)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.selector.wakeup()
        self.thread.join(TIMEOUT)
        for key in list(self.selector.keys()):
            key.channel().close()
        self.selector.close()
        self.server.close()


def test_echo_server_driven_by_a_selector() -> None:
    clients, size = 4, 300_000
    with EchoServer() as echo:
        addr = address_of(echo.server)
        results: dict[int, bytes] = {}

        def client(i: int) -> None:
            data = hashlib.sha256(str(i).encode()).digest() * (size // 32)
            with socket.create_connection(addr, timeout=TIMEOUT) as sock:

                def send() -> None:
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                got = bytearray()
                while chunk := sock.recv(65536):
                    got += chunk
                sender.join(TIMEOUT)
            results[i] = hashlib.sha256(got).digest() if got == data else b"mismatch"

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert set(results) == set(range(clients))
        assert all(r != b"mismatch" for r in results.values())
        assert echo.accepted == clients
        assert echo.thread.is_alive()
    assert not echo.thread.is_alive()


def test_many_connections_in_one_selector(selector: Selector) -> None:
    with ExitStack() as stack:
        server = stack.enter_context(ServerSocketChannel.open().bind(LOOPBACK, backlog=64))
        clients = [
            stack.enter_context(socket.create_connection(address_of(server), timeout=TIMEOUT))
            for _ in range(50)
        ]
        keys = {}
        for i in range(50):
            ch = server.accept()
            assert ch is not None
            stack.enter_context(ch)
            ch.configure_blocking(False)
            keys[ch.register(selector, OP_READ, i)] = ch
        for i in (3, 17, 42):
            clients[i].sendall(b"!")
        deadline = time.monotonic() + TIMEOUT
        while len(selector.selected_keys()) < 3:
            assert time.monotonic() < deadline
            selector.select(0.1)
        assert sorted(k.attachment() for k in selector.selected_keys()) == [3, 17, 42]


# -- races (issue 15, item 6) ------------------------------------------------------------

ROUNDS = 2000


class Racer:
    """Runs two calls at the same moment on two long-lived threads, round after round.

    ``sys.setswitchinterval`` is lowered meanwhile, so the threads interleave at many
    more points than the default 5 ms lets them.
    """

    def __init__(self) -> None:
        self.go = threading.Barrier(3, timeout=TIMEOUT)
        self.done = threading.Barrier(3, timeout=TIMEOUT)
        self.calls: list[Callable[[], object]] = []
        self.results: list[object] = [None, None]
        self.stopping = False
        self.threads = [threading.Thread(target=self.work, args=(i,)) for i in range(2)]

    def work(self, i: int) -> None:
        while True:
            self.go.wait()
            if self.stopping:
                return
            try:
                self.results[i] = self.calls[i]()
            except Exception as e:
                self.results[i] = e
            self.done.wait()

    def race(self, a: Callable[[], object], b: Callable[[], object]) -> list[object]:
        self.calls = [a, b]
        self.go.wait()
        self.done.wait()
        return list(self.results)

    def __enter__(self) -> Racer:
        self.interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setswitchinterval(self.interval)
        self.stopping = True
        with suppress(threading.BrokenBarrierError):
            self.go.wait()
        for t in self.threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in self.threads)


def new_channel() -> SocketChannel:
    return SocketChannel.open().configure_blocking(False)


def test_register_racing_close_never_leaves_a_valid_key(selector: Selector) -> None:
    """A registration racing close() is refused, or its key is cancelled before the
    descriptor closes: never a valid key for a closed channel, and the descriptor
    number is free for the next channel at once."""
    outcomes = {"registered": 0, "refused": 0}
    with Racer() as racer:
        for _ in range(ROUNDS):
            ch = new_channel()
            key, closed = racer.race(partial(ch.register, selector, OP_READ), ch.close)
            assert closed is None
            if isinstance(key, SelectionKey):
                outcomes["registered"] += 1
                assert not key.is_valid()
            else:
                assert isinstance(key, ClosedChannelError), key
                outcomes["refused"] += 1
            with new_channel() as successor:  # most likely the closed channel's number
                new_key = successor.register(selector, OP_READ)
                assert new_key.is_valid()
                registered = selector.keys()
                assert all(k is new_key or not k.is_valid() for k in registered)
            selector.select_now()  # deregisters both keys
            assert selector.keys() == set() and not ch.is_registered()
    assert sum(outcomes.values()) == ROUNDS


def test_threads_registering_one_channel_get_one_key(selector: Selector) -> None:
    with Racer() as racer:
        for i in range(ROUNDS):
            with new_channel() as ch:
                a, b = racer.race(
                    partial(ch.register, selector, OP_READ, "a"),
                    partial(ch.register, selector, OP_WRITE, "b"),
                )
                assert isinstance(a, SelectionKey) and a is b, (i, a, b)
                assert selector.keys() == {a} and ch.key_for(selector) is a
                assert (a.interest_ops(), a.attachment()) in ((OP_READ, "a"), (OP_WRITE, "b"))
            selector.select_now()
            assert selector.keys() == set()


def test_register_racing_the_select_that_deregisters_the_cancelled_key(
    selector: Selector,
) -> None:
    """Registering again after cancel() fails until a select deregisters the old key,
    then gives a new key: whichever wins, channel and selector agree afterwards."""
    with Racer() as racer, new_channel() as ch:
        for _ in range(ROUNDS):
            old = ch.register(selector, OP_READ)
            old.cancel()
            key, _ = racer.race(partial(ch.register, selector, OP_READ), selector.select_now)
            selector.select_now()
            if isinstance(key, SelectionKey):
                assert key is not old and key.is_valid()
                assert ch.key_for(selector) is key and selector.keys() == {key}
                key.cancel()
                selector.select_now()
            else:
                assert isinstance(key, CancelledKeyError), key
            assert ch.key_for(selector) is None and selector.keys() == set()


def test_interest_ops_or_and_are_atomic(selector: Selector) -> None:
    with Racer() as racer, pair() as (ch, _peer):
        key = ch.register(selector, 0)
        for _ in range(ROUNDS):
            key.interest_ops(0)
            racer.race(partial(key.interest_ops_or, OP_READ),
                       partial(key.interest_ops_or, OP_WRITE))
            assert key.interest_ops() == OP_READ | OP_WRITE
            racer.race(partial(key.interest_ops_and, ~OP_READ),
                       partial(key.interest_ops_and, ~OP_WRITE))
            assert key.interest_ops() == 0


def test_register_racing_the_selectors_close() -> None:
    with Racer() as racer:
        for _ in range(ROUNDS // 4):
            sel = Selector.open()
            with new_channel() as ch:
                key, closed = racer.race(partial(ch.register, sel, OP_READ), sel.close)
                assert closed is None
                if isinstance(key, SelectionKey):
                    assert not key.is_valid()
                else:
                    assert isinstance(key, ClosedSelectorError), key
                assert ch.key_for(sel) is None and not ch.is_registered()
                ch.configure_blocking(True)


# -- the key sets (issue 15, item 9) -----------------------------------------------------


def test_the_key_set_is_a_live_read_only_view(selector: Selector) -> None:
    keys = selector.keys()
    assert keys == set() and len(keys) == 0
    with pair() as (ch, _peer):
        key = ch.register(selector, OP_READ)
        assert keys == {key} and key in keys and list(keys) == [key]  # live
        assert keys | {1} == {key, 1} and keys & {key} == {key}  # plain sets
        for name, args in (
            ("add", [key]), ("update", [{key}]), ("discard", [key]), ("remove", [key]),
            ("pop", []), ("clear", []), ("difference_update", [{key}]), ("__isub__", [{key}]),
        ):
            with pytest.raises(UnsupportedOperationError):
                getattr(keys, name)(*args)
        assert keys == {key}
        ch.close()
        selector.select_now()
        assert keys == set()


def test_the_selected_key_set_allows_removal_not_addition(selector: Selector) -> None:
    with pair() as (a, _pa), pair() as (b, _pb):
        ka, kb = a.register(selector, OP_WRITE), b.register(selector, OP_WRITE)
        selected = selector.selected_keys()
        for name in ("add", "update", "__ior__"):
            with pytest.raises(UnsupportedOperationError):
                getattr(selected, name)({ka} if name != "add" else ka)
        assert selected == set()
        assert selector.select_now() == 2 and selected == {ka, kb}
        for key in selected:  # a snapshot: removing while iterating is fine
            selected.discard(key)
        assert selected == set() and ka.ready_ops() == OP_WRITE  # ready sets stay
        assert selector.select_now() == 2
        selected -= {ka}
        assert selected == {kb}
        with pytest.raises(KeyError):
            selected.remove(ka)
        assert selected.pop() is kb and selected == set()
        with pytest.raises(KeyError):
            selected.pop()
        assert selector.select_now() == 2
        selected.clear()
        assert len(selected) == 0


def test_select_zero_polls_as_pythons_selectors_do(selector: Selector) -> None:
    """A deliberate difference: Java's select(0) blocks until woken; here 0 means
    "do not wait", as for ``selectors`` and ``select.epoll.poll`` (README)."""
    with pair() as (ch, _peer):
        ch.register(selector, OP_READ)
        start = time.monotonic()
        assert selector.select(0) == 0 and selector.select(0.0) == 0
        assert time.monotonic() - start < TIMEOUT / 2
