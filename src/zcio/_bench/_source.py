"""The test file every transfer benchmark sends: made, checked, and asked about.

One place for what ``zcio bench`` and ``benchmarks/transfer.py`` both need: a file of
random bytes with its CRC-32, the CRC-32 of a file read back, whether a file is wholly
in the page cache, and the type of the file system holding it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

from .._file_channel import FileChannel
from .._mapped import MapMode
from ._machine import mount_of

__all__ = ["BLOCK", "make_source", "file_crc", "page_cached", "file_system"]

BLOCK = 8 << 20  # bytes written or read back per call


def _nothing(n: int) -> None:
    pass


def make_source(path: str, size: int, prefix: int = 0,
                advance: Callable[[int], None] = _nothing) -> tuple[int, int]:
    """Write ``size`` random bytes to a new file and fsync it; return the CRC-32 of the
    whole file and of its first ``prefix`` bytes.  ``advance(n)`` is told of every
    block written (a progress bar).

    Random, so that a method that sends the wrong part of the file cannot match the
    checksum; fsynced, so that no writeback runs during the measurements and the pages
    stay in the page cache, clean.  The file must not exist (O_EXCL).
    """
    crc = prefix_crc = done = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        while done < size:
            block = os.urandom(min(size - done, BLOCK))
            with memoryview(block) as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                if done < prefix:
                    with view[: prefix - done] as head:
                        prefix_crc = zlib.crc32(head, prefix_crc)
            crc = zlib.crc32(block, crc)
            done += len(block)
            advance(len(block))
        os.fsync(fd)
    finally:
        os.close(fd)
    return crc, prefix_crc


def file_crc(path: str) -> tuple[int, int]:
    """(size, CRC-32) of a file, read in 8 MiB blocks (which also brings every page of
    it into the page cache)."""
    crc = total = 0
    buf = bytearray(BLOCK)
    with open(path, "rb", buffering=0) as f, memoryview(buf) as view:
        while n := f.readinto(buf):
            with view[:n] as part:
                crc = zlib.crc32(part, crc)
            total += n
    return total, crc


def page_cached(path: str) -> bool:
    """Whether every page of the file is resident (mincore, through ``is_loaded``)."""
    with FileChannel.open(path) as ch, ch.map(MapMode.READ_ONLY, 0, ch.size()) as m:
        return m.is_loaded()


def file_system(path: str) -> str:
    """The type of the file system holding ``path`` ("unknown" if mountinfo cannot say)."""
    mount = mount_of(path)
    return mount["type"] if mount else "unknown"
