"""Mutation: how a child genome is made from a parent, by plain operators or by an LLM.

A mutator is ``mutate(parent, inspirations, rng) -> genome``. ``parent`` and ``inspirations`` are
archive candidates (``.genome``, ``.score``, ``.info``), ``rng`` a ``numpy.random.Generator``.

- :class:`OperatorMutator`: random choice among plain functions ``op(genome, rng) -> genome`` (for
  tests and for problems that need no LLM).
- :class:`LLMMutator`: a :class:`~lifelong.models.chat.ChatModel` proposes either a full rewrite (the
  last fenced code block of its reply) or SEARCH/REPLACE diffs in OpenEvolve's format, applied to the
  parent's text. Evaluator feedback and inspiration programs reach the model as quoted data
  (:func:`~lifelong.models.chat.quote_untrusted`), never as instructions. An unusable reply raises
  :class:`MutationError`; the evolution loop counts it and evaluates nothing.

>>> diff = '''<<<<<<< SEARCH
... return a - b
... =======
... return a + b
... >>>>>>> REPLACE'''
>>> apply_search_replace("def f(a, b):\\n    return a - b\\n", diff)
'def f(a, b):\\n    return a + b\\n'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from lifelong.loop.errors import SearchInputError
from lifelong.loop.seeding import derive_seed
from lifelong.loop.verifiers import extract_code

__all__ = ["LLMMutator", "MutationError", "Mutator", "OperatorMutator", "apply_search_replace", "parse_search_replace"]


class MutationError(SearchInputError):
    """A mutator could not produce a child (an LLM reply with no code, a diff that does not apply).

    >>> issubclass(MutationError, SearchInputError)
    True
    """


class Mutator(Protocol):
    """``mutate(parent, inspirations, rng) -> genome``: any callable of that shape.

    >>> def double(parent, inspirations, rng):
    ...     return parent.genome * 2
    >>> class P:
    ...     genome = 2
    >>> double(P(), [], np.random.default_rng(0))
    4
    """

    def __call__(self, parent: Any, inspirations: Sequence[Any], rng: np.random.Generator) -> Any: ...


class OperatorMutator:
    """Pick one operator (by ``weights``) and apply it: ``op(genome, rng) -> genome``.

    >>> m = OperatorMutator([lambda g, rng: g + 1, lambda g, rng: g * 2], weights=[1, 0])
    >>> class P: genome = 3
    >>> m(P(), [], np.random.default_rng(0))
    4
    """

    def __init__(self, ops: Sequence[Callable[[Any, np.random.Generator], Any]] | Callable[[Any, np.random.Generator], Any],
                 weights: Sequence[float] | None = None) -> None:
        self.ops = [ops] if callable(ops) else list(ops)
        if not self.ops:
            raise SearchInputError("OperatorMutator needs at least one operator")
        w = np.ones(len(self.ops)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(self.ops),) or (w < 0).any() or w.sum() <= 0:
            raise SearchInputError(f"weights must be {len(self.ops)} non-negative numbers with a positive sum")
        self.p = w / w.sum()

    def __call__(self, parent: Any, inspirations: Sequence[Any], rng: np.random.Generator) -> Any:
        op = self.ops[int(rng.choice(len(self.ops), p=self.p))]
        return op(parent.genome, rng)


_BLOCK = re.compile(r"<{7}\s*SEARCH\s*\n(.*?)\n={7}\s*\n(.*?)\n?>{7}\s*REPLACE", re.DOTALL)


def parse_search_replace(reply: str) -> list[tuple[str, str]]:
    """The ``(search, replace)`` pairs of every SEARCH/REPLACE block in a reply.

    >>> parse_search_replace("<<<<<<< SEARCH\\nx = 1\\n=======\\nx = 2\\n>>>>>>> REPLACE")
    [('x = 1', 'x = 2')]
    """
    return [(s, r) for s, r in _BLOCK.findall(reply)]


def apply_search_replace(source: str, reply: str) -> str:
    """Apply every block in order; each SEARCH text must occur in the (partly edited) source. A block
    whose SEARCH text is missing, or a reply with no block, raises :class:`MutationError`.

    >>> apply_search_replace("a = 1\\nb = 2\\n", "<<<<<<< SEARCH\\nb = 2\\n=======\\nb = 3\\n>>>>>>> REPLACE")
    'a = 1\\nb = 3\\n'
    """
    blocks = parse_search_replace(reply)
    if not blocks:
        raise MutationError("the reply has no SEARCH/REPLACE block")
    out = source
    for search, replace in blocks:
        if search not in out:
            # Models often get indentation wrong; accept a match that differs only in leading spaces.
            stripped = "\n".join(ln.strip() for ln in search.split("\n"))
            lines = out.split("\n")
            n = len(search.split("\n"))
            for i in range(len(lines) - n + 1):
                if "\n".join(ln.strip() for ln in lines[i : i + n]) == stripped:
                    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                    new = [indent + ln.strip() if ln.strip() else ln for ln in replace.split("\n")]
                    out = "\n".join(lines[:i] + new + lines[i + n :])
                    break
            else:
                raise MutationError(f"SEARCH text not found in the parent: {search[:80]!r}")
            continue
        out = out.replace(search, replace, 1)
    return out


DEFAULT_SYSTEM = (
    "You improve programs. You are shown a program and its evaluation. Propose one focused change that "
    "should raise its score. Keep everything the evaluator relies on (function names, signatures)."
)


class LLMMutator:
    """An LLM proposes the child. ``mode="diff"`` asks for SEARCH/REPLACE blocks (OpenEvolve's default,
    cheaper on long programs); ``mode="rewrite"`` for the whole program in one fenced block. The parent's
    ``info["feedback"]`` (e.g. failing tests) and up to ``max_inspirations`` other programs are shown as
    quoted data. Each call uses a seed drawn from ``rng``, so a run is reproducible where the backend
    honours seeds.

    >>> from lifelong.models.chat import ScriptedChat
    >>> chat = ScriptedChat(lambda m: "```python\\ndef f():\\n    return 2\\n```")
    >>> class P: genome, score, info = "def f():\\n    return 1\\n", 0.5, {}
    >>> LLMMutator(chat, mode="rewrite")(P(), [], np.random.default_rng(0))
    'def f():\\n    return 2\\n'
    """

    def __init__(self, chat: Any, *, mode: str = "diff", system: str = DEFAULT_SYSTEM, instructions: str = "",
                 temperature: float = 0.8, max_tokens: int = 2048, max_inspirations: int = 2,
                 max_feedback_chars: int = 4000) -> None:
        if mode not in ("diff", "rewrite"):
            raise SearchInputError(f"LLMMutator.mode must be 'diff' or 'rewrite', got {mode!r}")
        self.chat = chat
        self.mode = mode
        self.system = system
        self.instructions = instructions
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_inspirations = max_inspirations
        self.max_feedback_chars = max_feedback_chars

    def prompt(self, parent: Any, inspirations: Sequence[Any]) -> list[dict[str, str]]:
        """The chat messages sent for one mutation."""
        from lifelong.models.chat import quote_untrusted

        parts = [self.instructions.strip()] if self.instructions.strip() else []
        parts.append(f"Current program (score {float(getattr(parent, 'score', 0.0)):.4g}):\n```python\n{parent.genome}\n```")
        feedback = str((getattr(parent, "info", None) or {}).get("feedback", ""))[: self.max_feedback_chars]
        if feedback:
            parts.append("Evaluator feedback on it:\n" + quote_untrusted(feedback, "evaluator"))
        for i, other in enumerate(list(inspirations)[: self.max_inspirations]):
            parts.append(f"Another program for reference (score {float(getattr(other, 'score', 0.0)):.4g}):\n"
                         + quote_untrusted(str(other.genome), f"archive program {i + 1}"))
        if self.mode == "diff":
            parts.append("Reply with one or more edits in exactly this form:\n<<<<<<< SEARCH\n<lines copied exactly "
                         "from the current program>\n=======\n<replacement lines>\n>>>>>>> REPLACE")
        else:
            parts.append("Reply with the complete improved program in one ```python fenced block.")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": "\n\n".join(parts)}]

    def __call__(self, parent: Any, inspirations: Sequence[Any], rng: np.random.Generator) -> str:
        seed = derive_seed(int(rng.integers(2**31)), "mutation")
        reply = self.chat.complete(self.prompt(parent, inspirations), max_tokens=self.max_tokens,
                                   temperature=self.temperature, seed=seed).text
        if self.mode == "diff":
            return apply_search_replace(str(parent.genome), reply)
        code = extract_code(reply)
        if "```" in reply and code == reply:
            raise MutationError("the reply's code block could not be parsed")
        if not code.strip():
            raise MutationError("the reply contains no program")
        return code
