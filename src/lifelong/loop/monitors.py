"""Loop monitors: diversity, pass@k, KL to the reference, and an alarm when training reward outruns
held-out gains.

Read every round of a self-improvement loop (controls notes, C5): after RL with verifiable rewards a
model beats its base at pass@1 but the base wins at large k (Yue et al. 2025), so pass@1 alone hides
collapse; KL climbing while reward flattens (TRL #204), or a reward jump that held-out scores do not
share (open-r1 #373), are the signatures of hacking.

- :func:`distinct_n`: unique n-grams / all n-grams over a set of generations;
- :func:`self_bleu`: mean BLEU of each generation against the others, on a **fixed** sample size
  (self-BLEU depends on the number of references; Texygen #27), higher = less diverse;
- :func:`embedding_dispersion`: mean pairwise cosine distance of embeddings (:func:`hashed_ngram_embedding`
  gives a model-free embedding);
- :func:`pass_at_k`: the unbiased estimator ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021);
- :func:`kl_k3`: Schulman's k3 estimator of KL(pi || pi_ref) from samples of pi, ``rho - log rho - 1``
  with ``rho = pi_ref / pi``, unbiased and never negative;
- :class:`CollapseMonitor`: per round, flags ``reward_outran_heldout``, ``heldout_dropped`` and
  ``diversity_shrunk`` (gmboquet/mixle#28's collapse_monitor: held-out non-decreasing *and* diversity
  not shrinking), optionally written to the ledger as an alarm.

>>> distinct_n(["a b c", "a b d"], n=2)
0.75
>>> round(pass_at_k(n=10, c=3, k=1), 4)
0.3
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lifelong.core.errors import DataInputError

if TYPE_CHECKING:
    from lifelong.control.ledger import Ledger

__all__ = ["CollapseMonitor", "RoundReading", "bleu", "distinct_n", "embedding_dispersion", "hashed_ngram_embedding",
           "kl_k3", "pass_at_k", "pass_at_k_curve", "self_bleu"]


def _tokens(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str | Sequence[str]], n: int = 2) -> float:
    """Unique n-grams over total n-grams across all texts (whitespace tokens, or pre-tokenised lists);
    0.0 when the texts have no n-gram at all.

    >>> distinct_n(["x x x x"], n=1), distinct_n(["a b", "c d"], n=1)
    (0.25, 1.0)
    """
    if n < 1:
        raise DataInputError(f"distinct_n needs n >= 1, got {n}")
    grams = [g for t in texts for g in _ngrams(_tokens(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: str | Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU with clipped n-gram precisions up to ``max_n``, the brevity penalty against the
    closest reference length, and add-one smoothing for n > 1 (Lin & Och 2004) so short texts do not
    collapse to zero.

    >>> bleu("the cat sat on the mat", ["the cat sat on the mat"])
    1.0
    """
    hyp = _tokens(hypothesis)
    refs = [_tokens(r) for r in references]
    if not hyp or not refs:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        h = Counter(_ngrams(hyp, n))
        max_ref: Counter[tuple[str, ...]] = Counter()
        for r in refs:
            for g, c in Counter(_ngrams(r, n)).items():
                max_ref[g] = max(max_ref[g], c)
        match = sum(min(c, max_ref[g]) for g, c in h.items())
        total = sum(h.values())
        if n == 1:
            if match == 0:
                return 0.0
            p = match / total
        else:
            p = (match + 1) / (total + 1)
        log_p += math.log(p) / max_n
    closest = min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    bp = 1.0 if len(hyp) > closest else math.exp(1 - closest / len(hyp))
    return float(bp * math.exp(log_p))


def self_bleu(texts: Sequence[str | Sequence[str]], *, sample_size: int = 32, max_n: int = 4, seed: int = 0) -> float:
    """Mean BLEU of each text against all the others, on exactly ``sample_size`` texts drawn without
    replacement (seeded). Fewer texts than ``sample_size`` is an error: a value measured on another
    number of references is not comparable.

    >>> self_bleu(["same words here"] * 4, sample_size=4)
    1.0
    """
    if sample_size < 2:
        raise DataInputError("self_bleu needs sample_size >= 2")
    if len(texts) < sample_size:
        raise DataInputError(f"self_bleu got {len(texts)} texts for a fixed sample_size of {sample_size}; sample at "
                             "least that many (or lower sample_size for every round alike)")
    idx = np.random.default_rng(seed).choice(len(texts), size=sample_size, replace=False)
    picked = [texts[i] for i in sorted(idx)]
    return float(np.mean([bleu(picked[i], picked[:i] + picked[i + 1 :], max_n) for i in range(sample_size)]))


def hashed_ngram_embedding(texts: Sequence[str], dim: int = 256, n: int = 3) -> np.ndarray:
    """A model-free embedding: character n-gram counts hashed (CRC32) into ``dim`` buckets, L2-normalised.
    Stable across processes and runs (unlike Python's ``hash``).

    >>> hashed_ngram_embedding(["abc", "abc"]).shape
    (2, 256)
    """
    out = np.zeros((len(texts), dim))
    for i, t in enumerate(texts):
        s = f" {t} "
        for j in range(max(1, len(s) - n + 1)):
            out[i, zlib.crc32(s[j : j + n].encode("utf-8")) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def embedding_dispersion(embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - cosine) between rows; 0 when all point the same way.

    >>> embedding_dispersion(np.array([[1.0, 0.0], [0.0, 1.0]]))
    1.0
    """
    x = np.asarray(embeddings, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataInputError("embedding_dispersion needs a (n >= 2, dim) array")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    sim = x @ x.T
    iu = np.triu_indices(x.shape[0], k=1)
    return float(np.mean(1.0 - sim[iu]))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``,
    computed as a product so large n does not overflow (Chen et al. 2021).

    >>> pass_at_k(5, 0, 3), pass_at_k(5, 3, 3)
    (0.0, 1.0)
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise DataInputError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_curve(correct_counts: Sequence[int], n: int, ks: Sequence[int] = (1, 4, 16, 64)) -> dict[int, float]:
    """Mean pass@k over problems, for every k <= n (``correct_counts[i]`` = correct samples of problem i).

    >>> pass_at_k_curve([0, 2], n=4, ks=(1, 4))
    {1: 0.25, 4: 0.5}
    """
    return {k: float(np.mean([pass_at_k(n, c, k) for c in correct_counts])) for k in ks if k <= n}


def kl_k3(logp: Sequence[float] | np.ndarray, logp_ref: Sequence[float] | np.ndarray) -> float:
    """Estimate KL(pi || pi_ref) from samples drawn from pi: mean of ``rho - log rho - 1`` with
    ``log rho = logp_ref - logp`` (per token or per sequence, consistently). Unbiased, and each term is
    non-negative, unlike the naive ``logp - logp_ref``.

    >>> kl_k3([-1.0, -2.0], [-1.0, -2.0])
    0.0
    """
    a = np.asarray(logp, dtype=float)
    b = np.asarray(logp_ref, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise DataInputError("kl_k3 needs equal-length, non-empty log-probability arrays (same samples)")
    log_rho = b - a
    return float(np.mean(np.expm1(log_rho) - log_rho))


@dataclass(frozen=True)
class RoundReading:
    """One round's readings and the flags raised on it.

    >>> RoundReading(1, 0.5, 0.4, None, ("heldout_dropped",)).alarm
    True
    """

    round: int
    train_reward: float
    heldout: float
    diversity: float | None
    flags: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        """Any flag raised."""
        return bool(self.flags)


class CollapseMonitor:
    """Watch a loop round by round against its first reading (the base model).

    Flags, each with its evidence in ``detail``:

    - ``reward_outran_heldout``: the training-reward gain since the baseline exceeds the held-out gain by
      more than ``margin`` (reward rising on what the loop optimises but not on what it does not see);
    - ``heldout_dropped``: held-out score more than ``tolerance`` below the best held-out so far;
    - ``diversity_shrunk``: diversity (e.g. distinct-2, or 1 - self-BLEU) below ``(1 - diversity_drop)``
      times the baseline's.

    >>> m = CollapseMonitor(margin=0.1)
    >>> m.update(train_reward=0.30, heldout=0.30, diversity=0.8).flags
    ()
    >>> m.update(train_reward=0.80, heldout=0.32, diversity=0.3).flags
    ('reward_outran_heldout', 'diversity_shrunk')
    """

    def __init__(self, *, margin: float = 0.1, tolerance: float = 0.02, diversity_drop: float = 0.25) -> None:
        self.margin = margin
        self.tolerance = tolerance
        self.diversity_drop = diversity_drop
        self.readings: list[RoundReading] = []

    def update(self, *, train_reward: float, heldout: float, diversity: float | None = None,
               **extra: Any) -> RoundReading:
        """Add one round's readings (``extra`` values, e.g. KL or pass@k, are stored alongside)."""
        for name, v in (("train_reward", train_reward), ("heldout", heldout)):
            if not math.isfinite(v):
                raise DataInputError(f"{name} is {v}; monitors need finite readings")
        flags: list[str] = []
        detail: dict[str, Any] = dict(extra)
        if self.readings:
            base = self.readings[0]
            d_train = train_reward - base.train_reward
            d_held = heldout - base.heldout
            detail.update(train_gain=d_train, heldout_gain=d_held)
            if d_train - d_held > self.margin:
                flags.append("reward_outran_heldout")
            best_held = max(r.heldout for r in self.readings)
            if heldout < best_held - self.tolerance:
                flags.append("heldout_dropped")
                detail["best_heldout"] = best_held
            if diversity is not None and base.diversity is not None and diversity < (1 - self.diversity_drop) * base.diversity:
                flags.append("diversity_shrunk")
                detail["base_diversity"] = base.diversity
        reading = RoundReading(len(self.readings), train_reward, heldout, diversity, tuple(flags), detail)
        self.readings.append(reading)
        return reading

    def record(self, ledger: Ledger, ref: str, reading: RoundReading, *, actor: str = "monitor") -> int | None:
        """Write an alarm event for a flagged reading (nothing for a clean one)."""
        if not reading.alarm:
            return None
        return ledger.record_event("alarm", f"round {reading.round}: {', '.join(reading.flags)}", ref=ref, actor=actor,
                                   data={"round": reading.round, "flags": list(reading.flags),
                                         "train_reward": reading.train_reward, "heldout": reading.heldout,
                                         "diversity": reading.diversity, **reading.detail})
