"""Rollouts: seeds independent of batching, log-probabilities, every backend, failures as records."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from lifelong.loop.errors import RolloutError
from lifelong.loop.executors import SerialExecutor
from lifelong.loop.rollouts import (
    ChatSampler,
    LlamaCppSampler,
    LMSampler,
    OpenAISampler,
    Prompt,
    SamplingConfig,
    make_requests,
    sample,
    sample_parallel,
)
from lifelong.loop.workloads import scripted_sampler, tiny_lm_sampler
from lifelong.models.chat import ChatModelError, ScriptedChat
from lifelong.models.lm import CausalLM

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    return CausalLM.tiny_random(seed=0)


def test_batched_sampling_matches_one_at_a_time_and_generate(lm: CausalLM) -> None:
    cfg = SamplingConfig(temperature=1.0, max_tokens=10)
    prompts = {"a": "hello", "b": "ab", "c": "x y z w"}
    batched = sample(LMSampler(lm, batch_size=8), prompts, n=3, seed=5, config=cfg)
    single = sample(LMSampler(lm, batch_size=1), prompts, n=3, seed=5, config=cfg)
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    for x, y in zip(batched, single, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
    ref = lm.generate("hello", max_new_tokens=10, temperature=1.0, seed=batched[0].seed)
    assert tuple(ref.token_ids) == batched[0].token_ids
    assert all(len(r.logprobs) == len(r.token_ids) and all(lp <= 0 for lp in r.logprobs) for r in batched)


def test_seeds_are_per_sample_and_reproducible(lm: CausalLM) -> None:
    cfg = SamplingConfig(temperature=1.0, max_tokens=8)
    a = sample(LMSampler(lm), ["p"], n=4, seed=1, config=cfg)
    b = sample(LMSampler(lm), ["p"], n=4, seed=1, config=cfg)
    c = sample(LMSampler(lm), ["p"], n=4, seed=2, config=cfg)
    assert [r.text for r in a] == [r.text for r in b]
    assert len({r.seed for r in a}) == 4 and [r.seed for r in a] != [r.seed for r in c]
    assert len({r.token_ids for r in a}) > 1  # different seeds, different samples


def test_greedy_and_budget(lm: CausalLM) -> None:
    rs = sample(LMSampler(lm), ["ab", "abc"], n=2, config=SamplingConfig(temperature=0.0, max_tokens=6))
    assert rs[0].token_ids == rs[1].token_ids  # greedy ignores the seed
    assert all(r.finish in ("length", "stop") and len(r.token_ids) <= 6 for r in rs)


def test_bad_requests_are_refused() -> None:
    with pytest.raises(RolloutError):
        make_requests({}, n=1)
    with pytest.raises(RolloutError):
        make_requests(["a"], n=0)
    with pytest.raises(RolloutError):
        make_requests([Prompt("x", text="a"), Prompt("x", text="b")])
    with pytest.raises(RolloutError):
        SamplingConfig(temperature=-1)


def test_chat_backend_failure_becomes_an_error_record() -> None:
    def boom(messages):
        raise ChatModelError("cannot reach the chat endpoint")

    rs = sample(ChatSampler(ScriptedChat(boom)), ["q"], n=2)
    assert all(r.finish == "error" and r.text == "" and "cannot reach" in r.error for r in rs)


def test_chat_sampler_passes_seeds_and_messages() -> None:
    chat = ScriptedChat(lambda m: m[-1]["content"][::-1])
    rs = sample(ChatSampler(chat, system="be brief", concurrency=2), {"q": "abc"}, n=2, seed=3)
    assert [r.text for r in rs] == ["cba", "cba"]
    assert chat.calls[0][0] == {"role": "system", "content": "be brief"}


class _FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible server on 127.0.0.1 that answers from the request's seed."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        text = f"answer-{body.get('seed')}"
        if self.path.endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                      "logprobs": {"content": [{"token": "a", "logprob": -0.25, "bytes": None, "top_logprobs": []},
                                               {"token": "b", "logprob": -0.5, "bytes": None, "top_logprobs": []}]}}
            payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
        else:
            choice = {"index": 0, "finish_reason": "length", "text": text,
                      "logprobs": {"tokens": ["a"], "token_logprobs": [-1.5], "top_logprobs": None, "text_offset": [0]}}
            payload = {"id": "x", "object": "text_completion", "created": 0, "model": body["model"], "choices": [choice]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_sampler_chat_and_completion_logprobs(fake_server: str) -> None:
    pytest.importorskip("openai")
    _FakeOpenAI.seen.clear()
    rs = sample(OpenAISampler("m", base_url=fake_server, concurrency=2), {"q": "hi"}, n=2, seed=0)
    assert [r.text for r in rs] == [f"answer-{r.seed}" for r in rs]
    assert rs[0].logprobs == (-0.25, -0.5) and rs[0].logprob == -0.75
    assert all(body["logprobs"] is True for body in _FakeOpenAI.seen)
    comp = sample(OpenAISampler("m", base_url=fake_server, mode="completion"), ["x"], n=1)
    assert comp[0].logprobs == (-1.5,) and comp[0].finish == "length"


def test_openai_sampler_unreachable_server_is_an_error_record() -> None:
    pytest.importorskip("openai")
    rs = sample(OpenAISampler("m", base_url="http://127.0.0.1:1/v1", timeout=2, max_retries=0), ["q"])
    assert rs[0].finish == "error" and rs[0].text == ""


def test_llama_cpp_sampler_reads_token_logprobs() -> None:
    class FakeLlama:
        model_path = "fake.gguf"

        def create_completion(self, prompt, **kw):
            assert kw["logprobs"] == 1
            return {"choices": [{"text": " 4", "finish_reason": "stop",
                                 "logprobs": {"token_logprobs": [-0.1, -0.2]}}]}

    r = sample(LlamaCppSampler(FakeLlama()), ["2+2="])[0]
    assert r.text == " 4" and r.logprobs == (-0.1, -0.2)


def test_sample_parallel_on_an_executor_matches_in_process(lm: CausalLM) -> None:
    cfg = SamplingConfig(temperature=1.0, max_tokens=6)
    direct = sample(tiny_lm_sampler(seed=0, batch_size=4), ["ab", "cd"], n=3, seed=9, config=cfg)
    parallel = sample_parallel(SerialExecutor(), partial(tiny_lm_sampler, seed=0, batch_size=4), ["ab", "cd"],
                               n=3, seed=9, config=cfg, chunk=2)
    assert [r.token_ids for r in parallel] == [r.token_ids for r in direct]


def test_sample_parallel_reports_a_failed_chunk() -> None:
    def broken_factory():
        raise RuntimeError("model file missing")

    rs = sample_parallel(SerialExecutor(), broken_factory, ["a", "b"], n=1, chunk=1)
    assert [r.finish for r in rs] == ["error", "error"] and "model file missing" in rs[0].error
    ok = sample_parallel(SerialExecutor(), partial(scripted_sampler, "fine"), ["a"], n=2)
    assert [r.text for r in ok] == ["fine", "fine"]
