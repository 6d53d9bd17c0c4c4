"""``mypy --strict`` over user code: zcio's annotations accept what works and reject the rest.

A small typed user script is written into a temporary directory and checked against
this checkout's sources (MYPYPATH).  Lines ending in ``# E`` must each get an error;
every other line must pass, and ``assert_type`` pins the precise return types.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import zcio

SRC = Path(zcio.__file__).resolve().parent.parent  # the zcio this test imports

USER_SCRIPT = '''
from __future__ import annotations

import asyncio
import io
import socket
from typing import assert_type

import zcio
import zcio.aio
from zcio import (ByteBuffer, CharBuffer, DoubleBuffer, FileChannel, FloatBuffer,
                  IntBuffer, LongBuffer, ShortBuffer, SocketChannel)


class Relay:  # a channel object without a descriptor
    def read(self, dst: ByteBuffer) -> int:
        return -1

    def write(self, src: ByteBuffer) -> int:
        return 0


def blocking(ch: FileChannel, sock: socket.socket, sc: SocketChannel, f: io.BufferedReader,
             w: io.BufferedWriter, pipe: zcio.Pipe) -> None:
    assert_type(zcio.transfer(ch, sock), int)
    zcio.transfer(f, sc, 10, path="sendfile")
    zcio.transfer(pipe.source(), w)
    zcio.transfer(Relay(), Relay())
    zcio.transfer("not a channel", 42)  # E
    zcio.transfer(ch, 42)  # E
    zcio.transfer(3, sock)  # E
    zcio.transfer(ch, b"bytes")  # E
    zcio.transfer(ch, sock, "all")  # E
    zcio.splice(pipe.source(), 1, 4096)
    zcio.splice("pipe", 1, 4096)  # E


def views(buf: ByteBuffer, values: list[int], floats: list[float], chars: list[str]) -> None:
    ints = buf.as_int_buffer()
    assert_type(ints.get(), int)
    assert_type(ints.get(0), int)
    assert_type(ints.get(values), IntBuffer)
    assert_type(ints.get(0, values, 0, 1), IntBuffer)
    assert_type(ints.put(1).put(0, 2), IntBuffer)
    assert_type(buf.as_short_buffer().get(), int)
    assert_type(buf.as_long_buffer().get(3), int)
    assert_type(buf.as_float_buffer().get(), float)
    assert_type(buf.as_double_buffer().get(0), float)
    assert_type(buf.as_char_buffer().get(), str)
    assert_type(buf.as_char_buffer().get(chars), CharBuffer)
    assert_type(buf.as_float_buffer().get(floats), FloatBuffer)
    assert_type(buf.as_double_buffer().slice(), DoubleBuffer)
    assert_type(buf.as_long_buffer().duplicate(), LongBuffer)
    assert_type(buf.as_short_buffer().compact(), ShortBuffer)
    total: int = ints.get() + ints.get(1)
    text: str = buf.as_char_buffer().get() + "!"
    ints.get().upper()  # E
    name: str = ints.get(0)  # E
    count: int = buf.as_float_buffer().get()  # E
    code: int = buf.as_char_buffer().get(0)  # E
    more: int = ints.get(values)  # E


async def aio(sock: socket.socket, sc: SocketChannel, f: io.BufferedReader, ch: FileChannel,
              transport: asyncio.WriteTransport, buf: ByteBuffer) -> None:
    assert_type(await zcio.aio.sendfile(sock, f), int)
    await zcio.aio.sendfile(transport, ch, 0, 10)
    await zcio.aio.sendfile(sc, f, path="mmap_write")
    await zcio.aio.transfer_to(ch, 0, 10, sock)
    await zcio.aio.transfer_to(ch, 0, 10, transport)
    await zcio.aio.splice(sock, f)
    assert_type(await zcio.aio.send_zerocopy(sock, buf), int)
    await zcio.aio.send_zerocopy(zcio.aio.zerocopy_sender(sc), buf)
    await zcio.aio.sendfile("sock", f)  # E
    await zcio.aio.sendfile(sock, "file.txt")  # E
    await zcio.aio.sendfile(sock, 3)  # E
    await zcio.aio.transfer_to(ch, 0, 10, "target")  # E
    await zcio.aio.splice(1, 2)  # E
    await zcio.aio.send_zerocopy(f, buf)  # E
    zcio.aio.zerocopy_sender(3)  # E
'''

_ERROR = re.compile(r"^user\.py:(\d+): error: ")


def test_mypy_strict_accepts_and_rejects_the_right_lines(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    env = {**os.environ, "MYPYPATH": str(SRC)}
    env.pop("PYTHONPATH", None)  # mypy resolves zcio through MYPYPATH only
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-error-summary", "--no-pretty", "--cache-dir", str(tmp_path / ".mypy_cache"),
         script.name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy crashed
    lines = USER_SCRIPT.splitlines()
    expected = {n for n, line in enumerate(lines, 1) if line.endswith("# E")}
    reported: dict[int, list[str]] = {}
    for line in result.stdout.splitlines():
        if m := _ERROR.match(line):
            reported.setdefault(int(m[1]), []).append(line)
    unexpected = {n: reported[n] for n in sorted(reported.keys() - expected)}
    missed = {n: lines[n - 1].strip() for n in sorted(expected - reported.keys())}
    assert not unexpected, f"errors on lines that must pass: {unexpected}"
    assert not missed, f"accepted, but must fail to type-check: {missed}"
    assert len(expected) >= 15
