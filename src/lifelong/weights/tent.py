"""Tent (Wang et al., ICLR 2021): minimise prediction entropy by updating normalisation affine parameters.

Faithful to ``tent.py`` in DequanWang/tent: BatchNorm uses test-batch statistics; only the affine
parameters (gamma, beta) of the normalisation layers train; the loss is the batch mean of softmax
entropy; Adam, lr 1e-3, betas (0.9, 0.999), 1 step per batch; the returned predictions are the
*pre-update* outputs (batch t is predicted with weights adapted through batch t-1 and batch t's
statistics). ``episodic=True`` resets weights and optimiser state before every batch (with one step,
episodic Tent therefore predicts exactly like BN-adapt, as in the reference code).

>>> import torch, tempfile, os
>>> from lifelong.control.governor import Governor
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.models.vision import DigitsCNN
>>> gov = Governor(Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db")), "digits/global")
>>> tent = Tent(DigitsCNN(norm="batch", width=8), gov)
>>> sorted(tent.params)[:2]
['encoder.0.norm.bias', 'encoder.0.norm.weight']
"""

from __future__ import annotations

import torch

from lifelong.control.budgets import Budget
from lifelong.control.resets import Episodic, Never
from lifelong.weights.tta import TestTimeAdapter, configure_norm_for_adaptation, softmax_entropy

NORM_AFFINE = ("*norm.weight", "*norm.bias")


class Tent(TestTimeAdapter):
    """Entropy minimisation on normalisation affine parameters; online by default."""

    name = "tent"
    default_budget = Budget(steps=1, lr=1e-3, params=NORM_AFFINE)
    default_reset = Never

    def __init__(self, *args, episodic: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if episodic:
            kwargs.setdefault("reset", Episodic())
            self.name = "tent-episodic"
        super().__init__(*args, **kwargs)

    def configure_model(self) -> None:
        configure_norm_for_adaptation(self.model)

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        logits = loss = None
        for _ in range(max(self.budget.steps, 1)):
            logits = self.model(x)
            loss = softmax_entropy(logits).mean()
            self.step(loss)
        assert logits is not None and loss is not None
        return logits, float(loss.detach())
