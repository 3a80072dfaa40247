"""Data parallelism with FSDP2 (`torch.distributed.fsdp.fully_shard`), launched by torchrun, Ray or mp.spawn.

Each decoder layer and then the root module are sharded over a 1-D device mesh; parameters become DTensors sharded
on dim 0 and FSDP averages gradients across ranks. `PolicyLearner(rank=, world_size=)` trains the groups
g with g % world_size == rank of the (identical on every rank) rollout batch, and scales each micro-batch loss by
world_size x its share of the global minibatch, so the averaged gradient equals the single-process gradient of the
global batch.

MuonClip on sharded parameters: Newton–Schulz runs on the DTensor gradients/momenta, and DTensor's sharding
propagation computes the same matrix products as on full matrices (it gathers where an op needs the whole
operand), i.e. the "gather, orthogonalise, scatter" scheme done by DTensor rather than by hand. QK-Clip's S_max
is all-reduced with MAX and the expert loads with SUM inside `agentrl.optim`. Tested with 2 gloo processes on CPU
(tests/train/test_distributed.py): one update equals the single-process update within 1e-4 (measured ~1e-5).

Not distributed yet: the RLTrainer loop itself (rollout on rank 0 + broadcast, rank-0 metrics, sharded
checkpoints); this module covers the update.
"""

from __future__ import annotations

import torch


def shard_model(model: torch.nn.Module, world_size: int, device_type: str = "cpu") -> torch.nn.Module:
    """FSDP2-shard a DeepseekV3 causal LM in place (per decoder layer, then the root); needs an initialised
    process group."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world_size,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Gather every (possibly sharded) tensor of `model.state_dict()` into a full CPU tensor (collective)."""
    out = {}
    for name, value in model.state_dict().items():
        full = value.full_tensor() if hasattr(value, "full_tensor") else value
        out[name] = full.detach().cpu()
    return out
