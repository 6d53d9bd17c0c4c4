"""Differential testing of zcio against java.nio (JDK 17): oracle, generator, zcio runner.

A *sequence* is a list of operation lines.  The first line builds a ByteBuffer, the others
act on the *current* buffer, which derivations (``slice s``, ``view int s``...) replace.
``tests/jdk/BufferOracle.java`` runs sequences on java.nio, :class:`ZcioRunner` on zcio; both
print, per operation, a result line and a state line that must be equal.

Operation lines (``E`` is an int expression: an optional symbol among P position, L limit,
C capacity, R remaining of the current buffer and A the operation's array length, then an
optional signed decimal offset: ``L+1``, ``A``, ``-1``)::

    allocate N | direct N | wrap HEX | wrap3 HEX E E          build (A = len of HEX)
    capacity | position | limit | remaining | hasRemaining | isReadOnly | isDirect
    hasArray | arrayOffset | array | order | hashCode
    position= E | limit= E | mark | reset | clear | flip | rewind | compact
    get | get@ E | put V | put@ E V                          element of the current type
    slice M | slice@ M E E | duplicate M | asReadOnly M       M: s switch to it, k describe it
    equals O | compareTo O | mismatch O
  ByteBuffer only:
    order= BIG|LITTLE | getT T | getT@ T E | putT T V | putT@ T E V
    getArr E | getArr3 E E E | getArr@ E E E E                dst length, [index,] offset, length
    putArr HEX | putArr3 HEX E E | putArr@ E HEX E E
    putBuf O | putBuf@ E O E E                                A = limit of the source
    alignmentOffset E N | alignedSlice M N | view T M
  typed views only (arrays are lists of elements of the view's type):
    getArrV E | getArrV3 E E E | getArrV@ E E E E             dst length, [index,] offset, length
    putArrV LIST | putArrV3 LIST E E | putArrV@ E LIST E E     LIST: V,V,... (``-``: none)
    putBufV O | putBufV@ E O E E                               A = limit of the source
    putStr CPS | putStr3 CPS E E | toString                    CharBuffer only; A = UTF-16 length

``T`` is char, short, int, long, float or double.  ``V`` is a decimal integer (``u<hex>`` for a
char given to zcio as a 1-character str) or, for float and double, the 16 hex digits of a
double (a float put narrows it as Java's ``(float)`` cast), or for float ``f`` and the 8 hex
digits of a float (zcio gets the double that stands for it, see :func:`float32_value`).
``CPS`` is a string as comma-separated hex code points (``-``: empty).  ``O`` is the second
buffer: ``self``, ``dup POS LIM`` (a duplicate of the current buffer), ``h|d|r BIG|LITTLE HEX
POS LIM`` (heap, direct or read-only heap bytes, seen through a view of the current type) or
``p BIG|LITTLE OFFSET POS LIM`` (the root's bytes from OFFSET seen as the current type: it may
overlap the current buffer); its limit, then position, is clamped into range.

Result lines: ``ok VALUE`` or ``ex NAME`` (Java's exception names become zcio's,
``...Exception`` -> ``...Error``, every IndexOutOfBoundsException subclass counted as one).
Values: ``this`` (the call returned the buffer itself), ints, ``true``/``false``,
``BIG_ENDIAN``, chars by code, ``F``/``D`` + bits of a float/double (raw for the elements of a
view, NaN payloads included; canonical, all NaNs alike, for a ByteBuffer's ``getT``), hex of
a byte or element array (``-`` when empty; a bulk get prints ``this <dst>``), a string's code
points, and ``buf POS LIM CAP ORDER READONLY DIRECT CONTENT`` for a buffer described by mode
``k``.
State lines: ``st POS LIM CAP ORDER READONLY DIRECT CONTENT BASE`` where CONTENT is every
element of the current buffer in [0, capacity), fixed-width hex, and BASE the bytes of the
root buffer (the wrapped array, or the allocated buffer).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import zcio
from zcio import ByteBuffer, ByteOrder

JAVA_SOURCE = Path(__file__).with_name("jdk") / "BufferOracle.java"
SEED_VARIABLE = "ZCIO_JDK_SEED"

TYPE_SIZES = {"char": 2, "short": 2, "int": 4, "long": 8, "float": 4, "double": 8}
INT_BITS = {"byte": 8, "short": 16, "int": 32, "long": 64}
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
CANONICAL_NAN = {"float": "7fc00000", "double": "7ff8000000000000"}
HEX_DIGITS = {"byte": 2, "char": 4, "short": 4, "int": 8, "long": 16, "float": 8, "double": 16}


class HarnessError(AssertionError):
    """A malformed operation: a bug of the generator or of a runner, not of zcio."""


def session_seed() -> int:
    """The seed of this run: ``$ZCIO_JDK_SEED`` if set, else a fresh random one."""
    value = os.environ.get(SEED_VARIABLE)
    return int(value) if value else random.SystemRandom().randrange(2**32)


def announce_seed(request: pytest.FixtureRequest, what: str) -> int:
    """:func:`session_seed`, written to the terminal even when output is captured."""
    value = session_seed()
    line = f"\n{what}: {SEED_VARIABLE}={value}"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
    else:
        with capture.global_and_fixture_disabled():
            print(line)
    return value


# -- the Java side -------------------------------------------------------------------------


def missing_java_tools() -> list[str]:
    """The JDK tools this harness needs that are not on PATH."""
    return [tool for tool in ("java", "javac") if shutil.which(tool) is None]


def require_java_tools() -> None:
    """Skip the calling test (fail it under ``$CI``, which installs a JDK) without one."""
    missing = missing_java_tools()
    if missing:
        reason = f"JDK differential tests need {' and '.join(missing)} on PATH (JDK 17)"
        if os.environ.get("CI"):  # CI installs a JDK: a missing one must not pass quietly
            pytest.fail(reason)
        pytest.skip(reason)


def compile_java(source: Path, out_dir: Path) -> None:
    """``javac`` ``source`` into ``out_dir``, every lint warning an error."""
    cmd = ["javac", "-Xlint:all", "-Werror", "-d", str(out_dir), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"javac failed:\n{done.stdout}{done.stderr}")


@dataclass(frozen=True)
class JavaOracle:
    """A compiled oracle (BufferOracle by default); one JVM per :meth:`run`.

    ``main`` is the class to run and ``args`` its command-line arguments (the
    FileChannelOracle takes its working directories there).
    """

    classes: Path
    main: str = "BufferOracle"
    args: tuple[str, ...] = ()

    @classmethod
    def compile(cls, out_dir: Path, source: Path = JAVA_SOURCE) -> JavaOracle:
        compile_java(source, out_dir)
        return cls(out_dir, source.stem)

    def run(self, sequences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Java's output lines for each sequence, exception names mapped to zcio's."""
        text = "".join(
            f"SEQ {i}\n" + "".join(f"{op}\n" for op in seq) for i, seq in enumerate(sequences)
        )
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", str(self.classes),
               self.main, *self.args]
        done = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{self.main} failed ({done.returncode}):\n{done.stderr}")
        outputs: list[list[str]] = []
        for line in done.stdout.splitlines():
            if line.startswith("SEQ "):
                outputs.append([])
            else:
                outputs[-1].append(_zcio_exception_name(line))
        if len(outputs) != len(sequences):
            raise RuntimeError(f"{self.main} answered {len(outputs)} of {len(sequences)}")
        return outputs


def _zcio_exception_name(line: str) -> str:
    if line.startswith("ex ") and line.endswith("Exception"):
        return line.removesuffix("Exception") + "Error"
    return line


# -- comparison and shrinking --------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """The first operation of a sequence whose result or state differs."""

    ops: tuple[str, ...]  # the sequence up to and including the operation
    java: tuple[str, str]  # result and state lines
    zcio: tuple[str, str]

    @property
    def signature(self) -> tuple[str, str]:
        """Operation name and which line differs: what makes two mismatches "the same"."""
        which = "result" if self.java[0] != self.zcio[0] else "state"
        return self.ops[-1].split(" ", 1)[0], which

    def describe(self) -> str:
        lines = [f"  {op}" for op in self.ops[:-1]]
        lines.append(f"> {self.ops[-1]}")
        for who, (result, state) in (("java", self.java), ("zcio", self.zcio)):
            lines += [f"    {who}: {result}", f"          {state}"]
        return "\n".join(lines)


Runner = Callable[[Sequence[str]], list[str]]


def first_mismatch(
    seq: Sequence[str], java: Sequence[str], run: Runner | None = None
) -> Mismatch | None:
    """Run ``seq`` on zcio (``run``, default the buffer runner) and compare with ``java``."""
    if java and java[-1].startswith("harness "):
        raise HarnessError(f"the oracle rejected the sequence: {java[-1]}\n" + "\n".join(seq))
    mine = run(seq) if run is not None else ZcioRunner().run(seq)
    if len(mine) != len(java):
        raise HarnessError(f"{len(java)} lines from Java, {len(mine)} from zcio")
    for i in range(0, len(java), 2):
        if java[i : i + 2] != mine[i : i + 2]:
            n = i // 2 + 1
            return Mismatch(tuple(seq[:n]), (java[i], java[i + 1]), (mine[i], mine[i + 1]))
    return None


def shrink(oracle: JavaOracle, mismatch: Mismatch, run: Runner | None = None) -> Mismatch:
    """A shorter sequence failing with the same signature, by removing runs of operations.

    Each round tries, in one JVM, every removal of a run of n/2, n/4, ..., 1 operations
    (the building first one stays) and keeps the shortest candidate still failing alike.
    """
    best = mismatch
    while True:
        ops = best.ops
        candidates: list[tuple[str, ...]] = []
        size = max(1, (len(ops) - 1) // 2)
        while size >= 1:
            candidates += [ops[:i] + ops[i + size :] for i in range(1, len(ops) - size + 1)]
            size //= 2
        better = None
        for seq, java in zip(candidates, oracle.run(candidates), strict=True):
            try:  # a removal can leave a malformed sequence (a view op on a ByteBuffer...)
                found = first_mismatch(seq, java, run)
            except HarnessError:
                continue
            if found is not None and found.signature == mismatch.signature and (
                better is None or len(found.ops) < len(better.ops)
            ):
                better = found
        if better is None or len(better.ops) >= len(best.ops):
            return best
        best = better


# -- the zcio side -------------------------------------------------------------------------


class ZcioRunner:
    """Runs one sequence on zcio, printing what BufferOracle prints."""

    def __init__(self) -> None:
        self.cur: Any = None
        self.type = "byte"  # element type of cur
        self.base_buffer: Any = None
        self.base_array: bytearray | None = None
        self.tok: list[str] = []
        self.next = 0
        self.array_len = -1

    def run(self, seq: Sequence[str]) -> list[str]:
        lines: list[str] = []
        for op in seq:
            lines.append(self._run(op))
            lines.append(self._state())
        return lines

    def _run(self, line: str) -> str:
        self.tok = line.split()
        self.next = 0
        self.array_len = -1
        try:
            result = "ok " + self._exec(self._word())
        except HarnessError:
            raise
        except zcio.ZcioError as e:
            result = f"ex {type(e).__name__}"
        except Exception as e:  # anything else zcio raises is a difference from Java
            result = f"ex !{type(e).__name__}: {e}"
        if self.next != len(self.tok):
            raise HarnessError(f"unused arguments in: {line}")
        return result

    def _state(self) -> str:
        if self.cur is None:
            return "st none"
        try:
            if self.base_array is not None:
                base = self.base_array.hex() or "-"
            else:
                base = _content(self.base_buffer, "byte")
            return f"st {_describe(self.cur, self.type)} {base}"
        except Exception as e:
            return f"st !{type(e).__name__}: {e}"

    # -- operations --------------------------------------------------------------------

    def _exec(self, op: str) -> str:
        match op:
            case "allocate" | "direct":
                make = ByteBuffer.allocate if op == "allocate" else ByteBuffer.allocate_direct
                self.cur = self.base_buffer = make(self._int())
                return "this"
            case "wrap":
                array = bytearray(self._bytes())
                self.cur = ByteBuffer.wrap(array)
                self.base_array = array
                return "this"
            case "wrap3":
                array = bytearray(self._bytes())
                self.array_len = len(array)
                offset = self._expr()
                self.cur = ByteBuffer.wrap(array, offset, self._expr())
                self.base_array = array
                return "this"
        b = self.cur
        if b is None:
            raise HarnessError(f"no buffer for {op}")
        match op:
            case "capacity":
                return _int(b.capacity())
            case "position":
                return _int(b.position())
            case "position=":
                return _this(b.position(self._expr()), b)
            case "limit":
                return _int(b.limit())
            case "limit=":
                return _this(b.limit(self._expr()), b)
            case "mark" | "reset" | "clear" | "flip" | "rewind" | "compact":
                return _this(getattr(b, op)(), b)
            case "remaining":
                return _int(b.remaining())
            case "hasRemaining":
                return _bool(b.has_remaining())
            case "isReadOnly":
                return _bool(b.is_read_only())
            case "isDirect":
                return _bool(b.is_direct())
            case "hasArray":
                return _bool(b.has_array())
            case "arrayOffset":
                return _int(b.array_offset())
            case "array":
                return _hex(b.array())
            case "order":
                return _order(b.order())
            case "get":
                return _value(b.get(), self.type, raw=True)
            case "get@":
                return _value(b.get(self._expr()), self.type, raw=True)
            case "put":
                return _this(b.put(self._element(self.type)), b)
            case "put@":
                index = self._expr()
                return _this(b.put(index, self._element(self.type)), b)
            case "slice":
                mode = self._word()
                return self._derived(mode, b.slice())
            case "slice@":
                mode = self._word()
                index = self._expr()
                return self._derived(mode, b.slice(index, self._expr()))
            case "duplicate":
                mode = self._word()
                return self._derived(mode, b.duplicate())
            case "asReadOnly":
                mode = self._word()
                return self._derived(mode, b.as_read_only_buffer())
            case "equals":
                return _bool(b.equals(self._other()))
            case "compareTo":
                return _int(b.compare_to(self._other()))
            case "mismatch":
                return _int(b.mismatch(self._other()))
            case "hashCode":
                return _int(b.hash_code())
        if self.type != "byte":
            return self._exec_view(op, b)
        return self._exec_bytes(op, b)

    def _exec_view(self, op: str, b: Any) -> str:
        """Operations only the typed views have: bulk transfers of their element type."""
        kind = self.type
        match op:
            case "getArrV":
                dst = self._new_elements(self._expr())
                return _this(b.get(dst), b) + " " + _elements(dst, kind)
            case "getArrV3":
                dst = self._new_elements(self._expr())
                offset = self._expr()
                return _this(b.get(dst, offset, self._expr()), b) + " " + _elements(dst, kind)
            case "getArrV@":
                index = self._expr()
                dst = self._new_elements(self._expr())
                offset = self._expr()
                length = self._expr()
                return _this(b.get(index, dst, offset, length), b) + " " + _elements(dst, kind)
            case "putArrV":
                return _this(b.put(self._element_list()), b)
            case "putArrV3":
                src = self._element_list()
                offset = self._expr()
                return _this(b.put(src, offset, self._expr()), b)
            case "putArrV@":
                index_expr = self._word()
                src = self._element_list()
                offset = self._expr()
                length = self._expr()
                return _this(b.put(self._eval(index_expr), src, offset, length), b)
            case "putBufV":
                return _this(b.put(self._other()), b)
            case "putBufV@":
                index_expr = self._word()
                other = self._other()
                self.array_len = other.limit()
                offset = self._expr()
                length = self._expr()
                return _this(b.put(self._eval(index_expr), other, offset, length), b)
            case "putStr" if kind == "char":
                return _this(b.put(self._text()), b)
            case "putStr3" if kind == "char":  # Java's put(text, offset, offset + length)
                text = self._text()
                offset = self._expr()
                return _this(b.put(text, offset, self._expr()), b)
            case "toString" if kind == "char":
                text = str(b)
                return ",".join(f"{ord(c):x}" for c in text) or "-"
        raise HarnessError(f"{op} on a {kind} view")

    def _exec_bytes(self, op: str, b: Any) -> str:
        """Operations only a ByteBuffer has."""
        match op:
            case "order=":
                return _this(b.order(_byte_order(self._word())), b)
            case "getT":
                kind = self._type()
                return _value(getattr(b, f"get_{kind}")(), kind)
            case "getT@":
                kind = self._type()
                return _value(getattr(b, f"get_{kind}")(self._expr()), kind)
            case "putT":
                kind = self._type()
                return _this(getattr(b, f"put_{kind}")(self._element(kind)), b)
            case "putT@":
                kind = self._type()
                index = self._expr()
                return _this(getattr(b, f"put_{kind}")(index, self._element(kind)), b)
            case "getArr":
                dst = bytearray(max(0, self._expr()))
                return _this(b.get(dst), b) + " " + _hex(dst)
            case "getArr3":
                dst = self._new_array()
                offset = self._expr()
                return _this(b.get(dst, offset, self._expr()), b) + " " + _hex(dst)
            case "getArr@":
                index = self._expr()
                dst = self._new_array()
                offset = self._expr()
                return _this(b.get(index, dst, offset, self._expr()), b) + " " + _hex(dst)
            case "putArr":
                return _this(b.put(self._bytes()), b)
            case "putArr3":
                src = self._bytes()
                self.array_len = len(src)
                offset = self._expr()
                return _this(b.put(src, offset, self._expr()), b)
            case "putArr@":
                index_expr = self._word()
                src = self._bytes()
                self.array_len = len(src)
                offset = self._expr()
                length = self._expr()
                return _this(b.put(self._eval(index_expr), src, offset, length), b)
            case "putBuf":
                return _this(b.put(self._other()), b)
            case "putBuf@":
                index_expr = self._word()
                src = self._other()
                self.array_len = src.limit()
                offset = self._expr()
                length = self._expr()
                return _this(b.put(self._eval(index_expr), src, offset, length), b)
            case "alignmentOffset":
                index = self._expr()
                return _int(b.alignment_offset(index, self._int()))
            case "alignedSlice":
                mode = self._word()
                return self._derived(mode, b.aligned_slice(self._int()))
            case "view":
                kind = self._type()
                mode = self._word()
                view = getattr(b, f"as_{kind}_buffer")()
                if mode == "k":
                    return "buf " + _describe(view, kind)
                self.type = kind
                return self._derived(mode, view)
        raise HarnessError(f"unknown operation {op}")

    def _derived(self, mode: str, buf: Any) -> str:
        if mode == "s":
            self.cur = buf
            return "this"
        if mode == "k":
            return "buf " + _describe(buf, self.type)
        raise HarnessError(f"mode {mode}")

    def _other(self) -> Any:
        kind = self._word()
        if kind == "self":
            return self.cur
        if kind == "dup":
            other = self.cur.duplicate()
        elif kind == "p":
            order = _byte_order(self._word())
            if self.base_array is not None:
                root = ByteBuffer.wrap(self.base_array)
            else:
                root = self.base_buffer.duplicate()
            root.order(order)
            root.position(min(self._int(), root.limit()))
            other = root.slice() if self.type == "byte" else self._view_of(root)
        elif kind in ("h", "d", "r"):
            order = _byte_order(self._word())
            content = self._bytes()
            if kind == "d":
                bb = ByteBuffer.allocate_direct(len(content))
                bb.put(content)
                bb.clear()
            else:
                bb = ByteBuffer.wrap(bytearray(content))
                if kind == "r":
                    bb = bb.as_read_only_buffer()
            bb.order(order)
            other = bb if self.type == "byte" else self._view_of(bb)
        else:
            raise HarnessError(f"other buffer kind {kind}")
        position = self._int()
        other.limit(min(self._int(), other.capacity()))
        other.position(min(position, other.limit()))
        return other

    def _view_of(self, bb: Any) -> Any:
        return getattr(bb, f"as_{self.type}_buffer")()

    # -- arguments ---------------------------------------------------------------------

    def _word(self) -> str:
        if self.next >= len(self.tok):
            raise HarnessError(f"missing argument in: {' '.join(self.tok)}")
        self.next += 1
        return self.tok[self.next - 1]

    def _int(self) -> int:
        return _num(self._word())

    def _type(self) -> str:
        kind = self._word()
        if kind not in TYPE_SIZES:
            raise HarnessError(f"type {kind}")
        return kind

    def _bytes(self) -> bytes:
        word = self._word()
        return b"" if word == "-" else bytes.fromhex(word)

    def _new_array(self) -> bytearray:
        dst = bytearray(max(0, self._expr()))
        self.array_len = len(dst)
        return dst

    def _expr(self) -> int:
        return self._eval(self._word())

    def _eval(self, e: str) -> int:
        """Value of an int expression (see the module docstring)."""
        base, rest = 0, e
        if e[0].isalpha():
            rest = e[1:]
            if self.cur is None and e[0] != "A":
                raise HarnessError(f"no buffer for {e}")
            match e[0]:
                case "P":
                    base = self.cur.position()
                case "L":
                    base = self.cur.limit()
                case "C":
                    base = self.cur.capacity()
                case "R":
                    base = self.cur.remaining()
                case "A" if self.array_len >= 0:
                    base = self.array_len
                case _:
                    raise HarnessError(f"symbol in {e}")
        value = base + (_num(rest) if rest else 0)
        if not INT_MIN <= value <= INT_MAX:
            raise HarnessError(f"expression out of int range: {e}")
        return value

    def _new_elements(self, length: int) -> list[Any]:
        """Java's zeroed array of the view's type, as a list; sets A."""
        zero = {"char": "\0", "float": 0.0, "double": 0.0}.get(self.type, 0)
        dst = [zero] * max(0, length)
        self.array_len = len(dst)
        return dst

    def _text(self) -> str:
        """A CPS string token; sets A to its length in UTF-16 code units, as Java's."""
        word = self._word()
        text = "" if word == "-" else "".join(chr(int(c, 16)) for c in word.split(","))
        self.array_len = len(text.encode("utf-16-le", "surrogatepass")) // 2
        return text

    def _element_list(self) -> list[Any]:
        word = self._word()
        src = [] if word == "-" else [_element_value(self.type, w) for w in word.split(",")]
        self.array_len = len(src)
        return src

    def _element(self, kind: str) -> int | float | str:
        """A put's value token as zcio takes it."""
        return _element_value(kind, self._word())


def _element_value(kind: str, word: str) -> int | float | str:
    """An element token (see the module docstring) as zcio takes it."""
    if kind == "char" and word.startswith("u"):
        return chr(int(word[1:], 16))
    if kind == "float" and word.startswith("s"):
        return float32_value(int(word[1:], 16))
    if kind in ("float", "double"):
        return float(struct.unpack(">d", bytes.fromhex(word))[0])
    return _num(word)


def _num(word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise HarnessError(f"bad number {word}") from None


def _byte_order(word: str) -> ByteOrder:
    match word:
        case "BIG":
            return ByteOrder.BIG_ENDIAN
        case "LITTLE":
            return ByteOrder.LITTLE_ENDIAN
    raise HarnessError(f"byte order {word}")


# -- formatting zcio's answers strictly: a wrong type prints differently from Java --------


def _this(returned: object, buf: object) -> str:
    return "this" if returned is buf else f"!returned {returned!r}"


def _int(v: object) -> str:
    return str(v) if type(v) is int else f"!{type(v).__name__} {v!r}"


def _bool(v: object) -> str:
    if type(v) is bool:
        return "true" if v else "false"
    return f"!{type(v).__name__} {v!r}"


def _order(v: object) -> str:
    if v is ByteOrder.BIG_ENDIAN or v is ByteOrder.LITTLE_ENDIAN:
        return v.name
    return f"!{v!r}"


def _hex(v: object) -> str:
    if not isinstance(v, bytes | bytearray):
        return f"!{type(v).__name__} {v!r}"
    return v.hex() or "-"


_DOUBLE_BITS, _DOUBLE = struct.Struct(">Q"), struct.Struct(">d")


def float32_value(bits: int) -> float:
    """The double that stands for the float32 ``bits``: its value widened, and for a NaN
    the sign and the 23-bit payload moved up, the quiet bit kept as it is (a C cast would
    set it)."""
    if bits & 0x7F800000 != 0x7F800000 or not bits & 0x7FFFFF:
        return float(struct.unpack(">f", bits.to_bytes(4, "big"))[0])
    wide = (bits >> 31) << 63 | 0x7FF << 52 | (bits & 0x7FFFFF) << 29
    return float(_DOUBLE.unpack(_DOUBLE_BITS.pack(wide))[0])


def _float_bits(v: object, kind: str, raw: bool = False) -> str:
    """Bits of a float/double value, canonical (every NaN alike) or ``raw`` (a float NaN as
    :func:`float32_value` widens it); a non-float or a double that no float32 stands for (for
    kind float) prints as a difference."""
    if type(v) is not float:
        return f"!{type(v).__name__} {v!r}"
    if math.isnan(v) and not raw:
        return CANONICAL_NAN[kind]
    if math.isnan(v) and kind == "float":
        wide = _DOUBLE_BITS.unpack(_DOUBLE.pack(v))[0]
        if wide & (1 << 29) - 1 or not wide >> 29 & 0x7FFFFF:
            return f"!not a float32 NaN: {wide:016x}"
        return f"{(wide >> 63) << 31 | 0x7F800000 | (wide >> 29 & 0x7FFFFF):08x}"
    if math.isnan(v):
        return _DOUBLE.pack(v).hex()
    fmt = ">f" if kind == "float" else ">d"
    packed = struct.pack(fmt, v)
    if struct.unpack(fmt, packed)[0] != v:
        return f"!not a float32: {v!r}"
    return packed.hex()


def _value(v: object, kind: str, raw: bool = False) -> str:
    """A get's value as BufferOracle prints it (``raw`` NaN bits for a view's elements)."""
    if kind == "char":
        return str(ord(v)) if type(v) is str and len(v) == 1 else f"!{type(v).__name__} {v!r}"
    if kind == "float":
        return "F" + _float_bits(v, kind, raw)
    if kind == "double":
        return "D" + _float_bits(v, kind, raw)
    return _int(v)


def _element_hex(v: object, kind: str) -> str:
    digits = HEX_DIGITS[kind]
    if kind in ("float", "double"):
        return _float_bits(v, kind, raw=True)
    if kind == "char":
        if type(v) is not str or len(v) != 1:
            return f"!{type(v).__name__} {v!r}"
        return f"{ord(v):0{digits}x}"
    if type(v) is not int:
        return f"!{type(v).__name__} {v!r}"
    return f"{v & ((1 << 4 * digits) - 1):0{digits}x}"


def _elements(values: list[Any], kind: str) -> str:
    return "".join(_element_hex(v, kind) for v in values) or "-"


def _content(b: Any, kind: str) -> str:
    """Elements [0, capacity) by absolute gets on a cleared duplicate."""
    d = b.duplicate()
    d.clear()
    return "".join(_element_hex(d.get(i), kind) for i in range(d.capacity())) or "-"


def _describe(b: Any, kind: str) -> str:
    return " ".join([
        _int(b.position()), _int(b.limit()), _int(b.capacity()), _order(b.order()),
        _bool(b.is_read_only()), _bool(b.is_direct()), _content(b, kind),
    ])


# -- the generator -------------------------------------------------------------------------

PALETTE = (0x00, 0x00, 0x00, 0x01, 0x3F, 0x7F, 0x80, 0xC0, 0xFF)
CAPACITIES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 63, 64)
FLOAT_MAX = 3.4028234663852886e38
NARROWED = (  # doubles a float put narrows as Java's (float) cast: overflow, underflow, ties
    FLOAT_MAX + 2.0**102, FLOAT_MAX + 2.0**103, -FLOAT_MAX - 2.0**103, 1e39, -1e300,
    1e-46, -1e-46, 8e-46, 1e-300, 1.0 + 2.0**-24, 1.0 + 3 * 2.0**-24,
)
SPECIAL_FLOATS = (
    0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -2.5,
    FLOAT_MAX, 1.1754943508222875e-38, 1.401298464324817e-45,
)
SPECIAL_DOUBLES = (
    *SPECIAL_FLOATS, 1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, 0.1,
)
# NaNs by their bits: signalling and quiet, either sign, payloads at both ends
FLOAT_NANS = (0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FC00001, 0xFFC00000, 0x7FA5A5A5)
DOUBLE_NANS = (
    0x7FF0000000000001, 0xFFF0000000000001, 0x7FF7FFFFFFFFFFFF, 0x7FF8000000000001,
    0xFFF8000000000000, 0x7FF4000020000000, 0x7FF0000020000000,
)
CHAR_CODES = (0, 0x41, 0xE9, 0x7FFF, 0x8000, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xFFFF)
CODE_POINTS = (  # of a CharBuffer.put(String): lone surrogates, pairs, beyond the BMP
    "0", "41", "e9", "ffff", "d800", "dfff", "dc00", "d83d,de00", "1f600", "10000", "10ffff",
)


def _sym(base: str, offset: int) -> str:
    return f"{base}{offset:+d}" if offset else base


class Generator:
    """Random well-formed sequences, arguments biased towards the boundaries.

    It knows the capacity it built (``cap``, in elements of the current type; derived
    buffers are at most as large), not the indexes: arguments relative to them are the
    expressions P, L, R... that both runners evaluate.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cap = 0
        self.root_cap = 0  # bytes of the root buffer
        self.heap = True  # the root is a heap buffer (alignment rules)
        self.type = "byte"
        self.floating = ""  # "f" or "d": content made of special floats/doubles, sometimes

    # -- sequences ---------------------------------------------------------------------

    def byte_sequence(self) -> list[str]:
        """A ByteBuffer sequence of 10 to 40 operations (rarely one failing constructor)."""
        if self.rng.random() < 0.03:
            return [self._bad_constructor()]
        seq = self._constructor()
        if self.rng.random() < 0.5:
            seq.append(f"order= {self._order()}")
        total = self.rng.randint(10, 40)
        while len(seq) < total:
            ops = self._view_ops if self.type != "byte" else self._byte_ops
            seq.append(self._pick(ops()))
        return seq

    def view_sequence(self, kind: str | None = None) -> list[str]:
        """A typed view (of ``kind``, else a random one) of a ByteBuffer, possibly offset or
        read-only, and 10 to 40 ops on it."""
        r = self.rng
        kind = kind or r.choice(list(TYPE_SIZES))
        self.floating = {"float": "f", "double": "d"}.get(kind, "")
        seq = self._constructor()
        seq.append(f"order= {self._order()}")
        if r.random() < 0.4:
            seq.append(f"position= {r.choice(['1', '2', '3', '4', 'L-8'])}")
        if r.random() < 0.2:
            seq.append("asReadOnly s")
        if r.random() < 0.2:
            seq.append("slice s")
        seq.append(f"view {kind} s")
        self.type = kind
        self.cap //= TYPE_SIZES[kind]
        total = r.randint(len(seq) + 10, 40)
        while len(seq) < total:
            seq.append(self._pick(self._view_ops()))
        return seq

    def _constructor(self) -> list[str]:
        r = self.rng
        cap = r.choice(CAPACITIES) if r.random() < 0.6 else r.randint(0, 64)
        kind = r.choice(["allocate", "direct", "wrap", "wrap3"])
        self.cap, self.root_cap, self.heap, self.type = cap, cap, kind != "direct", "byte"
        if kind in ("allocate", "direct"):
            return [f"{kind} {cap}"]
        if kind == "wrap":
            return [f"wrap {self._hex(cap)}"]
        offset = r.randint(0, cap)
        return [f"wrap3 {self._hex(cap)} {offset} {r.randint(0, cap - offset)}"]

    def _bad_constructor(self) -> str:
        r = self.rng
        match r.randrange(3):
            case 0:
                return f"allocate {r.choice([-1, -64, INT_MIN])}"
            case 1:
                return f"direct {r.choice([-1, -2])}"
        bounds = ["-1", "0", "1", "A-1", "A", "A+1", str(INT_MIN), str(INT_MAX)]
        return f"wrap3 {self._hex(r.randint(0, 8))} {r.choice(bounds)} {r.choice(bounds)}"

    def _pick(self, table: Sequence[tuple[int, Callable[[], str]]]) -> str:
        weights = [w for w, _ in table]
        return self.rng.choices(table, weights)[0][1]()

    # -- operation tables --------------------------------------------------------------

    def _common_ops(self) -> list[tuple[int, Callable[[], str]]]:
        r = self.rng
        plain = ("capacity", "position", "limit", "remaining", "hasRemaining", "isReadOnly",
                 "isDirect", "hasArray", "arrayOffset", "array", "order", "clear", "flip",
                 "rewind", "compact")
        return [
            (12, lambda: r.choice(plain)),
            (3, lambda: "hashCode"),
            (3, lambda: "mark"),
            (3, lambda: "reset"),
            (6, lambda: f"position= {self._index()}"),
            (6, lambda: f"limit= {self._index()}"),
            (8, lambda: "get"),
            (8, lambda: f"get@ {self._index()}"),
            (8, lambda: f"put {self._element(self.type)}"),
            (8, lambda: f"put@ {self._index()} {self._element(self.type)}"),
            (2, lambda: f"slice {self._mode()}"),
            (2, lambda: f"slice@ {self._mode()} {self._window()}"),
            (2, lambda: f"duplicate {self._mode()}"),
            (1, lambda: f"asReadOnly {self._mode()}"),
            (3, lambda: f"equals {self._other()}"),
            (3, lambda: f"compareTo {self._other()}"),
            (3, lambda: f"mismatch {self._other()}"),
        ]

    def _view_ops(self) -> list[tuple[int, Callable[[], str]]]:
        ops = [
            *self._common_ops(),
            (3, lambda: f"getArrV {self._dst_length()}"),
            (2, lambda: f"getArrV3 {self._dst_length()} {self._span()}"),
            (3, self._get_elements_absolute),
            (3, lambda: f"putArrV {self._elements()}"),
            (2, lambda: f"putArrV3 {self._elements()} {self._span()}"),
            (3, lambda: f"putArrV@ {self._index()} {self._elements()} {self._span()}"),
            (4, lambda: f"putBufV {self._other()}"),
            (4, lambda: f"putBufV@ {self._index()} {self._other()} {self._span()}"),
        ]
        if self.type == "char":
            ops += [
                (3, lambda: f"putStr {self._code_points()}"),
                (3, lambda: f"putStr3 {self._code_points()} {self._span()}"),
                (2, lambda: "toString"),
            ]
        return ops

    def _code_points(self) -> str:
        r = self.rng
        if r.random() < 0.1:
            return "-"
        return ",".join(r.choice(CODE_POINTS) for _ in range(r.randint(1, self.cap + 2)))

    def _get_elements_absolute(self) -> str:
        if self.rng.random() < 0.5:  # fits when the index and length do
            index, length = self._window().split()
            return f"getArrV@ {index} C 0 {length}"
        return f"getArrV@ {self._index()} {self._dst_length()} {self._span()}"

    def _elements(self) -> str:
        n = self.rng.randint(0, self.cap + 2)
        return ",".join(self._element(self.type) for _ in range(n)) or "-"

    def _byte_ops(self) -> list[tuple[int, Callable[[], str]]]:
        r = self.rng
        return [
            *self._common_ops(),
            (2, lambda: f"order= {self._order()}"),
            (6, lambda: f"getT {self._type()}"),
            (6, self._get_typed_absolute),
            (6, self._put_typed),
            (6, self._put_typed_absolute),
            (2, lambda: f"getArr {self._dst_length()}"),
            (2, lambda: f"getArr3 {self._dst_length()} {self._span()}"),
            (3, self._get_array_absolute),
            (2, lambda: f"putArr {self._hex(r.randint(0, self.cap + 2))}"),
            (2, lambda: f"putArr3 {self._hex(r.randint(0, self.cap + 2))} {self._span()}"),
            (3, self._put_array_absolute),
            (3, lambda: f"putBuf {self._other()}"),
            (3, self._put_buffer_absolute),
            (2, lambda: f"alignmentOffset {self._index()} {self._unit()}"),
            (1, lambda: f"alignedSlice {self._mode()} {self._unit()}"),
            (2, self._view),
        ]

    def _get_typed_absolute(self) -> str:
        kind = self._type()
        return f"getT@ {kind} {self._index(TYPE_SIZES[kind])}"

    def _put_typed(self) -> str:
        kind = self._type()
        return f"putT {kind} {self._element(kind)}"

    def _put_typed_absolute(self) -> str:
        kind = self._type()
        return f"putT@ {kind} {self._index(TYPE_SIZES[kind])} {self._element(kind)}"

    def _get_array_absolute(self) -> str:
        if self.rng.random() < 0.5:  # fits when the index and length do
            index, length = self._window().split()
            return f"getArr@ {index} C 0 {length}"
        return f"getArr@ {self._index()} {self._dst_length()} {self._span()}"

    def _put_array_absolute(self) -> str:
        src = self._hex(self.rng.randint(0, self.cap + 2))
        return f"putArr@ {self._index()} {src} {self._span()}"

    def _put_buffer_absolute(self) -> str:
        return f"putBuf@ {self._index()} {self._other()} {self._span()}"

    def _view(self) -> str:
        kind = self._type()
        mode = "s" if self.rng.random() < 0.2 else "k"
        if mode == "s":
            self.type = kind
            self.cap //= TYPE_SIZES[kind]
        return f"view {kind} {mode}"

    # -- arguments ---------------------------------------------------------------------

    def _type(self) -> str:
        return self.rng.choice(list(TYPE_SIZES))

    def _order(self) -> str:
        return self.rng.choice(["BIG", "LITTLE"])

    def _mode(self) -> str:
        return "s" if self.rng.random() < 0.35 else "k"

    def _index(self, width: int = 1) -> str:
        """An index around position, limit and capacity, for an access ``width`` wide."""
        return self._bound([
            "-1", "0", "1", "P", "P+1", "P-1", "L", "L+1", _sym("L", -width),
            _sym("L", 1 - width), "C", "C+1", "C-1",
        ])

    def _span(self) -> str:
        """``offset length`` into an operation's array (A), around it and the remaining."""
        r = self.rng
        if r.random() < 0.4:
            return r.choice(["0 A", "0 R", "1 A-1", "0 0", "A 0", "0 1", "1 R-1", "A-1 1"])
        return f"{self._bound(['0', '0', '1', '-1', 'A', 'A-1', 'A+1'])} " + self._bound(
            ["0", "1", "-1", "A", "A-1", "A+1", "R", "R-1", "R+1", "L", "C"]
        )

    def _window(self) -> str:
        """``index length`` of a region of the current buffer, around its bounds."""
        r = self.rng
        if r.random() < 0.4:
            return r.choice(["0 L", "P R", "1 L-1", "L 0", "0 0", "P 1", "L-1 1", "C 0"])
        return f"{self._index()} " + self._bound(["0", "1", "-1", "R", "R+1", "L", "L+1", "C"])

    def _bound(self, near: list[str]) -> str:
        """One of ``near``, rarely an int extreme or a small number."""
        r = self.rng
        x = r.random()
        if x < 0.03:
            return r.choice([str(INT_MIN), str(INT_MAX)])
        if x < 0.2:
            return str(r.randint(0, self.cap + 1))
        return r.choice(near)

    def _dst_length(self) -> str:
        r = self.rng
        if r.random() < 0.2:
            return str(r.randint(0, self.cap + 2))
        return r.choice(["0", "1", "R", "R", "R-1", "R+1", "R+2", "L", "C"])

    def _unit(self) -> str:
        """A unit size; over 8 only for heap buffers (Java then always refuses): a direct
        buffer's answer would depend on its address."""
        units = [1, 2, 4, 8, 8, 0, -1, 3, 6, 12]
        if self.heap:
            units += [16, 32, 64]
        return str(self.rng.choice(units))

    def _other(self) -> str:
        r = self.rng
        x = r.random()
        if x < 0.08:
            return "self"
        if x < 0.3:
            return f"dup {r.randint(0, self.cap + 1)} {r.randint(0, self.cap + 1)}"
        if x < 0.5 and self.type != "byte":  # another view of the root: may overlap this one
            offset = r.randint(0, self.root_cap) if r.random() < 0.7 else r.randint(0, 3)
            n = self.cap + 1
            return f"p {self._order()} {offset} {r.randint(0, n)} {r.randint(0, n)}"
        size = 1 if self.type == "byte" else TYPE_SIZES[self.type]
        n = r.randint(0, self.cap + 2)
        hex_ = self._hex(n * size + (r.randint(0, size - 1) if r.random() < 0.2 else 0))
        position = r.randint(0, min(2, n)) if r.random() < 0.7 else r.randint(0, n + 1)
        limit = n if r.random() < 0.6 else r.randint(0, n + 1)
        return f"{r.choice('hdr')} {self._order()} {hex_} {position} {limit}"

    def _hex(self, n: int) -> str:
        """``n`` bytes: zeros, zeros but one or two, special floats or doubles (in views of
        them), or a mix of boundary values and random ones."""
        r = self.rng
        x = r.random()
        if x < 0.2:
            data = bytearray(n)
        elif x < 0.4:
            data = bytearray(n)
            for _ in range(min(n, r.randint(1, 2))):
                data[r.randrange(n)] = r.randrange(1, 256)
        elif x < 0.6 and self.floating:
            specials = SPECIAL_FLOATS if self.floating == "f" else SPECIAL_DOUBLES
            nans = FLOAT_NANS if self.floating == "f" else DOUBLE_NANS
            bits = "I" if self.floating == "f" else "Q"
            data = bytearray()
            while len(data) < n:
                if r.random() < 0.3:
                    data += struct.pack(r.choice("<>") + bits, r.choice(nans))
                else:
                    data += struct.pack(r.choice("<>") + self.floating, r.choice(specials))
            del data[n:]
        else:
            data = bytearray(
                r.choice(PALETTE) if r.random() < 0.5 else r.randrange(256) for _ in range(n)
            )
        return data.hex() or "-"

    def _element(self, kind: str) -> str:
        """A put's value token: in range for ``kind`` (unsigned too on a ByteBuffer)."""
        r = self.rng
        if kind == self.type == "float" and r.random() < 0.3:  # a view's float, by its bits
            return f"s{r.choice(FLOAT_NANS) if r.random() < 0.7 else r.getrandbits(32):08x}"
        if kind == self.type == "double" and r.random() < 0.2:
            return f"{r.choice(DOUBLE_NANS):016x}"
        if kind in ("float", "double"):
            return struct.pack(">d", self._floating(kind)).hex()
        if kind == "char":
            code = r.choice([*CHAR_CODES, r.randrange(0x10000)])
            if self.type == "char" or r.random() < 0.5:  # views take a 1-character str
                return f"u{code:04x}"
            return str(code)
        bits = INT_BITS[kind]
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        x = r.random()
        if x < 0.15 and self.type == "byte":
            return str(r.randint(high + 1, (1 << bits) - 1))
        if x < 0.6:
            return str(r.choice([low, -1, 0, 1, high]))
        return str(r.randint(low, high))

    def _floating(self, kind: str) -> float:
        r = self.rng
        x = r.random()
        if x < 0.4:
            return r.choice(SPECIAL_FLOATS if kind == "float" else SPECIAL_DOUBLES)
        if x < 0.5 and kind == "float":
            return r.choice(NARROWED)
        if x < 0.85:  # any non-NaN value of the type, from its bits
            fmt, bits = (">f", 32) if kind == "float" else (">d", 64)
            while True:
                v = float(struct.unpack(fmt, r.getrandbits(bits).to_bytes(bits // 8, "big"))[0])
                if not math.isnan(v):
                    return v
        return r.uniform(-1e6, 1e6)  # for float: rounds to nearest, like Java's (float) cast
