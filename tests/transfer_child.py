"""Child process for tests/test_transfer_interrupts.py: transfers interrupted at every
call (``interrupts.at_every_call``), each followed by a transfer of other streams'
bytes through the same thread's scratch resources, which must deliver exactly those.

Run as ``python transfer_child.py OP PATH``: ``OP`` ``from_socket`` (a file's
``transfer_from`` a socket) or ``to_socket`` (``transfer_to`` a socket), ``PATH`` the
rung forced (``-``: the ladder's choice).  Prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import zcio
from interrupts import at_every_call
from zcio import FileChannel, OpenOption, SocketChannel

RW = (OpenOption.READ, OpenOption.WRITE, OpenOption.CREATE)


def main(op: str) -> dict[str, object]:
    tmp = tempfile.mkdtemp()
    mine, peer = socket.socketpair()
    mine.setblocking(False)
    peer.setblocking(False)
    a_file = FileChannel.open(os.path.join(tmp, "a"), *RW)
    a_file.write(zcio.ByteBuffer.wrap(b"A" * (1 << 20)), 0)
    a_sock = SocketChannel.from_socket(mine)
    failures: list[str] = []
    trials = [0]

    def fill_and_drain() -> None:  # the stream A has bytes to give; its reader room
        try:
            while True:
                peer.send(b"A" * 65536)
        except BlockingIOError:
            pass
        try:
            while peer.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    def run() -> int:
        fill_and_drain()
        if op == "from_socket":
            return a_file.transfer_from(a_sock, 0, 1 << 20)
        return a_file.transfer_to(0, 1 << 20, a_sock)

    def check(where: str, moved: int | None, drop: object) -> None:
        trials[0] += 1
        path = os.path.join(tmp, f"b{trials[0]}")
        b_mine, b_peer = socket.socketpair()
        with FileChannel.open(path, *RW) as b_file, SocketChannel.from_socket(b_mine) as b:
            if op == "from_socket":
                b_peer.sendall(b"B" * 100)
                b_peer.shutdown(socket.SHUT_WR)
                n = b_file.transfer_from(b, 0, 100)
                got = Path(path).read_bytes()
            else:
                b_file.write(zcio.ByteBuffer.wrap(b"B" * 100), 0)
                n = b_file.transfer_to(0, 100, b)
                b.shutdown_output()
                got = b""
                while chunk := b_peer.recv(4096):
                    got += chunk
        b_peer.close()
        os.unlink(path)
        if (n, got) != (100, b"B" * 100):
            failures.append(f"{where or 'uninterrupted'}: {n} moved, "
                            f"{got.count(b'A')} bytes of another stream delivered")

    interrupted = at_every_call(run, check)
    return {"interrupted": interrupted, "failures": failures[:5]}


if __name__ == "__main__":
    if sys.argv[2] != "-":
        os.environ["ZCIO_TRANSFER_PATH"] = sys.argv[2]
    print(json.dumps(main(sys.argv[1])))
