"""Policies: one TOML file a person can read and change, for every learner of a :class:`~lifelong.system.System`.

The file has a ``[system]`` table and one ``[learners.NAME]`` table per learner. Every key, with its
default:

``[system]``
    ``name`` (``"lifelong"``): prefix of every ledger ref and memory tenant this system writes.
    ``ledger`` (``"ledger.db"``): the ledger's SQLite file, relative to the policy file.
    ``memory`` (``"memory.db"``): the memory store's SQLite file (or ``":memory:"``), relative to the file.
    ``embedder`` (``"hashing-256"``): the memory embedder, ``hashing-N`` or ``all-MiniLM-L6-v2``.
    ``seed`` (0): seed for the gate's resampling and the learners.
    ``context_budget`` (512): tokens of learned memory put into a chat's context; ``context_k`` (8): items searched.
    ``protected`` (the governor's defaults): globs of artifacts no change may touch (verifiers, logs...).

``[learners.NAME]``
    ``type``: which learner (``"feedback-memory"``, ``"tent"``, ``"lm-reader"``; see
    :data:`~lifelong.system.learners.LEARNERS`).
    ``trigger`` (``"always"``): when it may adapt, judged on each routed event's value: ``always``,
    ``never``, ``every:N`` (every N-th event), ``below:X`` / ``above:X`` (value beyond a threshold, e.g.
    ``below:0`` adapts on negative ratings only), ``drift:adwin`` / ``drift:page-hinkley`` / ``drift:kswin``.
    ``signals`` (the learner's own list): a subset of the signal types it declares, to listen to fewer.
    ``options``: learner-specific settings (a table; see each learner's docstring): ``section``,
    ``edits``, ``watch_ratings`` for ``feedback-memory``; ``episodic`` for ``tent``; ``adapter``,
    ``chunk_tokens``, ``window``, ``lora_rank`` for ``lm-reader``.

``[learners.NAME.budget]``: how much it may change in one session.
    ``steps`` (1), ``lr`` (0.001), ``params`` (the learner's default globs), ``exclude`` ([]),
    ``max_grad_norm`` (none), ``max_distance`` (none; an L2 trust region around the session's start):
    for weight learners (``max_grad_norm`` and ``max_distance`` are enforced by the governor on every step).
    ``max_items`` (50) and ``max_chars`` (2000, per item): for memory learners.

``[learners.NAME.gate]``: what a promotion must show.
    ``target``: the suite it must improve (``"feedback"`` is built from the session's own feedback;
    others are suites handed to :meth:`~lifelong.system.System.from_config`). ``canaries`` ([]): suites
    that must not regress. ``alpha`` (0.05), ``min_effect`` (0.0), ``max_negative_flip_rate`` (none),
    ``canary_tolerance`` (0.01), ``canary_rule`` (``"point"`` or ``"ci"``), ``n_resamples`` (2000):
    see :class:`~lifelong.control.gate.Gate`.

``[learners.NAME.monitor]``: watching a promoted version. ``tolerance`` (0.05), ``window`` (100),
    ``min_samples`` (30): see :class:`~lifelong.control.monitors.RegressionMonitor`; an alarm rolls back.

``[learners.NAME.reset]``: ``policy`` (``"never"``): reset of the session scope during a session
    (``episodic``, ``never``, ``periodic:N``, ``on-drift``, ``entropy-floor[:X]``). When a session ends, its
    weight scope is always reset and its memory kept, unpromoted.

``[learners.NAME.promote]``: ``to`` (``"none"``, ``"user"`` or ``"global"``), ``when`` (``"session_end"``
    or ``"manual"``: only on :meth:`Session.promote`), ``min_events`` (1): events the learner must have
    learned from in the session before a promotion is even tried.

>>> p = Policies.loads('''
... [system]
... name = "shop"
... [learners.memory]
... type = "feedback-memory"
... trigger = "always"
... [learners.memory.gate]
... target = "feedback"
... alpha = 0.1
... ''')
>>> p.name, p.learners["memory"].gate.alpha, p.learners["memory"].promote.to
('shop', 0.1, 'user')
>>> Policies.loads(p.dumps()) == p
True
>>> Policies.loads('[learners.m]\\ntype = "feedback-memory"\\n[learners.m.budget]\\nmax_items = -1')
Traceback (most recent call last):
...
lifelong.system.policy.PolicyError: learners.m.budget.max_items: must be >= 0, got -1; set a count of items, 0 to forbid writes
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lifelong.control.gate import Gate
from lifelong.control.governor import DEFAULT_PROTECTED
from lifelong.control.resets import ResetPolicy, parse_reset
from lifelong.control.triggers import (
    AlwaysTrigger,
    DriftTrigger,
    NeverTrigger,
    ScheduleTrigger,
    ThresholdTrigger,
    Trigger,
)
from lifelong.core.errors import LifelongError


class PolicyError(LifelongError, ValueError):
    """A policy file or table is wrong. ``key`` is the dotted path of the offending key.

    >>> PolicyError("learners.x.trigger", "bad").key
    'learners.x.trigger'
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


# ---------------------------------------------------------------------- small validators
def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(table: Mapping[str, Any], allowed: list[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PolicyError(
                f"{where}.{key}" if where else key,
                f"unknown key{_suggest(key, allowed)}; the keys allowed here are {', '.join(allowed)}",
            )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(where, f"must be a table ([{where}]), got {type(value).__name__}")
    return value


def _num(table: Mapping[str, Any], key: str, where: str, default: Any, *, minimum: float | None = 0.0,
         integer: bool = False, fix: str = "", allow_none: bool = False, strict_min: bool = False) -> Any:
    if key not in table:
        return default
    value = table[key]
    path = f"{where}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(path, f"must be a number, got {value!r}" + (f"; {fix}" if fix else ""))
    if integer and not isinstance(value, int):
        raise PolicyError(path, f"must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise PolicyError(path, f"must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise PolicyError(path, f"must be {'>' if strict_min else '>='} {minimum:g}, got {value!r}"
                          + (f"; {fix}" if fix else ""))
    return value


def _str(table: Mapping[str, Any], key: str, where: str, default: Any, choices: tuple[str, ...] | None = None) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str):
        raise PolicyError(f"{where}.{key}", f"must be a string, got {value!r}")
    if choices is not None and value not in choices:
        raise PolicyError(f"{where}.{key}", f"{value!r} is not one of {', '.join(choices)}{_suggest(value, list(choices))}")
    return value


def _strs(table: Mapping[str, Any], key: str, where: str, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}.{key}", f"must be a list of strings, got {value!r}")
    return tuple(value)


# ---------------------------------------------------------------------- triggers
TRIGGER_HELP = "use always, never, every:N (N >= 1), below:X, above:X, or drift:adwin|page-hinkley|kswin"


def parse_trigger(spec: str, where: str = "trigger") -> Trigger:
    """Build a trigger from its spec (see the module docstring).

    >>> every2 = parse_trigger("every:2")
    >>> [every2.update(1.0) for _ in range(4)]
    [False, True, False, True]
    >>> parse_trigger("below:0").update(-1.0)
    True
    >>> parse_trigger("evry:2", "learners.m.trigger")
    Traceback (most recent call last):
    ...
    lifelong.system.policy.PolicyError: learners.m.trigger: bad trigger spec 'evry:2'; use always, never, every:N (N >= 1), below:X, above:X, or drift:adwin|page-hinkley|kswin
    """
    if not isinstance(spec, str):
        raise PolicyError(where, f"must be a string, got {spec!r}; {TRIGGER_HELP}")
    kind, _, arg = spec.strip().partition(":")
    bad = PolicyError(where, f"bad trigger spec {spec!r}; {TRIGGER_HELP}")
    if kind in ("always", "never") and not arg:
        return AlwaysTrigger() if kind == "always" else NeverTrigger()
    if kind == "every":
        if not arg.isdigit() or int(arg) < 1:
            raise bad
        return ScheduleTrigger(int(arg))
    if kind in ("below", "above"):
        try:
            x = float(arg)
        except ValueError:
            raise bad from None
        if not math.isfinite(x):
            raise bad
        return ThresholdTrigger(x, above=kind == "above")
    if kind == "drift" and arg in ("adwin", "page-hinkley", "kswin"):
        return DriftTrigger(arg)
    raise bad


def check_reset(spec: str, where: str) -> ResetPolicy:
    """Build a reset policy from its spec, or a :class:`PolicyError` naming the key."""
    try:
        return parse_reset(spec)
    except ValueError as err:
        raise PolicyError(where, str(err)) from None


# ---------------------------------------------------------------------- the policy tables
@dataclass(frozen=True)
class BudgetPolicy:
    """How much a learner may change in one session (weights: steps, lr, params...; memory: items)."""

    steps: int = 1
    lr: float = 1e-3
    params: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    max_grad_norm: float | None = None
    max_distance: float | None = None
    max_items: int = 50
    max_chars: int = 2000

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str) -> BudgetPolicy:
        """Validate a ``[...budget]`` table."""
        _check_keys(table, [f.name for f in fields(cls)], where)
        return cls(
            steps=_num(table, "steps", where, 1, integer=True, fix="give optimiser steps per event, 0 to forbid updates"),
            lr=_num(table, "lr", where, 1e-3, strict_min=True, fix="give a positive learning rate such as 0.001"),
            params=_strs(table, "params", where, None),
            exclude=_strs(table, "exclude", where, ()) or (),
            max_grad_norm=_num(table, "max_grad_norm", where, None, strict_min=True,
                               fix="give a positive clipping norm, or leave the key out"),
            max_distance=_num(table, "max_distance", where, None,
                              fix="give an L2 radius (0 freezes the weights), or leave the key out"),
            max_items=_num(table, "max_items", where, 50, integer=True, fix="set a count of items, 0 to forbid writes"),
            max_chars=_num(table, "max_chars", where, 2000, integer=True, strict_min=True,
                           fix="set the longest item, in characters"),
        )


@dataclass(frozen=True)
class GatePolicy:
    """What a promotion must show: the target suite, the canaries, and the gate's thresholds."""

    target: str | None = None
    canaries: tuple[str, ...] = ()
    alpha: float = 0.05
    min_effect: float = 0.0
    max_negative_flip_rate: float | None = None
    canary_tolerance: float = 0.01
    canary_rule: str = "point"
    n_resamples: int = 2000

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str) -> GatePolicy:
        """Validate a ``[...gate]`` table."""
        _check_keys(table, [f.name for f in fields(cls)], where)
        alpha = _num(table, "alpha", where, 0.05, strict_min=True, fix="give a level in (0, 1) such as 0.05")
        if alpha >= 1:
            raise PolicyError(f"{where}.alpha", f"must lie in (0, 1), got {alpha}; 0.05 is the usual level")
        nfr = _num(table, "max_negative_flip_rate", where, None, fix="give a share in [0, 1], or leave the key out")
        if nfr is not None and nfr > 1:
            raise PolicyError(f"{where}.max_negative_flip_rate", f"must lie in [0, 1], got {nfr}")
        return cls(
            target=_str(table, "target", where, None),
            canaries=_strs(table, "canaries", where, ()) or (),
            alpha=alpha,
            min_effect=_num(table, "min_effect", where, 0.0, minimum=None),
            max_negative_flip_rate=nfr,
            canary_tolerance=_num(table, "canary_tolerance", where, 0.01,
                                  fix="give the largest canary loss allowed, e.g. 0.01"),
            canary_rule=_str(table, "canary_rule", where, "point", ("point", "ci")),
            n_resamples=_num(table, "n_resamples", where, 2000, integer=True, minimum=1),
        )

    def build(self, seed: int = 0) -> Gate:
        """The :class:`~lifelong.control.gate.Gate` these settings describe."""
        return Gate(alpha=self.alpha, min_effect=self.min_effect, max_negative_flip_rate=self.max_negative_flip_rate,
                    canary_tolerance=self.canary_tolerance, canary_rule=self.canary_rule,
                    n_resamples=self.n_resamples, seed=seed)


@dataclass(frozen=True)
class MonitorPolicy:
    """How a promoted version is watched (a regression alarm rolls it back)."""

    tolerance: float = 0.05
    window: int = 100
    min_samples: int = 30

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str) -> MonitorPolicy:
        """Validate a ``[...monitor]`` table."""
        _check_keys(table, [f.name for f in fields(cls)], where)
        out = cls(
            tolerance=_num(table, "tolerance", where, 0.05, fix="give the score drop tolerated, e.g. 0.05"),
            window=_num(table, "window", where, 100, integer=True, minimum=1),
            min_samples=_num(table, "min_samples", where, 30, integer=True, minimum=1),
        )
        if out.window < out.min_samples:
            raise PolicyError(f"{where}.window", f"({out.window}) must be >= min_samples ({out.min_samples}); "
                              "raise window or lower min_samples")
        return out


@dataclass(frozen=True)
class ResetSpec:
    """When a session scope goes back to where the session started, during a session."""

    policy: str = "never"

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str) -> ResetSpec:
        """Validate a ``[...reset]`` table."""
        _check_keys(table, ["policy"], where)
        spec = cls(policy=_str(table, "policy", where, "never"))
        check_reset(spec.policy, f"{where}.policy")
        return spec


@dataclass(frozen=True)
class PromotionPolicy:
    """Where a session's learning may go, and when that is tried."""

    to: str = "user"
    when: str = "session_end"
    min_events: int = 1

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str, default_to: str = "user") -> PromotionPolicy:
        """Validate a ``[...promote]`` table."""
        _check_keys(table, [f.name for f in fields(cls)], where)
        return cls(
            to=_str(table, "to", where, default_to, ("none", "user", "global")),
            when=_str(table, "when", where, "session_end", ("session_end", "manual")),
            min_events=_num(table, "min_events", where, 1, integer=True, minimum=0),
        )


LEARNER_KEYS = ["type", "trigger", "signals", "options", "budget", "gate", "monitor", "reset", "promote"]


@dataclass(frozen=True)
class LearnerPolicy:
    """Everything the system decides about one learner."""

    name: str
    type: str
    trigger: str = "always"
    signals: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)
    gate: GatePolicy = field(default_factory=GatePolicy)
    monitor: MonitorPolicy = field(default_factory=MonitorPolicy)
    reset: ResetSpec = field(default_factory=ResetSpec)
    promote: PromotionPolicy = field(default_factory=PromotionPolicy)

    @classmethod
    def parse(cls, name: str, table: Mapping[str, Any], where: str) -> LearnerPolicy:
        """Validate a ``[learners.NAME]`` table (the learner type itself is checked by the registry)."""
        from lifelong.system.learners import LEARNERS

        _check_keys(table, LEARNER_KEYS, where)
        if "type" not in table:
            raise PolicyError(f"{where}.type", f"missing; name the learner, one of {', '.join(sorted(LEARNERS))}")
        type_ = _str(table, "type", where, None)
        if type_ not in LEARNERS:
            raise PolicyError(f"{where}.type", f"unknown learner {type_!r}{_suggest(type_, sorted(LEARNERS))}; "
                              f"use one of {', '.join(sorted(LEARNERS))}")
        cls_ = LEARNERS[type_]
        trigger = _str(table, "trigger", where, "always")
        parse_trigger(trigger, f"{where}.trigger")
        signals = _strs(table, "signals", where, None)
        if signals is not None:
            declared = [s.kind for s in cls_.signals]
            for s in signals:
                if s not in declared:
                    raise PolicyError(f"{where}.signals", f"{type_!r} does not learn from {s!r}; it declares "
                                      f"{', '.join(declared)}: choose among those, or drop the key")
        options = dict(_table(table.get("options", {}), f"{where}.options"))
        _check_keys(options, list(cls_.option_keys), f"{where}.options")

        def sub(key: str) -> Mapping[str, Any]:
            return _table(table.get(key, {}), f"{where}.{key}")

        return cls(
            name=name, type=type_, trigger=trigger, signals=signals, options=options,
            budget=BudgetPolicy.parse(sub("budget"), f"{where}.budget"),
            gate=GatePolicy.parse(sub("gate"), f"{where}.gate"),
            monitor=MonitorPolicy.parse(sub("monitor"), f"{where}.monitor"),
            reset=ResetSpec.parse(sub("reset"), f"{where}.reset"),
            promote=PromotionPolicy.parse(sub("promote"), f"{where}.promote", cls_.default_promote_to),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``[learners.NAME]`` table (None values and empty option tables left out)."""
        out: dict[str, Any] = {"type": self.type, "trigger": self.trigger}
        if self.signals is not None:
            out["signals"] = list(self.signals)
        if self.options:
            out["options"] = dict(self.options)
        for key in ("budget", "gate", "monitor", "reset", "promote"):
            out[key] = _plain(getattr(self, key))
        return out


SYSTEM_KEYS = ["name", "ledger", "memory", "embedder", "seed", "context_budget", "context_k", "protected"]


@dataclass(frozen=True)
class Policies:
    """A whole policy file: the ``[system]`` settings and one :class:`LearnerPolicy` per learner.

    ``base_dir`` is where relative paths are resolved (the file's folder); it is not part of the file.
    """

    name: str = "lifelong"
    ledger: str = "ledger.db"
    memory: str = "memory.db"
    embedder: str = "hashing-256"
    seed: int = 0
    context_budget: int = 512
    context_k: int = 8
    protected: tuple[str, ...] = DEFAULT_PROTECTED
    learners: Mapping[str, LearnerPolicy] = field(default_factory=dict)
    base_dir: str = field(default=".", compare=False)

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policies:
        """Read and validate a policy file; relative paths in it are relative to its folder."""
        p = Path(path)
        if not p.is_file():
            raise PolicyError(str(p), "no such policy file; check the path (examples/policies.toml is a template)")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise PolicyError(str(p), f"is not UTF-8 text ({err.reason}); save it as UTF-8") from None
        return cls.loads(text, base_dir=str(p.resolve().parent), source=str(p))

    @classmethod
    def loads(cls, text: str, *, base_dir: str = ".", source: str = "<policies>") -> Policies:
        """Parse and validate TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise PolicyError(source, f"is not valid TOML: {err}") from None
        return cls.from_dict(data, base_dir=base_dir)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str = ".") -> Policies:
        """Validate an already-parsed policy table."""
        _check_keys(data, ["system", "learners"], "")
        system = _table(data.get("system", {}), "system")
        _check_keys(system, SYSTEM_KEYS, "system")
        name = _str(system, "name", "system", "lifelong")
        if not name or any(c in name for c in "/: \t\n"):
            raise PolicyError("system.name", f"{name!r} cannot name ledger refs; use letters, digits, '-', '_' or '.'")
        learners_table = _table(data.get("learners", {}), "learners")
        learners = {}
        for lname, table in learners_table.items():
            if not lname.replace("-", "").replace("_", "").isalnum():
                raise PolicyError(f"learners.{lname}", "learner names use letters, digits, '-' and '_' only")
            learners[lname] = LearnerPolicy.parse(lname, _table(table, f"learners.{lname}"), f"learners.{lname}")
        return cls(
            name=name,
            ledger=_str(system, "ledger", "system", "ledger.db"),
            memory=_str(system, "memory", "system", "memory.db"),
            embedder=_str(system, "embedder", "system", "hashing-256"),
            seed=_num(system, "seed", "system", 0, integer=True, minimum=None),
            context_budget=_num(system, "context_budget", "system", 512, integer=True,
                                fix="give a token count, 0 to send no learned context"),
            context_k=_num(system, "context_k", "system", 8, integer=True, strict_min=True),
            protected=_strs(system, "protected", "system", DEFAULT_PROTECTED) or (),
            learners=learners,
            base_dir=base_dir,
        )

    def path(self, value: str) -> str:
        """A path from the file, resolved against its folder (``":memory:"`` and URIs stay as they are)."""
        if value == ":memory:" or "://" in value or os.path.isabs(value):
            return value
        return os.path.join(self.base_dir, value)

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """The file's content as plain tables."""
        system = {"name": self.name, "ledger": self.ledger, "memory": self.memory, "embedder": self.embedder,
                  "seed": self.seed, "context_budget": self.context_budget, "context_k": self.context_k}
        if tuple(self.protected) != DEFAULT_PROTECTED:
            system["protected"] = list(self.protected)
        return {"system": system, "learners": {n: lp.to_dict() for n, lp in self.learners.items()}}

    def dumps(self) -> str:
        """TOML text that :meth:`loads` reads back to an equal :class:`Policies`."""
        return to_toml(self.to_dict())

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write the policies to a TOML file."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.dumps(), encoding="utf-8")
        return p


def _plain(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if v is None:
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


# ---------------------------------------------------------------------- a small TOML emitter
def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PolicyError("value", f"{value!r} cannot be written to a policy file; use a finite number")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        escaped = "".join(c if ord(c) >= 0x20 and ord(c) != 0x7F else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise PolicyError("value", f"{type(value).__name__} {value!r} cannot be written to TOML")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Emit nested tables as TOML: scalars and lists first, then each sub-table under its header.
    ``None`` values are left out (TOML has no null).

    >>> print(to_toml({"system": {"name": "x", "seed": 0}, "learners": {"m": {"type": "t", "gate": {"alpha": 0.1}}}}))
    [system]
    name = "x"
    seed = 0
    <BLANKLINE>
    [learners.m]
    type = "t"
    <BLANKLINE>
    [learners.m.gate]
    alpha = 0.1
    <BLANKLINE>
    """
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not tables):
        lines.append(f"[{prefix}]")
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    if lines:
        lines.append("")
    for k, v in tables.items():
        lines.append(to_toml(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)))
    return "\n".join(lines)
