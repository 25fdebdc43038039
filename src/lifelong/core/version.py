"""Versions: immutable, content-addressed snapshots of everything that can change.

A version is a manifest from artifact names to blob hashes. Its id is the hash of that manifest, so
committing the same content twice yields the same version, and a rollback restores exactly the bytes
that were committed.

>>> v = Version.from_manifest({"fc.weight": BlobRef("ab" * 32, "application/x-safetensors")})
>>> len(v.id), v.short_id == v.id[:12]
(64, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lifelong.core.hashing import json_hash


@dataclass(frozen=True)
class BlobRef:
    """A pointer to a stored blob: its SHA-256 and what kind of bytes it holds."""

    hash: str
    media_type: str

    def to_dict(self) -> dict[str, str]:
        """Plain-JSON form."""
        return {"hash": self.hash, "media_type": self.media_type}


@dataclass(frozen=True)
class Version:
    """An immutable snapshot: artifact name -> blob, plus the id derived from them."""

    id: str
    manifest: Mapping[str, BlobRef]
    meta: Mapping[str, Any] = field(default_factory=dict)
    created_at: float | None = None

    @staticmethod
    def content_id(manifest: Mapping[str, BlobRef]) -> str:
        """The id a manifest hashes to (metadata is not part of the content)."""
        return json_hash({name: ref.to_dict() for name, ref in sorted(manifest.items())})

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, BlobRef], meta: Mapping[str, Any] | None = None) -> Version:
        """Build a version whose id is computed from its manifest."""
        return cls(cls.content_id(manifest), dict(manifest), dict(meta or {}))

    @property
    def short_id(self) -> str:
        """The first 12 hex digits, enough to name a version in a CLI."""
        return self.id[:12]
