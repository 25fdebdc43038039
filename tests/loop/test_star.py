"""STaR / ReST-EM parts: the character LM's cached sampler, the arithmetic verifier, the collectors,
and a gated round that records its verdict."""

from __future__ import annotations

import pytest
import torch

from lifelong.control.gate import Gate
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.core.errors import DataInputError
from lifelong.loop.arithmetic import CHARS, Problem, answer_is_correct, rationale_is_valid, sample_problems
from lifelong.loop.charlm import CharTransformer, Vocab, sample, train
from lifelong.loop.star import (
    LoopConfig,
    SelfImprovementLoop,
    collect_rest_em,
    collect_star,
    collect_unfiltered,
    seed_data,
)

VOCAB = Vocab(CHARS)


def _model(seed: int = 0) -> CharTransformer:
    torch.manual_seed(seed)
    return CharTransformer(len(VOCAB), d_model=32, layers=2, heads=4, max_len=64).eval()


def _greedy_without_cache(model: CharTransformer, prompt: str, max_new: int) -> str:
    """Reference decoding: recompute the whole sequence for every new character, one prompt alone."""
    ids = VOCAB.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([ids]))[0, -1].float()
            logits[VOCAB.pad] = float("-inf")
            nxt = int(logits.argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt in (VOCAB.eos, VOCAB.index["\n"]):
                break
    return VOCAB.decode(out)


def test_cached_greedy_sampling_matches_recomputation_for_mixed_prompt_lengths() -> None:
    model = _model()
    train(model, VOCAB, seed_data(sample_problems(40, (1, 3), seed=1)), steps=30, batch_size=16, seed=0)
    prompts = ["Q:7+5=", "Q:347+86=", "H:433|Q:347+86=", "Q:1+22="]
    got = [s.text for s in sample(model, VOCAB, prompts, max_new=20, temperature=0.0)]
    assert got == [_greedy_without_cache(model, p, 20) for p in prompts]


def test_a_row_samples_the_same_alone_or_next_to_longer_prompts() -> None:
    model = _model(1)
    alone = sample(model, VOCAB, ["Q:1+2="], max_new=12, temperature=0.8, seed=3)[0]
    # Greedy is batch-independent by construction; sampled rows share the generator, so compare greedy.
    batch = sample(model, VOCAB, ["Q:1+2=", "H:12345|Q:12345+0="], max_new=12, temperature=0.0)
    assert batch[0].text == sample(model, VOCAB, ["Q:1+2="], max_new=12, temperature=0.0)[0].text
    assert len(alone.text) <= len(alone.logprobs) <= 12  # one log-probability per sampled id (EOS has no text)
    assert all(lp <= 0.0 for lp in alone.logprobs)


def test_sampling_refuses_prompts_that_do_not_fit() -> None:
    with pytest.raises(DataInputError, match="exceeds max_len"):
        sample(_model(), VOCAB, ["Q:1+1="], max_new=64)


def test_verifier_checks_answer_and_rationale() -> None:
    p = Problem(347, 86)
    assert answer_is_correct(p, p.rationale()) and rationale_is_valid(p, p.rationale())
    wrong_steps = "7+6+0=13;4+8+1=13;3+0+0=3;A:433"  # right answer, wrong last column
    assert answer_is_correct(p, wrong_steps) and not rationale_is_valid(p, wrong_steps)
    assert not answer_is_correct(p, "A:432") and not answer_is_correct(p, "garbage")


def test_collectors_keep_only_verified_samples_and_store_prompts_without_hints() -> None:
    pool = sample_problems(24, (1, 2), seed=5)
    model = _model(2)
    train(model, VOCAB, seed_data(pool, hinted_share=0.5), steps=60, batch_size=16, seed=0)
    cfg = LoopConfig(method="star", max_new=24, n_samples=3, cap=1)
    by_prompt = {p.prompt(): p for p in pool}
    kept, from_hint, _ = collect_star(model, VOCAB, pool, cfg, seed=0, rationalize=True)
    assert all(answer_is_correct(by_prompt[q], a) for q, a in kept)
    assert all(not q.startswith("H:") for q, _ in kept) and from_hint <= len(kept)
    kept_rest, _, _ = collect_rest_em(model, VOCAB, pool, LoopConfig(method="rest-em", max_new=24, n_samples=3, cap=1), 0)
    assert all(answer_is_correct(by_prompt[q], a) for q, a in kept_rest)
    assert max((sum(q == p.prompt() for q, _ in kept_rest) for p in pool), default=0) <= 1  # the cap
    everything, _, wrong_share = collect_unfiltered(model, VOCAB, pool, cfg, seed=0)
    assert len(everything) == len(pool) and 0.0 <= wrong_share <= 1.0


def test_a_round_is_gated_recorded_and_a_rejected_candidate_does_not_replace_the_champion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed_problems = sample_problems(60, (1, 2), seed=1)
    base = _model(3)
    train(base, VOCAB, seed_data(seed_problems), steps=80, batch_size=16, seed=0)
    pool = sample_problems(30, (1, 2), seed=2, exclude={p.id for p in seed_problems})
    heldout = sample_problems(30, (1, 2), seed=3, exclude={p.id for p in seed_problems + pool})
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        gov = Governor(ledger, "addition/star", gate=Gate(alpha=0.05, n_resamples=200, seed=0))
        loop = SelfImprovementLoop(base, VOCAB, pool, heldout, gov, LoopConfig(method="star", rounds=1, base_steps=10,
                                                                              max_new=24), seed=0)
        report = loop.run_round(1, harmful=True)
        assert report.harmful and report.kept == len(pool)
        assert ledger.stats()["verdicts"] == 1 and report.verdict
        if not report.accepted:
            assert loop.champion is base
        assert loop.summary()["rounds"][0]["round"] == 1


def test_a_round_that_verifies_nothing_proposes_no_change_and_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    untrained = _model(4)  # cannot produce a well-formed answer
    pool = sample_problems(10, (3, 3), seed=7)
    heldout = sample_problems(10, (3, 3), seed=8, exclude={p.id for p in pool})
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        gov = Governor(ledger, "addition/star", gate=Gate(alpha=0.05, n_resamples=200, seed=0))
        loop = SelfImprovementLoop(untrained, VOCAB, pool, heldout, gov, LoopConfig(method="star", rounds=3, max_new=24))
        reports = loop.run()
        assert len(reports) == 1 and reports[0].kept == 0 and not reports[0].accepted
        assert "no candidate" in reports[0].verdict and loop.champion is untrained
        (note,) = ledger.log(types=["note"])
        assert "no candidate" in note.message
        assert ledger.stats()["verdicts"] == 0
