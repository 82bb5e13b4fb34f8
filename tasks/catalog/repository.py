"""The service catalog: a git repository of Backstage ``catalog-info.yaml`` files.

The catalog lives on the git server as ``platform-catalog``, one
``<service>/catalog-info.yaml`` per service, so any Backstage instance can
read it and ``git log`` is its audit trail. Changes are commits made straight
into the bare repository with git's plumbing (a private index, ``write-tree``,
``commit-tree``) and published with a compare-and-swap ``update-ref``: two
flows that change the catalog at once never lose each other's change; the
later one retries on top of the earlier.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import git
import yaml
from gitdb import IStream  # type: ignore[import-untyped]
from prefect import task
from prefect.cache_policies import NO_CACHE

from slipway.errors import CatalogError, ServiceNotFound
from slipway.names import ServiceName
from tasks.catalog.entities import with_derived_files
from tasks.catalog.entry import (
    ANNOTATION_PREFIX,
    API_VERSION,
    CatalogEntry,
    EnvironmentOutputs,
    EnvironmentRecord,
    record_strings,
)
from tasks.git import Author, create_repository, repository_url

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = [
    "ANNOTATION_PREFIX",
    "API_VERSION",
    "CATALOG_REPOSITORY",
    "Catalog",
    "CatalogChange",
    "CatalogEntry",
    "EnvironmentOutputs",
    "EnvironmentRecord",
    "catalog_rows",
    "find_service",
    "list_services",
    "update_entry",
    "record_strings",
]

CATALOG_REPOSITORY = "platform-catalog"
"""The repository on the git server that holds the catalog."""

_ENTRY_FILE = "catalog-info.yaml"
_RETRIES = 20


@dataclass(frozen=True)
class CatalogChange:
    """One commit of the catalog's history."""

    sha: str
    message: str
    author: str
    when: datetime


def catalog_rows(entries: list[CatalogEntry]) -> list[dict[str, str]]:
    """The catalog as rows of a table artifact or of `slipway catalog list`."""
    return [
        {
            "service": e.name,
            "owner": e.owner,
            "lifecycle": e.lifecycle,
            "port": str(e.port),
            "environments": ", ".join(e.environment_names),
            "template": f"{e.template} {e.template_version}".strip(),
            "description": e.description.splitlines()[0] if e.description else "",
        }
        for e in entries
    ]


@task(name="find-service", cache_policy=NO_CACHE)
def find_service(name: ServiceName, server: GitServer | None = None) -> CatalogEntry:
    """The catalog entry of ``name``; `ServiceNotFound` names the services there are.

    Pass the git server when the caller loaded it already: a block load is a request.
    """
    return (Catalog.load_default() if server is None else Catalog(server)).get(name)


@task(name="update-entry", cache_policy=NO_CACHE)
def update_entry(service: str, changes: dict[str, Any], *, message: str) -> CatalogEntry:
    """Change fields of one catalog entry atomically; a concurrent change is never lost."""
    return Catalog.load_default().update(
        service,
        lambda e: CatalogEntry.model_validate({**e.model_dump(), **changes}),
        message=message,
    )


@task(name="list-services", cache_policy=NO_CACHE)
def list_services() -> list[CatalogEntry]:
    """Every service in the catalog, sorted by name."""
    return Catalog.load_default().entries()


class Catalog:
    """The catalog repository on one git server.

    Example:
        ```python
        catalog = Catalog(GitServer.load_default())
        for entry in catalog.entries():
            print(entry.name, entry.owner)
        ```
    """

    def __init__(self, server: GitServer) -> None:
        self._server = server
        self._branch = f"refs/heads/{server.default_branch}"

    @classmethod
    def load_default(cls) -> Catalog:
        """The catalog on the platform's git server."""
        from blocks.git_server import GitServer

        return cls(GitServer.load_default())

    @property
    def url(self) -> str:
        """Where `git clone` finds the catalog."""
        return repository_url(self._server, CATALOG_REPOSITORY)

    def ensure(self) -> None:
        """Create the catalog repository when it does not exist yet (idempotent)."""
        create_repository(self._server, CATALOG_REPOSITORY)

    # -- reading -----------------------------------------------------------

    def entries(self) -> list[CatalogEntry]:
        """Every service, sorted by name; an empty or missing catalog has none."""
        repo, tip = self._tip()
        if tip is None:
            return []
        found: list[CatalogEntry] = []
        for tree in repo.commit(tip).tree.trees:
            try:
                blob = tree / _ENTRY_FILE
            except KeyError:
                continue
            found.append(self._parse(blob.data_stream.read(), f"{tree.path}/{_ENTRY_FILE}"))
        return sorted(found, key=lambda e: e.name)

    def tip(self) -> str | None:
        """The catalog's current commit; None while it is empty."""
        return self._tip()[1]

    def names(self) -> frozenset[str]:
        """The services' names, without reading their entries."""
        repo, tip = self._tip()
        if tip is None:
            return frozenset()
        return frozenset(
            tree.name
            for tree in repo.commit(tip).tree.trees
            if any(blob.name == _ENTRY_FILE for blob in tree.blobs)
        )

    def find(self, name: str) -> CatalogEntry | None:
        """The entry of ``name``, or None."""
        ServiceName.parse(name)
        repo, tip = self._tip()
        if tip is None:
            return None
        try:
            blob = repo.commit(tip).tree / name / _ENTRY_FILE
        except KeyError:
            return None
        return self._parse(blob.data_stream.read(), f"{name}/{_ENTRY_FILE}")

    def get(self, name: str) -> CatalogEntry:
        """The entry of ``name``; raises ServiceNotFound naming the known services."""
        entry = self.find(name)
        if entry is None:
            known = ", ".join(e.name for e in self.entries()) or "none yet"
            raise ServiceNotFound(
                f"no service {name!r} in the catalog (known: {known})",
                hint=f"onboard it first: `slipway onboard {name}`",
            )
        return entry

    def history(self, name: str | None = None, *, limit: int = 50) -> list[CatalogChange]:
        """The newest changes first, of one service or of the whole catalog."""
        repo, tip = self._tip()
        if tip is None:
            return []
        paths = [f"{ServiceName.parse(name)}/{_ENTRY_FILE}"] if name else []
        return [
            CatalogChange(
                sha=str(c.hexsha),
                message=str(c.message).strip(),
                author=f"{c.author.name} <{c.author.email}>",
                when=c.authored_datetime.astimezone(UTC),
            )
            for c in repo.iter_commits(tip, paths=paths, max_count=limit)
        ]

    def files(self, directory: str) -> dict[str, bytes]:
        """The files directly in ``directory`` (e.g. ``_groups``) at the tip, by path."""
        repo, tip = self._tip()
        if tip is None:
            return {}
        try:
            tree = repo.commit(tip).tree / directory
        except KeyError:
            return {}
        return {str(blob.path): blob.data_stream.read() for blob in tree.blobs}

    # -- changing ----------------------------------------------------------

    def write(
        self, files: dict[str, bytes | None], *, message: str, author: Author | None = None
    ) -> str | None:
        """Write files (None removes one) as one commit; returns it, or None when nothing changed."""
        return self._commit(files, message, author)

    def save(
        self, entry: CatalogEntry, *, message: str, author: Author | None = None
    ) -> str | None:
        """Add or replace ``entry``; returns the commit, or None when nothing changed."""
        return self._commit(
            {f"{entry.name}/{_ENTRY_FILE}": entry.to_yaml().encode()}, message, author
        )

    def update(
        self,
        name: str,
        change: Callable[[CatalogEntry], CatalogEntry],
        *,
        message: str,
        author: Author | None = None,
    ) -> CatalogEntry:
        """Read, change and write one entry atomically: a concurrent change is never lost."""
        for _ in range(_RETRIES):
            before = self._tip()[1]
            updated = change(self.get(name))
            if updated.name != name:
                raise CatalogError(f"an update may not rename {name!r} to {updated.name!r}")
            path = f"{name}/{_ENTRY_FILE}"
            if self._commit({path: updated.to_yaml().encode()}, message, author, expect=before):
                return updated
            if self._tip()[1] == before:
                return updated  # nothing to change
        raise CatalogError(f"the catalog kept changing while {name!r} was updated; try again")

    def remove(self, name: str, *, message: str, author: Author | None = None) -> str | None:
        """Remove the entry of ``name``; returns the commit, or None when there was none."""
        ServiceName.parse(name)
        return self._commit({f"{name}/{_ENTRY_FILE}": None}, message, author)

    # -- plumbing ----------------------------------------------------------

    def _repo(self) -> git.Repo:
        path = Path(self.url)
        if not (path / "HEAD").is_file():
            self.ensure()
        return git.Repo(path)

    def _tip(self) -> tuple[git.Repo, str | None]:
        """The repository and its branch's commit; None only for a branch with no commit yet.

        A repository git cannot read (its config half written, say: GitPython
        then meets an empty answer or a broken pipe from ``git cat-file``) is
        an error, never an empty catalog: the bridge would drop a push to a
        service it then took for unknown.
        """
        repo = self._repo()
        try:
            return repo, str(repo.commit(self._branch).hexsha)
        except git.BadName:
            return repo, None
        except (ValueError, OSError, git.GitError) as e:
            raise CatalogError(
                f"the catalog repository {self.url} could not be read: {e}",
                hint=f"check it with `git --git-dir {self.url} fsck`, then try again",
            ) from e

    def _parse(self, data: bytes, source: str) -> CatalogEntry:
        try:
            document = yaml.safe_load(data)
        except yaml.YAMLError as e:
            raise CatalogError(f"{source} is not YAML: {e}") from e
        return CatalogEntry.from_document(document, source=source)

    def _commit(
        self,
        files: dict[str, bytes | None],
        message: str,
        author: Author | None,
        *,
        expect: str | Literal["tip"] | None = "tip",
    ) -> str | None:
        """Write ``files`` (None removes) as one commit on the branch.

        With ``expect="tip"`` it retries on top of concurrent commits. With a
        sha (or None for an empty catalog) it commits only if the branch is
        still there, and returns None otherwise, for `update` to re-read.
        """
        who = author or Author()
        for _ in range(_RETRIES):
            repo, tip = self._tip()
            if expect != "tip" and tip != expect:
                return None
            changes = with_derived_files(repo, tip, files)  # Resources, the root Location
            with _private_index(repo) as run:
                if tip is not None:
                    run("read-tree", tip)
                for path, data in changes.items():
                    if data is None:
                        run("update-index", "--force-remove", path)
                    else:
                        blob = repo.odb.store(IStream(b"blob", len(data), BytesIO(data))).hexsha
                        mode = f"100644,{blob.decode()},{path}"
                        run("update-index", "--add", "--cacheinfo", mode)
                tree = run("write-tree")
            if tip is not None and str(repo.commit(tip).tree.hexsha) == tree:
                return None
            parents = ["-p", tip] if tip else []
            stamp = {
                "GIT_AUTHOR_NAME": who.name,
                "GIT_AUTHOR_EMAIL": who.email,
                "GIT_COMMITTER_NAME": who.name,
                "GIT_COMMITTER_EMAIL": who.email,
            }
            commit = _git(repo, "commit-tree", tree, *parents, "-m", message, env=stamp)
            try:
                _git(repo, "update-ref", self._branch, commit, tip or "0" * 40)
            except CatalogError:
                continue  # someone committed in between: redo on top of theirs
            return commit
        raise CatalogError("the catalog kept changing during a write; try again")


def _git(repo: git.Repo, *argv: str, env: dict[str, str] | None = None) -> str:
    """One git plumbing command in the catalog's bare repository."""
    try:
        out = repo.git.execute(["git", *argv], env={**os.environ, **(env or {})})
    except git.GitCommandError as e:
        raise CatalogError(f"git {argv[0]} failed in the catalog: {e.stderr.strip()}") from e
    return str(out).strip()


@contextmanager
def _private_index(repo: git.Repo) -> Iterator[Callable[..., str]]:
    """A throw-away index, so writers never share git's lock on the default one."""
    with tempfile.TemporaryDirectory(prefix="slipway-catalog-") as scratch:
        # An empty work tree: update-index insists on one, though it reads none.
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index"), "GIT_WORK_TREE": scratch}

        def run(*argv: str) -> str:
            return _git(repo, *argv, env=index)

        yield run
