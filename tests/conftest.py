"""Shared fixtures: every test must leave direct memory, mappings and fds as it found them."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

import zcio
from zcio import _scratch


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
def leak_check() -> Iterator[None]:
    """After each test: direct and mapped pools back to zero, no fd left open, cap restored."""
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
