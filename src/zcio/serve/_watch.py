"""Change notices for the compiled hit path: inotify in place of a stat per hit.

The compiled hit path (``native/serve.c``) answers a cached small file from memory, and
by default first stats the file: a third of a hit's syscalls, and more than half of
its kernel time outside the network.  A :class:`Watcher` lets it skip that stat for an
entry whose every change the kernel would report.

For each entry, at its first hit in ``FileCache.get`` (so a file read once costs no
watch; the Python path makes each entry's response again once per second, so a file
in use is watched within a second), the watcher places inotify watches on every
directory from the served root down to the file, then on the file, each followed by
an ``lstat`` of what it covers: each directory is one (not a symlink), the file is a
regular file and still the one cached (its identity, as ``FileCache.get`` checks
it).  Last, it reads the file once more: the cached bytes were read before any
watch, and a write racing that read within one clock tick leaves the identity as it
was and the bytes torn; bytes that differ drop the entry.  Only then does it set the
entry's ``watched``, and only the compiled path reads that flag.  A notice that may
concern the entry clears ``watched`` and drops the entry from the cache (through
``changed``, which ``FileCache.watch`` sets): the next request reads the file again.

What may concern an entry:

* on the file: ``IN_MODIFY`` (write, truncate), ``IN_ATTRIB`` (mode, owner, times,
  links, extended attributes), ``IN_MOVE_SELF``, ``IN_DELETE_SELF``;
* on each directory of its path: ``IN_ATTRIB`` of the directory itself (made
  unsearchable), ``IN_MOVE_SELF``, ``IN_DELETE_SELF``, and, for the one name the path
  takes there, ``IN_MOVED_FROM``, ``IN_MOVED_TO``, ``IN_CREATE``, ``IN_DELETE``
  (renamed over, replaced, removed);
* ``IN_IGNORED`` or ``IN_UNMOUNT`` of a watch it uses; ``IN_Q_OVERFLOW`` (notices lost)
  and any change to the mount table (``/proc/self/mountinfo`` polls ``POLLPRI``):
  every entry.

When notices count: the loop calls :meth:`Watcher.check` once per turn, after
``epoll_wait`` returns and before any request read in that turn is answered.  The
kernel queues a notice before the changing call returns.  A request whose bytes all
arrived after a change completed could only make its socket ready after that change,
so the ``epoll_wait`` that reported it returned later still, and ``check`` reads the
notice first: such a request gets what the stat would have given it.

Not watched (the stat per hit stays): an entry whose path has a symlink below the root;
files on a file system where inotify misses changes made elsewhere (NFS, SMB, FUSE,
overlayfs and the rest: only ext2/3/4, XFS, Btrfs, tmpfs, ramfs and F2FS are trusted);
an entry whose watch cannot be placed (``fs.inotify.max_user_watches`` reached,
permissions) or that would take the watcher past its share of that limit
(:func:`watch_budget`: other programs of the user need watches too); a loop without
inotify or ``/proc`` (then no watcher at all).

Limit: a write through a shared writable mapping raises no notice, and moves the
file's times only at the first write to a clean page.  The Python path, which makes
each entry's response again once per second through ``FileCache.get``, reads the
bytes again there at least once a second (``_files.VERIFY_EVERY``) and drops an entry
whose bytes differ.

Syscalls: ``inotify_init1``, ``inotify_add_watch``, ``inotify_rm_watch`` and ``statfs``
(ctypes: ``os`` has none of them); ``lstat``, ``open``, ``pread``, ``fstat``, ``poll``,
``read``, ``close``.  A failed ``inotify_add_watch`` leaves the entry unwatched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import stat
import struct
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._files import identity, same_bytes
from ._paths import _libc

if TYPE_CHECKING:
    from ._files import Representation

__all__ = ["Watcher", "watch_budget"]

_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_ONLYDIR = 0x1000000
_IN_DONT_FOLLOW = 0x2000000
_IN_MASK_ADD = 0x20000000
_NAMED = _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
_FILE_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_MOVE_SELF | _IN_DELETE_SELF | _IN_DONT_FOLLOW
_DIR_MASK = (_IN_ATTRIB | _IN_MOVE_SELF | _IN_DELETE_SELF | _NAMED | _IN_ONLYDIR
             | _IN_DONT_FOLLOW)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name

#: File systems whose every change, by whoever makes it, reaches inotify (magic.h).
_LOCAL_FS = frozenset({
    0xEF53,      # ext2, ext3, ext4
    0x58465342,  # XFS
    0x9123683E,  # Btrfs
    0x01021994,  # tmpfs
    0x858458F6,  # ramfs
    0xF2F52010,  # F2FS
})

_init1 = _libc.inotify_init1
_init1.argtypes = [ctypes.c_int]
_init1.restype = ctypes.c_int
_add_watch = _libc.inotify_add_watch
_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_add_watch.restype = ctypes.c_int
_rm_watch = _libc.inotify_rm_watch
_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_rm_watch.restype = ctypes.c_int
_statfs = _libc.statfs
_statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_statfs.restype = ctypes.c_int


def fs_type(path: str | bytes) -> int:
    """The file system's magic number (``statfs``'s ``f_type``) for ``path``."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF  # f_type comes first


def watch_budget(share: int = 1) -> int:
    """How many inotify watches one watcher may hold.  ``fs.inotify.max_user_watches``
    is shared by every process of the user (an editor's, a build tool's): the server
    takes at most a quarter of it, split among ``share`` workers, and 8192 per worker at
    most.  Entries past the budget keep the stat.  Syscalls: reads one ``/proc`` file."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = 8192  # the old kernels' default
    return max(16, min(8192, limit // 4 // max(1, share)))


Dep = tuple[int, bytes | None]  # (watch, None): its own notices; (watch, name): a name's


Key = tuple[bytes, bytes | None]  # FileCache's key


class Watcher:
    """inotify watches over a cache's entries under one root (module docstring).

    ``changed(key, rep)``, when set (``FileCache.watch`` sets it), is called for each
    entry a notice concerned, after its ``watched`` is cleared: the cache drops it, so
    the next request reads the file again.  That also catches what the stat cannot: a
    rewrite that leaves size and times as they were (two writes in one clock tick).
    """

    def __init__(self, root: str, fd: int, mounts: int, max_watches: int = 8192) -> None:
        self.root = root
        #: Watches this watcher may hold (:func:`watch_budget`); past it, entries keep
        #: the stat.
        self.max_watches = max_watches
        self._root = os.fsencode(root)
        self.changed: Callable[[Key, Representation], None] | None = None
        self._fd = fd
        self._mounts = mounts
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._poll.register(mounts, select.POLLPRI)
        self._buf = bytearray(65536)
        self._deps: dict[Dep, set[Representation]] = {}
        self._uses: dict[int, int] = {}  # watch -> deps naming it
        #: entry -> (its key, its deps, the directories it goes through)
        self._reps: dict[Representation, tuple[Key, list[Dep], list[bytes]]] = {}
        self._refused: set[Representation] = set()  # add() said no: not tried again
        self._dirs: dict[bytes, list[int]] = {}  # directory -> [watch, entries through it]
        self._devs: dict[int, bool] = {}  # device -> on a file system inotify covers

    @classmethod
    def open(cls, root: str, share: int = 1) -> Watcher | None:
        """A watcher for entries under ``root`` (a real path), holding at most
        ``watch_budget(share)`` watches; or None where inotify or
        ``/proc/self/mountinfo`` is missing or refused (the stat per hit stays)."""
        fd = _init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        try:
            mounts = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(fd)
            return None
        return cls(root, fd, mounts, watch_budget(share))

    def __len__(self) -> int:
        """Entries watched."""
        return len(self._reps)

    @property
    def watches(self) -> int:
        """inotify watches held."""
        return len(self._uses)

    def close(self) -> None:
        """Clear every entry's ``watched`` (they are stat-checked again, not dropped) and
        close the descriptors."""
        for rep in list(self._reps):
            self.forget(rep)
        for fd in (self._fd, self._mounts):
            if fd >= 0:
                os.close(fd)
        self._fd = self._mounts = -1

    # -- entries -----------------------------------------------------------------------

    def add(self, key: Key, rep: Representation) -> bool:
        """Watch ``rep`` (cached under ``key``) and set its ``watched``; False (and
        ``rep`` untouched) when it cannot be (see the module docstring).

        Each watch is placed before the ``lstat`` that checks what it covers, so a change
        is either seen by that ``lstat`` or a notice.  A directory another watched entry
        goes through is not placed again: while any entry goes through it, no notice
        about it has been read (one would have dropped them all), and one still queued
        will drop this entry too.

        Syscalls: for each directory of the path not yet watched, ``inotify_add_watch``
        then ``lstat`` (a directory, not a symlink); for the file, ``inotify_add_watch``
        then ``lstat`` (a regular file, the entry's identity), then the file read again
        (``_files.same_bytes``; bytes that differ: ``changed`` drops the entry: the
        cached bytes were read before any watch, and a write racing that read within
        one clock tick leaves the identity as it was and the bytes torn; read again
        after the watch, they show it, and a write still under way ends after the
        watch, so it is a notice);
        ``statfs`` once per device.  Watches placed for a refused entry and used by no
        other are removed.
        """
        if self._fd < 0 or rep in self._reps or rep in self._refused:
            return rep in self._reps
        if not rep.rel or rep.full_path != f"{self.root}/{rep.rel}":
            self._refused.add(rep)
            return False
        if len(self._uses) + rep.rel.count("/") + 2 > self.max_watches:
            return False  # over budget: tried again at a later hit, once some are free
        deps: list[Dep] = []
        dirs: list[tuple[bytes, int]] = []
        placed: list[int] = []
        try:
            path = self._root
            for name in os.fsencode(rep.rel).split(b"/"):
                wd = self._dir(path, placed)
                dirs.append((path, wd))
                deps.append((wd, None))
                deps.append((wd, name))
                path = path + b"/" + name
            deps.append((self._place(path, _FILE_MASK, placed), None))
            st = os.lstat(path)
            ok = (stat.S_ISREG(st.st_mode) and self._local(st.st_dev, path)
                  and identity(st) == rep.key)
            stale = ok and not same_bytes(path, rep)
        except OSError:
            ok = stale = False
        if not ok or stale:
            for wd in placed:
                if wd not in self._uses:
                    _rm_watch(self._fd, wd)
            self._refused.add(rep)
            if stale and self.changed is not None:
                self.changed(key, rep)
            return False
        all_deps, uses = self._deps, self._uses
        for dep in deps:
            reps = all_deps.get(dep)
            if reps is None:
                all_deps[dep] = {rep}
            else:
                reps.add(rep)
            uses[dep[0]] = uses.get(dep[0], 0) + 1
        for path, wd in dirs:
            self._dirs.setdefault(path, [wd, 0])[1] += 1
        self._reps[rep] = (key, deps, [path for path, _ in dirs])
        rep.watched = True
        rep.checked = time.monotonic()  # its bytes read again, just above
        return True

    def _dir(self, path: bytes, placed: list[int]) -> int:
        """The watch on the directory ``path``: known, or placed and checked."""
        known = self._dirs.get(path)
        if known is not None:
            return known[0]
        wd = self._place(path, _DIR_MASK, placed)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):  # a symlink: its target's changes are not ours
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        if not self._local(st.st_dev, path):
            raise OSError(errno.EOPNOTSUPP, "not a file system inotify covers", path)
        return wd

    def _local(self, dev: int, path: bytes) -> bool:
        local = self._devs.get(dev)
        if local is None:
            local = self._devs[dev] = fs_type(path) in _LOCAL_FS
        return local

    def _place(self, path: bytes, mask: int, placed: list[int]) -> int:
        wd = int(_add_watch(self._fd, path, mask | _IN_MASK_ADD))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        placed.append(wd)
        return wd

    def forget(self, rep: Representation) -> None:
        """Clear ``rep``'s ``watched`` and remove the watches only it used."""
        rep.watched = False
        self._refused.discard(rep)
        held = self._reps.pop(rep, None)
        if held is None:
            return
        for path in held[2]:
            through = self._dirs[path]
            through[1] -= 1
            if not through[1]:
                del self._dirs[path]
        for dep in held[1]:
            reps = self._deps.get(dep)
            if reps is not None:
                reps.discard(rep)
                if not reps:
                    del self._deps[dep]
            wd = dep[0]
            left = self._uses.get(wd, 0) - 1
            if left > 0:
                self._uses[wd] = left
            elif wd in self._uses:
                del self._uses[wd]
                _rm_watch(self._fd, wd)  # EINVAL when the kernel dropped it already

    def _notice(self, reps: Iterable[Representation]) -> None:
        """A notice concerned ``reps``: forget each, then tell ``changed``."""
        for rep in list(reps):
            held = self._reps.get(rep)
            if held is None:
                continue
            self.forget(rep)
            if self.changed is not None:
                self.changed(held[0], rep)

    # -- notices -----------------------------------------------------------------------

    def check(self) -> None:
        """Read every notice queued; forget each entry one may concern (``changed``).

        Syscalls: one ``poll`` (timeout 0) of the inotify descriptor and the mount table;
        when one is ready, ``read`` until EAGAIN.
        """
        ready = self._poll.poll(0)
        if not ready:
            return
        for fd, _ in ready:
            if fd == self._mounts:
                self._devs.clear()
                self._notice(self._reps)
        buf, fd = self._buf, self._fd
        while fd >= 0:
            try:
                n = os.readv(fd, [buf])
            except BlockingIOError:
                return
            off = 0
            while off < n:
                wd, mask, _, length = _EVENT.unpack_from(buf, off)
                off += _EVENT.size
                if mask & _IN_Q_OVERFLOW:
                    self._notice(self._reps)
                elif not length:
                    self._notice(self._deps.get((wd, None), ()))
                elif mask & _NAMED:
                    name = bytes(buf[off:off + length]).rstrip(b"\0")
                    self._notice(self._deps.get((wd, name), ()))
                off += length
