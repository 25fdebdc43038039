"""lifelong: continual learning after deployment, under controls.

A learner proposes a :class:`~lifelong.core.Change`, the governor decides whether it may stick,
and the ledger records every version, change, verdict and rollback.

>>> import lifelong
>>> lifelong.__version__
'0.1.0'
"""

__version__ = "0.1.0"
