"""One interface over causal language models: score text, generate text, expose parameters to train.

:class:`CausalLM` wraps a Hugging Face ``transformers`` model and its tokenizer. ``CausalLM.load`` takes
an embedded offline default (``"gemma3-270m"``, ``"smollm2-135m-instruct"``; see
:mod:`lifelong.models.embedded`), a local folder, or a model id already in the Hugging Face cache.
Nothing is downloaded unless ``allow_download=True``.

>>> lm = CausalLM.tiny_random(seed=0)            # a randomly initialised Llama for tests
>>> ids = lm.encode("hello world")
>>> lm.token_nll(ids).shape[0] == len(ids) - 1
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lifelong.core.errors import DataInputError
from lifelong.models.embedded import EMBEDDED, ModelUnavailableError, converted_path

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
                           "Qwen2ForCausalLM", "MistralForCausalLM", "GPT2LMHeadModel", "PhiForCausalLM")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"bf16"``... -> a torch dtype, with an error that lists the choices."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


@dataclass(frozen=True)
class Generation:
    """Generated text with its token ids and each sampled token's log-probability."""

    text: str
    token_ids: list[int]
    logprobs: list[float]


class CausalLM:
    """A causal LM and its tokenizer on one device, in one dtype."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, add_bos: bool = True, chat: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.add_bos = add_bos
        self.chat = chat
        self.model.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        cache_dir: Path | None = None,
        allow_download: bool = False,
        progress: Any = None,
    ) -> CausalLM:
        """Load an embedded default, a local folder, or a cached Hugging Face model id."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        key = str(name_or_path)
        add_bos, chat = True, False
        if key in EMBEDDED:
            spec = EMBEDDED[key]
            folder: str = str(converted_path(key, cache_dir, progress))
            add_bos, chat = spec.add_bos, spec.chat
        else:
            path = Path(key)
            looks_local = path.exists() or key.startswith((".", "/", "~"))
            if looks_local and not (path / "config.json").exists():
                raise ModelUnavailableError(
                    f"{key} is not a model folder (no config.json); pass a folder saved with save_pretrained, "
                    f"a cached model id, or one of the embedded defaults {sorted(EMBEDDED)}"
                )
            folder = key
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=not allow_download)
        except OSError as err:
            raise ModelUnavailableError(
                f"cannot load {key!r} offline ({err.__class__.__name__}); use a local folder, one of the embedded "
                f"defaults {sorted(EMBEDDED)}, or allow_download=True where a hub is reachable"
            ) from None
        arch = (config.architectures or ["?"])[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelUnavailableError(
                f"{key!r} is a {arch}, which lifelong has not been tested with; supported: {SUPPORTED_ARCHITECTURES}"
            )
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=not allow_download,
                                                     dtype=resolve_dtype(dtype))
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=not allow_download)
        if tokenizer.chat_template and key not in EMBEDDED:
            chat = True
        return cls(model.to(device), tokenizer, name=key, add_bos=add_bos, chat=chat)

    @classmethod
    def tiny_random(cls, seed: int = 0, vocab: int = 256, hidden: int = 32, layers: int = 4, dtype: str = "float32") -> CausalLM:
        """A randomly initialised small Llama with a byte-level tokenizer: for tests, no files needed."""
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=vocab + 3, hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=4096, bos_token_id=vocab, eos_token_id=vocab + 1,
                             pad_token_id=vocab + 2, tie_word_embeddings=True)
        model = LlamaForCausalLM(config).to(resolve_dtype(dtype))
        return cls(model, ByteTokenizer(vocab), name=f"tiny-random-llama-{seed}", add_bos=True)

    # ------------------------------------------------------------------ basics
    def forward(self, input_ids: torch.Tensor, cache: Any = None, use_cache: bool = False,
                logits_to_keep: int = 0) -> tuple[torch.Tensor, Any]:
        """Logits and the updated key/value cache. transformers renamed ``past_key_values`` to ``cache``
        in version 5; this accepts either spelling of the installed version. ``logits_to_keep`` > 0 computes
        the vocabulary projection for the last that many positions only (Gemma's vocabulary has 262k
        entries: full logits over a 4k-token document alone are gigabytes)."""
        key = _cache_keyword(self.model)
        extra = {"logits_to_keep": logits_to_keep} if logits_to_keep > 0 else {}
        out = self.model(input_ids=input_ids, use_cache=use_cache, **{key: cache}, **extra)
        return out.logits, getattr(out, key, None)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""
        return next(self.model.parameters()).dtype

    @property
    def layers(self) -> Sequence[torch.nn.Module]:
        """The decoder blocks, in order."""
        inner = getattr(self.model, "model", self.model)
        inner = getattr(inner, "language_model", inner)
        return inner.layers

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids; with the BOS token first when the model expects it (Gemma needs it)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        if (self.add_bos if add_bos is None else add_bos) and bos is not None:
            ids = [bos] + list(ids)
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text from token ids, special tokens dropped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ scoring
    def token_nll(self, ids: Sequence[int] | torch.Tensor, *, start: int = 1, past: Any = None,
                  grad: bool = False) -> torch.Tensor:
        """Per-token negative log-likelihood (nats) of ``ids[start:]`` given everything before it.

        ``past`` is an optional key/value cache the ids continue (a cartridge, or earlier context).
        """
        if start < 1:
            raise ValueError("start must be >= 1: token 0 has no preceding token to be predicted from")
        t = torch.as_tensor(ids, dtype=torch.long, device=self.device).view(1, -1)
        if t.shape[1] < 2 and past is None:
            raise DataInputError("scoring needs at least two tokens (one to condition on, one to predict)")
        scored = max(t.shape[1] - start, 0)
        with torch.set_grad_enabled(grad):
            # Only positions start-1 .. T-2 predict a scored token: project just those onto the vocabulary.
            logits, _ = self.forward(t, past, use_cache=past is not None, logits_to_keep=scored + 1)
            logits = logits[0, -(scored + 1) : -1].float()
            return torch.nn.functional.cross_entropy(logits, t[0, t.shape[1] - scored :], reduction="none")

    def score(self, text: str, context: str = "", window: int | None = None) -> float:
        """Mean NLL (nats/token) of ``text`` after ``context``; ``window`` keeps only that many context
        tokens (the most recent)."""
        if not text.strip():
            raise DataInputError("the text to score is empty or whitespace; give it at least one word")
        ctx = self.encode(context) if context else self.encode("")
        if window is not None:
            ctx = ctx[:1] + ctx[1:][-window:] if self.add_bos else ctx[-window:]
        target = self.encode(text, add_bos=False)
        # With no context and no BOS token the first token has nothing to be predicted from.
        return float(self.token_nll(ctx + target, start=max(len(ctx), 1)).mean())

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: str, *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0, chat: bool | None = None, stop: Sequence[str] = ()) -> Generation:
        """Sample (temperature > 0) or decode greedily; returns text, ids and per-token log-probs."""
        use_chat = self.chat if chat is None else chat
        if use_chat and getattr(self.tokenizer, "chat_template", None):
            ids = self.chat_ids([{"role": "user", "content": prompt}])
        else:
            ids = self.encode(prompt)
        return self.generate_ids(ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 seed=seed, stop=stop)

    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a conversation in the model's chat template, ready for the assistant's turn."""
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                                 return_dict=False)
        return [int(i) for i in ids]

    def generate_ids(self, ids: Sequence[int], *, max_new_tokens: int = 64, temperature: float = 0.0,
                     top_p: float = 1.0, seed: int = 0, stop: Sequence[str] = ()) -> Generation:
        """Continue a token sequence; stops at EOS, at ``max_new_tokens`` or when a stop string appears."""
        out_ids: list[int] = []
        logprobs: list[float] = []
        for token, logprob in self.iter_generate_ids(ids, max_new_tokens=max_new_tokens, temperature=temperature,
                                                     top_p=top_p, seed=seed, stop=stop):
            out_ids.append(token)
            logprobs.append(logprob)
        return Generation(self.decode(out_ids), out_ids, logprobs)

    def iter_generate_ids(self, ids: Sequence[int], *, max_new_tokens: int = 64, temperature: float = 0.0,
                          top_p: float = 1.0, seed: int = 0, stop: Sequence[str] = ()) -> Iterator[tuple[int, float]]:
        """:meth:`generate_ids` one token at a time: yields ``(token id, log-probability)`` as each is
        chosen (EOS is not yielded), with a key/value cache, so a caller can stream the text. Closing the
        iterator early stops the generation.

        >>> lm = CausalLM.tiny_random(seed=0)
        >>> steps = list(lm.iter_generate_ids(lm.encode("hi"), max_new_tokens=4))
        >>> [t for t, _ in steps] == lm.generate_ids(lm.encode("hi"), max_new_tokens=4).token_ids
        True
        """
        gen = torch.Generator(device="cpu").manual_seed(seed)
        past = None
        x = torch.tensor([list(ids)], device=self.device)
        out_ids: list[int] = []
        eos = self.tokenizer.eos_token_id
        for _ in range(max_new_tokens):
            with torch.no_grad():
                logits, past = self.forward(x, past, use_cache=True)
            logits = logits[0, -1].float()
            logp = logits.log_softmax(-1)
            if temperature <= 0:
                token = int(logits.argmax())
            else:
                probs = (logits / temperature).softmax(-1)
                if top_p < 1.0:
                    sorted_p, order = probs.sort(descending=True)
                    keep = sorted_p.cumsum(0) - sorted_p < top_p
                    probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                    probs = probs / probs.sum()
                token = int(torch.multinomial(probs.cpu(), 1, generator=gen))
            if token == eos:
                return
            out_ids.append(token)
            yield token, float(logp[token])
            x = torch.tensor([[token]], device=self.device)
            if stop and any(s in self.decode(out_ids) for s in stop):
                return


def _cache_keyword(model: Any) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class ByteTokenizer:
    """UTF-8 bytes as tokens, plus BOS/EOS/PAD: the tokenizer of :meth:`CausalLM.tiny_random`.

    >>> t = ByteTokenizer()
    >>> t.decode(t.encode("hé"))
    'hé'
    """

    chat_template = None

    def __init__(self, vocab: int = 256) -> None:
        self.vocab = vocab
        self.bos_token_id = vocab
        self.eos_token_id = vocab + 1
        self.pad_token_id = vocab + 2

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Bytes of the UTF-8 encoding."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Inverse of :meth:`encode`, special ids dropped."""
        return bytes(i for i in ids if i < self.vocab).decode("utf-8", errors="replace")
