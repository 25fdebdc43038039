"""SAR (Niu et al., ICLR 2023): sharpness-aware, reliable entropy minimisation with model recovery.

Faithful to ``sar.py`` / ``sam.py`` in mr-eggplant/SAR:

- samples with entropy >= ``margin`` (0.4 ln C) are filtered out;
- the update is SAM's two-step update (Foret et al. 2021) with radius ``rho`` = 0.05: ascend to
  theta + rho g/||g||, take the filtered entropy gradient there (filtering again after the ascent), and
  apply it at theta with SGD (momentum 0.9);
- the top of the network is not adapted (SAR skips ResNet's ``layer4``; here the last conv block, the
  classifier and the rotation head);
- *model recovery*: an exponential moving average (0.9) of the second-pass filtered entropy; when it
  falls below 0.2 the weights reset to the source (:class:`~lifelong.control.resets.EntropyFloor`).

SAR targets the settings where Tent collapses (batch size 1, label-shifted streams), with batch-size
independent normalisation (GroupNorm or LayerNorm) as its recommended backbone.
"""

from __future__ import annotations

import math

import torch

from lifelong.control.budgets import Budget
from lifelong.control.resets import EntropyFloor
from lifelong.weights.tta import TestTimeAdapter, configure_norm_for_adaptation, softmax_entropy

# Normalisation affine parameters below the top block of a DigitsCNN (split 2: encoder.0, encoder.1,
# trunk.0 adapt; trunk.1, the top block, does not).
SAR_PARAMS = ("encoder.*norm.weight", "encoder.*norm.bias", "trunk.0.norm.weight", "trunk.0.norm.bias")


class SAR(TestTimeAdapter):
    """Sharpness-aware entropy minimisation with an entropy filter and automatic reset."""

    name = "sar"
    default_budget = Budget(steps=1, lr=0.00025, params=SAR_PARAMS)
    default_reset = EntropyFloor(floor=0.2, momentum=0.9)

    def __init__(self, *args, rho: float = 0.05, margin: float | None = None, num_classes: int = 10, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.rho = rho
        self.margin = 0.4 * math.log(num_classes) if margin is None else margin

    def configure_model(self) -> None:
        configure_norm_for_adaptation(self.model)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.params.values(), lr=self.budget.lr, momentum=0.9)

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        assert self.optimizer is not None
        logits = self.model(x)
        entropy = softmax_entropy(logits)
        keep = torch.where(entropy < self.margin)[0]
        if len(keep) == 0:
            return logits, None
        params = list(self.params.values())
        self.optimizer.zero_grad(set_to_none=True)
        entropy[keep].mean().backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        norm = torch.norm(torch.stack([g.norm(2) for g in grads]), 2)
        if not torch.isfinite(norm):
            self.governor.guard_loss(self.scope, self.name, float(norm))
            self.reset_optimizer()
            return logits, None
        scale = self.rho / (norm + 1e-12)
        perturbations = [g * scale for g in grads]
        with torch.no_grad():
            for p, e in zip(params, perturbations, strict=True):
                p.add_(e)
        self.optimizer.zero_grad(set_to_none=True)
        entropy2 = softmax_entropy(self.model(x))[keep]
        keep2 = torch.where(entropy2 < self.margin)[0]
        loss2 = entropy2[keep2].mean() if len(keep2) else entropy2.sum() * 0.0
        stat = float(loss2.detach()) if len(keep2) else None
        loss2.backward()
        with torch.no_grad():
            for p, e in zip(params, perturbations, strict=True):
                p.sub_(e)  # back to theta before the descent step, as SAM's second_step does
        if stat is not None:
            self.optimizer.step()
            self.steps_taken += 1
            if not self.governor.guard(self.scope, self.name):
                self.reset_optimizer()
                return logits, None
        self.optimizer.zero_grad(set_to_none=True)
        return logits, stat
