"""The HTTP service: sessions, chat, feedback, memory and the ledger per tenant, and an OpenAI-compatible
``/v1/chat/completions`` that adds what was learned (FastAPI + uvicorn; ``pip install lifelong[service]``).

>>> import tempfile
>>> from lifelong.models.chat import ScriptedChat
>>> config = ServiceConfig(tempfile.mkdtemp(), chat=ScriptedChat(["Hi"]), keys={"ll-example-key": "acme"})
>>> sorted(r.path for r in create_app(config).routes if r.path.startswith("/v1/ledger"))
['/v1/ledger/diff', '/v1/ledger/log', '/v1/ledger/memory-diff', '/v1/ledger/refs', '/v1/ledger/rollback', '/v1/ledger/series', '/v1/ledger/tensor-diff', '/v1/ledger/verdicts', '/v1/ledger/verdicts/{verdict_id}', '/v1/ledger/versions/{version}']
"""

from lifelong.service.app import create_app
from lifelong.service.config import ServiceConfig, ServiceConfigError
from lifelong.service.core import CompletionResult, LearnedContext, Service
from lifelong.service.runner import BackgroundServer, build_backend, serve
from lifelong.service.state import ServiceDB, Session, Trace, hash_key, new_key

__all__ = [
    "BackgroundServer", "CompletionResult", "LearnedContext", "Service", "ServiceConfig", "ServiceConfigError",
    "ServiceDB", "Session", "Trace", "build_backend", "create_app", "hash_key", "new_key", "serve",
]
