"""Small CNNs for 8x8 digits, split like Sun et al. (2020) split ResNet-26 for test-time training.

The network is a stack of conv blocks. The first ``split`` blocks form the shared ``encoder``; the rest
form the classification ``trunk`` + ``classifier``. With ``rotation_head=True`` a deep copy of the
trunk plus a 4-way linear layer forms the self-supervised head (``ss_trunk`` + ``ss_classifier``) that
predicts which multiple of 90 degrees an input was rotated by. Normalisation is GroupNorm (the TTT
paper's choice, and batch-size independent) or BatchNorm (what Tent and its successors adapt).

Parameter names are stable for budget globs: ``encoder.0.conv.weight``, ``trunk.1.norm.bias``,
``classifier.weight``, ``ss_trunk.*``, ``ss_classifier.*``.

>>> import torch
>>> net = DigitsCNN(norm="group", rotation_head=True)
>>> x = torch.rand(5, 8, 8)
>>> net(x).shape, net.rotation_logits(x).shape
(torch.Size([5, 10]), torch.Size([5, 4]))
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# Mean and standard deviation of sklearn's digits pixels after dividing by 16 (all 1797 images).
DIGITS_MEAN = 0.3076
DIGITS_STD = 0.3811


class ConvBlock(nn.Module):
    """conv3x3 -> norm -> ReLU, optionally strided."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1, groups: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        if norm == "group":
            self.norm: nn.Module = nn.GroupNorm(min(groups, cout), cout)
        elif norm == "batch":
            self.norm = nn.BatchNorm2d(cout)
        else:
            raise ValueError(f"norm must be 'group' or 'batch', got {norm!r}")
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DigitsCNN(nn.Module):
    """Four conv blocks (8x8 -> 8x8 -> 4x4 -> 4x4 -> 4x4), global average pooling, linear classifier."""

    def __init__(
        self,
        norm: str = "group",
        width: int = 32,
        split: int = 2,
        rotation_head: bool = False,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if not 1 <= split <= 3:
            raise ValueError(f"split must be 1, 2 or 3 (blocks in the shared encoder), got {split}")
        self.config = {"norm": norm, "width": width, "split": split, "rotation_head": rotation_head,
                       "num_classes": num_classes}
        blocks = [
            ConvBlock(1, width, norm),
            ConvBlock(width, 2 * width, norm, stride=2),
            ConvBlock(2 * width, 2 * width, norm),
            ConvBlock(2 * width, 2 * width, norm),
        ]
        self.encoder = nn.Sequential(*blocks[:split])
        self.trunk = nn.Sequential(*blocks[split:])
        self.classifier = nn.Linear(2 * width, num_classes)
        if rotation_head:
            self.ss_trunk = copy.deepcopy(self.trunk)
            self.ss_classifier = nn.Linear(2 * width, 4)

    @property
    def has_rotation_head(self) -> bool:
        """Whether the self-supervised rotation head exists."""
        return hasattr(self, "ss_classifier")

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """(N, 8, 8) or (N, 1, 8, 8) pixels in [0, 1] -> normalised (N, 1, 8, 8)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return (x - DIGITS_MEAN) / DIGITS_STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared encoder output."""
        return self.encoder(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        h = self.trunk(self.features(x))
        return self.classifier(h.mean(dim=(2, 3)))

    def rotation_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the four rotations (0, 90, 180, 270 degrees)."""
        if not self.has_rotation_head:
            raise AttributeError("this DigitsCNN has no rotation head; build it with rotation_head=True")
        h = self.ss_trunk(self.features(x))
        return self.ss_classifier(h.mean(dim=(2, 3)))


def rotate_batch(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rotate each image of (N, H, W) by ``labels[i]`` x 90 degrees (counter-clockwise).

    >>> x = torch.arange(4.).reshape(1, 2, 2)
    >>> rotate_batch(x, torch.tensor([1]))[0]
    tensor([[1., 3.],
            [0., 2.]])
    """
    out = torch.empty_like(x)
    for k in range(4):
        mask = labels == k
        if mask.any():
            out[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
    return out


def random_crops(x: torch.Tensor, copies: int, generator: torch.Generator, pad: int = 1) -> torch.Tensor:
    """(N, H, W) -> (N, copies, H, W): random crops of each image zero-padded by ``pad`` pixels."""
    n, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, copies), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, copies), generator=generator)
    rows = dy[..., None] + torch.arange(h)  # (n, copies, h)
    cols = dx[..., None] + torch.arange(w)  # (n, copies, w)
    idx_n = torch.arange(n)[:, None, None, None]
    return padded[idx_n, rows[..., :, None], cols[..., None, :]]
