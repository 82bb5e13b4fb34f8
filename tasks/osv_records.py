"""OSV records as they are stored: a directory of JSON files, or OSV's ``all.zip`` export.

Both the mirror (`tasks.osv_mirror`) and the advisory lookups of a sync
(`tasks.scanners.vulnerability_data`) read records one file at a time, and
skip a file that is not an OSV record rather than fail on it: OSV's export
may contain odd entries.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slipway.errors import InvalidRequest

__all__ = ["Record", "decode_record", "read_records"]

logger = logging.getLogger(__name__)

Record = dict[str, Any]
"""One OSV record, as OSV's schema has it."""


def read_records(source: Path) -> Iterator[Record]:
    """Every record in a directory of JSON files or in a zip of them.

    Raises:
        InvalidRequest: ``source`` is neither.
    """
    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            yield from decode_record(path.name, path.read_bytes())
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for member in archive.namelist():
                if member.endswith(".json"):
                    yield from decode_record(member, archive.read(member))
    else:
        raise InvalidRequest(
            f"OSV source {source} is neither a directory nor a zip file.",
            hint="point it at a directory of OSV JSON records or at OSV's PyPI all.zip",
        )


def decode_record(name: str, raw: bytes) -> Iterator[Record]:
    """The record in one file, or nothing: OSV's export may contain odd entries, and they are skipped."""
    try:
        record = json.loads(raw)
    except ValueError as e:
        logger.warning("skipping %s: not JSON (%s)", name, e)
        return
    if isinstance(record, dict) and isinstance(record.get("id"), str):
        yield record
    else:
        logger.warning("skipping %s: not an OSV record", name)
