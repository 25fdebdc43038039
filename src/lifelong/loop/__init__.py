"""The loop: the system makes its own training signal, and the controls decide what sticks.

Building blocks (one module each):

- :mod:`~lifelong.loop.rollouts`: batched sampling with seeds and log-probabilities from any backend;
- :mod:`~lifelong.loop.executors`: ``Executor.map`` over a local process pool or a Ray cluster;
- :mod:`~lifelong.loop.verifiers`, :mod:`~lifelong.loop.sandbox`: scoring that fails closed, pinned by hash;
- :mod:`~lifelong.loop.pins`: verifiers and evaluation data outside every change scope;
- :mod:`~lifelong.loop.discover`, :mod:`~lifelong.loop.discover_loop`: TTT-Discover (entropic advantages,
  adaptive beta, PUCT) and a CPU loop;
- :mod:`~lifelong.loop.evolve`, :mod:`~lifelong.loop.cascade`, :mod:`~lifelong.loop.mutation`: archive
  evolution with islands, MAP-Elites, cascades and fresh-seed promotion;
- :mod:`~lifelong.loop.monitors`: diversity, pass@k, KL and collapse alarms;
- :mod:`~lifelong.loop.problems`: exact-evaluator problems with known optima (LABS).

Importing this package does not import torch (only :mod:`~lifelong.loop.discover_loop` and the
language-model sampler need it).

>>> from lifelong.loop import NumericMatch, Item
>>> NumericMatch()("42", Item("q", answer=42)).value
1.0
"""

from lifelong.loop.cascade import Cascade, Evaluation, Stage, safe_score
from lifelong.loop.errors import (
    ExecutorError,
    ExecutorUnavailableError,
    RolloutError,
    SearchInputError,
    VerifierChangedError,
    VerifierConfigError,
)
from lifelong.loop.executors import (
    Executor,
    LocalExecutor,
    RayExecutor,
    SerialExecutor,
    TaskResult,
    make_executor,
)
from lifelong.loop.pins import LOOP_PROTECTED, Pins, items_hash, protected_targets, verified_suite
from lifelong.loop.rollouts import (
    ChatSampler,
    LMSampler,
    OpenAISampler,
    Prompt,
    Rollout,
    SamplingConfig,
    make_requests,
    sample,
    sample_parallel,
)
from lifelong.loop.seeding import derive_seed
from lifelong.loop.verifiers import (
    CodeTests,
    CommandVerifier,
    ExactMatch,
    FunctionVerifier,
    Item,
    NumericMatch,
    Score,
    Status,
    Verifier,
    score_many,
)

__all__ = [
    "LOOP_PROTECTED", "Cascade", "ChatSampler", "CodeTests", "CommandVerifier", "Evaluation", "ExactMatch", "Executor",
    "ExecutorError", "ExecutorUnavailableError", "FunctionVerifier", "Item", "LMSampler", "LocalExecutor",
    "NumericMatch", "OpenAISampler", "Pins", "Prompt", "RayExecutor", "Rollout", "RolloutError", "SamplingConfig",
    "Score", "SearchInputError", "SerialExecutor", "Stage", "Status", "TaskResult", "Verifier", "VerifierChangedError",
    "VerifierConfigError", "derive_seed", "items_hash", "make_executor", "make_requests", "protected_targets",
    "safe_score", "sample", "sample_parallel", "score_many", "verified_suite",
]
