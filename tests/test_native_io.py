"""The compiled per-call I/O (``zcio._native`` io_read/io_write) against the Python path.

Each differential test runs the same call twice on twin buffers and twin descriptors:
once as the channel runs it (the compiled path, when the accelerator is loaded) and once
inside ``_syscalls.override`` of a default layer, which forces the Python path through
``SYS`` (the one rule: a test's layer sees every call).  Counts, positions, limits, the
bytes moved, the file's or peer's bytes, the errors and the metrics must all agree.

The race tests hold for both paths (and run in the pure-Python pass too): a channel
closed, or a buffer released, while a write is blocked in the kernel.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcio
from channel_kinds import close_while_blocked
from what_ran import python_ran
from zcio import (
    AsynchronousCloseError,
    ByteBuffer,
    ClosedChannelError,
    FileChannel,
    IllegalArgumentError,
    OpenOption,
    Pipe,
    SocketChannel,
    _syscalls,
)
from zcio._accel import native
from zcio._metrics import PathStats, metrics

native_only = pytest.mark.skipif(
    _syscalls.NATIVE_IO is None,
    reason="zcio._native is not loaded (pure Python): the Python path is the only one")

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

KINDS = ["heap", "direct", "wrapped", "slice", "pooled"]


def make(kind: str, data: bytes, pos: int, lim: int) -> ByteBuffer:
    """A buffer of ``kind`` holding ``data`` with the given position and limit."""
    n = len(data)
    if kind == "heap":
        b = ByteBuffer.allocate(n)
    elif kind == "direct":
        b = ByteBuffer.allocate_direct(n)
    elif kind == "wrapped":
        return ByteBuffer.wrap(bytearray(data)).limit(lim).position(pos)
    elif kind == "pooled":
        b = zcio.PooledAllocator.default().allocate(n)
    else:  # a slice of a larger direct buffer, offset by 3 (its release frees both)
        b = ByteBuffer.allocate_direct(n + 5).position(3).limit(3 + n).slice()
    b.put(0, data)
    return b.limit(lim).position(pos)


def state(b: ByteBuffer) -> tuple[int, int, bytes]:
    """Position, limit and every byte of the buffer's capacity."""
    whole = b.duplicate().clear()
    out = bytearray(whole.remaining())
    whole.get(out)
    return b.position(), b.limit(), bytes(out)


def dispose(*bufs: ByteBuffer) -> None:
    for b in bufs:
        b.release()


def outcome(fn: Callable[[], int]) -> tuple[str, Any]:
    """("ok", count) or ("error", (type, errno)): what a call did, comparably."""
    try:
        return "ok", fn()
    except OSError as e:
        return "error", (type(e), e.errno)
    except Exception as e:
        return "error", (type(e), None)


@contextmanager
def python_path() -> Iterator[None]:
    """Force the Python path: a layer that is not the default one turns NATIVE_IO off."""
    with _syscalls.override(_syscalls.Syscalls()):
        assert _syscalls.NATIVE_IO is None
        yield


@contextmanager
def taking(forced: bool) -> Iterator[None]:
    """The Python path if ``forced``, else the channel's own choice (compiled)."""
    if forced:
        with python_path():
            yield
    else:
        yield


T = TypeVar("T")


def twins(trial: Callable[[bool], T]) -> list[T]:
    """``trial`` run on the compiled path, then on the Python path."""
    return [trial(False), trial(True)]


def counters(path: str) -> PathStats:
    return metrics.path(path)


def delta(path: str, fn: Callable[[], tuple[str, Any]]) -> tuple[tuple[str, Any], PathStats]:
    before = counters(path)
    out = fn()
    return out, counters(path) - before


class Spy:
    """A stand-in for NATIVE_IO that counts the calls the compiled path handled: from a
    channel's Python method through NATIVE_IO, or (``call``) by the compiled method
    itself (native/chan.c: no Python function of zcio runs during the call)."""

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, counted as handled if no Python code of zcio but the metrics ran."""
        ran, result, error = python_ran(fn)
        if error is not None:
            raise error
        if not ran:
            self.handled += 1
        return result  # type: ignore[no-any-return]

    def __init__(self, real: Any) -> None:
        self.real, self.handled = real, 0

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.real, name)

        def call(*args: Any) -> Any:
            r = fn(*args)
            if r is not NotImplemented:
                self.handled += 1
            return r

        return call


# -- the rule: a test's layer sees every call ---------------------------------------------


def test_override_turns_the_compiled_path_off_and_back_on() -> None:
    before = _syscalls.NATIVE_IO
    with _syscalls.override(_syscalls.Syscalls()):
        assert _syscalls.NATIVE_IO is None
    assert _syscalls.NATIVE_IO is before


def test_an_installed_layer_sees_a_single_buffer_write(tmp_path: Path) -> None:
    seen: list[str] = []

    class Layer(_syscalls.Syscalls):
        def pwrite(self, fd: int, buf: memoryview, offset: int) -> int:
            seen.append("pwrite")
            return super().pwrite(fd, buf, offset)

    with FileChannel.open(tmp_path / "f", OpenOption.WRITE, OpenOption.CREATE) as ch:
        b = ByteBuffer.allocate_direct(8)
        with _syscalls.override(Layer()):
            assert ch.write(b, 0) == 8
        b.release()
    assert seen == ["pwrite"]


@native_only
def test_the_compiled_path_takes_plain_buffers_only(tmp_path: Path, monkeypatch: Any) -> None:
    spy = Spy(_syscalls.NATIVE_IO)
    monkeypatch.setattr(_syscalls, "NATIVE_IO", spy)
    path = tmp_path / "f"
    path.write_bytes(bytes(range(64)))
    with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch:
        b = ByteBuffer.allocate_direct(16)
        assert spy.call(lambda: ch.read(b, 0)) == 16 and spy.handled == 1
        m = ch.map(zcio.MapMode.READ_WRITE, 0, 16)
        assert spy.call(lambda: ch.read(m, 16)) == 16 and spy.handled == 1  # mapped: Python
        ro = ByteBuffer.allocate(4).as_read_only_buffer()
        with pytest.raises(IllegalArgumentError):
            spy.call(lambda: ch.read(ro, 0))
        assert spy.handled == 1
        b.flip()
        assert spy.call(lambda: ch.write(b, 32)) == 16 and spy.handled == 2
        m.release()
        b.release()


def test_a_typed_view_is_never_taken_as_bytes(tmp_path: Path) -> None:
    """Typed views share the buffer state but count in elements: refused both ways."""
    path = tmp_path / "f"
    path.write_bytes(bytes(range(32)))

    def trial(forced: bool) -> Any:
        b = ByteBuffer.allocate_direct(16)
        view: Any = b.as_int_buffer()  # deliberately the wrong type
        with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch, taking(forced):
            result = (outcome(lambda: ch.read(view, 0)), outcome(lambda: ch.write(view, 0)),
                      view.position(), state(b), path.read_bytes())
        b.release()
        return result

    results = twins(trial)
    assert results[0] == results[1]
    assert results[0][0][0] == "error" and results[0][1][0] == "error"


# -- files ------------------------------------------------------------------------------


@native_only
@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.binary(min_size=0, max_size=48),
       cut=st.data(), at=st.one_of(st.none(), st.integers(0, 80)),
       file_size=st.integers(0, 64), writing=st.booleans())
def test_file_read_write_match_the_python_path(
        tmp_path: Path, kind: str, data: bytes, cut: st.DataObject, at: int | None,
        file_size: int, writing: bool) -> None:
    lim = cut.draw(st.integers(0, len(data)))
    pos = cut.draw(st.integers(0, lim))
    content = bytes((7 * i + 1) & 0xFF for i in range(file_size))

    def trial(forced: bool) -> Any:
        path = tmp_path / f"f{int(forced)}"
        path.write_bytes(content)
        b = make(kind, data, pos, lim)
        with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch:
            ch.position(5 if file_size >= 5 else 0)

            def call() -> tuple[str, Any]:
                op = ch.write if writing else ch.read
                return outcome(lambda: op(b) if at is None else op(b, at))

            name = "file_write" if writing else "file_read"
            with taking(forced):
                out, d = delta(name, call)
            result = (out, d, state(b), ch.position(), path.read_bytes())
        dispose(b)
        return result

    results = twins(trial)
    assert results[0] == results[1]


@native_only
def test_file_errors_match(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 32)

    def trial(forced: bool) -> Any:
        fd = os.open(path, os.O_RDWR)
        ch = FileChannel(fd, True, True, owns_fd=False)
        os.close(fd)  # EBADF behind the channel's back (nothing opens in between)
        b = ByteBuffer.allocate_direct(8)

        def calls() -> list[tuple[str, Any]]:
            return [outcome(lambda: ch.read(b, 0)), outcome(lambda: ch.write(b, 0)),
                    outcome(lambda: ch.read(b)), outcome(lambda: ch.write(b))]

        with taking(forced):
            got = calls()
        ch.close()
        closed = [outcome(lambda: ch.read(b, 0)), outcome(lambda: ch.write(b))]
        result = (got, closed, state(b))
        b.release()
        return result

    results = twins(trial)
    assert results[0] == results[1]
    got, closed, _ = results[0]
    assert got[0] == ("error", (OSError, errno.EBADF))
    assert closed == [("error", (ClosedChannelError, None))] * 2


# -- sockets ----------------------------------------------------------------------------


def _pair(sndbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return a, b


@native_only
@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.binary(min_size=0, max_size=48), cut=st.data(),
       incoming=st.binary(min_size=0, max_size=64), shut=st.booleans())
def test_socket_read_write_match_the_python_path(
        kind: str, data: bytes, cut: st.DataObject, incoming: bytes, shut: bool) -> None:
    lim = cut.draw(st.integers(0, len(data)))
    pos = cut.draw(st.integers(0, lim))
    def trial(forced: bool) -> Any:
        a, peer = _pair()
        ch = SocketChannel.from_socket(a)
        ch.configure_blocking(False)
        w, r = make(kind, data, pos, lim), make(kind, data, pos, lim)
        if incoming:
            peer.sendall(incoming)
        if shut:
            peer.shutdown(socket.SHUT_WR)

        def calls() -> list[Any]:
            return [delta("socket_write", lambda: outcome(lambda: ch.write(w))),
                    delta("socket_read", lambda: outcome(lambda: ch.read(r)))]

        with taking(forced):
            got = calls()
        peer.setblocking(False)
        try:
            arrived = peer.recv(1 << 16)
        except BlockingIOError:
            arrived = b""
        result = (got, state(w), state(r), arrived)
        ch.close()
        peer.close()
        dispose(w, r)
        return result

    results = twins(trial)
    assert results[0] == results[1]


@native_only
@pytest.mark.parametrize("kind", KINDS)
def test_short_writes_then_eagain_on_a_full_socket(kind: str) -> None:
    size = 1 << 18
    payload = bytes((i * 31) & 0xFF for i in range(size))

    def trial(forced: bool) -> None:
        a, peer = _pair(sndbuf=4096)
        ch = SocketChannel.from_socket(a)
        ch.configure_blocking(False)
        b = make(kind, payload, 0, size)
        counts = []

        def fill() -> None:
            while True:
                n = ch.write(b)
                counts.append(n)
                if n == 0:
                    return

        with taking(forced):
            fill()
        moved = sum(counts)
        assert 0 < counts[0] < size  # a short write: positions say exactly what moved
        assert b.position() == moved and b.limit() == size
        got = bytearray()
        peer.setblocking(False)
        while True:
            try:
                chunk = peer.recv(1 << 16)
            except BlockingIOError:
                break
            got += chunk
        assert bytes(got) == payload[:moved]
        ch.close()
        peer.close()
        b.release()

    trial(False)
    trial(True)


@native_only
def test_socket_errors_match() -> None:
    def trial(forced: bool) -> Any:
        a, peer = _pair()
        ch = SocketChannel.from_socket(a)
        peer.close()
        b = ByteBuffer.allocate_direct(8)
        with taking(forced):
            got = delta("socket_write", lambda: outcome(lambda: ch.write(b)))
        result = (got, state(b))
        ch.close()
        b.release()
        return result

    results = twins(trial)
    assert results[0] == results[1]
    assert results[0][0][0] == ("error", (BrokenPipeError, errno.EPIPE))


# -- pipes ------------------------------------------------------------------------------


@native_only
@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.binary(min_size=0, max_size=48), cut=st.data(),
       room=st.integers(0, 40), close_sink=st.booleans())
def test_pipe_read_write_match_the_python_path(
        kind: str, data: bytes, cut: st.DataObject, room: int, close_sink: bool) -> None:
    lim = cut.draw(st.integers(0, len(data)))
    pos = cut.draw(st.integers(0, lim))
    def trial(forced: bool) -> Any:
        p = Pipe.open()
        p.source().configure_blocking(False)
        p.sink().configure_blocking(False)
        w, r = make(kind, data, pos, lim), make(kind, bytes(room), 0, room)

        def calls() -> list[Any]:
            out = [delta("pipe_write", lambda: outcome(lambda: p.sink().write(w)))]
            if close_sink:
                p.sink().close()
            out.append(delta("pipe_read", lambda: outcome(lambda: p.source().read(r))))
            out.append(delta("pipe_read", lambda: outcome(lambda: p.source().read(r))))
            return out

        with taking(forced):
            got = calls()
        result = (got, state(w), state(r))
        p.close()
        dispose(w, r)
        return result

    results = twins(trial)
    assert results[0] == results[1]


@native_only
def test_pipe_write_after_the_read_end_closed_is_epipe_both_ways() -> None:
    def trial(forced: bool) -> Any:
        p = Pipe.open()
        p.source().close()
        b = ByteBuffer.allocate_direct(8)
        with taking(forced):
            got = delta("pipe_write", lambda: outcome(lambda: p.sink().write(b)))
        result = (got, state(b))
        p.close()
        b.release()
        return result

    results = twins(trial)
    assert results[0] == results[1]
    assert results[0][0][0] == ("error", (BrokenPipeError, errno.EPIPE))


# -- gather writes: several buffers, one call ----------------------------------------------

BUFS = st.lists(st.tuples(st.sampled_from(KINDS), st.binary(min_size=0, max_size=24),
                          st.integers(0, 24), st.integers(0, 24)), min_size=0, max_size=6)


def make_all(specs: list[tuple[str, bytes, int, int]]) -> list[ByteBuffer]:
    out = []
    for kind, data, a, b in specs:
        lim = min(max(a, b), len(data))
        out.append(make(kind, data, min(a, b, lim), lim))
    return out


@native_only
@SETTINGS
@given(specs=BUFS, target=st.sampled_from(["socket", "file", "pipe"]))
def test_gather_writes_match_the_python_path(
        tmp_path: Path, specs: list[tuple[str, bytes, int, int]], target: str) -> None:
    def trial(forced: bool) -> Any:
        bufs = make_all(specs)
        if target == "socket":
            a, peer = _pair()
            ch: Any = SocketChannel.from_socket(a)
            name, drain = "socket_write", peer.fileno()
        elif target == "pipe":
            ch = p = Pipe.open()
            name, drain = "pipe_write", p.source().fileno()
        else:
            path = tmp_path / f"g{int(forced)}"
            path.write_bytes(b"")
            ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
            name, drain = "file_write", -1
        writer = p.sink() if target == "pipe" else ch
        with taking(forced):
            out, d = delta(name, lambda: outcome(lambda: writer.write(bufs)))
        if drain >= 0:
            os.set_blocking(drain, False)
            try:
                arrived = os.read(drain, 1 << 16)
            except BlockingIOError:
                arrived = b""
        else:
            arrived = path.read_bytes()
        result = (out, d, [state(b) for b in bufs], arrived)
        ch.close()
        if target == "socket":
            peer.close()
        dispose(*bufs)
        return result

    results = twins(trial)
    assert results[0] == results[1]


@native_only
def test_a_short_gather_write_moves_positions_buffer_by_buffer() -> None:
    part = 1 << 15
    payload = [bytes([i + 1]) * part for i in range(8)]

    def trial(forced: bool) -> tuple[int, list[int]]:
        a, peer = _pair(sndbuf=4096)
        ch = SocketChannel.from_socket(a)
        ch.configure_blocking(False)
        bufs = [make("direct", d, 0, part) for d in payload]
        with taking(forced):
            n = ch.write(bufs)
            again = []
            while True:  # until the socket is full: then 0, nothing moved
                m = ch.write(bufs)
                again.append(m)
                if m == 0:
                    break
        moved = n + sum(again)
        assert 0 < n < part * 8
        positions = [b.position() for b in bufs]
        expect = [min(part, max(0, moved - i * part)) for i in range(8)]
        assert positions == expect
        got = bytearray()
        peer.setblocking(False)
        while True:
            try:
                got += peer.recv(1 << 16)
            except BlockingIOError:
                break
        assert bytes(got) == b"".join(payload)[:moved]
        ch.close()
        peer.close()
        dispose(*bufs)
        return moved, positions

    twins(trial)


#: Part sizes either side of the compiled socket gather's rules: parts of at most 512
#: bytes on average, 64 KiB in all, are copied into one block and sent with one send();
#: more than 64 buffers (GATHER_STACK) put its arrays on the heap.
SIZES = st.lists(st.one_of(st.integers(0, 40), st.integers(400, 700)), max_size=80)
BIG = st.lists(st.integers(2000, 20000), max_size=2)


def _socket_gather_twins(sizes: list[int], chosen: list[str]) -> None:
    """One gather write of buffers of ``sizes`` bytes (of the kinds ``chosen``) to a
    non-blocking socket, compiled and through the Python path: the same count, metrics,
    indexes and bytes arrived, a prefix of what was written."""
    payload = os.urandom(sum(sizes))

    def trial(forced: bool) -> Any:
        bufs, off = [], 0
        for kind, n in zip(chosen, sizes, strict=True):
            bufs.append(make(kind, payload[off:off + n], 0, n))
            off += n
        a, peer = _pair()
        ch = SocketChannel.from_socket(a)
        ch.configure_blocking(False)  # never waits: a full socket says 0
        with taking(forced):
            out, d = delta("socket_write", lambda: outcome(lambda: ch.write(bufs)))
        peer.setblocking(False)
        arrived = bytearray()
        while True:
            try:
                arrived += peer.recv(1 << 17)
            except BlockingIOError:
                break
        result = (out, d, [(b.position(), b.limit()) for b in bufs], bytes(arrived))
        ch.close()
        peer.close()
        dispose(*bufs)
        return result

    results = twins(trial)
    assert results[0] == results[1]
    assert results[0][3] == payload[:len(results[0][3])]


@native_only
@SETTINGS
@given(sizes=SIZES, big=BIG, at=st.data(), kinds=st.data())
def test_socket_gathers_of_every_size_match_the_python_path(
        sizes: list[int], big: list[int], at: st.DataObject, kinds: st.DataObject) -> None:
    for b in big:
        sizes.insert(at.draw(st.integers(0, len(sizes))), b)
    _socket_gather_twins(sizes, [kinds.draw(st.sampled_from(KINDS)) for _ in sizes])


@native_only
@pytest.mark.parametrize("sizes", [
    [500] * 200,  # the block (64 KiB) full after 131 parts: the rest sent as they are
    [100, 5000, 100, 100, 0, 100, 5000, 100],  # runs between large parts, a lone one
    [512, 513, 512, 512, 1, 0, 0, 1],  # either side of the small-part bound
    [512] * 63 + [600],  # small heads, then a body: the held pass declines at once
    [100, 200, 0],  # the last part empty: the held pass takes the list
], ids=["block-full", "runs", "bounds", "heads-then-body", "empty-last"])
def test_socket_gathers_of_mixed_parts_match_the_python_path(sizes: list[int]) -> None:
    _socket_gather_twins(sizes, [KINDS[i % len(KINDS)] for i in range(len(sizes))])


@native_only
def test_a_short_coalesced_gather_moves_positions_buffer_by_buffer() -> None:
    """200 parts of 300 bytes (copied into one block) to a socket that takes part of it:
    positions say exactly what the kernel took, buffer by buffer."""
    part, count = 300, 200
    payload = os.urandom(part * count)
    for forced in (False, True):
        a, peer = _pair(sndbuf=4096)
        ch = SocketChannel.from_socket(a)
        ch.configure_blocking(False)
        bufs = [make("pooled", payload[i * part:(i + 1) * part], 0, part)
                for i in range(count)]
        with taking(forced):
            moved = ch.write(bufs)
        assert 0 < moved < part * count
        assert [b.position() for b in bufs] == [min(part, max(0, moved - i * part))
                                                for i in range(count)]
        peer.setblocking(False)
        got = bytearray()
        while True:
            try:
                got += peer.recv(1 << 16)
            except BlockingIOError:
                break
        assert bytes(got) == payload[:moved]
        ch.close()
        peer.close()
        dispose(*bufs)


@native_only
def test_a_gather_changes_the_shared_position_ints_counts_exactly() -> None:
    """Buffers moving between the same two positions share both int objects, whose
    reference counts the compiled gather changes once per run of equal ones: the counts
    must come out exact (too low frees an int still in use; too high leaks it).  Runs
    are broken by a buffer at another position and by empty ones."""
    a, peer = _pair()
    ch = SocketChannel.from_socket(a)

    def fresh(n: int) -> list[ByteBuffer]:
        bufs = [make("direct", bytes(1300), 1000, 1300) for _ in range(n)]
        bufs[n // 2].limit(1200).position(900)  # another run in the middle: to 1200
        bufs[n // 3].position(1300)  # nothing left: no step
        return bufs

    def drain() -> None:
        peer.setblocking(False)
        try:
            while peer.recv(1 << 17):
                pass
        except BlockingIOError:
            pass

    first = fresh(70)
    ch.write(first)
    drain()
    to, to_other = first[0]._pos, first[70 // 2]._pos  # 1300 and 1200, as they now are
    bufs = fresh(70)
    start = bufs[0]._pos
    movers = [b for i, b in enumerate(bufs) if i not in (70 // 2, 70 // 3)]
    assert all(b._pos is start for b in movers)
    before = (sys.getrefcount(start), sys.getrefcount(to), sys.getrefcount(to_other))
    assert ch.write(bufs) == 69 * 300
    drain()
    assert all(b._pos is to for b in movers) and bufs[70 // 2]._pos is to_other
    after = (sys.getrefcount(start), sys.getrefcount(to), sys.getrefcount(to_other))
    assert after == (before[0] - 68, before[1] + 68, before[2] + 1)
    ch.close()
    peer.close()
    dispose(*first, *bufs)


# -- the held gather: 2 to 64 parts of at most 512 bytes sent with the GIL held ------------


def _parts(count: int, part: int, skip: int = 0) -> tuple[bytes, list[ByteBuffer]]:
    """``count`` pooled buffers with ``part`` bytes left each, after ``skip`` bytes (the
    position), and those bytes in order."""
    payload, top = os.urandom(count * part), skip + part  # one int each: shared
    return payload, [make("pooled", bytes(skip) + payload[i * part:(i + 1) * part], skip,
                          top) for i in range(count)]


def _counted_once() -> None:
    """One socket write, so that metrics counts "socket_write" in C from now on: the
    held gather does not take a path counted for the first time (record() runs)."""
    a, peer = _pair()
    with SocketChannel.from_socket(a) as ch:
        ch.write(ByteBuffer.wrap(b"x"))
    a.close()
    peer.close()


def _received(peer: socket.socket) -> bytes:
    """Everything the peer can read now, without waiting."""
    peer.setblocking(False)
    got = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 17)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


@native_only
@pytest.mark.parametrize("full", [True, False], ids=["full: EAGAIN", "room for a part"])
def test_a_held_gather_on_a_blocking_channel_goes_on_until_everything_is_taken(
        full: bool) -> None:
    """64 parts of 500 bytes (the held gather's most) on a blocking channel whose socket
    cannot take them all at once: its non-blocking send takes what fits (nothing, when
    the socket is full), and the operation goes on, registered, waiting as a blocking
    call must, until the reader has made room: the whole count, one operation of two
    calls, every position at its limit, the bytes in order after what was there."""
    _counted_once()
    a, peer = _pair(sndbuf=4096)
    ch = SocketChannel.from_socket(a)
    filler = bytearray()
    if full:
        while True:
            try:
                filler += b"f" * a.send(b"f" * 1024, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
    payload, bufs = _parts(64, 500)
    got = bytearray()

    def read_later() -> None:
        time.sleep(0.3)  # the write is waiting by now
        while len(got) < len(filler) + len(payload):
            got.extend(peer.recv(1 << 16))

    reader = threading.Thread(target=read_later)
    reader.start()
    out, d = delta("socket_write", lambda: outcome(lambda: ch.write(bufs)))
    reader.join(10)
    assert out == ("ok", len(payload))
    assert (d.operations, d.syscalls, d.user_bytes) == (1, 2, len(payload))
    assert all(b.position() == b.limit() == 500 for b in bufs)
    assert bytes(got) == bytes(filler) + payload
    assert ch._users == []
    ch.close()
    peer.close()
    dispose(*bufs)


@native_only
def test_a_close_while_a_held_gather_goes_on_says_what_moved() -> None:
    """A blocking channel's held gather that goes on waiting for the rest, closed by
    another thread: AsynchronousCloseError whose count is what the socket took, the
    positions saying the same, the bytes that arrived a prefix, nothing registered."""
    _counted_once()
    a, peer = _pair(sndbuf=4096)
    ch = SocketChannel.from_socket(a)
    payload, bufs = _parts(64, 500)
    err = close_while_blocked(ch, lambda: ch.write(bufs))
    assert isinstance(err, AsynchronousCloseError)  # registered: not ClosedChannelError
    moved = err.moved
    assert 0 < moved < len(payload)  # the held send took part, the rest waited
    assert sum(b.position() for b in bufs) == moved
    assert _received(peer) == payload[:moved]
    assert ch._users == [] and ch._closing_fd == -1
    peer.close()
    dispose(*bufs)


@native_only
def test_a_short_held_gather_moves_positions_buffer_by_buffer() -> None:
    """64 parts of 500 bytes to a non-blocking channel whose socket takes part of them:
    one call, the count what it took, positions buffer by buffer (the parts past it put
    back as they were), the bytes a prefix; a second call sends on from there."""
    _counted_once()
    a, peer = _pair(sndbuf=4096)
    ch = SocketChannel.from_socket(a)
    ch.configure_blocking(False)
    payload, bufs = _parts(64, 500, skip=1000)
    start, lim = bufs[0]._pos, bufs[0]._lim
    assert all(b._pos is start and b._lim is lim for b in bufs)
    before = (sys.getrefcount(start), sys.getrefcount(lim))
    out, d = delta("socket_write", lambda: outcome(lambda: ch.write(bufs)))
    assert out[0] == "ok" and 0 < out[1] < len(payload)
    moved = out[1]
    assert (d.operations, d.syscalls, d.user_bytes) == (1, 1, moved)
    assert [b.position() - 1000 for b in bufs] == [min(500, max(0, moved - i * 500))
                                                   for i in range(64)]
    # the parts put back hold the int they held, and their limits' counts are as they were
    went = sum(b.position() > 1000 for b in bufs)
    assert sys.getrefcount(start) == before[0] - went
    assert sys.getrefcount(lim) == before[1]
    first = _received(peer)
    assert first == payload[:moved]
    rest = ch.write(bufs)
    assert rest > 0 and _received(peer) == payload[moved:moved + rest]
    ch.close()
    peer.close()
    dispose(*bufs)


@native_only
def test_a_held_gather_changes_the_position_ints_counts_exactly() -> None:
    """Taken whole, each part's position becomes the int its limit holds: the limit's
    count rises by one per part and the old position's falls by one, exactly."""
    _counted_once()
    a, peer = _pair()
    ch = SocketChannel.from_socket(a)
    bufs = [make("direct", bytes(1300), 1000, 1300) for _ in range(40)]
    start, lim = bufs[0]._pos, bufs[0]._lim
    assert all(b._pos is start and b._lim is lim for b in bufs)
    before = (sys.getrefcount(start), sys.getrefcount(lim))
    assert ch.write(bufs) == 40 * 300
    assert all(b._pos is lim for b in bufs)
    assert (sys.getrefcount(start), sys.getrefcount(lim)) == (before[0] - 40, before[1] + 40)
    assert _received(peer) == bytes(40 * 300)
    ch.close()
    peer.close()
    dispose(*bufs)


def _gather_twins(count: int, layout: list[int],
                  prepare: Callable[[SocketChannel, socket.socket], None]) -> list[Any]:
    """``ch.write([bufs[i] for i in layout])`` of ``count`` pooled buffers of 40 bytes,
    the channel and its peer ``prepare``-d, compiled and through the Python path: the
    outcome, the metrics, the buffers' indexes and the bytes arrived, for each."""
    def trial(forced: bool) -> Any:
        a, peer = _pair()
        ch = SocketChannel.from_socket(a)
        prepare(ch, peer)
        bufs = [make("pooled", bytes([65 + i]) * 40, 0, 40) for i in range(count)]
        with taking(forced):
            out, d = delta("socket_write", lambda: outcome(lambda: ch.write(
                [bufs[i] for i in layout])))
        result = (out, d, [(b.position(), b.limit()) for b in bufs],
                  b"" if peer.fileno() < 0 else _received(peer))
        ch.close()
        peer.close()
        dispose(*bufs)
        return result

    return twins(trial)


@native_only
@pytest.mark.parametrize("layout", [[0, 1, 0], [0, 1, 2, 1], [0, 0]],
                         ids=["a-b-a", "a-b-c-b", "a-a"])
def test_a_buffer_listed_twice_in_a_gather_does_as_the_python_path(layout: list[int]) -> None:
    """A buffer listed twice is not the held gather's (its position moves under it): the
    general path takes it, and the count, the positions, the bytes and the metrics are
    the Python path's."""
    results = _gather_twins(max(layout) + 1, layout, lambda ch, peer: None)
    assert results[0] == results[1]


@native_only
@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "non-blocking"])
def test_a_held_gather_to_a_closed_peer_raises_as_the_python_path(blocking: bool) -> None:
    """The peer gone: BrokenPipeError, nothing moved, the failed call counted, as the
    Python path does."""
    def prepare(ch: SocketChannel, peer: socket.socket) -> None:
        ch.configure_blocking(blocking)
        peer.close()

    results = _gather_twins(8, list(range(8)), prepare)
    assert results[0] == results[1]
    assert results[0][0] == ("error", (BrokenPipeError, errno.EPIPE))


@native_only
def test_gather_of_a_composite_or_mapped_buffer_takes_the_python_path(
        tmp_path: Path, monkeypatch: Any) -> None:
    spy = Spy(_syscalls.NATIVE_IO)
    monkeypatch.setattr(_syscalls, "NATIVE_IO", spy)
    path = tmp_path / "m"
    path.write_bytes(b"m" * 16)
    with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as src, \
            FileChannel.open(tmp_path / "out", OpenOption.WRITE, OpenOption.CREATE) as ch:
        m = src.map(zcio.MapMode.READ_ONLY, 0, 16)
        b = ByteBuffer.allocate_direct(4)
        assert ch.write([b, m]) == 20 and spy.handled == 0
        b.clear()
        assert ch.write([b]) == 4 and spy.handled == 1
        m.release()
        b.release()
    assert (tmp_path / "out").read_bytes() == bytes(4) + b"m" * 16 + bytes(4)


# -- races: close and release while a write is blocked ------------------------------------


def _blocked_writer(ch: SocketChannel, b: ByteBuffer) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(ch.write(b))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_blocked(t: threading.Thread, seconds: float = 0.3) -> None:
    time.sleep(seconds)
    assert t.is_alive(), "the write did not block"


def test_close_while_a_write_blocks_raises_and_never_writes_elsewhere(tmp_path: Path) -> None:
    size = 1 << 20
    a, peer = _pair(sndbuf=4096)
    ch = SocketChannel.from_socket(a)
    b = ByteBuffer.allocate_direct(size)
    t, out = _blocked_writer(ch, b)
    _wait_blocked(t)
    number = ch.fileno()
    ch.close()
    # Files opened now cannot get the writer's descriptor number while it is inside.
    files = [open(tmp_path / f"f{i}", "wb") for i in range(4)]  # noqa: SIM115
    t.join(10)
    assert not t.is_alive()
    for f in files:
        f.close()
    assert all((tmp_path / f"f{i}").stat().st_size == 0 for i in range(4))
    (err,) = out
    assert isinstance(err, AsynchronousCloseError), err
    assert err.moved == b.position() and 0 < err.moved < size
    assert number >= 0
    peer.close()
    b.release()


#: The end of each release race below: the peer reads everything, the writer's count
#: is whole and the bytes are those the buffers held when the write began.
_SENT_WHOLE = textwrap.dedent("""
    got = bytearray()
    while len(got) < size:
        got += peer.recv(1 << 16)
    t.join(10)
    assert out == [size], out
    assert bytes(got) == payload, "the bytes sent changed under release()"
    ch.close(); peer.close()
    print("ok")
""")


def _race(script: str, *args: str) -> None:
    """Run ``script`` in a subprocess (a use after free would crash the interpreter)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


_LISTED_TWICE = textwrap.dedent("""
    import socket, sys
    from zcio import ByteBuffer, SocketChannel
    skip, layout = int(sys.argv[1]), [int(c) for c in sys.argv[2].split(",")]
    a, peer = socket.socketpair()
    ch = SocketChannel.from_socket(a)
    start = int(str(skip))  # ints of their own: the index table's skip + 300 is held
    lim = int(str(skip + 300))  # by nothing but the table until the write

    def make():
        b = ByteBuffer.allocate_direct(skip + 1000)
        b._pos, b._lim = start, lim
        return b

    bufs = [make() for _ in range(max(layout) + 1)]
    before = sys.getrefcount(start)
    assert ch.write([bufs[i] for i in layout]) == 300 * len(layout)
    junk = [int(str(i)) * 7 for i in range(100_000)]  # reuse what a wrong count freed
    assert all((b.position(), b.limit()) == (skip + 300, skip + 300) for b in bufs)
    assert sys.getrefcount(start) == before - len(bufs)
    if skip + 300 < 1 << 16:  # the table's: it, the buffers, ``end`` and the argument
        end = bufs[0]._pos
        assert all(b._pos is end for b in bufs)
        assert sys.getrefcount(end) == len(bufs) + 3, sys.getrefcount(end)
    got = bytearray()
    while len(got) < 300 * len(layout):
        got += peer.recv(1 << 16)
    assert bytes(got) == bytes(len(got))
    ch.close(); peer.close()
    for b in bufs:
        b.release()
    print("ok")
""")


@native_only
@pytest.mark.parametrize("skip", [51_000, 70_000], ids=["table-ints", "past-the-table"])
@pytest.mark.parametrize("layout", ["0,1,0,2,1", "0,0,1", "0,0,0,1"])
def test_a_gather_listing_buffers_twice_changes_the_ints_counts_exactly(
        skip: int, layout: str) -> None:
    """Compiled (the general path: the held one leaves a list with a buffer twice to
    it), each buffer ends at its limit, set from the index it was listed at, once per
    listing; the old position's count falls by one per buffer and the new one's rises
    by one per buffer, exactly, though later listings let go of the int an earlier one
    set (the table's, whose increments still wait: made first, or the count could
    reach zero and free it) or made (past the table).  In a subprocess: a count fallen
    to zero would free an int still in use."""
    _race(_LISTED_TWICE, str(skip), layout)


_RELEASE_RACE = textwrap.dedent("""
    import socket, threading, time
    from zcio import ByteBuffer, SocketChannel
    size = 1 << 20
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    a, peer = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ch = SocketChannel.from_socket(a)
    b = ByteBuffer.allocate_direct(size).put(payload).flip()
    out = []
    t = threading.Thread(target=lambda: out.append(ch.write(b)))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    b.release()  # the memory stays pinned under the blocked send
    time.sleep(0.1)
""") + _SENT_WHOLE


def test_release_while_a_write_blocks_keeps_the_memory_until_it_returns() -> None:
    """In a subprocess: a use after free would crash the interpreter."""
    _race(_RELEASE_RACE)


_GATHER_RELEASE_RACE = textwrap.dedent("""
    import gc, socket, sys, threading, time
    from zcio import ByteBuffer, PooledAllocator, SocketChannel
    sizes = []
    for group in sys.argv[1].split(","):  # "SIZE*COUNT,..."
        n, times = group.split("*")
        sizes += [int(n)] * int(times)
    size, count = sum(sizes), len(sizes)
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    a, peer = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ch = SocketChannel.from_socket(a)
    pool = PooledAllocator.default()
    ends = [sum(sizes[:i]) for i in range(count + 1)]
    bufs = [pool.allocate(sizes[i]).put(0, payload[ends[i]:ends[i + 1]]) for i in range(count)]
    out = []
    t = threading.Thread(target=lambda: out.append(ch.write(bufs)))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    for b in bufs:
        b.release()  # slots back to the pool, and reused at once:
    again = [pool.allocate(n).put(0, bytes(n)) for n in sizes]
    del bufs[:]  # the list emptied under the call
    gc.collect()
    for b in again:
        b.release()
""") + _SENT_WHOLE


@pytest.mark.parametrize("sizes", ["500*120", "20000*50", "100*30,20000*2,300*40,20000*1"],
                         ids=["coalesced", "pinned", "mixed"])
def test_release_and_reuse_while_a_gather_blocks_sends_the_bytes_written(sizes: str) -> None:
    """A gather blocked in the kernel while another thread releases every buffer (its
    slot handed to a new buffer and overwritten) and empties the list: the bytes sent
    are those the buffers held at the call (copied into one block for small parts,
    which are not pinned then; pinned otherwise), the count is whole, nothing crashes
    (in a subprocess)."""
    _race(_GATHER_RELEASE_RACE, sizes)


_COPIED_NOT_PINNED = textwrap.dedent("""
    import socket, threading, time
    from zcio import PooledAllocator, SocketChannel
    a, peer = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ch = SocketChannel.from_socket(a)
    pool = PooledAllocator(name="probe")
    small = [pool.allocate(100).put(0, bytes([i]) * 100) for i in range(8)]
    big = pool.allocate(200_000).put(0, b"z" * 200_000)
    payload = b"".join(bytes([i]) * 100 for i in range(8)) + b"z" * 200_000
    out = []
    t = threading.Thread(target=lambda: out.append(ch.write([*small, big])), daemon=True)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    for b in small:  # copied into the call's block, not pinned: free for reuse at once
        b.release()
    assert pool._quarantine == [], "a copied part's slot is still exported"
    again = [pool.allocate(100).put(0, bytes(100)) for _ in range(8)]
    size = len(payload)
""") + _SENT_WHOLE.replace("print(", "for b in (*again, big):\n    b.release()\nprint(")


@native_only
def test_small_parts_copied_for_a_blocked_gather_are_not_pinned() -> None:
    """A gather of 8 small pooled buffers and a large one, blocked in the kernel: the
    small ones were copied into the call's block, so their released slots go back to
    the pool at once, not to quarantine (only the large one is pinned), and are
    overwritten by their next owners; the bytes sent are still the old ones."""
    _race(_COPIED_NOT_PINNED)


# -- the metrics counters the compiled paths add to ------------------------------------


@native_only
@SETTINGS
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(), st.booleans()), max_size=30))
def test_counts_hold_any_int_as_the_list_does(steps: list[tuple[int, int, bool]]) -> None:
    """zcio._native.Counts (one path's counters) reads back every int stored, inside the
    C range or past it, as the pure path's list of four does."""
    counts, model = native.Counts(), [0, 0, 0, 0]
    for i, value, add in steps:
        if add:
            counts[i] += value
            model[i] += value
        else:
            counts[i] = value
            model[i] = value
        assert list(counts) == model and counts[i] == model[i] and len(counts) == 4
    with pytest.raises(IndexError):
        counts[4]
    with pytest.raises(TypeError):
        counts[0] = 1.5
    with pytest.raises(TypeError):
        del counts[0]


@native_only
@pytest.mark.parametrize("several", [False, True], ids=["one buffer", "held gather"])
@pytest.mark.parametrize("start", [2 ** 62 - 50, 2 ** 63 - 1, 2 ** 64, -(2 ** 70)])
def test_the_compiled_count_hands_counters_near_or_past_the_c_range_to_record(
        start: int, several: bool) -> None:
    """Counters the C cannot add to without leaving its range (or held as Python ints)
    are added to by Metrics.record (a gather the held path would take goes the general
    way, registered, for it): the sums are exact either way."""
    a, peer = _pair()
    ch = SocketChannel.from_socket(a)
    b = ByteBuffer.wrap(bytes(100))
    ch.write(b.duplicate())  # the path exists
    counts = metrics._counts["socket_write"]
    saved = list(counts)
    try:
        counts[3] = start
        with taking(False):
            assert ch.write([b.slice(0, 40), b.slice(40, 60)] if several else b) == 100
        assert metrics.path("socket_write").user_bytes == start + 100
        assert metrics.path("socket_write").operations == saved[0] + 1
    finally:
        for i, v in enumerate(saved):
            counts[i] = v + (1 if i in (0, 1) else 100 if i == 3 else 0)
        ch.close()
        peer.close()


class _Alarm(Exception):
    pass


def _raise_alarm(signum: int, frame: object) -> None:
    raise _Alarm


@native_only
@pytest.mark.parametrize("kind", ["one buffer", "gather"])
def test_a_handler_raising_after_a_partial_write_leaves_positions_at_what_moved(
        kind: str) -> None:
    """A blocking write of 256 KiB to a pipe takes 64 KiB, then a signal whose handler
    raises cuts it short: the exception comes out, and the buffers' positions say the
    64 KiB went (the compiled call once counted it first, which runs Python code when
    the path is new in ``zcio.metrics``, so the handler raised before they moved).
    The pure-Python path cannot promise this: CPython runs the handler as soon as
    ``os.write`` returns, before any Python code sees the count."""
    data = bytes(range(256)) * 1024
    bufs = ([ByteBuffer.wrap(data)] if kind == "one buffer"
            else [ByteBuffer.wrap(data[:128 << 10]), ByteBuffer.wrap(data[128 << 10:])])
    old = signal.signal(signal.SIGALRM, _raise_alarm)
    pipe = Pipe.open()
    try:
        zcio.metrics.reset()  # the path new: counting it runs Python code
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(_Alarm):
            pipe.sink().write(bufs[0] if kind == "one buffer" else bufs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pipe.sink().close()
    got = b""
    while chunk := os.read(pipe.source().fileno(), 1 << 20):
        got += chunk
    pipe.close()
    assert len(got) > 0
    assert sum(b.position() for b in bufs) == len(got)
    assert got == data[:len(got)]
