"""Child processes for tests/test_shared.py: shared buffers across real processes.

Run as ``python shared_child.py SCENARIO [START_METHOD]``; prints one JSON object on its
last line.  Scenarios:

* ``mp METHOD``: hand one shared buffer to children through a Queue, a Pipe, Process
  arguments and Pool arguments under that start method; each child reads what the
  parent wrote and writes a value of its own that the parent must see.
* ``orders``: two processes over one buffer, released in every order.
* ``kill``: a child holding the buffer is SIGKILLed; the parent's buffer stays valid.
* ``interrupt OP``: ``OP`` (``receive``, ``allocate``, ``seal``) run again and again,
  KeyboardInterrupt raised at the entry of its first Python call, then its second...
  (where a raising signal handler strikes), until it completes: after each, no
  unrelated descriptor closed, no memfd left open, the shared pool's count exact.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import socket
import sys
from multiprocessing.connection import Connection
from typing import Any

import zcio

MIB = 1 << 20


def memfds() -> int:
    """Descriptors of memfds open in this process."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone already
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
    return n


def mapped_memfds() -> int:
    with open("/proc/self/maps") as maps:
        return sum("/memfd:" in line for line in maps)


def shared_pool() -> list[int]:
    (pool,) = [p for p in zcio.buffer_pools() if p.name == "shared"]
    return [pool.count, pool.total_capacity, pool.memory_used]


def fill(buf: zcio.ByteBuffer, value: int) -> int:
    """In a child: read the parent's int at 0, write ``value`` at 4, release."""
    seen = buf.get_int(0)
    buf.put_int(4, value)
    buf.release()
    return seen


def via_queue(q: Any, r: Any) -> None:
    r.put(fill(q.get(), 2))


def via_pipe(conn: Connection) -> None:
    conn.send(fill(conn.recv(), 3))


def via_args(buf: zcio.ByteBuffer, r: Any) -> None:
    r.put(fill(buf, 4))


def scenario_mp(method: str) -> dict[str, Any]:
    from multiprocessing import resource_sharer
    from multiprocessing.reduction import ForkingPickler

    ctx = mp.get_context(method)
    out: dict[str, Any] = {}
    buf = zcio.ByteBuffer.allocate_shared(MIB, name="mp-test")
    buf.put_int(0, 1234)
    q, r = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=via_queue, args=(q, r))
    p.start()
    q.put(buf)
    out["queue"] = [r.get(timeout=60), buf.get_int(4)]
    p.join()
    a, b = ctx.Pipe()
    p = ctx.Process(target=via_pipe, args=(b,))
    p.start()
    a.send(buf)
    out["pipe"] = [a.recv(), buf.get_int(4)]
    p.join()
    a.close()
    b.close()
    p = ctx.Process(target=via_args, args=(buf, r))
    p.start()
    out["process"] = [r.get(timeout=60), buf.get_int(4)]
    p.join()
    with ctx.Pool(1) as pool:
        out["pool"] = [pool.apply(fill, (buf, 5)), buf.get_int(4)]
    # The descriptor went, not the mebibyte; plain pickle is not multiprocessing's.
    out["pickled_size"] = len(ForkingPickler.dumps(buf))
    q.close()
    r.close()
    resource_sharer.stop()  # closes the descriptors it still held for a fetch
    buf.release()
    out["after"] = [shared_pool(), memfds(), mapped_memfds()]
    return out


def peer(sock: socket.socket, commands: Connection) -> None:
    """The other process: take the buffer from ``sock``, then obey ``commands``."""
    ch = zcio.SocketChannel.from_socket(sock)
    buf = ch.receive_buffer()
    assert buf is not None
    while True:
        cmd, arg = commands.recv()
        if cmd == "write":
            buf.put_int(0, arg)
            commands.send(None)
        elif cmd == "read":
            commands.send(buf.get_int(0))
        elif cmd == "release":
            buf.release()
            commands.send([shared_pool(), memfds(), mapped_memfds()])
        elif cmd == "hold":  # write, report, then wait to be killed
            buf.put_int(0, arg)
            commands.send(os.getpid())
        elif cmd == "exit":
            ch.close()
            return


def start_peer(ctx: Any) -> tuple[Any, Connection, zcio.SocketChannel]:
    mine, theirs = socket.socketpair()
    cmd, their_cmd = ctx.Pipe()
    p = ctx.Process(target=peer, args=(theirs, their_cmd))
    p.start()
    theirs.close()
    their_cmd.close()
    return p, cmd, zcio.SocketChannel.from_socket(mine)


def ask(cmd: Connection, what: str, arg: int = 0) -> Any:
    cmd.send((what, arg))
    return cmd.recv()


def scenario_orders() -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out: dict[str, Any] = {}
    for order in ("parent_first", "child_first", "child_exits_holding"):
        p, cmd, ch = start_peer(ctx)
        buf = zcio.ByteBuffer.allocate_shared(64 * 1024, name=order)
        ch.send_buffer(buf)
        buf.put_int(0, 11)
        steps: list[Any] = [ask(cmd, "read")]  # the child sees the parent's write: 11
        ask(cmd, "write", 22)
        steps.append(buf.get_int(0))  # the parent sees the child's: 22
        if order == "parent_first":
            buf.release()
            steps.append(shared_pool())
            ask(cmd, "write", 33)  # still the child's to use
            steps.append(ask(cmd, "read"))
            steps.append(ask(cmd, "release"))
            cmd.send(("exit", 0))
        elif order == "child_first":
            steps.append(ask(cmd, "release"))
            buf.put_int(0, 44)
            steps.append(buf.get_int(0))
            buf.release()
            cmd.send(("exit", 0))
        else:
            cmd.send(("exit", 0))
            p.join(60)
            buf.put_int(0, 55)
            steps.append(buf.get_int(0))
            buf.release()
        p.join(60)
        ch.close()
        cmd.close()
        steps.append([p.exitcode, shared_pool(), memfds(), mapped_memfds()])
        out[order] = steps
    return out


def scenario_kill() -> dict[str, Any]:
    ctx = mp.get_context("fork")
    before = [shared_pool(), memfds(), mapped_memfds()]
    buf = zcio.ByteBuffer.allocate_shared(MIB, name="killed")
    holding = [shared_pool(), memfds(), mapped_memfds()]
    p, cmd, ch = start_peer(ctx)
    ch.send_buffer(buf)
    pid = ask(cmd, "hold", 42)
    os.kill(pid, signal.SIGKILL)
    p.join(60)
    seen = buf.get_int(0)
    buf.put_int(MIB - 4, 7)
    tail = buf.get_int(MIB - 4)
    after_kill = [shared_pool(), memfds(), mapped_memfds()]
    ch.close()
    cmd.close()
    buf.release()
    return {"exitcode": p.exitcode, "seen": seen, "tail": tail, "before": before,
            "holding": holding, "after_kill": after_kill,
            "after": [shared_pool(), memfds(), mapped_memfds()]}


class _Sub(zcio.SocketChannel):  # a subclass: the Python receive path, every rung
    pass


def scenario_interrupt(op: str) -> dict[str, Any]:
    import gc

    from interrupts import at_every_call

    a, b = socket.socketpair()
    tx, rx = zcio.SocketChannel.from_socket(a), _Sub.from_socket(b)
    rx.configure_blocking(False)
    src = zcio.ByteBuffer.allocate_shared(4096)

    def run() -> zcio.ByteBuffer | None:
        if op == "receive":
            tx.send_buffer(src)
            return rx.receive_buffer()
        buf = zcio.ByteBuffer.allocate_shared(4096)
        return buf.seal(write=True) if op == "seal" else buf

    gc.collect()
    base = [shared_pool()[0], memfds()]
    failures: list[str] = []

    def check(where: str, got: zcio.ByteBuffer | None, drop: Any) -> None:
        where = where or "uninterrupted"
        if got is not None:
            got.release()
        canary = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # may reuse a number
        drop()
        try:
            if os.readlink(f"/proc/self/fd/{canary}") != os.devnull:
                failures.append(f"{where}: descriptor {canary} reused")
            os.close(canary)
        except FileNotFoundError:
            failures.append(f"{where}: an unrelated descriptor was closed")
        while op == "receive" and (late := rx.receive_buffer()) is not None:
            late.release()  # a hand-off the interrupted receive left in the socket
        gc.collect()
        now = [shared_pool()[0], memfds()]
        if now != base:
            failures.append(f"{where}: shared count and memfds {now}, not {base}")

    return {"interrupted": at_every_call(run, check), "failures": failures}


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "mp":
        result = scenario_mp(sys.argv[2])
    elif scenario == "orders":
        result = scenario_orders()
    elif scenario == "interrupt":
        result = scenario_interrupt(sys.argv[2])
    else:
        result = scenario_kill()
    print(json.dumps(result))
