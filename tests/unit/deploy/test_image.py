"""The container image: a multi-stage build of the installed package, non-root, slim context.

No Docker daemon runs here, so the Dockerfile is checked statically and its
install step is replayed on exactly the files the build context would hold.
The base image is pinned by digest, dependencies come from requirements.lock
(pinned, hashed, checked against pyproject.toml and the tested environment),
and the runtime stage has no pip.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.conftest import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK = REPO / "requirements.lock"
PINNED_IMAGE = re.compile(r"^[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}$")
"""``name:tag@sha256:<64 hex>``: the tag for people, the digest for the registry."""


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage."""
    groups: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(instruction)
    return groups


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore negation, compiled pattern) in file order."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negate, re.compile(regex + r"\Z")))
    return patterns


def in_context(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends ``relative`` with the build context (last matching rule wins,
    and a rule matching a parent directory applies to everything under it)."""
    parts = relative.split("/")
    excluded = False
    for negate, pattern in patterns:
        for depth in range(1, len(parts) + 1):
            if pattern.match("/".join(parts[:depth])):
                excluded = not negate
                break
    return not excluded


def context_files() -> list[str]:
    """Repository files (as git sees them, plus untracked ones) that enter the context."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    patterns = ignore_patterns()
    return [f for f in listed if (REPO / f).is_file() and in_context(f, patterns)]


def base_images() -> list[str]:
    """Each stage's FROM image, with ARG defaults substituted."""
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    return [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], group[0][1].split()[0]) for group in stages()]


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {canonical name: (version, hashes)}."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, sep, pinned = requirement.partition("==")
        assert sep and pinned, f"requirements.lock: {requirement} is not pinned with =="
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(name)] = (pinned, hashes)
    return entries


def test_build_is_multi_stage_with_a_slim_runtime() -> None:
    """Two stages on a slim Python base; the runtime copies only the built virtualenv."""
    groups = stages()
    assert len(groups) >= 2
    for base in base_images():
        assert "slim" in base, base
    runtime = groups[-1]
    copies = [a for w, a in runtime if w == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), copies
    assert not [a for w, a in runtime if w == "RUN" and "pip install" in a]


def test_runtime_runs_podlog_as_a_non_root_user() -> None:
    """The final stage switches to a numeric non-root user and runs the podlog entry point."""
    runtime = stages()[-1]
    users = [a for w, a in runtime if w == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = [a for w, a in runtime if w == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["podlog"]
    ports = {p for w, a in runtime if w == "EXPOSE" for p in a.split()}
    assert {"8080", "9090"} <= ports


def test_copied_sources_exist_and_reach_the_build_context() -> None:
    """Every COPY source exists and .dockerignore lets it through."""
    patterns = ignore_patterns()
    for word, args in instructions():
        if word != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: missing"
            assert in_context(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_every_package_is_copied() -> None:
    """The packages pyproject.toml installs are all copied into the build stage."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in includes}
    copied = {
        source
        for word, args in instructions()
        if word == "COPY" and not args.startswith("--from=")
        for source in shlex.split(args)[:-1]
    }
    assert packages <= copied, packages - copied
    readme = pyproject["project"].get("readme")
    if readme:
        assert readme in copied


def test_context_leaves_out_tests_and_local_state() -> None:
    """Tests, benchmarks, git data, virtualenvs and bytecode stay out of the context."""
    patterns = ignore_patterns()
    for path in (
        ".git/HEAD",
        "tests/conftest.py",
        "bench/x.py",
        ".venv/bin/python",
        "podlog/__pycache__/cli.cpython-311.pyc",
        "docker-compose.yml",
        "deploy/Dockerfile",
    ):
        assert not in_context(path, patterns), path
    files = context_files()
    assert "podlog/cli.py" in files and "pyproject.toml" in files
    assert not [f for f in files if f.startswith(("tests/", "bench/", "deploy/"))]


def test_package_metadata_builds_from_the_build_context(tmp_path: Path) -> None:
    """From only the context's files, setuptools finds every package module, the page's
    static files and the podlog console script (offline: egg_info, no wheel download)."""
    pytest.importorskip("setuptools", reason="the build backend is not installed beside pytest")
    context = tmp_path / "context"
    for relative in context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / relative).read_bytes())
    egg_base = tmp_path / "egg"
    egg_base.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "egg_info", "--egg-base", str(egg_base)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (info,) = egg_base.glob("*.egg-info")
    sources = set((info / "SOURCES.txt").read_text().splitlines())
    scripts = (info / "entry_points.txt").read_text()
    expected = [
        f.relative_to(REPO).as_posix()
        for package in ("podlog", "collector", "shipper", "indexer", "search")
        for f in (REPO / package).rglob("*.py")
        if "__pycache__" not in f.parts
    ]
    missing = sorted(set(expected) - sources)
    assert not missing, f"not packaged from the build context: {missing[:10]}"
    static = [f for f in (REPO / "search" / "static").rglob("*") if f.is_file()]
    for path in static:
        assert path.relative_to(REPO).as_posix() in sources, path
    assert re.search(r"^podlog = podlog\.cli:main$", scripts, re.MULTILINE)


def test_every_stage_starts_from_a_base_pinned_by_digest() -> None:
    """Every FROM names its image as tag@sha256:<digest>, so a rebuild gets the same base."""
    for base in base_images():
        assert PINNED_IMAGE.match(base), f"FROM {base}: pin the base image by digest"


def test_runtime_stage_has_no_pip_and_no_build_tools() -> None:
    """The runtime removes the base image's pip (and ensurepip's copy), proves it, and installs nothing."""
    build, runtime = stages()[0], stages()[-1]
    (venv,) = [a for w, a in build if w == "RUN" and "-m venv" in a]
    assert "--without-pip" in venv, "the copied virtualenv must not carry pip"
    runs = " && ".join(a for w, a in runtime if w == "RUN")
    assert re.search(r"pip uninstall --yes[^&]*\bpip\b", runs), "the runtime stage uninstalls the base image's pip"
    assert "/ensurepip" in runs, "ensurepip's bundled pip wheel is removed too"
    assert '! python -c "import pip"' in runs, "the build fails if pip is still importable"
    for word in ("pip install", "apt-get", "apk add", "gcc", "build-essential", "uv pip"):
        assert word not in runs, f"the runtime stage runs {word!r}"


def test_dependencies_install_from_the_lock_file_with_hashes() -> None:
    """The build stage copies requirements.lock first and installs exactly it, hashes required."""
    build = stages()[0]
    copies = [a for w, a in build if w == "COPY"]
    assert copies[0].split()[0] == "requirements.lock", "the lock is copied alone, before the sources"
    (install,) = [a for w, a in build if w == "RUN" and "-r requirements.lock" in a]
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:"):
        assert flag in install, f"the lock install lacks {flag}"
    projects = [a for w, a in build if w == "RUN" and re.search(r"install [^&]*--no-deps \.", a)]
    assert len(projects) == 1, "podlog itself is installed once, without resolving dependencies again"


def test_lock_pins_every_dependency_within_pyproject_bounds() -> None:
    """Each pyproject dependency is in requirements.lock, pinned to a version its specifier allows, hashed."""
    entries = locked()
    assert all(hashes for _, hashes in entries.values()), "every locked file carries its sha256"
    for raw in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(raw)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement.name} is in pyproject.toml but not in requirements.lock"
        pinned, _ = entries[name]
        assert requirement.specifier.contains(pinned), f"requirements.lock pins {name}=={pinned}, outside {raw}"


def test_lock_is_closed_over_dependencies_and_matches_the_tested_versions() -> None:
    """What the locked packages require (extras included) is locked too, at the versions the tests run on."""
    entries = locked()
    environment = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    wanted = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[tuple[str, str]] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} (needed by the locked set) is missing from requirements.lock"
        pinned, _ = entries[name]
        installed = metadata.version(name)
        assert installed == pinned, f"tests run {name} {installed}, requirements.lock pins {pinned}: regenerate it"
        for extra in sorted(requirement.extras) or [""]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for dependency in metadata.requires(name) or []:
                child = Requirement(dependency)
                if child.marker is None or child.marker.evaluate({**environment, "extra": extra}):
                    wanted.append(child)
