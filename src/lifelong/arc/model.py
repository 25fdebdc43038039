"""The per-task model: a small convolutional per-cell classifier that reads its context demonstrations.

MARC fine-tunes an 8B language model over serialised grids; on 2 CPU cores we use the reference notes'
"faithful CPU reproduction" instead: a fully convolutional network on one-hot colours that predicts every
output cell (weight-space.md section 5). Two additions keep the paper's structure meaningful:

* **Context.** A small encoder reads each context demonstration pair (lifted input and output), pools it
  to a vector, and the mean over the pairs conditions every block (FiLM). So the model can *read* the
  demonstrations without any weight update, which is what method (a) measures, and leave-one-out tasks are
  real in-context tasks, as in MARC. With no context (a zero task vector) it is a plain input/output map.
* **Reach.** ARC rules are often global (fill a row, count a colour), so each block adds row, column and
  whole-grid means of its features (masked, so padding never leaks in).

The output logits add a position-free colour path, ``onehot(input) @ (colour_map + ctx_map(task vector))``,
that starts as ``copy_scale * identity``: an untrained model copies its input (the most common single guess
in ARC), test-time training can learn a recolouring through it directly, and the context can propose one. The mean over context pairs makes the model blind to demonstration order, so
MARC's demonstration-order augmentation changes nothing here (the augmenter exists and is tested).

>>> import numpy as np
>>> from lifelong.arc.batching import collate, prepare
>>> from lifelong.arc.grids import Example
>>> from lifelong.arc.shapes import ShapeRule
>>> net = CellNet(width=8, depth=2, dilations=(1, 2), ctx_width=8, task_dim=8, seed=0)
>>> g = np.eye(3, dtype=np.int8)
>>> batch = collate([prepare([Example(g, g)], g, g, ShapeRule())])
>>> net(batch).shape
torch.Size([1, 10, 3, 3])
>>> net.predict(batch)[0].tolist()          # untrained: copies the input
[[1, 0, 0], [0, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.arc.batching import IGNORE, Batch
from lifelong.arc.grids import N_COLOURS

ARCHITECTURE_VERSION = 3  # bump on any change to the module structure: it keys the pre-training cache
LIFT_LAYERS = 3  # upscaled, tiled and mirror-tiled input (lifelong.arc.shapes.ShapeRule.lift)
IN_CHANNELS = LIFT_LAYERS * N_COLOURS + 1  # one-hot of each lifted layer, and a "real cell" channel


def _masked_means(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row means (B,C,H,1), column means (B,C,1,W) and grid means (B,C,1,1) over real cells only."""
    rows = h.sum(3, keepdim=True) / mask.sum(3, keepdim=True).clamp(min=1.0)
    cols = h.sum(2, keepdim=True) / mask.sum(2, keepdim=True).clamp(min=1.0)
    grid = h.sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True).clamp(min=1.0)
    return rows, cols, grid


class Block(nn.Module):
    """Residual block: FiLM by the task vector, row/column/grid means of the features, a dilated 3x3 conv.

    One convolution per block and no normalisation layer: on 2 CPU cores the elementwise passes cost as
    much as the convolution, so the block keeps only what earned its place.

    >>> blk = Block(4, 3, dilation=2)
    >>> h, mask = torch.ones(1, 4, 5, 5), torch.ones(1, 1, 5, 5)
    >>> blk(h, mask, torch.zeros(1, 3)).shape
    torch.Size([1, 4, 5, 5])
    """

    def __init__(self, width: int, task_dim: int, dilation: int) -> None:
        super().__init__()
        self.film = nn.Linear(task_dim, 2 * width)
        nn.init.zeros_(self.film.weight)  # no modulation until training finds a use for the context
        nn.init.zeros_(self.film.bias)
        self.reach = nn.Linear(3 * width, width, bias=False)  # row, column and grid means, mixed
        self.conv = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(z)[:, :, None, None].chunk(2, dim=1)
        rows, cols, grid = _masked_means(h, mask)
        w_r, w_c, w_g = self.reach.weight.chunk(3, dim=1)
        pooled = (torch.einsum("oc,bchw->bohw", w_r, rows) + torch.einsum("oc,bchw->bohw", w_c, cols)
                  + torch.einsum("oc,bchw->bohw", w_g, grid))
        u = (h * (1 + gamma) + beta + pooled) * mask
        return h + F.gelu(self.conv(u)) * mask


class CellNet(nn.Module):
    """Predicts each output cell's colour from the lifted input and a task vector read from the context.

    Defaults (width 32, 4 blocks with dilations 1, 2, 4, 1, context width 24, task vector 32) were sized
    for tens of milliseconds per training step on one CPU thread for typical ARC grids.

    >>> net = CellNet(seed=0)
    >>> sum(p.numel() for p in net.parameters()) < 100_000, net.config["width"]
    (True, 32)
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 4,
        dilations: Sequence[int] = (1, 2, 4, 1),
        ctx_width: int = 24,
        task_dim: int = 32,
        copy_scale: float = 2.0,
        *,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if len(dilations) != depth:
            raise ValueError(f"give one dilation per block: depth {depth}, dilations {tuple(dilations)}")
        self.config: dict[str, Any] = {"width": width, "depth": depth, "dilations": list(dilations),
                                       "ctx_width": ctx_width, "task_dim": task_dim, "copy_scale": copy_scale}
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the global RNG
            if seed is not None:
                torch.manual_seed(seed)
            self.stem = nn.Conv2d(IN_CHANNELS, width, 3, padding=1)
            self.blocks = nn.ModuleList(Block(width, task_dim, d) for d in dilations)
            self.head = nn.Conv2d(width, N_COLOURS, 1)
            nn.init.normal_(self.head.weight, std=0.01)
            nn.init.zeros_(self.head.bias)
            # A position-free colour path: logits += onehot(input) @ (colour_map + ctx_map(z)). It starts as
            # copy_scale * identity (copy the input); test-time training can learn a recolouring through it
            # directly, and the context can propose one without any update (in-context reading).
            self.colour_map = nn.Parameter(float(copy_scale) * torch.eye(N_COLOURS))
            self.ctx_map = nn.Linear(task_dim, N_COLOURS * N_COLOURS)
            nn.init.zeros_(self.ctx_map.weight)
            nn.init.zeros_(self.ctx_map.bias)
            self.ctx1 = nn.Conv2d(IN_CHANNELS + N_COLOURS, ctx_width, 3, padding=1)
            self.ctx2 = nn.Conv2d(ctx_width, ctx_width, 3, padding=2, dilation=2)
            self.ctx_out = nn.Linear(2 * ctx_width, task_dim)
        self.to(device)

    @staticmethod
    def _features(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One-hot of both lifted layers, zeroed on padding, plus the mask channel."""
        oh = F.one_hot(x, N_COLOURS).permute(0, 1, 4, 2, 3).flatten(1, 2).float()
        return torch.cat([oh * mask, mask], dim=1)

    def task_vectors(self, batch: Batch) -> torch.Tensor:
        """(Q, task_dim): the mean encoding of each query's context pairs (zeros for no context)."""
        y = F.one_hot(batch.ctx_y, N_COLOURS).permute(0, 3, 1, 2).float() * batch.ctx_mask
        h = torch.cat([self._features(batch.ctx_x, batch.ctx_mask), y], dim=1)
        h = F.gelu(self.ctx1(h)) * batch.ctx_mask
        h = F.gelu(self.ctx2(h)) * batch.ctx_mask
        mean = h.sum((2, 3)) / batch.ctx_mask.sum((2, 3)).clamp(min=1.0)
        peak = (h - 1e4 * (1 - batch.ctx_mask)).amax((2, 3)).clamp(min=0.0)  # GELU >= -0.17; masked max
        pair = self.ctx_out(torch.cat([mean, peak], dim=1))
        return batch.ctx_weight @ pair

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits (Q, 10, H, W) over the padded output cells."""
        mask = batch.query_mask
        z = self.task_vectors(batch)
        h = self.stem(self._features(batch.query_x, mask)) * mask
        for block in self.blocks:
            h = block(h, mask, z)
        maps = self.colour_map + self.ctx_map(z).view(-1, N_COLOURS, N_COLOURS)  # (Q, from, to)
        copy = F.one_hot(batch.query_x[:, 0], N_COLOURS).float()  # (Q, H, W, from)
        colour = torch.einsum("qhwf,qft->qthw", copy, maps)
        return self.head(h) + colour

    @staticmethod
    def optimizer_groups(params: dict[str, torch.Tensor], lr: float, colour_lr_scale: float) -> list[dict[str, Any]]:
        """AdamW parameter groups: the colour path (``colour_map``, ``ctx_map``) at ``colour_lr_scale``
        times the base rate. Adam moves every parameter by about ``lr`` per step whatever its gradient, so
        without the scale the ~80k convolution weights out-run the 100 entries of a recolouring.

        >>> net = CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4)
        >>> [len(g["params"]) for g in CellNet.optimizer_groups(dict(net.named_parameters()), 1e-3, 10.0)]
        [15, 3]
        """
        colour = [p for n, p in params.items() if n.startswith(("colour_map", "ctx_map"))]
        rest = [p for n, p in params.items() if not n.startswith(("colour_map", "ctx_map"))]
        groups = [{"params": rest, "lr": lr, "base_lr": lr}]
        if colour:
            groups.append({"params": colour, "lr": lr * colour_lr_scale, "base_lr": lr * colour_lr_scale})
        return groups

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the real cells of every query (per-cell, like MARC's loss on outputs)."""
        if batch.query_y is None:
            raise ValueError("the batch has no targets; build it from entries with outputs")
        return F.cross_entropy(self(batch), batch.query_y, ignore_index=IGNORE)

    def loss_many(self, batches: Sequence[Batch]) -> torch.Tensor:
        """The per-cell mean cross-entropy over several batches, each run on its own: batches of different
        grid sizes are not padded to a common size (padding a 5x5 task to 30x30 would cost 36 times more).
        """
        total = self.colour_map.new_zeros(())
        cells = 0
        for b in batches:
            if b.query_y is None:
                raise ValueError("a batch has no targets; build it from entries with outputs")
            total = total + F.cross_entropy(self(b), b.query_y, ignore_index=IGNORE, reduction="sum")
            cells += int((b.query_y != IGNORE).sum())
        return total / max(cells, 1)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[np.ndarray]:
        """The argmax colour of every cell, cropped to each query's output shape (int8 grids)."""
        pred = self(batch).argmax(1).cpu().numpy().astype(np.int8)
        return [pred[i, :h, :w].copy() for i, (h, w) in enumerate(batch.shapes)]

    # ------------------------------------------------------------------------------ safetensors I/O
    def to_bytes(self) -> bytes:
        """The weights as safetensors bytes, with the configuration in the metadata.

        >>> net = CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4, seed=0)
        >>> again = CellNet.from_bytes(net.to_bytes())
        >>> all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
        True
        """
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        return save(tensors, metadata={"config": json.dumps(self.config)})

    @classmethod
    def from_bytes(cls, data: bytes, device: torch.device | str = "cpu") -> CellNet:
        """Rebuild a model from :meth:`to_bytes` output."""
        from safetensors.torch import load

        # The configuration sits in the safetensors header: 8 bytes of length, then JSON.
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        net = cls(**json.loads(meta["config"]), device=device)
        net.load_state_dict(load(data))
        return net.to(device)
