"""Shared fixtures: every test must leave direct memory, mappings and fds as it found them.

Also what several test files use: ``mk`` (buffers released after
the test) and ``server`` (a ServerSocketChannel on loopback).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

import zcio
from contract_helpers import Made
from zcio import _scratch

#: Loopback with a port the kernel picks.
LOOPBACK = ("127.0.0.1", 0)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _pool_usage() -> list[tuple[str, int, int, int]]:
    """Every pool's (name, count, capacity, memory used); pooled allocators trimmed first
    so their free slabs (which count as direct memory) are given back."""
    zcio.PooledAllocator.default().trim()
    pools = zcio.buffer_pools()
    return [(p.name, p.count, p.total_capacity, p.memory_used) for p in pools
            if p.name in ("direct", "mapped") or p.count]


@pytest.fixture(autouse=True)
def leak_check(_gc_unfreeze_at_end: None) -> Iterator[None]:
    """After each test: direct and mapped pools back to zero, no fd left open, cap restored.

    Speed: the objects that exist before the test (pytest's items and reports, the
    previous tests' hypothesis data) are frozen out of the collector's sight, so the
    ``gc.collect()`` after the test scans only what the test made; with ~19,000 tests
    a full collection each took most of the suite's time in setup and teardown.  The
    previous test's check collected everything collectable, and nothing the test makes
    is frozen, so the check still sees every buffer it leaked.  The module's objects are
    unfrozen when its tests are done."""
    gc.freeze()
    cap = zcio.max_direct_memory()
    fds = _open_fds()
    yield
    zcio.set_max_direct_memory(cap)
    _scratch.clear()  # the transfer engine's bounded per-thread buffer and pipe
    gc.collect()
    usage = _pool_usage()
    assert usage == [("direct", 0, 0, 0), ("mapped", 0, 0, 0)], f"leaked: {usage}"
    leaked_fds = _open_fds() - fds
    assert not leaked_fds, f"fds left open: {sorted(leaked_fds)}"


@pytest.fixture(scope="module")
def _gc_unfreeze_at_end() -> Iterator[None]:
    yield
    gc.unfreeze()




@pytest.fixture
def mk() -> Iterator[Made]:
    """Makes buffers of any kind (``contract_helpers.Made``) and releases them after the test."""
    made = Made()
    yield made
    made.release_all()


@pytest.fixture
def server() -> Iterator[zcio.ServerSocketChannel]:
    """A blocking ServerSocketChannel bound to loopback (a kernel-chosen port)."""
    with zcio.ServerSocketChannel.open().bind(LOOPBACK) as s:
        yield s

