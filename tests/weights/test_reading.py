"""Reading TTT and Cartridges on a tiny random model: score-first, scoped, exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.control.budgets import Budget
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.core import BudgetError, DataInputError
from lifelong.models.lm import CausalLM
from lifelong.weights.cartridges import Cartridge, CartridgeError, make_self_study, train_cartridge
from lifelong.weights.lm_adapters import add_prime_mlps
from lifelong.weights.reading import Reader

TEXT = "The red mat is in the kitchen. Cats sit on the red mat. Dogs prefer the garden path. " * 6


@pytest.fixture()
def governor(tmp_path: Path) -> Governor:
    ledger = Ledger.open(tmp_path / "ledger.db")
    yield Governor(ledger, "lm/global")
    ledger.close()


@pytest.mark.parametrize("adapter", ["lora", "prime"])
def test_reading_scores_first_then_learns_and_reset_restores(governor: Governor, adapter: str) -> None:
    torch.manual_seed(0)
    lm = CausalLM.tiny_random()
    reader = Reader(lm, governor, adapter=adapter, chunk_tokens=48, window=24,
                    budget=Budget(steps=2, lr=5e-3, params=("*lora_*",) if adapter == "lora" else ("*.prime.*",)))
    frozen = {n: p.clone() for n, p in lm.model.named_parameters() if n not in reader.params}
    before = reader.score("Cats sit on the red mat.")
    ids = lm.encode(TEXT)
    first_chunk_loss = float(lm.token_nll(ids[:48], start=1).mean())
    report = reader.read(TEXT)
    # Score-first: the first chunk was scored with the untouched weights.
    assert report.chunk_loss_before[0] == pytest.approx(first_chunk_loss, rel=1e-5)
    assert report.steps == 2 * report.chunks
    assert reader.score("Cats sit on the red mat.") < before
    # Only the adapter moved.
    for n, p in lm.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    reader.reset()
    assert reader.score("Cats sit on the red mat.") == pytest.approx(before, rel=1e-6)
    assert reader.history == []


def test_prime_mlps_do_not_change_the_model_until_trained() -> None:
    lm = CausalLM.tiny_random()
    ids = lm.encode("abc def ghi")
    base = lm.token_nll(ids)
    names = add_prime_mlps(lm, fraction=0.25)
    assert names and all(".layers.3.mlp.prime." in n for n in names)
    assert torch.allclose(lm.token_nll(ids), base)


def test_reader_adapter_round_trip_and_proposal(governor: Governor, tmp_path: Path) -> None:
    lm = CausalLM.tiny_random()
    reader = Reader(lm, governor, chunk_tokens=48, window=24, budget=Budget(steps=1, lr=5e-3, params=("*lora_*",)))
    reader.read(TEXT)
    change = reader.proposal()
    path = reader.save_adapter(tmp_path / "adapter.safetensors")
    state = reader.adapter_state()
    assert change.scope.value == "session" and set(change.tensors) <= set(state) and change.tensors
    assert change.cost.tokens > 0
    reader.reset()
    reader.load_adapter(path)
    for n, t in reader.adapter_state().items():
        assert torch.equal(t, state[n])


def test_reader_bad_input(governor: Governor) -> None:
    lm = CausalLM.tiny_random()
    reader = Reader(lm, governor, chunk_tokens=16, window=8, max_tokens=64)
    with pytest.raises(DataInputError, match="empty or whitespace"):
        reader.read("   \n ")
    with pytest.raises(DataInputError, match="budget of 64"):
        reader.read("x" * 200)
    with pytest.raises(BudgetError, match="matches no parameter"):
        Reader(CausalLM.tiny_random(), governor, adapter="subset", budget=Budget(params=("*.nothing.*",)))


def test_nan_loss_is_dropped_and_scope_reset(governor: Governor) -> None:
    lm = CausalLM.tiny_random()
    reader = Reader(lm, governor, chunk_tokens=32, window=8, budget=Budget(steps=1, lr=float("inf"), params=("*lora_*",)))
    reader.read(TEXT)
    assert reader.report.dropped_steps > 0
    assert reader.scope.distance() == 0.0
    assert governor.ledger.log(types=["reset"])


def test_cartridge_round_trip_is_exact_including_frozen_tokens(tmp_path: Path) -> None:
    lm = CausalLM.tiny_random()
    cart = Cartridge.from_corpus(lm, TEXT, p=12, num_frozen=3)
    with torch.no_grad():
        for k in cart.keys:
            k.add_(torch.randn_like(k))
    loaded = Cartridge.load(cart.save(tmp_path / "c.safetensors"))
    assert torch.equal(loaded.frozen, cart.frozen) and int(loaded.frozen.sum()) == 3
    for a, b in zip([*cart.keys, *cart.values], [*loaded.keys, *loaded.values], strict=True):
        assert torch.equal(a, b)
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type for junk bytes
        Cartridge.load(tmp_path / "junk.safetensors")


def test_cartridge_initialised_from_first_tokens_reproduces_their_cache() -> None:
    lm = CausalLM.tiny_random()
    ids = lm.encode(TEXT)
    p = 10
    cart = Cartridge.from_corpus(lm, ids, p=p)
    # Continuing from the cartridge equals continuing from the real prefix.
    rest = ids[p : p + 20]
    with_cart = lm.token_nll(rest, start=1, past=cart.cache(lm))
    full = lm.token_nll(ids[: p + 20], start=p + 1)
    assert torch.allclose(with_cart, full, atol=1e-5)


def test_cartridge_training_lowers_distillation_loss_and_keeps_frozen_tokens() -> None:
    torch.manual_seed(0)
    lm = CausalLM.tiny_random()
    ids = lm.encode(TEXT)
    cart = Cartridge.from_corpus(lm, ids, p=16, num_frozen=1)
    frozen_key = cart.keys[0][:, :, :1].clone()
    samples = make_self_study(lm, ids, chunk_tokens=64, n=3, response_tokens=12, seed=0)
    report = train_cartridge(lm, cart, samples, steps=30, lr=2e-2)
    assert sum(report.losses[-5:]) / 5 < sum(report.losses[:5]) / 5
    assert torch.equal(cart.keys[0][:, :, :1], frozen_key)
    # Frozen tokens get no gradient through the cache, so only the others move.
    assert not torch.equal(cart.keys[0][:, :, 1:], Cartridge.from_corpus(lm, ids, p=16).keys[0][:, :, 1:])


def test_cartridges_compose_and_refuse_mismatches() -> None:
    lm = CausalLM.tiny_random()
    a = Cartridge.from_corpus(lm, TEXT, p=8)
    b = Cartridge.from_corpus(lm, TEXT[40:], p=6)
    both = Cartridge.compose(a, b)
    assert both.tokens == 14 and int(both.frozen.sum()) == 2
    ids = lm.encode(" and then", add_bos=False)
    assert lm.token_nll(ids, start=1, past=both.cache(lm)).isfinite().all()
    other = Cartridge.from_corpus(CausalLM.tiny_random(hidden=64), TEXT, p=4)
    with pytest.raises(CartridgeError, match="cannot compose"):
        Cartridge.compose(a, other)
