"""Verdicts: the gate's decision with everything needed to re-check it later.

A verdict never holds only an aggregate: it keeps the per-item scores of both sides, so any statistic
can be recomputed from the ledger.

>>> cmp = SuiteComparison(name="clean", role="target", suite_hash="h", item_ids=["a", "b"],
...                       champion=[1.0, 0.0], candidate=[1.0, 1.0], effect=0.5, ci=(0.0, 1.0),
...                       p_value=0.5, test="mcnemar-exact", passed=False, reasons=["p >= alpha"])
>>> Verdict(accepted=False, reasons=cmp.reasons, target=cmp).to_dict()["target"]["n"]
2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SuiteComparison:
    """Champion against candidate on one suite, item by item."""

    name: str
    role: str  # "target" or "canary"
    suite_hash: str
    item_ids: list[str]
    champion: list[float]
    candidate: list[float]
    effect: float
    ci: tuple[float, float]
    p_value: float | None
    test: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    confidence: float = 0.95
    negative_flips: list[str] = field(default_factory=list)
    positive_flips: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of paired items."""
        return len(self.item_ids)

    @property
    def champion_mean(self) -> float:
        """Mean score of the champion."""
        return sum(self.champion) / max(len(self.champion), 1)

    @property
    def candidate_mean(self) -> float:
        """Mean score of the candidate."""
        return sum(self.candidate) / max(len(self.candidate), 1)

    @property
    def negative_flip_rate(self) -> float:
        """Share of items the champion got right and the candidate gets wrong."""
        return len(self.negative_flips) / max(self.n, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with the derived figures spelled out for readers of the raw record."""
        return {
            "name": self.name,
            "role": self.role,
            "suite_hash": self.suite_hash,
            "n": self.n,
            "item_ids": list(self.item_ids),
            "champion": list(self.champion),
            "candidate": list(self.candidate),
            "champion_mean": self.champion_mean,
            "candidate_mean": self.candidate_mean,
            "effect": self.effect,
            "ci": list(self.ci),
            "confidence": self.confidence,
            "p_value": self.p_value,
            "test": self.test,
            "negative_flips": list(self.negative_flips),
            "positive_flips": list(self.positive_flips),
            "negative_flip_rate": self.negative_flip_rate,
            "passed": self.passed,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SuiteComparison:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            role=d["role"],
            suite_hash=d["suite_hash"],
            item_ids=list(d["item_ids"]),
            champion=list(d["champion"]),
            candidate=list(d["candidate"]),
            effect=d["effect"],
            ci=(d["ci"][0], d["ci"][1]),
            p_value=d["p_value"],
            test=d["test"],
            passed=d["passed"],
            reasons=list(d.get("reasons", [])),
            confidence=d.get("confidence", 0.95),
            negative_flips=list(d.get("negative_flips", [])),
            positive_flips=list(d.get("positive_flips", [])),
        )


@dataclass
class Verdict:
    """Accept or reject, with the evidence bundle: target and canary comparisons and the thresholds used."""

    accepted: bool
    reasons: list[str]
    target: SuiteComparison | None = None
    canaries: list[SuiteComparison] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    decided_at: float = field(default_factory=time.time)

    def summary(self) -> str:
        """One line for logs: the decision, the effect and its interval, and the first reason."""
        word = "ACCEPT" if self.accepted else "REJECT"
        if self.target is None:
            return f"{word}: {'; '.join(self.reasons)}"
        t = self.target
        p = "n/a" if t.p_value is None else f"{t.p_value:.3g}"
        return (
            f"{word} {t.name}: {t.champion_mean:.3f} -> {t.candidate_mean:.3f} "
            f"(effect {t.effect:+.3f}, {int(t.confidence * 100)}% CI [{t.ci[0]:+.3f}, {t.ci[1]:+.3f}], "
            f"p={p}, n={t.n}); {'; '.join(self.reasons)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in the ledger."""
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "target": None if self.target is None else self.target.to_dict(),
            "canaries": [c.to_dict() for c in self.canaries],
            "thresholds": dict(self.thresholds),
            "decided_at": self.decided_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Inverse of :meth:`to_dict`."""
        return cls(
            accepted=d["accepted"],
            reasons=list(d["reasons"]),
            target=None if d.get("target") is None else SuiteComparison.from_dict(d["target"]),
            canaries=[SuiteComparison.from_dict(c) for c in d.get("canaries", [])],
            thresholds=dict(d.get("thresholds", {})),
            decided_at=d.get("decided_at", 0.0),
        )

    @classmethod
    def rejected(cls, reason: str, **thresholds: Any) -> Verdict:
        """A rejection decided before any evaluation (invalid change, protected target, ...)."""
        return cls(accepted=False, reasons=[reason], thresholds=dict(thresholds))
