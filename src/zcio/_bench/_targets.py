"""Where ``zcio bench`` sends, and how it measures and checks one run.

Socket runs go to a :class:`Receiver`, a separate process on loopback that counts and
CRC-32s every byte; file runs go to a new file next to the source, which is read back,
CRC-32'd and deleted.  A run whose size or checksum is wrong is a failure (Failed),
never a result.  The sender is measured with ``zcio.measure()``: wall time, getrusage
and zcio's path counters.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import resource
import signal
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from .._errors import ZcioError
from .._file_channel import FileChannel, OpenOption
from .._metrics import measure
from .._socket_channel import SocketChannel
from ._methods import GB, MIB, Failed, Method, Unavailable
from ._source import file_crc

__all__ = ["Sample", "Receiver", "run_socket", "run_file"]


@dataclass
class Sample:
    """One measured run of one method."""

    nbytes: int
    wall_seconds: float
    user_cpu_seconds: float
    system_cpu_seconds: float
    voluntary_switches: int
    involuntary_switches: int
    syscalls: int
    user_bytes: int
    kernel_bytes: int
    details: dict[str, int] = field(default_factory=dict)

    @property
    def gbps(self) -> float:
        return self.nbytes / self.wall_seconds / GB


def _measured(send: Callable[[], dict[str, int]], count: int) -> Sample:
    """Run ``send`` under ``zcio.measure()``, for this thread only: a progress bar's
    refresh thread must not add its CPU time and its sleeps to the sender's."""
    with measure(resource.RUSAGE_THREAD) as m:
        details = send()
    return Sample(count, m.wall_seconds, m.user_cpu_seconds, m.system_cpu_seconds,
                  m.voluntary_switches, m.involuntary_switches, m.syscalls, m.user_bytes,
                  m.kernel_bytes, details)


def _check(what: str, got: tuple[int, int], want: tuple[int, int]) -> None:
    if got != want:
        raise Failed(f"{what} {got[0]} bytes with CRC-32 {got[1]:08x}, "
                     f"expected {want[0]} bytes with CRC-32 {want[1]:08x}")


# -- file -> socket ----------------------------------------------------------------------


def _next(control: Connection) -> str:
    try:
        return str(control.recv())
    except (EOFError, OSError):  # the parent is gone
        return "quit"


def _receive(listener: socket.socket, control: Connection) -> None:
    """The receiver process: for each "recv", accept, read to EOF, report size and CRC."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends us
    buf = bytearray(MIB)
    view = memoryview(buf)
    while _next(control) == "recv":
        total = crc = 0
        error = ""
        try:
            conn, _ = listener.accept()
            with conn:
                recv_into = conn.recv_into
                while n := recv_into(buf):
                    total += n
                    crc = zlib.crc32(view[:n], crc)
        except OSError as e:
            error = str(e)
        control.send((total, crc, error))


class Receiver:
    """A separate process accepting on a loopback port: counts and CRC-32s what arrives."""

    def __init__(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = listener.getsockname()[:2]
        self._control, theirs = multiprocessing.Pipe()
        # Forked before any thread (progress bars) starts and before any socket is open.
        self._process = multiprocessing.get_context("fork").Process(
            target=_receive, args=(listener, theirs), daemon=True, name="zcio-bench-receiver")
        try:
            self._process.start()
        finally:
            listener.close()
            theirs.close()

    def expect(self) -> None:
        """Tell the receiver to accept the next connection."""
        self._control.send("recv")

    def report(self, timeout: float) -> tuple[int, int, str]:
        """(bytes, CRC-32, error) of the connection just closed."""
        if not self._control.poll(timeout):
            raise Failed(f"the receiver did not report within {timeout:.0f} s")
        total, crc, error = self._control.recv()
        return int(total), int(crc), str(error)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._control.send("quit")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process.close()
        self._control.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_socket(method: Method, receiver: Receiver, source: str, count: int, chunk: int,
               expected: tuple[int, int]) -> Sample:
    """Send the first ``count`` bytes of ``source`` to the receiver; measured and verified.

    The clock and the sender's counters run from the first byte sent to the receiver's
    report that everything arrived.
    """
    receiver.expect()
    timeout = 60 + count / 20e6
    reported = False
    with FileChannel.open(source) as src, SocketChannel.open(receiver.address) as dst:
        def send() -> dict[str, int]:
            nonlocal reported
            details = method.send(src, dst, count, chunk)
            dst.shutdown_output()
            reported = True
            got = receiver.report(timeout)
            if got[2]:
                raise Failed(f"the receiver's read failed: {got[2]}")
            _check("the receiver got", got[:2], expected)
            return details

        try:
            return _measured(send, count)
        except (OSError, ZcioError) as e:
            raise Failed(f"{type(e).__name__}: {e}") from e
        finally:
            if not reported:  # the receiver sees the end, reports, and is ready again
                with contextlib.suppress(OSError, ZcioError, Failed):
                    dst.close()
                    receiver.report(timeout)


# -- file -> file ------------------------------------------------------------------------


def run_file(method: Method, source: str, target: str, count: int, chunk: int,
             expected: tuple[int, int]) -> Sample:
    """Copy the first ``count`` bytes of ``source`` to a new file ``target``; measured,
    then read back and verified; the copy is deleted."""
    try:
        with (FileChannel.open(source) as src,
              FileChannel.open(target, OpenOption.WRITE, OpenOption.CREATE_NEW) as dst):
            sample = _measured(lambda: method.send(src, dst, count, chunk), count)
            if method.key == "copy_file_range":
                sample.details["reflinked"] = int(_shares_extents(dst.fileno()))
        _check("the copy has", file_crc(target), expected)
        return sample
    except (Failed, Unavailable):
        raise
    except (OSError, ZcioError) as e:
        raise Failed(f"{type(e).__name__}: {e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_HEAD = struct.Struct("=QQIIII")  # struct fiemap
_FIEMAP_EXTENT = struct.Struct("=QQQQQIIII")  # struct fiemap_extent
_FIEMAP_EXTENT_SHARED = 0x2000


def _shares_extents(fd: int, extents: int = 32) -> bool:
    """Whether the file's first extents are shared with another file (a reflink copy)."""
    request = bytearray(_FIEMAP_HEAD.size + extents * _FIEMAP_EXTENT.size)
    _FIEMAP_HEAD.pack_into(request, 0, 0, 2**64 - 1, 0, 0, extents, 0)
    try:
        fcntl.ioctl(fd, _FS_IOC_FIEMAP, request)
    except OSError:  # tmpfs and others cannot say: they cannot reflink either
        return False
    mapped = _FIEMAP_HEAD.unpack_from(request)[3]
    for i in range(min(mapped, extents)):
        flags = _FIEMAP_EXTENT.unpack_from(request, _FIEMAP_HEAD.size + i * _FIEMAP_EXTENT.size)[5]
        if flags & _FIEMAP_EXTENT_SHARED:
            return True
    return False
