"""zcio against java.nio (JDK 17): random operation sequences must behave alike.

Every operation's result or exception and the whole state after it (indexes, order,
read-only, direct, every element and the root's bytes) must equal Java's.  The seed is
printed and quoted in every failure; rerun one with ``ZCIO_JDK_SEED=<seed>``.
``ZCIO_JDK_BATCH_SIZE`` (default 150) sets the sequences per batch, one JVM per batch;
``ZCIO_JDK_VIEW_BATCHES`` (default 1) the batches per typed view type.
The protocol and the generator are in ``tests/jdk_oracle.py``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from jdk_oracle import (
    SEED_VARIABLE,
    TYPE_SIZES,
    Generator,
    JavaOracle,
    Mismatch,
    announce_seed,
    first_mismatch,
    require_java_tools,
    shrink,
)

pytestmark = pytest.mark.jdk

BATCH_SIZE = int(os.environ.get("ZCIO_JDK_BATCH_SIZE", "150"))
BYTE_BATCHES = 4
VIEW_BATCHES = int(os.environ.get("ZCIO_JDK_VIEW_BATCHES", "1"))
SHRUNK_PER_FAILURE = 5  # distinct mismatches shrunk and shown per failing batch


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> JavaOracle:
    require_java_tools()
    return JavaOracle.compile(tmp_path_factory.mktemp("jdk-oracle"))


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest) -> int:
    """The run's seed, written to the terminal even when output is captured."""
    return announce_seed(request, "JDK differential tests")


def _check_batch(
    oracle: JavaOracle, seed: int, name: str, make: Callable[[Generator], list[str]]
) -> None:
    rng = random.Random(f"{seed}/{name}")
    sequences = [make(Generator(rng)) for _ in range(BATCH_SIZE)]
    failures: list[tuple[int, Mismatch]] = []
    for i, (seq, java) in enumerate(zip(sequences, oracle.run(sequences), strict=True)):
        found = first_mismatch(seq, java)
        if found is not None:
            failures.append((i, found))
    if not failures:
        return
    by_signature: dict[tuple[str, str], list[tuple[int, Mismatch]]] = {}
    for i, found in failures:
        by_signature.setdefault(found.signature, []).append((i, found))
    report = [
        f"{len(failures)} of {len(sequences)} sequences differ from Java "
        f"(batch {name}, {SEED_VARIABLE}={seed}); {len(by_signature)} distinct:"
    ]
    for n, ((op, which), group) in enumerate(by_signature.items()):
        i, found = min(group, key=lambda item: len(item[1].ops))
        if n < SHRUNK_PER_FAILURE:
            small = shrink(oracle, found)
            title = f"{op} {which}: {len(group)} sequences; #{i} shrunk to {len(small.ops)} ops"
            report += [f"--- {title}", small.describe()]
        else:
            report.append(f"--- {op} {which}: {len(group)} sequences, e.g. #{i}")
    pytest.fail("\n".join(report), pytrace=False)


@pytest.mark.parametrize("batch", range(BYTE_BATCHES))
def test_byte_buffer_sequences(oracle: JavaOracle, seed: int, batch: int) -> None:
    _check_batch(oracle, seed, f"bytes-{batch}", Generator.byte_sequence)


@pytest.mark.parametrize("batch", range(VIEW_BATCHES))
@pytest.mark.parametrize("kind", list(TYPE_SIZES))
def test_typed_view_sequences(oracle: JavaOracle, seed: int, kind: str, batch: int) -> None:
    """Views of every type over heap, direct, wrapped and read-only parents, offset by
    any byte (remaining not a multiple of the element size), either order: every op,
    bulk transfers from arrays and from views overlapping this one, NaN payloads by
    their raw bits, -0.0, lone surrogates and pairs."""
    _check_batch(oracle, seed, f"views-{kind}-{batch}", lambda g: g.view_sequence(kind))


def test_oracle_reports_results_and_state(oracle: JavaOracle) -> None:
    """The protocol itself, pinned on a known sequence (independent of zcio)."""
    seq = ["wrap3 00010203 1 2", "order= LITTLE", "putT short -2", "get", "view char k"]
    assert oracle.run([seq]) == [[
        "ok this", "st 1 3 4 BIG_ENDIAN false false 00010203 00010203",
        "ok this", "st 1 3 4 LITTLE_ENDIAN false false 00010203 00010203",
        "ok this", "st 3 3 4 LITTLE_ENDIAN false false 00feff03 00feff03",
        "ex BufferUnderflowError", "st 3 3 4 LITTLE_ENDIAN false false 00feff03 00feff03",
        "ok buf 0 0 0 LITTLE_ENDIAN false false -", "st 3 3 4 LITTLE_ENDIAN false false "
        "00feff03 00feff03",
    ]]


# What the typed-view batches found, pinned: each sequence differed from Java before its
# fix, but the double one, a guard (struct keeps a double's bits; a float's it did not).
FOUND_IN_VIEWS = {
    "float NaN payload and quiet bit through get, put and bulk": [
        "allocate 16", "view float s", "put s7f800001", "put@ 1 sffa00001", "get@ 0", "get@ 1",
        "putArrV@ 2 s7f800001,sff800001 0 2", "getArrV 4",
    ],
    "double NaN payloads": [
        "direct 16", "order= LITTLE", "view double s", "put 7ff0000000000001",
        "put fff8000000000123", "flip", "get", "get",
    ],
    "put(view) copies bytes, swapped, from an overlapping view": [
        "wrap 7f8000017fc0000201020304ff800005", "view float s", "putBufV p LITTLE 2 0 3",
    ],
    "absolute put(index, view, offset, length): bounds before read-only": [
        "allocate 8", "asReadOnly s", "view int s", "putBufV@ 1 dup 0 2 0 2",
        "putBufV@ 0 dup 0 2 1 2", "putBufV@ 0 dup 0 2 0 2",
    ],
    "put(String) writes UTF-16 code units; toString joins pairs": [
        "allocate 14", "view char s", "putStr 41,1f600,d800", "put ude00", "put udc00",
        "flip", "toString",
    ],
}


@pytest.mark.parametrize("name", list(FOUND_IN_VIEWS))
def test_found_divergences_stay_fixed(oracle: JavaOracle, name: str) -> None:
    seq = FOUND_IN_VIEWS[name]
    found = first_mismatch(seq, oracle.run([seq])[0])
    assert found is None, f"{name}:\n{found.describe()}"


def test_a_difference_is_reported(oracle: JavaOracle) -> None:
    """The comparison fails on a wrong result and on a wrong state alone."""
    seq = ["allocate 2", "put 5", "get@ 0"]
    java = oracle.run([seq])[0]
    assert first_mismatch(seq, java) is None, "zcio differs on the simplest sequence"
    wrong_result = [*java[:4], "ok 6", java[5]]
    wrong_state = [*java[:5], java[5].replace("0500", "0600")]
    for doctored in (wrong_result, wrong_state):
        found = first_mismatch(seq, doctored)
        assert found is not None
        assert found.ops == tuple(seq)


def test_sequences_are_reproducible() -> None:
    def make() -> list[list[str]]:
        rng = random.Random("42/bytes-0")
        return [Generator(rng).byte_sequence() for _ in range(20)]

    assert make() == make()

