"""The gate: is the candidate better than the champion, and not just different?

The gate compares candidate and champion item by item on a target suite (a paired one-sided test, an
interval, the negative-flip rate) and checks that no canary suite regresses beyond a tolerance. Its
answer is a :class:`~lifelong.core.Verdict` that carries every per-item score, so the decision can be
recomputed from the ledger.

>>> gate = Gate(alpha=0.05, n_resamples=500)
>>> champion  = [1] * 70 + [0] * 30                  # 70% right
>>> candidate = [1] * 68 + [0, 0] + [1] * 12 + [0] * 18  # fixes 12 items, breaks 2
>>> verdict = gate.decide(PairedScores("target", champion, candidate))
>>> verdict.accepted, verdict.target.test, len(verdict.target.negative_flips)
(True, 'mcnemar-exact', 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lifelong.control.stats import paired_test
from lifelong.core.errors import GateInputError
from lifelong.core.hashing import json_hash
from lifelong.core.verdict import SuiteComparison, Verdict


@dataclass(frozen=True)
class Suite:
    """A pinned evaluation suite: item ids, a scorer, and a hash of both.

    ``score(system)`` returns one score per item, in ``item_ids`` order. ``content_hash`` must change
    whenever the items or the scorer change (hash the data and the verifier's source); the gate records
    it with every verdict, so a verdict always says exactly what it was measured on.

    >>> s = Suite("clean", ("a", "b"), lambda system: [system("a"), system("b")], content_hash="v1")
    >>> s.score(lambda item: 1.0)
    [1.0, 1.0]
    >>> len(s.hash)
    64
    """

    name: str
    item_ids: tuple[str, ...]
    score: Callable[[Any], Sequence[float]]
    content_hash: str

    @property
    def hash(self) -> str:
        """Identity of the suite: its name, items and content."""
        return json_hash({"name": self.name, "items": list(self.item_ids), "content": self.content_hash})


@dataclass
class PairedScores:
    """Per-item scores of champion and candidate on one suite, already computed."""

    name: str
    champion: Sequence[float]
    candidate: Sequence[float]
    item_ids: Sequence[str] | None = None
    suite_hash: str | None = None

    def ids(self) -> list[str]:
        """Item ids, defaulting to positions."""
        if self.item_ids is None:
            return [str(i) for i in range(len(self.champion))]
        if len(self.item_ids) != len(self.champion):
            raise GateInputError(
                f"suite {self.name!r}: {len(self.item_ids)} item ids for {len(self.champion)} scores; "
                "give one id per item"
            )
        return [str(i) for i in self.item_ids]


@dataclass
class Gate:
    """Decision rule for promotions.

    Defaults: one-sided level ``alpha`` = 0.05; the candidate must also show a mean gain of at least
    ``min_effect``; ``max_negative_flip_rate`` (None = unchecked) caps the share of items it breaks;
    each canary may lose at most ``canary_tolerance`` in mean score (``canary_rule="point"``), or its
    interval's lower bound must stay above ``-canary_tolerance`` (``"ci"``, a non-inferiority test).
    """

    alpha: float = 0.05
    min_effect: float = 0.0
    max_negative_flip_rate: float | None = None
    canary_tolerance: float = 0.01
    canary_rule: str = "point"
    confidence: float = 0.95
    n_resamples: int = 2000
    mid_p: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise GateInputError(f"Gate.alpha must lie in (0, 1), got {self.alpha}")
        if self.canary_rule not in ("point", "ci"):
            raise GateInputError(f"Gate.canary_rule must be 'point' or 'ci', got {self.canary_rule!r}")
        if self.canary_tolerance < 0:
            raise GateInputError(f"Gate.canary_tolerance must be >= 0, got {self.canary_tolerance}")

    @property
    def thresholds(self) -> dict[str, Any]:
        """The settings a verdict records next to its evidence."""
        return asdict(self)

    def compare(self, scores: PairedScores, role: str = "target") -> SuiteComparison:
        """Test one suite; for a canary the question is "did it regress?", for a target "did it improve?"."""
        ids = scores.ids()
        result = paired_test(
            scores.champion,
            scores.candidate,
            n_resamples=self.n_resamples,
            confidence=self.confidence,
            seed=self.seed,
            mid_p=self.mid_p,
        )
        reasons: list[str] = []
        if role == "target":
            nfr = len(result.negative_flips) / len(ids)
            if result.p_value >= self.alpha:
                reasons.append(f"not significant: p={result.p_value:.3g} >= alpha={self.alpha}")
            if result.effect < self.min_effect:
                reasons.append(f"effect {result.effect:+.4f} below the minimum {self.min_effect:+.4f}")
            if self.max_negative_flip_rate is not None and nfr > self.max_negative_flip_rate:
                reasons.append(f"negative-flip rate {nfr:.3f} above {self.max_negative_flip_rate:.3f}")
        else:
            if self.canary_rule == "point" and result.effect < -self.canary_tolerance:
                reasons.append(
                    f"canary {scores.name!r} regressed by {-result.effect:.4f} (tolerance {self.canary_tolerance})"
                )
            if self.canary_rule == "ci" and result.ci[0] < -self.canary_tolerance:
                reasons.append(
                    f"canary {scores.name!r} not shown non-inferior: CI lower bound {result.ci[0]:+.4f} "
                    f"< -{self.canary_tolerance}"
                )
        return SuiteComparison(
            name=scores.name,
            role=role,
            suite_hash=scores.suite_hash or json_hash({"name": scores.name, "items": ids}),
            item_ids=ids,
            champion=[float(x) for x in scores.champion],
            candidate=[float(x) for x in scores.candidate],
            effect=result.effect,
            ci=result.ci,
            p_value=result.p_value,
            test=result.test,
            passed=not reasons,
            reasons=reasons,
            confidence=self.confidence,
            negative_flips=[ids[i] for i in result.negative_flips],
            positive_flips=[ids[i] for i in result.positive_flips],
        )

    def decide(self, target: PairedScores, canaries: Sequence[PairedScores] = ()) -> Verdict:
        """Accept only if the target improves significantly and every canary holds."""
        t = self.compare(target, "target")
        cs = [self.compare(c, "canary") for c in canaries]
        reasons = list(t.reasons) + [r for c in cs for r in c.reasons]
        accepted = not reasons
        if accepted:
            reasons = [
                f"{t.name}: effect {t.effect:+.4f}, p={t.p_value:.3g} < {self.alpha}"
                + (f"; {len(cs)} canaries held" if cs else "")
            ]
        return Verdict(accepted=accepted, reasons=reasons, target=t, canaries=cs, thresholds=self.thresholds)

    def evaluate(self, champion: Any, candidate: Any, target: Suite, canaries: Sequence[Suite] = ()) -> Verdict:
        """Score both systems on the target and canary suites, then :meth:`decide`."""

        def paired(suite: Suite) -> PairedScores:
            return PairedScores(
                suite.name,
                list(suite.score(champion)),
                list(suite.score(candidate)),
                suite.item_ids,
                suite.hash,
            )

        return self.decide(paired(target), [paired(s) for s in canaries])
