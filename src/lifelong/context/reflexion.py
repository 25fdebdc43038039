"""Reflexion: after a failed attempt at a task, a self-reflection model writes a short verbal lesson;
the most recent lessons for *that task* go into the next attempt's prompt.

Reflections are items of kind ``reflection`` (section ``reflexion``, ``meta["task"]`` naming the task,
``meta["trial"]`` the attempt they follow). The window is a cap on what enters the prompt (Reflexion's
ALFWorld harness keeps the last 3); older reflections stay in the store, auditable, never lost.
Feedback from tests and tools is untrusted: it reaches the reflection model as quoted data.

>>> from lifelong.context import open_store, HashingEmbedder
>>> from lifelong.models.chat import ScriptedChat
>>> store = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
>>> rx = Reflexion(store, ScriptedChat(["I returned the sum; the task wants the product. Multiply next time."]))
>>> actor = lambda prompt: "a * b" if "Multiply" in prompt else "a + b"
>>> judge = lambda answer: (answer == "a * b", "test_mul failed: expected 6, got 5")
>>> [(t.trial, t.success) for t in rx.run("mul", "Write f(a, b).", actor, judge, max_trials=3)]
[(1, False), (2, True)]
>>> [r.meta["trial"] for r in rx.memory("mul")]
[1]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lifelong.context._reply import first_sentence, show_text, slug
from lifelong.context.items import Item, ItemKind, Provenance, Status, check_text
from lifelong.context.ops import Add, Op
from lifelong.context.plan import new_id
from lifelong.context.store import Applied, MemoryStore

REFLECTION_SECTION = "reflexion"

REFLECT_PROMPT = """You attempted a task and failed. In a few sentences, diagnose why the attempt was
wrong and write a concise, concrete plan for the next attempt. Do not repeat the attempt itself.

Task:
{task}

Your attempt:
{attempt}

Feedback:
{feedback}
{previous}
Reflection:"""

RETRY_HEADER = "Reflections on your previous attempts at this task (most recent last):"


@dataclass(frozen=True)
class Trial:
    """One attempt in :meth:`Reflexion.run`: its number, the prompt the actor saw, its answer, whether
    it passed, the evaluator's feedback, and the id of the reflection written after it (if it failed).

    >>> Trial(1, "p", "a", False, "wrong").reflection is None
    True
    """

    trial: int
    prompt: str
    answer: str
    success: bool
    feedback: str
    reflection: str | None = None


class Reflexion:
    """Episodic self-reflection memory for retries.

    - ``chat``: the self-reflection model (a :class:`~lifelong.models.chat.ChatModel`); without one, a
      deterministic reflection restates the feedback's first sentence as the thing to fix.
    - ``window``: how many of the most recent reflections of a task enter the retry prompt (default 3).
    - ``max_chars``: a reflection longer than this is cut at a sentence boundary (``meta["truncated"]``).

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
    >>> rx = Reflexion(s, window=2)
    >>> for n in range(1, 4):
    ...     _ = s.apply(rx.reflect("t1", "Sort the list.", f"attempt {n}", f"Failure {n}. Details.", trial=n))
    >>> [r.meta["trial"] for r in rx.memory("t1")], len(rx.memory("t1", window=None))
    ([2, 3], 3)
    >>> print(rx.retry_prompt("t1", "Sort the list.").splitlines()[3])
    Trial #2: Fix this: Failure 2.
    """

    def __init__(self, store: MemoryStore, chat: Any | None = None, *, window: int = 3, max_chars: int = 1500,
                 section: str = REFLECTION_SECTION) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 (reflections in the retry prompt), got {window}")
        if max_chars < 20:
            raise ValueError(f"max_chars must be at least 20, got {max_chars}")
        self.store, self.chat, self.window, self.max_chars, self.section = store, chat, window, max_chars, section

    # ------------------------------------------------------------------ proposing
    def reflect(self, task_id: str, task: str, attempt: str, feedback: str, *, trial: int | None = None,
                feedback_trusted: bool = False, episode: str | None = None) -> list[Op]:
        """The ADD of one reflection on a failed attempt (nothing is written). ``feedback`` (test output,
        an environment's message) is quoted as data unless ``feedback_trusted``."""
        task_id = check_text(task_id, "task_id", allow_empty=False)
        task, attempt, feedback = (check_text(x, n) for x, n in ((task, "task"), (attempt, "attempt"),
                                                                  (feedback, "feedback")))
        past = self.memory(task_id, window=None)
        n = trial if trial is not None else (max((r.meta.get("trial", 0) for r in past), default=0) + 1)
        text = self._generate(task, attempt, feedback, past[-self.window:], feedback_trusted)
        text, truncated = _cap(text, self.max_chars)
        meta: dict[str, Any] = {"task": task_id, "trial": n}
        if truncated:
            meta["truncated"] = True
        return [Add(text, id=new_id(f"reflexion-{slug(task_id, 30)}", ItemKind.REFLECTION), kind=ItemKind.REFLECTION,
                    section=self.section, tags=(f"task:{slug(task_id, 60) or 'task'}",), meta=meta,
                    provenance=Provenance(source=getattr(self.chat, "name", "rule-reflector"), trust="model",
                                          episode=episode),
                    justification=f"self-reflection after failed trial {n} of task {task_id!r}",
                    evidence=(first_sentence(feedback, 200),) if feedback.strip() else (), proposer="reflexion")]

    def record(self, task_id: str, task: str, attempt: str, feedback: str, **kw: Any) -> Applied:
        """Propose and apply a reflection (keyword arguments as :meth:`reflect`)."""
        return self.store.apply(self.reflect(task_id, task, attempt, feedback, **kw))

    # ------------------------------------------------------------------ reading
    def memory(self, task_id: str, *, window: int | None | bool = True) -> list[Item]:
        """A task's active reflections, oldest first: the last ``self.window`` by default, an explicit
        number, or all of them (``window=None``)."""
        found = [i for i in self.store.items() if i.kind is ItemKind.REFLECTION and i.section == self.section
                 and i.status is Status.ACTIVE and i.superseded_by is None and i.meta.get("task") == task_id]
        found.sort(key=lambda i: (i.meta.get("trial", 0), i.created_at, i.id))
        if window is None:
            return found
        n = self.window if window is True else int(window)
        return found[-n:] if n > 0 else []

    def retry_prompt(self, task_id: str, task: str) -> str:
        """The task with the capped reflections appended (Reflexion's "Plans from past attempts");
        the bare task when there are none."""
        refl = self.memory(task_id)
        if not refl:
            return task
        lines = [f"Trial #{r.meta.get('trial', '?')}: {r.content}" for r in refl]
        return f"{task}\n\n{RETRY_HEADER}\n" + "\n".join(lines)

    # ------------------------------------------------------------------ the loop
    def run(self, task_id: str, task: str, actor: Callable[[str], str],
            evaluate: Callable[[str], tuple[bool, str]], *, max_trials: int = 3) -> list[Trial]:
        """Attempt a task up to ``max_trials`` times: the actor answers the retry prompt, the evaluator
        returns (passed, feedback); each failure writes a reflection before the next attempt. Stops at
        the first success."""
        if max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {max_trials}")
        trials: list[Trial] = []
        start = max((r.meta.get("trial", 0) for r in self.memory(task_id, window=None)), default=0)
        for k in range(1, max_trials + 1):
            prompt = self.retry_prompt(task_id, task)
            answer = actor(prompt)
            ok, feedback = evaluate(answer)
            rid = None
            if not ok:
                rid = self.record(task_id, task, answer, feedback, trial=start + k).ids[0]
            trials.append(Trial(start + k, prompt, answer, bool(ok), feedback, rid))
            if ok:
                break
        return trials

    # ------------------------------------------------------------------ internals
    def _generate(self, task: str, attempt: str, feedback: str, previous: list[Item], trusted: bool) -> str:
        if self.chat is None:
            head = first_sentence(feedback, 300) or "the attempt failed without feedback"
            return f"Fix this: {head}"
        prev = ""
        if previous:
            prev = "\nYour earlier reflections:\n" + "\n".join(f"- {r.content}" for r in previous) + "\n"
        prompt = REFLECT_PROMPT.format(task=task, attempt=show_text(attempt, "attempt", True),
                                       feedback=show_text(feedback, "feedback", not trusted), previous=prev)
        text = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=256).text.strip()
        return text or f"Fix this: {first_sentence(feedback, 300)}"


def _cap(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` characters at a sentence (else word) boundary.

    >>> _cap("One. Two three four.", 10)
    ('One.', True)
    """
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", cut)]
    if ends:
        return cut[: ends[-1]].strip(), True
    return cut.rsplit(" ", 1)[0].strip(), True


__all__ = ["Reflexion", "Trial"]
