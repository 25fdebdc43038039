"""Cartridges (Eyuboglu et al. 2025): compress a corpus into a small trained key/value cache.

A cartridge is a trainable key/value prefix of ``p`` tokens for every layer of a frozen model. It is
initialised from the model's own cache over the first ``p`` tokens of the corpus (the paper's best
initialisation), and trained by *context distillation*: the teacher is the same model with a corpus
chunk in its context, the student sees only the cartridge, and the loss is the cross-entropy of the
student against the teacher's top-k (20) next-token distribution on self-study samples about the chunk.
Once trained, a cartridge loads like a file and stands in for the corpus at a fraction of its memory.

Self-study samples here come from *templates* (seed prompts of the paper's kinds: structuring,
summarising, questions, use cases), each followed by a response the teacher model generates with the
chunk in context; the benchmark says which generator it used.

Faithful details: leading ``num_frozen`` tokens (default 1, the attention sink) are not trained; the
learning rate default 2e-2 and top-k 20 are the paper's LongHealth settings. Saving and loading is
exact, including which tokens are frozen (the public implementation loses that on reload, cartridges
#23). Two cartridges compose by concatenation along the token axis.

>>> from lifelong.models.lm import CausalLM
>>> lm = CausalLM.tiny_random()
>>> cart = Cartridge.from_corpus(lm, "a small corpus about cats and mats", p=8)
>>> cart.tokens, cart.num_layers, int(cart.frozen.sum())
(8, 4, 1)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.core.errors import DataInputError, LifelongError
from lifelong.models.lm import CausalLM

SEED_PROMPTS = {
    "structuring": "Write out the key facts of the passage above as a short list.",
    "summarization": "Summarise the passage above in a few sentences.",
    "question": "Ask a question about a specific detail in the passage above, then answer it.",
    "use_case": "Describe a situation where someone would need the information in the passage above.",
    "recall": "Repeat, word for word, the sentence of the passage above that begins: ",
}


class CartridgeError(LifelongError, ValueError):
    """A cartridge does not fit the model or another cartridge."""


class Cartridge(nn.Module):
    """Per-layer trainable keys and values of ``p`` tokens, with a mask of frozen tokens."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], frozen: torch.Tensor,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        if len(keys) != len(values) or not keys:
            raise CartridgeError("a cartridge needs one key and one value tensor per layer")
        self.keys = nn.ParameterList([nn.Parameter(k.detach().clone()) for k in keys])
        self.values = nn.ParameterList([nn.Parameter(v.detach().clone()) for v in values])
        self.register_buffer("frozen", frozen.detach().clone().bool())
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_corpus(cls, lm: CausalLM, corpus: str | list[int], p: int = 64, num_frozen: int = 1) -> Cartridge:
        """Initialise from the model's keys and values over the first ``p`` tokens of the corpus."""
        ids = lm.encode(corpus) if isinstance(corpus, str) else list(corpus)
        if len(ids) < p:
            raise DataInputError(f"the corpus has {len(ids)} tokens, fewer than the cartridge's p={p}; lower p")
        with torch.no_grad():
            _, cache = lm.forward(torch.tensor([ids[:p]], device=lm.device), None, use_cache=True)
        keys, values = _cache_tensors(cache)
        frozen = torch.zeros(p, dtype=torch.bool)
        frozen[:num_frozen] = True
        return cls(keys, values, frozen, {"model": lm.name, "init": "first-p-tokens"})

    @property
    def tokens(self) -> int:
        """p, the number of cached tokens."""
        return int(self.keys[0].shape[2])

    @property
    def num_layers(self) -> int:
        """Layers covered."""
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Memory of the keys and values."""
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values])

    def trainable(self) -> list[nn.Parameter]:
        """The parameters an optimiser should see (frozen tokens are masked in :meth:`cache`)."""
        return [*self.keys, *self.values]

    def cache(self, lm: CausalLM) -> Any:
        """A fresh key/value cache holding the prefix; gradients flow into the unfrozen tokens."""
        from transformers import DynamicCache

        cache = DynamicCache(config=lm.model.config)
        mask = self.frozen.view(1, 1, -1, 1).to(self.keys[0].device)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            k = torch.where(mask, k.detach(), k).to(lm.dtype)
            v = torch.where(mask, v.detach(), v).to(lm.dtype)
            cache.update(k, v, i)
        return cache

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write as safetensors (keys, values and the frozen mask) with JSON metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"keys.{i}": k.detach().contiguous() for i, k in enumerate(self.keys)}
        tensors.update({f"values.{i}": v.detach().contiguous() for i, v in enumerate(self.values)})
        tensors["frozen"] = self.frozen.to(torch.uint8).contiguous()
        save_file(tensors, str(path), metadata={"kind": "lifelong-cartridge", "meta": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Cartridge:
        """Inverse of :meth:`save`; the frozen mask comes back token for token."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("kind") != "lifelong-cartridge":
            raise CartridgeError(f"{path} is not a cartridge file (no 'lifelong-cartridge' marker)")
        t = load_file(str(path))
        n = sum(1 for k in t if k.startswith("keys."))
        return cls([t[f"keys.{i}"] for i in range(n)], [t[f"values.{i}"] for i in range(n)], t["frozen"].bool(),
                   json.loads(meta.get("meta", "{}")))

    @staticmethod
    def compose(a: Cartridge, b: Cartridge) -> Cartridge:
        """Concatenate two cartridges along the token axis (the paper composes without retraining)."""
        if a.num_layers != b.num_layers or any(x.shape[:2] != y.shape[:2] or x.shape[3] != y.shape[3]
                                               for x, y in zip(a.keys, b.keys, strict=True)):
            raise CartridgeError("cartridges for different models (layer count or head shapes differ) cannot compose")
        keys = [torch.cat([x, y], dim=2) for x, y in zip(a.keys, b.keys, strict=True)]
        values = [torch.cat([x, y], dim=2) for x, y in zip(a.values, b.values, strict=True)]
        return Cartridge(keys, values, torch.cat([a.frozen, b.frozen]), {"composed": [a.meta, b.meta]})


def _cache_tensors(cache: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer keys and values of a transformers cache, whatever its version's layout."""
    if hasattr(cache, "layers"):
        return [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
    return [k for k, _ in cache], [v for _, v in cache]


# ---------------------------------------------------------------------- self-study and training
@dataclass
class SelfStudySample:
    """A chunk of the corpus and a sample (prompt + response tokens) about it."""

    chunk: list[int]
    sample: list[int]
    kind: str


def make_self_study(lm: CausalLM, corpus_ids: list[int], *, chunk_tokens: int = 256, n: int = 32,
                    response_tokens: int = 48, seed: int = 0, temperature: float = 0.7) -> list[SelfStudySample]:
    """Template seed prompts about random chunks, answered by the model with the chunk in context."""
    if len(corpus_ids) < 8:
        raise DataInputError("the corpus is too short for self-study; give it at least a few sentences")
    rng = random.Random(seed)
    body = corpus_ids[1:] if corpus_ids and corpus_ids[0] == lm.tokenizer.bos_token_id else corpus_ids
    out = []
    for i in range(n):
        start = rng.randrange(0, max(1, len(body) - chunk_tokens + 1))
        chunk = body[start : start + chunk_tokens]
        kind = rng.choice(sorted(SEED_PROMPTS))
        prompt = SEED_PROMPTS[kind]
        if kind == "recall":
            text = lm.decode(chunk)
            sentences = [s.strip() for s in text.split(". ") if len(s.split()) >= 4]
            lead = " ".join(rng.choice(sentences).split()[:4]) if sentences else text[:20]
            prompt = prompt + lead
        prompt_ids = lm.encode("\n\n" + prompt + "\n", add_bos=False)
        bos = [lm.tokenizer.bos_token_id] if lm.add_bos and lm.tokenizer.bos_token_id is not None else []
        context = bos + chunk + prompt_ids
        response = _sample_continuation(lm, context, response_tokens, temperature, seed * 1000 + i)
        out.append(SelfStudySample(bos + chunk, prompt_ids + response, kind))
    return out


@torch.no_grad()
def _sample_continuation(lm: CausalLM, context: list[int], n: int, temperature: float, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    logits, cache = lm.forward(torch.tensor([context], device=lm.device), None, use_cache=True)
    out: list[int] = []
    for _ in range(n):
        probs = (logits[0, -1].float() / max(temperature, 1e-4)).softmax(-1).cpu()
        token = int(torch.multinomial(probs, 1, generator=gen))
        if token == lm.tokenizer.eos_token_id:
            break
        out.append(token)
        logits, cache = lm.forward(torch.tensor([[token]], device=lm.device), cache, use_cache=True)
    return out


@dataclass
class TrainReport:
    """Losses over training and the cost."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


@torch.no_grad()
def teacher_targets(lm: CausalLM, sample: SelfStudySample, top_k: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's top-k token ids and renormalised probabilities for ``sample.sample[1:]``, with the
    chunk in context."""
    ids = sample.chunk + sample.sample
    logits, _ = lm.forward(torch.tensor([ids], device=lm.device))
    logp = logits[0, len(sample.chunk) : len(ids) - 1].float().log_softmax(-1)
    top, idx = logp.topk(top_k, dim=-1)
    return idx, top.softmax(-1)


def distillation_loss(lm: CausalLM, cartridge: Cartridge, sample: SelfStudySample,
                      targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the student (cartridge + sample) against the teacher's top-k distribution, on the
    sample's tokens after its first (the first has no student position to be predicted from)."""
    idx, probs = targets
    logits, _ = lm.forward(torch.tensor([sample.sample], device=lm.device), cartridge.cache(lm), use_cache=True)
    logq = logits[0, :-1].float().log_softmax(-1)
    return -(probs * logq.gather(-1, idx)).sum(-1).mean()


def train_cartridge(lm: CausalLM, cartridge: Cartridge, samples: list[SelfStudySample], *, steps: int = 100,
                    lr: float = 2e-2, top_k: int = 20, seed: int = 0, progress: Any = None) -> TrainReport:
    """Context distillation with Adam over the cartridge's keys and values (the model stays frozen)."""
    if not samples:
        raise DataInputError("no self-study samples to train on; call make_self_study first")
    report = TrainReport()
    # The model is frozen for the duration (its own trainable flags, e.g. a reader's adapter, come back after).
    flags = {n: p.requires_grad for n, p in lm.model.named_parameters()}
    for p in lm.model.parameters():
        p.requires_grad_(False)
    try:
        cartridge.to(lm.device)
        opt = torch.optim.Adam(cartridge.trainable(), lr=lr)
        targets = [teacher_targets(lm, s, top_k) for s in samples]
        order = random.Random(seed)
        start = time.perf_counter()
        for step in range(steps):
            i = order.randrange(len(samples))
            loss = distillation_loss(lm, cartridge, samples[i], targets[i])
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                raise CartridgeError(f"distillation loss became {float(loss)} at step {step}; lower the learning rate")
            loss.backward()
            opt.step()
            report.losses.append(float(loss.detach()))
            report.steps += 1
            if progress is not None:
                progress(step)
    finally:
        for n, p in lm.model.named_parameters():
            p.requires_grad_(flags[n])
    report.seconds = time.perf_counter() - start
    return report
