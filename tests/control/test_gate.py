"""The gate, checked by simulation with fixed seeds and against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lifelong.control.gate import Gate, PairedScores, Suite
from lifelong.control.stats import holm, mcnemar_exact, paired_bootstrap_ci, paired_test, sign_flip_test
from lifelong.core import GateInputError

# A latent-ability model of two versions of one model scoring the same 500 items: each item has a
# difficulty shared by both versions, each version adds its own noise. The two agree on ~84% of items,
# typical of a model and its fine-tuned successor. DELTA shifts the candidate's ability so that its
# expected accuracy is exactly 5 points higher (62.2% -> 67.2%).
N_ITEMS, MU, SPREAD, NOISE = 500, 0.5, 1.5, 0.6
DELTA = 0.2175173


def simulate(rng: np.random.Generator, delta: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(MU, SPREAD, N_ITEMS)
    champion = (z + rng.normal(0, NOISE, N_ITEMS) > 0).astype(float)
    candidate = (z + delta + rng.normal(0, NOISE, N_ITEMS) > 0).astype(float)
    return champion, candidate


def test_simulation_parameters_give_a_five_point_gain() -> None:
    scale = math.hypot(SPREAD, NOISE)
    gain = sps.norm.cdf((MU + DELTA) / scale) - sps.norm.cdf(MU / scale)
    assert gain == pytest.approx(0.05, abs=1e-6)


def acceptance_rate(delta: float, trials: int = 1000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    gate = Gate(alpha=0.05, n_resamples=100)
    accepted = 0
    for _ in range(trials):
        a, b = simulate(rng, delta)
        accepted += gate.decide(PairedScores("target", a, b)).accepted
    return accepted / trials


def test_gate_false_acceptance_under_no_difference_is_at_most_alpha() -> None:
    rate = acceptance_rate(0.0, trials=1000, seed=1)
    # The exact test is conservative; allow Monte-Carlo error (sd ~0.7 points at 1000 trials).
    assert rate <= 0.05 + 0.015, rate


def test_gate_accepts_a_true_five_point_gain_on_500_items_at_least_80_percent() -> None:
    rate = acceptance_rate(DELTA, trials=1000, seed=2)
    assert rate >= 0.80, rate


def test_continuous_scores_null_rate_and_power() -> None:
    rng = np.random.default_rng(3)
    gate = Gate(alpha=0.05, n_resamples=400)
    null_acc = power_acc = 0
    trials = 1000
    for _ in range(trials):
        base = rng.normal(0, 1, 200)
        a = base + rng.normal(0, 0.5, 200)
        b = base + rng.normal(0, 0.5, 200)
        null_acc += gate.decide(PairedScores("t", a, b)).accepted
        power_acc += gate.decide(PairedScores("t", a, b + 0.15)).accepted
    assert null_acc / trials <= 0.065
    assert power_acc / trials >= 0.8


def test_candidate_that_improves_target_but_breaks_a_canary_is_rejected() -> None:
    rng = np.random.default_rng(4)
    a, b = simulate(rng, 1.0)  # a large, clear gain on the target
    canary_champion = np.ones(200)
    canary_candidate = np.ones(200)
    canary_candidate[:10] = 0  # 5 points lost on the canary
    gate = Gate(canary_tolerance=0.01, n_resamples=200)
    ok = gate.decide(PairedScores("target", a, b), [PairedScores("clean", canary_champion, canary_champion)])
    broken = gate.decide(PairedScores("target", a, b), [PairedScores("clean", canary_champion, canary_candidate)])
    assert ok.accepted
    assert not broken.accepted
    assert broken.target is not None and broken.target.passed  # the target alone would have passed
    assert "canary 'clean' regressed by 0.0500" in broken.reasons[0]
    assert broken.canaries[0].negative_flip_rate == pytest.approx(0.05)


def test_canary_ci_rule_is_stricter_than_point_rule() -> None:
    champion = np.ones(60)
    candidate = np.ones(60)
    candidate[:1] = 0  # 1.7 points lost: inside a 2-point tolerance, but the interval is wide
    target = PairedScores("t", [0] * 40 + [1] * 60, [1] * 100)
    point = Gate(canary_tolerance=0.02).decide(target, [PairedScores("c", champion, candidate)])
    ci = Gate(canary_tolerance=0.02, canary_rule="ci").decide(target, [PairedScores("c", champion, candidate)])
    assert point.accepted and not ci.accepted


def test_negative_flip_ceiling_and_minimum_effect() -> None:
    champion = [1] * 50 + [0] * 50
    candidate = [0] * 10 + [1] * 40 + [1] * 40 + [0] * 10  # +30 items, -10 items
    lenient = Gate().decide(PairedScores("t", champion, candidate))
    strict = Gate(max_negative_flip_rate=0.05).decide(PairedScores("t", champion, candidate))
    demanding = Gate(min_effect=0.5).decide(PairedScores("t", champion, candidate))
    assert lenient.accepted
    assert not strict.accepted and "negative-flip rate 0.100" in strict.reasons[0]
    assert not demanding.accepted and "below the minimum" in demanding.reasons[0]


def test_verdict_keeps_full_evidence_and_round_trips() -> None:
    v = Gate(n_resamples=200).decide(
        PairedScores("t", [1, 0, 0, 1], [1, 1, 1, 0], item_ids=["a", "b", "c", "d"], suite_hash="abc")
    )
    d = v.to_dict()
    assert d["target"]["suite_hash"] == "abc"
    assert d["target"]["negative_flips"] == ["d"] and d["target"]["positive_flips"] == ["b", "c"]
    assert d["target"]["champion"] == [1.0, 0.0, 0.0, 1.0]
    assert d["thresholds"]["alpha"] == 0.05
    assert type(v).from_dict(d).to_dict() == d


def test_suite_evaluates_both_sides_on_the_same_items() -> None:
    items = {"a": 1, "b": 2, "c": 3, "d": 4}
    suite = Suite("evens", tuple(items), lambda f: [float(f(v)) for v in items.values()], content_hash="v1")
    verdict = Gate(n_resamples=100).evaluate(lambda v: v % 2 == 0, lambda v: True, suite)
    assert verdict.target is not None
    assert verdict.target.suite_hash == suite.hash
    assert verdict.target.positive_flips == ["a", "c"]


@pytest.mark.parametrize(
    "champion, candidate, match",
    [
        ([1, 0], [1], "same items"),
        ([], [], "no items"),
        ([1.0, float("nan")], [1.0, 1.0], "NaN or Inf"),
    ],
)
def test_bad_scores_get_clear_errors(champion, candidate, match) -> None:
    with pytest.raises(GateInputError, match=match):
        Gate().decide(PairedScores("t", champion, candidate))


def test_mcnemar_exact_matches_closed_forms() -> None:
    assert mcnemar_exact(0, 5) == pytest.approx(1 / 32)
    assert mcnemar_exact(5, 0) == pytest.approx(1.0)
    # Two-sided exact equals scipy's binomial test.
    for b, c in [(3, 12), (20, 31), (7, 7)]:
        assert mcnemar_exact(b, c, "two-sided") == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue)
    # At large b + c the exact test agrees with the continuity-corrected chi-squared version.
    b, c = 150, 195
    chi2 = (abs(b - c) - 1) ** 2 / (b + c)
    assert mcnemar_exact(b, c, "two-sided") == pytest.approx(sps.chi2.sf(chi2, 1), rel=0.05)
    # mid-p is between the exact p and the exact p minus the point mass.
    assert mcnemar_exact(2, 10, mid_p=True) < mcnemar_exact(2, 10)


def test_paired_bootstrap_interval_matches_normal_theory() -> None:
    rng = np.random.default_rng(5)
    diff = rng.normal(0.1, 1.0, 2000)
    lo, hi = paired_bootstrap_ci(diff, n_resamples=4000, seed=0)
    se = diff.std(ddof=1) / math.sqrt(diff.size)
    assert lo == pytest.approx(diff.mean() - 1.96 * se, abs=0.01)
    assert hi == pytest.approx(diff.mean() + 1.96 * se, abs=0.01)


def test_sign_flip_test_matches_exact_enumeration_on_a_small_case() -> None:
    diff = np.array([0.5, 1.0, -0.25, 2.0, 0.75])
    obs = diff.mean()
    signs = np.array(np.meshgrid(*[[-1, 1]] * 5)).reshape(5, -1).T
    exact = np.mean((signs * diff).mean(axis=1) >= obs - 1e-12)
    approx = sign_flip_test(diff, n_resamples=20000, seed=0)
    assert approx == pytest.approx(exact, abs=0.01)


def test_paired_beats_unpaired_on_correlated_items() -> None:
    """Pairing is the point: the same small gain that an unpaired z-test misses, McNemar finds."""
    champion = np.array([1] * 150 + [0] * 70)
    candidate = champion.copy()
    candidate[150:162] = 1  # 12 fixes, nothing broken
    paired = paired_test(champion, candidate).p_value
    p1, p2 = champion.mean(), candidate.mean()
    se = math.sqrt(p1 * (1 - p1) / 220 + p2 * (1 - p2) / 220)
    unpaired = sps.norm.sf((p2 - p1) / se)
    assert paired < 0.001 < 0.05 < unpaired


def test_holm_matches_definition() -> None:
    assert holm([0.01, 0.02, 0.03, 0.5]) == [0.04, 0.06, 0.06, 0.5]
