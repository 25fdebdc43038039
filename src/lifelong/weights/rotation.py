"""Rotation test-time training (Sun et al., ICML 2020): learn from the test input itself.

The network was trained jointly on classification and on predicting the rotation (0/90/180/270
degrees) of its input, sharing an encoder. At test time the shared encoder and the rotation head take
SGD steps (no momentum) on the rotation loss of augmented copies of the test input, then the classifier
predicts the input with the adapted encoder. Faithful to ``test_adapt.py`` in
yueatsprograms/ttt_cifar_release:

- **standard** (:class:`RotationTTT`, episodic): 32 augmented copies with random rotation labels,
  fresh copies each of 10 iterations, lr 0.001, reset to the trained weights before every input;
- **online** (:class:`RotationTTTOnline`): 1 iteration per input and no reset, so the state carries
  across the stream.

Augmentation for 8x8 digits: random crop with 1 pixel of zero padding (CIFAR's crop uses 4 of 32);
horizontal flips are left out because they change what a digit is.

The standard variant runs every input's episode at once with ``torch.func.vmap`` over per-input copies
of the adapted parameters: each input has its own input scope, and the results match the plain
per-input loop (tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from lifelong.control.budgets import Budget
from lifelong.control.resets import Episodic, Never
from lifelong.core.scopes import Scope
from lifelong.models.vision import random_crops, rotate_batch
from lifelong.weights.tta import TestTimeAdapter

TTT_PARAMS = ("encoder.*", "ss_trunk.*", "ss_classifier.*")


def augmented_rotation_batches(
    x: torch.Tensor, steps: int, copies: int, generator: torch.Generator, pad: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, steps, copies, H, W) and rotation labels (N, steps, copies) for every iteration."""
    n, h, w = x.shape
    crops = torch.stack([random_crops(x, copies, generator, pad) for _ in range(steps)], dim=1)
    labels = torch.randint(0, 4, (n, steps, copies), generator=generator)
    rotated = rotate_batch(crops.reshape(-1, h, w), labels.reshape(-1)).reshape(n, steps, copies, h, w)
    return rotated, labels


class _RotationView(nn.Module):
    """Exposes ``rotation_logits`` as ``forward`` so torch.func can call it with swapped parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.rotation_logits(x)


class RotationTTT(TestTimeAdapter):
    """Standard (episodic) rotation TTT: every input adapts from the trained weights and is reset."""

    name = "ttt"
    default_budget = Budget(steps=10, lr=0.001, params=TTT_PARAMS)
    default_reset = Episodic
    scope_kind = Scope.INPUT
    copies = 32
    crop_pad = 1

    def configure_model(self) -> None:
        if not getattr(self.model, "has_rotation_head", False):
            raise ValueError(
                "rotation TTT needs a model trained jointly with a rotation head; "
                "build DigitsCNN(rotation_head=True) and train it with train_digits_cnn"
            )
        self.model.eval()  # GroupNorm has no batch statistics; eval keeps BatchNorm models sane too

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.params.values(), lr=self.budget.lr)

    def _batched_episodes(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run every input's episode at once; returns the per-input adapted parameters."""
        steps = self.budget.steps
        inputs, labels = augmented_rotation_batches(x, steps, self.copies, self.generator, self.crop_pad)
        view = _RotationView(self.model)
        frozen = {f"model.{n}": p.detach() for n, p in self.model.named_parameters() if n not in self.params}
        buffers = {f"model.{n}": b for n, b in self.model.named_buffers()}

        def loss(adapted: Mapping[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            p = {**frozen, **{f"model.{n}": t for n, t in adapted.items()}, **buffers}
            return F.cross_entropy(functional_call(view, p, (xs,)), ys)

        step_grad = vmap(grad(loss))
        batched = {n: p.detach().unsqueeze(0).expand(len(x), *p.shape).clone() for n, p in self.params.items()}
        lr = self.budget.lr
        for s in range(steps):
            g = step_grad(batched, inputs[:, s], labels[:, s])
            batched = {n: batched[n] - lr * g[n] for n in batched}
            self.steps_taken += len(x)
        return batched

    def _project(self, batched: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-input trust region: scale each input's update back onto the budget's ball."""
        if self.budget.max_distance is None:
            return batched
        ref = self.scope.reference
        sq = sum(((batched[n] - ref[n]).flatten(1) ** 2).sum(1) for n in batched)
        scale = torch.clamp(self.budget.max_distance / sq.sqrt().clamp_min(1e-12), max=1.0)
        return {n: ref[n] + (t - ref[n]) * scale.view(-1, *[1] * (t.dim() - 1)) for n, t in batched.items()}

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        batched = self._project(self._batched_episodes(x))
        finite = torch.stack([torch.isfinite(t.flatten(1)).all(1) for t in batched.values()]).all(0)
        frozen = {n: p.detach() for n, p in self.model.named_parameters() if n not in self.params}
        buffers = dict(self.model.named_buffers())

        def predict(adapted: Mapping[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, {**frozen, **adapted, **buffers}, (xi.unsqueeze(0),))[0]

        with torch.no_grad():
            logits = vmap(predict)(batched, x)
            if not bool(finite.all()):
                # Those inputs' updates are dropped: their input scope resets and the source predicts.
                bad = ~finite
                logits[bad] = self.model(x[bad])
                self.governor.dropped(
                    self.name, f"{int(bad.sum())} input scopes went non-finite; updates dropped", count=int(bad.sum())
                )
        return logits, None


class RotationTTTOnline(TestTimeAdapter):
    """TTT-Online: one step per input on its augmented copies, carried across the stream (no reset);
    each input is predicted right after its own step."""

    name = "ttt-online"
    default_budget = Budget(steps=1, lr=0.001, params=TTT_PARAMS)
    default_reset = Never
    copies = 32
    crop_pad = 1

    configure_model = RotationTTT.configure_model
    make_optimizer = RotationTTT.make_optimizer

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        inputs, labels = augmented_rotation_batches(x, self.budget.steps, self.copies, self.generator, self.crop_pad)
        out = []
        losses = []
        for i in range(len(x)):
            for s in range(self.budget.steps):
                loss = F.cross_entropy(self.model.rotation_logits(inputs[i, s]), labels[i, s])
                losses.append(float(loss.detach()))
                self.step(loss)
            with torch.no_grad():
                out.append(self.model(x[i : i + 1]))
        return torch.cat(out), sum(losses) / max(len(losses), 1)
