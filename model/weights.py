"""Map live transformers weights to checkpoint names, for weight sync into inference engines.

transformers 5 fuses each MoE layer's routed experts into `mlp.experts.gate_up_proj` [E, 2I, H] and
`mlp.experts.down_proj` [E, H, I]; checkpoints on disk (and vLLM's loader) use per-expert
`mlp.experts.{e}.{gate,up,down}_proj.weight`. This yields views, never copies.
"""

from __future__ import annotations

from collections.abc import Iterator
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
