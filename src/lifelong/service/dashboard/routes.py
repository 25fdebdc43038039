"""The dashboard's page and the JSON routes it needs beyond the ledger API.

Pure functions compute what the routes answer, so they can be used (and tested) without HTTP:
:func:`tensor_diff_norms`, :func:`memory_diff` and :func:`series`.

>>> import os, tempfile, torch
>>> from lifelong.control.ledger import Ledger
>>> ledger = Ledger.open(os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> a = ledger.commit("m", tensors={"layers.0.w": torch.zeros(2), "layers.1.w": torch.ones(2)})
>>> b = ledger.commit("m", tensors={"layers.0.w": torch.tensor([3.0, 4.0])})
>>> out = tensor_diff_norms(ledger, a, b)
>>> [(r["layer"], r["l2"]) for r in out["layers"]]
[('layers.0', 5.0), ('layers.1', 0.0)]
"""

# No `from __future__ import annotations`: FastAPI resolves the route annotations, and `Tenant` is local
# to install_dashboard.
import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import RedirectResponse, Response

from lifelong.context.versioning import MemoryLedger
from lifelong.control.ledger import Ledger
from lifelong.core.tensors import TENSOR_MEDIA_TYPE, decode_tensor
from lifelong.core.version import Version
from lifelong.service.errors import NotFound, Unprocessable
from lifelong.service.tenancy import TenantLedger

# Nothing on the page may come from elsewhere: scripts, styles, images and API calls are same-origin.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[a-z]+$")
_DIGITS = re.compile(r"(\d+)")


def static_file(name: str) -> tuple[bytes, str]:
    """The bytes and media type of a file shipped in ``static/``; :class:`NotFound` for anything else."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if not _NAME.match(name) or suffix not in _MEDIA_TYPES:
        raise NotFound(f"no dashboard file {name!r}")
    path = resources.files("lifelong.service.dashboard").joinpath("static", name)
    if not path.is_file():
        raise NotFound(f"no dashboard file {name!r}")
    return path.read_bytes(), _MEDIA_TYPES[suffix]


def _page_response(name: str) -> Response:
    data, media_type = static_file(name)
    return Response(data, media_type=media_type, headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})


def layer_of(name: str) -> str:
    """The layer a tensor belongs to: its name up to the first numeric component (``...layers.3``), else
    without its last component (``bn1.weight`` -> ``bn1``)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) if len(parts) > 1 else name


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def tensor_diff_norms(ledger: Ledger, va: Version, vb: Version) -> dict[str, Any]:
    """How the tensors of ``vb`` differ from those of ``va``: per tensor the norms of both sides and of the
    difference (``l2``), the relative change and the largest entry; per layer (:func:`layer_of`) the same
    norms pooled (square root of the sums of squares). An added tensor counts as a change from zero, a
    removed one as a change to zero."""
    names = sorted((n for n in set(va.manifest) | set(vb.manifest)
                    if all(m[n].media_type == TENSOR_MEDIA_TYPE for m in (va.manifest, vb.manifest) if n in m)),
                   key=_natural)
    rows: list[dict[str, Any]] = []
    for name in names:
        ra, rb = va.manifest.get(name), vb.manifest.get(name)
        ta = decode_tensor(ledger.blob(ra.hash)).double() if ra is not None else None
        tb = (ta if (ra is not None and rb is not None and ra.hash == rb.hash)
              else decode_tensor(ledger.blob(rb.hash)).double() if rb is not None else None)
        row: dict[str, Any] = {"name": name, "layer": layer_of(name), "detail": "",
                               "shape": list((tb if tb is not None else ta).shape),  # type: ignore[union-attr]
                               "norm_a": None if ta is None else float(ta.norm()),
                               "norm_b": None if tb is None else float(tb.norm())}
        if ta is None:
            row.update(status="added", l2=row["norm_b"], max_abs=float(tb.abs().max()) if tb.numel() else 0.0)  # type: ignore[union-attr]
        elif tb is None:
            row.update(status="removed", l2=row["norm_a"], max_abs=float(ta.abs().max()) if ta.numel() else 0.0)
        elif ta.shape != tb.shape:
            row.update(status="changed", l2=None, max_abs=None, detail=f"shape {tuple(ta.shape)} -> {tuple(tb.shape)}")
        else:
            delta = tb - ta
            row.update(status="same" if ra.hash == rb.hash else "changed", l2=float(delta.norm()),  # type: ignore[union-attr]
                       max_abs=float(delta.abs().max()) if delta.numel() else 0.0)
        norm_a = row["norm_a"]
        row["relative"] = row["l2"] / norm_a if row["l2"] is not None and norm_a else None
        rows.append({k: _finite(v) if isinstance(v, float) else v for k, v in row.items()})
    layers: dict[str, dict[str, Any]] = {}
    for row in rows:
        agg = layers.setdefault(row["layer"], {"layer": row["layer"], "tensors": 0, "changed": 0, "sq": 0.0, "sq_a": 0.0})
        agg["tensors"] += 1
        agg["changed"] += row["status"] != "same"
        agg["sq"] += (row["l2"] or 0.0) ** 2
        agg["sq_a"] += (row["norm_a"] or 0.0) ** 2
    pooled = []
    for layer in sorted(layers, key=_natural):
        agg = layers[layer]
        l2, norm_a = math.sqrt(agg.pop("sq")), math.sqrt(agg.pop("sq_a"))
        pooled.append({**agg, "l2": l2, "norm_a": norm_a, "relative": l2 / norm_a if norm_a > 0 else None})
    return {"a": va.id, "b": vb.id, "tensors": rows, "layers": pooled}


def memory_diff(memory: MemoryLedger, va: Version, vb: Version) -> dict[str, Any]:
    """The memory items added, removed and changed from ``va`` to ``vb``, with their full bodies (the
    changed ones before and after), for versions of a memory ref."""
    for v in (va, vb):
        if "memory" not in v.manifest:
            raise Unprocessable(f"version {v.id[:12]} holds no memory state; compare two versions of the memory ref "
                                "(GET /v1/ledger/log?ref=memory lists them)")
    d = memory.diff(va, vb)
    return {"a": va.id, "b": vb.id,
            "added": [i.to_dict() for i in d.added], "removed": [i.to_dict() for i in d.removed],
            "changed": [{"id": c.after.id, "fields": list(c.fields), "before": c.before.to_dict(),
                         "after": c.after.to_dict()} for c in d.changed],
            "missing": list(d.missing)}


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def series(tl: TenantLedger, limit: int = 5000) -> dict[str, Any]:
    """What the dashboard plots, oldest first, from the tenant's last ``limit`` events:

    - ``gate``: per gated verdict, the target suite's champion and candidate means, effect and interval,
      the number of negative flips and each canary's means;
    - ``feedback``: rating scores (feedback events of the service, and ``data.signal`` ratings that a
      :class:`~lifelong.system.System` records);
    - ``monitors``: alarms (``data.live_mean``), triggers (``data.value``) and rollbacks (markers);
    - ``metrics``: for every event whose ``data`` holds ``"metrics": {name: number}`` (a learner's
      loss, a live accuracy...), one point per name, with ``data.step`` when given.
    """
    events = list(reversed(tl.log(limit=limit)))
    gate: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    monitors: list[dict[str, Any]] = []
    metrics: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        data: Mapping[str, Any] = e.get("data") or {}
        base = {"seq": e["seq"], "at": e["at"], "ref": e["ref"]}
        if e["verdict_id"] and e["type"] in ("commit", "reject"):
            verdict = tl.ledger.verdict(e["verdict_id"])
            t = verdict.target
            if t is not None:
                gate.append({**base, "verdict_id": e["verdict_id"], "accepted": verdict.accepted, "suite": t.name,
                             "n": t.n, "champion": t.champion_mean, "candidate": t.candidate_mean,
                             "effect": t.effect, "ci": [_finite(t.ci[0]), _finite(t.ci[1])],
                             "negative_flips": len(t.negative_flips), "positive_flips": len(t.positive_flips),
                             "canaries": [{"name": c.name, "champion": c.champion_mean, "candidate": c.candidate_mean,
                                           "effect": c.effect, "passed": c.passed} for c in verdict.canaries]})
        # Ratings: the service's feedback events, and the runtime's recorded signals (data.signal).
        signal = data.get("signal") if isinstance(data.get("signal"), Mapping) else {}
        rating = (data if e["ref"] == "feedback" and data.get("type") == "rating"
                  else signal if signal.get("kind") == "feedback" and signal.get("type") == "rating" else None)
        if e["type"] == "note" and rating is not None:
            score = _number(rating.get("score"))
            if score is not None:
                feedback.append({**base, "score": score, "user": rating.get("user"), "session": rating.get("session")})
        if e["type"] == "alarm":
            monitors.append({**base, "kind": "alarm", "name": e["actor"], "value": _number(data.get("live_mean")),
                             "message": e["message"]})
        elif e["type"] == "trigger":
            monitors.append({**base, "kind": "trigger", "name": str(data.get("trigger", e["actor"])),
                             "value": _number(data.get("value")), "message": e["message"]})
        elif e["type"] == "rollback":
            monitors.append({**base, "kind": "rollback", "name": e["actor"], "value": None, "message": e["message"]})
        found = data.get("metrics")
        if isinstance(found, Mapping):
            step = _number(data.get("step"))
            for name, value in found.items():
                v = _number(value)
                if v is not None:
                    metrics.setdefault(str(name), []).append({**base, "step": step, "value": v})
    return {"gate": gate, "feedback": feedback, "monitors": monitors, "metrics": metrics}


def install_dashboard(app: FastAPI, service: Any, tenant_of: Callable[..., str]) -> None:
    """Add the page (``/dashboard``, its files under ``/dashboard/static/``) and the JSON routes to ``app``;
    ``tenant_of`` is the app's dependency that maps the request's API key to its tenant."""
    Tenant = Annotated[str, Depends(tenant_of)]

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("dashboard")

    @app.get("/dashboard", include_in_schema=False)
    def dashboard_page() -> Response:
        return _page_response("index.html")

    @app.get("/dashboard/", include_in_schema=False)
    def dashboard_slash() -> RedirectResponse:
        return RedirectResponse("../dashboard")

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    def dashboard_static(name: str) -> Response:
        return _page_response(name)

    @app.get("/v1/ledger/tensor-diff", tags=["ledger"], summary="Norms of the tensor differences, per tensor and per layer")
    def ledger_tensor_diff(tenant: Tenant, a: str, b: str) -> dict[str, Any]:
        tl = service.tenant_ledger(tenant)
        return tensor_diff_norms(service.ledger, tl.resolve(a), tl.resolve(b))

    @app.get("/v1/ledger/memory-diff", tags=["ledger"], summary="Memory items added, removed and changed, with bodies")
    def ledger_memory_diff(tenant: Tenant, a: str, b: str) -> dict[str, Any]:
        tl = service.tenant_ledger(tenant)
        return memory_diff(service.memory(tenant), tl.resolve(a), tl.resolve(b))

    @app.get("/v1/ledger/series", tags=["ledger"], summary="Gate scores, feedback, monitors and metrics over time")
    def ledger_series(tenant: Tenant, limit: Annotated[int, Query(ge=1, le=100_000)] = 5000) -> dict[str, Any]:
        return series(service.tenant_ledger(tenant), limit=limit)
