"""TTT-E2E at tiny scale: score-first reading, purity, per-document reset, meta-gradients, constant cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lifelong.weights.ttt_e2e import (
    PRIME_SPEC,
    TinyTTTE2E,
    TrainConfig,
    TTTE2EConfig,
    inner_parameter_names,
    lm_loss,
    meta_loss,
    read_document,
    train,
)

torch.set_num_threads(1)
CFG = TTTE2EConfig(vocab_size=8, d_model=16, n_heads=2, mlp_hidden=16, window=4)


def model(seed: int = 0) -> TinyTTTE2E:
    return TinyTTTE2E(CFG, seed=seed)


def docs(n: int = 2, length: int = 25, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 8, (n, length), generator=torch.Generator().manual_seed(seed))


def test_prime_mlps_sit_in_the_last_quarter_and_are_the_inner_parameters() -> None:
    m = TinyTTTE2E(TTTE2EConfig(vocab_size=8, d_model=16, n_heads=2, mlp_hidden=16, n_layers=8))
    assert [i for i, b in enumerate(m.blocks) if b.prime is not None] == [6, 7]
    names = inner_parameter_names(m)
    assert names and all(n.startswith(("blocks.6.prime.", "blocks.7.prime.")) for n in names)
    with pytest.raises(ValueError, match="suffix blocks"):
        inner_parameter_names(m, ["blocks.0.mlp.*"])


def test_streaming_in_chunks_equals_the_whole_sequence() -> None:
    m, x = model(), docs(2, 23)
    full = m(x)
    state, parts = m.new_state(2), []
    for start in range(0, 23, 5):
        out, state = m(x[:, start:start + 5], state=state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_score_first_the_first_chunk_is_scored_by_the_unchanged_model() -> None:
    m, x = model(), docs(2, 25)
    logits = m(x[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, 8), x[:, 1:].reshape(-1), reduction="none").view(2, 24)
    no_update = read_document(m, x, chunk=6, inner_lr=1.0, steps=0)
    torch.testing.assert_close(no_update, ce.view(2, 4, 6).mean(-1), rtol=1e-5, atol=1e-5)
    adapted = read_document(m, x, chunk=6, inner_lr=1.0)
    torch.testing.assert_close(adapted[:, 0], no_update[:, 0], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(adapted[:, 1:], no_update[:, 1:])  # later chunks see the updates


def test_a_chunk_is_scored_with_the_weights_learned_from_earlier_chunks_only() -> None:
    m, x = model(), docs(2, 19)
    adapted = read_document(m, x, chunk=6, inner_lr=1.0)
    _, after_first = read_document(m, x[:, :7], chunk=6, inner_lr=1.0, return_params=True)  # one step, chunk 0
    frozen_at_first = read_document(m, x, chunk=6, inner_lr=1.0, steps=0, init=after_first)
    torch.testing.assert_close(adapted[:, 1], frozen_at_first[:, 1], rtol=1e-5, atol=1e-6)


def test_reading_leaves_stored_weights_alone_and_only_prime_weights_move() -> None:
    m, x = model(), docs(2, 25)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _, adapted = read_document(m, x, chunk=6, inner_lr=1.0, return_params=True)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in m.parameters())
    prime = inner_parameter_names(m, PRIME_SPEC)
    assert sorted(adapted) == sorted(prime)
    own = dict(m.named_parameters())
    assert all(adapted[n].shape == (2, *own[n].shape) for n in prime)
    assert all(not torch.allclose(adapted[n][0], own[n]) for n in prime if "w_" in n)


def test_documents_reset_and_adapt_independently() -> None:
    m, x = model(), docs(3, 25)
    together = read_document(m, x, chunk=6, inner_lr=1.0)
    alone = torch.stack([read_document(m, x[i], chunk=6, inner_lr=1.0) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    again = read_document(m, x, chunk=6, inner_lr=1.0)
    torch.testing.assert_close(together, again)  # nothing leaks from one read into the next
    _, carried = read_document(m, x, chunk=6, inner_lr=1.0, return_params=True)
    no_reset = read_document(m, x, chunk=6, inner_lr=1.0, init=carried)
    assert not torch.allclose(no_reset[:, 0], together[:, 0])  # without reset the start differs


def test_meta_gradient_reaches_the_init_through_the_inner_steps() -> None:
    m, x = model(), docs(2, 25)
    w = m.blocks[3].prime.mlp.w_down
    grads = {}
    for first_order in (False, True):
        m.zero_grad(set_to_none=True)
        loss, per_chunk = meta_loss(m, x, chunk=6, inner_lr=1.0, first_order=first_order)
        loss.backward()
        assert per_chunk.shape == (4,)
        grads[first_order] = w.grad.clone()
        assert m.embed.weight.grad.abs().sum() > 0  # every weight is a meta-parameter
    assert grads[False].abs().sum() > 0
    assert not torch.allclose(grads[False], grads[True])  # the second-order term is present


def test_meta_loss_gradient_matches_finite_differences() -> None:
    m = model().double()
    x = docs(1, 13)
    loss, _ = meta_loss(m, x, chunk=4, inner_lr=0.5, max_grad_norm=None)
    params = list(m.parameters())
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    analytic = float(sum((gr * v).sum() for gr, v in zip(grads, direction, strict=True)))

    def at(eps: float) -> float:
        with torch.no_grad():
            for p, v in zip(params, direction, strict=True):
                p.add_(eps * v)
        value = float(meta_loss(m, x, chunk=4, inner_lr=0.5, max_grad_norm=None)[0].detach())
        with torch.no_grad():
            for p, v in zip(params, direction, strict=True):
                p.sub_(eps * v)
        return value

    numeric = (at(1e-6) - at(-1e-6)) / 2e-6
    assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(numeric))


def test_meta_scan_and_reading_agree() -> None:
    # The training-time scan (prefix once, suffix chunked) and the streaming reader compute the same losses.
    m, x = model(), docs(2, 25)
    _, per_chunk = meta_loss(m, x, chunk=6, inner_lr=1.0, first_order=True)
    read = read_document(m, x, chunk=6, inner_lr=1.0).mean(0)
    torch.testing.assert_close(per_chunk, read, rtol=1e-4, atol=1e-5)


def test_per_chunk_compute_is_independent_of_document_length() -> None:
    m = model()

    def flops(n_chunks: int) -> int:
        with FlopCounterMode(display=False) as counter:
            read_document(m, docs(1, 4 * n_chunks + 1)[0], chunk=4, inner_lr=1.0)
        return counter.get_total_flops()

    f2, f4, f8 = flops(2), flops(4), flops(8)
    assert f4 - f2 == (f8 - f4) // 2  # each extra chunk costs the same, wherever it sits
    assert f2 > 0


def test_training_modes_run_and_lower_the_loss() -> None:
    torch.manual_seed(0)
    x = docs(4, 17, seed=3)
    for mode in ("pretrain", "meta"):
        m = model()
        start = float((lm_loss(m, x) if mode == "pretrain" else meta_loss(m, x, chunk=4, inner_lr=0.5)[0]).detach())
        hist = train(m, lambda step: x, TrainConfig(mode=mode, steps=15, chunk=4, inner_lr=0.5, lr_warmup=1))
        assert hist[-1] < start
    with pytest.raises(ValueError, match="mode"):
        train(model(), lambda step: x, TrainConfig(mode="other", steps=1))
