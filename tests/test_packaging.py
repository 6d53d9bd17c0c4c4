"""The package a user installs: a lean core, extras named when missing, metadata, a fast CLI.

The slow test builds the wheel from a copy of the source tree (a build in the tree itself
would leave build/ behind, whose stale files a later wheel can pick up), installs it
without dependencies in a fresh venv, and runs it there as a user would.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import zcio
from zcio import _cli

ROOT = Path(__file__).resolve().parent.parent
#: What the build reads: pyproject.toml names the rest (README.md, LICENSE, src/).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE")
#: The extras' third-party packages; each is imported under its own name.
THIRD_PARTY = ("click", "rich", "httptools")
TIMEOUT = 300  # seconds for one build or install on a loaded machine


def _env() -> dict[str, str]:
    """The environment of a user: no PYTHONPATH pointing into this checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=TIMEOUT, check=False)


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _extra_packages(extras: dict[str, list[str]], extra: str) -> set[str]:
    """The packages an extra installs, its self-references (``zcio[cli]``) expanded."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = _requirement_name(requirement)
        if name == "zcio":
            inner = re.search(r"\[(.*?)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                names |= _extra_packages(extras, other.strip())
        else:
            names.add(name)
    return names


# -- fast: the source tree -------------------------------------------------------------


def test_the_core_depends_on_nothing_and_the_hint_table_matches_the_extras() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert project["dependencies"] == []
    extras = project["optional-dependencies"]
    for extra, modules in _cli.EXTRAS.items():
        assert _extra_packages(extras, extra) == set(modules), extra
    # make test installs every extra a test needs.
    assert {"click", "rich", "httptools", "matplotlib"} <= _extra_packages(extras, "test")


def test_the_version_has_one_source() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert "version" not in project and "version" in project["dynamic"]
    text = (ROOT / "src" / "zcio" / "_version.py").read_text()
    assert re.findall(r'^__version__ = "(.+)"$', text, re.M) == [zcio.__version__]


def _zcio(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``zcio ARGS`` with this checkout's source, after ``code`` ran (to hide a module)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, "-c", f"{code}\nfrom zcio._cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False)


def test_version_imports_no_command_rich_or_httptools() -> None:
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print(sorted(sys.modules), file=sys.stderr))")
    result = _zcio(code, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"zcio, version {zcio.__version__}\n"
    loaded = set(eval(result.stderr.splitlines()[-1]))  # the list printed at exit
    commands = {f"zcio._cli.{m}" for m in _cli._COMMANDS}
    assert not loaded & (commands | {"httptools", "rich", "zcio.serve"}), loaded & commands


@pytest.mark.parametrize(("hidden", "args", "line"), [
    ("httptools", ["serve", "--port", "0", "."],
     "zcio serve needs the serve extra (httptools is not installed): "
     "pip install 'zcio[serve]'"),
    ("click", ["serve"],
     "zcio serve needs the serve extra (click is not installed): pip install 'zcio[serve]'"),
    ("click", ["cp", "a", "b"],
     "zcio cp needs the cli extra (click is not installed): pip install 'zcio[cli]'"),
    ("click", ["--version"],
     "zcio needs the cli extra (click is not installed): pip install 'zcio[cli]'"),
])
def test_a_missing_extra_is_one_line_naming_it(hidden: str, args: list[str], line: str) -> None:
    result = _zcio(f"import sys; sys.modules[{hidden!r}] = None", *args)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")


def test_help_lists_a_command_whose_extra_is_missing_with_its_hint() -> None:
    result = _zcio("import sys; sys.modules['httptools'] = None", "--help")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  serve +needs the serve extra: pip install 'zcio\[serve\]'$",
                     result.stdout, re.M), result.stdout
    assert re.search(r"^  cp +Copy ", result.stdout, re.M), result.stdout


def test_a_module_missing_by_a_bug_is_not_blamed_on_an_extra() -> None:
    result = _zcio("import sys; sys.modules['zcio._cli._cp'] = None", "cp", "a", "b")
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr and "extra" not in result.stderr


# -- slow: the wheel, in a fresh venv --------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from a copy of the source tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.egg-info"))
    for name in SOURCES:
        shutil.copy2(ROOT / name, tree / name)
    dist = tmp / "dist"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                 "--wheel-dir", dist, tree)
    assert built.returncode == 0, built.stdout + built.stderr
    [path] = dist.glob("zcio-*.whl")
    yield path


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_without_extras(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        [license_path] = [n for n in names if re.fullmatch(r"zcio-[^/]+\.dist-info/.*LICENSE", n)]
        assert z.read(license_path) == (ROOT / "LICENSE").read_bytes()
        [metadata_path] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(z.read(metadata_path).decode())
    assert "zcio/py.typed" in names and "zcio/serve/__init__.py" in names
    assert not [n for n in names if n.endswith(".c")]
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier")
    for wanted in ("Operating System :: POSIX :: Linux", "Typing :: Typed",
                   "Programming Language :: Python :: 3.11",
                   "Programming Language :: Python :: 3.12",
                   "Programming Language :: Python :: 3.13"):
        assert wanted in classifiers
    # Every requirement belongs to an extra: `pip install zcio` installs zcio alone.
    assert all("extra ==" in r for r in metadata.get_all("Requires-Dist")), metadata

    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install",
                     "--no-deps", "--no-index", "--quiet", wheel)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    use = _run(python, "-c", (
        "import importlib.metadata, importlib.util, zcio\n"
        "b = zcio.ByteBuffer.allocate_direct(16)\n"
        "b.put_int(0x5a5a).flip()\n"
        "assert b.get_int() == 0x5a5a and (b.position(), b.limit()) == (4, 4)\n"
        "b.release()\n"
        "print(zcio.__file__)\n"
        "print(zcio.__version__, importlib.metadata.version('zcio'))\n"
        f"print([m for m in {THIRD_PARTY!r} if importlib.util.find_spec(m)])\n"), cwd=tmp_path)
    assert use.returncode == 0, use.stderr
    where, versions, importable = use.stdout.splitlines()
    assert where.startswith(str(venv)), where  # the wheel's zcio, not this checkout's
    assert versions == f"{metadata['Version']} {metadata['Version']}"
    assert importable == "[]"

    zcio_script = venv / "bin" / "zcio"
    for args, extra in ((["serve", "."], "serve"), (["cp", "a", "b"], "cli")):
        for command in ([zcio_script, *args], [python, "-m", "zcio", *args]):
            result = _run(*command, cwd=tmp_path)
            assert (result.returncode, result.stdout, result.stderr) == (
                1, "", f"zcio {args[0]} needs the {extra} extra (click is not installed): "
                       f"pip install 'zcio[{extra}]'\n"), command
    assert not (tmp_path / "b").exists()
    library = _run(python, "-c", "import zcio.serve", cwd=tmp_path)  # not through the CLI
    assert library.returncode == 1
    assert library.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: zcio.serve needs the serve extra (httptools is not "
        "installed): pip install 'zcio[serve]'"), library.stderr
