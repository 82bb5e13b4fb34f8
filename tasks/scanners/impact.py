"""Which services a new advisory touches, from their stored SBOMs, without rescanning anything.

Dependency-Track's way: every scan already stores a CycloneDX SBOM
(``<service>/<sha>/sbom.cdx.json``), so when the vulnerability data changes
the platform matches the new or changed advisories against the components
of every service version that matters at once: the newest scan of the
default branch, and each environment's deployed commit. That is one read
per SBOM and a dictionary lookup per advisory, where a rescan is a checkout
and five tools per service.

```python
versions = service_versions(store, names, deployed)
sboms, unscanned = read_sboms(store, versions)
for impact in match(advisories, sboms):
    print(impact.service, impact.sha[:12], impact.package, impact.installed)
```

Advisories are evaluated as pip-audit evaluates them (`tasks.osv_mirror.affects`,
withdrawn records skipped, aliases merged), and `Impact.finding` is the very
finding pip-audit reports, so a later rescan sees it as the same finding.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from slipway.errors import ObjectNotFound
from tasks.osv_mirror import Record, affects, normalize_name
from tasks.scanners.advisories import advisory_severity, fix_versions
from tasks.scanners.base import Finding, Severity
from tasks.scanners.dependencies import first_fix
from tasks.scanners.history import default_branch_scans, scan_prefix
from tasks.storage import ObjectStore

__all__ = [
    "DEFAULT_BRANCH",
    "Component",
    "Impact",
    "ServiceVersion",
    "StoredSbom",
    "match",
    "parse_components",
    "read_sboms",
    "service_versions",
]

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "default branch"
"""`ServiceVersion.where` of the newest scan of the default branch."""
_READERS = 16  # SBOM reads at once: S3 round-trips dominate, not CPU
_ECOSYSTEMS = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "cargo": "crates.io",
    "gem": "RubyGems",
    "nuget": "NuGet",
}
"""purl types and the OSV ecosystem each one is."""
_REQUIREMENTS = "requirements.txt"
"""What both pip-audit and the SBOM read, so what a finding names."""


@dataclass(frozen=True)
class Component:
    """One package an SBOM lists."""

    ecosystem: str
    """OSV's ecosystem name, e.g. ``PyPI``."""
    name: str
    """Normalised as OSV compares it (PEP 503 for PyPI)."""
    version: str


@dataclass(frozen=True)
class ServiceVersion:
    """A commit of a service that an advisory may touch, and where it is."""

    service: str
    sha: str
    where: tuple[str, ...]
    """``default branch`` and the environments running it."""


@dataclass(frozen=True)
class StoredSbom:
    """The components of one service version, read from its stored SBOM."""

    version: ServiceVersion
    components: tuple[Component, ...]


@dataclass(frozen=True)
class Impact:
    """One advisory affecting one package of one service version."""

    advisory: str
    aliases: tuple[str, ...]
    """Sorted, as pip-audit's findings carry them."""
    severity: Severity
    version: ServiceVersion
    package: str
    installed: str
    fix_version: str | None

    @property
    def service(self) -> str:
        """The service affected."""
        return self.version.service

    @property
    def sha(self) -> str:
        """The commit affected."""
        return self.version.sha

    @property
    def ids(self) -> frozenset[str]:
        """The advisory's id and aliases."""
        return frozenset((self.advisory, *self.aliases))

    def finding(self) -> Finding:
        """The finding pip-audit reports for it, message and fingerprint alike."""
        aliases = ", ".join(self.aliases)
        return Finding(
            tool="pip-audit",
            rule_id=self.advisory,
            severity=self.severity,
            file=_REQUIREMENTS,
            line=None,
            message=f"{self.package} {self.installed} is affected by {self.advisory}"
            + (f" ({aliases})" if aliases else ""),
            fix_version=self.fix_version,
            aliases=self.aliases,
            help_uri=f"https://osv.dev/vulnerability/{self.advisory}",
        )


def parse_components(document: bytes) -> tuple[Component, ...]:
    """The versioned packages a CycloneDX JSON document lists; others cannot be matched.

    Raises:
        ValueError: The document is not CycloneDX JSON.
    """
    bom = json.loads(document)
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise ValueError("not a CycloneDX JSON document")
    found: list[Component] = []
    for item in bom.get("components") or []:
        purl = str(item.get("purl") or "")
        kind = purl.removeprefix("pkg:").split("/", 1)[0] if purl.startswith("pkg:") else "pypi"
        ecosystem, version = _ECOSYSTEMS.get(kind), item.get("version")
        if ecosystem and version and item.get("name"):
            found.append(
                Component(ecosystem, normalize_name(ecosystem, str(item["name"])), str(version))
            )
    return tuple(found)


def service_versions(
    store: ObjectStore, services: Iterable[str], deployed: Mapping[tuple[str, str], str]
) -> list[ServiceVersion]:
    """The newest default-branch scan and every deployed commit of each service.

    Args:
        store: The artifact store.
        services: The catalog's service names.
        deployed: ``(service, environment) -> sha`` of what each environment runs.
    """
    wanted = list(services)
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="sbom-read") as pool:
        tips = dict(
            zip(wanted, pool.map(lambda s: default_branch_scans(store, s), wanted), strict=True)
        )
    for service in wanted:
        if tips[service]:
            where[(service, tips[service][0].sha)].append(DEFAULT_BRANCH)
    for (service, environment), sha in sorted(deployed.items()):
        if service in tips:
            where[(service, sha)].append(environment)
    return [ServiceVersion(s, sha, tuple(w)) for (s, sha), w in where.items()]


def read_sboms(
    store: ObjectStore, versions: Sequence[ServiceVersion]
) -> tuple[list[StoredSbom], list[ServiceVersion]]:
    """The stored SBOM of each version, and the versions that have none (or a broken one).

    A version without an SBOM is not safe, only unknown: callers report it.
    """

    def read(version: ServiceVersion) -> StoredSbom | None:
        key = f"{scan_prefix(version.service, version.sha)}/sbom.cdx.json"
        try:
            return StoredSbom(version, parse_components(store.get(key)))
        except ObjectNotFound:
            return None
        except ValueError as e:
            logger.warning("the SBOM %s is unreadable, so it is not matched: %s", key, e)
            return None

    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="sbom-read") as pool:
        read_all = list(pool.map(read, versions))
    found = [s for s in read_all if s is not None]
    missing = [v for v, s in zip(versions, read_all, strict=True) if s is None]
    return found, missing


def match(records: Iterable[Record], sboms: Iterable[StoredSbom]) -> list[Impact]:
    """Every advisory in ``records`` that affects a component of an SBOM.

    Components are indexed once by package, so each advisory costs a lookup
    per package it names and a range check per distinct installed version,
    however many SBOMs there are. An advisory whose id or alias another one
    already matched for the same package of the same version counts once,
    as pip-audit reports it once.
    """
    by_package: dict[tuple[str, str], dict[str, list[ServiceVersion]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for sbom in sboms:
        for c in sbom.components:
            by_package[(c.ecosystem, c.name)][c.version].append(sbom.version)
    impacts: list[Impact] = []
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for record in sorted(records, key=lambda r: str(r.get("id"))):
        if record.get("withdrawn"):
            continue
        ids = frozenset((str(record["id"]), *map(str, record.get("aliases") or ())))
        for ecosystem, name in _packages(record):
            for installed, versions in by_package.get((ecosystem, name), {}).items():
                if not affects(record, ecosystem, name, installed):
                    continue
                for version in versions:
                    known = seen[(version.service, version.sha, name)]
                    if known & ids:
                        continue
                    known.update(ids)
                    impacts.append(_impact(record, version, ecosystem, name, installed))
    return impacts


def _packages(record: Record) -> set[tuple[str, str]]:
    found = set()
    for affected in record.get("affected") or []:
        pkg = affected.get("package") or {}
        ecosystem = str(pkg.get("ecosystem", ""))
        found.add((ecosystem, normalize_name(ecosystem, str(pkg.get("name", "")))))
    return found


def _impact(
    record: Record, version: ServiceVersion, ecosystem: str, name: str, installed: str
) -> Impact:
    try:
        shown = str(Version(installed))  # as pip-audit prints it
    except InvalidVersion:
        shown = installed
    return Impact(
        advisory=str(record["id"]),
        aliases=tuple(sorted(str(a) for a in record.get("aliases") or ())),
        severity=advisory_severity(record),
        version=version,
        package=name,
        installed=shown,
        fix_version=first_fix(installed, fix_versions(record, ecosystem, name)),
    )
