"""Tensors as safetensors bytes: the only way lifelong writes weights (never pickle).

One blob holds one tensor, so versions that share a tensor share its blob, and a diff can tell which
tensors changed by comparing hashes before loading anything.

>>> import torch
>>> t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
>>> torch.equal(decode_tensor(encode_tensor(t)), t)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays an optional, lazily imported dependency of the core
    import torch

TENSOR_MEDIA_TYPE = "application/x-safetensors"
JSON_MEDIA_TYPE = "application/json"
_KEY = "tensor"


def encode_tensor(tensor: torch.Tensor) -> bytes:
    """Serialise one tensor (any dtype, on any device) to safetensors bytes."""
    from safetensors.torch import save

    return save({_KEY: tensor.detach().to("cpu").contiguous()})


def decode_tensor(data: bytes, device: str = "cpu") -> torch.Tensor:
    """Read a tensor written by :func:`encode_tensor`."""
    from safetensors.torch import load

    return load(data)[_KEY].to(device)


def non_finite_names(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors that contain NaN or Inf."""
    if not tensors:  # records-only commits (memory, configuration) need no torch
        return []
    import torch

    return [
        name
        for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def tensor_bytes_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two tensors have the same dtype, shape and bit pattern (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and encode_tensor(a) == encode_tensor(b)
