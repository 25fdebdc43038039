"""The ledger: append-only, content-addressed history of everything that changed and why."""

from lifelong.control.ledger.backend import SQLBackend, SQLiteBackend
from lifelong.control.ledger.ledger import ChangeRecord, CommitResult, Event, Ledger, TensorDiff
from lifelong.control.ledger.postgres import PostgresBackend

__all__ = [
    "ChangeRecord", "CommitResult", "Event", "Ledger", "PostgresBackend", "SQLBackend", "SQLiteBackend", "TensorDiff",
]
