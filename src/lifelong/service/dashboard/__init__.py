"""The dashboard: one web page served by the service at ``/dashboard``, and the JSON routes it reads.

The page is static HTML, CSS and vanilla JavaScript shipped in this package (``static/``); it loads
nothing from the internet (a Content-Security-Policy of ``'self'`` enforces it) and calls the tenant-scoped
JSON API with the API key the user types, kept in the browser tab's ``sessionStorage``. It shows the
ledger as a timeline, each verdict's evidence, diffs of memory items and of tensors, plots of gate
scores, feedback and monitors, memory browsing and search, and a rollback that asks for confirmation.

The routes it adds next to the ledger API (all need the tenant's key):

- ``GET /v1/ledger/tensor-diff?a=&b=``: per tensor and per layer, the norm of ``b - a``.
- ``GET /v1/ledger/memory-diff?a=&b=``: the memory items added, removed and changed, with their bodies.
- ``GET /v1/ledger/series``: what the plots draw (gate scores per verdict, feedback ratings, monitor
  alarms and triggers, and every ``data.metrics`` recorded with an event).

>>> layer_of("base_model.model.layers.3.self_attn.q_proj.lora_A.weight")
'base_model.model.layers.3'
>>> layer_of("bn1.weight"), layer_of("scale")
('bn1', 'scale')
"""

from lifelong.service.dashboard.routes import (
    install_dashboard,
    layer_of,
    memory_diff,
    series,
    tensor_diff_norms,
)

__all__ = ["install_dashboard", "layer_of", "memory_diff", "series", "tensor_diff_norms"]
