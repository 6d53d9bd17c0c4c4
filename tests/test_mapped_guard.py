"""zcio's accesses to a mapping that lost its file raise MappedRegionError (issue 9).

A page of a file mapping past the file's end (truncated by someone) or that the file
system cannot back (a hole on a full file system) sends SIGBUS, which kills CPython.
Each access kind zcio makes is run in a child process (mapped_guard_child.py) against
such a page: it must raise MappedRegionError, move no index, and the child must go on
working and exit cleanly.  Without the guard (ZCIO_PURE_PYTHON=1) the same child dies
of SIGBUS, which is what makes these tests mean something.  The C functions are also
checked against their pure-Python twins, which the pure install runs.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mapped_guard_child import CASES
from zcio import MappedRegionError, _guard

CHILD = str(Path(__file__).with_name("mapped_guard_child.py"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
guarded = pytest.mark.skipif(not _guard.available(),
                             reason=f"no guard here: {_guard.unavailability_cause()}")


def _env(**extra: str) -> dict[str, str]:
    """The child's environment: this checkout's src first, ZCIO_PURE_PYTHON only if given."""
    env = {k: v for k, v in os.environ.items() if k != "ZCIO_PURE_PYTHON"}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, CHILD, *args], capture_output=True, text=True,
                          timeout=120, env=_env(**env), check=False)


def _results(out: str) -> dict[str, str]:
    return {parts[1]: parts[2] for parts in (line.split(" ", 2) for line in out.splitlines())
            if parts[0] == "case" and len(parts) == 3}


@pytest.fixture(scope="module")
def truncated_run(tmp_path_factory: pytest.TempPathFactory
                  ) -> subprocess.CompletedProcess[str]:
    """One child runs every case in turn: each must leave it alive for the next."""
    return _run(["truncated", str(tmp_path_factory.mktemp("truncated"))])


@guarded
def test_the_child_survives_every_fault_and_exits_cleanly(
        truncated_run: subprocess.CompletedProcess[str]) -> None:
    assert truncated_run.returncode == 0, truncated_run.stderr
    assert truncated_run.stdout.splitlines()[-1] == "alive"
    assert "Traceback" not in truncated_run.stderr, truncated_run.stderr


@guarded
@pytest.mark.parametrize("name", list(CASES))
def test_access_to_a_truncated_mapping_raises_mapped_region_error(
        truncated_run: subprocess.CompletedProcess[str], name: str) -> None:
    results = _results(truncated_run.stdout)
    key = name.replace(" ", "_")
    assert key in results, f"never reached (child: {truncated_run.returncode}) " \
                           f"{truncated_run.stderr[-2000:]}"
    assert results[key] == "MappedRegionError"


def test_without_the_guard_the_same_access_kills_the_process(tmp_path: Path) -> None:
    """The pure-Python path is unguarded: the first case dies of SIGBUS, as before."""
    run = _run(["truncated", str(tmp_path), "get(i)"], ZCIO_PURE_PYTHON="1")
    assert run.returncode == -signal.SIGBUS, (run.stdout, run.stderr)
    assert "alive" not in run.stdout


def _can_mount_in_a_namespace() -> str | None:
    """Why a private tmpfs cannot be mounted here (None when it can)."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k t /mnt"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


@guarded
def test_writing_into_a_hole_on_a_full_file_system_raises(tmp_path: Path) -> None:
    """A sparse file on a full 256 KiB tmpfs, mounted in a private mount namespace that
    dies with the child (so nothing is ever left mounted): a write into its hole
    through a READ_WRITE mapping finds no page; once there is room again it works."""
    cause = _can_mount_in_a_namespace()
    if cause:
        pytest.skip(cause)
    where = tmp_path / "fs"
    where.mkdir()
    script = (f'mount -t tmpfs -o size=256k zcio-guard "$1" && '
              f'exec "{sys.executable}" "{CHILD}" hole "$1"')
    run = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(where)],
                         capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert run.returncode == 0, run.stderr
    results = _results(run.stdout)
    assert results == {"put_int(i,_v)_into_a_hole": "MappedRegionError",
                       "put(i,_src)_into_a_hole": "MappedRegionError"}, run.stdout
    assert run.stdout.splitlines()[-1] == "alive"
    assert not os.listdir(where)  # the tmpfs was the namespace's: this is the plain dir


def test_wrap_guards_what_may_be_a_file_mapping_and_nothing_else(tmp_path: Path) -> None:
    """ByteBuffer.wrap (and unpickling a heap buffer over an out-of-band frame) makes
    the guarded kind exactly for objects whose bytes may lie in a mapped file: the
    truncated-file cases above show it guarded; here, which objects get it.  Every
    other object keeps the plain kind and its compiled fast paths."""
    import array
    import ctypes
    import mmap
    import pickle

    import numpy as np

    from zcio import ByteBuffer
    from zcio._indirect import IndirectByteBuffer, WrappedMappingByteBuffer
    from zcio._memory import may_lose_pages

    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 16)
    with open(path, "r+b") as f:
        file_map = mmap.mmap(f.fileno(), 4096)
    anon = mmap.mmap(-1, 4096)
    direct = ByteBuffer.allocate_direct(64)
    memmap = np.memmap(path, mode="r+", shape=(4096,))
    made: list[Any] = []
    plain: list[Any] = []
    guarded: list[Any] = []
    obj = b = first = None
    try:
        plain = [b"abc", bytearray(8), array.array("i", [1, 2]), anon, memoryview(anon)[8:],
                 memoryview(bytearray(8))[2:], np.zeros(8, np.uint8), np.zeros(8)[2:],
                 pickle.PickleBuffer(bytearray(4)), direct.memoryview(),
                 (ctypes.c_char * 8)()]
        guarded = [file_map, memoryview(file_map)[8:], memmap, memmap[10:],
                   np.frombuffer(file_map, np.uint8),
                   (ctypes.c_char * 16).from_buffer(file_map, 32)]  # an unknown exporter
        for obj in plain:
            assert not may_lose_pages(obj), obj
            made.append(ByteBuffer.wrap(obj))
            assert type(made[-1]) is ByteBuffer, obj
        for obj in guarded:
            assert may_lose_pages(obj), obj
            b = ByteBuffer.wrap(obj)
            made.append(b)
            assert type(b) is WrappedMappingByteBuffer and isinstance(b, IndirectByteBuffer)
            assert b.array() is obj and not b.is_direct() and repr(b).startswith("zcio.Heap")
            assert type(b.slice()) is WrappedMappingByteBuffer
            assert b.as_int_buffer()._mv is None  # the view asks the memory too
        first = made[-len(guarded)]  # over file_map itself
        assert first.get_int(4) == 0x04050607 and first.put(0, 9).get(0) == 9
        frames: list[pickle.PickleBuffer] = []
        stream = pickle.dumps(first, protocol=5, buffer_callback=frames.append)
        with memoryview(file_map) as frame:  # the frame as if received into a mapped file
            back = pickle.loads(stream, buffers=[frame])
            assert type(back) is WrappedMappingByteBuffer and back.get(0) == 9
            back.release()
        del frames, back
    finally:
        for b in made:
            b.release()
        del made, plain, guarded, obj, b, first
        gc.collect()  # the buffers', numpy's and ctypes' exports
        direct.release()
        file_map.close()
        anon.close()
        del memmap


_SPANNING = """
import ctypes, mmap, os, sys
from zcio import ByteBuffer, MappedRegionError
from zcio._indirect import WrappedMappingByteBuffer
from zcio._memory import may_lose_pages
PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
anon = mmap.mmap(-1, 2 * PAGE, flags=mmap.MAP_PRIVATE)  # the file's page over the 2nd
base = ctypes.addressof(ctypes.c_char.from_buffer(anon))
fd = os.open(sys.argv[1], os.O_RDWR)
placed = libc.mmap(base + PAGE, PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                   mmap.MAP_SHARED | 0x10, fd, 0)  # MAP_FIXED
assert placed == base + PAGE, ctypes.get_errno()
span = (ctypes.c_char * (2 * PAGE)).from_address(base)  # an exporter over both
assert not may_lose_pages((ctypes.c_char * PAGE).from_address(base))
assert may_lose_pages(span)
b = ByteBuffer.wrap(span)
assert type(b) is WrappedMappingByteBuffer, type(b)
assert b.get(PAGE) == 7
if sys.argv[2] == "truncate":
    os.ftruncate(fd, 0)
    try:
        b.get(PAGE)
    except MappedRegionError:
        print("MappedRegionError")
print("ok")
"""


@pytest.mark.parametrize("truncate", [False, pytest.param(True, marks=guarded)],
                         ids=["classified", "truncated"])
def test_an_exporter_spanning_an_anonymous_and_a_file_mapping_is_guarded(
        tmp_path: Path, truncate: bool) -> None:
    """An unknown exporter whose first page is anonymous and whose second is a file's
    (mapped over it, MAP_FIXED): its bytes may lose pages, so wrap gives the guarded
    kind, and a get from the file's page after another truncated the file raises
    MappedRegionError.  (Asked of the first byte's mapping only, it was a plain buffer:
    that get was SIGBUS.)  In a child process: a wrong answer would kill it."""
    path = tmp_path / "f"
    path.write_bytes(bytes([7]) * 4096 * 2)
    r = subprocess.run([sys.executable, "-c", _SPANNING, str(path),
                        "truncate" if truncate else "keep"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.split() == (["MappedRegionError", "ok"] if truncate else ["ok"])


def test_pure_python_mode_imports_and_works() -> None:
    """ZCIO_PURE_PYTHON=1 skips the C module; zcio works, unguarded, and says why."""
    code = (
        "import zcio, zcio._guard as g\n"
        "from zcio import ByteBuffer, CompositeBuffer\n"
        "assert not g.available(), g.unavailability_cause()\n"
        "print(g.unavailability_cause())\n"
        "a = ByteBuffer.allocate(64).put(bytes(range(64))).flip()\n"
        "b = ByteBuffer.allocate_direct(64).put(a).flip()\n"
        "a.flip()\n"
        "assert a.equals(b) and a.mismatch(b) == -1 and a.hash_code() == b.hash_code()\n"
        "c = CompositeBuffer.of(ByteBuffer.wrap(bytearray(b'ab')), ByteBuffer.wrap(b'cd'))\n"
        "assert bytes(c) == b'abcd' and c.get_short(1) == 0x6263\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_env(ZCIO_PURE_PYTHON="1"), check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["ZCIO_PURE_PYTHON=1 forces the pure-Python path", "ok"]


# -- the C functions against their pure-Python twins -----------------------------------------

C_AND_PURE = pytest.mark.skipif(not _guard.available(),
                                reason="the SIGBUS guard (zcio._native) is not in use")


@C_AND_PURE
@pytest.mark.parametrize("seed", range(20))
def test_c_functions_match_the_pure_ones(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([0, 1, 7, 64, 65, 300, 4097])
    a = bytes(rng.randrange(256) for _ in range(n))
    b = bytearray(a)
    if n and rng.random() < 0.7:
        b[rng.randrange(n)] ^= 1 + rng.randrange(255)
    cut = rng.randrange(n + 1)
    assert _guard.mismatch(a, b) == _guard._py_mismatch(a, b)
    assert _guard.mismatch(a[:cut], b) == _guard._py_mismatch(a[:cut], b)
    off = rng.randrange(n + 1)
    k = rng.randrange(n - off + 1)
    assert _guard.read(a, off, k) == _guard._py_read(a, off, k) == a[off : off + k]
    assert _guard.read(a, off) == _guard._py_read(a, off) == a[off:]
    parts = [a[:cut], memoryview(b)[cut:], bytearray(a[:3])]
    assert _guard.join(parts) == _guard._py_join(parts)
    # overlapping copy within one buffer: memmove, as a slice assignment
    src_off, dst_off = rng.randrange(n + 1), rng.randrange(n + 1)
    k = min(n - src_off, n - dst_off)
    c1, c2 = bytearray(a), bytearray(a)
    _guard.copy(c1, dst_off, c1, src_off, k)
    _guard._py_copy(c2, dst_off, c2, src_off, k)
    assert c1 == c2
    _guard.touch(a, 4096)


@C_AND_PURE
def test_c_functions_check_their_ranges() -> None:
    buf = bytearray(8)
    with pytest.raises(IndexError):
        _guard.copy(buf, 4, b"12345", 0, 5)
    with pytest.raises(IndexError):
        _guard.read(b"1234", 2, 3)
    with pytest.raises(TypeError):
        _guard.copy(b"read-only", 0, b"x", 0, 1)
    with pytest.raises(ValueError):
        _guard.touch(buf, 0)


def test_efault_from_a_channel_becomes_mapped_region_error() -> None:
    err = _guard.io_error(OSError(14, "Bad address"))
    assert isinstance(err, MappedRegionError) and err.errno == 14
    other = OSError(28, "No space left on device")
    assert _guard.io_error(other) is other


@pytest.mark.parametrize("pure", [False, True], ids=["default", "ZCIO_PURE_PYTHON=1"])
def test_zcio_info_says_whether_the_guard_is_on(pure: bool) -> None:
    env = _env(ZCIO_PURE_PYTHON="1") if pure else _env()
    run = subprocess.run([sys.executable, "-m", "zcio", "info", "--json"], capture_output=True,
                         text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr
    guard = json.loads(run.stdout)["zcio_uses"]["mapped_memory_guard"]
    if pure:
        assert guard == {"available": False,
                         "detail": "ZCIO_PURE_PYTHON=1 forces the pure-Python path"}
    else:
        # Not _guard.available(): this process may itself run under ZCIO_PURE_PYTHON=1
        # (CI's second pass); the child, without it, has the guard wherever it is built.
        built = importlib.util.find_spec("zcio._native") is not None
        assert guard["available"] is built


_RAW = """
import faulthandler, mmap, os, sys
if sys.argv[1] == "faulthandler":
    faulthandler.enable()
from zcio import FileChannel, MapMode, MappedRegionError, OpenOption
path = os.path.join(sys.argv[2], "f")
with open(path, "wb") as f:
    f.write(b"x" * 3 * mmap.PAGESIZE)
ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
buf = ch.map(MapMode.READ_WRITE, 0, 3 * mmap.PAGESIZE)
os.truncate(path, mmap.PAGESIZE + 10)
try:
    buf.get(2 * mmap.PAGESIZE)
except MappedRegionError:
    print("guarded", flush=True)
print("raw", buf.memoryview()[2 * mmap.PAGESIZE], flush=True)
"""


@guarded
@pytest.mark.parametrize("handler", ["default", "faulthandler"])
def test_a_fault_outside_zcio_still_kills_as_before(tmp_path: Path, handler: str) -> None:
    """A raw memoryview is not guarded: its SIGBUS goes to the handler that was there
    before zcio's (faulthandler's dump, or the default), and the process dies of it."""
    run = subprocess.run([sys.executable, "-c", _RAW, handler, str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=_env(), check=False)
    assert run.returncode == -signal.SIGBUS, (run.stdout, run.stderr)
    assert run.stdout.splitlines() == ["guarded"]
    assert ("Fatal Python error: Bus error" in run.stderr) == (handler == "faulthandler")


@guarded
def test_a_sigbus_sent_with_kill_still_kills() -> None:
    """Not a fault (si_code SI_USER): passed to the previous disposition at once."""
    code = "import os, signal, zcio\nos.kill(os.getpid(), signal.SIGBUS)\nprint('survived')\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_env(), check=False)
    assert run.returncode == -signal.SIGBUS, (run.stdout, run.stderr)
    assert "survived" not in run.stdout
