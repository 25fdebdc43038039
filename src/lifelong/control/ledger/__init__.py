"""The ledger: append-only, content-addressed history of everything that changed and why."""

from lifelong.control.ledger.backend import SQLBackend, SQLiteBackend
from lifelong.control.ledger.ledger import ChangeRecord, CommitResult, Event, Ledger, TensorDiff

__all__ = ["ChangeRecord", "CommitResult", "Event", "Ledger", "SQLBackend", "SQLiteBackend", "TensorDiff"]
