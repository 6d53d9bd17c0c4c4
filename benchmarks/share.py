"""Handing a large buffer to another process: descriptor passing against the rest.

Run by hand, not by CI::

    .venv/bin/python benchmarks/share.py [--quick] [--rounds N] [--json PATH]
    .venv/bin/python benchmarks/share.py --zero-copy --rounds 40   # the zero-copy group, ~1 s

One child process, started once (untimed), connected by a Unix socket pair.  A timed
loop first tells the child which case and how many hand-offs follow (one 21-byte
command, the same for every case, once per loop); then each hand-off is one message
from the parent and one answer from the child, which gets at the bytes its way, reads
the first and the last byte, releases what it got and replies with those two bytes and
the copies zcio's pickling made in it (``zcio.metrics``, path ``pickle_copy``).  The
cases, all in one group (interleaved rounds, medians, ratios of the same run, as
``_harness`` does; default 30 rounds: one plain pickle takes ~1 s, the run ~3 min):

* ``fd passing``: a ``ByteBuffer.allocate_shared`` buffer; the message is
  ``SocketChannel.send_buffer`` (a 48-byte header with the descriptor attached,
  SCM_RIGHTS); the child ``receive_buffer()``s it (recvmsg, F_GET_SEALS, fstat, mmap)
  and ``release()``s it (munmap, close).  With ``zcio._native`` loaded, zcio makes the
  calls in C (``native/share.c``: no duplicate descriptor for the mapping).
* ``bare Python fd passing``: the floor of descriptor passing from Python, the same
  buffer's memfd with the same 48-byte header: the parent ``socket.sendmsg``s it with the
  descriptor attached (SCM_RIGHTS); the child ``recvmsg``s it (MSG_CMSG_CLOEXEC), asks
  ``fcntl(F_GET_SEALS)``, maps it with ``mmap.mmap`` (fstat, dup, mmap), reads the two
  bytes and closes the mapping and the descriptor: zcio's system calls with none of
  its checks, objects or accounting.  An anchor: what ``fd passing`` costs above it is
  zcio's own.
* ``shared_memory``: a ``multiprocessing.shared_memory.SharedMemory`` block holding the
  bytes; the message is its name; the child attaches by name (shm_open, fstat, mmap)
  and ``close()``s (munmap, close), without the resource tracker (``track=False`` on
  3.13, the same by hand before: the parent owns the block).  The anchor.  Like with
  like: one message each way per hand-off, one mapping made and unmapped in the child.
* ``pickle 5 out of band``: a direct buffer, ``pickle.dumps(buf, protocol=5,
  buffer_callback=...)``, the stream and the frame sent over the socket; the child
  reads the frame into a fresh ``bytearray`` and ``pickle.loads(..., buffers=...)``
  (a direct buffer: one copy, counted).
* ``plain pickle``: the same direct buffer with ``pickle.dumps(buf, protocol=4)`` (one
  stream holding the bytes), sent, read and loaded.

Goals (issue 14): fd passing at least 100x faster than plain pickle, and within 1.1x
of shared_memory; pickle 5 makes at most one copy (checked on every answer).  The
zero-copy group also shows fd passing against its Python floor (bare Python fd passing)
and that floor against shared_memory: on a small VM the scheduler's placement of the
two processes (fd passing rarely runs both on one CPU) can keep even the floor above
1.1x of shared_memory.

A second group, if ``distributed`` is installed: Dask ``scatter`` then ``gather`` of a
64 MiB zcio direct buffer against the same bytes as ``bytes``, on a LocalCluster of one
worker process (information: both travel as pickle-5 frames).

``--dask-comm [--rounds N]`` instead measures whether a ``zcio://`` Dask comm could pay
(issue 14: build it only if it beats ``tcp://`` by 1.2x in throughput or 0.8x in CPU):
Dask's own ``tcp://`` comm against the floor any TCP comm has, a blocking ``sendall``
of the frame and ``recv_into`` a fresh numpy array in another process, 64 MiB numpy
frames, wall time and the CPU of both processes per frame (see benchmarks/README.md).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from multiprocessing import shared_memory
from typing import Any

import _harness
from _harness import Case, Compare, Group

from zcio import ByteBuffer, SocketChannel, metrics
from zcio._pickling import COPY_PATH
from zcio._shared import _header

MIB = 1 << 20
SIZE = 256 * MIB
DASK_SIZE = 64 * MIB
DEFAULT_ROUNDS, QUICK_ROUNDS = 30, 2
MAPS = 10  # zero-copy hand-offs per timed loop (~1 ms: under a time slice)
GOAL_VS_PICKLE = 100.0  # fd passing at least this much faster than plain pickle
GOAL_VS_SHM = 1.1  # ... and at most this much slower than shared_memory
_HEAD = struct.Struct("<cIQQ")  # command, hand-offs, name/stream length, frame length
_ANSWER = struct.Struct("<BBQ")  # first byte, last byte, zcio copies made


def _recv_exactly(sock: socket.socket, into: memoryview) -> None:
    while into:
        n = sock.recv_into(into)
        if not n:
            raise EOFError("the other side closed the socket")
        into = into[n:]


def _copies() -> int:
    return metrics.path(COPY_PATH).operations


# -- the child --------------------------------------------------------------------------


def child(fd: int) -> None:
    """Serve hand-offs on the socket ``fd`` until told to stop (or the parent goes)."""
    _untrack_attached_shared_memory()
    sock = socket.socket(fileno=fd)
    ch = SocketChannel.from_socket(sock)
    head = bytearray(_HEAD.size)
    while True:
        try:
            _recv_exactly(sock, memoryview(head))
        except EOFError:
            return
        cmd, count, n_stream, n_frame = _HEAD.unpack(head)
        if cmd not in _SERVE:
            return
        for _ in range(count):
            before = _copies()
            first, last = _SERVE[cmd](sock, ch, n_stream, n_frame)
            sock.sendall(_ANSWER.pack(first, last, _copies() - before))


def _take_fd(sock: socket.socket, ch: SocketChannel, n_name: int,
             n_frame: int) -> tuple[int, int]:
    got = ch.receive_buffer()
    assert got is not None
    first, last = got.get_unsigned_byte(0), got.get_unsigned_byte(got.limit() - 1)
    got.release()
    return first, last


#: The hand-off message as the bare Python case receives it: zcio's 48-byte header and
#: room for one descriptor.
_BARE_HEADER, _BARE_ROOM = 48, socket.CMSG_SPACE(4)


def _take_bare(sock: socket.socket, ch: SocketChannel, n_name: int,
               n_frame: int) -> tuple[int, int]:
    _, anc, _, _ = sock.recvmsg(_BARE_HEADER, _BARE_ROOM, socket.MSG_CMSG_CLOEXEC)
    fd = int.from_bytes(anc[0][2][:4], sys.byteorder)
    fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    mm = mmap.mmap(fd, SIZE)
    first, last = mm[0], mm[SIZE - 1]
    mm.close()
    os.close(fd)
    return first, last


def _take_shm(sock: socket.socket, ch: SocketChannel, n_name: int,
              n_frame: int) -> tuple[int, int]:
    name = bytearray(n_name)
    _recv_exactly(sock, memoryview(name))
    shm = shared_memory.SharedMemory(name.decode(), **_ATTACH)
    first, last = shm.buf[0], shm.buf[SIZE - 1]
    shm.close()
    return first, last


def _take_pickle(sock: socket.socket, ch: SocketChannel, n_stream: int,
                 n_frame: int) -> tuple[int, int]:
    stream = bytearray(n_stream)
    _recv_exactly(sock, memoryview(stream))
    frames = []
    if n_frame:
        frame = bytearray(n_frame)
        _recv_exactly(sock, memoryview(frame))
        frames.append(frame)
    buf = pickle.loads(stream, buffers=frames)
    first, last = buf.get_unsigned_byte(0), buf.get_unsigned_byte(buf.limit() - 1)
    buf.release()
    return first, last


_SERVE = {b"F": _take_fd, b"B": _take_bare, b"S": _take_shm, b"P": _take_pickle}
#: Attach without the resource tracker: the parent owns the block.
_ATTACH: dict[str, Any] = {"track": False} if sys.version_info >= (3, 13) else {}


def _untrack_attached_shared_memory() -> None:
    """Before 3.13, attaching registers the block with the resource tracker (two pipe
    writes and a wake-up of the tracker per attach, and an unlink at exit); the child
    creates none, so it skips registration as ``track=False`` does."""
    if sys.version_info < (3, 13):
        from multiprocessing import resource_tracker

        def register(name: str, rtype: str) -> None:
            if rtype != "shared_memory":
                raise AssertionError(f"the benchmark child registered a {rtype}")

        resource_tracker.register = register


# -- the parent -------------------------------------------------------------------------


class _Handoff:
    """The child, the socket to it and the buffers handed over, shared by two groups."""

    def __init__(self) -> None:
        self.sock, child_sock = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(child_sock.fileno())],
            pass_fds=[child_sock.fileno()])
        child_sock.close()
        self.ch = SocketChannel.from_socket(self.sock)
        content = bytes(range(256)) * (SIZE // 256)
        self.shared = ByteBuffer.allocate_shared(SIZE)
        self.shared.put(0, content)
        self.direct = ByteBuffer.allocate_direct(SIZE)
        self.direct.put(0, content)
        self.shm = shared_memory.SharedMemory(create=True, size=SIZE)
        self.shm.buf[:SIZE] = content
        self.answer = bytearray(_ANSWER.size)
        self.pickle5_copies: set[int] = set()

    def expect(self, copies_at_most: int) -> int:
        _recv_exactly(self.sock, memoryview(self.answer))
        first, last, copies = _ANSWER.unpack(self.answer)
        if (first, last) != (0, 255):
            raise AssertionError(f"the child read {first}, {last}, not 0, 255")
        if copies > copies_at_most:
            raise AssertionError(f"{copies} copies, at most {copies_at_most} expected")
        return int(copies)

    def fd_passing(self, n: int) -> None:
        self.sock.sendall(_HEAD.pack(b"F", n, 0, 0))
        for _ in range(n):
            self.ch.send_buffer(self.shared)
            self.expect(0)

    def bare_fd_passing(self, n: int) -> None:
        header = _header(self.shared, self.shared._shared())  # what send_buffer sends
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                self.shared.fileno().to_bytes(4, sys.byteorder))]
        self.sock.sendall(_HEAD.pack(b"B", n, 0, 0))
        for _ in range(n):
            self.sock.sendmsg([header], anc)
            self.expect(0)

    def shared_memory(self, n: int) -> None:
        name = self.shm.name.encode()
        self.sock.sendall(_HEAD.pack(b"S", n, len(name), 0))
        for _ in range(n):
            self.sock.sendall(name)
            self.expect(0)

    def pickle5(self) -> None:
        frames: list[pickle.PickleBuffer] = []
        stream = pickle.dumps(self.direct, protocol=5, buffer_callback=frames.append)
        (frame,) = frames
        with frame.raw() as view:
            self.sock.sendall(_HEAD.pack(b"P", 1, len(stream), view.nbytes) + stream)
            self.sock.sendall(view)
        self.pickle5_copies.add(self.expect(1))

    def plain_pickle(self) -> None:
        stream = pickle.dumps(self.direct, protocol=4)
        self.sock.sendall(_HEAD.pack(b"P", 1, len(stream), 0))
        self.sock.sendall(stream)
        self.expect(1)  # in the child: into allocate_direct (the dump's bytes() is ours)

    def close(self) -> None:
        self.sock.sendall(_HEAD.pack(b"Q", 0, 0, 0))
        self.proc.wait(timeout=60)
        self.ch.close()
        self.shared.release()
        self.direct.release()
        self.shm.close()
        self.shm.unlink()
        print(f"pickle 5 out of band: zcio copies per hand-off in the child: "
              f"{sorted(self.pickle5_copies)} (goal: at most 1)")


_state: list[_Handoff] = []


def _handoff() -> _Handoff:
    if not _state:
        _state.append(_Handoff())
    return _state[0]


FD, SHM = "fd passing (send_buffer)", "shared_memory (attach by name)"
BARE = "bare Python fd passing (sendmsg, recvmsg, mmap)"
PICKLE5, PLAIN = "pickle 5 out of band", "plain pickle (protocol 4)"


def zero_copy_group() -> Group:
    """The two zero-copy hand-offs, MAPS per timed loop: sub-millisecond each, so one
    preemption of the child would otherwise be the whole sample."""
    h = _handoff()
    cases = [Case(FD, MAPS, partial(h.fd_passing, MAPS)),
             Case(BARE, MAPS, partial(h.bare_fd_passing, MAPS)),
             Case(SHM, MAPS, partial(h.shared_memory, MAPS))]
    return Group(f"hand a {SIZE // MIB} MiB buffer to another process: zero-copy ways",
                 cases, [Compare(FD, SHM, "time", GOAL_VS_SHM), Compare(FD, BARE, "time"),
                         Compare(BARE, SHM, "time")])


def copying_group() -> Group:
    h = _handoff()
    cases = [Case(FD, 1, partial(h.fd_passing, 1)), Case(PICKLE5, 1, h.pickle5),
             Case(PLAIN, 1, h.plain_pickle)]
    compares = [Compare(FD, PLAIN, "speed", GOAL_VS_PICKLE),
                Compare(PICKLE5, PLAIN, "speed")]
    return Group(f"hand a {SIZE // MIB} MiB buffer to another process: against pickle",
                 cases, compares, lambda: _state.pop().close())


def dask_group() -> Group:
    title = f"Dask scatter + gather of {DASK_SIZE // MIB} MiB (1 worker process)"
    try:
        import distributed
    except ImportError:
        return Group(title + ": dask[distributed] not installed, skipped", [], [])
    import logging

    cluster = distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    content = bytes(range(256)) * (DASK_SIZE // 256)
    buf = ByteBuffer.allocate_direct(DASK_SIZE).put(0, content)

    def round_trip(x: Any) -> Any:
        future = client.scatter(x, direct=True, hash=False)
        back = future.result()
        del future
        return back

    def zcio_buffer() -> None:
        round_trip(buf).release()

    def as_bytes() -> None:
        round_trip(content)

    def cleanup() -> None:
        client.close()
        cluster.close()
        buf.release()

    cases = [Case("zcio direct buffer", 1, zcio_buffer), Case("bytes", 1, as_bytes)]
    return Group(title, cases, [Compare("zcio direct buffer", "bytes", "time")], cleanup)


# -- should zcio offer a zcio:// Dask comm? (--dask-comm) --------------------------------

COMM_SIZE = 64 * MIB
_CPU = struct.Struct("<d")  # the serving process's CPU seconds since its last answer


def _raw_server(port_fd: int) -> None:
    """The floor of any comm: receive each 64 MiB frame into a fresh numpy array with
    ``recv_into`` (the array becomes the object, as in a comm), answer with the CPU
    this process spent since its previous answer (all of it on that frame)."""
    import numpy as np

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    os.write(port_fd, f"{listener.getsockname()[1]}".encode())
    os.close(port_fd)  # the parent reads to the end
    conn, _ = listener.accept()
    listener.close()
    last = time.process_time()
    while True:
        frame = np.empty(COMM_SIZE, np.uint8)
        try:
            _recv_exactly(conn, memoryview(frame))
        except (EOFError, ConnectionError):
            return
        now = time.process_time()
        conn.sendall(_CPU.pack(now - last))
        last = now


def _dask_server(port_fd: int) -> None:
    """The same through Dask's own tcp:// comm (tornado streams, frames read into a
    preallocated buffer, the numpy array deserialised over it)."""
    import asyncio

    from distributed.comm import listen

    async def serve() -> None:
        done = asyncio.Event()

        async def handle(comm: Any) -> None:
            last = time.process_time()
            while True:
                try:
                    msg = await comm.read()
                except Exception:  # the parent closed the comm
                    break
                assert len(msg["x"]) == COMM_SIZE
                now = time.process_time()
                await comm.write({"cpu": now - last})
                last = now
            done.set()

        listener = listen("tcp://127.0.0.1:0", handle, deserialize=True)
        await listener.start()
        os.write(port_fd, listener.contact_address.encode())
        os.close(port_fd)  # the parent reads to the end
        await done.wait()
        listener.stop()

    asyncio.run(serve())


def _spawn(role: str) -> tuple[subprocess.Popen[bytes], str]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, __file__, role, str(w)], pass_fds=[w])
    os.close(w)
    with os.fdopen(r, "rb") as f:
        return proc, f.read().decode()


def dask_comm(rounds: int) -> int:
    """Dask's tcp:// comm against the socket floor a ``zcio://`` comm could reach, one
    64 MiB numpy frame at a time to another process on this host: wall time and the CPU
    of both processes per frame, interleaved rounds, medians, the first round dropped
    (connection and first-touch warm-up).  Issue 14 asks for a zcio:// comm only if it
    beats tcp:// by 1.2x in throughput or 0.8x in CPU."""
    import asyncio
    from statistics import median

    import numpy as np
    from distributed.comm import connect
    from distributed.protocol import to_serialize

    data = np.random.default_rng(0).integers(0, 256, COMM_SIZE, dtype=np.uint8)
    raw_proc, port = _spawn("--child-raw-server")
    dask_proc, address = _spawn("--child-dask-server")
    raw = socket.create_connection(("127.0.0.1", int(port)))
    answer = bytearray(_CPU.size)
    samples: dict[str, list[tuple[float, float]]] = {"tcp://": [], "socket floor": []}

    async def run() -> None:
        comm = await connect(address, deserialize=True)
        for r in range(rounds + 1):
            for name in random.sample(list(samples), 2):
                t, cpu = time.perf_counter(), time.process_time()
                if name == "socket floor":  # blocking calls: nothing else runs meanwhile
                    raw.sendall(memoryview(data))
                    _recv_exactly(raw, memoryview(answer))
                    theirs = float(_CPU.unpack(answer)[0])
                else:
                    await comm.write({"x": to_serialize(data)})
                    theirs = float((await comm.read())["cpu"])
                wall, ours = time.perf_counter() - t, time.process_time() - cpu
                if r:
                    samples[name].append((wall, ours + theirs))
        await comm.close()

    asyncio.run(run())
    raw.close()
    for proc in (raw_proc, dask_proc):
        proc.wait(timeout=60)
    med = {k: (median(w for w, _ in v), median(c for _, c in v)) for k, v in samples.items()}
    for name, (wall, cpu) in med.items():
        print(f"{name:13s} 64 MiB frame: {wall * 1e3:6.1f} ms "
              f"({COMM_SIZE / wall / MIB:5.0f} MiB/s), CPU of both processes {cpu * 1e3:5.1f} ms")
    (dw, dc), (fw, fc) = med["tcp://"], med["socket floor"]
    print(f"socket floor against tcp://: {dw / fw:.2f}x the throughput (goal for a zcio:// "
          f"comm: >= 1.2x), {fc / dc:.2f}x the CPU (goal: <= 0.8x); {rounds} rounds, "
          f"load {os.getloadavg()[0]:.1f}")
    return 0


def _zero_copy_only() -> Group:
    """The zero-copy group, then the child stopped and the blocks freed (``--zero-copy``)."""
    group = zero_copy_group()
    return Group(group.title, group.cases, group.compares, lambda: _state.pop().close())


def main(argv: Sequence[str] | None = None) -> int:
    # options "--quick", "--rounds", "--json" (as every benchmark script), and
    # "--zero-copy": only the zero-copy group (about a second per 40 rounds)
    args = list(sys.argv[1:] if argv is None else argv)
    only_zero_copy = "--zero-copy" in args
    if only_zero_copy:
        args.remove("--zero-copy")
    if "--rounds" not in args:  # the harness's 200 are for sub-millisecond loops
        args += ["--rounds", str(QUICK_ROUNDS if "--quick" in args else DEFAULT_ROUNDS)]
    return _harness.main(
        args,
        benchmark="share",
        description="handing a 256 MiB buffer to another process: descriptor passing, "
        "shared_memory, pickle 5 out of band, plain pickle; Dask scatter/gather "
        "(interleaved rounds, medians, ratios from the same run).  --zero-copy: only "
        "the zero-copy ways.",
        builders=([_zero_copy_only] if only_zero_copy
                  else [zero_copy_group, copying_group, dask_group]),
        settings={"bytes": {"handoff": SIZE, "dask": DASK_SIZE}},
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] in ("--child-raw-server", "--child-dask-server"):
        (_raw_server if sys.argv[1] == "--child-raw-server" else _dask_server)(int(sys.argv[2]))
        sys.exit(0)
    if "--dask-comm" in sys.argv[1:]:
        args = sys.argv[1:]
        n = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 15
        sys.exit(dask_comm(n))
    sys.exit(main())
