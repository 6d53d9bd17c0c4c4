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
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .._errors import ZcioError
from .._file_channel import FileChannel, OpenOption
from .._metrics import measure
from .._socket_channel import SocketChannel
from ._methods import GB, Failed, Method, Unavailable
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


#: The receiver process: a fresh interpreter running only the standard library (not
#: a fork, which would copy whatever locks the caller's other threads hold at that
#: instant; nor multiprocessing's spawn, whose helper processes outlive the run).  For
#: each "recv" line on stdin it accepts one connection on the listener (the descriptor
#: in argv), reads to EOF, and answers one JSON line: [bytes, CRC-32, error].
_RECEIVER = r"""
import json, signal, socket, sys, zlib
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends us
listener = socket.socket(fileno=int(sys.argv[1]))
buf = bytearray(1 << 20)
view = memoryview(buf)
for line in sys.stdin:
    if line.strip() != "recv":
        break
    total = crc = 0
    error = ""
    try:
        conn, _ = listener.accept()
        with conn:
            while n := conn.recv_into(buf):
                total += n
                crc = zlib.crc32(view[:n], crc)
    except OSError as e:
        error = str(e)
    print(json.dumps([total, crc, error]), flush=True)
"""


class Receiver:
    """A separate process accepting on a loopback port: counts and CRC-32s what arrives."""

    def __init__(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = listener.getsockname()[:2]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _RECEIVER, str(listener.fileno())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                pass_fds=(listener.fileno(),))
        finally:
            listener.close()
        assert self._process.stdin is not None and self._process.stdout is not None
        self._commands, self._answers = self._process.stdin, self._process.stdout

    def expect(self) -> None:
        """Tell the receiver to accept the next connection."""
        self._commands.write("recv\n")
        self._commands.flush()

    def report(self, timeout: float) -> tuple[int, int, str]:
        """(bytes, CRC-32, error) of the connection just closed."""
        ready, _, _ = select.select([self._answers], [], [], timeout)
        line = self._answers.readline() if ready else ""
        if not line:
            raise Failed(f"the receiver did not report within {timeout:.0f} s"
                         if not ready else "the receiver exited")
        total, crc, error = json.loads(line)
        return int(total), int(crc), str(error)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._commands.close()  # end of input: the receiver exits
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._answers.close()

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
