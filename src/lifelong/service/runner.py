"""Running the service: with uvicorn in the foreground (``lifelong serve``), or in a background thread
(tests, benchmarks, notebooks), and building a chat backend from command-line options.

>>> import tempfile
>>> from lifelong.models.chat import ScriptedChat
>>> from lifelong.service import ServiceConfig, create_app
>>> app = create_app(ServiceConfig(tempfile.mkdtemp(), chat=ScriptedChat(["hi"])))
>>> with BackgroundServer(app) as server:  # doctest: +SKIP
...     print(server.url)
http://127.0.0.1:...
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from lifelong.core.errors import LifelongError
from lifelong.models.chat import ScriptedChat

BACKENDS = ("embedded", "openai", "llamacpp", "echo")


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` (127.0.0.1) in a daemon thread. The socket is bound before the
    thread starts (``port=0`` picks a free port, with no race), and :meth:`start` waits until the server
    accepts connections."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.app = app
        self.host = host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"lifelong-service-{self.port}")

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43117``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        """Start serving; raise if the server is not up within ``timeout`` seconds."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LifelongError(f"the service did not start on {self.url} within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Ask uvicorn to finish (open requests complete, the app's shutdown runs) and wait for it."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def echo_backend() -> ScriptedChat:
    """A backend that repeats the last user message: for smoke tests of a deployment.

    >>> echo_backend().complete([{"role": "user", "content": "ping"}]).text
    'echo: ping'
    """
    def reply(messages: Any) -> str:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return f"echo: {last}"

    return ScriptedChat(reply, name="echo")


def build_backend(kind: str, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                  progress: Callable[[str], None] | None = None) -> Any:
    """A chat backend from command-line options: ``embedded`` (an embedded model, SmolLM2-135M-Instruct by
    default, in process), ``openai`` (an OpenAI-compatible server at ``base_url``; the key from
    ``api_key`` or ``$OPENAI_API_KEY``), ``llamacpp`` (a GGUF file in process), ``echo``.

    >>> build_backend("echo").name
    'echo'
    >>> build_backend("gpt")
    Traceback (most recent call last):
    ...
    lifelong.core.errors.LifelongError: unknown backend 'gpt'; use one of embedded, openai, llamacpp, echo
    """
    if kind == "echo":
        return echo_backend()
    if kind == "embedded":
        from lifelong.models.chat import LocalChat
        from lifelong.models.lm import CausalLM

        return LocalChat(CausalLM.load(model or "smollm2-135m-instruct", progress=progress))
    if kind == "openai":
        from lifelong.models.chat import OpenAIChat

        if not model:
            raise LifelongError("the openai backend needs --model (the model name the server serves)")
        return OpenAIChat(model, base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY"))
    if kind == "llamacpp":
        from lifelong.models.chat import LlamaCppChat

        if not model:
            raise LifelongError("the llamacpp backend needs --model (the path of a GGUF file)")
        return LlamaCppChat(model)
    raise LifelongError(f"unknown backend {kind!r}; use one of {', '.join(BACKENDS)}")


def serve(config: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve a :class:`~lifelong.service.ServiceConfig` with uvicorn until interrupted.

    >>> serve(config, port=8000)  # doctest: +SKIP
    """
    import uvicorn

    from lifelong.service.app import create_app

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)


def serve_from_cli(data: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8000,
                   backend: str = "embedded", model: str | None = None, base_url: str | None = None,
                   add_keys: list[str] | tuple[str, ...] = (), timeout: float = 60.0,
                   echo: Callable[[str], None] = print, ledger: str | None = None,
                   memory: str | None = None) -> None:
    """What ``lifelong serve`` does: build the backend, open the service in ``data``, print new API keys
    (for each of ``add_keys``, or for tenant ``default`` when no key exists yet), serve until interrupted.
    ``ledger`` and ``memory`` put the ledger and the memory store elsewhere, e.g. ``postgresql://`` URLs.

    >>> serve_from_cli("runs/service", backend="echo", add_keys=["acme"])  # doctest: +SKIP
    """
    import uvicorn

    from lifelong.service.app import create_app
    from lifelong.service.config import ServiceConfig
    from lifelong.service.core import Service

    chat = build_backend(backend, model, base_url, progress=echo)
    workers = 1 if backend in ("embedded", "llamacpp") else 4  # one in-process model answers one call at a time
    service = Service(ServiceConfig(data, chat=chat, backend_timeout=timeout, backend_workers=workers,
                                    ledger=ledger, memory=memory))
    try:
        tenants = list(add_keys) or ([] if service.db.key_count() else ["default"])
        for tenant in tenants:
            echo(f"API key for tenant {tenant}: {service.create_key(tenant, label='cli')}  (shown once; stored hashed)")
        echo(f"Serving on http://{host}:{port} (OpenAPI: http://{host}:{port}/docs), data in {data}")
        echo(f"Dashboard: http://{host}:{port}/dashboard (enter an API key of the tenant to look at)")
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
    finally:
        service.close()
