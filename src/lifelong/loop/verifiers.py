"""Verifiers: score a model output against an item, pinned by a content hash, never fooled by failure.

A verifier is called as ``verifier(output, item) -> Score``. It never raises on a bad output or a
failing check: an exception, a timeout, garbage, an empty output or an enormous one all score **zero**,
with a ``status`` that says which (``error``, ``timeout``, ``invalid-output``, ``invalid-item``), so a
failure is reported and never silently counted as success (OpenEvolve PR #446 averaged a timeout flag
as 1.0 into fitness). An item without a reference answer scores zero with ``invalid-item``.

Each verifier has a ``hash``: SHA-256 over its class's source, its configuration and, for code
verifiers, the sandbox prologue. Every :class:`Score` carries it, so a score always says which exact
verifier produced it, and :class:`~lifelong.loop.pins.Pins` detects a verifier that changed.

Verifiers here: :class:`ExactMatch`, :class:`NumericMatch` (tolerances, answer extraction),
:class:`CodeTests` (code against tests in the :mod:`~lifelong.loop.sandbox`), :class:`FunctionVerifier`
(any Python function, optionally in a killable child process with a timeout) and
:class:`CommandVerifier` (an external checker program that prints a score).

>>> v = NumericMatch(rel_tol=1e-6)
>>> item = Item("q1", prompt="What is 6*7?", answer=42)
>>> s = v("Let me think... 6*7 = 42. The answer is 42.", item)
>>> s.value, s.status, s.verifier_hash == v.hash
(1.0, 'pass', True)
>>> v("", item).status, v("", item).value
('invalid-output', 0.0)
"""

from __future__ import annotations

import inspect
import json
import math
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from lifelong.core.hashing import json_hash, sha256_hex
from lifelong.loop.errors import VerifierConfigError
from lifelong.loop.sandbox import CONFINE_SOURCE, SandboxLimits, run_command, run_python
from lifelong.loop.timeouts import call_with_timeout

if TYPE_CHECKING:
    from lifelong.loop.executors import Executor

__all__ = [
    "CodeTests", "CommandVerifier", "ExactMatch", "FunctionVerifier", "Item", "NumericMatch", "Score", "Status",
    "Verifier", "extract_answer", "extract_code", "extract_number", "score_many",
]

DEFAULT_MAX_OUTPUT_CHARS = 100_000  # a model output longer than this is degenerate, not an answer


@dataclass(frozen=True)
class Item:
    """One evaluation item: a prompt, a reference ``answer`` and/or ``tests`` (code), and metadata.

    >>> Item("a", answer=3).to_dict()["answer"]
    3
    """

    id: str
    prompt: str = ""
    answer: Any = None
    tests: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what evaluation-data hashes are computed over)."""
        return {"id": self.id, "prompt": self.prompt, "answer": self.answer, "tests": list(self.tests),
                "meta": dict(self.meta)}


class Status(StrEnum):
    """Why a score is what it is. Only ``PASS`` and ``FAIL`` mean the check itself ran.

    >>> Status.TIMEOUT == "timeout"
    True
    """

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    TIMEOUT = "timeout"
    INVALID_OUTPUT = "invalid-output"
    INVALID_ITEM = "invalid-item"


@dataclass(frozen=True)
class Score:
    """A verifier's judgement of one output, with the verifier's identity.

    >>> Score("q", 0.0, "timeout", "ran past 5s", "code", "ab12").ran
    False
    """

    item_id: str
    value: float
    status: str
    reason: str
    verifier: str
    verifier_hash: str
    seconds: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        """The check ran to a verdict (pass or fail), as opposed to an error, timeout or bad input."""
        return self.status in (Status.PASS.value, Status.FAIL.value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        d["detail"] = dict(self.detail)
        return d


@dataclass(frozen=True)
class Check:
    """What a verifier's :meth:`Verifier.check` returns: a value in [0, 1] and why.

    >>> Check(1.0, "all tests passed").status is None
    True
    """

    value: float
    reason: str = ""
    status: str | None = None  # default: pass when value >= pass_threshold, else fail
    detail: Mapping[str, Any] = field(default_factory=dict)


_SOURCE_DIGESTS: dict[type, list[str]] = {}


class Verifier(ABC):
    """Base class: input guards, error capture, content hash. Subclasses implement :meth:`check`.

    ``max_output_chars`` bounds the output length accepted (longer scores zero as ``invalid-output``);
    ``pass_threshold`` is the value from which a score counts as a pass.

    >>> class Shouts(Verifier):
    ...     name = "shouts"
    ...     def check(self, output, item):
    ...         return Check(float(output.isupper()), "all caps" if output.isupper() else "not all caps")
    >>> Shouts()("HELLO", Item("a")).status, Shouts()("hello", Item("a")).value
    ('pass', 0.0)
    """

    name: str = "verifier"
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    pass_threshold: float = 1.0

    @abstractmethod
    def check(self, output: str, item: Item) -> Check:
        """Score a non-empty, bounded output; may raise (the caller turns that into a zero)."""

    def config(self) -> dict[str, Any]:
        """What, besides the source code, determines this verifier's behaviour (JSON-able)."""
        return {"max_output_chars": self.max_output_chars, "pass_threshold": self.pass_threshold}

    def sources(self) -> list[str]:
        """Source texts that define the behaviour: every class in the MRO up to :class:`Verifier`."""
        out = []
        for cls in type(self).__mro__:
            if cls is object or cls is ABC:
                continue
            try:
                out.append(inspect.getsource(cls))
            except (OSError, TypeError):
                out.append(f"<no source: {cls.__module__}.{cls.__qualname__}>")
            if cls is Verifier:
                break
        return out

    @property
    def hash(self) -> str:
        """Content hash of source and configuration: equal hashes mean the same verifier. Recomputed on
        every access (sources are read once per class), so a verifier mutated after it was pinned no
        longer matches its pin."""
        cls = type(self)
        if cls not in _SOURCE_DIGESTS:
            _SOURCE_DIGESTS[cls] = [sha256_hex(s.encode()) for s in self.sources()]
        return json_hash({"type": f"{cls.__module__}.{cls.__qualname__}", "sources": _SOURCE_DIGESTS[cls],
                          "config": self.config()})

    def _score(self, item: Item, value: float, status: str, reason: str, t0: float,
               detail: Mapping[str, Any] | None = None) -> Score:
        return Score(item.id, value, status, reason, self.name, self.hash, time.perf_counter() - t0, dict(detail or {}))

    def __call__(self, output: Any, item: Item) -> Score:
        """Score ``output`` (a string, or anything with a ``text`` attribute such as a rollout)."""
        t0 = time.perf_counter()
        if hasattr(output, "text") and not isinstance(output, str):
            if getattr(output, "error", None):
                return self._score(item, 0.0, Status.INVALID_OUTPUT.value, f"the rollout failed: {output.error}", t0)
            output = output.text
        if not isinstance(output, str):
            return self._score(item, 0.0, Status.INVALID_OUTPUT.value, f"output is a {type(output).__name__}, not text", t0)
        if not output.strip():
            return self._score(item, 0.0, Status.INVALID_OUTPUT.value, "empty output", t0)
        if len(output) > self.max_output_chars:
            return self._score(item, 0.0, Status.INVALID_OUTPUT.value,
                               f"output of {len(output)} chars exceeds {self.max_output_chars}", t0)
        try:
            result = self.check(output, item)
        except _InvalidItem as err:
            return self._score(item, 0.0, Status.INVALID_ITEM.value, str(err), t0)
        except Exception as err:  # noqa: BLE001 - a verifier that raises scores zero, never success
            return self._score(item, 0.0, Status.ERROR.value, f"verifier raised {type(err).__name__}: {err}"[:2000], t0)
        value = result.value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
            return self._score(item, 0.0, Status.ERROR.value, f"verifier returned {value!r}, not a number in [0, 1]", t0)
        status = result.status or (Status.PASS.value if value >= self.pass_threshold else Status.FAIL.value)
        if status not in (Status.PASS.value, Status.FAIL.value):
            value = 0.0  # an error, timeout or invalid input is zero whatever value came with it
        return self._score(item, float(value), status, result.reason, t0, result.detail)


class _InvalidItem(Exception):
    """The item cannot be scored (no reference answer, no tests)."""


# ---------------------------------------------------------------------------------------------- extraction
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?|[-+]?\.\d+")
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_ANSWER = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*(.+)", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The answer part of an output: ``\\boxed{...}``, ``#### X``, ``answer is X`` / ``Answer: X``, else
    the last non-empty line.

    >>> extract_answer("so... The answer is 12.")
    '12'
    >>> extract_answer("work\\n#### 7")
    '7'
    >>> extract_answer("x = \\\\boxed{3/4}")
    '3/4'
    """
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().split("\n")[0].strip() or None
    found = _ANSWER.findall(text)
    if found:
        return found[-1].strip().rstrip(".").strip() or None
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    return lines[-1] if lines else None


def _parse_number(token: str) -> float:
    token = token.replace(",", "").replace(" ", "")
    if "/" in token:
        num, den = token.split("/")
        return float(Fraction(int(float(num)), int(den))) if float(num).is_integer() else float(num) / float(den)
    return float(token)


def extract_number(text: str) -> float | None:
    """The last number in the answer part (see :func:`extract_answer`), else in the whole text.
    Handles signs, thousands separators, decimals, exponents and fractions.

    >>> extract_number("The answer is 1,234.5 dollars")
    1234.5
    >>> extract_number("3/4"), extract_number("no digits") is None
    (0.75, True)
    """
    for part in (extract_answer(text) or "", text):
        found = _NUMBER.findall(part)
        for token in reversed(found):
            try:
                value = _parse_number(token)
            except (ValueError, ZeroDivisionError):
                continue
            if math.isfinite(value):
                return value
    return None


_FENCE = re.compile(r"```(?:python|py|python3)?\s*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The last fenced code block (```python ... ```), else the whole text.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```")
    'def f():\\n    return 1\\n'
    """
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def _normalize(text: str, case: bool, punctuation: bool) -> str:
    if not case:
        text = text.lower()
    if not punctuation:
        text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------- answers
class ExactMatch(Verifier):
    """The (extracted) answer equals the reference after normalisation (case, punctuation, spaces).

    >>> ExactMatch()("Answer: Paris.", Item("c", answer="paris")).value
    1.0
    """

    name = "exact-match"

    def __init__(self, *, extract: bool = True, case_sensitive: bool = False, keep_punctuation: bool = False,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self.extract = extract
        self.case_sensitive = case_sensitive
        self.keep_punctuation = keep_punctuation
        self.max_output_chars = max_output_chars

    def config(self) -> dict[str, Any]:
        return {**super().config(), "extract": self.extract, "case_sensitive": self.case_sensitive,
                "keep_punctuation": self.keep_punctuation}

    def check(self, output: str, item: Item) -> Check:
        if item.answer is None:
            raise _InvalidItem(f"item {item.id!r} has no reference answer; exact match needs one")
        answers = item.answer if isinstance(item.answer, list | tuple) else [item.answer]
        got = extract_answer(output) if self.extract else output
        if got is None:
            return Check(0.0, "no answer found in the output")
        norm = _normalize(got, self.case_sensitive, self.keep_punctuation)
        ok = any(norm == _normalize(str(a), self.case_sensitive, self.keep_punctuation) for a in answers)
        return Check(1.0 if ok else 0.0, f"got {got[:80]!r}", detail={"extracted": got[:200]})


class NumericMatch(Verifier):
    """The extracted number equals the reference within ``abs_tol`` or ``rel_tol`` (``math.isclose``).

    >>> NumericMatch(abs_tol=0.01)("about 3.14159", Item("pi", answer=3.14)).value
    1.0
    """

    name = "numeric-match"

    def __init__(self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        if rel_tol < 0 or abs_tol < 0:
            raise VerifierConfigError(f"tolerances must be >= 0, got rel_tol={rel_tol}, abs_tol={abs_tol}")
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.max_output_chars = max_output_chars

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rel_tol": self.rel_tol, "abs_tol": self.abs_tol}

    def check(self, output: str, item: Item) -> Check:
        if item.answer is None:
            raise _InvalidItem(f"item {item.id!r} has no reference answer; numeric match needs one")
        try:
            ref = item.answer if isinstance(item.answer, int | float) else _parse_number(str(item.answer))
        except (ValueError, ZeroDivisionError):
            raise _InvalidItem(f"item {item.id!r}: reference answer {item.answer!r} is not a number") from None
        got = extract_number(output)
        if got is None:
            return Check(0.0, "no number found in the output")
        ok = math.isclose(got, float(ref), rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return Check(1.0 if ok else 0.0, f"got {got:g}, reference {float(ref):g}", detail={"extracted": got})


# ---------------------------------------------------------------------------------------------- code
_TEST_HARNESS = r'''
import json as _json, os as _os, sys as _sys
_nonce = _sys.stdin.readline().strip()
_tests = _json.loads(_sys.stdin.readline())
_code = _sys.stdin.read()
_ns = {"__name__": "candidate"}
_report = {"loaded": False, "passed": 0, "total": len(_tests), "failures": []}
try:
    exec(compile(_code, "candidate.py", "exec"), _ns)
    _report["loaded"] = True
except BaseException as _e:  # SystemExit too: a candidate that exits early has run no tests
    _report["failures"].append("load: " + type(_e).__name__ + ": " + str(_e)[:300])
if _report["loaded"]:
    for _i, _t in enumerate(_tests):
        try:
            exec(compile(_t, "test_%d.py" % _i, "exec"), _ns)
            _report["passed"] += 1
        except BaseException as _e:
            _report["failures"].append("test %d: %s: %s" % (_i, type(_e).__name__, str(_e)[:300]))
_sys.stdout.flush()
_os.write(1, ("\n" + _nonce + _json.dumps(_report) + "\n").encode())
_os._exit(0)  # no atexit handler the candidate registered gets to run after the verdict
'''


class CodeTests(Verifier):
    """Run the code in the output (the last fenced block) against tests, in the sandbox.

    Tests are Python snippets (usually ``assert`` statements) from ``tests`` given here or from
    ``item.tests``; each runs in the namespace the candidate's code defined. The score is 1 when every
    test passes (``partial=True``: the fraction passed). The harness reports through a line tagged with a
    random nonce written at the very end, so a candidate that exits early, crashes, prints a fake report
    or overruns a limit has no valid report and scores zero.

    >>> v = CodeTests(timeout_s=10)
    >>> v("```python\\ndef add(a, b):\\n    return a + b\\n```", Item("add", tests=("assert add(2, 3) == 5",))).value
    1.0
    """

    name = "code-tests"

    def __init__(self, tests: Sequence[str] = (), *, timeout_s: float = 5.0, memory_mb: int = 512, partial: bool = False,
                 isolation: str = "auto", max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self.tests = tuple(tests)
        self.limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, isolation=isolation)
        self.partial = partial
        self.max_output_chars = max_output_chars
        self.pass_threshold = 1.0

    def config(self) -> dict[str, Any]:
        return {**super().config(), "tests": list(self.tests), "limits": self.limits.to_dict(), "partial": self.partial,
                "harness": sha256_hex(_TEST_HARNESS.encode()), "sandbox": sha256_hex(CONFINE_SOURCE.encode())}

    def check(self, output: str, item: Item) -> Check:
        tests = list(self.tests) + list(item.tests)
        if not tests:
            raise _InvalidItem(f"item {item.id!r} has no tests and the verifier was given none")
        code = extract_code(output)
        nonce = "@@verdict-" + secrets.token_hex(16) + "@@"
        stdin = nonce + "\n" + json.dumps(tests) + "\n" + code
        res = run_python(_TEST_HARNESS, stdin=stdin, limits=self.limits)
        detail = {"network": res.network, "returncode": res.returncode, "signal": res.signal,
                  "seconds": round(res.seconds, 3), "stderr_tail": res.stderr[-500:]}
        if res.timed_out:
            return Check(0.0, f"timed out after {self.limits.timeout_s}s", Status.TIMEOUT.value, detail)
        reports = [ln[len(nonce):] for ln in res.stdout.split("\n") if ln.startswith(nonce)]
        if len(reports) != 1:
            why = f"killed by {res.signal}" if res.signal else f"exit code {res.returncode}"
            return Check(0.0, f"no verdict from the test harness ({why})", Status.ERROR.value, detail)
        report = json.loads(reports[0])
        detail.update(passed=report["passed"], total=report["total"], failures=report["failures"][:5])
        if not report["loaded"]:
            return Check(0.0, f"the code did not load: {report['failures'][0]}", Status.FAIL.value, detail)
        frac = report["passed"] / report["total"]
        value = frac if self.partial else float(report["passed"] == report["total"])
        return Check(value, f"{report['passed']}/{report['total']} tests passed", detail=detail)


# ---------------------------------------------------------------------------------------------- custom
def _function_source(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            raise VerifierConfigError(
                f"cannot pin {fn!r}: it has no Python source or code object; give FunctionVerifier(version=...)"
            ) from None
        return repr((code.co_code.hex(), code.co_consts, code.co_names))


class FunctionVerifier(Verifier):
    """Any function ``fn(output, item) -> float | bool | (float, reason)`` as a verifier.

    The hash covers the function's source (or, without source, its bytecode) plus ``version``. With
    ``timeout_s`` the function runs in a forked child process that is killed when the time is up (a
    function that hangs scores zero with ``timeout``); without it, it runs in-process (fast, but a hang
    hangs the caller).

    >>> v = FunctionVerifier(lambda out, item: out.strip() == "yes", name="says-yes")
    >>> v("yes", Item("a")).value, v("no", Item("a")).status
    (1.0, 'fail')
    """

    def __init__(self, fn: Callable[[str, Item], Any], *, name: str | None = None, timeout_s: float | None = None,
                 version: str = "", pass_threshold: float = 1.0,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self.timeout_s = timeout_s
        self.version = version
        self.pass_threshold = pass_threshold
        self.max_output_chars = max_output_chars
        self._fn_source = _function_source(fn) if not version else ""

    def config(self) -> dict[str, Any]:
        return {**super().config(), "function": sha256_hex(self._fn_source.encode()), "version": self.version,
                "timeout_s": self.timeout_s}

    def _run(self, output: str, item: Item) -> Any:
        if self.timeout_s is None:
            return self.fn(output, item)
        return call_with_timeout(self.fn, (output, item), timeout_s=self.timeout_s)

    def check(self, output: str, item: Item) -> Check:
        try:
            raw = self._run(output, item)
        except TimeoutError:
            return Check(0.0, f"verifier function ran past {self.timeout_s}s", Status.TIMEOUT.value)
        reason = ""
        if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], str):
            raw, reason = raw
        if isinstance(raw, bool):
            raw = float(raw)
        return Check(raw, reason)  # a non-number is caught by the base class and scores zero


class CommandVerifier(Verifier):
    """An external checker program: it reads ``{"output": ..., "item": {...}}`` as JSON on stdin and prints
    a score in [0, 1] as the last line of stdout. It runs in the sandbox (limits; network cut where a
    namespace is available). Anything else it prints, a crash, a non-zero exit or a timeout scores zero.

    The hash covers ``argv`` and the content of every argument that names a readable file (the checker
    script itself), so editing the checker changes the hash.

    >>> v = CommandVerifier(["python3", "-c", "print(1.0)"], timeout_s=10)
    >>> v("anything", Item("a")).value
    1.0
    """

    def __init__(self, argv: Sequence[str], *, name: str | None = None, timeout_s: float = 10.0, memory_mb: int = 512,
                 pass_threshold: float = 1.0, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        if not argv:
            raise VerifierConfigError("CommandVerifier needs a command (argv is empty)")
        self.argv = list(argv)
        self.name = name or f"command:{self.argv[0]}"
        self.limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
        self.pass_threshold = pass_threshold
        self.max_output_chars = max_output_chars

    def config(self) -> dict[str, Any]:
        files = {}
        for arg in self.argv:
            try:
                with open(arg, "rb") as f:
                    files[arg] = sha256_hex(f.read())
            except OSError:
                continue
        return {**super().config(), "argv": self.argv, "files": files, "limits": self.limits.to_dict()}

    def check(self, output: str, item: Item) -> Check:
        res = run_command(self.argv, stdin=json.dumps({"output": output, "item": item.to_dict()}), limits=self.limits)
        detail = {"returncode": res.returncode, "signal": res.signal, "network": res.network,
                  "stdout_tail": res.stdout[-300:], "stderr_tail": res.stderr[-300:]}
        if res.timed_out:
            return Check(0.0, f"checker ran past {self.limits.timeout_s}s", Status.TIMEOUT.value, detail)
        if res.returncode != 0:
            return Check(0.0, f"checker exited with {res.returncode} ({res.signal or 'no signal'})", Status.ERROR.value,
                         detail)
        lines = [ln.strip() for ln in res.stdout.strip().split("\n") if ln.strip()]
        try:
            value = float(lines[-1])
        except (IndexError, ValueError):
            return Check(0.0, f"checker printed no score (last line {lines[-1][:80] if lines else ''!r})",
                         Status.ERROR.value, detail)
        if not math.isfinite(value) or not 0 <= value <= 1:
            return Check(0.0, f"checker printed {value!r}, not a score in [0, 1]", Status.ERROR.value, detail)
        return Check(value, "checker score", detail=detail)


# ---------------------------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class _VerifyTask:
    verifier: Verifier

    def __call__(self, pair: tuple[Any, Item]) -> Score:
        return self.verifier(*pair)


def score_many(verifier: Verifier, outputs: Sequence[Any], items: Sequence[Item], *,
               executor: Executor | None = None, chunksize: int = 4) -> list[Score]:
    """Score output ``i`` against item ``i``, optionally on an executor's workers (the verifier must then
    be picklable: the built-in ones are, a :class:`FunctionVerifier` over a module-level function is).
    An item the executor lost (worker died, deadline) scores zero with ``status="error"``.

    >>> [s.value for s in score_many(ExactMatch(), ["a", "b"], [Item("1", answer="a"), Item("2", answer="a")])]
    [1.0, 0.0]
    """
    if len(outputs) != len(items):
        raise VerifierConfigError(f"{len(outputs)} outputs for {len(items)} items; give one output per item")
    pairs = list(zip(outputs, items, strict=True))
    if executor is None:
        return [verifier(o, it) for o, it in pairs]
    results = executor.map(_VerifyTask(verifier), pairs, chunksize=chunksize)
    return [r.value if r.ok else Score(it.id, 0.0, Status.ERROR.value, f"executor: {r.error}", verifier.name, verifier.hash)
            for r, it in zip(results, items, strict=True)]
