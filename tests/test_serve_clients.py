"""``zcio serve`` beside nginx and under real clients.

* Conditional and range requests, differential against nginx serving the same files:
  status, body and the range headers must agree (each server's own ETag and
  Last-Modified are used in the validators it is sent).
* ``wget -c`` resumes a cut download; ``aria2c`` downloads with four connections in
  ranges and checks a SHA-256; ``pip download`` finds a wheel through a ``--list``
  directory used as a PEP 503 simple index.

Each client is skipped, with the reason, only where it is not installed (CI installs
them: nginx-light, wget, aria2).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import pytest

from test_serve_support import LARGE_SIZE, TIMEOUT, Served, blobs, serve, www

__all__ = ["blobs", "serve", "www"]

Serve = Callable[..., Served]
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(www: Path) -> Iterator[int]:
    """nginx serving ``www`` on a port of its own; its port."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="zcio-nginx-"))
    port = _free_port()
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(textwrap.dedent(f"""\
        {user}worker_processes 1;
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log warn;
        events {{ worker_connections 64; }}
        http {{
            default_type application/octet-stream;
            sendfile on; access_log off;
            if_modified_since before;  # RFC 9110's rule, not nginx's default "exact"
            client_body_temp_path {tmp}/client_body; proxy_temp_path {tmp}/proxy;
            fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi;
            scgi_temp_path {tmp}/scgi;
            server {{ listen 127.0.0.1:{port}; root {www}; }}
        }}
        """))
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g",
                             "daemon off; master_process on;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _, err = proc.communicate()
                    pytest.skip(f"nginx did not start: {err.decode()[-300:]}")
                time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        shutil.rmtree(tmp, ignore_errors=True)


def _get(port: int, path: str, headers: dict[str, str], method: str = "GET"
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# (name, headers); "ETAG", "OTHER", "LM" and "EARLIER" are filled in per server, and
# {size}/{last} per file.
CASES = [
    ("plain", {}),
    ("first 100", {"Range": "bytes=0-99"}),
    ("from 100", {"Range": "bytes=100-"}),
    ("last 100", {"Range": "bytes=-100"}),
    ("one byte", {"Range": "bytes=0-0"}),
    ("last byte", {"Range": "bytes={last}-"}),
    ("past the end", {"Range": "bytes={size}-"}),
    ("end beyond", {"Range": "bytes=10-{size}0"}),
    ("other unit", {"Range": "items=0-1"}),
    ("suffix zero", {"Range": "bytes=-0"}),
    ("inm match", {"If-None-Match": "ETAG"}),
    ("inm star", {"If-None-Match": "*"}),
    ("inm other", {"If-None-Match": "OTHER"}),
    ("im match", {"If-Match": "ETAG"}),
    ("im star", {"If-Match": "*"}),
    ("im other", {"If-Match": "OTHER"}),
    ("ims equal", {"If-Modified-Since": "LM"}),
    ("ims earlier", {"If-Modified-Since": "EARLIER"}),
    ("ius equal", {"If-Unmodified-Since": "LM"}),
    ("ius earlier", {"If-Unmodified-Since": "EARLIER"}),
    ("if-range etag", {"If-Range": "ETAG", "Range": "bytes=0-9"}),
    ("if-range other", {"If-Range": "OTHER", "Range": "bytes=0-9"}),
    ("if-range date", {"If-Range": "LM", "Range": "bytes=0-9"}),
    ("if-range earlier", {"If-Range": "EARLIER", "Range": "bytes=0-9"}),
    ("im other and range", {"If-Match": "OTHER", "Range": "bytes=0-9"}),
    ("inm match and range", {"If-None-Match": "ETAG", "Range": "bytes=0-9"}),
]


def _validators(port: int, name: str) -> dict[str, str]:
    _, h, _ = _get(port, "/" + name, {})
    lm = h["last-modified"]
    earlier = formatdate(parsedate_to_datetime(lm).timestamp() - 3600, usegmt=True)
    return {"ETAG": h["etag"], "OTHER": '"not-this-one"', "LM": lm, "EARLIER": earlier}


def _outcome(port: int, name: str, method: str, template: dict[str, str],
             validators: dict[str, str], size: int) -> tuple[object, ...]:
    """What must agree: status, Content-Range, and for a 2xx its length and body (error
    pages differ: nginx writes HTML, zcio none)."""
    headers = {k: validators.get(v, v).format(size=size, last=size - 1)
               for k, v in template.items()}
    status, h, body = _get(port, "/" + name, headers, method)
    if 200 <= status < 300:
        return status, h.get("content-range"), h.get("content-length"), body
    return status, h.get("content-range")


@pytest.mark.parametrize("name", ["large.bin", "small.bin"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_and_range_requests_agree_with_nginx(serve: Serve, nginx: int,
                                                        name: str, method: str) -> None:
    s = serve()
    size = (s.root / name).stat().st_size
    ours, theirs = _validators(s.port, name), _validators(nginx, name)
    diffs = []
    for case, template in CASES:
        if method == "HEAD" and "Range" in template:
            continue  # see test_range_on_head_is_ignored
        z = _outcome(s.port, name, method, template, ours, size)
        n = _outcome(nginx, name, method, template, theirs, size)
        if z != n:
            diffs.append(f"{case}: zcio {z[:3]} nginx {n[:3]}")
    assert not diffs, "\n".join(diffs)


def test_range_on_head_is_ignored(serve: Serve, nginx: int) -> None:
    """A deliberate difference: RFC 9110 14.2 defines range handling for GET only, and a
    server MUST ignore Range on other methods; nginx answers HEAD with 206."""
    s = serve()
    status, h, _ = _get(s.port, "/large.bin", {"Range": "bytes=0-9"}, "HEAD")
    assert status == 200 and h["content-length"] == str(LARGE_SIZE)
    assert _get(nginx, "/large.bin", {"Range": "bytes=0-9"}, "HEAD")[0] == 206


def test_an_invalid_range_is_ignored(serve: Serve, nginx: int) -> None:
    """A deliberate difference: ``bytes=5-1`` is invalid; RFC 9110 14.2 lets a server
    ignore (zcio: 200, whole file) or reject (nginx: 416) it."""
    s = serve()
    assert _get(s.port, "/large.bin", {"Range": "bytes=5-1"})[0] == 200
    assert _get(nginx, "/large.bin", {"Range": "bytes=5-1"})[0] == 416


def test_multiple_ranges_are_answered_whole(serve: Serve, nginx: int) -> None:
    """A deliberate difference: nginx answers 206 multipart/byteranges, zcio 200 with the
    whole file (RFC 9110 14.2 allows ignoring Range)."""
    s = serve()
    status, _, body = _get(s.port, "/large.bin", {"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == (s.root / "large.bin").read_bytes()
    assert _get(nginx, "/large.bin", {"Range": "bytes=0-1,5-6"})[0] == 206


# -- real clients --------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def test_wget_continue_resumes_a_cut_download(serve: Serve, tmp_path: Path) -> None:
    wget = _tool("wget", "wget")
    s = serve()
    data = (s.root / "large.bin").read_bytes()
    out = tmp_path / "large.bin"
    out.write_bytes(data[: len(data) // 3])  # what a cut download left
    done = subprocess.run([wget, "-c", "-q", "-O", str(out),
                           f"http://127.0.0.1:{s.port}/large.bin"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data


def test_aria2c_ranged_download_with_four_connections(serve: Serve, tmp_path: Path) -> None:
    aria2c = _tool("aria2c", "aria2")
    s = serve()
    big = s.root / "big-for-aria2.bin"
    big.write_bytes(os.urandom(24 << 20))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    done = subprocess.run([aria2c, "-q", "-x4", "-s4", "-k1M", "--allow-overwrite=true",
                           f"--checksum=sha-256={digest}", "-d", str(tmp_path), "-o",
                           "got.bin", f"http://127.0.0.1:{s.port}/{big.name}"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "got.bin").read_bytes() == big.read_bytes()


def _wheel(where: Path) -> Path:
    """A minimal, valid wheel of a package named demo-pkg."""
    path = where / "demo_pkg-0.1-py3-none-any.whl"
    files = {
        "demo_pkg/__init__.py": b"VALUE = 42\n",
        "demo_pkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\n"
                                           b"Version: 0.1\n",
        "demo_pkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: zcio-tests\n"
                                        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "demo_pkg-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("demo_pkg-0.1.dist-info/RECORD", record)
    return path


def test_pip_downloads_from_a_listing_used_as_a_simple_index(serve: Serve,
                                                              tmp_path: Path) -> None:
    s = serve(list_directories=True)
    project = s.root / "simple" / "demo-pkg"
    project.mkdir(parents=True)
    wheel = _wheel(project)
    out = tmp_path / "downloads"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "--disable-pip-version-check", "-q", "--index-url",
         f"http://127.0.0.1:{s.port}/simple/", "-d", str(out), "demo-pkg==0.1"],
        capture_output=True, timeout=120, env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / wheel.name).read_bytes() == wheel.read_bytes()
