"""A small character-level transformer that trains and samples on 2 CPU cores in seconds.

The self-improvement loops need a policy that starts weak but not hopeless and can be fine-tuned many
times: the embedded 135M-270M models cannot do multi-digit arithmetic (measured: 0-1 of 10 few-shot
2-digit additions), so, as the reference notes suggest for a faithful CPU reproduction of STaR, the
policy here is a ~1M-parameter decoder trained from scratch on seed scratchpads (nanoGPT's shape:
pre-LayerNorm blocks, causal self-attention, GELU MLP, tied embeddings).

>>> vocab = Vocab("0123456789+=;: QAc\\n")
>>> model = CharTransformer(len(vocab), d_model=32, layers=1, heads=2, max_len=32)
>>> train(model, vocab, [("Q:1+1=", "A:2\\n")], steps=2, batch_size=2, seed=0)["loss"][-1] > 0
True
>>> sample(model, vocab, ["Q:1+1="], max_new=4, temperature=0.0, seed=0)[0].text.__class__
<class 'str'>
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import DataInputError


class Vocab:
    """Characters <-> ids, with an end-of-sequence id after the characters and a padding id after it."""

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.eos = len(chars)
        self.pad = len(chars) + 1

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; an unknown character is an error naming it."""
        try:
            return [self.index[c] for c in text]
        except KeyError as err:
            raise DataInputError(f"character {err.args[0]!r} is not in the vocabulary {self.chars!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids, stopping at end-of-sequence."""
        out = []
        for i in ids:
            if i == self.eos:
                break
            if i < len(self.chars):
                out.append(self.chars[i])
        return "".join(out)


class _Attention(nn.Module):
    """Causal multi-head self-attention that can extend a key/value cache one step at a time."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d)), (k, v)


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = _Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, cache = self.attn(self.ln1(x), mask, cache)
        x = x + h
        return x + self.mlp(self.ln2(x)), cache


Cache = list[tuple[torch.Tensor, torch.Tensor]]


class CharTransformer(nn.Module):
    """A decoder-only transformer over characters with learned positions."""

    def __init__(self, vocab_size: int, d_model: int = 128, layers: int = 4, heads: int = 4, max_len: int = 128) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.config = {"vocab_size": vocab_size, "d_model": d_model, "layers": layers, "heads": heads, "max_len": max_len}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, vocab) logits (positions 0..T-1, causal)."""
        t = ids.shape[1]
        if t > self.max_len:
            raise DataInputError(f"sequence of {t} characters exceeds the model's max_len {self.max_len}")
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        return self.step(ids, torch.arange(t, device=ids.device).expand_as(ids), causal[None, None], None)[0]

    def step(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             cache: Cache | None) -> tuple[torch.Tensor, Cache]:
        """Logits for new tokens ``ids`` (B, T) at ``positions`` (B, T), attending where ``mask``
        (B or 1, 1, T, cached + T) is True, after the keys and values in ``cache``; returns the grown cache."""
        x = self.embed(ids) + self.pos(positions)
        new_cache: Cache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, mask, None if cache is None else cache[i])
            new_cache.append(c)
        return self.ln(x) @ self.embed.weight.T, new_cache


def _batch(vocab: Vocab, pairs: Sequence[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets; only completion characters (and the end token) carry loss."""
    seqs, masks = [], []
    for prompt, completion in pairs:
        p, c = vocab.encode(prompt), vocab.encode(completion) + [vocab.eos]
        seqs.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), vocab.pad, dtype=torch.long)
    target_mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        target_mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    targets = ids[:, 1:].clone()
    targets[~target_mask[:, 1:]] = -100
    return ids[:, :-1], targets


def train(model: CharTransformer, vocab: Vocab, data: Sequence[tuple[str, str]], *, steps: int, batch_size: int = 64,
          lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0, warmup: int = 50) -> dict[str, list[float]]:
    """Supervised fine-tuning on (prompt, completion) pairs with AdamW and a cosine schedule."""
    if not data:
        raise DataInputError("no training pairs; a round that keeps nothing cannot be fine-tuned")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    losses = []
    for _ in range(steps):
        x, y = _batch(vocab, [data[rng.randrange(len(data))] for _ in range(batch_size)])
        loss = F.cross_entropy(model(x).reshape(-1, len(vocab)), y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"loss": losses}


@dataclass(frozen=True)
class Sample:
    """A sampled completion with its per-character log-probabilities."""

    prompt: str
    text: str
    logprobs: list[float]


@torch.no_grad()
def sample(model: CharTransformer, vocab: Vocab, prompts: Sequence[str], *, max_new: int = 64,
           temperature: float = 1.0, seed: int = 0, batch_size: int = 256, stop: str = "\n") -> list[Sample]:
    """Batched sampling (greedy at temperature 0) with a key/value cache; stops at ``stop``,
    end-of-sequence or ``max_new``.

    Prompts of different lengths are left-padded; each row keeps its own positions (0 at its first real
    character) and never attends to padding, so a row samples exactly as it would alone.
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[Sample] = []
    model.eval()
    stop_id = vocab.index.get(stop, -1) if stop else -1
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        encoded = [vocab.encode(p) for p in chunk]
        lengths = torch.tensor([len(e) for e in encoded])
        width = int(lengths.max())
        if width + max_new > model.max_len:
            raise DataInputError(f"prompt plus {max_new} new characters exceeds max_len {model.max_len}")
        n = len(chunk)
        pad = width - lengths  # left padding per row
        ids = torch.full((n, width), vocab.pad, dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, int(pad[i]) :] = torch.tensor(e, dtype=torch.long)
        cols = torch.arange(width)
        real = cols[None, :] >= pad[:, None]  # (n, width): which prompt slots hold characters
        positions = (cols[None, :] - pad[:, None]).clamp(min=0)
        # A query attends to earlier real keys; a padding query attends to itself only (its output is unused).
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        mask = (causal[None] & real[:, None, :]) | torch.eye(width, dtype=torch.bool)[None]
        logits, cache = model.step(ids, positions, mask[:, None], None)
        keys_real = real
        step_logits = logits[:, -1]
        pos = lengths.clone()
        done = torch.zeros(n, dtype=torch.bool)
        generated: list[list[int]] = [[] for _ in range(n)]
        logps: list[list[float]] = [[] for _ in range(n)]
        for _ in range(max_new):
            logp = step_logits.float().log_softmax(-1)
            logp[:, vocab.pad] = float("-inf")
            if temperature <= 0:
                nxt = logp.argmax(-1)
            else:
                nxt = torch.multinomial((logp / temperature).softmax(-1), 1, generator=gen).squeeze(1)
            chosen = logp.gather(1, nxt[:, None]).squeeze(1)
            for i in torch.nonzero(~done).flatten().tolist():
                generated[i].append(int(nxt[i]))
                logps[i].append(float(chosen[i]))
                if int(nxt[i]) in (vocab.eos, stop_id):
                    done[i] = True
            if bool(done.all()):
                break
            keys_real = torch.cat([keys_real, torch.ones(n, 1, dtype=torch.bool)], dim=1)
            logits, cache = model.step(nxt[:, None], pos[:, None], keys_real[:, None, None, :], cache)
            step_logits = logits[:, -1]
            pos += 1
        for i in range(n):
            out.append(Sample(chunk[i], vocab.decode(generated[i]), logps[i]))
    return out
