"""Map live transformers weights to checkpoint names, for weight sync into inference engines.

transformers 5 fuses each MoE layer's routed experts into `mlp.experts.gate_up_proj` [E, 2I, H] and
`mlp.experts.down_proj` [E, H, I]; checkpoints on disk (and vLLM's loader) use per-expert
`mlp.experts.{e}.{gate,up,down}_proj.weight`. This yields views, never copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def checkpoint_named_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Yield (checkpoint_name, tensor) for every parameter and persistent buffer of a DeepseekV3 model."""
    state = model.state_dict()
    for name, tensor in state.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            inter = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                yield f"{prefix}{e}.gate_proj.weight", tensor[e, :inter]
                yield f"{prefix}{e}.up_proj.weight", tensor[e, inter:]
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            for e in range(tensor.shape[0]):
                yield f"{prefix}{e}.down_proj.weight", tensor[e]
        else:
            yield name, tensor


def copy_checkpoint_named_tensors(model: Any, named_tensors: Iterable[tuple[str, Any]]) -> int:
    """The inverse: copy (checkpoint_name, tensor) pairs into the model's live parameters in place (per-expert
    tensors into their slice of the fused expert weights). An unknown name raises `KeyError` naming it; a shape
    mismatch raises from `copy_`. Returns the bytes copied."""
    import torch

    targets = dict(checkpoint_named_tensors(model))  # views into the parameters' storage
    copied = 0
    with torch.no_grad():
        for name, tensor in named_tensors:
            if name not in targets:
                raise KeyError(f"the model has no tensor named {name!r} (checkpoint naming)")
            targets[name].copy_(tensor)
            copied += tensor.numel() * tensor.element_size()
    return copied
