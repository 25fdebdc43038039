"""Learn while you read: next-token training on a document at test time (TTT-E2E style).

A :class:`Reader` goes through a document chunk by chunk. Each chunk is first *scored* with the current
weights (prediction before learning, as TTT-E2E reports it), then the reader takes a bounded number of
optimiser steps of next-token loss on it, conditioning on a short window of the preceding tokens. The
updated parameters (LoRA adapters or prime MLPs, chosen by the budget's glob) live in a document
(session) scope that :meth:`Reader.reset` clears. After reading, the model answers with a short window of
recent tokens plus the adapted weights, so the cost per token does not grow with the document.

Every step goes through the governor: a NaN or Inf loss or update is dropped and the scope reset; the
trust region bounds how far the adapter may move; the adapted state can be proposed as a change
(:meth:`Reader.proposal`) and reaches a user's or the global version only through the gate.

>>> import os, tempfile
>>> from lifelong.control.governor import Governor
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.models.lm import CausalLM
>>> gov = Governor(Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db")), "lm/global")
>>> reader = Reader(CausalLM.tiny_random(), gov, chunk_tokens=32, window=16)
>>> report = reader.read("the cat sat on the mat. " * 8)
>>> len(report.chunk_loss_before) == report.chunks
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lifelong.control.budgets import Budget
from lifelong.core.change import Change, Cost
from lifelong.core.errors import DataInputError
from lifelong.core.scopes import Scope
from lifelong.models.lm import CausalLM, Generation
from lifelong.weights.lm_adapters import add_lora, add_prime_mlps
from lifelong.weights.scope import WeightScope

if TYPE_CHECKING:
    from lifelong.control.governor import Governor

ADAPTER_GLOBS = {"lora": ("*lora_*",), "prime": ("*.prime.*",)}


@dataclass
class ReadReport:
    """What reading one document did: per-chunk loss before learning, steps, tokens and time."""

    chunks: int = 0
    tokens: int = 0
    steps: int = 0
    dropped_steps: int = 0
    seconds: float = 0.0
    chunk_loss_before: list[float] = field(default_factory=list)


class Reader:
    """Reading TTT over a :class:`CausalLM`.

    ``adapter`` is ``"lora"`` (peft LoRA on ``lora_targets``), ``"prime"`` (TTT-E2E prime MLPs in the
    last quarter of blocks) or ``"subset"`` (the budget's globs over existing parameters). The default
    budget (1 step per chunk, AdamW lr 1e-3, gradient clip 1.0) follows TTT-E2E's one step per chunk;
    the governor may hand a different one.
    """

    def __init__(
        self,
        lm: CausalLM,
        governor: Governor,
        *,
        adapter: str = "lora",
        budget: Budget | None = None,
        chunk_tokens: int = 512,
        window: int = 512,
        max_tokens: int = 65_536,
        lora_targets: tuple[str, ...] = ("q_proj", "v_proj"),
        lora_rank: int = 8,
        seed: int = 0,
    ) -> None:
        if adapter not in ("lora", "prime", "subset"):
            raise ValueError(f"adapter must be 'lora', 'prime' or 'subset', got {adapter!r}")
        if chunk_tokens < 2 or window < 0:
            raise ValueError("chunk_tokens must be >= 2 and window >= 0")
        self.lm = lm
        self.governor = governor
        self.chunk_tokens = chunk_tokens
        self.window = window
        self.max_tokens = max_tokens
        torch.manual_seed(seed)
        if adapter == "lora":
            add_lora(lm, lora_targets, r=lora_rank)
        elif adapter == "prime":
            add_prime_mlps(lm, seed=seed)
        self.budget = budget or Budget(steps=1, lr=1e-3, params=ADAPTER_GLOBS.get(adapter, ("*",)), max_grad_norm=1.0)
        self.params = self.budget.select(lm.model)
        for p in lm.model.parameters():
            p.requires_grad_(False)
        for p in self.params.values():
            p.requires_grad_(True)
        self.scope = WeightScope(lm.model, self.params, Scope.SESSION, include_buffers=False)
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=self.budget.lr, weight_decay=0.0)
        self._fresh_optimizer = self.optimizer.state_dict()
        self.history: list[int] = []  # the tokens read so far in this document
        self.report = ReadReport()

    # ------------------------------------------------------------------ reading
    def read(self, text: str) -> ReadReport:
        """Read a document (or the next part of one): score each chunk, then learn from it."""
        if not text or not text.strip():
            raise DataInputError("the document is empty or whitespace; give the reader some text")
        ids = self.lm.encode(text, add_bos=not self.history)
        if len(self.history) + len(ids) > self.max_tokens:
            raise DataInputError(
                f"reading {len(ids)} more tokens would exceed this reader's budget of {self.max_tokens}; "
                "raise max_tokens or split the document"
            )
        start_time = time.perf_counter()
        for start in range(0, len(ids), self.chunk_tokens):
            chunk = ids[start : start + self.chunk_tokens]
            context = self.history[-self.window :] if self.window else []
            if not context and len(chunk) < 2:
                self.history.extend(chunk)
                continue
            sequence = context + chunk
            first = max(len(context), 1)
            self.report.chunk_loss_before.append(float(self.lm.token_nll(sequence, start=first).mean()))
            for _ in range(self.budget.steps):
                self._step(sequence, first)
            self.history.extend(chunk)
            self.report.chunks += 1
            self.report.tokens += len(chunk)
        self.report.seconds += time.perf_counter() - start_time
        return self.report

    def _step(self, sequence: list[int], first: int) -> None:
        self.lm.model.train()
        loss = self.lm.token_nll(sequence, start=first, grad=True).mean()
        self.lm.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.governor.guard_loss(self.scope, "reader", float(loss))
            self._reset_optimizer()
            self.report.dropped_steps += 1
            return
        loss.backward()
        if self.budget.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.budget.max_grad_norm)
        self.optimizer.step()
        self.report.steps += 1
        if not self.governor.guard(self.scope, "reader"):
            self._reset_optimizer()
            self.report.dropped_steps += 1

    # ------------------------------------------------------------------ using what was read
    def context_ids(self, window: int | None = None) -> list[int]:
        """The short window of recent tokens the model conditions on after reading."""
        w = self.window if window is None else window
        recent = self.history[-w:] if w else []
        bos = self.lm.tokenizer.bos_token_id
        if self.lm.add_bos and bos is not None and (not recent or recent[0] != bos):
            recent = [bos] + recent
        return recent

    def score(self, continuation: str, window: int | None = None) -> float:
        """Mean NLL (nats/token) of ``continuation`` given the recent window and the adapted weights."""
        if not continuation.strip():
            raise DataInputError("the continuation to score is empty or whitespace")
        ctx = self.context_ids(window)
        target = self.lm.encode(continuation, add_bos=False)
        return float(self.lm.token_nll(ctx + target, start=max(len(ctx), 1)).mean())

    def score_ids(self, target: list[int], window: int | None = None) -> torch.Tensor:
        """Per-token NLL of token ids that continue what was read."""
        ctx = self.context_ids(window)
        return self.lm.token_nll(ctx + list(target), start=max(len(ctx), 1))

    def generate(self, prompt: str, **kwargs: Any) -> Generation:
        """Generate with the adapted weights (the prompt is the only context)."""
        return self.lm.generate(prompt, **kwargs)

    # ------------------------------------------------------------------ scope
    def reset(self) -> None:
        """End the document: weights back to the reference, optimiser and history cleared."""
        self.scope.reset()
        self._reset_optimizer()
        self.history = []
        self.report = ReadReport()

    def _reset_optimizer(self) -> None:
        self.optimizer.load_state_dict(self._fresh_optimizer)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Current values of the adapted parameters."""
        return {n: p.detach().clone() for n, p in self.params.items()}

    def save_adapter(self, path: str | Path) -> Path:
        """Write the adapted parameters as a small safetensors file."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({n: t.contiguous() for n, t in self.adapter_state().items()}, str(path),
                  metadata={"model": self.lm.name, "kind": "lifelong-reader-adapter"})
        return path

    def load_adapter(self, path: str | Path) -> None:
        """Load adapter values saved by :meth:`save_adapter` into this reader's parameters."""
        from safetensors.torch import load_file

        self.scope.load(load_file(str(path)))

    def proposal(self, provenance: dict[str, Any] | None = None) -> Change:
        """The adapted state as a change the governor can gate for promotion beyond the document."""
        return self.scope.to_change(
            "reader",
            provenance={"tokens_read": self.report.tokens, "chunks": self.report.chunks, **(provenance or {})},
            cost=Cost(steps=self.report.steps, tokens=self.report.tokens, seconds=self.report.seconds),
        )
