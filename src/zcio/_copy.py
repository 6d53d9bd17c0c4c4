"""Copying one file by the cheapest path, atomically: ``zcio.copy_file``.

The ladder: a reflink (``FICLONE``: nothing copied, the blocks are shared), then
``zcio.transfer``'s own (copy_file_range, sendfile, mmap+write, read/write).  Only the
source's data extents are transferred (a ``SEEK_DATA``/``SEEK_HOLE`` walk,
:func:`data_extents`), in chunks of 64 MiB so progress is reported, and the copy is cut
to the source's size at the end, so holes stay holes.  Then read(2) continues from there
to the real end (:func:`copy_to_end`): procfs files say 0 bytes and sysfs files a page
whatever they hold, and a file may grow while it is copied; the copy is what was read,
to the byte.  A source that is smaller at the end than at the start shrank under the
copy: an error, never a short or zero-padded copy.

The copy goes to a new temporary file beside DST (``O_EXCL``, a random name), which
replaces DST with ``rename(2)`` only once complete: on any error (or an exception such
as KeyboardInterrupt or SystemExit raised in the copying thread) the temporary file is
removed and DST is as it was.  ``sync=True`` fsyncs the file before the rename and the
directory after it.

Modes follow cp: a new DST gets SRC's permission bits less the umask, an existing DST
keeps its own mode (and owner, when root); ``preserve=True`` copies SRC's mode, its
access and modification times to the nanosecond, and its owner and group when allowed
(set-user- and set-group-ID bits are dropped when the owner could not be kept, as cp
does).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import _reflink
from ._errors import IllegalArgumentError, TransferError
from ._file_channel import FileChannel, OpenOption
from ._metrics import PathStats, measure
from ._progress import Meter, ProgressCallback
from ._transfer import PATHS, transfer

__all__ = ["copy_file", "CopyResult", "METHODS", "data_extents", "copy_to_end"]

#: ``--method`` choices and the transfer path each forces (None: the whole ladder).
METHODS: dict[str, str | None] = {
    "auto": None,
    "reflink": "reflink",
    "copy_file_range": "copy_file_range",
    "sendfile": "sendfile",
    "splice": "splice",
    "mmap": "mmap_write",
    "read_write": "read_write",
}

#: One transfer call moves at most this much, so progress is reported as it goes.
CHUNK = 64 << 20

_TEMP_PREFIX_MAX = 200  # keeps ".NAME.zcio-XXXXXXXX.tmp" under NAME_MAX (255)


# -- the copy --------------------------------------------------------------------------


@dataclass
class CopyResult:
    """What one copy did: sizes, time and the paths that ran (in ladder order)."""

    src: str
    dst: str
    size: int
    data_bytes: int
    seconds: float
    paths: dict[str, PathStats] = field(default_factory=dict)

    @property
    def holes(self) -> int:
        return self.size - self.data_bytes

    @property
    def gb_per_s(self) -> float | None:
        return self.data_bytes / self.seconds / 1e9 if self.seconds > 0 else None


def _umask() -> int:
    """The process umask, read without changing it (Linux 4.7+), else by setting it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stat_or_none(path: str) -> os.stat_result | None:
    """stat(2) following links; None if nothing is there.  A dangling link is an error."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise OSError(errno.ENOENT, "not writing through dangling symbolic link",
                          path) from None
        return None


def _resolve(src: str, dst: str) -> tuple[os.stat_result, str, os.stat_result | None]:
    """Check the arguments as cp does: (SRC's stat, the file to write, its stat if any)."""
    src_st = os.stat(src)
    if stat.S_ISDIR(src_st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory (zcio cp copies files)", src)
    if not stat.S_ISREG(src_st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", src)
    target = dst
    dst_st = _stat_or_none(dst)
    if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        target = os.path.join(dst, os.path.basename(os.path.normpath(src)))
        dst_st = _stat_or_none(target)
    elif dst_st is None and dst.endswith("/"):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", dst)
    if dst_st is not None:
        if (dst_st.st_dev, dst_st.st_ino) == (src_st.st_dev, src_st.st_ino):
            raise IllegalArgumentError(f"{src!r} and {target!r} are the same file")
        if stat.S_ISDIR(dst_st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "cannot overwrite a directory", target)
        if not stat.S_ISREG(dst_st.st_mode):
            raise OSError(errno.EINVAL, "exists and is not a regular file", target)
        if os.path.islink(target):  # cp writes through a link to the file it names
            target = os.path.realpath(target)
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", target)
    return src_st, target, dst_st


def _create_temp(target: str) -> tuple[str, FileChannel]:
    """A new, empty file beside ``target`` (O_EXCL, mode 0600 until the copy ends)."""
    parent, name = os.path.split(target)
    for _ in range(100):
        tmp = os.path.join(parent, f".{name[:_TEMP_PREFIX_MAX]}.zcio-"
                                   f"{secrets.token_hex(4)}.tmp")
        try:
            return tmp, FileChannel.open(tmp, OpenOption.WRITE, OpenOption.CREATE_NEW,
                                         mode=0o600)
        except FileExistsError:
            continue
        except OSError as e:  # name DST, not the temporary file, in the message
            raise OSError(e.errno, e.strerror, target) from None
    raise FileExistsError(errno.EEXIST, "no free temporary name", target)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data extent of the first ``size`` bytes, in order.

    Walks ``lseek(SEEK_DATA)``/``lseek(SEEK_HOLE)``; where the file system cannot say
    (EINVAL), the whole file is one extent.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from here to the end
                return
            if e.errno == errno.EINVAL:
                yield pos, size - pos
                return
            raise
        if start >= size:
            return
        try:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError as e:
            if e.errno != errno.ENXIO:  # the file shrank under us: transfer will say so
                raise
            end = size
        yield start, end - start
        pos = end


def _copy_data(src: FileChannel, dst: FileChannel, size: int, method: str, target: str,
               progress: ProgressCallback | None, src_path: str) -> tuple[int, int]:
    """Fill ``dst`` (to become ``target``) with ``src``'s content: its data extents up to
    ``size`` (what fstat said), then read(2) from where they ended to the real end.

    The real end differs for pseudo files (procfs says 0 bytes, sysfs 4096 whatever it
    holds; copy_file_range may even answer 0 there) and for a file that grows; the copy
    gets what read(2) gave, to the byte.  A file that is smaller at the end than at the
    start shrank while being read: an error, never a silently short or padded copy.

    Returns (data bytes written or cloned, the copy's length).
    """
    path = METHODS[method]
    if path in (None, "reflink"):
        if path == "reflink":
            try:
                _reflink.reflink(src.fileno(), dst.fileno())
            except OSError as e:
                raise OSError(e.errno, f"reflink refused: {e.strerror}", target) from None
            return (n := dst.size()), n
        if size and _reflink.try_reflink(src.fileno(), dst.fileno()):
            return (n := dst.size()), n
    extents = list(data_extents(src.fileno(), size))
    total = sum(n for _, n in extents)
    bar = Meter(progress, "cp", os.path.basename(target), total or None)
    end = _copy_extents(src, dst, extents, path, bar)
    if end is None:
        end = size
    else:  # the data ended early: a pseudo file's size, or the file shrank
        total = sum(max(0, min(end, s + n) - s) for s, n in extents)
    os.ftruncate(dst.fileno(), end)  # the trailing hole, if any
    more = copy_to_end(src, dst, end, bar)
    if (now := src.size()) < size:
        raise OSError(errno.ENODATA, f"file shrank while being copied (from {size:,} to "
                                     f"{now:,} bytes); nothing written", src_path)
    return total + more, end + more


def _copy_extents(src: FileChannel, dst: FileChannel, extents: list[tuple[int, int]],
                  path: str | None, bar: Meter) -> int | None:
    """Transfer each extent at its offset; None, or the offset where the source ended."""
    for start, length in extents:
        pos, end = start, start + length
        while pos < end:
            n = min(CHUNK, end - pos)
            src.position(pos)
            dst.position(pos)
            try:
                transfer(src, dst, n, path=path)
            except TransferError as e:
                if e.errno != errno.ENODATA:  # anything but "the source ended"
                    raise
                bar.advance(e.transferred)
                return pos + e.transferred
            pos += n
            bar.advance(n)
    return None


def _apply_metadata(fd: int, src_st: os.stat_result, dst_st: os.stat_result | None,
                    preserve: bool) -> None:
    """Mode, owner and times of the new file, as cp (``-p``) would leave them."""
    if preserve:
        mode = stat.S_IMODE(src_st.st_mode)
        try:
            os.fchown(fd, src_st.st_uid, src_st.st_gid)
        except PermissionError:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, src_st.st_gid)
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        os.fchmod(fd, mode)
        os.utime(fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
    elif dst_st is not None:  # cp overwrites in place: the file keeps its mode and owner
        if os.geteuid() == 0:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, dst_st.st_uid, dst_st.st_gid)
        os.fchmod(fd, stat.S_IMODE(dst_st.st_mode))
    else:
        os.fchmod(fd, stat.S_IMODE(src_st.st_mode) & 0o777 & ~_umask())


def copy_file(src: str, dst: str, *, method: str = "auto", preserve: bool = False,
              sync: bool = False, progress: ProgressCallback | None = None) -> CopyResult:
    """Copy the regular file ``src`` to ``dst`` (a file, or a directory to copy into).

    ``method`` is one of :data:`METHODS`: ``"auto"`` tries a reflink, then the whole
    transfer ladder; any other forces that one path, and its failure is an error.
    ``progress`` (a :data:`ProgressCallback`) gets ``"cp"`` events as the data extents
    and the bytes past the reported size are copied.  The result says how many bytes
    were data and holes, and which paths moved them (``CopyResult.paths``, in ladder
    order: ``reflink``, ``copy_file_range``, ``sendfile``...).

    Raises OSError (or a ZcioError: IllegalArgumentError for an unknown method or a
    copy onto itself) with nothing changed at ``dst`` on any failure; the copy is
    renamed over ``dst`` only once complete.

    Syscalls: ``ioctl(FICLONE)``, then ``lseek(SEEK_DATA/SEEK_HOLE)`` and the transfer
    ladder per extent (each may move less than asked: the loop goes on from there),
    ``ftruncate``, ``pread``/``pwrite`` until ``pread`` returns 0, ``fstat`` (the size
    again: a shrink is an error), ``fchmod``/``fchown``/``utimensat``, ``fsync`` with
    ``sync``, ``rename``.  On error the temporary file is unlinked; ``src`` is only read.
    """
    if method not in METHODS:
        raise IllegalArgumentError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    _, target, dst_st = _resolve(src, dst)
    with FileChannel.open(src) as src_ch:
        st = os.fstat(src_ch.fileno())
        if not stat.S_ISREG(st.st_mode):  # replaced since _resolve looked
            raise OSError(errno.EINVAL, "not a regular file", src)
        tmp_path, tmp = _create_temp(target)
        replaced = False
        try:
            with tmp, measure() as m:
                try:
                    data, length = _copy_data(src_ch, tmp, st.st_size, method, target,
                                              progress, src)
                    _apply_metadata(tmp.fileno(), st, dst_st, preserve)
                    if sync:
                        os.fsync(tmp.fileno())
                except OSError as e:
                    if e.filename is None:  # a transfer error: say where it was going
                        raise OSError(e.errno, e.strerror, target) from e
                    raise
            os.replace(tmp_path, target)
            replaced = True
            if sync:
                _fsync_dir(os.path.dirname(target) or ".")
        finally:
            if not replaced:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_path)
    ran = {name: s for name in ("reflink", *PATHS)  # the read(2) that found the end: not
           if (s := m.paths.get(name)) and s.operations  # a path that moved anything
           and (name == "reflink" or s.kernel_bytes or s.user_bytes)}
    return CopyResult(src, target, length, data, m.wall_seconds, ran)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)




def copy_to_end(src: FileChannel, dst: FileChannel, position: int, bar: Meter) -> int:
    """Copy ``src`` from ``position`` until read(2) says it ended, into ``dst`` at the
    same offset; returns the bytes copied.  Both channels' positions end at the end.

    For the bytes past the size fstat reported: a procfs, sysfs or FUSE file that says
    it holds 0 bytes, or a file that grew.  Only read(2)'s 0 means the end there
    (copy_file_range answers 0 at once on procfs), so this is always the read/write
    path, asked for an explicit count (a transfer of "all" stops at the size): the
    engine's TransferError "source ended" after 0 bytes is the end; after some bytes,
    they are counted and the next call says whether it was the end or an error (which
    then comes as a plain OSError, the file's name unknown).

    Syscalls: ``pread``/``pwrite`` (1 MiB at a time) through ``zcio.transfer``; on
    error both positions are where the engine left them (after the bytes it moved).
    """
    src.position(position)
    dst.position(position)
    at = position
    while True:
        try:
            n = transfer(src, dst, _TO_END_STEP, path="read_write")
        except TransferError as e:
            if e.transferred == 0 and e.errno == errno.ENODATA:
                break  # read(2) returned 0
            n = e.transferred
        at += n
        bar.advance(n)
    return at - position


_TO_END_STEP = 16 << 20  # bytes per transfer call in copy_to_end: progress moves
