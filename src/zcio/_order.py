"""Byte order, as java.nio.ByteOrder."""

from __future__ import annotations

import enum
import sys

__all__ = ["ByteOrder"]


class ByteOrder(enum.Enum):
    """The order in which multi-byte values are read and written.

    Every new ByteBuffer starts BIG_ENDIAN, and so do its slices, duplicates and
    read-only views, whatever the order of the buffer they came from (Java's rule).
    """

    BIG_ENDIAN = "big"
    LITTLE_ENDIAN = "little"

    @staticmethod
    def native_order() -> ByteOrder:
        """The byte order of the machine zcio runs on."""
        return ByteOrder.LITTLE_ENDIAN if sys.byteorder == "little" else ByteOrder.BIG_ENDIAN

    def __str__(self) -> str:  # Java's toString(): "BIG_ENDIAN"
        return self.name

    @property
    def prefix(self) -> str:
        """The ``struct`` module's prefix for this order: ``">"`` or ``"<"``."""
        return ">" if self is ByteOrder.BIG_ENDIAN else "<"
