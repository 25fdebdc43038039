"""Source training for the digits CNNs, with a content-keyed cache of the trained weights.

Joint training as in Sun et al. (2020): L = CE(classifier(x), y) + CE(rotation_head(rot(x)), r), with a
fresh random rotation r per image and step. Training is deterministic in the seed; the cache key covers
the model configuration, the recipe, the seed and a hash of the training data, so a cached file is
exactly what training would produce again.

>>> from lifelong.data.digits import load_digits_splits
>>> d = load_digits_splits()
>>> net = DigitsCNN(norm="batch", width=8)
>>> history = train_digits_cnn(net, d.train, epochs=1, seed=0)
>>> len(history["loss"])
1
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lifelong.core.hashing import json_hash, sha256_hex
from lifelong.data.digits import Split
from lifelong.models.vision import DigitsCNN, random_crops, rotate_batch

RECIPE_VERSION = 2


def cache_dir() -> Path:
    """Where lifelong caches derived artefacts: ``$LIFELONG_CACHE`` or ``~/.cache/lifelong``."""
    return Path(os.environ.get("LIFELONG_CACHE", Path.home() / ".cache" / "lifelong"))


def train_digits_cnn(
    model: DigitsCNN,
    split: Split,
    *,
    epochs: int = 40,
    lr: float = 2e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    seed: int = 0,
    augment: bool = True,
    device: str = "cpu",
) -> dict[str, list[float]]:
    """Train in place with Adam and a cosine schedule; the rotation loss is added when the model has a
    rotation head. With ``augment`` each image is randomly cropped from a 1-pixel zero padding, the
    digits analogue of CIFAR's RandomCrop(32, padding=4) that the TTT and Tent source models were
    trained with (and that rotation TTT uses at test time). Returns per-epoch mean losses."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    x = torch.from_numpy(split.x).to(device)
    y = torch.from_numpy(split.y).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    ce = nn.CrossEntropyLoss()
    history: dict[str, list[float]] = {"loss": []}
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen).to(device)
        total, batches = 0.0, 0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = random_crops(xb, 1, gen)[:, 0]
            loss = ce(model(xb), yb)
            if model.has_rotation_head:
                r = torch.randint(0, 4, (len(idx),), generator=gen).to(device)
                loss = loss + ce(model.rotation_logits(rotate_batch(xb, r)), r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            batches += 1
        history["loss"].append(total / batches)
    model.eval()
    return history


def _split_hash(split: Split) -> str:
    return sha256_hex(np.ascontiguousarray(split.x).tobytes() + np.ascontiguousarray(split.y).tobytes())


def pretrained_digits_cnn(
    data: Split, *, seed: int = 0, epochs: int = 40, use_cache: bool = True, **config: Any
) -> DigitsCNN:
    """A DigitsCNN trained on ``data``, loaded from the cache when the same training was done before."""
    from safetensors.torch import load_file, save_file

    model = DigitsCNN(**config)
    key = json_hash(
        {"config": model.config, "seed": seed, "epochs": epochs, "recipe": RECIPE_VERSION, "data": _split_hash(data)}
    )[:20]
    path = cache_dir() / "digits" / f"{key}.safetensors"
    if use_cache and path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    train_digits_cnn(model, data, epochs=epochs, seed=seed)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"config": json.dumps(model.config)})
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` in its current mode."""
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    correct = 0
    for start in range(0, len(yt), batch_size):
        correct += int((model(xt[start : start + batch_size]).argmax(1) == yt[start : start + batch_size]).sum())
    return correct / max(len(yt), 1)
