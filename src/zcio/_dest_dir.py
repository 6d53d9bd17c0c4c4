"""The directory a ``FileReceiver`` writes into, reached only through its descriptor.

Every name is opened, created, renamed and removed relative to DEST's descriptor without
following a symbolic link, and only a regular file with no other hard link is opened,
so nothing outside DEST can be reached through a name a sender chose or a link someone
planted.  Also here: the names of the receiver's own files (``.NAME.zcio-part`` and its
sidecar), which prefix of a file they hold, the free-space check before a body, and the
expiry of partial files that senders gave up on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from dataclasses import dataclass

from ._wire import HEAD_SUFFIX, PART_SUFFIX, Header, ProtocolError, check_name, decode_header

__all__ = ["DestDir", "open_dest", "check_room", "partial_name", "sidecar_name", "resume_offset"]


def open_dest(dest: str) -> int:
    """A descriptor of the directory DEST, which every name is resolved against."""
    if not stat.S_ISDIR(os.stat(dest).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), dest)
    if not os.access(dest, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dest)
    return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@dataclass(frozen=True)
class DestDir:
    """DEST: its path (for messages), its descriptor, and what the receiver may do there."""

    path: str
    fd: int
    overwrite: bool = False
    dotfiles: bool = False
    keep_partial: float = 7 * 86400.0

    def shown(self, name: str) -> str:
        return os.path.join(self.path, name)

    def open(self, name: str, flags: int) -> int:
        """Open ``name`` in DEST without following a link; only a regular file with no
        other hard link (so nothing outside DEST can be reached through it).

        Syscalls: ``openat(O_NOFOLLOW | O_NONBLOCK)``, ``fstat``; ELOOP for a link,
        EINVAL for anything else refused, with the path.
        """
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644,
                         dir_fd=self.fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "a symbolic link is there; refused",
                              self.shown(name)) from None
            raise OSError(e.errno, e.strerror, self.shown(name)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else \
                f"a file with {st.st_nlink} hard links"
            raise OSError(errno.EINVAL, f"{what} is there; refused", self.shown(name))
        os.set_blocking(fd, True)
        return fd

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def expire_partials(self, now: float | None = None) -> list[str]:
        """Remove partial and sidecar files untouched for ``keep_partial`` seconds; their
        names.  Only regular files whose names are the receiver's own are touched."""
        now = time.time() if now is None else now
        removed = []
        with os.scandir(self.fd) as entries:
            for entry in entries:
                name = entry.name
                if not (name.startswith(".") and name.endswith((PART_SUFFIX, HEAD_SUFFIX))):
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > self.keep_partial:
                    self.unlink(name)
                    removed.append(name)
        return removed


def check_room(dest: DestDir, need: int) -> None:
    """ENOSPC now if ``dest``'s file system has less than ``need`` bytes free.

    Not fallocate: a reservation that fails may keep what it got (ext4 does, up to a
    full disk), and one that succeeds lets any sender's header claim disk space.
    """
    st = os.statvfs(dest.fd)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      f"{dest.path} (needs {need:,} more bytes, has {free:,})")


def partial_name(name: str) -> str:
    """Where the bytes of ``name`` land until verified: ``.NAME.zcio-part``."""
    return f".{check_name(name)}{PART_SUFFIX}"


def sidecar_name(name: str) -> str:
    """The partial file's sidecar, holding the header it belongs to: ``.NAME.zcio-head``."""
    return f".{check_name(name)}{HEAD_SUFFIX}"


def resume_offset(header: Header, sidecar: bytes | None, partial_size: int | None) -> int:
    """How many bytes of ``header``'s file the receiver already has: 0 or a prefix.

    A partial file counts only if its sidecar holds this very header (same name, size,
    algorithm and digest, so it is the same file) and it is no longer than the file.
    The whole-file digest checked at the end still guards the prefix's content.
    """
    if sidecar is None or partial_size is None:
        return 0
    try:
        stored = decode_header(sidecar)
    except ProtocolError:
        return 0
    if stored != header or partial_size > header.size:
        return 0
    return partial_size
