"""Scopes: how far a change reaches, and therefore who must approve it.

An ``input`` or ``session`` scope belongs to the learner that opened it and is reset by policy; a change
reaches a ``user`` or the ``global`` version only through the gate.

>>> Scope.parse("session")
<Scope.SESSION: 'session'>
>>> Scope.SESSION.needs_gate, Scope.GLOBAL.needs_gate
(False, True)
"""

from __future__ import annotations

from enum import Enum


class Scope(str, Enum):
    """The four scopes, from the shortest-lived to the widest."""

    INPUT = "input"
    SESSION = "session"
    USER = "user"
    GLOBAL = "global"

    @property
    def needs_gate(self) -> bool:
        """Whether a change in this scope must pass the gate before it sticks."""
        return self in (Scope.USER, Scope.GLOBAL)

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        """Read a scope from its name, with an error that lists the valid names."""
        if isinstance(value, Scope):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown scope {value!r}; use one of: {names}") from None
