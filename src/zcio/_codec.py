"""Encoding of Java's primitive types in either byte order, and Python's value rules.

Java's put methods take a typed value; Python passes an unbounded ``int`` or a
``float``.  zcio's choices, documented once here:

* integer puts accept the signed range and the unsigned range of the type
  (``put_int`` takes -2**31 .. 2**32-1, as ``put`` takes -128..255); 2**31 is stored
  as its two's complement, which ``get_int`` reads back as -2**31.  Anything outside
  both ranges raises IllegalArgumentError (a ValueError); a non-integer (a bool
  included) raises TypeError; numpy integers are integers (``check_int``).
* ``put_float`` narrows a Python float as Java's ``(float)`` cast does: round to
  nearest, and a finite value beyond float's range becomes an infinity (CPython's
  ``struct`` would raise OverflowError instead).
* chars are UTF-16 code units: ``get_char`` returns a one-character ``str``;
  ``put_char`` takes a one-character ``str`` whose code point is at most U+FFFF, or
  an int 0..65535.
"""

from __future__ import annotations

import math
import struct

from ._buffer import check_int, is_int
from ._errors import IllegalArgumentError
from ._order import ByteOrder

__all__ = [
    "Codec",
    "CODECS",
    "int_for",
    "float32_for",
    "float32_value",
    "float32_nan_bits",
    "char_code",
    "pack",
]


class Codec:
    """Precompiled ``struct.Struct`` objects for one byte order."""

    __slots__ = ("i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64")

    def __init__(self, order: ByteOrder) -> None:
        p = order.prefix
        self.i16 = struct.Struct(p + "h")
        self.u16 = struct.Struct(p + "H")
        self.i32 = struct.Struct(p + "i")
        self.u32 = struct.Struct(p + "I")
        self.i64 = struct.Struct(p + "q")
        self.u64 = struct.Struct(p + "Q")
        self.f32 = struct.Struct(p + "f")
        self.f64 = struct.Struct(p + "d")


CODECS = {order: Codec(order) for order in ByteOrder}


def int_for(value: object, bits: int, type_name: str) -> int:
    """``value`` as the signed ``bits``-wide int Java would store, or an error.

    Called on the slow path only, after ``struct`` refused ``value`` as signed.
    """
    value = check_int(value, f"{type_name} value")
    if -(1 << (bits - 1)) <= value < (1 << bits):
        return value - (1 << bits) if value >= (1 << (bits - 1)) else value
    raise IllegalArgumentError(
        f"{value} does not fit a {type_name} "
        f"(signed {-(1 << (bits - 1))}..{(1 << (bits - 1)) - 1} or unsigned 0..{(1 << bits) - 1})"
    )


def float32_for(value: object) -> float:
    """``value`` narrowed as Java's ``(float)`` cast: overflow gives an infinity."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"float value must be a real number, not {type(value).__name__}")
    return math.inf if value > 0 else -math.inf


_INT_NAMES = {2: "short", 4: "int", 8: "long"}
_KINDS = {"h": "short", "H": "char", "i": "int", "I": "int", "q": "long", "Q": "long",
          "f": "float", "d": "double"}


def pack(st: struct.Struct, value: object) -> bytes:
    """``value`` encoded by ``st`` under zcio's value rules, or an error.

    Never writes anywhere: ``struct.pack_into`` zero-fills its target *before* it
    validates the value, so a rejected put would wipe bytes; zcio encodes first and
    writes only a valid encoding.  A ``"H"`` struct encodes chars (str or int).  A
    bool is refused (TypeError), which ``struct`` would take as 0 or 1.
    """
    if type(value) is bool:
        raise TypeError(f"{_KINDS[st.format[-1]]} value must not be a bool")
    try:
        return st.pack(value)
    except (struct.error, OverflowError):
        pass
    kind = st.format[-1]
    if kind == "H":
        return st.pack(char_code(value))
    if kind in "fd":
        return st.pack(float32_for(value))
    return st.pack(int_for(value, st.size * 8, _INT_NAMES[st.size]))


def char_code(value: object) -> int:
    """The UTF-16 code unit for a one-character str or an int 0..65535."""
    if isinstance(value, str):
        if len(value) == 1 and ord(value) <= 0xFFFF:
            return ord(value)
        raise IllegalArgumentError(
            f"a char is one UTF-16 code unit (U+0000..U+FFFF), not {value!r}"
        )
    if is_int(value):
        value = check_int(value, "char value")
        if 0 <= value <= 0xFFFF:
            return value
        raise IllegalArgumentError(f"char code {value} out of range 0..65535")
    raise TypeError(f"char value must be a str or an int, not {type(value).__name__}")


_DOUBLE, _DOUBLE_BITS = struct.Struct(">d"), struct.Struct(">q")
_DOUBLE_UBITS, _FLOAT = struct.Struct(">Q"), struct.Struct(">f")
_FLOAT_BITS = {o: struct.Struct(o.prefix + "I") for o in ByteOrder}


def float32_value(bits: int) -> float:
    """The float that stands for the float32 with these bits: its value, exactly; for a
    NaN, the double NaN with the same sign and the 23 payload bits (quiet bit included)
    as the top of its 52, the rest zero.  A C cast (and ``struct``) would set the
    quiet bit; Java's ``Float.intBitsToFloat`` keeps it."""
    if bits & 0x7F800000 == 0x7F800000 and bits & 0x7FFFFF:
        wide = (bits >> 31) << 63 | 0x7FF << 52 | (bits & 0x7FFFFF) << 29
        return float(_DOUBLE.unpack(_DOUBLE_UBITS.pack(wide))[0])
    return float(_FLOAT.unpack(_FLOAT_BITS[ByteOrder.BIG_ENDIAN].pack(bits))[0])


def float32_nan_bits(value: float) -> int:
    """The float32 bits of a NaN ``value``, the inverse of :func:`float32_value`: sign and
    top 23 payload bits kept, quiet bit as it is; a payload with none of those 23 bits
    becomes the quiet NaN of that sign (a quiet bit must stay or it reads as infinity),
    as Java's ``(float)`` cast gives."""
    wide: int = _DOUBLE_UBITS.unpack(_DOUBLE.pack(value))[0]
    payload = wide >> 29 & 0x7FFFFF or 0x400000
    return (wide >> 63) << 31 | 0x7F800000 | payload
