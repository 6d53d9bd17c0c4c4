"""zcio's FileChannel against java.nio's (JDK 17): random operation sequences must agree.

Each sequence opens channels on small files (two in a temporary directory, one on
``/dev/shm``, another file system, and one that does not exist yet) and reads, writes,
scatters, gathers, truncates, forces, transfers (zcio on a forced rung or its default
ladder), maps, locks and closes.  Every result or exception, every channel's position
and every file's size and CRC after each operation must equal Java's.  The seed is
printed; rerun one with ``ZCIO_JDK_SEED=<seed>``.  ``ZCIO_JDK_FILE_SEQUENCES`` (default
300) sets how many sequences run, in JVMs of 150.  The grammar, generator and runner
are in ``tests/jdk_file_oracle.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jdk_file_oracle import JAVA_SOURCE, FileRunner, Generator, other_filesystem
from jdk_oracle import (
    SEED_VARIABLE,
    JavaOracle,
    Mismatch,
    announce_seed,
    first_mismatch,
    missing_java_tools,
    shrink,
)

pytestmark = pytest.mark.jdk

SEQUENCES = int(os.environ.get("ZCIO_JDK_FILE_SEQUENCES", "300"))
BATCH = 150
SHRUNK_PER_FAILURE = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JavaOracle, FileRunner]]:
    """The compiled oracle and the zcio runner, each with its own two directories."""
    missing = missing_java_tools()
    if missing:
        reason = f"JDK differential tests need {' and '.join(missing)} on PATH (JDK 17)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    shm = other_filesystem()
    if shm is None:
        pytest.skip("no writable /dev/shm: cross-file-system transfers need a tmpfs")
    shm_roots = [Path(tempfile.mkdtemp(prefix=f"zcio-jdk-{who}-", dir=shm))
                 for who in ("java", "zcio")]
    try:
        compiled = JavaOracle.compile(tmp_path_factory.mktemp("jdk-file-oracle"), JAVA_SOURCE)
        java = JavaOracle(compiled.classes, compiled.main,
                          (str(tmp_path_factory.mktemp("java-files")), str(shm_roots[0])))
        yield java, FileRunner(tmp_path_factory.mktemp("zcio-files"), shm_roots[1])
    finally:
        for root in shm_roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def seed(request: pytest.FixtureRequest) -> int:
    return announce_seed(request, "JDK FileChannel differential")


def _report(oracle: JavaOracle, runner: FileRunner, seed: int, batch: int, total: int,
            failures: list[tuple[int, Mismatch]]) -> str:
    by_signature: dict[tuple[str, str], list[tuple[int, Mismatch]]] = {}
    for i, found in failures:
        by_signature.setdefault(found.signature, []).append((i, found))
    report = [f"{len(failures)} of {total} sequences differ from Java (batch {batch}, "
              f"{SEED_VARIABLE}={seed}); {len(by_signature)} distinct:"]
    for n, ((op, which), group) in enumerate(by_signature.items()):
        i, found = min(group, key=lambda item: len(item[1].ops))
        if n < SHRUNK_PER_FAILURE:
            small = shrink(oracle, found, runner)
            report += [f"--- {op} {which}: {len(group)} sequences; #{i} shrunk to "
                       f"{len(small.ops)} ops", small.describe()]
        else:
            report.append(f"--- {op} {which}: {len(group)} sequences, e.g. #{i}")
    return "\n".join(report)


@pytest.mark.parametrize("batch", range(max(1, -(-SEQUENCES // BATCH))))
def test_file_channel_sequences(setup: tuple[JavaOracle, FileRunner], seed: int,
                                batch: int) -> None:
    oracle, runner = setup
    rng = random.Random(f"{seed}/files-{batch}")
    count = min(BATCH, SEQUENCES - batch * BATCH) if SEQUENCES > BATCH else SEQUENCES
    sequences = [Generator(rng).sequence() for _ in range(count)]
    failures: list[tuple[int, Mismatch]] = []
    for i, (seq, java) in enumerate(zip(sequences, oracle.run(sequences), strict=True)):
        found = first_mismatch(seq, java, runner)
        if found is not None:
            failures.append((i, found))
    if failures:
        pytest.fail(_report(oracle, runner, seed, batch, len(sequences), failures),
                    pytrace=False)


# Pinned sequences: each was a divergence the random run found (issue 9), kept as a
# regression check that does not depend on the seed.
PINNED = {
    "same-file transfer_from copies the original bytes, moves only the source position": [
        "files 30313233343536373839 - -", "open a READ,WRITE", "tfrom 0 0 2 8 -",
        "tfrom 0 0 0 4611686018427387904 -", "setpos 0 1", "tfrom 0 0 0 4611686018427387904 -",
    ],
    "transfer_from keeps the destination position on every rung": [
        "files 30313233343536373839 6162636465 6869",
        "open a READ,WRITE", "open b READ", "open s READ", "setpos 0 3",
        "tfrom 0 1 1 3 copy_file_range", "tfrom 0 1 1 3 sendfile", "setpos 1 0",
        "tfrom 0 1 4 3 splice", "tfrom 0 2 2 9 sendfile", "tfrom 0 2 2 9 copy_file_range",
        "setpos 2 0", "tfrom 0 2 0 9 mmap_write", "setpos 1 1", "tfrom 0 1 9 9 read_write",
        "tfrom 0 0 1 5 sendfile", "tfrom 0 0 7 5 copy_file_range",
    ],
    "transfer_from checks in Java's order": [
        "files 3031 - -", "open a READ", "open b WRITE", "open b READ,WRITE", "close 2",
        "tfrom 0 2 -1 1 -", "tfrom 1 0 -1 1 -", "tfrom 1 0 5 1 -", "tfrom 1 2 -1 1 -",
        "tfrom 1 1 0 1 -",
    ],
    "map checks in Java's order and grows sparse": [
        "files 3031 - -", "open a READ", "open a READ,WRITE", "close 0",
        "map 0 READ_WRITE -1 1", "map 1 READ_ONLY 9223372036854775800 100",
        "map 1 READ_ONLY -1 -1", "map 1 PRIVATE 70 5", "map 1 READ_ONLY 1048576 4096",
        "open a READ", "map 2 READ_ONLY 9223372036854775800 100", "map 2 READ_WRITE 0 1",
        "map 2 READ_ONLY 0 99999999",
    ],
    "lock ranges, release after close, lock after close with a live mapping": [
        "files 3031 - -", "open a READ,WRITE", "open a READ,WRITE",
        "lock 0 5 9223372036854775807 false", "lock 0 9223372036854775800 100 false",
        "trylock 0 0 0 true", "map 0 READ_WRITE 0 2", "lock 0 0 10 false", "close 0",
        "release 2", "lvalid 2", "trylock 1 0 10 false", "release 3", "lock 1 0 10 false",
    ],
}


@pytest.mark.parametrize("name", list(PINNED))
def test_pinned_sequence(setup: tuple[JavaOracle, FileRunner], name: str) -> None:
    oracle, runner = setup
    seq = PINNED[name]
    java = oracle.run([seq])[0]
    found = first_mismatch(seq, java, runner)
    assert found is None, f"{name}:\n{found.describe()}"


def test_a_difference_is_reported(setup: tuple[JavaOracle, FileRunner]) -> None:
    """The comparison fails on a wrong result and on a wrong state alone."""
    oracle, runner = setup
    seq = ["files 3031 - -", "open a READ,WRITE", "write 0 41"]
    java = oracle.run([seq])[0]
    assert first_mismatch(seq, java, runner) is None
    wrong_result = [*java[:4], "ok 2 1", java[5]]
    wrong_state = [*java[:5], java[5].replace("st 1", "st 2")]
    for doctored in (wrong_result, wrong_state):
        found = first_mismatch(seq, doctored, runner)
        assert found is not None and found.ops == tuple(seq)


def test_sequences_are_reproducible() -> None:
    def make() -> list[list[str]]:
        rng = random.Random("42/files-0")
        return [Generator(rng).sequence() for _ in range(20)]

    assert make() == make()
