"""Exceptions with messages that say what is wrong and how to fix it.

Every error lifelong raises on bad input derives from :class:`LifelongError`, so a caller can catch
them all at once, and each message names the offending field and a fix.

>>> try:
...     raise VersionNotFoundError("no version matches 'abc'; run `lifelong log` to list versions")
... except LifelongError as err:
...     print(err)
no version matches 'abc'; run `lifelong log` to list versions
"""

from __future__ import annotations


class LifelongError(Exception):
    """Base class for every error lifelong raises on purpose."""


class NotALedgerError(LifelongError):
    """The file opened as a ledger is something else (or a ledger of an unknown schema)."""


class LedgerBusyError(LifelongError, TimeoutError):
    """Another process held the ledger's write lock for longer than the wait allowed; nothing was written."""


class VersionNotFoundError(LifelongError, KeyError):
    """A version id (or prefix) matches no version, or matches several."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class BlobCorruptedError(LifelongError):
    """A stored blob no longer matches its content hash."""


class InvalidChangeError(LifelongError, ValueError):
    """A proposed change is malformed or breaks a rule (non-finite tensors, protected targets, ...)."""


class BudgetError(LifelongError, ValueError):
    """A budget cannot be applied, e.g. its parameter glob selects nothing in the model."""


class GateInputError(LifelongError, ValueError):
    """Scores given to the gate are not paired, empty, or not numbers."""


class DataInputError(LifelongError, ValueError):
    """Data handed to lifelong has the wrong shape, range or type."""
