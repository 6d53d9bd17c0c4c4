"""The examples in README.md and docs/ (every .md file) run as written.

Each ```python block runs on its own, in a fresh interpreter, in an empty temporary
directory, with this checkout's zcio and no ZCIO_* variables (the reader's default
environment).  It must exit 0 and write nothing to stderr.  What a block needs from the
reader's world is provided here, never written into the documentation:

* ``big.iso`` is a file the reader already has: the test writes one.
* ``("backup.lan", 9000)`` is the reader's receiver on another host: the test starts a
  listener on 127.0.0.1 that reads to EOF, puts its address in place of the
  placeholder, and checks it received the whole file.

Blocks not meant to run (shell sessions, output) carry another language (```sh,
```text); an unlabelled fence fails here, so nothing is left out by accident.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import zcio

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted(
    p for p in (ROOT / "docs").rglob("*.md")  # not build output (_build) or hidden dirs
    if not any(part.startswith(("_", ".")) for part in p.relative_to(ROOT / "docs").parts))]
SRC = Path(zcio.__file__).resolve().parent.parent  # the zcio this test imports

HOST_PLACEHOLDER = '("backup.lan", 9000)'
BIG_FILE = "big.iso"
BIG_SIZE = 3 * 1024 * 1024 + 17  # not a multiple of any chunk size


@dataclass
class Block:
    document: Path
    line: int  # of the first line of code, 1-based
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _blocks(document: Path) -> list[Block]:
    """The fenced blocks of ``document``; ValueError for an unclosed fence."""
    blocks: list[Block] = []
    opened: Block | None = None
    lines: list[str] = []
    for number, line in enumerate(document.read_text().splitlines(), 1):
        fence = line.strip().startswith("```")
        if opened is None and fence:
            opened, lines = Block(document, number + 1, line.strip()[3:].strip(), ""), []
        elif opened is not None and line.strip() == "```":
            opened.code = "\n".join(lines) + "\n"
            blocks.append(opened)
            opened = None
        elif opened is not None:
            lines.append(line)
    if opened is not None:
        raise ValueError(f"{document}: fence opened at line {opened.line - 1} never closes")
    return blocks


ALL_BLOCKS = [b for d in DOCUMENTS for b in _blocks(d)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.language == "python"]


def test_every_fence_names_its_language() -> None:
    unlabelled = [b.name for b in ALL_BLOCKS if not b.language]
    assert not unlabelled, f"fences without a language (use ```text for output): {unlabelled}"


def test_the_readme_has_python_examples() -> None:
    assert sum(b.document.name == "README.md" for b in PYTHON_BLOCKS) >= 3


class _Receiver:
    """A listener on 127.0.0.1 that accepts one connection and reads it to EOF."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)
        self.received = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.listener.getsockname()
        return f'("{host}", {port})'

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(60)
                while chunk := conn.recv(1 << 20):
                    self.received += len(chunk)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e

    def close(self) -> None:
        self.listener.close()  # ends a pending accept() if the example never connected
        self.thread.join(70)
        assert not self.thread.is_alive()


def _run(block: Block, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "example.py"
    # Blank lines first, so that a traceback's line numbers are the document's.
    script.write_text("\n" * (block.line - 1) + code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZCIO_")}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-X", "dev", script.name], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.name for b in PYTHON_BLOCKS])
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    code = block.code
    receiver = None
    if BIG_FILE in code:
        (tmp_path / BIG_FILE).write_bytes(os.urandom(BIG_SIZE))
    if HOST_PLACEHOLDER in code:
        receiver = _Receiver()
        code = code.replace(HOST_PLACEHOLDER, receiver.address)
    try:
        result = _run(block, code, tmp_path)
    finally:
        if receiver is not None:
            receiver.close()
    assert result.returncode == 0 and not result.stderr, (
        f"{block.name} (exit {result.returncode}):\n{result.stderr}\n{result.stdout}")
    if receiver is not None:
        assert receiver.error is None, receiver.error
        assert receiver.received == BIG_SIZE
