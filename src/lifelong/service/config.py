"""What a service needs to run: where its files live, which chat backend serves, and its limits.

>>> from lifelong.models.chat import ScriptedChat
>>> config = ServiceConfig("/tmp/lifelong-example", chat=ScriptedChat(["hi"]), keys={"sk-demo-key": "acme"})
>>> config.ledger_path.name, config.default_model, config.rate_limit
('ledger.db', 'scripted', 120)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifelong.core.errors import LifelongError

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ServiceConfigError(LifelongError, ValueError):
    """A service setting is invalid; the message names it and the fix."""


def check_tenant_name(tenant: str) -> str:
    """A tenant name: 1-64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit (it
    becomes part of ledger ref names).

    >>> check_tenant_name("acme-eu")
    'acme-eu'
    >>> check_tenant_name("a/b")
    Traceback (most recent call last):
    ...
    lifelong.service.config.ServiceConfigError: tenant 'a/b' is not a valid name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit
    """
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise ServiceConfigError(
            f"tenant {tenant!r} is not a valid name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant


@dataclass
class ServiceConfig:
    """Settings of one service instance.

    - ``data_dir``: holds ``ledger.db`` (versions, verdicts, feedback events), ``memory.db`` (every
      tenant's memory store) and ``service.db`` (hashed API keys, sessions, traces).
    - ``chat``: the chat backend (any :class:`~lifelong.models.chat.ChatModel`), or a mapping of
      model names to backends; a request naming an unknown model is served by the first one.
    - ``keys``: plaintext API key -> tenant, hashed into ``service.db`` at start-up (the plaintext is
      never written). More keys: :meth:`lifelong.service.Service.create_key`.
    - ``max_body_bytes``: larger request bodies get 413.
    - ``rate_limit`` requests per ``rate_window`` seconds per key (a token bucket); more get 429.
      ``None`` turns the limit off.
    - ``backend_timeout``: seconds a chat backend may take before the request gets 504 (time queued
      for a worker counts); for a streamed answer it bounds the wait for the first piece (504) and
      every gap between pieces (an SSE error event), not the whole answer; ``backend_workers``: how many backend calls run at once (1 for an
      in-process model). A call that timed out keeps its worker until the backend returns, since a
      thread cannot be stopped: give remote backends their own client timeout too.
    - ``context_budget``: tokens of learned context added to a completion; ``context_k``: how many
      memory items are considered; ``history_turns``: earlier turns a session chat sends along.
    - ``embedder``: the memory store's embedder; ``None`` uses the one the store recorded, else
      feature hashing (256 dims, no model to load).
    - ``ledger``, ``memory``: where the ledger and the memory store live instead of ``data_dir``:
      a ``postgresql://`` URL (each its own database) for several service instances sharing one
      history and one memory, or another SQLite path. ``None`` keeps them in ``data_dir``.
    """

    data_dir: str | os.PathLike[str]
    chat: Any = None
    keys: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = 1_000_000
    rate_limit: int | None = 120
    rate_window: float = 60.0
    backend_timeout: float = 60.0
    backend_workers: int = 4
    context_budget: int = 512
    context_k: int = 8
    history_turns: int = 8
    embedder: Any = None
    ledger: str | os.PathLike[str] | None = None
    memory: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        for name in ("ledger", "memory"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | os.PathLike):
                raise ServiceConfigError(f"ServiceConfig.{name} must be a path or a postgresql:// URL, got {value!r}")
        if self.chat is None:
            raise ServiceConfigError(
                "ServiceConfig.chat is missing: pass a chat backend, e.g. ScriptedChat(...), "
                "LocalChat(CausalLM.load('smollm2-135m-instruct')) or OpenAIChat(model, base_url=...)"
            )
        backends = dict(self.chat) if isinstance(self.chat, Mapping) else {self.chat.name: self.chat}
        if not backends:
            raise ServiceConfigError("ServiceConfig.chat is an empty mapping; give at least one backend")
        for name, backend in backends.items():
            if not callable(getattr(backend, "complete", None)):
                raise ServiceConfigError(f"chat backend {name!r} has no complete(messages, ...) method")
        self.backends: dict[str, Any] = backends
        for key, tenant in self.keys.items():
            if not isinstance(key, str) or len(key) < 8:
                raise ServiceConfigError("API keys must be strings of at least 8 characters")
            check_tenant_name(tenant)
        positive = {"max_body_bytes": self.max_body_bytes, "rate_window": self.rate_window,
                    "backend_timeout": self.backend_timeout, "backend_workers": self.backend_workers,
                    "context_k": self.context_k}
        for name, value in positive.items():
            if not isinstance(value, int | float) or value <= 0:
                raise ServiceConfigError(f"ServiceConfig.{name} must be a positive number, got {value!r}")
        if self.rate_limit is not None and (not isinstance(self.rate_limit, int) or self.rate_limit < 1):
            raise ServiceConfigError(f"ServiceConfig.rate_limit must be a positive integer or None, got {self.rate_limit!r}")
        for name in ("context_budget", "history_turns"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ServiceConfigError(f"ServiceConfig.{name} must be a non-negative integer, got {value!r}")

    @property
    def default_model(self) -> str:
        """The model name requests fall back to."""
        return next(iter(self.backends))

    @property
    def ledger_path(self) -> Path | str:
        """Where the ledger lives: ``data_dir/ledger.db``, or ``ledger`` when given (a URL stays a string).

        >>> from lifelong.models.chat import ScriptedChat
        >>> ServiceConfig("/tmp/x", chat=ScriptedChat(["hi"]), ledger="postgresql://db/ledger").ledger_path
        'postgresql://db/ledger'
        """
        return _location(self.ledger, Path(self.data_dir) / "ledger.db")

    @property
    def memory_path(self) -> Path | str:
        """Where the memory store lives (all tenants): ``data_dir/memory.db``, or ``memory`` when given."""
        return _location(self.memory, Path(self.data_dir) / "memory.db")

    @property
    def service_path(self) -> Path:
        """Keys, sessions and traces."""
        return Path(self.data_dir) / "service.db"


def _location(given: str | os.PathLike[str] | None, default: Path) -> Path | str:
    if given is None:
        return default
    text = os.fspath(given)
    return text if "://" in text else Path(text)
