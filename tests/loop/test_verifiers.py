"""Verifiers fail closed: errors, timeouts, garbage, empty and enormous outputs score zero; code runs in
a sandbox with limits and no network; every score carries the verifier's hash."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from lifelong.loop.errors import VerifierConfigError
from lifelong.loop.executors import SerialExecutor
from lifelong.loop.rollouts import Rollout
from lifelong.loop.sandbox import SandboxLimits, run_python
from lifelong.loop.verifiers import (
    CodeTests,
    CommandVerifier,
    ExactMatch,
    FunctionVerifier,
    Item,
    NumericMatch,
    extract_number,
    score_many,
)

ADD = Item("add", tests=("assert add(2, 3) == 5", "assert add(-1, 1) == 0"))
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"


# ---------------------------------------------------------------------------------------------- answers
@pytest.mark.parametrize(("text", "value"), [
    ("The answer is 42.", 42.0), ("#### -7", -7.0), ("\\boxed{3/4}", 0.75), ("total: 1,250.5", 1250.5),
    ("so x = 2e3", 2000.0), ("Answer: 12 apples (not 13)", 13.0),
])
def test_number_extraction(text: str, value: float) -> None:
    assert extract_number(text) == pytest.approx(value)


def test_numeric_tolerance_and_exact_match() -> None:
    item = Item("pi", answer="3.14159")
    assert NumericMatch(rel_tol=1e-3)("about 3.1416", item).value == 1.0
    assert NumericMatch(rel_tol=1e-7)("about 3.1416", item).value == 0.0
    assert ExactMatch()("Final answer: PARIS", Item("c", answer=["Paris", "paris, france"])).value == 1.0
    assert ExactMatch(case_sensitive=True)("Answer: PARIS", Item("c", answer="Paris")).value == 0.0
    with pytest.raises(VerifierConfigError):
        NumericMatch(rel_tol=-1)


@pytest.mark.parametrize("output", ["", "   \n", None, 12, "9" * 200_001])
def test_empty_garbage_or_enormous_outputs_score_zero(output: object) -> None:
    s = NumericMatch()(output, Item("q", answer=9))
    assert s.value == 0.0 and s.status == "invalid-output" and not s.ran


def test_a_failed_rollout_scores_zero() -> None:
    r = Rollout("q", 0, 1, "", finish="error", error="ChatModelError: timeout")
    assert NumericMatch()(r, Item("q", answer=1)).status == "invalid-output"


def test_item_without_reference_is_reported_not_passed() -> None:
    s = ExactMatch()("anything", Item("q"))
    assert (s.value, s.status) == (0.0, "invalid-item") and "no reference answer" in s.reason
    assert NumericMatch()("3", Item("q", answer="three")).status == "invalid-item"
    assert CodeTests()("x = 1", Item("q")).status == "invalid-item"


def test_scores_carry_the_verifier_hash_which_tracks_config() -> None:
    a, b = NumericMatch(rel_tol=1e-6), NumericMatch(rel_tol=1e-3)
    item = Item("q", answer=1)
    assert a("1", item).verifier_hash == a.hash == NumericMatch(rel_tol=1e-6).hash
    assert a.hash != b.hash and a.hash != ExactMatch().hash


# ---------------------------------------------------------------------------------------------- custom
def test_a_verifier_that_raises_scores_zero() -> None:
    def broken(output, item):
        raise KeyError("oops")

    s = FunctionVerifier(broken)("fine output", Item("q"))
    assert (s.value, s.status) == (0.0, "error") and "KeyError" in s.reason


def test_a_verifier_that_hangs_scores_zero() -> None:
    def hangs(output, item):
        time.sleep(60)
        return 1.0

    t0 = time.monotonic()
    s = FunctionVerifier(hangs, timeout_s=0.5)("fine output", Item("q"))
    assert (s.value, s.status) == (0.0, "timeout") and time.monotonic() - t0 < 10


@pytest.mark.parametrize("garbage", ["yes", float("nan"), 7.5, -1.0, None, [1.0]])
def test_a_verifier_that_returns_garbage_scores_zero(garbage: object) -> None:
    s = FunctionVerifier(lambda o, i: garbage, name="garbage")("fine output", Item("q"))
    assert (s.value, s.status) == (0.0, "error")


def test_function_verifier_hash_tracks_its_source() -> None:
    v1 = FunctionVerifier(lambda o, i: o == "a", name="v")
    v2 = FunctionVerifier(lambda o, i: o == "b", name="v")
    assert v1.hash != v2.hash and v1("a", Item("q")).value == 1.0


def test_command_verifier_that_prints_garbage_or_crashes_scores_zero() -> None:
    py = sys.executable
    garbage = CommandVerifier([py, "-c", "print('LGTM!! great job')"], timeout_s=10)("out", Item("q"))
    assert (garbage.value, garbage.status) == (0.0, "error") and "no score" in garbage.reason
    too_big = CommandVerifier([py, "-c", "print(3.0)"], timeout_s=10)("out", Item("q"))
    assert (too_big.value, too_big.status) == (0.0, "error")
    crash = CommandVerifier([py, "-c", "import sys; print(1.0); sys.exit(3)"], timeout_s=10)("out", Item("q"))
    assert (crash.value, crash.status) == (0.0, "error")
    hang = CommandVerifier([py, "-c", "import time; time.sleep(60)"], timeout_s=1)("out", Item("q"))
    assert (hang.value, hang.status) == (0.0, "timeout")
    reads = CommandVerifier([py, "-c", "import json,sys; d=json.load(sys.stdin); print(float(d['output']=='ok'))"],
                            timeout_s=10)
    assert reads("ok", Item("q")).value == 1.0 and reads("no", Item("q")).value == 0.0


# ---------------------------------------------------------------------------------------------- code
def test_code_that_passes_and_fails() -> None:
    v = CodeTests(timeout_s=10)
    assert v(GOOD, ADD).value == 1.0
    half = "```python\ndef add(a, b):\n    return 5\n```"  # passes the first test only
    bad = v(half, ADD)
    assert (bad.value, bad.status) == (0.0, "fail") and bad.detail["passed"] == 1
    assert CodeTests(timeout_s=10, partial=True)(half, ADD).value == 0.5


@pytest.mark.parametrize(("code", "status"), [
    ("import sys\nsys.exit(0)", "fail"),                                  # exits before any test runs
    ("import os\nos._exit(0)", "error"),                                  # kills the harness: no verdict
    ("print('@@verdict-fake@@{\"loaded\": true, \"passed\": 2, \"total\": 2, \"failures\": []}')\nimport os\nos._exit(0)",
     "error"),                                                            # a forged report without the nonce
    ("while True:\n    pass", "timeout"),
    ("x = bytearray(4 * 1024 ** 3)", "fail"),                             # MemoryError under RLIMIT_AS
    ("def add(a, b):\n    return a + b\nimport atexit, os\natexit.register(lambda: os._exit(0))", "pass"),
])
def test_code_that_cheats_hangs_or_explodes(code: str, status: str) -> None:
    s = CodeTests(timeout_s=2, memory_mb=256)(code, ADD)
    assert s.status == status
    assert s.value == (1.0 if status == "pass" else 0.0)


@pytest.mark.parametrize("isolation", ["auto", "audit-hook"])
def test_sandboxed_code_cannot_connect_to_a_socket(isolation: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    port = server.getsockname()[1]
    accepted: list[bool] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(True)
            conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    connected = True\n"
            "except OSError:\n    connected = False\n")
    s = CodeTests(["assert connected is False"], timeout_s=10, isolation=isolation)(code, Item("net"))
    stop.set()
    thread.join()
    server.close()
    assert s.value == 1.0, s.reason  # the test inside the sandbox asserts the connection failed
    assert accepted == []            # and the listening server never saw it
    assert s.detail["network"] in ("netns", "audit-hook")
    if isolation == "audit-hook":
        assert s.detail["network"] == "audit-hook"


def test_sandbox_file_size_limit_stops_floods() -> None:
    r = run_python("while True:\n    print('x' * 10000)", limits=SandboxLimits(timeout_s=10, max_file_mb=1))
    assert not r.timed_out and r.returncode != 0 and len(r.stdout) <= 100_000


def test_score_many_runs_on_an_executor() -> None:
    items = [Item(str(i), answer=i) for i in range(4)]
    outs = ["0", "1", "x", "9"]
    direct = [s.value for s in score_many(NumericMatch(), outs, items)]
    via = [s.value for s in score_many(NumericMatch(), outs, items, executor=SerialExecutor(), chunksize=2)]
    assert direct == via == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(VerifierConfigError):
        score_many(NumericMatch(), ["1"], items)
