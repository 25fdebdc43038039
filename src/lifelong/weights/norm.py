"""BN-adapt ("norm" in Tent's code; Schneider et al. 2020): normalise with the test batch's statistics.

No gradient, no parameter changes: BatchNorm layers simply use the statistics of the batch being
predicted instead of the running statistics from training. A strong baseline at large batches, and a
catastrophic one at batch size 1 (the statistics of one image are not the statistics of a domain).

>>> import torch, tempfile, os
>>> from lifelong.control.governor import Governor
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.models.vision import DigitsCNN
>>> gov = Governor(Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db")), "digits/global")
>>> BNAdapt(DigitsCNN(norm="batch", width=8), gov)(torch.rand(16, 8, 8)).shape
torch.Size([16, 10])
"""

from __future__ import annotations

import torch

from lifelong.weights.tta import TestTimeAdapter, configure_norm_for_adaptation


class BNAdapt(TestTimeAdapter):
    """Test-batch normalisation statistics; nothing is learned or kept between batches."""

    name = "bn-adapt"

    def configure_model(self) -> None:
        configure_norm_for_adaptation(self.model)

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        with torch.no_grad():
            return self.model(x), None
