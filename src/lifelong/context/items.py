"""Typed memory items: what the store holds, with its validity interval, provenance and version.

An item is immutable; every change produces a new version with the same id and ``version + 1``. Its
*body* (:meth:`Item.to_dict`) is canonical JSON, and the SHA-256 of the body is the item-version hash
that the ledger's manifests point at. The embedding is derived data: it is not part of the body.

>>> item = Item(id="retry-1", content="On 429 wait 2 s, then back off exponentially.", kind="bullet",
...             section="api", provenance=Provenance(source="curator", trust="model"))
>>> item.kind, item.utility, item.is_current(at=0.0)
(<ItemKind.BULLET: 'bullet'>, 0.5, True)
>>> Item.from_dict(item.to_dict()) == item and len(item.hash) == 64
True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum, StrEnum
from typing import Any

import numpy as np

from lifelong.context.errors import BlockLimitError, InvalidOpError, TextEncodingError
from lifelong.core.hashing import canonical_json, sha256_hex
from lifelong.core.scopes import Scope

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# MemGPT's original core-memory limit; Letta later raised it (5,000, then 20,000). A block may set its own.
DEFAULT_BLOCK_LIMIT = 2000
MAX_CONTENT_CHARS = 200_000  # a guard against pasting a whole corpus into one item
MAX_SECTION_CHARS = 128
ITEM_SCOPES = (Scope.USER, Scope.SESSION, Scope.GLOBAL)


class ItemKind(StrEnum):
    """What an item is, and so which learner owns it."""

    BULLET = "bullet"  # ACE playbook bullet
    NOTE = "note"  # A-MEM note
    REFLECTION = "reflection"  # Reflexion self-critique
    FACT = "fact"  # a fact about the world or the user (Graphiti, mem0)
    BLOCK = "block"  # MemGPT core memory block: has a character limit
    SKILL = "skill"  # an Agent Skill


class Status(StrEnum):
    """Whether an item is live. Superseded is not a status: it is a closed validity interval."""

    ACTIVE = "active"
    DELETED = "deleted"  # soft delete: kept, auditable, excluded from retrieval


class Trust(StrEnum):
    """How far a source is trusted. Content from ``tool`` and ``external`` sources is shown to a model as
    quoted data, never as instructions."""

    SYSTEM = "system"
    USER = "user"
    MODEL = "model"
    TOOL = "tool"
    EXTERNAL = "external"

    @property
    def untrusted(self) -> bool:
        """Whether content from this source must be quoted when shown to a model."""
        return self in (Trust.TOOL, Trust.EXTERNAL)


class TagValue(StrEnum):
    """A verdict on whether an item helped (ACE's reflector tags)."""

    HELPFUL = "helpful"
    HARMFUL = "harmful"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Provenance:
    """Where an item came from: the source (a learner role, a person, a tool), its trust, the episode.

    >>> Provenance("web", "external").trust.untrusted
    True
    """

    source: str = "unknown"
    trust: Trust | str = Trust.USER
    episode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "trust", _enum(Trust, self.trust, "provenance.trust"))
        check_text(self.source, "provenance.source")
        if self.episode is not None:
            check_text(self.episode, "provenance.episode")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"source": self.source, "trust": self.trust.value, "episode": self.episode}  # type: ignore[union-attr]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict`."""
        return cls(d.get("source", "unknown"), d.get("trust", Trust.USER.value), d.get("episode"))


@dataclass(frozen=True)
class Item:
    """One memory item, as of one version.

    ``valid_from``/``valid_until`` bound when the item holds (Graphiti's validity interval); a superseded
    item has ``valid_until`` set and ``superseded_by`` naming its replacement and is never deleted.
    ``limit`` is a character limit (always set for blocks). ``meta`` holds learner-specific JSON
    (keywords, an A-MEM context sentence, a skill's front matter...).
    """

    id: str
    content: str
    kind: ItemKind | str = ItemKind.NOTE
    section: str = "general"
    tags: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    helpful: int = 0
    harmful: int = 0
    valid_from: float = 0.0
    valid_until: float | None = None
    superseded_by: str | None = None
    status: Status | str = Status.ACTIVE
    scope: Scope | str = Scope.USER
    session: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    limit: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum(ItemKind, self.kind, "kind"))
        object.__setattr__(self, "status", _enum(Status, self.status, "status"))
        try:
            scope = Scope.parse(self.scope)
        except ValueError as err:
            raise InvalidOpError(f"scope: {err}") from None
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "links", tuple(self.links))
        object.__setattr__(self, "meta", dict(self.meta))
        if isinstance(self.provenance, Mapping):
            object.__setattr__(self, "provenance", Provenance.from_dict(self.provenance))

    # ------------------------------------------------------------------ derived
    @property
    def utility(self) -> float:
        """Posterior mean of a Beta(1, 1) prior updated by the counters: 0.5 for an untested item."""
        return (self.helpful + 1) / (self.helpful + self.harmful + 2)

    @property
    def superseded(self) -> bool:
        """Whether a newer item replaced this one."""
        return self.superseded_by is not None

    def is_current(self, at: float) -> bool:
        """Active and valid at time ``at``."""
        if self.status is not Status.ACTIVE:
            return False
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical body: the identity of this item version."""
        return sha256_hex(self.body_json().encode("utf-8"))

    def body_json(self) -> str:
        """The canonical JSON of the body: exactly :func:`lifelong.core.hashing.canonical_json` of
        :meth:`to_dict` (validated items hold no non-finite numbers, so its NaN scan is skipped)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the content alone (what the embedding depends on)."""
        return text_hash(self.content)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The canonical body (no embedding): what is hashed, versioned, exported."""
        return {
            "id": self.id,
            "content": self.content,
            "kind": self.kind.value,  # type: ignore[union-attr]
            "section": self.section,
            "tags": list(self.tags),
            "links": list(self.links),
            "helpful": self.helpful,
            "harmful": self.harmful,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "superseded_by": self.superseded_by,
            "status": self.status.value,  # type: ignore[union-attr]
            "scope": self.scope.value,  # type: ignore[union-attr]
            "session": self.session,
            "provenance": self.provenance.to_dict(),
            "limit": self.limit,
            "meta": dict(self.meta),
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], embedding: np.ndarray | None = None) -> Item:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not vanish silently)."""
        known = {f.name for f in fields(cls)} - {"embedding"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidOpError(f"unknown item fields {unknown}; valid fields are {sorted(known)}")
        if "id" not in d or "content" not in d:
            raise InvalidOpError("an item needs at least 'id' and 'content'")
        kw = dict(d)
        kw["tags"] = tuple(kw.get("tags", ()))
        kw["links"] = tuple(kw.get("links", ()))
        kw["provenance"] = Provenance.from_dict(kw.get("provenance") or {})
        return cls(**kw, embedding=embedding)

    @classmethod
    def from_stored(cls, d: Mapping[str, Any], embedding: np.ndarray | None = None) -> Item:
        """Fast inverse of :meth:`to_dict` for bodies a store wrote itself (validated when written): no
        re-validation, a quarter of the cost, which matters when a search reads its candidates.

        >>> item = Item(id="a", content="x", tags=("t",))
        >>> Item.from_stored(item.to_dict()) == item
        True
        """
        obj = object.__new__(cls)
        put = object.__setattr__
        for key, value in d.items():
            put(obj, key, value)
        put(obj, "kind", ItemKind(d["kind"]))
        put(obj, "status", Status(d["status"]))
        put(obj, "scope", Scope(d["scope"]))
        put(obj, "tags", tuple(d["tags"]))
        put(obj, "links", tuple(d["links"]))
        p = d["provenance"]
        prov = object.__new__(Provenance)
        put(prov, "source", p["source"])
        put(prov, "trust", Trust(p["trust"]))
        put(prov, "episode", p["episode"])
        put(obj, "provenance", prov)
        put(obj, "embedding", embedding)
        return obj

    def evolve(self, **changes: Any) -> Item:
        """A copy with some fields changed (the caller bumps the version)."""
        return replace(self, **changes)


def _enum(enum: type[Enum], value: Any, name: str) -> Any:
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).lower())
    except ValueError:
        valid = ", ".join(e.value for e in enum)  # type: ignore[attr-defined]
        raise InvalidOpError(f"{name} {value!r} is not one of: {valid}") from None


def text_hash(text: str) -> str:
    """SHA-256 of a text's UTF-8 bytes.

    >>> text_hash("a")[:8]
    'ca978112'
    """
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_text(value: Any, name: str, *, allow_empty: bool = True) -> str:
    """Return ``value`` if it is a str that encodes as UTF-8; bytes must decode as UTF-8.

    >>> check_text(b"caf\\xc3\\xa9", "content")
    'café'
    >>> check_text(b"\\xff\\xfe", "content")
    Traceback (most recent call last):
    ...
    lifelong.context.errors.TextEncodingError: content is not valid UTF-8 (byte 0xff at position 0); decode it with the right encoding first, or pass errors='replace' when decoding
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise TextEncodingError(
                f"{name} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at position {err.start}); decode it "
                "with the right encoding first, or pass errors='replace' when decoding"
            ) from None
    if not isinstance(value, str):
        raise InvalidOpError(f"{name} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise TextEncodingError(
            f"{name} holds a lone surrogate {value[err.start]!r} at position {err.start}, which is not valid "
            "UTF-8 (text decoded with errors='surrogateescape'?); decode the source bytes with the right encoding"
        ) from None
    if not allow_empty and not value.strip():
        raise InvalidOpError(f"{name} is empty; give it some text")
    return value


def check_id(value: Any, name: str = "id") -> str:
    """An item id: 1-128 characters, letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit
    (ids become file names in Markdown exports).

    >>> check_id("strategies-00001")
    'strategies-00001'
    """
    value = check_text(value, name)
    if not ID_PATTERN.match(value):
        raise InvalidOpError(
            f"{name} {value!r} is not a valid id: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value


def validate_item(item: Item) -> Item:
    """Check every invariant of an item; raise a clear error on the first broken one.

    >>> validate_item(Item(id="b", content="x" * 10, kind="block", limit=5))
    Traceback (most recent call last):
    ...
    lifelong.context.errors.BlockLimitError: item 'b': content has 10 characters, over its limit of 5; shorten the edit, or raise the block's limit explicitly
    """
    check_id(item.id)
    check_text(item.content, f"item {item.id!r}: content", allow_empty=item.kind is ItemKind.BLOCK)
    if len(item.content) > MAX_CONTENT_CHARS:
        raise InvalidOpError(f"item {item.id!r}: content has {len(item.content)} characters, over {MAX_CONTENT_CHARS}")
    check_text(item.section, f"item {item.id!r}: section", allow_empty=False)
    if len(item.section) > MAX_SECTION_CHARS:
        raise InvalidOpError(f"item {item.id!r}: section is longer than {MAX_SECTION_CHARS} characters")
    for t in item.tags:
        check_text(t, f"item {item.id!r}: tag", allow_empty=False)
    for link in item.links:
        check_id(link, f"item {item.id!r}: link")
    if item.id in item.links:
        raise InvalidOpError(f"item {item.id!r} links to itself")
    for name in ("helpful", "harmful", "version"):
        v = getattr(item, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InvalidOpError(f"item {item.id!r}: {name} must be a non-negative integer, got {v!r}")
    for name in ("valid_from", "created_at", "updated_at"):
        _check_time(getattr(item, name), f"item {item.id!r}: {name}")
    if item.valid_until is not None:
        _check_time(item.valid_until, f"item {item.id!r}: valid_until")
        if item.valid_until < item.valid_from:
            raise InvalidOpError(f"item {item.id!r}: valid_until is before valid_from")
    if item.superseded_by is not None:
        check_id(item.superseded_by, f"item {item.id!r}: superseded_by")
    if item.scope not in ITEM_SCOPES:
        raise InvalidOpError(f"item {item.id!r}: scope must be user, session or global (input scopes are not stored)")
    if (item.scope is Scope.SESSION) != (item.session is not None):
        raise InvalidOpError(f"item {item.id!r}: give session=<session id> exactly when scope is 'session'")
    if item.session is not None:
        check_text(item.session, f"item {item.id!r}: session", allow_empty=False)
    if item.limit is not None and (not isinstance(item.limit, int) or isinstance(item.limit, bool) or item.limit <= 0):
        raise InvalidOpError(f"item {item.id!r}: limit must be a positive number of characters, got {item.limit!r}")
    if item.kind is ItemKind.BLOCK and item.limit is None:
        raise InvalidOpError(f"block {item.id!r} has no character limit; set limit=")
    if item.limit is not None and len(item.content) > item.limit:
        raise BlockLimitError(
            f"item {item.id!r}: content has {len(item.content)} characters, over its limit of {item.limit}; "
            "shorten the edit, or raise the block's limit explicitly"
        )
    try:
        canonical_json(dict(item.meta))
    except (TypeError, ValueError) as err:
        raise InvalidOpError(f"item {item.id!r}: meta must be plain JSON ({err})") from None
    _check_json_text(item.meta, f"item {item.id!r}: meta")
    return item


def _check_time(value: Any, name: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidOpError(f"{name} must be a finite number of seconds since the epoch, got {value!r}")


def _check_json_text(value: Any, name: str) -> None:
    if isinstance(value, str | bytes):
        check_text(value, name)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_text(k, name)
            _check_json_text(v, name)
    elif isinstance(value, Sequence):
        for v in value:
            _check_json_text(v, name)
