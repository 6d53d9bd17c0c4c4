"""``zcio send`` / ``zcio recv`` end to end over loopback, each side in its own process.

A receiver is killed mid-transfer and the next send resumes; a corrupted prefix is
caught by the whole-file digest; write errors, refusals, hostile headers and every bad
argument end with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from test_cli_cp import PSEUDO_FILES, pseudo_file
from zcio._wire import (
    Abort,
    Accept,
    Header,
    Reply,
    decode_reply,
    encode_reply,
)

ZCIO = [sys.executable, "-m", "zcio"]
ENV = {**os.environ, "ZCIO_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
MiB = 1 << 20
WAIT = 60  # seconds: no test may hang longer on a child


class Procs:
    """Children started by a test; whatever is still running at teardown is killed and reaped."""

    def __init__(self) -> None:
        self.all: list[subprocess.Popen[str]] = []

    def start(self, *args: str, preexec_fn: Callable[[], None] | None = None
              ) -> subprocess.Popen[str]:
        p = subprocess.Popen([*ZCIO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=ENV, preexec_fn=preexec_fn)
        self.all.append(p)
        return p

    def close(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=WAIT)


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.close()


class Recv:
    """``zcio recv 0 DEST --json`` in a child; the port comes from its first stdout line."""

    def __init__(self, procs: Procs, dest: Path, *args: str,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.proc = procs.start("recv", "0", str(dest), "--json", *args, preexec_fn=preexec_fn)
        self._buf = b""  # read from the pipe's fd ourselves: no hidden read-ahead
        line = self._line()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=WAIT)
            pytest.fail(f"recv did not start: {err}")
        first = json.loads(line)
        assert first["event"] == "listening" and first["host"] == "127.0.0.1"
        self.port: int = first["port"]
        self.address = f"127.0.0.1:{self.port}"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + WAIT
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 1 << 16) if ready else b""
            if not chunk:
                return ""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def next_event(self) -> dict[str, Any]:
        """The next JSON line on stdout (waiting at most WAIT seconds)."""
        line = self._line()
        assert line, "recv printed nothing"
        event: dict[str, Any] = json.loads(line)
        return event

    def finish(self) -> tuple[int, list[dict[str, Any]], str]:
        out, err = self.proc.communicate(timeout=WAIT)
        out = self._buf.decode() + out
        return self.proc.returncode, [json.loads(x) for x in out.splitlines()], err


def zcio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZCIO, *args], capture_output=True, text=True, env=ENV,
                          timeout=WAIT)


def send_json(file: Path, address: str, *args: str) -> dict[str, Any]:
    r = zcio("send", str(file), address, "--json", *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def one_line(stderr: str, *fragments: str) -> str:
    """The single line a failure prints: no traceback, each fragment in it."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert re.match(r"zcio (send|recv): ", lines[0]), stderr
    for f in fragments:
        assert f in lines[0], stderr
    return lines[0]


def partial(dest: Path, name: str) -> tuple[Path, Path]:
    return dest / f".{name}.zcio-part", dest / f".{name}.zcio-head"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.fixture
def big(tmp_path: Path) -> bytes:
    data = os.urandom(32 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    return data


# -- end to end ------------------------------------------------------------------------


def test_32_mib_over_loopback(procs: Procs, tmp_path: Path, dest: Path, big: bytes) -> None:
    recv = Recv(procs, dest)
    sent = send_json(tmp_path / "big.bin", recv.address, "--path", "sendfile")
    rc, events, err = recv.finish()
    assert rc == 0 and err == ""
    assert (dest / "big.bin").read_bytes() == big
    assert sorted(os.listdir(dest)) == ["big.bin"]  # no partial, no sidecar
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    assert sent["name"] == "big.bin" and sent["bytes"] == sent["moved"] == len(big)
    assert sent["resumed_from"] == 0 and sent["verified"] is True
    assert sent["checksum"] == digest and sent["to"] == recv.address
    assert sent["path"] == "sendfile" and sent["paths"]["sendfile"]["user_bytes"] == 0
    assert sent["seconds"] > 0 and sent["gb_per_s"] > 0
    [got] = events
    assert got["event"] == "received" and got["path"] == "splice"
    assert got["paths"]["splice"]["kernel_bytes"] == len(big)
    assert got["paths"]["splice"]["user_bytes"] == 0
    assert got["checksum"] == digest and got["verified"] is True
    assert got["saved_to"] == str(dest / "big.bin") and got["resumed_from"] == 0


@pytest.mark.parametrize("path", [[], ["--path", "read_write"]])
def test_default_and_forced_paths(procs: Procs, tmp_path: Path, dest: Path,
                                  path: list[str]) -> None:
    data = os.urandom(3 * MiB + 1)
    (tmp_path / "f").write_bytes(data)
    recv = Recv(procs, dest, *path)
    sent = send_json(tmp_path / "f", recv.address, *path)
    rc, [got], _ = recv.finish()
    assert rc == 0 and (dest / "f").read_bytes() == data
    # the engine's choice to a peer on this host: sendfile or, measured faster, mmap+write
    assert (sent["path"] in ("sendfile", "mmap_write", "read_write") if not path
            else sent["path"] == "read_write")
    assert got["path"] == ("splice" if not path else "read_write")


def test_empty_file_and_human_output(procs: Procs, tmp_path: Path, dest: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    proc = procs.start("recv", "0", str(dest))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:")
    r = zcio("send", str(tmp_path / "empty"), line.split()[-1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"sent empty to {line.split()[-1]}: 0 bytes in ")
    assert "sha256 verified" in r.stdout
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 and err == ""
    assert out.startswith("received empty from 127.0.0.1:")
    assert (dest / "empty").read_bytes() == b""


@pytest.mark.parametrize("path", PSEUDO_FILES)
def test_pseudo_file_is_sent_as_read_to_its_end(procs: Procs, dest: Path, path: str) -> None:
    """procfs says 0 bytes, sysfs a page: the header announces what read(2) gives."""
    data = pseudo_file(path)
    recv = Recv(procs, dest)
    sent = send_json(Path(path), recv.address)
    assert sent["bytes"] == len(data) and sent["verified"]
    name = os.path.basename(path)
    assert (dest / name).read_bytes() == data
    code, events, err = recv.finish()
    assert code == 0 and err == "" and events[-1]["bytes"] == len(data)


def test_receiver_killed_mid_transfer_then_resumed(procs: Procs, tmp_path: Path, dest: Path,
                                                   big: bytes) -> None:
    recv = Recv(procs, dest)
    sender = procs.start("send", str(tmp_path / "big.bin"), recv.address, "--rate", "4m")
    part, head = partial(dest, "big.bin")
    deadline = time.monotonic() + WAIT
    while not (part.exists() and part.stat().st_size >= MiB):  # 8 s to go at this rate
        assert time.monotonic() < deadline and sender.poll() is None
        time.sleep(0.01)
    recv.proc.send_signal(signal.SIGKILL)
    assert recv.proc.wait(WAIT) == -signal.SIGKILL
    _, err = sender.communicate(timeout=WAIT)
    assert sender.returncode == 1
    one_line(err, f"connection to {recv.address} lost after", "of 33,554,432 bytes")
    assert not (dest / "big.bin").exists()  # never a truncated file under the final name
    have = part.stat().st_size
    assert MiB <= have < len(big) and head.exists()
    assert part.read_bytes() == big[:have]

    again = Recv(procs, dest)
    report = send_json(tmp_path / "big.bin", again.address)
    rc, [got], err = again.finish()
    assert rc == 0 and err == ""
    assert report["resumed_from"] == got["resumed_from"] == have > 0
    assert report["moved"] == len(big) - have
    assert (dest / "big.bin").read_bytes() == big
    assert sorted(os.listdir(dest)) == ["big.bin"]


def _plant(dest: Path, name: str, header_of: bytes, prefix: bytes) -> None:
    """The state a killed receiver leaves: a partial file and its sidecar."""
    part, head = partial(dest, name)
    part.write_bytes(prefix)
    head.write_bytes(Header(name, len(header_of), hashlib.sha256(header_of).digest()).encode())


def test_corrupted_prefix_is_caught_and_discarded(procs: Procs, tmp_path: Path, dest: Path,
                                                  big: bytes) -> None:
    bad = bytearray(big[: 10 * MiB])
    bad[12345] ^= 0xFF
    _plant(dest, "big.bin", big, bytes(bad))  # the right sidecar, the wrong bytes
    recv = Recv(procs, dest)
    r = zcio("send", str(tmp_path / "big.bin"), recv.address)
    rc, _, err = recv.finish()
    assert r.returncode == 1 and rc == 1
    one_line(r.stderr, f"receiver {recv.address} discarded big.bin", "does not match")
    one_line(err, "sha256 of the 33,554,432 bytes received does not match")
    assert os.listdir(dest) == []  # not renamed, and the bad prefix is gone

    again = Recv(procs, dest)
    report = send_json(tmp_path / "big.bin", again.address)
    assert again.finish()[0] == 0
    assert report["resumed_from"] == 0
    assert (dest / "big.bin").read_bytes() == big


def test_a_partial_of_another_file_is_not_reused(procs: Procs, tmp_path: Path, dest: Path,
                                                 big: bytes) -> None:
    _plant(dest, "big.bin", b"an older big.bin", b"an older")
    recv = Recv(procs, dest)
    report = send_json(tmp_path / "big.bin", recv.address)
    assert recv.finish()[0] == 0
    assert report["resumed_from"] == 0
    assert (dest / "big.bin").read_bytes() == big
    assert sorted(os.listdir(dest)) == ["big.bin"]


def test_a_complete_partial_only_needs_verifying(procs: Procs, tmp_path: Path,
                                                 dest: Path) -> None:
    data = os.urandom(MiB + 7)
    (tmp_path / "f").write_bytes(data)
    _plant(dest, "f", data, data)  # killed after the last byte, before the rename
    (dest / "f").write_bytes(b"an old version, replaced")
    recv = Recv(procs, dest, "--overwrite")
    report = send_json(tmp_path / "f", recv.address)
    assert recv.finish()[0] == 0
    assert report["resumed_from"] == len(data) and report["moved"] == 0
    assert (dest / "f").read_bytes() == data
    assert sorted(os.listdir(dest)) == ["f"]


def test_send_name_option(procs: Procs, tmp_path: Path, dest: Path) -> None:
    (tmp_path / "x").write_bytes(b"abc")
    recv = Recv(procs, dest)
    assert send_json(tmp_path / "x", recv.address, "--name", "renamed.txt")["name"] == \
        "renamed.txt"
    assert recv.finish()[0] == 0
    assert (dest / "renamed.txt").read_bytes() == b"abc"


def test_keep_serves_many_and_survives_bad_clients(procs: Procs, tmp_path: Path,
                                                   dest: Path) -> None:
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(os.urandom(3 * MiB))
    recv = Recv(procs, dest, "--keep")
    assert send_json(tmp_path / "a", recv.address)["verified"]
    with socket.create_connection(("127.0.0.1", recv.port), timeout=WAIT) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert isinstance(_read_reply(s), Abort)
    assert send_json(tmp_path / "b", recv.address)["verified"]
    events = [recv.next_event() for _ in range(3)]  # all reported: now interrupt it
    recv.proc.send_signal(signal.SIGINT)
    rc, rest, err = recv.finish()
    assert rc == 130 and rest == []
    assert [e["event"] for e in events] == ["received", "failed", "received"]
    assert "bad magic" in events[1]["error"]
    lines = [x for x in err.splitlines() if x]  # click echoes a newline on ^C
    assert len(lines) == 2
    assert lines[0].startswith("zcio recv: 127.0.0.1:") and "bad magic b'GET '" in lines[0]
    assert lines[1] == "zcio recv: interrupted"
    assert (dest / "a").read_bytes() == b"first"
    assert (dest / "b").read_bytes() == (tmp_path / "b").read_bytes()


# -- the disk fails --------------------------------------------------------------------


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))  # CPython ignores SIGXFSZ


def test_write_error_mid_transfer_is_one_line_on_both_sides(procs: Procs, tmp_path: Path,
                                                            dest: Path) -> None:
    data = os.urandom(8 * MiB)
    (tmp_path / "f").write_bytes(data)
    recv = Recv(procs, dest, preexec_fn=_limit_file_size)
    r = zcio("send", str(tmp_path / "f"), recv.address)
    rc, _, err = recv.finish()
    assert r.returncode == 1 and rc == 1
    one_line(r.stderr, f"receiver {recv.address} failed: File too large after 1,048,576 of "
             "8,388,608 bytes")
    one_line(err, "File too large after 1,048,576 of 8,388,608 bytes; kept for resuming")
    part, head = partial(dest, "f")
    assert not (dest / "f").exists()
    assert part.read_bytes() == data[:MiB] and head.exists()  # resumable once there is room


def test_full_disk_is_refused_before_any_byte_moves(procs: Procs, dest: Path) -> None:
    """A header announcing more than the disk has free is refused; nothing is reserved."""
    size = 1 << 62  # more than any disk here has
    recv = Recv(procs, dest)
    reply = _raw_send(recv.port, Header("huge", size, bytes(32)).encode())
    rc, _, err = recv.finish()
    assert rc == 1
    line = one_line(err, "No space left on device: ", f"(needs {size:,} more bytes, has ")
    assert isinstance(reply, Abort) and reply.reason in line
    assert os.listdir(dest) == []


def test_max_size_refuses(procs: Procs, tmp_path: Path, dest: Path) -> None:
    (tmp_path / "f").write_bytes(bytes(4096))
    recv = Recv(procs, dest, "--max-size", "1k")
    r = zcio("send", str(tmp_path / "f"), recv.address)
    rc, _, err = recv.finish()
    assert r.returncode == 1 and rc == 1
    one_line(r.stderr, f"receiver {recv.address} refused: f is 4,096 bytes, over "
             "--max-size 1,024")
    one_line(err, "over --max-size")
    assert os.listdir(dest) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_under_the_final_name(procs: Procs, tmp_path: Path, dest: Path,
                                          overwrite: bool) -> None:
    """Refused before any byte of the body, leaving nothing behind, --overwrite or not."""
    (tmp_path / "f").write_bytes(b"data")
    (dest / "f").mkdir()
    recv = Recv(procs, dest, *(["--overwrite"] if overwrite else []))
    r = zcio("send", str(tmp_path / "f"), recv.address)
    rc, _, err = recv.finish()
    assert r.returncode == 1 and rc == 1
    one_line(r.stderr, f"receiver {recv.address} refused: {dest / 'f'} is a directory")
    one_line(err, f"{dest / 'f'} is a directory")
    assert os.listdir(dest) == ["f"] and (dest / "f").is_dir()


# -- hostile or broken peers -----------------------------------------------------------


def _read_reply(s: socket.socket) -> Reply:
    data = bytearray()
    while chunk := s.recv(4096):
        data += chunk
    return decode_reply(bytes(data))


def _raw_send(port: int, data: bytes) -> Reply:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        return _read_reply(s)


@pytest.mark.parametrize("name", [b"../evil", b"../../etc/passwd", b"a/b", b"..", b".",
                                  b"x\x00y", b"bad\nname", b".x.zcio-part", b"\xff"])
def test_traversal_and_bad_names_in_a_crafted_header(procs: Procs, tmp_path: Path,
                                                     dest: Path, name: bytes) -> None:
    raw = struct.pack(">4sBBHQ", b"ZCIO", 1, 1, len(name), 4) + name + bytes(32)
    recv = Recv(procs, dest)
    reply = _raw_send(recv.port, raw)
    rc, events, err = recv.finish()
    assert rc == 1 and events == []
    one_line(err, "127.0.0.1:", "file name")
    assert isinstance(reply, Abort) and "file name" in reply.reason
    assert os.listdir(dest) == [] and sorted(os.listdir(tmp_path)) == ["dest"]


@pytest.mark.parametrize("data, message", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a zcio peer: bad magic b'GET ' in the header"),
    (b"ZCIO\x02" + bytes(11), "unsupported protocol version 2"),
    (b"ZCI", "connection closed after 3 of 16 header bytes"),
    (b"", "connection closed after 0 of 16 header bytes"),
])
def test_garbage_and_hang_ups_before_the_header(procs: Procs, dest: Path, data: bytes,
                                                message: str) -> None:
    recv = Recv(procs, dest)
    with socket.create_connection(("127.0.0.1", recv.port), timeout=WAIT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = _read_reply(s)
    rc, _, err = recv.finish()
    assert rc == 1
    line = one_line(err, "127.0.0.1:", message)
    assert isinstance(reply, Abort) and reply.reason in line  # the sender is told why
    assert os.listdir(dest) == []


def test_silent_client_times_out(procs: Procs, dest: Path) -> None:
    recv = Recv(procs, dest, "--timeout", "0.3")
    with socket.create_connection(("127.0.0.1", recv.port), timeout=WAIT) as s:
        rc, _, err = recv.finish()
        assert s.recv(100)[:4] == b"ZCIO"  # it was told
    assert rc == 1
    one_line(err, "timed out waiting for a header: 127.0.0.1:")


def test_a_receiver_that_dies_mid_body_after_accept(procs: Procs, tmp_path: Path) -> None:
    """A fake receiver resets the connection after 1 MiB: the sender says so in one line."""
    (tmp_path / "f").write_bytes(os.urandom(16 * MiB))
    with _FakeReceiver(lambda s: _accept_then_reset(s)) as fake:
        r = zcio("send", str(tmp_path / "f"), fake.address)
    assert r.returncode == 1
    one_line(r.stderr, f"connection to {fake.address} lost after", "of 16,777,216 bytes")


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a zcio peer: bad magic b'HTTP' in the reply"),
    (encode_reply(Accept(1 << 40)), "the receiver asked for offset 1099511627776 of a 3-byte "
     "file"),
    (b"", "connection closed after 0 of 15 reply bytes"),
])
def test_sender_against_a_broken_receiver(tmp_path: Path, answer: bytes, message: str) -> None:
    (tmp_path / "f").write_bytes(b"abc")

    def serve(s: socket.socket) -> None:
        s.recv(4096)
        s.sendall(answer)

    with _FakeReceiver(serve) as fake:
        r = zcio("send", str(tmp_path / "f"), fake.address)
    assert r.returncode == 1
    one_line(r.stderr, f"{fake.address}: {message}")


def _accept_then_reset(s: socket.socket) -> None:
    s.recv(4096)
    s.sendall(encode_reply(Accept(0)))
    got = 0
    while got < MiB:
        got += len(s.recv(1 << 16))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST


class _FakeReceiver:
    """A thread that accepts one connection and runs ``serve`` on it."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.serve = serve
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.server.settimeout(WAIT)
        conn, _ = self.server.accept()
        with conn:
            self.serve(conn)

    def __enter__(self) -> _FakeReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(WAIT)
        self.server.close()
        assert not self.thread.is_alive()


# -- bad arguments ---------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s.getsockname()[1]


@pytest.mark.parametrize("args, fragments", [
    (["send", "{tmp}/missing", "127.0.0.1:9"], ["No such file or directory: ", "/missing"]),
    (["send", "{tmp}", "127.0.0.1:9"], ["Is a directory: "]),
    (["send", "/dev/null", "127.0.0.1:9"], ["not a regular file: /dev/null"]),
    (["send", "{tmp}/f", "127.0.0.1:1"], ["zcio send: connection refused: 127.0.0.1:1"]),
    (["send", "{tmp}/f", "127.0.0.1:1", "--name", "../etc/x"], ["invalid file name"]),
    (["recv", "0", "{tmp}/missing"], ["No such file or directory: ", "/missing"]),
    (["recv", "0", "{tmp}/f"], ["Not a directory: ", "/f"]),
    (["recv", "{busy}", "{tmp}"], ["Address already in use: 127.0.0.1:{busy}"]),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, busy_port: int, args: list[str],
                                          fragments: list[str]) -> None:
    (tmp_path / "f").write_bytes(b"x")

    def fill(s: str) -> str:
        return s.format(tmp=tmp_path, busy=busy_port)

    r = zcio(*map(fill, args))
    assert r.returncode == 1 and r.stdout == ""
    one_line(r.stderr, *map(fill, fragments))


@pytest.mark.parametrize("args, fragment", [
    (["send", "{f}", "localhost"], "'localhost' is not HOST:PORT"),
    (["send", "{f}", "127.0.0.1:0"], "'127.0.0.1:0' is not HOST:PORT"),
    (["send", "{f}", "127.0.0.1:99999"], "is not HOST:PORT"),
    (["send", "{f}", ":9000"], "is not HOST:PORT"),
    (["send", "{f}", "host:port"], "is not HOST:PORT"),
    (["send", "{f}", "127.0.0.1:9", "--rate", "12 parsecs"], "'12 parsecs' is not a size"),
    (["send", "{f}", "127.0.0.1:9", "--rate", "0"], "must be more than 0"),
    (["send", "{f}", "127.0.0.1:9", "--timeout", "-1"], "--timeout"),
    (["send", "{f}", "127.0.0.1:9", "--path", "copy_file_range"], "'copy_file_range' is not"),
    (["recv", "0", "{tmp}", "--max-size", "12 parsecs"], "'12 parsecs' is not a size"),
    (["recv", "70000", "{tmp}"], "70000 is not in the range"),
    (["recv", "port", "{tmp}"], "'port' is not a valid integer"),
    (["send", "{f}"], "Missing argument 'HOST:PORT'"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                              fragment: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    r = zcio(*(a.format(tmp=tmp_path, f=tmp_path / "f") for a in args))
    assert r.returncode == 2 and r.stdout == ""
    assert one_line(r.stderr, fragment).startswith(f"zcio {args[0]}: ")
