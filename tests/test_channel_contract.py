"""The channel contract (issue 9, item 6): the same rules for every zcio byte channel.

Run over every kind of ``channel_kinds.KINDS`` (file, TCP and Unix sockets, pipe ends,
blocking and non-blocking): positions and limits after reads and writes, scatter/gather
order, one partial-transfer rule (Java's: the count if bytes moved, the error only if
none did), close rules (use after close, double close, close during a blocked read or
a transfer), argument errors.  Kind-specific extras stay in the kind's own test file.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import zcio
from channel_kinds import KINDS, NONBLOCKING, STREAMS, Ends, close_while_blocked
from faults import OK, Faults, short
from zcio import (
    AsynchronousCloseError,
    ByteBuffer,
    ClosedChannelError,
    CompositeBuffer,
    FileChannel,
    IllegalArgumentError,
    ZcioError,
    _syscalls,
    _wakeup,
)
from zcio._syscalls import IOV_MAX

# Every syscall a gather write may use, per kind: the script applies to whichever runs.
GATHER_CALLS = ("writev", "sendmsg")


def data(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(n))


def _ends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ends]:
    _, factory, blocking = request.param
    e = factory(tmp_path, blocking)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture(params=KINDS, ids=[k[0] for k in KINDS])
def ends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ends]:
    yield from _ends(request, tmp_path)


@pytest.fixture(params=STREAMS, ids=[k[0] for k in STREAMS])
def stream_ends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ends]:
    """The kinds whose reads and writes block: blocking sockets and pipes."""
    yield from _ends(request, tmp_path)


@pytest.fixture(params=NONBLOCKING, ids=[k[0] for k in NONBLOCKING])
def nonblocking_ends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ends]:
    yield from _ends(request, tmp_path)


def positions(bufs: list[ByteBuffer]) -> list[int]:
    return [b.position() for b in bufs]


# -- reading -----------------------------------------------------------------------------


def test_read_advances_the_position_never_the_limit(ends: Ends) -> None:
    ends.feed(b"0123456789")
    dst = ByteBuffer.allocate(12).position(2).limit(8)
    n = ends.read_eventually(dst)
    assert 1 <= n <= 6
    assert (dst.position(), dst.limit()) == (2 + n, 8)
    assert bytes(dst.flip().position(2)) == b"012345"[:n]


def test_read_with_no_room_is_0_and_moves_nothing(ends: Ends) -> None:
    ends.feed(b"abc")
    dst = ByteBuffer.allocate(4).position(4)
    assert ends.reader.read(dst) == 0
    assert ends.reader.read([dst, ByteBuffer.allocate(0)]) == 0
    assert dst.position() == 4
    assert ends.read_eventually(ByteBuffer.allocate(8)) == 3  # the bytes are still there


def test_scatter_read_fills_each_buffer_before_the_next(ends: Ends) -> None:
    ends.feed(data(10))
    bufs = [ByteBuffer.allocate(3), ByteBuffer.allocate(4), ByteBuffer.allocate(5)]
    got = 0
    deadline = time.monotonic() + 10
    while got < 10 and time.monotonic() < deadline:
        got += max(ends.read_eventually(bufs), 0)
    assert got == 10
    assert positions(bufs) == [3, 4, 3]
    assert b"".join(bytes(b.flip()) for b in bufs) == data(10)


def test_end_of_input_reads_minus_one(ends: Ends) -> None:
    ends.feed(b"ab")
    ends.end_input()
    dst = ByteBuffer.allocate(8)
    assert ends.read_eventually(dst) == 2
    assert ends.read_eventually(dst) == -1
    assert dst.position() == 2


# -- writing -----------------------------------------------------------------------------


def test_write_advances_the_position_never_the_limit(ends: Ends) -> None:
    src = ByteBuffer.wrap(b"xx0123456789yy", 2, 10)
    n = ends.writer.write(src)
    assert n == 10  # an empty socket buffer or pipe takes 10 bytes, blocking or not
    assert (src.position(), src.limit()) == (12, 12)
    assert ends.take(10) == b"0123456789"


def test_gather_write_drains_buffers_in_order(ends: Ends) -> None:
    bufs = [ByteBuffer.wrap(data(3, s)) for s in range(3)] + [ByteBuffer.allocate(0)]
    assert ends.writer.write(bufs) == 9
    assert positions(bufs) == [3, 3, 3, 0]
    assert ends.take(9) == data(3, 0) + data(3, 1) + data(3, 2)


def test_gather_error_after_a_chunk_returns_what_moved(ends: Ends) -> None:
    """Java's partial rule on every channel: the count, then the error on the next call
    (here the script's error is spent, so the next call writes the rest)."""
    chunks = [data(3, i) for i in range(IOV_MAX + 5)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    layer = Faults({name: [OK, errno.EIO] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write(bufs) == 3 * IOV_MAX
    assert positions(bufs) == [3] * IOV_MAX + [0] * 5
    assert ends.writer.write(bufs) == 15
    assert ends.take(3 * len(chunks)) == b"".join(chunks)


def test_gather_error_with_nothing_moved_raises_the_builtin(ends: Ends) -> None:
    bufs = [ByteBuffer.wrap(data(3, i)) for i in range(4)]
    layer = Faults({name: [errno.EIO] for name in GATHER_CALLS})
    with _syscalls.override(layer), pytest.raises(OSError) as info:
        ends.writer.write(bufs)
    assert info.value.errno == errno.EIO and not isinstance(info.value, ZcioError)
    assert positions(bufs) == [0, 0, 0, 0]
    assert ends.writer.is_open()


# -- the one gather/scatter loop (zcio._iovec), over every kind ----------------------------

# Every syscall a scatter read may use, per kind.
SCATTER_CALLS = ("readv", "preadv", "recvmsg_into", "recv_into")


def _gather_calls(layer: Faults) -> list[list[int]]:
    """The iovec lengths of each gather syscall the layer saw, in order."""
    return [list(args[1]) for name, args in layer.calls if name in GATHER_CALLS]


def _one_call_per_write(ends: Ends) -> bool:
    """A non-blocking socket's gather write makes one sendmsg (it must not wait)."""
    return not ends.blocking and hasattr(ends.writer, "socket")


def test_gather_eagain_after_a_chunk_returns_what_moved(ends: Ends) -> None:
    """EAGAIN is no error: the loop stops with the count so far, positions exact."""
    chunks = [data(3, i) for i in range(IOV_MAX + 5)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    layer = Faults({name: [OK, errno.EAGAIN] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write(bufs) == 3 * IOV_MAX
    assert positions(bufs) == [3] * IOV_MAX + [0] * 5
    assert len(_gather_calls(layer)) == (1 if _one_call_per_write(ends) else 2)
    assert ends.writer.write(bufs) == 15
    assert ends.take(3 * len(chunks)) == b"".join(chunks)


def test_gather_eagain_with_nothing_moved_returns_0(ends: Ends) -> None:
    bufs = [ByteBuffer.wrap(data(3, i)) for i in range(4)]
    layer = Faults({name: [errno.EAGAIN] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write(bufs) == 0
    assert positions(bufs) == [0, 0, 0, 0]
    assert ends.writer.write(bufs) == 12
    assert ends.take(12) == b"".join(data(3, i) for i in range(4))


def test_gather_short_chunk_stops_mid_buffer(ends: Ends) -> None:
    """A chunk the kernel takes in part ends the call: no second syscall, and the
    buffer it stopped in advances by its share only."""
    chunks = [data(3, i) for i in range(IOV_MAX + 5)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    layer = Faults({name: [short(100)] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write(bufs) == 100
    assert positions(bufs) == [3] * 33 + [1] + [0] * (IOV_MAX + 5 - 34)
    assert len(_gather_calls(layer)) == 1
    assert ends.take(100) == b"".join(chunks)[:100]


def test_gather_of_iov_max_plus_one_buffers(ends: Ends) -> None:
    """IOV_MAX iovecs per syscall, never more; the rest in the next call (or, for a
    non-blocking socket, the next write)."""
    chunks = [data(3, i) for i in range(IOV_MAX + 1)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    layer = Faults({})
    with _syscalls.override(layer):
        n = ends.writer.write(bufs)
        while any(b.has_remaining() for b in bufs):
            n += ends.writer.write(bufs)
    assert n == 3 * len(chunks)
    calls = _gather_calls(layer)
    assert all(len(c) <= IOV_MAX for c in calls)
    assert calls[0] == [3] * IOV_MAX and calls[1] == [3]
    assert ends.take(n) == b"".join(chunks)


def _composite(*parts: bytes) -> ByteBuffer:
    return CompositeBuffer.of(*(ByteBuffer.wrap(p) for p in parts))


def test_gather_with_a_composite_in_the_middle(ends: Ends) -> None:
    """A composite gives one iovec per component; a short write that stops inside it
    moves its position by exactly its share, and the buffer after it not at all."""
    head, tail = ByteBuffer.wrap(data(5, 1)), ByteBuffer.wrap(data(5, 2))
    middle = _composite(data(4, 3), data(6, 4), data(2, 5))
    expected = data(5, 1) + data(4, 3) + data(6, 4) + data(2, 5) + data(5, 2)
    layer = Faults({name: [short(12)] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write([head, middle, tail]) == 12
    assert _gather_calls(layer)[0] == [5, 4, 6, 2, 5]
    assert positions([head, middle, tail]) == [5, 7, 0]
    assert ends.writer.write([head, middle, tail]) == len(expected) - 12
    assert positions([head, middle, tail]) == [5, 12, 5]
    assert ends.take(len(expected)) == expected


def test_gather_error_inside_a_composite_returns_what_moved(ends: Ends) -> None:
    """IOV_MAX - 1 plain buffers, then a composite of three: the first chunk ends inside
    the composite; EIO on the second is deferred (Java's rule)."""
    bufs = [ByteBuffer.wrap(data(2, i)) for i in range(IOV_MAX - 1)]
    middle = _composite(data(3, 7), data(3, 8), data(3, 9))
    layer = Faults({name: [OK, errno.EIO] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        n = ends.writer.write([*bufs, middle])
    assert n == 2 * (IOV_MAX - 1) + 3
    assert middle.position() == 3
    if not _one_call_per_write(ends):
        assert len(_gather_calls(layer)) == 2  # the second call met the error
    assert ends.writer.write([middle]) == 6
    assert ends.take(n + 6) == b"".join(data(2, i) for i in range(IOV_MAX - 1)) + (
        data(3, 7) + data(3, 8) + data(3, 9))


def test_a_buffer_gathered_twice_is_sent_twice_and_ends_at_its_limit(ends: Ends) -> None:
    """Java's IOUtil sets each listed buffer's position from the index it was listed
    at: a buffer listed twice is sent twice, both count, and it ends at its limit, never
    past it (JDK 17: ``write([x, y, x])`` answers 2 x 4 + 3, x at 6 of limit 6)."""
    x, y = ByteBuffer.wrap(b"..abcd..", 2, 4), ByteBuffer.wrap(b"XYZ")
    assert ends.writer.write([x, y, x]) == 11
    assert (x.position(), x.limit(), y.position()) == (6, 6, 3)
    assert ends.take(11) == b"abcdXYZabcd"


def test_a_short_gather_leaves_a_buffer_listed_twice_where_its_last_share_says(
        ends: Ends) -> None:
    """The kernel takes 10 of [x(6), y(2), x(6)]: shares 6, 2, 2; x ends at 2, where
    its second listing's share puts it (JDK 17, a pipe taking 4,096 of [x(3,000),
    y(10), x(3,000)]: x at 1,086).  A composite listed twice: shares 3, 2, 2, 0."""
    x, y = ByteBuffer.wrap(data(6, 1)), ByteBuffer.wrap(data(2, 2))
    layer = Faults({name: [short(10)] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write([x, y, x]) == 10
    assert positions([x, y]) == [2, 2]
    c = _composite(data(3, 3), data(2, 4))
    layer = Faults({name: [short(7)] for name in GATHER_CALLS})
    with _syscalls.override(layer):
        assert ends.writer.write([c, c]) == 7
    assert (c.position(), c.limit()) == (2, 5)
    assert ends.take(17) == data(6, 1) + data(2, 2) + data(2, 1) + (
        data(3, 3) + data(2, 4) + data(3, 3)[:2])


def test_a_buffer_scattered_into_twice_ends_where_its_last_share_says(ends: Ends) -> None:
    """A scatter into [x(4), y(2), x(4)]: the kernel fills x, y, then x again from its
    start; x's position is its last share's.  (JDK 17 does so with direct buffers; its
    heap buffers throw BufferOverflowException there, after the bytes were read.)"""
    ends.feed(data(8))
    x, y = ByteBuffer.allocate(4), ByteBuffer.allocate(2)
    n = ends.read_eventually([x, y, x])
    assert 1 <= n <= 8
    # the model: views in order, each starting at index 0 of its buffer
    memory = {id(x): bytearray(4), id(y): bytearray(2)}
    where = {id(x): 0, id(y): 0}
    left, fed = n, iter(data(8))
    for b in (x, y, x):
        share = min(left, b.limit())
        if share:
            for i in range(share):
                memory[id(b)][i] = next(fed)
            where[id(b)] = share
        left -= share
    assert positions([x, y]) == [where[id(x)], where[id(y)]]
    assert (bytes(x.array()), bytes(y.array())) == (bytes(memory[id(x)]), bytes(memory[id(y)]))


def test_gather_error_releases_the_views(ends: Ends) -> None:
    """A failed gather lets go of its views at once: the buffer is no longer exported
    while the caller still holds the traceback, so releasing it frees the memory."""
    buf = ByteBuffer.allocate_direct(64)
    layer = Faults({name: [errno.EIO] for name in GATHER_CALLS})
    with _syscalls.override(layer), pytest.raises(OSError) as info:
        ends.writer.write([buf, ByteBuffer.wrap(b"x")])
    assert info.traceback is not None  # the frames (and their locals) are alive
    buf.release()
    direct = next(p for p in zcio.buffer_pools() if p.name == "direct")
    assert direct.count == 0  # freed now, not when the traceback goes


def test_scatter_eagain_returns_0_and_moves_nothing(ends: Ends) -> None:
    ends.feed(b"abcdef")
    bufs = [ByteBuffer.allocate(2), _composite_room(2, 2)]
    layer = Faults({name: [errno.EAGAIN] * 2 for name in SCATTER_CALLS})
    with _syscalls.override(layer):
        assert ends.reader.read(bufs) == 0
        assert ends.reader.read(bufs[0]) == 0
    assert positions(bufs) == [0, 0]
    got = 0
    while got < 6:
        got += ends.read_eventually(bufs)
    assert positions(bufs) == [2, 4]
    assert bytes(bufs[0].flip()) + bytes(bufs[1].flip()) == b"abcdef"


def test_scatter_error_raises_the_builtin_and_moves_nothing(ends: Ends) -> None:
    ends.feed(b"abc")
    bufs = [ByteBuffer.allocate(2), ByteBuffer.allocate(2)]
    layer = Faults({name: [errno.EIO] for name in SCATTER_CALLS})
    with _syscalls.override(layer), pytest.raises(OSError) as info:
        ends.reader.read(bufs)
    assert info.value.errno == errno.EIO and not isinstance(info.value, ZcioError)
    assert positions(bufs) == [0, 0]
    assert ends.read_eventually(ByteBuffer.allocate(8)) == 3


def _composite_room(*sizes: int) -> ByteBuffer:
    return CompositeBuffer.of(*(ByteBuffer.allocate(n) for n in sizes))


def test_scatter_into_a_composite_in_the_middle(ends: Ends) -> None:
    ends.feed(data(11))
    head, middle, tail = ByteBuffer.allocate(3), _composite_room(2, 3), ByteBuffer.allocate(3)
    layer = Faults({})
    got = 0
    with _syscalls.override(layer):
        while got < 11:
            got += ends.read_eventually([head, middle, tail])
    first = next(args[1] for name, args in layer.calls if name in SCATTER_CALLS)
    assert first == [3, 2, 3, 3]  # one iovec per component with room
    assert positions([head, middle, tail]) == [3, 5, 3]
    assert bytes(head.flip()) + bytes(middle.flip()) + bytes(tail.flip()) == data(11)


def test_scatter_fills_at_most_iov_max_buffers(ends: Ends) -> None:
    """One read, one syscall, IOV_MAX iovecs at most (Java's IOUtil): the buffer past
    them stays empty until the next read."""
    ends.feed(data(2 * (IOV_MAX + 1)))
    bufs = [ByteBuffer.allocate(2) for _ in range(IOV_MAX + 1)]
    layer = Faults({})
    with _syscalls.override(layer):
        n = ends.read_eventually(bufs)
    assert 0 < n <= 2 * IOV_MAX
    calls = [args[1] for name, args in layer.calls if name in SCATTER_CALLS]
    assert calls and all(len(c) == IOV_MAX for c in calls)  # retries of an EAGAIN too
    assert bufs[-1].position() == 0
    while bufs[-1].has_remaining():
        ends.read_eventually(bufs)
    assert b"".join(bytes(b.flip()) for b in bufs) == data(2 * (IOV_MAX + 1))


# -- argument errors ---------------------------------------------------------------------


def test_argument_errors_move_nothing(ends: Ends) -> None:
    ends.feed(b"abc")
    ro = ByteBuffer.allocate(4).as_read_only_buffer()
    with pytest.raises(IllegalArgumentError):
        ends.reader.read(ro)
    with pytest.raises(IndexError):
        ends.reader.read([ByteBuffer.allocate(4)], 1, 5)
    with pytest.raises(IndexError):
        ends.writer.write([ByteBuffer.allocate(4)], -1, 1)
    with pytest.raises(TypeError):
        ends.writer.write([b"not a buffer"])
    assert ends.read_eventually(ByteBuffer.allocate(8)) == 3


# -- close rules -------------------------------------------------------------------------


def test_use_after_close_is_the_plain_closed_error(ends: Ends) -> None:
    ends.reader.close()
    ends.writer.close()
    ends.reader.close()  # idempotent
    assert not ends.reader.is_open() and not ends.writer.is_open()
    for call in (lambda: ends.reader.read(ByteBuffer.allocate(4)),
                 lambda: ends.writer.write(ByteBuffer.wrap(b"x")),
                 lambda: ends.writer.write([ByteBuffer.wrap(b"x")]),
                 ends.reader.fileno):
        with pytest.raises(ClosedChannelError) as info:
            call()
        assert not isinstance(info.value, AsynchronousCloseError)


needs_wakeup = pytest.mark.skipif(
    not _wakeup.available(), reason=f"no wake-up signal: {_wakeup.unavailability_cause()}")

SIZE = 2 << 20  # well past what a pipe or a SOCKET_BUFFER-sized socket holds


def test_close_during_a_blocked_read(stream_ends: Ends) -> None:
    ends = stream_ends
    if not _wakeup.available() and not hasattr(ends.reader, "socket"):
        pytest.skip(f"no wake-up signal for pipes: {_wakeup.unavailability_cause()}")
    dst = ByteBuffer.allocate(8)
    err = close_while_blocked(ends.reader, lambda: ends.reader.read(dst))
    assert isinstance(err, AsynchronousCloseError)
    assert err.moved == 0 == dst.position()


@needs_wakeup
def test_close_during_a_blocked_transfer(stream_ends: Ends, tmp_path: Path) -> None:
    """transfer_to into the writer, blocked on a peer that does not read: closed, it
    raises with exactly the bytes that reached the other side."""
    ends = stream_ends
    path = tmp_path / "big"
    path.write_bytes(data(SIZE))
    with FileChannel.open(path) as src:
        err = close_while_blocked(ends.writer, lambda: src.transfer_to(0, SIZE, ends.writer))
        assert isinstance(err, AsynchronousCloseError)
        assert 0 < err.moved < SIZE
        assert ends.take(SIZE) == data(err.moved)
        assert src.position() == 0


def test_transfer_to_a_closed_channel_is_the_plain_closed_error(ends: Ends,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(data(100))
    with FileChannel.open(path) as src:
        assert src.transfer_to(0, 100, ends.writer) == 100
        assert ends.take(100) == data(100)
        ends.writer.close()
        with pytest.raises(ClosedChannelError) as info:
            src.transfer_to(0, 1, ends.writer)
        assert not isinstance(info.value, AsynchronousCloseError)


@pytest.mark.parametrize("path", ["sendfile", "splice", "mmap_write", "read_write"])
def test_forced_path_to_a_full_nonblocking_target_returns(nonblocking_ends: Ends,
                                                          tmp_path: Path, path: str) -> None:
    """Item 5: every rung returns a partial count on a non-blocking target (0 if
    nothing moved), never waits for a peer that does not read."""
    from zcio._transfer import transfer_to

    ends = nonblocking_ends
    file = tmp_path / "big"
    file.write_bytes(data(SIZE))
    with FileChannel.open(file) as src:
        n = transfer_to(src, 0, SIZE, ends.writer, path=path)
        assert 0 < n < SIZE  # the socket or pipe buffer filled up
        assert transfer_to(src, n, SIZE - n, ends.writer, path=path) == 0  # still full
        assert ends.take(n) == data(n)  # exactly the counted bytes, none twice
        assert transfer_to(src, n, 1000, ends.writer, path=path) == 1000  # room again
        assert ends.take(1000) == data(n + 1000)[n:]
