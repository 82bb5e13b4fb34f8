"""Build-time Python dependencies, fetched by the platform before the build: the wheelhouse.

An image's ``RUN`` steps have no network (`blocks.DeployTarget.build_network`
is ``none``), so a build cannot reach a platform service, nor install from
an index. As Cloud Native Buildpacks separate fetching from building, the
platform resolves the service's ``requirements.txt`` outside the container
instead: pip downloads binary wheels for the base image's Python from the
configured index or mirror, each wheel is hashed into a lock, and the lot
goes into the build context as ``.wheelhouse/`` with an offline installer.
The Dockerfile installs from it without network and hash-checked::

    FROM ${BASE_IMAGE} AS dependencies
    COPY .wheelhouse/ /wheelhouse/
    RUN ["python3", "/wheelhouse/install.py", "/tmp/deps"]

A wheelhouse is cached by a digest of the requirements, the index, the
target Python and pip, so a push that leaves ``requirements.txt`` alone
fetches nothing; a cached one is checked against its lock before each use.

``requirements.txt`` may hold only pinned requirements (``name==version``,
extras, markers and ``--hash`` options): an option line (``--index-url``,
``-e``, ``-r``, ``--find-links``), a URL or a path would have the platform
fetch from wherever the repository says, so it is refused, naming the line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from slipway.errors import BuildError, CommandError, InvalidRequest
from slipway.private import make_private
from slipway.process import run
from tasks.containers import confinement

if TYPE_CHECKING:
    import docker

    from blocks.deploy_target import DeployTarget

__all__ = ["LOCK", "WHEELHOUSE", "PythonTarget", "Wheelhouse", "prepare_wheelhouse", "read_pins"]

logger = logging.getLogger(__name__)

WHEELHOUSE = ".wheelhouse"
"""The build context's directory that holds the wheelhouse."""
LOCK = "requirements.txt"
"""The wheelhouse's lock: every wheel as ``name==version --hash=sha256:...``."""
_INSTALLER = "installer"
_HASH = re.compile(r"--hash[= ](sha256:[0-9a-f]{64})")
_PIN_HINT = (
    "pin each requirement as name==version (optionally with --hash=sha256:...), one per line; "
    "the platform fetches them from its own index"
)
_PROBE = (
    "import json, os, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'implementation': sys.implementation.name, 'machine': os.uname().machine, "
    "'glibc': os.confstr('CS_GNU_LIBC_VERSION').split()[-1]}))"
)
_INSTALL_PY = '''"""Install the wheelhouse's lock into a directory, offline and hash-checked (by Slipway)."""
import pathlib, subprocess, sys
here, target = pathlib.Path(__file__).parent, sys.argv[1]
pathlib.Path(target).mkdir(parents=True, exist_ok=True)
lock = here / "requirements.txt"
if not any(l.strip() and not l.startswith("#") for l in lock.read_text().splitlines()):
    sys.exit(0)
pip = next(here.glob("installer/pip-*.whl"))
sys.exit(subprocess.call([sys.executable, f"{pip}/pip", "install", "--no-index",
    "--find-links", str(here), "--require-hashes", "--no-deps", "--only-binary=:all:",
    "--disable-pip-version-check", "--no-warn-script-location", "--target", target,
    "-r", str(lock)]))
'''


@dataclass(frozen=True)
class PythonTarget:
    """The Python of a base image, which the wheels must fit."""

    version: str
    """``3.11``."""
    implementation: str
    """``cpython``."""
    machine: str
    """``x86_64``."""
    glibc: str
    """``2.36``."""

    def pip_options(self) -> list[str]:
        """Pip's ``download`` options for wheels this Python can install (manylinux included)."""
        short = self.version.replace(".", "")
        major, minor = (int(p) for p in self.glibc.split(".")[:2])
        platforms = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        platforms += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        options = ["--python-version", self.version, "--implementation", "cp"]
        options += [f"--abi={abi}" for abi in (f"cp{short}", "abi3", "none")]
        return options + [f"--platform={p}" for p in (*platforms, f"linux_{self.machine}")]


@dataclass(frozen=True)
class Wheelhouse:
    """A wheelhouse put into a build context."""

    key: str
    """The digest it is cached under (requirements, index, target Python, pip)."""
    wheels: tuple[str, ...]
    """The wheel files, installer aside."""
    reused: bool
    """Whether the cache had it, so nothing was downloaded."""
    seconds: float
    """How long preparing it took."""


def read_pins(path: Path) -> tuple[str, ...]:
    """The requirement lines of ``path``, each pinned; none when the file does not exist.

    Raises:
        InvalidRequest: a line is an option, a URL, a path or not pinned with ``==``.
    """
    if not path.is_file():
        return ()
    lines = path.read_text(encoding="utf-8", errors="replace").replace("\\\n", " ").splitlines()
    pins = []
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        text = _HASH.sub("", line).strip()
        problem = _pin_problem(text)
        if problem:
            raise InvalidRequest(
                f"{path.name} line {number} ({line[:80]!r}) {problem}", hint=_PIN_HINT
            )
        pins.append(" ".join([text, *(f"--hash={h}" for h in _HASH.findall(line))]))
    return tuple(pins)


def _pin_problem(text: str) -> str | None:
    if text.startswith("-"):
        return "is a pip option; the platform decides where packages come from"
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return "is not a requirement (a URL or a path is not accepted)"
    if requirement.url:
        return "names a URL; the platform fetches only from its index"
    specifiers = list(requirement.specifier)
    if (
        len(specifiers) != 1
        or specifiers[0].operator not in ("==", "===")
        or "*" in str(specifiers[0])
    ):
        return "is not pinned with =="
    return None


def prepare_wheelhouse(
    client: docker.DockerClient,
    context: Path,
    *,
    base_image: str,
    target: DeployTarget,
    cache: Path,
    timeout: float = 600,
) -> Wheelhouse:
    """Put the wheelhouse of ``context``'s ``requirements.txt`` into ``context/.wheelhouse``.

    Args:
        client: The engine that builds, which runs ``base_image`` once to learn its Python.
        context: The checked-out build context.
        base_image: What the Dockerfile builds FROM; its Python decides the wheels.
        target: The deploy target: its package index, and how the probe runs.
        cache: The directory wheelhouses are kept in, by key.
        timeout: Seconds pip may take to download.

    Raises:
        BuildError: a requirement is refused, or pip could not fetch a wheel; nothing
            is left in the context.
    """
    began = time.monotonic()
    if (context / WHEELHOUSE).exists():
        raise BuildError(
            f"the repository has its own {WHEELHOUSE}/, which the platform fills for the build",
            hint=f"remove {WHEELHOUSE}/ from the repository",
        )
    try:
        pins = read_pins(context / "requirements.txt")
    except InvalidRequest as e:
        raise BuildError(e.message, hint=e.hint) from e
    python = _python_of(client, base_image, target, cache) if pins else None
    inputs = {
        "pins": pins,
        "index": target.package_index,
        "pip": version("pip"),
        "python": asdict(python) if python else None,
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    stored = cache / key
    reused = _intact(stored)
    if not reused:
        _fetch(stored, pins, python, target.package_index, timeout=timeout)
    _copy_for_build(stored, context / WHEELHOUSE)
    wheels = tuple(sorted(p.name for p in stored.glob("*.whl")))
    seconds = time.monotonic() - began
    logger.info(
        "Wheelhouse %s: %d wheels, %s in %.2f s",
        key[:12],
        len(wheels),
        "cached" if reused else "fetched",
        seconds,
    )
    return Wheelhouse(key, wheels, reused, seconds)


def _python_of(
    client: docker.DockerClient, base_image: str, target: DeployTarget, cache: Path
) -> PythonTarget:
    """The base image's Python, asked once per image id and remembered in ``cache``."""
    from docker.errors import DockerException

    try:
        image_id = str(client.images.get(base_image).id)
        known = cache / "pythons" / f"{image_id.replace(':', '-')}.json"
        if not known.is_file():
            options = confinement(client, base_image, target, network_mode="none").options()
            out = client.containers.run(
                base_image, ["python3", "-c", _PROBE], remove=True, **options
            )
            known.parent.mkdir(parents=True, exist_ok=True)
            known.write_bytes(out)
        return PythonTarget(**json.loads(known.read_text()))
    except (DockerException, ValueError, TypeError) as e:
        raise BuildError(
            f"could not learn which Python {base_image} has: {e}",
            hint="the base image must have python3 on its PATH",
        ) from e


def _fetch(
    stored: Path,
    pins: tuple[str, ...],
    python: PythonTarget | None,
    index: str | None,
    *,
    timeout: float,
) -> None:
    """Download, hash and lock into a new directory, then move it to ``stored`` in one step."""
    stored.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=stored.parent))
    try:
        if pins:
            wanted = work / "wanted.txt"
            wanted.write_text("\n".join(pins) + "\n")
            _pip_download(["-r", str(wanted)], work, python, index, timeout=timeout)
            wanted.unlink()
            _pip_download(
                [f"pip=={version('pip')}", "--no-deps"],
                work / _INSTALLER,
                None,
                index,
                timeout=timeout,
            )
        (work / LOCK).write_text(_lock(work))
        (work / "install.py").write_text(_INSTALL_PY)
        make_private(work)  # pip keeps some files' own modes; the home's are private
        shutil.rmtree(stored, ignore_errors=True)
        work.rename(stored)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pip_download(
    what: list[str], dest: Path, python: PythonTarget | None, index: str | None, *, timeout: float
) -> None:
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--dest",
        str(dest),
    ]
    argv += python.pip_options() if python else []
    argv += ["--index-url", index] if index else []
    try:
        run([*argv, *what], env=dict(os.environ), timeout=timeout)
    except CommandError as e:
        raise BuildError(
            f"the wheelhouse could not be fetched: {e}",
            hint="check that each pinned version has a wheel for the base image's Python on the "
            "platform's index (sdists are not built); then push again",
        ) from e


def _lock(directory: Path) -> str:
    """Each wheel as a hash-pinned requirement; the installer's hash as a comment."""
    lines = ["# The wheelhouse's lock, written by Slipway: each wheel and its sha256."]
    for wheel in sorted(directory.glob("*.whl")):
        name, wheel_version, _, _ = parse_wheel_filename(wheel.name)
        lines.append(f"{canonicalize_name(name)}=={wheel_version} --hash=sha256:{_sha256(wheel)}")
    for wheel in sorted((directory / _INSTALLER).glob("*.whl")):
        lines.append(f"# installer {wheel.name} sha256:{_sha256(wheel)}")
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(stored: Path) -> bool:
    """Whether a cached wheelhouse is complete and every file still has its locked hash."""
    lock, installer = stored / LOCK, stored / "install.py"
    if not lock.is_file() or not installer.is_file() or installer.read_text() != _INSTALL_PY:
        return False
    return lock.read_text() == _lock(stored)


def _copy_for_build(stored: Path, destination: Path) -> None:
    """Copy a cached wheelhouse into the build context, readable by any build user.

    The cache is private to the platform (0600 in the home), but the image's RUN
    steps may run as its base image's non-root user, so the context's copy takes
    the modes git gives a checkout (0644, 0755) inside the private workspace. A
    copy, not a hard link: a link shares, and would open, the cache's own inode.
    """
    destination.mkdir()
    destination.chmod(0o755)
    for source in sorted(stored.rglob("*")):  # a directory sorts before its files
        target = destination / source.relative_to(stored)
        if source.is_dir():
            target.mkdir()
            target.chmod(0o755)
        else:
            shutil.copyfile(source, target)
            target.chmod(0o644)
