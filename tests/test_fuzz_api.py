"""Every public method called with odd arguments: only clear errors, and no state change.

A deterministic grid, not a random search: each public method of each object (every
buffer kind of ``buffer_kinds``, a mapped buffer, a FileChannel, both pipe ends, socket
channels, a PooledAllocator) is called with zero to three valid leading integers, then
one odd value (float, NaN, bool, str, None, bytes, huge and negative ints, a list, an
object), then zero to two valid trailing integers.  Three rules:

* the call returns, or raises TypeError or an error of the ``zcio.ZcioError`` tree
  (never AttributeError, struct.error, OverflowError, a bare ValueError, a crash);
* after an error the object's observable state is what it was (buffers: position,
  limit, mark, capacity, order, reference count, content; channels: position, size);
* an odd non-integer (a float, a bool, a str, bytes...) in a parameter annotated
  ``int`` raises TypeError, before anything changes (``check_int``).

Numpy integers must be accepted wherever an int is: a table of calls runs once with
ints and once with numpy integers on twin objects, and both must agree.
The typed views (``zcio._typed``), the selector and asyncio are covered elsewhere.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zcio
from buffer_kinds import BASE_KINDS, BufferKind, pattern
from zcio import ByteBuffer, CompositeBuffer, FileChannel, MapMode, OpenOption

CAP = 16

#: Odd values; the first group must be refused (TypeError) where an int is expected.
NOT_INTS: list[Any] = [1.5, math.nan, True, False, "1", b"\x01", bytearray(1), [], object()]


def _id(value: Any) -> str:
    """A test id that is the same in every process (pytest-xdist compares them)."""
    if type(value) is object:
        return "object()"
    if isinstance(value, memoryview):
        return f"memoryview({value.tobytes()!r})"
    return repr(value)

ODD: list[Any] = [*NOT_INTS, None, 1 << 64, -(1 << 64), -1, 1 << 31]

#: Methods the grid leaves out, with the reason.
SKIP = {
    "memoryview",  # returns a view that pins the memory; covered by the contract suite
    "map", "transfer_to", "transfer_from",  # FileChannel transfers: their own suites
    "connect", "bind", "accept", "finish_connect",  # addresses, not integers: socket tests
    "register", "configure_blocking", "key_for",  # the selector's domain
    "shutdown_input", "shutdown_output", "close", "open", "from_fd", "from_file",
    "from_socket", "socket", "lock", "try_lock",  # lock ranges: test_lock_ranges below
    "load",  # a mapping's load() faults every page: covered in test_mapped.py
}


def _positional(fn: Callable[..., Any]) -> tuple[list[str], int]:
    """The annotations of ``fn``'s positional parameters, and how many arguments the
    grid gives it (``*args`` counts as two)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return [], 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    annotations = [str(p.annotation) for p in params if p.kind in kinds]
    extra = 2 if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params) else 0
    return annotations, len(annotations) + extra


def _arg_rows(fn: Callable[..., Any]) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """(args, must_raise_type_error) for the grid of one method: ``lead`` zeros, the
    odd value, ``trail`` ones.  A non-integer in a parameter annotated ``int`` or
    ``int | None`` must be refused, and None too where the annotation is ``int``."""
    annotations, arity = _positional(fn)
    for lead in range(min(arity, 4)):
        annotation = annotations[lead] if lead < len(annotations) else ""
        for odd in ODD:
            refused = (annotation in ("int", "int | None")
                       and (any(odd is v for v in NOT_INTS)
                            or (odd is None and annotation == "int")))
            for trail in range(min(arity - lead - 1, 2) + 1):
                yield (0,) * lead + (odd,) + (1,) * trail, refused


def _public_methods(obj: object) -> list[str]:
    names = []
    for name in dir(obj):
        if name.startswith("_") or name in SKIP:
            continue
        if callable(getattr(obj, name, None)):
            names.append(name)
    return names


def _check_call(obj: object, name: str, args: tuple[Any, ...], must_refuse: bool,
                state: Callable[[Any], Any], kernel_may_refuse: bool = False) -> bool:
    """Call ``obj.name(*args)``; True if it succeeded (the caller then renews ``obj``).

    ``kernel_may_refuse``: a channel passes a valid integer on to the kernel, whose
    OSError (EBADF, EPERM for a pipe size beyond the limit...) is its answer.
    """
    before = state(obj)
    allowed: tuple[type[Exception], ...] = (TypeError, zcio.ZcioError)
    if kernel_may_refuse and not any(type(a) in (bool, float) or a is None for a in args):
        allowed += (OSError,)
    try:
        result = getattr(obj, name)(*args)
    except allowed as e:
        assert not isinstance(e, AttributeError)
        after = state(obj)
        assert after == before, f"{name}{args!r} raised {e!r} and changed {before} -> {after}"
        if must_refuse:
            assert isinstance(e, TypeError), f"{name}{args!r}: {e!r}, not TypeError"
        return False
    except Exception as e:  # anything else is a bug: say which call
        pytest.fail(f"{type(obj).__name__}.{name}{args!r} raised {type(e).__name__}: {e}")
    assert not must_refuse, f"{type(obj).__name__}.{name}{args!r} accepted -> {result!r}"
    if isinstance(result, memoryview):
        result.release()
    return True


# -- buffers ------------------------------------------------------------------------------


def _buffer_state(buf: ByteBuffer) -> tuple[Any, ...]:
    content = None
    if not buf.is_released():
        whole = buf.duplicate().clear()
        content = bytes(whole)
    return (buf.position(), buf.limit(), buf.mark_value(), buf.capacity(), buf.order(),
            buf.ref_cnt(), buf.is_released(), buf.is_read_only(), content)


def _prepared(buf: ByteBuffer) -> ByteBuffer:
    """position 3 with a mark at 2, limit 13 of 16: room both ways for every call."""
    return buf.clear().position(2).mark().position(3).limit(13)


def _release_all(buf: ByteBuffer) -> None:
    if buf.ref_cnt() > 0:
        buf.release(buf.ref_cnt())


class _Mapped:
    """A MappedByteBuffer over a temporary file, as a buffer kind of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self) -> ByteBuffer:
        with FileChannel.open(self.path, OpenOption.READ, OpenOption.WRITE,
                              OpenOption.CREATE) as ch:
            return ch.map(MapMode.READ_WRITE, 0, CAP).put(0, pattern(CAP))


KINDS = [k for k in BASE_KINDS] + ["mapped"]


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_buffer_methods_refuse_odd_arguments(kind: BufferKind | str, tmp_path: Path) -> None:
    if isinstance(kind, str):
        mapped = _Mapped(tmp_path / "mapped")
        make: Callable[[], ByteBuffer] = mapped.make
    else:
        def make() -> ByteBuffer:
            return kind.fresh(CAP, pattern(CAP))  # type: ignore[union-attr]
    sample = make()
    methods = _public_methods(sample)
    _release_all(sample)
    checked = 0
    for name in methods:
        buf = _prepared(make())
        try:
            fn = getattr(buf, name)
            for args, must_refuse in _arg_rows(fn):
                if name in ("allocate", "allocate_direct") and args and args[0] == 1 << 31:
                    continue  # a real 2 GiB allocation: not a validation question
                if _check_call(buf, name, args, must_refuse, _buffer_state):
                    _release_all(buf)
                    buf = _prepared(make())
                checked += 1
        finally:
            _release_all(buf)
    assert checked > 1000


# -- channels -----------------------------------------------------------------------------


def _channel_state(ch: Any) -> tuple[Any, ...]:
    if not ch.is_open():
        return ("closed",)
    if isinstance(ch, FileChannel):
        return (ch.position(), ch.size())
    return (ch.is_blocking(),)


def _run_channel_grid(make: Callable[[], Any], done: Callable[[Any], None]) -> int:
    ch = make()
    methods = _public_methods(ch)
    checked = 0
    try:
        for name in methods:
            fn = getattr(ch, name)
            for args, must_refuse in _arg_rows(fn):
                if _check_call(ch, name, args, must_refuse, _channel_state,
                               kernel_may_refuse=True):
                    done(ch)
                    ch = make()
                checked += 1
    finally:
        done(ch)
    return checked


def test_file_channel_refuses_odd_arguments(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(pattern(100))

    def make() -> FileChannel:
        ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
        ch.position(7)
        return ch

    assert _run_channel_grid(make, lambda ch: ch.close()) > 100
    assert path.read_bytes()[:7] == pattern(7)


def test_pipe_ends_refuse_odd_arguments() -> None:
    pipes: list[zcio.Pipe] = []

    def make_source() -> Any:
        pipes.append(zcio.Pipe.open())
        pipes[-1].sink().write(ByteBuffer.wrap(b"hello"))
        return pipes[-1].source().configure_blocking(False)  # a stray read cannot hang

    def make_sink() -> Any:
        pipes.append(zcio.Pipe.open())
        return pipes[-1].sink().configure_blocking(False)

    try:
        assert _run_channel_grid(make_source, lambda ch: None) > 50
        assert _run_channel_grid(make_sink, lambda ch: None) > 50
    finally:
        for p in pipes:
            p.close()


def test_socket_channels_refuse_odd_arguments() -> None:
    server = zcio.ServerSocketChannel.open().bind(("127.0.0.1", 0))
    opened: list[Any] = []

    def make() -> Any:
        client = zcio.SocketChannel.open(server.local_address())
        peer = server.accept()
        assert peer is not None
        peer.write(ByteBuffer.wrap(b"hello"))
        opened.extend((client, peer))
        return client.configure_blocking(False)

    try:
        assert _run_channel_grid(make, lambda ch: None) > 100
    finally:
        for ch in opened:
            ch.close()
        server.close()


def test_server_socket_bind_refuses_a_float_backlog() -> None:
    with zcio.ServerSocketChannel.open() as server:
        with pytest.raises(TypeError, match="backlog"):
            server.bind(("127.0.0.1", 0), 5.0)  # type: ignore[arg-type]
        assert server.local_address() is None
        server.bind(("127.0.0.1", 0), np.int32(5))  # type: ignore[arg-type]
        assert server.local_address() is not None


@pytest.mark.parametrize("odd", [*NOT_INTS, None], ids=_id)
def test_lock_ranges_refuse_odd_values(tmp_path: Path, odd: Any) -> None:
    with FileChannel.open(tmp_path / "l", OpenOption.READ, OpenOption.WRITE,
                          OpenOption.CREATE) as ch:
        for call in (ch.lock, ch.try_lock):
            for args in ((odd, 10), (0, odd)):
                with pytest.raises(TypeError):
                    call(*args)
        # nothing was taken: the whole file can be locked now
        with ch.lock(0, 10) as lock:
            assert lock.overlaps(np.int64(5), np.uint8(1))
            with pytest.raises(TypeError):
                lock.overlaps(odd, 1)


# -- module functions and other objects --------------------------------------------------


def test_module_functions_refuse_odd_arguments() -> None:
    cap = zcio.max_direct_memory()
    level = zcio.leak_detection()
    for odd in NOT_INTS:
        if isinstance(odd, str):
            continue
        with pytest.raises(TypeError):
            zcio.set_max_direct_memory(odd)
        with pytest.raises(TypeError):
            zcio.set_leak_detection(odd)
        with pytest.raises(TypeError):
            zcio.parse_size(odd)
    assert zcio.max_direct_memory() == cap
    assert zcio.leak_detection() == level
    with pytest.raises(zcio.IllegalArgumentError):
        zcio.set_leak_detection(7)
    with pytest.raises(zcio.IllegalArgumentError):
        zcio.set_leak_detection("nope")
    zcio.set_leak_detection(np.int64(int(level)))
    assert zcio.leak_detection() == level
    zcio.set_max_direct_memory(np.int64(cap))
    assert zcio.max_direct_memory() == cap


def test_metrics_refuse_odd_figures() -> None:
    before = zcio.metrics.path("fuzz")
    for odd in NOT_INTS:
        with pytest.raises(TypeError):
            zcio.metrics.record("fuzz", syscalls=odd)
        with pytest.raises(TypeError), zcio.measure(odd):
            pass
    assert zcio.metrics.path("fuzz") == before
    zcio.metrics.record("fuzz", syscalls=np.int64(2), operations=np.uint8(1))
    assert zcio.metrics.path("fuzz").syscalls == before.syscalls + 2


@pytest.mark.parametrize("odd", ODD, ids=_id)
def test_pipe_functions_refuse_odd_arguments(odd: Any) -> None:
    with zcio.Pipe.open() as a, zcio.Pipe.open() as b:
        a.sink().write(ByteBuffer.wrap(b"data"))
        src, dst = a.source(), b.sink()
        for call in (lambda: zcio.splice(src, dst, odd, nonblock=True),
                     lambda: zcio.tee(src, dst, odd, nonblock=True),
                     lambda: zcio.splice(odd, dst, 4, nonblock=True),
                     lambda: zcio.splice(src, dst, 4, src_position=odd, nonblock=True),
                     lambda: zcio.vmsplice(odd, b"x", nonblock=True)):
            try:
                call()
            except (TypeError, zcio.ZcioError) as e:
                assert not isinstance(e, AttributeError)
            except OSError as e:
                # a number taken as a descriptor the kernel refuses, or a position on
                # a pipe (ESPIPE): the kernel's answer, nothing moved
                assert isinstance(odd, int) or odd is None, e
        # a refused call moved nothing: the four bytes are all still in the first pipe
        a.source().configure_blocking(False)
        moved = odd is None or (type(odd) is int and odd > 0)  # valid: splice/tee ran
        assert a.source().read(ByteBuffer.allocate(8)) == (0 if moved else 4)
        with pytest.raises(TypeError):
            a.sink().set_pipe_size(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("odd", ODD, ids=_id)
def test_pooled_allocator_refuses_odd_arguments(odd: Any) -> None:
    for key in ("chunk_size", "max_cached_capacity", "cache_size"):
        try:
            zcio.PooledAllocator(**{key: odd})
        except (TypeError, zcio.ZcioError) as e:
            if any(odd is v for v in NOT_INTS):
                assert isinstance(e, TypeError)
    alloc = zcio.PooledAllocator(chunk_size=64 << 10)
    try:
        buf = alloc.allocate(odd)
    except (TypeError, zcio.ZcioError) as e:
        assert not any(odd is v for v in NOT_INTS) or isinstance(e, TypeError)
    else:
        buf.release()
    alloc.trim()
    assert alloc.pool_infos()[0].count == 0


# -- numpy integers are integers ---------------------------------------------------------

NP_TYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64]

#: (method, int arguments): each runs on twin buffers with ints and with numpy ints.
NP_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("position", (5,)), ("limit", (9,)), ("get", (4,)), ("get_unsigned_byte", (4,)),
    ("put", (7,)), ("put", (4, 9)), ("put", (4, 120)), ("get_short", (2,)),
    ("put_short", (2, -3)), ("get_int", (4,)), ("put_int", (4, 7)), ("put_int", (100,)),
    ("get_long", (0,)), ("put_long", (0, 77)), ("put_char", (65,)), ("get_char", (2,)),
    ("put_char", (2, 66)), ("slice", (2, 5)), ("retained_slice", (1, 3)),
    ("retain", (2,)), ("release", (1,)), ("alignment_offset", (3, 8)),
    ("get", (1, bytearray(6), 1, 4)), ("put", (1, b"abcdef", 2, 3)),
    ("get", (bytearray(6), 2, 3)), ("put", (b"abcdef", 1, 2)),
]


def _np_args(args: tuple[Any, ...], t: type) -> tuple[Any, ...]:
    return tuple(t(a) if type(a) is int and 0 <= a <= 100 else a for a in args)


@pytest.mark.parametrize("kind", BASE_KINDS, ids=str)
def test_numpy_integers_are_accepted_where_ints_are(kind: BufferKind) -> None:
    for name, args in NP_CALLS:
        for t in NP_TYPES:
            outcomes = []
            for call_args in (args, _np_args(args, t)):
                buf = kind.fresh(CAP, pattern(CAP)).position(1)
                try:
                    result = getattr(buf, name)(*call_args)
                except Exception as e:  # compare the failure itself (read-only puts...)
                    result = type(e)
                if isinstance(result, ByteBuffer):
                    result = (result is buf, _buffer_state(result) if result is not buf
                              else None)
                outcomes.append((result, _buffer_state(buf), bytes(call_args[1])
                                 if len(call_args) > 1 and isinstance(call_args[1], bytearray)
                                 else None))
                _release_all(buf)
            assert outcomes[0] == outcomes[1], f"{kind}.{name}{args} with {t.__name__}"


def test_numpy_integers_in_factories_and_channels(tmp_path: Path) -> None:
    n = np.uint16(10)
    assert ByteBuffer.allocate(n).capacity() == 10
    with ByteBuffer.allocate_direct(n) as d:
        assert d.capacity() == 10
    w = ByteBuffer.wrap(bytearray(10), np.int64(2), np.uint8(5))
    assert (w.position(), w.limit()) == (2, 7)
    with zcio.PooledAllocator.default().allocate(np.uint16(100)) as p:
        assert p.capacity() == 100
    with CompositeBuffer.of(ByteBuffer.allocate(3), ByteBuffer.allocate(4)) as c:
        assert c.component(np.int64(1)).capacity() == 4
    path = tmp_path / "np"
    path.write_bytes(pattern(64))
    with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch:
        ch.position(np.int64(5))
        assert ch.position() == 5
        dst = ByteBuffer.allocate(4)
        assert ch.read(dst, np.uint16(10)) == 4
        assert bytes(dst.flip()) == pattern(64)[10:14]
        assert ch.write(ByteBuffer.wrap(b"zz"), np.int32(60)) == 2
        assert ch.read([ByteBuffer.allocate(2), ByteBuffer.allocate(2)], np.int64(0),
                       np.int64(2)) == 4
        ch.truncate(np.uint8(62))
        assert ch.size() == 62
    with zcio.Pipe.open(np.int64(1 << 16)) as pipe:
        assert pipe.sink().set_pipe_size(np.int64(1 << 16)) >= 1 << 16
        pipe.sink().write(ByteBuffer.wrap(b"abc"))
        with zcio.Pipe.open() as other:
            assert zcio.tee(pipe.source(), other.sink(), np.uint8(2)) == 2
            assert zcio.splice(pipe.source(), other.sink(), np.int64(3)) == 3


# -- the wrong errors the issue names ---------------------------------------------------


@pytest.mark.parametrize("other", [b"abc", bytearray(3), None, 3, "abc", memoryview(b"a")],
                         ids=_id)
@pytest.mark.parametrize("kind", ["heap", "composite-heap"])
def test_comparisons_with_a_non_buffer(kind: str, other: Any) -> None:
    from buffer_kinds import kind_by_name

    buf = kind_by_name(kind).fresh(CAP, pattern(CAP))
    try:
        for name in ("compare_to", "mismatch"):
            with pytest.raises(TypeError, match="ByteBuffer"):
                getattr(buf, name)(other)
        assert buf.equals(other) is False
        assert (buf == other) is False
    finally:
        buf.release()


def test_get_unsigned_byte_refuses_a_bytearray_before_moving() -> None:
    for buf in (ByteBuffer.wrap(bytearray(pattern(8))),
                CompositeBuffer.of(ByteBuffer.wrap(bytearray(pattern(8))))):
        dst = bytearray(2)
        with pytest.raises(TypeError, match="index"):
            buf.get_unsigned_byte(dst)  # type: ignore[arg-type]
        assert buf.position() == 0 and dst == bytearray(2)
        assert buf.get_unsigned_byte(np.int64(1)) == pattern(8)[1]
        buf.release()


def test_a_float_reference_count_leaves_the_buffer_releasable() -> None:
    buf = ByteBuffer.allocate_direct(8)
    for odd in (1.0, 0.5, True, "1"):
        with pytest.raises(TypeError):
            buf.retain(odd)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            buf.release(odd)  # type: ignore[arg-type]
    with pytest.raises(zcio.IllegalReferenceCountError, match="increment"):
        buf.retain(1 << 31)  # Netty's count is an int: it refuses to overflow
    buf.retain((1 << 31) - 2)  # exactly to the maximum
    assert buf.ref_cnt() == (1 << 31) - 1
    buf.release((1 << 31) - 2)
    assert buf.ref_cnt() == 1
    assert buf.release(np.int64(1)) is True


def test_a_put_of_a_numpy_integer_is_one_byte() -> None:
    buf = ByteBuffer.allocate(8)
    buf.put(np.int64(5)).put(np.uint16(200))
    assert buf.position() == 2 and bytes(buf.flip()) == b"\x05\xc8"
    buf.clear().put(np.array([1, 2, 3], dtype=np.uint8))  # an array is still bytes
    assert buf.position() == 3
    with pytest.raises(zcio.IllegalArgumentError):
        buf.put(np.int64(300))
    assert buf.position() == 3


def test_a_bool_is_not_a_value_for_typed_puts() -> None:
    buf = ByteBuffer.allocate(16)
    for name in ("put_short", "put_int", "put_long", "put_char", "put_float", "put_double"):
        with pytest.raises(TypeError, match="bool"):
            getattr(buf, name)(True)
        with pytest.raises(TypeError, match="bool"):
            getattr(buf, name)(0, False)
    assert buf.position() == 0 and bytes(buf) == bytes(16)


def _release_during(monkeypatch: pytest.MonkeyPatch, buf: zcio.MappedByteBuffer) -> None:
    """Have ``buf`` released right after load()/is_loaded() looked its mapping up,
    as another thread's release() could."""
    real = zcio.MappedByteBuffer._pages

    def pages(self: zcio.MappedByteBuffer, index: int, length: int) -> Any:
        found = real(self, index, length)
        buf.release()
        return found

    monkeypatch.setattr(zcio.MappedByteBuffer, "_pages", pages)


@pytest.mark.parametrize("call", ["load"])
def test_a_release_racing_load_raises_released_buffer_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    path = tmp_path / "m"
    path.write_bytes(pattern(3 * os.sysconf("SC_PAGE_SIZE")))
    with FileChannel.open(path) as ch:
        buf = ch.map(MapMode.READ_ONLY, 0, path.stat().st_size)
    _release_during(monkeypatch, buf)
    with pytest.raises(zcio.ReleasedBufferError):
        getattr(buf, call)()
    assert buf.is_released()


def test_is_loaded_translates_mincore_on_a_released_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release lands between the address lookup and mincore(2): ENOMEM."""
    from zcio import _syscalls

    path = tmp_path / "m"
    path.write_bytes(pattern(2 * os.sysconf("SC_PAGE_SIZE")))
    with FileChannel.open(path) as ch:
        buf = ch.map(MapMode.READ_ONLY, 0, path.stat().st_size)
    real = _syscalls.SYS.mincore

    def mincore(address: int, length: int) -> Any:
        buf.release()
        return real(address, length)

    monkeypatch.setattr(_syscalls.SYS, "mincore", mincore)
    with pytest.raises(zcio.ReleasedBufferError):
        buf.is_loaded()


def test_mapped_force_refuses_float_ranges(tmp_path: Path) -> None:
    path = tmp_path / "m"
    with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE, OpenOption.CREATE) as ch:
        buf = ch.map(MapMode.READ_WRITE, 0, 64)
    with buf:
        for args in ((1.5,), (0, 2.0), (True,), ("0", 4)):
            with pytest.raises(TypeError):
                buf.force(*args)
        buf.force(np.int64(0), np.uint16(64))



def test_transfer_count_is_an_integer(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(pattern(32))
    with FileChannel.open(tmp_path / "a") as src, FileChannel.open(
            tmp_path / "b", OpenOption.WRITE, OpenOption.CREATE) as dst:
        for odd in NOT_INTS:
            with pytest.raises(TypeError):
                zcio.transfer(src, dst, odd)
        assert (src.position(), dst.position(), dst.size()) == (0, 0, 0)
        assert zcio.transfer(src, dst, np.uint8(10)) == 10
        assert (src.position(), dst.position()) == (10, 10)


def test_map_takes_numpy_integers_without_wrapping(tmp_path: Path) -> None:
    """``map(mode, np.uint16(65000), np.uint16(1000))``: position + size is 66000, not
    the 464 that uint16 arithmetic would give; floats are refused."""
    path = tmp_path / "f"
    path.write_bytes(b"\0" * 70_000)
    with zcio.FileChannel.open(path, zcio.OpenOption.READ, zcio.OpenOption.WRITE) as ch:
        with ch.map(zcio.MapMode.READ_ONLY, np.uint16(65000), np.uint16(1000)) as m:
            assert m.capacity() == 1000
        with pytest.raises(TypeError):
            ch.map(zcio.MapMode.READ_ONLY, 0.0, 10)
    assert path.stat().st_size == 70_000
