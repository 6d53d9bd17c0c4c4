"""The server's file bodies run on the transfer engine's rungs, and every socket call
of the server goes through ``zcio._syscalls.SYS``, so faults injected there reach it."""

from __future__ import annotations

import contextlib
import errno
import http.client
from collections.abc import Callable

import zcio
from faults import OK, Faults, short
from test_serve_support import LARGE_SIZE, Served, blobs, pattern, serve, wait_until, www
from zcio import _syscalls

__all__ = ["blobs", "serve", "www"]  # fixtures used by name


def _delta(before: zcio.PathStats, after: zcio.PathStats) -> tuple[int, int, int]:
    return (after.operations - before.operations, after.kernel_bytes - before.kernel_bytes,
            after.user_bytes - before.user_bytes)


def test_sendfile_refused_falls_to_the_next_rung(serve: Callable[..., Served]) -> None:
    """A file system that refuses sendfile (EINVAL): the body goes by mmap+write, whole
    and counted there, as the engine's ladder for a file and a socket says."""
    s = serve()
    layer = Faults({"sendfile": [errno.EINVAL]})
    before = zcio.metrics.path("mmap_write")
    with _syscalls.override(layer):
        status, _, body = s.get("/large.bin")
    assert status == 200 and body == pattern(LARGE_SIZE, 3)
    # The server counts a step after its write returns: the client may have the last
    # bytes first.
    assert wait_until(lambda: _delta(before, zcio.metrics.path("mmap_write"))[2]
                      >= LARGE_SIZE)
    _, kernel, user = _delta(before, zcio.metrics.path("mmap_write"))
    assert user == LARGE_SIZE and kernel == 0
    names = [name for name, _ in layer.calls]
    assert names.count("sendfile") == 1  # refused once, never asked again for this body
    assert "write" in names


def test_short_sendfile_steps_resume_at_the_right_offset(serve: Callable[..., Served]
                                                         ) -> None:
    s = serve()
    layer = Faults({"sendfile": [short(1000), short(1), OK, short(4096)]})
    with _syscalls.override(layer):
        status, _, body = s.get("/large.bin")
    assert status == 200 and body == pattern(LARGE_SIZE, 3)
    offsets = [args[2] for name, args in layer.calls if name == "sendfile"]
    assert offsets[:3] == [0, 1000, 1001]


def test_every_socket_call_goes_through_syscalls(serve: Callable[..., Served]) -> None:
    """accept, recv, send/sendmsg and sendfile all reach the fault-injection layer; a
    connection reset in recv closes that connection only, the server goes on."""
    s = serve()
    layer = Faults({"recv_into": [errno.ECONNRESET]})
    with _syscalls.override(layer):
        with contextlib.suppress(OSError, http.client.HTTPException):
            s.get("/small.bin")  # the server closes that connection: reset or closed
        status, _, body = s.get("/large.bin")
    assert status == 200 and len(body) == LARGE_SIZE
    names = {name for name, _ in layer.calls}
    assert {"accept", "recv_into", "sendfile"} <= names
    assert names & {"send", "sendmsg"}


def test_error_mid_body_closes_the_connection_and_the_server_goes_on(
        serve: Callable[..., Served]) -> None:
    s = serve()
    # The first step moves at most 1 MiB (a whole-body sendfile, when the client drains
    # fast enough, left no second call to fail: CI saw the full 8 MiB arrive), then EIO.
    layer = Faults({"sendfile": [short(1 << 20), errno.EIO]})
    with _syscalls.override(layer):
        try:
            _, _, body = s.get("/large.bin")
        except (OSError, http.client.HTTPException):
            body = b""  # the connection closed before the announced length
        assert len(body) < LARGE_SIZE
    status, _, body = s.get("/large.bin")
    assert status == 200 and body == pattern(LARGE_SIZE, 3)
