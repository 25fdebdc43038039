"""TTT layers (Sun et al. 2024, "Learning to (Learn at Test Time): RNNs with Expressive Hidden States").

A TTT layer is a sequence-mixing layer (drop-in for attention) whose hidden state is the *weights* of a
small inner model. Reading a token is one step of gradient descent on a self-supervised reconstruction
loss; the output for a token is the inner model, as updated so far, applied to the token's query.
Faithful to ``ttt.py`` in test-time-training/ttt-lm-pytorch (``TTTBase.get_eta``, ``TTTLinear.ttt``,
``TTTMLP.ttt``, ``ln_fused_l2_bwd``, ``TTTCache``). Per head, with head size d:

- projections q, k, v of the layer input x; RoPE on q and k with positions taken modulo the mini-batch
  size b (the reference's ``position_ids % mini_batch_size``);
- inner model f(z; W) = z + LN(f_res(z; W)), LN's gamma and beta outer parameters
  (``ttt_norm_weight/bias``). :class:`TTTLinear`: f_res = zW + b, W d x d. :class:`TTTMLP`:
  f_res = GELU(zW1 + b1)W2 + b2 with hidden size 4d (tanh GELU, as the reference);
- inner loss l(W; t) = 0.5 * ||LN(f_res(k_t; W)) - (v_t - k_t)||^2, whose gradient w.r.t. the pre-LN
  activations is :func:`ln_fused_l2_bwd` (closed form, checked against autograd in the tests);
- inner learning rate eta[i, j] = token_scale(i) * eta_lr(x_j), with
  eta_lr(x) = base_lr * sigmoid(w_h . x + b_h) / d and token_scale(i) = max(1/i + offset_i, 0) for the
  position i = 1..b inside the mini-batch (``learnable_token_idx``, initialised to 0);
- mini-batch TTT: every gradient in mini-batch m is taken at W0(m), the weights the previous mini-batch
  ended with; position i sees W_i = W0(m) - token_scale(i) * sum_{j<=i} eta_lr(x_j) grad l(W0(m); x_j),
  and W_b becomes W0(m+1). Episodic reset: every sequence starts from the learned W0.

Two exact forms of the same computation (``mode``): ``"dual"`` never materialises W_i (it works with
tril(Q K^T) and the gradients G = dl/dZ, as the reference's prefill path) and ``"primal"``
materialises the per-position weights W_i (the reference's decoding path). They agree to float64
round-off for both layers (tested). A sequence whose length is not a multiple of b ends in a short
mini-batch that uses the first positions' token scales, as the reference's remainder path does.

Decoding: :class:`TTTCache` holds, per sequence, the weights at the start of the current mini-batch and
the eta_lr-weighted gradient sum accumulated inside it (the reference's ``W1_states``/``W1_grad``), plus
the number of tokens seen. Its size does not depend on the sequence length, and feeding a sequence in
pieces of any size (one token at a time included) gives the same outputs as one full forward.

What is kept of the reference's block: the output ``post_norm`` (LayerNorm) and ``o_proj``, which are on
the reference's default path. Left out: the optional Mamba-backbone extras (``use_gate``, ``share_qk``
with its causal convolutions, ``pre_conv``; all off by default there) and gradient checkpointing.

Non-finite numbers are never passed on silently: with ``check_finite=True`` (the default) a NaN or inf
in the layer's input or produced by the inner loop raises :class:`TTTNaNError`, which names the layer,
the mini-batch and the fix (a lower ``base_lr``).

>>> import torch
>>> layer = TTTLinear(d_model=16, num_heads=2, mini_batch_size=4, seed=0)
>>> x = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(0))
>>> layer(x).shape
torch.Size([2, 10, 16])
>>> torch.allclose(layer(x, mode="primal"), layer(x, mode="dual"), atol=1e-5)
True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import DataInputError, LifelongError

Mode = Literal["primal", "dual"]
MODES = ("primal", "dual")

__all__ = [
    "TTTBase",
    "TTTCache",
    "TTTLinear",
    "TTTMLP",
    "TTTNaNError",
    "gelu_tanh_bwd",
    "ln_fused_l2_bwd",
    "ln_fwd",
    "rope",
]


class TTTNaNError(LifelongError, ValueError):
    """A TTT layer met or produced NaN/inf: the inner loop diverged (or its input was already broken).

    >>> try:
    ...     raise TTTNaNError("TTTLinear 'ttt': inner loop produced NaN; lower base_lr")
    ... except ValueError as err:
    ...     print(type(err).__name__, isinstance(err, LifelongError))
    TTTNaNError True
    """


# ----------------------------------------------------------------------------------------- pure math


def ln_fwd(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dimension with the reference's eps (1e-6) and biased variance.

    >>> import torch
    >>> y = ln_fwd(torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(3), torch.zeros(3))
    >>> [round(v, 4) for v in y[0].tolist()]
    [-1.2247, 0.0, 1.2247]
    """
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def ln_fused_l2_bwd(
    x: torch.Tensor, target: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Gradient of 0.5 * ||LN(x) - target||^2 (summed over the last dim) w.r.t. x, in closed form.

    The reference fuses LayerNorm's backward with the L2 loss so the inner step needs no autograd;
    the expression is differentiable, so the outer loop can still backpropagate through it.

    >>> import torch
    >>> x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    >>> t, g, b = torch.randn(3, 8, dtype=torch.float64), torch.rand(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    >>> (auto,) = torch.autograd.grad((0.5 * (ln_fwd(x, g, b) - t) ** 2).sum(), x)
    >>> torch.allclose(ln_fused_l2_bwd(x, t, g, b), auto)
    True
    """
    dim = x.shape[-1]
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    std = torch.sqrt(var + eps)
    x_hat = (x - mu) / std
    grad_x_hat = (gamma * x_hat + beta - target) * gamma
    return (
        dim * grad_x_hat
        - grad_x_hat.sum(dim=-1, keepdim=True)
        - x_hat * (grad_x_hat * x_hat).sum(dim=-1, keepdim=True)
    ) / (dim * std)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_tanh_bwd(x: torch.Tensor) -> torch.Tensor:
    """Derivative of ``F.gelu(x, approximate="tanh")`` (the reference's ``gelu_bwd``, exact constants).

    :class:`TTTMLP` computes ``grad * gelu_tanh_bwd(x)`` with torch's fused ``aten.gelu_backward``,
    which is faster and twice differentiable; the tests check that the two agree.

    >>> import torch
    >>> x = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)
    >>> (auto,) = torch.autograd.grad(torch.nn.functional.gelu(x, approximate="tanh").sum(), x)
    >>> torch.allclose(gelu_tanh_bwd(x), auto)
    True
    """
    inner = _SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x)
    tanh_out = torch.tanh(inner)
    d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
    return 0.5 * (1 + tanh_out) + 0.5 * x * (1 - tanh_out * tanh_out) * d_inner


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding on the last dim, rotating interleaved pairs (x[2i], x[2i+1]).

    The interleaved pairing is what the reference's ``permute_qk`` / ``rotate_half`` / ``undo_permute_qk``
    sequence computes (it exists to match the JAX pre-training code).

    >>> import torch
    >>> x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    >>> rope(x, torch.tensor([0])).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    >>> round(rope(x, torch.tensor([1]))[0, 1].item(), 4)  # first pair turned by 1 radian
    0.8415
    """
    dim = x.shape[-1]
    # Angles in float64 where the device has it (MPS does not), so float64 tests are exact.
    calc = torch.float32 if x.device.type == "mps" else torch.float64
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, device=x.device, dtype=calc) / dim)
    angle = positions.to(device=x.device, dtype=calc)[:, None] * inv_freq[None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


# ----------------------------------------------------------------------------------------- the cache


@dataclass
class TTTCache:
    """Fixed-size decoding state of one TTT layer for a batch of sequences (the reference's ``TTTCache``).

    ``params`` are the inner weights at the start of the current mini-batch (``W1_states`` ...),
    ``grads`` the eta_lr-weighted sum of the gradients taken so far inside it (``W1_grad`` ...), and
    ``offset`` the number of tokens already read. Create it with :meth:`TTTBase.init_cache`; the layer
    updates it in place on every call.

    >>> import torch
    >>> layer = TTTLinear(d_model=8, num_heads=2, mini_batch_size=4, seed=0)
    >>> cache = layer.init_cache(batch_size=3)
    >>> _ = layer(torch.randn(3, 5, 8), cache=cache)
    >>> cache.offset, cache.numel()  # 3 sequences x 2 heads x (W1 4x4 + b1 4), states and gradient sums
    (5, 240)
    """

    params: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    offset: int = 0

    def numel(self) -> int:
        """Number of stored numbers; constant in the sequence length."""
        return sum(t.numel() for t in (*self.params.values(), *self.grads.values()))

    def detach(self) -> TTTCache:
        """A copy cut from the autograd graph (for truncated backpropagation through long streams)."""
        return TTTCache({k: v.detach() for k, v in self.params.items()},
                        {k: v.detach() for k, v in self.grads.items()}, self.offset)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Initialise under a fixed seed without disturbing the caller's global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------------------- the layers


class TTTBase(nn.Module):
    """Shared machinery of :class:`TTTLinear` and :class:`TTTMLP` (projections, RoPE, eta, the scan).

    Subclasses define the inner weights (:meth:`_init_inner`) and their gradients at the mini-batch
    start (:meth:`_inner_grads`). Input and output are (batch, time, d_model).

    Args:
        d_model: width of the input and output.
        num_heads: heads; each head has its own inner model of size d_model // num_heads.
        mini_batch_size: tokens per inner GD step (reference default 16).
        base_lr: ``ttt_base_lr`` (reference: 1.0 for TTT-Linear, 0.1 for TTT-MLP; the subclass default).
        rope_theta: RoPE base (reference 10000).
        mode: ``"dual"`` (default, the reference's prefill path) or ``"primal"``; ``forward`` may override.
        check_finite: raise :class:`TTTNaNError` instead of passing NaN/inf on.
        name: how errors name this layer (default: the class name).
        seed: seeds the initialisation (the global RNG is left as it was) when given.

    >>> import torch
    >>> layer = TTTMLP(d_model=16, num_heads=4, seed=0)
    >>> layer.head_dim, layer.base_lr, layer.mini_batch_size
    (4, 0.1, 16)
    """

    default_base_lr: float = 1.0
    inner_layers: int = 1

    def __init__(
        self,
        d_model: int,
        num_heads: int = 4,
        *,
        mini_batch_size: int = 16,
        base_lr: float | None = None,
        rope_theta: float = 10000.0,
        mode: Mode = "dual",
        check_finite: bool = True,
        name: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if d_model <= 0 or num_heads <= 0 or d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be a positive multiple of num_heads ({num_heads})")
        if (d_model // num_heads) % 2:
            raise ValueError(f"head size d_model // num_heads = {d_model // num_heads} must be even for RoPE; "
                             "change d_model or num_heads")
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.d_model, self.num_heads = d_model, num_heads
        self.head_dim = d_model // num_heads
        self.mini_batch_size = mini_batch_size
        self.base_lr = self.default_base_lr if base_lr is None else float(base_lr)
        self.rope_theta, self.mode, self.check_finite = rope_theta, mode, check_finite
        self.name = name or type(self).__name__
        nh, d = num_heads, self.head_dim
        with _seeded(seed):
            # Reference _init_weights: every nn.Linear N(0, initializer_range=0.02), no bias.
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))
            for proj in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
                nn.init.normal_(proj.weight, 0.0, 0.02)
            # Learnable eta (paper Sec. 2.7): per-head gate w_h ~ N(0, 0.02), b_h = 0 as in the JAX code.
            self.learnable_ttt_lr_weight = nn.Parameter(torch.randn(nh, d_model) * 0.02)
            self.learnable_ttt_lr_bias = nn.Parameter(torch.zeros(nh))
            # token_scale(i) = 1/i + learnable offset (0 at init): the mean of the i gradients seen so far.
            self.register_buffer("token_idx", 1.0 / torch.arange(1, mini_batch_size + 1, dtype=torch.float32),
                                 persistent=False)
            self.learnable_token_idx = nn.Parameter(torch.zeros(mini_batch_size))
            self.ttt_norm_weight = nn.Parameter(torch.ones(nh, d))
            self.ttt_norm_bias = nn.Parameter(torch.zeros(nh, d))
            self.post_norm = nn.LayerNorm(d_model, eps=1e-6)
            self._init_inner()

    # -- subclass hooks ------------------------------------------------------------------------------

    def _init_inner(self) -> None:
        raise NotImplementedError

    def _inner_grads(
        self, params: dict[str, torch.Tensor], k: torch.Tensor, v: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inputs X_l and gradients G_l = dl/dZ_l of each inner linear map, all at the mini-batch start."""
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------------

    def inner_param_names(self) -> list[str]:
        """Names of the inner (fast) weights: W1, b1 (, W2, b2).

        >>> TTTMLP(8, 2, seed=0).inner_param_names()
        ['W1', 'b1', 'W2', 'b2']
        """
        return [n for i in range(1, self.inner_layers + 1) for n in (f"W{i}", f"b{i}")]

    def init_cache(self, batch_size: int) -> TTTCache:
        """An empty decoding cache: the learned W0 per sequence and zero accumulated gradients.

        >>> import torch
        >>> c = TTTLinear(8, 2, seed=0).init_cache(batch_size=2)
        >>> sorted(c.params), tuple(c.params["W1"].shape), c.offset
        (['W1', 'b1'], (2, 2, 4, 4), 0)
        """
        params = {n: getattr(self, n).unsqueeze(0).expand(batch_size, *getattr(self, n).shape)
                  for n in self.inner_param_names()}
        return TTTCache(params, {n: torch.zeros_like(p) for n, p in params.items()}, 0)

    def forward(self, x: torch.Tensor, cache: TTTCache | None = None, mode: Mode | None = None) -> torch.Tensor:
        """Map (batch, time, d_model) to the same shape; with ``cache``, continue from and update it.

        Without a cache every sequence starts from the learned W0 (episodic reset, as the reference).
        With one, the chunk may have any length and start anywhere inside a mini-batch; the cache is
        replaced (not copied into), so it stays differentiable, and it is left untouched on error.
        ``mode`` overrides the layer's default form for this call.

        >>> import torch
        >>> layer = TTTLinear(8, 2, mini_batch_size=4, seed=0)
        >>> x = torch.randn(1, 6, 8)
        >>> cache = layer.init_cache(1)
        >>> steps = torch.cat([layer(x[:, t:t + 1], cache=cache) for t in range(6)], dim=1)
        >>> torch.allclose(steps, layer(x), atol=1e-5)
        True
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise DataInputError(f"{self.name}: input must have shape (batch, time, {self.d_model}), "
                                 f"got {tuple(x.shape)}")
        bsz, seq_len, _ = x.shape
        if cache is not None and next(iter(cache.params.values())).shape[0] != bsz:
            raise DataInputError(f"{self.name}: cache was made for batch size "
                                 f"{next(iter(cache.params.values())).shape[0]}, input has {bsz}; "
                                 "call init_cache(batch_size) again")
        nh, d, b = self.num_heads, self.head_dim, self.mini_batch_size
        start = cache.offset if cache is not None else 0

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(bsz, seq_len, nh, d).transpose(1, 2)  # (B, nh, T, d)

        positions = (start + torch.arange(seq_len, device=x.device)) % b
        q = rope(heads(self.q_proj(x)), positions, self.rope_theta)
        k = rope(heads(self.k_proj(x)), positions, self.rope_theta)
        v = heads(self.v_proj(x))
        # TTTBase.get_eta: eta_lr(x_j) = base_lr * sigmoid(w_h . x_j + b_h) / d, per head and token.
        lr_eta = self.base_lr * torch.sigmoid(
            torch.einsum("btc,hc->bht", x, self.learnable_ttt_lr_weight) + self.learnable_ttt_lr_bias[:, None]
        ) / d
        token_scale = torch.clamp_min(self.token_idx.to(x.dtype) + self.learnable_token_idx, 0.0)

        if cache is not None:
            params, grads = dict(cache.params), dict(cache.grads)
        else:
            params = {n: getattr(self, n).unsqueeze(0).expand(bsz, *getattr(self, n).shape)
                      for n in self.inner_param_names()}
            grads = None
        outs = []
        t = 0
        while t < seq_len:
            # Segments end on mini-batch boundaries, so a cache that stopped mid-mini-batch resumes
            # exactly where it was and a short tail is the first positions of a mini-batch.
            off = (start + t) % b
            r = min(b - off, seq_len - t)
            out, params, grads = self._segment(
                params, grads, q[:, :, t:t + r], k[:, :, t:t + r], v[:, :, t:t + r], lr_eta[:, :, t:t + r],
                token_scale[off:off + r], complete=off + r == b, mode=mode,
            )
            outs.append(out)
            t += r
        z = torch.cat(outs, dim=2) if outs else q
        if self.check_finite and not torch.isfinite(z).all():
            # NaN/inf anywhere in x reaches z, so one check on z covers both causes; tell them apart here.
            if not torch.isfinite(x).all():
                raise TTTNaNError(f"{self.name}: its input already contains NaN/inf (first at time step "
                                  f"{_first_bad_step(x, time_dim=1)}); the problem is upstream of this TTT layer")
            step = start + _first_bad_step(z, time_dim=2)  # counted from the start of the sequence
            raise TTTNaNError(
                f"{self.name}: the inner loop produced NaN/inf at time step {step} (mini-batch "
                f"{step // b}) with base_lr={self.base_lr:g}; the inner gradient step diverged. "
                f"Lower base_lr (the reference default for {type(self).__name__} is {self.default_base_lr:g}; "
                "TTT-MLP is warmed up from 0.01) or the outer learning rate"
            )
        if cache is not None:
            if self.check_finite and not all(torch.isfinite(p).all() for p in params.values()):
                raise TTTNaNError(
                    f"{self.name}: the inner weights became NaN/inf at the end of this chunk (base_lr="
                    f"{self.base_lr:g}); the cache is left as it was. Lower base_lr (reference default "
                    f"{self.default_base_lr:g})"
                )
            cache.params = params
            cache.grads = grads if grads is not None else {n: torch.zeros_like(p) for n, p in params.items()}
            cache.offset = start + seq_len
        out = z.transpose(1, 2).reshape(bsz, seq_len, self.d_model)
        return self.o_proj(self.post_norm(out))

    # -- one mini-batch (or a piece of one) ----------------------------------------------------------

    def _segment(
        self,
        params: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor] | None,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        lr_eta: torch.Tensor,
        scale: torch.Tensor,
        *,
        complete: bool,
        mode: Mode,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Positions off..off+r-1 of one mini-batch; returns outputs and the (params, grads) to carry.

        q, k, v: (B, nh, r, d); lr_eta: (B, nh, r); scale: (r,) token scales of these positions.
        ``grads`` (None = zero) are the eta_lr-weighted gradients of the mini-batch's earlier positions.
        """
        xs, gs = self._inner_grads(params, k, v)
        # eta[i, j] = token_scale(i) * eta_lr(x_j), causal within the mini-batch (j <= i).
        eta = torch.tril(scale[:, None] * lr_eta[..., None, :])
        h = q
        new_params: dict[str, torch.Tensor] = {}
        new_grads: dict[str, torch.Tensor] = {}
        for layer, (x_l, g_l) in enumerate(zip(xs, gs, strict=True), start=1):
            w0, b0 = params[f"W{layer}"], params[f"b{layer}"]
            acc_w = grads[f"W{layer}"] if grads is not None else None
            acc_b = grads[f"b{layer}"] if grads is not None else None
            if mode == "dual":
                # h_i W_i + b_i with W_i = W0 - s(i) (A + sum_{j<=i} eta_lr_j x_j^T g_j), never built;
                # the "+ 1" folds the bias update (tril(eta) G) into the same matmul.
                z = h @ w0 + b0 - (eta * (h @ x_l.transpose(-1, -2) + 1.0)) @ g_l
                if acc_w is not None:
                    z = z - scale[:, None] * (h @ acc_w + acc_b)
                # sum_j eta_lr_j x_j^T g_j: the gradient this segment adds to the mini-batch's step.
                step_w = (lr_eta[..., None] * x_l).transpose(-1, -2) @ g_l
                step_b = (lr_eta[..., None] * g_l).sum(dim=-2, keepdim=True)
                total_w = step_w if acc_w is None else acc_w + step_w
                total_b = step_b if acc_b is None else acc_b + step_b
                w_last, b_last = w0 - scale[-1] * total_w, b0 - scale[-1] * total_b
            else:
                # Materialise the per-position weights W_i (B, nh, r, d_in, d_out) from cumulative sums.
                cum_w = torch.cumsum(torch.einsum("bhj,bhja,bhjc->bhjac", lr_eta, x_l, g_l), dim=2)
                cum_b = torch.cumsum(lr_eta[..., None] * g_l, dim=2)  # (B, nh, r, d_out)
                if acc_w is not None:
                    cum_w = cum_w + acc_w[:, :, None]
                    cum_b = cum_b + acc_b
                w_bar = w0[:, :, None] - scale[:, None, None] * cum_w
                b_bar = b0 - scale[:, None] * cum_b
                z = (h.unsqueeze(-2) @ w_bar).squeeze(-2) + b_bar
                total_w, total_b = cum_w[:, :, -1], cum_b[:, :, -1:]
                w_last, b_last = w_bar[:, :, -1], b_bar[:, :, -1:]
            if complete:  # W_b becomes the next mini-batch's W0; its gradient sum starts again.
                new_params[f"W{layer}"], new_params[f"b{layer}"] = w_last, b_last
            else:
                new_params[f"W{layer}"], new_params[f"b{layer}"] = w0, b0
                new_grads[f"W{layer}"], new_grads[f"b{layer}"] = total_w, total_b
            if layer < len(xs):
                h = F.gelu(z, approximate="tanh")
        out = q + ln_fwd(z, self.ttt_norm_weight[:, None], self.ttt_norm_bias[:, None])
        return out, new_params, (None if complete else new_grads)


class TTTLinear(TTTBase):
    """TTT-Linear: the inner model is f(z) = z + LN(zW + b), W (d x d) ~ N(0, 0.02), b = 0; base_lr 1.0.

    >>> import torch
    >>> layer = TTTLinear(d_model=32, num_heads=4, seed=0)
    >>> layer(torch.randn(2, 20, 32)).shape, tuple(layer.W1.shape)
    (torch.Size([2, 20, 32]), (4, 8, 8))
    """

    default_base_lr = 1.0  # TTTConfig.ttt_base_lr
    inner_layers = 1

    def _init_inner(self) -> None:
        nh, d = self.num_heads, self.head_dim
        self.W1 = nn.Parameter(torch.randn(nh, d, d) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(nh, 1, d))

    def _inner_grads(self, params, k, v):  # type: ignore[no-untyped-def]
        z1 = k @ params["W1"] + params["b1"]
        # Target v - k because f adds its input back (f(z) = z + LN(...)).
        g1 = ln_fused_l2_bwd(z1, v - k, self.ttt_norm_weight[:, None], self.ttt_norm_bias[:, None])
        return [k], [g1]


class TTTMLP(TTTBase):
    """TTT-MLP: f(z) = z + LN(GELU(zW1 + b1)W2 + b2), hidden 4d, weights ~ N(0, 0.02); base_lr 0.1.

    The reference trains the 125M TTT-MLP with base_lr warmed up from 0.01 to 0.1 over 480 steps
    (``scripts/ttt_mlp/125m.sh``); the warm-up belongs to the training loop, not to the layer.

    >>> import torch
    >>> layer = TTTMLP(d_model=16, num_heads=2, mini_batch_size=4, seed=0)
    >>> x = torch.randn(1, 9, 16, dtype=torch.float64)
    >>> layer = layer.double()
    >>> torch.allclose(layer(x, mode="primal"), layer(x, mode="dual"), atol=1e-10)
    True
    """

    default_base_lr = 0.1  # ttt-lm-jax scripts/ttt_mlp/*.sh: ttt_base_lr=0.1
    inner_layers = 2

    def _init_inner(self) -> None:
        nh, d = self.num_heads, self.head_dim
        self.W1 = nn.Parameter(torch.randn(nh, d, 4 * d) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(nh, 1, 4 * d))
        self.W2 = nn.Parameter(torch.randn(nh, 4 * d, d) * 0.02)
        self.b2 = nn.Parameter(torch.zeros(nh, 1, d))

    def _inner_grads(self, params, k, v):  # type: ignore[no-untyped-def]
        z1 = k @ params["W1"] + params["b1"]
        x2 = F.gelu(z1, approximate="tanh")
        z2 = x2 @ params["W2"] + params["b2"]
        g2 = ln_fused_l2_bwd(z2, v - k, self.ttt_norm_weight[:, None], self.ttt_norm_bias[:, None])
        # = (g2 W2^T) * gelu_tanh_bwd(z1), as one fused op that autograd can still differentiate.
        g1 = torch.ops.aten.gelu_backward(g2 @ params["W2"].transpose(-1, -2), z1, approximate="tanh")
        return [k, x2], [g1, g2]


def _first_bad_step(t: torch.Tensor, time_dim: int) -> int:
    """The first index along ``time_dim`` holding a non-finite value."""
    bad = (~torch.isfinite(t)).movedim(time_dim, 0).reshape(t.shape[time_dim], -1).any(dim=1)
    return int(bad.nonzero()[0, 0]) if bad.any() else -1
