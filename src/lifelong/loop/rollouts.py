"""Rollouts: many samples per prompt from any language-model backend, each with its own seed.

A rollout is a record ``(prompt_id, sample, seed, text, logprobs, ...)``. Seeds come from
:func:`~lifelong.loop.seeding.derive_seed` over (run seed, prompt id, sample index), so a sample is the
same whether it was drawn alone, in a batch, or on another machine.

Samplers (all ``sample(requests, config) -> list[Rollout]``):

- :class:`LMSampler`: an in-process :class:`~lifelong.models.lm.CausalLM`, batched (left padding,
  one key/value cache, one random generator per row), with per-token log-probabilities;
- :class:`ChatSampler`: any :class:`~lifelong.models.chat.ChatModel` (scripted, local, OpenAI-compatible,
  llama.cpp), with log-probabilities where the backend returns them, optionally several requests at a
  time (``concurrency``) so an HTTP server can batch them;
- :class:`OpenAISampler`: an OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) asked for
  log-probabilities, in chat or plain-completion mode;
- :class:`LlamaCppSampler`: a ``llama_cpp.Llama`` in process (completion API with log-probabilities).

A backend failure never raises out of a batch: the rollout gets ``finish="error"``, an empty text
and the message in ``error``, and every verifier scores an empty text zero.

Log-probabilities are those of the model's own distribution (temperature 1) for the sampled tokens,
as OpenAI-compatible servers report them; at temperature 1 this is the sampling distribution itself.

>>> from lifelong.models.chat import ScriptedChat
>>> chat = ScriptedChat(lambda m: "4")
>>> rs = sample(ChatSampler(chat), {"q1": "2+2?"}, n=2, seed=0)
>>> [(r.prompt_id, r.sample, r.text) for r in rs]
[('q1', 0, '4'), ('q1', 1, '4')]
>>> rs[0].seed != rs[1].seed
True
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lifelong.loop.errors import RolloutError
from lifelong.loop.seeding import derive_seed

if TYPE_CHECKING:
    from lifelong.loop.executors import Executor

__all__ = [
    "ChatSampler", "LMSampler", "LlamaCppSampler", "OpenAISampler", "Prompt", "Rollout", "RolloutRequest",
    "Sampler", "SamplingConfig", "make_requests", "sample", "sample_parallel",
]


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: temperature (0 = greedy), token budget, nucleus ``top_p``, stop strings.

    >>> SamplingConfig(temperature=0.7).max_tokens
    64
    """

    temperature: float = 1.0
    max_tokens: int = 64
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise RolloutError(f"SamplingConfig.temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.max_tokens < 1:
            raise RolloutError(f"SamplingConfig.max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 < self.top_p <= 1:
            raise RolloutError(f"SamplingConfig.top_p must lie in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Prompt:
    """A prompt: plain ``text`` (for base models; chat backends send it as one user message) or chat
    ``messages``.

    >>> Prompt("a", text="hi").as_messages()
    [{'role': 'user', 'content': 'hi'}]
    """

    id: str
    text: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.messages is None):
            raise RolloutError(f"prompt {self.id!r}: give exactly one of text= or messages=")

    def as_messages(self) -> list[dict[str, str]]:
        """Chat form."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.text or ""}]

    def as_text(self) -> str:
        """Plain-text form (a ``role: content`` transcript for chat messages)."""
        if self.text is not None:
            return self.text
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages or ()) + "\nassistant:"


@dataclass(frozen=True)
class RolloutRequest:
    """One sample to draw: which prompt, which sample index, which seed.

    >>> RolloutRequest(Prompt("p", text="hi"), 0, 42).seed
    42
    """

    prompt: Prompt
    sample: int
    seed: int


@dataclass(frozen=True)
class Rollout:
    """One sampled output and where it came from.

    ``finish`` is ``"stop"`` (end of sequence or a stop string), ``"length"`` (token budget used up) or
    ``"error"`` (the backend failed; ``text`` is empty and ``error`` says why).

    >>> r = Rollout("q", 0, 1, "x", logprobs=(-0.5, -1.0))
    >>> r.logprob, r.ok
    (-1.5, True)
    """

    prompt_id: str
    sample: int
    seed: int
    text: str
    logprobs: tuple[float, ...] | None = None
    token_ids: tuple[int, ...] | None = None
    finish: str = "stop"
    error: str | None = None
    backend: str = ""
    temperature: float = 1.0

    @property
    def ok(self) -> bool:
        """The backend produced an output (it may still be wrong)."""
        return self.error is None

    @property
    def logprob(self) -> float | None:
        """Sequence log-probability (sum over tokens), None where the backend gives none."""
        return None if self.logprobs is None else float(sum(self.logprobs))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        d = asdict(self)
        for k in ("logprobs", "token_ids"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


@runtime_checkable
class Sampler(Protocol):
    """``sample(requests, config) -> list[Rollout]``, one rollout per request, in request order.

    >>> from lifelong.models.chat import ScriptedChat
    >>> isinstance(ChatSampler(ScriptedChat(["x"])), Sampler)
    True
    """

    name: str

    def sample(self, requests: Sequence[RolloutRequest], config: SamplingConfig) -> list[Rollout]: ...


def _as_prompts(prompts: Mapping[str, str] | Sequence[Prompt] | Sequence[str]) -> list[Prompt]:
    if isinstance(prompts, Mapping):
        out = [Prompt(str(k), text=v) for k, v in prompts.items()]
    else:
        out = [p if isinstance(p, Prompt) else Prompt(str(i), text=str(p)) for i, p in enumerate(prompts)]
    if not out:
        raise RolloutError("no prompts given; pass a mapping {id: text} or a list of Prompt")
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        raise RolloutError(f"prompt ids repeat ({sorted({i for i in ids if ids.count(i) > 1})[:5]}); ids must be unique")
    return out


def make_requests(
    prompts: Mapping[str, str] | Sequence[Prompt] | Sequence[str], *, n: int = 1, seed: int = 0
) -> list[RolloutRequest]:
    """``n`` requests per prompt, prompt-major, each with a derived seed.

    >>> [(r.prompt.id, r.sample) for r in make_requests({"a": "x", "b": "y"}, n=2)]
    [('a', 0), ('a', 1), ('b', 0), ('b', 1)]
    """
    if n < 1:
        raise RolloutError(f"n (samples per prompt) must be >= 1, got {n}")
    return [RolloutRequest(p, i, derive_seed(seed, p.id, i)) for p in _as_prompts(prompts) for i in range(n)]


def sample(
    sampler: Sampler,
    prompts: Mapping[str, str] | Sequence[Prompt] | Sequence[str],
    *,
    n: int = 1,
    seed: int = 0,
    config: SamplingConfig | None = None,
) -> list[Rollout]:
    """Draw ``n`` samples per prompt from ``sampler``; prompt-major order.

    >>> from lifelong.models.chat import ScriptedChat
    >>> [r.sample for r in sample(ChatSampler(ScriptedChat(["x"])), ["p"], n=3)]
    [0, 1, 2]
    """
    return sampler.sample(make_requests(prompts, n=n, seed=seed), config or SamplingConfig())


def _error_rollout(req: RolloutRequest, err: BaseException | str, backend: str, config: SamplingConfig) -> Rollout:
    msg = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return Rollout(req.prompt.id, req.sample, req.seed, "", None, None, "error", msg[:2000], backend, config.temperature)


# ---------------------------------------------------------------------------------------------- local LM
class LMSampler:
    """Batched sampling from a :class:`~lifelong.models.lm.CausalLM` in process.

    Prompts in a batch are left-padded and decoded together through one key/value cache; each row has its
    own ``torch.Generator`` seeded with the request's seed, so a sample does not depend on which other
    prompts shared its batch (up to floating-point differences of padded attention, which can flip a
    sampled token only when two tokens are almost exactly tied). ``chat=None`` uses the model's chat
    template when it has one.

    >>> from lifelong.models.lm import CausalLM
    >>> lm = CausalLM.tiny_random(seed=0)
    >>> rs = sample(LMSampler(lm, batch_size=4), ["ab", "abc"], n=2, config=SamplingConfig(max_tokens=5))
    >>> [len(r.logprobs) == len(r.token_ids) for r in rs]
    [True, True, True, True]
    """

    def __init__(self, lm: Any, *, batch_size: int = 8, chat: bool | None = None) -> None:
        if batch_size < 1:
            raise RolloutError(f"LMSampler.batch_size must be >= 1, got {batch_size}")
        self.lm = lm
        self.batch_size = batch_size
        self.chat = chat
        self.name = f"lm:{lm.name}"

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        use_chat = self.lm.chat if self.chat is None else self.chat
        template = getattr(self.lm.tokenizer, "chat_template", None)
        if use_chat and template:
            ids = self.lm.tokenizer.apply_chat_template(prompt.as_messages(), add_generation_prompt=True)
            return list(ids["input_ids"] if isinstance(ids, dict) else ids)
        return self.lm.encode(prompt.as_text())

    def sample(self, requests: Sequence[RolloutRequest], config: SamplingConfig) -> list[Rollout]:
        out: list[Rollout] = []
        for start in range(0, len(requests), self.batch_size):
            batch = list(requests[start : start + self.batch_size])
            try:
                out.extend(self._batch(batch, config))
            except Exception as err:  # noqa: BLE001 - one failed batch must not lose the others
                out.extend(_error_rollout(r, err, self.name, config) for r in batch)
        return out

    def _batch(self, batch: list[RolloutRequest], config: SamplingConfig) -> list[Rollout]:
        import inspect

        import torch

        lm, model = self.lm, self.lm.model
        device = lm.device
        tok = lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        eos = tok.eos_token_id
        prompts = [self._prompt_ids(r.prompt) for r in batch]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding keeps every row's last token in the last column
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        gens = [torch.Generator(device="cpu").manual_seed(r.seed) for r in batch]
        tokens: list[list[int]] = [[] for _ in batch]
        logps: list[list[float]] = [[] for _ in batch]
        finish = ["length"] * len(batch)
        done = [False] * len(batch)
        cache = None
        x, pos = ids, positions
        with torch.no_grad():
            for _ in range(config.max_tokens):
                out = model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True, **{key: cache})
                cache = getattr(out, key, None)
                logits = out.logits[:, -1].float().cpu()
                logp = logits.log_softmax(-1)
                nxt = torch.full((len(batch),), pad, dtype=torch.long)
                for i in range(len(batch)):
                    if done[i]:
                        continue
                    t = _draw(logits[i], config, gens[i])
                    if t == eos:
                        done[i], finish[i] = True, "stop"
                        continue
                    tokens[i].append(t)
                    logps[i].append(float(logp[i, t]))
                    nxt[i] = t
                    if config.stop and any(s in lm.decode(tokens[i]) for s in config.stop):
                        done[i], finish[i] = True, "stop"
                if all(done):
                    break
                x = nxt.view(-1, 1).to(device)
                mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=device)], dim=1)
                pos = pos[:, -1:] + 1
        return [
            Rollout(r.prompt.id, r.sample, r.seed, lm.decode(tokens[i]), tuple(logps[i]), tuple(tokens[i]),
                    finish[i], None, self.name, config.temperature)
            for i, r in enumerate(batch)
        ]


def _draw(logits: Any, config: SamplingConfig, gen: Any) -> int:
    """One token from one row of logits: greedy at temperature 0, else (nucleus) sampling, exactly as
    :meth:`CausalLM.generate_ids` does, so both paths agree for equal seeds."""
    import torch

    if config.temperature <= 0:
        return int(logits.argmax())
    probs = (logits / config.temperature).softmax(-1)
    if config.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < config.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=gen))


# ---------------------------------------------------------------------------------------------- chat models
class ChatSampler:
    """Any :class:`~lifelong.models.chat.ChatModel`; ``concurrency`` > 1 sends that many requests at once
    (for HTTP servers that batch concurrent requests; keep 1 for in-process models).

    >>> from lifelong.models.chat import ScriptedChat
    >>> sample(ChatSampler(ScriptedChat(lambda m: m[0]["content"]), system="sys"), ["q"])[0].text
    'sys'
    """

    def __init__(self, chat: Any, *, system: str | None = None, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise RolloutError(f"ChatSampler.concurrency must be >= 1, got {concurrency}")
        self.chat = chat
        self.system = system
        self.concurrency = concurrency
        self.name = f"chat:{getattr(chat, 'name', type(chat).__name__)}"

    def _one(self, req: RolloutRequest, config: SamplingConfig) -> Rollout:
        messages = req.prompt.as_messages()
        if self.system:
            messages = [{"role": "system", "content": self.system}] + messages
        try:
            c = self.chat.complete(messages, max_tokens=config.max_tokens, temperature=config.temperature,
                                   seed=req.seed, stop=config.stop)
        except Exception as err:  # noqa: BLE001 - reported on the rollout, scored zero downstream
            return _error_rollout(req, err, self.name, config)
        text = c.text if isinstance(c.text, str) else ""
        lps = tuple(float(x) for x in c.logprobs) if c.logprobs is not None else None
        n_out = (c.usage or {}).get("completion_tokens")
        finish = "length" if n_out is not None and n_out >= config.max_tokens else "stop"
        return Rollout(req.prompt.id, req.sample, req.seed, text, lps, None, finish, None, self.name, config.temperature)

    def sample(self, requests: Sequence[RolloutRequest], config: SamplingConfig) -> list[Rollout]:
        if self.concurrency == 1:
            return [self._one(r, config) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, config), requests))


class OpenAISampler:
    """An OpenAI-compatible server asked for per-token log-probabilities.

    ``mode="chat"`` calls ``/chat/completions`` with ``logprobs=True``; ``mode="completion"`` calls
    ``/completions`` with ``logprobs=1`` (base models, vLLM, llama.cpp's server). Each sample is its own
    request carrying its own seed (servers honour ``seed`` per request, not per choice of ``n``), and
    ``concurrency`` requests are in flight at once so the server batches them.

    Skipped in doctests because ``openai`` is an optional dependency (nothing listens on port 9):

    >>> rs = sample(OpenAISampler("m", base_url="http://127.0.0.1:9/v1", timeout=1, max_retries=0),
    ...             ["hi"])  # doctest: +SKIP
    >>> rs[0].finish  # doctest: +SKIP
    'error'
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None, mode: str = "chat",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 1) -> None:
        if mode not in ("chat", "completion"):
            raise RolloutError(f"OpenAISampler.mode must be 'chat' or 'completion', got {mode!r}")
        try:
            from openai import OpenAI
        except ImportError:
            raise RolloutError("OpenAISampler needs the `openai` package: pip install openai") from None
        self.model = model
        self.mode = mode
        self.concurrency = max(1, concurrency)
        self.name = f"openai:{model}"
        self._client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                              max_retries=max_retries)

    def _one(self, req: RolloutRequest, config: SamplingConfig) -> Rollout:
        common = dict(model=self.model, max_tokens=config.max_tokens, temperature=config.temperature,
                      top_p=config.top_p, seed=req.seed, stop=list(config.stop) or None)
        try:
            if self.mode == "chat":
                resp = self._client.chat.completions.create(messages=req.prompt.as_messages(), logprobs=True, **common)
                choice = resp.choices[0]
                text = choice.message.content or ""
                content = getattr(choice.logprobs, "content", None)
                lps = tuple(float(t.logprob) for t in content) if content else None
            else:
                resp = self._client.completions.create(prompt=req.prompt.as_text(), logprobs=1, **common)
                choice = resp.choices[0]
                text = choice.text or ""
                raw = getattr(choice.logprobs, "token_logprobs", None)
                lps = tuple(float(x) for x in raw if x is not None) if raw else None
        except Exception as err:  # noqa: BLE001 - connection errors, timeouts, malformed replies
            return _error_rollout(req, err, self.name, config)
        finish = "length" if choice.finish_reason == "length" else "stop"
        return Rollout(req.prompt.id, req.sample, req.seed, text, lps, None, finish, None, self.name, config.temperature)

    def sample(self, requests: Sequence[RolloutRequest], config: SamplingConfig) -> list[Rollout]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, config), requests))


class LlamaCppSampler:
    """A ``llama_cpp.Llama`` in process, through its completion API with log-probabilities.

    Pass a ``Llama`` object created with ``logits_all=True`` (llama.cpp only keeps the logits needed for
    log-probabilities when asked), or a GGUF path, which is loaded that way.

    >>> class Fake:
    ...     def create_completion(self, prompt, **kw):
    ...         return {"choices": [{"text": "4", "finish_reason": "stop", "logprobs": {"token_logprobs": [-0.1]}}]}
    >>> sample(LlamaCppSampler(Fake()), ["2+2="])[0].logprobs
    (-0.1,)
    """

    def __init__(self, llama: Any, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        if isinstance(llama, str):
            try:
                from llama_cpp import Llama
            except ImportError:
                raise RolloutError(
                    "LlamaCppSampler needs llama-cpp-python (builds from source in ~4 min: "
                    "CMAKE_BUILD_PARALLEL_LEVEL=2 pip install llama-cpp-python)") from None
            llama = Llama(model_path=llama, n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False)
        self.llama = llama
        self.name = f"llama.cpp:{getattr(llama, 'model_path', 'model')}"

    def sample(self, requests: Sequence[RolloutRequest], config: SamplingConfig) -> list[Rollout]:
        out = []
        for req in requests:
            try:
                resp = self.llama.create_completion(
                    req.prompt.as_text(), max_tokens=config.max_tokens, temperature=config.temperature,
                    top_p=config.top_p, seed=req.seed, stop=list(config.stop) or None, logprobs=1)
                choice = resp["choices"][0]
                raw = (choice.get("logprobs") or {}).get("token_logprobs")
                lps = tuple(float(x) for x in raw if x is not None) if raw else None
                finish = "length" if choice.get("finish_reason") == "length" else "stop"
                out.append(Rollout(req.prompt.id, req.sample, req.seed, choice.get("text") or "", lps, None, finish,
                                   None, self.name, config.temperature))
            except Exception as err:  # noqa: BLE001
                out.append(_error_rollout(req, err, self.name, config))
        return out


# ---------------------------------------------------------------------------------------------- on executors
_WORKER_SAMPLERS: dict[str, Sampler] = {}


@dataclass(frozen=True)
class SampleShard:
    """A picklable task: build (once per worker process) the sampler ``factory()`` returns, then sample a
    chunk of requests. ``factory`` must be picklable (a module-level function or a ``functools.partial``).

    >>> from functools import partial
    >>> from lifelong.loop.workloads import scripted_sampler
    >>> SampleShard(partial(scripted_sampler, "y"))(make_requests(["p"]))[0].text
    'y'
    """

    factory: Callable[[], Sampler]
    config: SamplingConfig = field(default_factory=SamplingConfig)

    def __call__(self, requests: Sequence[RolloutRequest]) -> list[Rollout]:
        try:  # equal factories (after a round trip to a worker) share one sampler
            key = hashlib.sha256(pickle.dumps(self.factory)).hexdigest()
        except Exception:  # noqa: BLE001 - an in-process closure: no stable identity, so no caching
            return self.factory().sample(list(requests), self.config)
        if key not in _WORKER_SAMPLERS:  # loading a model once per worker, not once per chunk
            _WORKER_SAMPLERS[key] = self.factory()
        return _WORKER_SAMPLERS[key].sample(list(requests), self.config)


def sample_parallel(
    executor: Executor,
    factory: Callable[[], Sampler],
    prompts: Mapping[str, str] | Sequence[Prompt] | Sequence[str],
    *,
    n: int = 1,
    seed: int = 0,
    config: SamplingConfig | None = None,
    chunk: int = 8,
    timeout: float | None = None,
) -> list[Rollout]:
    """Sample on an executor's workers: requests are cut into chunks of ``chunk`` (a worker's batch), each
    worker builds its sampler once. A chunk that fails (worker died, factory raised, deadline) comes back
    as error rollouts, never as a missing row.

    >>> from functools import partial
    >>> from lifelong.loop.executors import SerialExecutor
    >>> from lifelong.loop.workloads import scripted_sampler
    >>> rs = sample_parallel(SerialExecutor(), partial(scripted_sampler, "ok"), ["p"], n=3, chunk=2)
    >>> [r.text for r in rs]
    ['ok', 'ok', 'ok']
    """
    config = config or SamplingConfig()
    reqs = make_requests(prompts, n=n, seed=seed)
    chunks = [reqs[i : i + chunk] for i in range(0, len(reqs), chunk)]
    results = executor.map(SampleShard(factory, config), chunks, timeout=timeout)
    out: list[Rollout] = []
    for res, part in zip(results, chunks, strict=True):
        if res.ok:
            out.extend(res.value)
        else:
            out.extend(_error_rollout(r, res.error or "unknown error", "executor", config) for r in part)
    return out
