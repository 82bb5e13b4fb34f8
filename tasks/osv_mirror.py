"""A local OSV mirror, so dependency scans work without internet access.

It loads OSV records (a directory of JSON files, or OSV's PyPI ``all.zip``),
indexes them by package, and answers OSV's own API on loopback:

- ``POST /v1/query`` -- what pip-audit calls through ``--osv-url``;
- ``POST /v1/querybatch`` -- ids only, as OSV answers it;
- ``GET /v1/vulns/<id>`` -- one full record.

Example:
    ```python
    mirror = OsvMirror.load(Path("~/.slipway/osv/all.zip").expanduser())
    with serve(mirror) as server:
        DependencyScanner(osv_url=server.query_url).scan(repo, timeout=120)
    ```

Records are served as stored, with one change: timestamps are rewritten to the
``...Z`` form, because pip-audit cannot parse ``+00:00`` offsets.

For a scan's sandboxed tools it listens on a unix socket instead, which the
sandbox relays its private ``127.0.0.1:8765`` to (`MirrorServer.forward`); it
answers for OSV online too, from a `tasks.osv_relay.OsvRelay`.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer
from types import TracebackType
from typing import Any, Protocol, Self

from packaging.version import InvalidVersion, Version

from slipway.errors import ComponentError, PortInUse
from slipway.sandbox import Forward
from tasks.osv_records import Record, decode_record, read_records

__all__ = [
    "SANDBOX_PORT",
    "MirrorServer",
    "OsvMirror",
    "OsvSource",
    "Record",
    "affects",
    "decode_record",
    "normalize_name",
    "serve",
]

logger = logging.getLogger(__name__)

"""One OSV record, as its JSON decodes."""

_MAX_BODY = 1 << 20
_TIMESTAMPS = ("published", "modified", "withdrawn")
SANDBOX_PORT = 8765
"""The port a mirror served on a unix socket has on a sandbox's private loopback."""


class OsvSource(Protocol):
    """What the server answers from: the mirror's records, or OSV online through a relay."""

    def query(self, name: str, version: str | None, *, ecosystem: str = "PyPI") -> list[Record]:
        """The records affecting ``name`` at ``version``."""

    def get(self, vuln_id: str) -> Record | None:
        """One record by id for a sandbox's ``GET /v1/vulns/<id>``, or None."""

    def record(self, vuln_id: str) -> Record | None:
        """One record by id for the platform itself, or None."""

    def __len__(self) -> int: ...


def normalize_name(ecosystem: str, name: str) -> str:
    """PEP 503 normalisation for PyPI names; other ecosystems compare exactly."""
    if ecosystem == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


class OsvMirror:
    """OSV records indexed by ``(ecosystem, package)``; safe to query from many threads."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._lock = threading.Lock()
        self._by_package: dict[tuple[str, str], list[Record]] = {}
        self._by_id: dict[str, Record] = {}
        self._replace(records)

    @classmethod
    def load(cls, source: Path | str) -> OsvMirror:
        """A mirror of the records in ``source``, a directory or a zip of JSON files."""
        return cls(read_records(Path(source)))

    def sync_from(self, source: Path | str) -> int:
        """Replace every record with those in ``source`` and return how many were loaded.

        The new records are read completely before the swap, so a bad source
        leaves the mirror serving what it had.

        Raises:
            InvalidRequest: ``source`` is missing, or is not a directory or a zip file.
        """
        records = list(read_records(Path(source)))
        self._replace(records)
        logger.info("OSV mirror synced %d records from %s", len(records), source)
        return len(records)

    def __len__(self) -> int:
        return len(self._by_id)

    def query(self, name: str, version: str | None, *, ecosystem: str = "PyPI") -> list[Record]:
        """The records affecting ``name`` at ``version``; every record of it when ``None``."""
        with self._lock:
            candidates = list(
                self._by_package.get((ecosystem, normalize_name(ecosystem, name)), ())
            )
        if version is None:
            return candidates
        return [r for r in candidates if affects(r, ecosystem, name, version)]

    def get(self, vuln_id: str) -> Record | None:
        """The record with this id, or ``None``."""
        with self._lock:
            return self._by_id.get(vuln_id)

    def record(self, vuln_id: str) -> Record | None:
        """The record with this id, or ``None``: the same as `get`."""
        return self.get(vuln_id)

    def by_alias(self, alias: str) -> Record | None:
        """The first record (by id) that lists ``alias``, e.g. a CVE id; a pass over them all."""
        with self._lock:
            ordered = sorted(self._by_id.items())
        return next((r for _, r in ordered if alias in (r.get("aliases") or ())), None)

    def _replace(self, records: Iterable[Record]) -> None:
        by_package: dict[tuple[str, str], list[Record]] = {}
        by_id: dict[str, Record] = {}
        for record in records:
            record = _normalize_timestamps(record)
            by_id[str(record["id"])] = record
            keys = {
                (str(pkg.get("ecosystem", "")), str(pkg.get("name", "")))
                for pkg in (a.get("package") or {} for a in record.get("affected", []))
            }
            for ecosystem, name in keys:
                by_package.setdefault((ecosystem, normalize_name(ecosystem, name)), []).append(
                    record
                )
        with self._lock:
            self._by_package, self._by_id = by_package, by_id


def affects(record: Record, ecosystem: str, name: str, version: str) -> bool:
    """Whether ``record`` lists ``name==version`` as affected.

    Follows OSV's evaluation: a version is affected when it is in the
    ``versions`` list, or inside an ECOSYSTEM range, whose events are walked
    in version order (a range may hold several introduced/fixed intervals).
    """
    try:
        wanted = Version(version)
    except InvalidVersion:
        wanted = None
    key = normalize_name(ecosystem, name)
    for affected in record.get("affected", []):
        pkg = affected.get("package") or {}
        if pkg.get("ecosystem") != ecosystem or normalize_name(ecosystem, pkg["name"]) != key:
            continue
        if version in affected.get("versions", []):
            return True
        if wanted is None:
            continue
        for rng in affected.get("ranges", []):
            if rng.get("type") == "ECOSYSTEM" and _in_range(wanted, rng.get("events", [])):
                return True
    return False


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    ordered: list[tuple[Version, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                try:
                    ordered.append((Version(event[kind]), kind))
                except InvalidVersion:
                    logger.debug("skipping unparseable OSV event %s", event)
    affected = False
    for bound, kind in sorted(ordered, key=lambda pair: pair[0]):
        if kind == "introduced" and version >= bound:
            affected = True
        elif (kind == "fixed" and version >= bound) or (
            kind == "last_affected" and version > bound
        ):
            affected = False
    return affected


def _normalize_timestamps(record: Record) -> Record:
    fixed = dict(record)
    for field_name in _TIMESTAMPS:
        value = fixed.get(field_name)
        if isinstance(value, str):
            fixed[field_name] = _rfc3339_z(value)
    return fixed


def _rfc3339_z(value: str) -> str:
    """``2023-10-02T12:00:00+00:00`` -> ``2023-10-02T12:00:00Z``, the form pip-audit reads."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(pattern)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], mirror: OsvSource) -> None:
        super().__init__(address, _Handler)
        self.mirror = mirror


class _UnixServer(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, mirror: OsvSource) -> None:
        super().__init__(str(path), _Handler)
        self.mirror = mirror


class _Handler(BaseHTTPRequestHandler):
    server: _Server | _UnixServer

    def do_POST(self) -> None:  # http.server dispatches by this name
        try:
            body = self._json_body()
            if self.path == "/v1/query":
                self._send(HTTPStatus.OK, self._answer(body, full=True))
            elif self.path == "/v1/querybatch":
                queries = body.get("queries")
                if not isinstance(queries, list):
                    raise ValueError("querybatch needs a 'queries' list")
                results = [self._answer(q, full=False) for q in queries]
                self._send(HTTPStatus.OK, {"results": results})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"message": f"no endpoint {self.path}"})
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            self._send(HTTPStatus.BAD_REQUEST, {"message": f"bad query: {e}"})

    def do_GET(self) -> None:  # http.server dispatches by this name
        prefix = "/v1/vulns/"
        record = (
            self.server.mirror.get(self.path[len(prefix) :])
            if self.path.startswith(prefix)
            else None
        )
        if record is None:
            self._send(HTTPStatus.NOT_FOUND, {"message": f"no record at {self.path}"})
        else:
            self._send(HTTPStatus.OK, record)

    def _answer(self, query: dict[str, Any], *, full: bool) -> dict[str, Any]:
        package = query["package"]
        version = query.get("version")
        found = self.server.mirror.query(
            str(package["name"]),
            None if version is None else str(version),
            ecosystem=str(package.get("ecosystem", "PyPI")),
        )
        if not found:
            return {}  # what OSV itself answers when nothing matches
        vulns = found if full else [{"id": r["id"], "modified": r.get("modified")} for r in found]
        return {"vulns": vulns}

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it `format`
        logger.debug("osv mirror: " + format, *args)


@dataclass
class MirrorServer:
    """A running mirror; stop it with `stop` or use it as a context manager."""

    url: str
    """The base URL, e.g. ``http://127.0.0.1:41234``; inside a sandbox for a socket's."""
    _server: _Server | _UnixServer
    _thread: threading.Thread
    socket_path: Path | None = None
    """The unix socket it listens on, when it serves sandboxes."""

    @property
    def forward(self) -> Forward | None:
        """What a sandbox needs to reach it at `url`: None for a mirror on loopback TCP."""
        return Forward(SANDBOX_PORT, self.socket_path) if self.socket_path else None

    @property
    def source(self) -> OsvSource:
        """What it answers from: the mirror's records, or the relay to OSV online."""
        return self._server.mirror

    @property
    def query_url(self) -> str:
        """The ``/v1/query`` URL to give pip-audit's ``--osv-url``."""
        return f"{self.url}/v1/query"

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    mirror: OsvSource,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    socket_path: Path | None = None,
) -> MirrorServer:
    """Serve ``mirror`` on a background thread; ``port=0`` picks a free port.

    It binds loopback by default because the mirror has no authentication; with
    ``socket_path`` it listens on that unix socket instead, for sandboxes.
    """
    where = str(socket_path) if socket_path else f"{host}:{port}"
    try:
        server = _UnixServer(socket_path, mirror) if socket_path else _Server((host, port), mirror)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"The OSV mirror cannot bind {where}: it is taken.",
                hint="stop whatever uses it, or choose another port",
            ) from e
        raise ComponentError(f"The OSV mirror cannot bind {where}: {e}") from e
    thread = threading.Thread(target=server.serve_forever, name="osv-mirror", daemon=True)
    thread.start()
    url = f"http://{host}:{server.server_port}" if isinstance(server, _Server) else ""
    logger.info("OSV mirror with %d records serving at %s", len(mirror), where)
    return MirrorServer(url or f"http://127.0.0.1:{SANDBOX_PORT}", server, thread, socket_path)
