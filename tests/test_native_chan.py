"""The compiled channel methods (``native/chan.c``) against the Python methods they replace.

FileChannel.read/write(buf[, position]), SocketChannel.read(buf)/write(buf | [bufs]),
SourceChannel.read(buf) and SinkChannel.write(buf | [bufs]) are one C method each when
the accelerator is loaded; the Python method stays in ``CHANNEL_REFERENCE`` as the
reference and slow path.  Each differential test makes the same call on twin channels,
once through the installed method and once through the reference: the answer (count or
exception), the buffer's indexes, the channel's position, the bytes and the in-flight
registry must agree.  The ways out (a subclass, keywords, an odd position, the lock
taken, a closed channel) must reach the reference with nothing moved or registered.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcio
from channel_kinds import close_while_blocked
from what_ran import python_ran
from zcio import (
    AsynchronousCloseError,
    ByteBuffer,
    FileChannel,
    OpenOption,
    Pipe,
    SinkChannel,
    SocketChannel,
    SourceChannel,
    _syscalls,
)
from zcio._channel import CHANNEL_REFERENCE

compiled = pytest.mark.skipif(
    _syscalls.NATIVE_IO is None,
    reason="zcio._native is not loaded (pure Python): the Python methods are the only ones")

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

METHODS = [(FileChannel, "read"), (FileChannel, "write"), (SocketChannel, "read"),
           (SocketChannel, "write"), (SourceChannel, "read"), (SinkChannel, "write")]


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:  # the exception's class and text are part of the answer
        return "error", (type(e).__name__, str(e))


def indexes(b: ByteBuffer) -> tuple[int, int, int]:
    return b.position(), b.limit(), b.capacity()


def through(ch: Any, name: str, reference: bool) -> Callable[..., Any]:
    """``ch.<name>`` as installed, or the Python method it replaced."""
    if not reference:
        return getattr(ch, name)  # type: ignore[no-any-return]
    ref = CHANNEL_REFERENCE[(type(ch), name)]
    return lambda *a, **k: ref(ch, *a, **k)


@pytest.mark.parametrize(("cls", "name"), METHODS, ids=lambda x: getattr(x, "__name__", x))
def test_each_method_is_compiled_exactly_when_the_accelerator_is_loaded(
        cls: type, name: str) -> None:
    method = cls.__dict__[name]
    if _syscalls.NATIVE_IO is None:
        assert not CHANNEL_REFERENCE and callable(method) and hasattr(method, "__code__")
        return
    assert type(method).__name__ == "method_descriptor"
    reference = CHANNEL_REFERENCE[(cls, name)]
    assert method.__doc__ == inspect.getdoc(reference)  # help() and the API reference
    assert method.__text_signature__.startswith("($self, ")


# -- files ----------------------------------------------------------------------------


# Mostly what the compiled method takes; now and then what it must hand over.
POSITIONS = st.one_of(st.none(), st.integers(0, 80), st.integers(0, 80),
                      st.sampled_from([-1, True, 1 << 40, 1 << 70, 2.0, "1"]))


@compiled
@settings(SETTINGS, max_examples=150)
@given(writing=st.booleans(), data=st.binary(max_size=48), cut=st.data(),
       at=POSITIONS, file_size=st.integers(0, 64), start=st.integers(0, 70),
       keyword=st.sampled_from([False, False, False, True]),
       mode=st.sampled_from(["rw", "rw", "r", "w"]),
       kind=st.sampled_from(["heap", "direct", "heap", "direct", "read-only"]))
def test_file_calls_match_the_reference(
        tmp_path: Path, writing: bool, data: bytes, cut: st.DataObject, at: Any,
        file_size: int, start: int, keyword: bool, mode: str, kind: str) -> None:
    lim = cut.draw(st.integers(0, len(data)))
    pos = cut.draw(st.integers(0, lim))
    content = bytes((5 * i + 3) & 0xFF for i in range(file_size))
    options = {"rw": (OpenOption.READ, OpenOption.WRITE), "r": (OpenOption.READ,),
               "w": (OpenOption.WRITE,)}[mode]

    def trial(reference: bool) -> Any:
        path = tmp_path / f"f{int(reference)}"
        path.write_bytes(content)
        b = (ByteBuffer.allocate_direct(len(data)) if kind == "direct"
             else ByteBuffer.allocate(len(data)))
        b.put(0, data).limit(lim).position(pos)
        if kind == "read-only":
            b = b.as_read_only_buffer()
        with FileChannel.open(path, *options) as ch:
            ch.position(start)
            fn = through(ch, "write" if writing else "read", reference)
            args: tuple[Any, ...] = () if at is None and not keyword else (at,)
            answer = outcome(lambda: fn(b, position=at) if keyword else fn(b, *args))
            result = (answer, indexes(b), ch.position(), ch._users, bytes(b.array())
                      if b.has_array() else None)
        with path.open("rb") as f:  # (a write at 2**40 makes a sparse file that size)
            got = (os.fstat(f.fileno()).st_size, f.read(200))
        if kind == "direct":
            b.release()
        return result, got

    assert trial(False) == trial(True)


def names_run(fn: Callable[[], Any]) -> set[str]:
    return set(python_ran(fn)[0])


@compiled
def test_the_ways_out_take_the_python_method(tmp_path: Path) -> None:
    """A subclass (it may override what the compiled method reads), keywords, a list
    for a file, a position that is not a plain int, a mapped buffer: the Python method
    runs.  The common call runs no Python at all."""

    class Sub(FileChannel):
        pass

    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    ch = FileChannel.open(path, OpenOption.READ)
    sub = Sub(os.open(path, os.O_RDONLY), True, False, str(path))
    b = ByteBuffer.allocate(6)
    method = {"op", "read"}  # counting_operation's wrapper, and the method
    assert not method & names_run(lambda: ch.read(b.clear(), 0))
    assert not method & names_run(lambda: ch.read(b.clear()))
    for call in (lambda: sub.read(b.clear(), 0), lambda: ch.read(b.clear(), position=0),
                 lambda: ch.read([b.clear()]), lambda: ch.read(b.clear(), True),
                 lambda: ch.read(b.clear(), 1 << 62)):
        assert method <= names_run(call)
    m = ch.map(zcio.MapMode.READ_ONLY, 0, 6)
    assert method <= names_run(lambda: ch.read(m, 0))
    m.release()
    ch.close()
    sub.close()


# -- sockets and pipes ---------------------------------------------------------------


@contextmanager
def socket_pair() -> Iterator[tuple[SocketChannel, socket.socket]]:
    a, b = socket.socketpair()
    ch = SocketChannel.from_socket(a)
    try:
        yield ch, b
    finally:
        ch.close()
        b.close()


@compiled
@SETTINGS
@given(data=st.binary(max_size=64), cut=st.data(), several=st.integers(0, 3),
       blocking=st.booleans(), shut=st.booleans(), peer_sends=st.binary(max_size=32),
       peer_closed=st.booleans())
def test_socket_calls_match_the_reference(
        data: bytes, cut: st.DataObject, several: int, blocking: bool, shut: bool,
        peer_sends: bytes, peer_closed: bool) -> None:
    lim = cut.draw(st.integers(0, len(data)))
    pos = cut.draw(st.integers(0, lim))

    def trial(reference: bool) -> Any:
        with socket_pair() as (ch, peer):
            ch.configure_blocking(blocking)
            peer.sendall(peer_sends)
            if peer_closed:
                peer.shutdown(socket.SHUT_WR)
            if shut:
                ch.shutdown_input()
                ch.shutdown_output()
            bufs = [ByteBuffer.allocate(len(data)).put(0, data).limit(lim).position(pos)
                    for _ in range(max(several, 1))]
            src: Any = bufs if several else bufs[0]
            wrote = outcome(lambda: through(ch, "write", reference)(src))
            room = ByteBuffer.allocate(16)
            got = (outcome(lambda: through(ch, "read", reference)(room))
                   if blocking is False or peer_sends or peer_closed or shut else None)
            peer.setblocking(False)
            try:
                sent = peer.recv(4096)
            except BlockingIOError:
                sent = b""
            return (wrote, got, [indexes(b) for b in bufs], indexes(room),
                    bytes(room.array()), sent, list(ch._users))

    assert trial(False) == trial(True)


@compiled
@SETTINGS
@given(data=st.binary(max_size=64), several=st.booleans(), blocking=st.booleans(),
       prefill=st.binary(max_size=16), sink_closed=st.booleans())
def test_pipe_calls_match_the_reference(data: bytes, several: bool, blocking: bool,
                                        prefill: bytes, sink_closed: bool) -> None:
    def trial(reference: bool) -> Any:
        with Pipe.open() as pipe:
            pipe.source().configure_blocking(blocking)
            src = ByteBuffer.allocate(len(data)).put(0, data)
            wrote = outcome(lambda: through(pipe.sink(), "write", reference)(
                [src] if several else src))
            if sink_closed:
                pipe.sink().close()
            room = ByteBuffer.allocate(max(len(data), 1))
            got = (outcome(lambda: through(pipe.source(), "read", reference)(room))
                   if data or not blocking or sink_closed else None)
            return wrote, got, indexes(src), indexes(room), bytes(room.array())

    assert trial(False) == trial(True)


# -- the ways out ----------------------------------------------------------------------


@compiled
def test_a_held_write_lock_sends_the_call_to_the_reference_which_waits() -> None:
    """The compiled write never waits for the channel's lock: with it taken, the Python
    method runs and waits, so two writers' bytes never interleave."""
    with socket_pair() as (ch, peer):
        b = ByteBuffer.wrap(b"late")
        done = threading.Event()
        with ch._write_lock:
            t = threading.Thread(target=lambda: (ch.write(b), done.set()))
            t.start()
            assert not done.wait(0.2)  # waiting for the lock, in the Python method
            with pytest.raises(BlockingIOError):
                peer.recv(16, socket.MSG_DONTWAIT)  # nothing sent while the lock is held
        t.join(10)
        assert done.is_set() and b.position() == 4 and peer.recv(16) == b"late"
        assert ch._users == []


@compiled
def test_closed_channels_raise_as_the_reference_does(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8)

    def trial(reference: bool) -> Any:
        ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
        ch.close()
        b = ByteBuffer.allocate(4)
        return (outcome(lambda: through(ch, "read", reference)(b, 0)),
                outcome(lambda: through(ch, "write", reference)(b)), indexes(b))

    answers = [trial(False), trial(True)]
    assert answers[0] == answers[1]
    assert answers[0][0][1][0] == "ClosedChannelError"


def test_a_blocked_compiled_read_closed_by_another_thread() -> None:
    """Closed while the compiled read waits in recv(): AsynchronousCloseError (moved 0),
    the registry empty, the descriptor closed by the last one out."""
    with socket_pair() as (ch, _peer):
        b = ByteBuffer.allocate(8)
        err = close_while_blocked(ch, lambda: ch.read(b))
        assert isinstance(err, AsynchronousCloseError)
        assert err.moved == 0 and b.position() == 0
        assert ch._users == [] and ch._closing_fd == -1


def race_writers_with_close(parts: int = 1) -> None:
    """Four threads write 16-byte messages to one socket while another closes it; each
    message in ``parts`` buffers (a gather: the held one, for 2 to 64)."""
    a, peer = socket.socketpair()
    ch = SocketChannel.from_socket(a)
    msg = b"0123456789abcdef"
    step = len(msg) // parts
    outcomes: list[str] = []

    def write() -> None:
        for _ in range(50):
            try:
                n = (ch.write(ByteBuffer.wrap(msg)) if parts == 1 else
                     ch.write([ByteBuffer.wrap(msg[i:i + step]) for i in range(0, len(msg), step)]))
                outcomes.append("ok" if n == len(msg) else f"short {n}")
            except (AsynchronousCloseError, OSError) as e:
                outcomes.append(type(e).__name__)
                return

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.001)
    ch.close()
    for t in threads:
        t.join(10)
    got = b""
    peer.setblocking(False)
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += chunk
    peer.close()
    assert len(got) % len(msg) == 0 and got == msg * (len(got) // len(msg))
    assert all(o == "ok" or o.endswith("Error") for o in outcomes), outcomes
    assert ch._users == [] and ch._closing_fd == -1


@pytest.mark.parametrize("parts", [1, 4], ids=["one buffer", "gather of four"])
def test_many_threads_write_and_close_race(parts: int) -> None:
    """Every call returns a whole count or raises a channel error, the bytes that
    arrived are whole messages, nothing stays registered (20 races)."""
    for _ in range(20):
        race_writers_with_close(parts)
