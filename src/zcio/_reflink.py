"""Reflinks: a file's content shared with another file, copy-on-write, in one ioctl.

``FICLONE`` makes the destination share every extent of the source (btrfs, XFS with
reflink, bcachefs, OCFS2, NFS 4.2 and CIFS servers that can): no data is read or
written, the copy takes the same time for 1 KiB or 1 TiB, holes stay holes, and the
blocks are unshared only when either file is written later.  File systems that cannot
clone answer EOPNOTSUPP (ext4, tmpfs), EXDEV (two different file systems), EINVAL (a
file system that clones only whole blocks, asked otherwise) or ENOTTY (no such ioctl);
:func:`try_reflink` turns those into ``False`` so callers fall to the next way of
copying, and raises anything else (ENOSPC, EIO, EPERM...).

``copy_file_range`` also reflinks on some file systems, on its own; ``FICLONE`` is
the only call that *promises* sharing or fails.

Syscalls: ``ioctl(dst_fd, FICLONE, src_fd)``.  Counted in ``zcio.metrics`` under
``"reflink"``: one operation and the cloned size as kernel bytes on success; a
refused attempt counts its system call but no operation.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

from . import _syscalls
from ._metrics import metrics
from ._syscalls import retry

__all__ = ["FICLONE", "UNSUPPORTED", "reflink", "try_reflink", "probe"]

#: ``_IOW(0x94, 9, int)`` from ``<linux/fs.h>``.
FICLONE = 0x40049409

#: The errnos that mean "this file system (or this pair of files) cannot be cloned".
UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL,
                         errno.ENOTTY, errno.ENOSYS})


def reflink(src_fd: int, dst_fd: int) -> None:
    """Make ``dst_fd``'s file share all of ``src_fd``'s content (FICLONE).

    ``src_fd`` must be open for reading, ``dst_fd`` for writing (not O_APPEND); the
    destination's previous content is replaced and its size becomes the source's.
    Neither file position moves.  Raises the kernel's OSError when the clone is
    refused; the destination is unchanged then.

    Syscalls: ``ioctl(FICLONE)``, retried on EINTR.
    """
    try:
        retry(_syscalls.SYS.ficlone, dst_fd, src_fd)
    except OSError:
        metrics.record("reflink", operations=0)
        raise
    metrics.record("reflink", kernel_bytes=os.fstat(src_fd).st_size)


def try_reflink(src_fd: int, dst_fd: int) -> bool:
    """:func:`reflink`, returning False when the file system cannot clone these files.

    False for the errnos in :data:`UNSUPPORTED`; any other error is raised.
    """
    try:
        reflink(src_fd, dst_fd)
    except OSError as e:
        if e.errno in UNSUPPORTED:
            return False
        raise
    return True


def probe(directory: str | os.PathLike[str]) -> tuple[bool, str]:
    """Whether files in ``directory`` can be reflinked: (answer, how it was found).

    Creates two temporary files there (one page of data in the first), clones one
    into the other and removes both.  Answers False with the reason if the clone is
    refused; raises OSError if the files cannot be created (a read-only or missing
    directory), since then nothing is known.
    """
    base = os.path.join(os.fspath(directory), f".zcio-reflink-probe-{secrets.token_hex(6)}")
    names = [base + ".a", base + ".b"]
    fds: list[int] = []
    try:
        for name in names:
            fds.append(os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.write(fds[0], b"\xa5" * 4096)
        try:
            reflink(fds[0], fds[1])
        except OSError as e:
            if e.errno in UNSUPPORTED:
                return False, f"FICLONE refused: {e.strerror}"
            raise
        return True, "FICLONE succeeded"
    finally:
        for fd in fds:
            os.close(fd)
        for name in names[: len(fds)]:
            with contextlib.suppress(OSError):
                os.unlink(name)
