"""Asynchronous close (issue 9, item 2): Java's rules for every channel and operation.

A channel closed while another thread uses it must (1) wake that thread, which raises
AsynchronousCloseError with the exact count it moved, and (2) never let a byte go to or
come from a descriptor the channel no longer owns, even when another thread opens files
as fast as it can to take over freed descriptor numbers.

Legit data never contains FOREIGN (0xEE); the grabber's files hold only FOREIGN.  A
foreign byte in what a channel read, or any change to a grabber file, is a misdirected
byte.  Every thread is joined; every round is bounded.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import zcio
from channel_kinds import close_while_blocked
from zcio import (
    AsynchronousCloseError,
    ByteBuffer,
    ClosedChannelError,
    FileChannel,
    MapMode,
    OpenOption,
    Pipe,
    ServerSocketChannel,
    SocketChannel,
    _wakeup,
)
from zcio._pipe import splice, tee, vmsplice

FOREIGN = 0xEE
SIZE = 1 << 20
R, W, C = OpenOption.READ, OpenOption.WRITE, OpenOption.CREATE
JOIN = 20.0  # seconds: a thread still alive after this is a hang, reported as a failure


def legit(n: int, start: int = 0) -> bytes:
    """Bytes that are never FOREIGN, different from their neighbours."""
    return bytes(((i * 7 + i // 239) % 0xED) for i in range(start, start + n))


DATA = legit(SIZE)


@pytest.fixture
def src_path(tmp_path: Path) -> Path:
    p = tmp_path / "src"
    p.write_bytes(DATA)
    return p


class Grabber:
    """Opens files in a loop so that any descriptor number freed too early is taken."""

    def __init__(self, tmp: Path, files: int = 6, size: int = 64 << 10) -> None:
        self.paths = [tmp / f"foreign{i}" for i in range(files)]
        self.size = size
        for p in self.paths:
            p.write_bytes(bytes([FOREIGN]) * size)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            fds = [os.open(p, os.O_RDWR | os.O_CLOEXEC) for p in self.paths]
            time.sleep(0)
            for fd in fds:
                os.close(fd)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(JOIN)
        assert not self.thread.is_alive()
        for p in self.paths:
            assert p.read_bytes() == bytes([FOREIGN]) * self.size, f"{p.name} was written"


@pytest.fixture
def grabber(tmp_path: Path) -> Iterator[Grabber]:
    g = Grabber(tmp_path)
    try:
        yield g
    finally:
        g.finish()


@dataclass
class Round:
    """One race: ``op`` runs in a loop in a worker until the channel closes under it."""

    close: Callable[[], None]
    op: Callable[[], None]
    verify: Callable[[], None]
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)  # AsynchronousCloseError.moved seen


def race(rnd: Round, rng: random.Random) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                rnd.op()
        except AsynchronousCloseError as e:
            rnd.moved.append(e.moved)
        except ClosedChannelError:
            pass
        except BaseException as e:  # anything else is a bug
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    time.sleep(rng.random() * 0.003)
    rnd.close()
    t.join(JOIN)
    try:
        assert not t.is_alive(), "the operation was not woken by close()"
        assert not errors, errors
        rnd.verify()
    finally:
        for c in rnd.cleanup:
            c()


def drain(sock_or_fd: socket.socket | int) -> bytes:
    """Read until end of stream."""
    out = bytearray()
    while True:
        chunk = (sock_or_fd.recv(1 << 16) if isinstance(sock_or_fd, socket.socket)
                 else os.read(sock_or_fd, 1 << 16))
        if not chunk:
            return bytes(out)
        out += chunk


# -- the rounds: one per kind of operation ---------------------------------------------


def file_read(tmp: Path, src: Path, rng: random.Random) -> Round:
    ch = FileChannel.open(src)
    buf = ByteBuffer.allocate_direct(4096)
    positional = rng.random() < 0.5

    def op() -> None:
        buf.clear()
        at = rng.randrange(SIZE) if positional else ch.position()
        try:
            n = ch.read(buf, at) if positional else ch.read(buf)
        except AsynchronousCloseError as e:
            assert buf.position() == e.moved
            check(at)
            raise
        if n < 0:
            ch.position(0)
        assert buf.position() == max(n, 0)
        check(at)

    def check(at: int) -> None:
        got = bytes(buf.flip())
        assert got == DATA[at : at + len(got)], "foreign bytes read"

    return Round(ch.close, op, lambda: None, [buf.release])


def file_write(tmp: Path, src: Path, rng: random.Random) -> Round:
    target = tmp / f"w{rng.random()}"
    ch = FileChannel.open(target, W, C)
    total = [0]
    gathered = rng.random() < 0.5

    def op() -> None:
        at = total[0] if total[0] + 12288 <= SIZE else 0  # rewriting the same bytes
        if gathered:
            ch.position(at)
        chunk = DATA[at : at + 12288]
        bufs = [ByteBuffer.wrap(chunk[i : i + 4096]) for i in range(0, 12288, 4096)]
        try:
            n = ch.write(bufs) if gathered else ch.write(bufs[0], at)
        except AsynchronousCloseError as e:
            total[0] = at + e.moved
            raise
        total[0] = at + n

    def verify() -> None:
        data = target.read_bytes()
        assert data == DATA[: len(data)], "the file got foreign bytes"

    return Round(ch.close, op, verify)


def socket_read(tmp: Path, src: Path, rng: random.Random) -> Round:
    a, b = socket.socketpair()
    ch = SocketChannel.from_socket(a)
    sent = legit(48 << 10, 5)
    b.sendall(sent)
    got = bytearray()
    buf = ByteBuffer.allocate(5000)

    def op() -> None:
        buf.clear()
        try:
            n = ch.read(buf)
        finally:
            got.extend(bytes(buf.flip()))
        assert n >= 0

    def verify() -> None:
        assert bytes(got) == sent[: len(got)], "foreign bytes read"

    return Round(ch.close, op, verify, [b.close])


def socket_write(tmp: Path, src: Path, rng: random.Random) -> Round:
    a, b = socket.socketpair()
    ch = SocketChannel.from_socket(a)
    total = [0]

    def op() -> None:
        at = total[0]
        bufs = [ByteBuffer.wrap(legit(3000, at)), ByteBuffer.wrap(legit(3000, at + 3000))]
        try:
            total[0] += ch.write(bufs)
        except AsynchronousCloseError as e:
            total[0] += e.moved
            assert sum(x.position() for x in bufs) == e.moved
            raise

    def verify() -> None:
        assert drain(b) == legit(total[0]), "the peer got other bytes than were counted"

    return Round(ch.close, op, verify, [b.close])


def pipe_read(tmp: Path, src: Path, rng: random.Random) -> Round:
    pipe = Pipe.open()
    sent = legit(40 << 10, 3)
    os.write(pipe.sink().fileno(), sent)
    got = bytearray()
    buf = ByteBuffer.allocate(3000)

    def op() -> None:
        buf.clear()
        try:
            assert pipe.source().read([buf]) >= 0
        finally:
            got.extend(bytes(buf.flip()))

    def verify() -> None:
        assert bytes(got) == sent[: len(got)], "foreign bytes read"

    return Round(pipe.source().close, op, verify, [pipe.close])


def pipe_write(tmp: Path, src: Path, rng: random.Random) -> Round:
    pipe = Pipe.open()
    total = [0]
    sink = pipe.sink()

    def op() -> None:
        buf = ByteBuffer.wrap(legit(10000, total[0]))
        try:
            total[0] += sink.write(buf)
        except AsynchronousCloseError as e:
            assert buf.position() == e.moved
            total[0] += e.moved
            raise

    def verify() -> None:
        assert drain(pipe.source().fileno()) == legit(total[0])

    return Round(sink.close, op, verify, [pipe.close])


def transfer_to_pipe(tmp: Path, src: Path, rng: random.Random) -> Round:
    """FileChannel.transfer_to a pipe (sendfile/splice, blocking on a full pipe)."""
    ch = FileChannel.open(src)
    pipe = Pipe.open()
    total = [0]
    close_file = rng.random() < 0.5

    def op() -> None:
        try:
            total[0] += ch.transfer_to(total[0], 20000, pipe.sink())
        except AsynchronousCloseError as e:
            total[0] += e.moved
            raise

    def verify() -> None:
        pipe.sink().close()
        assert drain(pipe.source().fileno()) == DATA[: total[0]]

    return Round(ch.close if close_file else pipe.sink().close, op, verify,
                 [ch.close, pipe.close])


def transfer_from_pipe(tmp: Path, src: Path, rng: random.Random) -> Round:
    """FileChannel.transfer_from a pipe that runs dry (blocked in splice)."""
    target = tmp / f"t{rng.random()}"
    ch = FileChannel.open(target, W, C)
    pipe = Pipe.open()
    sent = legit(30000)
    os.write(pipe.sink().fileno(), sent)
    total = [0]
    close_file = rng.random() < 0.5

    def op() -> None:
        try:
            total[0] += ch.transfer_from(pipe.source(), total[0], 7000)
        except AsynchronousCloseError as e:
            total[0] += e.moved
            raise

    def verify() -> None:
        assert target.read_bytes() == sent[: total[0]]

    return Round(ch.close if close_file else pipe.source().close, op, verify,
                 [ch.close, pipe.close])


def transfer_to_socket(tmp: Path, src: Path, rng: random.Random) -> Round:
    """zcio.transfer from a file to a socket channel whose peer does not read."""
    ch = FileChannel.open(src)
    a, b = socket.socketpair()
    sock = SocketChannel.from_socket(a)
    total = [0]
    close_file = rng.random() < 0.5
    log: list[object] = [close_file]

    def op() -> None:
        ch.position(total[0])
        try:
            total[0] += zcio.transfer(ch, sock, 30000)
            log.append(total[0])
        except AsynchronousCloseError as e:
            total[0] += e.moved
            log.append(e)
            raise
        except BaseException as e:
            log.append(e)
            raise

    def verify() -> None:
        sock.close()
        got = drain(b)
        assert (len(got), got) == (total[0], DATA[: total[0]]), log[-3:]

    return Round(ch.close if close_file else sock.close, op, verify,
                 [ch.close, sock.close, b.close])


def splice_file_to_pipe(tmp: Path, src: Path, rng: random.Random) -> Round:
    ch = FileChannel.open(src)
    pipe = Pipe.open()
    total = [0]
    close_file = rng.random() < 0.5

    def op() -> None:
        try:
            total[0] += splice(ch, pipe.sink(), 9000, src_position=total[0])
        except AsynchronousCloseError as e:
            total[0] += e.moved
            raise

    def verify() -> None:
        pipe.sink().close()
        assert drain(pipe.source().fileno()) == DATA[: total[0]]

    return Round(ch.close if close_file else pipe.sink().close, op, verify,
                 [ch.close, pipe.close])


def vmsplice_to_pipe(tmp: Path, src: Path, rng: random.Random) -> Round:
    pipe = Pipe.open()
    total = [0]
    keep: list[bytes] = []  # vmsplice hands over pages: keep them alive and unchanged

    def op() -> None:
        data = legit(8192, total[0])
        keep.append(data)
        try:
            total[0] += vmsplice(pipe.sink(), data)
        except AsynchronousCloseError as e:
            total[0] += e.moved
            raise

    def verify() -> None:
        assert drain(pipe.source().fileno()) == legit(total[0])

    return Round(pipe.sink().close, op, verify, [pipe.close])


def transfer_to_file(tmp: Path, src: Path, rng: random.Random) -> Round:
    """FileChannel.transfer_to a file (copy_file_range), either side closed."""
    target = tmp / f"c{rng.random()}"
    ch = FileChannel.open(src)
    out = FileChannel.open(target, W, C)
    total = [0]
    close_source = rng.random() < 0.5

    def op() -> None:
        try:
            total[0] += ch.transfer_to(total[0], 20000, out)
        except AsynchronousCloseError as e:
            total[0] += e.moved
            raise

    def verify() -> None:
        assert target.read_bytes() == DATA[: total[0]]

    return Round(ch.close if close_source else out.close, op, verify, [ch.close, out.close])


def tee_pipe_to_pipe(tmp: Path, src: Path, rng: random.Random) -> Round:
    """tee from a pipe into a pipe that fills up (blocked in tee), either closed."""
    source, target = Pipe.open(), Pipe.open()
    head = legit(20000, 9)
    os.write(source.sink().fileno(), head)
    counts: list[int] = []
    close_source = rng.random() < 0.5

    def op() -> None:
        try:
            counts.append(tee(source.source(), target.sink(), 7000))
        except AsynchronousCloseError as e:
            counts.append(e.moved)
            raise

    def verify() -> None:
        target.sink().close()
        assert drain(target.source().fileno()) == b"".join(head[:k] for k in counts)

    return Round(source.source().close if close_source else target.sink().close, op, verify,
                 [source.close, target.close])


def map_file(tmp: Path, src: Path, rng: random.Random) -> Round:
    ch = FileChannel.open(src)

    def op() -> None:
        at = rng.randrange(0, SIZE - 8192, 4096)
        with ch.map(MapMode.READ_ONLY, at, 8192) as m:
            assert bytes(m) == DATA[at : at + 8192], "a foreign file was mapped"

    return Round(ch.close, op, lambda: None)


ROUNDS = [file_read, file_write, socket_read, socket_write, pipe_read, pipe_write,
          transfer_to_pipe, transfer_from_pipe, transfer_to_socket, splice_file_to_pipe,
          vmsplice_to_pipe, map_file, transfer_to_file, tee_pipe_to_pipe]


@pytest.mark.parametrize("kind", ROUNDS, ids=lambda f: f.__name__)
def test_close_races_never_move_a_foreign_byte(kind: Callable[..., Round], tmp_path: Path,
                                               src_path: Path, grabber: Grabber) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(30):
        race(kind(tmp_path, src_path, rng), rng)


# -- blocked operations are woken --------------------------------------------------------


def blocked(ch: Any, call: Callable[[], object]) -> BaseException | None:
    return close_while_blocked(ch, call, JOIN)


needs_wakeup = pytest.mark.skipif(not _wakeup.available(),
                                  reason=f"no wake-up signal: {_wakeup.unavailability_cause()}")


def test_blocked_socket_read_is_woken() -> None:
    a, b = socket.socketpair()
    with b, SocketChannel.from_socket(a) as ch:
        err = blocked(ch, lambda: ch.read(ByteBuffer.allocate(10)))
        assert isinstance(err, AsynchronousCloseError) and err.moved == 0


def test_blocked_accept_is_woken() -> None:
    with ServerSocketChannel.open().bind(("127.0.0.1", 0)) as server:
        err = blocked(server, server.accept)
        assert isinstance(err, AsynchronousCloseError) and err.moved == 0


@needs_wakeup
def test_blocked_pipe_read_is_woken() -> None:
    with Pipe.open() as pipe:
        err = blocked(pipe.source(), lambda: pipe.source().read(ByteBuffer.allocate(10)))
        assert isinstance(err, AsynchronousCloseError) and err.moved == 0


@needs_wakeup
def test_blocked_lock_is_woken(tmp_path: Path) -> None:
    path = tmp_path / "locked"
    path.write_bytes(b"x")
    # Another open file description holds the lock (OFD locks conflict across them,
    # even in one process; zcio's own table is not involved).
    holder = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.fcntl(holder, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        with FileChannel.open(path, R, W) as ch:
            err = blocked(ch, ch.lock)
            assert isinstance(err, AsynchronousCloseError)
        with FileChannel.open(path, R, W) as again:  # zcio's table holds no stale entry
            assert again.try_lock() is None  # only the holder's lock refuses it
    finally:
        os.close(holder)
    with FileChannel.open(path, R, W) as again, again.try_lock() as lock:
        assert lock is not None and lock.is_valid()


@needs_wakeup
def test_blocked_pipe_write_reports_exactly_what_moved() -> None:
    with Pipe.open() as pipe:
        capacity = pipe.pipe_size()
        src = ByteBuffer.wrap(legit(capacity * 4))
        err = blocked(pipe.sink(), lambda: pipe.sink().write(src))
        assert isinstance(err, AsynchronousCloseError)
        assert err.moved == src.position() == capacity  # what the pipe took, no more
        assert drain(pipe.source().fileno()) == legit(capacity)


def test_blocked_socket_write_reports_exactly_what_moved() -> None:
    a, b = socket.socketpair()
    with b:
        ch = SocketChannel.from_socket(a)
        src = ByteBuffer.wrap(legit(8 << 20))
        err = blocked(ch, lambda: ch.write(src))
        assert isinstance(err, AsynchronousCloseError)
        assert 0 < err.moved == src.position() < 8 << 20
        assert drain(b) == legit(err.moved)


@needs_wakeup
def test_blocked_transfer_to_a_full_pipe_reports_what_moved(src_path: Path) -> None:
    with FileChannel.open(src_path) as ch, Pipe.open() as pipe:
        capacity = pipe.pipe_size()
        err = blocked(pipe.sink(), lambda: ch.transfer_to(0, SIZE, pipe.sink()))
        assert isinstance(err, AsynchronousCloseError)
        assert err.moved == capacity
        assert ch.position() == 0  # transfer_to never moves the channel's position
        assert drain(pipe.source().fileno()) == DATA[:capacity]


@needs_wakeup
@pytest.mark.parametrize("path", [None, "read_write", "mmap_write"])
@pytest.mark.parametrize("stream", ["socket", "pipe"])
def test_closing_the_file_wakes_a_transfer_waiting_on_the_other_end(
        tmp_path: Path, src_path: Path, stream: str, path: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The transfer sleeps on the stream, not on the file being closed: ``transfer_from``
    a stream with nothing to read, ``transfer_to`` a full one, by the default rungs and
    the relays.  Closing the file wakes it (the wake-up signal's interrupted call was
    retried on the stream alone)."""
    if path is not None:
        monkeypatch.setenv("ZCIO_TRANSFER_PATH", path)
    if stream == "socket":
        a, b = socket.socketpair()
        reader, writer = SocketChannel.from_socket(a), SocketChannel.from_socket(b)
    else:
        pipe = Pipe.open()
        reader, writer = pipe.source(), pipe.sink()
    with reader, writer:
        if path != "mmap_write":  # (a file source's rung only)
            with FileChannel.open(tmp_path / "into", R, W, C) as into:
                err = blocked(into, lambda: into.transfer_from(reader, 0, 1 << 20))
            assert isinstance(err, AsynchronousCloseError) and err.moved == 0
        writer.configure_blocking(False)
        while writer.write(ByteBuffer.allocate(1 << 16)):
            pass  # full
        writer.configure_blocking(True)
        with FileChannel.open(src_path) as src:
            err = blocked(src, lambda: src.transfer_to(0, 1 << 20, writer))
        assert isinstance(err, AsynchronousCloseError) and err.moved == 0


def test_closed_before_the_call_is_the_plain_closed_error(tmp_path: Path) -> None:
    ch = FileChannel.open(tmp_path / "f", W, C)
    ch.close()
    with pytest.raises(ClosedChannelError) as info:
        ch.write(ByteBuffer.wrap(b"x"))
    assert not isinstance(info.value, AsynchronousCloseError)


def test_the_descriptor_number_is_reserved_until_the_last_operation_leaves(
        tmp_path: Path) -> None:
    """While an operation is inside, close() leaves the number pointing at a dead socket,
    and the operation's leaving closes it."""
    with FileChannel.open(tmp_path / "f", W, C) as ch:
        fd = ch.fileno()
        assert ch._begin()
        ch.close()
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # still open: reserved
        assert os.fstat(fd).st_mode & 0o170000 == 0o140000  # a socket: the dead one
        assert ch._end() is True
        with pytest.raises(OSError):
            os.fstat(fd)  # closed for real by the last one out


# -- the wake-up signal's installation -----------------------------------------------------


def run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_wakeup_never_overrides_a_users_handler() -> None:
    out = run_python(
        "import signal\n"
        "def mine(s, f): pass\n"
        "signal.signal(signal.SIGRTMAX - 2, mine)\n"
        "from zcio import _wakeup\n"
        "assert signal.getsignal(signal.SIGRTMAX - 2) is mine\n"
        "print(_wakeup.available(), _wakeup.unavailability_cause())\n"
    )
    assert out.startswith("False ") and "will not override" in out


def test_wakeup_degrades_off_the_main_thread_and_sockets_still_wake() -> None:
    """Imported first from another thread, no handler can be installed: stated, and a
    blocked socket read is still woken (shutdown needs no signal)."""
    out = run_python(
        "import threading, socket\n"
        "box = {}\n"
        "t = threading.Thread(target=lambda: box.update(z=__import__('zcio')))\n"
        "t.start(); t.join()\n"
        "zcio = box['z']\n"
        "from zcio import _wakeup\n"
        "a, b = socket.socketpair()\n"
        "ch = zcio.SocketChannel.from_socket(a)\n"
        "err = []\n"
        "def read():\n"
        "    try: ch.read(zcio.ByteBuffer.allocate(4))\n"
        "    except zcio.AsynchronousCloseError as e: err.append(e.moved)\n"
        "r = threading.Thread(target=read); r.start()\n"
        "import time\n"
        "while not ch._users: time.sleep(0.001)\n"
        "time.sleep(0.05); ch.close(); r.join(20); b.close()\n"
        "print(_wakeup.available(), err, _wakeup.unavailability_cause())\n"
    )
    assert out.startswith("False [0] ") and "main thread" in out
