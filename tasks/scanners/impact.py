"""Which services a new advisory touches, from their stored SBOMs, without rescanning anything.

Dependency-Track's way: every scan already stores a CycloneDX SBOM
(``<service>/<sha>/sbom.cdx.json``), so when the vulnerability data changes
the platform matches the new or changed advisories against the components
of every service version that matters at once: the newest scan of the
default branch (its components kept in the SBOM index,
`tasks.scanners.sbom_index`, 16 reads for every service), and each
environment's deployed commit (one read per SBOM). Matching is a dictionary
lookup per advisory, where a rescan is a checkout and five tools per service.

```python
sboms, unscanned, _ = current_sboms(store, names, deployed)
for impact in match(advisories, sboms):
    print(impact.service, impact.sha[:12], impact.package, impact.installed)
```

Advisories are evaluated as pip-audit evaluates them (`tasks.osv_mirror.affects`,
withdrawn records skipped, aliases merged), and `Impact.finding` is the very
finding pip-audit reports, so a later rescan sees it as the same finding.
"""

from __future__ import annotations

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
from tasks.scanners.sbom_index import (
    Component,
    IndexEntry,
    fill_in,
    parse_components,
    read_index,
)
from tasks.storage import ObjectStore

__all__ = [
    "DEFAULT_BRANCH",
    "Component",
    "Impact",
    "ServiceVersion",
    "StoredSbom",
    "current_sboms",
    "match",
    "parse_components",
    "read_sboms",
    "service_versions",
]

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "default branch"
"""`ServiceVersion.where` of the newest scan of the default branch."""
_READERS = 16  # SBOM reads at once: S3 round-trips dominate, not CPU
_REQUIREMENTS = "requirements.txt"
"""What both pip-audit and the SBOM read, so what a finding names."""


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


def service_versions(
    store: ObjectStore, services: Iterable[str], deployed: Mapping[tuple[str, str], str]
) -> list[ServiceVersion]:
    """The newest default-branch scan and every deployed commit of each service, from histories.

    Args:
        store: The artifact store.
        services: The catalog's service names.
        deployed: ``(service, environment) -> sha`` of what each environment runs.
    """
    wanted = list(services)
    return _arrange(wanted, _history_tips(store, wanted), deployed)


def current_sboms(
    store: ObjectStore, services: Iterable[str], deployed: Mapping[tuple[str, str], str]
) -> tuple[list[StoredSbom], list[ServiceVersion], list[str]]:
    """`read_sboms` of `service_versions`, from the SBOM index where it can; and what it lacked.

    The index (`tasks.scanners.sbom_index`) holds each service's newest
    default-branch scan and its components, so a store of a thousand
    services costs 16 reads; only deployed commits other than those, and
    services the index lacks, are read from their history and SBOM. Those
    services are named in a warning, added to the index and returned third.
    """
    wanted = list(services)
    index = read_index(store)
    missing = [s for s in wanted if s not in index.entries]
    if missing:
        logger.warning(
            "the SBOM index has no entry for %d of %d services (%s%s): reading their scan "
            "history and SBOMs instead, and adding them to the index",
            len(missing),
            len(wanted),
            ", ".join(missing[:5]),
            ", ..." if len(missing) > 5 else "",
        )
    tips = {s: index.entries[s].sha for s in wanted if s in index.entries}
    tips |= _history_tips(store, missing)
    versions = _arrange(wanted, tips, deployed)
    known = {(s, e.sha): e.components for s, e in index.entries.items() if e.sha is not None}
    read, _ = read_sboms(store, [v for v in versions if (v.service, v.sha) not in known])
    from_sboms = {s.version: s.components for s in read}
    components = [known.get((v.service, v.sha), from_sboms.get(v)) for v in versions]
    if missing:
        lacking = set(missing)
        fill_in(
            store,
            index,
            {s: IndexEntry(None, None) for s in missing if tips[s] is None}
            | {
                v.service: IndexEntry(v.sha, c)
                for v, c in zip(versions, components, strict=True)
                if v.service in lacking and v.sha == tips[v.service]
            },
        )
    pairs = list(zip(versions, components, strict=True))
    found = [StoredSbom(v, c) for v, c in pairs if c is not None]
    return found, [v for v, c in pairs if c is None], missing


def _history_tips(store: ObjectStore, services: list[str]) -> dict[str, str | None]:
    """Each service's newest default-branch scan, from its history; None when there is none."""
    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="sbom-read") as pool:
        scans = pool.map(lambda s: default_branch_scans(store, s), services)
        return {
            s: found[0].sha if found else None for s, found in zip(services, scans, strict=True)
        }


def _arrange(
    wanted: list[str], tips: Mapping[str, str | None], deployed: Mapping[tuple[str, str], str]
) -> list[ServiceVersion]:
    """Tips first, in catalog order, then each environment's commit, a commit listed once."""
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for service in wanted:
        if (tip := tips[service]) is not None:
            where[(service, tip)].append(DEFAULT_BRANCH)
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
