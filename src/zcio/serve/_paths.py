"""From a request target to an open file, never outside the served directory.

Two steps, each refusing on its own:

1. :func:`target_path` (pure): the target's path is percent-decoded once, then split on
   ``/``.  A NUL byte or a ``.``/``..`` segment, in any encoding (``%2e%2e``, ``.%2E``),
   is a bad request (400): a conforming client removes dot segments before sending.
   A segment that begins with a dot is a dotfile: not found (404) unless dotfiles are
   served.  What is left is a relative path with no way up.

2. :class:`Root` opens that path with ``openat2(2)`` relative to the directory's own
   descriptor and ``RESOLVE_BENEATH``: the kernel refuses any resolution that leaves the
   directory, through a symlink, a ``..`` inside a symlink's target, or a race with a
   rename (EXDEV).  A symlink whose target is absolute but still inside the directory
   is resolved once with ``realpath`` and opened again beneath the root.  With
   ``follow_symlinks`` symlinks may point anywhere.  Only regular files and directories
   are served: a FIFO, socket or device is "not found", and files open ``O_NONBLOCK``
   so nothing in the tree can stall a worker.  Where ``openat2`` is missing (Linux
   before 5.6, or a seccomp filter), a ``realpath`` check then ``O_NOFOLLOW`` stands in:
   correct, but with a window between check and open that ``openat2`` does not have.

Syscalls: ``openat2`` (bound here with ctypes: ``os`` lacks it), ``fstat``, ``close``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from urllib.parse import unquote_to_bytes

__all__ = ["PathError", "target_path", "Root", "openat2_available"]

_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_O_PATH = getattr(os, "O_PATH", 0o10000000)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                     ctypes.c_size_t]


class PathError(Exception):
    """The target names nothing the server will serve; ``status`` is the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def target_path(target: bytes, dotfiles: bool = False) -> tuple[str, bool]:
    """``(relative path, ends with "/")`` for a request target; raises PathError.

    The relative path has no empty, ``.`` or ``..`` segment and no leading slash
    (``""`` is the root); non-UTF-8 bytes survive as surrogate escapes, as ``os`` takes
    them.  The query and any fragment are dropped; an absolute-form target
    (``http://host/path``) gives its path.

    >>> target_path(b"/a/b%20c/?x=1")
    ('a/b c', True)
    """
    if not target.startswith(b"/"):
        low = target[:8].lower()
        if not (low.startswith(b"http://") or low.startswith(b"https://")):
            raise PathError(400, "request target is not a path")
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    for sep in (b"?", b"#"):
        cut = target.find(sep)
        if cut >= 0:
            target = target[:cut]
    raw = unquote_to_bytes(target) if b"%" in target else target
    if b"\0" in raw:
        raise PathError(400, "NUL byte in path")
    segments = [s for s in raw.split(b"/") if s]
    for s in segments:
        if s[0] == 0x2E:  # "."
            if s == b".." or s == b".":
                raise PathError(400, "dot segment in path")
            if not dotfiles:
                raise PathError(404, "dotfile")
    return b"/".join(segments).decode("utf-8", "surrogateescape"), raw.endswith(b"/")


def _openat2(dirfd: int, path: bytes, how: _OpenHow) -> int:
    while True:
        fd = int(_syscall(_SYS_OPENAT2, dirfd, path, ctypes.byref(how), ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), path.decode("utf-8", "surrogateescape"))


def openat2_available() -> bool:
    """True if this kernel (and any seccomp filter) lets ``openat2`` run."""
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | _O_PATH, 0, _RESOLVE_BENEATH)
    try:
        os.close(_openat2(-100, b".", how))  # AT_FDCWD
    except OSError:
        return False
    return True


_SERVED = (stat.S_IFREG, stat.S_IFDIR)


class Root:
    """The served directory, open as a descriptor; every lookup resolves beneath it.

    Raises, for a path: FileNotFoundError (also for anything outside the root, and for
    what is neither a regular file nor a directory), PermissionError, NotADirectoryError.
    """

    def __init__(self, path: str, follow_symlinks: bool = False) -> None:
        self.path = os.path.realpath(path)
        self.follow_symlinks = follow_symlinks
        self.fd = -1
        fd = os.open(self.path, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fd = fd
        self.use_openat2 = openat2_available()
        resolve = _RESOLVE_NO_MAGICLINKS | (0 if follow_symlinks else _RESOLVE_BENEATH)
        self._how_path = _OpenHow(_O_PATH | os.O_CLOEXEC, 0, resolve)
        self._how_read = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, 0, resolve)
        self._how_dir = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY, 0, resolve)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def full_path(self, rel: str) -> str:
        return f"{self.path}/{rel}" if rel else self.path

    # -- opening -----------------------------------------------------------------------

    def _open(self, rel: str, how: _OpenHow, flags: int) -> int:
        if not self.use_openat2:
            return self._open_checked(rel, flags)
        name = os.fsencode(rel) if rel else b"."
        try:
            return _openat2(self.fd, name, how)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        # An absolute symlink, or a relative one leaving and re-entering: resolve it
        # once, then open the result beneath the root (the kernel still checks).
        inside = self._inside(os.path.realpath(self.full_path(rel)))
        if inside is None:
            raise FileNotFoundError(errno.ENOENT, "outside the served directory", rel)
        try:
            return _openat2(self.fd, os.fsencode(inside) or b".", how)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise FileNotFoundError(errno.ENOENT, "outside the served directory",
                                        rel) from None
            raise

    def _inside(self, real: str) -> str | None:
        """``real`` relative to the root, or None if it lies outside."""
        if real == self.path:
            return ""
        if real.startswith(self.path.rstrip("/") + "/"):
            return real[len(self.path.rstrip("/")) + 1:]
        return None

    def _open_checked(self, rel: str, flags: int) -> int:
        """The fallback without openat2: a realpath check, then open without following."""
        full = self.full_path(rel)
        if not self.follow_symlinks:
            real = os.path.realpath(full)
            if self._inside(real) is None:
                raise FileNotFoundError(errno.ENOENT, "outside the served directory", rel)
            full = real
            flags |= os.O_NOFOLLOW
        return os.open(full, flags)

    def stat(self, rel: str) -> os.stat_result:
        """The status of a regular file or directory at ``rel``, resolved safely."""
        fd = self._open(rel, self._how_path, _O_PATH | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_IFMT(st.st_mode) not in _SERVED:
            raise FileNotFoundError(errno.ENOENT, "not a regular file or directory", rel)
        return st

    def open_file(self, rel: str, expected: os.stat_result) -> tuple[int, os.stat_result]:
        """Open the regular file ``rel`` for reading, if it is still the ``expected`` one."""
        fd = self._open(rel, self._how_read, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_ino != expected.st_ino
                    or st.st_dev != expected.st_dev):
                raise FileNotFoundError(errno.ENOENT, "file replaced while opening", rel)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def open_dir(self, rel: str) -> int:
        """Open the directory ``rel`` for listing."""
        return self._open(rel, self._how_dir, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)

    def visible(self, rel: str) -> bool:
        """True if ``rel`` resolves to something served (for a listing's entries)."""
        try:
            self.stat(rel)
        except OSError:
            return False
        return True
