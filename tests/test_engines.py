"""zcio buffers through real engines: a Dask LocalCluster of worker processes and Ray.

Both pickle with protocol 5 and a ``buffer_callback``: a buffer's bytes leave as one
out-of-band frame per block, and the copies zcio makes to load them are counted in each
process (``zcio.metrics``, path ``pickle_copy``).  What the engines hand back decides
the count, and these tests pin it:

* Dask scatter to a worker: writable frames, so a heap buffer loads with no copy, a
  direct one with one (``allocate_direct``); a mapping is copied once on dump (through
  the SIGBUS guard) and loads as heap over that copy with none: one copy per block,
  whatever the kind.  Gathered back, the client receives read-only frames: one copy
  for a writable buffer, none for a read-only one.
* Ray put/get: the object store hands out read-only shared memory, so a read-only heap
  buffer loads with no copy (over the store's memory), a writable or direct one with one.

One cluster per module (a cluster takes seconds to start); skipped, saying why, only
when the engine is not installed or cannot start here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zcio
from zcio import (
    ByteBuffer,
    CompositeBuffer,
    FileChannel,
    MapMode,
    PooledAllocator,
    metrics,
)
from zcio._pickling import COPY_PATH

pytestmark = [pytest.mark.slow, pytest.mark.engines]

TESTS = Path(__file__).resolve().parent
#: Worker processes import zcio and this module (tasks are pickled by reference).
WORKER_PATH = os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])
N = 1 << 20


def copies() -> tuple[int, int]:
    """(copies, bytes copied) zcio's pickling made in this process so far."""
    stats = metrics.path(COPY_PATH)
    return stats.operations, stats.user_bytes


def content(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256)


def describe(buf: ByteBuffer) -> tuple[str, bool, bool, bytes]:
    """What arrived: its class, directness, read-only flag and bytes."""
    return type(buf).__name__, buf.is_direct(), buf.is_read_only(), bytes(buf)


def _is_mapped(buf: ByteBuffer) -> bool:
    from zcio._mapped import MappedMemory

    return isinstance(buf._mem, MappedMemory)


def arrives_as(buf: ByteBuffer) -> tuple[str, bool, bool, bytes]:
    """What a pickle of ``buf`` loads as: the same, but a mapping loads as a heap
    ByteBuffer over the copy its dump made."""
    if _is_mapped(buf):
        return "ByteBuffer", False, buf.is_read_only(), bytes(buf)
    return describe(buf)


def fill(buf: ByteBuffer, value: int) -> ByteBuffer:
    """A task: overwrite the buffer it received and send it back."""
    buf.put(0, bytes([value]) * buf.remaining())
    return buf


def make_direct(n: int, seed: int) -> ByteBuffer:
    """A task: a direct buffer born in a worker, returned to the caller."""
    return ByteBuffer.allocate_direct(n).put(0, content(n, seed))


def made(kind: str) -> tuple[ByteBuffer, int]:
    """A buffer of ``kind`` holding content(N, ...) at [position, limit), and how many
    copies loading it takes from writable frames (one per direct block)."""
    if kind == "heap":
        return ByteBuffer.wrap(bytearray(content(N, 1))), 0
    if kind == "read-only":
        return ByteBuffer.wrap(content(N, 2)), 0
    if kind == "direct":
        return ByteBuffer.allocate_direct(N + 10).put(0, content(N + 10, 3)).position(10), 1
    if kind == "pooled":
        return PooledAllocator.default().allocate(N // 8).put(0, content(N // 8, 4)), 1
    if kind == "composite":  # heap | direct
        half = content(N, 5)[: N // 2]
        return CompositeBuffer.of(ByteBuffer.wrap(bytearray(half)),
                                  ByteBuffer.allocate_direct(N // 2).put(0, half)), 1
    if kind == "mapped":  # copied on dump, loaded over that copy: none on load
        fd = os.memfd_create("zcio-test-engines")  # a file the test leaves nothing of
        try:
            os.write(fd, content(N, 6))
            with FileChannel.from_fd(fd) as fc:
                return fc.map(MapMode.READ_WRITE, 0, N), 0
        finally:
            os.close(fd)
    raise AssertionError(kind)


def dump_copies(buf: ByteBuffer) -> int:
    """Copies zcio makes dumping ``buf``: one per mapping (through the SIGBUS guard)."""
    return sum(1 for p in _blocks(buf) if _is_mapped(p))


KINDS = ["heap", "read-only", "direct", "pooled", "composite", "mapped"]


@pytest.fixture(autouse=True)
def leak_check() -> Iterator[None]:
    """The conftest's pool check; not its fd check: an engine's client opens
    connections to workers lazily and keeps them for the module."""
    yield
    import gc

    gc.collect()
    PooledAllocator.default().trim()
    usage = [(p.name, p.count) for p in zcio.buffer_pools()
             if p.name in ("direct", "mapped") or p.count]
    assert usage == [("direct", 0), ("mapped", 0)], f"leaked: {usage}"


# -- Dask ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = WORKER_PATH  # inherited by the worker processes
    try:
        cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=logging.ERROR)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"a Dask LocalCluster cannot start here: {e!r}")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _worker_copies(client: Any) -> tuple[int, int]:
    per_worker = client.run(copies).values()
    return sum(c[0] for c in per_worker), sum(c[1] for c in per_worker)


def _delta(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("kind", KINDS)
def test_dask_scatter_task_gather(dask_client: Any, kind: str) -> None:
    buf, load_copies = made(kind)
    expected = arrives_as(buf)
    remote_before, local_before = _worker_copies(dask_client), copies()
    future = dask_client.scatter(buf, direct=True, hash=False)
    dumped = _delta(copies(), local_before)
    assert dumped == (dump_copies(buf), buf.remaining() if dump_copies(buf) else 0), (
        "scatter copied in the client more than a mapping's guarded read")
    arrived = dask_client.submit(describe, future, pure=False).result()
    assert arrived == expected
    n, nbytes = _delta(_worker_copies(dask_client), remote_before)
    assert n == load_copies  # the worker loaded it: no copy, or one per direct block
    assert nbytes == (0 if load_copies == 0 else
                      sum(p.remaining() for p in _blocks(buf) if p.is_direct()))
    assert dumped[0] + n <= len(_blocks(buf)), "more than one copy of a block"
    local_before = copies()
    back = future.result()
    assert describe(back) == expected
    gathered = _delta(copies(), local_before)[0]
    # the client receives read-only frames: one copy per writable or direct block (what
    # the worker holds: a mapping arrived there as heap)
    assert gathered == sum(1 for p in _blocks(buf)
                           if (p.is_direct() and not _is_mapped(p)) or not p.is_read_only())
    del future
    back.release()
    buf.release()


def _blocks(buf: ByteBuffer) -> list[ByteBuffer]:
    return buf.nio_buffers() if isinstance(buf, CompositeBuffer) else [buf]


def test_dask_tasks_write_received_buffers_and_return_new_ones(dask_client: Any) -> None:
    """Heap buffers as task arguments, direct ones scattered first: Dask's client keeps
    the serialized graph of a submission (its frames, so a direct argument's mapping)
    after the task ran; scattered data is dropped with its future."""
    heap = [ByteBuffer.allocate(N // 4), ByteBuffer.wrap(bytearray(N // 4))]
    direct = [ByteBuffer.allocate_direct(N // 4) for _ in range(2)]
    scattered = dask_client.scatter(direct, direct=True, hash=False)
    futures = dask_client.map(fill, [*heap, *scattered], range(1, 5), pure=False)
    results = dask_client.gather(futures)
    for i, (sent, got) in enumerate(zip(heap + direct, results, strict=True)):
        assert bytes(got) == bytes([i + 1]) * (N // 4)
        assert bytes(sent) == bytes(N // 4)  # the worker wrote its own copy
        assert got.is_direct() == sent.is_direct()
        got.release()
        sent.release()
    del futures, scattered, results, got, sent
    born = dask_client.submit(make_direct, N, 9, pure=False).result()
    assert born.is_direct() and bytes(born) == content(N, 9)
    born.release()


# -- Ray -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_module() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="ray not installed (no wheel for this Python?)")
    try:
        ray.init(num_cpus=1, include_dashboard=False, object_store_memory=96 << 20,
                 log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": WORKER_PATH}})
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"ray cannot start here: {e!r}")
    yield ray
    ray.shutdown()


def ray_load(refs: list[Any]) -> tuple[tuple[str, bool, bool, bytes], tuple[int, int]]:
    """A Ray task: load the buffer behind ``refs[0]`` here, and count the copies."""
    import ray

    before = copies()
    buf = ray.get(refs[0])
    return describe(buf), _delta(copies(), before)


def _ray_arrives_as(buf: ByteBuffer) -> tuple[str, bool, bool, bytes]:
    """As arrives_as; a read-only heap buffer loads with no copy over the object store's
    memory, a mapped file (/dev/shm): the guarded kind ByteBuffer.wrap makes of it."""
    name, direct, ro, data = arrives_as(buf)
    if name == "ByteBuffer" and ro and not direct:
        name = "WrappedMappingByteBuffer"
    return name, direct, ro, data


def _ray_expected_copies(buf: ByteBuffer) -> int:
    # the object store hands out read-only memory: a copy for a writable or direct block
    # (a mapping loads as heap: a copy only if writable)
    return sum(1 for p in _blocks(buf)
               if (p.is_direct() and not _is_mapped(p)) or not p.is_read_only())


@pytest.mark.parametrize("kind", KINDS)
def test_ray_put_get_and_remote_task(ray_module: Any, kind: str) -> None:
    ray = ray_module
    buf, _ = made(kind)
    expected = _ray_arrives_as(buf)
    before = copies()
    ref = ray.put(buf)
    assert _delta(copies(), before)[0] == dump_copies(buf), "ray.put copied in zcio"
    before = copies()
    got = ray.get(ref)
    assert describe(got) == expected
    assert _delta(copies(), before)[0] == _ray_expected_copies(buf)
    task = ray.remote(ray_load)
    arrived, (n, _) = ray.get(task.remote([ref]))
    assert arrived == expected
    assert n == _ray_expected_copies(buf)
    got.release()
    buf.release()
    del ref


def test_ray_read_only_buffer_is_the_object_stores_memory(ray_module: Any) -> None:
    ray = ray_module
    ref = ray.put(ByteBuffer.wrap(content(N, 7)))
    first, second = ray.get(ref), ray.get(ref)
    assert first.is_read_only() and bytes(first) == content(N, 7)
    assert first.address() == second.address()  # both over the one copy in the store
    first.release()
    second.release()

