"""lifelong: continual learning after deployment, under controls.

A learner proposes a :class:`~lifelong.core.Change`, the governor decides whether it may stick,
and the ledger records every version, change, verdict and rollback.

>>> import lifelong
>>> lifelong.__version__
'0.1.0'
>>> lifelong.System.__module__
'lifelong.system.runtime'
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `lifelong.System` without importing the runtime (and torch) on a plain `import lifelong`.
    if name in ("System", "Session", "Policies"):
        import lifelong.system

        return getattr(lifelong.system, name)
    raise AttributeError(f"module 'lifelong' has no attribute {name!r}")
