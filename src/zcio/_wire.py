"""The send/receive protocol (``zcio.send_file``, ``zcio.FileReceiver``), sans-IO.

This module reads no socket and touches no file (h11's split): the I/O layer (``_session``)
reads exactly :meth:`needed` bytes, feeds them in with ``receive_data``, takes
events out with ``next_event``, and writes the bytes the ``accept``/``verdict``/
``abort`` calls return.  The file's bytes themselves never pass through here: they
go from the sender's file to the socket by sendfile and from the socket to the
receiver's file by splice, and the I/O layer reports how many moved
(``body_sent``/``body_received``).  Because the I/O layer never reads more than
``needed()``, not one byte of the body can be swallowed by the header parser.

The conversation (all integers big-endian)::

    sender                                           receiver
    HEADER  "ZCIO" version algorithm namelen size    ->
            name digest
                                                     <-  ACCEPT offset   (or ABORT reason)
    the file's bytes [offset, size)                  ->
                                                     <-  VERIFIED size   (or MISMATCH reason,
                                                                          or ABORT reason)

HEADER: ``>4sBBHQ`` (16 bytes): magic ``b"ZCIO"``, version 1, checksum algorithm
(1 = SHA-256), name length 1..244, file size; then the name (UTF-8, a base name:
see :func:`check_name`), then the digest of the whole file (32 bytes for SHA-256).

REPLY: ``>4sBQH`` (15 bytes): magic ``b"ZCIO"``, kind (1 ACCEPT, 2 VERIFIED,
3 MISMATCH, 4 ABORT), a value (ACCEPT: the offset the receiver already has;
VERIFIED: the size), message length 0..1024; then the message (UTF-8, a reason for
MISMATCH and ABORT).  ABORT may come at any time: a refusal before the body (bad
name, too large, no space), a failure during it (a write error), and then the
receiver closes.

Anything else raises :class:`ProtocolError` with a message that names what was wrong:
bad magic (checked from the first byte), another version, an unknown algorithm, a
length out of range, a name that is not a safe base name, a reply out of turn, an
offset past the size, or the peer closing mid-message.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._errors import ZcioError

__all__ = [
    "MAGIC", "VERSION", "SHA256", "MAX_NAME", "MAX_MESSAGE", "PART_SUFFIX", "HEAD_SUFFIX",
    "ProtocolError", "NEED_DATA", "NeedData", "Header", "Accept", "Verified", "Mismatch",
    "Abort", "Reply", "encode_reply", "decode_header", "decode_reply", "check_name", "new_digest",
    "Sender", "Receiver",
]

MAGIC: Final = b"ZCIO"
VERSION: Final = 1
SHA256: Final = 1
#: Digest sizes by algorithm id.  SHA-256: hardware-accelerated in OpenSSL (1.3-1.7
#: GB/s measured here against 0.9 for BLAKE2b), faster than the splice path writes to
#: disk, and strong enough to identify "the same file" when resuming a prefix (CRC-32
#: runs at 4-6 GB/s but 32 bits collide).  Another id can be added without a new version.
DIGEST_SIZES: Final = {SHA256: 32}
ALGORITHM_NAMES: Final = {SHA256: "sha256"}
PART_SUFFIX: Final = ".zcio-part"
HEAD_SUFFIX: Final = ".zcio-head"
#: NAME_MAX (255) less the partial file's decoration: "." + name + ".zcio-part".
MAX_NAME: Final = 255 - 1 - len(PART_SUFFIX)
MAX_MESSAGE: Final = 1024

_HEADER = struct.Struct(">4sBBHQ")
_REPLY = struct.Struct(">4sBQH")
_ACCEPT, _VERIFIED, _MISMATCH, _ABORT = 1, 2, 3, 4


class ProtocolError(ZcioError, ValueError):
    """The peer broke the protocol (or is not a zcio peer); the message says how."""


class NeedData(enum.Enum):
    """``next_event()``'s answer when a message is not complete yet."""

    NEED_DATA = "need data"


NEED_DATA: Final = NeedData.NEED_DATA


# -- messages --------------------------------------------------------------------------


def check_name(name: str) -> str:
    """Return ``name`` if it is safe to create in the receiver's directory, else raise.

    A safe name is a base name: 1..MAX_NAME bytes of UTF-8, printable (no control
    characters, so it prints on one line), without ``/`` or NUL, not made of dots only
    (``.``, ``..``), and not ending in the receiver's own suffixes (``.zcio-part``,
    ``.zcio-head``) so one transfer cannot overwrite another's partial file.
    """
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"file name {name!r} is not valid UTF-8") from None
    if not 0 < len(raw) <= MAX_NAME:
        raise ProtocolError(f"file name length {len(raw)} out of range 1..{MAX_NAME} bytes")
    if "/" in name or "\0" in name:
        raise ProtocolError(f"invalid file name {name!r}: a base name cannot contain '/' "
                            "or NUL")
    if not name.strip("."):
        raise ProtocolError(f"invalid file name {name!r}: dots only")
    if not name.isprintable():
        raise ProtocolError(f"invalid file name {name!r}: non-printable characters")
    if name.endswith((PART_SUFFIX, HEAD_SUFFIX)):
        raise ProtocolError(f"invalid file name {name!r}: the suffix is zcio's own")
    return name


@dataclass(frozen=True)
class Header:
    """What the sender announces: the file's base name, size and whole-file digest.

    Construction validates every field (ProtocolError), so a Header in hand is safe.
    """

    name: str
    size: int
    digest: bytes
    algorithm: int = SHA256

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.algorithm not in DIGEST_SIZES:
            raise ProtocolError(f"unknown checksum algorithm {self.algorithm}")
        if not 0 <= self.size < 1 << 64:
            raise ProtocolError(f"size {self.size} out of range")
        if len(self.digest) != DIGEST_SIZES[self.algorithm]:
            raise ProtocolError(f"digest of {len(self.digest)} bytes; "
                                f"{self.algorithm_name} has {DIGEST_SIZES[self.algorithm]}")

    @property
    def algorithm_name(self) -> str:
        return ALGORITHM_NAMES[self.algorithm]

    def encode(self) -> bytes:
        """The header's bytes on the wire (also the receiver's sidecar file)."""
        raw = self.name.encode("utf-8")
        return (_HEADER.pack(MAGIC, VERSION, self.algorithm, len(raw), self.size)
                + raw + self.digest)


@dataclass(frozen=True)
class Accept:
    """The receiver will take the bytes from ``offset`` on (it has the ones before)."""

    offset: int


@dataclass(frozen=True)
class Verified:
    """The receiver's digest of the whole file matched, and the file has its final name."""

    size: int


@dataclass(frozen=True)
class Mismatch:
    """The receiver's digest did not match; it deleted what it had."""

    reason: str


@dataclass(frozen=True)
class Abort:
    """The receiver refused or failed (``reason``) and is closing the connection."""

    reason: str


Reply = Accept | Verified | Mismatch | Abort


def encode_reply(reply: Reply) -> bytes:
    """A reply's bytes on the wire."""
    if isinstance(reply, Accept):
        kind, value, text = _ACCEPT, reply.offset, ""
    elif isinstance(reply, Verified):
        kind, value, text = _VERIFIED, reply.size, ""
    elif isinstance(reply, Mismatch):
        kind, value, text = _MISMATCH, 0, reply.reason
    else:
        kind, value, text = _ABORT, 0, reply.reason
    raw = text.encode("utf-8", "replace")[:MAX_MESSAGE]
    raw = raw.decode("utf-8", "ignore").encode("utf-8")  # never cut a character in two
    return _REPLY.pack(MAGIC, kind, value, len(raw)) + raw


# -- incremental decoding --------------------------------------------------------------


M = TypeVar("M", "Header", "Reply")


class _Reader(Generic[M]):
    """Decode one message kind from bytes arriving in any split.

    ``needed()`` is the exact count that completes the current message: reading no
    more than that never consumes a byte that belongs to what follows.
    """

    what = "message"
    fixed: struct.Struct

    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            self._closed = True
            return
        before = len(self._buf)
        self._buf += data
        if before < len(MAGIC):  # a stranger is recognised by its first byte
            got = bytes(self._buf[: len(MAGIC)])
            if not MAGIC.startswith(got):
                raise ProtocolError(f"not a zcio peer: bad magic {got!r} in the {self.what}")

    def pending(self) -> int:
        """Bytes fed but not yet decoded."""
        return len(self._buf)

    def needed(self) -> int:
        if len(self._buf) < self.fixed.size:
            return self.fixed.size - len(self._buf)
        return max(self._total(self.fixed.unpack_from(self._buf)) - len(self._buf), 0)

    def next_message(self) -> M | NeedData:
        if len(self._buf) < self.fixed.size:
            return self._short(self.fixed.size)
        fields = self.fixed.unpack_from(self._buf)
        total = self._total(fields)
        if len(self._buf) < total:
            return self._short(total)
        body = bytes(self._buf[self.fixed.size : total])
        del self._buf[:total]
        return self._build(fields, body)

    def _short(self, total: int) -> NeedData:
        if self._closed:
            raise ProtocolError(f"connection closed after {len(self._buf)} of {total} "
                                f"{self.what} bytes")
        return NEED_DATA

    def _total(self, fields: tuple[Any, ...]) -> int:
        raise NotImplementedError

    def _build(self, fields: tuple[Any, ...], body: bytes) -> M:
        raise NotImplementedError


class _HeaderReader(_Reader[Header]):
    what = "header"
    fixed = _HEADER

    def _total(self, fields: tuple[Any, ...]) -> int:
        _magic, version, algorithm, name_len, _size = fields
        if version != VERSION:
            raise ProtocolError(f"unsupported protocol version {version} (this zcio speaks "
                                f"{VERSION})")
        if algorithm not in DIGEST_SIZES:
            raise ProtocolError(f"unknown checksum algorithm {algorithm}")
        if not 0 < name_len <= MAX_NAME:
            raise ProtocolError(f"file name length {name_len} out of range 1..{MAX_NAME}")
        return int(self.fixed.size + name_len + DIGEST_SIZES[algorithm])

    def _build(self, fields: tuple[Any, ...], body: bytes) -> Header:
        _magic, _version, algorithm, name_len, size = fields
        try:
            name = body[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"file name {body[:name_len]!r} is not valid UTF-8") from None
        return Header(name, size, body[name_len:], algorithm)


class _ReplyReader(_Reader[Reply]):
    what = "reply"
    fixed = _REPLY

    def _total(self, fields: tuple[Any, ...]) -> int:
        _magic, kind, _value, length = fields
        if kind not in (_ACCEPT, _VERIFIED, _MISMATCH, _ABORT):
            raise ProtocolError(f"unknown reply kind {kind}")
        if length > MAX_MESSAGE:
            raise ProtocolError(f"reply message of {length} bytes (at most {MAX_MESSAGE})")
        return int(self.fixed.size + length)

    def _build(self, fields: tuple[Any, ...], body: bytes) -> Reply:
        _magic, kind, value, _length = fields
        text = body.decode("utf-8", "replace")
        if kind == _ACCEPT:
            return Accept(value)
        if kind == _VERIFIED:
            return Verified(value)
        if kind == _MISMATCH:
            return Mismatch(text)
        return Abort(text)


def _decode_one(reader: _Reader[M], data: bytes) -> M:
    reader.feed(data)
    reader.feed(b"")
    message = reader.next_message()
    assert not isinstance(message, NeedData)  # the reader is closed: it raised instead
    if reader.pending():
        raise ProtocolError(f"{reader.pending()} bytes after the {reader.what}")
    return message


def decode_header(data: bytes) -> Header:
    """Decode exactly one header from ``data`` (a sidecar file); ProtocolError if not."""
    return _decode_one(_HeaderReader(), data)


def decode_reply(data: bytes) -> Reply:
    """Decode exactly one reply from ``data``; ProtocolError if not."""
    return _decode_one(_ReplyReader(), data)


# -- digests --------------------------------------------------------------------------


def new_digest(algorithm: int = SHA256) -> Any:
    """A fresh hash object for ``algorithm`` (hashlib's ``update``/``digest``)."""
    if algorithm != SHA256:
        raise ProtocolError(f"unknown checksum algorithm {algorithm}")
    return hashlib.sha256()


# -- the two sides ---------------------------------------------------------------------


class _State(enum.Enum):
    START = "start"
    AWAIT_HEADER = "awaiting the header"
    DECIDING = "deciding on the header"
    AWAIT_ACCEPT = "awaiting ACCEPT"
    BODY = "moving the body"
    AWAIT_VERDICT = "awaiting the verdict"
    VERIFYING = "verifying"
    DONE = "done"


class Receiver:
    """The receiving side: HEADER in, ACCEPT (or ABORT) out, the body, the verdict out.

    >>> r = Receiver()
    >>> r.receive_data(Header("a.txt", 3, bytes(32)).encode())
    >>> r.next_event().name
    'a.txt'
    >>> r.accept(0)[:4], r.remaining
    (b'ZCIO', 3)
    """

    def __init__(self) -> None:
        self._reader = _HeaderReader()
        self.state = _State.AWAIT_HEADER
        self.header: Header | None = None
        self.offset = 0
        self.remaining = 0

    def needed(self) -> int:
        """How many bytes to read next (0 when this side expects none)."""
        return self._reader.needed() if self.state is _State.AWAIT_HEADER else 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the sender; ``b""`` means it closed."""
        if data and self.state is not _State.AWAIT_HEADER:
            raise ProtocolError(f"unexpected bytes from the sender while {self.state.value}")
        self._reader.feed(data)

    def next_event(self) -> Header | NeedData:
        """The header once complete; NEED_DATA before."""
        if self.state is not _State.AWAIT_HEADER:
            raise ProtocolError(f"no event expected while {self.state.value}")
        header = self._reader.next_message()
        if isinstance(header, NeedData):
            return NEED_DATA
        if self._reader.pending():
            raise ProtocolError("the sender sent data before the receiver's ACCEPT")
        self.header, self.state = header, _State.DECIDING
        return header

    def accept(self, offset: int) -> bytes:
        """Take the body from ``offset`` (0 <= offset <= size); returns ACCEPT's bytes."""
        header = self._expect(_State.DECIDING)
        if not 0 <= offset <= header.size:
            raise ProtocolError(f"offset {offset} out of range 0..{header.size}")
        self.offset, self.remaining = offset, header.size - offset
        self.state = _State.BODY if self.remaining else _State.VERIFYING
        return encode_reply(Accept(offset))

    def body_received(self, n: int) -> None:
        """Count ``n`` body bytes that the I/O layer moved."""
        self._expect(_State.BODY)
        if not 0 <= n <= self.remaining:
            raise ProtocolError(f"{n} body bytes received with {self.remaining} expected")
        self.remaining -= n
        if not self.remaining:
            self.state = _State.VERIFYING

    def verdict(self, ok: bool, reason: str = "") -> bytes:
        """VERIFIED (``ok``) or MISMATCH with ``reason``, once the whole body is in."""
        header = self._expect(_State.VERIFYING)
        self.state = _State.DONE
        return encode_reply(Verified(header.size) if ok else Mismatch(reason))

    def abort(self, reason: str) -> bytes:
        """ABORT with ``reason``, at any point before the verdict."""
        if self.state is _State.DONE:
            raise ProtocolError("the conversation is over")
        self.state = _State.DONE
        return encode_reply(Abort(reason))

    def _expect(self, state: _State) -> Header:
        if self.state is not state:
            raise ProtocolError(f"cannot do that while {self.state.value}")
        assert self.header is not None
        return self.header


class Sender:
    """The sending side: HEADER out, ACCEPT in, the body out, the verdict in.

    Events arrive in order: ACCEPT (or ABORT), then, once ``body_sent`` has counted
    every byte, VERIFIED, MISMATCH or ABORT.  An ABORT may also arrive mid-body.
    Anything out of turn, or an ACCEPT past the size, raises ProtocolError.
    """

    def __init__(self, header: Header) -> None:
        self.header = header
        self._reader = _ReplyReader()
        self.state = _State.START
        self.offset = 0
        self.remaining = 0

    def start(self) -> bytes:
        """The header's bytes, to send first."""
        if self.state is not _State.START:
            raise ProtocolError("the header was already sent")
        self.state = _State.AWAIT_ACCEPT
        return self.header.encode()

    def needed(self) -> int:
        """How many bytes to read to complete the next reply (0 when none is expected)."""
        if self.state in (_State.START, _State.DONE):
            return 0
        return self._reader.needed()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the receiver; ``b""`` means it closed."""
        if data and self.state in (_State.START, _State.DONE):
            raise ProtocolError(f"unexpected bytes from the receiver while {self.state.value}")
        self._reader.feed(data)

    def next_event(self) -> Reply | NeedData:
        """The next reply once complete; NEED_DATA before."""
        reply = self._reader.next_message()
        if isinstance(reply, NeedData):
            return NEED_DATA
        state, size = self.state, self.header.size
        if isinstance(reply, Abort):
            self.state = _State.DONE
        elif isinstance(reply, Accept) and state is _State.AWAIT_ACCEPT:
            if reply.offset > size:
                raise ProtocolError(f"the receiver asked for offset {reply.offset} of a "
                                    f"{size}-byte file")
            self.offset, self.remaining = reply.offset, size - reply.offset
            self.state = _State.BODY if self.remaining else _State.AWAIT_VERDICT
        elif isinstance(reply, Verified | Mismatch) and state is _State.AWAIT_VERDICT:
            if isinstance(reply, Verified) and reply.size != size:
                raise ProtocolError(f"the receiver verified {reply.size} bytes of {size}")
            self.state = _State.DONE
        else:
            raise ProtocolError(f"unexpected {type(reply).__name__.upper()} while "
                                f"{state.value}")
        return reply

    def body_sent(self, n: int) -> None:
        """Count ``n`` body bytes that the I/O layer moved."""
        if self.state is not _State.BODY or not 0 <= n <= self.remaining:
            raise ProtocolError(f"{n} body bytes sent while {self.state.value} with "
                                f"{self.remaining} to go")
        self.remaining -= n
        if not self.remaining:
            self.state = _State.AWAIT_VERDICT

