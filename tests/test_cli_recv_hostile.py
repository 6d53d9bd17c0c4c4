"""``zcio recv`` against hostile files and peers: planted links, silent replacement,
dotfiles, leftovers, concurrent and stalled senders.  Each side in its own process."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from test_cli_sendrecv import (
    WAIT,
    MiB,
    Procs,
    Recv,
    dest,
    one_line,
    partial,
    procs,
    send_json,
    zcio,
)
from zcio._wire import Accept, Header, decode_reply, encode_reply

__all__ = ["dest", "procs"]  # the fixtures, re-exported for pytest


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside.txt"
    victim.write_bytes(b"must stay as it is")
    return victim


# -- planted links ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["part", "head", "final"])
def test_a_symlink_planted_at_a_name_of_recv_is_never_followed(
        procs: Procs, tmp_path: Path, dest: Path, outside: Path, where: str) -> None:
    (tmp_path / "f").write_bytes(b"payload" * 1000)
    part, head = partial(dest, "f")
    link = {"part": part, "head": head, "final": dest / "f"}[where]
    link.symlink_to(outside)
    recv = Recv(procs, dest, *(["--overwrite"] if where == "final" else []))
    r = zcio("send", str(tmp_path / "f"), recv.address)
    rc, _, _ = recv.finish()
    assert outside.read_bytes() == b"must stay as it is"
    if where == "final":  # --overwrite replaces the link itself, never its target
        assert r.returncode == 0 and rc == 0, r.stderr
        assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"payload" * 1000
    else:
        assert r.returncode == 1 and rc == 1
        one_line(r.stderr, "a symbolic link is there; refused", str(link))
        assert link.is_symlink() or not os.path.lexists(link)  # never written through


def test_a_hard_link_planted_at_the_partial_name_is_refused(
        procs: Procs, tmp_path: Path, dest: Path, outside: Path) -> None:
    (tmp_path / "f").write_bytes(b"payload")
    os.link(outside, partial(dest, "f")[0])
    recv = Recv(procs, dest)
    r = zcio("send", str(tmp_path / "f"), recv.address)
    assert recv.finish()[0] == 1 and r.returncode == 1
    one_line(r.stderr, "a file with 2 hard links is there; refused")
    assert outside.read_bytes() == b"must stay as it is"


def test_a_fifo_planted_at_the_sidecar_name_is_refused(procs: Procs, tmp_path: Path,
                                                       dest: Path) -> None:
    (tmp_path / "f").write_bytes(b"payload")
    part, head = partial(dest, "f")
    part.write_bytes(b"pay")
    os.mkfifo(head)
    recv = Recv(procs, dest)
    r = zcio("send", str(tmp_path / "f"), recv.address)
    assert recv.finish()[0] == 1 and r.returncode == 1
    one_line(r.stderr, "not a regular file is there; refused")


# -- replacement, dotfiles, leftovers ----------------------------------------------------


def test_an_existing_file_is_not_replaced_without_overwrite(procs: Procs, tmp_path: Path,
                                                            dest: Path) -> None:
    (tmp_path / "f").write_bytes(b"second version")
    (dest / "f").write_bytes(b"first, verified")
    recv = Recv(procs, dest)
    r = zcio("send", str(tmp_path / "f"), recv.address)
    rc, _, err = recv.finish()
    assert r.returncode == 1 and rc == 1
    one_line(r.stderr, "refused", "exists (recv --overwrite replaces it)")
    one_line(err, "exists")
    assert os.listdir(dest) == ["f"] and (dest / "f").read_bytes() == b"first, verified"
    recv = Recv(procs, dest, "--overwrite")
    assert send_json(tmp_path / "f", recv.address)["verified"]
    assert recv.finish()[0] == 0 and (dest / "f").read_bytes() == b"second version"


def test_dotfile_names_are_refused_unless_allowed(procs: Procs, tmp_path: Path,
                                                   dest: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    recv = Recv(procs, dest)
    r = zcio("send", str(tmp_path / "f"), recv.address, "--name", ".bashrc")
    assert recv.finish()[0] == 1 and r.returncode == 1
    one_line(r.stderr, ".bashrc is a dotfile name")
    assert os.listdir(dest) == []
    recv = Recv(procs, dest, "--dotfiles")
    send_json(tmp_path / "f", recv.address, "--name", ".bashrc")
    assert recv.finish()[0] == 0 and (dest / ".bashrc").read_bytes() == b"x"


def test_a_size_the_disk_cannot_hold_is_refused_leaving_nothing(procs: Procs,
                                                                 dest: Path) -> None:
    recv = Recv(procs, dest)
    with socket.create_connection(("127.0.0.1", recv.port), timeout=WAIT) as s:
        s.sendall(Header("huge", 1 << 60, b"\0" * 32).encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert "No space left on device" in str(decode_reply(data))
    assert recv.finish()[0] == 1
    assert os.listdir(dest) == []


def test_leftovers_older_than_keep_partial_are_removed(procs: Procs, tmp_path: Path,
                                                       dest: Path) -> None:
    old_part, old_head = partial(dest, "old")
    new_part, new_head = partial(dest, "new")
    for path in (old_part, old_head, new_part, new_head):
        path.write_bytes(b"x")
    ten_days_ago = time.time() - 10 * 86400
    for path in (old_part, old_head):
        os.utime(path, (ten_days_ago, ten_days_ago))
    (dest / ".keep.zcio-part.not-ours").write_bytes(b"x")
    os.utime(dest / ".keep.zcio-part.not-ours", (ten_days_ago, ten_days_ago))
    recv = Recv(procs, dest)
    (tmp_path / "f").write_bytes(b"x")
    send_json(tmp_path / "f", recv.address)
    assert recv.finish()[0] == 0
    assert sorted(os.listdir(dest)) == sorted(
        [new_part.name, new_head.name, ".keep.zcio-part.not-ours", "f"])


# -- concurrent and stalled peers ----------------------------------------------------------


def _stalled_sender(port: int, name: str, size: int, body: bytes) -> socket.socket:
    """A sender that announces ``size`` bytes, sends ``body`` and then goes silent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(Header(name, size, b"\0" * 32).encode())
    s.recv(4096)  # the ACCEPT
    s.sendall(body)
    return s


def test_a_stalled_sender_blocks_nobody_and_is_dropped_keeping_its_part(
        procs: Procs, tmp_path: Path, dest: Path) -> None:
    recv = Recv(procs, dest, "--keep", "--timeout", "1")
    stalled = _stalled_sender(recv.port, "slow.bin", 4 * MiB, b"s" * MiB)
    try:
        data = os.urandom(2 * MiB)
        (tmp_path / "fast.bin").write_bytes(data)
        t0 = time.monotonic()
        report = send_json(tmp_path / "fast.bin", recv.address)
        assert report["verified"] and time.monotonic() - t0 < 5  # not behind the stall
        # Two sessions in their own threads: the stalled one is dropped 1 s after its
        # last byte, which on a loaded machine can come before the fast one's report.
        events = {e["event"]: e for e in (recv.next_event(), recv.next_event())}
        assert set(events) == {"received", "failed"}, events
        assert events["received"]["name"] == "fast.bin"
        assert "stalled: nothing for 1 s" in events["failed"]["error"]
        assert partial(dest, "slow.bin")[0].stat().st_size == MiB  # kept for resuming
    finally:
        stalled.close()


def test_send_gives_up_on_a_receiver_that_stops_reading(tmp_path: Path) -> None:
    """A fake receiver accepts, then reads nothing: send ends after its timeout."""
    (tmp_path / "f").write_bytes(os.urandom(64 * MiB))
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT)
        port = server.getsockname()[1]
        proc = Procs()
        try:
            sender = proc.start("send", str(tmp_path / "f"), f"127.0.0.1:{port}",
                                "--timeout", "1")
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                conn.recv(65536)  # the header
                conn.sendall(encode_reply(Accept(0)))
                t0 = time.monotonic()
                _, err = sender.communicate(timeout=WAIT)
                took = time.monotonic() - t0
        finally:
            proc.close()
    assert sender.returncode == 1
    one_line(err, "stalled: nothing acknowledged for 1 s")
    assert took < 10
