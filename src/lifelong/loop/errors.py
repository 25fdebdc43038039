"""Errors the loop package raises on purpose; each message names what is wrong and the fix.

>>> from lifelong.core.errors import LifelongError
>>> issubclass(ExecutorUnavailableError, LifelongError)
True
"""

from __future__ import annotations

from lifelong.core.errors import DataInputError, LifelongError


class ExecutorError(LifelongError, RuntimeError):
    """An executor could not run a batch (a function that cannot be sent to workers, a closed pool).

    >>> isinstance(ExecutorError("closed"), LifelongError)
    True
    """


class ExecutorUnavailableError(ExecutorError, ConnectionError):
    """A distributed backend cannot be reached or is not installed; the local executor still works.

    >>> isinstance(ExecutorUnavailableError("no cluster"), LifelongError)
    True
    """


class VerifierConfigError(LifelongError, ValueError):
    """A verifier was configured wrongly (negative tolerance, no tests, an unhashable function...).

    >>> isinstance(VerifierConfigError("bad"), LifelongError)
    True
    """


class VerifierChangedError(LifelongError):
    """A pinned verifier or evaluation set no longer matches its recorded content hash.

    >>> isinstance(VerifierChangedError("moved"), LifelongError)
    True
    """


class RolloutError(DataInputError):
    """A rollout request is malformed (no prompts, n < 1, duplicate prompt ids...).

    >>> isinstance(RolloutError("bad"), LifelongError)
    True
    """


class SearchInputError(DataInputError):
    """Input to a search routine (advantages, PUCT, evolution) is malformed.

    >>> isinstance(SearchInputError("bad"), LifelongError)
    True
    """
