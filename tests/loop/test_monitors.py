"""Monitors against brute force and closed forms, and the collapse alarm on a sharpened policy."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from lifelong.control.ledger import Ledger
from lifelong.core.errors import DataInputError
from lifelong.loop.monitors import (
    CollapseMonitor,
    bleu,
    distinct_n,
    embedding_dispersion,
    hashed_ngram_embedding,
    kl_k3,
    pass_at_k,
    pass_at_k_curve,
    self_bleu,
)


@pytest.mark.parametrize(("n", "c"), [(5, 0), (5, 1), (6, 2), (7, 3), (8, 8), (9, 4)])
def test_pass_at_k_matches_brute_force_enumeration(n: int, c: int) -> None:
    samples = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_large_n_and_bad_input() -> None:
    assert pass_at_k(1000, 1, 1000) == 1.0 and pass_at_k(1000, 10, 1) == pytest.approx(0.01)
    assert pass_at_k(2000, 3, 100) == pytest.approx(1 - math.comb(1997, 100) / math.comb(2000, 100))
    with pytest.raises(DataInputError):
        pass_at_k(5, 6, 1)
    assert pass_at_k_curve([0, 4, 8], n=8, ks=(1, 8, 16)) == {1: pytest.approx(0.5), 8: pytest.approx(2 / 3)}


def test_k3_estimates_kl_without_bias_and_is_never_negative() -> None:
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    exact = float((p * np.log(p / q)).sum())
    x = rng.choice(4, size=200_000, p=p)
    est = kl_k3(np.log(p[x]), np.log(q[x]))
    assert est == pytest.approx(exact, abs=0.005)
    terms = [kl_k3([a], [b]) for a, b in zip(np.log(p[x[:50]]), np.log(q[x[:50]]), strict=True)]
    assert min(terms) >= 0.0
    assert kl_k3([-1.0, -2.0], [-1.0, -2.0]) == 0.0


def test_diversity_metrics() -> None:
    same = ["the cat sat on the mat"] * 8
    varied = [f"sample {i} says {w} things about {v}" for i, (w, v) in
              enumerate(itertools.product(["odd", "new", "few", "big"], ["cats", "dogs"]))]
    assert distinct_n(same, 2) < distinct_n(varied, 2)
    assert self_bleu(same, sample_size=8) == pytest.approx(1.0)
    assert self_bleu(varied, sample_size=8) < 0.7
    with pytest.raises(DataInputError, match="fixed sample_size"):
        self_bleu(varied[:4], sample_size=8)
    assert bleu("a b c d", ["a b c d"]) == 1.0 and bleu("x y", ["a b"]) == 0.0
    assert embedding_dispersion(hashed_ngram_embedding(same)) == pytest.approx(0.0, abs=1e-12)
    assert embedding_dispersion(hashed_ngram_embedding(varied)) > 0.2


def test_collapse_monitor_fires_on_a_sharpened_policy_only(tmp_path: Path) -> None:
    # 20 possible answers. Training problems are all answered by "0"; each held-out problem has its own
    # right answer. Sharpening the policy onto "0" lifts training reward, hurts held-out pass@1, makes
    # the base policy win at large k, and collapses diversity.
    rng = np.random.default_rng(0)
    heldout_right = [5 + (j % 10) for j in range(20)]

    def run(logits: np.ndarray) -> dict[str, float]:
        p = np.exp(logits - logits.max())
        p /= p.sum()
        train = float(np.mean([rng.choice(20, p=p) == 0 for _ in range(400)]))
        counts, texts = [], []
        for right in heldout_right:
            draws = rng.choice(20, size=64, p=p)
            counts.append(int((draws == right).sum()))
            texts.append(" ".join(f"a{d}" for d in draws[:8]))
        curve = pass_at_k_curve(counts, n=64, ks=(1, 32))
        return {"train": train, "pass1": curve[1], "pass32": curve[32], "distinct": distinct_n(texts, 1)}

    base = run(np.zeros(20))
    sharp_logits = np.full(20, -2.0)
    sharp_logits[0] = 4.0
    sharp = run(sharp_logits)
    assert sharp["train"] > base["train"] + 0.5
    assert sharp["pass32"] < base["pass32"]  # the base model wins at large k
    assert sharp["distinct"] < base["distinct"]

    monitor = CollapseMonitor(margin=0.1)
    monitor.update(train_reward=base["train"], heldout=base["pass1"], diversity=base["distinct"])
    reading = monitor.update(train_reward=sharp["train"], heldout=sharp["pass1"], diversity=sharp["distinct"],
                             pass_at_32=sharp["pass32"])
    assert set(reading.flags) == {"reward_outran_heldout", "heldout_dropped", "diversity_shrunk"}
    steady = CollapseMonitor(margin=0.1)
    steady.update(train_reward=0.30, heldout=0.28, diversity=0.8)
    assert not steady.update(train_reward=0.36, heldout=0.33, diversity=0.78).alarm  # gains that transfer

    with Ledger.open(tmp_path / "l.db") as ledger:
        assert monitor.record(ledger, "policy/global", reading) is not None
        (alarm,) = ledger.log(types=["alarm"])
        assert "reward_outran_heldout" in alarm.data["flags"] and "pass_at_32" in alarm.data
        assert steady.record(ledger, "policy/global", steady.readings[-1]) is None


def test_heldout_drop_flag() -> None:
    m = CollapseMonitor(tolerance=0.02)
    m.update(train_reward=0.10, heldout=0.50)
    m.update(train_reward=0.12, heldout=0.60)
    assert m.update(train_reward=0.14, heldout=0.55).flags == ("heldout_dropped",)
    with pytest.raises(DataInputError):
        m.update(train_reward=float("nan"), heldout=0.5)
