"""The posts' table of copies and switches, beside what zcio measures on this machine.

Sends one page-cached file over a loopback socket by each transfer path and prints, per
path: the posts' model (mode switches, DMA and CPU copies) and the measurement (syscalls,
bytes that crossed user space, bytes moved inside the kernel, CPU time, context switches).

    python examples/paths_table.py [--size 64m]

The posts count user/kernel *mode* switches (two per system call) and call them
context switches; getrusage counts scheduler context switches.  Both are shown, under
their own names.  "sendfile with DMA gather" needs a NIC that gathers: over loopback no
DMA happens at all, so that row is the model only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import tempfile

import zcio

# The posts' model per path, for one read of the whole file: (mode switches, DMA, CPU).
MODEL = {
    "read_write": ("4 per chunk", 2, 2),
    "mmap_write": ("4 per window", 2, 1),
    "sendfile": ("2 per call", 2, 1),
    "sendfile + DMA gather": ("2 per call", 2, 0),
    "splice": ("2 per call", 2, 0),
}


def drain(sock: socket.socket) -> None:
    buf = bytearray(1 << 20)
    while sock.recv_into(buf):
        pass


def run(path: str, file: str, size: int) -> zcio.Measurement:
    """Send the file by ``path`` to a reader in a child process; measure the sender."""
    a, b = socket.socketpair()
    reader = multiprocessing.get_context("fork").Process(target=drain, args=(b,))
    reader.start()
    b.close()
    with a, zcio.FileChannel.open(file) as src:
        with zcio.measure() as m:
            moved = zcio.transfer(src, a, path=path)
        a.shutdown(socket.SHUT_WR)
        reader.join()
    assert moved == size and reader.exitcode == 0
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64m", help="file size (default 64m)")
    size = zcio.parse_size(parser.parse_args().size)
    with tempfile.NamedTemporaryFile() as f:
        f.write(os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20)))
        f.flush()
        with open(f.name, "rb") as warm:  # page-cache it, as the posts assume
            while warm.read(1 << 20):
                pass
        rows = []
        for path, (switches, dma, cpu) in MODEL.items():
            if path == "sendfile + DMA gather":
                rows.append((path, switches, dma, cpu, "-", "-", "-", "-", "-", "-"))
                continue
            m = run(path, f.name, size)
            rows.append((path, switches, dma, cpu, m.syscalls,
                         f"{m.user_bytes / size:.1f}x", f"{m.kernel_bytes / size:.1f}x",
                         f"{m.user_cpu_seconds + m.system_cpu_seconds:.3f}",
                         m.voluntary_switches, m.involuntary_switches))
        zcio._scratch.clear()
    head = ("path", "model: mode switches", "DMA", "CPU copies", "syscalls",
            "crossed user space", "moved in kernel", "CPU s", "vol. ctx", "invol. ctx")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"\n{size} bytes per path over a loopback socket to a reader process; the "
          "sender is measured.\n'crossed user space' counts each crossing (read in + write "
          "out = 2x).  On loopback the kernel's receive work may be charged to either side.")


if __name__ == "__main__":
    main()
