"""Pins: verifiers and evaluation data stay outside every change scope, and any change to them shows.

Three pieces keep a self-improving loop from grading its own homework (the Darwin Godel Machine's
node 114 deleted the logs its hallucination detector read, and scored perfectly):

- :class:`Pins` records the content hash of each verifier and each evaluation set when a run starts
  (optionally as a ledger note) and raises :class:`~lifelong.loop.errors.VerifierChangedError` when one
  no longer matches, or when a score carries another verifier's hash;
- :data:`LOOP_PROTECTED` adds a loop's pins, held-out sets and tests to the governor's protected globs
  (which already cover verifiers, evaluation data, logs and monitors at any depth);
  :func:`protected_targets` adds the pinned names, for ``Governor(protected=...)``;
- :func:`verified_suite` builds a gate :class:`~lifelong.control.gate.Suite` whose content hash covers
  the items *and* the verifier, so a verdict always says what it was measured with.

>>> from lifelong.loop.verifiers import ExactMatch, Item
>>> items = [Item("1", answer="a")]
>>> pins = Pins()
>>> v = ExactMatch()
>>> pins.pin_verifier(v).pin_items("holdout", items).check(verifiers=[v], items={"holdout": items})
>>> v.case_sensitive = True                         # someone changed the verifier
>>> pins.check(verifiers=[v])
Traceback (most recent call last):
...
lifelong.loop.errors.VerifierChangedError: verifier 'exact-match' changed: pinned ... now ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong.control.gate import Suite
from lifelong.control.governor import DEFAULT_PROTECTED
from lifelong.core.hashing import json_hash
from lifelong.loop.errors import VerifierChangedError
from lifelong.loop.verifiers import Item, Score, Verifier

if TYPE_CHECKING:
    from lifelong.control.ledger import Ledger

__all__ = ["LOOP_PROTECTED", "Pins", "items_hash", "protected_targets", "verified_suite"]

# The governor's defaults already cover verifiers, evaluation data, logs and monitors at any depth; a
# loop also protects its pins, held-out sets and tests.
LOOP_PROTECTED: tuple[str, ...] = ("pins*", "*/pins*", "holdout*", "*/holdout*", "tests/*", "*/tests/*", "*/test_*")


def items_hash(items: Iterable[Item]) -> str:
    """Content hash of an evaluation set (ids, prompts, answers, tests, metadata, in order).

    >>> items_hash([Item("1", answer=2)]) == items_hash([Item("1", answer=2)])
    True
    >>> items_hash([Item("1", answer=2)]) == items_hash([Item("1", answer=3)])
    False
    """
    return json_hash([it.to_dict() for it in items])


def protected_targets(pins: Pins | None = None, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Globs for ``Governor(protected=...)``: the governor's defaults, their nested forms, every pinned
    name (``verifier:NAME`` and ``eval:NAME`` style records are caught by the defaults; the bare names are
    added too) and ``extra``.

    >>> "*/verifier*" in protected_targets()
    True
    """
    names: list[str] = []
    if pins is not None:
        for pin in pins.entries.values():
            names += [pin.name, f"*/{pin.name}", f"{pin.name}/*", f"*/{pin.name}/*"]
    return tuple(dict.fromkeys((*DEFAULT_PROTECTED, *LOOP_PROTECTED, *names, *extra)))


@dataclass(frozen=True)
class Pin:
    """One pinned artifact: its kind (``verifier`` or ``eval-data``), name and content hash.

    >>> Pin("verifier", "exact-match", "ab12").kind
    'verifier'
    """

    kind: str
    name: str
    hash: str


@dataclass
class Pins:
    """The content hashes a run is bound to. Pin at the start; :meth:`check` before every gate.

    >>> from lifelong.loop.verifiers import NumericMatch
    >>> sorted(Pins().pin_verifier(NumericMatch()).pin_items("dev", [Item("1", answer=1)]).to_dict())
    ['eval-data:dev', 'verifier:numeric-match']
    """

    entries: dict[str, Pin] = field(default_factory=dict)

    def _add(self, pin: Pin) -> Pins:
        key = f"{pin.kind}:{pin.name}"
        old = self.entries.get(key)
        if old is not None and old.hash != pin.hash:
            raise VerifierChangedError(
                f"{pin.kind} {pin.name!r} is already pinned to {old.hash[:12]}; re-pinning it to {pin.hash[:12]} "
                "would move the bar mid-run; start a new run (new Pins) to change it"
            )
        self.entries[key] = pin
        return self

    def pin_verifier(self, verifier: Verifier) -> Pins:
        """Pin a verifier's current hash under its name."""
        return self._add(Pin("verifier", verifier.name, verifier.hash))

    def pin_items(self, name: str, items: Iterable[Item]) -> Pins:
        """Pin an evaluation set's content hash under ``name``."""
        return self._add(Pin("eval-data", name, items_hash(items)))

    def check(self, *, verifiers: Iterable[Verifier] = (), items: Mapping[str, Iterable[Item]] | None = None) -> None:
        """Raise :class:`VerifierChangedError` naming every verifier or evaluation set that no longer
        matches its pin (or was never pinned)."""
        problems = []
        for v in verifiers:
            pin = self.entries.get(f"verifier:{v.name}")
            if pin is None:
                problems.append(f"verifier {v.name!r} was never pinned")
            elif pin.hash != v.hash:
                problems.append(f"verifier {v.name!r} changed: pinned {pin.hash[:12]}, now {v.hash[:12]}")
        for name, its in (items or {}).items():
            pin = self.entries.get(f"eval-data:{name}")
            now = items_hash(its)
            if pin is None:
                problems.append(f"evaluation set {name!r} was never pinned")
            elif pin.hash != now:
                problems.append(f"evaluation set {name!r} changed: pinned {pin.hash[:12]}, now {now[:12]}")
        if problems:
            raise VerifierChangedError("; ".join(problems) + "; scores against a changed judge are not comparable")

    def check_scores(self, scores: Iterable[Score]) -> None:
        """Every score must come from a pinned verifier with its pinned hash.

        >>> from lifelong.loop.verifiers import ExactMatch
        >>> v = ExactMatch(); pins = Pins().pin_verifier(v)
        >>> pins.check_scores([v("a", Item("1", answer="a"))])
        """
        pinned = {p.name: p.hash for p in self.entries.values() if p.kind == "verifier"}
        bad = sorted({f"{s.verifier}@{s.verifier_hash[:12]}" for s in scores if pinned.get(s.verifier) != s.verifier_hash})
        if bad:
            raise VerifierChangedError(f"scores from unpinned or changed verifiers: {bad}")

    def to_dict(self) -> dict[str, dict[str, str]]:
        """JSON form: ``{"verifier:NAME": {"kind", "name", "hash"}, ...}``."""
        return {k: {"kind": p.kind, "name": p.name, "hash": p.hash} for k, p in sorted(self.entries.items())}

    def record(self, ledger: Ledger, ref: str, *, actor: str = "loop") -> int:
        """Write the pins to the ledger as a ``note`` event (the run's judge, on the record)."""
        return ledger.record_event("note", f"pinned {len(self.entries)} verifiers/evaluation sets", ref=ref,
                                   actor=actor, data={"pins": self.to_dict()})


def verified_suite(name: str, items: Sequence[Item], verifier: Verifier,
                   respond: Callable[[Any, Item], Any] | None = None) -> Suite:
    """A gate suite that scores a system by running it on each item and verifying the output.

    A "system" handed to the gate is a callable ``item -> output`` (or anything ``respond(system, item)``
    turns into an output). The suite's content hash covers the items and the verifier's hash.

    >>> from lifelong.loop.verifiers import ExactMatch
    >>> s = verified_suite("qa", [Item("1", answer="a"), Item("2", answer="b")], ExactMatch())
    >>> s.score(lambda item: "a")
    [1.0, 0.0]
    """
    respond = respond or (lambda system, item: system(item))
    content = json_hash({"items": items_hash(items), "verifier": verifier.hash, "verifier_name": verifier.name})

    def score(system: Any) -> list[float]:
        return [verifier(respond(system, it), it).value for it in items]

    return Suite(name, tuple(it.id for it in items), score, content)
