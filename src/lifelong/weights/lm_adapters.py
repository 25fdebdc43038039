"""Which parameters of a language model a test-time update may touch.

Three choices, all selected afterwards by a :class:`~lifelong.control.budgets.Budget` glob:

- LoRA adapters on named modules, injected in place with ``peft`` (parameter names keep the model's
  own, plus ``.lora_A.default.weight`` / ``.lora_B.default.weight``; glob ``*lora_*``);
- "prime" SwiGLU MLPs added beside the MLP of the last quarter of the blocks, TTT-E2E's choice of
  inner parameters (glob ``*.prime.*``). Their output projection starts at zero, so adding them does
  not change the model until they are trained;
- any named subset of the existing parameters (a glob such as ``*.layers.17.mlp.*``).

>>> from lifelong.models.lm import CausalLM
>>> lm = CausalLM.tiny_random()
>>> names = add_prime_mlps(lm)
>>> names[0]
'model.layers.3.mlp.prime.gate.weight'
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.core.errors import BudgetError
from lifelong.models.lm import CausalLM


class PrimeMLP(nn.Module):
    """A SwiGLU MLP whose output projection starts at zero (a no-op until trained)."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)
        nn.init.zeros_(self.down.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


def _add_prime_output(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return output + module.prime(inputs[0])


def add_prime_mlps(lm: CausalLM, fraction: float = 0.25, hidden: int | None = None, seed: int = 0) -> list[str]:
    """Add a prime MLP beside the MLP of the last ``fraction`` of blocks; returns the new parameter names.

    The prime module becomes a child of the block's MLP (so existing parameter names do not change) and
    a forward hook adds its output to the MLP's. ``hidden`` defaults to the model's own MLP width / 4.
    """
    layers = list(lm.layers)
    first = len(layers) - max(1, round(len(layers) * fraction))
    d_model = lm.model.config.hidden_size
    width = hidden or max(8, lm.model.config.intermediate_size // 4)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for layer in layers[first:]:
            if hasattr(layer.mlp, "prime"):
                continue
            layer.mlp.prime = PrimeMLP(d_model, width).to(device=lm.device, dtype=lm.dtype)
            layer.mlp.register_forward_hook(_add_prime_output)
    finally:
        torch.random.set_rng_state(gen_state)
    return [n for n, _ in lm.model.named_parameters() if ".prime." in n]


def add_lora(lm: CausalLM, target_modules: Sequence[str] = ("q_proj", "v_proj"), r: int = 8, alpha: int = 16,
             layers: Sequence[int] | None = None) -> list[str]:
    """Inject LoRA adapters (peft, in place) into modules whose names end with ``target_modules``,
    optionally only in some layers; returns the adapter parameter names."""
    from peft import LoraConfig, inject_adapter_in_model

    if any(".lora_" in n for n, _ in lm.model.named_parameters()):
        return [n for n, _ in lm.model.named_parameters() if ".lora_" in n]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules),
                        layers_to_transform=list(layers) if layers is not None else None)
    try:
        inject_adapter_in_model(config, lm.model)
    except ValueError as err:
        raise BudgetError(f"LoRA targets {list(target_modules)} match no module of {lm.name}: {err}") from None
    lm.model.to(lm.device)
    return [n for n, _ in lm.model.named_parameters() if ".lora_" in n]
