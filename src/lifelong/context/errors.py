"""Errors the memory store raises on bad input. Each names the field and the fix.

All derive from :class:`lifelong.core.errors.LifelongError`, and every one is raised *before* anything
is written, so a rejected operation leaves every stored item exactly as it was.

>>> try:
...     raise UnknownTenantError("tenant 'bob' has no store; pass create=True to make one")
... except LifelongError as err:
...     print(type(err).__name__, err)
UnknownTenantError tenant 'bob' has no store; pass create=True to make one
"""

from __future__ import annotations

from lifelong.core.errors import LifelongError


class MemoryStoreError(LifelongError):
    """Base class of the store's errors."""


class InvalidOpError(MemoryStoreError, ValueError):
    """An operation is malformed or breaks a rule (unknown id, bad field, superseding a superseded item...).

    ``index`` is the position of the offending operation in its batch (None when not known).
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"operation {index}: {message}")
        self.index = index


class DuplicateIdError(InvalidOpError):
    """An ADD (or import) names an id that already exists in the tenant, or twice in one batch."""


class ItemNotFoundError(InvalidOpError, KeyError):
    """An operation or lookup names an id the tenant does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class BlockLimitError(InvalidOpError):
    """An edit would make an item longer than its character limit (core memory blocks have limits)."""


class TextEncodingError(InvalidOpError):
    """Text is not valid UTF-8 (undecodable bytes, or lone surrogates in a str)."""


class DimensionError(MemoryStoreError, ValueError):
    """A vector has the wrong number of dimensions for this store, or is not finite."""


class UnknownTenantError(MemoryStoreError, KeyError):
    """A tenant that has no store was asked for (tenants are created explicitly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreLockedError(MemoryStoreError):
    """Another process holds the write lock for longer than the lock timeout; nothing was written."""


class StalePlanError(MemoryStoreError):
    """A validated plan no longer matches the store: an item it touches changed after it was planned."""


class EmbedderMismatchError(MemoryStoreError, ValueError):
    """The store was built with another embedder; mixing embedders would make dense search meaningless."""


class StoreFormatError(MemoryStoreError, ValueError):
    """A file is not a memory export, or a database is not a memory store (or of an unknown schema)."""
