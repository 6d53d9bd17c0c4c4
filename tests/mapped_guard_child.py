"""The child process of test_mapped_guard.py: zcio's accesses to a mapping whose file
lost the pages under it, each expected to raise MappedRegionError, not to kill us.

``python mapped_guard_child.py truncated DIR [CASE...]`` maps a 3-page file
(READ_WRITE, READ_ONLY and PRIVATE), makes typed views and a composite over the
mapping, truncates the file to ``PAGE + 10`` bytes (the third page is then gone) and
runs each case (default: all of :data:`CASES`), printing ``case NAME RESULT``.  RESULT
is ``MappedRegionError`` when the access raised it and no buffer index moved; anything
else says what happened instead.  Then it keeps working with what is left of the
mapping, releases everything and prints ``alive``.

``python mapped_guard_child.py hole DIR`` expects DIR to be a small, empty file system
of its own: it makes a sparse file, fills the file system, maps the file READ_WRITE and
writes into the hole (the kernel finds no block for it: SIGBUS), printing the same lines.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from zcio import (
    ByteBuffer,
    CompositeBuffer,
    FileChannel,
    MapMode,
    MappedRegionError,
    OpenOption,
    Pipe,
    SocketChannel,
    vmsplice,
)

PAGE = mmap.PAGESIZE
SIZE = 3 * PAGE
DEAD = 2 * PAGE  # first byte of the page that truncation to PAGE + 10 takes away
HEAD = 16  # bytes of the heap component in front of the mapping in the composite
READ, WRITE, CREATE = OpenOption.READ, OpenOption.WRITE, OpenOption.CREATE


class World:
    """Everything the cases touch, set up before the file is truncated."""

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, "mapped")
        with open(path, "wb") as f:
            f.write(bytes((i * 7 + 3) & 0xFF for i in range(SIZE)))
        self.ch = FileChannel.open(path, READ, WRITE)
        self.buf = self.ch.map(MapMode.READ_WRITE, 0, SIZE)
        self.ro = self.ch.map(MapMode.READ_ONLY, 0, SIZE)
        self.private = self.ch.map(MapMode.PRIVATE, 0, SIZE)
        self.ints = self.buf.as_int_buffer()
        self.doubles = self.buf.as_double_buffer()
        self.comp = CompositeBuffer.of(ByteBuffer.wrap(bytearray(b"h" * HEAD)),
                                       self.buf.retained_duplicate())
        self.comp_ints = self.comp.as_int_buffer()
        self.out = FileChannel.open(os.path.join(directory, "out"), READ, WRITE, CREATE)
        self.out.write(ByteBuffer.wrap(b"o" * PAGE))  # something to read back
        self.pipe = Pipe.open()
        self.pipe.sink().write(ByteBuffer.wrap(b"p" * 64))  # something to read
        a, b = socket.socketpair()
        self.sock, self.peer = SocketChannel.from_socket(a), SocketChannel.from_socket(b)
        self.peer.write(ByteBuffer.wrap(b"s" * 64))
        # Another library's mappings of the same file, wrapped (ByteBuffer.wrap).
        self.mm = mmap.mmap(self.ch.fileno(), SIZE)
        self.wrapped = ByteBuffer.wrap(self.mm)
        self.wrapped_ints = self.wrapped.as_int_buffer()
        import numpy as np

        self.np_map = np.memmap(path, mode="r+", shape=(SIZE,))
        self.wrapped_np = ByteBuffer.wrap(self.np_map)
        os.truncate(path, PAGE + 10)  # as another process could, at any moment
        alive = bytearray(DEAD)  # what the two surviving pages read now
        self.buf.get(0, alive)
        self.heap = ByteBuffer.allocate(SIZE).put(alive).clear()  # equal up to DEAD
        self.heap_c = ByteBuffer.allocate(HEAD + SIZE).put(b"h" * HEAD).put(alive).clear()
        self.direct = ByteBuffer.allocate_direct(SIZE)

    def indexes(self) -> list[tuple[int, int]]:
        bufs: list[Any] = [self.buf, self.ro, self.private, self.ints, self.doubles,
                           self.comp, self.comp_ints, self.heap, self.heap_c, self.direct,
                           self.wrapped, self.wrapped_ints, self.wrapped_np]
        return [(b.position(), b.limit()) for b in bufs]

    def close(self) -> None:
        for b in (self.comp_ints, self.ints, self.doubles):
            b.clear()
        self.comp.release()
        for m in (self.buf, self.ro, self.private, self.direct, self.wrapped,
                  self.wrapped_np):
            m.release()
        self.mm.close()
        del self.np_map
        self.ch.close()
        self.out.close()
        self.sock.close()
        self.peer.close()
        self.pipe.source().close()
        self.pipe.sink().close()


Case = Callable[[World], Callable[[], object]]  # prepares, returns the access to make
CASES: dict[str, Case] = {}

_GETS = ["get", "get_unsigned_byte", "get_char", "get_short", "get_unsigned_short",
         "get_int", "get_unsigned_int", "get_long", "get_float", "get_double"]
_PUTS = {"put": 1, "put_char": "x", "put_short": 1, "put_int": 1, "put_long": 1,
         "put_float": 1.0, "put_double": 1.0}


def _value_cases() -> None:
    def rel(name: str, *args: Any) -> Case:
        def prepare(w: World) -> Callable[[], object]:
            w.buf.clear().position(DEAD)
            return lambda: getattr(w.buf, name)(*args)
        return prepare

    def at(name: str, *args: Any) -> Case:
        return lambda w: lambda: getattr(w.buf, name)(DEAD, *args)

    for name in _GETS:
        CASES[f"{name}()"] = rel(name)
        CASES[f"{name}(i)"] = at(name)
    for name, value in _PUTS.items():
        CASES[f"{name}(v)"] = rel(name, value)
        CASES[f"{name}(i, v)"] = at(name, value)


_value_cases()


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return register


# -- other mappings of the same file -------------------------------------------------------

case("read_only.get_int(i)")(lambda w: lambda: w.ro.get_int(DEAD))
case("private.get(i)")(lambda w: lambda: w.private.get(DEAD))
case("private.put(i, v)")(lambda w: lambda: w.private.put(DEAD, 1))



@case("get(i) in 4 threads at once")
def _(w: World) -> Callable[[], object]:
    """Each thread has its own jump buffer: every fault comes back to its own thread."""
    def access() -> object:
        errors: list[MappedRegionError] = []

        def worker() -> None:
            for _ in range(50):
                try:
                    w.buf.get(DEAD)
                except MappedRegionError as e:
                    errors.append(e)
                assert w.buf.get(5) is not None  # and the pages left read fine between

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(errors) == 4 * 50:
            raise errors[0]
        return len(errors)
    return access


# -- bulk --------------------------------------------------------------------------------


@case("get(dst)")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD - 8)
    return lambda: w.buf.get(bytearray(16))


case("get(i, dst)")(lambda w: lambda: w.buf.get(DEAD - 8, bytearray(16)))


@case("put(src)")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD - 8)
    return lambda: w.buf.put(b"x" * 16)


case("put(i, src)")(lambda w: lambda: w.buf.put(DEAD - 8, b"x" * 16))


@case("mapped.put(heap)")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD)
    w.heap.clear().limit(16)
    return lambda: w.buf.put(w.heap)


@case("heap.put(mapped)")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD).limit(DEAD + 16)
    w.heap.clear()
    return lambda: w.heap.put(w.buf)


@case("direct.put(mapped)")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD).limit(DEAD + 16)
    w.direct.clear()
    return lambda: w.direct.put(w.buf)


case("heap.put(i, mapped, off, n)")(lambda w: lambda: w.heap.put(0, w.buf, DEAD, 16))


# A plain memoryview of the mapping (not a zcio buffer) as the other side of a heap or
# direct buffer's bulk get/put: the compiled core copies flat bytes-likes itself.


def _dead_view(w: World) -> memoryview:
    return w.buf.duplicate().clear().position(DEAD - 8).limit(DEAD + 8).memoryview()


# -- ByteBuffer.wrap of another library's mapping of the file ------------------------------


def _wrap_cases() -> None:
    for name, make in {
        "wrap(mmap).get_int(i)": lambda w: lambda: w.wrapped.get_int(DEAD),
        "wrap(mmap).get(i)": lambda w: lambda: w.wrapped.get(DEAD + 3),
        "wrap(mmap).put_long(i, v)": lambda w: lambda: w.wrapped.put_long(DEAD, 1),
        "wrap(mmap).get(i, dst)": lambda w: lambda: w.wrapped.get(DEAD - 8, bytearray(16)),
        "wrap(mmap).put(src)":
            lambda w: (lambda b: lambda: b.put(b"x"))(w.wrapped.clear().position(DEAD)),
        "wrap(mmap).as_int_buffer().get(i)":
            lambda w: lambda: w.wrapped_ints.get(DEAD // 4),
        "wrap(np.memmap).get_double(i)": lambda w: lambda: w.wrapped_np.get_double(DEAD),
        "wrap(np.memmap).put(i, v)": lambda w: lambda: w.wrapped_np.put(DEAD, 7),
    }.items():
        CASES[name] = make


_wrap_cases()


def _view_cases() -> None:
    def relative(op: str) -> Case:
        def prepare(w: World) -> Callable[[], object]:
            w.heap.clear()
            view = _dead_view(w)
            return lambda: getattr(w.heap, op)(view)
        return prepare

    def absolute(op: str) -> Case:
        def prepare(w: World) -> Callable[[], object]:
            view = _dead_view(w)
            return lambda: getattr(w.direct, op)(0, view, 4, 12)
        return prepare

    for op in ("put", "get"):
        CASES[f"heap.{op}(memoryview of mapped)"] = relative(op)
        CASES[f"direct.{op}(i, memoryview of mapped, off, n)"] = absolute(op)


_view_cases()
case("mapped.put(i, mapped, off, n)")(lambda w: lambda: w.buf.put(0, w.buf, DEAD, 16))


@case("compact()")
def _(w: World) -> Callable[[], object]:
    w.buf.clear().position(DEAD)
    return w.buf.compact


# -- comparison and hash: equal bytes up to the lost page, so the access reaches it ---------


def _compare(name: str, fn: Callable[[World], object]) -> None:
    def prepare(w: World) -> Callable[[], object]:
        w.buf.clear()
        w.private.clear()
        w.heap.clear()
        return lambda: fn(w)
    CASES[name] = prepare


_compare("heap.equals(mapped)", lambda w: w.heap.equals(w.buf))
_compare("mapped.equals(heap)", lambda w: w.buf.equals(w.heap))
_compare("mapped == heap", lambda w: w.buf == w.heap)
_compare("heap.compare_to(mapped)", lambda w: w.heap.compare_to(w.buf))
_compare("mapped.compare_to(heap)", lambda w: w.buf.compare_to(w.heap))
_compare("mapped < heap", lambda w: w.buf < w.heap)
_compare("heap.mismatch(mapped)", lambda w: w.heap.mismatch(w.buf))
_compare("mapped.mismatch(heap)", lambda w: w.buf.mismatch(w.heap))
_compare("mapped.mismatch(private)", lambda w: w.buf.mismatch(w.private))
_compare("hash_code()", lambda w: w.buf.hash_code())
_compare("bytes(mapped)", lambda w: bytes(w.buf))

# -- typed views ---------------------------------------------------------------------------


@case("int_view.get()")
def _(w: World) -> Callable[[], object]:
    w.ints.clear().position(DEAD // 4)
    return w.ints.get


case("int_view.get(i)")(lambda w: lambda: w.ints.get(DEAD // 4))
case("int_view.put(i, v)")(lambda w: lambda: w.ints.put(DEAD // 4, 1))
case("int_view.get(i, dst)")(lambda w: lambda: w.ints.get(DEAD // 4, [0] * 4))


@case("int_view.hash_code()")
def _(w: World) -> Callable[[], object]:
    w.ints.clear()
    return w.ints.hash_code

case("double_view.get(i)")(lambda w: lambda: w.doubles.get(DEAD // 8))


@case("int_view.put(v)")
def _(w: World) -> Callable[[], object]:
    w.ints.clear().position(DEAD // 4)
    return lambda: w.ints.put(1)


@case("int_view.compact()")
def _(w: World) -> Callable[[], object]:
    w.ints.clear().position(DEAD // 4)
    return w.ints.compact


# -- a composite whose second component is the mapping ---------------------------------------

case("composite.get(i)")(lambda w: lambda: w.comp.get(HEAD + DEAD))
case("composite.get_int(i)")(lambda w: lambda: w.comp.get_int(HEAD + DEAD))
case("composite.put(i, v)")(lambda w: lambda: w.comp.put(HEAD + DEAD, 1))
case("composite.put_long(i, v)")(lambda w: lambda: w.comp.put_long(HEAD + DEAD, 1))
case("composite.get(i, dst)")(lambda w: lambda: w.comp.get(HEAD + DEAD - 8, bytearray(16)))
case("composite.put(i, src)")(lambda w: lambda: w.comp.put(HEAD + DEAD - 8, b"x" * 16))
case("composite int_view.get(i)")(lambda w: lambda: w.comp_ints.get((HEAD + DEAD) // 4))


def _composite(name: str, fn: Callable[[World], object]) -> None:
    def prepare(w: World) -> Callable[[], object]:
        w.comp.clear()
        w.heap_c.clear()
        return lambda: fn(w)
    CASES[name] = prepare


_composite("bytes(composite)", lambda w: bytes(w.comp))
_composite("composite.hash_code()", lambda w: w.comp.hash_code())
_composite("composite.equals(heap)", lambda w: w.comp.equals(w.heap_c))
_composite("heap.equals(composite)", lambda w: w.heap_c.equals(w.comp))
_composite("composite.compare_to(heap)", lambda w: w.comp.compare_to(w.heap_c))
_composite("composite.mismatch(heap)", lambda w: w.comp.mismatch(w.heap_c))
_composite("heap.put(composite)", lambda w: w.heap_c.put(w.comp))


@case("composite.compact()")
def _(w: World) -> Callable[[], object]:
    w.comp.clear().position(HEAD + DEAD)
    return w.comp.compact


# -- load, and channels writing from (or reading into) the mapping: the kernel says EFAULT ----

case("load()")(lambda w: w.buf.load)


def _channel(name: str, fn: Callable[[World], object]) -> None:
    def prepare(w: World) -> Callable[[], object]:
        w.buf.clear().position(DEAD)
        return lambda: fn(w)
    CASES[name] = prepare


_channel("file.write(mapped)", lambda w: w.out.write(w.buf))
_channel("file.write(mapped, position)", lambda w: w.out.write(w.buf, 0))
_channel("file.write([mapped])", lambda w: w.out.write([w.buf]))
_channel("pipe.write(mapped)", lambda w: w.pipe.sink().write(w.buf))
_channel("pipe.write([mapped])", lambda w: w.pipe.sink().write([w.buf]))
_channel("socket.write(mapped)", lambda w: w.sock.write(w.buf))
_channel("vmsplice(mapped)", lambda w: vmsplice(w.pipe.sink(), w.buf))
_channel("socket.write([mapped])", lambda w: w.sock.write([w.buf]))
_channel("file.read(mapped)", lambda w: w.out.read(w.buf, 0))
_channel("file.read([mapped])", lambda w: w.out.position(0).read([w.buf]))
_channel("pipe.read(mapped)", lambda w: w.pipe.source().read(w.buf))
_channel("socket.read(mapped)", lambda w: w.sock.read(w.buf))
_channel("socket.read([mapped])", lambda w: w.sock.read([w.buf]))


# -- running -----------------------------------------------------------------------------


def run(w: World, name: str, prepare: Case) -> str:
    access = prepare(w)
    before = w.indexes()
    try:
        access()
    except MappedRegionError as e:
        if e.errno != errno.EFAULT:
            return f"errno-{e.errno}"
        after = w.indexes()
        return "MappedRegionError" if after == before else f"indexes-moved:{before}->{after}"
    except Exception as e:  # reported, not raised: the parent shows every case
        return f"{type(e).__name__}:{e}".replace("\n", " ")
    return "no-error"


def keep_working(w: World) -> None:
    """What is left of the mapping still works after all those faults."""
    w.buf.clear()
    w.buf.put(5, 42)
    assert w.buf.get(5) == 42 and w.ro.get(5) == 42
    w.buf.slice(0, PAGE).load()  # the page that is left loads
    assert w.heap.clear().put_int(7).flip().get_int() == 7


def truncated(directory: str, names: list[str]) -> None:
    w = World(directory)
    for name in names or list(CASES):
        print("case", name.replace(" ", "_"), run(w, name, CASES[name]), flush=True)
    keep_working(w)
    w.close()


def hole(directory: str) -> None:
    """Write into a hole of a sparse file on a full file system."""
    path = os.path.join(directory, "sparse")
    with open(path, "wb") as f:
        f.truncate(4 * PAGE)  # a hole: no block behind any page
    ch = FileChannel.open(path, READ, WRITE)
    buf = ch.map(MapMode.READ_WRITE, 0, 4 * PAGE)  # inside the file: no growth, no fallocate
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\xff" * PAGE):  # fill the file system
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    for name, access in [("put_int(i, v) into a hole", lambda: buf.put_int(2 * PAGE, 1)),
                         ("put(i, src) into a hole", lambda: buf.put(3 * PAGE, b"x" * 8))]:
        try:
            access()
        except MappedRegionError:
            result = "MappedRegionError"
        except Exception as e:
            result = f"{type(e).__name__}:{e}"
        else:
            result = "no-error"
        print("case", name.replace(" ", "_"), result, flush=True)
    os.remove(filler)  # room again: the hole can be written now
    buf.put_int(2 * PAGE, 7)
    assert buf.get_int(2 * PAGE) == 7
    buf.release()
    ch.close()


if __name__ == "__main__":
    mode, where = sys.argv[1], sys.argv[2]
    if mode == "truncated":
        truncated(where, sys.argv[3:])
    else:
        hole(where)
    print("alive", flush=True)
