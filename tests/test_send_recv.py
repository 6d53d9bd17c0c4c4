"""The send/receive library without the command line: ``zcio.send_file`` against a
``zcio.FileReceiver`` embedded in a thread of this process.

The CLI's own tests (test_cli_sendrecv.py, test_cli_recv_hostile.py) cover the hostile
cases through subprocesses; these check what an embedding program sees: the results,
the progress events, the bound address before any accept, a resume after a cut, and
that ``close()`` stops a receiver from another thread and leaves no descriptor behind.
"""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import zcio
from test_cli_sendrecv import dest
from zcio import (
    FileReceiver,
    ProgressEvent,
    ReceiveResult,
    SendResult,
    TransferFailed,
    send_file,
)
from zcio._recv import RECV_PATHS

__all__ = ["dest"]  # the fixture, re-exported for pytest

MiB = 1 << 20
WAIT = 60.0  # seconds: no test may hang longer on a thread


class Served:
    """A FileReceiver serving forever in a thread, collecting what it reports."""

    def __init__(self, dest: Path, **options: object) -> None:
        self.events: list[ProgressEvent] = []
        self.results: list[ReceiveResult] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.receiver = FileReceiver(str(dest), progress=self.events.append,
                                     **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(
            target=self.receiver.serve_forever,
            args=(self.results.append, lambda peer, e: self.errors.append((peer, e))),
            daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.receiver.close()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def served(dest: Path) -> Iterator[Served]:
    s = Served(dest)
    yield s
    s.close()


def _file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _sha(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _phase(events: list[ProgressEvent], phase: str) -> list[ProgressEvent]:
    return [e for e in events if e.phase == phase]


def test_the_address_is_known_before_any_sender(dest: Path) -> None:
    with FileReceiver(str(dest), port=0) as receiver:
        host, port = receiver.address
        assert host == "127.0.0.1" and 0 < port < 65536
    with pytest.raises(zcio.ClosedChannelError):
        receiver.address  # noqa: B018 - the property raises once closed
    receiver.close()  # a second close does nothing


def test_accept_one_in_a_thread(tmp_path: Path, dest: Path) -> None:
    src = _file(tmp_path / "one.bin", 3 * MiB + 17)
    with FileReceiver(str(dest)) as receiver:
        got: list[ReceiveResult] = []
        t = threading.Thread(target=lambda: got.append(receiver.accept_one()))
        t.start()
        port = receiver.address[1]
        sent = send_file(str(src), receiver.address)
        t.join(WAIT)
    (received,) = got
    assert (dest / "one.bin").read_bytes() == src.read_bytes()
    assert os.listdir(dest) == ["one.bin"]  # no partial file, no sidecar
    for r in (sent, received):
        assert (r.name, r.size, r.resumed_from, r.moved) == ("one.bin", src.stat().st_size,
                                                             0, src.stat().st_size)
        assert r.digest == _sha(src) and r.checksum == f"sha256:{_sha(src).hex()}"
        assert r.path != "none" and r.paths
    assert isinstance(sent, SendResult) and sent.address == f"127.0.0.1:{port}"
    assert received.saved_to == str(dest / "one.bin")
    assert received.peer.startswith("127.0.0.1:")


def test_two_files_one_resumed_after_a_cut(tmp_path: Path, dest: Path) -> None:
    """close() mid-body cuts the transfer and keeps the partial file; the next send to a
    new receiver on the same directory moves only the rest, and the file verifies."""
    first = _file(tmp_path / "first.bin", 8 * MiB + 5)
    second = _file(tmp_path / "second.bin", 2 * MiB + 3)
    cut = Served(dest)
    failures: list[BaseException] = []

    def slow_send() -> None:
        try:
            send_file(str(first), cut.receiver.address, rate=2 * MiB)
        except BaseException as e:
            failures.append(e)

    sender = threading.Thread(target=slow_send, daemon=True)
    sender.start()
    part = dest / ".first.bin.zcio-part"
    deadline = time.monotonic() + WAIT  # until a MiB is on the receiver's disk
    while not (part.exists() and part.stat().st_size >= MiB):
        assert time.monotonic() < deadline and sender.is_alive(), failures
        time.sleep(0.01)
    cut.close()  # from this thread, while the session's thread is mid-body
    sender.join(WAIT)
    assert len(failures) == 1 and isinstance(failures[0], TransferFailed), failures
    assert "lost after" in str(failures[0])
    assert cut.results == [] and len(cut.errors) == 1
    assert "(the receiver was closed)" in str(cut.errors[0][1])
    assert "kept for resuming" in str(cut.errors[0][1])
    have = part.stat().st_size
    assert MiB <= have < first.stat().st_size
    assert not (dest / "first.bin").exists()

    again = Served(dest)
    try:
        sends: list[list[ProgressEvent]] = [[], []]
        r1 = send_file(str(first), again.receiver.address, progress=sends[0].append)
        r2 = send_file(str(second), again.receiver.address, progress=sends[1].append)
    finally:
        again.close()
    assert (r1.resumed_from, r1.moved) == (have, first.stat().st_size - have)
    assert (r2.resumed_from, r2.moved) == (0, second.stat().st_size)
    assert (dest / "first.bin").read_bytes() == first.read_bytes()
    assert (dest / "second.bin").read_bytes() == second.read_bytes()
    assert sorted(os.listdir(dest)) == ["first.bin", "second.bin"]
    assert again.errors == []
    assert sorted((r.name, r.resumed_from) for r in again.results) == [
        ("first.bin", have), ("second.bin", 0)]
    # the resumed send's progress starts where the receiver was
    send_events = _phase(sends[0], "send")
    assert send_events[0].done == have and send_events[-1].done == first.stat().st_size


def test_progress_events(tmp_path: Path, served: Served) -> None:
    size = 40 * MiB + 1  # three 16 MiB chunks
    src = _file(tmp_path / "p.bin", size)
    events: list[ProgressEvent] = []
    send_file(str(src), served.receiver.address, progress=events.append)
    assert events[0].phase == "checksum"
    assert {e.phase for e in events} == {"checksum", "send"}
    for phase in ("checksum", "send"):
        seen = _phase(events, phase)
        assert all(e.name == "p.bin" and e.total == size for e in seen)
        dones = [e.done for e in seen]
        assert dones[0] == 0 and dones[-1] == size and dones == sorted(dones)
    assert [e.done for e in _phase(events, "send")] == [0, 16 * MiB, 32 * MiB, size]
    served.close()  # the session's events are all in once the receiver closed
    got = served.events
    assert got[0].phase == "recv" and {e.phase for e in got} == {"recv", "verify"}
    for phase in ("recv", "verify"):
        seen = _phase(got, phase)
        assert seen[0].done == 0 and seen[-1].done == size and seen[-1].total == size


def test_a_refusal_reaches_both_sides(tmp_path: Path, dest: Path, served: Served) -> None:
    (dest / "taken").write_bytes(b"keep me")
    src = _file(tmp_path / "taken", 1000)
    with pytest.raises(TransferFailed, match=r"refused: .*taken exists"):
        send_file(str(src), served.receiver.address)
    served.close()
    assert (dest / "taken").read_bytes() == b"keep me"
    assert os.listdir(dest) == ["taken"]  # nothing left behind
    ((_peer, error),) = served.errors
    assert isinstance(error, TransferFailed) and "exists" in str(error)


def test_options_are_checked(dest: Path) -> None:
    for bad in ({"max_senders": 0}, {"timeout": 0}, {"keep_partial": -1},
                {"path": "sendfile"}):
        with pytest.raises(zcio.IllegalArgumentError):
            FileReceiver(str(dest), **bad)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        FileReceiver(str(dest / "missing"))
    (dest / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        FileReceiver(str(dest / "file"))
    with pytest.raises(zcio.IllegalArgumentError):
        send_file(str(dest), ("127.0.0.1", 1), rate=0)
    with pytest.raises(zcio.IllegalArgumentError):
        send_file(str(dest), ("127.0.0.1", 1), path="splice_zero")


def test_close_stops_an_idle_serve_forever(dest: Path) -> None:
    s = Served(dest)
    s.close()
    with pytest.raises(zcio.ClosedChannelError):
        s.receiver.accept_one()


def test_an_unclosed_receiver_warns_and_frees_its_descriptors(dest: Path) -> None:
    receiver = FileReceiver(str(dest))
    with pytest.warns(ResourceWarning, match="unclosed FileReceiver"):
        del receiver
        gc.collect()


@pytest.mark.parametrize("path", RECV_PATHS)
def test_close_returns_with_the_sessions_scratch_given_back(tmp_path: Path, dest: Path,
                                                           path: str) -> None:
    """A session thread gives back its splice pipe and relay buffer before close() can
    see it end, not at the thread's teardown, which may come after close() returned.
    The session thread is held just after it says it is done."""
    src = _file(tmp_path / "s.bin", 3 * MiB + 5)
    fds = set(os.listdir("/proc/self/fd"))
    direct = zcio.buffer_pools()[0].count
    receiver = FileReceiver(str(dest), path=path)  # type: ignore[arg-type]
    done, go_on = threading.Event(), threading.Event()
    leave = receiver._leave

    def held_leave(ch: zcio.SocketChannel | None) -> None:
        leave(ch)
        if ch is not None and threading.current_thread().name.startswith("zcio-recv"):
            done.set()
            go_on.wait(WAIT)

    receiver._leave = held_leave  # type: ignore[method-assign]
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        send_file(str(src), receiver.address)
        assert done.wait(WAIT)
        receiver.close()  # the session said it is done; its thread is still held
        assert set(os.listdir("/proc/self/fd")) == fds  # no splice pipe left open
        assert zcio.buffer_pools()[0].count == direct  # no relay buffer still counted
    finally:
        go_on.set()
        receiver.close()
        thread.join(WAIT)
