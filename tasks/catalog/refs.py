"""Backstage entity references: ``[kind:][namespace/]name``, parsed once and compared exactly.

The catalog's relations (``spec.owner``, ``spec.system``, ``spec.dependsOn``,
``spec.providesApis``) are entity references. A reference may leave out its
kind where the field implies one (an owner is a Group unless it says
otherwise) and its namespace (``default``). `EntityRef` fills both in, so two
spellings of the same entity compare equal.

>>> str(EntityRef.parse("payments", default_kind="group"))
'group:payments'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from slipway.errors import InvalidRequest

__all__ = [
    "DEFAULT_NAMESPACE",
    "EntityRef",
    "canonical_ref",
    "canonical_refs",
    "check_entity_name",
]

DEFAULT_NAMESPACE = "default"
"""Backstage's namespace when a reference names none; Slipway's entities all live in it."""

_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_NAMESPACE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$")


def check_entity_name(value: str, *, what: str = "entity name") -> str:
    """Refuse a name Backstage would reject: letters and digits joined by ``-``, ``_`` or ``.``.

    Such a name is also safe as a file name in the catalog repository.
    """
    if len(value) > 63 or not _NAME.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value[:70]!r} is not a Backstage entity name",
            hint="use at most 63 letters and digits, joined by single '-', '_' or '.'",
        )
    return value


@dataclass(frozen=True, order=True)
class EntityRef:
    """A reference to one catalog entity, with kind and namespace filled in."""

    kind: str
    """Lower case, e.g. ``group``, ``component``, ``resource``."""
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str, *, default_kind: str | None = None) -> EntityRef:
        """Read ``[kind:][namespace/]name``; a reference without a kind takes ``default_kind``.

        Raises:
            InvalidRequest: the text is not a reference, or names no kind and
                the field has no default.
        """
        raw = text.strip()
        kind, sep, rest = raw.partition(":")
        if not sep:
            kind, rest = default_kind or "", raw
        namespace, slash, name = rest.partition("/")
        if not slash:
            namespace, name = DEFAULT_NAMESPACE, rest
        if not kind:
            raise InvalidRequest(
                f"{text!r} names no kind", hint="write it as kind:name, e.g. group:payments"
            )
        if not _KIND.fullmatch(kind) or not _NAMESPACE.fullmatch(namespace):
            raise InvalidRequest(
                f"{text!r} is not an entity reference",
                hint="write it as [kind:][namespace/]name, e.g. group:payments",
            )
        check_entity_name(name, what=f"the name in {text!r}")
        return cls(kind.lower(), namespace, name)

    def __str__(self) -> str:
        """``kind:name``, or ``kind:namespace/name`` outside the default namespace."""
        if self.namespace == DEFAULT_NAMESPACE:
            return f"{self.kind}:{self.name}"
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def local(self) -> bool:
        """Whether it lives in the default namespace, where Slipway keeps its entities."""
        return self.namespace == DEFAULT_NAMESPACE


def canonical_ref(kind: str) -> Callable[[str], str]:
    """A pydantic validator: an optional reference (``""`` for none) in its canonical form."""

    def check(value: str) -> str:
        return str(EntityRef.parse(value, default_kind=kind)) if value else ""

    return check


def canonical_refs(kind: str | None) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """A pydantic validator: each reference of a list in its canonical form, so they compare."""

    def check(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(EntityRef.parse(v, default_kind=kind)) for v in values)

    return check
