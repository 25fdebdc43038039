"""Learners wired through a :class:`~lifelong.system.System`: each declares the signals it learns from,
adapts only inside the session's scope, and proposes a change that the governor gates before it
reaches a user's or the global version.

- :class:`FeedbackMemory` (``type = "feedback-memory"``): corrections and human edits become memory
  items in the session's own memory at once (the session uses them on its next turn); a promotion
  proposes the same items as ADD operations on the user's (or the global) memory, gated on the
  *feedback suite*: the questions the feedback was about, answered with and without the items.
- :class:`TentLearner` (``type = "tent"``): Tent's entropy minimisation on the normalisation affine
  parameters of a torch model, in a session weight scope (a copy of the model per session, loaded with
  the user's version); leaving the session drops the adapted state unless a promotion accepted it.
- :class:`ReaderLearner` (``type = "lm-reader"``): learn-while-you-read next-token training on the
  documents a session reads, in LoRA adapters of a language model, in the same kind of session scope.

A new learner subclasses :class:`Learner`, sets ``type``, ``kind``, ``signals`` (and ``option_keys`` for its
``[learners.NAME.options]`` table), implements :meth:`Learner.learn` and :meth:`Learner.promote`, and is
registered in :data:`LEARNERS`.

>>> sorted(LEARNERS), [s.kind for s in FeedbackMemory.signals], [s.kind for s in TentLearner.signals]
(['feedback-memory', 'lm-reader', 'tent'], ['feedback'], ['input'])
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lifelong.control.budgets import Budget
from lifelong.core.change import Cost
from lifelong.core.hashing import json_hash, sha256_hex
from lifelong.system.policy import LearnerPolicy, PolicyError, PromotionPolicy, check_reset
from lifelong.system.signals import Feedback, Input, Signal

if TYPE_CHECKING:
    from lifelong.control.gate import Suite
    from lifelong.system.runtime import Session, System


@dataclass(frozen=True)
class PromotionResult:
    """What one promotion attempt did: skipped (and why), or gated with its verdict.

    >>> PromotionResult("memory", "user", skipped="no feedback in this session").accepted
    False
    """

    learner: str
    to: str
    ref: str | None = None
    accepted: bool = False
    version: str | None = None
    change_id: str | None = None
    verdict: str = ""
    skipped: str | None = None
    events: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.learner} -> {self.to}: skipped ({self.skipped})"
        return f"{self.learner} -> {self.to} ({self.ref}): {self.verdict}"


class Learner:
    """Base class. ``name`` is the learner's key in the policy file; ``policy`` its settings."""

    type: ClassVar[str] = ""
    kind: ClassVar[str] = "context"  # or "weights"
    signals: ClassVar[tuple[type[Signal], ...]] = ()
    option_keys: ClassVar[tuple[str, ...]] = ()
    default_promote_to: ClassVar[str] = "user"

    def __init__(self, name: str | None = None, policy: LearnerPolicy | None = None, **options: Any) -> None:
        self.name = name or (policy.name if policy else self.type)
        if policy is None:
            unknown = sorted(set(options) - set(self.option_keys))
            if unknown:
                raise PolicyError(f"learners.{self.name}.options", f"unknown options {unknown}; "
                                  f"{self.type!r} takes {', '.join(self.option_keys) or 'none'}")
            policy = LearnerPolicy(self.name, self.type, options=options,
                                   promote=PromotionPolicy(to=self.default_promote_to))
        self.policy = policy
        self.system: System | None = None

    @property
    def accepts(self) -> tuple[type[Signal], ...]:
        """The event types routed to this learner: its declared ``signals``, narrowed by the policy."""
        if self.policy.signals is None:
            return self.signals
        return tuple(s for s in self.signals if s.kind in self.policy.signals)

    def option(self, key: str, default: Any) -> Any:
        """A value from the ``[learners.NAME.options]`` table."""
        return self.policy.options.get(key, default)

    # ------------------------------------------------------------------ hooks
    def bind(self, system: System) -> None:
        """Attach to a system; check that what this learner needs is there."""
        self.system = system

    def open(self, session: Session) -> None:
        """A session starts: set up its scope."""

    def wants(self, event: Signal) -> bool:
        """Whether an event of a declared type carries what this learner can use (default: yes). A
        learner of tensor inputs declines text inputs, which are then not routed to it."""
        return True

    def trigger_value(self, event: Signal, session: Session) -> float:
        """The number the learner's trigger sees for an event (default: the event's own value)."""
        return event.value()

    def learn(self, event: Signal, session: Session) -> Any:
        """Adapt on one event, inside the session's scope. May return an output (a prediction)."""
        return None

    def serve(self, event: Signal, session: Session) -> Any:
        """Handle an event the trigger did not let the learner adapt on (default: nothing)."""
        return None

    def learned_from(self, session: Session) -> list[str]:
        """Ids of the events this learner adapted on in the session."""
        return list(session.adapted.get(self.name, []))

    def close(self, session: Session) -> None:
        """The session ends: reset its scope."""

    def step_budget(self) -> Budget | None:
        """The budget the governor enforces on each test-time step (trust region), if any."""
        return None

    def promote(self, session: Session, to: str) -> PromotionResult:
        """Propose what the session learned as a change to the ``to`` scope and let the governor gate it."""
        return PromotionResult(self.name, to, skipped=f"{self.type} learners do not promote")

    # ------------------------------------------------------------------ shared helpers
    def _system(self) -> System:
        if self.system is None:
            raise RuntimeError(f"learner {self.name!r} is not part of a System yet")
        return self.system

    def _canaries(self) -> list[Suite]:
        system = self._system()
        return [system.suite(name, f"learners.{self.name}.gate.canaries") for name in self.policy.gate.canaries]


# ---------------------------------------------------------------------- memory from feedback
@dataclass
class _Written:
    item_id: str
    event_id: str
    question: str | None
    expected: str
    content: str
    kind: str


@dataclass
class _MemoryState:
    written: list[_Written] = field(default_factory=list)
    promoted: set[str] = field(default_factory=set)
    refused: int = 0


def normalize(text: str) -> str:
    """Lowercase, punctuation to spaces, whitespace collapsed: what :func:`contains_answer` compares.

    >>> normalize("  Due in 30   DAYS. ")
    'due in 30 days'
    """
    return " ".join(re.sub(r"[^\w]+", " ", str(text).lower()).split())


def contains_answer(answer: str, expected: str) -> float:
    """The default feedback-suite scorer: 1.0 when the answer contains the corrected fact (after
    :func:`normalize`), else 0.0.

    >>> contains_answer("Sure: invoices are due in 30 days.", "Invoices are due in 30 days")
    1.0
    """
    return 1.0 if normalize(expected) and normalize(expected) in normalize(answer) else 0.0


class FeedbackMemory(Learner):
    """Corrections and human edits to memory: written in the session at once, promoted through the gate.

    Learns from :class:`~lifelong.system.signals.Feedback` events. A ``correction`` becomes a ``fact`` item
    with the corrected text; an ``edit`` becomes a ``note`` ("asked Q, the preferred answer is A"); a
    ``rating`` writes nothing. Items carry the event id as evidence, so every memory change names the
    feedback that caused it. Budget: at most ``budget.max_items`` items per session, each at most
    ``budget.max_chars`` characters (longer feedback is refused and noted in the ledger, never cut).

    Promotion (``promote.to = "user"`` by default) proposes the session's unpromoted items as ADD
    operations on the user's memory. The gate's target is the ``feedback`` suite: every question the
    feedback was about, answered by the chat backend with the user's memory (champion) and with the
    user's memory plus the proposed items (candidate), scored by the system's scorer
    (:func:`contains_answer` by default). Canary suites score an answerer (``question -> answer``).

    Ratings write nothing, but a rating of an answer whose context held promoted items is a live score
    of the version that holds them: it goes (mapped to [0, 1]) to that version's regression monitor,
    which rolls the promotion back when live ratings fall below what the gate measured.

    Options (``[learners.NAME.options]``): ``section`` (``"feedback"``), the memory section items go to;
    ``edits`` (true), whether human edits are learned from; ``watch_ratings`` (true), whether ratings
    feed the monitor.
    """

    type = "feedback-memory"
    kind = "context"
    signals = (Feedback,)
    option_keys = ("section", "edits", "watch_ratings")
    default_promote_to = "user"

    def bind(self, system: System) -> None:
        super().bind(system)
        if system.chat is None:
            raise PolicyError(f"learners.{self.name}.type",
                              "'feedback-memory' gates on answers to the feedback's questions and needs a chat "
                              "backend: pass chat=... to System (ScriptedChat in tests)")
        target = self.policy.gate.target
        if target not in (None, "feedback"):
            system.suite(target, f"learners.{self.name}.gate.target")
        self._canaries()

    def open(self, session: Session) -> None:
        session.state[self.name] = _MemoryState()

    def learn(self, event: Signal, session: Session) -> Any:
        assert isinstance(event, Feedback)
        if event.type == "rating":
            if self.option("watch_ratings", True):
                self._watch(event, session)
            return None
        if event.type == "edit" and not self.option("edits", True):
            return None
        from lifelong.context import Add, Provenance

        system = self._system()
        state: _MemoryState = session.state[self.name]
        budget = self.policy.budget
        text = (event.text or "").strip()
        if len(state.written) >= budget.max_items or len(text) > budget.max_chars:
            state.refused += 1
            why = (f"the session already wrote {len(state.written)} items (budget.max_items = {budget.max_items})"
                   if len(state.written) >= budget.max_items
                   else f"the feedback has {len(text)} characters (budget.max_chars = {budget.max_chars})")
            system.ledger.record_event("note", f"{self.name}: feedback {event.id} not written: {why}",
                                       ref=system.session_ref(session.id, "memory"), actor=f"governor:{self.name}",
                                       data={"learner": self.name, "event": event.id, "reason": "budget"})
            return None
        question = event.question
        if event.type == "correction":
            content, kind = text, "fact"
        else:
            content = f"Asked {question!r}, the preferred answer is: {text}" if question else f"Preferred answer: {text}"
            kind = "note"
        item_id = "fb-" + sha256_hex(event.id.encode())[:20]
        op = Add(content, id=item_id, kind=kind, section=str(self.option("section", "feedback")), scope="session",
                 session=session.id, provenance=Provenance(source=f"feedback:{event.type}", trust="user",
                                                           episode=event.target_id),
                 meta={"user": session.user, "event": event.id, **({"question": question} if question else {})},
                 evidence=(event.id,), justification=f"{event.type} feedback from {session.user}",
                 proposer=self.name)
        memory = system.session_memory(session.id)
        memory.commit([op], learner=self.name, scope="session", actor=f"user:{session.user}",
                      message=f"{event.type} feedback {event.id}",
                      provenance={"events": [event.id], "user": session.user, "session": session.id})
        state.written.append(_Written(item_id, event.id, question, text, content, kind))
        return item_id

    def _watch(self, event: Feedback, session: Session) -> None:
        """A rating of an answer that used promoted items is a live score of the version that holds
        them: feed it (mapped from [-1, 1] to [0, 1]) to that version's regression monitor."""
        system = self._system()
        out = session.events.get(event.target_id or "")
        ids = getattr(out, "context_ids", ())
        if not ids:
            return
        score = (float(event.score or 0.0) + 1.0) / 2.0
        for user, memory in ((session.user, system.user_memory(session.user)), (None, system.global_memory())):
            used = memory.store.backend.fetch_ids(memory.store.tenant, list(ids))
            if any(item.meta.get("from_session") for _, item in used.values()):
                system.watch(self.name, score, user=user)

    def feedback_suite(self, written: Sequence[_Written]) -> Suite:
        """The gate's target: each feedback's question, scored against the fact it taught."""
        from lifelong.control.gate import Suite

        system = self._system()
        items = [w for w in written if w.question]
        scorer = system.scorer

        def score(answer: Callable[[str], str]) -> list[float]:
            return [float(scorer(answer(w.question or ""), w.expected)) for w in items]

        content = json_hash({"items": [[w.event_id, w.question, w.expected] for w in items],
                             "scorer": getattr(scorer, "__qualname__", repr(scorer))})
        return Suite("feedback", tuple(w.event_id for w in items), score, content_hash=content)

    def promote(self, session: Session, to: str) -> PromotionResult:
        from lifelong.context import Add, Provenance

        system = self._system()
        state: _MemoryState | None = session.state.get(self.name)
        if to == "none" or state is None:
            return PromotionResult(self.name, to, skipped="promotion disabled (promote.to = 'none')")
        memory = system.user_memory(session.user) if to == "user" else system.global_memory()
        live = {it.content_hash for it in memory.store.items()}
        from lifelong.context.items import text_hash

        pending = [w for w in state.written if w.item_id not in state.promoted and text_hash(w.content) not in live]
        events = tuple(w.event_id for w in pending)
        if len(pending) < max(self.policy.promote.min_events, 1):
            return PromotionResult(self.name, to, memory.ref, events=events,
                                   skipped=f"{len(pending)} new items, promote.min_events = {self.policy.promote.min_events}")
        target_name = self.policy.gate.target or "feedback"
        if target_name == "feedback":
            suite = self.feedback_suite(pending)
            if not suite.item_ids:
                return PromotionResult(self.name, to, memory.ref, events=events,
                                       skipped="no feedback with a known question to test the items on")
        else:
            suite = system.suite(target_name, f"learners.{self.name}.gate.target")
        ops = [Add(w.content, id=w.item_id, kind=w.kind, section=str(self.option("section", "feedback")), scope=to,
                   provenance=Provenance(source=f"{self.name}:promotion", trust="user", episode=session.id),
                   meta={"event": w.event_id, "from_session": session.id,
                         **({"user": session.user} if to == "user" else {}),
                         **({"question": w.question} if w.question else {})},
                   evidence=(w.event_id,), justification=f"promoted from session {session.id} through the gate",
                   proposer=self.name)
               for w in pending]
        if memory.ref not in system.ledger.refs():  # the starting state, so a rollback has somewhere to go
            memory.commit(None, learner=self.name, scope=to, actor="system",
                          message=f"start of {memory.ref} (before its first promotion)")
        plan = memory.store.plan(ops)
        user = session.user if to == "user" else None
        champion = system.answerer(user=user)
        candidate = system.answerer(user=user, extra=(session.id, frozenset(w.item_id for w in pending)))
        governor = system.governor(self, memory.ref)
        result = memory.promote(governor, plan, learner=self.name, champion=champion, candidate=candidate,
                                target=suite, canaries=self._canaries(), to_scope=to,
                                provenance={"events": list(events), "session": session.id, "user": session.user,
                                            "signals": {"feedback": len(events)}})
        if result.accepted:
            state.promoted.update(w.item_id for w in pending)
        verdict = system.ledger.verdict(result.verdict_id).summary()
        return PromotionResult(self.name, to, memory.ref, result.accepted, result.version.id, result.change_id,
                               verdict, events=events)


# ---------------------------------------------------------------------- weights in a session scope
@dataclass
class _WeightState:
    adapter: Any
    ref: str
    events: list[str] = field(default_factory=list)


class WeightLearner(Learner):
    """Shared mechanics of a test-time weight learner in a session scope.

    Each session gets its own adapter (:meth:`make`: a copy of the model with the learner's scope),
    loaded with the user's promoted version if there is one, else the global one (registered from the
    model's starting tensors on first use, ref ``NAME/global/weights/LEARNER``). Leaving the session
    resets the scope (recorded as a ``reset`` event) and drops the copy. A promotion gates the scope's
    tensors on the suite named by ``gate.target``: its ``score`` gets :meth:`candidate` of a copy loaded
    with the target version (champion) and of the session's adapter (candidate).
    """

    kind = "weights"
    default_promote_to = "none"

    def make(self, governor: Any) -> Any:
        """A fresh adapter (with ``.scope``, ``.reset()``) over a copy of the system's model."""
        raise NotImplementedError

    def candidate(self, adapter: Any) -> Any:
        """What suites score for an adapter (default: the adapter itself)."""
        return adapter

    def check_model(self, system: System) -> None:
        """Raise a :class:`PolicyError` when the system lacks the model this learner adapts."""

    def bind(self, system: System) -> None:
        super().bind(system)
        self.check_model(system)
        if self.policy.promote.to != "none":
            if not self.policy.gate.target:
                raise PolicyError(f"learners.{self.name}.gate.target",
                                  f"missing: promote.to = {self.policy.promote.to!r} needs a suite to gate on; "
                                  "name one passed in suites=..., or set promote.to = 'none'")
            system.suite(self.policy.gate.target, f"learners.{self.name}.gate.target")
        self._canaries()
        check_reset(self.policy.reset.policy, f"learners.{self.name}.reset.policy")

    def ensure_global(self) -> str:
        """Register the model's starting tensors as the global version (once); returns the global ref."""
        system = self._system()
        ref = system.global_ref(f"weights/{self.name}")
        if ref not in system.ledger.refs():
            probe = self.make(system.governor(self, ref))
            system.governor(self, ref).register(probe.scope.current(), message=f"{self.name}: base model")
        return ref

    def open(self, session: Session) -> None:
        system = self._system()
        global_ref = self.ensure_global()
        user_ref = system.user_ref(session.user, f"weights/{self.name}")
        ref = user_ref if user_ref in system.ledger.refs() else global_ref
        adapter = self.make(system.governor(self, ref))
        adapter.scope.load(system.ledger.checkout(system.ledger.head(ref)))
        adapter.scope.rebase()
        session.state[self.name] = _WeightState(adapter, ref)

    def close(self, session: Session) -> None:
        state: _WeightState | None = session.state.pop(self.name, None)
        if state is None:
            return
        moved = state.adapter.scope.distance()
        state.adapter.reset()
        self._system().ledger.record_event(
            "reset", f"{self.name}: session {session.id} ended; its weight scope was reset", ref=state.ref,
            actor=f"governor:{self.name}",
            data={"learner": self.name, "session": session.id, "user": session.user, "reason": "session end",
                  "distance": moved, "events": len(state.events)})

    def _copy(self, adapter: Any) -> Any:
        # the governor (and its ledger connection) is shared, never copied
        return copy.deepcopy(adapter, memo={id(adapter.governor): adapter.governor})

    def promote(self, session: Session, to: str) -> PromotionResult:
        system = self._system()
        state: _WeightState | None = session.state.get(self.name)
        if to == "none" or state is None:
            return PromotionResult(self.name, to, skipped="promotion disabled (promote.to = 'none')")
        events = tuple(state.events)
        global_ref = self.ensure_global()
        ref = system.user_ref(session.user, f"weights/{self.name}") if to == "user" else global_ref
        if len(events) < max(self.policy.promote.min_events, 1):
            return PromotionResult(self.name, to, ref, events=events,
                                   skipped=f"adapted on {len(events)} inputs, promote.min_events = "
                                           f"{self.policy.promote.min_events}")
        if not self.policy.gate.target:
            return PromotionResult(self.name, to, ref, events=events, skipped="no gate.target suite to gate on")
        suite = system.suite(self.policy.gate.target, f"learners.{self.name}.gate.target")
        governor = system.governor(self, ref)
        if ref not in system.ledger.refs():  # a user's version starts as a copy of the global one
            governor.register(system.ledger.checkout(system.ledger.head(global_ref)),
                              message=f"{self.name}: {session.user}'s version starts from the global one")
        head = system.ledger.head(ref)
        adapter = state.adapter
        champion = self._copy(adapter)
        champion.scope.load(system.ledger.checkout(head))
        steps = getattr(adapter, "steps_taken", None)
        if steps is None:
            steps = getattr(getattr(adapter, "report", None), "steps", 0)
        change = adapter.scope.to_change(
            self.name, base_version=head.id, scope=to, only_changed=False,
            provenance={"events": list(events), "session": session.id, "user": session.user, "method": self.type,
                        "signals": {"input": len(events)}},
            cost=Cost(steps=int(steps), examples=len(events)))
        result = governor.promote(change, champion=self.candidate(champion), candidate=self.candidate(adapter),
                                  target=suite, canaries=self._canaries(), to_scope=to)
        if result.accepted:
            adapter.scope.rebase()
        verdict = system.ledger.verdict(result.verdict_id).summary()
        return PromotionResult(self.name, to, ref, result.accepted, result.version.id, result.change_id, verdict,
                               events=events)


class TentLearner(WeightLearner):
    """Tent (:class:`~lifelong.weights.tent.Tent`) over the system's torch model, one scope per session.

    Learns from :class:`~lifelong.system.signals.Input` events whose content is a batch tensor (text
    inputs are not routed to it): each batch is predicted and, when the trigger fires, adapted on (one
    entropy step on the normalisation affine parameters, Tent's defaults: Adam, lr 1e-3). Sessions never
    see each other's updates (see :class:`WeightLearner` for scopes and promotion); suites score the
    champion and candidate *models*.

    The trigger sees the batch's mean prediction entropy before adapting (so ``above:X`` adapts only on
    uncertain batches and ``drift:adwin`` on a shift). ``budget.params`` (default: ``*norm.weight``,
    ``*norm.bias``), ``steps``, ``lr``, ``max_grad_norm`` and ``max_distance`` (trust region around the
    session's start) bound the updates; ``reset.policy`` resets the scope within a session. Options:
    ``episodic`` (false: Tent resets before every batch when true).
    """

    type = "tent"
    signals = (Input,)
    option_keys = ("episodic",)

    def check_model(self, system: System) -> None:
        import torch

        if not isinstance(system.model, torch.nn.Module):
            raise PolicyError(f"learners.{self.name}.type",
                              "'tent' adapts a torch model: pass model=<torch.nn.Module> to System")
        self.budget()

    def budget(self) -> Budget:
        """The :class:`~lifelong.control.budgets.Budget` the policy describes."""
        from lifelong.weights.tent import NORM_AFFINE

        b = self.policy.budget
        try:
            budget = Budget(steps=b.steps, lr=b.lr, params=b.params or NORM_AFFINE, exclude=b.exclude,
                            max_grad_norm=b.max_grad_norm, max_distance=b.max_distance)
            budget.select(self._system().model)
        except ValueError as err:
            raise PolicyError(f"learners.{self.name}.budget.params", str(err)) from None
        return budget

    def step_budget(self) -> Budget | None:
        return self.budget()

    def make(self, governor: Any) -> Any:
        from lifelong.weights.tent import Tent

        system = self._system()
        if self.option("episodic", False):  # Tent resets before every batch; the reset policy is moot
            return Tent(system.model, governor, budget=self.budget(), episodic=True, seed=system.seed)
        return Tent(system.model, governor, budget=self.budget(), reset=check_reset(self.policy.reset.policy, "reset"),
                    seed=system.seed)

    def candidate(self, adapter: Any) -> Any:
        return adapter.model

    def wants(self, event: Signal) -> bool:
        import torch

        return isinstance(getattr(event, "content", None), torch.Tensor)

    def trigger_value(self, event: Signal, session: Session) -> float:
        import torch

        from lifelong.weights.tta import softmax_entropy

        state: _WeightState = session.state[self.name]
        with torch.no_grad():
            return float(softmax_entropy(state.adapter.model(event.content)).mean())  # type: ignore[attr-defined]

    def learn(self, event: Signal, session: Session) -> Any:
        state: _WeightState = session.state[self.name]
        logits = state.adapter(event.content)  # type: ignore[attr-defined]
        state.events.append(event.id)
        return logits

    def serve(self, event: Signal, session: Session) -> Any:
        import torch

        state: _WeightState = session.state[self.name]
        with torch.no_grad():
            return state.adapter.model(event.content)  # type: ignore[attr-defined]


class ReaderLearner(WeightLearner):
    """Learn while you read (:class:`~lifelong.weights.reading.Reader`): next-token training on the
    documents a session reads, in LoRA adapters of the system's language model, one scope per session.

    Learns from :class:`~lifelong.system.signals.Input` events of ``role = "document"`` with text content
    (``session.read(text)``); chat messages are not routed to it. Each chunk is scored, then learned
    from (TTT-E2E's one step per chunk; AdamW at ``budget.lr``; ``budget.max_grad_norm`` clips,
    ``budget.max_distance`` bounds the adapters' distance from the session's start). Suites score the
    champion and candidate *readers* (e.g. ``reader.score(continuation)``, in nats per token).

    Options: ``adapter`` (``"lora"`` or ``"prime"``), ``chunk_tokens`` (512), ``window`` (512),
    ``lora_rank`` (8).
    """

    type = "lm-reader"
    signals = (Input,)
    option_keys = ("adapter", "chunk_tokens", "window", "lora_rank")

    def check_model(self, system: System) -> None:
        if system.lm is None or not hasattr(system.lm, "token_nll"):
            raise PolicyError(f"learners.{self.name}.type",
                              "'lm-reader' adapts a language model: pass lm=<lifelong.models.lm.CausalLM> to System")
        if self.option("adapter", "lora") not in ("lora", "prime"):
            raise PolicyError(f"learners.{self.name}.options.adapter",
                              f"{self.option('adapter', 'lora')!r} is not 'lora' or 'prime'")

    def step_budget(self) -> Budget | None:
        from lifelong.weights.reading import ADAPTER_GLOBS

        b = self.policy.budget
        return Budget(steps=b.steps, lr=b.lr, params=b.params or ADAPTER_GLOBS[self.option("adapter", "lora")],
                      exclude=b.exclude, max_grad_norm=b.max_grad_norm, max_distance=b.max_distance)

    def make(self, governor: Any) -> Any:
        from lifelong.weights.reading import Reader

        system = self._system()
        lm = copy.deepcopy(system.lm)
        try:
            return Reader(lm, governor, adapter=self.option("adapter", "lora"), budget=self.step_budget(),
                          chunk_tokens=int(self.option("chunk_tokens", 512)), window=int(self.option("window", 512)),
                          lora_rank=int(self.option("lora_rank", 8)), seed=system.seed)
        except ValueError as err:
            raise PolicyError(f"learners.{self.name}.budget.params", str(err)) from None

    def wants(self, event: Signal) -> bool:
        return getattr(event, "role", None) == "document" and isinstance(getattr(event, "content", None), str)

    def learn(self, event: Signal, session: Session) -> Any:
        state: _WeightState = session.state[self.name]
        report = state.adapter.read(event.content)  # type: ignore[attr-defined]
        state.events.append(event.id)
        return report


LEARNERS: dict[str, type[Learner]] = {
    FeedbackMemory.type: FeedbackMemory, TentLearner.type: TentLearner, ReaderLearner.type: ReaderLearner}
