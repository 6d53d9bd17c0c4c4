"""The six typed views: CharBuffer, ShortBuffer, IntBuffer, LongBuffer, FloatBuffer and
DoubleBuffer (Java's ``ByteBuffer.asIntBuffer()`` and friends).

What every view does (indexes in elements, get/put, bulk, derived views, comparisons)
is ``zcio._typed_buffer.TypedBuffer``'s, over its memory's ``load``/``store``/``read``
(contiguous, mapped or a composite's alike); each class here gives only its element
type and where Java's element rules differ from Python's: chars as one-character
strings, float NaNs kept bit for bit (:func:`~zcio._codec.float32_value`), Java's
``compare`` and ``hashCode`` per type.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from ._accel import native, text_signature
from ._codec import (
    _DOUBLE,
    _DOUBLE_BITS,
    _FLOAT_BITS,
    float32_nan_bits,
    float32_value,
    pack,
)
from ._typed_buffer import _UTF16, TypedBuffer

__all__ = [
    "TypedBuffer",
    "CharBuffer",
    "ShortBuffer",
    "IntBuffer",
    "LongBuffer",
    "FloatBuffer",
    "DoubleBuffer",
    "float32_value",
    "float32_nan_bits",
]


def _java_float_to_int(v: float) -> int:
    """Java's ``(int) f``: NaN -> 0, saturating at the int range, toward zero."""
    if math.isnan(v):
        return 0
    if v >= 2**31 - 1:
        return 2**31 - 1
    if v <= -(2**31):
        return -(2**31)
    return int(v)


_CANONICAL_NAN = 0x7FF8000000000000


def _float_compare(x: float, y: float) -> int:
    """Java's ``Float.compare``/``Double.compare``: -0.0 < 0.0, NaN above everything."""
    if x < y:
        return -1
    if x > y:
        return 1
    bx = _CANONICAL_NAN if math.isnan(x) else _DOUBLE_BITS.unpack(_DOUBLE.pack(x))[0]
    by = _CANONICAL_NAN if math.isnan(y) else _DOUBLE_BITS.unpack(_DOUBLE.pack(y))[0]
    return (bx > by) - (bx < by)


class CharBuffer(TypedBuffer[str]):
    """UTF-16 code units; elements are one-character strings (``str``; put also takes ints)."""

    __slots__ = ()
    _fmt = "H"

    _char = True

    def _pack(self, value: Any) -> bytes:
        if type(value) is str and len(value) == 1 and value <= "\uffff":
            return self._st.pack(ord(value))
        return pack(self._st, value)


    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return ord(x) - ord(y)  # Character.compare

    @staticmethod
    def _hash_term(v: Any) -> int:
        return ord(v)

    def __str__(self) -> str:
        """The remaining chars as a str (Java's ``CharBuffer.toString``): UTF-16 decoded,
        a surrogate pair becoming its one character, a lone surrogate kept as it is."""
        text: str = self._read(self._pos, max(self._lim - self._pos, 0)).decode(
            _UTF16[self._order], "surrogatepass"
        )
        return text


class ShortBuffer(TypedBuffer[int]):
    """Signed 16-bit integers."""

    __slots__ = ()
    _fmt = "h"

    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return int(x - y)  # Short.compare


class IntBuffer(TypedBuffer[int]):
    """Signed 32-bit integers."""

    __slots__ = ()
    _fmt = "i"


class LongBuffer(TypedBuffer[int]):
    """Signed 64-bit integers; ``hash_code`` uses each value's low 32 bits (``(int) l``)."""

    __slots__ = ()
    _fmt = "q"

    @staticmethod
    def _hash_term(v: Any) -> int:
        low = int(v) & 0xFFFFFFFF
        return low - (1 << 32) if low >= 1 << 31 else low


class _FloatingBuffer(TypedBuffer[float]):
    """Floats and doubles: equal when ``==`` or both NaN, ordered by ``Float.compare``."""

    __slots__ = ()

    @staticmethod
    def _same(x: Any, y: Any) -> bool:
        return bool(x == y or (math.isnan(x) and math.isnan(y)))

    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return _float_compare(x, y)

    @staticmethod
    def _hash_term(v: Any) -> int:
        return _java_float_to_int(v)


class FloatBuffer(_FloatingBuffer):
    """32-bit floats, each read as the Python float that stands for it.

    A NaN's sign and 23-bit payload, quiet bit included, survive a ``get`` followed by
    a ``put``, as they do in Java (``struct`` alone would set the quiet bit): the
    float stands for the NaN whose payload is the float's top 23 payload bits (see
    ``zcio._typed.float32_value``).
    """

    __slots__ = ()
    _fmt = "f"

    def _nan(self, i: int, v: float) -> float:
        """struct set the quiet bit: the NaN rebuilt from its bits."""
        return float32_value(_FLOAT_BITS[self._order].unpack(self._read(i, 1))[0])

    def _pack(self, value: Any) -> bytes:
        if value != value and isinstance(value, float):  # a NaN: keep its quiet bit
            return _FLOAT_BITS[self._order].pack(float32_nan_bits(value))
        return pack(self._st, value)


class DoubleBuffer(_FloatingBuffer):
    """64-bit floats."""

    __slots__ = ()
    _fmt = "d"


def _accelerate() -> None:
    """Hand one element's get/put of every view class to the compiled fast paths
    (``zcio._native``), TypedBuffer's own methods kept as their reference and slow path
    (bulk forms, errors, NaN floats, views over mapped or composite memory)."""
    if native is None:
        return
    VIEW_REFERENCE.update(get=TypedBuffer.get, put=TypedBuffer.put)
    docs = {name: f"{text_signature(fn)}\n--\n\n{inspect.getdoc(fn)}"
            for name, fn in VIEW_REFERENCE.items()}
    native.accelerate_views(TypedBuffer, {cls: cls._fmt for cls in (
        CharBuffer, ShortBuffer, IntBuffer, LongBuffer, FloatBuffer, DoubleBuffer)}, docs)


#: TypedBuffer's Python get/put that the compiled fast paths replaced: the reference the
#: differential tests hold them to (empty when pure Python runs).
VIEW_REFERENCE: dict[str, Any] = {}

_accelerate()
