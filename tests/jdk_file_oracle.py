"""Differential testing of zcio's FileChannel against java.nio (JDK 17): generator and runner.

``tests/jdk/FileChannelOracle.java`` runs a *sequence* of operation lines on java.nio,
:class:`FileRunner` runs it on zcio, each in a fresh directory of its own plus one on
another file system (``/dev/shm``, tmpfs), on identical files.  Both print, per operation,
a result line and a state line that must be equal.  The JVM, comparison and shrinking
are those of ``tests/jdk_oracle.py``.

Files: ``a`` and ``b`` in the directory, ``s`` on the other file system, ``n`` in the
directory but absent until a channel creates it.  Channels, locks and mappings are
numbered in the order of the operations that make them (``open``, ``lock``/``trylock``,
``map``), failed ones included; naming one that does not exist (or failed) prints
``skip`` on both sides.  Operation lines (``K``/``J`` channel, ``L`` lock, ``M``
mapping numbers, ``HEX`` bytes or ``-`` for none, numbers decimal)::

    files HEX HEX HEX              write a, b and s (first line of every sequence)
    open F OPTS                    F in a b s n; OPTS StandardOpenOption names joined
                                   by commas, or -; result: the channel number
    close K | position K | setpos K N | size K | truncate K N | force K true|false
    read K CAP | pread K CAP POS   into a new heap buffer: count and the bytes read
    readv K CAP,CAP,.. OFF LEN     scatter: count and each buffer's bytes read
    write K HEX | pwrite K HEX POS count and the source's position
    writev K HEX,HEX,.. OFF LEN    gather: count and each source's position
                                   (a part @J: part J's buffer listed again)
    tto K POS COUNT J PATH         K.transferTo(POS, COUNT, J)
    tfrom K J POS COUNT PATH       K.transferFrom(J, POS, COUNT)
    map K MODE POS SIZE            result: mapping number, capacity, read-only
    mput M INDEX HEX | mget M INDEX LEN    absolute bulk put/get on a mapping (``skip``
                                   for one made before a truncate or TRUNCATE_EXISTING:
                                   a page past a shrunk file's end is SIGBUS)
    lock K POS SIZE SHARED | trylock K POS SIZE SHARED
                                   result: lock number, position, size, shared, valid
                                   (``null`` when try_lock finds it held)
    release L | lvalid L

``PATH`` is the zcio transfer path to force (``-``: the default ladder); Java ignores it.
A forced rung that cannot serve the files (EXDEV, EINVAL... with nothing moved) must
leave every position and size as it was; the runner then runs the default ladder.

Two things Java does are not held against zcio (README, "Deliberate differences"), so
the oracle overwrites them: a transfer within one file to an overlapping range ahead
of the source leaves in Java whatever the kernel's copy from a mapping of the same
pages produced, and the oracle writes the original bytes there (zcio copies as
memmove); a ``map`` whose ``mmap`` fails leaves Java's file grown, and the oracle cuts
it back (zcio undoes its grow).

Result lines: ``ok ...``, ``ex NAME`` (Java's ``...Exception`` -> zcio's ``...Error``;
zcio's builtin OSErrors are named as Java's: FileNotFoundError -> NoSuchFileError,
FileExistsError -> FileAlreadyExistsError, other OSError and TransferError -> IOError) or
``skip``.  State lines: ``st POSITIONS | a=SIZE/CRC b=... s=... n=...``, one position per
channel (``-`` never opened, ``x`` closed), CRC32 of each file (``none``: absent).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from random import Random
from types import FrameType
from typing import Any

import zcio
from jdk_oracle import HarnessError
from zcio import ByteBuffer, FileChannel, FileLock, MapMode, OpenOption, _step, _transfer

JAVA_SOURCE = Path(__file__).with_name("jdk") / "FileChannelOracle.java"
FILES = ("a", "b", "s", "n")
CRC_LIMIT = 4 << 20
LONG_MAX = (1 << 63) - 1
LOCK_WAIT = 5.0  # seconds a blocking lock may wait before the runner calls it a deadlock
_FALLBACK = _step.FALLBACK


def other_filesystem() -> Path | None:
    """A directory on tmpfs (``/dev/shm``) if there is one, for cross-file-system transfers."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


# -- the generator ---------------------------------------------------------------------------

_OPTION_SETS = [
    "READ", "READ", "WRITE", "READ,WRITE", "READ,WRITE", "READ,WRITE", "WRITE,APPEND",
    "READ,WRITE,CREATE", "WRITE,CREATE_NEW", "READ,WRITE,TRUNCATE_EXISTING", "-",
    "READ,APPEND", "APPEND,TRUNCATE_EXISTING", "READ,WRITE,DELETE_ON_CLOSE",
    "READ,WRITE,SYNC", "READ,WRITE,DSYNC", "READ,CREATE", "WRITE,APPEND,CREATE",
]
_PATHS = ["-", "-", "-", *_transfer.PATHS]


class Generator:
    """Random FileChannel operation sequences."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.channels = self.locks = self.maps = 0
        # Mappings made before a file may have shrunk are not touched: a page past the
        # new end raises SIGBUS (an InternalError in Java, death in CPython).
        self.touchable_maps = 0

    def _hex(self, most: int) -> str:
        n = self.rng.randrange(most + 1)
        return self.rng.randbytes(n).hex() or "-"

    def _small(self) -> int:
        """A position or size near the files' sizes, sometimes negative or far."""
        r = self.rng.random()
        if r < 0.04:
            return -1 - self.rng.randrange(3)
        if r < 0.06:
            return 1 << 16
        return self.rng.randrange(260)

    def _count(self) -> int:
        r = self.rng.random()
        if r < 0.04:
            return -1
        if r < 0.12:
            return (1 << 62) + self.rng.randrange(3)
        return self.rng.randrange(300)

    def _lock_range(self) -> tuple[int, int]:
        r = self.rng.random()
        if r < 0.05:
            return LONG_MAX - self.rng.randrange(200), self.rng.choice([1, 200, LONG_MAX])
        if r < 0.1:
            return -1, 10
        if r < 0.15:
            return 10, -1
        size = LONG_MAX if r < 0.3 else self.rng.randrange(150)
        return self.rng.randrange(150), size

    def _map_range(self) -> tuple[int, int]:
        r = self.rng.random()
        if r < 0.05:
            return LONG_MAX - self.rng.randrange(200), self.rng.randrange(1, 300)
        if r < 0.08:
            return (1 << 20), 4096
        if r < 0.1:
            return -1, 10
        if r < 0.12:
            return 10, -1
        return self.rng.randrange(300), self.rng.randrange(200)

    def _channel(self) -> int:
        return self.rng.randrange(max(self.channels, 1))

    def _open(self) -> str:
        self.channels += 1
        name = self.rng.choice("aaabbbssn")
        options = self.rng.choice(_OPTION_SETS)
        if "TRUNCATE_EXISTING" in options:
            self.touchable_maps = self.maps
        return f"open {name} {options}"

    def sequence(self) -> list[str]:
        rng = self.rng
        seq = [f"files {self._hex(200)} {self._hex(200)} {self._hex(200)}"]
        seq += [self._open() for _ in range(rng.randrange(1, 4))]
        for _ in range(rng.randrange(5, 30)):
            seq.append(self._operation())
        return seq

    def _operation(self) -> str:
        rng = self.rng
        k = self._channel()
        op = rng.choices(
            ["open", "close", "read", "pread", "readv", "write", "pwrite", "writev",
             "position", "setpos", "size", "truncate", "force", "tto", "tfrom", "map",
             "mput", "mget", "lock", "trylock", "release", "lvalid"],
            [6, 3, 5, 4, 3, 5, 4, 3, 2, 3, 2, 3, 1, 9, 12, 5, 3, 2, 3, 3, 3, 2],
        )[0]
        match op:
            case "open":
                return self._open()
            case "close" | "position" | "size":
                return f"{op} {k}"
            case "read":
                return f"read {k} {rng.randrange(64)}"
            case "pread":
                return f"pread {k} {rng.randrange(64)} {self._small()}"
            case "readv" | "writev":
                n = rng.randrange(1, 4)
                parts = ([str(rng.randrange(40)) for _ in range(n)] if op == "readv"
                         else [self._hex(40) for _ in range(n)])
                for i in range(1, n if op == "writev" else 0):
                    # a buffer listed twice: Java's positions say where its last listing
                    # put it (a scatter into one is not asked of Java: its heap buffers
                    # overflow there, after the bytes were read; zcio does as its direct
                    # buffers do, tests/test_channel_contract.py)
                    if rng.random() < 0.2:
                        j = rng.randrange(i)
                        parts[i] = parts[j] if parts[j].startswith("@") else f"@{j}"
                offset, length = rng.choice([(0, n), (0, n), (1, n - 1), (0, n + 1), (-1, 1)])
                return f"{op} {k} {','.join(parts)} {offset} {length}"
            case "write":
                return f"write {k} {self._hex(80)}"
            case "pwrite":
                return f"pwrite {k} {self._hex(80)} {self._small()}"
            case "setpos" | "truncate":
                if op == "truncate":
                    self.touchable_maps = self.maps
                return f"{op} {k} {self._small()}"
            case "force":
                return f"force {k} {rng.choice(['true', 'false'])}"
            case "tto":
                return (f"tto {k} {self._small()} {self._count()} {self._channel()} "
                        f"{rng.choice(_PATHS)}")
            case "tfrom":
                j = k if rng.random() < 0.25 else self._channel()
                return (f"tfrom {k} {j} {self._small()} {self._count()} "
                        f"{rng.choice(_PATHS)}")
            case "map":
                self.maps += 1
                position, size = self._map_range()
                mode = rng.choice(["READ_ONLY", "READ_WRITE", "PRIVATE"])
                return f"map {k} {mode} {position} {size}"
            case "mput" | "mget":
                m = rng.randrange(self.touchable_maps, self.maps + 1)
                index = rng.randrange(-1, 60)
                last = self._hex(20) if op == "mput" else rng.randrange(20)
                return f"{op} {m} {index} {last}"
            case "lock" | "trylock":
                self.locks += 1
                position, size = self._lock_range()
                return f"{op} {k} {position} {size} {rng.choice(['true', 'false'])}"
            case _:  # release, lvalid
                return f"{op} {rng.randrange(self.locks + 1)}"


# -- the zcio side -------------------------------------------------------------------------


class _Deadlock(Exception):
    """A blocking lock waited LOCK_WAIT seconds: Java would have returned or raised."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Deadlock


def _name(e: BaseException) -> str:
    """The exception's name as the Java oracle prints it (mapped to zcio's style)."""
    if isinstance(e, zcio.TransferError):
        return "IOError"
    if isinstance(e, zcio.ZcioError):
        return type(e).__name__
    if isinstance(e, FileNotFoundError):
        return "NoSuchFileError"
    if isinstance(e, FileExistsError):
        return "FileAlreadyExistsError"
    if type(e) is OSError or isinstance(e, (PermissionError, IsADirectoryError)):
        return "IOError"
    return f"!{type(e).__name__}: {e}"


def _hex(data: bytes | bytearray | memoryview) -> str:
    return bytes(data).hex() or "-"


def _unhex(text: str) -> bytearray:
    return bytearray() if text == "-" else bytearray.fromhex(text)


def _listed(spec: str, make: Callable[[str], ByteBuffer]) -> list[ByteBuffer]:
    """The buffers of a readv/writev word: ``make(part)`` each, ``@J`` part J's again."""
    bufs: list[ByteBuffer] = []
    for part in spec.split(","):
        bufs.append(bufs[int(part[1:])] if part.startswith("@") else make(part))
    return bufs


class FileRunner:
    """Runs one sequence on zcio, printing what FileChannelOracle prints."""

    def __init__(self, root: Path, shm: Path) -> None:
        self.root, self.shm = root, shm
        self.dir = self.shm_dir = root
        self.channels: list[FileChannel | None] = []
        self.locks: list[FileLock | None] = []
        self.maps: list[Any] = []
        self.map_epochs: list[int] = []  # per mapping, ``shrinks`` when it was made
        # Operations so far that may have shrunk a file (truncate, TRUNCATE_EXISTING): a
        # mapping older than the last is not touched, since a page past the end is SIGBUS.
        self.shrinks = 0
        self.tok: list[str] = []
        self.next = 0

    def __call__(self, seq: Sequence[str]) -> list[str]:
        self.dir = Path(tempfile.mkdtemp(dir=self.root))
        self.shm_dir = Path(tempfile.mkdtemp(dir=self.shm))
        self.channels, self.locks, self.maps, self.map_epochs = [], [], [], []
        self.shrinks = 0
        try:
            lines: list[str] = []
            for op in seq:
                lines.append(self._run(op))
                lines.append(self._state())
            return lines
        finally:
            self._finish()

    def _finish(self) -> None:
        for lock in self.locks:
            if lock is not None and lock.channel().is_open():
                lock.release()
        for m in self.maps:
            if m is not None:
                m.release()
        for ch in self.channels:
            if ch is not None:
                ch.close()
        shutil.rmtree(self.dir)
        shutil.rmtree(self.shm_dir)

    def _file(self, name: str) -> Path:
        if name not in FILES:
            raise HarnessError(f"no file {name}")
        return (self.shm_dir if name == "s" else self.dir) / name

    def _run(self, line: str) -> str:
        self.tok = line.split(" ")
        self.next = 0
        try:
            result = self._exec(self._word())
        except HarnessError:
            raise
        except Exception as e:
            result = f"ex {_name(e)}"
        if self.next != len(self.tok):
            raise HarnessError(f"unused arguments in: {line}")
        return result

    def _state(self) -> str:
        parts = ["st"]
        for ch in self.channels:
            if ch is None:
                parts.append("-")
            elif not ch.is_open():
                parts.append("x")
            else:
                try:
                    parts.append(str(ch.position()))
                except Exception as e:
                    parts.append(f"!{type(e).__name__}")
        parts.append("|")
        for name in FILES:
            path = self._file(name)
            if not path.exists():
                parts.append(f"{name}=none")
                continue
            size = path.stat().st_size
            crc = f"/{zlib.crc32(path.read_bytes()):x}" if size <= CRC_LIMIT else ""
            parts.append(f"{name}={size}{crc}")
        return " ".join(parts)

    # -- arguments -------------------------------------------------------------------

    def _word(self) -> str:
        if self.next >= len(self.tok):
            raise HarnessError("missing argument")
        self.next += 1
        return self.tok[self.next - 1]

    def _int(self) -> int:
        return int(self._word())

    def _channel(self) -> FileChannel | None:
        k = self._int()
        return self.channels[k] if 0 <= k < len(self.channels) else None

    def _mapping(self) -> Any:
        k = self._int()
        if not 0 <= k < len(self.maps) or self.map_epochs[k] < self.shrinks:
            return None
        return self.maps[k]

    def _indexed(self, items: list[Any]) -> Any:
        k = self._int()
        return items[k] if 0 <= k < len(items) else None

    # -- operations --------------------------------------------------------------------

    def _exec(self, op: str) -> str:
        match op:
            case "files":
                for name in ("a", "b", "s"):
                    self._file(name).write_bytes(_unhex(self._word()))
                return "ok"
            case "open":
                path = self._file(self._word())
                spec = self._word()
                options = [] if spec == "-" else [OpenOption[o] for o in spec.split(",")]
                self.channels.append(None)
                self.channels[-1] = FileChannel.open(path, *options)
                if OpenOption.TRUNCATE_EXISTING in options:
                    self.shrinks += 1
                return f"ok {len(self.channels) - 1}"
            case "mput":
                m = self._mapping()
                index, data = self._int(), _unhex(self._word())
                if m is None:
                    return "skip"
                m.put(index, data)
                return "ok"
            case "mget":
                m = self._mapping()
                index, dst = self._int(), bytearray(self._int())
                if m is None:
                    return "skip"
                m.get(index, dst)
                return f"ok {_hex(dst)}"
            case "release":
                lock = self._indexed(self.locks)
                if lock is None:
                    return "skip"
                lock.release()
                return "ok"
            case "lvalid":
                lock = self._indexed(self.locks)
                return "skip" if lock is None else f"ok {str(lock.is_valid()).lower()}"
        ch = self._channel()
        match op:
            case "close":
                if ch is None:
                    return "skip"
                ch.close()
                return "ok"
            case "read" | "pread":
                dst = ByteBuffer.allocate(self._int())
                position = self._int() if op == "pread" else None
                if ch is None:
                    return "skip"
                n = ch.read(dst) if position is None else ch.read(dst, position)
                return f"ok {n} {_hex(dst.array()[: dst.position()])}"
            case "readv":
                dsts = _listed(self._word(), lambda c: ByteBuffer.allocate(int(c)))
                offset, length = self._int(), self._int()
                if ch is None:
                    return "skip"
                n = ch.read(dsts, offset, length)
                return " ".join([f"ok {n}", *(_hex(d.array()[: d.position()]) for d in dsts)])
            case "write" | "pwrite":
                src = ByteBuffer.wrap(_unhex(self._word()))
                position = self._int() if op == "pwrite" else None
                if ch is None:
                    return "skip"
                n = ch.write(src) if position is None else ch.write(src, position)
                return f"ok {n} {src.position()}"
            case "writev":
                srcs = _listed(self._word(), lambda h: ByteBuffer.wrap(_unhex(h)))
                offset, length = self._int(), self._int()
                if ch is None:
                    return "skip"
                n = ch.write(srcs, offset, length)
                return " ".join([f"ok {n}", *(str(s.position()) for s in srcs)])
            case "position" | "size":
                return "skip" if ch is None else f"ok {getattr(ch, op)()}"
            case "setpos" | "truncate":
                if op == "truncate":
                    self.shrinks += 1
                n = self._int()
                if ch is None:
                    return "skip"
                got = ch.position(n) if op == "setpos" else ch.truncate(n)
                return "ok this" if got is ch else "ok other"
            case "force":
                meta = self._word() == "true"
                if ch is None:
                    return "skip"
                ch.force(meta)
                return "ok"
            case "tto":
                position, count, target, path = self._int(), self._int(), self._channel(), \
                    self._word()
                if ch is None or target is None:
                    return "skip"
                n = self._transfer(_transfer.transfer_to, path, ch, position, count, target)
                return f"ok {n}"
            case "tfrom":
                source, position, count, path = self._channel(), self._int(), self._int(), \
                    self._word()
                if ch is None or source is None:
                    return "skip"
                n = self._transfer(_transfer.transfer_from, path, ch, source, position, count)
                return f"ok {n}"
            case "map":
                mode = MapMode[self._word()]
                position, size = self._int(), self._int()
                if ch is None:
                    return "skip"
                self.maps.append(None)
                self.map_epochs.append(self.shrinks)
                buf = ch.map(mode, position, size)
                self.maps[-1] = buf
                return f"ok {len(self.maps) - 1} {buf.capacity()} {str(buf.is_read_only()).lower()}"
            case "lock" | "trylock":
                position, size, shared = self._int(), self._int(), self._word() == "true"
                if ch is None:
                    return "skip"
                self.locks.append(None)
                lock = self._lock(ch, op == "lock", position, size, shared)
                if lock is None:
                    return "ok null"
                self.locks[-1] = lock
                return (f"ok {len(self.locks) - 1} {lock.position()} {lock.size()} "
                        f"{str(lock.is_shared()).lower()} {str(lock.is_valid()).lower()}")
        raise HarnessError(f"unknown operation {op}")

    def _transfer(self, fn: Any, path: str, *args: Any) -> int:
        """Run a transfer, on the forced rung ``path`` first unless it is ``-``.

        A forced rung that cannot serve these files fails with nothing moved: every
        position and size must be as before; then the default ladder runs, as Java would.
        """
        if path == "-":
            return int(fn(*args))
        before = self._state()
        try:
            return int(fn(*args, path=path))
        except zcio.TransferError:
            raise
        except OSError as e:
            if e.errno not in _FALLBACK:
                raise
            after = self._state()
            if after != before:
                raise AssertionError(
                    f"forced {path} failed ({e}) yet changed {before} -> {after}") from e
        return int(fn(*args))

    @staticmethod
    def _lock(ch: FileChannel, wait: bool, position: int, size: int, shared: bool
              ) -> FileLock | None:
        """``try_lock``, or ``lock`` bounded by LOCK_WAIT (one process: a wait is a deadlock)."""
        if not wait:
            return ch.try_lock(position, size, shared)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, LOCK_WAIT)
        try:
            return ch.lock(position, size, shared)
        except _Deadlock:
            raise AssertionError("lock() blocked: a lock this process no longer holds "
                                 "is still held in the kernel") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

