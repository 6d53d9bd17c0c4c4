"""zcio demo: heap and direct buffers, Java's index rules, and the pools' accounting.

Run with ``make demo``.  Everything printed is computed live.
"""

from __future__ import annotations

import zcio
from zcio import ByteBuffer, ByteOrder


def pools(label: str) -> None:
    direct, mapped = zcio.buffer_pools()
    print(
        f"  pools {label:<28} direct: count={direct.count} capacity={direct.total_capacity} "
        f"used={direct.memory_used}   mapped: count={mapped.count}"
    )


def main() -> None:
    print("zcio", zcio.__version__, "- java.nio.ByteBuffer semantics in Python\n")

    print("1. A heap buffer: write, flip, read (Java's index dance)")
    heap = ByteBuffer.allocate(16)
    heap.put_int(0xCAFEBABE).put_short(-2).put(255)
    print("  after puts:", heap)
    heap.flip()
    print("  after flip:", heap)
    print(f"  get_int() = {heap.get_int()} (unsigned: {heap.get_unsigned_int(0):#x})"
          f", get_short() = {heap.get_short()}, get() = {heap.get()} (Java's signed byte)")
    print("  backing array:", heap.array()[:7].hex(" "), "\n")

    print("2. Byte order: the same int, both ways")
    for order in ByteOrder:
        b = ByteBuffer.allocate(4).order(order).put_int(1)
        print(f"  {order!s:<13} -> {b.array().hex(' ')}")
    print(f"  native order here: {ByteOrder.native_order()}\n")

    print("3. Direct buffers: off the Python heap, page-aligned, accounted")
    pools("before")
    with ByteBuffer.allocate_direct(1 << 20) as direct:
        print(f"  {direct}  address={direct.address():#x} "
              f"(page offset {direct.address() % 4096})")
        pools("with 1 MiB direct")
        window = direct.slice(4096, 4096)
        ints = window.order(ByteOrder.LITTLE_ENDIAN).as_int_buffer()
        ints.put(0, 42)
        print(f"  slice {window} and its view {ints} share memory:"
              f" direct.get_int(4096) = {direct.order(ByteOrder.LITTLE_ENDIAN).get_int(4096)}")
        pools("slices add nothing")
    pools("after the with block")

    print("\n4. The direct-memory cap (-XX:MaxDirectMemorySize)")
    cap = zcio.max_direct_memory()
    zcio.set_max_direct_memory("64k")
    try:
        keep = ByteBuffer.allocate_direct(48 * 1024)
        try:
            ByteBuffer.allocate_direct(32 * 1024)
        except zcio.OutOfDirectMemoryError as e:
            print("  refused after gc and retry:", e)
        keep.release()
    finally:
        zcio.set_max_direct_memory(cap)
    pools("at the end")

    print("\n5. Errors say what happened, and nothing moved")
    small = ByteBuffer.allocate(3).position(2)
    try:
        small.put_int(7)
    except zcio.BufferOverflowError as e:
        print(f"  {type(e).__name__}: {e}; still {small}")
    try:
        ByteBuffer.wrap(b"read-only").put(0, 1)
    except zcio.ReadOnlyBufferError as e:
        print(f"  {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
