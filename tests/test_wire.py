"""The send/recv protocol without any I/O: bytes in any split, events out, every bad input."""

from __future__ import annotations

import hashlib
import re
import struct

import pytest

from zcio._dest_dir import partial_name, resume_offset, sidecar_name
from zcio._wire import (
    MAX_MESSAGE,
    MAX_NAME,
    NEED_DATA,
    SHA256,
    Abort,
    Accept,
    Header,
    Mismatch,
    ProtocolError,
    Receiver,
    Sender,
    Verified,
    check_name,
    decode_header,
    decode_reply,
    encode_reply,
)

DIGEST = hashlib.sha256(b"hello").digest()
HEADER = Header("report.pdf", 5, DIGEST)


def raw_header(name: bytes = b"a.txt", size: int = 5, digest: bytes = DIGEST,
               magic: bytes = b"ZCIO", version: int = 1, algorithm: int = SHA256,
               name_len: int | None = None) -> bytes:
    """A header built by hand, so that any field can be wrong."""
    n = len(name) if name_len is None else name_len
    return struct.pack(">4sBBHQ", magic, version, algorithm, n, size) + name + digest


def raw_reply(kind: int, value: int = 0, message: bytes = b"", length: int | None = None,
              magic: bytes = b"ZCIO") -> bytes:
    n = len(message) if length is None else length
    return struct.pack(">4sBQH", magic, kind, value, n) + message


def feed_bytewise(proto: Receiver | Sender, data: bytes) -> list[object]:
    """Feed one byte at a time, reading exactly needed() each time, as the I/O layer does."""
    events: list[object] = []
    pos = 0
    while pos < len(data):
        want = proto.needed()
        assert want > 0, f"needed() is 0 with {len(data) - pos} bytes unread"
        proto.receive_data(data[pos : pos + 1])
        pos += 1
        event = proto.next_event()
        if event is not NEED_DATA:
            events.append(event)
    return events


# -- headers ---------------------------------------------------------------------------


def test_header_round_trip_and_layout() -> None:
    raw = HEADER.encode()
    assert raw[:4] == b"ZCIO" and raw[4] == 1 and raw[5] == SHA256
    assert len(raw) == 16 + len("report.pdf") + 32
    assert decode_header(raw) == HEADER


def test_header_fed_one_byte_at_a_time_never_asks_for_more_than_the_header() -> None:
    raw = Header("ünïcödé name.bin", 1 << 40, DIGEST).encode()
    r = Receiver()
    asked = []
    for i in range(len(raw)):
        asked.append(r.needed())
        r.receive_data(raw[i : i + 1])
        event = r.next_event()
        if i < len(raw) - 1:
            assert event is NEED_DATA
    assert asked[0] == 16  # the fixed part first: nothing beyond it is requested
    assert all(a <= len(raw) - i for i, a in enumerate(asked))
    assert event == Header("ünïcödé name.bin", 1 << 40, DIGEST)
    assert r.needed() == 0


@pytest.mark.parametrize("split", [1, 3, 16, 17, 40, 1000])
def test_header_in_any_split(split: int) -> None:
    raw = HEADER.encode()
    r = Receiver()
    event: object = NEED_DATA
    for i in range(0, len(raw), split):
        r.receive_data(raw[i : i + split])
        event = r.next_event()
    assert event == HEADER


@pytest.mark.parametrize("raw, message", [
    (b"GET / HTTP/1.1\r\n", "bad magic b'G'"),
    (raw_header(magic=b"ZCIX"), "bad magic"),
    (raw_header(version=2), "unsupported protocol version 2"),
    (raw_header(algorithm=9), "unknown checksum algorithm 9"),
    (raw_header(name=b"", name_len=0), "file name length 0"),
    (raw_header(name_len=MAX_NAME + 1), f"file name length {MAX_NAME + 1}"),
    (raw_header(name=b"\xff\xfe.bin"), "not valid UTF-8"),
    (raw_header(name=b"../evil"), "invalid file name '../evil'"),
    (raw_header(name=b"a/b"), "invalid file name 'a/b'"),
    (raw_header(name=b".."), "dots only"),
    (raw_header(name=b"."), "dots only"),
    (raw_header(name=b"x\x00y"), "invalid file name"),
    (raw_header(name=b"evil\nline"), "non-printable"),
    (raw_header(name=b".a.zcio-part"), "the suffix is zcio's own"),
])
def test_malformed_headers_raise_a_clear_protocol_error(raw: bytes, message: str) -> None:
    r = Receiver()
    with pytest.raises(ProtocolError, match=re.escape(message)):
        for i in range(len(raw)):  # byte by byte: the error comes as early as it can
            r.receive_data(raw[i : i + 1])
            r.next_event()


def test_bad_magic_is_caught_on_the_first_byte() -> None:
    r = Receiver()
    with pytest.raises(ProtocolError, match="bad magic b'H'"):
        r.receive_data(b"H")


def test_wrong_digest_length_for_the_algorithm() -> None:
    with pytest.raises(ProtocolError, match="digest of 3 bytes"):
        Header("a", 1, b"abc")
    with pytest.raises(ProtocolError, match="bytes after the header"):
        decode_header(HEADER.encode() + b"!")


def test_eof_mid_header_says_how_far_it_got() -> None:
    r = Receiver()
    r.receive_data(HEADER.encode()[:5])
    assert r.next_event() is NEED_DATA
    r.receive_data(b"")
    with pytest.raises(ProtocolError, match="connection closed after 5 of 16 header bytes"):
        r.next_event()
    r = Receiver()
    r.receive_data(HEADER.encode()[:20])
    r.receive_data(b"")
    with pytest.raises(ProtocolError, match="after 20 of 58 header bytes"):
        r.next_event()


def test_data_before_accept_is_a_protocol_error() -> None:
    r = Receiver()
    r.receive_data(HEADER.encode() + b"body")  # a sender that did not wait for ACCEPT
    with pytest.raises(ProtocolError, match="before the receiver's ACCEPT"):
        r.next_event()


@pytest.mark.parametrize("name", [
    "a", "report.pdf", ".bashrc", "a..b", "x" * MAX_NAME, "日本語.txt", "with space",
])
def test_good_names(name: str) -> None:
    assert check_name(name) == name
    assert partial_name(name) == f".{name}.zcio-part"
    assert sidecar_name(name) == f".{name}.zcio-head"


@pytest.mark.parametrize("name", [
    "", ".", "..", "...", "a/b", "/etc/passwd", "../x", "x\0", "tab\there", "x" * (MAX_NAME + 1),
    "é" * (MAX_NAME // 2 + 1), "\udcff.bin", "f.zcio-head",
])
def test_bad_names(name: str) -> None:
    with pytest.raises(ProtocolError):
        check_name(name)


# -- replies and the two sides ---------------------------------------------------------


@pytest.mark.parametrize("reply", [
    Accept(0), Accept(123), Verified(5), Mismatch("sha256 differs"), Abort("No space left"),
    Abort("é" * 2000),
])
def test_reply_round_trip(reply: object) -> None:
    raw = encode_reply(reply)  # type: ignore[arg-type]
    got = decode_reply(raw)
    if isinstance(reply, Abort) and len(reply.reason.encode()) > MAX_MESSAGE:
        assert isinstance(got, Abort) and reply.reason.startswith(got.reason)
        assert len(got.reason.encode()) <= MAX_MESSAGE  # cut, never mid-character
    else:
        assert got == reply


@pytest.mark.parametrize("raw, message", [
    (b"HTTP/1.1 400 Bad Request\r\n", "bad magic b'H'"),
    (raw_reply(9), "unknown reply kind 9"),
    (raw_reply(4, length=MAX_MESSAGE + 1), "reply message of 1025 bytes"),
])
def test_malformed_replies(raw: bytes, message: str) -> None:
    s = Sender(HEADER)
    s.start()
    with pytest.raises(ProtocolError, match=message):
        feed_bytewise(s, raw)


def test_a_whole_conversation_byte_by_byte() -> None:
    s, r = Sender(HEADER), Receiver()
    [header] = feed_bytewise(r, s.start())
    assert header == HEADER and r.needed() == 0
    [accept] = feed_bytewise(s, r.accept(2))
    assert accept == Accept(2) and s.remaining == r.remaining == 3
    assert s.needed() > 0  # an ABORT may come at any time
    s.body_sent(1)
    r.body_received(1)
    s.body_sent(2)
    r.body_received(2)
    [verdict] = feed_bytewise(s, r.verdict(True))
    assert verdict == Verified(5)
    assert s.needed() == r.needed() == 0


def test_accept_at_the_end_skips_the_body() -> None:
    s, r = Sender(HEADER), Receiver()
    feed_bytewise(r, s.start())
    feed_bytewise(s, r.accept(5))
    assert s.remaining == 0
    [verdict] = feed_bytewise(s, r.verdict(False, "sha256 differs"))
    assert verdict == Mismatch("sha256 differs")


def test_abort_mid_body_is_an_event() -> None:
    s, r = Sender(HEADER), Receiver()
    feed_bytewise(r, s.start())
    feed_bytewise(s, r.accept(0))
    s.body_sent(2)
    r.body_received(2)
    [event] = feed_bytewise(s, r.abort("No space left on device"))
    assert event == Abort("No space left on device")
    with pytest.raises(ProtocolError, match="over"):
        r.abort("again")


@pytest.mark.parametrize("reply, message", [
    (Accept(6), "offset 6 of a 5-byte file"),
    (Verified(5), "unexpected VERIFIED while awaiting ACCEPT"),
    (Mismatch("x"), "unexpected MISMATCH"),
])
def test_sender_rejects_replies_out_of_turn(reply: object, message: str) -> None:
    s = Sender(HEADER)
    s.start()
    s.receive_data(encode_reply(reply))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=message):
        s.next_event()


def test_sender_rejects_a_verdict_before_the_body_and_a_wrong_size() -> None:
    s = Sender(HEADER)
    s.start()
    s.receive_data(encode_reply(Accept(0)))
    s.next_event()
    s.receive_data(encode_reply(Verified(5)))
    with pytest.raises(ProtocolError, match="VERIFIED while moving the body"):
        s.next_event()
    s = Sender(HEADER)
    s.start()
    s.receive_data(encode_reply(Accept(5)))
    s.next_event()
    s.receive_data(encode_reply(Verified(4)))
    with pytest.raises(ProtocolError, match="verified 4 bytes of 5"):
        s.next_event()


def test_receiver_enforces_its_own_order() -> None:
    r = Receiver()
    with pytest.raises(ProtocolError, match="awaiting the header"):
        r.accept(0)
    r.receive_data(HEADER.encode())
    r.next_event()
    with pytest.raises(ProtocolError, match=r"out of range 0\.\.5"):
        r.accept(6)
    r.accept(0)
    with pytest.raises(ProtocolError, match="cannot do that while moving the body"):
        r.verdict(True)
    with pytest.raises(ProtocolError, match="6 body bytes received with 5 expected"):
        r.body_received(6)
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        r.receive_data(b"x")


def test_sender_counts_its_body() -> None:
    s = Sender(HEADER)
    with pytest.raises(ProtocolError):
        s.body_sent(1)
    s.start()
    with pytest.raises(ProtocolError, match="already sent"):
        s.start()
    s.receive_data(encode_reply(Accept(0)))
    s.next_event()
    with pytest.raises(ProtocolError, match="6 body bytes sent"):
        s.body_sent(6)


# -- resuming --------------------------------------------------------------------------


def test_resume_only_the_same_file() -> None:
    side = HEADER.encode()
    assert resume_offset(HEADER, side, 3) == 3
    assert resume_offset(HEADER, side, 5) == 5  # complete: only verification is left
    assert resume_offset(HEADER, side, 0) == 0
    assert resume_offset(HEADER, None, 3) == 0
    assert resume_offset(HEADER, side, None) == 0
    assert resume_offset(HEADER, side, 6) == 0  # longer than the file: start over
    other = Header("report.pdf", 5, hashlib.sha256(b"world").digest()).encode()
    assert resume_offset(HEADER, other, 3) == 0  # same name and size, other content
    assert resume_offset(HEADER, Header("report.pdf", 6, DIGEST).encode(), 3) == 0
    assert resume_offset(HEADER, b"garbage", 3) == 0
    assert resume_offset(HEADER, side[:-1], 3) == 0  # a torn sidecar
