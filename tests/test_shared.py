"""Shared direct memory (issue 14): memfd buffers, seals, descriptor passing.

In-process cases use a Unix socketpair (both ends in this process map the same memfd);
the cases with real processes (multiprocessing under each start method, release in
every order, a child SIGKILLed while holding a buffer) run in a child interpreter,
shared_child.py, with and without the C guard.
"""

from __future__ import annotations

import array
import errno
import gc
import json
import mmap
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

import zcio
from zcio import (
    ByteBuffer,
    ByteOrder,
    EndOfStreamError,
    HandoffError,
    SealViolationError,
    SharedByteBuffer,
    SocketChannel,
    _syscalls,
)
from zcio import _shared as zsh

CHILD = str(Path(__file__).with_name("shared_child.py"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
HEADER = struct.Struct("<8sHHIQQQQ")  # the wire format, spelt out independently
MAGIC = b"zcioSHM\x00"
SEAL_SHRINK, SEAL_GROW, SEAL_WRITE = 2, 4, 8


def shared_pool() -> zcio.BufferPoolInfo:
    (pool,) = [p for p in zcio.buffer_pools() if p.name == "shared"]
    return pool


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def pair() -> Iterator[tuple[SocketChannel, SocketChannel]]:
    a, b = socket.socketpair()
    with SocketChannel.from_socket(a) as ca, SocketChannel.from_socket(b) as cb:
        yield ca, cb


# -- allocation ----------------------------------------------------------------------


def test_allocate_shared_is_direct_zeroed_aligned_and_counted_in_the_shared_pool() -> None:
    with ByteBuffer.allocate_shared(10_000) as buf:
        assert isinstance(buf, SharedByteBuffer)
        assert buf.is_direct() and not buf.has_array() and not buf.is_read_only()
        assert (buf.position(), buf.limit(), buf.capacity()) == (0, 10_000, 10_000)
        assert bytes(buf) == bytes(10_000)
        assert buf.address() % mmap.PAGESIZE == 0
        assert shared_pool() == zcio.BufferPoolInfo("shared", 1, 10_000, 3 * 4096)
        assert zcio.buffer_pools()[0].count == 0  # not direct
        assert buf.seals() == {"shrink", "grow"}  # size fixed from the start
    assert shared_pool() == zcio.BufferPoolInfo("shared", 0, 0, 0)


def test_the_name_shows_in_proc_maps_and_the_mapping_goes_at_release() -> None:
    buf = ByteBuffer.allocate_shared(100, name="zcio-test-name")
    assert os.readlink(f"/proc/self/fd/{buf.fileno()}") == "/memfd:zcio-test-name (deleted)"
    maps = Path("/proc/self/maps").read_text()
    assert "/memfd:zcio-test-name (deleted)" in maps
    buf.release()
    assert "/memfd:zcio-test-name" not in Path("/proc/self/maps").read_text()
    with pytest.raises(zcio.ReleasedBufferError):
        buf.fileno()


def test_shared_memory_does_not_count_against_the_direct_cap() -> None:
    zcio.set_max_direct_memory(0)
    with ByteBuffer.allocate_shared(4096) as buf:
        buf.put_int(1)
    with pytest.raises(zcio.OutOfDirectMemoryError):
        ByteBuffer.allocate_direct(1)


@pytest.mark.parametrize("name", ["a\0b", "a/b", "x" * 250])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(zcio.IllegalArgumentError):
        ByteBuffer.allocate_shared(8, name=name)


def test_bad_capacity_and_name_types() -> None:
    with pytest.raises(zcio.IllegalArgumentError):
        ByteBuffer.allocate_shared(-1)
    with pytest.raises(TypeError):
        ByteBuffer.allocate_shared(8, name=b"x")  # type: ignore[arg-type]


def test_capacity_zero_takes_one_page() -> None:
    with ByteBuffer.allocate_shared(0) as buf:
        assert buf.capacity() == 0 and buf.address() == 0
        assert shared_pool().memory_used == mmap.PAGESIZE


def test_derived_buffers_are_shared_buffers_over_the_same_memory() -> None:
    with ByteBuffer.allocate_shared(64) as buf:
        for derived in (buf.slice(8, 8), buf.duplicate(), buf.as_read_only_buffer()):
            assert isinstance(derived, SharedByteBuffer)
        buf.slice(8, 8).put_int(0, 77)
        assert buf.get_int(8) == 77


def test_a_failed_allocation_leaks_nothing() -> None:
    class NoMemory(_syscalls.Syscalls):
        def ftruncate(self, fd: int, length: int) -> None:
            raise OSError(errno.ENOMEM, "no memory")

    fds = open_fds()
    with _syscalls.override(NoMemory()), pytest.raises(OSError, match="no memory"):
        ByteBuffer.allocate_shared(4096)
    assert open_fds() == fds
    assert shared_pool().count == 0


# -- descriptor passing over a socket ------------------------------------------------


def test_send_and_receive_share_the_bytes_both_ways(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    buf = ByteBuffer.allocate_shared(1 << 16)
    buf.order(ByteOrder.LITTLE_ENDIAN).put_int(0x01020304).put(b"hello").flip()
    assert a.send_buffer(buf) is True
    got = b.receive_buffer()
    assert got is not None
    assert (got.position(), got.limit(), got.capacity()) == (0, 9, 1 << 16)
    assert got.order() is ByteOrder.LITTLE_ENDIAN and not got.is_read_only()
    assert got.get_int() == 0x01020304 and bytes(got) == b"hello"
    got.clear()
    buf.clear()
    got.put_long(100, -5)
    assert buf.get_long(100) == -5  # the receiver's write shows through here
    buf.put(200, 9)
    assert got.get(200) == 9  # and the other way
    assert shared_pool().count == 2  # two mappings in this process
    assert buf.address() != got.address()
    got.release()
    assert buf.get_long(100) == -5  # one side's release leaves the other's memory
    buf.release()
    assert shared_pool().count == 0


def test_a_slice_arrives_as_that_slice(pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    with ByteBuffer.allocate_shared(3 * 4096) as buf:
        buf.put(5000, 42)
        part = buf.slice(4096, 2000).position(3).limit(1000).as_read_only_buffer()
        a.send_buffer(part)
        got = b.receive_buffer()
        assert got is not None
        with got:
            assert (got.position(), got.limit(), got.capacity()) == (3, 1000, 2000)
            assert got.is_read_only() and got.get(5000 - 4096) == 42
            with pytest.raises(zcio.ReadOnlyBufferError):
                got.put(0, 1)


def test_non_blocking_receive_returns_none_and_send_false_when_full(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    a.configure_blocking(False)
    b.configure_blocking(False)
    assert b.receive_buffer() is None
    chunk = ByteBuffer.allocate(1 << 16)
    while a.write(chunk.clear()) > 0:
        pass
    with ByteBuffer.allocate_shared(64) as buf:
        fds = open_fds()
        assert a.send_buffer(buf) is False
        assert open_fds() == fds


def test_end_of_stream_raises(pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    a.close()
    with pytest.raises(EndOfStreamError):
        b.receive_buffer()
    b.shutdown_input()
    with pytest.raises(EndOfStreamError):
        b.receive_buffer()


def test_send_needs_a_shared_buffer_and_a_unix_socket(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, _ = pair
    with ByteBuffer.allocate_direct(8) as plain, pytest.raises(TypeError):
        a.send_buffer(plain)  # type: ignore[arg-type]
    buf = ByteBuffer.allocate_shared(8)
    buf.release()
    with pytest.raises(zcio.ReleasedBufferError):
        a.send_buffer(buf)
    with zcio.ServerSocketChannel.open().bind(("127.0.0.1", 0)) as server, \
            SocketChannel.open(server.local_address()) as tcp, server.accept() as peer, \
            ByteBuffer.allocate_shared(8) as sb:
        assert peer is not None
        with pytest.raises(zcio.UnsupportedOperationError):
            tcp.send_buffer(sb)
        with pytest.raises(zcio.UnsupportedOperationError):
            peer.receive_buffer()


def test_a_send_that_fails_leaks_nothing(pair: tuple[SocketChannel, SocketChannel]) -> None:
    class Broken(_syscalls.Syscalls):
        def sendmsg_fds(self, sock: socket.socket, data: bytes, fds: list[int]) -> int:
            raise BrokenPipeError(errno.EPIPE, "broken pipe")

    a, _ = pair
    with ByteBuffer.allocate_shared(8) as buf:
        with _syscalls.override(Broken()), pytest.raises(BrokenPipeError):
            a.send_buffer(buf)
        assert buf.get_int(0) == 0  # still usable, counted once
        assert buf._mem.refcnt == 1


# -- a peer that sends garbage -------------------------------------------------------


def _memfd(size: int, seals: int = SEAL_SHRINK) -> int:
    fd = os.memfd_create("garbage", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seals:
        _syscalls.SYS.add_seals(fd, seals)
    return fd


def _header(cap: int = 4096, pos: int = 0, lim: int = 4096, off: int = 0, seals: int = 0,
            magic: bytes = MAGIC, version: int = 1) -> bytes:
    return HEADER.pack(magic, version, 0, seals, off, cap, pos, lim)


def _send_raw(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sock.sendmsg([data], anc)


def _garbage_cases() -> dict[str, tuple[bytes, str]]:
    return {
        "short header": (_header()[:20], "memfd"),
        "bad magic": (_header(magic=b"notzcio!"), "memfd"),
        "bad version": (_header(version=99), "memfd"),
        "bad indexes": (_header(pos=10, lim=5), "memfd"),
        "no descriptor": (_header(), "none"),
        "several descriptors": (_header(), "two memfds"),
        "a regular file": (_header(), "file"),
        "a pipe": (_header(), "pipe"),
        "a socket": (_header(), "socket"),
        "memfd too small": (_header(cap=8192, lim=8192), "memfd"),
        "offset past the end": (_header(off=4096, cap=1, lim=1), "memfd"),
        "memfd not sealed against shrinking": (_header(), "unsealed memfd"),
        "memfd that cannot be sealed": (_header(), "sealing not allowed"),
        "a tmpfs file (shmem, as a memfd)": (_header(), "tmpfs file"),
        "seals stated but not set": (_header(seals=SEAL_WRITE), "memfd"),
        "truncated ancillary data": (_header(), "six memfds"),
    }


GARBAGE = _garbage_cases()


def _sender_descriptors(kind: str, a: socket.socket, tmp_path: Path) -> list[int]:
    """Open what the sender attaches for ``kind`` (the caller closes them after sending)."""
    ours: list[int] = []
    if kind in ("memfd", "two memfds"):
        ours.append(_memfd(4096))
    if kind == "two memfds":
        ours.append(_memfd(4096))
    if kind == "six memfds":  # more than the receiver has room for: MSG_CTRUNC
        ours.extend(_memfd(4096) for _ in range(6))
    if kind == "unsealed memfd":
        ours.append(_memfd(4096, seals=0))
    if kind == "sealing not allowed":  # born with F_SEAL_SEAL: never sealed against shrink
        fd = os.memfd_create("garbage", os.MFD_CLOEXEC)
        os.ftruncate(fd, 4096)
        ours.append(fd)
    if kind == "tmpfs file":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm here")
        path = Path(f"/dev/shm/zcio-test-garbage-{os.getpid()}")
        path.write_bytes(bytes(4096))
        ours.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        path.unlink()
    if kind == "file":
        path = tmp_path / "f"
        path.write_bytes(bytes(4096))
        ours.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    if kind == "pipe":
        ours.extend(os.pipe())
    if kind == "socket":
        ours.append(os.dup(a.fileno()))
    return ours


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_from_the_peer_is_a_handoff_error_and_leaks_no_descriptor(
        case: str, tmp_path: Path) -> None:
    data, kind = GARBAGE[case]
    a, b = socket.socketpair()
    ours = _sender_descriptors(kind, a, tmp_path)  # closed by us after sending
    fds = open_fds()
    with SocketChannel.from_socket(b) as ch:
        _send_raw(a, data, ours[:1] if kind == "pipe" else ours)
        with pytest.raises(HandoffError):
            ch.receive_buffer()
        assert open_fds() == fds  # every descriptor received was closed
        assert shared_pool().count == 0
    a.close()
    for fd in ours:
        os.close(fd)


def test_a_handoff_error_is_a_zcio_error_and_a_value_error() -> None:
    assert issubclass(HandoffError, zcio.ZcioError) and issubclass(HandoffError, ValueError)
    assert issubclass(SealViolationError, PermissionError)
    assert issubclass(EndOfStreamError, EOFError)


def test_a_foreign_memfd_that_is_well_formed_is_accepted() -> None:
    a, b = socket.socketpair()
    fd = _memfd(4096, seals=SEAL_SHRINK | SEAL_GROW)
    os.pwrite(fd, b"from elsewhere", 0)
    with SocketChannel.from_socket(b) as ch:
        _send_raw(a, _header(cap=14, lim=14, seals=SEAL_SHRINK), [fd])
        got = ch.receive_buffer()
        assert got is not None
        with got:
            assert bytes(got) == b"from elsewhere"
    a.close()
    os.close(fd)


# -- the compiled hand-off (native/share.c) against the Python path -------------------

native_only = pytest.mark.skipif(
    _syscalls.NATIVE_IO is None,
    reason="zcio._native is not loaded (pure Python): the Python path is the only one")


@contextmanager
def taking(python: bool) -> Iterator[None]:
    """The Python path if ``python`` (a layer that is not the default one turns
    NATIVE_IO off), else the channel's own choice (compiled, when loaded)."""
    if python:
        with _syscalls.override(_syscalls.Syscalls()):
            assert _syscalls.NATIVE_IO is None
            yield
    else:
        yield


#: Every way a receive can end besides GARBAGE's: (header, what the sender attaches).
OTHER_ENDS = {
    "a good hand-off": (_header(cap=14, pos=2, lim=10, seals=SEAL_SHRINK), "memfd"),
    "the peer closed": (b"", "closed"),
    "other ancillary data (credentials)": (_header(), "memfd, credentials"),
}


def _receive_outcome(case: str, python: bool, tmp_path: Path) -> tuple[Any, ...]:
    """What one receive of ``case`` did, comparably: the buffer's state or the error's
    type and text; descriptors left open; the shared pool; the metrics counted."""
    data, kind = GARBAGE[case] if case in GARBAGE else OTHER_ENDS[case]
    a, b = socket.socketpair()
    if "credentials" in kind:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    ours = _sender_descriptors(kind.split(",")[0], a, tmp_path)
    fds = open_fds()
    before = zcio.metrics.path("shared_receive")
    with SocketChannel.from_socket(b) as ch:
        if kind == "closed":
            a.close()
        else:
            _send_raw(a, data, ours[:1] if kind == "pipe" else ours)
        with taking(python):
            try:
                got = ch.receive_buffer()
            except Exception as e:
                result: Any = (type(e), str(e))
            else:
                assert got is not None
                result = (got.position(), got.limit(), got.capacity(), got.is_read_only(),
                          got.order(), got.seals(), shared_pool().count)
                got.release()
        leaked = open_fds() - fds
        counted = zcio.metrics.path("shared_receive") - before
    a.close()
    for fd in ours:
        os.close(fd)
    return result, leaked, shared_pool().count, counted.operations, counted.syscalls


@native_only
@pytest.mark.parametrize("case", [*GARBAGE, *OTHER_ENDS])
def test_the_compiled_receive_ends_as_the_python_one(case: str, tmp_path: Path) -> None:
    compiled = _receive_outcome(case, False, tmp_path)
    assert compiled == _receive_outcome(case, True, tmp_path)
    assert compiled[1:] == (set(), 0, 1, 1)  # nothing left open or counted, one call


@native_only
def test_the_compiled_send_counts_as_the_python_one(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    with ByteBuffer.allocate_shared(64) as buf:
        for python in (False, True):
            before = zcio.metrics.path("shared_send")
            with taking(python):
                assert a.send_buffer(buf) is True
            sent = zcio.metrics.path("shared_send") - before
            assert (sent.operations, sent.syscalls) == (1, 1)
            got = b.receive_buffer()
            assert got is not None
            got.release()


def test_a_test_layer_sees_every_call_of_a_hand_off(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    calls: list[str] = []

    class Logged(_syscalls.Syscalls):
        def sendmsg_fds(self, sock: socket.socket, data: bytes, fds: Sequence[int]) -> int:
            calls.append("sendmsg_fds")
            return super().sendmsg_fds(sock, data, fds)

        def recvmsg(self, sock: socket.socket, bufsize: int, ancbufsize: int = 0,
                    flags: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
            calls.append("recvmsg")
            return super().recvmsg(sock, bufsize, ancbufsize, flags)

        def get_seals(self, fd: int) -> int:
            calls.append("get_seals")
            return super().get_seals(fd)

    a, b = pair
    with ByteBuffer.allocate_shared(64) as buf, _syscalls.override(Logged()):
        a.send_buffer(buf)
        got = b.receive_buffer()
        assert got is not None
        got.release()
    assert calls == ["sendmsg_fds", "recvmsg", "get_seals"]


@pytest.mark.parametrize("python", [False, True], ids=["compiled", "python"])
def test_a_close_during_receive_wakes_it_and_misdirects_no_descriptor(python: bool) -> None:
    """The receive runs in the channel's in-flight registry: a close wakes it (shutdown)
    and keeps its descriptor number pointing at a dead socket until it has left, so
    sockets opened meanwhile (likely to get the closed number) keep their messages."""
    fds = open_fds()
    with ByteBuffer.allocate_shared(64) as buf, taking(python):
        for _ in range(10):
            a, b = socket.socketpair()
            ch = SocketChannel.from_socket(b)
            ended: list[object] = []

            def receive(ch: SocketChannel = ch, ended: list[object] = ended) -> None:
                try:
                    ended.append(ch.receive_buffer())
                except Exception as e:
                    ended.append(e)

            t = threading.Thread(target=receive, daemon=True)  # a failure must not hang
            t.start()
            inside = time.monotonic() + 1
            while not ch._users and time.monotonic() < inside:  # registered, then blocked
                time.sleep(0.0005)
            time.sleep(0.002)
            ch.close()
            others = [socket.socketpair() for _ in range(3)]
            for x, _ in others:
                with SocketChannel.from_socket(x) as sender:
                    sender.send_buffer(buf)
            t.join(10)
            assert not t.is_alive()
            assert len(ended) == 1 and isinstance(ended[0], zcio.AsynchronousCloseError)
            for _, y in others:
                with SocketChannel.from_socket(y) as receiver:
                    got = receiver.receive_buffer()
                    assert got is not None and got.capacity() == 64
                    got.release()
            a.close()
    assert open_fds() == fds


@native_only
def test_shared_map_exports_refuses_close_while_exported_and_cleans_once() -> None:
    SharedMap = _syscalls.NATIVE_IO.SharedMap
    fd = _memfd(8192)
    with pytest.raises(ValueError, match="greater than file size"):
        SharedMap(fd, 8193, False)
    cleaned: list[tuple[int, str]] = []
    m = SharedMap(fd, 8192, False)
    m.set_cleaner(lambda *args: cleaned.append(args), 1, "x")
    assert len(m) == 8192 and not m.closed
    view = memoryview(m)
    view[0:3] = b"abc"
    assert os.pread(fd, 3, 0) == b"abc"  # MAP_SHARED: the file's pages
    with pytest.raises(BufferError):
        m.close()
    assert cleaned == []
    view.release()
    m.close()
    m.close()  # again: nothing
    assert m.closed and cleaned == [(1, "x")]
    with pytest.raises(ValueError):
        memoryview(m)
    ro = SharedMap(fd, 4096, True)
    assert memoryview(ro).readonly
    with pytest.raises(TypeError, match="read-only"):
        memoryview(ro)[0:1] = b"z"
    kept = memoryview(ro)[0:3]  # held past the map's last reference
    del ro
    gc.collect()
    assert bytes(kept) == b"abc"  # still mapped: the view keeps the map alive
    kept.release()
    os.close(fd)


def _slots(buf: SharedByteBuffer) -> tuple[Any, ...]:
    """Everything a received buffer and its memory hold, comparably (not the numbers
    of descriptors and addresses)."""
    mem = buf._mem
    assert isinstance(mem, zsh.SharedMemory)
    return (type(buf), type(mem), buf.position(), buf.limit(), buf.capacity(), buf._off,
            buf._mark, buf.is_read_only(), buf.order(), buf._c, buf._i32, len(buf._mv),
            buf._mv.readonly, buf.seals(), mem.size, mem.refcnt, mem.released,
            mem._prune_at, mem._address, [type(r()) for r in mem._views], mem.seals,
            type(mem._mmap), len(mem._mmap), mem._finalizer, mem._fd[0] >= 0)


def _sent_kinds(buf: SharedByteBuffer) -> dict[str, SharedByteBuffer]:
    return {
        "whole": buf,
        "a read-only slice": buf.slice(4096, 2000).position(3).limit(9).as_read_only_buffer(),
        "little-endian, marked": buf.duplicate().position(5).mark().position(7).order(
            ByteOrder.LITTLE_ENDIAN),
        "an empty tail": buf.slice(buf.capacity(), 0),
    }


@native_only
@pytest.mark.parametrize("kind", ["whole", "a read-only slice", "little-endian, marked",
                                  "an empty tail", "sealed against future writes"])
def test_the_compiled_receive_builds_what_the_python_adopt_builds(
        kind: str, pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    with ByteBuffer.allocate_shared(3 * 4096 + 5) as buf:
        sent = buf.seal(future_write=True) if kind.startswith("sealed") else \
            _sent_kinds(buf)[kind]
        fds, pool = open_fds(), shared_pool().count
        assert type(SocketChannel.__dict__["receive_buffer"]).__name__ == "method_descriptor"
        assert a.send_buffer(sent) is True
        got = b.receive_buffer()
        assert got is not None
        reference = zsh._adopt([os.dup(buf.fileno())], zsh._header(sent, buf._shared()))
        assert _slots(got) == _slots(reference)
        assert shared_pool().count == pool + 2 and len(open_fds() - fds) == 2
        if got.capacity() and not got.is_read_only():
            got.put(0, 7)  # seen through the other mapping
        assert bytes(got.duplicate().clear()) == bytes(reference.duplicate().clear())
        got.release()
        reference.release()
        assert shared_pool().count == pool and open_fds() == fds


def _release_outcome(python: bool, how: str, pair: tuple[SocketChannel, SocketChannel],
                     buf: SharedByteBuffer) -> list[Any]:
    """What releasing a received buffer ``how`` did, step by step: answers or errors,
    the shared pool's count and this process's descriptors over the baseline."""
    from zcio._pool import POOL_REFERENCE

    release = POOL_REFERENCE["release"] if python else SharedByteBuffer.release
    a, b = pair
    fds, pool = open_fds(), shared_pool().count
    a.send_buffer(buf)
    got = b.receive_buffer()
    assert got is not None
    steps: list[Any] = []

    def step(fn: Any, *args: Any) -> None:
        try:
            steps.append(fn(*args))
        except Exception as e:
            steps.append((type(e), str(e)))
        steps.append((shared_pool().count - pool, len(open_fds() - fds)))

    view = None
    if how == "exported":
        view = got.memoryview()[0:4]  # sliced further: the unmap waits for it
    if how == "retained":
        got.retain()
    if how == "past zero":
        step(release, got, 2)
    step(release, got)
    if how == "retained":
        step(release, got)
    step(got.get, 0)  # revoked
    step(release, got)  # at zero: nothing
    if view is not None:
        steps.append(bytes(view))
        view.release()
        gc.collect()
        steps.append((shared_pool().count - pool, len(open_fds() - fds)))
    return steps


@native_only
@pytest.mark.parametrize("how", ["plain", "exported", "retained", "past zero"])
def test_the_compiled_release_of_a_received_buffer_ends_as_the_python_one(
        how: str, pair: tuple[SocketChannel, SocketChannel]) -> None:
    with ByteBuffer.allocate_shared(4096) as buf:
        buf.put_int(0, 77)
        compiled = _release_outcome(False, how, pair, buf)
        assert compiled == _release_outcome(True, how, pair, buf)
    assert compiled[-1] == (0, 0)  # the mapping, its descriptor and its count all gone


def test_a_received_buffer_collected_unreleased_gives_everything_back(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    with ByteBuffer.allocate_shared(4096) as buf:
        fds, pool = open_fds(), shared_pool().count
        a.send_buffer(buf.slice(8, 8))
        got = b.receive_buffer()
        assert got is not None and shared_pool().count == pool + 1
        del got
        gc.collect()
        assert shared_pool().count == pool and open_fds() == fds


_CLOSED_UNDER_IT = """
import gc, os, socket, sys
import zcio
a, b = socket.socketpair()
tx, rx = zcio.SocketChannel.from_socket(a), zcio.SocketChannel.from_socket(b)
src = zcio.ByteBuffer.allocate_shared(4096)
before = [p for p in zcio.buffer_pools() if p.name == "shared"][0].count
for _ in range(3):
    tx.send_buffer(src)
    got = rx.receive_buffer()
    os.close(got.fileno())  # the cleaner's own close fails: EBADF
    del got                 # collected unreleased: the cleaner runs in the dealloc
    for _ in range(3):
        junk = [bytearray(64) for _ in range(10000)]
        del junk
        gc.collect()
print([p for p in zcio.buffer_pools() if p.name == "shared"][0].count - before)
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
def test_a_received_buffer_whose_descriptor_was_closed_under_it_is_collected_safely(
        pure: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ZCIO_PURE_PYTHON"}
    if pure:
        env["ZCIO_PURE_PYTHON"] = "1"
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _CLOSED_UNDER_IT],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]  # was: freed twice in the dealloc
    assert run.stdout.split() == ["0"]  # counted out although the close failed
    assert run.stderr.count("Bad file descriptor") == 3  # each failure reported


class _InterruptedLock:
    """A pool lock whose every acquire is interrupted (KeyboardInterrupt, as a raising
    signal handler) right after it succeeded: nothing may be left holding it."""

    def __init__(self) -> None:
        self.inner = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.inner.acquire(blocking, timeout) and not blocking:
            raise KeyboardInterrupt
        return True

    def release(self) -> None:
        self.inner.release()

    def __enter__(self) -> bool:
        return self.inner.acquire()

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


def test_a_removal_interrupted_by_a_signal_leaves_the_pool_lock_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zcio._direct import SHARED

    lock = _InterruptedLock()
    monkeypatch.setattr(SHARED, "lock", lock)
    before = shared_pool().count
    buf = ByteBuffer.allocate_shared(4096)
    with suppress(KeyboardInterrupt):
        buf.release()  # the cleaner counts it out from a finalizer's context
    assert not lock.inner.locked()
    assert shared_pool().count == before


def test_send_leaves_the_reference_count_as_it_found_it(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    a.configure_blocking(False)
    with ByteBuffer.allocate_shared(64) as buf:
        buf.retain()
        assert a.send_buffer(buf) is True and buf.ref_cnt() == 2
        got = b.receive_buffer()
        assert got is not None
        got.release()
        buf.release()
        chunk = ByteBuffer.allocate(1 << 16)
        while a.write(chunk.clear()) > 0:
            pass
        assert a.send_buffer(buf) is False and buf.ref_cnt() == 1


# -- seals ---------------------------------------------------------------------------


def test_seal_write_makes_a_read_only_buffer_and_releases_the_writable_one(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    buf = ByteBuffer.allocate_shared(4096).order(ByteOrder.LITTLE_ENDIAN)
    buf.put_int(5).put_int(6).flip()
    sealed = buf.seal(write=True)
    with pytest.raises(zcio.ReleasedBufferError):
        buf.get_int(0)
    assert sealed.is_read_only() and sealed.order() is ByteOrder.LITTLE_ENDIAN
    assert (sealed.position(), sealed.limit()) == (0, 8) and sealed.get_int() == 5
    assert sealed.seals() == {"shrink", "grow", "write"}
    with pytest.raises(PermissionError):
        os.pwrite(sealed.fileno(), b"x", 0)  # the kernel enforces it, for everyone
    a.send_buffer(sealed)
    got = b.receive_buffer()
    assert got is not None and got.is_read_only() and got.get_int(4) == 6
    with pytest.raises(zcio.ReadOnlyBufferError):
        got.put_int(0, 1)
    got.release()
    sealed.release()
    assert shared_pool().count == 0


def test_seal_write_is_refused_while_another_mapping_exists(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    buf = ByteBuffer.allocate_shared(4096)
    a.send_buffer(buf)
    got = b.receive_buffer()
    assert got is not None
    fds = open_fds()
    with pytest.raises(zcio.IllegalStateError, match="mapping"):
        buf.seal(write=True)
    assert open_fds() < fds  # this buffer was released: its descriptors closed
    assert got.put_int(0, 3).get_int(0) == 3  # the other mapping is untouched
    got.release()


def test_seal_write_of_retained_memory_is_refused_before_anything_changes() -> None:
    buf = ByteBuffer.allocate_shared(64)
    buf.retain()
    with pytest.raises(zcio.IllegalStateError, match="refCnt"):
        buf.seal(write=True)
    buf.put_int(0, 1)  # still writable
    buf.release(2)


def test_seal_future_write_keeps_the_writer_and_hands_out_read_only(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    a, b = pair
    with ByteBuffer.allocate_shared(4096) as buf:
        assert buf.seal(future_write=True) is buf
        assert "future_write" in buf.seals()
        buf.put_int(0, 8)  # this mapping stays writable
        with pytest.raises(PermissionError):
            os.pwrite(buf.fileno(), b"x", 0)
        a.send_buffer(buf)
        got = b.receive_buffer()
        assert got is not None
        with got:
            assert got.is_read_only() and got.get_int(0) == 8
            buf.put_int(0, 9)
            assert got.get_int(0) == 9  # the writer's later writes show through


def test_a_seal_added_by_the_receiver_binds_the_next_hand_off(
        pair: tuple[SocketChannel, SocketChannel]) -> None:
    """The sender states the seals it knows of; the receiver trusts the file's own."""
    a, b = pair
    with ByteBuffer.allocate_shared(4096) as buf:
        a.send_buffer(buf)
        got = b.receive_buffer()
        assert got is not None
        with got:
            assert not got.is_read_only()
            got.seal(future_write=True)  # on the receiving side: the sender is not told
        assert "future_write" in buf.seals()
        a.send_buffer(buf)
        again = b.receive_buffer()
        assert again is not None
        with again:
            assert again.is_read_only() and "future_write" in again.seals()


def test_final_seal_then_any_seal_is_a_seal_violation() -> None:
    with ByteBuffer.allocate_shared(64) as buf:
        assert buf.seal(final=True) is buf
        assert "seal" in buf.seals()
        assert buf.seal() is buf  # no seal asked: nothing to violate
        with pytest.raises(SealViolationError):
            buf.seal(future_write=True)
        with pytest.raises(SealViolationError):
            buf.seal(write=True).release()
        assert shared_pool().count == 0  # seal(write=True) released it on the way


# -- other processes -----------------------------------------------------------------


def _run_child(*args: str, pure: bool = False) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "ZCIO_PURE_PYTHON"}
    if pure:
        env["ZCIO_PURE_PYTHON"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    run = subprocess.run([sys.executable, CHILD, *args], capture_output=True, text=True,
                         timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return result


NOTHING_LEFT = [[0, 0, 0], 0, 0]  # shared pool (count, capacity, used), memfd fds, maps


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_passes_the_descriptor_not_the_bytes(method: str) -> None:
    out = _run_child("mp", method)
    # each child read the parent's 1234 and wrote its own value, seen by the parent
    assert out["queue"] == [1234, 2]
    assert out["pipe"] == [1234, 3]
    assert out["process"] == [1234, 4]
    assert out["pool"] == [1234, 5]
    assert isinstance(out["pickled_size"], int) and out["pickled_size"] < 1024  # of 1 MiB
    assert out["after"] == NOTHING_LEFT


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
@pytest.mark.parametrize("op", ["receive", "allocate", "seal"])
def test_an_interrupt_at_any_call_closes_each_descriptor_once(op: str, pure: bool) -> None:
    out = _run_child("interrupt", op, pure=pure)
    assert out["failures"] == []
    assert out["interrupted"] >= 20  # every call on the way was a place to interrupt


@pytest.mark.parametrize("pure", [False, True], ids=["guard", "pure"])
def test_two_processes_release_in_every_order(pure: bool) -> None:
    out = _run_child("orders", pure=pure)
    # child reads the parent's 11, parent reads the child's 22, then per order:
    assert out["parent_first"] == [11, 22, [0, 0, 0], 33, NOTHING_LEFT, [0, *NOTHING_LEFT]]
    assert out["child_first"] == [11, 22, NOTHING_LEFT, 44, [0, *NOTHING_LEFT]]
    assert out["child_exits_holding"] == [11, 22, 55, [0, *NOTHING_LEFT]]


@pytest.mark.parametrize("pure", [False, True], ids=["guard", "pure"])
def test_a_child_killed_while_holding_the_buffer_leaks_nothing_in_the_parent(
        pure: bool) -> None:
    out = _run_child("kill", pure=pure)
    assert out["exitcode"] == -9
    assert out["seen"] == 42 and out["tail"] == 7  # the parent's buffer is still good
    # memfd descriptors: ours, and CPython's mmap keeps a duplicate (native's SharedMap none)
    assert out["holding"] == out["after_kill"] == [[1, 1 << 20, 1 << 20], 2 if pure else 1, 1]
    assert out["before"] == out["after"] == NOTHING_LEFT


def test_seal_write_is_refused_while_a_view_exported_here_maps_it() -> None:
    buf = ByteBuffer.allocate_shared(4096)
    buf.put_int(0, 12)
    view = buf.memoryview()[0:4]  # sliced further: zcio cannot revoke it
    with pytest.raises(zcio.IllegalStateError, match="mapping"):
        buf.seal(write=True)
    assert bytes(view) == b"\x00\x00\x00\x0c"  # still valid: the unmap waits for it
    assert shared_pool().count == 1
    view.release()
    gc.collect()
    assert shared_pool().count == 0
