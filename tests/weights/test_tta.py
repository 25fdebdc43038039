"""Test-time adaptation methods: each changes only what its reference changes, under the governor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.control.budgets import Budget
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.control.resets import EntropyFloor
from lifelong.models.vision import DigitsCNN, random_crops, rotate_batch
from lifelong.weights.eata import EATA, eata_fisher
from lifelong.weights.norm import BNAdapt
from lifelong.weights.rotation import TTT_PARAMS, RotationTTT, RotationTTTOnline, augmented_rotation_batches
from lifelong.weights.sar import SAR
from lifelong.weights.tent import Tent
from lifelong.weights.tta import Source, softmax_entropy


@pytest.fixture()
def governor(tmp_path: Path) -> Governor:
    ledger = Ledger.open(tmp_path / "ledger.db")
    yield Governor(ledger, "digits/global")
    ledger.close()


def bn_model(seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    return DigitsCNN(norm="batch", width=8).eval()


def gn_model(seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    return DigitsCNN(norm="group", width=8, rotation_head=True).eval()


def batch(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 8, 8, generator=torch.Generator().manual_seed(seed))


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.state_dict().items() if n in before and not torch.equal(p, before[n])}


def test_softmax_entropy_matches_definition() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = logits.softmax(1)
    assert softmax_entropy(logits).item() == pytest.approx(float(-(p * p.log()).sum()))


def test_tent_changes_only_normalisation_affine_and_returns_pre_update_outputs(governor: Governor) -> None:
    tent = Tent(bn_model(), governor)
    before = {k: v.clone() for k, v in tent.model.state_dict().items()}
    x = batch()
    with torch.no_grad():
        expected = tent.model(x)  # train-mode BN with this batch's statistics, weights not yet updated
    out = tent(x)
    assert torch.allclose(out, expected)
    moved = changed(before, tent.model)
    assert moved and all(n.endswith(("norm.weight", "norm.bias")) for n in moved)
    assert tent.steps_taken == 1


def test_episodic_tent_with_one_step_predicts_like_bn_adapt(governor: Governor) -> None:
    model = bn_model()
    tent = Tent(model, governor, episodic=True)
    norm = BNAdapt(model, governor)
    for seed in range(3):
        x = batch(seed=seed)
        assert torch.allclose(tent(x), norm(x), atol=1e-6)
    # and the episodic reset leaves the weights where they started
    for n, p in tent.model.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n])


def test_online_tent_lowers_entropy_on_a_repeated_batch(governor: Governor) -> None:
    tent = Tent(bn_model(), governor, budget=Budget(steps=1, lr=1e-2, params=("*norm.weight", "*norm.bias")))
    x = batch(64)
    first = softmax_entropy(tent(x)).mean()
    for _ in range(20):
        last = softmax_entropy(tent(x)).mean()
    assert last < first


def test_bn_adapt_normalises_with_the_batch(governor: Governor) -> None:
    model = bn_model()
    x = batch() * 0.2 + 0.7  # a strongly shifted input distribution
    with torch.no_grad():
        eval_out = model(x)
    assert not torch.allclose(BNAdapt(model, governor)(x), eval_out)
    assert torch.allclose(Source(model, governor)(x), eval_out)


def test_non_finite_update_is_dropped_and_scope_reset(governor: Governor) -> None:
    tent = Tent(bn_model(), governor, budget=Budget(steps=1, lr=float("inf"), params=("*norm.weight", "*norm.bias")))
    before = {k: v.clone() for k, v in tent.model.state_dict().items()}
    tent(batch())
    assert changed(before, tent.model) == set()
    assert governor.rejected_steps == 1
    assert any("NaN/Inf" in e.message for e in governor.ledger.log(types=["reset"]))


def test_eata_filters_unreliable_samples_and_anchors_with_fisher(governor: Governor) -> None:
    model = bn_model()
    # Untrained model: near-uniform predictions, entropy ~ ln 10 > 0.4 ln 10: every sample filtered out.
    eata = EATA(model, governor)
    before = {k: v.clone() for k, v in eata.model.state_dict().items()}
    eata(batch())
    assert eata.selected == 0 and changed(before, eata.model) == set()
    # A permissive margin lets samples through; a strong Fisher anchor keeps weights closer to the source.
    budget = Budget(steps=1, lr=0.01, params=("*norm.weight", "*norm.bias"))
    free = EATA(model, governor, e_margin=10.0, d_margin=1.01, fisher_alpha=0.0, budget=budget)
    anchored = EATA(model, governor, e_margin=10.0, d_margin=1.01, fisher_alpha=1000.0, budget=budget)
    free.use_clean_fisher(batch(32, seed=7))
    anchored.use_clean_fisher(batch(32, seed=7))
    for seed in range(5):
        x = batch(32, seed=seed)
        free(x)
        anchored(x)
    assert free.selected > 0
    assert anchored.scope.distance() < 0.95 * free.scope.distance()
    with pytest.raises(ValueError, match="at least one clean sample"):
        eata_fisher(free, torch.empty(0, 8, 8))


def test_sar_skips_the_top_block_and_recovers_from_collapse(governor: Governor) -> None:
    sar = SAR(bn_model(), governor, margin=10.0, budget=Budget(steps=1, lr=0.5, params=("encoder.*norm.*", "trunk.0.norm.*")),
              reset=EntropyFloor(floor=5.0))  # a floor above any entropy: every step triggers recovery
    before = {k: v.clone() for k, v in sar.model.state_dict().items()}
    sar(batch(32))
    assert not any(n.startswith(("trunk.1", "classifier")) for n in changed(before, sar.model))
    assert sar.scope.distance() == 0.0  # recovered to the source weights
    assert any("entropy-floor" in e.message for e in governor.ledger.log(types=["reset"]))


def test_random_crops_and_rotations_are_exact() -> None:
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 8, 8)
    crops = random_crops(x, 5, torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(crops, x[:, None].expand(2, 5, 8, 8))
    r = torch.tensor([1, 3])
    assert torch.equal(rotate_batch(rotate_batch(x, r), (4 - r) % 4), x)


def reference_episodic_ttt(model: DigitsCNN, x: torch.Tensor, steps: int, lr: float, seed: int) -> torch.Tensor:
    """The plain per-input loop of ttt_cifar_release's standard TTT, for checking the vmap version."""
    import copy

    gen = torch.Generator().manual_seed(seed)
    inputs, labels = augmented_rotation_batches(x, steps, 32, gen)
    out = []
    for i in range(len(x)):
        m = copy.deepcopy(model)
        params = [p for n, p in m.named_parameters() if n.startswith(("encoder.", "ss_trunk.", "ss_classifier."))]
        opt = torch.optim.SGD(params, lr=lr)
        for s in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m.rotation_logits(inputs[i, s]), labels[i, s]).backward()
            opt.step()
        with torch.no_grad():
            out.append(m(x[i : i + 1]))
    return torch.cat(out)


def test_vectorised_episodic_ttt_matches_the_per_input_loop(governor: Governor) -> None:
    model = gn_model()
    x = batch(6)
    ttt = RotationTTT(model, governor, budget=Budget(steps=3, lr=0.05, params=TTT_PARAMS), seed=11)
    fast = ttt(x)
    slow = reference_episodic_ttt(model, x, steps=3, lr=0.05, seed=11)
    assert torch.allclose(fast, slow, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(fast, model(x), atol=1e-4)  # it did adapt
    # Each input had its own scope: the shared model is untouched.
    for n, p in ttt.model.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n])


def test_episodic_ttt_falls_back_to_the_source_on_non_finite_scopes(governor: Governor) -> None:
    model = gn_model()
    x = batch(4)
    ttt = RotationTTT(model, governor, budget=Budget(steps=2, lr=float("inf"), params=TTT_PARAMS))
    with torch.no_grad():
        assert torch.allclose(ttt(x), model(x))
    assert "non-finite" in governor.ledger.log(types=["reset"])[0].message


def test_ttt_online_adapts_the_shared_encoder_not_the_classifier(governor: Governor) -> None:
    online = RotationTTTOnline(gn_model(), governor, budget=Budget(steps=1, lr=0.01, params=TTT_PARAMS))
    before = {k: v.clone() for k, v in online.model.state_dict().items()}
    out = online(batch(4))
    moved = changed(before, online.model)
    assert out.shape == (4, 10) and online.steps_taken == 4
    assert any(n.startswith("encoder.") for n in moved)
    assert not any(n.startswith(("trunk.", "classifier")) for n in moved)


def test_rotation_ttt_needs_a_rotation_head(governor: Governor) -> None:
    with pytest.raises(ValueError, match="rotation head"):
        RotationTTT(bn_model(), governor)


def test_budget_glob_that_matches_nothing_is_an_error(governor: Governor) -> None:
    from lifelong.core import BudgetError

    with pytest.raises(BudgetError, match="matches no parameter"):
        Tent(bn_model(), governor, budget=Budget(params=("*.bn.weight",)))
