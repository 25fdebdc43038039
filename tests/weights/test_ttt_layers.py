"""TTT layers: primal == dual, closed forms == autograd, decoding cache == full forward, outer gradients, NaN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelong.core.errors import LifelongError
from lifelong.weights.ttt_layers import (
    TTTMLP,
    TTTCache,
    TTTLinear,
    TTTNaNError,
    gelu_tanh_bwd,
    ln_fused_l2_bwd,
    ln_fwd,
    rope,
)

torch.set_num_threads(1)
LAYERS = [TTTLinear, TTTMLP]


def make(cls, d_model=16, num_heads=2, b=4, seed=0, perturb=True, **kw):  # type: ignore[no-untyped-def]
    """A float64 layer whose outer parameters are moved off their (symmetric) initial values."""
    layer = cls(d_model, num_heads, mini_batch_size=b, seed=seed, **kw).double()
    if perturb:
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            layer.learnable_token_idx.copy_(0.3 * torch.randn(b, generator=g, dtype=torch.float64))
            layer.learnable_token_idx[-1] = -5.0  # exercises the clamp at 0
            layer.ttt_norm_weight.add_(0.2 * torch.randn(layer.ttt_norm_weight.shape, generator=g, dtype=torch.float64))
            layer.ttt_norm_bias.add_(0.2 * torch.randn(layer.ttt_norm_bias.shape, generator=g, dtype=torch.float64))
            layer.learnable_ttt_lr_bias.add_(torch.randn(num_heads, generator=g, dtype=torch.float64))
            for n in layer.inner_param_names():
                p = getattr(layer, n)
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
                proj.weight.mul_(10.0)  # larger q, k, v so the inner updates matter
    return layer


def inputs(bsz, t, d, seed=1):  # type: ignore[no-untyped-def]
    return torch.randn(bsz, t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 7, 16), (1, 1, 4)])
def test_ln_fused_l2_bwd_matches_autograd(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(shape, generator=g, dtype=torch.float64)
    gamma = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    beta = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    loss = (0.5 * (ln_fwd(x, gamma, beta) - target) ** 2).sum()
    (auto,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(ln_fused_l2_bwd(x, target, gamma, beta), auto, rtol=1e-10, atol=1e-10)


def test_ln_fwd_matches_torch_layer_norm() -> None:
    x = inputs(3, 5, 8)
    gamma, beta = torch.rand(8, dtype=torch.float64), torch.rand(8, dtype=torch.float64)
    torch.testing.assert_close(ln_fwd(x, gamma, beta), F.layer_norm(x, (8,), gamma, beta, eps=1e-6))


def test_gelu_bwd_matches_autograd() -> None:
    x = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(F.gelu(x, approximate="tanh").sum(), x)
    torch.testing.assert_close(gelu_tanh_bwd(x), auto, rtol=1e-12, atol=1e-12)
    # TTTMLP uses the fused op; it must be the same function.
    fused = torch.ops.aten.gelu_backward(torch.ones_like(x), x, approximate="tanh")
    torch.testing.assert_close(fused, gelu_tanh_bwd(x), rtol=1e-12, atol=1e-12)


def test_rope_matches_reference_permute_rotate_half_formulation() -> None:
    # ttt.py: permute_qk -> apply_rotary_pos_emb (rotate_half, cat(freqs, freqs)) -> undo_permute_qk.
    x = inputs(2, 6, 8).reshape(2, 1, 6, 8)
    pos = torch.arange(6) % 4
    b, h, t, d = x.shape
    perm = x.reshape(b, h, t, d // 2, 2).transpose(3, 4).reshape(b, h, t, d)
    inv = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    emb = torch.cat([pos[:, None] * inv] * 2, dim=-1)
    rot = torch.cat((-perm[..., d // 2:], perm[..., : d // 2]), dim=-1)
    out = perm * emb.cos() + rot * emb.sin()
    ref = out.reshape(b, h, t, 2, d // 2).transpose(3, 4).reshape(b, h, t, d)
    torch.testing.assert_close(rope(x, pos), ref)


# ------------------------------------------------------------------------------------ primal == dual


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("bsz,t,d_model,heads,b", [(2, 16, 16, 2, 4), (1, 37, 16, 4, 8), (3, 5, 8, 2, 16),
                                                    (2, 33, 24, 3, 16), (1, 7, 8, 1, 1)])
def test_primal_equals_dual(cls, bsz: int, t: int, d_model: int, heads: int, b: int) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, d_model, heads, b)
    x = inputs(bsz, t, d_model)
    primal, dual = layer(x, mode="primal"), layer(x, mode="dual")
    torch.testing.assert_close(primal, dual, rtol=0, atol=1e-5)
    assert (primal - dual).abs().max() < 1e-10  # in float64 they agree to round-off, far inside 1e-5


def naive_reference(layer, x):  # type: ignore[no-untyped-def]
    """Token by token, with autograd for every inner gradient: an independent second implementation."""
    bsz, t, _ = x.shape
    nh, d, b = layer.num_heads, layer.head_dim, layer.mini_batch_size
    pos = torch.arange(t) % b

    def heads(z):  # type: ignore[no-untyped-def]
        return z.reshape(bsz, t, nh, d).transpose(1, 2)

    q = rope(heads(layer.q_proj(x)), pos)
    k = rope(heads(layer.k_proj(x)), pos)
    v = heads(layer.v_proj(x))
    lr = layer.base_lr * torch.sigmoid(torch.einsum("btc,hc->bht", x, layer.learnable_ttt_lr_weight)
                                       + layer.learnable_ttt_lr_bias[:, None]) / d
    scale = torch.clamp_min(layer.token_idx + layer.learnable_token_idx, 0)
    names = layer.inner_param_names()
    out = torch.zeros(bsz, nh, t, d, dtype=x.dtype)
    for bi in range(bsz):
        for h in range(nh):
            gamma, beta = layer.ttt_norm_weight[h], layer.ttt_norm_bias[h]
            w0 = {n: getattr(layer, n)[h].detach().clone() for n in names}

            def f_res(z, w):  # type: ignore[no-untyped-def]
                if len(w) == 2:
                    return z @ w["W1"] + w["b1"][0]
                return F.gelu(z @ w["W1"] + w["b1"][0], approximate="tanh") @ w["W2"] + w["b2"][0]

            for m0 in range(0, t, b):
                acc = {n: torch.zeros_like(p) for n, p in w0.items()}
                for i in range(m0, min(m0 + b, t)):
                    wj = {n: p.detach().clone().requires_grad_(True) for n, p in w0.items()}
                    kj, vj = k[bi, h, i].detach(), v[bi, h, i].detach()
                    loss = 0.5 * ((ln_fwd(f_res(kj, wj), gamma.detach(), beta.detach()) - (vj - kj)) ** 2).sum()
                    grads = torch.autograd.grad(loss, list(wj.values()))
                    for n, g in zip(names, grads, strict=True):
                        acc[n] = acc[n] + lr[bi, h, i].detach() * g
                    wi = {n: w0[n] - scale[i - m0].detach() * acc[n] for n in names}
                    out[bi, h, i] = q[bi, h, i].detach() + ln_fwd(f_res(q[bi, h, i].detach(), wi), gamma, beta).detach()
                w0 = wi
    z = out.transpose(1, 2).reshape(bsz, t, nh * d)
    return layer.o_proj(layer.post_norm(z)).detach()


@pytest.mark.parametrize("cls", LAYERS)
def test_matches_token_by_token_autograd_reference(cls) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, 8, 2, 4)
    x = inputs(2, 11, 8)  # 2 full mini-batches and a tail of 3
    with torch.no_grad():
        fast = layer(x)
    torch.testing.assert_close(fast, naive_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("mode", ["primal", "dual"])
def test_tail_mini_batch_equals_padded_sequence(cls, mode: str) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, 16, 2, 8)
    x = inputs(2, 37, 16)
    padded = torch.cat([x, inputs(2, 11, 16, seed=9)], dim=1)  # 48 = 6 full mini-batches
    torch.testing.assert_close(layer(x, mode=mode), layer(padded, mode=mode)[:, :37], rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------ decoding cache


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("mode", ["primal", "dual"])
@pytest.mark.parametrize("chunks", [[1] * 21, [3, 7, 1, 8, 2], [21]])
def test_decode_with_cache_equals_full_forward(cls, mode: str, chunks: list[int]) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, 16, 2, 4)
    x = inputs(2, 21, 16)
    full = layer(x)
    cache = layer.init_cache(2)
    pieces, t = [], 0
    for c in chunks:
        pieces.append(layer(x[:, t:t + c], cache=cache, mode=mode))
        t += c
    assert cache.offset == 21
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", LAYERS)
def test_cache_size_is_constant_in_sequence_length(cls) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, 16, 2, 4)
    sizes = {}
    for t in (1, 5, 16, 50):
        cache = layer.init_cache(2)
        with torch.no_grad():
            for i in range(t):
                layer(inputs(2, 1, 16, seed=i), cache=cache)
        assert isinstance(cache, TTTCache) and cache.offset == t
        sizes[t] = (cache.numel(), {k: tuple(v.shape) for k, v in cache.params.items()},
                    {k: tuple(v.shape) for k, v in cache.grads.items()})
    assert len({repr(s) for s in sizes.values()}) == 1, sizes
    n_inner = sum(getattr(layer, n).numel() for n in layer.inner_param_names())
    assert sizes[1][0] == 2 * 2 * n_inner  # batch x (states + gradient sums)


def test_cache_rejects_other_batch_size() -> None:
    layer = make(TTTLinear, 8, 2, 4)
    with pytest.raises(LifelongError, match="init_cache"):
        layer(inputs(3, 2, 8), cache=layer.init_cache(2))


# ------------------------------------------------------------------------------------ outer loop


@pytest.mark.parametrize("cls", LAYERS)
def test_outer_gradients_flow_through_inner_updates(cls) -> None:  # type: ignore[no-untyped-def]
    layer = make(cls, 16, 2, 4)
    x = inputs(2, 13, 16)
    layer(x).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # The lr gate and the token scales reach the output *only* through the inner updates.
        if name != "learnable_token_idx":
            assert p.grad.abs().sum() > 0, name
    # The token scale of the last position is clamped at 0 (see make), so no gradient passes there.
    assert layer.learnable_token_idx.grad[:-1].abs().min() > 0
    assert layer.learnable_token_idx.grad[-1] == 0


@pytest.mark.parametrize("cls", LAYERS)
def test_outer_gradient_is_exact_second_order(cls) -> None:  # type: ignore[no-untyped-def]
    # gradcheck (finite differences, float64) through the inner gradient steps, for x, the lr gate and W1.
    layer = make(cls, 8, 2, 4)
    x = inputs(1, 6, 8).requires_grad_(True)
    params = dict(layer.named_parameters())

    def f(x, w_lr, w1):  # type: ignore[no-untyped-def]
        p = {**params, "learnable_ttt_lr_weight": w_lr, "W1": w1}
        return torch.func.functional_call(layer, p, (x,))

    w_lr = params["learnable_ttt_lr_weight"].detach().clone().requires_grad_(True)
    w1 = params["W1"].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x, w_lr, w1), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------ NaN handling


@pytest.mark.parametrize("cls", LAYERS)
def test_divergent_inner_loop_raises_clear_error(cls) -> None:  # type: ignore[no-untyped-def]
    layer = cls(16, 2, mini_batch_size=4, seed=0, base_lr=1e38, name="block0.ttt")
    x = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TTTNaNError, match=r"block0\.ttt.*base_lr") as info:
        layer(x)
    assert isinstance(info.value, LifelongError) and isinstance(info.value, ValueError)
    assert "mini-batch" in str(info.value)


def test_non_finite_input_is_reported_as_upstream() -> None:
    layer = TTTLinear(8, 2, mini_batch_size=4, seed=0)
    x = torch.randn(1, 6, 8)
    x[0, 3, 1] = float("nan")
    with pytest.raises(TTTNaNError, match="input already contains NaN/inf.*time step 3"):
        layer(x)


def test_check_finite_off_passes_values_through() -> None:
    layer = TTTLinear(8, 2, mini_batch_size=4, seed=0, base_lr=1e38, check_finite=False)
    out = layer(torch.randn(1, 12, 8, generator=torch.Generator().manual_seed(0)))
    assert not torch.isfinite(out).all()  # documented: the caller asked not to be stopped


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        TTTLinear(10, 3)
    with pytest.raises(ValueError, match="even"):
        TTTLinear(6, 2)
    with pytest.raises(ValueError, match="mode"):
        TTTLinear(8, 2, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(LifelongError, match=r"\(batch, time, 8\)"):
        TTTLinear(8, 2)(torch.randn(2, 8))


def test_seed_makes_initialisation_reproducible_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = TTTMLP(8, 2, seed=5), TTTMLP(8, 2, seed=5)
    assert torch.equal(torch.rand(1), before)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n
