"""zcio's Selector against java.nio's (JDK 17): scripted scenarios must print alike.

``tests/jdk/SelectorOracle.java`` runs every scenario below in one JVM; :class:`ZcioRunner`
runs each on zcio; every operation's result line must be equal.  A scenario is a list of
operations on named selectors and channels, one a line::

    selector S                 open a selector
    server V                   a ServerSocketChannel bound to loopback, non-blocking
    connect C P V              C connected to server V, P the accepted end; both non-blocking
    refused C                  C non-blocking, connecting to a loopback port nothing listens
                               on (prints connect's result)
    pending C V                C non-blocking, connecting to V
    accept P V                 P the next connection V accepts, non-blocking
    open C                     an unconnected, blocking SocketChannel
    pipe A B                   a pipe: source A, sink B, both non-blocking
    blocking C true|false      configure_blocking
    register C S OPS [ATT]     prints the key (as ``key``) or the exception
    key C S                    key_for: ``none``, ``cancelled ATT`` or ``valid I R ATT``;
                               then is_registered
    interest C S OPS | ready C S | cancel C S      on key_for(S)
    interestor C S OPS | interestand C S OPS       print the previous interest set
    close X                    a channel or a selector
    send C N | recv C | shutout C | shutin C | finish C
    reset C                    SO_LINGER 0, then close: the peer gets a RST
    select S                   select with a 5 s timeout (the scenarios make something
                               ready: nothing here waits it out)
    now S                      select_now
    keys S | selected S        the set as sorted ``NAME:INTEREST:READY`` (``NAME:c`` when
                               cancelled)
    addselected S C | addkeys S C | removekeys S C | removeselected S C | clearselected S

Result lines: ``ok [VALUE]`` or ``ex NAME``, Java's exception names mapped to zcio's
(``...Exception`` -> ``...Error``; ConnectException and SocketException, thrown here only
for a refused connect and a reset, are ConnectionRefusedError and ConnectionResetError).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from jdk_oracle import compile_java, require_java_tools
from zcio import ByteBuffer, Pipe, ServerSocketChannel, SocketChannel
from zcio._selectable import SelectableChannel
from zcio._selector import SelectionKey, Selector

pytestmark = pytest.mark.jdk

JAVA_SOURCE = Path(__file__).with_name("jdk") / "SelectorOracle.java"
LOOPBACK = "127.0.0.1"
SELECT_TIMEOUT = 5.0
# Java throws these where CPython raises the errno's OSError subclass.
JAVA_NAMES = {
    "ConnectException": "ConnectionRefusedError",
    "SocketException": "ConnectionResetError",
}

# The items 4-9, and the rules around them.  READ 1, WRITE 4, CONNECT 8, ACCEPT 16.
SCENARIOS: dict[str, str] = {
    # 4: a failed connect registered for OP_WRITE only is selected, with OP_WRITE ready.
    "refused-write": """
        selector s | refused c | register c s 4 | select s | selected s | now s
        finish c | key c s | keys s | now s | keys s | key c s
    """,
    # 5: on an error or hang-up the ready set is the whole interest set.
    "refused-all": "selector s | refused c | register c s 13 | select s | selected s",
    "refused-connect": "selector s | refused c | register c s 8 | select s | selected s",
    "refused-read": "selector s | refused c | register c s 1 | select s | selected s",
    "reset-all": """
        selector s | server v | connect c p v | register c s 13 | now s | selected s
        clearselected s | reset p | select s | selected s | recv c
    """,
    # An error replaces the ready set of a key still selected (ready 4, interest now 1).
    "reset-while-selected": """
        selector s | server v | connect c p v | register c s 4 | now s | interest c s 1
        reset p | select s | selected s | now s
    """,
    "unconnected-socket": """
        selector s | open c | blocking c false | register c s 5 | now s | selected s
    """,
    "half-close": """
        selector s | server v | connect c p v | register c s 13 | now s | clearselected s
        shutout p | select s | selected s | clearselected s | shutout c | select s
        selected s | recv c
    """,
    "shutdown-input": """
        selector s | server v | connect c p v | register c s 1 | now s | shutin c
        select s | selected s | recv c
    """,
    "server-closed-while-registered": """
        selector s | server v | register v s 16 | close v | key v s | keys s | now s
        keys s | key v s
    """,
    "pipe-writer-gone": """
        selector s | pipe a b | register a s 1 | register b s 4 | now s | selected s
        clearselected s | close b | select s | selected s
    """,
    "pipe-reader-gone": """
        selector s | pipe a b | register b s 4 | now s | clearselected s | close a
        select s | selected s
    """,
    "empty-interest-ignores-errors": """
        selector s | server v | connect c p v | register c s 0 | reset p | now s
        interest c s 1 | select s | selected s
    """,
    "pending-connect": """
        selector s | server v | pending c v | register c s 12 | select s | selected s
        finish c | clearselected s | now s | selected s
    """,
    # Java reports OP_READ only once connected: data that arrives before finish_connect()
    # leaves the ready set at OP_CONNECT.
    "data-before-finish-connect": """
        selector s | server v | pending c v | accept p v | send p 3 | register c s 9
        select s | selected s | finish c | clearselected s | now s | selected s | recv c
    """,
    "accept-readiness": """
        selector s | server v | register v s 16 | now s | pending c v | select s
        selected s | accept p v | clearselected s | now s | keys s
    """,
    "readiness-accumulates": """
        selector s | server v | connect c p v | register c s 4 | now s | interest c s 5
        send p 3 | select s | selected s | now s | removeselected s c | now s | selected s
    """,
    # 7: a cancelled key stays until the next select; registering before it fails.
    "cancel-then-register": """
        selector s | server v | connect c p v | register c s 1 x | cancel c s | cancel c s
        keys s | key c s | register c s 1 y | key c s | interest c s 16 | ready c s
        blocking c true | blocking c false | now s | keys s | key c s | register c s 1
        keys s
    """,
    "cancel-selected-key": """
        selector s | server v | connect c p v | register c s 4 | now s | cancel c s
        selected s | keys s | now s | selected s | keys s
    """,
    "close-channel-then-select": """
        selector s | server v | connect c p v | register c s 1 | close c | key c s
        keys s | register c s 1 | now s | keys s | key c s
    """,
    "closed-channel-number-reused": """
        selector s | server v | connect c p v | register c s 1 | close c | open d
        blocking d false | register d s 4 | keys s | now s | keys s | selected s
    """,
    "two-selectors": """
        selector s | selector t | server v | connect c p v | register c s 1
        register c t 4 | cancel c s | key c s | key c t | now s | key c s | key c t
        close t | key c t | register c s 4 a | now s | selected s
    """,
    "closed-selector": """
        selector s | server v | connect c p v | register c s 1 | close s | close s
        key c s | keys s | selected s | now s | select s | register c s 1
        blocking c true
    """,
    "register-updates-the-key": """
        selector s | server v | connect c p v | register c s 1 a | register c s 5 b
        key c s | register c s 0 | key c s | register c s 2 | interest c s 16 | key c s
    """,
    "interest-or-and": """
        selector s | server v | connect c p v | register c s 1 | interestor c s 4
        interestor c s 16 | interestand c s 21 | interestand c s 0 | key c s
        interestor c s 13 | cancel c s | interestor c s 16 | interestand c s 1
    """,
    # 9: Java's check order, and the key sets refuse additions.
    "register-check-order": """
        selector s | open c | register c s 16 | close c | register c s 16
        register c s 1 | open d | register d s 1 | close s | register d s 16
        register d s 1 | blocking d false | register d s 1
    """,
    "key-sets-refuse-additions": """
        selector s | server v | connect c p v | register c s 4 | now s
        addselected s c | addkeys s c | removekeys s c | selected s
        removeselected s c | selected s | removeselected s c | now s | clearselected s
        selected s | keys s
    """,
}


def parse(script: str) -> list[str]:
    return [op.strip() for line in script.splitlines() for op in line.split("|") if op.strip()]


def java_exception_name(name: str) -> str:
    if name in JAVA_NAMES:
        return JAVA_NAMES[name]
    return name.removesuffix("Exception") + "Error" if name.endswith("Exception") else name


def run_java(classes: Path, scenarios: dict[str, list[str]]) -> dict[str, list[str]]:
    """Java's result lines per scenario, from one JVM."""
    text = "".join(f"SEQ {name}\n" + "".join(f"{op}\n" for op in ops)
                   for name, ops in scenarios.items())
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", str(classes),
           "SelectorOracle"]
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"SelectorOracle failed ({done.returncode}):\n{done.stderr}")
    outputs: dict[str, list[str]] = {}
    current: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith("SEQ "):
            current = outputs.setdefault(line.removeprefix("SEQ "), [])
        elif line.startswith("ex "):
            current.append("ex " + java_exception_name(line.removeprefix("ex ")))
        else:
            current.append(line)
    return outputs


class ZcioRunner:
    """Runs one scenario on zcio, printing what SelectorOracle.java prints."""

    def __init__(self) -> None:
        self.selectors: dict[str, Selector] = {}
        self.channels: dict[str, SelectableChannel] = {}
        self.names: dict[int, str] = {}

    def run(self, ops: list[str]) -> list[str]:
        try:
            return [self.result(op.split()) for op in ops]
        finally:
            for ch in self.channels.values():
                ch.close()
            for sel in self.selectors.values():
                sel.close()

    def result(self, t: list[str]) -> str:
        try:
            value = self.op(t)
        except Exception as e:  # the name is the result
            return f"ex {type(e).__name__}"
        return "ok" if value is None else f"ok {value}".rstrip()

    def add(self, name: str, ch: SelectableChannel) -> Any:
        self.channels[name] = ch
        self.names[id(ch)] = name
        return ch

    def sock(self, name: str) -> SocketChannel:
        ch = self.channels[name]
        assert isinstance(ch, SocketChannel)
        return ch

    def server(self, name: str) -> ServerSocketChannel:
        ch = self.channels[name]
        assert isinstance(ch, ServerSocketChannel)
        return ch

    def key(self, ch: str, sel: str) -> SelectionKey:
        key = self.channels[ch].key_for(self.selectors[sel])
        assert key is not None, f"no key for {ch} in {sel}"
        return key

    @staticmethod
    def accept(server: ServerSocketChannel) -> SocketChannel:
        """The next connection, non-blocking (waits for it, as the Java side spins)."""
        deadline = time.monotonic() + SELECT_TIMEOUT
        while (accepted := server.accept()) is None:
            assert time.monotonic() < deadline, "the connection was never accepted"
            time.sleep(0.001)
        return accepted.configure_blocking(False)

    @staticmethod
    def describe(key: SelectionKey | None) -> str:
        if key is None:
            return "none"
        att = "null" if key.attachment() is None else str(key.attachment())
        if not key.is_valid():
            return f"cancelled {att}"
        return f"valid {key.interest_ops()} {key.ready_ops()} {att}"

    def key_list(self, keys: Iterable[SelectionKey]) -> str:
        listed = {}
        for k in keys:
            name = self.names[id(k.channel())]
            listed[name] = f"{name}:{k.interest_ops()}:{k.ready_ops()}" if k.is_valid() \
                else f"{name}:c"
        return " ".join(listed[n] for n in sorted(listed))

    def op(self, t: list[str]) -> object:
        name = t[0]
        if name == "selector":
            self.selectors[t[1]] = Selector.open()
        elif name == "server":
            self.add(t[1], ServerSocketChannel.open().bind((LOOPBACK, 0)))
            self.channels[t[1]].configure_blocking(False)
        elif name == "connect":
            server = self.server(t[3])
            c = self.add(t[1], SocketChannel.open(server.local_address()))
            self.add(t[2], self.accept(server))
            c.configure_blocking(False)
        elif name == "accept":
            self.add(t[1], self.accept(self.server(t[2])))
        elif name == "refused":
            with ServerSocketChannel.open().bind((LOOPBACK, 0)) as tmp:
                bound = tmp.local_address()
            assert bound is not None
            port = bound[1]
            c = self.add(t[1], SocketChannel.open())
            c.configure_blocking(False)
            return str(c.connect((LOOPBACK, port))).lower()
        elif name == "pending":
            c = self.add(t[1], SocketChannel.open())
            c.configure_blocking(False)
            c.connect(self.server(t[2]).local_address())
        elif name == "open":
            self.add(t[1], SocketChannel.open())
        elif name == "pipe":
            pipe = Pipe.open()
            self.add(t[1], pipe.source()).configure_blocking(False)
            self.add(t[2], pipe.sink()).configure_blocking(False)
        elif name == "blocking":
            self.channels[t[1]].configure_blocking(t[2] == "true")
        elif name == "register":
            attachment = t[4] if len(t) > 4 else None
            sel = self.selectors[t[2]]
            return self.describe(self.channels[t[1]].register(sel, int(t[3]), attachment))
        elif name == "key":
            ch = self.channels[t[1]]
            registered = str(ch.is_registered()).lower()
            return f"{self.describe(ch.key_for(self.selectors[t[2]]))} {registered}"
        elif name == "interest":
            self.key(t[1], t[2]).interest_ops(int(t[3]))
        elif name == "interestor":
            return self.key(t[1], t[2]).interest_ops_or(int(t[3]))
        elif name == "interestand":
            return self.key(t[1], t[2]).interest_ops_and(int(t[3]))
        elif name == "ready":
            return self.key(t[1], t[2]).ready_ops()
        elif name == "cancel":
            self.key(t[1], t[2]).cancel()
        elif name == "close":
            (self.selectors.get(t[1]) or self.channels[t[1]]).close()
        elif name == "send":
            return self.sock(t[1]).write(ByteBuffer.wrap(bytes(int(t[2]))))
        elif name == "recv":
            return self.sock(t[1]).read(ByteBuffer.allocate(64))
        elif name == "shutout":
            self.sock(t[1]).shutdown_output()
        elif name == "shutin":
            self.sock(t[1]).shutdown_input()
        elif name == "reset":
            self.sock(t[1]).set_option(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.sock(t[1]).close()
        elif name == "finish":
            return str(self.sock(t[1]).finish_connect()).lower()
        elif name == "select":
            return self.selectors[t[1]].select(SELECT_TIMEOUT)
        elif name == "now":
            return self.selectors[t[1]].select_now()
        elif name == "keys":
            return self.key_list(self.selectors[t[1]].keys())
        elif name == "selected":
            return self.key_list(self.selectors[t[1]].selected_keys())
        elif name == "addselected":
            self.selectors[t[1]].selected_keys().add(self.key(t[2], t[1]))
            return "true"
        elif name == "addkeys":
            self.selectors[t[1]].keys().add(self.key(t[2], t[1]))  # type: ignore[attr-defined]
            return "true"
        elif name == "removekeys":
            self.selectors[t[1]].keys().remove(self.key(t[2], t[1]))  # type: ignore[attr-defined]
            return "true"
        elif name == "removeselected":
            try:
                self.selectors[t[1]].selected_keys().remove(self.key(t[2], t[1]))
            except KeyError:
                return "false"
            return "true"
        elif name == "clearselected":
            selected = self.selectors[t[1]].selected_keys()
            count = len(selected)
            selected.clear()
            return count
        else:
            raise AssertionError(f"unknown operation {name}")
        return None


@pytest.fixture(scope="module")
def java_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    require_java_tools()
    classes = tmp_path_factory.mktemp("selector-oracle")
    compile_java(JAVA_SOURCE, classes)
    return run_java(classes, {name: parse(script) for name, script in SCENARIOS.items()})


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_matches_java(java_results: dict[str, list[str]], name: str) -> None:
    ops = parse(SCENARIOS[name])
    java = java_results[name]
    got = ZcioRunner().run(ops)
    assert len(java) == len(ops), f"Java answered {len(java)} of {len(ops)} operations"
    diffs = [f"  {op:<28} java: {j:<28} zcio: {z}"
             for op, j, z in zip(ops, java, got, strict=True) if j != z]
    table = "\n".join(f"  {op:<28} {j}" for op, j in zip(ops, java, strict=True))
    assert not diffs, f"{name} differs from Java:\n" + "\n".join(diffs) + f"\nJava:\n{table}"
