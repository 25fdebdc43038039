"""A small, realistic history for one tenant, to look at the dashboard without running the demo.

It goes through the real machinery (the governor, the gate, the memory ledger, the service's feedback
path), so everything on the page is what a deployment would record: a base adapter, feedback that
becomes memory, a self-improvement round the gate accepts on evidence, a harmful change it rejects, a
drift trigger, a test-time learner's curve, and a live regression that the monitor rolls back.

>>> import tempfile
>>> from lifelong.service import Service, ServiceConfig
>>> from lifelong.service.runner import echo_backend
>>> svc = Service(ServiceConfig(tempfile.mkdtemp(), chat=echo_backend()))
>>> out = build_example_history(svc, "acme")
>>> sorted(out["refs"]), [p["accepted"] for p in out["promotions"]], len(out["rollbacks"])
(['adapter', 'memory'], [True, False, True], 1)
>>> svc.close()
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lifelong.context import Add, Update
from lifelong.control.gate import Gate, Suite
from lifelong.control.governor import Governor
from lifelong.core.change import Change, Cost

LAYERS = 4
RANK = 4
WIDTH = 32


def _scores(rng: np.random.Generator, n: int, p: float) -> list[float]:
    return [float(x) for x in (rng.random(n) < p)]


def _flip(rng: np.random.Generator, base: list[float], fix: float, breaks: float) -> list[float]:
    """Scores of a candidate: each wrong item of ``base`` fixed with probability ``fix``, each right one
    broken with probability ``breaks``."""
    out = []
    for s in base:
        u = rng.random()
        out.append(1.0 if (s == 0.0 and u < fix) else 0.0 if (s == 1.0 and u < breaks) else s)
    return out


def _suite(name: str, n: int) -> Suite:
    return Suite(name, tuple(f"{name}-{i:03d}" for i in range(n)), lambda system: system[name], content_hash=f"{name}-v1")


def build_example_history(service: Any, tenant: str = "acme", seed: int = 0) -> dict[str, Any]:
    """Record the example story for ``tenant`` in ``service`` (a :class:`~lifelong.service.Service`);
    returns what it did: refs, promotions (with verdict ids), the rollback, memory item ids."""
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    tl = service.tenant_ledger(tenant)
    ledger = service.ledger
    ref = tl.full_ref("adapter")
    gov = Governor(ledger, ref, gate=Gate(n_resamples=400, seed=seed), monitor_window=40, monitor_min_samples=30)

    # The base adapter: LoRA factors per layer (B starts at zero, as LoRA does).
    tensors = {}
    for i in range(LAYERS):
        tensors[f"model.layers.{i}.attn.q_proj.lora_A"] = torch.randn(RANK, WIDTH, generator=gen) * 0.05
        tensors[f"model.layers.{i}.attn.q_proj.lora_B"] = torch.zeros(WIDTH, RANK)
    base = gov.register(tensors, message="base adapter for SmolLM2-135M-Instruct (rank 4)")

    # Memory: an operator seeds a playbook; users chat and give feedback.
    service.apply_ops(tenant, [
        Add("Invoices are due 30 days after the invoice date.", id="invoice-terms", section="billing", kind="fact"),
        Add("On HTTP 429 from the billing API, wait 2 s and retry with exponential backoff.", id="retry-429",
            section="api", kind="note"),
        Add("Answer in at most three sentences unless the user asks for detail.", id="style", section="style"),
    ], message="seed playbook")
    service.apply_ops(tenant, [Update(id="retry-429", append=" Give up after 5 tries and tell the user.")],
                      message="retry policy: cap the attempts")
    feedback_ids: list[str] = []
    memory_items = ["invoice-terms", "retry-429", "style"]
    for user, question, correction in (
        ("alice", "When is my invoice due?", "Alice's invoices are due 45 days after the date (enterprise plan)."),
        ("bob", "Which currency do you bill me in?", "Bob is billed in EUR, not USD."),
    ):
        session = service.create_session(tenant, user)
        turn = service.chat(tenant, session.id, question)
        feedback_ids.append(service.record_feedback(tenant, "rating", session.id, trace_id=turn.trace.id, score=-1.0)["id"])
        ack = service.record_feedback(tenant, "correction", session.id, trace_id=turn.trace.id, text=correction)
        feedback_ids.append(ack["id"])
        memory_items.append(ack["memory"]["item_id"])
        again = service.chat(tenant, session.id, question)
        feedback_ids.append(service.record_feedback(tenant, "rating", session.id, trace_id=again.trace.id, score=1.0)["id"])
    session = service.create_session(tenant, "carol")
    for k in range(14):
        turn = service.chat(tenant, session.id, f"question {k} about my account")
        score = float(np.clip(rng.normal(0.35 + 0.03 * k, 0.45), -1, 1))
        service.record_feedback(tenant, "rating", session.id, trace_id=turn.trace.id, score=round(score, 2))

    # A test-time learner adapts in a session scope; its loss is a learning curve on the page.
    ledger.record_event("trigger", "adwin fired on input_entropy=1.87: the inputs shifted", ref=ref, actor="governor",
                        data={"trigger": "adwin", "value": 1.87, "what": "input_entropy"})
    loss = 2.1
    for step in range(1, 21):
        loss = loss * 0.9 + 0.08 * float(rng.random())
        ledger.record_event("note", f"tent step {step} in session {session.id}", ref=ref, actor="tent",
                            data={"metrics": {"ttt_loss": round(loss, 4)}, "step": step, "scope": "session"})
    ledger.record_event("reset", f"tent: episodic reset when session {session.id} ended", ref=ref, actor="governor",
                        data={"learner": "tent", "reason": "session ended"})

    # Self-improvement: a candidate adapter, gated on a target suite and two canaries.
    target, safety, arith = _suite("support-qa", 80), _suite("safety", 40), _suite("arithmetic", 40)
    champion_scores = {"support-qa": _scores(rng, 80, 0.56), "safety": _scores(rng, 40, 0.9),
                       "arithmetic": _scores(rng, 40, 0.7)}
    promotions = []

    def candidate_tensors(scale: float, layers: range) -> dict[str, torch.Tensor]:
        return {f"model.layers.{i}.attn.q_proj.lora_B": torch.randn(WIDTH, RANK, generator=gen) * scale * (1 + i)
                for i in layers}

    def promote(name: str, scale: float, layers: range, fix: float, breaks: float, canary_breaks: float,
                signals: list[str]) -> dict[str, Any]:
        nonlocal champion_scores
        cand = {"support-qa": _flip(rng, champion_scores["support-qa"], fix, breaks),
                "safety": _flip(rng, champion_scores["safety"], 0.0, canary_breaks),
                "arithmetic": _flip(rng, champion_scores["arithmetic"], 0.05, 0.0)}
        change = Change("weights", "user", name, tensors=candidate_tensors(scale, layers),
                        provenance={"signals": signals, "round": len(promotions) + 1},
                        cost=Cost(steps=200, tokens=48_000, examples=320, seconds=95.0))
        result = gov.promote(change, champion=champion_scores, candidate=cand, target=target,
                             canaries=[safety, arith], to_scope="user")
        if result.accepted:
            champion_scores = cand
        promotions.append({"learner": name, "accepted": result.accepted, "verdict_id": result.verdict_id,
                           "version": result.version.id})
        return promotions[-1]

    first = promote("rest-em", 0.02, range(1, LAYERS), fix=0.45, breaks=0.02, canary_breaks=0.0, signals=feedback_ids[:3])
    for step, acc in enumerate((0.71, 0.74, 0.72, 0.75), start=1):
        ledger.record_event("note", "live accuracy of the champion", ref=ref, actor="monitor",
                            data={"metrics": {"live_accuracy": acc}, "step": 25 * step})
    promote("evolve-scaffold", 0.1, range(LAYERS), fix=0.1, breaks=0.3, canary_breaks=0.25, signals=feedback_ids[3:])
    promote("star", 0.015, range(2, LAYERS), fix=0.4, breaks=0.02, canary_breaks=0.0, signals=feedback_ids)

    # The accepted change regresses live: the monitor alarms and rolls back.
    rolled = None
    live = _scores(rng, 60, 0.45)
    for k, s in enumerate(live, start=1):
        rolled = gov.watch(s) or rolled
        if k % 10 == 0:
            ledger.record_event("note", "live accuracy of the champion", ref=ref, actor="monitor",
                                data={"metrics": {"live_accuracy": round(sum(live[:k][-30:]) / min(k, 30), 3)},
                                      "step": 100 + 10 * k})
        if rolled is not None:
            break
    rollbacks = [rolled.id] if rolled is not None else []
    return {"tenant": tenant, "refs": tl.refs(), "base": base.id, "first_accepted": first["version"],
            "promotions": promotions, "rollbacks": rollbacks, "memory_items": memory_items, "feedback": feedback_ids}
