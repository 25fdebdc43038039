"""The vocabulary: scopes, changes, versions, verdicts and the errors lifelong raises."""

from lifelong.core.change import Change, ChangeKind, Cost
from lifelong.core.errors import (
    BlobCorruptedError,
    BudgetError,
    DataInputError,
    GateInputError,
    InvalidChangeError,
    LedgerBusyError,
    LifelongError,
    NotALedgerError,
    VersionNotFoundError,
)
from lifelong.core.scopes import Scope
from lifelong.core.verdict import SuiteComparison, Verdict
from lifelong.core.version import BlobRef, Version

__all__ = [
    "BlobCorruptedError",
    "BlobRef",
    "BudgetError",
    "Change",
    "ChangeKind",
    "DataInputError",
    "Cost",
    "GateInputError",
    "InvalidChangeError",
    "LedgerBusyError",
    "LifelongError",
    "NotALedgerError",
    "Scope",
    "SuiteComparison",
    "Verdict",
    "Version",
    "VersionNotFoundError",
]
